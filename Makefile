# losscorrection: development tasks.
#   make test   create .venv, install the package with its test extra, run pytest
#   make book   execute the notebooks (PROFILE=paper|quick|smoke) and build the
#               Jupyter Book into _build/html
#   make clean  remove the book build

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Notebook profile for `make book`: paper (committed results, trains only what is
# missing and feasible), quick (minutes on a CPU), smoke (seconds).
PROFILE ?= paper
DEVICE ?= auto
# pytest's own exit status is recorded here, because make reports every
# failing recipe as status 2 (see .ci/run).
PYTEST_RC_FILE ?= $(VENV)/.pytest-exit-code

.PHONY: install test book clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install
	@rm -f $(PYTEST_RC_FILE)
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; echo $$rc > $(PYTEST_RC_FILE); exit $$rc

# Notebooks are executed by papermill into book/generated/, then rendered.
# The repository root is the book's source; pages are selected by book/_toc.yml.
# --path-output . puts the result in ./_build/html. -W -n --keep-going turns
# every warning (including broken references) into a build failure.
book: install
	$(PY) book/execute_notebooks.py --profile $(PROFILE) --device $(DEVICE)
	$(VENV)/bin/jupyter-book build . --path-output . --config _config.yml --toc book/_toc.yml -W -n --keep-going

clean:
	rm -rf _build book/generated
