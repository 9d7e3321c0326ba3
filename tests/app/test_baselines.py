"""convngc/baselines.py: the classical denoisers (tuned on validation images only) and the FC-NGC wrapper."""
import numpy as np
import pytest

from convngc import baselines, metrics
from ngc_ref import fc


@pytest.fixture(scope="module")
def images():
    """Smooth 32x32 colour images (blurred noise): structure a denoiser can keep while it removes noise."""
    from scipy import ndimage
    rng = np.random.default_rng(0)
    x = ndimage.gaussian_filter(rng.random((6, 3, 32, 32)), sigma=(0, 0, 2, 2))
    x = (x - x.min()) / (x.max() - x.min())
    return x.astype(np.float32), (x + rng.normal(0, 0.1, x.shape)).astype(np.float32)


@pytest.mark.parametrize("name", ["tv", "nlm", "bm3d"])
def test_classical_denoisers_denoise_and_tune_on_the_grid(images, name):
    if name == "bm3d" and not baselines.bm3d_available():
        pytest.skip("the bm3d package is not installed (pip install .[baselines]); BM3D is untested, NOT a pass")
    x, noisy = images
    den = baselines.ClassicalDenoiser(name)
    with pytest.raises(ValueError, match="call tune"):
        den.output(noisy)
    info = den.tune(x[:3], noisy[:3], log=lambda s: None)
    scores = {p: metrics.mse(den.output(noisy[:3], p), x[:3]) for p in den.grid}
    assert info["value"] == den.param == min(scores, key=scores.get)      # the grid's best on these images
    out = den.output(noisy[3:])
    assert out.shape == noisy[3:].shape and out.dtype == np.float32
    assert metrics.mse(out, x[3:]) < 0.5 * metrics.mse(noisy[3:], x[3:])  # on images it was not tuned on


def test_unknown_denoiser_is_named():
    with pytest.raises(ValueError, match="unknown classical denoiser 'wiener'"):
        baselines.ClassicalDenoiser("wiener")


def test_fc_ngc_model_learns_and_is_repeatable():
    cfg = fc.FCConfig(hidden=(16, 16), image_shape=(3, 8, 8), T=10)
    x = np.random.default_rng(1).random((20, 3, 8, 8)).astype(np.float32)
    m = baselines.FCNGCModel(cfg, seed=0)
    w0 = m.params["W"][1].copy()
    hist = m.fit(x, x[:5], epochs=2, batch_size=10, log=lambda s: None)
    assert len(hist["val_mse"]) == 2 and not np.array_equal(w0, m.params["W"][1])
    a = m.output(x[:4], seed=3)
    assert a.shape == (4, 3, 8, 8) and np.array_equal(a, m.output(x[:4], seed=3))
    assert not np.array_equal(m.output(x[:4], clamp="first", seed=3), a)
    assert baselines.FCNGCModel(seed=0).n_parameters == 738072
