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
# llama-cpp-python (extras gguf and dev) has no Linux wheel on PyPI: pip compiles llama.cpp (781 s of CPU for
# 0.3.36, about 7 minutes on 2 idle cores). Its multimodal library is not used by trainhub: not built.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF

.PHONY: quickstart test test-fast test-slow test-all lint smoke-native smoke-trl smoke-nanogpt smoke-llamafactory env-llamafactory smoke-unsloth schemas clean

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

$(VENV)/.ready-gguf: $(VENV)/.ready
	$(PIP) -e '.[gguf,serve]'
	touch $@

# The quickstart model as a GGUF file for llama.cpp / Ollama / LM Studio, verified in llama.cpp (docs/export.md);
# installs trainhub[gguf,serve] first (llama-cpp-python compiles llama.cpp once: minutes).
gguf: $(VENV)/.ready-gguf
	test -f runs/quickstart/final/config.json || $(MAKE) quickstart
	$(VENV)/bin/trainhub export runs/quickstart --format gguf --quant q8_0

# What CI runs: every test but those marked slow or gpu (unit tests, the kernels under Triton's interpreter,
# and real CLI runs on tiny models: runs/report, sinks, job files, a new user's mistakes, the job server).
# Under 20 minutes on 2 cores.
test: $(VENV)/.ready-dev
	$(PY) -m pytest -q -m "not slow and not gpu" tests

test-fast: test

# The tests marked slow: every backend end to end through the real CLI (trl, llamafactory, nanoGPT with
# NANOGPT_DIR), resume, torchrun with several processes, GGUF in llama.cpp, the report in
# Chromium, the job server's restarts. They create the backend environments they need once, in .cache/envs
# (tests/conftest.py). About an hour on 2 cores; run them before a change to those parts lands.
test-slow: $(VENV)/.ready-dev
	$(PY) -m pytest -q -m "slow and not gpu" tests

test-all: $(VENV)/.ready-dev
	$(PY) -m pytest -q -m "not gpu" tests

lint: $(VENV)/.ready-dev
	$(VENV)/bin/ruff check backend tests scripts research

smoke-native: $(VENV)/.ready
	rm -rf runs/smoke-native
	$(VENV)/bin/train --config config/quickstart.yaml --dry-run --set output_dir=runs/smoke-native --set log.console=plain

$(VENV)/.ready-trl: $(VENV)/.ready
	$(PIP) -e '.[trl]'
	touch $@

# One optimizer step of each trl method on the quickstart's model (made first if missing).
smoke-trl: $(VENV)/.ready-trl
	test -d runs/quickstart/final || $(VENV)/bin/train --config config/quickstart.yaml --set log.console=plain
	rm -rf runs/smoke-trl-*
	$(VENV)/bin/train --config config/sft_trl.yaml --dry-run --set output_dir=runs/smoke-trl-sft --set log.console=plain
	for c in dpo grpo; do $(VENV)/bin/train --config config/$${c}_trl.yaml --dry-run --set model.path=runs/quickstart/final \
	  --set output_dir=runs/smoke-trl-$$c --set log.console=plain || exit 1; done

# Needs a nanoGPT checkout: NANOGPT_DIR=~/nanoGPT make smoke-nanogpt (git clone https://github.com/karpathy/nanoGPT).
smoke-nanogpt: $(VENV)/.ready
	@if [ -z "$(NANOGPT_DIR)" ]; then echo "smoke-nanogpt: set NANOGPT_DIR to a nanoGPT checkout (git clone https://github.com/karpathy/nanoGPT)"; exit 2; fi
	rm -rf runs/smoke-nanogpt
	$(VENV)/bin/train --config config/pretrain_nanogpt.yaml --dry-run --set backend.repo=$(NANOGPT_DIR) --set output_dir=runs/smoke-nanogpt --set log.console=plain

# LLaMA-Factory in its own environment under trainhub's home (about 2.5 min and 1.8 GB on CPU).
env-llamafactory: $(VENV)/.ready
	$(VENV)/bin/trainhub env setup llamafactory

# The environment, then one real optimizer step of config/sft_llamafactory.yaml (needs the quickstart's model).
smoke-llamafactory: env-llamafactory
	test -f runs/quickstart/final/config.json || $(MAKE) quickstart
	rm -rf runs/smoke-llamafactory
	$(VENV)/bin/train --config config/sft_llamafactory.yaml --dry-run --set output_dir=runs/smoke-llamafactory --set log.console=plain

# One QLoRA SFT step through Unsloth on the quickstart model. Needs a GPU and Unsloth's environment:
#   make smoke-unsloth                                  (after `trainhub env setup unsloth`, which creates it)
#   make smoke-unsloth UNSLOTH_PYTHON=/path/to/python   (adopts an interpreter with backend/trainhub/envlocks/unsloth-gpu.txt)
# Without a GPU it stops at check, saying which backends run here.
smoke-unsloth: $(VENV)/.ready
	test -f runs/quickstart/final/config.json || $(MAKE) quickstart
	$(if $(UNSLOTH_PYTHON),$(VENV)/bin/trainhub env setup unsloth --python $(UNSLOTH_PYTHON),)
	rm -rf runs/smoke-unsloth
	$(VENV)/bin/train --config config/sft_unsloth.yaml --dry-run --set output_dir=runs/smoke-unsloth --set log.console=plain

schemas: $(VENV)/.ready
	$(PY) scripts/write_schemas.py

clean:
	rm -rf runs $(VENV) .cache
