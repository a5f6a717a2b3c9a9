"""Package data: the application icon (SVG and PNGs), the Linux ``.desktop`` entry and the
AppStream metainfo.

This folder is the repository's top-level ``resources/``; ``pyproject.toml`` installs it as
the package ``uldl_studio.resources``.  Read through :mod:`importlib.resources`, so the files
are found in an installed wheel as in an editable checkout.  ``tools/render_icons.py`` renders
the PNGs from the SVGs.
"""
from __future__ import annotations

from importlib import resources

ICON_NAME = "uldl-studio"
ICON_SIZES = (16, 32, 48, 64, 128, 256)
DESKTOP_FILE = f"{ICON_NAME}.desktop"
METAINFO_FILE = f"{ICON_NAME}.metainfo.xml"


def files():
    """The resources folder (an ``importlib.resources`` Traversable)."""
    return resources.files(__name__)


def icon_svg() -> bytes:
    return files().joinpath(f"{ICON_NAME}.svg").read_bytes()


def icon_png(size: int) -> bytes:
    if size not in ICON_SIZES:
        raise ValueError(f"no {size} px icon (sizes: {ICON_SIZES})")
    return files().joinpath(f"{ICON_NAME}-{size}.png").read_bytes()


def desktop_entry() -> str:
    """The freedesktop entry (copy to ~/.local/share/applications/ with the icon)."""
    return files().joinpath(DESKTOP_FILE).read_text(encoding="utf-8")


def metainfo() -> str:
    """The AppStream metainfo (copy to ~/.local/share/metainfo/ for software centres)."""
    return files().joinpath(METAINFO_FILE).read_text(encoding="utf-8")
