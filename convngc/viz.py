"""Figures: image grids, energy / training curves and filter banks.

* Image tiles are built with NumPy and written with Pillow (:func:`save_grid`,
  :func:`save_filters`).
* Curves use matplotlib's object API with the Agg canvas (``Figure`` + ``FigureCanvasAgg``), so
  nothing touches pyplot's global state or the process-wide backend.
* Every file is written atomically: to a temporary file in the destination directory, then
  ``os.replace``-d onto the final path (no partial PNGs, no temp files left behind on error).
  Parent directories are created as needed.  All functions return the written path as ``str``.
"""
from __future__ import annotations

import warnings
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .checkpoint import atomic_write  # one temp-file-and-rename writer for every file we save

__all__ = ["save_grid", "plot_energy", "plot_training", "save_filters", "grid_geometry"]

_BG = 255  # white background
_LABEL_MARGIN = 6


def _save_pil(img: Image.Image, path) -> str:
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def _save_fig(fig, path, dpi: int = 100) -> str:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))


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
def _finite_positive_span(values: Iterable[np.ndarray]):
    vals = np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in values])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return None
    return float(vals.min()), float(vals.max())


def _use_log(values: Iterable[np.ndarray]) -> bool:
    """Log y-axis iff all finite values are > 0 and they span more than two decades."""
    span = _finite_positive_span(values)
    if span is None:
        return False
    lo, hi = span
    return lo > 0 and hi / lo > 100.0


def _to_float(seq) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in seq], dtype=np.float64)


EnergyLike = Union[np.ndarray, Sequence[float]]


