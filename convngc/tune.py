"""Tuning the denoising reading of a trained model on validation images: the precision pi0 and the steps T.

Precision-weighted denoising (Config.denoise = "precision", docs/reading.md) settles with z^0 clamped to the
noisy image and its error weighted by pi0 in z^1's correction. The best pi0 depends on the model and on the
noise level: a model that reconstructs well also reproduces noise well, and needs a lower pi0 (less trust in
the noisy pixels); a lower pi0 also settles more slowly, so it needs a larger T. The settle takes heavy-ball
momentum 0.9 (ngc_ref.model.heavy_ball): the same output as Algorithm 1's plain steps in about 1/16 of the
steps (measured on the CIFAR-10 models of seeds 0 and 4: 120 steps with momentum, 1,920 without;
docs/reading.md); plain steps stopped early compete at no more steps (MOMENTA). pi0, T and the momentum are
chosen here on
validation images (never test images) with the evaluation's own noise (N(0, noise_std), seeded), and stored in
the checkpoint's config, so that `convngc evaluate` and `convngc.denoise` use them.

    table, best = tune_denoising(model, x_val)        # best = {"pi0": ..., "T_denoise": ..., "mse": ..., "psnr": ...}
"""
import dataclasses
import math
import time

import numpy as np

from ngc_ref import model as ref_model

from . import metrics

PI0_GRID = (1.0, 0.5, 0.25, 0.15, 0.1, 0.07, 0.05, 0.035, 0.025)
T_FACTORS = (0.25, 0.5, 1, 2, 4, 8, 16)   # T_denoise = factor x the model's T (with momentum a fraction often suffices)
MOMENTUM = 0.9                        # heavy-ball weight of the denoising settle (0.8 and 0.95 measured slower)
# Heavy ball first; then Algorithm 1's plain steps, each settle no longer than heavy ball's choice: a plain settle
# stopped early can denoise better at no more cost (measured: the main job's model, pi0 0.5, 120 steps: MSE 141.7
# plain, 144.8 with momentum, on 100 validation images), since stopping short of the fixed point also fits less noise.
MOMENTA = (MOMENTUM, 0.0)
MAX_STEPS = 2000                      # no grid point settles longer than this: denoising time is proportional to T


def _denoise(model, noisy, pi0, T, seed, batch, momentum=MOMENTUM):
    cfg = model.cfg
    z_top = ref_model.draw_top(cfg, len(noisy), np.random.default_rng([seed, 1]), model.dtype)
    outs = []
    for i in range(0, len(noisy), batch):
        res = model.settle(noisy[i:i + batch], T=T, clamp="always", z_top=z_top[i:i + batch], noisy=True, pi0=pi0,
                           momentum=momentum)
        outs.append(model.backend.to_host(ref_model.output_image(res, cfg)))
    return np.concatenate(outs)


def tune_denoising(model, x, noise_std=0.1, seed=0, pi0s=PI0_GRID, factors=T_FACTORS, max_steps=MAX_STEPS,
                   batch=100, log=None, momenta=MOMENTA):
    """Denoising MSE / PSNR of `model` on clean images x (N, C, H, W) for every pi0 in `pi0s` and
    T = factor x model.cfg.T (at least 1, T <= max_steps), settling with each momentum of `momenta` in turn (for
    each pi0 the T grid stops once a longer settle no longer lowers the MSE by 0.5 %, and the pi0 grid, largest
    first, stops once a pi0's best is 2 % worse than the best so far); a later momentum's settles are no longer
    than the choice so far (MOMENTA's reason). The same noise and z^L draws for every point. Returns (table,
    best): table a list of {"pi0", "T", "momentum", "mse", "psnr"}; best the cheapest (shortest T) row within
    0.5 % of the lowest MSE: a longer settle that gains less than that is not worth its cost (denoising time is
    proportional to T)."""
    rng = np.random.default_rng([seed, 7])
    noisy = (x + rng.normal(0.0, noise_std, size=x.shape)).astype(x.dtype)
    table = []
    for momentum in momenta:
        cap = _choose(table)["T"] if table else max_steps
        rows = _grid(model, x, noisy, pi0s, factors, cap, float(momentum), seed, batch, log)
        table += rows
    best = _choose(table)
    noisy_row = {"mse": float(metrics.mse(noisy, x)), "psnr": float(metrics.psnr(noisy, x))}
    return table, dict(best, noisy_input=noisy_row, n_images=int(len(x)), noise_std=float(noise_std), seed=int(seed),
                       pi0_grid=[float(p) for p in pi0s], t_factors=[float(f) for f in factors], max_steps=int(max_steps),
                       momenta=[float(m) for m in momenta])


