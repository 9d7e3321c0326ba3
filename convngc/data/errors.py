"""The one exception of the data package: every data problem names the file, the problem and the fix."""
import os

from ..fileio import NotARegularFile, open_regular


class DataError(ValueError):
    """A data file/dir is missing, corrupt or in the wrong format (message says which file and what to do)."""


class DataReadError(DataError):
    """A data file that is there but cannot be read (permission denied, an I/O error): the read failed, the
    data may be fine. The command line exits 1 for it (a failed operation), 2 for every other DataError."""


def read_failure(exc, what=None):
    """DataReadError for an OSError met while reading data: 'cannot read FILE: Permission denied'."""
    where = exc.filename if getattr(exc, "filename", None) else what
    return DataReadError(f"cannot read {where}: {exc.strerror or exc} (check the permissions of the file and of "
                         f"the folders above it)")


def open_data(path, hint: str = ""):
    """Open a data file for reading (binary): a missing file, anything but a regular file (a named pipe would
    block forever) and an unreadable one are DataErrors naming it."""
    try:
        return open_regular(os.fspath(path), "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found{hint}") from None
    except NotARegularFile as e:
        raise DataError(f"{e}; replace it with the data file{hint}") from None
    except OSError as e:
        raise read_failure(e, path) from None
