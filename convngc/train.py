"""Training and evaluation, written once for every backend (the model's backend does the math).

Tasks (Sec. 4, Appendix B):
  reconstruction   z^0 clamped to the image for all T steps; output zbar^0 vs the image
  denoising        x + N(0, 0.1) (std 0.1 on the [0,1] scale, not clipped), z^0 clamped at t = 1 only;
                   output zbar^0 vs the clean image
  ood              reconstruction of another dataset by a model trained on the first
Metrics are on outputs clipped to [0, 1] and rescaled to [0, 255]; each trial re-draws the random
initial top state (and the noise); tables report mean and std over trials.
"""
import json
import os
import time

import numpy as np

from ngc_ref.model import output_image

from . import checkpoint, metrics, viz
from .model import ConvNGC

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency; keep working without it
    tqdm = None

NOISE_STD = 0.1


class RunDirError(FileExistsError):
    """A run folder that would be overwritten."""


def make_run_dir(path, resume=False):
    """Create a fresh run folder; refuse to reuse one that holds an earlier run unless resuming."""
    path = os.fspath(path)
    if os.path.exists(path) and not resume:
        if os.listdir(path):
            raise RunDirError("run folder %s already holds a run; pass --resume %s to continue it, or choose "
                              "another --out" % (path, path))
    os.makedirs(path, exist_ok=True)
    return path


def write_json(path, obj):
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
            f.write("\n")
    checkpoint.atomic_write(path, w)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError("not JSON-serialisable: %r" % type(o))


def batches(n, batch_size, rng=None):
    """Index arrays for the minibatches of one pass over n items (shuffled when an rng is given)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _bar(iterable, total, desc, progress):
    if progress and tqdm is not None:
        return tqdm(iterable, total=total, desc=desc, unit="batch", dynamic_ncols=True, leave=True)
    return iterable


def run_task(model, x, task, batch_size=100, T=None, seed=0, noise_std=NOISE_STD, progress=False, desc=None):
    """One trial of a task over images x (N, C, H, W) in [0, 1] -> (output, model input, energy trace)."""
    rng = np.random.default_rng(seed)
    saved, model.rng = model.rng, np.random.default_rng([seed, 1])      # the z^L draws of this trial
    try:
        return _run_task(model, x, task, batch_size, T, rng, noise_std, progress, desc or task)
    finally:
        model.rng = saved                                   # evaluation never shifts training's random stream


def _run_task(model, x, task, batch_size, T, rng, noise_std, progress, desc):
    inp = x
    if task == "denoising":
        inp = (x + rng.normal(0.0, noise_std, size=x.shape)).astype(x.dtype)
    elif task not in ("reconstruction", "ood"):
        raise ValueError("unknown task %r: choose reconstruction, denoising or ood" % (task,))
    outs, energies = [], []
    clamp = "first" if task == "denoising" else "always"
    for idx in _bar(batches(len(x), batch_size), -(-len(x) // batch_size), desc, progress):
        res = model.settle(inp[idx], T=T, clamp=clamp)
        outs.append(model.backend.to_host(output_image(res, model.cfg)))      # zbar^0, or z^0 (cfg.output)
        energies.append(model.backend.to_host(res.energy))
    return np.concatenate(outs), inp, np.concatenate(energies, axis=1)


def evaluate(model, x, task="reconstruction", trials=1, batch_size=100, T=None, seed=0, progress=False):
    """Metrics of a task, per trial and as mean/std over trials (trial k uses seed + k)."""
    per_trial, last = [], None
    for k in range(trials):
        out, inp, energy = run_task(model, x, task, batch_size, T, seed + k, progress=progress,
                                    desc="%s, trial %d/%d" % (task, k + 1, trials))
        per_trial.append({key: float(v) for key, v in metrics.evaluate_metrics(out, x).items()})
        last = (out, inp, energy)
    summary = {key: {"mean": m, "std": s} for key, (m, s) in metrics.mean_std(per_trial).items()}
    return {"task": task, "n_images": int(len(x)), "trials": per_trial, "summary": summary}, last


def fit(model, train_x, val_x, epochs, batch_size=500, run_dir=None, progress=True, seed=0, history=None,
        start_epoch=0, val_batch=100, meta=None, log=print):
    """Algorithm 1 + 2 over minibatches for `epochs` epochs (counting from start_epoch).

    After each epoch: validation reconstruction MSE, a checkpoint (atomic), the history and its plot.
    """
    history = history or {"train_energy": [], "val_mse": [], "epoch_seconds": []}
    rng = np.random.default_rng([seed, 2])
    for _ in range(start_epoch):                             # keep the shuffling sequence of a resumed run
        rng.permutation(len(train_x))
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        energies = []
        bar = _bar(batches(len(train_x), batch_size, rng), -(-len(train_x) // batch_size),
                   "epoch %d/%d" % (epoch + 1, epochs), progress)
        for idx in bar:
            energies.append(model.learn(train_x[idx]))
            if progress and tqdm is not None:
                recon = model.backend.to_host(model.last_result.zbar[0])
                bar.set_postfix(energy="%.3g" % energies[-1], mse="%.1f" % metrics.mse(recon, train_x[idx]))
        val = evaluate(model, val_x, "reconstruction", 1, val_batch, seed=seed)[0]["summary"]["mse"]["mean"] \
            if len(val_x) else float("nan")
        history["train_energy"].append(float(np.mean(energies)))
        history["val_mse"].append(float(val))
        history["epoch_seconds"].append(time.time() - t0)
        log("epoch %d/%d: train energy %.4g per image, validation reconstruction MSE %.4g (0-255 scale), %.1fs"
            % (epoch + 1, epochs, history["train_energy"][-1], val, history["epoch_seconds"][-1]))
        if run_dir is not None:
            save_run_state(run_dir, model, epoch + 1, history, seed, meta)
    return history


def save_run_state(run_dir, model, epoch, history, seed, meta=None):
    m = dict(meta or {}, epoch=epoch, history=history, seed=seed,
             rng_state=model.rng.bit_generator.state, backend=model.backend.name)
    checkpoint.save(os.path.join(run_dir, "checkpoint.npz"), model.cfg, model.host_params(), model.host_opt_state(), m)
    write_json(os.path.join(run_dir, "history.json"), history)
    if history["train_energy"]:
        viz.plot_training(os.path.join(run_dir, "training.png"),
                          {k: v for k, v in history.items() if k != "epoch_seconds"})


def load_model(path, backend="numpy", expect_cfg=None):
    """A ConvNGC from a checkpoint file (or a run folder holding checkpoint.npz), optimiser state included."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "checkpoint.npz")
    cfg, params, opt_state, meta = checkpoint.load(path, expect_cfg)
    model = ConvNGC(cfg, backend=backend, seed=meta.get("seed", 0), params=params)
    if opt_state is not None:
        model.load_opt_state(opt_state)
    if "rng_state" in meta:
        model.rng.bit_generator.state = meta["rng_state"]
    return model, meta


