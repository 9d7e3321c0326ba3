"""`convngc`: train, evaluate, run the main job, download data.

  convngc run                         train + evaluate on the embedded images (no download), report in runs/
  convngc train --dataset cifar10 --data-dir ../shared/data --epochs 5 --out runs/cifar
  convngc train --resume runs/cifar --epochs 10
  convngc evaluate runs/cifar --dataset cifar10 --tasks reconstruction denoising --trials 5
  convngc evaluate runs/cifar --tasks ood --ood-dataset cinic10
  convngc download cifar10 --dest ~/data
  convngc info
  convngc denoise photo.png --model cifar10 --out out/      (and reconstruct: pictures of any size, pictures.py)

Every option is checked before any data is loaded or any folder is made. An option repeated keeps its last
value (as argparse does); a Config field given by its flag and by --set with two values (--T 7 --set T=5) is an
error naming both. An empty path (--out "", --data-dir "") is an error. Exit status: 0 done; 1 a file could
not be written (full disk, read-only folder) or read (permissions); 2 a bad option, bad data, or a run folder that
cannot be used; 130 Ctrl-C; 143 SIGTERM.
"""
import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import warnings

import numpy as np

from ngc_ref.config import RANGES, Config, ConfigError, check_option, describe_range

from . import checkpoint, data, metrics, models, progress, rundir, schedule, train, tune
from .download import Terminated, sigterm_raises
from . import pictures
from .fileio import NotARegularFile, open_regular, write_json
from .backends import BACKENDS, BackendUnavailable
from .model import ConvNGC, DivergenceError, TooLarge, check_memory
from .usage import UsageError, int_at_least

TASKS = ("reconstruction", "denoising", "ood")
def _backend_or_default(name, log=print):
    """`name`, or the registry's default (convngc/backends.py: the fastest usable here), saying so."""
    if name:
        return name
    from . import backends
    name = backends.default()
    log("backend: %s (the fastest available here; --backend numpy runs the literal reference)" % name)
    return name

# The main job (`convngc run`, what `make run` does): all its settings in one place, so it is retuned here.
MAIN_JOB = dict(
    dataset="embedded",       # photo patches bundled with scikit-image: no download
    epochs=12, limit=None, val_limit=None, batch_size=100,     # all 2,082 training patches, 252 updates
    lr=3e-3,                  # a short job needs a bigger Adam step than the paper's 1e-3 to show learning; 1e-2
                              # makes the settling unstable within a few epochs (results/STUDY.md: the stability edge)
    trials=3, eval_limit=None, eval_batch_size=128,           # all 256 held-out test patches
    tune_limit=100,           # the denoising reading is tuned on 100 validation patches (a few seconds)
)
# Defaults of `train` and `evaluate`. The parser's own defaults are None, so that `--resume` can tell an option
# the user gave from one left at its default; these fill in what was not given.
TRAIN_DEFAULTS = dict(dataset="embedded", epochs=5, batch_size=500, seed=0)
EVAL_DEFAULTS = dict(batch_size=100, seed=0, trials=5)
# Config fields with an option of their own; every other field is set with --set KEY=VALUE.
MODEL_FLAGS = {"T": "--T", "beta": "--beta", "gamma": "--gamma", "lr": "--lr", "leak": "--leak",
               "optimizer": "--optimizer", "channels": "--channels", "pcn": "--pcn", "learn_E": "--learn-E"}
# What a resumed run keeps from its record (config.json / the checkpoint), with the option that sets it.
RUN_FLAGS = {"dataset": "--dataset", "limit": "--limit", "val_limit": "--val-limit", "batch_size": "--batch-size",
             "seed": "--seed"}


def _path(text):
    """A path option: an empty one ('' from an unset shell variable) would silently mean the current folder or
    the default, so it is an error."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a path, got an empty string %r" % text)
    return text


class _Status:
    """What the Ctrl-C message needs to know: the run folder in use and its last checkpointed epoch."""

    def __init__(self):
        self.run_dir, self.epoch = None, 0

    def checkpointed(self, epoch):
        self.epoch = epoch


# ---------------------------------------------------------------------------------------------------------------
# option values, checked by argparse before any work
# ---------------------------------------------------------------------------------------------------------------
_int_at_least = int_at_least


def _spike(text):
    """--spike: 0 (off) or a factor > 1."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and (v == 0 or v > 1)):
        raise argparse.ArgumentTypeError("must be 0 (off) or a factor > 1, got %r" % text)
    return v


def _parse_field(name, text):
    """Text -> the value of Config field `name`, checked against Config's own range table."""
    field = {f.name: f for f in dataclasses.fields(Config)}[name]
    default = field.default
    if name in RANGES:
        kind = RANGES[name][0]
    else:
        kind = ("bool" if isinstance(default, bool) else "int" if isinstance(default, int) else
                "float" if isinstance(default, float) else "tuple" if isinstance(default, tuple) else "str")
    bad = argparse.ArgumentTypeError("%s must be %s, got %r" % (
        name, describe_range(name) if name in RANGES else "a %s" % kind, text))
    try:
        if kind == "bool":
            low = text.strip().lower()
            if low not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise bad
            value = low in ("1", "true", "yes", "on")
        elif kind == "int":
            value = int(text)
        elif kind == "float":
            value = float(text)
        elif kind == "tuple":
            value = _int_list(text, name)
        else:
            value = text
        if name in RANGES:
            check_option(name, value)
    except (ValueError, ConfigError):
        raise bad from None
    return value


def _config_type(name):
    return lambda text: _parse_field(name, text)


def _int_list(text, name="--channels"):
    parts = [p.strip() for p in text.split(",")]
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        vals = ()
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError("%s must be comma-separated integers >= 1, got %r" % (name, text))
    return vals


def _channels(text):
    vals = _int_list(text, "channels")
    if len(vals) < 2:
        raise argparse.ArgumentTypeError("channels needs at least two layers, top first, the image last "
                                         "(e.g. 10,15,20,25,3), got %r" % text)
    return vals


def _set_item(text):
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("expected KEY=VALUE, got %r" % text)
    fields = [f.name for f in dataclasses.fields(Config)]
    if key not in fields:
        raise argparse.ArgumentTypeError("unknown option %r; known: %s" % (key, ", ".join(sorted(fields))))
    return key, _parse_field(key, value), text


