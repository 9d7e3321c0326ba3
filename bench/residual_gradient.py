"""Does residual Conv-NGC train when its settle and updates follow the energy's exact gradient
(ResidualConfig(feedback="gradient")) instead of Eqs. 8-12 as printed? Trains the quick row's model on a few
CIFAR-10 images with the NumPy reference (float32) and prints the validation reconstruction MSE after every epoch.

    python bench/residual_gradient.py [--n 500] [--epochs 3] [--batch 50] [--beta 0.1] [--feedback gradient]
        [--descent] [--branch-scale 1.0] [--lr 1e-3] [--backend numpy] [--json out.jsonl]
"""
import argparse
import dataclasses
import json
import time

from convngc.experiments import reproduce
from convngc.experiments.baselines import ResidualConvNGC
from ngc_ref import residual


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--n-val", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--T", type=int, default=None)
    ap.add_argument("--feedback", default="gradient", choices=("printed", "gradient"))
    ap.add_argument("--descent", action="store_true", help="retake a step that raises an image's energy at half "
                    "its rate (ResidualConfig.descent)")
    ap.add_argument("--branch-scale", type=float, default=1.0, help="scale the freshly drawn kernels of each "
                    "block's output transform W^{l,1} by this (0.1: the block starts close to its skip)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    base = dataclasses.replace(reproduce.Config(), beta=args.beta, **({} if args.T is None else {"T": args.T}),
                               **({} if args.lr is None else {"lr": args.lr}))
    cfg = residual.ResidualConfig(base=base, feedback=args.feedback, descent=args.descent)
    tx = reproduce.load("cifar10", "train", args.n, None)
    vx = reproduce.load("cifar10", "val", args.n_val, None)
    m = ResidualConvNGC(cfg, seed=args.seed, backend=args.backend)
    for l in range(1, base.L + 1):
        m.params["W"][l][0] = m.params["W"][l][0] * m.params["W"][l][0].dtype.type(args.branch_scale)
    t0, done = time.time(), []
    try:
        hist = m.fit(tx, vx, args.epochs, args.batch, log=lambda line: (print(line, flush=True), done.append(line)))
        row = dict(vars(args), seconds=time.time() - t0, **hist)
    except FloatingPointError as exc:          # the parameters became NaN / Inf: record how far it got
        row = dict(vars(args), seconds=time.time() - t0, diverged=str(exc), epochs_done=done)
    print(json.dumps({k: v for k, v in row.items() if k != "epoch_seconds"}))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
