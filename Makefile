# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Both create .venv and install everything first (torch from the local CPU wheel, then this package).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# processes the sharded evaluations run on (--workers): every core by default; WORKERS=1 runs serially
WORKERS ?= $(shell getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null || echo 1)

.PHONY: setup fashion-mnist demo test test-fast lint bench tune clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

FASHION_DIR := /usr/share/datasets/fashion-mnist

# Fashion-MNIST (the order-attack family) comes from Debian's dataset-fashion-mnist package: install it
# when it is missing and we are root (as CI is); otherwise print the one command to run.
fashion-mnist:
	@[ -d $(FASHION_DIR) ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } \
		|| echo "Fashion-MNIST is missing; run: sudo apt-get install -y dataset-fashion-mnist"

setup: $(STAMP) fashion-mnist

# The main job: the shipped ZO-LSTM (checkpoints/zo_lstm_mnist.pt) and its untrained control head-to-head
# against tuned ZO-SGD, ZO-signSGD, ZO-Adam and ZO-Trend on 20 held-out MNIST attacks x 2 trials (test
# split, 21 queries per step for all): table, JSON, CSV, plots and an offline wandb run; sharded over
# WORKERS processes (default: all cores), with the serial run's results.
DEMO_METHODS := zo_lstm,zo_sgd,zo_signsgd,zo_adam,zo_trend
demo: setup
	$(PY) -m eval.compare --task mnist_attack --methods $(DEMO_METHODS) --split test \
		--instances 20 --trials 2 --steps 200 --q 20 --out results/compare/mnist_attack_test.json \
		--workers $(WORKERS)

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

# everything but the tests marked slow (end-to-end CLI runs, meta-training): under a minute
test-fast: setup
	$(PY) -m pytest -m "not slow"

bench: setup
	$(PY) -m eval.bench

tune: setup
	$(PY) -m eval.tune --task mnist_attack --workers $(WORKERS)
	$(PY) -m eval.tune --task binary_classification --workers $(WORKERS)

clean:
	rm -rf $(VENV) results wandb .pytest_cache .ruff_cache
