"""Opening files to read them, safely: only a regular file is ever read.

A named pipe, a device or a folder where a checkpoint, a config.json or a data file should be would make a
plain open() block forever (a pipe with no writer) or read without end (/dev/zero). :func:`open_regular` opens
without blocking, checks what it opened, and refuses anything that is not a regular file, naming it.
"""
import os
import stat

__all__ = ["NotARegularFile", "open_regular", "kind_of"]


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
