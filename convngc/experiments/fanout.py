"""Independent jobs run one after another in this process, or at once as Ray tasks (the optional extra
`pip install -e .[cluster]`): what `convngc reproduce` and the study's sweeps fan out with.

    --workers N              N jobs at once on a local Ray that the command starts and stops (default: the
                             cores of this machine); --workers 1: one after another in this process, no Ray
    --address auto           an existing Ray cluster that this machine belongs to (`ray start`, docs/cluster.md),
    --address ray://HOST:PORT  or a remote head node through Ray Client (port 10001 by default)

Where results go: every job returns its results (a small dict of numbers and figure arrays) to the driver, the
process that runs the command, and the driver writes them, atomically (convngc.fileio). The workers write
nothing the driver needs, so a cluster needs no shared file system; each machine needs the package installed and
the data (`convngc download`, or the same --data-dir). The results are the same whichever worker ran a job: each
job seeds itself and sets its own thread counts.

Failures: a worker that dies mid-job (kill -9, out of memory) gets its job run again, up to MAX_RETRIES times; a
job that raises is reported (the exception comes back to the driver) and the others go on; Ctrl-C or SIGTERM on
the driver cancels the jobs still queued or running, and a Ray started by the command is stopped.
"""
import argparse
import logging
import os
import re
import signal
import threading

from ..usage import int_at_least

__all__ = ["add_arguments", "check", "fan_out", "have_ray", "ClusterError", "MAX_RETRIES"]

MAX_RETRIES = 3          # reruns of a job whose worker died (Ray's max_retries); an exception is never retried
ADDRESS = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$")      # or "auto"


def have_ray():
    """Ray is installed (looked up, not imported: importing it takes a second)."""
    import importlib.util
    return importlib.util.find_spec("ray") is not None


_workers = int_at_least(1, " (1: one job after another, no Ray)")


def _address(text):
    if text != "auto" and not (ADDRESS.match(text) and 0 < int(text.rsplit(":", 1)[1]) < 65536):
        raise argparse.ArgumentTypeError("must be auto, ray://HOST:PORT or HOST:PORT, got %r" % text)
    return text


def add_arguments(ap):
    ap.add_argument("--workers", type=_workers, default=None, metavar="N",
                    help="jobs at once, as Ray tasks on a local Ray this command starts and stops (default: the "
                    "cores of this machine, %d; without Ray installed: one after another); 1: one after another "
                    "in this process" % (os.cpu_count() or 1))
    ap.add_argument("--address", type=_address, default=None, metavar="ADDR",
                    help="run the jobs on an existing Ray cluster: auto (the one `ray start` made) or "
                    "ray://HOST:PORT (Ray Client); --workers then caps the jobs in flight")


def check(workers, address):
    """The one-line error for an impossible combination, or None."""
    if address is not None and workers == 1:
        return "--workers 1 runs the jobs in this process; leave it out to use --address %s" % address
    if address is not None and not have_ray():
        return "--address needs Ray: pip install -e .[cluster]"
    return None


def fan_out(fn, jobs, workers=None, address=None, log=print):
    """Yield (key, result, error) for each (key, args) of `jobs` as fn(*args, log=...) finishes: error is None,
    or the exception the job raised (its result is then None). fn must be a module-level function (Ray imports it
    by name on the workers); its `log` is ours in this process, print on a Ray worker (Ray shows the workers'
    output here). Serial in this process for workers == 1, for one job, or without Ray (saying so). Close the
    generator (contextlib.closing) to cancel what is still running."""
    jobs = list(jobs)
    if address is None:
        workers = workers or os.cpu_count() or 1
        if workers == 1 or len(jobs) <= 1:
            return _serial(fn, jobs, log)
    if not have_ray():
        log("Ray is not installed (pip install -e .[cluster]): running the %d jobs one after another" % len(jobs))
        return _serial(fn, jobs, log)
    return _ray(fn, jobs, workers, address, log)


