"""Figures: image grids, energy / training curves and filter banks.

* Image tiles are built with NumPy and written with Pillow (:func:`save_grid`,
  :func:`save_filters`).
* Curves use matplotlib's object API with the Agg canvas (``Figure`` + ``FigureCanvasAgg``), so
  nothing touches pyplot's global state or the process-wide backend.
* Every file is written atomically: to a temporary file in the destination directory, then
  ``os.replace``-d onto the final path (no partial PNGs, no temp files left behind on error).
  Parent directories are created as needed.  All functions return the written path as ``str``.
* Curves are drawn at a fixed size (640 x 400 pixels per panel), energies always on a log axis, epochs as
  whole numbers. ``energy_figure``, ``training_figure`` and ``filters_figure`` return the figure, to test.
"""
from __future__ import annotations

import warnings
from typing import Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .fileio import atomic_write  # one temp-file-and-rename writer for every file we save

__all__ = ["save_grid", "plot_energy", "plot_training", "save_filters", "grid_geometry", "energy_figure",
           "training_figure", "filters_figure", "filter_tiles"]

_BG = 255  # white background
_LABEL_MARGIN = 6


def _save_pil(img: Image.Image, path) -> str:
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def _save_fig(fig, path, dpi: int = 100) -> str:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def _new_figure(nrows: int = 1, ncols: int = 1, figsize=(6.4, 4.0)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


# ----------------------------------------------------------------------------------------------
# image grid
# ----------------------------------------------------------------------------------------------
def _font():
    try:
        return ImageFont.load_default(size=12)  # Pillow >= 10.1 (scalable if FreeType is present)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def _as_rgb_uint8(name: str, x) -> np.ndarray:
    """NCHW (C in {1,3}) or NHW float in [0,1] -> (N, H, W, 3) uint8 (values clipped)."""
    a = np.asarray(x)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"row {name!r}: expected an NCHW array (N, C, H, W); got shape {a.shape}")
    if a.shape[1] not in (1, 3):
        raise ValueError(f"row {name!r}: expected 1 or 3 channels (NCHW); got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"row {name!r} has no images")
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    a = np.clip(a, 0.0, 1.0)
    a = np.rint(a * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return a


def grid_geometry(n_rows: int, n_cols: int, h: int, w: int, upscale: int, pad: int,
                  label_width: int):
    """(width, height) in pixels of a :func:`save_grid` image."""
    width = label_width + n_cols * w * upscale + (n_cols + 1) * pad
    height = n_rows * h * upscale + (n_rows + 1) * pad
    return width, height


def save_grid(path, rows: Mapping[str, np.ndarray], n: int = 8, *, upscale: int = 4,
              pad: int = 2, label_width: Optional[int] = None) -> str:
    """PNG grid with one row per entry of ``rows`` (e.g. original / noisy / reconstruction).

    ``rows`` maps a label to an NCHW array in [0, 1] (1 or 3 channels; values are clipped).  The
    first ``n`` images of each row are shown (fewer if a row has fewer), upscaled ``upscale``x
    with nearest-neighbour, separated by ``pad`` white pixels, with the label drawn in a
    left-hand column (width ``label_width``, default: fits the longest label).  Rows may
    differ in image size; cells take the largest.  Image size is
    ``grid_geometry(len(rows), n_cols, H, W, upscale, pad, label_width)``.
    """
    if not rows:
        raise ValueError("save_grid needs at least one row")
    if int(n) < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if int(upscale) < 1:
        raise ValueError(f"upscale must be >= 1; got {upscale}")
    n, upscale, pad = int(n), int(upscale), max(0, int(pad))
    imgs = {str(k): _as_rgb_uint8(str(k), v)[:n] for k, v in rows.items()}
    n_cols = max(a.shape[0] for a in imgs.values())
    h = max(a.shape[1] for a in imgs.values())
    w = max(a.shape[2] for a in imgs.values())
    ch, cw = h * upscale, w * upscale

    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = {k: measure.textbbox((0, 0), k, font=font) for k in imgs}
    if label_width is None:
        label_width = max(b[2] - b[0] for b in boxes.values()) + 2 * _LABEL_MARGIN
    label_width = max(0, int(label_width))

    width, height = grid_geometry(len(imgs), n_cols, h, w, upscale, pad, label_width)
    canvas = np.full((height, width, 3), _BG, dtype=np.uint8)
    for r, a in enumerate(imgs.values()):
        y0 = pad + r * (ch + pad)
        big = np.repeat(np.repeat(a, upscale, axis=1), upscale, axis=2)
        for c in range(a.shape[0]):
            x0 = label_width + pad + c * (cw + pad)
            canvas[y0:y0 + big.shape[1], x0:x0 + big.shape[2]] = big[c]
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for r, (k, b) in enumerate(boxes.items()):
        y_mid = pad + r * (ch + pad) + ch / 2.0
        th = b[3] - b[1]
        draw.text((_LABEL_MARGIN - b[0], y_mid - th / 2.0 - b[1]), k, fill=(0, 0, 0), font=font)
    return _save_pil(img, path)


# ----------------------------------------------------------------------------------------------
# curves
# ----------------------------------------------------------------------------------------------
def _to_float(seq) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in seq], dtype=np.float64)


