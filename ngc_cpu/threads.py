"""Running a tile kernel on all cores: disjoint ranges of tiles, one Python thread each (the kernels release the GIL).

    set_num_threads(n) / get_num_threads()    default: the CPUs this process may use, or $NGC_CPU_THREADS
    run(kernel, n_tiles, *args)               kernel(t0, t1, *args) on a split of range(n_tiles)

Every tile is computed by exactly one thread, in the same way whichever thread it is, so the results do
not depend on the number of threads.
"""
import concurrent.futures
import os
import threading

__all__ = ["set_num_threads", "get_num_threads", "run"]

_lock = threading.Lock()
_state = {"n": None, "pool": None}


def _default():
    env = os.environ.get("NGC_CPU_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError("NGC_CPU_THREADS must be a whole number >= 1, got %r" % env) from None
        if n < 1:
            raise ValueError("NGC_CPU_THREADS must be >= 1, got %d" % n)
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                       # macOS, Windows
        return os.cpu_count() or 1


def set_num_threads(n):
    """Use n threads (>= 1) from now on."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError("set_num_threads: n must be a whole number >= 1, got %r" % (n,))
    with _lock:
        _state["n"] = n


def get_num_threads():
    with _lock:
        if _state["n"] is None:
            _state["n"] = _default()
        return _state["n"]


def _pool(n):
    with _lock:
        pool = _state["pool"]
        if pool is None or pool._max_workers < n:
            if pool is not None:
                pool.shutdown(wait=False)
            pool = _state["pool"] = concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="ngc_cpu")
        return pool


def run(kernel, n_tiles, *args):
    """kernel(t0, t1, *args) over range(n_tiles) split into get_num_threads() contiguous, near-equal ranges."""
    n = min(get_num_threads(), n_tiles)
    if n <= 1:
        kernel(0, n_tiles, *args)
        return
    bounds = [n_tiles * k // n for k in range(n + 1)]
    futures = [_pool(n).submit(kernel, bounds[k], bounds[k + 1], *args) for k in range(n)]
    for f in futures:
        f.result()                               # re-raises a kernel's exception here
