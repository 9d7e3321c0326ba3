"""Whole pictures: speed of `convngc denoise` / `reconstruct` on one 512x768 RGB photograph, and the quality of
the whole-picture settle against overlapping tiles on held-out photographs.

    python bench/picture_bench.py --model runs/my-run            # speed (cpu tiles, cpu whole, numpy)
    python bench/picture_bench.py --model cifar10 --quality      # also whole vs tiles on held-out photographs
    make bench                                                   # cpu_bench.py ends with the speed rows

The model: a shipped model's name, a run folder or a checkpoint (default: the shipped cifar10 when it is there,
else the paper's configuration with random filters and the default denoising reading, which settles the same
number of steps as an untuned model: the time does not depend on the filters, only on T).

Speed: the 512x768 photograph is scikit-image's `coffee` (400x600) enlarged 1.28x (bicubic) to 512x768 (a
training photograph of the `embedded` set: only the time is measured on it). Rows: the cpu backend with tiles
(the default), the cpu backend with the whole picture as one map, and the NumPy reference with tiles, timed on
T = 10 steps and scaled to the model's T (its time per step does not depend on T). The first call of each
size compiles nothing new (the kernels take sizes at run time); one warm-up call on a small picture comes first.

Quality (--quality): held-out photographs, none a source of the `embedded` training set nor in CIFAR-10:
matplotlib's `grace_hopper.jpg` (colour) and scikit-image's camera, coins, moon and clock (grey, through the
colour model as grey replicated to RGB), centre crops of --crop pixels; noise N(0, 0.1) seeded. For each method
(whole; tiles of 32 / 64 / 128 with overlaps; tiles without overlap as the control that shows seams): PSNR
against the clean photograph of reconstruction and denoising, the seconds, and for tiles how far they are from
the whole map: the mean |tiles - whole| (0-255 scale) and the seam ratio, the mean |step| of (tiles - whole)
across the rows and columns where tile edges fall over the mean |step| across all rows and columns (1: the
edges are not special, no seam; the tiles without overlap show what a seam measures).
"""
import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from convngc import apply, metrics  # noqa: E402

QUALITY_METHODS = (("whole", 0, 0), ("tiles", 32, 16), ("tiles", 64, 16), ("tiles", 64, 32), ("tiles", 128, 32),
                   ("tiles", 64, 0), ("tiles", 32, 0))
NOISE = 0.1


def photo_512x768():
    """(3, 512, 768) float32: skimage's coffee (400x600) enlarged 1.28x, bicubic."""
    import skimage.data
    from PIL import Image
    im = Image.fromarray(skimage.data.coffee()).resize((768, 512), Image.BICUBIC)
    return (np.asarray(im, np.float32) / 255).transpose(2, 0, 1).copy()


def held_out():
    """{name: (3, H, W) float32}: photographs not in the embedded set's sources nor in CIFAR-10."""
    import matplotlib
    import skimage.data
    from PIL import Image
    out = {}
    hop = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")
    if os.path.exists(hop):
        out["grace_hopper"] = np.asarray(Image.open(hop).convert("RGB"), np.float32) / 255
    for name in ("camera", "coins", "moon", "clock"):
        g = np.asarray(getattr(skimage.data, name)(), np.float32) / 255
        out[name] = np.repeat(g[:, :, None], 3, axis=2)
    return {k: v.transpose(2, 0, 1).copy() for k, v in out.items()}


def load_model(spec, backend):
    from convngc import models
    from convngc.train import load_model as load
    if spec is None and "cifar10" in models.names():
        spec = "cifar10"
    if spec is None:
        from convngc.model import ConvNGC
        from ngc_ref.config import Config
        return ConvNGC(Config(), backend=backend, seed=0), {}, "the paper's configuration, random filters"
    path = models.resolve(spec)
    model, meta = load(path, backend=backend)
    return model, meta, path


def timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def speed(spec=None, repeats=1, whole=True, ref_steps=20, log=print):
    """Seconds to denoise and reconstruct the 512x768 photograph: cpu tiles (the default path, timed in full),
    cpu whole and numpy tiles (timed on ref_steps settling steps and scaled to the model's T: their time per
    step does not depend on T, and a full run of either takes minutes)."""
    x = photo_512x768()
    noisy = (x + np.random.default_rng(0).normal(0, NOISE, x.shape)).astype(np.float32)
    rows = []
    model, meta, label = load_model(spec, "cpu")
    from ngc_cpu import get_num_threads
    log("picture speed: one 512x768 RGB photograph (skimage coffee, enlarged); model: %s; cpu backend threads: %d"
        % (label, get_num_threads()))
    apply.settle_image(model, x[:, :96, :96], "reconstruct", T=2)          # warm-up: compile / load the kernels
    for backend in ("cpu", "numpy"):
        m = model if backend == "cpu" else load_model(spec, "numpy")[0]
        for task, inp in (("denoise", noisy), ("reconstruct", x)):
            rd = apply.reading(m, task, meta=meta)
            methods = ["tiles"] + (["whole"] if whole and backend == "cpu" else [])
            if backend == "cpu" and task == "denoise" and rd.T > m.cfg.T:
                methods.append("budget")          # --T = the model's T: the tuned precision for that budget
            for method in methods:
                if method == "budget":
                    b = apply.reading(m, task, T=m.cfg.T, meta=meta)
                    sec = float(np.median([timed(lambda: apply.settle_image(m, inp, task, "tiles", rd=b))[1]
                                           for _ in range(repeats)]))
                    rows.append(dict(backend=backend, task=task, method="tiles --T %d" % b.T, T=b.T, pi0=b.pi0,
                                     momentum=b.momentum,
                                     seconds=sec, tiles=apply.n_work((512, 768), "tiles"), note="",
                                     megapixel_steps_per_s=512 * 768 * b.T / sec / 1e6))
                    log("  %-5s %-11s %-5s T %4d: %7.2f s (--T %d: pi0 %g, the tuned precision for %d steps)"
                        % (backend, task, "tiles", b.T, sec, b.T, b.pi0, b.T))
                    continue
                if backend == "numpy" or method == "whole":
                    steps = min(ref_steps, rd.T)
                    small = dataclasses.replace(rd, T=steps)
                    _, sec = timed(lambda: apply.settle_image(m, inp, task, method, rd=small))
                    sec = sec * (rd.T + 1) / (steps + 1)
                    note = "timed at T = %d, scaled to T = %d" % (steps, rd.T) if steps != rd.T else ""
                else:
                    secs = [timed(lambda: apply.settle_image(m, inp, task, method, rd=rd))[1] for _ in range(repeats)]
                    sec, note = float(np.median(secs)), ""
                tiles = apply.n_work((512, 768), method)
                px_steps = 512 * 768 * rd.T / sec
                row = dict(backend=backend, task=task, method=method, T=rd.T, pi0=rd.pi0, momentum=rd.momentum,
                           seconds=sec, tiles=tiles,
                           note=note, megapixel_steps_per_s=px_steps / 1e6)
                rows.append(row)
                log("  %-5s %-11s %-5s T %4d: %7.2f s (%d %s, %.1f picture Mpx-steps/s)%s" % (
                    backend, task, method, rd.T, sec, tiles, "tiles" if method == "tiles" else "map",
                    px_steps / 1e6, "; " + note if note else ""))
    return rows


def seam_ratio(diff, lines_y, lines_x):
    """Mean |step| of a difference map (C, H, W) across the given row / column lines over the mean |step| across
    all lines: about 1 when the lines are not special, well above 1 along a seam."""
    e = diff.mean(axis=0)
    dy = np.abs(np.diff(e, axis=0))           # dy[i] = step between rows i and i+1
    dx = np.abs(np.diff(e, axis=1))
    ly = [y - 1 for y in lines_y if 1 <= y < e.shape[0]]
    lx = [x - 1 for x in lines_x if 1 <= x < e.shape[1]]
    at = np.concatenate([dy[ly].ravel(), dx[:, lx].ravel()])
    allsteps = np.concatenate([dy.ravel(), dx.ravel()]).mean()
    return float(at.mean() / allsteps) if allsteps > 0 else 1.0


