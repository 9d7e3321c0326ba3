"""The launch layer under ops.py, ngc_step.py, settle_whole.py and optim.py: a compiled kernel (once per
file, device and emulator setting), the arrays it writes, the launch itself; and the emulator's settings
for the launches inside a `with emulation(...)` block (thread order, sanitizer).

    launch(backend, "ngc_step", "ngc_correct_v1", grid(n), BLOCK, (z, ..., i32(B), f32(beta), ...))

Scalars go to a kernel as i32/f32 (CuPy passes a Python int as long long), grids are ceil_div(n, block).
"""
import contextlib
import functools

import numpy as np

from . import _load
from .backend import array_module
from .defines import REDUCE_THREADS

__all__ = ["BLOCK", "REDUCE_THREADS", "i32", "f32", "ceil_div", "grid", "emulation", "emu_settings", "function",
           "launch", "empty", "zeros", "unused"]

BLOCK = 256            # threads per block of the one-thread-per-output kernels
i32, f32 = np.int32, np.float32
ORDERS = ("forward", "reverse", "shuffle", "warp")     # cuda_emu.ORDERS
_EMU = {"order": "forward", "sanitize": False}


def ceil_div(a, b):
    return -(-a // b)


def grid(n, block=BLOCK):
    """Blocks for n threads of `block` each."""
    return ceil_div(n, block)


# ---- the emulator's settings (tests run the kernels under other thread orders and the sanitizer) ----
@contextlib.contextmanager
def emulation(order="forward", sanitize=False):
    """Run emulated launches inside the block with another thread order ("forward", "reverse", "shuffle":
    every thread to its next barrier or warp sync; "warp": one warp at a time; a missing __syncthreads()
    then changes the result) or with the ASan/UBSan build (cuda_emu/README.md)."""
    if order not in ORDERS:
        raise ValueError("emulation: order must be one of %s, got %r" % (ORDERS, order))
    old = dict(_EMU)
    _EMU.update(order=order, sanitize=bool(sanitize))
    try:
        yield
    finally:
        _EMU.update(old)


def emu_settings():
    """The current emulator settings: {'order': ..., 'sanitize': ...}."""
    return dict(_EMU)


@functools.lru_cache(maxsize=None)
def _function(file, kernel, backend, device, order, sanitize):
    return _load.load_module(file, backend, order, sanitize).get_function(kernel)


def function(backend, file, kernel):
    """The compiled kernel `kernel` of kernels/<file>.cu for this backend (and the emulator's settings)."""
    if backend == "cuda":
        import cupy as cp
        return _function(file, kernel, backend, cp.cuda.runtime.getDevice(), None, None)
    return _function(file, kernel, backend, None, _EMU["order"], _EMU["sanitize"])


def launch(backend, file, kernel, grid, block, args, shared_mem=0):
    """One launch of a 1-D grid. Dynamic shared memory above 48 KB is opted into, as a GPU requires."""
    f = function(backend, file, kernel)
    if shared_mem:
        f.max_dynamic_shared_size_bytes = int(shared_mem)
    f((int(grid),), (int(block),), args, shared_mem=int(shared_mem))


# ---- arrays the kernels write -------------------------------------------------------------------
def empty(backend, shape):
    return array_module(backend).empty(shape, np.float32)


def zeros(backend, shape):
    return array_module(backend).zeros(shape, np.float32)


@functools.lru_cache(maxsize=None)
def _unused(backend, device):
    return array_module(backend).zeros(1, np.float32)


def unused(backend):
    """A float32 array standing for an argument the kernel is told not to read (a flag is 0)."""
    if backend == "cuda":
        import cupy as cp
        return _unused(backend, cp.cuda.runtime.getDevice())
    return _unused(backend, None)