def _whole_epochs(ax, n):
    """Epoch axis: ticks on whole numbers only, 1..n in view."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(0.5, max(n, 1) + 0.5)


EnergyLike = Union[np.ndarray, Sequence[float]]
ENERGY_LABEL = "energy per image, ½ Σ_l ‖e^l‖² (log)"


def energy_figure(energy: Union[EnergyLike, Mapping[str, EnergyLike]], *, label: Optional[str] = None,
                  title: Optional[str] = None, kind: Optional[str] = None, band: str = "std"):
    """The figure of :func:`plot_energy` (see there)."""
    if band not in ("std", "minmax"):
        raise ValueError(f"band must be 'std' or 'minmax'; got {band!r}")
    if kind not in (None, "steps", "epochs"):
        raise ValueError(f"kind must be None, 'steps' or 'epochs'; got {kind!r}")
    series = list(energy.items()) if isinstance(energy, Mapping) else [(label, energy)]
    if not series:
        raise ValueError("plot_energy: no curves given")

    curves = []  # (label, x, mean, lo, hi, kind)
    for lab, e in series:
        k = kind
        if isinstance(e, np.ndarray):
            arr = e.astype(np.float64)
            k = k or "steps"
        else:
            arr = _to_float(e)
            k = k or "epochs"
        if arr.ndim not in (1, 2) or arr.shape[0] == 0:
            raise ValueError(f"energy {lab!r}: expected shape (T+1,) or (T+1, B); got {arr.shape}")
        finite = arr[np.isfinite(arr)]
        if finite.size and finite.min() <= 0:
            raise ValueError(f"energy {lab!r}: energies must be > 0 for the log axis, got {finite.min():g}")
        x = np.arange(arr.shape[0]) + (1 if k == "epochs" else 0)
        if arr.ndim == 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(arr, axis=1)
                if band == "std":       # on the log axis the band never reaches below the lowest image
                    sd = np.nanstd(arr, axis=1)
                    lo, hi = np.maximum(mean - sd, np.nanmin(arr, axis=1)), mean + sd
                else:
                    lo, hi = np.nanmin(arr, axis=1), np.nanmax(arr, axis=1)
        else:
            mean, lo, hi = arr, None, None
        curves.append((lab, x, mean, lo, hi, k))

    fig, axes = _new_figure()
    ax = axes[0, 0]
    # One rule: energy (a sum of squares, > 0) is always on a log axis. It falls by decades in one run and by a
    # factor of two in another; a rule that switched scales at some span drew the two differently.
    ax.set_yscale("log")
    for lab, x, mean, lo, hi, _ in curves:
        (line,) = ax.plot(x, mean, marker="o" if len(x) <= 30 else None, markersize=3, label=lab)
        if lo is not None:
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.25, linewidth=0,
                            label=None if lab is None else f"{lab} ({'±1 std' if band == 'std' else 'min–max'})")
    kinds = {c[5] for c in curves}
    ax.set_xlabel("settling step t" if kinds == {"steps"} else "epoch" if kinds == {"epochs"} else "step / epoch")
    if kinds == {"epochs"}:
        _whole_epochs(ax, max(len(c[1]) for c in curves))
    else:
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0, max(max(len(c[1]) for c in curves) - 1, 1))
    ax.set_ylabel(ENERGY_LABEL)
    if title is None:
        title = ("Energy over settling steps" if kinds == {"steps"} else
                 "Energy per epoch" if kinds == {"epochs"} else "Energy")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if any(c[0] is not None for c in curves):
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_energy(path, energy: Union[EnergyLike, Mapping[str, EnergyLike]], *,
                label: Optional[str] = None, title: Optional[str] = None,
                kind: Optional[str] = None, band: str = "std") -> str:
    """Plot energy curve(s) to a 640 x 400 PNG.

    ``energy`` may be

    * a NumPy array of shape ``(T+1,)`` -- energy over the settling steps t = 0..T;
    * a NumPy array of shape ``(T+1, B)`` -- per-image energies; the mean over B is drawn with a
      shaded band (``band="std"``: mean +/- 1 std, ``band="minmax"``: min..max);
    * a list/tuple of per-epoch values (x = epoch 1..E);
    * a dict ``{label: any of the above}`` for several curves on one axis.

    ``kind`` (``"steps"`` or ``"epochs"``) overrides the x-axis inferred from the type.  The y axis is always
    logarithmic (energies are > 0; a value <= 0 is a ValueError).
    """
    return _save_fig(energy_figure(energy, label=label, title=title, kind=kind, band=band), path)


# history key -> (axis label in words, with units; scale; panel title)
TRAINING_AXES = {
    "train_energy": ("training energy per image\n(after T steps, log)", "log", "Energy of the training batches"),
    "val_mse": ("validation MSE\n(reconstruction, 0-255 scale)", "linear", "Validation reconstruction error"),
    "epoch_seconds": ("seconds per epoch", "linear", "Time"),
}


SCHEDULE_KEYS = ("checks", "schedule")      # history entries against updates, drawn by the beta schedule's panels


def _schedule_panels(axes, checks, events, edge):
    """The beta schedule against Adam updates: probe PSNR, the settle's eigenvalue (with the edge), beta; a
    dashed line at every step down (orange: at the edge, red: a blow-up taken back)."""
    u = np.asarray([c["update"] for c in checks], np.float64)
    mse = _to_float([c.get("probe_mse") for c in checks])
    with np.errstate(divide="ignore"):
        psnr = 10 * np.log10(255.0 ** 2 / mse)
    # beta: the first check's (what the run started at, unless a step came before it) until each step's
    beta0 = events[0]["beta"] * 2 if events and events[0]["update"] <= u[0] else checks[0].get("beta")
    bx = [0.0] + [float(e["update"]) for e in events] + [float(u[-1])]
    bv = [beta0] + [e.get("beta") for e in events] + [events[-1].get("beta") if events else beta0]
    rows = [(u, psnr, "probe PSNR (dB)\n(reconstruction)", "Reconstruction of the probe images"),
            (u, _to_float([c.get("eigenvalue") for c in checks]), "most negative\neigenvalue of a step",
             "Stability of the settle (unstable below -1)"),
            (np.asarray(bx), _to_float(bv), "beta (log)", "Settling rate beta")]
    for ax, (x, v, ylabel, panel) in zip(axes, rows):
        ax.plot(x, v, marker="o" if x.size <= 40 else None, markersize=3,
                drawstyle="steps-post" if panel.startswith("Settling") else "default")
        if panel.startswith("Stability"):
            ax.axhline(-1.0, color="k", linewidth=0.8)
            if edge is not None:
                ax.axhline(edge, color="tab:orange", linewidth=0.8, linestyle=":")
        if panel.startswith("Settling"):
            ax.set_yscale("log")
        for ev in events:
            ax.axvline(ev["update"], color="tab:red" if ev.get("reason") == "blow-up" else "tab:orange",
                       linestyle="--", linewidth=0.9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_xlabel("Adam updates")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(panel, fontsize=10)


def training_figure(history: Mapping[str, Sequence[float]], *, title: Optional[str] = "Training history",
                    edge: Optional[float] = None):
    """The figure of :func:`plot_training` (see there)."""
    checks = [c for c in history.get("checks") or [] if isinstance(c, Mapping) and "update" in c]
    events = [e for e in history.get("schedule") or [] if isinstance(e, Mapping) and "update" in e]
    history = {k: v for k, v in history.items() if k not in SCHEDULE_KEYS}
    items = [(str(k), _to_float(v)) for k, v in history.items()]
    for k, v in items:
        if v.ndim != 1:
            raise ValueError(f"history[{k!r}] must be a 1-D list of per-epoch values; got shape {v.shape}")
    items = [(k, v) for k, v in items if np.isfinite(v).any()]          # e.g. no validation set: no panel
    if not items:
        raise ValueError("plot_training: history has no non-empty series")
    n = len(items) + (3 if checks else 0)
    fig, axes = _new_figure(n, 1, figsize=(6.4, 2.6 * n))
    if checks:
        _schedule_panels(axes[len(items):, 0], checks, events, edge)
    for ax, (k, v) in zip(axes[:, 0], items):
        ylabel, scale, panel = TRAINING_AXES.get(k, (k.replace("_", " "), "linear", k.replace("_", " ")))
        x = np.arange(1, v.size + 1)
        ax.plot(x, v, marker="o" if v.size <= 30 else None, markersize=3)
        ax.set_yscale(scale)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_xlabel("epoch")
        _whole_epochs(ax, v.size)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(panel, fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_training(path, history: Mapping[str, Sequence[float]], *,
                  title: Optional[str] = "Training history", edge: Optional[float] = None) -> str:
    """One panel per history key (e.g. ``train_energy``, ``val_mse``) against epoch 1..E, 640 x 260 pixels each.

    Axes are labelled in words with units (:data:`TRAINING_AXES`); epochs are whole numbers; energy is on a log
    axis and errors on a linear one.  ``None``/NaN entries are left as gaps; empty lists are skipped. A beta
    schedule's record (``history["checks"]``, ``history["schedule"]``: convngc/schedule.py) adds three panels
    against Adam updates: probe PSNR, the settle's eigenvalue (``edge``: the schedule's trigger) and beta, with
    a dashed line at each step.
    """
    return _save_fig(training_figure(history, title=title, edge=edge), path)


# ----------------------------------------------------------------------------------------------
# filters
# ----------------------------------------------------------------------------------------------
FILTER_CMAP = "RdBu_r"      # deeper layers: blue < 0 < red, white = 0


def filter_tiles(W, *, upscale: int = 16, pad: int = 2, ncols: Optional[int] = None, max_out: int = 64,
                 max_in: int = 64):
    """A ``(C_out, C_in, K, K)`` filter bank as one uint8 RGB image, each K x K kernel upscaled ``upscale``x.

    * ``C_in == 3`` (the bottom layer, which predicts RGB pixels): one colour tile per output map, the three
      input channels as R, G, B, each ``0.5 + 0.5 * w / max|W|`` (mid grey = 0), tiles in a grid of ``ncols``
      columns (default: about square) on white.
    * otherwise: row i = output map i, column j = input map j, each weight through the diverging colour map
      :data:`FILTER_CMAP` at ``(w / max|W| + 1) / 2`` (white = 0), on grey.

    Returns ``(image, max|W|)``; the scale is symmetric around zero for the whole bank shown.
    """
    w = np.asarray(W, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"W must be a 4-D filter bank (C_out, C_in, K, K); got shape {w.shape}")
    if w.size == 0:
        raise ValueError(f"W is empty (shape {w.shape})")
    up, pad = max(1, int(upscale)), max(0, int(pad))
    w = np.nan_to_num(w[: int(max_out), : int(max_in)], nan=0.0, posinf=0.0, neginf=0.0)
    co, ci, kh, kw = w.shape
    m = float(np.abs(w).max())
    u = w / m if m > 0 else w                                         # in [-1, 1]
    th, tw = kh * up, kw * up
    if ci == 3:
        cols = int(ncols) if ncols else int(np.ceil(np.sqrt(co)))
        rows = -(-co // cols)
        rgb = np.rint(np.clip(0.5 + 0.5 * u, 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)  # (co, K, K, 3)
        canvas = np.full((rows * (th + pad) + pad, cols * (tw + pad) + pad, 3), 255, np.uint8)
        for i in range(co):
            r, c = divmod(i, cols)
            y0, x0 = pad + r * (th + pad), pad + c * (tw + pad)
            canvas[y0:y0 + th, x0:x0 + tw] = np.repeat(np.repeat(rgb[i], up, axis=0), up, axis=1)
        return canvas, m
    from matplotlib import colormaps

    rgb = np.rint(colormaps[FILTER_CMAP]((u + 1) / 2)[..., :3] * 255).astype(np.uint8)   # (co, ci, K, K, 3)
    canvas = np.full((co * (th + pad) + pad, ci * (tw + pad) + pad, 3), 128, np.uint8)
    for i in range(co):
        for j in range(ci):
            y0, x0 = pad + i * (th + pad), pad + j * (tw + pad)
            canvas[y0:y0 + th, x0:x0 + tw] = np.repeat(np.repeat(rgb[i, j], up, axis=0), up, axis=1)
    return canvas, m


def filters_figure(W, *, title: Optional[str] = None, upscale: int = 16, pad: int = 2, max_out: int = 64,
                   max_in: int = 64, dpi: int = 100):
    """The figure of :func:`save_filters`: the tiles shown at least 1:1, a title and a colour scale."""
    from matplotlib import cm, colors

    tiles, m = filter_tiles(W, upscale=upscale, pad=pad, max_out=max_out, max_in=max_in)
    w = np.asarray(W)
    rgb = w.shape[1] == 3
    h_px, w_px = tiles.shape[:2]
    scale = max(1.0, 260.0 / max(h_px, w_px))                       # small banks are enlarged to stay readable
    fig, axes = _new_figure(figsize=(max(w_px * scale / dpi + 2.0, 5.6), h_px * scale / dpi + 1.2))
    ax = axes[0, 0]
    ax.imshow(tiles, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is None:
        K = w.shape[-1]
        title = (f"{w.shape[0]} filters, each an RGB {K}x{K} kernel" if rgb else
                 f"{w.shape[0]} x {w.shape[1]} filters ({K}x{K}): row = output map, column = input map")
    ax.set_title(title, fontsize=10)
    sm = cm.ScalarMappable(norm=colors.Normalize(-m, m), cmap="gray" if rgb else FILTER_CMAP)
    cb = fig.colorbar(sm, ax=ax, fraction=0.08, pad=0.03)
    cb.set_label("weight, per colour channel (grey = 0)" if rgb else "weight (white = 0)", fontsize=8)
    fig.tight_layout()
    return fig


def save_filters(path, W, *, title: Optional[str] = None, upscale: int = 16, pad: int = 2, max_out: int = 64,
                 max_in: int = 64) -> str:
    """PNG of a filter bank (:func:`filter_tiles`): each kernel upscaled, colour for the RGB layer, a title and
    a colour scale symmetric around zero."""
    return _save_fig(filters_figure(W, title=title, upscale=upscale, pad=pad, max_out=max_out, max_in=max_in), path)
