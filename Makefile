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

# The second pass: float-sensitive tests (marker `kernels`) under another set of CPU kernels than the machine's
# best (torch's ATen and oneDNN), so a tolerance that holds for one CPU only fails here, not on a user's laptop.
OTHER_KERNELS := $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null \
	&& echo "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2" \
	|| echo "ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41")

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests
	env $(OTHER_KERNELS) $(PY) -m pytest -q -p no:cacheprovider -m kernels tests

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

docs: $(STAMP)
	$(PY) scripts/build_api_docs.py out/api

clean:
	rm -rf out .pytest_cache
