"""`convngc denoise` / `convngc reconstruct` and `convngc.denoise()` / `convngc.reconstruct()`: a trained model
on picture files or arrays of any size.

    convngc denoise photo.png --model cifar10 --out out/             # out/photo.png, same format and bit depth
    convngc denoise photo.png --model runs/my-run --add-noise 0.1 --compare --out out/
    convngc reconstruct 'photos/*.jpg' --out out/                    # a folder or a glob: one bar, a line per file

    import convngc
    y = convngc.denoise("photo.png")                                 # an array, as the file stores it
    y = convngc.denoise(x_uint8, model="runs/my-run", sigma=0.05)    # an array in, the same shape and dtype out

The files: images.py; the settling (whole picture or blended tiles): apply.py.
"""
import functools
import glob
import os
import time

import numpy as np

from . import progress as _progress
from .usage import UsageError, int_at_least

TASK_OF = {"denoise": "denoise", "reconstruct": "reconstruct"}
WARN_RATIO = 2.0                # warn when the estimated noise level is this far (x or /) from the tuned one
SUFFIX = {"denoise": "denoised", "reconstruct": "reconstructed"}


# ------------------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------------------
def _model_error(spec, exc):
    from . import models
    msg = str(exc)
    if spec in ("cifar10", "color-mnist", "embedded") and spec not in models.names():
        msg = ("no shipped model %r in %s (shipped: %s): pass a run folder or a checkpoint instead, e.g. "
               "--model runs/my-run (convngc train ... --out runs/my-run)"
               % (spec, models.MODELS_DIR, ", ".join(models.names()) or "none in this checkout yet"))
    return msg


@functools.lru_cache(maxsize=4)
def _load(path, mtime, size, backend):
    from . import checkpoint
    from .model import ConvNGC
    cfg, params, _, meta = checkpoint.load(path)
    return ConvNGC(cfg, backend=backend, seed=0, params=params), meta


def load(spec="cifar10", backend=None):
    """(model, meta, checkpoint path) for a shipped model's name, a run folder or a checkpoint file, or a ConvNGC
    (meta {}); loaded once per file and backend."""
    from . import backends, models
    if hasattr(spec, "settle") and hasattr(spec, "cfg"):
        return spec, getattr(spec, "meta", {}) or {}, None
    try:
        path = models.resolve(spec)
    except models.ModelNotFound as exc:
        raise models.ModelNotFound(_model_error(os.fspath(spec), exc)) from None
    st = os.stat(path)
    model, meta = _load(os.path.realpath(path), st.st_mtime_ns, st.st_size, backends.resolve(backend))
    return model, meta, path


# ------------------------------------------------------------------------------------------------------------
# one picture
# ------------------------------------------------------------------------------------------------------------
class Result:
    """What one picture gave: output (H, W, C) float32 (not clipped), the input the model saw (noisy when noise
    was added), the reading, the estimated noise level of that input, the notes, the seconds."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _channels_for(pic, C0):
    """The picture's channels as the model takes them: [(C0, H, W) arrays], how to merge back, and a note."""
    x = pic.pixels.transpose(2, 0, 1)                      # (C, H, W)
    if x.shape[0] == C0:
        return [x], None, None
    if C0 == 3 and x.shape[0] == 1:
        return [np.repeat(x, 3, axis=0)], "mean", ("%s: a grey picture through a colour model: its grey is "
                                                   "replicated to RGB, the output is the mean of the three"
                                                   % pic.path)
    if C0 == 1 and x.shape[0] == 3:
        return [x[c:c + 1] for c in range(3)], "stack", ("%s: a colour picture through a grey model: each of R, G, "
                                                          "B is settled as a grey picture" % pic.path)
    raise ValueError("the model takes %d image channels; a picture has 1 or 3" % C0)


