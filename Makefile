# Conv-NGC: the commands a newcomer needs. PYTHON may point at a virtualenv's interpreter.
PYTHON ?= python3
PIP_FLAGS ?= --quiet --disable-pip-version-check

.PHONY: install run test test-ref test-emu compile-check resources golden bench gpu-check clean

install:                ## install the package, its console command and the test/compile-check tools
	$(PYTHON) -m pip install $(PIP_FLAGS) -e ".[dev]"

run: install            ## the main job: train + evaluate on embedded real images (no download)
	$(PYTHON) -m convngc.cli run

test: install           ## kernel compile check (sm_80, sm_90) + every test (kernels emulated on the CPU)
	$(PYTHON) -m ngc_cuda.compile_check --check
	$(PYTHON) -m pytest -q tests

test-ref: install       ## only the NumPy reference and the shared code
	$(PYTHON) -m pytest -q tests --ignore-glob='tests/test_cuda*' --ignore=tests/test_emu.py

test-emu: install       ## only the CUDA kernels, emulated on the CPU (four thread orders, guard zones, ASan)
	$(PYTHON) -m pytest -q tests/test_emu.py tests/test_cuda_ops.py tests/test_cuda_model.py tests/test_cuda_settle_whole.py tests/test_golden.py

compile-check:          ## compile kernels/*.cu with NVRTC for sm_80/sm_90 and compare with kernels/resources.json + README table
	$(PYTHON) -m ngc_cuda.compile_check --check

resources:              ## regenerate the committed resource table (in kernels/README.md, and kernels/resources.json)
	$(PYTHON) -m ngc_cuda.compile_check --write kernels/README.md

golden:                 ## rewrite tests/golden/paper_T60.npz from ngc_ref (only after a deliberate change of the reference)
	$(PYTHON) tests/golden_data.py

bench: install          ## CPU: the cpu backend vs PyTorch eager vs the NumPy reference (paper config, B 100/500)
	$(PYTHON) bench/cpu_bench.py

gpu-check:              ## on a machine with a GPU: kernel tests, compute-sanitizer, benchmark
	bash bench/gpu_check.sh

clean:
	rm -rf build dist *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
