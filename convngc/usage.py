"""The one error the commands share (cli.py and pictures.py raise it; cli.main turns it into exit status 2): an
option that cannot apply, found after parsing (against a run's record, the files named, each other). Its own
module so that pictures.py does not import the command line that imports it."""


class UsageError(Exception):
    """An option that cannot apply (found after parsing, e.g. against a run's record): exit status 2."""


def int_at_least(lo, note=""):
    """An argparse type: a whole number >= lo, else one line naming the bound (and `note`, e.g. what 1 means)."""
    import argparse

    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < lo:
            raise argparse.ArgumentTypeError("must be an integer >= %d%s, got %r" % (lo, note, text))
        return v
    return parse