def process(pic, task, model, meta=None, sigma=None, add_noise=None, seed=0, method=None, tile=None, overlap=None,
            batch=None, T=None, on_tiles=None, sized=None):
    """Reconstruct or denoise one Picture; returns a Result. add_noise: the std of Gaussian noise added to the
    picture first (a demonstration; seeded); sigma: the noise level the denoising reading is set for (default:
    add_noise when given, else the model's own)."""
    from . import apply
    method = method or apply.DEFAULT_METHOD
    tile = tile or apply.DEFAULT_TILE
    overlap = apply.DEFAULT_OVERLAP if overlap is None else overlap
    sized = sized or apply.Sized(model)
    C0 = model.cfg.layer_channels[0]
    parts, merge, note = _channels_for(pic, C0)
    notes = list(pic.notes) + ([note] if note else [])
    H, W = pic.hw
    if H * W == 1:
        notes.append("%s: a single pixel: there is no neighbourhood to %s it from; the model sees it as a flat "
                     "patch" % (pic.path, task))
    elif H < model.cfg.image_hw[0] or W < model.cfg.image_hw[1]:
        pad = apply.whole_size((H, W), sized)
        notes.append("%s: %dx%d pixels, smaller than the model's %dx%d patches: reflect-padded to %dx%d and "
                     "cropped back" % (pic.path, W, H, model.cfg.image_hw[1], model.cfg.image_hw[0], pad[1], pad[0]))
    clean = pic.pixels
    if add_noise:
        rng = np.random.default_rng([seed, 2])
        noise = rng.normal(0.0, add_noise, size=clean.shape).astype(np.float32)
        seen = np.clip(clean + noise, -1.0, 2.0)
        parts, _, _ = _channels_for(_with_pixels(pic, seen), C0)
    else:
        seen = clean
    if task == "denoise" and sigma is None and add_noise:
        sigma = add_noise
    rd = apply.reading(model, task, sigma, T, meta)
    estimated = apply.estimate_noise(seen.transpose(2, 0, 1)) if task == "denoise" else None
    t0 = time.time()
    outs = [apply.settle_image(model, p, task, method, tile, overlap, seed, batch, rd=rd, on_tiles=on_tiles,
                               sized=sized) for p in parts]
    seconds = time.time() - t0
    if merge == "mean":
        y = outs[0].mean(axis=0, keepdims=True)
    elif merge == "stack":
        y = np.concatenate(outs, axis=0)
    else:
        y = outs[0]
    return Result(output=y.transpose(1, 2, 0), seen=seen, reading=rd, estimated=estimated, notes=notes,
                  seconds=seconds, n_tiles=len(parts) * apply.n_work(pic.hw, method, tile, overlap))


def _with_pixels(pic, pixels):
    import dataclasses
    return dataclasses.replace(pic, pixels=pixels)


def noise_warning(res, name):
    """One line when the input's estimated noise level is far from what the reading is set for, else None."""
    rd = res.reading
    if rd.task != "denoise" or res.estimated is None or not np.isfinite(res.estimated):
        return None
    target = rd.sigma
    est = res.estimated
    if est * WARN_RATIO >= target and est <= target * WARN_RATIO:
        return None
    if est < target:
        hint = ("a cleaner picture denoised as if noisier comes out smoother than it could; --sigma %.2g sets the "
                "reading for it (`convngc reconstruct` for a clean picture)" % max(est, 0.005))
    else:
        hint = "--sigma %.2g sets the reading for it" % est
    return ("%s: estimated noise std %.3g (median absolute deviation of the finest Haar band), far from the %.3g "
            "the denoising is set for; %s" % (name, est, target, hint))


def quality(y, ref):
    """MSE, PSNR (0-255 scale) and windowed SSIM (convngc.metrics) of y (H, W, C) against ref (H, W, C), both in
    [0, 1] (y clipped); SSIM is None for pictures under 11 pixels a side (its window)."""
    from . import metrics
    a = np.clip(y, 0, 1).transpose(2, 0, 1)[None].astype(np.float64)
    b = np.asarray(ref).transpose(2, 0, 1)[None].astype(np.float64)
    out = {"mse": float(metrics.mse(a, b)), "psnr": float(metrics.psnr(a, b))}
    out["ssim"] = float(metrics.ssim_windowed(a, b)) if min(y.shape[:2]) >= 11 else None
    return out


def fmt_quality(q):
    return "PSNR %.2f dB, SSIM %s, MSE %.1f" % (q["psnr"], "n/a" if q["ssim"] is None else "%.3f" % q["ssim"],
                                               q["mse"])


