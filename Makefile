# clipwb — everything a new user runs. The venv lives in .venv/ (git-ignored) and is
# (re)built only when settings.ini, setup.py or constraints.txt change, so a second `make test` installs nothing.
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PYTEST_WORKERS ?= 2   # pytest-xdist workers for `make test` (--dist loadfile: a file's tests share one worker)
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install lock browser mathjax slurm-up slurm-down test test-fast lint demo demo-quick lab bench export sync-params clean-nbs docs readme

# constraints.txt: the tested versions of every package (settings.ini only states compatible ranges)
$(STAMP): settings.ini setup.py constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,cpu]" -c constraints.txt
	@touch $(STAMP)

install: $(STAMP)  ## create/update the project venv: the tested stack (constraints.txt)

lock: install      ## rewrite constraints.txt from the venv, after the test suite passed with a new stack
	@{ sed -n '/^#/p' constraints.txt; $(PY) -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

browser:           ## Debian's chromium for the JupyterLab widget test (apt-get; no-op when present)
	bash tools/install_browser.sh

mathjax:           ## Debian's libjs-mathjax, which the documentation site serves itself (apt-get; no-op when present)
	bash tools/install_docs_deps.sh

slurm-up:          ## a private one-node SLURM on localhost (apt-get installs when missing; state in /tmp/clipwb-slurm)
	bash tools/slurm_local.sh up

slurm-down:        ## stop the daemons slurm-up started
	bash tools/slurm_local.sh down

# test: notebook examples (nbdev_test), the torchrun (gloo, 2 processes) checks flagged slow in 30_train, the MCL
# tutorial's feature-suppression experiment (seed 0, ~5 min) and its assertions, then the pytest suite with the local
# SLURM up (its tests skip, saying why, if it cannot start); SLURM is stopped after.
test: install browser mathjax
	$(VENV)/bin/nbdev_test --n_workers 2
	$(VENV)/bin/nbdev_test --path nbs/30_train.ipynb --flags slow
	$(VENV)/bin/nbdev_test --path nbs/tutorials/03_mcl.ipynb --flags slow
	bash tools/slurm_local.sh up || echo "make test: the local SLURM did not start; the slurm tests will be skipped"; \
	export SLURM_CONF=$${CLIPWB_SLURM_DIR:-/tmp/clipwb-slurm}/slurm.conf; \
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=15; rc=$$?; \
	bash tools/slurm_local.sh down; exit $$rc

lint: install      ## ruff over the package, the notebooks, tests, tools and benchmarks (ruff.toml; tests/test_hygiene.py runs it too)
	$(VENV)/bin/ruff check clipwb nbs tests tools benchmarks

test-fast: install ## pytest without the papermill end-to-end tests
	$(PY) -m pytest -m "not e2e"

demo: install      ## the demo chain (demo_plan; the same as pipelines/demo.yaml) with its report.html
	$(VENV)/bin/clipwb demo

demo-quick: install
	$(VENV)/bin/clipwb demo --quick

lab: install       ## JupyterLab on nbs/
	$(VENV)/bin/jupyter lab --notebook-dir=nbs

bench: install     ## benchmarks: printed ratios (about half an hour on 2 CPU cores; each script takes --help)
	$(PY) benchmarks/bench_embed.py
	$(PY) benchmarks/bench_embed.py --model clipwb-tiny --data openmoji --n 1024 --batch-size 128
	$(PY) benchmarks/bench_webdataset.py
	$(PY) benchmarks/bench_cluster.py
	$(PY) benchmarks/bench_cluster_stream.py
	$(PY) benchmarks/bench_umap.py
	$(PY) benchmarks/bench_merge.py
	$(PY) benchmarks/bench_gram.py
	$(PY) benchmarks/bench_moe.py
	$(PY) benchmarks/bench_mode.py

export: install    ## regenerate clipwb/ from nbs/, the stage notebooks' parameters cells, clean notebooks, README.md from nbs/index.ipynb
	$(VENV)/bin/nbdev_clean && $(VENV)/bin/nbdev_export && $(PY) tools/sync_stage_params.py && $(VENV)/bin/nbdev_clean && $(PY) tools/readme.py

sync-params: install  ## rewrite each stage notebook's parameters cell from its config class (after changing one)
	$(PY) tools/sync_stage_params.py

readme: install    ## README.md from nbs/index.ipynb (the docs' home page; tests/test_docs.py checks they agree)
	$(PY) tools/readme.py

# docs: every notebook of nbs/ prepared into _proc/ (hidden cells dropped, nbdev's show_doc after each export cell),
# then sphinx-build (myst-nb, sphinx-book-theme; notebooks are not executed) into _docs/ with MathJax copied in.
# Any Sphinx warning fails it, a broken link between notebooks among them. make test builds it too (tests/test_docs.py).
docs: install mathjax  ## the documentation site in _docs/ (open _docs/index.html)
	$(PY) tools/build_docs.py
