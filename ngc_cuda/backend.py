"""Where an ngc_cuda call runs, decided once at the entry of a public function and passed down as a Device.

    "cuda"      CuPy arrays   -> the kernels run on the GPU (cupy.RawModule, compiled once per device)
    "cuda-emu"  NumPy arrays  -> the same kernels/*.cu run on the CPU emulator (cuda_emu, g++)

Every public function of ngc_cuda takes `backend=None`. A name (convngc passes the one the user chose) is
used as given; None asks the type of the arrays, once (`resolve`). Either way the entry turns it into a
`Device`, and everything below the entry is handed that object, not the name: the array module, the
allocations, the kernel launches and the shared-memory limit are its own, so no function below the entry
looks at a name or an array type again (checks.py asks the device whether an array is its own, at the
entry). Importing this module needs no CuPy.
"""
import functools

import numpy as np

from . import launch
from .defines import SMEM_GUARD_FLOATS

__all__ = ["BACKENDS", "Device", "available", "require_gpu", "backend_of", "device", "resolve", "array_module"]

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


class Device:
    """Where the kernels of one call run: a GPU ("cuda", the one current at the entry) or the CPU emulator
    ("cuda-emu"). Made by `device` / `resolve`, once per process and GPU.

        name          "cuda" or "cuda-emu"
        xp            the module of its arrays: cupy or numpy
        owns(a)       is `a` an array of this device (CuPy for "cuda", NumPy for "cuda-emu")
        empty(shape), zeros(shape)    float32 arrays for a kernel to write
        unused        a float32 array standing for an argument a kernel is told (by a 0 flag) not to read
        launch(file, kernel, grid, block, args, shared_mem=0)    one launch of a compiled kernel (launch.py)
        smem_limit    the dynamic shared memory one block may use after opting in: the GPU's, or the
                      emulator's (cuda_emu.H100_SMEM_LIMIT, what every emulated launch gets)
        smem_guard    floats left between the shared-memory areas of a kernel that names them: 0 on a GPU,
                      the guard zone that the emulator checks (defines.SMEM_GUARD_FLOATS)
    """

    def __init__(self, name, gpu_id=None):
        self.name, self.gpu_id = name, gpu_id
        self.xp = _cupy() if name == "cuda" else np
        self.smem_guard = SMEM_GUARD_FLOATS[name]

    def __repr__(self):
        return "Device(%r%s)" % (self.name, "" if self.gpu_id is None else ", gpu %d" % self.gpu_id)

    def owns(self, a):
        return _is_cupy(a) if self.name == "cuda" else isinstance(a, np.ndarray)

    def empty(self, shape):
        return self.xp.empty(shape, np.float32)

    def zeros(self, shape):
        return self.xp.zeros(shape, np.float32)

    @functools.cached_property
    def unused(self):
        return self.xp.zeros(1, np.float32)

    @functools.cached_property
    def smem_limit(self):
        if self.name == "cuda":
            return int(self.xp.cuda.Device(self.gpu_id).attributes["MaxSharedMemoryPerBlockOptin"])
        from cuda_emu import H100_SMEM_LIMIT
        return H100_SMEM_LIMIT

    def launch(self, file, kernel, grid, block, args, shared_mem=0):
        """One launch of a 1-D grid of kernel `kernel` of kernels/<file>.cu. Dynamic shared memory above 48 KB
        is opted into, as a GPU requires. On the emulator, in the settings of launch.emulation."""
        f = launch.function(self.name, file, kernel, self.gpu_id)
        if shared_mem:
            f.max_dynamic_shared_size_bytes = int(shared_mem)
        f((int(grid),), (int(block),), args, shared_mem=int(shared_mem))


@functools.lru_cache(maxsize=None)
def _device(name, gpu_id):
    return Device(name, gpu_id)


def device(name):
    """The Device of a backend name; for "cuda" the GPU current now (RuntimeError when there is none)."""
    if name not in BACKENDS:
        raise ValueError("ngc_cuda: backend must be one of %s, got %r" % (BACKENDS, name))
    if name == "cuda":
        require_gpu()
        return _device(name, int(_cupy().cuda.runtime.getDevice()))
    return _device(name, None)


def resolve(backend, *arrays):
    """The Device of a call: the one `backend` names when given, else the one of the arrays' kind
    (`backend_of`). The entry of every public function calls this once."""
    return device(backend_of(*arrays) if backend is None else backend)


def array_module(backend):
    """numpy for 'cuda-emu', cupy for 'cuda'."""
    return device(backend).xp
