"""A trained Conv-NGC on whole pictures of any size: reconstruction and denoising of one image (C, H, W).

A model trained on 32x32 patches is convolutional, so it can settle on a larger map directly; its map sides
must divide by stride^L (16 for the paper's model). Two ways, `method`:

    "tiles"  overlapping tiles (default 64x64, 16 pixels of overlap), each settled as one image of a batch
             (the cpu backend's 16 SIMD lanes and its threads share them), blended back with a window that
             sums to one: inside each tile a flat top, across each overlap a sin^2 / cos^2 ramp. The picture
             is reflect-padded by the overlap first, so its own borders lie where a single tile covers them
             with weight one; tiles start on multiples of 16, so every tile sees the whole picture's grid.
    "whole"  the whole picture at once, reflect-padded to a multiple of 16 (at least the model's training
             size) and cropped back. One image: on the cpu backend it fills 1 of 16 lanes and one thread.

README.md ("Your own pictures") measures both on held-out photographs (quality, seams, speed) and explains
the default. An image that fits in one tile is settled whole either way.

    out = settle_image(model, x, "denoise")       # x float32 (C, H, W) in [0, 1] (noisy), C = the model's
    out = settle_image(model, x, "reconstruct", method="whole")

The denoising reading (the precision pi0 and the steps T) is the model's (`convngc tune` stores it with the
noise level it was tuned for, meta["denoise_tuning"]["noise_std"]); `reading(model, "denoise", sigma=...)`
rescales it to another noise level: pi0 scales as 1 / sigma^2 (a precision is an inverse variance) and T
as 1 / pi0 (a weaker drive settles more slowly).
"""
import dataclasses
import math

import numpy as np

TASKS = ("denoise", "reconstruct")
METHODS = ("tiles", "whole")
DEFAULT_METHOD = "tiles"
DEFAULT_TILE = 64             # tile side, a multiple of stride^L
DEFAULT_OVERLAP = 16          # pixels shared by two neighbouring tiles (the blend's ramp), a multiple of stride^L
DEFAULT_BATCH = None          # tiles per settle call: default_batch(backend)
TUNED_NOISE_STD = 0.1         # what `convngc tune` uses (train.NOISE_STD) when a checkpoint does not say
MAX_T = 4000                  # a --sigma far below the tuned one would ask for an unbounded T


class ApplyError(ValueError):
    """An option that cannot apply to this model or picture (a tile size that does not divide, ...)."""


# ------------------------------------------------------------------------------------------------------------
# the settling reading of a task
# ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Reading:
    """How one task settles: T steps, clamp ("always" / "first"), the precision pi0 of e^0, the heavy-ball
    momentum, and for denoising the noise level it is set for (sigma) and the one the model was tuned for
    (tuned_sigma)."""
    task: str
    T: int
    clamp: str
    pi0: float
    momentum: float = 0.0
    sigma: float = None
    tuned_sigma: float = None

    @property
    def noisy(self):
        return self.task == "denoise"


def tuned_sigma(meta):
    """The noise level (std on the [0, 1] scale) a checkpoint's denoising reading was tuned for: its
    meta["denoise_tuning"]["noise_std"], else the evaluation's 0.1."""
    t = (meta or {}).get("denoise_tuning") or {}
    try:
        v = float(t.get("noise_std", TUNED_NOISE_STD))
    except (TypeError, ValueError):
        v = TUNED_NOISE_STD
    return v if v > 0 and math.isfinite(v) else TUNED_NOISE_STD


def budget_pi0(meta, T):
    """The precision the tuning table (meta["denoise_tuning"]["table"], written by `convngc tune`) found best
    within T settling steps: its row with the lowest MSE among those with at most T steps (none: the rows of the
    fewest steps). None without a table."""
    table = [r for r in ((meta or {}).get("denoise_tuning") or {}).get("table") or []
             if isinstance(r, dict) and {"pi0", "T", "mse"} <= set(r)]
    if not table:
        return None
    within = [r for r in table if r["T"] <= T] or [r for r in table if r["T"] == min(q["T"] for q in table)]
    return float(min(within, key=lambda r: (r["mse"], r["T"]))["pi0"])


