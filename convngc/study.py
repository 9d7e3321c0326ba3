"""The study of issue 7: what it takes for Conv-NGC to reconstruct and denoise as the paper reports.

    python -m convngc.study list                     # the experiments, their size and what each measures
    python -m convngc.study run NAME [NAME ...]      # train + evaluate; resumable: rerun the same command
    python -m convngc.study run --group steps        # every experiment of a group
    python -m convngc.study report                   # plots and tables from the JSON in results/study/

Each experiment trains one configuration on a fixed subset of a training split and, every few epochs,
evaluates one seeded trial on held-out validation images (never the test set):
  reconstruction          z^0 clamped to the image, output zbar^0, after T steps for every T in `Ts`
  denoising, free z^0     Sec. 4's reading: z^0 = noisy image at t = 1, then it evolves by Eq. 2
  denoising, free, no leak on z^0 (gamma_bottom=False), and the output read as z^0 instead of zbar^0
  denoising, clamped z^0  Algorithm 1's reading: z^0 = noisy image and never corrected (lines 12-25
                          correct z^1..z^L only), output zbar^0
  stability               the most negative eigenvalue of one settling step's Jacobian at the settled
                          state (< -1 means the synchronous update oscillates and grows)
Results go to results/study/<name>.json after every epoch, parameters to runs/study/<name>/ (not in git),
so a killed run continues where it stopped.
"""
import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

from ngc_ref.config import Config

from . import data, metrics
from .backends import BACKENDS
from .model import ConvNGC
from .stability import settle_eigenvalue

NOISE_STD = 0.1
RESULTS = os.path.join("results", "study")
STATE = os.path.join("runs", "study")

# ------------------------------------------------------------------------------------------------ experiments
# Shared budgets: a 10,000-image subset of the training split (images 0..9,999 of the shuffled split),
# 300 validation images, batch 500 unless the experiment is about the batch.
BASE = dict(dataset="cifar10", n_train=10000, n_val=300, batch=500, epochs=20, eval_every=2,
            Ts=(10, 30, 60, 100), cfg={})


def _exp(group, what, **kw):
    e = dict(BASE, group=group, what=what)
    e.update(kw)
    return e


EXPERIMENTS = {}


def _add(name, group, what, **kw):
    EXPERIMENTS[name] = _exp(group, what, **kw)


# training length and step size (the paper: Adam 1e-3, batch 500) at batch 500, 400 updates each; batch 100 at
# Adam 1e-3 is the open-point sweep's base (1,200 updates) and the long runs (6,000 updates)
for ds in ("cifar10", "color-mnist"):
    for lr in (1e-2, 3e-3, 1e-3):
        _add("steps-%s-lr%g-b500" % (ds, lr), "steps", "Adam %g, batch 500 on %s" % (lr, ds),
             dataset=ds, batch=500, epochs=20, eval_every=2, Ts=(10, 30, 60), cfg=dict(lr=lr))


def _open_point(name, what, **cfg):
    _add("open-" + name, "open", what, batch=100, epochs=12, eval_every=2, cfg=dict(dict(lr=1e-3), **cfg))


_open_point("base", "the reference point of the open-point sweep: paper model, Adam 1e-3 (the paper), batch 100")
_open_point("leak0.01", "leaky-ReLU slope 0.01", leak=0.01)
_open_point("leak1", "slope 1: phi is the identity (a linear model)", leak=1.0)
_open_point("muz5", "mu_z = 5 (Sec. 3.1) instead of 0.5 (Appendix B)", mu_z=5.0)
_open_point("pcn", "PCN: the bottom-up message times phi'(z)", pcn=True)
_open_point("learnE", "learnable error filters E (dE = 0.9 dW)", learn_E=True)
_open_point("mean", "dW and db averaged over the batch instead of summed", reduce="mean")
_open_point("pixelbias", "a bias per pixel instead of one per map", bias="pixel")
_open_point("beta0.05-T120", "beta 0.05 with T = 120 (the same integration time beta*T = 6)", beta=0.05, T=120)
_open_point("beta0.2-T30", "beta 0.2 with T = 30", beta=0.2, T=30)
_open_point("T30", "T = 30 (beta 0.1)", T=30)
_open_point("T120", "T = 120 (beta 0.1)", T=120)

