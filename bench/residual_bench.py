"""CPU speed of residual Conv-NGC (Appendix C): ngc_cpu.residual against the NumPy reference ngc_ref.residual.

    python bench/residual_bench.py              # batch 100, ~3 minutes on 2 loaded cores (the reference dominates)
    python bench/residual_bench.py --batch 50 --repeats 3

The paper's hierarchy (channels 10, 15, 20, 25, 3; 32x32; 3x3, stride 2; T = 60) with Eq. 7's blocks (n = 4,
post-ops none, pool+relu, pool, relu; 3x3 SAME max-pool) and projection skips, float32, random N(0, 0.1)
filters and random images (the work does not depend on the data). Per backend:
  settle   Algorithm 1 through the blocks (ancestral pass, T steps, final predictions): image-steps/s = B T / s
  learn    Eq. 12's filter updates + the Adam step + projection, from the settled states
  train    settle + learn: seconds per image of a training step at T = 60
The cpu backend is timed at T = 60 with 1 thread and with all CPUs. The reference is timed at T = 2 and T = 6
and its settle extrapolated linearly to T = 60 (its cost is linear in T; a T = 60 settle of batch 100 takes
minutes), its learn step once. Plain Conv-NGC on the cpu backend (ngc_cpu.model, same hierarchy) is timed beside
them: the ratio residual / plain is what convngc/experiments/reproduce.py's COST table uses. Repeats are
interleaved and the median is reported; the load average is printed before and after (the machine is shared).
"""
import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import ngc_cpu  # noqa: E402
from ngc_cpu import model as cpu_model, residual as cpu_res  # noqa: E402
from ngc_ref import model as ref_model, residual as ref_res  # noqa: E402
from ngc_ref.config import Config  # noqa: E402


def useful_flops_per_image_step(cfg):
    """2 x the multiply-adds of one settling step without the zeros of a dilation or of SAME padding's border
    left out: per block, the n transforms of Eq. 7, the projection skip, the n - 1 perturbations of Eqs. 9-11
    and the strided one of Eq. 8 (pools, ReLUs and elementwise work left out)."""
    b = cfg.base
    C, K, s = b.layer_channels, b.kernel, b.stride
    total = 0
    for l in range(1, b.L + 1):
        up = C[l] * C[l - 1] * K * K * int(np.prod(b.map_hw(l)))               # one stride-s conv, C_l <-> C_{l-1}
        same = C[l - 1] * C[l - 1] * K * K * int(np.prod(b.map_hw(l - 1)))     # one stride-1 conv at layer l-1
        skip = up if cfg.skip_kind(l) == "project" else 0
        total += 2 * up + skip + 2 * (cfg.n - 1) * same
    return 2 * total