def reading(model, task, sigma=None, T=None, meta=None):
    """The Reading of `task` for `model`: reconstruction clamps z^0 for cfg.T steps (or T); denoising follows
    cfg.denoise with cfg.denoise_pi0 and cfg.denoise_T. An explicit T for denoising is a budget: the precision
    is then the tuning table's best within T steps (budget_pi0), when the checkpoint has one. `sigma` (the
    input's noise std on the [0, 1] scale) other than the level the model was tuned for rescales the precision
    as pi0 x (tuned / sigma)^2, clipped to (0, 1], and (without an explicit T) the steps as T x (old pi0 /
    new pi0), or its square root with momentum (heavy ball: steps ~ the square root of the stiffness ratio),
    at least the model's T (with momentum: its tuned steps' smallest grid point, T / 4) and at most MAX_T."""
    from ngc_ref import model as ref_model
    cfg = model.cfg
    if task == "reconstruct":
        return Reading("reconstruct", int(T or cfg.T), "always", 1.0)
    if task != "denoise":
        raise ValueError("task must be one of %s, got %r" % (", ".join(TASKS), task))
    s0 = tuned_sigma(meta)
    pi0, steps, mom = cfg.denoise_pi0, cfg.denoise_T, cfg.denoise_momentum
    if T is not None and cfg.denoise == "precision":
        pi0 = budget_pi0(meta, T) or pi0
        steps = T
    if sigma is not None:
        sigma = float(sigma)
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ApplyError("sigma must be a noise std > 0 on the [0, 1] scale, got %r" % sigma)
        if cfg.denoise == "precision" and sigma != s0:
            new = min(1.0, max(1e-4, pi0 * (s0 / sigma) ** 2))
            if T is None:
                ratio = (pi0 / new) ** (0.5 if mom else 1.0)
                steps = int(min(MAX_T, max(max(1, cfg.T // 4) if mom else cfg.T, round(steps * ratio))))
            pi0 = new
    return Reading("denoise", int(T or steps), ref_model.denoise_clamp(cfg), float(pi0), float(mom),
                   sigma if sigma is not None else s0, s0)


# ------------------------------------------------------------------------------------------------------------
# the noise level of a picture
# ------------------------------------------------------------------------------------------------------------
def estimate_noise(x):
    """The std of white Gaussian noise in a picture x (C, H, W) in [0, 1]: the median absolute deviation of
    its finest diagonal Haar band (orthonormal, so white noise keeps its std there), / 0.6745 (Donoho &
    Johnstone 1994), the median over channels. Texture inflates it a little; JPEG smoothing deflates it."""
    x = np.asarray(x, np.float64)
    C, H, W = x.shape
    h, w = H // 2 * 2, W // 2 * 2
    if h < 2 or w < 2:
        return float("nan")
    a = x[:, :h:2, :w:2]
    b = x[:, :h:2, 1:w:2]
    c = x[:, 1:h:2, :w:2]
    d = x[:, 1:h:2, 1:w:2]
    hh = (a - b - c + d) / 2.0
    return float(np.median([np.median(np.abs(ch)) for ch in hh]) / 0.6745)


# ------------------------------------------------------------------------------------------------------------
# models at other map sizes
# ------------------------------------------------------------------------------------------------------------
class Sized:
    """One model's parameters at several map sizes: `at((H, W))` is a ConvNGC for H x W images (cached)."""

    def __init__(self, model):
        self.model = model
        self.cfg = model.cfg
        self.f = self.cfg.stride ** self.cfg.L
        self._params = None
        self._at = {tuple(self.cfg.image_hw): model}

    def at(self, hw):
        hw = tuple(int(v) for v in hw)
        if hw not in self._at:
            if self.cfg.bias == "pixel":
                raise ApplyError("this model has a bias map of %dx%d pixels (bias='pixel'): it settles only "
                                 "%dx%d images; use --method tiles --tile %d" % (self.cfg.image_hw * 2
                                                                                  + self.cfg.image_hw[:1]))
            from .model import ConvNGC
            if self._params is None:
                self._params = self.model.host_params()
            self._at[hw] = ConvNGC(dataclasses.replace(self.cfg, image_hw=hw), backend=self.model.backend.name,
                                   dtype=self.model.dtype, params=self._params)
        return self._at[hw]


def default_batch(backend):
    """Tiles per settle call: on the cpu backend two lane tiles of 16 per thread (at least 64: 4 lane tiles, so
    2 threads stay busy), 256 on a GPU, 64 on the reference. The results do not depend on it."""
    if backend == "cpu":
        from ngc_cpu import get_num_threads
        return max(64, 32 * get_num_threads())
    return 256 if backend == "cuda" else 64


def settle_batch(net, x, rd, z_top):
    """Settle a batch x (B, C, H, W) on `net` (a ConvNGC of that size) by the Reading rd -> output (B, C, H, W)."""
    from ngc_ref import model as ref_model
    res = net.settle(x, T=rd.T, clamp=rd.clamp, z_top=z_top, noisy=rd.noisy, pi0=rd.pi0, momentum=rd.momentum)
    return np.asarray(net.backend.to_host(ref_model.output_image(res, net.cfg)), np.float32)


def _top(cfg, hw, n, seeds):
    """The initial top states of n images of size hw, one seeded draw each (independent of the batching)."""
    from ngc_ref import model as ref_model
    c = dataclasses.replace(cfg, image_hw=hw) if tuple(hw) != tuple(cfg.image_hw) else cfg
    return np.concatenate([ref_model.draw_top(c, 1, np.random.default_rng(s), np.float32) for s in seeds[:n]])


# ------------------------------------------------------------------------------------------------------------
# padding and the tile grid
# ------------------------------------------------------------------------------------------------------------
def _ceil_to(v, f):
    return -(-v // f) * f


def whole_size(hw, sized):
    """The padded size of a whole-picture settle: each side rounded up to a multiple of stride^L, and at least
    the model's training size."""
    return tuple(max(_ceil_to(v, sized.f), t) for v, t in zip(hw, sized.cfg.image_hw))


def reflect_pad(x, before, after):
    """x (C, H, W) reflect-padded by before = (top, left) and after = (bottom, right) (any amounts, also past
    the picture's own size, also for a 1-pixel side)."""
    return np.pad(x, ((0, 0), (before[0], after[0]), (before[1], after[1])), mode="reflect")


def ramp(tile, overlap):
    """The 1-D blending window of a tile: a sin^2 ramp up over the first `overlap` pixels, 1, a cos^2 ramp
    down over the last `overlap`. Two tiles `tile - overlap` apart sum to exactly 1 where they overlap."""
    w = np.ones(tile, np.float64)
    if overlap:
        r = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        w[:overlap] = r
        w[tile - overlap:] = r[::-1]
    return w


@dataclasses.dataclass(frozen=True)
class Grid:
    """Where the tiles of an H x W picture go: the picture sits at (pad_before) in a padded canvas of
    `canvas` pixels; tile k along an axis starts at k * step."""
    hw: tuple
    tile: int
    overlap: int
    pad_before: tuple
    canvas: tuple
    counts: tuple

    @property
    def step(self):
        return self.tile - self.overlap

    @property
    def n(self):
        return self.counts[0] * self.counts[1]

    def origins(self):
        return [(i * self.step, j * self.step) for i in range(self.counts[0]) for j in range(self.counts[1])]


def tile_grid(hw, tile, overlap):
    """The Grid of an H x W picture for square tiles of side `tile` overlapping by `overlap` pixels."""
    pads, canvas, counts = [], [], []
    for v in hw:
        n = max(1, -(-(v + 2 * overlap - tile) // (tile - overlap)) + 1)
        pads.append(overlap)
        canvas.append(tile + (n - 1) * (tile - overlap))
        counts.append(n)
    return Grid(tuple(hw), tile, overlap, tuple(pads), tuple(canvas), tuple(counts))


def check_tiling(sized, tile, overlap):
    """tile and overlap for this model: multiples of stride^L, overlap at most half a tile."""
    f = sized.f
    if sized.cfg.bias == "pixel" and (tile, tile) != tuple(sized.cfg.image_hw):
        raise ApplyError("this model has a bias map (bias='pixel'): its tiles must be its training size, "
                         "%dx%d (--tile %d)" % (sized.cfg.image_hw + sized.cfg.image_hw[:1]))
    if tile < f or tile % f:
        raise ApplyError("--tile %d: a tile side must be a multiple of stride^L = %d (e.g. %d or %d)"
                         % (tile, f, 2 * f, 4 * f))
    if overlap % f or overlap < 0 or 2 * overlap > tile:
        raise ApplyError("--overlap %d: the overlap must be a multiple of stride^L = %d and at most half the "
                         "tile (%d)" % (overlap, f, tile // 2))


def blend_tiles(x, tile, overlap, fn, batch=64, on_tiles=None):
    """Cut x (C, H, W) into the overlapping tiles of tile_grid, map each batch of tiles through
    fn(tiles (n, C, tile, tile), indices) -> (n, C', tile, tile), and blend the results with the window
    (ramp outer ramp), normalised by the summed weights. Returns (C', H, W) float32. on_tiles(n) after each
    batch (a progress bar)."""
    C, H, W = x.shape
    g = tile_grid((H, W), tile, overlap)
    canvas = reflect_pad(np.asarray(x, np.float32), g.pad_before,
                         (g.canvas[0] - H - g.pad_before[0], g.canvas[1] - W - g.pad_before[1]))
    w1 = ramp(tile, overlap)
    win = np.outer(w1, w1).astype(np.float32)
    acc, wsum = None, np.zeros(g.canvas, np.float32)
    origins = g.origins()
    for k0 in range(0, len(origins), batch):
        idx = list(range(k0, min(len(origins), k0 + batch)))
        tiles = np.stack([canvas[:, y:y + tile, x0:x0 + tile] for (y, x0) in (origins[k] for k in idx)])
        out = np.asarray(fn(tiles, idx), np.float32)
        if acc is None:
            acc = np.zeros((out.shape[1],) + g.canvas, np.float32)
        for k, o in zip(idx, out):
            y, x0 = origins[k]
            acc[:, y:y + tile, x0:x0 + tile] += o * win
            wsum[y:y + tile, x0:x0 + tile] += win
        if on_tiles is not None:
            on_tiles(len(idx))
    py, px = g.pad_before
    return np.ascontiguousarray(acc[:, py:py + H, px:px + W] / wsum[py:py + H, px:px + W])


def n_work(hw, method, tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP):
    """Units of work of one picture, for a progress bar: its tiles, or 1 for a whole settle."""
    if method == "whole" or fits_one_tile(hw, tile, overlap):
        return 1
    return tile_grid(hw, tile, overlap).n


def fits_one_tile(hw, tile, overlap):
    return tile_grid(hw, tile, overlap).n == 1


# ------------------------------------------------------------------------------------------------------------
# one picture
# ------------------------------------------------------------------------------------------------------------
def settle_whole(sized, x, rd, seed=0):
    """The whole picture x (C, H, W) at once: reflect-padded at the bottom and right to whole_size, cropped back."""
    C, H, W = x.shape
    hp, wp = whole_size((H, W), sized)
    canvas = reflect_pad(np.asarray(x, np.float32), (0, 0), (hp - H, wp - W))
    net = sized.at((hp, wp))
    out = settle_batch(net, canvas[None], rd, _top(sized.cfg, (hp, wp), 1, [[seed, 0]]))
    return np.ascontiguousarray(out[0, :, :H, :W])


def settle_tiled(sized, x, rd, seed=0, tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP, batch=DEFAULT_BATCH,
                 on_tiles=None):
    """The picture x (C, H, W) in overlapping tiles (blend_tiles), `batch` tiles per settle; the top state of
    tile k is drawn from seed [seed, 1, k], so the result does not depend on the batch size."""
    check_tiling(sized, tile, overlap)
    net = sized.at((tile, tile))
    batch = batch or default_batch(net.backend.name)

    def fn(tiles, idx):
        return settle_batch(net, tiles, rd, _top(sized.cfg, (tile, tile), len(idx), [[seed, 1, k] for k in idx]))
    return blend_tiles(x, tile, overlap, fn, batch, on_tiles)


def settle_image(model, x, task, method=DEFAULT_METHOD, tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP, seed=0,
                 batch=DEFAULT_BATCH, rd=None, sigma=None, T=None, meta=None, on_tiles=None, sized=None):
    """Reconstruct or denoise one picture x (C, H, W) float in [0, 1] (a noisy one a little outside), C the
    model's image channels. Returns float32 (C, H, W), not clipped. A picture that fits in one tile is settled
    whole whatever the method."""
    sized = sized or Sized(model)
    x = np.asarray(x, np.float32)
    if x.ndim != 3 or x.shape[0] != sized.cfg.layer_channels[0]:
        raise ApplyError("expected a picture (C, H, W) with C = %d, got shape %s"
                         % (sized.cfg.layer_channels[0], x.shape))
    if min(x.shape[1:]) < 1:
        raise ApplyError("the picture is empty (%dx%d pixels)" % x.shape[1:])
    if method not in METHODS:
        raise ApplyError("method must be one of %s, got %r" % (", ".join(METHODS), method))
    rd = rd or reading(model, task, sigma, T, meta)
    if method == "tiles":
        check_tiling(sized, tile, overlap)
    if method == "whole" or fits_one_tile(x.shape[1:], tile, overlap):
        out = settle_whole(sized, x, rd, seed)
        if on_tiles is not None:
            on_tiles(1)
        return out
    return settle_tiled(sized, x, rd, seed, tile, overlap, batch, on_tiles)


# ------------------------------------------------------------------------------------------------------------
# memory
# ------------------------------------------------------------------------------------------------------------
def state_floats_per_pixel(cfg):
    """Floats of one layer stack's states per bottom pixel: sum_l C_l / stride^(2l)."""
    return sum(c / cfg.stride ** (2 * l) for l, c in enumerate(cfg.layer_channels))


def memory_estimate(cfg, hw, method, backend=None, tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP,
                    batch=DEFAULT_BATCH):
    """Bytes one picture of hw pixels needs at its peak: the picture and its float32 copies (input, noisy
    input, padded canvas, blend accumulator, output: about 8 arrays of C x H x W), plus the settle's states.
    A settle holds states, predictions and errors (3 buffers); the cpu backend stores 16 lanes per image, and
    the reference's temporaries (the dilated maps) are counted as 4 more buffers."""
    from .backends import resolve
    backend = resolve(backend)                              # None: the default backend
    H, W = hw
    C = cfg.layer_channels[0]
    per_px = 4 * (8 * C + 2)
    lanes = 16 if backend == "cpu" else 1
    buffers = 3 if backend != "numpy" else 7
    if method == "whole":
        hp, wp = (_ceil_to(H, cfg.stride ** cfg.L), _ceil_to(W, cfg.stride ** cfg.L))
        settle = hp * wp * state_floats_per_pixel(cfg) * 4 * buffers * lanes
    else:
        n = min(batch or default_batch(backend), tile_grid(hw, tile, overlap).n)
        settle = _ceil_to(n, lanes) * tile * tile * state_floats_per_pixel(cfg) * 4 * buffers
    return int(H * W * per_px + settle)


def available_memory():
    """Bytes of memory available to this process now (MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
