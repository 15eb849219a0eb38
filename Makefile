# `make demo`: set up and run the whole pipeline on the offline default (Fashion-MNIST-LT).
# `make test`: set up and run the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: demo test setup fashion-mnist chromium slurm bench

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Debian ships Fashion-MNIST; install it when apt is there and we are root, else say how.
fashion-mnist:
	@if [ ! -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ] && [ ! -f data/raw/train-images-idx3-ubyte.gz ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)); \
	  else \
	    echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist', put the idx files in data/raw/, or set data.download: true in params.yaml"; \
	  fi; \
	fi

# The report test renders the HTML in headless Chromium: install Debian's package when apt is
# there and we are root; under CI=true the test fails (not skips) if it is still missing.
chromium:
	@if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y -qq chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)); \
	  else \
	    echo "headless Chromium missing: run 'sudo apt-get install chromium' for the report test"; \
	  fi; \
	fi

# The sweep tests run a real one-node Slurm (tests/slurm/one_node.sh): install Debian's packages
# when apt is there and we are root; under CI=true those tests fail (not skip) without them.
SLURM_PACKAGES := slurmctld slurmd slurm-client munge
slurm:
	@if ! command -v slurmctld >/dev/null && ! test -x /usr/sbin/slurmctld; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y -qq --no-install-recommends $(SLURM_PACKAGES) >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends $(SLURM_PACKAGES) >/dev/null)); \
	  else \
	    echo "Slurm missing: run 'sudo apt-get install $(SLURM_PACKAGES)' for the sweep tests"; \
	  fi; \
	fi

demo: $(STAMP) fashion-mnist
	dvc repro
	@cat metrics/leaderboard.md
	@echo "report: $$(lttools report)"

test: $(STAMP) chromium slurm
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/retrain.py
	$(PY) bench/features.py
	$(PY) bench/stage1.py
