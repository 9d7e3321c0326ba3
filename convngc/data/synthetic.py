"""Sets built here rather than read: Color-MNIST (from MNIST) and the embedded photo patches (no download)."""
from __future__ import annotations

import functools
import warnings
from typing import Optional, Tuple

import numpy as np

from .errors import DataError

Array = np.ndarray
XY = Tuple[Array, Optional[Array]]


# ----------------------------------------------------------------------------------------------------------------
# Color-MNIST
# ----------------------------------------------------------------------------------------------------------------
def _linear_matrix(n_in: int, n_out: int) -> Array:
    """(n_out, n_in) 1-D linear interpolation weights, half-pixel centres, edge clamped."""
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    w = src - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - w)
    np.add.at(m, (np.arange(n_out), hi), w)
    return m


def resize_bilinear(x: Array, size: Tuple[int, int]) -> Array:
    """Bilinear resize of a uint8 batch ``(N, H, W[, C])`` to ``size=(H', W')``, rounded back to uint8.

    Same result (up to +-1 from rounding ties) as ``skimage.transform.resize(img, size, order=1, mode="edge",
    anti_aliasing=False, preserve_range=True)``: half-pixel-centred coordinates, computed as two separable
    matrix products.
    """
    h, w = x.shape[1:3]
    a, b = _linear_matrix(h, size[0]), _linear_matrix(w, size[1])
    out = np.empty((len(x),) + tuple(size) + x.shape[3:], np.uint8)
    for i in range(0, len(x), 1024):  # chunks keep the float64 temporaries in cache
        t = np.tensordot(x[i:i + 1024].astype(np.float64), b, axes=([2], [1]))  # (n, H, [C,] W')
        t = np.tensordot(t, a, axes=([1], [1]))                                # (n, [C,] W', H')
        out[i:i + 1024] = np.clip(np.rint(np.moveaxis(t, (-1, -2), (1, 2))), 0, 255)
    return out


def color_mnist(x: Array, seed=0, size: int = 32) -> Tuple[Array, Array]:
    """Color-MNIST from grayscale MNIST ``(N, 28, 28)`` uint8 -> ``(N, size, size, 3)`` uint8 and ``red`` (bool, N).

    As in the paper, every digit is drawn either red or green: the grayscale intensity goes into the R channel
    or the G channel, the other channels are 0. The colour is an i.i.d. Bernoulli(0.5) draw per image from
    ``numpy.random.default_rng(seed)``, independent of the label. (We do not tie colour to the label as in
    Arjovsky et al.'s Colored-MNIST: that construction plants a spurious correlation for invariance studies,
    which a generative model of images does not need; an independent coin keeps both colours equally frequent
    for every digit.) Images are resized 28 -> ``size`` with bilinear interpolation (:func:`resize_bilinear`,
    equal to skimage ``resize(order=1)``) before colouring.
    """
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataError(f"color_mnist expects grayscale uint8 (N, H, W), got {x.dtype} {x.shape}")
    red = red_coins(len(x), seed)
    return colorize(x, red, size), red


def red_coins(n: int, seed) -> Array:
    return np.random.default_rng(seed).random(n) < 0.5


def colorize(x: Array, red: Array, size: int) -> Array:
    g = resize_bilinear(x, (size, size)) if x.shape[1:] != (size, size) else x
    out = np.zeros(g.shape + (3,), np.uint8)
    out[red, ..., 0] = g[red]
    out[~red, ..., 1] = g[~red]
    return out


# ----------------------------------------------------------------------------------------------------------------
# Embedded natural-image patches (no download)
# ----------------------------------------------------------------------------------------------------------------
# colour photographs shipped inside the scikit-image wheel (no pooch download needed). `cat` is the same image
# as `chelsea` and `colorwheel`/`logo` are synthetic, so they are left out.
EMBEDDED_SOURCES = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina",
                    "rocket", "stereo_motorcycle")
EMBEDDED_MIN_STD = 4.0  # patches whose pixel std (uint8 units) is below this are flat (sky, black borders): dropped
# At most this many patches per photograph, so that no photograph dominates: uncapped, the large flat orange
# retina gave 41% of the patches and the black Hubble star field 22%; capped, no photograph is more than 16%.
EMBEDDED_MAX_PER_SOURCE = 400


def _grid_patches(img: Array, p: int) -> Array:
    h, w = (img.shape[0] // p) * p, (img.shape[1] // p) * p
    g = img[:h, :w].reshape(h // p, p, w // p, p, 3).transpose(0, 2, 1, 3, 4)
    return g.reshape(-1, p, p, 3)


@functools.lru_cache(maxsize=4)
def _embedded_all(patch: int) -> Tuple[Array, Array]:
    import skimage.data

    xs, ys = [], []
    for k, name in enumerate(EMBEDDED_SOURCES):
        try:
            img = getattr(skimage.data, name)()
        except Exception as e:  # a future skimage may move an image behind a pooch download
            warnings.warn(f"embedded dataset: skimage.data.{name}() unavailable offline ({e}); skipped")
            continue
        if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity): use the left view
            img = img[0]
        img = np.asarray(img, np.uint8)[..., :3]
        h, w = (img.shape[0] // 2) * 2, (img.shape[1] // 2) * 2
        half = img[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
        p = np.concatenate([_grid_patches(im, patch) for im in (img, half)])
        p = p[p.reshape(len(p), -1).std(axis=1) >= EMBEDDED_MIN_STD]
        if len(p) > EMBEDDED_MAX_PER_SOURCE:   # a uniform draw over the whole photograph, both scales, fixed per photo
            keep = np.random.default_rng(k).choice(len(p), EMBEDDED_MAX_PER_SOURCE, replace=False)
            p = p[np.sort(keep)]
        xs.append(p)
        ys.append(np.full(len(p), k, np.uint8))
    if not xs:
        raise DataError("embedded dataset: no scikit-image sample photograph could be loaded")
    x, y = np.concatenate(xs), np.concatenate(ys)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def embedded_images(n: Optional[int] = None, seed: int = 0, patch: int = 32) -> XY:
    """Natural-image patches that need no download: ``(x (N,patch,patch,3) uint8, y uint8 source-image index)``.

    Non-overlapping ``patch x patch`` grid patches cut from the colour photographs bundled in scikit-image
    (:data:`EMBEDDED_SOURCES`), at full resolution and 2x2-box-downscaled (more natural-image statistics per
    patch); nearly flat patches (std < :data:`EMBEDDED_MIN_STD`) are dropped, and a photograph with more than
    :data:`EMBEDDED_MAX_PER_SOURCE` patches gives a seeded uniform sample of that many, so none dominates: 2,569
    patches for ``patch=32`` with scikit-image 0.26, at most 16% from one photograph. The order is a permutation by
    ``seed``; ``n`` takes the first ``n``.
    """
    x, y = _embedded_all(int(patch))
    order = np.random.default_rng(seed).permutation(len(x))[:n]
    return x[order], y[order]