# ------------------------------------------------------------------------------------------------------------
# the Python API
# ------------------------------------------------------------------------------------------------------------
def run_api(task, image, model="cifar10", sigma=None, backend=None, method=None, tile=None, overlap=None, seed=0,
            T=None, batch=None, progress=False):
    from . import images
    m, meta, _ = load(model, backend)
    if isinstance(image, (str, bytes, os.PathLike)):
        pic = images.read(image)
        as_array = None
    else:
        pic = images.from_array(image)
        as_array = True
    split = 3 if pic.channels == 3 and m.cfg.layer_channels[0] == 1 else 1
    from . import apply
    bar = _bar(split * apply.n_work(pic.hw, method or apply.DEFAULT_METHOD, tile or apply.DEFAULT_TILE,
                                    apply.DEFAULT_OVERLAP if overlap is None else overlap), 1, progress)
    res = process(pic, task, m, meta, sigma=sigma, seed=seed, method=method, tile=tile, overlap=overlap,
                  batch=batch, T=T, on_tiles=bar.update if bar is not None else None)
    if bar is not None:
        bar.close()
    for n in res.notes:
        import warnings
        warnings.warn(n, stacklevel=3)
    w = noise_warning(res, pic.path) if sigma is None else None
    if w:
        import warnings
        warnings.warn(w, stacklevel=3)
    out = images.to_array(pic, res.output)
    if as_array is None and pic.npy_shape is None and out.shape[2] == 1:
        out = out[:, :, 0]
    return out


def _bar(total, n_files, wanted, desc=None):
    return _progress.tqdm_bar(wanted, total=total, desc=desc, unit="tile", dynamic_ncols=True, leave=True)


# ------------------------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------------------------
def add_parsers(sub, backends):
    """The `denoise` and `reconstruct` sub-commands (cli.build_parser calls this)."""
    from . import apply
    for name, what in (("denoise", "denoise picture files (PNG, JPEG, TIFF, BMP, .npy) of any size"),
                       ("reconstruct", "reconstruct picture files (PNG, JPEG, TIFF, BMP, .npy) of any size")):
        p = sub.add_parser(name, help="%s with a trained model" % what)
        p.add_argument("images", nargs="+", metavar="IMAGE", help="picture files, folders (their pictures) or "
                       "quoted globs ('photos/*.jpg')")
        p.add_argument("--model", default="cifar10", help="a shipped model's name, a run folder (its best.npz) or "
                       "a checkpoint .npz (default cifar10)")
        p.add_argument("--out", default="out", help="folder for the results, named as the inputs, in their "
                       "format and bit depth (default out/)")
        p.add_argument("--force", action="store_true", help="overwrite results that exist (default: refuse)")
        p.add_argument("--compare", action="store_true", help="also write NAME-compare.png: input | output "
                       "(| clean), side by side (default: off)")
        p.add_argument("--add-noise", type=_positive_float(1.0), default=None, metavar="SIGMA",
                       help="add Gaussian noise of this std (on the [0, 1] scale) to each picture first, seeded by "
                       "--seed, and write it as NAME-noisy; the picture itself is then the clean reference "
                       "(default: none)")
        p.add_argument("--clean", default=None, metavar="FILE", help="a clean reference picture (or a folder of "
                       "them, same names): print MSE / PSNR / SSIM of the input and of the output against it "
                       "(default: none)")
        if name == "denoise":
            p.add_argument("--sigma", type=_positive_float(1.0), default=None, help="the noise std of the inputs "
                           "on the [0, 1] scale: sets the denoising reading for it (precision pi0 x (tuned / "
                           "sigma)^2, T x the inverse, or its square root with momentum) (default: the level the "
                           "model was tuned for, e.g. 0.1, or --add-noise)")
        p.add_argument("--method", choices=apply.METHODS, default=apply.DEFAULT_METHOD, help="tiles: overlapping "
                       "tiles settled as one batch and blended; whole: the whole picture as one map (default %s)"
                       % apply.DEFAULT_METHOD)
        p.add_argument("--tile", type=_int_at_least(16), default=apply.DEFAULT_TILE, help="tile side in pixels, a "
                       "multiple of 16 for the paper's model (default %d)" % apply.DEFAULT_TILE)
        p.add_argument("--overlap", type=_int_at_least(0), default=apply.DEFAULT_OVERLAP, help="pixels two "
                       "neighbouring tiles share, blended (default %d)" % apply.DEFAULT_OVERLAP)
        p.add_argument("--batch-size", type=_int_at_least(1), default=None, help="tiles per settle; results do "
                       "not depend on it (default: 32 per cpu thread, at least 64; 256 on a GPU)")
        p.add_argument("--T", type=_int_at_least(1), default=None, help="settling steps (default: the model's; "
                       "for denoising its tuned T_denoise). Fewer steps are faster; for denoising the precision is "
                       "then the one `convngc tune` found best within that many steps")
        p.add_argument("--backend", default=None, choices=backends, help="(default: the fastest available: cuda "
                       "with a usable GPU, else cpu)")
        p.add_argument("--seed", type=_int_at_least(0), default=0, help="the z^L draws and --add-noise (default 0)")
        _progress.add_flags(p, "a progress bar over every tile of every picture")


