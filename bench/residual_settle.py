"""Is residual Conv-NGC's settle stable before any learning? The energy of one settle (Eq. 3, mean over images)
from freshly initialised filters, step by step, at several beta: a stable settle's energy falls and stays down.

    python bench/residual_settle.py [--T 240] [--beta 0.1 0.025 0.01 0.005] [--json results/residual-settle.json]

50 CIFAR-10 training images, the reference (ngc_ref.residual) in float64, the quick row's filters (seed 1) and
top draw. Three readings of Eq. 8 per beta: "as printed" (the error reaches z^l only through the chain of
transforms, E = W^T, skipping Pool and ReLU; none through the skip) and "with skip feedback" (plus S^T e^{l-1},
the projection skip's own transpose: what a gradient of the energy would also send back). The second is not an
option of the model; it is here to show whether the missing feedback is why the settle diverges. The third,
"gradient", is ResidualConfig(feedback="gradient"): the energy's exact gradient (through phi', Pool, ReLU and the
skip). About 8 minutes on 2 cores for the first two readings, 4-5 minutes a beta for the third."""
import argparse
import dataclasses
import json
import time

import numpy as np

from convngc.experiments import reproduce
from ngc_ref import model as ref_model, ops, residual

PRINTED = residual.corrections


def with_skip_feedback(z, e, params, cfg, free_bottom=False):
    d = PRINTED(z, e, params, cfg, free_bottom)
    for l in range(1, cfg.base.L + 1):
        if params["S"][l] is not None:
            d[l] = d[l] + ops.conv2d(e[l - 1], params["S"][l], cfg.base.stride)
    return d


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=240)
    ap.add_argument("--beta", type=float, nargs="+", default=[0.1, 0.025, 0.01, 0.005])
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--readings", nargs="+", default=["as printed", "with skip feedback", "gradient"])
    args = ap.parse_args(argv)
    x = reproduce.load("cifar10", "train", args.images, args.data_dir).astype(np.float64)
    marks = sorted({t for t in (0, 5, 10, 20, 40, 60, 90, 120, 180, args.T - 1) if t < args.T})
    print("mean energy per image at settle step " + " ".join(str(t) for t in marks))
    rows = []
    try:
        for beta in args.beta:
            cfg = residual.ResidualConfig(base=dataclasses.replace(reproduce.Config(), beta=beta))
            params = residual.init_params(cfg, np.random.default_rng(1), np.float64)
            z_top = ref_model.draw_top(cfg.base, len(x), np.random.default_rng(5), np.float64)
            for name, fn in (("as printed", PRINTED), ("with skip feedback", with_skip_feedback),
                             ("gradient", PRINTED)):
                if name not in args.readings:
                    continue
                residual.corrections = fn
                if name == "gradient":
                    cfg = dataclasses.replace(cfg, feedback="gradient")
                t0 = time.time()
                energy = [float(np.mean(v)) for v in residual.settle(params, x, cfg, z_top, T=args.T).energy]
                low = int(np.argmin(energy))
                rows.append({"beta": beta, "reading": name, "energy": energy, "lowest_step": low,
                             "seconds": time.time() - t0})
                print("beta %-6g %-19s %s   lowest at step %d%s" % (
                    beta, name, " ".join("%.4g" % energy[t] for t in marks), low,
                    ", then rises to %.3g" % energy[-1] if energy[-1] > 1.05 * energy[low] else ""), flush=True)
    finally:
        residual.corrections = PRINTED
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "python bench/residual_settle.py --T %d --beta %s --readings %s" % (
                args.T, " ".join("%g" % b for b in args.beta), " ".join("'%s'" % r for r in args.readings)),
                "images": len(x), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