class ClusterError(RuntimeError):
    """Ray could not start here, or the cluster at --address cannot be reached."""


def _serial(fn, jobs, log):
    for key, args in jobs:
        try:
            result = fn(*args, log=log)
        except Exception as exc:          # reported by the caller; KeyboardInterrupt and SystemExit stop the run
            yield key, None, exc
            continue
        yield key, result, None


def _signal_handlers():
    """SIGTERM's and SIGINT's handlers now (main thread only: the others cannot set them)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}


def _give_back(handlers, raised):
    """ray.init sets a SIGTERM handler of its own (sys.exit(1)) over the command's (`convngc reproduce`: SIGTERM
    stops the run as Ctrl-C does, the jobs cancelled, the finished rows kept, exit 143): set the command's again,
    through a relay that keeps what it raises in `raised` (Ray's waits turn any exception a signal handler raises
    into a plain KeyboardInterrupt; the caller raises the kept one instead)."""
    for sig, handler in handlers.items():
        if callable(handler):
            def relay(signum, frame, handler=handler):
                try:
                    handler(signum, frame)
                except BaseException as exc:
                    raised.append(exc)
                    raise
            signal.signal(sig, relay)
        elif handler is not None:                     # SIG_IGN / SIG_DFL; None: set outside Python, left alone
            signal.signal(sig, handler)


def job(fn, args):
    """What a Ray task runs: fn(*args) (Ray names the task by this function: "job")."""
    return fn(*args)


def _ray(fn, jobs, workers, address, log):
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")     # every worker's lines as they come (dedup hides trials' epochs)
    import ray
    # one thread per job (each task holds one CPU); the results do not depend on it (ngc_cpu's threads never
    # change a result; PyTorch's count is set by the job itself)
    env = {"NGC_CPU_THREADS": os.environ.get("NGC_CPU_THREADS", "1")}
    todo, pending = list(jobs), {}
    handlers, raised = _signal_handlers(), []
    try:
        try:
            if address is None:
                ray.init(address="local", num_cpus=workers, include_dashboard=False,   # a new one, even
                         logging_level=logging.WARNING, runtime_env={"env_vars": env})     # beside `ray start`'s
            else:
                ray.init(address=address, logging_level=logging.WARNING, runtime_env={"env_vars": env})
        except Exception as exc:
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if address is None:
                raise ClusterError("cannot start a local Ray: %s" % why) from exc
            raise ClusterError("cannot reach the Ray cluster at %s: %s%s" % (
                address, why, " (a head with token authentication, Ray's default, also needs RAY_AUTH_MODE=token "
                "and its token here: docs/cluster.md)" if address.startswith("ray://") else "")) from exc
        _give_back(handlers, raised)
        if address is None:
            log("Ray: %d workers on this machine (a local Ray, stopped at the end)" % workers)
        else:
            log("Ray: the cluster at %s, %g CPUs" % (address, ray.cluster_resources().get("CPU", 0)))
        cap = workers or len(jobs)
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(job)
        while todo or pending:
            while todo and len(pending) < cap:
                key, args = todo.pop(0)
                pending[task.remote(fn, args)] = key
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(ref)
            try:
                result, error = ray.get(ref), None
            except ray.exceptions.RayTaskError as exc:        # the job raised: its own exception, when it has one
                result, error = None, exc.cause if isinstance(exc.cause, Exception) else exc
            except ray.exceptions.RayError as exc:            # its worker died MAX_RETRIES + 1 times, or the like
                result, error = None, exc
            yield key, result, error
    except KeyboardInterrupt as exc:
        if raised and raised[-1] is not exc:          # Ray's stand-in for what our handler raised (SIGTERM's)
            raise raised[-1] from None
        raise
    finally:
        try:
            for ref in pending:                               # Ctrl-C, SIGTERM, or the caller stopped early
                ray.cancel(ref, force=True)
        finally:
            ray.shutdown()
            for sig, handler in handlers.items():             # the command's own, not the relays
                if handler is not None:
                    signal.signal(sig, handler)
