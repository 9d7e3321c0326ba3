"""Speed of the NumPy reference's settling loop, as a share of this machine's own matmul rate.

    python bench/ref_bench.py [--batch 100] [--T 60] [--repeats 3]

Times Algorithm 1 (ancestral init + T steps) of the paper configuration in float32 and prints
image-steps/s, the useful GFLOP/s and that rate as a share of a NumPy float32 matrix multiply
measured in the same run. Useful FLOPs per image-step (one prediction pass + one correction pass):
    4 * sum_l C_l * C_{l-1} * K*K * H_l * W_l      (H_l, W_l: the upper layer's map; 2.04 MFLOP here)
The literal transposed convolution also multiplies the inserted zeros; those FLOPs are not counted.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ngc_ref import model  # noqa: E402
from ngc_ref.config import Config  # noqa: E402


def useful_flops_per_image_step(cfg):
    C, K = cfg.layer_channels, cfg.kernel
    return 4 * sum(C[l] * C[l - 1] * K * K * np.prod(cfg.map_hw(l)) for l in range(1, cfg.L + 1))


def matmul_gflops(n=2048, repeats=5):
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--T", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args(argv)
    cfg = Config(T=args.T)
    rng = np.random.default_rng(0)
    p = model.init_params(cfg, rng)
    x = rng.random((args.batch, 3, 32, 32), dtype=np.float32)
    zt = model.draw_top(cfg, args.batch, rng)
    model.settle(p, x, cfg, zt, T=2)                                  # warm-up
    mm = matmul_gflops()
    best = float("inf")
    for _ in range(args.repeats):
        t = time.perf_counter()
        model.settle(p, x, cfg, zt)
        best = min(best, time.perf_counter() - t)
    flops = useful_flops_per_image_step(cfg)
    rate = args.batch * args.T / best
    useful = rate * flops / 1e9
    mm2 = matmul_gflops()                                             # again, in case the clock moved
    mm = max(mm, mm2)
    out = {"batch": args.batch, "T": args.T, "seconds": best, "image_steps_per_s": rate,
           "useful_mflop_per_image_step": flops / 1e6, "useful_gflops": useful, "matmul_gflops": mm,
           "share_of_matmul": useful / mm}
    print("settle (paper config, float32, batch %d, T=%d): %.3f s (best of %d)" % (args.batch, args.T, best, args.repeats))
    print("  %.0f image-steps/s x %.3f MFLOP = %.2f useful GFLOP/s" % (rate, flops / 1e6, useful))
    print("  NumPy float32 matmul (2048^2) in this run: %.1f GFLOP/s" % mm)
    print("  reference / matmul: %.1f%%" % (100 * useful / mm))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
