"""A trial's training, epoch by epoch, kept where its process can find it again: what lets a row that trains
for hours (the paper-scale autoencoders) finish over several sessions, or after a killed worker.

`convngc reproduce` passes each trained trial a file under <out>/partial/ (one per row's model, dataset and
seed). After every epoch the model writes its whole training state there, atomically: parameters, optimizer,
random generators and history, with a key naming what it trains on (the settings and a hash of the training
images). A trial that finds a file with its own key continues after that epoch, and ends bit-identical to one
that was never stopped; a file with another key (other settings) is ignored and replaced. The driver removes
a job's files once its rows are written. On a cluster without a shared file system the file is on the worker's
own disk: a retry on the same machine resumes, one on another machine starts the trial again.

The file is a pickle: it is this program's own scratch state, never a format to exchange (the results are the
raw JSON); load() reads only files under the folder the command itself named.
"""
import hashlib
import os
import pickle

import numpy as np

from ..fileio import atomic_write

VERSION = 1


def key(model, seed, epochs, batch_size, train_x, **settings):
    """What a partial state must match to be resumed: the model's name and settings, the seed, the epoch count
    and batch size, and the training images themselves (their shape and a hash of their bytes)."""
    h = hashlib.sha256(np.ascontiguousarray(train_x).tobytes()).hexdigest()[:16]
    return {"version": VERSION, "model": model, "seed": int(seed), "epochs": int(epochs),
            "batch_size": int(batch_size), "train": [list(np.shape(train_x)), str(np.asarray(train_x).dtype), h],
            "settings": {k: settings[k] for k in sorted(settings)}}


def load(path, want):
    """The state saved at `path` for key `want`, or None (no file, another key, or a file that cannot be read:
    the trial then starts from its first epoch)."""
    if path is None or not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except Exception:                                   # a truncated or foreign file: start again, overwrite it
        return None
    return state if isinstance(state, dict) and state.get("key") == want else None


def save(path, want, state):
    """Write `state` (a dict: epoch, history, and the model's own entries) with its key, atomically. Returns
    False when it cannot be written (a worker that cannot reach the driver's folder): the trial goes on, it
    just cannot be resumed."""
    if path is None:
        return False
    try:
        atomic_write(path, lambda tmp: _dump(tmp, dict(state, key=want)), suffix=".pkl")
    except OSError:
        return False
    return True


def _dump(tmp, obj):
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)

