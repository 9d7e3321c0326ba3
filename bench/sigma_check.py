"""Does `--sigma` rescale the denoising reading well? For a model tuned at one noise level (0.1), at other levels:
the reading the rule gives (apply.reading: pi0 x (tuned / sigma)^2, T x old pi0 / new pi0) against the best of
a grid (convngc.tune.tune_denoising at that level) and against keeping the reading tuned for 0.1.

    python bench/sigma_check.py --model runs/my-run --dataset cifar10 --limit 100      # ~10 min on 2 cores

Validation images (never test images), the tuning's own noise draws and z^L draws.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convngc import apply, data, metrics, models, tune  # noqa: E402
from convngc.train import load_model  # noqa: E402

GRIDS = {0.05: ((1.0, 0.5, 0.25, 0.15, 0.1, 0.05), (1, 2, 4)), 0.2: ((0.05, 0.025, 0.0125, 0.00625), (4, 8, 16))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a shipped model, run folder or checkpoint")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--limit", type=int, default=100, help="validation images (default 100)")
    args = ap.parse_args(argv)
    model, meta = load_model(models.resolve(args.model), backend="cpu")
    x = data.to_model(data.load_dataset(args.dataset, "val", data_dir=args.data_dir, seed=0, limit=args.limit)[0],
                      channels=model.cfg.layer_channels[0])
    print("model %s: pi0 %g, T_denoise %d, tuned for noise std %g" % (args.model, model.cfg.pi0, model.cfg.denoise_T,
                                                                     apply.tuned_sigma(meta)))
    for sigma, (pi0s, factors) in GRIDS.items():
        rd = apply.reading(model, "denoise", sigma=sigma, meta=meta)
        table, best = tune.tune_denoising(model, x, noise_std=sigma, pi0s=pi0s, factors=factors, log=print)
        noisy = (x + np.random.default_rng([0, 7]).normal(0, sigma, x.shape)).astype(x.dtype)   # the tuning's draw
        rule = tune._denoise(model, noisy, rd.pi0, rd.T, 0, 100)
        keep = tune._denoise(model, noisy, model.cfg.pi0, model.cfg.denoise_T, 0, 100)
        print("noise std %g: best of the grid pi0 %g T %d: %.2f dB | the rule pi0 %.4g T %d: %.2f dB | the reading "
              "tuned for %g: %.2f dB | the noisy input: %.2f dB" % (
                  sigma, best["pi0"], best["T"], best["psnr"], rd.pi0, rd.T, metrics.psnr(rule, x),
                  apply.tuned_sigma(meta), metrics.psnr(keep, x), best["noisy_input"]["psnr"]), flush=True)


if __name__ == "__main__":
    main()
