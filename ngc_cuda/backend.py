"""Which backend runs a call, decided once at the entry of a public ngc_cuda function and passed down.

    "cuda"      CuPy arrays   -> the kernels run on the GPU (cupy.RawModule, compiled once per device)
    "cuda-emu"  NumPy arrays  -> the same kernels/*.cu run on the CPU emulator (cuda_emu, g++)

Every public function of ngc_cuda takes `backend=None`. A name (convngc passes the one the user chose) is
used as given; None asks the type of the arrays, once (`resolve`). Below the entry no function looks at
array types again, except to refuse an array of the other kind (`belongs`, used by checks.py). This is
also where the device is asked what it allows (`max_shared_memory`). Importing it needs no CuPy.
"""
import functools

import numpy as np

__all__ = ["BACKENDS", "available", "require_gpu", "backend_of", "resolve", "resolve_all", "array_module", "belongs",
           "max_shared_memory"]

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
        "ngc_cuda.optim and the unchanged kernels/*.cu run on the CPU emulator (cuda_emu)." % why)


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


def resolve(backend, *arrays):
    """The backend of this call: `backend` itself when given (checked), else `backend_of(*arrays)`."""
    if backend is None:
        return backend_of(*arrays)
    if backend not in BACKENDS:
        raise ValueError("ngc_cuda: backend must be one of %s, got %r" % (BACKENDS, backend))
    if backend == "cuda":
        require_gpu()
    return backend


def resolve_all(op, backend, params, x, z_top):
    """The backend of a settle call (`resolve`), and every one of its arrays of that backend's kind: a NumPy
    array among CuPy ones would reach a kernel as a host pointer (TypeError naming the array)."""
    backend = resolve(backend, x, z_top)
    arrays = {"x": x, "z_top": z_top}
    for key in ("W", "b", "E"):
        for l, a in enumerate(params.get(key) or []):
            if a is not None:
                arrays["params[%r][%d]" % (key, l)] = a
    for name, a in arrays.items():
        if not belongs(a, backend):
            raise TypeError("%s: %s must be a %s array for backend %r, got %s"
                            % (op, name, "CuPy" if backend == "cuda" else "NumPy", backend, type(a).__module__))
    return backend


def array_module(backend):
    """numpy for 'cuda-emu', cupy for 'cuda'."""
    if backend == "cuda-emu":
        return np
    if backend == "cuda":
        require_gpu()
        return _cupy()
    raise ValueError("backend must be one of %s, got %r" % (BACKENDS, backend))


def belongs(a, backend):
    """Is `a` an array of this backend's kind (CuPy for 'cuda', NumPy for 'cuda-emu')?"""
    return _is_cupy(a) if backend == "cuda" else isinstance(a, np.ndarray)


def max_shared_memory(backend):
    """Dynamic shared memory one block may use after opting in: the current GPU's limit, or the
    emulator's (cuda_emu.H100_SMEM_LIMIT, what every emulated launch gets)."""
    if backend == "cuda":
        return int(_cupy().cuda.Device().attributes["MaxSharedMemoryPerBlockOptin"])
    from cuda_emu import H100_SMEM_LIMIT
    return H100_SMEM_LIMIT
