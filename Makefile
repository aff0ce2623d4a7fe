# Two commands on a fresh machine with Python 3.11:  `make serve`  and  `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install serve test test-fast lint

$(BIN)/unclip: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[safety,postgres,distributed,dev]'
	touch $@

install: $(BIN)/unclip

# Install everything into .venv, then serve the Images API and web app on the bundled model.
serve: install
	$(BIN)/unclip serve

# Every test: the fast suite and the slow ones (real data, the bundled model, PostgreSQL when configured).
test: install
	$(BIN)/ruff check src tests
	$(BIN)/pytest -q -m "slow or not slow"

test-fast: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check src tests
