"""Run folders: claimed atomically, held for a run's lifetime, never mixed.

A run folder (runs/<name>/) holds one training run: config.json, checkpoint.npz, best.npz, history.json, the
plots, the evaluations' metrics*.json, and .lock. The process training or evaluating in it holds .lock with
flock() (the kernel drops it when that process dies, so a killed run never leaves the folder locked); a second
process is refused with RunDirError, naming the pid that holds it.

  claim_run_dir(path, resume)   create the folder (or take it to resume it) and hold it
  new_run_dir(base)             a fresh folder base, base-2, base-3, ... (atomic even within one second)
  check_run_dir(path)           fail early, before data is loaded, when path cannot become a new run
  claim_free_name(folder, name) metrics.json, metrics-2.json, ...: one per evaluation, even two at once
"""
import os
import stat

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the lock file is created exclusively instead
    fcntl = None

from .fileio import clean_stale_tmp, kind_of, open_regular

__all__ = ["RunDirError", "RunFolder", "LOCK_NAME", "holds_run", "check_run_dir", "claim_run_dir", "new_run_dir",
           "make_run_dir", "claim_free_name"]


class RunDirError(FileExistsError):
    """A run folder that cannot be used: it holds another run, another process is using it, or it is a file."""


LOCK_NAME = ".lock"     # RUN/.lock: flock()ed by the process training in RUN; the kernel drops it when that dies


def holds_run(path):
    """True if folder `path` holds anything besides the lock file (a run, or files a run would mix with)."""
    return any(name != LOCK_NAME for name in os.listdir(path))


def check_run_dir(path):
    """Fail early (before loading data) if `path` cannot become a new run folder; claim_run_dir decides."""
    path = os.fspath(path)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise RunDirError("run folder %s is a file, not a folder; choose another --out" % path)
        if holds_run(path):
            raise RunDirError("run folder %s already holds a run; pass --resume %s to continue it, or choose "
                              "another --out" % (path, path))


class RunFolder:
    """A run folder this process holds (see claim_run_dir); release() lets it go."""

    def __init__(self, path, created, fd):
        self.path, self.created, self._fd = path, created, fd

    def release(self, remove_if_empty=False):
        """Unlock; with remove_if_empty, a folder this process created and never wrote into is removed too."""
        if self._fd is None:
            return
        lock = os.path.join(self.path, LOCK_NAME)
        empty = remove_if_empty and self.created and not holds_run(self.path)
        if empty or fcntl is None:
            os.unlink(lock)
        os.close(self._fd)
        self._fd = None
        if empty:
            os.rmdir(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release(remove_if_empty=True)


def _lock(path, created):
    lock = os.path.join(path, LOCK_NAME)
    try:
        if fcntl is None:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        else:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NONBLOCK", 0), 0o666)    # a pipe: no wait
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, FileExistsError):
        try:
            with open_regular(lock, "r") as f:
                pid = " (pid %s)" % f.read().strip() if fcntl is not None else ""
        except (OSError, ValueError):
            pid = ""
        if fcntl is not None:
            os.close(fd)
        raise RunDirError("run folder %s is in use by another convngc process%s; wait for it to end or choose "
                          "another --out" % (path, pid)) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise RunDirError("run folder %s: %s is %s, not a regular file; remove it" % (path, lock, kind_of(mode)))
    os.ftruncate(fd, 0)
    os.write(fd, b"%d\n" % os.getpid())
    return RunFolder(path, created, fd)


def claim_run_dir(path, resume=False):
    """Hold run folder `path` for this process: create it (os.mkdir) or take its lock; for a new run
    (resume=False) it must hold nothing else. Two processes claiming one folder: exactly one succeeds, the
    other gets RunDirError. Stale temporary files of a killed earlier process are removed."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirError("run folder %s is a file, not a folder; choose another --out" % path)
    if resume and not os.path.isdir(path):
        raise RunDirError("--resume %s: no such run folder" % path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    created = False
    try:
        os.mkdir(path)
        created = True
    except FileExistsError:
        pass
    folder = _lock(path, created)
    clean_stale_tmp(path)
    if not resume and holds_run(path):
        folder.release()
        raise RunDirError("run folder %s already holds a run; pass --resume %s to continue it, or choose another "
                          "--out" % (path, path))
    return folder


def new_run_dir(base):
    """Claim a fresh folder named `base`, or `base-2`, `base-3`, ... if taken (even within the same second)."""
    os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)
    k = 1
    while True:
        path = base if k == 1 else "%s-%d" % (base, k)
        try:
            os.mkdir(path)                    # atomic: of two processes, one creates it, the other moves on
        except FileExistsError:
            k += 1
            continue
        return _lock(path, created=True)


def make_run_dir(path, resume=False):
    """Create a fresh run folder (or check one for resuming) and return its path, without holding it."""
    claim_run_dir(path, resume).release()
    return os.fspath(path)


def claim_free_name(folder, name="metrics.json"):
    """Claim the first free one of folder/name, name-2, name-3, ... by creating it empty (O_EXCL: of two
    processes evaluating at once, each gets its own) and return its suffix ("", "-2", ...). The caller then
    writes the file (atomic_write replaces the empty claim)."""
    stem, ext = os.path.splitext(name)
    k = 1
    while True:
        suffix = "" if k == 1 else "-%d" % k
        try:
            fd = os.open(os.path.join(folder, stem + suffix + ext), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            k += 1
            continue
        os.close(fd)
        return suffix
