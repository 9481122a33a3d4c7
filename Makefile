# Two entry points for a fresh machine: `make demo` (the offline main job) and `make test`.
# Each creates .venv on first use and installs the exact versions of constraints.txt (the ones the suite
# last passed with): the small CPU build of torch first, because an unpinned torch (pulled in by a
# dependency) can be a multi-GB CUDA build. `make test-latest` tries the newest versions pyproject.toml
# allows in .venv-latest; `make constraints` then records them as the new tested set.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
CONSTRAINTS ?= constraints.txt
LATEST_VENV ?= .venv-latest
BIN := $(VENV)/bin
STAMP := $(VENV)/.nlpkd-installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-latest constraints lint docs clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) "$(TORCH)"
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[test]"
	touch $(STAMP)

# The main job: packaged all-MiniLM-L6-v2 fine-tuned on the packaged BBC News corpus, distilled 6 -> 3 layers,
# and deployed (PyTorch int8, ONNX Runtime int8, a pruned vocabulary; docs/deployment.md).
demo: install
	$(BIN)/nlpkd distill --output_dir runs/bbc-minilm-l3 --overwrite_output_dir --deploy int8,onnx-int8 --prune_vocabulary true

test: install
	$(BIN)/python -m pytest -q

# The suite against the newest versions pyproject.toml allows (torch stays $(TORCH): `make test-latest
# TORCH=torch` also tries the newest torch, which can be a multi-GB CUDA build).
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install --quiet "$(TORCH)"
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade -e ".[test]"
	$(LATEST_VENV)/bin/python -m pip list --format=freeze | grep -iE '^(torch|transformers|datasets|accelerate|evaluate|huggingface.hub|tokenizers)=='
	$(LATEST_VENV)/bin/python -m pytest -q

# Record the versions of .venv-latest (after `make test-latest` passed) as the tested set.
constraints:
	@test -x $(LATEST_VENV)/bin/python || { echo "run 'make test-latest' first"; exit 2; }
	{ echo "# Exact versions the suite last passed with (make test-latest, then make constraints)."; \
	  $(LATEST_VENV)/bin/python -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > $(CONSTRAINTS)

lint: install
	$(BIN)/ruff check nlpkd tests benchmarks recipes examples
	$(BIN)/ruff format --check nlpkd tests benchmarks recipes examples

docs: install
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) $(LATEST_VENV) runs site .pytest_cache
