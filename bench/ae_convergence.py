"""How long Conv-AE / Conv-DAE (convngc/experiments/autoencoder.py, the paper's 48,393-parameter network with its
1x1x32 bottleneck) must train to converge, and the best reconstruction it reaches: the measurements behind the
quick scale's autoencoder settings (results/README.md, "The autoencoders: convergence, and why not 30 dB").

    python bench/ae_convergence.py --model conv-ae --lr 3e-3 --batch 128 --epochs 30 --out bench/results/ae.json
    python bench/ae_convergence.py --pca 32          # the best linear 32-number code (PCA) on the same images
    python bench/ae_convergence.py --model conv-dae --lr 3e-3 --decay cosine --batch 32 --epochs 30   # as quick

Each run trains AutoEncoderModel exactly as `convngc reproduce` does (trial seed 0, the same data loading, one
PyTorch thread and one BLAS thread unless --threads says otherwise) and records, after every epoch, the
validation reconstruction MSE (0-255 scale), the PSNR of that MSE, the updates so far and the seconds, and
whether the curve has flattened by reproduce.converged's criterion. Several runs append to one JSON file.
"""
import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from convngc import metrics  # noqa: E402
from convngc.experiments import reproduce  # noqa: E402


def load_rows(path):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return []


def save(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    os.replace(tmp, path)


def pca(args, tx, vx):
    """Reconstruction by the top-k principal components of the training images (the best linear k-number code
    in MSE): the validation MSE of the projection, clipped to [0, 1] as the tables clip every model's output."""
    t0 = time.time()
    a = tx.reshape(len(tx), -1).astype(np.float64)
    mu = a.mean(0)
    _, _, vt = np.linalg.svd(a - mu, full_matrices=False)
    out = []
    for k in args.pca:
        p = vt[:k]
        b = vx.reshape(len(vx), -1).astype(np.float64) - mu
        rec = (b @ p.T @ p + mu).reshape(vx.shape)
        mse = metrics.mse(rec, vx)
        out.append({"kind": "pca", "k": k, "dataset": args.dataset, "n_train": len(tx), "n_val": len(vx),
                    "val_mse": mse, "val_psnr_of_mse": metrics.psnr_of_mse(mse), "seconds": time.time() - t0})
        print("PCA k=%d on %d training images: validation MSE %.1f, PSNR of the MSE %.2f dB"
              % (k, len(tx), mse, metrics.psnr_of_mse(mse)), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("conv-ae", "conv-dae"), default="conv-ae")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--decay", choices=("cosine",), default=None,
                    help="anneal Adam's step over the whole run (autoencoder.step_size); the run is then one fit "
                         "and its epochs are written when it ends")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--blocks", type=int, default=5, help="conv+pool blocks; 5 is the paper's (a 1x1x32 code), "
                    "fewer is a larger-code variant that is NOT the paper's (autoencoder.ConvAE)")
    ap.add_argument("--pca", type=int, nargs="+", default=None, metavar="K")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ae-convergence.json"))
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits
    threadpool_limits(args.threads)
    tx = reproduce.load(args.dataset, "train", args.n_train, args.data_dir)
    vx = reproduce.load(args.dataset, "val", args.n_val, args.data_dir)
    rows = load_rows(args.out)
    if args.pca:
        rows += pca(args, tx, vx)
        save(args.out, rows)
        return
    import torch
    from convngc.experiments.autoencoder import AutoEncoderModel
    torch.set_num_threads(args.threads)
    m = AutoEncoderModel(denoising=(args.model == "conv-dae"), seed=args.seed, lr=args.lr, blocks=args.blocks,
                         decay=args.decay)
    run = {"kind": "train", "model": args.model, "blocks": args.blocks,
           "code_numbers": 32 * (32 >> args.blocks) ** 2, "parameters": m.net.n_trainable(),
           "dataset": args.dataset, "n_train": len(tx), "n_val": len(vx),
           "batch": args.batch, "lr": args.lr, "decay": args.decay, "seed": args.seed, "threads": args.threads,
           "load_before": os.getloadavg()[0], "epochs": []}
    rows.append(run)
    per_epoch = -(-len(tx) // args.batch)
    t0 = time.time()
    hist = {"val_mse": []}
    if args.decay:      # one schedule over all the epochs: one fit
        whole = m.fit(tx, vx, args.epochs, args.batch, log=lambda s: None)
        ends = np.cumsum(whole["epoch_seconds"])
    for e in range(args.epochs):
        h = ({"val_mse": [whole["val_mse"][e]], "train_loss": [whole["train_loss"][e]]} if args.decay
             else m.fit(tx, vx, 1, args.batch, log=lambda s: None))
        hist["val_mse"].append(h["val_mse"][0])
        v = h["val_mse"][0]
        conv = reproduce.converged(hist["val_mse"])
        run["epochs"].append({"epoch": e + 1, "updates": (e + 1) * per_epoch, "val_mse": v,
                              "val_psnr_of_mse": metrics.psnr_of_mse(v), "train_loss": h["train_loss"][0],
                              "seconds": float(ends[e]) if args.decay else time.time() - t0, "converged": conv["converged"],
                              "last_fifth_change": conv["change"]})
        run["load_after"] = os.getloadavg()[0]
        save(args.out, rows)
        print("%s%s lr %g batch %d: epoch %d (%d updates) val MSE %.1f (%.2f dB), last-fifth change %s, %.0fs"
              % (args.model, "" if args.blocks == 5 else " (%d blocks)" % args.blocks, args.lr, args.batch, e + 1, (e + 1) * per_epoch, v, metrics.psnr_of_mse(v),
                 "-" if conv["change"] is None else "%+.1f%%" % (100 * conv["change"]), time.time() - t0),
              flush=True)


if __name__ == "__main__":
    main()
