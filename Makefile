# Attention, from the bottleneck to the transformer and beyond: build and test the book.
#
#   make book    build the HTML book into _build/html (from clean; any warning or failing
#                notebook cell fails the build)
#   make test    every test: unit + notebook hygiene, the chapter notebooks (each executed
#                once, under nbval), the book built from those runs, then browser tests
#                of the built site (unit tests and notebooks in one session: make test-code;
#                either half alone: make test-unit, make test-notebooks)
#   make sync    copy repository.url and .ref (the pinned release) from _config.yml into
#                the notebooks' first cells (REPO_URL, REPO_REF)
#   make student write student versions of the chapters (solutions replaced by stubs) to student/
#   make grade SUBMISSIONS=folder
#                grade a folder of submitted student notebooks into grades/grades.csv and .json
#   make chapter NN=11 TITLE="Topic"
#                write a new chapter's skeleton (notebook, exercises module, _toc.yml entry;
#                see CONTRIBUTING.md)
#   make serve   serve _build/html on http://127.0.0.1:8000
#   make clean   remove build outputs (make distclean also removes .venv and node_modules)
#
# Each target first creates or updates the local virtual environment .venv and the
# browser assets (MathJax, ...) by itself. Variables:
#   TORCH_SPEC   how to install PyTorch (default: torch==2.13.0), e.g.
#                make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
#   PIP_UPGRADE  1 = upgrade every dependency to its newest release (the weekly CI run)
#   PYTHON       the interpreter that creates .venv (default: python3, 3.11 or newer)
#   JOBS         parallel test workers, one thread each (default: the number of cores;
#                JOBS=1: one process, PyTorch's own threads)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_UPGRADE ?=

PY := $(VENV)/bin/python
UPGRADING := $(filter 1 yes true,$(PIP_UPGRADE))
PIP_INSTALL := $(PY) -m pip install --disable-pip-version-check $(if $(UPGRADING),--upgrade --upgrade-strategy eager)
VENV_STAMP := $(VENV)/.attnbook-installed
NODE_STAMP := node_modules/.attnbook-installed
VENDOR_STAMP := _static_vendor/.attnbook-copied

# Quiet, offline, reproducible runs (notebooks, book build and tests alike).
export PATH := $(abspath $(VENV))/bin:$(PATH)
export TQDM_DISABLE := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# MPLBACKEND is NOT exported: a Jupyter kernel only picks the inline backend (figures in
# the book) when MPLBACKEND is unset. Plain pytest runs get Agg (no windows) below.

.PHONY: help venv assets chapter book test test-code test-unit test-notebooks test-site sync student grade serve clean distclean FORCE

help:
	@sed -n '3,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

# --- environments -----------------------------------------------------------------------

venv: $(VENV_STAMP)

# PyTorch first (TORCH_SPEC), so the ranges in requirements*.txt never swap it for another build.
$(VENV_STAMP): requirements.txt requirements-dev.txt pyproject.toml $(if $(UPGRADING),FORCE)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) $(TORCH_SPEC)
	$(PIP_INSTALL) -r requirements-dev.txt
	$(PIP_INSTALL) -e .
	touch $@

assets: $(VENDOR_STAMP)

$(NODE_STAMP): package.json $(wildcard package-lock.json)
	if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
	touch $@

$(VENDOR_STAMP): $(NODE_STAMP) tools/vendor_files.txt tools/vendor_assets.py
	$(PYTHON) tools/vendor_assets.py
	touch $@

