"""The backends: their names, whether each can run here, the default, and how each is reached.

    numpy      ngc_ref, the NumPy reference: the ground truth, slow
    cpu        ngc_cpu, compiled with Numba for every core: the fast CPU backend
    cuda       ngc_cuda on a GPU (CuPy)
    cuda-emu   ngc_cuda's unchanged kernels emulated on the CPU (cuda_emu, needs g++): a validation tool, slow

The default is decided here and nowhere else: :func:`default` is the fastest backend available on this machine
(cuda with a usable GPU, else cpu, else numpy when Numba is missing); ``ConvNGC()``, ``train.load_model``, the
command line, the shipped models, the study and the reproduction all ask it.

A new backend is added here only: its name in ``BACKENDS`` (and in ``FASTEST_FIRST`` if it may be the default), a
line in :func:`available`, and a branch in :func:`get` returning its namespace (settle, filter_updates,
init_state, step, to_device, to_host), the contract every backend keeps with ngc_ref's names and signatures.
"""
import functools
import importlib.util
import os
import shutil
import types

import numpy as np

__all__ = ["BACKENDS", "FASTEST_FIRST", "BackendUnavailable", "available", "why_unavailable", "default", "get",
           "resolve"]

BACKENDS = ("numpy", "cpu", "cuda", "cuda-emu")          # each computes every Config option
FASTEST_FIRST = ("cuda", "cpu", "numpy")                 # the candidates for the default, fastest first


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (e.g. "cuda" without a GPU)."""


def why_unavailable(name):
    """None when backend `name` can run here, else one line saying why not (without importing it)."""
    if name == "numpy":
        return None
    if name == "cpu":
        return None if importlib.util.find_spec("numba") is not None else "Numba is not installed (pip install numba)"
    if name == "cuda":
        import ngc_cuda
        if ngc_cuda.available():
            return None
        return ("CuPy is not installed (pip install .[cuda12] or .[cuda13])" if importlib.util.find_spec("cupy") is None
                else "CuPy finds no usable CUDA GPU or driver")
    if name == "cuda-emu":
        cxx = os.environ.get("CONVNGC_EMU_CXX", "g++")            # what cuda_emu compiles the kernels with
        return None if shutil.which(cxx) is not None else "the emulator compiles the kernels with %s, not found" % cxx
    raise ValueError("unknown backend %r: choose one of %s" % (name, ", ".join(BACKENDS)))


def available(name):
    """True when backend `name` can run here."""
    return why_unavailable(name) is None


def default():
    """The fastest backend usable here: "cuda" when a GPU is usable, else "cpu" (else "numpy" without Numba)."""
    for name in FASTEST_FIRST:
        if available(name):
            return name
    return "numpy"                                        # pragma: no cover - numpy is always available


def resolve(name=None):
    """`name`, or the default when it is None: the one way code turns "no backend given" into a backend."""
    return default() if name is None else name


def get(name=None):
    """The namespace (name, settle, filter_updates, init_state, step, to_device, to_host) of backend `name`
    (None: the default). Raises BackendUnavailable when it cannot run here, ValueError for an unknown name."""
    name = resolve(name)
    if name == "numpy":
        from ngc_ref import model as ref_model, optim as ref_optim
        return types.SimpleNamespace(name=name, settle=ref_model.settle, filter_updates=ref_model.filter_updates,
                                     init_state=ref_optim.init_state, step=ref_optim.step,
                                     to_device=np.asarray, to_host=np.asarray)
    if name == "cpu":
        try:
            from ngc_cpu import model as cpu_model, optim as cpu_optim
        except ImportError as exc:
            raise BackendUnavailable("backend 'cpu' needs Numba (pip install numba): %s" % exc) from None
        return types.SimpleNamespace(name=name, settle=cpu_model.settle, filter_updates=cpu_model.filter_updates,
                                     init_state=cpu_optim.init_state, step=cpu_optim.step,
                                     to_device=np.ascontiguousarray, to_host=np.asarray)
    if name in ("cuda", "cuda-emu"):
        import ngc_cuda
        from ngc_cuda import model as cu_model, optim as cu_optim
        if name == "cuda":
            try:
                ngc_cuda.require_gpu()
            except RuntimeError as exc:
                raise BackendUnavailable(str(exc)) from None
            import cupy as cp
            to_device, to_host = (lambda a: cp.ascontiguousarray(cp.asarray(a, dtype=np.float32))), cp.asnumpy
        else:
            to_device, to_host = (lambda a: np.ascontiguousarray(a, dtype=np.float32)), np.asarray
        on = functools.partial                          # the backend is this name, not the arrays' type
        return types.SimpleNamespace(name=name, settle=on(cu_model.settle, backend=name),
                                     filter_updates=on(cu_model.filter_updates, backend=name),
                                     init_state=on(cu_optim.init_state, backend=name),
                                     step=on(cu_optim.step, backend=name), to_device=to_device, to_host=to_host)
    raise ValueError("unknown backend %r: choose one of %s ('cuda-emu' runs the CUDA kernels on the CPU, "
                     "to validate them; it is slow)" % (name, ", ".join(BACKENDS)))
