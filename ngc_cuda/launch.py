"""The launch layer under backend.Device: a compiled kernel (once per file, GPU and emulator setting), the
emulator's settings for the launches inside a `with emulation(...)` block (thread order, sanitizer), and the
launch arithmetic the wrappers share.

    device.launch("ngc_step", "ngc_correct_v1", grid(n), BLOCK, (z, ..., i32(B), f32(beta), ...))

Scalars go to a kernel as i32/f32 (CuPy passes a Python int as long long), grids are ceil_div(n, block).
"""
import contextlib
import functools

import numpy as np

from . import _load
from .defines import REDUCE_THREADS

__all__ = ["BLOCK", "REDUCE_THREADS", "i32", "f32", "ceil_div", "grid", "emulation", "emu_settings", "function"]

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
def _function(file, kernel, backend, gpu_id, order, sanitize):
    return _load.load_module(file, backend, order, sanitize).get_function(kernel)


def function(backend, file, kernel, gpu_id=None):
    """The compiled kernel `kernel` of kernels/<file>.cu: on GPU `gpu_id` ('cuda', the current one) or on the
    emulator in its current settings ('cuda-emu')."""
    if backend == "cuda":
        return _function(file, kernel, backend, gpu_id, None, None)
    return _function(file, kernel, backend, None, _EMU["order"], _EMU["sanitize"])
