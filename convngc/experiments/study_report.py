"""Plots and tables of the study (python -m convngc.experiments.study report): read results/study/*.json, write
PNGs and results/study/tables.md. STUDY.md (beside them) is written by hand around these figures.

It reads only the JSON the study wrote (each record carries its experiment), never the study module: the study
calls this module for its `report` command, not the other way round."""
import glob
import json
import os

import numpy as np

from . import STUDY_RESULTS as RESULTS


def _load(results):
    out = {}
    for path in sorted(glob.glob(os.path.join(results, "*.json"))):
        name = os.path.basename(path)[:-5]
        with open(path) as f:
            out[name] = json.load(f)
    return out


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _series(rec, key):
    ep = [e["epoch"] for e in rec["epochs"] if e.get(key) is not None]
    return ep, [e[key] for e in rec["epochs"] if e.get(key) is not None]


def plot_steps(recs, dataset, path, T=60):
    """Validation PSNR against epochs for every (Adam step, batch) of a dataset: reconstruction, the two
    denoising readings, and the settling step's most negative eigenvalue."""
    plt = _plt()
    names = sorted(n for n in recs if n.startswith("steps-%s-" % dataset))
    if not names:
        return None
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    noisy = None
    for n in names:
        rec = recs[n]
        exp = rec["experiment"]
        label = "Adam %g, batch %d" % (rec["config"]["lr"], exp["batch"])
        style = "-" if exp["batch"] == 500 else "--"
        for ax, key in zip(axes[:3], ("recon_psnr_T%d" % T, "denoise_free_psnr_T%d" % T, "denoise_clamped_psnr_T%d" % T)):
            ep, v = _series(rec, key)
            ax.plot(ep, v, style, marker="o", ms=3, label=label)
        ep, v = _series(rec, "stability_eig")
        axes[3].plot(ep, v, style, marker="o", ms=3, label=label)
        if rec.get("diverged_at"):
            for ax in axes:
                ax.axvline(rec["diverged_at"], color="grey", lw=0.5, ls=":")
        noisy = noisy or next((e["noisy_psnr"] for e in rec["epochs"] if "noisy_psnr" in e), None)
    titles = ("reconstruction (T=%d)" % T, "denoising, free z^0 (Sec. 4), T=%d" % T,
              "denoising, clamped z^0 (Algorithm 1), T=%d" % T, "settling step: most negative eigenvalue")
    from matplotlib.ticker import MaxNLocator
    for ax, title in zip(axes, titles):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel("epoch (%d training images)" % recs[names[0]]["n_train"])
        ax.grid(alpha=0.3)
    for ax in axes[:3]:
        ax.set_ylabel("validation PSNR (dB)")
    if noisy is not None:
        for ax in axes[1:3]:
            ax.axhline(noisy, color="k", lw=1, ls=":", label="noisy input")
    axes[3].axhline(-1, color="r", lw=1, ls=":", label="unstable below -1")
    axes[3].set_ylabel("eigenvalue")
    axes[0].legend(fontsize=8)
    axes[3].legend(fontsize=8)
    fig.suptitle("%s: training length and step size" % dataset)
    return _save(plt, fig, path)


def plot_long(recs, names, path, T=60):
    """Long runs side by side: reconstruction and clamped denoising against updates, and the eigenvalue."""
    plt = _plt()
    names = [n for n in names if n in recs]
    if not names:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    noisy = None
    for n in names:
        rec = recs[n]
        per_epoch = rec["n_train"] / rec["experiment"]["batch"]
        for ax, key in zip(axes, ("recon_psnr_T%d" % T, "denoise_clamped_psnr_T%d" % T, "stability_eig")):
            ep, v = _series(rec, key)
            ax.plot([e * per_epoch for e in ep], v, marker="o", ms=3, label="%s: %s" % (n, rec["experiment"]["what"]))
        noisy = noisy or next((e["noisy_psnr"] for e in rec["epochs"] if "noisy_psnr" in e), None)
        if rec.get("diverged_at"):
            for ax in axes:
                ax.axvline(rec["diverged_at"] * per_epoch, color="grey", lw=0.5, ls=":")
    if noisy is not None:
        axes[1].axhline(noisy, color="k", ls=":", label="noisy input")
    axes[2].axhline(-1, color="r", ls=":", label="unstable below -1")
    for ax, (title, ylabel) in zip(axes, (("reconstruction, T=%d" % T, "validation PSNR (dB)"),
                                          ("denoising, clamped z^0, T=%d" % T, "validation PSNR (dB)"),
                                          ("settling step: most negative eigenvalue", "eigenvalue"))):
        ax.set_title(title)
        ax.set_xlabel("Adam updates")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    return _save(plt, fig, path)


