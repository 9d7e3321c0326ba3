"""ngc_cuda: ngc_ref's public names, running the CUDA kernels of kernels/*.cu.

Two backends, chosen by the type of the arrays passed in (`backend_of`):
  "cuda"      CuPy arrays   -> the kernels run on the GPU (cupy.RawModule, compiled once per device)
  "cuda-emu"  NumPy arrays  -> the same .cu files run on the CPU emulator (ngc_cuda/emu, g++), so the
                               kernels' logic is checked on a machine without a GPU
Outputs have the inputs' array type. Everything is float32.

    import ngc_cuda
    ngc_cuda.ops.conv2d(x, w, stride=2)                   # == ngc_ref.ops.conv2d
    res = ngc_cuda.model.settle(params, x, cfg, z_top)   # == ngc_ref.model.settle

Importing this package needs neither CuPy nor a GPU.
"""
import functools

import numpy as np

__all__ = ["available", "require_gpu", "backend_of", "array_module", "ops", "model", "optim", "BACKENDS"]

BACKENDS = ("cuda", "cuda-emu")


def _cupy():
    """The cupy module, or None when it is not installed (or does not import)."""
    try:
        import cupy
    except Exception:            # ImportError, or a broken CUDA install raising at import
        return None
    return cupy


@functools.lru_cache(maxsize=None)
def available():
    """True only when CuPy imports and a CUDA GPU is usable (asked once per process)."""
    cp = _cupy()
    if cp is None:
        return False
    try:
        return bool(cp.cuda.is_available())
    except Exception:
        return False


def require_gpu():
    """Raise a RuntimeError that says how to proceed when there is no usable GPU."""
    if available():
        return
    why = "CuPy is not installed" if _cupy() is None else "CuPy finds no usable CUDA GPU/driver"
    raise RuntimeError(
        "ngc_cuda: the 'cuda' backend needs a GPU, but %s. To validate the same kernels without a GPU use "
        "the emulated backend 'cuda-emu': pass NumPy float32 arrays to ngc_cuda.ops / ngc_cuda.model / "
        "ngc_cuda.optim and the unchanged kernels/*.cu run on the CPU emulator (ngc_cuda/emu)." % why)


def _is_cupy(a):
    return type(a).__module__.split(".")[0] == "cupy"


def backend_of(*arrays):
    """'cuda' for CuPy arrays, 'cuda-emu' for NumPy arrays (None entries are ignored).

    Raises TypeError for anything else or for a mix of the two, which would otherwise reach a kernel
    as a host pointer on the GPU (or a device pointer on the CPU).
    """
    kinds = set()
    for a in arrays:
        if a is None:
            continue
        if isinstance(a, np.ndarray):
            kinds.add("cuda-emu")
        elif _is_cupy(a):
            kinds.add("cuda")
        else:
            raise TypeError("ngc_cuda: expected NumPy (emulated kernels) or CuPy (GPU) arrays, got %s"
                            % type(a).__name__)
    if len(kinds) > 1:
        raise TypeError("ngc_cuda: arrays mix NumPy and CuPy; pass all NumPy (backend 'cuda-emu') or all "
                        "CuPy (backend 'cuda')")
    if not kinds:
        raise TypeError("ngc_cuda: no array given to choose a backend from")
    return kinds.pop()


def array_module(backend):
    """numpy for 'cuda-emu', cupy for 'cuda'."""
    if backend == "cuda-emu":
        return np
    if backend == "cuda":
        require_gpu()
        return _cupy()
    raise ValueError("backend must be one of %s, got %r" % (BACKENDS, backend))


from . import ops, model, optim  # noqa: E402,F401  (none of them imports CuPy at import time)
