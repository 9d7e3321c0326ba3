"""Progress bars where someone watches them: on a terminal, not in a redirected log.

A bar redraws itself several times a second; written to a file (`convngc train ... 2> train.log`, a batch job)
every redraw is kept, and a long training left 223 kB of bar in its stderr. So the default (progress=None, and
no --progress/--no-progress on the command line) draws bars only when stderr is a terminal (or a notebook,
where tqdm draws a widget); progress=True (--progress) draws them anyway, progress=False (--no-progress) never.
"""
import sys

__all__ = ["wanted", "from_flags", "add_flags", "tqdm_bar"]


def wanted(progress=None, stream=None):
    """Draw a bar? progress True or False decides; None: only when `stream` (default sys.stderr) is a terminal,
    or inside a Jupyter kernel."""
    if progress is not None:
        return bool(progress)
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):          # no isatty, or a closed stream
        return False


def add_flags(parser, what="progress bars"):
    """--progress / --no-progress (default: bars only on a terminal)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", action="store_true", help="%s even when stderr is not a terminal (default: "
                       "only when it is one)" % what)
    group.add_argument("--no-progress", action="store_true", help="no progress bar (default: bars only when stderr "
                       "is a terminal, so a redirected log holds none)")


def from_flags(args):
    """True (--progress), False (--no-progress) or None (neither: a terminal decides)."""
    if getattr(args, "progress", False):
        return True
    if getattr(args, "no_progress", False):
        return False
    return None


def tqdm_bar(progress=None, **kw):
    """A tqdm bar (tqdm.auto: a widget in a notebook) when one is wanted, else None."""
    if not wanted(progress):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:                            # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(**kw)