def edge_lines(hw, tile, overlap):
    """The rows and columns of the picture where a tile's edge falls (where a seam would be)."""
    g = apply.tile_grid(hw, tile, overlap)
    return [sorted({k * g.step - g.pad_before[axis] + d for k in range(g.counts[axis]) for d in (0, tile)})
            for axis in range(2)]


def tile_rates(T=30, repeats=5, log=print):
    """Settling rate per pixel of tiles of several sides against a batch of 32x32 images (the same work in
    pixels per call), interleaved in one process: does a larger tile lose the caches?"""
    import dataclasses
    from convngc.model import ConvNGC
    from ngc_ref.config import Config
    base = ConvNGC(Config(), backend="cpu", seed=0)
    cases = [(32, 128), (48, 64), (64, 64), (80, 32), (96, 32), (128, 32)]
    nets = {}
    for P, B in cases:
        net = ConvNGC(dataclasses.replace(Config(), image_hw=(P, P)), backend="cpu", params=base.host_params())
        x = np.random.default_rng(0).random((B, 3, P, P), dtype=np.float32)
        net.settle(x, T=1)
        nets[P] = (net, x)
    times = {P: [] for P, _ in cases}
    for _ in range(repeats):
        for P, B in cases:
            net, x = nets[P]
            times[P].append(timed(lambda: net.settle(x, T=T))[1])
    rows = []
    for P, B in cases:
        sec = float(np.median(times[P]))
        rows.append(dict(tile=P, batch=B, seconds=sec, megapixel_steps_per_s=B * P * P * T / sec / 1e6))
        log("  tile %3d, batch %3d: %.1f Mpx-steps/s" % (P, B, rows[-1]["megapixel_steps_per_s"]))
    return rows


def seam_figure(path, whole, tiled, untiled, gain=8):
    """A grey PNG of |tiles - whole| x gain with overlap (left) and without (right), captioned: where the seams are."""
    from PIL import Image, ImageDraw
    panels = [np.clip(np.abs(np.clip(t, 0, 1) - np.clip(whole, 0, 1)).mean(axis=0) * gain, 0, 1) for t in (tiled, untiled)]
    h, w = panels[0].shape
    canvas = np.full((h + 16, 2 * w + 6), 255, np.uint8)
    for k, p in enumerate(panels):
        canvas[16:, k * (w + 6):k * (w + 6) + w] = np.rint(p * 255).astype(np.uint8)
    im = Image.fromarray(canvas)
    draw = ImageDraw.Draw(im)
    draw.text((2, 2), "tiles 64, overlap 16: |tiles - whole| x %d" % gain, fill=0)
    draw.text((w + 8, 2), "tiles 64, no overlap: |tiles - whole| x %d" % gain, fill=0)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    im.save(path, optimize=True)


