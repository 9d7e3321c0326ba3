"""Download the original datasets from their official sources, verified by checksum.

``download(name, dest)`` puts dataset ``name`` under ``dest/<name>/`` in the layout
:func:`convngc.data.load_dataset` finds with ``data_dir=dest``:

* ``mnist``: ``dest/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``
* ``cifar10``: ``dest/cifar10/cifar-10-python.tar.gz``, extracted to ``dest/cifar10/cifar-10-batches-py/``
* ``svhn``: ``dest/svhn/{train,test}_32x32.mat``
* ``cinic10``: ``dest/cinic10/CINIC-10.tar.gz``, extracted to ``dest/cinic10/{train,valid,test}/<class>/*.png``

Each file is streamed to a temporary file in the target folder, its checksum is verified, and only then it is
renamed into place (atomic). Tarballs are extracted once (a ``.<tarball>.extracted`` marker records it).
An existing file is never overwritten: if it verifies it is kept, if not the
download stops with a :class:`~convngc.data.DataError` asking you to delete it.

A stalled or trickling server is cut off: each read waits at most ``timeout`` seconds, the whole file must
arrive within ``deadline`` seconds, and the rate over every ``rate_window`` seconds must reach ``min_rate``
bytes/s (a server sending one byte every few seconds never trips the socket timeout). Ctrl-C and SIGTERM remove
the temporary ``.part`` file.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import signal
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from .data import DataError
from .fileio import NotARegularFile, open_regular
from .progress import tqdm_bar

__all__ = ["Remote", "Source", "DATASETS", "download", "fetch", "file_checksum", "extract", "Terminated",
           "sigterm_raises"]

TIMEOUT = 60.0            # s: the longest wait for any single read
DEADLINE = 6 * 3600.0     # s: the whole file (CINIC-10, 0.7 GB, needs ~35 KB/s to make it)
MIN_RATE = 4096.0         # bytes/s, averaged over RATE_WINDOW
RATE_WINDOW = 60.0        # s


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` (the .part file, the run lock) runs."""