def median_time(f, repeats):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the cpu timings (median reported)")
    ap.add_argument("--ref-repeats", type=int, default=1, help="repeats of the reference's timings")
    ap.add_argument("--json", default=None, help="also write the numbers to this file (bench/results/residual-*.json "
                    "make docs/performance.md's residual table)")
    args = ap.parse_args(argv)
    B = args.batch
    cfg = ref_res.ResidualConfig(base=Config())
    plain_cfg = cfg.base
    T = cfg.base.T
    rng = np.random.default_rng(0)
    params = ref_res.init_params(cfg, rng)
    plain = ref_model.init_params(plain_cfg, rng)
    x = rng.random((B, 3, 32, 32), dtype=np.float32)
    z_top = ref_model.draw_top(plain_cfg, B, rng)
    n_cpu = len(os.sched_getaffinity(0))
    load0 = os.getloadavg()
    print("machine: %d CPUs; load average %.1f %.1f %.1f; batch %d, float32, paper hierarchy, T = %d"
          % (n_cpu, *load0, B, T))
    flops = useful_flops_per_image_step(cfg)

    def cpu_learn(res, p, st):
        cpu_res.step(p, cpu_res.filter_updates(res, p, cfg), st, cfg)

    # warm-up: compile or load the kernels
    r = cpu_res.settle(params, x, cfg, z_top, T=1)
    cpu_res.filter_updates(r, params, cfg)
    cpu_model.settle(plain, x, plain_cfg, z_top, T=1)
    rows = {}
    for n in sorted({1, n_cpu}):
        ngc_cpu.set_num_threads(n)
        ts, tl, tp = [], [], []
        for _ in range(args.repeats):                           # interleaved: settle, learn, plain
            t = time.perf_counter()
            res = cpu_res.settle(params, x, cfg, z_top)
            ts.append(time.perf_counter() - t)
            p = {k: [v if not isinstance(v, list) else [w.copy() for w in v] for v in vs] for k, vs in params.items()}
            st = cpu_res.init_state(p)
            t = time.perf_counter()
            cpu_learn(res, p, st)
            tl.append(time.perf_counter() - t)
            t = time.perf_counter()
            cpu_model.settle(plain, x, plain_cfg, z_top)
            tp.append(time.perf_counter() - t)
        rows["cpu", n] = (statistics.median(ts), statistics.median(tl))
        rows["plain", n] = (statistics.median(tp), None)

    t2 = median_time(lambda: ref_res.settle(params, x, cfg, z_top, T=2), args.ref_repeats)
    t6 = median_time(lambda: ref_res.settle(params, x, cfg, z_top, T=6), args.ref_repeats)
    res6 = ref_res.settle(params, x, cfg, z_top, T=6)
    p = {k: [v if not isinstance(v, list) else [w.copy() for w in v] for v in vs] for k, vs in params.items()}
    st = ref_res.init_state(p)
    tl = median_time(lambda: ref_res.step(p, ref_res.filter_updates(res6, p, cfg), st, cfg), args.ref_repeats)
    rows["numpy", None] = (t2 + (T - 2) * (t6 - t2) / 4, tl)
    load1 = os.getloadavg()

    print()
    print("| backend | threads | settle s (T=%d) | settle image-steps/s | useful GFLOP/s | learn s | train s/image "
          "| train x numpy |" % T)
    print("|---|---|---|---|---|---|---|---|")
    ref_train = (rows["numpy", None][0] + rows["numpy", None][1]) / B
    for (name, n), (sec, learn) in rows.items():
        if name == "plain":
            continue
        train = (sec + learn) / B
        print("| %s | %s | %.2f%s | %s | %.1f | %.3f | %.4f | %.0f |" % (
            name if name != "numpy" else "numpy (reference)", n or "BLAS", sec, " (extrapolated)" if name == "numpy"
            else "", "{:,.0f}".format(B * T / sec), B * T / sec * flops / 1e9, learn, train, ref_train / train))
    print()
    for n in sorted({1, n_cpu}):
        sec = rows["plain", n][0]
        print("plain Conv-NGC, cpu backend, %d thread(s): settle %.2f s, %s image-steps/s; residual settle costs %.1fx "
              "a plain one" % (n, sec, "{:,.0f}".format(B * T / sec), rows["cpu", n][0] / sec))
    print("useful MFLOP per image-step: residual %.1f, plain %.2f" % (flops / 1e6, 4 * sum(
        plain_cfg.layer_channels[l] * plain_cfg.layer_channels[l - 1] * 9 * int(np.prod(plain_cfg.map_hw(l)))
        for l in range(1, plain_cfg.L + 1)) / 1e6))
    print("load average after: %.1f %.1f %.1f" % load1)
    if args.json:
        out = {"load_before": load0, "load_after": load1, "batch": B, "T": T,
               "useful_mflop_per_image_step": flops / 1e6,
               "rows": [{"backend": name, "threads": n, "settle_seconds": sec, "learn_seconds": learn}
                        for (name, n), (sec, learn) in rows.items()]}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
