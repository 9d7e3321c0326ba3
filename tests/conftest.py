"""Shared pytest fixtures for every ring (tests/ref, cpu, cuda, conformance, app): the shared data folder, a
seeded generator, where the kernels run (be, one_be), every backend (backend), named pipes (fifo). Shared
functions are in tests/helpers.py, tolerances in tests/tolerances.py."""
import contextlib
import os
import pathlib
import tempfile
import threading

import numpy as np
import pytest

# The emulator's g++ builds are cached between runs; keep that cache in the system's temporary folder
# (tests write only to temporary folders), unless the caller chose a place.
os.environ.setdefault("CONVNGC_EMU_CACHE", os.path.join(tempfile.gettempdir(), "convngc-emu-cache-%d" % os.getuid()))
# Numba's compiled-code cache for ngc_cpu likewise (set before anything imports numba).
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "convngc-numba-cache-%d" % os.getuid()))

from helpers import REPO  # noqa: E402  (after the cache folders are set)


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """Shared read-only data dir: $CONVNGC_SHARED_DATA or <repo>/../shared/data; skip if absent."""
    path = pathlib.Path(os.environ.get("CONVNGC_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data dir {path} not found (set CONVNGC_SHARED_DATA)")
    return path


@pytest.fixture
def rng():
    """A seeded generator: every test draws the same numbers on every run."""
    return np.random.default_rng(1234)


# ---- where the kernels run ------------------------------------------------------------------------
class KernelBackend:
    """Where the kernels run in a test: 'emu-<order>' (NumPy arrays, the CPU emulator in that thread
    order) or 'cuda' (CuPy arrays, a GPU)."""

    def __init__(self, name):
        self.name = name
        self.gpu = name == "cuda"
        self.backend = "cuda" if self.gpu else "cuda-emu"
        self.order = None if self.gpu else name.split("-", 1)[1]

    def __call__(self, a):
        """float32 NumPy array -> the backend's array type."""
        if self.gpu:
            import cupy as cp
            return cp.asarray(a)
        return a

    @contextlib.contextmanager
    def run(self, sanitize=False):
        """Launches inside run in this backend's thread order (the emulator; a GPU has its own)."""
        if self.gpu:
            yield
        else:
            from ngc_cuda.launch import emulation
            with emulation(order=self.order, sanitize=sanitize):
                yield

    def __repr__(self):
        return self.name


def _gpu():
    from ngc_cuda.backend import available
    return available()


# forward / reverse / shuffle run every thread to its next barrier or warp sync, in that order; warp runs
# one warp at a time (cuda_emu/README.md): a missing __syncthreads() changes a result in at least one.
EMU_ORDERS = ("forward", "reverse", "shuffle", "warp")
KERNEL_BACKENDS = [pytest.param("emu-" + o) for o in EMU_ORDERS] + [
    pytest.param("cuda", marks=pytest.mark.skipif(not _gpu(), reason="no GPU (CuPy + device)"))]


@pytest.fixture(params=KERNEL_BACKENDS)
def be(request):
    """Every place the kernels run: the emulator in each thread order, and the GPU when there is one."""
    return KernelBackend(request.param)


@pytest.fixture
def one_be():
    """One place for the expensive kernel tests: the GPU when there is one, else the emulator."""
    return KernelBackend("cuda" if _gpu() else "emu-forward")


# ---- every backend through the one contract (tests/conformance) -----------------------------------
class Backend:
    """A backend as the conformance suite drives it: convngc.model.get_backend(name)'s settle, filter_updates,
    init_state and step (the contract every backend keeps), and `put` / `get` to move arrays there and back.
    `put` keeps the dtype and the structure (dicts, lists, tuples, None) so that what a caller passes, wrong or
    right, reaches the backend as passed: only a NumPy array bound for the GPU becomes a CuPy one."""

    def __init__(self, name):
        from convngc.model import BackendUnavailable, get_backend
        try:
            self.ns = get_backend(name)
        except BackendUnavailable as exc:
            pytest.skip(str(exc))
        self.name, self.gpu = name, name == "cuda"

    def __getattr__(self, key):
        return getattr(self.ns, key)

    def put(self, a):
        if not self.gpu:
            return a
        if isinstance(a, np.ndarray):
            import cupy as cp
            return cp.asarray(a)
        if isinstance(a, dict):
            return {k: self.put(v) for k, v in a.items()}
        return type(a)(self.put(v) for v in a) if isinstance(a, (list, tuple)) else a

    def put_tree(self, p):
        """A params (or displacements) dict on the backend, copied: in-place updates never touch the caller's."""
        return {k: (None if v is None else [None if a is None else self.put(a.copy()) for a in v]) for k, v in p.items()}

    def get(self, a):
        return None if a is None else np.asarray(self.ns.to_host(a))

    def __repr__(self):
        return self.name


def _backend_params():
    from convngc.model import BACKENDS                 # the registry: a backend added there is tested here
    return [pytest.param(n, marks=pytest.mark.skipif(not _gpu(), reason="no GPU (CuPy + device)")) if n == "cuda"
            else n for n in BACKENDS]


@pytest.fixture(params=_backend_params())
def backend(request):
    """Every backend of the registry (numpy, cpu, cuda-emu, and cuda when there is a GPU), as a Backend."""
    return Backend(request.param)


# ---- named pipes ------------------------------------------------------------------------------------
@pytest.fixture
def fifo(tmp_path):
    """fifo(path): a named pipe at path (replacing what is there; parent folders made). If the code under test
    blocks reading it, a writer opens it after 20 s so that the read ends: the test then fails on its
    assertions instead of hanging forever."""
    made, stop = [], threading.Event()

    def unblock():
        if stop.wait(20):
            return
        for _ in range(200):
            for p in made:
                try:
                    os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))    # releases a reader blocked in open()
                except OSError:
                    pass
            if stop.wait(0.1):
                return
    threading.Thread(target=unblock, daemon=True).start()

    def make(path):
        path = pathlib.Path(path)
        if os.path.lexists(path):
            os.remove(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        made.append(path)
        return path
    yield make
    stop.set()
