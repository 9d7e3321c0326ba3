#!/usr/bin/env python
"""Download a dataset in its original format, verified by checksum.

    python data/download.py cifar10 --dest DIR
    python data/download.py cinic10 --dest DIR --checksum sha256:<hex>

Then load it with ``convngc.data.load_dataset(NAME, split, data_dir=DIR)`` (or set CONVNGC_DATA_DIR=DIR).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from convngc.data import DataError  # noqa: E402
from convngc.download import DATASETS, download  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", choices=sorted(DATASETS))
    p.add_argument("--dest", required=True, help="data root; files go to DEST/NAME/")
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


if __name__ == "__main__":
    sys.exit(main())
