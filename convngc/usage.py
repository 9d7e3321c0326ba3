"""The one error the commands share (cli.py and pictures.py raise it; cli.main turns it into exit status 2): an
option that cannot apply, found after parsing (against a run's record, the files named, each other). Its own
module so that pictures.py does not import the command line that imports it."""


class UsageError(Exception):
    """An option that cannot apply (found after parsing, e.g. against a run's record): exit status 2."""
