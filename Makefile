# rdpipe — the README's two set-up commands are `make run` and `make test`; both install first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt
# Datasets prepared by tensorflow-datasets stay inside the checkout unless the caller says otherwise.
export TFDS_DATA_DIR ?= $(CURDIR)/.cache/tensorflow_datasets
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: install run test test-fast bench zoo train-zoo lock clean

install: $(STAMP)

# Re-runs only when the dependency declarations change; `pip install` with every version pinned
# by the lock file never backtracks (~2 min cold, seconds when nothing changed).
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "rdpipe needs Python 3.11, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --ignore-requires-python \
	    -c $(CONSTRAINTS) -e '.[test,kubeflow]'
	touch $@

run: install
	$(BIN)/rdpipe pipeline run --config mnist-quick

# Two workers (the CI's 2 cores); whole files per worker, so module fixtures are built once.
test: install
	$(BIN)/pytest -n 2 --dist loadfile

# While developing: everything but the tests marked slow (real pipeline runs, training, servers
# as processes). CI and `make test` run them all.
test-fast: install
	$(BIN)/pytest -n 2 --dist loadfile -m "not slow"

bench: bench-mnist bench-serving bench-coder bench-svd

# Every benchmark: `make bench-NAME [BENCH_ARGS=...]` runs benchmarks/bench_NAME.py (dashes as
# underscores). Times on 2 cores: mnist ~30 min, serving/coder/svd minutes, kodak hours (trains
# 4 λ; not part of `make bench`), race hours (see below), recipe ~25 min, train-speed ~5 min,
# big-photo ~5 min (12 and 48 MP through the tiled path), mnist-trainer ~2 min,
# mnist-overhead ~1 min (after bench-mnist: where MNIST strings' bits go), decode-fuzz (--cases N;
# ~0.2 s per case), decode-speed ~5 min (zoo exports vs today's re-export, Kodak + 1.5/4.7 MP),
# integer-indexes ~10 min (trains a small hyperprior; integer vs float table indexes),
# hyperprior-decode ~3 min (mean-scale decode parts; the rANS v2 lane rule before and since 2026-12-02).
bench-%: install
	$(BIN)/python benchmarks/bench_$(subst -,_,$*).py $(BENCH_ARGS)

# The Ballé 2017 quality ladder (anchor + every λ) as one resumable job: checkpoints in
# $$RDPIPE_CACHE (default ~/.cache/rdpipe), outside the work tree; run it again to continue.
# Hours on 2 cores (docs: README "Training the ladder"). E.g. make train-zoo TRAIN_ARGS="--hours 2.5"
train-zoo: install
	$(BIN)/rdpipe train-zoo $(TRAIN_ARGS)

# Replaces the zoo's models of one family (zoo/) with the models of the last `make bench-kodak`
# of that ladder and cards from its report; other families stay. Deliberate: commit a new zoo
# only when the models improve (git history). E.g. the mean-scale ladder:
#   make zoo ZOO_LADDER=mbt2018-mean ZOO_REPORT=benchmarks/results/kodak_mbt2018.json
ZOO_LADDER ?= bls2017
ZOO_REPORT ?= benchmarks/results/kodak.json
zoo: install
	$(BIN)/rdpipe zoo build --models-dir $${RDPIPE_CACHE:-$$HOME/.cache/rdpipe}/ladders/$(ZOO_LADDER) \
	    --report $(ZOO_REPORT)

# Hours on 2 cores. The reference side runs TensorFlow Compression 2.14.1 on TF 2.14.1 in its own
# virtualenv (.venv-peer): a comparison only, never a dependency of rdpipe nor of `make test`.
PEER := .venv-peer
PEER_STAMP := $(PEER)/.installed
$(PEER_STAMP):
	test -x $(PEER)/bin/python || $(PYTHON) -m venv $(PEER)
	$(PEER)/bin/pip install --quiet --disable-pip-version-check \
	    tensorflow==2.14.1 tensorflow-compression==2.14.1 pillow
	touch $@

bench-race: $(PEER_STAMP)

# Regenerate the lock file from the current environment (after a deliberate upgrade).
lock: install
	{ head -4 $(CONSTRAINTS); $(BIN)/pip freeze --exclude-editable | sort -f; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) $(PEER) .cache .pytest_cache