_int_at_least = int_at_least


def _positive_float(hi):
    import argparse
    import math

    def parse(text):
        try:
            v = float(text)
        except ValueError:
            v = None
        if v is None or not math.isfinite(v) or not 0 < v <= hi:
            raise argparse.ArgumentTypeError("must be a number in (0, %g] (a noise std on the [0, 1] scale), got %r"
                                             % (hi, text))
        return v
    return parse


def expand(args_images):
    """Command-line IMAGE arguments -> picture paths: a file as given, a folder's picture files (sorted), a glob's
    matches (sorted). A folder or glob with no pictures is an error; so is a name that exists nowhere."""
    from . import images
    paths = []
    for a in args_images:
        if os.path.isdir(a):
            found = sorted(os.path.join(a, f) for f in os.listdir(a)
                           if images.kind_of(f) and os.path.isfile(os.path.join(a, f)) and not f.startswith("."))
            if not found:
                raise UsageError("%s: a folder without pictures (%s)" % (a, ", ".join(sorted(set(
                    images.EXTENSIONS)))))
            paths += found
        elif os.path.exists(a) or not glob.has_magic(a):
            paths.append(a)                       # a missing file is named by images.probe, with the others
        else:
            found = sorted(f for f in glob.glob(a) if os.path.isfile(f) and images.kind_of(f))
            if not found:
                raise UsageError("%s: no picture file matches" % a)
            paths += found
    seen, out = set(), []
    for p in paths:
        k = os.path.realpath(p)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out


def _out_paths(path, kind_ext, out_dir, task, noisy, compare):
    stem = os.path.splitext(os.path.basename(path))[0]
    d = {"output": os.path.join(out_dir, stem + kind_ext)}
    if noisy:
        d["noisy"] = os.path.join(out_dir, stem + "-noisy" + kind_ext)
    if compare:
        d["compare"] = os.path.join(out_dir, stem + "-compare.png")
    return d


def _check_writable(folder):
    """Make the output folder and prove a file can be created in it (an OSError names it otherwise)."""
    import tempfile
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".convngc-probe.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.remove(tmp)


def _clean_for(clean_arg, path, many):
    if clean_arg is None:
        return None
    if os.path.isdir(clean_arg):
        c = os.path.join(clean_arg, os.path.basename(path))
        return c
    if many:
        raise UsageError("--clean %s: one clean file for several pictures; give a folder holding a clean picture "
                         "of each name" % clean_arg)
    return clean_arg


