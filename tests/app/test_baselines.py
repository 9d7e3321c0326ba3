"""convngc/experiments/baselines.py: the classical denoisers (tuned on validation images only) and the FC-NGC wrapper."""
import numpy as np
import pytest

from convngc import metrics
from convngc.experiments import baselines
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


def test_residual_model_runs_on_the_cpu_backend_and_matches_the_reference():
    """ResidualConvNGC picks the cpu backend (Numba is installed for the tests) and keeps the reference
    selectable: from one seed both start from the same parameters and draws, learn the same update and
    reconstruct the same images, up to float32 rounding."""
    from ngc_cpu import residual as cpu_residual
    from ngc_ref import residual
    from ngc_ref.config import Config
    from tolerances import TOL, assert_close
    cfg = residual.ResidualConfig(base=Config(channels=(4, 5, 3), image_hw=(8, 8), T=5))
    x = np.random.default_rng(2).random((20, 3, 8, 8)).astype(np.float32)
    fast, ref = baselines.ResidualConvNGC(cfg, seed=0), baselines.ResidualConvNGC(cfg, seed=0, backend="numpy")
    assert fast.backend == "cpu" and fast.mod is cpu_residual and ref.mod is residual
    assert baselines.residual_backend("cuda") == baselines.residual_backend("cpu") == "cpu"
    assert baselines.residual_backend("numpy") == "numpy"
    for m in (fast, ref):
        m.fit(x, x[:4], epochs=1, batch_size=10, log=lambda s: None)
    for l in (1, 2):
        assert_close(fast.params["S"][l], ref.params["S"][l], **TOL["settled"], name="S^%d after 2 updates" % l)
        for a, b in zip(fast.params["W"][l], ref.params["W"][l]):
            assert_close(a, b, **TOL["settled"], name="W^%d after 2 updates" % l)
    for clamp in ("always", "first"):
        out = fast.output(x[:6], clamp=clamp, seed=3)
        assert out.dtype == np.float32 and out.shape == (6, 3, 8, 8)
        assert_close(out, ref.output(x[:6], clamp=clamp, seed=3), **TOL["settled"], name="output, clamp " + clamp)
    with pytest.raises(ValueError, match="backend must be one of"):
        baselines.ResidualConvNGC(cfg, backend="cuda")
    with pytest.raises(TypeError, match="float32 or float64"):
        baselines.ResidualConvNGC(cfg, dtype=np.float16)


def test_the_residual_settle_probe_measures_every_reading_and_leaves_the_model_as_printed(shared_data, tmp_path):
    """bench/residual_settle.py (results/README.md, "Residual Conv-NGC"): every reading starts from the same
    states, the skip feedback is the steeper descent at first, the model's Eq. 8 is restored afterwards, and
    at beta 0.025 the exact gradient (feedback="gradient") descends faster than the printed Eq. 8."""
    import importlib.util
    import json
    from ngc_ref import residual
    from helpers import REPO
    spec = importlib.util.spec_from_file_location("residual_settle", REPO / "bench" / "residual_settle.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    printed = residual.corrections
    out = tmp_path / "settle.json"
    probe.main(["--T", "6", "--beta", "0.1", "--images", "2", "--data-dir", str(shared_data), "--json", str(out)])
    assert residual.corrections is printed
    rows = json.loads(out.read_text())["rows"]
    assert [r["reading"] for r in rows] == ["as printed", "with skip feedback", "gradient"]
    a, b, g = (r["energy"] for r in rows)
    assert len(a) == len(b) == len(g) == 7 and a[0] == b[0] == g[0]
    assert b[5] < 0.9 * a[5]
    probe.main(["--T", "6", "--beta", "0.025", "--images", "2", "--readings", "as printed", "gradient",
                "--data-dir", str(shared_data), "--json", str(out)])
    a, g = (r["energy"] for r in json.loads(out.read_text())["rows"])
    assert a[0] == g[0] and g[6] < 0.95 * a[6]
