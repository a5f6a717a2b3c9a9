#!/bin/sh
# Install PyTorch into a virtual environment, choosing the build for this machine:
#   - an NVIDIA GPU (nvidia-smi runs): torch from the configured index (PyPI's Linux wheel is
#     the CUDA build);
#   - no NVIDIA GPU: the CPU build from PyTorch's CPU wheel index, tried with short timeouts;
#     when that index cannot be reached (offline mirror, firewall) the configured index at
#     once, and a warning if it served a CUDA build.
# Then one line says which build is installed.
#
# usage: tools/install_torch.sh PYTHON VERSION [CPU_INDEX_URL]
#   TORCH_SPEC (environment): install exactly this pip requirement instead, e.g.
#   TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
set -u
PY=$1
VERSION=$2
CPU_INDEX=${3:-https://download.pytorch.org/whl/cpu}
PIP="$PY -m pip install --quiet"

say() { echo "install-torch: $*"; }

report() {
    "$PY" -W ignore - "$1" <<'EOF'
import sys
import torch
how = sys.argv[1]
build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else \
        f"ROCm {torch.version.hip} build" if getattr(torch.version, "hip", None) else "CPU build"
print(f"install-torch: installed torch {torch.__version__} ({build}) {how}")
if torch.version.cuda and how.startswith("from the configured index (no NVIDIA GPU"):
    print("install-torch: warning: this machine has no NVIDIA GPU but the configured index served "
          "the CUDA build; reinstall the CPU build with: pip install torch --index-url "
          "https://download.pytorch.org/whl/cpu")
EOF
}

if [ -n "${TORCH_SPEC:-}" ]; then
    # shellcheck disable=SC2086  # TORCH_SPEC may carry pip options
    $PIP $TORCH_SPEC || exit 1
    report "as asked (TORCH_SPEC=$TORCH_SPEC)"
    exit 0
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    $PIP "torch==$VERSION" || exit 1
    report "from the configured index (NVIDIA GPU found)"
    exit 0
fi

# No NVIDIA GPU: PyTorch's CPU index, when it answers within a few seconds. (pip alone would
# not say: it also reads the configured extra indexes and find-links, and succeeds from them.)
if "$PY" - "$CPU_INDEX" <<'EOF'
import sys
import urllib.request
try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=10).close()
except Exception as exc:  # noqa: BLE001 - any failure means: use the configured index
    print(f"install-torch: {sys.argv[1]} cannot be reached ({exc.__class__.__name__}); "
          "using the configured index")
    sys.exit(1)
EOF
then
    if $PIP --timeout 10 --retries 0 --index-url "$CPU_INDEX" "torch==$VERSION"; then
        report "from PyTorch's CPU index (no NVIDIA GPU found)"
        exit 0
    fi
    say "installing from $CPU_INDEX failed; using the configured index"
fi
$PIP "torch==$VERSION" || exit 1
report "from the configured index (no NVIDIA GPU found; PyTorch's CPU index was not used)"
