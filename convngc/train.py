"""Training and evaluation, written once for every backend (the model's backend does the math).

Tasks (Sec. 4, Appendix B):
  reconstruction   z^0 clamped to the image for all T steps; output zbar^0 vs the image
  denoising        x + N(0, 0.1) (std 0.1 on the [0,1] scale, not clipped) as z^0: clamped throughout with
                   its error weighted by cfg.pi0 (cfg.denoise = "precision"), clamped ("clamped",
                   Algorithm 1) or at t = 1 only ("free", Sec. 4); cfg.T_denoise steps (0: T); output
                   zbar^0 vs the clean image
  ood              reconstruction of another dataset by a model trained on the first
Metrics are on outputs clipped to [0, 1] and rescaled to [0, 255]; each trial re-draws the random
initial top state (and the noise); tables report mean and std over trials.
"""
import os
import time

import numpy as np

from ngc_ref import model as ref_model
from ngc_ref.model import output_image

from . import checkpoint, metrics, progress as _progress, viz
from .fileio import write_json
from .model import ConvNGC, DivergenceError, InitialOverflow

NOISE_STD = 0.1


def batches(n, batch_size, rng=None):
    """Index arrays for the minibatches of one pass over n items (shuffled when an rng is given)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _bar(iterable, total, desc, progress):
    """A bar over the iterable when one is wanted (progress None: stderr is a terminal), else the iterable."""
    bar = _progress.tqdm_bar(progress, iterable=iterable, total=total, desc=desc, unit="batch", dynamic_ncols=True,
                             leave=True)
    return iterable if bar is None else bar


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
    denoising = task == "denoising"
    clamp = ref_model.denoise_clamp(model.cfg) if denoising else "always"
    pi0 = model.cfg.denoise_pi0 if denoising else 1.0
    momentum = model.cfg.denoise_momentum if denoising else 0.0
    if denoising and T is None:
        T = model.cfg.denoise_T
    bar = _bar(batches(len(x), batch_size), -(-len(x) // batch_size), desc, progress)
    sq, n = 0.0, 0
    for idx in bar:
        res = model.settle(inp[idx], T=T, clamp=clamp, noisy=denoising, pi0=pi0, momentum=momentum)
        outs.append(model.backend.to_host(output_image(res, model.cfg)))      # zbar^0, or z^0 (cfg.output)
        energies.append(model.backend.to_host(res.energy))
        if hasattr(bar, "set_postfix"):            # running MSE (0-255 scale, vs the clean images) and energy
            sq, n = sq + metrics.mse(outs[-1], x[idx]) * len(idx), n + len(idx)
            bar.set_postfix(mse="%.1f" % (sq / n), energy="%.3g" % float(np.mean(energies[-1][-1])))
    return np.concatenate(outs), inp, np.concatenate(energies, axis=1)


def _metrics(out, x):
    """Eqs. 4-6 and windowed SSIM (metrics.evaluate_metrics), and PSNR by the other convention: of the mean MSE,
    10 log10(255^2 / MSE), below the mean of per-image PSNRs (Eq. 6) by Jensen's inequality."""
    m = {key: float(v) for key, v in metrics.evaluate_metrics(out, x).items()}
    m["psnr_of_mse"] = metrics.psnr_of_mse(m["mse"])
    return m


def evaluate(model, x, task="reconstruction", trials=1, batch_size=100, T=None, seed=0, progress=False, desc=None):
    """Metrics of a task, per trial and as mean/std over trials (trial k uses seed + k). For denoising, the
    noisy input's own metrics against the clean images stand beside them ("noisy_input"): the number a
    denoiser has to beat."""
    per_trial, noisy, last = [], [], None
    for k in range(trials):
        out, inp, energy = run_task(model, x, task, batch_size, T, seed + k, progress=progress,
                                    desc=desc or "%s, trial %d/%d" % (task, k + 1, trials))
        per_trial.append(_metrics(out, x))
        if task == "denoising":
            noisy.append(_metrics(inp, x))
        last = (out, inp, energy)
    summary = {key: {"mean": m, "std": s} for key, (m, s) in metrics.mean_std(per_trial).items()}
    res = {"task": task, "n_images": int(len(x)), "trials": per_trial, "summary": summary}
    if noisy:
        res["noisy_input"] = {key: {"mean": m, "std": s} for key, (m, s) in metrics.mean_std(noisy).items()}
    return res, last


