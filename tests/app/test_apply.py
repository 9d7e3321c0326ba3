"""Whole pictures (convngc/apply.py): the tile grid and its blend, the agreement of tiles and the whole map where
they must agree, the denoising reading at another noise level, the noise estimate (issue 16)."""
import dataclasses

import numpy as np
import pytest

from convngc import apply
from convngc.model import ConvNGC
from ngc_ref.config import Config

SIZES = [(1, 1), (5, 7), (20, 30), (32, 32), (33, 47), (64, 64), (70, 101), (130, 70)]


# ------------------------------------------------------------------------------------------------ the grid and the blend
@pytest.mark.parametrize("tile,overlap", [(32, 16), (64, 16), (64, 32), (128, 32), (48, 16), (64, 0)])
@pytest.mark.parametrize("hw", SIZES)
def test_the_grid_covers_the_picture_with_weights_summing_to_one(hw, tile, overlap):
    g = apply.tile_grid(hw, tile, overlap)
    w1 = apply.ramp(tile, overlap)
    for axis in range(2):
        cover = np.zeros(g.canvas[axis])
        for k in range(g.counts[axis]):
            cover[k * g.step:k * g.step + tile] += w1
        inside = cover[g.pad_before[axis]:g.pad_before[axis] + hw[axis]]
        np.testing.assert_allclose(inside, 1.0, atol=1e-12)        # a partition of unity over the picture
        assert g.canvas[axis] == tile + (g.counts[axis] - 1) * g.step
        # minimal: one tile fewer would not reach the picture's end plus the last ramp
        assert (g.counts[axis] - 2) * g.step + tile < hw[axis] + 2 * overlap or g.counts[axis] == 1
    for y, x in g.origins():                                           # tiles on the stride^L grid of the picture
        assert (y - g.pad_before[0]) % 16 == 0 and (x - g.pad_before[1]) % 16 == 0


@pytest.mark.parametrize("hw", SIZES)
def test_blending_identity_tiles_gives_back_the_picture(hw):
    x = np.random.default_rng(0).random((3,) + hw, dtype=np.float32)
    out = apply.blend_tiles(x, 32, 16, lambda t, idx: t, batch=7)
    np.testing.assert_allclose(out, x, atol=2e-7)


def test_blend_has_no_seam_where_tiles_disagree():
    """Each tile shifted by its own constant: the blend stays between the constants and moves from one to the next
    no faster than the window's ramp; without overlap it jumps by the whole difference (the control)."""
    x = np.zeros((1, 150, 170), np.float32)
    shift = np.random.default_rng(1).uniform(-1, 1, 1000).astype(np.float32)

    def fn(t, idx):
        return t + shift[idx][:, None, None, None]
    for overlap in (16, 32):
        out = apply.blend_tiles(x, 64, overlap, fn, batch=5)[0]
        n = apply.tile_grid(x.shape[1:], 64, overlap).n
        lo, hi = shift[:n].min(), shift[:n].max()
        assert out.min() >= lo - 1e-6 and out.max() <= hi + 1e-6
        steepest = np.pi / (2 * overlap) * 1.0001             # max slope of sin^2 over `overlap` pixels
        step = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
        assert step <= (hi - lo) * steepest * 2 + 1e-6         # two ramps (rows and columns) at a corner
    hard = apply.blend_tiles(x, 64, 0, fn)[0]
    assert max(np.abs(np.diff(hard, axis=0)).max(), np.abs(np.diff(hard, axis=1)).max()) > 0.2


# ------------------------------------------------------------------------------------------------ tiles and the whole map
def _model(kernel=3, sigma_z=0.05, backend="cpu", channels=(2, 3, 4, 5, 3), T=3, **kw):
    return ConvNGC(Config(channels=channels, kernel=kernel, sigma_z=sigma_z, T=T, **kw), backend=backend, seed=1)


