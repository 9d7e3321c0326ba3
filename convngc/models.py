"""Trained models: the ones shipped with the code (models/<name>/) and any run folder or checkpoint.

    import convngc.models
    model = convngc.models.load("cifar10")              # a shipped model, by name
    model = convngc.models.load("runs/my-run")          # a run folder: its best.npz (else checkpoint.npz)
    model = convngc.models.load("runs/my-run/checkpoint.npz")
    model, meta = convngc.load_model("runs/my-run")     # the same, with the checkpoint's header (epoch, ...)
    convngc.models.names()                              # the shipped models: ['cifar10', ...]
    convngc.models.card("cifar10")                      # its model.json: config, data, metrics, command, sha256

A shipped model is a folder models/<name>/ holding `model.npz` (a checkpoint: filters, Adam state, config) and
`model.json` (the model card). Loading checks the file's sha256 against the card, so a damaged or edited file
is named, not used.
"""
import hashlib
import json
import os

from . import checkpoint, fileio

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
            if os.path.lexists(os.path.join(spec, name)):          # not a regular file: the loader says so
                return os.path.join(spec, name)
        raise ModelNotFound("%s: a folder without best.npz or checkpoint.npz; not a run folder" % spec)
    if os.path.isfile(spec):
        return spec
    raise ModelNotFound("%s does not exist: not a shipped model (%s), a run folder or a checkpoint file"
                        % (spec, ", ".join(names()) or "none shipped"))


def load_model(spec="cifar10", backend=None):
    """(ConvNGC, the checkpoint's header) from a shipped model's name, a run folder (its best.npz, else
    checkpoint.npz) or a checkpoint file, on `backend` (None: the fastest available). This is
    `convngc.load_model`; convngc.train.load_model takes a checkpoint path as it is (a folder: the last epoch's
    checkpoint.npz, the state a run resumes from)."""
    from . import train
    return train.load_model(resolve(spec), backend=backend)


def load(spec="cifar10", backend=None):
    """A ConvNGC ready to use from a shipped model's name, a run folder or a checkpoint file (default backend:
    the fastest available)."""
    return load_model(spec, backend=backend)[0]


# ---------------------------------------------------------------------------------------------------------------
# packing a trained run as a shipped model (what produced models/<name>/)
# ---------------------------------------------------------------------------------------------------------------
CHECK = dict(split="test", limit=200, trials=1, seed=0, batch_size=100)   # the subset a shipped model is re-checked on


def check_numbers(model, dataset, data_dir=None, **kw):
    """Reconstruction and denoising metrics of `model` on a small fixed subset (CHECK, on the cpu backend when the
    model runs there): the numbers a shipped model's card records and tests/app/test_models.py reproduces."""
    from . import data, train
    c = dict(CHECK, **kw)
    x = data.to_model(data.load_dataset(dataset, c["split"], data_dir=data_dir, seed=0, limit=c["limit"])[0],
                      channels=model.cfg.layer_channels[0])
    out = {}
    for task in ("reconstruction", "denoising"):
        res = train.evaluate(model, x, task, c["trials"], c["batch_size"], seed=c["seed"])[0]
        out[task] = {k: res["summary"][k]["mean"] for k in ("mse", "psnr", "psnr_of_mse")}
    return dict(c, dataset=dataset, results=out)


def pack(run_dir, name, description, commands, metrics_json=None, data_dir=None, dest=None, log=print):
    """Copy a trained run's best.npz to models/<name>/model.npz and write its card, model.json: the config, the
    data it was trained and tuned on, the schedule's steps, the test-set metrics (from an evaluation's
    metrics.json), the numbers of the fixed check subset, the sha256 of the file and the commands that
    regenerate it. The run's machine-specific data path is dropped from the copy."""
    from .model import ConvNGC
    dest = dest or os.path.join(MODELS_DIR, name)
    src = resolve(run_dir)
    cfg, params, opt, meta = checkpoint.load(src)
    meta = dict(meta)
    run_args = dict(meta.get("run_args") or {}, data_dir=None)
    meta["run_args"] = run_args
    os.makedirs(dest, exist_ok=True)
    path = os.path.join(dest, "model.npz")
    checkpoint.save(path, cfg, params, opt, meta)
    model = ConvNGC(cfg, backend="cpu", seed=0, params=params)   # the card's check numbers: the cpu backend's, always
    card_ = {"name": name, "description": description, "config": cfg.to_dict(),
             "n_filter_weights": model.n_filter_weights,
             "data": {"dataset": run_args.get("dataset"), "train_limit": run_args.get("limit"),
                      "val_limit": run_args.get("val_limit"), "seed": run_args.get("seed"),
                      "split": "convngc.data's deterministic train/validation split of the training set (seed 0); "
                               "test = the dataset's own test split"},
             "training": {"epoch": meta.get("epoch"), "batch_size": run_args.get("batch_size"),
                          "beta_schedule": run_args.get("beta_schedule"),
                          "steps": (meta.get("history") or {}).get("schedule", []),
                          "restore_point": meta.get("restore_point")},
             "denoising": {k: v for k, v in (meta.get("denoise_tuning") or {}).items() if k != "table"},
             "check": check_numbers(model, run_args.get("dataset"), data_dir),
             "regenerate": list(commands)}
    if metrics_json:
        with open(metrics_json) as f:
            m = json.load(f)
        card_["test_metrics"] = {task: {"summary": r["summary"], "noisy_input": r.get("noisy_input"),
                                        "n_images": r["n_images"], "trials": len(r["trials"])}
                                 for task, r in m["results"].items()}
    card_["sha256"] = sha256(path)

    fileio.write_json(os.path.join(dest, "model.json"), card_)
    log("packed %s -> %s (sha256 %s)" % (src, dest, card_["sha256"][:12]))
    return card_


def main(argv=None):
    """python -m convngc.models pack RUN NAME --description TEXT --command CMD [--command CMD ...] [--metrics FILE]"""
    import argparse
    ap = argparse.ArgumentParser(prog="python -m convngc.models", description="list or pack the shipped models")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the shipped models and their test-set numbers")
    p = sub.add_parser("pack", help="make models/NAME/ from a trained run (its best.npz) and its evaluation")
    p.add_argument("run", help="a run folder or checkpoint")
    p.add_argument("name")
    p.add_argument("--description", required=True)
    p.add_argument("--command", action="append", required=True, help="a command that regenerates it (repeatable)")
    p.add_argument("--metrics", default=None, help="the metrics.json of its test-set evaluation")
    p.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for n in names():
            c = card(n)
            t = c.get("test_metrics", {})
            print("%-12s %s" % (n, c.get("description", "")))
            for task in ("reconstruction", "denoising"):
                if task in t:
                    s_ = t[task]["summary"]
                    k = t[task]["trials"]
                    print("    %-14s MSE %.2f, PSNR %.2f dB (of the mean MSE %.2f), %d images x %d %s"
                          % (task, s_["mse"]["mean"], s_["psnr"]["mean"], s_["psnr_of_mse"]["mean"],
                             t[task]["n_images"], k, "trial" if k == 1 else "trials"))
        return 0
    pack(args.run, args.name, args.description, args.command, args.metrics, args.data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
