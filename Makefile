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
HAS_AVX512 := $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo yes)
OTHER_KERNELS := $(if $(HAS_AVX512),ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2,ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41)

# The third pass, on an AVX-512 machine with qemu-user: the integer backends' exactness tests (marker `isa`) on an
# emulated AVX2-only CPU (no AVX-512, no VNNI), where onnxruntime's MLAS, OpenBLAS, NumPy and numba pick the
# kernels an AVX2 machine runs; they must give the same integers. Emulation is ~10x slower: timings mean nothing,
# and only the three files holding `isa` tests are collected (collecting the rest imports torch, minutes emulated).
AVX2_CPU := Haswell-noTSX,-invpcid,-x2apic,-tsc-deadline,-pcid
EMULATE_AVX2 := $(if $(HAS_AVX512),$(shell command -v qemu-x86_64 2>/dev/null))

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests
	env $(OTHER_KERNELS) $(PY) -m pytest -q -p no:cacheprovider -m kernels tests
ifneq ($(EMULATE_AVX2),)
	$(EMULATE_AVX2) -cpu $(AVX2_CPU) $(PY) -m pytest -q -p no:cacheprovider -m isa tests/test_fused_snn.py tests/test_ort_snn.py tests/test_layer_major.py
else
	@echo "note: the AVX2-emulation pass needs qemu-user (qemu-x86_64) on an AVX-512 machine; skipped"
endif

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

docs: $(STAMP)
	$(PY) scripts/build_api_docs.py out/api

clean:
	rm -rf out .pytest_cache
