"""Shared pytest fixtures."""
import os
import pathlib
import tempfile

import pytest

# The emulator's g++ builds are cached between runs; keep that cache in the system's temporary folder
# (tests write only to temporary folders), unless the caller chose a place.
os.environ.setdefault("CONVNGC_EMU_CACHE", os.path.join(tempfile.gettempdir(), "convngc-emu-cache-%d" % os.getuid()))
# Numba's compiled-code cache for ngc_cpu likewise (set before anything imports numba).
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "convngc-numba-cache-%d" % os.getuid()))

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """Shared read-only data dir: $CONVNGC_SHARED_DATA or <repo>/../shared/data; skip if absent."""
    path = pathlib.Path(os.environ.get("CONVNGC_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data dir {path} not found (set CONVNGC_SHARED_DATA)")
    return path