def free_suffix(folder, name="metrics.json"):
    """"" if folder/name is free, else "-2", "-3", ...: a later evaluation never overwrites an earlier one."""
    stem, ext = os.path.splitext(name)
    k = 1
    while os.path.exists(os.path.join(folder, "%s%s%s" % (stem, "" if k == 1 else "-%d" % k, ext))):
        k += 1
    return "" if k == 1 else "-%d" % k


def report_pictures(run_dir, model, tasks_last, suffix=""):
    """PNG grids (original / noisy / output) per task, the settling energy curve and the first filters.

    tasks_last: {task: (x, output, model input, energy trace)} from the last trial of each task.
    """
    for task, (x, out, inp, energy) in tasks_last.items():
        pick = np.unique(np.linspace(0, len(out) - 1, 8).astype(int))       # spread over the set, not the first 8
        rows = {"original": x[pick]}
        if task == "denoising":
            rows["noisy"] = np.clip(inp[pick], 0, 1)
        rows["denoised" if task == "denoising" else "reconstruction"] = np.clip(out[pick], 0, 1)
        viz.save_grid(os.path.join(run_dir, "samples_%s%s.png" % (task, suffix)), rows)
    curves = {task: v[3] for task, v in tasks_last.items()}
    viz.plot_energy(os.path.join(run_dir, "energy%s.png" % suffix), curves, title="Energy during settling (per image)")
    viz.save_filters(os.path.join(run_dir, "filters_layer1%s.png" % suffix), model.host_params()["W"][1])
