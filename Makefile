# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8765

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# `make serve` (the real API): an instance and a warehouse apart from the simulator's.
API_HOME ?= $(CURDIR)/.dagster_home_api
API_DATA ?= $(CURDIR)/data_api

.PHONY: demo test ui serve simulator lint bench lock clean

# (Re)install when the venv is missing or pyproject.toml or constraints.txt is newer than
# the last install: the versions in constraints.txt, the ones the suite ran on.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m nova_pipeline.demo

test: $(STAMP)
	$(BIN)/ruff check nova_pipeline tests bench
	$(BIN)/ruff format --check nova_pipeline tests bench
	$(BIN)/python -m pytest

ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m nova_pipeline.ui

serve: $(STAMP)
	DAGSTER_HOME=$(API_HOME) NOVA_DATA_DIR="$${NOVA_DATA_DIR:-$(API_DATA)}" \
		$(BIN)/python -m nova_pipeline.ui --api

simulator: $(STAMP)
	$(BIN)/python -m nova_pipeline.simulator --port $(PORT)

bench: $(STAMP)
	$(BIN)/python bench/run.py

lint: $(STAMP)
	$(BIN)/ruff check --fix nova_pipeline tests bench
	$(BIN)/ruff format nova_pipeline tests bench

# New versions within pyproject.toml's ranges: a fresh install, unconstrained, frozen into
# constraints.txt (its header kept). Then `make test`, and commit both.
lock:
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '/^#/!q;p' constraints.txt; $(VENV)-lock/bin/python -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(VENV)-lock

clean:
	rm -rf data .dagster_home