def quality(spec=None, crop=256, log=print, save=None, figure=None):
    """PSNR of each method against the clean crop; for tiles also the mean |tiles - whole| (0-255 scale) and the
    seam ratio of (tiles - whole) along the tile edges; seconds."""
    model, meta, label = load_model(spec, "cpu")
    log("whole vs tiles on held-out photographs (centre crops of %d px), model %s, noise std %g" % (crop, label, NOISE))
    photos = held_out()
    rows = []
    for name, full in photos.items():
        H, W = full.shape[1:]
        y0, x0 = max(0, (H - crop) // 2), max(0, (W - crop) // 2)
        x = full[:, y0:y0 + crop, x0:x0 + crop].copy()
        noisy = (x + np.random.default_rng(0).normal(0, NOISE, x.shape)).astype(np.float32)
        whole, _kept = {}, {}
        for method, tile, overlap in QUALITY_METHODS:
            r = dict(photo=name, method=method, tile=tile, overlap=overlap)
            for task, inp in (("reconstruct", x), ("denoise", noisy)):
                kw = {} if method == "whole" else dict(tile=tile, overlap=overlap)
                out, sec = timed(lambda: apply.settle_image(model, inp, task, method, meta=meta, **kw))
                r[task] = dict(psnr=float(metrics.psnr(out[None], x[None])), seconds=sec)
                if method == "whole":
                    whole[task] = out
                    r[task].update(diff=0.0, seam=1.0)
                else:
                    d = np.clip(out, 0, 1) - np.clip(whole[task], 0, 1)
                    r[task].update(diff=float(np.abs(d).mean() * 255),
                                   seam=seam_ratio(d, *edge_lines(x.shape[1:], tile, overlap)))
                if save:
                    os.makedirs(save, exist_ok=True)
                    np.save(os.path.join(save, "%s-%s-%s%d-%d.npy" % (name, task, method, tile, overlap)), out)
            r["noisy_psnr"] = float(metrics.psnr(noisy[None], x[None]))
            rows.append(r)
            if figure and name == "grace_hopper":
                _kept[(tile, overlap)] = out                   # the denoised output (the last task)
                if (64, 16) in _kept and (64, 0) in _kept:
                    seam_figure(figure, whole["denoise"], _kept[(64, 16)], _kept[(64, 0)])
            log("  %-13s %-5s %3s/%-3s reconstruct %6.2f dB %5.2f %5.2f %5.1f s | denoise %6.2f dB %5.2f %5.2f %5.1f s"
                " (noisy %.2f)" % (name, method, tile or "-", overlap if tile else "-",
                                   *[r[t][k] for t in ("reconstruct", "denoise") for k in ("psnr", "diff", "seam",
                                                                                           "seconds")],
                                   r["noisy_psnr"]))
    log("mean over photographs (PSNR against the clean crop, mean |output - whole| on 0-255, seam ratio, seconds "
        "summed):")
    for method, tile, overlap in QUALITY_METHODS:
        sel = [r for r in rows if (r["method"], r["tile"], r["overlap"]) == (method, tile, overlap)]
        log("  %-5s %3s/%-3s reconstruct %6.2f dB %5.2f %5.2f %5.1f s | denoise %6.2f dB %5.2f %5.2f %5.1f s" % (
            method, tile or "-", overlap if tile else "-",
            *[f([r[t][k] for r in sel]) for t in ("reconstruct", "denoise")
              for k, f in (("psnr", np.mean), ("diff", np.mean), ("seam", np.mean), ("seconds", np.sum))]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="a shipped model, run folder or checkpoint (default: cifar10 "
                    "when shipped, else the paper's configuration, random filters)")
    ap.add_argument("--quality", action="store_true", help="also whole vs tiles on held-out photographs")
    ap.add_argument("--no-speed", action="store_true", help="skip the 512x768 timing")
    ap.add_argument("--tile-rates", action="store_true", help="also the settling rate per pixel of tiles of 32-128 "
                    "pixels against a batch of 32x32 images, interleaved")
    ap.add_argument("--crop", type=int, default=256, help="centre crop of each held-out photograph (default 256)")
    ap.add_argument("--repeats", type=int, default=1, help="timing repeats, median (default 1)")
    ap.add_argument("--save", default=None, help="folder for the quality run's outputs (.npy), to look at")
    ap.add_argument("--figure", default=None, help="write the seam picture of the quality run (grace_hopper, "
                    "denoised) here, e.g. docs/pictures/seams.png")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args(argv)
    out = {"load_before": os.getloadavg()}
    if not args.no_speed:
        out["speed"] = speed(args.model, args.repeats)
    if args.tile_rates:
        print("settling rate per pixel by tile side (random filters, T = 30, median of 5, interleaved):")
        out["tile_rates"] = tile_rates()
    if args.quality:
        out["quality"] = quality(args.model, args.crop, save=args.save, figure=args.figure)
    out["load_after"] = os.getloadavg()
    print("load average before %.1f %.1f %.1f, after %.1f %.1f %.1f" % (*out["load_before"], *out["load_after"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
