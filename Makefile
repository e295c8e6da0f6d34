# BotFactory: the single entry point. `make run` serves http://127.0.0.1:8000; `make test` is what CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
# The first interpreter on PATH that is Python >= 3.11 (several resolved dependencies need 3.11).
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3.14 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
CONSTRAINTS := $(wildcard constraints.txt)
LOCALES := uz ru en
PO_FILES := $(wildcard locales/*/LC_MESSAGES/messages.po)
MO_FILES := $(PO_FILES:.po=.mo)
PYTEST_ARGS ?=

.PHONY: help venv i18n i18n-compile run test lint fmt eval bench

help:
	@echo "make run           start everything on http://127.0.0.1:8000 (embedded PostgreSQL/Valkey unless DATABASE_URL/REDIS_URL)"
	@echo "make test          ruff, alembic check and pytest on real PostgreSQL and Redis (TEST_DATABASE_URL/TEST_REDIS_URL or throwaway)"
	@echo "make lint | fmt    check | fix formatting and lint"
	@echo "make i18n          extract msgids, update the uz/ru/en catalogs, compile them"
	@echo "make eval | bench  answer-quality evaluation | every bench/*_bench.py"
	@echo "make venv          create $(VENV) and install (re-runs only when pyproject.toml or constraints.txt change)"

venv: $(STAMP)

# The stamp makes the install re-run only when the dependency declarations change.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -n "$(PYTHON)" || { echo "Python >= 3.11 is needed: install python3.11 (or newer) and retry"; exit 1; }
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
		echo "$(VENV) uses Python < 3.11; recreating it"; rm -rf $(VENV); fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev]'
	@touch $@

# Extract (babel.cfg) → update uz/ru/en → compile. scripts/i18n.py does the first two with Babel's API the way the
# catalog tests expect (sorted, no line numbers, no fuzzy matching) and lists what is left to translate; plain
# pybabel is the fallback.
i18n: venv
	@if [ -f scripts/i18n.py ]; then \
		$(PY) scripts/i18n.py || exit 1; \
	else \
		$(BIN)/pybabel extract -F babel.cfg -c TRANSLATORS: --project=BotFactory -o locales/messages.pot . || exit 1; \
		for lang in $(LOCALES); do \
			if [ -f locales/$$lang/LC_MESSAGES/messages.po ]; then \
				$(BIN)/pybabel update --no-fuzzy-matching -i locales/messages.pot -d locales -l $$lang || exit 1; \
			else \
				$(BIN)/pybabel init -i locales/messages.pot -d locales -l $$lang || exit 1; \
			fi; \
		done; \
	fi
	@$(MAKE) --no-print-directory i18n-compile

# Compiles only catalogs whose .po changed; fuzzy entries are left out (the catalog tests flag them).
i18n-compile: venv $(MO_FILES)

locales/%/LC_MESSAGES/messages.mo: locales/%/LC_MESSAGES/messages.po | venv
	$(BIN)/pybabel compile -i $< -o $@ -l $*

run: venv i18n-compile
	exec $(PY) -m control_plane.devrun

test: venv i18n-compile
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(PY) scripts/alembic_check.py
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

eval: venv i18n-compile
	$(PY) bench/eval.py

# Runs every bench/*_bench.py, reports each, and fails if any failed.
bench: venv i18n-compile
	@failed=""; found=""; \
	for script in bench/*_bench.py; do \
		[ -e "$$script" ] || continue; found=1; \
		echo "== $$script"; \
		$(PY) "$$script" || failed="$$failed $$script"; \
	done; \
	[ -n "$$found" ] || echo "no bench/*_bench.py yet"; \
	if [ -n "$$failed" ]; then echo "failed:$$failed"; exit 1; fi
