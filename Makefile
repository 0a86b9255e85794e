# losscorrection: development tasks.
#   make test   create .venv, install the package with its test extra, run pytest
#   make book   execute the notebooks (PROFILE=paper|quick|smoke) and build the
#               Jupyter Book into _build/html
#   make browser  headless Chromium and a local MathJax 3 for the test that
#               renders the book in a browser (best effort; `make test` runs it)
#   make clean  remove the book build

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Notebook profile for `make book`: paper (committed results, trains only what is
# missing and feasible), quick (minutes on a CPU), smoke (seconds).
PROFILE ?= paper
DEVICE ?= auto
# A chapter trains its missing cells only when they are estimated to take at
# most BUDGET minutes; otherwise it says what they would cost.
BUDGET ?= 5
# pytest's own exit status is recorded here, because make reports every
# failing recipe as status 2 (see .ci/run).
PYTEST_RC_FILE ?= $(VENV)/.pytest-exit-code

.PHONY: install browser test book clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Best effort: Debian's chromium (needs root and apt-get) and MathJax 3 from the
# npm registry (the book loads MathJax from a CDN, which a test cannot rely on).
# Where either cannot be had, the browser test is skipped and says why.
MATHJAX_DIR := $(VENV)/mathjax
browser: install
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& timeout 300 apt-get install -y -q -o Acquire::http::Timeout=20 -o Acquire::Retries=0 \
			chromium >/dev/null 2>&1; } \
		|| echo "note: could not install Debian's chromium; the browser test will be skipped"
	@test -f $(MATHJAX_DIR)/es5/tex-mml-chtml.js || { command -v npm >/dev/null 2>&1 \
		&& rm -rf $(MATHJAX_DIR) && mkdir -p $(MATHJAX_DIR) \
		&& timeout 120 npm pack --silent --fetch-timeout=20000 --fetch-retries=0 \
			--pack-destination $(MATHJAX_DIR) mathjax@3 >/dev/null 2>&1 \
		&& tar xzf $(MATHJAX_DIR)/mathjax-3*.tgz -C $(MATHJAX_DIR) --strip-components=1 \
		&& rm $(MATHJAX_DIR)/mathjax-3*.tgz; } \
		|| echo "note: could not fetch MathJax 3 with npm; the browser test will be skipped"

# BROWSER=no: leave the system alone (the browser test is then skipped).
BROWSER ?= yes
test: install $(if $(filter yes,$(BROWSER)),browser)
	@rm -f $(PYTEST_RC_FILE)
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; echo $$rc > $(PYTEST_RC_FILE); exit $$rc

# Notebooks are executed by papermill into book/generated/, then rendered.
# The repository root is the book's source; pages are selected by book/_toc.yml.
# --path-output . puts the result in ./_build/html. -W -n --keep-going turns
# every warning (including broken references) into a build failure.
book: install
	$(PY) book/execute_notebooks.py --profile $(PROFILE) --device $(DEVICE) --budget-minutes $(BUDGET)
	$(VENV)/bin/jupyter-book build . --path-output . --config _config.yml --toc book/_toc.yml -W -n --keep-going

clean:
	rm -rf _build book/generated