def fit(model, train_x, val_x, epochs, batch_size=500, run_dir=None, progress=None, seed=0, history=None,
        start_epoch=0, val_batch=100, meta=None, log=print, on_checkpoint=None, schedule=None, on_epoch=None):
    """Algorithm 1 + 2 over minibatches for `epochs` epochs (counting from start_epoch).

    After each epoch: validation reconstruction MSE, on_epoch(epoch, history) (the epoch counted from 1, its
    history entries appended: an experiment's own measurements, made before the epoch is checkpointed), a
    checkpoint (atomic), the history and its plot; on_checkpoint(epoch) is called as soon as that epoch's
    checkpoint.npz is on disk (before best.npz, the history and the plot), so what it records is what the disk
    holds. `schedule` (a schedule.BetaSchedule, or
    None) watches every update: it steps beta down at the settle's stability edge and takes a blow-up back to
    its restore point (convngc/schedule.py); without it a diverged update raises.
    """
    history = history or {"train_energy": [], "val_mse": [], "epoch_seconds": []}
    for key in ("train_energy", "val_mse", "epoch_seconds"):
        history.setdefault(key, [])
    if schedule is not None:
        history.setdefault("checks", [])
        history.setdefault("schedule", [])
        schedule.checks, schedule.events = history["checks"], history["schedule"]
        schedule.start(model)
    rng = np.random.default_rng([seed, 2])
    for _ in range(start_epoch):                             # keep the shuffling sequence of a resumed run
        rng.permutation(len(train_x))
    per_epoch = -(-len(train_x) // batch_size)
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        energies = []
        bar = _bar(batches(len(train_x), batch_size, rng), per_epoch, "epoch %d/%d" % (epoch + 1, epochs), progress)
        for i, idx in enumerate(bar):
            if schedule is None:
                energies.append(model.learn(train_x[idx]))
            else:
                try:
                    energy = model.learn(train_x[idx])
                except InitialOverflow:
                    raise                                    # out-of-range settings, not a blow-up of learning
                except DivergenceError:
                    energy = float("nan")
                if schedule.after_update(model, epoch * per_epoch + i + 1, energy) is None and np.isfinite(energy):
                    energies.append(energy)
            if hasattr(bar, "set_postfix") and model.last_result is not None and energies:
                recon = model.backend.to_host(model.last_result.zbar[0])
                bar.set_postfix(energy="%.3g" % energies[-1], mse="%.1f" % metrics.mse(recon, train_x[idx]),
                                beta="%g" % model.cfg.beta)
        val = _validate(model, val_x, val_batch, seed, progress, "epoch %d/%d validation" % (epoch + 1, epochs), log)
        history["train_energy"].append(float(np.mean(energies)) if energies else float("nan"))
        history["val_mse"].append(float(val))
        history["epoch_seconds"].append(time.time() - t0)
        log("epoch %d/%d: train energy %.4g per image, validation reconstruction MSE %s (0-255 scale)%s, %.1fs"
            % (epoch + 1, epochs, history["train_energy"][-1], "%.4g" % val if val == val else "- (no validation set)",
               "" if schedule is None else ", beta %g, T %d" % (model.cfg.beta, model.cfg.T),
               history["epoch_seconds"][-1]))
        if on_epoch is not None:
            on_epoch(epoch + 1, history)
        if run_dir is not None:
            save_run_state(run_dir, model, epoch + 1, history, seed, meta, schedule, on_saved=on_checkpoint)
    if schedule is not None and run_dir is not None and epochs > start_epoch:
        keep_the_restore_point(run_dir, model, val_x, val_batch, seed, history, schedule, meta, log)
    return history


def keep_the_restore_point(run_dir, model, val_x, batch, seed, history, schedule, meta, log):
    """At the end of a scheduled run: the schedule's restore point (the parameters with the lowest probe MSE,
    checked every few updates) can be better than every epoch's end. Validated on the whole validation set,
    it replaces best.npz when it is (at the config training ended with), so a run ends at least as good as
    the best state it went through."""
    if schedule.best_params is None or schedule.best_update is None or not len(val_x):
        return
    trial = ConvNGC(model.cfg, backend=model.backend.name, seed=seed, dtype=model.dtype, params=schedule.best_params)
    val = _validate(trial, val_x, batch, seed, False, "restore point", log)
    vals = [v for v in history["val_mse"] if v is not None and np.isfinite(v)]
    if np.isfinite(val) and (not vals or val < min(vals)):
        log("the restore point (update %d) validates at MSE %.4g, below every epoch's (best %.4g): it is best.npz"
            % (schedule.best_update, val, min(vals) if vals else float("nan")))
        m = dict(meta or {}, epoch=len(history["val_mse"]), history=history, seed=seed,
                 rng_state=model.rng.bit_generator.state, backend=model.backend.name, schedule=schedule.state(),
                 restore_point={"update": schedule.best_update, "val_mse": float(val)})
        checkpoint.save(os.path.join(run_dir, "best.npz"), model.cfg, schedule.best_params, None, m)


def _validate(model, val_x, batch, seed, progress, desc, log):
    """The epoch's validation reconstruction MSE; NaN without validation images, or when the settle diverges
    on them (the epoch is then never the best; the beta schedule acts on the next update)."""
    if not len(val_x):
        return float("nan")
    try:
        return evaluate(model, val_x, "reconstruction", 1, batch, seed=seed, progress=progress,
                        desc=desc)[0]["summary"]["mse"]["mean"]
    except DivergenceError as exc:
        log("validation: %s" % exc)
        return float("nan")


def is_best_epoch(history):
    """Is the last epoch's validation MSE the lowest so far (finite)? Its checkpoint is then also best.npz."""
    vals = [v for v in history.get("val_mse", []) if v is not None and np.isfinite(v)]
    last = history["val_mse"][-1] if history.get("val_mse") else None
    return last is not None and np.isfinite(last) and last <= min(vals)


def save_run_state(run_dir, model, epoch, history, seed, meta=None, schedule=None, on_saved=None):
    """checkpoint.npz (the last epoch, what --resume continues; with the beta schedule's state and restore
    point) and, when this epoch has the lowest validation MSE so far, best.npz too: a later epoch can be
    worse, and `convngc evaluate RUN` evaluates the best one. The checkpoints hold the config the parameters
    were trained at (the schedule's beta, T and gamma at that epoch). on_saved(epoch) runs as soon as
    checkpoint.npz is in place."""
    m = dict(meta or {}, epoch=epoch, history=history, seed=seed,
             rng_state=model.rng.bit_generator.state, backend=model.backend.name)
    if schedule is not None:
        m["schedule"] = schedule.state()
    params, opt = model.host_params(), model.host_opt_state()
    checkpoint.save(os.path.join(run_dir, "checkpoint.npz"), model.cfg, params, opt, m,
                    extra={"restore": schedule.best_params} if schedule is not None else None)
    if on_saved is not None:
        on_saved(epoch)
    if is_best_epoch(history):
        checkpoint.save(os.path.join(run_dir, "best.npz"), model.cfg, params, opt, m)
    write_json(os.path.join(run_dir, "history.json"), history)
    if history["train_energy"]:
        viz.plot_training(os.path.join(run_dir, "training.png"),
                          {k: v for k, v in history.items() if k != "epoch_seconds"},
                          edge=schedule.opts.edge if schedule is not None else None)


def load_model(path, backend=None, expect_cfg=None):
    """A ConvNGC from a checkpoint file (or a run folder holding checkpoint.npz), optimiser state included, on
    `backend` (None: the fastest available, convngc.backends.default)."""
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
    W1 = model.host_params()["W"][1]
    viz.save_filters(os.path.join(run_dir, "filters_layer1%s.png" % suffix), W1,
                     title="Layer-1 filters W^1: how each of the %d maps of z^1 paints the image\n"
                           "(an RGB %dx%d kernel each; mid grey = 0)" % (W1.shape[0], W1.shape[2], W1.shape[3]))
