# trainhub: the README's two commands are `make quickstart` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# On a machine without an NVIDIA GPU, pin the CPU build of torch (see DEVELOPERS.md);
# with one, pip takes the ordinary CUDA build.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
CONSTRAINTS ?= $(if $(HAS_GPU),,-c constraints/cpu.txt)
PIP := $(PY) -m pip install --quiet --no-compile --disable-pip-version-check $(CONSTRAINTS)
# Installs skip byte-compiling (a minute on 2 cores); let the first import write the .pyc files, even
# where the environment says not to, or every process the tests start compiles torch and transformers again.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: quickstart test lint smoke-native smoke-unsloth schemas clean

$(VENV)/.ready: pyproject.toml constraints/cpu.txt
	python3 -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.ready-dev: $(VENV)/.ready
	$(PIP) -e '.[dev]'
	touch $@

quickstart: $(VENV)/.ready
	rm -rf runs/quickstart
	$(VENV)/bin/train --config config/quickstart.yaml

test: $(VENV)/.ready-dev
	$(PY) -m pytest -q tests

lint: $(VENV)/.ready-dev
	$(VENV)/bin/ruff check backend tests scripts research

smoke-native: $(VENV)/.ready
	rm -rf runs/smoke-native
	$(VENV)/bin/train --config config/quickstart.yaml --dry-run --set output_dir=runs/smoke-native --set log.console=plain

# One QLoRA SFT step through Unsloth on the quickstart model. Needs a GPU and Unsloth's environment:
#   make smoke-unsloth UNSLOTH_PYTHON=/path/to/python   (an interpreter with backend/trainhub/envlocks/unsloth-gpu.txt)
# Without a GPU it stops at check, saying which backends run here.
smoke-unsloth: $(VENV)/.ready
	test -f runs/quickstart/final/config.json || $(MAKE) quickstart
	$(if $(UNSLOTH_PYTHON),$(VENV)/bin/trainhub env setup unsloth --python $(UNSLOTH_PYTHON),)
	rm -rf runs/smoke-unsloth
	$(VENV)/bin/train --config config/sft_unsloth.yaml --dry-run --set output_dir=runs/smoke-unsloth --set log.console=plain

schemas: $(VENV)/.ready
	$(PY) scripts/write_schemas.py

clean:
	rm -rf runs $(VENV)
