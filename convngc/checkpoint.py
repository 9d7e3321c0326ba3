"""Checkpoints: one .npz holding the parameters, the optimiser state and a JSON header.

Written atomically (convngc.fileio.atomic_write: temporary file in the same folder, fsync, os.replace), so a
crash mid-write never leaves a half checkpoint where a good one was. Loading checks the format, the config and
every shape.
"""
import json
import os

import numpy as np

from ngc_ref.checks import param_shape
from ngc_ref.config import Config

from .fileio import NotARegularFile, atomic_write, open_regular, strict_json

FORMAT = "convngc-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, or not matching the model."""


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


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _int_field(d, key, where, lo, required=False, none_ok=False):
    if key not in d:
        if required:
            raise CheckpointError("%s has no %s" % (where, key))
        return
    v = d[key]
    if v is None and none_ok:
        return
    if not _is_int(v) or v < lo:
        raise CheckpointError("%s.%s must be an integer >= %d%s, got %r" % (where, key, lo,
                                                                         " or null" if none_ok else "", v))


def check_run_args(run, where, required=()):
    """The run part of a record (config.json's "run", a checkpoint's meta.run_args): each field it knows has
    its type and range (a field it does not know is kept: later versions add fields). Raises CheckpointError
    naming `where` and the field."""
    if not isinstance(run, dict):
        raise CheckpointError("%s must be a JSON object, got %s" % (where, type(run).__name__))
    for key in required:
        if key not in run:
            raise CheckpointError("%s has no %s" % (where, key))
    if "dataset" in run and not isinstance(run["dataset"], str):
        raise CheckpointError("%s.dataset must be a dataset name, got %r" % (where, run["dataset"]))
    _int_field(run, "batch_size", where, 1)
    _int_field(run, "epochs", where, 1)
    _int_field(run, "seed", where, 0)
    _int_field(run, "limit", where, 1, none_ok=True)
    _int_field(run, "val_limit", where, 0, none_ok=True)
    if run.get("data_dir") is not None and not isinstance(run["data_dir"], str):
        raise CheckpointError("%s.data_dir must be a path or null, got %r" % (where, run["data_dir"]))
    if run.get("init") is not None and not isinstance(run["init"], dict):
        raise CheckpointError("%s.init must be a JSON object or null, got %r" % (where, run["init"]))
    return run


HISTORY_KEYS = ("train_energy", "val_mse", "epoch_seconds")     # lists of numbers (null: no value that epoch)


def check_meta(meta, where):
    """A checkpoint's free-form metadata: the fields training reads (epoch, seed, history, rng_state, backend,
    run_args) have their types and ranges; other fields (later versions add some) are kept as they are."""
    if not isinstance(meta, dict):
        raise CheckpointError("%s must be a JSON object, got %s" % (where, type(meta).__name__))
    _int_field(meta, "epoch", where, 0)
    _int_field(meta, "seed", where, 0)
    if "backend" in meta and not isinstance(meta["backend"], str):
        raise CheckpointError("%s.backend must be a backend name, got %r" % (where, meta["backend"]))
    if "history" in meta:
        hist = meta["history"]
        if not isinstance(hist, dict):
            raise CheckpointError("%s.history must be a JSON object, got %s" % (where, type(hist).__name__))
        for key in HISTORY_KEYS:
            if key in hist and not (isinstance(hist[key], list)
                                    and all(v is None or _is_number(v) for v in hist[key])):
                raise CheckpointError("%s.history.%s must be a list of numbers, got %r" % (where, key, hist[key]))
    if "rng_state" in meta:
        try:
            np.random.PCG64().state = meta["rng_state"]
        except Exception as exc:
            raise CheckpointError("%s.rng_state is not the state of a PCG64 generator (%s)" % (where, exc)) from None
    if "run_args" in meta and meta["run_args"] is not None:
        check_run_args(meta["run_args"], where + ".run_args")
    return meta


def check_header(header, path):
    """The JSON header of a checkpoint: one schema check, each problem named by its field."""
    where = "checkpoint %s" % path
    if not isinstance(header, dict):
        raise CheckpointError("%s: the header must be a JSON object, got %s; is it a convngc checkpoint?"
                              % (where, type(header).__name__))
    if header.get("format") != FORMAT:
        raise CheckpointError("%s: unknown format %r (expected %r)" % (where, header.get("format"), FORMAT))
    if not isinstance(header.get("config"), dict):
        raise CheckpointError("%s: header.config must be a JSON object of Config options, got %r"
                              % (where, header.get("config")))
    if "has_E" in header and not isinstance(header["has_E"], bool):
        raise CheckpointError("%s: header.has_E must be true or false, got %r" % (where, header["has_E"]))
    if header.get("opt_t") is not None and not (_is_int(header["opt_t"]) and header["opt_t"] >= 0):
        raise CheckpointError("%s: header.opt_t (the optimiser's step count) must be an integer >= 0 or null, "
                              "got %r" % (where, header["opt_t"]))
    check_meta(header.get("meta", {}), "%s: meta" % where)
    return header


def load(path, expect_cfg=None):
    """Load a checkpoint -> (cfg, params, opt_state or None, meta). Raises CheckpointError naming the problem.

    If `expect_cfg` is given, the checkpoint's config must equal it (the differing options are listed).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError("checkpoint %s does not exist" % path)
    try:
        with open_regular(path) as f, np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except NotARegularFile as exc:
        raise CheckpointError("checkpoint %s" % exc) from None
    except Exception as exc:  # zipfile.BadZipFile, ValueError, EOFError, OSError...
        raise CheckpointError("checkpoint %s is not a readable .npz file (%s: %s); it may be truncated or "
                              "not a convngc checkpoint" % (path, type(exc).__name__, exc)) from None
    if "header" not in arrays:
        raise CheckpointError("checkpoint %s has no convngc header; is it a convngc checkpoint?" % path)
    try:
        header = json.loads(arrays.pop("header").tobytes().decode())
    except ValueError as exc:
        raise CheckpointError("checkpoint %s: corrupt header (%s)" % (path, exc)) from None
    check_header(header, path)
    try:
        cfg = Config.from_dict(header["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError("checkpoint %s: invalid config (%s)" % (path, exc)) from None
    if cfg.learn_E and not header.get("has_E"):
        raise CheckpointError("checkpoint %s: config.learn_E is true but header.has_E is not: the error filters E "
                              "are missing" % path)
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
                if a.dtype.kind != "f":
                    raise CheckpointError("checkpoint %s: %s has dtype %s, not floating point"
                                          % (path, name, a.dtype))
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
