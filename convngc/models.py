"""Trained models: the ones shipped with the code (models/<name>/) and any run folder or checkpoint.

    import convngc.models
    model = convngc.models.load("cifar10")              # a shipped model, by name
    model = convngc.models.load("runs/my-run")          # a run folder: its best.npz (else checkpoint.npz)
    model = convngc.models.load("runs/my-run/checkpoint.npz")
    convngc.models.names()                              # the shipped models: ['cifar10', ...]
    convngc.models.card("cifar10")                      # its model.json: config, data, metrics, command, sha256

A shipped model is a folder models/<name>/ holding `model.npz` (a checkpoint: filters, Adam state, config) and
`model.json` (the model card). Loading checks the file's sha256 against the card, so a damaged or edited file
is named, not used.
"""
import hashlib
import json
import os

from . import checkpoint

MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")


class ModelNotFound(checkpoint.CheckpointError):
    """A --model / load() argument that names no shipped model, run folder or checkpoint file."""


def names():
    """The shipped models, sorted: every models/<name>/ with a model.npz."""
    if not os.path.isdir(MODELS_DIR):
        return []
    return sorted(n for n in os.listdir(MODELS_DIR) if os.path.isfile(os.path.join(MODELS_DIR, n, "model.npz")))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card(name):
    """The model card (models/<name>/model.json) of a shipped model, as a dict."""
    path = os.path.join(MODELS_DIR, name, "model.json")
    if name not in names() or not os.path.isfile(path):
        raise ModelNotFound("no shipped model %r (shipped: %s)" % (name, ", ".join(names()) or "none"))
    with open(path) as f:
        return json.load(f)


def resolve(spec):
    """A shipped model's name, a run folder or a checkpoint file -> the checkpoint path to load.

    A run folder gives its best.npz (the epoch with the lowest validation MSE) when it has one, else its
    checkpoint.npz (the last epoch)."""
    spec = os.fspath(spec)
    if spec in names() and not os.path.exists(spec):
        path = os.path.join(MODELS_DIR, spec, "model.npz")
        want = card(spec).get("sha256")
        if want and sha256(path) != want:
            raise checkpoint.CheckpointError("shipped model %s: %s does not match the sha256 of its model.json; "
                                             "the file is damaged or was edited (git checkout -- %s restores it)"
                                             % (spec, path, os.path.relpath(path)))
        return path
    if os.path.isdir(spec):
        for name in ("best.npz", "checkpoint.npz"):
            if os.path.isfile(os.path.join(spec, name)):
                return os.path.join(spec, name)
        raise ModelNotFound("%s: a folder without best.npz or checkpoint.npz; not a run folder" % spec)
    if os.path.isfile(spec):
        return spec
    raise ModelNotFound("%s does not exist: not a shipped model (%s), a run folder or a checkpoint file"
                        % (spec, ", ".join(names()) or "none shipped"))


def load(spec="cifar10", backend=None):
    """A ConvNGC ready to use from a shipped model's name, a run folder or a checkpoint file (default backend:
    the fastest available)."""
    from .model import default_backend
    from .train import load_model
    return load_model(resolve(spec), backend=backend or default_backend())[0]
