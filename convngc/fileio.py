"""Reading and writing files, safely: every file the project writes or reads goes through here.

Writing: :func:`atomic_write` (and :func:`write_json`, :func:`write_text` on top of it) writes a temporary file
beside the target, fsyncs it and moves it into place, so a crash mid-write never leaves a half file where a good
one was. The file gets the permissions the umask allows (as a plain open() would), an error names the file it
was writing, and a kill mid-write leaves only a hidden ``.<name>.XXXXXXXX.tmp`` that :func:`clean_stale_tmp`
removes on the next start. :func:`strict_json` makes any record writable as strict JSON (NaN/Inf as null).

Reading: a named pipe, a device or a folder where a checkpoint, a config.json or a data file should be would
make a plain open() block forever (a pipe with no writer) or read without end (/dev/zero). :func:`open_regular`
opens without blocking, checks what it opened, and refuses anything that is not a regular file, naming it.
"""
import json
import math
import os
import re
import stat
import tempfile

import numpy as np

__all__ = ["atomic_write", "write_json", "write_text", "clean_stale_tmp", "strict_json",
           "NotARegularFile", "open_regular", "kind_of"]


# ---------------------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------------------
def _umask():
    """The process umask, read without changing it where /proc allows (os.umask can only set it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    m = os.umask(0o022)
    os.umask(m)
    return m


def atomic_write(path, write_fn, suffix=""):
    """Call write_fn(tmp_path) for a temporary file beside `path`, then move it into place atomically.

    An OSError (a full disk, a read-only folder) is raised again with `path` as its filename, so the message
    names the file that could not be written; the file already at `path` is untouched.
    """
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp" + suffix, dir=d)
        os.close(fd)
        write_fn(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())          # mkstemp makes 0600 whatever the umask
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename != path:
            raise type(exc)(exc.errno, exc.strerror, path) from exc
        raise
    return path


_STALE_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[^/]*)?$")     # what atomic_write's mkstemp names look like


def clean_stale_tmp(folder):
    """Remove the hidden temporary files a killed atomic_write left in `folder`; return their names.

    Call it only while no other process writes into `folder` (the run lock guarantees that for a run folder).
    """
    gone = []
    for name in sorted(os.listdir(folder)):
        if _STALE_TMP.match(name) and os.path.isfile(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))
            gone.append(name)
    return gone


def strict_json(obj):
    """`obj` with every NaN/Inf float replaced by None and NumPy values by Python ones: what json.dump
    can write with allow_nan=False (strict JSON, which other tools can read; bare NaN is not JSON)."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path, obj, indent=2):
    """Strict JSON (NaN/Inf written as null, NumPy values as Python ones), atomically."""
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(strict_json(obj), f, indent=indent, sort_keys=True, allow_nan=False)
            f.write("\n")
    return atomic_write(path, w)


def write_text(path, text):
    """A UTF-8 text file, atomically."""
    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return atomic_write(path, w)


# ---------------------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------------------
class NotARegularFile(ValueError):
    """The path names a named pipe, a socket, a device or a folder, not a regular file."""


def kind_of(mode):
    """'a named pipe', 'a folder', ... for a st_mode."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path, mode="rb", encoding=None):
    """open(path, mode) for reading ("r" or "rb"), refusing with NotARegularFile anything but a regular file.

    The file is opened with O_NONBLOCK (so a named pipe without a writer does not block) and checked with
    fstat on the opened descriptor (so it cannot be swapped between the check and the read). OSError
    (missing, permission denied) is raised as open() raises it.
    """
    if mode not in ("r", "rb"):
        raise ValueError("open_regular reads only: mode 'r' or 'rb', got %r" % (mode,))
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile("%s is %s, not a regular file" % (path, kind_of(st.st_mode)))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, mode, encoding=encoding if mode == "r" else None)
    except BaseException:
        os.close(fd)
        raise
