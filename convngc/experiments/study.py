"""The study: what it takes for Conv-NGC to reconstruct and denoise as the paper reports (results/STUDY.md).

    python -m convngc.experiments.study list                 # the experiments, their size and what each measures
    python -m convngc.experiments.study run NAME [NAME ...]  # train + evaluate; resumable: rerun the same command
    python -m convngc.experiments.study run --group steps    # every experiment of a group, as Ray tasks (--workers,
                                                             # --address: convngc/experiments/fanout.py)
    python -m convngc.experiments.study report               # plots and tables from the JSON in results/study/

Each experiment trains one configuration on a fixed subset of a training split and, every few epochs,
evaluates one seeded trial on held-out validation images (never the test set):
  reconstruction          z^0 clamped to the image, output zbar^0, after T steps for every T in `Ts`
  denoising, free z^0     Sec. 4's reading: z^0 = noisy image at t = 1, then it evolves by Eq. 2
  denoising, free, no leak on z^0 (gamma_bottom=False), and the output read as z^0 instead of zbar^0
  denoising, clamped z^0  Algorithm 1's reading: z^0 = noisy image and never corrected (lines 12-25
                          correct z^1..z^L only), output zbar^0
  stability               the most negative eigenvalue of one settling step's Jacobian at the settled
                          state (< -1 means the synchronous update oscillates and grows)
Training is convngc.train.fit's (the same shuffling and z^L draws as `convngc train`), with the study's
measurements as its per-epoch hook. Results go to results/study/<name>.json after every epoch; the run folder
runs/study/<name>/ (not in git) holds the checkpoint (convngc.checkpoint's format) and each epoch's parameters
(epNNN.npz), so a killed run continues where it stopped.
"""
import argparse
import contextlib
import dataclasses
import json
import os
import sys

import numpy as np

from ngc_ref.config import Config

from .. import checkpoint, data, metrics, train
from ..backends import BACKENDS
from ..fileio import write_json
from ..model import ConvNGC, DivergenceError
from ..rundir import claim_run_dir
from ..stability import settle_eigenvalue
from . import STUDY_RESULTS, STUDY_STATE, fanout

NOISE_STD = 0.1

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
_add("smoke-leak1", "test", "its second point (`run --group test`: a sweep for the fan-out's test)", n_train=200,
     n_val=20, batch=100, epochs=2, eval_every=1, Ts=(5, 10), cfg=dict(lr=1e-2, T=10, leak=1.0))


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


def _paths(name, results=STUDY_RESULTS, state=STUDY_STATE):
    return os.path.join(results, name + ".json"), os.path.join(state, name)


def _write_json(path, obj):
    write_json(path, obj, indent=1)


def load_params(name, state=STUDY_STATE, epoch=None):
    """The parameters of a study run: its last epoch (checkpoint.npz), or epoch `epoch` (epNNN.npz)."""
    name = os.path.join(state, name, "checkpoint.npz" if epoch is None else "ep%03d.npz" % epoch)
    return checkpoint.load(name)[1]


