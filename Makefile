# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is installed first, by tools/install_torch.sh: the CPU build from PyTorch's CPU index
# where no NVIDIA GPU is present (falling back at once to the configured index when that index
# cannot be reached), the CUDA build where one is; it prints which build it installed.
# `make TORCH_SPEC="torch==2.13.0 --index-url URL"` installs exactly that instead.
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
export TORCH_SPEC

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	sh tools/install_torch.sh $(PY) $(TORCH_VERSION) $(TORCH_CPU_INDEX)
	$(PY) -m pip install --quiet -e ".[test,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/uldl-studio demo

test: $(STAMP)
	$(VENV)/bin/lint-imports
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
