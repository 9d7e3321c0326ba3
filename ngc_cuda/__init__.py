"""ngc_cuda: ngc_ref's public names, running the CUDA kernels of kernels/*.cu.

Two backends, named by `backend=` or told apart by the arrays' type (backend.py):
  "cuda"      CuPy arrays   -> the kernels run on the GPU (cupy.RawModule, compiled once per device)
  "cuda-emu"  NumPy arrays  -> the same .cu files run on the CPU emulator (cuda_emu, g++), so the
                               kernels' logic is checked on a machine without a GPU
Outputs have the inputs' array type. Everything is float32.

    import ngc_cuda
    ngc_cuda.ops.conv2d(x, w, stride=2)                   # == ngc_ref.ops.conv2d
    res = ngc_cuda.model.settle(params, x, cfg, z_top)   # == ngc_ref.model.settle; res.path: which kernels

Modules, from the top: model (settle picks a path) -> settle_whole | ngc_step | ops | optim (the wrappers,
one per kernel file) -> checks (arguments, at each public function's entry) -> backend (the backend name
becomes a Device once, at the entry: array module, allocations, launches, shared-memory limit) -> launch
(compiled kernels, the emulator's settings) -> _load (compile) -> defines. Importing this package needs
neither CuPy nor a GPU.
"""
from .backend import BACKENDS, array_module, available, backend_of, require_gpu
from . import model, ops, optim

__all__ = ["BACKENDS", "available", "require_gpu", "backend_of", "array_module", "ops", "model", "optim"]
