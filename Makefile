# The two commands of the README: `make demo` (set up + run the whole pipeline on the embedded digits
# set) and `make test` (set up + run the tests). Both create/reuse .venv and install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.qcfs-installed

.PHONY: setup demo test bench docs clean

$(STAMP): pyproject.toml constraints.txt scripts/setup_env.sh
	bash scripts/setup_env.sh $(VENV)
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

docs: $(STAMP)
	$(PY) scripts/build_api_docs.py out/api

clean:
	rm -rf out .pytest_cache
