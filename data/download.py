#!/usr/bin/env python
"""Download a dataset in its original format, verified by checksum (same as `convngc download`).

    python data/download.py cifar10 --dest DIR
    python data/download.py cinic10 --dest DIR --checksum sha256:<hex>

Then load it with ``convngc.data.load_dataset(NAME, split, data_dir=DIR)`` (or set CONVNGC_DATA_DIR=DIR).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from convngc.download import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
