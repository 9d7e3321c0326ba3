"""Train / validation / test splits (Appendix B: 5,000 training images held out for validation)."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

Array = np.ndarray
XY = Tuple[Array, Optional[Array]]

VAL_SIZE = 5000        # paper, Appendix B: 5,000 training images held out for validation
VAL_FRACTION = 0.10    # ... but at most this fraction of a smaller training set


def split_train_val(n_train: int, seed: int = 0, n_val: Optional[int] = None) -> Tuple[Array, Array]:
    """Indices ``(train_idx, val_idx)`` of a training set of size ``n_train``, both sorted, disjoint, complete.

    Default ``n_val = min(5000, n_train // 10)``: the paper holds out 5,000 training images (Appendix B); a
    training set smaller than 50,000 (embedded patches, partial CIFAR-10) gives 10% instead. Deterministic in seed.
    """
    if n_val is None:
        n_val = min(VAL_SIZE, int(n_train * VAL_FRACTION))
    perm = np.random.default_rng(seed).permutation(n_train)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def no_test_split(x: Array, y: Optional[Array], split: str, seed: int) -> XY:
    """For a set without an official test split: a fixed 10% test part (seed 0, independent of ``seed``),
    then train/val as usual from the rest."""
    rest, test = split_train_val(len(x), seed=0, n_val=int(len(x) * VAL_FRACTION))
    idx = test if split == "test" else rest[split_train_val(len(rest), seed)[split == "val"]]
    return x[idx], (y[idx] if y is not None else None)
