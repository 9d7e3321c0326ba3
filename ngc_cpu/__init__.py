"""ngc_cpu: ngc_ref's public names, fast on the CPU (Numba-compiled loops, all cores).

    import ngc_cpu
    ngc_cpu.ops.conv2d(x, w, stride=2)                   # == ngc_ref.ops.conv2d
    res = ngc_cpu.model.settle(params, x, cfg, z_top)   # == ngc_ref.model.settle, ~10x faster
    deltas = ngc_cpu.model.filter_updates(res, params, cfg)
    ngc_cpu.optim.step(params, deltas, opt_state, cfg)
    ngc_cpu.residual.settle(params, x, rcfg, z_top)      # == ngc_ref.residual.settle (Appendix C), ~12x faster

NumPy arrays in and out, float32 or float64. The loops are compiled by Numba on first use and cached on
disk (beside the package, or in the user's cache folder when that is not writable; NUMBA_CACHE_DIR
chooses another place). ngc_cpu.set_num_threads(n) (or $NGC_CPU_THREADS) chooses the threads, by default
every CPU this process may use; the results do not depend on it.
"""
from . import model, ops, optim, residual  # noqa: F401
from .threads import get_num_threads, set_num_threads  # noqa: F401

__all__ = ["ops", "model", "optim", "residual", "set_num_threads", "get_num_threads"]
