"""The one exception of the data package: every data problem names the file, the problem and the fix."""


class DataError(ValueError):
    """A data file/dir is missing, corrupt or in the wrong format (message says which file and what to do)."""
