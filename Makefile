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

.PHONY: install install-test run test test-fast test-ref test-emu compile-check resources docs cli-docs perf-docs golden bench gpu-check clean

install: $(VENV)        ## install the package, its console command and the test/compile-check tools
	@echo "convngc: Python is $(PYTHON_NOTE)"
	$(PYTHON) -m pip install $(PIP_FLAGS) -e ".[dev]"

# The tests of the baselines (Conv-AE/DAE and the PyTorch model in PyTorch, BM3D) and of the fan-out on Ray (serial
# and 2 Ray workers write the same raw JSON; a killed worker's job runs again) need the optional extras: `make
# test` installs them, so that no check is skipped. PyTorch is the CPU build, pinned: a plain `pip install torch`
# on Linux takes PyPI's CUDA build (6 GB in .venv/, about 20 minutes to install) for tests that run on the CPU;
# the CPU wheel is a 0.19 GB download, 0.75 GB installed. $(TORCH) comes from $(TORCH_INDEX) (PyTorch's CPU
# wheels; its +cpu version ranks above PyPI's own) or from the wheels pip already finds. A PyTorch already
# installed is kept, whatever its build. BASELINES=0 or CLUSTER=0 make test leaves the extras out; those tests
# then skip, saying they are not a pass.
BASELINES ?= 1
CLUSTER ?= 1
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
install-test: install
ifeq ($(BASELINES),1)
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install $(PIP_FLAGS) "$(TORCH)" --extra-index-url $(TORCH_INDEX)
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

# The tests live in rings (tests/conftest.py and tests/helpers.py serve them all): tests/ref (the reference against
# independent math), tests/cpu and tests/cuda (each backend against the reference; the emulator), tests/conformance
# (the contract every backend keeps, parametrized over all of them; the golden file), tests/app (data, CLI, ...).
test-fast: install      ## the reference ring and every backend through the conformance suite: 16 s (34 s with cold compile caches)
	$(PYTHON) -m pytest -q tests/ref tests/conformance -m "not slow"

test-ref: install       ## everything but the CUDA kernels' own ring (tests/cuda)
	$(PYTHON) -m pytest -q tests --ignore=tests/cuda

test-emu: install       ## only the CUDA kernels, emulated on the CPU (four thread orders, guard zones, ASan), and the contract
	$(PYTHON) -m pytest -q tests/cuda tests/conformance

compile-check: install  ## compile kernels/*.cu with NVRTC for sm_80/sm_90 and compare with kernels/resources.json + README table
	$(PYTHON) -m ngc_cuda.compile_check --check

resources: install      ## regenerate the committed resource table (in kernels/README.md, and kernels/resources.json)
	$(PYTHON) -m ngc_cuda.compile_check --write kernels/README.md

docs: install           ## regenerate the generated parts of docs/cli.md (the parsers) and docs/performance.md (bench/results/*.json)
	$(PYTHON) docs/generate.py

cli-docs: install       ## only docs/cli.md's option tables
	$(PYTHON) docs/generate.py cli

perf-docs: install      ## only docs/performance.md's tables, from bench/results/*.json
	$(PYTHON) docs/generate.py performance

golden: install         ## rewrite tests/golden/paper_T60.npz from ngc_ref (only after a deliberate change of the reference)
	$(PYTHON) tests/golden_data.py

bench: install          ## CPU: the cpu backend vs PyTorch eager vs the NumPy reference (paper config, B 100/500)
	$(PYTHON) bench/cpu_bench.py

gpu-check:              ## on a machine with a GPU: kernel tests, compute-sanitizer, benchmark
	bash bench/gpu_check.sh

clean:                  ## build leftovers (the .venv/ stays; remove it by hand to start afresh)
	rm -rf build dist *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
