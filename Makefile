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

.PHONY: setup demo demo-corpus demo-model test lint clean system-deps coinrun-cpu bc-cpu lam-cpu

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
	  --clips $(DEMO_DIR)/run-unfiltered --out $(DEMO_DIR)/classifier/evaluation --min-roc-auc 0.9
	$(PY) -m pipeline run --catalog $(DEMO_DIR)/corpus/catalog.jsonl --output $(DEMO_DIR)/run \
	  --download-dir $(DEMO_DIR)/run-unfiltered/videos --classifier $(DEMO_DIR)/classifier

# Smoke run of the model stack on the demo dataset (after `make demo`): a tiny Genie trained on CPU, its
# evaluation report and a generated rollout GIF. MODEL_STEPS trades time for a (slightly) better tiny model.
MODEL_STEPS ?= 200
DEMO_SHARDS := $(DEMO_DIR)/run/shards/*.tar
demo-model: setup
	@test -n "$$(ls $(DEMO_SHARDS) 2>/dev/null)" || { echo "no shards in $(DEMO_DIR)/run: run make demo first"; exit 2; }
	$(PY) -m modeling train tokenizer --shards '$(DEMO_SHARDS)' --config tiny --out $(DEMO_DIR)/model/tokenizer \
	  --set train_tokenizer.max_steps=$(MODEL_STEPS)
	$(PY) -m modeling train lam-dynamics --shards '$(DEMO_SHARDS)' --config tiny \
	  --tokenizer $(DEMO_DIR)/model/tokenizer --out $(DEMO_DIR)/model/genie --set train_lam_dynamics.max_steps=$(MODEL_STEPS)
	$(PY) -m modeling evaluate --checkpoint $(DEMO_DIR)/model/genie --shards '$(DEMO_SHARDS)' \
	  --out $(DEMO_DIR)/model/evaluation --num-clips 16
	$(PY) -m modeling generate --checkpoint $(DEMO_DIR)/model/genie --prompt $(firstword $(wildcard $(DEMO_SHARDS))) \
	  --actions 0,1,2,3,0,1,2,3,0,1,2,3 --batch 2 --out $(DEMO_DIR)/model/rollout.gif --scale 2

# The CoinRun case study on CPU within BUDGET_MIN minutes (data, tokenizer, LAM + dynamics, held-out evaluation,
# report in $(COINRUN_DIR)/report.md). COINRUN_ARGS=--smoke checks the harness in a few minutes.
BUDGET_MIN ?= 60
COINRUN_DIR ?= runs/coinrun-cpu
COINRUN_ARGS ?=
coinrun-cpu: setup
	$(PY) benchmarks/coinrun_cpu.py --out $(COINRUN_DIR) --budget-min $(BUDGET_MIN) $(COINRUN_ARGS)

# Agents from latent actions (Genie Fig. 15): expert data, a LAM trained on the expert videos (frames only), its
# labels, latent and oracle policies, 100 held-out levels x 5 seeds x {easy, hard}; table in
# $(BC_DIR)/results/results.md. Measured time on 2 CPU cores in docs/modeling.md; BC_ARGS=--smoke checks the
# harness in a few minutes; BC_ARGS='--lam $(COINRUN_DIR)/genie' labels with make coinrun-cpu's LAM instead.
BC_DIR ?= runs/bc-cpu
BC_ARGS ?=
bc-cpu: setup
	$(PY) benchmarks/bc_cpu.py --out $(BC_DIR) $(BC_ARGS)

# Latent actions that carry the action, on 2 CPU cores within LAM_BUDGET_MIN minutes: CoinRun data with
# held (sticky) and per-step random actions, a LAM trained on each from frames only, lam_probe (NMI, codes, the
# decoder's action gap, the supervised ceiling); report in $(LAM_DIR)/report.md. LAM_ARGS=--smoke: harness check.
LAM_BUDGET_MIN ?= 30
LAM_DIR ?= runs/lam-cpu
LAM_ARGS ?=
lam-cpu: setup
	$(PY) benchmarks/lam_cpu.py --out $(LAM_DIR) --budget-min $(LAM_BUDGET_MIN) $(LAM_ARGS)

test: setup system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
