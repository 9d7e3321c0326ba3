"""Image-quality metrics used by the paper (Appendix, Eqs. 4-6) plus standard windowed SSIM.

Conventions (docs/reading.md, "Metrics"):

* Inputs are model outputs ``pred`` and targets ``target`` as float arrays in [0, 1], layout
  NCHW ``(N, C, H, W)``.
* Unless ``clip=False``, predictions are clipped to [0, 1] (targets are not touched; they are
  assumed to be valid images already).
* Unless ``scale=None``, both arrays are multiplied by ``scale`` (default 255, the paper's
  convention) before any statistic is computed.  The dynamic range ``Q`` used by PSNR/SSIM is
  ``data_range`` if given, else ``scale`` (255), else 1.0 when ``scale=None``.
* Every metric is computed per image and per channel, averaged over channels (per-image value)
  and then over images.  ``per_image=True`` returns the ``(N,)`` per-image values instead of the
  scalar mean.
* All arithmetic is float64.

Metrics:

* :func:`mse` -- Eq. 4.
* :func:`psnr` -- Eq. 6, ``20*log10(Q / RMSE)`` per image and channel.  RMSE = 0 (identical
  images) would be +inf; PSNR is therefore capped at ``max_db`` (default 100 dB), i.e. every
  value is ``min(PSNR, max_db)``.  With Q = 255, 100 dB corresponds to an RMSE of 2.55e-3 on the
  [0, 255] scale (1e-5 on [0, 1]), far below anything a model produces, so on natural images the
  cap only ever affects (near-)identical images.  But a target channel that is all zero (Color-MNIST:
  two of every image's three) is matched exactly by an output that leaves it zero, and scores the
  cap: an all-black output reaches about 70 dB on Color-MNIST.  ``channels="all"`` computes PSNR per
  image over all its channels at once (RMSE over C*H*W), which does not reward a black image.
* :func:`psnr_of_mse` -- ``10*log10(Q^2 / MSE)`` of an MSE already averaged (e.g. over a trial's
  images): the PSNR of the mean MSE, below the mean of per-image PSNRs by Jensen's inequality; it
  ranks outputs exactly as the MSE does.
* :func:`ssim_global` -- Eq. 5 exactly as printed, read with whole-image statistics (a single
  window covering the image) per channel, C1 = (0.01 Q)^2, C2 = (0.03 Q)^2.  The printed
  "m mu^2" in the denominator is a typo for "mu^2".  Means, variances and covariance are
  population statistics (divide by N*M) unless ``sample_covariance=True``.
* :func:`ssim_windowed` -- the standard local-window SSIM of Wang et al. (2004): Gaussian window
  sigma = 1.5 (truncated at 3.5 sigma -> 11x11), population covariances, mean of the SSIM map
  after cropping the (win-1)/2 border, reflect padding.  Matches
  ``skimage.metrics.structural_similarity(a, b, data_range=Q, channel_axis=..., gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)``.  ``gaussian=False`` gives the 7x7 uniform-window
  variant (skimage's default when ``gaussian_weights=False``; pair it with
  ``sample_covariance=True`` to reproduce skimage's full defaults).
* :func:`evaluate_metrics` -- all of the above in one dict; ``"ssim"`` is the windowed
  (Gaussian, Wang et al.) SSIM and ``"ssim_global"`` the paper's Eq. 5 reading.
* :func:`mean_std` -- mean and standard deviation over trials (the 5-seed tables).
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple

import numpy as np
from scipy import ndimage

__all__ = [
    "mse",
    "psnr",
    "psnr_of_mse",
    "ssim_global",
    "ssim_windowed",
    "evaluate_metrics",
    "mean_std",
    "format_mean_std",
    "PSNR_MAX_DB",
    "SSIM_K1",
    "SSIM_K2",
]

PSNR_MAX_DB = 100.0
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_GAUSS_TRUNCATE = 3.5  # as in skimage.metrics.structural_similarity
_DEFAULT_CHUNK = 512  # images per vectorised block in ssim_windowed (bounds memory)


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------
def _check_one(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 4:
        raise ValueError(f"{name} must be a 4-D NCHW array (N, C, H, W); got shape {a.shape}")
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating)):
        raise ValueError(
            f"{name} must be a floating-point array with values in [0, 1]; got dtype {a.dtype} "
            "(convert integer images with x.astype(np.float64) / 255)"
        )
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not np.all(np.isfinite(a)):
        n_nan = int(np.isnan(a).sum())
        n_inf = int(np.isinf(a).sum())
        raise ValueError(f"{name} contains non-finite values ({n_nan} NaN, {n_inf} Inf)")
    return a


def _prepare(pred, target, scale: Optional[float], clip: bool, data_range: Optional[float]
             ) -> Tuple[np.ndarray, np.ndarray, float]:
    """Validate, clip predictions to [0,1], rescale both; return float64 arrays and Q."""
    p = _check_one(pred, "pred")
    t = _check_one(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: pred has shape {p.shape}, target has shape {t.shape}")
    p = p.astype(np.float64, copy=True)
    t = t.astype(np.float64, copy=True)
    if clip:
        np.clip(p, 0.0, 1.0, out=p)
    if scale is not None:
        scale = float(scale)
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a positive finite number or None; got {scale}")
        p *= scale
        t *= scale
    if data_range is None:
        q = scale if scale is not None else 1.0
    else:
        q = float(data_range)
        if not np.isfinite(q) or q <= 0:
            raise ValueError(f"data_range must be a positive finite number; got {data_range}")
    return p, t, float(q)


def _reduce(per_image_channel: np.ndarray, per_image: bool):
    """(N, C) -> per-image (N,) mean over channels -> scalar mean over images."""
    per_img = per_image_channel.mean(axis=1)
    if per_image:
        return per_img
    return float(per_img.mean())


# ----------------------------------------------------------------------------------------------
# core computations on prepared float64 arrays (return (N, C))
# ----------------------------------------------------------------------------------------------
def _mse_nc(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    d = p - t
    return np.mean(d * d, axis=(2, 3))


def _psnr_nc(p: np.ndarray, t: np.ndarray, q: float, max_db: float) -> np.ndarray:
    rmse = np.sqrt(_mse_nc(p, t))
    with np.errstate(divide="ignore"):
        val = 20.0 * np.log10(q / rmse)  # rmse == 0 -> +inf, capped below
    return np.minimum(val, max_db)


def _ssim_global_nc(p: np.ndarray, t: np.ndarray, q: float, sample_covariance: bool) -> np.ndarray:
    c1 = (SSIM_K1 * q) ** 2
    c2 = (SSIM_K2 * q) ** 2
    mu_x = t.mean(axis=(2, 3))
    mu_y = p.mean(axis=(2, 3))
    dx = t - mu_x[:, :, None, None]
    dy = p - mu_y[:, :, None, None]
    n = t.shape[2] * t.shape[3]
    denom = (n - 1) if (sample_covariance and n > 1) else n
    var_x = np.sum(dx * dx, axis=(2, 3)) / denom
    var_y = np.sum(dy * dy, axis=(2, 3)) / denom
    cov = np.sum(dx * dy, axis=(2, 3)) / denom
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def _ssim_window_params(gaussian: bool, sigma: float, win_size: Optional[int]) -> int:
    if sigma <= 0:
        raise ValueError(f"sigma must be positive; got {sigma}")
    if win_size is None:
        if gaussian:
            win_size = 2 * int(_GAUSS_TRUNCATE * sigma + 0.5) + 1
        else:
            win_size = 7
    win_size = int(win_size)
    if win_size < 1 or win_size % 2 != 1:
        raise ValueError(f"win_size must be a positive odd integer; got {win_size}")
    return win_size


def _ssim_windowed_nc(p: np.ndarray, t: np.ndarray, q: float, gaussian: bool, sigma: float,
                      win_size: int, sample_covariance: bool) -> np.ndarray:
    """Vectorised over (N, C): all filtering is along the spatial axes only."""
    if gaussian:
        def filt(a):
            return ndimage.gaussian_filter(a, sigma=(0.0, 0.0, sigma, sigma), mode="reflect",
                                           truncate=_GAUSS_TRUNCATE)
    else:
        def filt(a):
            return ndimage.uniform_filter(a, size=(1, 1, win_size, win_size), mode="reflect")

    npix = win_size ** 2
    cov_norm = npix / (npix - 1) if (sample_covariance and npix > 1) else 1.0
    c1 = (SSIM_K1 * q) ** 2
    c2 = (SSIM_K2 * q) ** 2

    # x = target, y = pred (SSIM is symmetric, the order only matters for rounding)
    ux = filt(t)
    uy = filt(p)
    uxx = filt(t * t)
    uyy = filt(p * p)
    uxy = filt(t * p)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    a1 = 2.0 * ux * uy + c1
    a2 = 2.0 * vxy + c2
    b1 = ux * ux + uy * uy + c1
    b2 = vx + vy + c2
    s = (a1 * a2) / (b1 * b2)
    pad = (win_size - 1) // 2
    h, w = s.shape[2], s.shape[3]
    s = s[:, :, pad:h - pad, pad:w - pad]
    return s.mean(axis=(2, 3), dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def mse(pred, target, *, scale: Optional[float] = 255.0, clip: bool = True,
        per_image: bool = False):
    """Mean squared error, Eq. 4.

    Per image and channel ``mean((pred - target)^2)`` over pixels, averaged over channels and
    then images.  Returns a float, or an ``(N,)`` float64 array with ``per_image=True``.
    """
    p, t, _ = _prepare(pred, target, scale, clip, None)
    return _reduce(_mse_nc(p, t), per_image)


def psnr(pred, target, *, scale: Optional[float] = 255.0, clip: bool = True,
         data_range: Optional[float] = None, max_db: float = PSNR_MAX_DB,
         per_image: bool = False, channels: str = "each"):
    """Peak signal-to-noise ratio in dB, Eq. 6.

    ``channels="each"`` (Eq. 6 as the paper computes it): per image and channel
    ``20*log10(Q / RMSE)``, averaged over channels then images.  Each per-(image, channel) value
    is capped at ``max_db`` (default 100 dB) so that identical images (RMSE = 0) give exactly
    ``max_db`` rather than +inf; a target channel that is all zero therefore gives an output that
    leaves it zero the cap.  ``channels="all"``: per image, the RMSE over all its channels and
    pixels at once (capped likewise), then the mean over images; it does not reward a black image.
    """
    if channels not in ("each", "all"):
        raise ValueError(f"channels must be 'each' (per channel, Eq. 6) or 'all' (over all channels at once); "
                         f"got {channels!r}")
    p, t, q = _prepare(pred, target, scale, clip, data_range)
    if channels == "all":
        n = p.shape[0]
        per = _psnr_nc(p.reshape(n, 1, -1, 1), t.reshape(n, 1, -1, 1), q, float(max_db))
        return _reduce(per, per_image)
    return _reduce(_psnr_nc(p, t, q, float(max_db)), per_image)


def psnr_of_mse(mse_value, *, data_range: float = 255.0, max_db: float = PSNR_MAX_DB) -> float:
    """``10*log10(Q^2 / MSE)`` of an MSE on the scale of ``data_range`` (default 255, as :func:`mse`
    returns it), capped at ``max_db``: the PSNR of the mean MSE, over all channels, pixels and images
    at once."""
    mse_value = float(mse_value)
    if not mse_value >= 0:
        raise ValueError(f"mse must be a number >= 0; got {mse_value}")
    if mse_value == 0:
        return float(max_db)
    return float(min(10.0 * np.log10(float(data_range) ** 2 / mse_value), max_db))


def ssim_global(pred, target, *, scale: Optional[float] = 255.0, clip: bool = True,
                data_range: Optional[float] = None, sample_covariance: bool = False,
                per_image: bool = False):
    """SSIM as printed in Eq. 5, with whole-image statistics (one window) per channel.

    ``((2 mu_x mu_y + C1)(2 sigma_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))``
    with C1 = (0.01 Q)^2, C2 = (0.03 Q)^2, population (co)variances unless
    ``sample_covariance=True``; averaged over channels then images.
    """
    p, t, q = _prepare(pred, target, scale, clip, data_range)
    return _reduce(_ssim_global_nc(p, t, q, sample_covariance), per_image)


def ssim_windowed(pred, target, *, gaussian: bool = True, sigma: float = 1.5,
                  win_size: Optional[int] = None, sample_covariance: bool = False,
                  scale: Optional[float] = 255.0, clip: bool = True,
                  data_range: Optional[float] = None, per_image: bool = False,
                  chunk_size: int = _DEFAULT_CHUNK):
    """Standard windowed SSIM (Wang et al. 2004), mean SSIM map per image and channel.

    Defaults (``gaussian=True, sigma=1.5, sample_covariance=False``) match
    ``skimage.metrics.structural_similarity(..., data_range=Q, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``; ``gaussian=False`` uses a ``win_size`` x ``win_size``
    (default 7) uniform window.  With a Gaussian window ``win_size`` defaults to
    ``2*int(3.5*sigma + 0.5) + 1`` (11 for sigma=1.5) and only sets the cropped border (and the
    sample-covariance factor), as in skimage.  Images must be at least ``win_size`` pixels on
    each side.  Computation is vectorised over blocks of ``chunk_size`` images.
    """
    p, t, q = _prepare(pred, target, scale, clip, data_range)
    win = _ssim_window_params(gaussian, float(sigma), win_size)
    h, w = p.shape[2], p.shape[3]
    if h < win or w < win:
        raise ValueError(f"images of size {h}x{w} are smaller than the SSIM window ({win}x{win}); "
                         "pass a smaller odd win_size")
    chunk = max(1, int(chunk_size))
    out = np.empty(p.shape[:2], dtype=np.float64)
    for i in range(0, p.shape[0], chunk):
        out[i:i + chunk] = _ssim_windowed_nc(p[i:i + chunk], t[i:i + chunk], q, gaussian,
                                             float(sigma), win, sample_covariance)
    return _reduce(out, per_image)


def evaluate_metrics(pred, target, *, scale: Optional[float] = 255.0, clip: bool = True,
                     per_image: bool = False) -> Dict[str, object]:
    """All metrics at once.

    Returns ``{"mse", "psnr", "ssim_global", "ssim"}``: Eq. 4, Eq. 6 (capped at 100 dB),
    Eq. 5 with whole-image statistics, and the Gaussian-window (sigma=1.5) SSIM of
    Wang et al. (:func:`ssim_windowed` defaults).  Floats, or ``(N,)`` arrays with
    ``per_image=True``.
    """
    kw = dict(scale=scale, clip=clip, per_image=per_image)
    return {
        "mse": mse(pred, target, **kw),
        "psnr": psnr(pred, target, **kw),
        "ssim_global": ssim_global(pred, target, **kw),
        "ssim": ssim_windowed(pred, target, **kw),
    }


def format_mean_std(mean: float, std: float, n: int, digits: int, sep: str = " ± ") -> str:
    """``"mean ± std"`` with ``digits`` decimals, or the mean alone when there is one trial (n = 1):
    a spread of one value is not a measurement."""
    if n == 1:
        return "%.*f" % (digits, mean)
    return "%.*f%s%.*f" % (digits, mean, sep, digits, std)


def mean_std(results: Iterable[Mapping[str, float]], *, ddof: int = 0
             ) -> Dict[str, Tuple[float, float]]:
    """Mean and standard deviation across trials: ``{key: (mean, std)}``.

    ``results`` is a list of metric dicts (e.g. one :func:`evaluate_metrics` dict per seed); all
    must have the same keys with scalar values.  ``std`` uses ``ddof`` (default 0, population
    std as ``np.std``; pass ``ddof=1`` for the sample std).
    """
    results = list(results)
    if not results:
        raise ValueError("mean_std needs at least one result dict")
    keys = list(results[0].keys())
    for i, r in enumerate(results[1:], start=1):
        if set(r.keys()) != set(keys):
            raise ValueError(f"result {i} has keys {sorted(r.keys())}, expected {sorted(keys)}")
    out: Dict[str, Tuple[float, float]] = {}
    for k in keys:
        vals = []
        for r in results:
            v = np.asarray(r[k], dtype=np.float64)
            if v.ndim != 0:
                raise ValueError(f"mean_std expects scalar values; key {k!r} has shape {v.shape}")
            vals.append(float(v))
        arr = np.asarray(vals)
        std = float(arr.std(ddof=ddof)) if arr.size > ddof else float("nan")
        out[k] = (float(arr.mean()), std)
    return out