@pytest.mark.parametrize("task", ["reconstruct", "denoise"])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_tiles_equal_the_whole_map_for_a_pointwise_model(task, backend):
    """With 1x1 filters and a constant top state (sigma_z = 0) every pixel settles on its own: tiles and the whole
    map must agree to rounding; a tile placed off the stride^L grid, or a wrong blend, would not."""
    m = _model(kernel=1, sigma_z=0.0, backend=backend)
    x = np.random.default_rng(0).random((3, 70, 101), dtype=np.float32)
    whole = apply.settle_image(m, x, task, "whole")
    assert np.abs(whole - x).mean() > 0.05                    # the model does change the picture
    for tile, overlap in ((32, 16), (64, 16), (48, 16)):
        tiled = apply.settle_image(m, x, task, "tiles", tile=tile, overlap=overlap, batch=5)
        np.testing.assert_allclose(tiled, whole, atol=1e-5)


@pytest.mark.parametrize("hw", [(1, 1), (5, 7), (20, 30), (32, 32), (30, 17)])
def test_a_picture_within_one_tile_is_settled_whole(hw):
    m = _model()
    x = np.random.default_rng(2).random((3,) + hw, dtype=np.float32)
    a = apply.settle_image(m, x, "denoise", "tiles", seed=3)
    b = apply.settle_image(m, x, "denoise", "whole", seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and np.isfinite(a).all()


def test_a_32x32_picture_is_the_models_own_settle():
    """The whole map of a picture of the training size is exactly the model's own settle with the same z^L."""
    from ngc_ref import model as ref_model
    m = _model()
    x = np.random.default_rng(3).random((3, 32, 32), dtype=np.float32)
    out = apply.settle_image(m, x, "reconstruct", "whole", seed=5)
    z_top = ref_model.draw_top(m.cfg, 1, np.random.default_rng([5, 0]), np.float32)
    res = m.settle(x[None], z_top=z_top)
    np.testing.assert_array_equal(out, res.zbar[0][0])


def test_tiles_do_not_depend_on_the_batch_size():
    m = _model()
    x = np.random.default_rng(4).random((3, 100, 90), dtype=np.float32)
    a = apply.settle_image(m, x, "denoise", "tiles", tile=32, overlap=16, batch=64)
    b = apply.settle_image(m, x, "denoise", "tiles", tile=32, overlap=16, batch=3)
    np.testing.assert_array_equal(a, b)


def test_tiles_use_the_lanes_of_the_cpu_backend(monkeypatch):
    """A single picture in tiles reaches the backend as batches of many tiles (16 per SIMD lane group), not one
    image at a time."""
    from ngc_cpu import model as cpu_model
    seen = []
    real = cpu_model.settle

    def spy(params, x, *a, **k):
        seen.append(x.shape[0])
        return real(params, x, *a, **k)
    monkeypatch.setattr(cpu_model, "settle", spy)
    m = _model()
    x = np.random.default_rng(5).random((3, 200, 300), dtype=np.float32)
    apply.settle_image(m, x, "reconstruct", "tiles", tile=64, overlap=16, batch=32)
    assert apply.tile_grid((200, 300), 64, 16).n == 35 and seen == [32, 3]


def test_bad_tilings_are_refused():
    m = _model()
    x = np.zeros((3, 100, 100), np.float32)
    for tile, overlap in ((40, 16), (64, 8), (64, 48), (8, 0)):
        with pytest.raises(apply.ApplyError):
            apply.settle_image(m, x, "reconstruct", "tiles", tile=tile, overlap=overlap)


def test_a_pixel_bias_model_settles_only_its_own_size():
    m = _model(bias="pixel")
    x = np.random.default_rng(6).random((3, 50, 70), dtype=np.float32)
    out = apply.settle_image(m, x, "reconstruct", "tiles", tile=32, overlap=16)
    assert out.shape == x.shape
    with pytest.raises(apply.ApplyError, match="bias"):
        apply.settle_image(m, x, "reconstruct", "whole")
    with pytest.raises(apply.ApplyError, match="bias"):
        apply.settle_image(m, x, "reconstruct", "tiles", tile=64, overlap=16)


# ------------------------------------------------------------------------------------------------ the reading and the noise level
def test_reading_follows_the_model_and_rescales_with_sigma():
    m = _model(T=10, pi0=0.1, T_denoise=40)
    rd = apply.reading(m, "denoise")
    assert (rd.T, rd.pi0, rd.sigma, rd.clamp) == (40, 0.1, 0.1, "always")
    assert apply.reading(m, "denoise", sigma=0.1) == rd
    half = apply.reading(m, "denoise", sigma=0.2)                 # 2x the noise: a quarter of the precision
    assert half.pi0 == pytest.approx(0.025) and half.T == 160
    low = apply.reading(m, "denoise", sigma=0.02)                 # far less noise: pi0 capped at 1, T at least T
    assert low.pi0 == 1.0 and low.T == 10
    meta = {"denoise_tuning": {"noise_std": 0.05}}
    assert apply.reading(m, "denoise", meta=meta).sigma == 0.05
    assert apply.reading(m, "denoise", sigma=0.1, meta=meta).pi0 == pytest.approx(0.025)
    assert apply.reading(m, "denoise", sigma=100.0).T == apply.MAX_T
    rec = apply.reading(m, "reconstruct")
    assert (rec.T, rec.pi0, rec.clamp) == (10, 1.0, "always")
    assert rd.momentum == 0.0
    m.cfg = dataclasses.replace(m.cfg, momentum=0.9)               # heavy ball: steps ~ sqrt(1 / pi0)
    quick = apply.reading(m, "denoise", sigma=0.2)
    assert quick.momentum == 0.9 and quick.pi0 == pytest.approx(0.025) and quick.T == 80
    assert apply.reading(m, "denoise", sigma=0.02).T == 13          # 40 x sqrt(0.1 / 1), at least T / 4
    m.cfg = dataclasses.replace(m.cfg, denoise="clamped")          # Algorithm 1: no precision to rescale
    assert apply.reading(m, "denoise", sigma=0.3).pi0 == 1.0 and apply.reading(m, "denoise").momentum == 0.0
    with pytest.raises(apply.ApplyError):
        apply.reading(m, "denoise", sigma=-1)


def test_an_explicit_T_is_a_budget_with_the_tuned_precision_for_it():
    m = _model(T=10, pi0=0.05, T_denoise=80)
    table = [{"pi0": 0.25, "T": 10, "mse": 30.0}, {"pi0": 0.1, "T": 10, "mse": 25.0}, {"pi0": 0.1, "T": 20, "mse": 21.0},
             {"pi0": 0.05, "T": 20, "mse": 23.0}, {"pi0": 0.05, "T": 80, "mse": 18.0}]
    meta = {"denoise_tuning": {"noise_std": 0.1, "table": table}}
    assert apply.reading(m, "denoise", meta=meta).pi0 == 0.05
    rd = apply.reading(m, "denoise", T=20, meta=meta)
    assert (rd.T, rd.pi0) == (20, 0.1)
    assert apply.reading(m, "denoise", T=15, meta=meta).pi0 == 0.1       # the best of the rows within 15 steps
    assert apply.reading(m, "denoise", T=5, meta=meta).pi0 == 0.1        # none within: the fewest steps' best
    assert apply.reading(m, "denoise", T=500, meta=meta).pi0 == 0.05
    assert apply.reading(m, "denoise", T=20).pi0 == 0.05                 # no table: the model's own pi0
    both = apply.reading(m, "denoise", T=20, sigma=0.2, meta=meta)       # the budget's pi0, rescaled; T kept
    assert (both.T, both.pi0) == (20, pytest.approx(0.025))


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1, 0.2])
def test_noise_estimate(sigma):
    yy, xx = np.mgrid[0:256, 0:256] / 256.0
    clean = np.stack([0.5 + 0.3 * np.sin(6 * xx + 3 * yy), 0.4 + 0.2 * xx, 0.6 - 0.3 * yy]).astype(np.float32)
    noisy = clean + np.random.default_rng(7).normal(0, sigma, clean.shape)
    assert apply.estimate_noise(noisy) == pytest.approx(sigma, rel=0.1)
    assert apply.estimate_noise(clean) < 0.005


def test_memory_estimate_grows_with_the_picture_and_the_whole_map_costs_more():
    cfg = Config()
    small = apply.memory_estimate(cfg, (512, 768), "tiles")
    big = apply.memory_estimate(cfg, (20000, 30000), "tiles")
    assert 4 * 512 * 768 * 3 < small < 1e9 and big > 100 * small
    assert apply.memory_estimate(cfg, (4000, 6000), "whole") > 10 * apply.memory_estimate(cfg, (4000, 6000), "tiles")