def run(name, backend=None, results=STUDY_RESULTS, state=STUDY_STATE, log=print, progress=None):
    """Train and evaluate one experiment through convngc.train.fit; its run folder runs/study/<name>/ holds the
    checkpoint (convngc.checkpoint, atomic) and the parameters of every epoch (epNNN.npz). Resumes from the
    checkpoint when it and the results JSON exist (the JSON is cut back to the checkpoint's epoch)."""
    exp = EXPERIMENTS[name]
    cfg = _cfg(exp)
    jpath, sdir = _paths(name, results, state)
    xtr = data.to_model(data.load_dataset(exp["dataset"], "train", limit=exp["n_train"])[0])
    xva = data.to_model(data.load_dataset(exp["dataset"], "val", limit=exp["n_val"])[0])
    per_epoch = -(-len(xtr) // exp["batch"])
    start, history = 0, None
    if os.path.exists(os.path.join(sdir, "checkpoint.npz")) and os.path.exists(jpath):
        with open(jpath) as f:
            rec = json.load(f)
        if rec.get("diverged_at"):
            log("%s: diverged at epoch %d earlier; nothing to do" % (name, rec["diverged_at"]))
            return rec
        model, meta = train.load_model(sdir, backend=backend, expect_cfg=cfg)
        start, history = meta["epoch"], meta["history"]
        rec["epochs"] = [e for e in rec["epochs"] if e["epoch"] <= start]
        log("%s: resuming after epoch %d" % (name, start))
    else:
        model = ConvNGC(cfg, backend=backend, seed=0)
        rec = {"name": name, "experiment": {k: v for k, v in exp.items() if k != "cfg"}, "config": cfg.to_dict(),
               "backend": model.backend.name, "n_train": len(xtr), "n_val": len(xva), "epochs": []}

    def measure(epoch, hist):
        """The study's own evaluation of an epoch, written before fit checkpoints it (a run killed in between
        repeats the epoch)."""
        row = {"epoch": epoch, "train_energy": hist["train_energy"][-1], "train_seconds": hist["epoch_seconds"][-1],
               "updates": epoch * per_epoch}
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
        _write_json(jpath, rec)
        msg = "%s: epoch %d/%d energy %.3g (%.0fs)" % (name, epoch, exp["epochs"], row["train_energy"],
                                                        row["train_seconds"])
        if "recon_psnr_T60" in row:
            msg += " | recon %.2f dB, denoise free %.2f / clamped %.2f dB (noisy %.2f), eig %.3f" % (
                row["recon_psnr_T60"], row["denoise_free_psnr_T60"], row["denoise_clamped_psnr_T60"],
                row["noisy_psnr"], row.get("stability_eig", float("nan")))
        log(msg)

    def keep_epoch(epoch):
        checkpoint.save(os.path.join(sdir, "ep%03d.npz" % epoch), model.cfg, model.host_params())

    folder = claim_run_dir(sdir, resume=os.path.isdir(sdir))     # one process per experiment at a time
    try:
        # the study measures on its own (measure); fit's validation set is empty and its epoch line silent
        train.fit(model, xtr, xva[:0], exp["epochs"], exp["batch"], run_dir=sdir, progress=progress, seed=0,
                  history=history, start_epoch=start, meta={"study": name}, log=lambda line: None,
                  on_epoch=measure, on_checkpoint=keep_epoch)
    except DivergenceError as exc:
        epoch = (rec["epochs"][-1]["epoch"] if rec["epochs"] else start) + 1
        rec["diverged_at"] = epoch
        rec["epochs"].append({"epoch": epoch, "diverged": str(exc)})
        _write_json(jpath, rec)
        log("%s: epoch %d diverged (%s)" % (name, epoch, exc))
    finally:
        folder.release()
    return rec


def run_all(names, backend=None, workers=None, address=None, results=STUDY_RESULTS, state=STUDY_STATE, log=print):
    """Run experiments, each a job of fanout.fan_out (a Ray task, or one after another here): every experiment
    seeds itself, so its numbers do not depend on what else runs. The worker writes its JSON and run folder as
    run() does (on a local Ray: here, and a rerun resumes); the driver writes the JSON the job returns again, so
    that results/study/ holds it on a cluster without a shared file system (the run folder, for resuming, then
    stays on the machine that ran it). Returns the exit status: 1 if an experiment failed (named), else 0."""
    results, state = os.path.abspath(results), os.path.abspath(state)
    failed = []
    jobs = [(name, (name, backend, results, state)) for name in names]
    with contextlib.closing(fanout.fan_out(run, jobs, workers, address, log)) as finished:
        for name, rec, error in finished:
            if error is not None:
                failed.append(name)
                print("error: %s failed, the others go on: %s: %s" % (name, type(error).__name__, error),
                      file=sys.stderr)
            else:
                _write_json(_paths(name, results, state)[0], rec)
    return 1 if failed else 0


def fixedpoint(name, marks=(0, 1, 2, 5, 10, 20, 30, 60, 100, 200, 400, 700, 1000, 2000, 3000), n=100,
               results=STUDY_RESULTS, state=STUDY_STATE, log=print):
    """Denoising with a free z^0 run far past T: where it goes, for the literal update, without the leak on
    z^0, and with no leak at all (gamma = 0). Writes results/study/fixedpoint-<name>.json.

    Derivation (STUDY.md): with z^0 free, a fixed point has e^0 = -(gamma/beta) z^0 and, layer by layer,
    errors of order gamma/beta times the states: every layer equals its prediction up to 1 %, so the image is
    generated ancestrally from the top code (C_L H_L W_L = 40 numbers here), and the leak then shrinks it."""
    from ngc_cpu import model as cm
    from ngc_ref.model import draw_top
    exp = EXPERIMENTS[name]
    cfg0 = _cfg(exp)
    params = load_params(name, state)
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
    _write_json(os.path.join(results, "fixedpoint-%s.json" % name), out)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m convngc.experiments.study", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the experiments")
    p = sub.add_parser("run", help="train + evaluate experiments (resumable)")
    p.add_argument("names", nargs="*")
    p.add_argument("--group", default=None)
    p.add_argument("--backend", default=None, choices=BACKENDS, help="default: the fastest available")
    fanout.add_arguments(p)
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
            print("error: unknown or no experiment %s; see `python -m convngc.experiments.study list`" % unknown, file=sys.stderr)
            return 2
        why = fanout.check(args.workers, args.address)
        if why:
            print("error: %s" % why, file=sys.stderr)
            return 2
        return run_all(names, args.backend, args.workers, args.address)
    if args.cmd == "fixedpoint":
        fixedpoint(args.name)
        return 0
    if args.cmd == "report":
        from . import study_report
        study_report.main()
        return 0


if __name__ == "__main__":
    sys.exit(main())
