"""The seeds table: one training recipe, several seeds, each evaluated on the whole test set, beside the noisy
input and the classical denoisers on the same noisy images.

    python -m convngc.experiments.seeds results/cifar10-seeds   # reads s*/metrics.json and classical/raw/*.json,
                                                                # prints the tables of results/cifar10-seeds/README.md

Each seed's folder holds the `convngc evaluate ... --trials 5` output (metrics.json: 5 trials = new z^L draws
and new noise each) and the run's history; `classical/` is `convngc reproduce --rows cifar10/tv cifar10/nlm
cifar10/bm3d --scale paper --trials 5` (the same noise draws: seeds 0-4, tested in tests/app/test_reproduce.py).
"""
import glob
import json
import os
import sys

import numpy as np

from .. import metrics

PAPER = {"cifar10": {"reconstruction": {"mse": 6.3668, "psnr": 41.0912, "ssim_global": 0.9955},
                     "denoising": {"mse": 183.8624, "psnr": 25.9004, "ssim_global": 0.8603}},
         "color-mnist": {"reconstruction": {"mse": 11.2802, "ssim_global": 0.9838},
                         "denoising": {"mse": 202.2222, "ssim_global": 0.6732}}}
KEYS = ("mse", "psnr", "psnr_of_mse", "ssim_global", "ssim")
CLASSICAL = (("tv", "total variation"), ("nlm", "non-local means"), ("bm3d", "BM3D"))


def _psnr_of_mse(mse):
    return metrics.psnr_of_mse(mse)


def read_seeds(folder):
    """{seed: metrics.json} of every s<seed>/ under folder."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "s*", "metrics.json"))):
        seed = int(os.path.basename(os.path.dirname(path))[1:])
        with open(path) as f:
            out[seed] = json.load(f)
    return out


def per_seed(m, task):
    """One seed's mean over its trials of each metric (psnr_of_mse from each trial's MSE when not stored)."""
    s = m["results"][task]["summary"]
    row = {k: s[k]["mean"] for k in KEYS if k in s}
    if "psnr_of_mse" not in row:
        row["psnr_of_mse"] = float(np.mean([_psnr_of_mse(t["mse"]) for t in m["results"][task]["trials"]]))
    return row


def classical(folder, dataset="cifar10"):
    """{name: (label, summary)} of the classical denoisers' raw JSON in folder/classical/raw/."""
    out = {}
    for name, label in CLASSICAL:
        path = os.path.join(folder, "classical", "raw", "%s__%s.json" % (dataset, name))
        if os.path.isfile(path):
            with open(path) as f:
                rec = json.load(f)
            row = {k: rec["summary"]["denoising"][k]["mean"] for k in ("mse", "psnr", "ssim_global", "ssim")}
            row["psnr_of_mse"] = float(np.mean([_psnr_of_mse(t["denoising"]["mse"]) if "denoising" in t
                                                else _psnr_of_mse(t["mse"]) for t in rec["trials"]]))
            out[name] = (label, row, rec["setup"])
    return out


def _ms(vals, digits):
    vals = np.asarray(vals, float)
    return metrics.format_mean_std(vals.mean(), vals.std(ddof=1) if len(vals) > 1 else 0.0, len(vals), digits)


FMT = {"mse": 2, "psnr": 2, "psnr_of_mse": 2, "ssim_global": 4, "ssim": 4}


def table(folder, dataset="cifar10"):
    """The markdown of the seeds table, and a dict of what it claims (for the README and the tests)."""
    seeds = read_seeds(folder)
    if not seeds:
        raise SystemExit("no s*/metrics.json under %s" % folder)
    lines, claims = [], {}
    head = "| | MSE | PSNR, mean of per-image (dB) | PSNR of the mean MSE (dB) | SSIM (Eq. 5) | SSIM (windowed) |"
    for task in ("reconstruction", "denoising"):
        rows = {s: per_seed(m, task) for s, m in seeds.items()}
        k = len(seeds[min(seeds)]["results"][task]["trials"])
        lines += ["", "**%s** (%s test set, %d images, %d %s per seed)" % (
            task, dataset, seeds[min(seeds)]["results"][task]["n_images"], k, "trial" if k == 1 else "trials"),
            "", head, "|---|---|---|---|---|---|"]
        for s in sorted(rows):
            r = rows[s]
            extra = ""
            if task == "denoising":
                extra = " (pi0 %g, T %d%s)" % (seeds[s].get("pi0", float("nan")), seeds[s].get("T_denoise", 0),
                                                ", momentum %g" % seeds[s]["momentum"] if seeds[s].get("momentum") else "")
            lines.append("| seed %d%s | %s |" % (s, extra, " | ".join(("%." + str(FMT[k]) + "f") % r[k] for k in KEYS)))
        lines.append("| **mean%s over %d %s** | %s |" % (" ± std" if len(rows) > 1 else "", len(rows),
                                                           "seed" if len(rows) == 1 else "seeds", " | ".join(
            "**%s**" % _ms([r[k] for r in rows.values()], FMT[k]) for k in KEYS)))
        if task == "denoising":
            noisy = [seeds[s]["results"][task]["noisy_input"] for s in sorted(seeds)]
            lines.append("| the noisy input | %s |" % " | ".join(
                ("%." + str(FMT[k]) + "f") % np.mean([n[k]["mean"] for n in noisy]) if k in noisy[0] else
                ("%." + str(FMT[k]) + "f") % np.mean([_psnr_of_mse(n["mse"]["mean"]) for n in noisy]) for k in KEYS))
            for name, (label, r, setup) in classical(folder, dataset).items():
                n = setup.get("trials", 1)
                lines.append("| %s (tuned on %d validation images; %d trial%s) | %s |" % (
                    label, setup.get("n_tune", 0), n, "" if n == 1 else "s", " | ".join(("%." + str(FMT[k]) + "f") % r[k] for k in KEYS)))
        p = PAPER.get(dataset, {}).get(task, {})
        lines.append("| the paper | %s | %s | %s | %s | - |" % (
            "%.2f" % p["mse"] if "mse" in p else "-", "%.2f" % p["psnr"] if "psnr" in p else "-",
            "%.2f" % _psnr_of_mse(p["mse"]) if "mse" in p else "-", "%.4f" % p["ssim_global"] if p else "-"))
        met = {s: (r["mse"] <= p["mse"] and ("psnr" not in p or r["psnr"] >= p["psnr"])) for s, r in rows.items()} if p else {}
        claims[task] = {"seeds": sorted(rows), "met": met, "mean": {k: float(np.mean([r[k] for r in rows.values()]))
                                                                    for k in KEYS}}
    return "\n".join(lines) + "\n", claims


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    folder = argv[0] if argv else os.path.join("results", "cifar10-seeds")
    dataset = argv[1] if len(argv) > 1 else "cifar10"
    text, claims = table(folder, dataset)
    print(text)
    for task, c in claims.items():
        if c["met"]:
            print("%s: the paper's MSE%s met by seeds %s of %s" % (
                task, " and PSNR" if "psnr" in PAPER.get(dataset, {}).get(task, {}) else "",
                [s for s, ok in c["met"].items() if ok], c["seeds"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