def plot_tradeoff(recs, path, T=60):
    """Every evaluation of every run: clamped-denoising PSNR against reconstruction PSNR."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    noisy = None
    for n, rec in sorted(recs.items()):
        pts = [(e.get("recon_psnr_T%d" % T), e.get("denoise_clamped_psnr_T%d" % T)) for e in rec["epochs"]]
        pts = [(a, b) for a, b in pts if a is not None and b is not None and a > 15]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, lw=0.8, label=n)
        noisy = noisy or next((e["noisy_psnr"] for e in rec["epochs"] if "noisy_psnr" in e), None)
    if noisy is not None:
        ax.axhline(noisy, color="k", ls=":", label="noisy input")
    ax.set_xlabel("reconstruction PSNR, T=%d (dB)" % T)
    ax.set_ylabel("denoising PSNR, clamped z^0, T=%d (dB)" % T)
    ax.set_title("What a better reconstruction buys the denoiser (CIFAR-10 validation)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return _save(plt, fig, path)


def plot_readings(rec, path):
    """Denoising PSNR against T for every reading, at the last evaluated epoch of one experiment."""
    plt = _plt()
    last = [e for e in rec["epochs"] if "noisy_psnr" in e][-1]
    Ts = sorted(int(k.split("_T")[-1]) for k in last if k.startswith("recon_psnr_T"))
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    labels = {"recon": "reconstruction (clean input, clamped)", "denoise_free": "denoising, free z^0, output zbar^0 (Sec. 4)",
              "denoise_free_z0": "denoising, free z^0, output z^0", "denoise_free_noleak": "denoising, free z^0, no leak on z^0",
              "denoise_clamped": "denoising, clamped z^0 (Algorithm 1)"}
    for key, label in labels.items():
        ax.plot(Ts, [last["%s_psnr_T%d" % (key, T)] for T in Ts], marker="o", label=label)
    ax.axhline(last["noisy_psnr"], color="k", ls=":", label="noisy input")
    ax.set_xlabel("settling steps T")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title("%s, epoch %d" % (rec["name"], last["epoch"]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_fixedpoint(fp, path):
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    for variant, rows in fp["variants"].items():
        t = [max(r["t"], 0.5) for r in rows]
        axes[0].plot(t, [r["psnr_zbar"] for r in rows], marker="o", ms=3, label=variant)
        axes[1].plot(t, [max(r["energy"], 1e-12) for r in rows], marker="o", ms=3, label=variant)
        axes[2].plot(t, [r["mean_z0"] for r in rows], marker="o", ms=3, label=variant)
    axes[0].axhline(fp["noisy_psnr"], color="k", ls=":", label="noisy input")
    axes[2].axhline(fp["clean_mean"], color="k", ls=":", label="clean image mean")
    for ax, (title, ylabel) in zip(axes, (("denoised PSNR (output zbar^0)", "PSNR (dB)"),
                                          ("energy per image", "energy"), ("mean of z^0", "mean pixel value"))):
        ax.set_xscale("log")
        ax.set_xlabel("settling step t (log)")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    fig.suptitle("Denoising with a free z^0 run far past T = 60 (%s)" % fp["experiment"])
    return _save(plt, fig, path)


def plot_headline(folder, path):
    """Full CIFAR-10 runs of `convngc train` (results/headline/<run>/history.json + config.json): validation
    reconstruction PSNR against Adam updates."""
    runs = sorted(glob.glob(os.path.join(folder, "*", "history.json")))
    if not runs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for h in runs:
        with open(h) as f:
            hist = json.load(f)
        with open(os.path.join(os.path.dirname(h), "config.json")) as f:
            conf = json.load(f)
        per_epoch = 45000 // conf["run"]["batch_size"]
        mse = np.asarray([np.nan if v is None else v for v in hist["val_mse"]], float)
        m = conf["model"]
        start = (conf["run"].get("init") or {}).get("epoch") or 0       # --init: continues another run's updates
        ax.plot(per_epoch * np.arange(start + 1, start + len(mse) + 1), 10 * np.log10(255.0 ** 2 / mse), marker="o",
                ms=3, label="%s: beta %g, T = %d, Adam %g, batch %d%s" % (
                    os.path.basename(os.path.dirname(h)), m["beta"], m["T"], m["lr"], conf["run"]["batch_size"],
                    ", from epoch %d of another run" % start if start else ""))
    ax.set_xlabel("Adam updates (450 per epoch at batch 100)")
    ax.set_ylabel("validation PSNR of the mean MSE (dB)")
    ax.set_title("CIFAR-10, all 45,000 training images: validation reconstruction")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def _fmt(v, nd=2):
    return "-" if v is None else ("%.*f" % (nd, v))


def _best(last, key, Ts):
    vals = [(last.get("%s_psnr_T%d" % (key, T)), T) for T in Ts]
    vals = [(v, T) for v, T in vals if v is not None]
    return max(vals) if vals else (None, None)


def table(recs, group, T=60):
    rows = ["| experiment | what | epochs | recon PSNR | denoise free | denoise clamped | best denoise (reading, T) | noisy input | eigenvalue | best recon PSNR (epoch) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for n, rec in recs.items():
        if rec.get("experiment", {}).get("group") != group:
            continue
        evals = [e for e in rec["epochs"] if "noisy_psnr" in e]
        if not evals:
            continue
        last = evals[-1]
        Ts = sorted(int(k.split("_T")[-1]) for k in last if k.startswith("recon_psnr_T"))
        best = max(((_best(last, k, Ts)[0], k, _best(last, k, Ts)[1]) for k in
                    ("denoise_free", "denoise_free_z0", "denoise_free_noleak", "denoise_clamped")),
                   key=lambda r: -1e9 if r[0] is None else r[0])
        div = " (diverged at epoch %d)" % rec["diverged_at"] if rec.get("diverged_at") else ""
        top = max(evals, key=lambda e: e.get("recon_psnr_T%d" % T) or -1e9)
        rows.append("| %s | %s | %d%s | %s | %s | %s | %s (%s, T=%s) | %s | %s | %s (%d) |" % (
            n, rec["experiment"]["what"], last["epoch"], div, _fmt(last.get("recon_psnr_T%d" % T)),
            _fmt(last.get("denoise_free_psnr_T%d" % T)), _fmt(last.get("denoise_clamped_psnr_T%d" % T)),
            _fmt(best[0]), best[1].replace("denoise_", ""), best[2], _fmt(last["noisy_psnr"]),
            _fmt(last.get("stability_eig"), 3), _fmt(top.get("recon_psnr_T%d" % T)), top["epoch"]))
    return "\n".join(rows)


def main(results=RESULTS):
    recs = {n: r for n, r in _load(results).items() if not n.startswith("fixedpoint-")}
    written = []
    for ds in ("cifar10", "color-mnist"):
        p = plot_steps(recs, ds, os.path.join(results, "steps-%s.png" % ds))
        if p:
            written.append(p)
    p = plot_long(recs, ["long-base", "long-beta0.05-T120", "long-leak0.01"], os.path.join(results, "long.png"))
    if p:
        written.append(p)
    cifar = {n: r for n, r in recs.items() if r.get("experiment", {}).get("dataset") == "cifar10"}
    if cifar:
        written.append(plot_tradeoff(cifar, os.path.join(results, "tradeoff.png")))
    head = os.path.join(os.path.dirname(results.rstrip("/")), "headline")
    p = plot_headline(head, os.path.join(head, "validation.png"))
    if p:
        written.append(p)
    for n in ("open-base",):
        if n in recs and any("noisy_psnr" in e for e in recs[n]["epochs"]):
            written.append(plot_readings(recs[n], os.path.join(results, "readings-%s.png" % n)))
    for path in sorted(glob.glob(os.path.join(results, "fixedpoint-*.json"))):
        with open(path) as f:
            written.append(plot_fixedpoint(json.load(f), path[:-5] + ".png"))
    md = ["# Study tables (generated by `python -m convngc.experiments.study report`; validation images, one seeded trial, T = 60 unless noted)", ""]
    for group, title in (("steps", "Training length and step size"), ("open", "The paper's open points"),
                         ("long", "Long runs (6,000 updates)")):
        md += ["## " + title, "", table(recs, group), ""]
    with open(os.path.join(results, "tables.md"), "w") as f:
        f.write("\n".join(md))
    written.append(os.path.join(results, "tables.md"))
    for p in written:
        print("wrote", p)
    return written