def _flag(field):
    return MODEL_FLAGS.get(field, "--set %s" % field)


def _overrides(args):
    """The Config fields the user set, {field: (value, option)}. An option repeated in the same spelling keeps
    its last value (--T 5 --T 7 is 7; --set T=5 --set T=7 is 7), as argparse does; one field set by its flag and
    by --set with two values (--set T=5 --T 7, --set pcn=false --pcn) is a UsageError naming both."""
    over, typed = {}, {}

    def put(field, value, option, shown):
        if field in over and over[field][0] != value:
            raise UsageError("%s and %s set %s to two values (%s and %s): give it once"
                             % (typed[field], shown, field, _show(over[field][0]), _show(value)))
        over[field], typed[field] = (value, option), shown
    for name in ("T", "beta", "gamma", "lr", "leak", "optimizer", "channels"):
        v = getattr(args, name, None)
        if v is not None:
            put(name, v, MODEL_FLAGS[name], "%s %s" % (MODEL_FLAGS[name], _show(v)))
    for name in ("pcn", "learn_E"):
        if getattr(args, name, False):
            put(name, True, MODEL_FLAGS[name], MODEL_FLAGS[name])
    last = {}
    for key, v, text in getattr(args, "set", None) or []:
        last[key] = (v, text)
    for key, (v, text) in last.items():
        put(key, v, "--set %s" % key, "--set %s" % text)
    return over


def _config_from_args(args, base=None):
    """`base` (default: the paper's Config) with the options given; a bad combination is a UsageError."""
    given = _overrides(args)
    d = dict((base or Config()).to_dict(), **{k: v for k, (v, _) in given.items()})
    try:
        return Config.from_dict(d)
    except ConfigError as exc:
        # name what the user typed: image sizes fail through the layer count (--channels) or the stride
        involved = [exc.field] + (["channels", "stride"] if exc.field == "image_hw" else [])
        flags = [given[f][1] for f in involved if f in given] or [_flag(exc.field)]
        raise UsageError("%s: %s" % (", ".join(flags), exc)) from None


