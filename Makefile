# Two entry points: `make run` (embed the bundled sample) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install run test lint sample models clean bench bench-store bench-gpu slurm-up slurm-down status faults

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# keep a torch + torchvision pair already in the venv (a cluster's CUDA build), else constraints.txt's
	@$(PY) -c "import torch, torchvision; print(f'torch=={torch.__version__.split(\"+\")[0]}'); print(f'torchvision=={torchvision.__version__.split(\"+\")[0]}')" \
	  > $(VENV)/constraints.txt 2>/dev/null || cp constraints.txt $(VENV)/constraints.txt; \
	  echo "pinned: $$(grep -v '^#' $(VENV)/constraints.txt | tr '\n' ' ')"
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e '.[test]'
	touch $@

install: $(STAMP)

sample_videos/.done: $(STAMP) pipeline/testing/sample.py
	$(PY) -m pipeline.testing.sample sample_videos
	touch $@

sample: sample_videos/.done

run: $(STAMP) sample_videos/.done
	$(PY) -m pipeline.launch $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

# Hostile inputs and injected faults only, the store's fault points and a randomized history among them;
# ends with the history's seed and figures and the count of inputs, faults and entries lost.
faults: $(STAMP)
	$(PY) -m pytest -q tests/e2e/test_bad_input.py tests/e2e/test_faults.py tests/store/test_log.py \
	  tests/store/test_leases.py tests/store/test_history.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline tests examples benchmarks
	$(VENV)/bin/mypy pipeline examples

# A one-node SLURM cluster on localhost (root): `make slurm-up`, then `make run ARGS=executor=slurm`.
slurm-up:
	bash jobs/slurm-up.sh

slurm-down:
	bash jobs/slurm-down.sh

status: $(STAMP)
	$(PY) -m pipeline.status store=embeddings.zarr $(ARGS)

clean:
	rm -rf embeddings.zarr sample_videos models .hydra .pytest_cache

# The store at 1,000 / 100,000 / 1,000,000 entries (16 writer processes) and a dry run over 100,000 tiny
# videos: files, index bytes, write, list and load times, entries lost (must be 0). About 20 GB of disk.
bench-store: $(STAMP)
	$(PY) benchmarks/store_scale.py $(ARGS)

bench: $(STAMP)
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/decode_cost.py
	$(PY) benchmarks/store_scale.py --sizes 1000,10000 --corpus 1000
	$(PY) benchmarks/balance.py
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/predictor.py

# Base-size models on a CUDA device (says so and exits 0 where there is none).
bench-gpu: $(STAMP)
	$(PY) benchmarks/gpu.py