def cmd_pictures(args, log=print, status=None):
    """convngc denoise / reconstruct: every input and output is checked before the model settles anything."""
    import sys
    from . import apply, images, models
    task = TASK_OF[args.cmd]
    err = lambda m: print("error: %s" % m, file=sys.stderr)      # noqa: E731
    paths = expand(args.images)
    if args.add_noise and args.clean:
        raise UsageError("--add-noise makes the picture itself the clean reference; --clean is for a noisy picture "
                         "and its clean original")
    # 1. every input's header, every clean reference, every output path: all problems, then stop
    problems, plan = [], []
    for p in paths:
        try:
            h, w, c, fmt, dtype = images.probe(p)
        except images.ImageError as exc:
            problems.append(str(exc))
            continue
        plan.append({"path": p, "hw": (h, w), "c": c, "format": fmt, "clean": _clean_for(args.clean, p, len(paths) > 1)})
    if problems:
        for m in problems[:-1]:
            err(m)
        raise images.ImageError(problems[-1] + ("" if len(problems) == 1 else " (%d pictures cannot be read)"
                                                % len(problems)))
    try:
        model, meta, ckpt = load(args.model, args.backend)
    except models.ModelNotFound as exc:
        raise UsageError("--model %s" % exc) from None
    sized = apply.Sized(model)
    try:
        if args.method == "tiles":
            apply.check_tiling(sized, args.tile, args.overlap)
        elif sized.cfg.bias == "pixel":
            sized.at((sized.cfg.image_hw[0] + sized.f, sized.cfg.image_hw[1]))
    except apply.ApplyError as exc:
        raise UsageError(str(exc)) from None
    avail = apply.available_memory()
    out_dir = args.out
    targets = {}
    for item in plan:
        need = apply.memory_estimate(model.cfg, item["hw"], args.method, model.backend.name, args.tile, args.overlap,
                                     args.batch_size)
        if avail is not None and need > 0.8 * avail:
            h, w = item["hw"]
            problems.append("%s: %dx%d pixels (%.0f Mpx) need about %s to %s %s, and this machine has %s available: "
                            "refused (crop or downscale it%s)" % (
                                item["path"], w, h, h * w / 1e6, _gb(need), task,
                                "as one map" if args.method == "whole" else "in tiles", _gb(avail),
                                "; --method tiles needs less" if args.method == "whole" else ""))
            continue
        if item["clean"] is not None:
            try:
                ch, cw, cc, _, _ = images.probe(item["clean"])
            except images.ImageError as exc:
                problems.append("--clean: %s" % exc)
                continue
            if (ch, cw) != item["hw"]:
                problems.append("--clean %s is %dx%d but %s is %dx%d: a reference must have the picture's size"
                                % (item["clean"], cw, ch, item["path"], item["hw"][1], item["hw"][0]))
                continue
        ext = images.output_extension(images.Picture(path=item["path"], pixels=np.zeros((1, 1, 1), np.float32),
                                                     format=item["format"]))
        item["out"] = _out_paths(item["path"], ext, out_dir, task, bool(args.add_noise), args.compare)
        for role, o in item["out"].items():
            key = os.path.realpath(o)
            if key in targets:
                problems.append("%s and %s would both be written to %s: give them different names or separate "
                                "runs" % (targets[key], item["path"], o))
            targets[key] = item["path"]
            if key == os.path.realpath(item["path"]) or (item["clean"] and key == os.path.realpath(item["clean"])):
                problems.append("%s: the result would overwrite its own input; choose another --out" % o)
            elif os.path.exists(o) and not args.force:
                problems.append("%s exists; --force overwrites it" % o)
            elif os.path.isdir(o):
                problems.append("%s is a folder" % o)
    if problems:
        for m in problems[:-1]:
            err(m)
        raise UsageError(problems[-1])
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError("--out %s is a file, not a folder" % out_dir)
    _check_writable(out_dir)                    # an OSError: exit 1, nothing written
    # 2. the work: one bar over every tile of every picture
    label = ckpt if ckpt else "the given model"
    rd0 = apply.reading(model, task, getattr(args, "sigma", None) or args.add_noise, args.T, meta)
    log("%s %d picture%s with %s (%s; %s, %s); results in %s" % (
        task, len(plan), "s" if len(plan) > 1 else "", label, _describe_reading(rd0),
        args.method if args.method == "whole" else "tiles %d, overlap %d" % (args.tile, args.overlap),
        model.backend.name, out_dir))
    total = sum(apply.n_work(it["hw"], args.method, args.tile, args.overlap) * (3 if it["c"] == 3 and
                model.cfg.layer_channels[0] == 1 else 1) for it in plan)
    bar = _bar(total, len(plan), _progress.from_flags(args), desc=task)
    say = bar.write if bar is not None else log
    failed = done = 0
    try:
        for item in plan:
            try:
                pic = images.read(item["path"])
                clean = images.read(item["clean"]) if item["clean"] else None
                if clean is not None and clean.channels != pic.channels:
                    clean = _match_channels(clean, pic.channels)
            except images.ImageError as exc:
                if len(plan) == 1:
                    raise
                failed += 1
                (bar.write if bar is not None else print)("error: %s" % exc, file=sys.stderr)
                continue
            res = process(pic, task, model, meta, sigma=getattr(args, "sigma", None), add_noise=args.add_noise,
                          seed=args.seed, method=args.method, tile=args.tile, overlap=args.overlap,
                          batch=args.batch_size, T=args.T, on_tiles=bar.update if bar is not None else None,
                          sized=sized)
            for n in res.notes:
                say("note: %s" % n)
            w = noise_warning(res, item["path"]) if getattr(args, "sigma", None) is None else None
            if w:
                say("warning: %s" % w)
            images.write(item["out"]["output"], pic, res.output)
            written = [item["out"]["output"]]
            ref = clean.pixels if clean is not None else (pic.pixels if args.add_noise else None)
            if args.add_noise:
                images.write(item["out"]["noisy"], pic, res.seen)
                written.append(item["out"]["noisy"])
            q_in = q_out = None
            if ref is not None:                 # the numbers of the files as written (quantised, JPEG's loss)
                q_out = quality(images.read(item["out"]["output"]).pixels, ref)
                q_in = quality(images.read(item["out"]["noisy"]).pixels if args.add_noise else pic.pixels, ref)
            if args.compare:
                write_compare(item["out"]["compare"], res.seen, res.output, ref if args.add_noise or clean is not None
                              else None, q_in, q_out, task)
                written.append(item["out"]["compare"])
            line = "%s -> %s: %s, %s in %.1f s" % (item["path"], ", ".join(written), pic.describe(),
                                                   SUFFIX[task], res.seconds)
            if q_out is not None:
                line += "; against the clean picture: output %s | input %s" % (fmt_quality(q_out), fmt_quality(q_in))
            say(line)
            done += 1
    except KeyboardInterrupt as exc:               # Ctrl-C, SIGTERM: say what is on disk (whole files only)
        from .download import Terminated
        if bar is not None:
            bar.close()
            bar = None
        print("%s; %d of %d pictures were written, none in part" % (
            "terminated" if isinstance(exc, Terminated) else "interrupted", done, len(plan)), file=sys.stderr)
        raise SystemExit(143 if isinstance(exc, Terminated) else 130) from None
    finally:
        if bar is not None:
            bar.close()
    if failed:
        raise images.ImageError("%d of %d pictures could not be read (named above); the others were written"
                                % (failed, len(plan)))