# ---------------------------------------------------------------------------------------------------------------
# the parser: every option with one line of help, its default and the paper's value
# ---------------------------------------------------------------------------------------------------------------
def _add_common(p, batch_help):
    p.add_argument("--data-dir", type=_path, default=None, help="folder with real data (default: "
                   "$CONVNGC_DATA_DIR, else ../shared/data)")
    p.add_argument("--backend", default=None, choices=BACKENDS, help="numpy (the reference), cuda (GPU), cuda-emu "
                   "(the CUDA kernels emulated on the CPU: a validation tool, slow) (default: the fastest available: cuda "
                   "with a usable GPU, else cpu)")
    p.add_argument("--seed", type=_int_at_least(0), default=None, help="makes the run repeatable: init, shuffling, "
                   "z^L draws, noise (default 0)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=None, help=batch_help)
    progress.add_flags(p)


def _add_model(p, lr_help):
    p.add_argument("--T", type=_config_type("T"), default=None, help="settling steps per image (default and "
                   "paper: 60)")
    p.add_argument("--beta", type=_config_type("beta"), default=None, help="state correction rate, Eq. 2 "
                   "(default and paper: 0.1)")
    p.add_argument("--gamma", type=_config_type("gamma"), default=None, help="state leak, Eq. 2 (default and "
                   "paper: 0.001)")
    p.add_argument("--lr", type=_config_type("lr"), default=None, help=lr_help)
    p.add_argument("--leak", type=_config_type("leak"), default=None, help="leaky-ReLU slope of phi, in [0, 1] "
                   "(default 0.2, TensorFlow's; the paper gives none)")
    p.add_argument("--optimizer", choices=("adam", "normalized"), default=None, help="adam (the paper's "
                   "experiments) or normalized (its Algorithm 2) (default adam)")
    p.add_argument("--channels", type=_channels, default=None, help="channels per layer, top to bottom, the "
                   "image last (default and paper: 10,15,20,25,3)")
    p.add_argument("--pcn", action="store_true", help="multiply the bottom-up message by phi'(z), which recovers "
                   "PCN (off by default, as in the paper)")
    p.add_argument("--learn-E", dest="learn_E", action="store_true", help="learnable error filters E (off by "
                   "default: E = W^T, as in the paper)")
    p.add_argument("--set", action="append", type=_set_item, metavar="KEY=VALUE", help="any other Config field, "
                   "e.g. --set mu_z=5; repeatable (default: the paper's configuration)")


TUNE_LIMIT = 500      # validation images the denoising reading is tuned on (train's last step, `convngc tune`)


def _add_tune_limit(p, help, at_least=0):
    p.add_argument("--tune-limit", type=_int_at_least(at_least), default=None, help=help)


def _add_schedule(p):
    p.add_argument("--beta-schedule", choices=schedule.MODES, default=None, help="step: halve beta (and gamma, "
                   "doubling T) when the settle reaches its stability edge, with a fresh Adam state from the best "
                   "parameters so far; fixed: keep the given beta (the paper's) (default step; a blow-up is taken "
                   "back to the best parameters in both)")
    p.add_argument("--check-every", type=_int_at_least(1), default=None, help="updates between two stability "
                   "checks of the beta schedule (default %d)" % schedule.ScheduleOptions.check_every)
    p.add_argument("--spike", type=_spike, default=None, help="an update whose training energy is SPIKE times the "
                   "median of the last %d, with the settle past its stability edge there, is taken back at once "
                   "(beta steps down) instead of at the next check (0: off; default %g)" % (schedule.ScheduleOptions.spike_window, schedule.ScheduleOptions.spike))


def build_parser():
    ap = argparse.ArgumentParser(prog="convngc", description="Convolutional Neural Generative Coding",
                                 epilog="Exit status: 0 done, 1 a file could not be written, 2 a bad option, data "
                                 "or run folder, 130 Ctrl-C, 143 SIGTERM.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="train a model (Algorithms 1-2) and write a run folder")
    _add_common(p, "images per update (default and paper: 500)")
    _add_model(p, "Adam step, or alpha of the normalised step (default and paper: 1e-3)")
    p.add_argument("--dataset", default=None, choices=data.DATASET_NAMES, help="(default embedded: photo patches "
                   "bundled with scikit-image, no download)")
    p.add_argument("--epochs", type=_int_at_least(1), default=None, help="passes over the training set (default 5; "
                   "the paper does not give one); with --resume, the new total")
    p.add_argument("--limit", type=_int_at_least(1), default=None, help="use only the first N training images "
                   "(default: all)")
    p.add_argument("--val-limit", type=_int_at_least(0), default=None, help="use only the first N validation "
                   "images, 0 for none (default: all, 5,000 or 10%% of a smaller set)")
    p.add_argument("--out", type=_path, default=None, help="run folder (default runs/<dataset>-<time>); never "
                   "overwritten")
    p.add_argument("--resume", type=_path, default=None, metavar="RUN", help="continue the run in this folder; only "
                   "--epochs, --backend and --data-dir may change (default: start a new run)")
    p.add_argument("--init", type=_path, default=None, metavar="CHECKPOINT", help="start a new run from this "
                   "checkpoint's filters and Adam state (a .npz, or a run folder's checkpoint.npz), e.g. to continue with a smaller --beta "
                   "and a larger --T past the stability edge; the layers must match, other options may differ (default: "
                   "new filters from --seed)")
    p.add_argument("--fresh-optimizer", action="store_true", help="with --init: start from the checkpoint's filters "
                   "with a fresh Adam state (as the beta schedule does when it steps down)")
    _add_schedule(p)
    _add_tune_limit(p, "after training, tune the denoising reading (pi0, T) of best.npz on the first N validation "
                    "images, 0 to skip (default %d)" % TUNE_LIMIT)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on reconstruction / denoising / OOD")
    _add_common(p, "images per settle; results do not depend on it (default 100; paper: 500 in training)")
    p.add_argument("checkpoint", nargs="?", type=_path, default=None, help="a run folder (its best.npz, else "
                   "checkpoint.npz) or a checkpoint .npz")
    p.add_argument("--model", type=_path, default=None, help="a shipped model by name (%s), or a run folder or "
                   "checkpoint (default: the CHECKPOINT argument)" % ", ".join(models.names() or ["models/<name>/"]))
    p.add_argument("--dataset", default=None, choices=data.DATASET_NAMES, help="(default: the training dataset)")
    p.add_argument("--split", default="test", choices=data.SPLITS, help="(default test)")
    p.add_argument("--tasks", nargs="+", default=["reconstruction", "denoising"], choices=TASKS,
                   help="(default reconstruction denoising)")
    p.add_argument("--ood-dataset", default="cinic10", choices=data.DATASET_NAMES, help="the other dataset of the "
                   "ood task (default cinic10)")
    p.add_argument("--trials", type=_int_at_least(1), default=None, help="repeats with new z^L draws and noise, "
                   "reported as mean +/- std (default and paper: 5)")
    p.add_argument("--limit", type=_int_at_least(1), default=None, help="evaluate on the first N images "
                   "(default: all)")
    p.add_argument("--T", type=_config_type("T"), default=None, help="settling steps of reconstruction and ood at "
                   "test time (default: the model's; paper: 60)")
    p.add_argument("--T-denoise", dest="T_denoise", type=_config_type("T"), default=None, help="settling steps of "
                   "denoising (default: the model's T_denoise, tuned by `convngc tune`)")
    p.add_argument("--denoise", choices=RANGES["denoise"][1:], default=None, help="the denoising reading: precision "
                   "(z^0 clamped, its error weighted by pi0), clamped (Algorithm 1), free (Sec. 4) (default: the model's)")
    p.add_argument("--pi0", type=_config_type("pi0"), default=None, help="precision of the noisy image's error "
                   "under --denoise precision (default: the model's, tuned by `convngc tune`)")
    p.add_argument("--momentum", type=_config_type("momentum"), default=None, help="heavy-ball momentum of the "
                   "denoising settle under --denoise precision, in [0, 1); 0 = Algorithm 1's plain steps (default: the "
                   "model's, set by `convngc tune`)")
    p.add_argument("--out", type=_path, default=None, help="folder for metrics.json and pictures (default: the "
                   "run folder); never a folder holding another run")

    job = MAIN_JOB
    p = sub.add_parser("run", help="the main job: train + evaluate on a small real image set (no download)")
    _add_common(p, "images per update (default %d here; paper: 500)" % job["batch_size"])
    _add_model(p, "Adam step (default %g here, so that a short job learns; paper: 1e-3)" % job["lr"])
    p.add_argument("--dataset", default=None, choices=data.DATASET_NAMES, help="(default %s)" % job["dataset"])
    p.add_argument("--epochs", type=_int_at_least(1), default=None, help="(default %d)" % job["epochs"])
    p.add_argument("--limit", type=_int_at_least(1), default=None, help="training images (default: %s)" % (
                   "all" if job["limit"] is None else job["limit"]))
    p.add_argument("--trials", type=_int_at_least(1), default=None, help="evaluation trials (default %d here; "
                   "paper: 5)" % job["trials"])
    p.add_argument("--out", type=_path, default=None, help="run folder (default runs/<dataset>-<time>)")
    _add_schedule(p)
    _add_tune_limit(p, "validation images the denoising reading is tuned on, 0 to skip (default %d here)"
                    % job["tune_limit"])

    p = sub.add_parser("download", add_help=False, help="fetch a dataset from its official source and verify its "
                       "checksum (see `convngc download --help`)")
    p.add_argument("rest", nargs=argparse.REMAINDER)

    p = sub.add_parser("tune", help="tune a trained model's denoising reading (pi0, T) on validation images and "
                       "store it in the checkpoint")
    _add_common(p, "images per settle; results do not depend on it (default 100)")
    p.add_argument("checkpoint", help="a run folder (its best.npz, else checkpoint.npz) or a checkpoint .npz")
    p.add_argument("--dataset", default=None, choices=data.DATASET_NAMES, help="(default: the training dataset)")
    _add_tune_limit(p, "validation images to tune on (default %d)" % TUNE_LIMIT, at_least=1)
    p.add_argument("--dry-run", action="store_true", help="print the table and the choice, change no file")

    sub.add_parser("info", help="print the backends usable here (and the default), the paper configuration, its "
                   "parameter count and every Config field --set takes")
    sub.add_parser("reproduce", add_help=False, help="the paper's Tables 1-2 and Figures 3-4 with baselines (see "
                   "`convngc reproduce --help`)").add_argument("rest", nargs=argparse.REMAINDER)
    pictures.add_parsers(sub, BACKENDS)                 # denoise, reconstruct: picture files of any size
    return ap


# ---------------------------------------------------------------------------------------------------------------
# data, fitted to the model
# ---------------------------------------------------------------------------------------------------------------
def _dataset_for(name, cfg, log):
    """MNIST becomes Color-MNIST for a 32x32 RGB model, as in the paper; every other set is used as it is."""
    if name == "mnist" and cfg.layer_channels[0] == 3 and cfg.image_hw == (32, 32):
        log("mnist: 28x28 grayscale digits, the model takes 32x32 RGB images: using Color-MNIST, as the paper "
            "does (each digit resized to 32x32 and drawn red or green; --dataset color-mnist)")
        return "color-mnist"
    return name


def _load_images(name, split, data_dir, seed, limit, cfg, training):
    """uint8 images of a dataset split -> the model's float32 NCHW batch; a size that does not fit is a
    DataError naming both sizes and the option that fixes it."""
    x, _ = data.load_dataset(name, split, data_dir=data_dir, seed=seed, limit=limit)
    h, w = x.shape[1:3]
    c = x.shape[3] if x.ndim == 4 else 1
    C0, (H, W) = cfg.layer_channels[0], cfg.image_hw
    if (h, w) != (H, W) or c not in (C0, 1):
        if training:
            fix = ("train a model for them with --set image_hw=%d,%d (each side a multiple of stride^L = %d)"
                   % (h, w, cfg.stride ** cfg.L)) if (h, w) != (H, W) else \
                  "train a model for them with --channels ...,%d" % c
        else:
            fix = "this model was trained on %dx%dx%d images: evaluate it on a dataset of that size" % (H, W, C0)
        raise data.DataError("%s/%s: images are %dx%dx%d but the model takes %dx%dx%d (Config image_hw and "
                             "channels); %s" % (name, split, h, w, c, H, W, C0, fix))
    return data.to_model(x, channels=C0)


def _abs(path):
    return os.path.abspath(path) if path else None


# ---------------------------------------------------------------------------------------------------------------
# run folders: what was recorded
# ---------------------------------------------------------------------------------------------------------------
def _read_config_json(run_dir):
    """A run folder's config.json, checked once: a JSON object with a "model" object and a "run" object whose
    fields have their types and ranges (checkpoint.check_run_args); None if there is none."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.lexists(path):
        return None
    try:
        with open_regular(path) as f:
            rec = json.load(f)
        if not isinstance(rec, dict) or not isinstance(rec.get("model"), dict):
            raise ValueError("expected a JSON object with a \"model\" object")
        checkpoint.check_run_args(rec.get("run"), "run", required=("dataset", "batch_size", "epochs"))
    except NotARegularFile as exc:
        raise rundir.RunDirError("%s; restore config.json or start a new run" % exc) from None
    except (ValueError, checkpoint.CheckpointError) as exc:
        raise rundir.RunDirError("%s: unreadable (%s); restore it or start a new run" % (path, exc)) from None
    except OSError as exc:
        raise rundir.RunDirError("%s: cannot read it (%s)" % (path, exc.strerror or exc)) from None
    return rec


def _check_same_config(run_dir, recorded, cfg, meta=None):
    """The checkpoint's config must be the one config.json records (at the beta schedule's rung, when the
    run has one: beta, gamma, T and the Adam step then follow the schedule): refuse, naming the fields, if not."""
    if recorded is None:
        return
    try:
        rec_cfg = Config.from_dict(recorded["model"])
        if (meta or {}).get("schedule"):
            rec_cfg = schedule.config_at(rec_cfg, meta["schedule"])
        rec = rec_cfg.to_dict()
    except (ValueError, TypeError, KeyError) as exc:
        raise rundir.RunDirError("%s: invalid model config (%s)" % (os.path.join(run_dir, "config.json"), exc)) \
            from None
    ck = cfg.to_dict()
    diff = [k for k in sorted(set(rec) | set(ck)) if rec.get(k) != ck.get(k) and k not in INFERENCE_FIELDS]
    if diff:
        raise rundir.RunDirError(
            "%s: checkpoint.npz and config.json disagree on %s; the folder was edited or mixed with another run: "
            "restore config.json, or evaluate the checkpoint file on its own" % (run_dir, ", ".join(
                "%s (checkpoint %r, config.json %r)" % (k, ck.get(k), rec.get(k)) for k in diff)))


# Config fields that concern only how a trained model denoises (set by `convngc tune` after training): a
# checkpoint may differ from its config.json in these.
INFERENCE_FIELDS = ("denoise", "pi0", "T_denoise", "momentum")

# What --init requires to match: the layers and their parameter shapes. Everything else (beta, T, lr, leak, ...)
# may differ from the checkpoint's run.
INIT_MUST_MATCH = ("channels", "kernel", "stride", "image_hw", "bias", "learn_E")


def _init_from(path, cfg, log):
    """--init: (params, Adam state or None, which checkpoint) from a checkpoint whose layers match cfg."""
    if os.path.isdir(path):
        path = os.path.join(path, "checkpoint.npz")
    if not os.path.lexists(path):
        raise UsageError("--init %s: no such checkpoint file" % path)
    cfg0, params, opt_state, meta = checkpoint.load(path)
    a, b = cfg0.to_dict(), cfg.to_dict()
    diff = [k for k in INIT_MUST_MATCH if a.get(k) != b.get(k)]
    if diff:
        raise UsageError("--init %s: the checkpoint's layers differ from this run's: %s" % (path, ", ".join(
            "%s (checkpoint %r, this run %r)" % (k, a.get(k), b.get(k)) for k in diff)))
    changed = [k for k in sorted(b) if a.get(k) != b.get(k)]
    log("starting from %s (epoch %s)%s" % (path, meta.get("epoch"), "; changed: " + ", ".join(
        "%s %r -> %r" % (k, a.get(k), b.get(k)) for k in changed) if changed else ""))
    return params, opt_state, _checkpoint_info(path, meta)


def _checkpoint_info(path, meta=None):
    """Which checkpoint a metrics.json was computed from: absolute path, epoch, sha256 of the file (meta: the
    checkpoint's, when the caller has already loaded it)."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    meta = checkpoint.load(path)[3] if meta is None else meta
    return {"path": os.path.realpath(path), "epoch": meta.get("epoch"), "sha256": h.hexdigest()}


# ---------------------------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------------------------
def cmd_train(args, log=print, status=None):
    """A new run, or --resume of one. Returns (run_dir, model, run_args)."""
    status = status or _Status()
    init_path = getattr(args, "init", None)
    if init_path and args.resume:
        raise UsageError("--init and --resume: --resume continues a run as it was; --init starts a new one")
    _overrides(args)                  # a field given by its flag and by --set with two values: refused before any work
    if args.resume:
        return _resume(args, log, status)
    for k, v in TRAIN_DEFAULTS.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    backend = _backend_or_default(args.backend, log)
    cfg = _config_from_args(args)
    val_batch = VAL_BATCH if args.val_limit is None else min(VAL_BATCH, args.val_limit)
    _check_memory(args, cfg, max(args.batch_size, val_batch), backend)
    init = _init_from(init_path, cfg, log) if init_path else None
    if getattr(args, "fresh_optimizer", False) and not init:
        raise UsageError("--fresh-optimizer applies to --init only (a new run starts with a fresh Adam state)")
    model = ConvNGC(cfg, backend=backend, seed=args.seed,      # a backend that cannot run fails here
                    params=init[0] if init else None)
    if init and init[1] is not None and not args.fresh_optimizer:
        model.load_opt_state(init[1])
    sched_opts = _schedule_options(args)
    dataset = _dataset_for(args.dataset, cfg, log)
    if args.out:
        rundir.check_run_dir(args.out)                          # fail before loading data; the claim decides
    data_dir = _abs(args.data_dir)
    train_x = _load_images(dataset, "train", data_dir, args.seed, args.limit, cfg, True)
    val_x = _load_images(dataset, "val", data_dir, args.seed, args.val_limit, cfg, True) if args.val_limit != 0 \
        else np.zeros((0,) + train_x.shape[1:], train_x.dtype)
    folder = rundir.claim_run_dir(args.out) if args.out else \
        rundir.new_run_dir(os.path.join("runs", "%s-%s" % (dataset, time.strftime("%Y%m%d-%H%M%S"))))
    run_args = {"dataset": dataset, "limit": args.limit, "val_limit": args.val_limit, "batch_size": args.batch_size,
                "data_dir": data_dir, "seed": args.seed, "epochs": args.epochs,
                "beta_schedule": dataclasses.asdict(sched_opts)}
    if init:
        run_args["init"] = dict(init[2], fresh_optimizer=bool(args.fresh_optimizer))
    try:
        try:
            write_json(os.path.join(folder.path, "config.json"),
                             {"model": cfg.to_dict(), "run": run_args, "n_filter_weights": model.n_filter_weights})
        except BaseException:
            folder.release(remove_if_empty=True)               # nothing of this run was written: no folder left
            raise
        status.run_dir = folder.path
        log("training %s: %d train / %d val images, batch %d, T=%d, beta %g (schedule: %s), %d filter weights, "
            "backend %s -> %s" % (dataset, len(train_x), len(val_x), args.batch_size, cfg.T, cfg.beta,
                                  sched_opts.mode, model.n_filter_weights, backend, folder.path))
        sched = schedule.BetaSchedule(sched_opts, cfg, val_x if len(val_x) else train_x, log=log)
        train.fit(model, train_x, val_x, args.epochs, args.batch_size, folder.path, progress.from_flags(args), args.seed,
                  meta={"run_args": run_args}, log=log, on_checkpoint=status.checkpointed, schedule=sched)
        _tune_after_training(folder.path, val_x, args, backend, log)
    finally:
        folder.release()
    return folder.path, model, run_args


def _tune_after_training(run_dir, val_x, args, backend, log, seed=None):
    """The last step of `convngc train`: the denoising reading of best.npz tuned on validation images, with the
    run's seed (as `convngc tune RUN` uses it: the same noise and top-state draws)."""
    limit = TUNE_LIMIT if getattr(args, "tune_limit", None) is None else args.tune_limit
    best = os.path.join(run_dir, "best.npz")
    if limit == 0 or not len(val_x) or not os.path.isfile(best):
        if limit and not len(val_x):
            log("no validation images: the denoising reading keeps its defaults (convngc tune RUN sets it later)")
        return
    seed = (getattr(args, "seed", 0) or 0) if seed is None else seed
    tune.tune_checkpoint(best, val_x[:limit], seed, backend, log)


def cmd_tune(args, log=print, status=None):
    """Tune a trained model's denoising reading on validation images and store it in its checkpoint."""
    path = models.resolve(args.checkpoint)
    if args.checkpoint in models.names() and not os.path.exists(args.checkpoint) and not args.dry_run:
        raise UsageError("%s is a shipped model (part of the code): tune a copy, or pass --dry-run" % args.checkpoint)
    cfg, _, _, meta = checkpoint.load(path)
    run_args = meta.get("run_args", {})
    dataset = _dataset_for(args.dataset or run_args.get("dataset", "embedded"), cfg, log)
    seed = args.seed if args.seed is not None else run_args.get("seed", 0)
    x = _load_images(dataset, "val", _abs(args.data_dir) or run_args.get("data_dir"), seed,
                     args.tune_limit or TUNE_LIMIT, cfg, False)
    return tune.tune_checkpoint(path, x, seed, _backend_or_default(args.backend, log), log, dry_run=args.dry_run)


VAL_BATCH = 100          # train.fit's validation batch


def _check_memory(args, cfg, batch, backend):
    """A config (or batch) whose arrays cannot fit this machine: a UsageError with the estimate and the options
    that set it, before any data is loaded."""
    try:
        check_memory(cfg, batch, backend)
    except TooLarge as exc:
        flags = [f for f, given in (("--channels", getattr(args, "channels", None)),
                                    ("--batch-size", getattr(args, "batch_size", None))) if given is not None]
        raise UsageError("%s%s" % (", ".join(flags) + ": " if flags else "", exc)) from None


def _resume(args, log, status):
    run_dir = args.resume
    folder = rundir.claim_run_dir(run_dir, resume=True)          # no other process trains it meanwhile
    try:
        status.run_dir = run_dir
        recorded = _read_config_json(run_dir)
        ck = os.path.join(run_dir, "checkpoint.npz")
        if os.path.lexists(ck):
            cfg, _, _, meta = checkpoint.load(ck)
            _check_same_config(run_dir, recorded, cfg, meta)
            if "epoch" not in meta:
                raise checkpoint.CheckpointError("checkpoint %s has no meta.epoch: it was not written by a training "
                                                 "run, so it cannot be resumed (train --init %s starts a new run "
                                                 "from it)" % (ck, ck))
            run_args = dict(meta.get("run_args") or (recorded or {}).get("run") or {})
            missing = [k for k in ("dataset", "batch_size") if k not in run_args]
            if missing:
                raise rundir.RunDirError("--resume %s: neither the checkpoint nor config.json records the run's %s"
                                        % (run_dir, ", ".join(missing)))
            start, history, seed = meta["epoch"], meta.get("history"), meta.get("seed", run_args.get("seed", 0))
            status.checkpointed(start)
            trained_on = meta.get("backend")
        elif recorded is not None:
            try:
                cfg = Config.from_dict(recorded["model"])
            except (ValueError, TypeError) as exc:
                raise rundir.RunDirError("%s/config.json: invalid model config (%s)" % (run_dir, exc)) from None
            run_args, start, history, trained_on = dict(recorded["run"]), 0, None, None
            seed = run_args.get("seed", 0)
        else:
            raise rundir.RunDirError("--resume %s: no config.json or checkpoint.npz there; not a run folder" % run_dir)
        run_args.setdefault("seed", seed)
        _refuse_changes(args, cfg, run_args, run_dir, log)
        epochs = args.epochs if args.epochs is not None else run_args.get("epochs", start)
        if start >= epochs:
            log("run %s is already complete: %d of %d epochs. To train it further, pass --epochs N with N > %d"
                % (run_dir, start, epochs, start))
            return run_dir, None, run_args
        backend = _backend_or_default(args.backend or trained_on, log)
        if trained_on and backend != trained_on:
            log("resuming on backend %s (the run used %s): the filters will not be bit-identical to an "
                "uninterrupted run" % (backend, trained_on))
        if start:
            model, _ = train.load_model(ck, backend=backend)
        else:
            model = ConvNGC(cfg, backend=backend, seed=seed)
            log("%s has no checkpoint yet (the run stopped in its first epoch): starting it again from epoch 0 "
                "with its recorded config" % run_dir)
        if args.data_dir and _abs(args.data_dir) != run_args.get("data_dir"):
            log("data from %s (the run recorded %s)" % (_abs(args.data_dir), run_args.get("data_dir")))
            run_args["data_dir"] = _abs(args.data_dir)
        if epochs != run_args.get("epochs"):
            log("epochs: %s -> %d" % (run_args.get("epochs"), epochs))
            run_args["epochs"] = epochs
            if recorded is not None:                           # only the run part; the model part never changes
                recorded["run"] = dict(recorded["run"], epochs=epochs, data_dir=run_args.get("data_dir"))
                write_json(os.path.join(run_dir, "config.json"), recorded)
        dataset, data_dir = run_args["dataset"], run_args.get("data_dir")
        train_x = _load_images(dataset, "train", data_dir, seed, run_args.get("limit"), cfg, True)
        val_limit = run_args.get("val_limit")
        val_x = _load_images(dataset, "val", data_dir, seed, val_limit, cfg, True) if val_limit != 0 \
            else np.zeros((0,) + train_x.shape[1:], train_x.dtype)
        log("resuming %s at epoch %d of %d" % (run_dir, start, epochs))
        sched = None
        if run_args.get("beta_schedule") is not None:          # runs made before the schedule existed have none
            cfg0 = Config.from_dict(recorded["model"]) if recorded is not None else cfg
            sched = schedule.BetaSchedule(schedule.options_of_record(run_args["beta_schedule"]), cfg0,
                                          val_x if len(val_x) else train_x, log=log)
            if start and meta.get("schedule"):
                sched.load_state(meta["schedule"], checkpoint.load_extra(ck, "restore"))
        train.fit(model, train_x, val_x, epochs, run_args["batch_size"], run_dir, progress.from_flags(args), seed,
                  history, start, meta={"run_args": run_args}, log=log, on_checkpoint=status.checkpointed,
                  schedule=sched)
        _tune_after_training(run_dir, val_x, args, backend, log, seed=seed)
    finally:
        folder.release()
    return run_dir, model, run_args


def _schedule_options(args):
    """The beta schedule's options from --beta-schedule / --check-every (defaults: ScheduleOptions)."""
    kw = {}
    if getattr(args, "beta_schedule", None) is not None:
        kw["mode"] = args.beta_schedule
    if getattr(args, "check_every", None) is not None:
        kw["check_every"] = args.check_every
    if getattr(args, "spike", None) is not None:
        kw["spike"] = args.spike
    return schedule.ScheduleOptions(**kw)


def _refuse_changes(args, cfg, run_args, run_dir, log):
    """--resume with a model or data option that differs from the run's record: refuse, naming each one."""
    conflicts = []
    for field, (value, flag) in _overrides(args).items():
        if value != getattr(cfg, field):
            conflicts.append("%s %s (the run has %s)" % (flag, _show(value), _show(getattr(cfg, field))))
    for key, flag in RUN_FLAGS.items():
        value = getattr(args, key, None)
        if key == "dataset" and value is not None:
            value = _dataset_for(value, cfg, lambda s: None)
        if value is not None and value != run_args.get(key):
            conflicts.append("%s %s (the run has %s)" % (flag, _show(value), _show(run_args.get(key))))
    if conflicts:
        raise UsageError("--resume %s: %s cannot change on resume; start a new run with --out to change them"
                         % (run_dir, ", ".join(conflicts)))


def _show(v):
    return ",".join(map(str, v)) if isinstance(v, tuple) else "%s" % (v,)


def cmd_evaluate(args, model=None, run_dir=None, log=print, status=None, ckpt=None, dataset=None, data_dir=None):
    for k, v in EVAL_DEFAULTS.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    shipped = None
    if model is None:
        ckpt, run_dir, shipped = _which_model(args, log)
        cfg, _, _, meta = checkpoint.load(ckpt)
        if os.path.basename(ckpt) in ("checkpoint.npz", "best.npz"):
            _check_same_config(run_dir, _read_config_json(run_dir), cfg, meta)
        model, meta = train.load_model(ckpt, backend=_backend_or_default(args.backend, log))  # any backend evaluates any run
        run_args = meta.get("run_args", {})
        dataset = args.dataset or run_args.get("dataset", "embedded")
        data_dir = _abs(args.data_dir) or run_args.get("data_dir")
    else:
        dataset, data_dir = args.dataset or dataset, _abs(args.data_dir) or data_dir
    over = {k: getattr(args, k, None) for k in ("denoise", "pi0", "T_denoise", "momentum")}
    over = {k: v for k, v in over.items() if v is not None}
    if over:
        model.cfg = dataclasses.replace(model.cfg, **over)
    # a shipped model's folder is part of the code: its evaluations go to a new folder under runs/
    out_dir = args.out or (os.path.join("runs", "eval-%s-%s" % (shipped, time.strftime("%Y%m%d-%H%M%S")))
                           if shipped else run_dir)
    if args.out:
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise rundir.RunDirError("--out %s is a file, not a folder" % out_dir)
        other = [f for f in ("config.json", "checkpoint.npz") if os.path.exists(os.path.join(out_dir, f))]
        if other and os.path.realpath(out_dir) != os.path.realpath(run_dir):
            raise rundir.RunDirError("--out %s holds another run (%s): the metrics of %s would mix with it; choose a "
                                    "new or empty folder" % (out_dir, other[0], ckpt))
    cfg = model.cfg
    _check_memory(args, cfg, args.batch_size if args.limit is None else min(args.batch_size, args.limit),
                  model.backend.name)
    loaded = []                                                 # every task's data first: a data error costs nothing
    for task in args.tasks:
        name = _dataset_for(args.ood_dataset if task == "ood" else dataset, cfg, log)
        split = "all" if (task == "ood" and name == "cinic10") else args.split
        loaded.append((task, name, split, _load_images(name, split, data_dir, args.seed, args.limit, cfg, False)))
    results, last = {}, {}
    for task, name, split, x in loaded:
        log("%s on %s/%s: %d images x %d %s" % (task, name, split, len(x), args.trials,
                                                "trial" if args.trials == 1 else "trials"))
        T = getattr(args, "T_denoise", None) if task == "denoising" else args.T
        res, (out, inp, energy) = train.evaluate(model, x, task, args.trials, args.batch_size, T, args.seed,
                                                progress=progress.from_flags(args))
        last[task] = (x, out, inp, energy)
        res["dataset"] = name
        res["data"] = {"dataset": name, "split": split, "n_images": int(len(x)), "limit": args.limit,
                       "seed": args.seed, "data_dir": data_dir}
        results[task] = res
        s = res["summary"]
        log("  MSE %s | PSNR %.2f dB (of the mean MSE: %.2f) | SSIM (Eq. 5, global) %.4f | SSIM (windowed) %.4f"
            % (metrics.format_mean_std(s["mse"]["mean"], s["mse"]["std"], args.trials, 3, " +/- "),
               s["psnr"]["mean"], s["psnr_of_mse"]["mean"], s["ssim_global"]["mean"], s["ssim"]["mean"]))
        if "noisy_input" in res:
            n = res["noisy_input"]
            log("  (the noisy input itself: MSE %.3f | PSNR %.2f dB (of the mean MSE: %.2f) | SSIM (Eq. 5, global) "
                "%.4f | SSIM (windowed) %.4f)" % (n["mse"]["mean"], n["psnr"]["mean"], n["psnr_of_mse"]["mean"],
                                                  n["ssim_global"]["mean"], n["ssim"]["mean"]))
    os.makedirs(out_dir, exist_ok=True)
    info = _checkpoint_info(ckpt)
    # an earlier evaluation's files are kept, and of two evaluations running at once each claims its own name
    suffix = rundir.claim_free_name(out_dir)
    metrics_path = os.path.join(out_dir, "metrics%s.json" % suffix)
    try:
        write_json(metrics_path, {
            "model_dataset": dataset, "checkpoint": info, "results": results, "model": shipped,
            "config": cfg.to_dict(), "metric_scale": "[0,255]", "noise_std": train.NOISE_STD, "T": args.T or cfg.T,
            "T_denoise": getattr(args, "T_denoise", None) or cfg.denoise_T, "pi0": cfg.denoise_pi0,
            "momentum": cfg.denoise_momentum,
            "psnr": "psnr = mean over images of Eq. 6 (per image, per channel); psnr_of_mse = 10 log10(255^2 / MSE) "
                    "of the mean MSE",
            "ssim": "ssim_global = Eq. 5 on whole-image statistics; ssim = windowed (Gaussian sigma 1.5)"})
    except BaseException:
        if os.path.isfile(metrics_path) and os.path.getsize(metrics_path) == 0:
            os.remove(metrics_path)                     # the empty claim: nothing was written
        raise
    train.report_pictures(out_dir, model, last, suffix)
    log("metrics%s.json, sample grids and the energy curve written to %s" % (suffix, out_dir))
    return results


def _which_model(args, log):
    """evaluate's model: the positional CHECKPOINT (a run folder or a .npz) or --model (a shipped model's name, a
    run folder or a .npz) -> (checkpoint path, its folder, the shipped model's name or None). A run folder gives
    its best.npz (the lowest validation MSE) when it has one, else checkpoint.npz."""
    spec = getattr(args, "model", None)
    if spec and args.checkpoint:
        raise UsageError("give a checkpoint or --model, not both")
    spec = spec or args.checkpoint
    if not spec:
        raise UsageError("which model? give a run folder or checkpoint, or --model NAME (shipped: %s)"
                         % (", ".join(models.names()) or "none"))
    shipped = spec if spec in models.names() and not os.path.exists(spec) else None
    ckpt = models.resolve(spec)
    if os.path.isdir(spec):
        log("evaluating %s (%s)" % (ckpt, "the epoch with the lowest validation MSE" if ckpt.endswith("best.npz")
                                    else "the last epoch; the run has no best.npz"))
    return ckpt, os.path.dirname(ckpt) or ".", shipped


def cmd_run(args, log=print, status=None):
    """The main job (MAIN_JOB): the paper's model on real photo patches, a short training with a larger Adam
    step, then reconstruction and denoising of held-out patches. A few minutes on 2 cores."""
    job = MAIN_JOB
    for k in ("dataset", "epochs", "limit", "batch_size", "trials"):
        if getattr(args, k, None) is None:
            setattr(args, k, job[k])
    args.resume, args.val_limit = None, job["val_limit"]
    if args.lr is None:
        args.lr = job["lr"]
        log("main job: Adam step %g instead of the paper's 1e-3, so that %d epochs show learning"
            % (job["lr"], job["epochs"]))
    if args.tune_limit is None:
        args.tune_limit = job["tune_limit"]
    run_dir, model, run_args = cmd_train(args, log, status)
    ev = argparse.Namespace(checkpoint=run_dir, model=None, dataset=None, split="test",     # best.npz, tuned
                            tasks=["reconstruction", "denoising"], ood_dataset="cifar10", trials=args.trials,
                            limit=job["eval_limit"], T=None, T_denoise=None, denoise=None, pi0=None,
                            momentum=None, out=None, batch_size=job["eval_batch_size"], seed=args.seed,
                            data_dir=args.data_dir,
                            backend=args.backend, progress=args.progress, no_progress=args.no_progress)
    return cmd_evaluate(ev, log=log, status=status)


def cmd_info(args, log=print, status=None):
    from . import backends
    cfg = Config()
    from ngc_ref.checks import param_shape
    count = {k: sum(int(np.prod(param_shape(cfg, k, l))) for l in range(1, cfg.L + 1)) for k in ("W", "b")}
    default = backends.default()
    log("backends: %s" % "; ".join(
        "%s (%s)" % (name, "default: the fastest available here" if name == default else
                     "available" if backends.available(name) else "not here: " + backends.why_unavailable(name))
        for name in backends.BACKENDS))
    log("paper configuration: channels %s (top -> bottom), %dx%d images, %dx%d filters, stride %d, T=%d, "
        "beta=%g, gamma=%g" % (cfg.channels, *cfg.image_hw, cfg.kernel, cfg.kernel, cfg.stride, cfg.T, cfg.beta, cfg.gamma))
    log("filter weights: %d (+ %d biases)" % (count["W"], count["b"]))
    log("Config fields (--set KEY=VALUE): %s" % ", ".join(
        "%s=%s" % (k, describe_range(k) if k in RANGES else "...") for k in cfg.to_dict()))


def _plain_warning(message, category, filename, lineno, file=None, line=None):
    print("warning: %s" % message, file=sys.stderr if file is None else file)


def _epoch_on_disk(run_dir, fallback):
    """The epoch of run_dir/checkpoint.npz as the disk holds it (0: none there); `fallback` if unreadable."""
    ck = os.path.join(run_dir, "checkpoint.npz")
    if not os.path.lexists(ck):
        return 0
    try:
        return int(checkpoint.load(ck)[3].get("epoch", fallback))
    except (checkpoint.CheckpointError, OSError, ValueError, TypeError):
        return fallback


def _interrupted(exc, status):
    what = "terminated" if isinstance(exc, Terminated) else "interrupted"
    if status.run_dir is None:
        return "%s; no run folder was written" % what
    status.epoch = _epoch_on_disk(status.run_dir, status.epoch)     # what is on disk, not what was last heard
    if status.epoch:
        return ("%s; %s (epoch %d) is intact: continue with `convngc train --resume %s`"
                % (what, os.path.join(status.run_dir, "checkpoint.npz"), status.epoch, status.run_dir))
    return ("%s before the first checkpoint; `convngc train --resume %s` starts the run again from epoch 0"
            % (what, status.run_dir))


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "run": cmd_run, "info": cmd_info, "tune": cmd_tune}
COMMANDS.update(denoise=pictures.cmd_pictures, reconstruct=pictures.cmd_pictures)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["download"]:                       # its own parser: `convngc download --help` works
        from . import download
        return download.main(argv[1:], prog="convngc download")
    if argv[:1] == ["reproduce"]:                      # its own parser and module: convngc/experiments/reproduce.py
        from .experiments import reproduce
        return reproduce.main(argv[1:])
    args = build_parser().parse_args(argv)             # a bad option value: usage + one error line, exit 2
    status = _Status()
    with warnings.catch_warnings():
        warnings.showwarning = _plain_warning          # one plain line, not a source line that looks like a trace
        try:
            with sigterm_raises():
                COMMANDS[args.cmd](args, status=status)
            return 0
        except UsageError as exc:
            print("convngc %s: error: %s" % (args.cmd, exc), file=sys.stderr)
            return 2
        except data.DataReadError as exc:              # a data file there but unreadable: the read failed
            print("error: %s" % exc, file=sys.stderr)
            return 1
        except (data.DataError, checkpoint.CheckpointError, rundir.RunDirError, DivergenceError,
                BackendUnavailable, ConfigError, TooLarge, NotARegularFile) as exc:
            print("error: %s" % exc, file=sys.stderr)
            return 2
        except OSError as exc:                         # a full disk, a read-only folder: the file and the cause
            where = exc.filename if exc.filename else None
            print("error: cannot write %s: %s" % (where, exc.strerror) if where and exc.strerror
                  else "error: %s" % exc, file=sys.stderr)
            return 1
        except KeyboardInterrupt as exc:               # Ctrl-C, or SIGTERM (Terminated)
            print(_interrupted(exc, status), file=sys.stderr)
            return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