def _grid(model, x, noisy, pi0s, factors, max_steps, momentum, seed, batch, log):
    """The rows of one momentum: pi0 from the largest (past the best pi0 the MSE only rises), T growing."""
    rows = []
    for pi0 in pi0s:
        if rows and min(r["mse"] for r in rows if r["pi0"] == rows[-1]["pi0"]) > 1.02 * min(r["mse"] for r in rows):
            break
        prev = math.inf
        for f in factors:
            T = max(1, int(round(model.cfg.T * f)))
            if T > max_steps:
                break
            out = _denoise(model, noisy, pi0, T, seed, batch, momentum)
            row = {"pi0": float(pi0), "T": int(T), "momentum": momentum, "mse": float(metrics.mse(out, x)),
                   "psnr": float(metrics.psnr(out, x))}
            rows.append(row)
            if log:
                log("  pi0 %-5g T %-5d momentum %-4g  MSE %8.2f  PSNR %6.2f dB" % (pi0, T, momentum, row["mse"],
                                                                                 row["psnr"]))
            if row["mse"] > prev * (1 - 0.005):
                break
            prev = row["mse"]
    return rows


def _choose(table):
    """The cheapest row (shortest T, then lowest MSE) within 0.5 % of the lowest MSE."""
    low = min(r["mse"] for r in table)
    return min((r for r in table if r["mse"] <= low * (1 + 0.005)), key=lambda r: (r["T"], r["mse"]))


def is_current(tuning):
    """Was this stored tuning (a checkpoint's meta["denoise_tuning"]) made with the grid the code uses now?"""
    return bool(tuning) and tuning.get("pi0_grid") == list(PI0_GRID) and tuning.get("max_steps") == MAX_STEPS \
        and tuning.get("t_factors") == [float(f) for f in T_FACTORS] and tuning.get("momenta") == list(MOMENTA)


def tuned_config(cfg, best):
    """cfg with the tuned reading: denoise="precision" (pi0 = 1 is Algorithm 1's clamped reading, kept as
    "precision" with pi0 1), pi0, T_denoise and the momentum it was tuned with (0 in a tuning made before it)."""
    return dataclasses.replace(cfg, denoise="precision", pi0=best["pi0"], T_denoise=best["T"],
                               momentum=float(best.get("momentum", 0.0)))


def tune_checkpoint(path, x, seed, backend, log=print, dry_run=False):
    """Tune the denoising reading of checkpoint `path` on clean images x (validation images, never test images)
    with `seed`'s noise; rewrite the checkpoint (atomically) with the choice in its config and the table in its
    meta["denoise_tuning"] (not with dry_run). The last step of `convngc train`, `convngc tune` and the
    reproduction's Conv-NGC rows. Returns the chosen row."""
    from . import checkpoint, train
    from .model import ConvNGC
    cfg, params, opt, meta = checkpoint.load(path)
    model = ConvNGC(cfg, backend=backend, seed=seed, params=params)
    log("tuning the denoising reading of %s on %d validation images (noise std %g): pi0 and T" % (
        path, len(x), train.NOISE_STD))
    t0 = time.time()
    table, best = tune_denoising(model, x, train.NOISE_STD, seed=seed, log=log)
    log("chosen: pi0 %g, T_denoise %d (momentum %g): MSE %.2f, PSNR %.2f dB (the noisy input: MSE %.2f, PSNR %.2f dB; "
        "Algorithm 1's clamped reading, pi0 1: MSE %.2f), %.0fs" % (
            best["pi0"], best["T"], best.get("momentum", 0.0), best["mse"], best["psnr"], best["noisy_input"]["mse"],
            best["noisy_input"]["psnr"], min(r["mse"] for r in table if r["pi0"] == 1.0), time.time() - t0))
    if not dry_run:
        checkpoint.save(path, tuned_config(cfg, best), params, opt, dict(meta, denoise_tuning=dict(best, table=table)))
    return best
