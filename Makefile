# Conv-NGC: the commands a newcomer needs.
# Python: $(PYTHON) if given (PYTHON=/path/to/python make ...), else the active virtualenv's, else a project
# virtualenv .venv/ made on first use. Nothing is installed into the system Python, which may be "externally
# managed" (Debian, Ubuntu) and refuse pip.
PIP_FLAGS ?= --quiet --disable-pip-version-check

ifeq ($(origin PYTHON),undefined)
  ifneq ($(VIRTUAL_ENV),)
    PYTHON := $(VIRTUAL_ENV)/bin/python
    PYTHON_NOTE := $(PYTHON), the active virtualenv
  else
    PYTHON := .venv/bin/python
    VENV := .venv
    PYTHON_NOTE := $(PYTHON), the project virtualenv .venv/ (made on first use; PYTHON=... or an active virtualenv picks another)
  endif
else
  PYTHON_NOTE := $(PYTHON), as PYTHON says
endif

.PHONY: install install-test run test test-ref test-emu compile-check resources golden bench gpu-check clean

install: $(VENV)        ## install the package, its console command and the test/compile-check tools
	@echo "convngc: Python is $(PYTHON_NOTE)"
	$(PYTHON) -m pip install $(PIP_FLAGS) -e ".[dev]"

# The tests of the baselines (Conv-AE/DAE and the PyTorch model in PyTorch, BM3D) and of the fan-out on Ray (serial
# and 2 Ray workers write the same raw JSON; a killed worker's job runs again) need the optional extras: `make
# test` installs them, so that no check is skipped (a PyTorch already installed, e.g. the small CPU build, is
# kept). BASELINES=0 or CLUSTER=0 make test leaves them out; those tests then skip, saying they are not a pass.
BASELINES ?= 1
CLUSTER ?= 1
install-test: install
ifeq ($(BASELINES),1)
	$(PYTHON) -m pip install $(PIP_FLAGS) -e ".[dev,baselines]"
endif
ifeq ($(CLUSTER),1)
	$(PYTHON) -m pip install $(PIP_FLAGS) -e ".[dev,cluster]"
endif

ifdef VENV
$(VENV):
	python3 -m venv $(VENV) || { echo "convngc: 'python3 -m venv' failed; on Debian/Ubuntu: sudo apt install python3-venv"; exit 1; }
endif

run: install            ## the main job: train + evaluate on embedded real images (no download)
	$(PYTHON) -m convngc.cli run

test: install-test      ## kernel compile check (sm_80, sm_90) + every test (kernels emulated on the CPU)
	$(PYTHON) -m ngc_cuda.compile_check --check
	$(PYTHON) -m pytest -q tests

test-ref: install       ## only the NumPy reference and the shared code
	$(PYTHON) -m pytest -q tests --ignore-glob='tests/test_cuda*' --ignore=tests/test_emu.py

test-emu: install       ## only the CUDA kernels, emulated on the CPU (four thread orders, guard zones, ASan)
	$(PYTHON) -m pytest -q tests/test_emu.py tests/test_cuda_ops.py tests/test_cuda_model.py tests/test_cuda_settle_whole.py tests/test_golden.py

compile-check: install  ## compile kernels/*.cu with NVRTC for sm_80/sm_90 and compare with kernels/resources.json + README table
	$(PYTHON) -m ngc_cuda.compile_check --check

resources: install      ## regenerate the committed resource table (in kernels/README.md, and kernels/resources.json)
	$(PYTHON) -m ngc_cuda.compile_check --write kernels/README.md

golden: install         ## rewrite tests/golden/paper_T60.npz from ngc_ref (only after a deliberate change of the reference)
	$(PYTHON) tests/golden_data.py

bench: install          ## CPU: the cpu backend vs PyTorch eager vs the NumPy reference (paper config, B 100/500)
	$(PYTHON) bench/cpu_bench.py

gpu-check:              ## on a machine with a GPU: kernel tests, compute-sanitizer, benchmark
	bash bench/gpu_check.sh

clean:                  ## build leftovers (the .venv/ stays; remove it by hand to start afresh)
	rm -rf build dist *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
