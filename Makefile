# The two commands of the README: `make run` trains an agent, `make test` runs the tests.
# Each bootstraps .venv on first use (scripts/setup.sh) and skips that on later calls.
VENV ?= .venv
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: setup run test bench test-vllm clean

setup:
	@bash scripts/setup.sh

run: setup
	$(VENV)/bin/agentgym train examples/household_quickstart.yaml

test: setup
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/agentgym bench

test-vllm: setup
	bash scripts/test_vllm.sh

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
