"""`convngc` (the console command) and `python -m convngc`: the command line, interruptible from its first moment.

Importing the command line (NumPy, SciPy, Matplotlib, ...) takes a noticeable fraction of a second. A Ctrl-C or
SIGTERM in that time would print a traceback from inside some library's import; here it gives one line and the
exit status of an interrupted command (130 Ctrl-C, 143 SIGTERM), before anything was written.
"""
import os
import signal
import sys

_EXIT = {signal.SIGINT: (130, b"interrupted; nothing was written\n"),
         signal.SIGTERM: (143, b"terminated; nothing was written\n")}


def _stop_while_importing(signum, frame):
    status, line = _EXIT[signum]
    os.write(2, line)
    os._exit(status)                      # nothing to clean up yet: no file or folder has been made


def main(argv=None):
    early = {}
    try:
        for sig in _EXIT:
            if signal.getsignal(sig) is not signal.SIG_IGN:           # keep what a parent chose to ignore
                early[sig] = signal.signal(sig, _stop_while_importing)
    except ValueError:                                                 # not the main thread: nothing to do
        early = {}
    try:
        from convngc import cli
        for sig, old in early.items():
            signal.signal(sig, old)
        return cli.main(argv)
    except KeyboardInterrupt:             # between the imports and cli.main's own handling
        os.write(2, _EXIT[signal.SIGINT][1])
        return 130


if __name__ == "__main__":
    sys.exit(main())