# long runs: where the reconstruction saturates, and whether the stability edge stops it (6,000 updates)
for name, what, cfg in (("base", "the paper's model, Adam 1e-3, batch 100", {}),
                        ("beta0.05-T120", "beta 0.05, T = 120: twice the stability margin, the same fixed point",
                         dict(beta=0.05, T=120)),
                        ("leak0.01", "leaky-ReLU slope 0.01", dict(leak=0.01))):
    _add("long-" + name, "long", what, batch=100, epochs=60, eval_every=4, Ts=(10, 30, 60, 120),
         cfg=dict(dict(lr=1e-3), **cfg))

# a few seconds: the test of this module
_add("smoke", "test", "tiny run for the tests", n_train=200, n_val=20, batch=100, epochs=2, eval_every=1, Ts=(5, 10),
     cfg=dict(lr=1e-2, T=10))


# ------------------------------------------------------------------------------------------------ evaluation
def denoise_input(x, seed):
    """x + N(0, 0.1), not clipped (the same draw for every reading)."""
    return (x + np.random.default_rng(seed).normal(0.0, NOISE_STD, size=x.shape)).astype(x.dtype)


def readings(cfg):
    """The denoising readings compared: name -> (config, clamp, which bottom array is the output)."""
    return {
        "free": (cfg, "first", "zbar"),
        "free_z0": (cfg, "first", "z"),
        "free_noleak": (dataclasses.replace(cfg, gamma_bottom=False), "first", "zbar"),
        "clamped": (cfg, "always", "zbar"),
    }


def evaluate(model, x, Ts, seed=0, batch=500):
    """One seeded trial on x: reconstruction and every denoising reading at every T -> flat dict of metrics."""
    noisy = denoise_input(x, seed)
    out = {"noisy_psnr": metrics.psnr(noisy, x), "noisy_mse": metrics.mse(noisy, x)}
    base_cfg = model.cfg
    jobs = [("recon", base_cfg, "always", "zbar", x)] + [
        ("denoise_" + k, c, clamp, which, noisy) for k, (c, clamp, which) in readings(base_cfg).items()]
    try:
        for name, cfg, clamp, which, inp in jobs:
            model.cfg = cfg
            for T in Ts:
                rng = np.random.default_rng([seed, 7])           # the same z^L draws for every reading and T
                outs = []
                for i in range(0, len(x), batch):
                    xb = inp[i:i + batch]
                    zt = (cfg.mu_z + cfg.sigma_z * rng.standard_normal(
                        (len(xb), cfg.layer_channels[cfg.L]) + cfg.map_hw(cfg.L))).astype(np.float32)
                    res = model.settle(xb, T=T, clamp=clamp, z_top=zt, noisy=(inp is noisy))
                    outs.append(model.backend.to_host(res.zbar[0] if which == "zbar" else res.z[0]))
                o = np.concatenate(outs)
                out["%s_psnr_T%d" % (name, T)] = metrics.psnr(o, x)
                out["%s_mse_T%d" % (name, T)] = metrics.mse(o, x)
    finally:
        model.cfg = base_cfg
    return out


def stability(params, cfg, x, T=60, iters=60, seed=0):
    """The most negative eigenvalue of one settling step's Jacobian at the state reached after T steps, and the
    share of its eigenvector in each layer: convngc.stability.settle_eigenvalue, at the study's T = 60."""
    return settle_eigenvalue(params, cfg, x, T=T, iters=iters, seed=seed)


# ------------------------------------------------------------------------------------------------ running
def _cfg(exp):
    return Config(**exp["cfg"])


def _paths(name, results=RESULTS, state=STATE):
    return os.path.join(results, name + ".json"), os.path.join(state, name)


def _write_json(path, obj):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, allow_nan=False,
                  default=lambda o: o.item() if isinstance(o, np.generic) else str(o))
        f.write("\n")
    os.replace(tmp, path)


def _clean(v):
    """NaN/Inf are written as null (strict JSON)."""
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(w) for k, w in v.items()}
    if isinstance(v, list):
        return [_clean(w) for w in v]
    return v