# Student versions of every chapter (solutions replaced by stubs) and a zip of them.
STUDENT_VERSIONS = $(PY) -m attnbook.course student notebooks/*.ipynb --zip attention-book-student.zip

# --- the book ---------------------------------------------------------------------------

# Chapter 8's BertViz views load require.js, d3 and jQuery from the site's _static/ (see
# attnbook.viz.assets); in Jupyter they are inlined, and on Colab they come from a CDN.
# Set for the notebook tests too, since their outputs become the book's pages.
book test-notebooks test-code: export ATTNBOOK_BERTVIZ_ASSETS := static

# The jupyter-cache the book build reads (_config.yml: execute_notebooks: cache; this is
# Jupyter Book's default place for it). `make test-notebooks` fills it with each chapter
# that nbval ran and passed (tools/nbval_cache.py), and `make test` then builds the book
# from it with REUSE_NB_CACHE=1, so each chapter is executed once. A chapter not in the
# cache (changed since, failed, or no test run before) is executed by the book build.
NB_CACHE := _build/.jupyter_cache
REUSE_NB_CACHE ?=

# Alone, `make book` starts from clean: _build removed, jupyter-cache included.
book: $(VENV_STAMP) $(VENDOR_STAMP)
	if [ -n "$(REUSE_NB_CACHE)" ] && [ -d $(NB_CACHE) ]; then \
	  find _build -mindepth 1 -maxdepth 1 ! -name $(notdir $(NB_CACHE)) -exec rm -rf {} +; \
	else rm -rf _build; fi
	jupyter-book build --all -W -n --keep-going .
	$(STUDENT_VERSIONS) --out _build/html/student
	@echo "Open _build/html/index.html"

serve:
	$(PYTHON) -m http.server --bind 127.0.0.1 --directory _build/html 8000

sync: $(VENV_STAMP)
	$(PY) tools/sync_notebooks.py

# --- course assignments (see book/instructors.md) ----------------------------------------

student: $(VENV_STAMP)
	$(STUDENT_VERSIONS) --out student

SUBMISSIONS ?=
grade: $(VENV_STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=path/to/folder  (see book/instructors.md)"; exit 2; }
	$(PY) -m attnbook.course grade "$(SUBMISSIONS)" --source notebooks --out grades

NN ?=
TITLE ?=
chapter: $(VENV_STAMP)
	@test -n "$(NN)" -a -n "$(TITLE)" || { echo 'usage: make chapter NN=11 TITLE="Topic"  (see CONTRIBUTING.md)'; exit 2; }
	$(PY) -m attnbook.course new-chapter $(NN) "$(TITLE)"

# --- tests (in this order: fast to slow) ------------------------------------------------

test: $(VENV_STAMP) $(VENDOR_STAMP)
	$(MAKE) --no-print-directory test-code
	$(MAKE) --no-print-directory book REUSE_NB_CACHE=1
	$(MAKE) --no-print-directory test-site

# JOBS pytest workers (pytest-xdist) share the cores, each on one thread (more threads
# per worker than cores oversubscribe OpenMP and slow everything down); JOBS=1 runs in
# one process with PyTorch's default threads. --dist loadfile keeps each test file, and
# each notebook, whole on one worker (nbval runs a notebook's cells in one kernel).
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
PARALLEL = $(if $(filter-out 0 1,$(JOBS)),OMP_NUM_THREADS=1 MKL_NUM_THREADS=1,)
XDIST = $(if $(filter-out 0 1,$(JOBS)),-n $(JOBS) --dist loadfile,)

# Each chapter once, with its own result checks (nbval); the executed chapters go into the
# book's jupyter-cache (see NB_CACHE above).
NBVAL = -p tools.nbval_cache --nbval-cache $(NB_CACHE) --nbval-lax --nbval-current-env

# `make test` runs the unit tests and the notebooks in ONE session, longest files first
# (tools/schedule.py), so that no worker waits idle at the end of one half for the other.
test-code: $(VENV_STAMP)
	$(PARALLEL) $(PY) -m pytest -p tools.schedule $(NBVAL) $(XDIST) $(if $(XDIST),--no-loadscope-reorder,) \
	  -m "not site" --durations=15 tests notebooks

test-unit: $(VENV_STAMP)
	$(PARALLEL) $(PY) -m pytest tests -m "not site" $(XDIST) --durations=10

test-notebooks: $(VENV_STAMP)
	$(PARALLEL) $(PY) -m pytest $(NBVAL) $(XDIST) --durations=12 notebooks

test-site: $(VENV_STAMP)
	$(PY) -m pytest tests -m site

# --- housekeeping -----------------------------------------------------------------------

clean:
	rm -rf _build _static_vendor .pytest_cache .hypothesis student grades
	find . -path ./$(VENV) -prune -o -path ./node_modules -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV) node_modules src/*.egg-info

FORCE:
