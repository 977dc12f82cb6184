# Atelier's two commands. Both create .venv when it is missing and install the project.
#   make train   install, write the bundled sample if data/01_raw/images is empty, run the
#                main job (kedro run --pipeline=train)
#   make test    install with the test extras (and, with apt-get, Chromium and PostgreSQL
#                where missing) and run the whole test suite

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PYTHON := $(VENV)/bin/python
KEDRO := $(VENV)/bin/kedro
# No telemetry prompt from kedro-telemetry (CI has no terminal to answer it).
export KEDRO_DISABLE_TELEMETRY := true
export PYTHONUNBUFFERED := 1

.PHONY: train test install install-test sample standin-weights mlflow-ui gallery viz clean

$(PYTHON):
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip

# Re-install only when pyproject.toml changes (the stamp files record the last install).
$(VENV)/.installed: pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet -e .
	touch $@

# .installed-test, .installed-gallery, ...: the project with that extra.
$(VENV)/.installed-%: pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet -e ".[$*]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

sample: install
	@if [ -z "$$(find data/01_raw/images -type f 2>/dev/null | head -n 1)" ]; then \
		$(KEDRO) run --pipeline=sample_data; \
	else \
		echo "data/01_raw/images already holds images; not writing the bundled sample."; \
	fi

train: sample
	$(KEDRO) run --pipeline=train

# The suite's system packages (Chromium, PostgreSQL's server binaries) are installed with
# apt-get where missing; Debian keeps PostgreSQL's server binaries out of PATH.
test: install-test
	bash scripts/install_test_packages.sh
	command -v initdb >/dev/null || \
		export PATH="$$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1):$$PATH"; \
	$(PYTHON) -m pytest

# Offline stand-in for pytorch-fid's Inception weights (NOT the real FID network; see README).
standin-weights: install
	$(PYTHON) scripts/build_standin_inception.py --torch-home .torch-standin

# The MLflow UI on http://127.0.0.1:5000 over the store a run here writes to (conf/*/mlflow.yml,
# or MLFLOW_TRACKING_URI), decided by atelier.tracking.store as for the gallery and reproduce.
mlflow-ui: install
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri "$$($(PYTHON) -c \
		'from atelier.tracking import configured_store; print(configured_store().tracking_uri)' \
		| tail -n 1)"

# The champion's gallery in the browser (Gradio) on http://127.0.0.1:7860; reads the tracking
# store conf/ configures (MLFLOW_TRACKING_URI overrides it, as for kedro run).
gallery: $(VENV)/.installed-gallery
	$(VENV)/bin/atelier gallery

# The pipelines drawn by kedro-viz on http://127.0.0.1:4141.
viz: $(VENV)/.installed-viz
	$(KEDRO) viz run --host 127.0.0.1 --no-browser

clean:
	rm -rf data/02_intermediate/* data/03_primary/* data/04_feature/* data/06_models/* data/08_reporting/*
