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
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from .data import DataError

__all__ = ["Remote", "Source", "DATASETS", "download", "fetch", "file_checksum", "extract"]


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


def _parse_checksum(checksum: str) -> Tuple[str, str]:
    algo, sep, digest = checksum.partition(":")
    if not sep or algo not in ("md5", "sha1", "sha256") or not digest:
        raise DataError(f"checksum {checksum!r} must look like 'md5:<hex>' or 'sha256:<hex>'")
    return algo, digest.lower()


def file_checksum(path, algo: str = "sha256") -> str:
    """Hex digest of a file (read in 1 MiB chunks)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, path, checksum: str, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``path`` (atomic), verifying ``checksum`` first; keep ``path`` if it already verifies."""
    path = Path(path)
    algo, want = _parse_checksum(checksum)
    if path.exists():
        got = file_checksum(path, algo)
        if got == want:
            return path
        raise DataError(f"{path}: exists but its {algo} is {got}, expected {want}; it is corrupt or a different "
                        f"file. Delete it and run the download again (existing files are never overwritten)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        h = hashlib.new(algo)
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    bar = None
                    if progress:
                        from tqdm import tqdm
                        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=path.name)
                    try:
                        for chunk in iter(lambda: resp.read(1 << 16), b""):
                            out.write(chunk)
                            h.update(chunk)
                            if bar is not None:
                                bar.update(len(chunk))
                    finally:
                        if bar is not None:
                            bar.close()
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise DataError(f"{url}: download failed ({e}); check the network or use a mirror "
                                f"(base_url / --base-url) and retry") from e
        got = h.hexdigest()
        if got != want:
            raise DataError(f"{url}: checksum mismatch for {path.name}: expected {algo} {want}, got {got}; the "
                            f"download is corrupt or the file changed upstream; nothing was saved, retry")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
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


def download(name: str, dest, base_url: Optional[str] = None, progress: bool = True,
             checksums: Optional[Dict[str, str]] = None) -> Path:
    """Download dataset ``name`` into ``dest/<name>/``, verify every file and extract tarballs; return that folder.

    ``base_url`` replaces the source host: each file is fetched from ``base_url + "/" + filename`` (mirrors,
    tests). ``checksums`` maps file names to ``"algo:hex"`` and overrides/supplies checksums (CINIC-10 needs one).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r} for download; choose one of {', '.join(sorted(DATASETS))} "
                        f"(color-mnist is built from mnist, embedded needs no download)")
    checksums = dict(checksums or {})
    folder = Path(dest) / name
    for r in DATASETS[name].files:
        checksum = checksums.get(r.filename, r.checksum)
        if checksum is None:
            raise DataError(f"{name}: no published checksum for {r.filename} ({DATASETS[name].note}); get the "
                            f"file's sha256 from a source you trust and pass it, e.g. "
                            f"`convngc download {name} --dest DIR --checksum sha256:<hex>`")
        url = base_url.rstrip("/") + "/" + r.filename if base_url else r.url
        path = fetch(url, folder / r.filename, checksum, progress=progress)
        marker = folder / f".{r.filename}.extracted"
        if r.extract and not marker.exists():
            extract(path, folder)
            marker.write_text(checksum + "\n")
    return folder


def main(argv=None, prog=None) -> int:
    """`convngc download` and `python data/download.py`: NAME --dest DIR [--base-url] [--checksum] [--quiet]."""
    p = argparse.ArgumentParser(prog=prog, description="Download a dataset in its original format, verified by checksum.")
    p.add_argument("name", choices=sorted(DATASETS))
    p.add_argument("--dest", default=os.environ.get("CONVNGC_DATA_DIR"), required=not os.environ.get("CONVNGC_DATA_DIR"),
                   help="data root; files go to DEST/NAME/ (default $CONVNGC_DATA_DIR)")
    p.add_argument("--base-url", default=None, help="mirror to fetch the files from instead of the official host")
    p.add_argument("--checksum", action="append", default=[], metavar="[FILE=]ALGO:HEX",
                   help="checksum to use (required for cinic10); FILE= selects the file of a multi-file dataset")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    files = [r.filename for r in DATASETS[a.name].files]
    checksums = {}
    for c in a.checksum:
        fname, sep, value = c.partition("=")
        if not sep:
            if len(files) != 1:
                p.error(f"{a.name} has several files {files}: use --checksum FILE=ALGO:HEX")
            fname, value = files[0], c
        checksums[fname] = value
    try:
        folder = download(a.name, a.dest, base_url=a.base_url, progress=not a.quiet, checksums=checksums)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{a.name}: ready in {folder}")
    return 0