def _save_state(d, model, epoch, rng):
    os.makedirs(d, exist_ok=True)
    arrays = {}
    for key, arrs in model.host_params().items():
        for l, a in enumerate(arrs or []):
            if a is not None:
                arrays["p/%s/%d" % (key, l)] = a
    st = model.host_opt_state()
    for part in ("m", "v"):
        for key, arrs in st[part].items():
            for l, a in enumerate(arrs or []):
                if a is not None:
                    arrays["%s/%s/%d" % (part, key, l)] = a
    meta = {"epoch": epoch, "t": st["t"], "rng": rng.bit_generator.state, "model_rng": model.rng.bit_generator.state}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    tmp = os.path.join(d, ".last.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, os.path.join(d, "last.npz"))
    np.savez(os.path.join(d, "ep%03d.npz" % epoch), **{k: v for k, v in arrays.items() if k.startswith("p/")})


def _tree(z, prefix, cfg):
    out = {}
    for key in ("W", "b", "E"):
        arrs = [None] + [z["%s/%s/%d" % (prefix, key, l)] for l in range(1, cfg.L + 1)
                         if "%s/%s/%d" % (prefix, key, l) in z.files]
        out[key] = arrs if len(arrs) == cfg.L + 1 else None
    return out


def load_params(path, cfg):
    """Parameters saved by a study run (last.npz or epNNN.npz)."""
    with np.load(path) as z:
        return _tree(z, "p", cfg)


def _load_state(d, model, rng):
    with np.load(os.path.join(d, "last.npz")) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        model.params = {k: None if v is None else [None if a is None else model.backend.to_device(a) for a in v]
                        for k, v in _tree(z, "p", model.cfg).items()}
        m, v = _tree(z, "m", model.cfg), _tree(z, "v", model.cfg)
        model.load_opt_state({"t": meta["t"], "m": {k: a for k, a in m.items() if a is not None},
                              "v": {k: a for k, a in v.items() if a is not None}})
    rng.bit_generator.state = meta["rng"]
    model.rng.bit_generator.state = meta["model_rng"]
    return meta["epoch"]


def run(name, backend=None, results=RESULTS, state=STATE, log=print, progress=True):
    """Train and evaluate one experiment; resumes from runs/study/<name>/last.npz when it exists."""
    from .model import DivergenceError
    exp = EXPERIMENTS[name]
    cfg = _cfg(exp)
    jpath, sdir = _paths(name, results, state)
    xtr = data.to_model(data.load_dataset(exp["dataset"], "train", limit=exp["n_train"])[0])
    xva = data.to_model(data.load_dataset(exp["dataset"], "val", limit=exp["n_val"])[0])
    model = ConvNGC(cfg, backend=backend, seed=0)
    rng = np.random.default_rng([0, 2])
    rec = {"name": name, "experiment": {k: v for k, v in exp.items() if k != "cfg"}, "config": cfg.to_dict(),
           "backend": model.backend.name, "n_train": len(xtr), "n_val": len(xva), "epochs": []}
    start = 0
    if os.path.exists(os.path.join(sdir, "last.npz")) and os.path.exists(jpath):
        with open(jpath) as f:
            rec = json.load(f)
        start = _load_state(sdir, model, rng)
        rec["epochs"] = [e for e in rec["epochs"] if e["epoch"] <= start]
        if rec.get("diverged_at"):
            log("%s: diverged at epoch %d earlier; nothing to do" % (name, rec["diverged_at"]))
            return rec
        log("%s: resuming after epoch %d" % (name, start))
    for epoch in range(start + 1, exp["epochs"] + 1):
        t0, energies = time.time(), []
        order = rng.permutation(len(xtr))
        try:
            for i in range(0, len(xtr), exp["batch"]):
                energies.append(model.learn(xtr[order[i:i + exp["batch"]]]))
        except DivergenceError as exc:
            rec["diverged_at"] = epoch
            rec["epochs"].append({"epoch": epoch, "diverged": str(exc)})
            _write_json(jpath, _clean(rec))
            log("%s: epoch %d diverged (%s)" % (name, epoch, exc))
            return rec
        row = {"epoch": epoch, "train_energy": float(np.mean(energies)), "train_seconds": time.time() - t0,
               "updates": epoch * -(-len(xtr) // exp["batch"])}
        if epoch % exp["eval_every"] == 0 or epoch == exp["epochs"]:
            try:
                row.update(evaluate(model, xva, exp["Ts"]))
                lam, share = stability(model.host_params(), cfg, xva[:20])
                row["stability_eig"], row["stability_share"] = lam, share
            except DivergenceError as exc:
                row["eval_diverged"] = str(exc)
            W = model.host_params()["W"]
            row["kernel_norm_mean"] = [float(np.sqrt((w * w).sum((2, 3))).mean()) for w in W[1:]]
        rec["epochs"].append(row)
        _save_state(sdir, model, epoch, rng)
        _write_json(jpath, _clean(rec))
        msg = "%s: epoch %d/%d energy %.3g (%.0fs)" % (name, epoch, exp["epochs"], row["train_energy"],
                                                        row["train_seconds"])
        if "recon_psnr_T60" in row:
            msg += " | recon %.2f dB, denoise free %.2f / clamped %.2f dB (noisy %.2f), eig %.3f" % (
                row["recon_psnr_T60"], row["denoise_free_psnr_T60"], row["denoise_clamped_psnr_T60"],
                row["noisy_psnr"], row.get("stability_eig", float("nan")))
        log(msg)
    return rec


def fixedpoint(name, marks=(0, 1, 2, 5, 10, 20, 30, 60, 100, 200, 400, 700, 1000, 2000, 3000), n=100,
               results=RESULTS, state=STATE, log=print):
    """Denoising with a free z^0 run far past T: where it goes, for the literal update, without the leak on
    z^0, and with no leak at all (gamma = 0). Writes results/study/fixedpoint-<name>.json.

    Derivation (STUDY.md): with z^0 free, a fixed point has e^0 = -(gamma/beta) z^0 and, layer by layer,
    errors of order gamma/beta times the states: every layer equals its prediction up to 1 %, so the image is
    generated ancestrally from the top code (C_L H_L W_L = 40 numbers here), and the leak then shrinks it."""
    from ngc_cpu import model as cm
    from ngc_ref.model import draw_top
    exp = EXPERIMENTS[name]
    cfg0 = _cfg(exp)
    params = load_params(os.path.join(state, name, "last.npz"), cfg0)
    x = data.to_model(data.load_dataset(exp["dataset"], "val", limit=n)[0])
    noisy = denoise_input(x, 0)
    out = {"experiment": name, "n_images": len(x), "noisy_psnr": metrics.psnr(noisy, x),
           "clean_mean": float(x.mean()), "variants": {}}
    for variant, over in (("literal", {}), ("no leak on z0", {"gamma_bottom": False}), ("gamma = 0", {"gamma": 0.0})):
        cfg = dataclasses.replace(cfg0, **over)
        z = cm.init_states(noisy, params, cfg, draw_top(cfg, len(x), np.random.default_rng([0, 7])))
        rows = []
        for t in range(max(marks) + 1):
            zbar, e = cm.predictions_and_errors(z, params, cfg)
            if t in marks:
                ratio = float(np.linalg.norm(e[0] + (cfg.gamma / cfg.beta) * z[0]) / max(np.linalg.norm(e[0]), 1e-30))
                rows.append({"t": t, "psnr_zbar": metrics.psnr(zbar[0], x), "psnr_z0": metrics.psnr(z[0], x),
                             "energy": float(cm.energy(e).mean()), "mean_z0": float(z[0].mean()),
                             "fixed_point_residual": ratio})
                log("%s t=%d: PSNR %.2f dB, energy %.3g, mean z0 %.3f" % (variant, t, rows[-1]["psnr_zbar"],
                                                                       rows[-1]["energy"], rows[-1]["mean_z0"]))
            z = cm.correct(z, e, params, cfg, free_bottom=True)
        out["variants"][variant] = rows
    _write_json(os.path.join(results, "fixedpoint-%s.json" % name), _clean(out))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m convngc.study", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the experiments")
    p = sub.add_parser("run", help="train + evaluate experiments (resumable)")
    p.add_argument("names", nargs="*")
    p.add_argument("--group", default=None)
    p.add_argument("--backend", default=None, choices=BACKENDS, help="default: the fastest available")
    p = sub.add_parser("fixedpoint", help="denoising with a free z^0 run to t = 3000 on a trained experiment")
    p.add_argument("name")
    p = sub.add_parser("report", help="plots and tables from results/study/*.json")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for name, e in EXPERIMENTS.items():
            print("%-36s %-6s %s: %d images x %d epochs, batch %d" % (name, e["group"], e["what"], e["n_train"],
                                                                     e["epochs"], e["batch"]))
        return 0
    if args.cmd == "run":
        names = list(args.names) + [n for n, e in EXPERIMENTS.items() if args.group and e["group"] == args.group]
        unknown = [n for n in names if n not in EXPERIMENTS]
        if unknown or not names:
            print("error: unknown or no experiment %s; see `python -m convngc.study list`" % unknown, file=sys.stderr)
            return 2
        for n in names:
            run(n, backend=args.backend)
        return 0
    if args.cmd == "fixedpoint":
        fixedpoint(args.name)
        return 0
    if args.cmd == "report":
        from . import study_report
        study_report.main()
        return 0


if __name__ == "__main__":
    sys.exit(main())