def plot_energy(path, energy: Union[EnergyLike, Mapping[str, EnergyLike]], *,
                label: Optional[str] = None, title: Optional[str] = None,
                kind: Optional[str] = None, band: str = "std") -> str:
    """Plot energy curve(s) to a PNG.

    ``energy`` may be

    * a NumPy array of shape ``(T+1,)`` -- energy over the settling steps t = 0..T;
    * a NumPy array of shape ``(T+1, B)`` -- per-image energies; the mean over B is drawn with a
      shaded band (``band="std"``: mean +/- 1 std, ``band="minmax"``: min..max);
    * a list/tuple of per-epoch values (x = epoch 1..E);
    * a dict ``{label: any of the above}`` for several curves on one axis.

    ``kind`` (``"steps"`` or ``"epochs"``) overrides the x-axis inferred from the type.  The y axis
    is logarithmic when all values are positive and span more than two decades.
    """
    if band not in ("std", "minmax"):
        raise ValueError(f"band must be 'std' or 'minmax'; got {band!r}")
    if kind not in (None, "steps", "epochs"):
        raise ValueError(f"kind must be None, 'steps' or 'epochs'; got {kind!r}")
    if isinstance(energy, Mapping):
        series = list(energy.items())
    else:
        series = [(label, energy)]
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
        x = np.arange(arr.shape[0]) + (1 if k == "epochs" else 0)
        if arr.ndim == 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(arr, axis=1)
                if band == "std":
                    sd = np.nanstd(arr, axis=1)
                    lo, hi = mean - sd, mean + sd
                else:
                    lo, hi = np.nanmin(arr, axis=1), np.nanmax(arr, axis=1)
        else:
            mean, lo, hi = arr, None, None
        curves.append((lab, x, mean, lo, hi, k))

    means = [c[2] for c in curves]
    log_y = _use_log(means)
    fig, axes = _new_figure()
    ax = axes[0, 0]
    for lab, x, mean, lo, hi, _ in curves:
        (line,) = ax.plot(x, mean, marker="o" if len(x) <= 30 else None, markersize=3, label=lab)
        if lo is not None:
            if log_y:  # keep the band drawable on a log axis
                floor = np.nanmin(mean[mean > 0]) * 1e-3 if np.any(mean > 0) else 1e-12
                lo = np.maximum(lo, floor)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.25, linewidth=0,
                            label=None if lab is None else f"{lab} ({'±1 std' if band == 'std' else 'min–max'})")
    kinds = {c[5] for c in curves}
    ax.set_xlabel("settling step t" if kinds == {"steps"} else
                  "epoch" if kinds == {"epochs"} else "step / epoch")
    ax.set_ylabel("energy" + (" (log scale)" if log_y else ""))
    if log_y:
        ax.set_yscale("log")
    if title is None:
        title = ("Energy over settling steps" if kinds == {"steps"} else
                 "Energy per epoch" if kinds == {"epochs"} else "Energy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if any(c[0] is not None for c in curves):
        ax.legend(loc="best", fontsize=8)
    return _save_fig(fig, path)


def plot_training(path, history: Mapping[str, Sequence[float]], *,
                  title: Optional[str] = "Training history") -> str:
    """One panel per history key (e.g. ``train_energy``, ``val_mse``) against epoch 1..E.

    ``None``/NaN entries are left as gaps; empty lists are skipped.  Each panel gets a log y axis
    when its values are positive and span more than two decades.
    """
    items = [(str(k), _to_float(v)) for k, v in history.items()]
    for k, v in items:
        if v.ndim != 1:
            raise ValueError(f"history[{k!r}] must be a 1-D list of per-epoch values; got shape {v.shape}")
    items = [(k, v) for k, v in items if v.size > 0]
    if not items:
        raise ValueError("plot_training: history has no non-empty series")
    n = len(items)
    fig, axes = _new_figure(n, 1, figsize=(6.4, 2.6 * n))
    for ax, (k, v) in zip(axes[:, 0], items):
        x = np.arange(1, v.size + 1)
        ax.plot(x, v, marker="o" if v.size <= 30 else None, markersize=3)
        ax.set_ylabel(k)
        ax.set_xlabel("epoch")
        if _use_log([v]):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.set_title(k.replace("_", " "), fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save_fig(fig, path)


# ----------------------------------------------------------------------------------------------
# filters
# ----------------------------------------------------------------------------------------------
def save_filters(path, W, *, upscale: int = 8, pad: int = 1, max_out: int = 64,
                 max_in: int = 64) -> str:
    """Tile a ``(C_out, C_in, K, K)`` filter bank: row i = output channel i, column j = input j.

    Grey scale, symmetric around zero for the whole bank: 0 -> mid grey, +max|W| -> white,
    -max|W| -> black.  Each kernel is upscaled ``upscale``x (nearest); tiles are separated by
    ``pad`` pixels of a light blue background.  At most ``max_out`` x ``max_in`` kernels are shown.
    Output size: ``(co*(K*up+pad)+pad)`` high by ``(ci*(K*up+pad)+pad)`` wide.
    """
    w = np.asarray(W, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"W must be a 4-D filter bank (C_out, C_in, K, K); got shape {w.shape}")
    if w.size == 0:
        raise ValueError(f"W is empty (shape {w.shape})")
    up, pad = max(1, int(upscale)), max(0, int(pad))
    w = w[: int(max_out), : int(max_in)]
    w = np.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0)
    co, ci, kh, kw = w.shape
    m = float(np.abs(w).max())
    g = 0.5 + 0.5 * (w / m if m > 0 else w)
    g = np.rint(np.clip(g, 0.0, 1.0) * 255.0).astype(np.uint8)
    th, tw = kh * up, kw * up
    height, width = co * (th + pad) + pad, ci * (tw + pad) + pad
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = (200, 220, 255)
    big = np.repeat(np.repeat(g, up, axis=2), up, axis=3)
    for i in range(co):
        y0 = pad + i * (th + pad)
        for j in range(ci):
            x0 = pad + j * (tw + pad)
            canvas[y0:y0 + th, x0:x0 + tw] = big[i, j][:, :, None]
    return _save_pil(Image.fromarray(canvas), path)
