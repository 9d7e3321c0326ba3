"""Checkpoints: one .npz holding the parameters, the optimiser state and a JSON header.

Written atomically (temporary file in the same folder, fsync, os.replace), so a crash mid-write never
leaves a half checkpoint where a good one was. Loading checks the format, the config and every shape.
Every file the project writes goes through :func:`atomic_write`: it gets the permissions the umask allows
(as a plain open() would), an error names the file it was writing, and a kill mid-write leaves only a hidden
``.<name>.XXXXXXXX.tmp`` that :func:`clean_stale_tmp` removes on the next start.
"""
import json
import math
import os
import re
import tempfile

import numpy as np

from ngc_ref.checks import param_shape
from ngc_ref.config import Config

FORMAT = "convngc-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, or not matching the model."""


def _umask():
    """The process umask, read without changing it where /proc allows (os.umask can only set it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    m = os.umask(0o022)
    os.umask(m)
    return m


def atomic_write(path, write_fn, suffix=""):
    """Call write_fn(tmp_path) for a temporary file beside `path`, then move it into place atomically.

    An OSError (a full disk, a read-only folder) is raised again with `path` as its filename, so the message
    names the file that could not be written; the file already at `path` is untouched.
    """
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp" + suffix, dir=d)
        os.close(fd)
        write_fn(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())          # mkstemp makes 0600 whatever the umask
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename != path:
            raise type(exc)(exc.errno, exc.strerror, path) from exc
        raise
    return path


_STALE_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[^/]*)?$")     # what atomic_write's mkstemp names look like


def clean_stale_tmp(folder):
    """Remove the hidden temporary files a killed atomic_write left in `folder`; return their names.

    Call it only while no other process writes into `folder` (the run lock guarantees that for a run folder).
    """
    gone = []
    for name in sorted(os.listdir(folder)):
        if _STALE_TMP.match(name) and os.path.isfile(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))
            gone.append(name)
    return gone


def strict_json(obj):
    """`obj` with every NaN/Inf float replaced by None and NumPy values by Python ones: what json.dump
    can write with allow_nan=False (strict JSON, which other tools can read; bare NaN is not JSON)."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _flatten(prefix, tree, out):
    for key, arrs in tree.items():
        if arrs is None:
            continue
        for l, a in enumerate(arrs):
            if a is not None:
                out["%s%s/%d" % (prefix, key, l)] = np.asarray(a)


def save(path, cfg, params, opt_state=None, meta=None, extra=None):
    """Save parameters (+ optimiser state, free-form JSON metadata, and `extra` named parameter sets such as
    the beta schedule's restore point, {name: params}) to `path` atomically."""
    arrays = {}
    _flatten("params/", params, arrays)
    for name, tree in (extra or {}).items():
        if tree is not None:
            _flatten("extra/%s/" % name, tree, arrays)
    header = {"format": FORMAT, "config": cfg.to_dict(), "meta": meta or {},
              "has_E": params.get("E") is not None, "opt_t": None}
    if opt_state is not None:
        header["opt_t"] = int(opt_state["t"])
        _flatten("adam_m/", opt_state["m"], arrays)
        _flatten("adam_v/", opt_state["v"], arrays)
    arrays["header"] = np.frombuffer(json.dumps(strict_json(header), allow_nan=False).encode(), dtype=np.uint8)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    atomic_write(path, write)


def load(path, expect_cfg=None):
    """Load a checkpoint -> (cfg, params, opt_state or None, meta). Raises CheckpointError naming the problem.

    If `expect_cfg` is given, the checkpoint's config must equal it (the differing options are listed).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError("checkpoint %s does not exist" % path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError, EOFError, OSError...
        raise CheckpointError("checkpoint %s is not a readable .npz file (%s: %s); it may be truncated or "
                              "not a convngc checkpoint" % (path, type(exc).__name__, exc)) from None
    if "header" not in arrays:
        raise CheckpointError("checkpoint %s has no convngc header; is it a convngc checkpoint?" % path)
    try:
        header = json.loads(arrays.pop("header").tobytes().decode())
    except ValueError as exc:
        raise CheckpointError("checkpoint %s: corrupt header (%s)" % (path, exc)) from None
    if header.get("format") != FORMAT:
        raise CheckpointError("checkpoint %s: unknown format %r (expected %r)" % (path, header.get("format"), FORMAT))
    try:
        cfg = Config.from_dict(header["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError("checkpoint %s: invalid config (%s)" % (path, exc)) from None
    if expect_cfg is not None and expect_cfg != cfg:
        a, b = cfg.to_dict(), expect_cfg.to_dict()
        diff = ", ".join("%s: checkpoint %r vs requested %r" % (k, a[k], b[k]) for k in a if a[k] != b[k])
        raise CheckpointError("checkpoint %s was trained with a different config (%s)" % (path, diff))

    params, opt_state = _trees(path, arrays, cfg, header)
    return cfg, params, opt_state, header.get("meta", {})


def load_extra(path, name):
    """The parameter set `name` saved with save(..., extra={name: params}), or None if the file has none."""
    cfg, _, _, _ = load(path)
    with np.load(os.fspath(path), allow_pickle=False) as z:
        arrays = {k[len("extra/%s/" % name):]: z[k] for k in z.files if k.startswith("extra/%s/" % name)}
        header = json.loads(z["header"].tobytes().decode())
    if not arrays:
        return None
    arrays = {"params/" + k: v for k, v in arrays.items()}
    return _trees(path, arrays, cfg, dict(header, opt_t=None))[0]


def _trees(path, arrays, cfg, header):
    L = cfg.L
    keys = ("W", "b", "E") if header.get("has_E") else ("W", "b")

    def tree(prefix):
        out = {}
        for key in keys:
            out[key] = [None]
            for l in range(1, L + 1):
                name = "%s%s/%d" % (prefix, key, l)
                if name not in arrays:
                    raise CheckpointError("checkpoint %s: missing array %s" % (path, name))
                a = arrays[name]
                if a.shape != param_shape(cfg, key, l):                  # b's shape follows cfg.bias
                    raise CheckpointError("checkpoint %s: %s has shape %s but the config needs %s"
                                          % (path, name, a.shape, param_shape(cfg, key, l)))
                if not np.isfinite(a).all():
                    raise CheckpointError("checkpoint %s: %s contains NaN/Inf" % (path, name))
                out[key].append(a)
        out.setdefault("E", None)
        return out

    params = tree("params/")
    opt_state = None
    if header.get("opt_t") is not None:
        m, v = tree("adam_m/"), tree("adam_v/")
        opt_state = {"t": header["opt_t"], "m": {k: m[k] for k in keys}, "v": {k: v[k] for k in keys}}
    return params, opt_state
