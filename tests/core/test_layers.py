"""Every core module sits in one layer of the import contract, so none escapes the check."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layer_modules() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    block = text[text.index('type = "layers"'):]
    listed = block[block.index("layers = ["):block.index("]", block.index("layers = ["))]
    return set(re.findall(r"uldl_studio\.core\.(\w+)", listed))


def test_every_core_module_is_in_a_layer():
    modules = {p.stem for p in (ROOT / "uldl_studio" / "core").glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in (ROOT / "uldl_studio" / "core").iterdir() if (p / "__init__.py").exists()}
    missing = sorted(modules - _layer_modules())
    assert not missing, f"add these core modules to a layer of the import contract in pyproject.toml: {missing}"
