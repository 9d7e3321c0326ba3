"""How many steps does the precision denoising settle need, with and without heavy-ball momentum? The table of
docs/reading.md ("Momentum"): denoising MSE (0-255 scale) for each momentum and T, the model's own pi0.

    python bench/momentum_sweep.py --model cifar10                  # ~6 min on 2 cores (the plain 1,920 steps)

Validation images 500..599 (the tuning uses the first 500), one noise draw and one z^L draw for every point,
float64 on the cpu backend (the reference's arithmetic to rounding), so the columns differ only in the steps.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convngc import cli, metrics, models  # noqa: E402
from convngc.model import ConvNGC  # noqa: E402
from ngc_ref import model as ref_model  # noqa: E402


def sweep(model, x, pi0, settings, seed=0):
    """{(momentum, T): MSE} of the precision settle of x + N(0, 0.1) with pi0, for each (momentum, T)."""
    noisy = x + np.random.default_rng([seed, 7]).normal(0.0, 0.1, size=x.shape)
    z_top = ref_model.draw_top(model.cfg, len(x), np.random.default_rng([seed, 1]), np.float64)
    out = {}
    for mom, T in settings:
        res = model.settle(noisy, T=T, z_top=z_top, noisy=True, pi0=pi0, momentum=mom)
        out[(mom, T)] = float(metrics.mse(ref_model.output_image(res, model.cfg), x))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="cifar10", help="a shipped model, run folder or checkpoint (default cifar10)")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--momenta", default="0,0.8,0.9,0.95")
    ap.add_argument("--steps", default="60,120,240,480")
    ap.add_argument("--plain-steps", type=int, default=1920, help="one more plain (momentum 0) settle this long")
    args = ap.parse_args(argv)
    from convngc import checkpoint
    cfg, params, _, _ = checkpoint.load(models.resolve(args.model))
    model = ConvNGC(cfg, backend="cpu", dtype=np.float64, seed=0, params=params)
    x = cli._load_images(args.dataset, "val", args.data_dir, 0, 600, cfg, False)[500:600].astype(np.float64)
    momenta = [float(m) for m in args.momenta.split(",")]
    steps = [int(t) for t in args.steps.split(",")]
    settings = [(m, T) for m in momenta for T in steps] + [(0.0, args.plain_steps)]
    res = sweep(model, x, cfg.pi0, settings)
    print("model %s: pi0 %g, beta %g; denoising MSE of %d validation images" % (args.model, cfg.pi0, cfg.beta, len(x)))
    print("| steps | " + " | ".join("momentum %g" % m if m else "plain" for m in momenta) + " |")
    for T in sorted(set(steps + [args.plain_steps])):
        print("| %d | " % T + " | ".join("%.2f" % res[(m, T)] if (m, T) in res else "" for m in momenta) + " |")


if __name__ == "__main__":
    main()
