# Everything sets itself up: `make demo` and `make test` create .venv, install CPU torch and the project.
# GPU users: create .venv yourself with the CUDA build of torch installed first (see README), then run make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: setup demo demo-corpus test lint clean system-deps

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e '.[demo,dev,dataflow]'
	touch $(STAMP)

# ffmpeg (reference frames, HLS test) and chromium (browser tests) from Debian; needs root, optional.
system-deps:
	@if command -v ffmpeg >/dev/null && command -v chromium >/dev/null; then echo "system deps present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ffmpeg chromium; \
	else echo "note: install ffmpeg and chromium for the full test suite (tests needing them skip)"; fi

demo-corpus: setup
	$(PY) -m pipeline demo-corpus $(DEMO_DIR)/corpus

# The whole dataset build on the demo corpus, as a user with hand labels would run it: an unfiltered pass,
# a quality classifier trained on the corpus's labels (held-out labels for the evaluation report), then the
# filtered pass that reuses the downloads and writes the final shards, manifest and audit to $(DEMO_DIR)/run.
demo: demo-corpus
	$(PY) -m pipeline run --catalog $(DEMO_DIR)/corpus/catalog.jsonl --output $(DEMO_DIR)/run-unfiltered
	$(PY) -m classifiers train --labels $(DEMO_DIR)/corpus/labels.csv --clips $(DEMO_DIR)/run-unfiltered \
	  --out $(DEMO_DIR)/classifier
	$(PY) -m classifiers evaluate --model $(DEMO_DIR)/classifier --labels $(DEMO_DIR)/corpus/labels_holdout.csv \
	  --clips $(DEMO_DIR)/run-unfiltered --out $(DEMO_DIR)/classifier/evaluation
	$(PY) -m pipeline run --catalog $(DEMO_DIR)/corpus/catalog.jsonl --output $(DEMO_DIR)/run \
	  --download-dir $(DEMO_DIR)/run-unfiltered/videos --classifier $(DEMO_DIR)/classifier

test: setup system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