@contextlib.contextmanager
def sigterm_raises():
    """While inside, SIGTERM raises :class:`Terminated` (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()
    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@dataclass(frozen=True)
class Remote:
    """One file to fetch: ``checksum`` is ``"md5:<hex>"`` / ``"sha256:<hex>"``, or None (user must supply one)."""
    filename: str
    url: str
    checksum: Optional[str]
    extract: bool = False


@dataclass(frozen=True)
class Source:
    """A dataset's files and where it is documented."""
    files: Tuple[Remote, ...]
    homepage: str
    note: str = ""


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's mirror of the LeCun files (same md5)
DATASETS: Dict[str, Source] = {
    "mnist": Source(
        files=(
            Remote("train-images-idx3-ubyte.gz", _MNIST + "train-images-idx3-ubyte.gz",
                   "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            Remote("train-labels-idx1-ubyte.gz", _MNIST + "train-labels-idx1-ubyte.gz",
                   "md5:d53e105ee54ea40749a09fcbcd1e9432"),
            Remote("t10k-images-idx3-ubyte.gz", _MNIST + "t10k-images-idx3-ubyte.gz",
                   "md5:9fb629c4189551a2d022fa330f9573f3"),
            Remote("t10k-labels-idx1-ubyte.gz", _MNIST + "t10k-labels-idx1-ubyte.gz",
                   "md5:ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        homepage="http://yann.lecun.com/exdb/mnist/",
        note="md5 of the original gzip files; the decompressed idx md5s are listed in MNIST_RAW_MD5",
    ),
    "cifar10": Source(
        files=(Remote("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                      "md5:c58f30108f718f92721af3b95e74349a", extract=True),),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "svhn": Source(
        files=(
            Remote("train_32x32.mat", "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                   "md5:e26dedcc434d2e4c54c9b2d4a06d8373"),
            Remote("test_32x32.mat", "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                   "md5:eb5a983be6a315427106f1b164d9cef3"),
        ),
        homepage="http://ufldl.stanford.edu/housenumbers/",
    ),
    "cinic10": Source(
        files=(Remote("CINIC-10.tar.gz", "https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz",
                      None, extract=True),),
        homepage="https://github.com/BayesWatch/cinic-10",
        note="no checksum is published with the tarball: pass one you trust with --checksum sha256:<hex>",
    ),
}

# md5 of the decompressed MNIST idx files (canonical; useful to verify re-gzipped copies)
MNIST_RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


_HEX_DIGITS = {"md5": 32, "sha1": 40, "sha256": 64}


def _parse_checksum(checksum: str) -> Tuple[str, str]:
    algo, sep, digest = checksum.partition(":")
    if not sep or algo not in _HEX_DIGITS or not digest:
        raise DataError(f"checksum {checksum!r} must look like 'md5:<hex>' or 'sha256:<hex>' (algorithms: md5, "
                        f"sha1 or sha256)")
    if not re.fullmatch(r"[0-9a-fA-F]+", digest) or len(digest) != _HEX_DIGITS[algo]:
        raise DataError(f"checksum {checksum!r}: {algo} needs {_HEX_DIGITS[algo]} hex digits, got {len(digest)}"
                        + ("" if re.fullmatch(r"[0-9a-fA-F]*", digest) else " (not all hex)"))
    return algo, digest.lower()


def file_checksum(path, algo: str = "sha256") -> str:
    """Hex digest of a file (read in 1 MiB chunks)."""
    h = hashlib.new(algo)
    with open_regular(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, path, checksum: str, progress: Optional[bool] = None, timeout: float = TIMEOUT,
          deadline: float = DEADLINE, min_rate: float = MIN_RATE, rate_window: float = RATE_WINDOW) -> Path:
    """Download ``url`` to ``path`` (atomic), verifying ``checksum`` first; keep ``path`` if it already verifies.

    ``timeout``: the longest wait for one read; ``deadline``: seconds for the whole file; ``min_rate``: bytes/s
    that every ``rate_window`` seconds must reach. Any of them failing raises DataError and saves nothing.
    """
    path = Path(path)
    algo, want = _parse_checksum(checksum)
    if os.path.lexists(path):
        try:
            got = file_checksum(path, algo)
        except NotARegularFile as e:
            raise DataError(f"{e}; it is in the way of the download: move it away and run the download again") \
                from None
        if got == want:
            return path
        raise DataError(f"{path}: exists but its {algo} is {got}, expected {want}; it is corrupt or a different "
                        f"file. Delete it and run the download again (existing files are never overwritten)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _signals_recorded() as landed:
        return _fetch_new(url, path, algo, want, progress, timeout, deadline, min_rate, rate_window, landed)


def _fetch_new(url, path, algo, want, progress, timeout, deadline, min_rate, rate_window, landed):
    """fetch's download into a fresh .part file, then its verification and the atomic rename. `landed()` raises
    the exception of a Ctrl-C or SIGTERM that arrived and was dropped (see _signals_recorded)."""
    # The temporary file's name is chosen, and its removal set up (the finally below), before the file exists:
    # a signal that lands anywhere once it exists (even inside the open) finds the cleanup in place.
    # (tempfile.mkstemp creates the file before the caller can register a cleanup: a SIGTERM between the two
    # left a .part file behind.) The removal itself runs with signals deferred, so that a second Ctrl-C or
    # SIGTERM arriving while the first one's cleanup runs cannot leave the file either.
    tmp = None
    try:
        for _ in range(100):
            name = str(path.parent / f".{path.name}.{secrets.token_hex(8)}.part")
            try:
                tmp = name                                     # ours from the moment os.open creates it
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
                break
            except FileExistsError:                            # another's file: never ours to remove
                tmp = None
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))
        h = hashlib.new(algo)
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    landed()
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    bar = tqdm_bar(progress, total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                   desc=path.name)
                    # read1 returns what has arrived (a plain read(n) would wait for n bytes), so the clock is
                    # checked after every packet, however slowly they come
                    read = getattr(resp, "read1", resp.read)
                    t0 = time.monotonic()
                    got, win_t, win_got = 0, t0, 0
                    try:
                        for chunk in iter(lambda: read(1 << 16), b""):
                            landed()
                            out.write(chunk)
                            h.update(chunk)
                            got += len(chunk)
                            if bar is not None:
                                bar.update(len(chunk))
                            now = time.monotonic()
                            if now - t0 > deadline:
                                raise DataError(f"{url}: not finished after {deadline:g} s (--deadline): {got} of "
                                                f"{total or '?'} bytes came; nothing was saved. Retry later, use a "
                                                f"mirror (--base-url) or allow more time")
                            if now - win_t >= rate_window:
                                rate = (got - win_got) / (now - win_t)
                                if rate < min_rate:
                                    raise DataError(f"{url}: too slow: {rate:.0f} B/s over the last {rate_window:g} s, "
                                                    f"below the minimum (--min-rate {min_rate:g}); nothing was "
                                                    f"saved. Retry later or use a mirror (--base-url)")
                                win_t, win_got = now, got
                    finally:
                        if bar is not None:
                            bar.close()
            except DataError:
                raise
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise DataError(f"{url}: download failed ({e}); check the network or use a mirror "
                                f"(base_url / --base-url) and retry") from e
        got = h.hexdigest()
        if got != want:
            raise DataError(f"{url}: checksum mismatch for {path.name}: expected {algo} {want}, got {got}; the "
                            f"download is corrupt or the file changed upstream; nothing was saved, retry")
        landed()
        os.replace(tmp, path)
    finally:
        if tmp is not None:
            with _signals_deferred():
                if os.path.lexists(tmp):
                    os.unlink(tmp)
    return path


def extract(archive, dest) -> list:
    """Extract a tarball into ``dest`` without overwriting: top-level entries already present are kept.

    Extraction goes to a temporary folder in ``dest`` first (unsafe member paths are rejected), then each
    top-level entry is renamed into place. Returns the top-level paths in ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        try:
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:  # older Python: reject absolute paths, '..' and links by hand
                    for m in tar.getmembers():
                        if m.name.startswith("/") or ".." in Path(m.name).parts or m.issym() or m.islnk():
                            raise DataError(f"{archive}: unsafe archive member {m.name!r}; refusing to extract")
                    tar.extractall(tmp)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DataError(f"{archive}: cannot extract ({e}); delete it and download again") from e
        out = []
        for entry in sorted(tmp.iterdir()):
            target = dest / entry.name
            if not target.exists():
                os.replace(entry, target)
            out.append(target)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _signals_recorded():
    """While inside, the exception a Ctrl-C's or SIGTERM's handler raises (KeyboardInterrupt, or Terminated under
    sigterm_raises) is also kept. Python drops an exception raised inside a weakref callback ("Exception ignored
    in ..."): a Ctrl-C that landed in an import's module-lock cleanup during urlopen was printed and lost, and the
    download went on (CI, 2026-12-07). Yields `landed`: a call that raises a kept exception again. The dropped
    exception is not printed (sys.unraisablehook): the user sees the one line the stopped command prints. Main
    thread only (elsewhere `landed` does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    raised = []

    def recording(old):
        def handler(signum, frame):
            if callable(old):
                try:
                    old(signum, frame)
                except BaseException as e:
                    raised.append(e)
                    raise
            elif old == signal.SIG_DFL:                     # as without us: SIGTERM ends the process
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
        return handler

    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {sig: signal.getsignal(sig) for sig in sigs}
    for sig in sigs:
        if old[sig] is not None and old[sig] != signal.SIG_IGN:
            signal.signal(sig, recording(old[sig]))

    def landed():
        if raised:
            raise raised.pop(0)

    hook = sys.unraisablehook

    def quiet(unraisable):                              # a dropped stop: landed() raises it again
        if not any(unraisable.exc_value is e for e in raised):
            hook(unraisable)
    sys.unraisablehook = quiet
    try:
        yield landed
    finally:
        sys.unraisablehook = hook
        for sig in sigs:
            if old[sig] is not None:
                signal.signal(sig, old[sig])


@contextlib.contextmanager
def _signals_deferred():
    """While inside, Ctrl-C and SIGTERM are recorded, not acted on; on leaving, each recorded one is raised
    again (to the handlers that were in place): a second signal cannot cut a cleanup short. Main thread only
    (elsewhere nothing changes: Python runs signal handlers in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {sig: signal.signal(sig, lambda signum, frame: got.append(signum)) for sig in sigs}
    try:
        yield
    finally:
        for sig in sigs:
            signal.signal(sig, old[sig])
        for sig in dict.fromkeys(got):
            signal.raise_signal(sig)


def download(name: str, dest, base_url: Optional[str] = None, progress: Optional[bool] = None,
             checksums: Optional[Dict[str, str]] = None, limits: Optional[Dict[str, float]] = None) -> Path:
    """Download dataset ``name`` into ``dest/<name>/``, verify every file and extract tarballs; return that folder.

    ``base_url`` replaces the source host: each file is fetched from ``base_url + "/" + filename`` (mirrors,
    tests). ``checksums`` maps file names to ``"algo:hex"`` and overrides/supplies checksums (CINIC-10 needs one).
    ``limits``: ``timeout``, ``deadline``, ``min_rate``, ``rate_window`` for :func:`fetch`.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r} for download; choose one of {', '.join(sorted(DATASETS))} "
                        f"(color-mnist is built from mnist, embedded needs no download)")
    checksums = dict(checksums or {})
    for fname, value in checksums.items():           # every checksum checked before the first byte is fetched
        _parse_checksum(value)
    folder = Path(dest) / name
    for r in DATASETS[name].files:
        if checksums.get(r.filename, r.checksum) is None:
            raise DataError(f"{name}: no published checksum for {r.filename} ({DATASETS[name].note}); get the "
                            f"file's sha256 from a source you trust and pass it, e.g. "
                            f"`convngc download {name} --dest DIR --checksum sha256:<hex>`")
    created = _make_folders(folder)
    try:
        for r in DATASETS[name].files:
            checksum = checksums.get(r.filename, r.checksum)
            url = base_url.rstrip("/") + "/" + r.filename if base_url else r.url
            path = fetch(url, folder / r.filename, checksum, progress=progress, **(limits or {}))
            marker = folder / f".{r.filename}.extracted"
            if r.extract and not marker.exists():
                extract(path, folder)
                marker.write_text(checksum + "\n")
    except BaseException:
        _remove_if_empty(created)           # a failed or stopped download leaves no empty dest/<name>/ behind
        raise
    return folder


def _make_folders(folder: Path) -> list:
    """Create ``folder`` and its missing parents; return those this call created, deepest first."""
    missing = []
    p = Path(os.path.abspath(folder))
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_if_empty(folders) -> None:
    """Remove each of ``folders`` (deepest first) that is empty: what a download created and never filled. A
    folder holding anything (a verified file of an earlier file of the set, another process's file) is kept."""
    for p in folders:
        try:
            os.rmdir(p)
        except OSError:
            break


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return v


def _rate(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v >= 0 and v != float("inf")):          # NaN compares false: refused, as every option refuses it
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (0 disables the check), got {text!r}")
    return v


def _dest(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must be a folder, got an empty string {text!r}")
    return text


def build_parser(prog=None) -> argparse.ArgumentParser:
    """The options of `convngc download` (docs/cli.md lists them from here)."""
    p = argparse.ArgumentParser(prog=prog, description="Download a dataset in its original format, verified by "
                                "checksum.", epilog="Exit status: 0 done, 1 the download or the disk failed, 2 a bad "
                                "option, 130 Ctrl-C, 143 SIGTERM.")
    p.add_argument("name", choices=sorted(DATASETS), help="the dataset (color-mnist is made from mnist; embedded "
                   "needs no download)")
    p.add_argument("--dest", type=_dest, default=os.environ.get("CONVNGC_DATA_DIR") or None,
                   required=not os.environ.get("CONVNGC_DATA_DIR"),
                   help="data root; files go to DEST/NAME/ (default $CONVNGC_DATA_DIR)")
    p.add_argument("--base-url", default=None, help="mirror to fetch the files from instead of the official host "
                   "(default: the official host)")
    p.add_argument("--checksum", action="append", default=[], metavar="[FILE=]ALGO:HEX",
                   help="checksum to use (required for cinic10); FILE= selects the file of a multi-file dataset "
                   "(default: the published one)")
    p.add_argument("--timeout", type=_positive, default=TIMEOUT, help="seconds to wait for any one read "
                   f"(default {TIMEOUT:g})")
    p.add_argument("--deadline", type=_positive, default=DEADLINE, help="seconds for a whole file "
                   f"(default {DEADLINE:g}, {DEADLINE / 3600:g} h)")
    p.add_argument("--min-rate", type=_rate, default=MIN_RATE, help="bytes/s each minute must reach; 0 disables "
                   f"(default {MIN_RATE:g})")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--progress", action="store_true", help="a progress bar even when stderr is not a terminal")
    group.add_argument("--quiet", action="store_true", help="no progress bar (default: one only when stderr is a "
                       "terminal)")
    return p


def main(argv=None, prog=None) -> int:
    """`convngc download` and `python data/download.py`: NAME --dest DIR [--base-url] [--checksum] [--quiet].

    Exit status: 0 done, 1 the download or the disk failed, 2 a bad option, 130 Ctrl-C, 143 SIGTERM.
    """
    p = build_parser(prog)
    a = p.parse_args(argv)
    files = [r.filename for r in DATASETS[a.name].files]
    checksums = {}
    for c in a.checksum:                             # all refused here, before anything is fetched
        fname, sep, value = c.partition("=")
        if not sep:
            if len(files) != 1:
                p.error(f"{a.name} has several files {files}: use --checksum FILE=ALGO:HEX")
            fname, value = files[0], c
        elif fname not in files:
            p.error(f"--checksum {c!r}: {fname!r} is not a file of {a.name} (its files: {', '.join(files)})")
        try:
            _parse_checksum(value)
        except DataError as e:
            p.error(f"--checksum {c!r}: expected [FILE=]ALGO:HEX; {e}")
        checksums[fname] = value
    limits = dict(timeout=a.timeout, deadline=a.deadline, min_rate=a.min_rate, rate_window=RATE_WINDOW)
    try:
        with sigterm_raises():
            folder = download(a.name, a.dest, base_url=a.base_url,
                              progress=True if a.progress else False if a.quiet else None, checksums=checksums,
                              limits=limits)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:                             # the destination: read-only, a file, a full disk
        where = e.filename or a.dest
        print(f"error: cannot write {where}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:                   # Ctrl-C or SIGTERM: fetch has removed the .part file
        what = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"{what}: the partial download was removed; nothing was saved", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    print(f"{a.name}: ready in {folder}")
    return 0