def _match_channels(clean, c):
    import dataclasses
    px = clean.pixels
    px = px.mean(axis=2, keepdims=True) if c == 1 else np.repeat(px, 3, axis=2)
    return dataclasses.replace(clean, pixels=px.astype(np.float32))


def _gb(n):
    return "%.1f GB" % (n / 1e9) if n >= 1e8 else "%.0f MB" % (n / 1e6)


def _describe_reading(rd):
    if rd.task == "reconstruct":
        return "T %d" % rd.T
    return "%s, pi0 %.3g, T %d%s, set for noise std %.3g" % (
        "precision" if rd.pi0 != 1 else "clamped", rd.pi0, rd.T,
        ", momentum %g" % rd.momentum if rd.momentum else "", rd.sigma)


def write_compare(path, seen, out, clean, q_in, q_out, task):
    """input | output (| clean) side by side, 8-bit PNG, a caption above each (with its PSNR when known)."""
    from PIL import Image, ImageDraw, ImageFont
    from .fileio import atomic_write
    panels = [(seen, "input" + (" %.2f dB" % q_in["psnr"] if q_in else "")),
              (out, SUFFIX[task] + (" %.2f dB" % q_out["psnr"] if q_out else ""))]
    if clean is not None:
        panels.append((clean, "clean"))
    h, w = seen.shape[:2]
    gap, cap = 4, 16
    canvas = np.full((h + cap, len(panels) * w + (len(panels) - 1) * gap, 3), 255, np.uint8)
    for k, (p, _) in enumerate(panels):
        a = np.rint(np.clip(p, 0, 1) * 255).astype(np.uint8)
        if a.shape[2] == 1:
            a = np.repeat(a, 3, axis=2)
        canvas[cap:, k * (w + gap):k * (w + gap) + w] = a
    im = Image.fromarray(canvas)
    draw = ImageDraw.Draw(im)
    try:
        font = ImageFont.load_default(size=12)
    except TypeError:                                      # pragma: no cover - Pillow < 10.1
        font = ImageFont.load_default()
    for k, (_, text) in enumerate(panels):
        draw.text((k * (w + gap) + 2, 1), text, fill=(0, 0, 0), font=font)
    atomic_write(path, lambda tmp: im.save(tmp, format="PNG"))
