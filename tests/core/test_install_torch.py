"""tools/install_torch.sh picks the torch build for the machine: the CUDA build with an NVIDIA
GPU, the CPU index without one, and the configured index at once when the CPU index does not
answer. pip is replaced by a recorder; the reachability probe is real (a local HTTP server)."""
from __future__ import annotations

import http.server
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell script")]

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "install_torch.sh"


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fake_python(tmp_path):
    """A python that records `-m pip install ...`, answers the report with the build it was told
    to pretend (FAKE_CUDA) and runs anything else (the probe) with the real interpreter."""
    log = tmp_path / "pip.log"
    python = _executable(tmp_path / "python", f"""#!/bin/sh
if [ "$1" = "-m" ]; then echo "$@" >> "{log}"; exit 0; fi
if [ "$1" = "-W" ]; then cat > /dev/null; echo "REPORT cuda=${{FAKE_CUDA:-no}} $4"; exit 0; fi
exec "{sys.executable}" "$@"
""")
    return python, log


def _run(python, tmp_path, index, *, gpu: bool, **env_extra):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _executable(bin_dir / "nvidia-smi", f"#!/bin/sh\nexit {0 if gpu else 9}\n")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", **env_extra}
    env.pop("TORCH_SPEC", None)
    env.update(env_extra)
    return subprocess.run(["sh", str(SCRIPT), str(python), "2.13.0", index], capture_output=True, text=True,
                          env=env, timeout=50)


@pytest.fixture
def index_server(tmp_path):
    root = tmp_path / "index"
    (root / "torch").mkdir(parents=True)
    (root / "torch" / "index.html").write_text("<a>torch-2.13.0+cpu</a>")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_no_gpu_and_a_reachable_cpu_index_installs_from_it(fake_python, tmp_path, index_server):
    python, log = fake_python
    result = _run(python, tmp_path, index_server, gpu=False)   # nvidia-smi there, but failing
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == ["-m", "pip", "install", "--quiet", "--timeout", "10", "--retries", "0",
                                       "--index-url", index_server, "torch==2.13.0"]
    assert "from PyTorch's CPU index (no NVIDIA GPU found)" in result.stdout


def test_no_gpu_and_an_unreachable_index_falls_back_at_once(fake_python, tmp_path):
    python, log = fake_python
    unreachable = "http://127.0.0.1:9/whl/cpu"     # the discard port: connection refused
    result = _run(python, tmp_path, unreachable, gpu=False)
    assert result.returncode == 0, result.stderr
    # one pip call, from the configured index: pip never waited on the unreachable one
    assert log.read_text().split() == ["-m", "pip", "install", "--quiet", "torch==2.13.0"]
    assert f"{unreachable} cannot be reached" in result.stdout
    assert "from the configured index (no NVIDIA GPU found" in result.stdout


def test_an_nvidia_gpu_gets_the_configured_index_build(fake_python, tmp_path, index_server):
    python, log = fake_python
    result = _run(python, tmp_path, index_server, gpu=True)
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == ["-m", "pip", "install", "--quiet", "torch==2.13.0"]
    assert "(NVIDIA GPU found)" in result.stdout


def test_torch_spec_is_installed_as_given(fake_python, tmp_path, index_server):
    python, log = fake_python
    result = _run(python, tmp_path, index_server, gpu=False, TORCH_SPEC="torch==2.12.0 --index-url http://mirror/")
    assert result.returncode == 0, result.stderr
    assert log.read_text().split()[-3:] == ["torch==2.12.0", "--index-url", "http://mirror/"]


def test_the_report_names_the_build_of_the_real_torch():
    """The report step itself, on this environment's torch."""
    import torch

    code = SCRIPT.read_text().split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    out = subprocess.run([sys.executable, "-W", "ignore", "-", "from the configured index (no NVIDIA GPU found)"],
                         input=code, capture_output=True, text=True, timeout=50).stdout
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    assert f"installed torch {torch.__version__} ({build})" in out
    assert ("warning" in out) == bool(torch.version.cuda)
