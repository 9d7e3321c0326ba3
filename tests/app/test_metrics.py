"""Tests for convngc.metrics: skimage as the oracle, hand-computed cases, guards and errors."""
import numpy as np
import pytest

from convngc import metrics as M

skm = pytest.importorskip("skimage.metrics")

RTOL = 1e-6


def _rand_pair(seed=0, shape=(5, 3, 16, 20), noise=0.15):
    rng = np.random.default_rng(seed)
    t = rng.random(shape)
    p = np.clip(t + rng.normal(0.0, noise, shape), 0.0, 1.0)
    return p, t


def _sk_per_image(fn, pred, target, **kw):
    """Apply an skimage metric per image and per channel on the [0,255] scale, average channels."""
    p = np.clip(pred, 0, 1) * 255.0
    t = target * 255.0
    out = np.empty(p.shape[0])
    for i in range(p.shape[0]):
        out[i] = np.mean([fn(t[i, c], p[i, c], **kw) for c in range(p.shape[1])])
    return out


def _sk_ssim(pred, target, **kw):
    """skimage SSIM per image with channel_axis (its own channel averaging)."""
    p = np.clip(pred, 0, 1) * 255.0
    t = target * 255.0
    return np.array([skm.structural_similarity(t[i].transpose(1, 2, 0), p[i].transpose(1, 2, 0),
                                               data_range=255, channel_axis=-1, **kw)
                     for i in range(p.shape[0])])


GAUSS = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


# ------------------------------------------------------------------------- skimage oracle
def test_mse_matches_skimage_random():
    p, t = _rand_pair(1)
    ref = _sk_per_image(skm.mean_squared_error, p, t)
    np.testing.assert_allclose(M.mse(p, t, per_image=True), ref, rtol=RTOL)
    np.testing.assert_allclose(M.mse(p, t), ref.mean(), rtol=RTOL)


def test_psnr_matches_skimage_random():
    p, t = _rand_pair(2)
    ref = _sk_per_image(lambda a, b: skm.peak_signal_noise_ratio(a, b, data_range=255), p, t)
    np.testing.assert_allclose(M.psnr(p, t, per_image=True), ref, rtol=RTOL)
    np.testing.assert_allclose(M.psnr(p, t), ref.mean(), rtol=RTOL)


def test_psnr_is_per_channel_not_pooled():
    # channel errors differ strongly -> mean of per-channel PSNR != PSNR of pooled MSE
    t = np.full((1, 2, 8, 8), 0.5)
    p = t.copy()
    p[0, 0] += 0.01
    p[0, 1] += 0.2
    per_ch = [20 * np.log10(255 / (0.01 * 255)), 20 * np.log10(255 / (0.2 * 255))]
    np.testing.assert_allclose(M.psnr(p, t), np.mean(per_ch), rtol=1e-9)
    pooled = 10 * np.log10(255 ** 2 / M.mse(p, t))
    assert abs(M.psnr(p, t) - pooled) > 1.0


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (3, 1, 11, 11), (2, 2, 15, 24)])
def test_ssim_windowed_gaussian_matches_skimage(shape):
    p, t = _rand_pair(3, shape)
    ref = _sk_ssim(p, t, **GAUSS)
    np.testing.assert_allclose(M.ssim_windowed(p, t, per_image=True), ref, rtol=RTOL)
    np.testing.assert_allclose(M.ssim_windowed(p, t), ref.mean(), rtol=RTOL)


def test_ssim_windowed_uniform_matches_skimage():
    p, t = _rand_pair(4, (3, 3, 20, 17))
    ref = _sk_ssim(p, t, use_sample_covariance=False)  # 7x7 uniform window
    np.testing.assert_allclose(M.ssim_windowed(p, t, gaussian=False, per_image=True), ref, rtol=RTOL)
    ref_default = _sk_ssim(p, t)  # skimage's full default: 7x7 uniform, sample covariance
    got = M.ssim_windowed(p, t, gaussian=False, sample_covariance=True, per_image=True)
    np.testing.assert_allclose(got, ref_default, rtol=RTOL)
    ref5 = _sk_ssim(p, t, win_size=5, use_sample_covariance=False)
    np.testing.assert_allclose(M.ssim_windowed(p, t, gaussian=False, win_size=5, per_image=True),
                               ref5, rtol=RTOL)


def test_ssim_windowed_chunking_invariant():
    p, t = _rand_pair(5, (7, 3, 12, 12))
    a = M.ssim_windowed(p, t, per_image=True)
    b = M.ssim_windowed(p, t, per_image=True, chunk_size=2)
    np.testing.assert_array_equal(a, b)


def test_metrics_match_skimage_on_cifar10(shared_data):
    path = shared_data / "cifar10" / "cifar10_test.npz"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    with np.load(path) as d:
        x = d["x"][:24]
    assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[-1] == 3
    t = x.transpose(0, 3, 1, 2).astype(np.float64) / 255.0
    rng = np.random.default_rng(0)
    p = t + rng.normal(0.0, 0.1, t.shape)  # denoising-task noise, deliberately NOT clipped
    pc = np.clip(p, 0, 1)
    np.testing.assert_allclose(M.ssim_windowed(p, t, per_image=True), _sk_ssim(pc, t, **GAUSS), rtol=RTOL)
    np.testing.assert_allclose(M.mse(p, t, per_image=True),
                               _sk_per_image(skm.mean_squared_error, pc, t), rtol=RTOL)
    np.testing.assert_allclose(
        M.psnr(p, t, per_image=True),
        _sk_per_image(lambda a, b: skm.peak_signal_noise_ratio(a, b, data_range=255), pc, t), rtol=RTOL)
    # the uint8 images themselves on the 0..255 scale as a plain sanity check
    r = M.evaluate_metrics(t, t)
    assert r["mse"] == 0.0 and r["psnr"] == M.PSNR_MAX_DB
    assert r["ssim"] == pytest.approx(1.0) and r["ssim_global"] == pytest.approx(1.0)


# ------------------------------------------------------------------------- ssim_global by hand
def test_ssim_global_identical_is_one():
    p, t = _rand_pair(6)
    assert M.ssim_global(t, t) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(M.ssim_global(t, t, per_image=True), 1.0, atol=1e-12)


def test_ssim_global_constant_images_luminance_only():
    # constant images: variances/covariance are 0, contrast term is C2/C2 = 1
    a, b = 0.2, 0.6
    t = np.full((1, 1, 4, 4), a)
    p = np.full((1, 1, 4, 4), b)
    c1 = (0.01 * 255) ** 2
    ma, mb = a * 255, b * 255
    expected = (2 * ma * mb + c1) / (ma ** 2 + mb ** 2 + c1)
    assert M.ssim_global(p, t) == pytest.approx(expected, rel=1e-12)


def test_ssim_global_constant_offset():
    # p = t + d: same variance, cov = var -> contrast/structure term is exactly 1
    t = np.array([[[[0.1, 0.3], [0.5, 0.7]]]])
    d = 0.2
    p = t + d
    mx = t.mean() * 255
    my = p.mean() * 255
    c1 = (0.01 * 255) ** 2
    expected = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
    assert M.ssim_global(p, t) == pytest.approx(expected, rel=1e-12)


def test_ssim_global_known_value():
    # 2x2 single channel, hand computation with population statistics
    t = np.array([[[[0.0, 1.0], [0.0, 1.0]]]])
    p = np.array([[[[0.0, 0.0], [1.0, 1.0]]]])  # uncorrelated with t: cov = 0
    Q = 255.0
    c1, c2 = (0.01 * Q) ** 2, (0.03 * Q) ** 2
    mu = 0.5 * Q
    var = 0.25 * Q ** 2
    expected = ((2 * mu * mu + c1) * (0 + c2)) / ((2 * mu * mu + c1) * (2 * var + c2))
    assert M.ssim_global(p, t) == pytest.approx(expected, rel=1e-12)
    # anti-correlated -> negative
    assert M.ssim_global(1.0 - t, t) < 0
    # sample covariance variant: divide by n-1 = 3
    var_s = var * 4 / 3
    exp_s = c2 / (2 * var_s + c2)
    assert M.ssim_global(p, t, sample_covariance=True) == pytest.approx(exp_s, rel=1e-12)


def test_ssim_global_differs_from_windowed_and_matches_single_window():
    p, t = _rand_pair(7, (2, 3, 16, 16))
    g = M.ssim_global(p, t, per_image=True)
    w = M.ssim_windowed(p, t, per_image=True)
    assert not np.allclose(g, w)
    # a uniform window covering the whole image (odd size) is the global statistic at the centre
    p9, t9 = _rand_pair(8, (2, 3, 9, 9))
    ref = []
    for i in range(2):
        vals = []
        for c in range(3):
            _, S = skm.structural_similarity(t9[i, c] * 255, np.clip(p9[i, c], 0, 1) * 255,
                                             data_range=255, win_size=9, full=True,
                                             use_sample_covariance=False)
            vals.append(S[4, 4])  # window centred at the middle sees exactly the whole image
        ref.append(np.mean(vals))
    np.testing.assert_allclose(M.ssim_global(p9, t9, per_image=True), ref, rtol=1e-9)


# ------------------------------------------------------------------------- guards, scaling, clip
def test_psnr_guard_identical_images():
    p, t = _rand_pair(9)
    assert M.psnr(t, t) == M.PSNR_MAX_DB == 100.0
    assert M.psnr(t, t, max_db=60.0) == 60.0
    v = M.psnr(t, t, per_image=True)
    assert np.all(np.isfinite(v)) and np.all(v == 100.0)
    # one channel identical, another not: cap applies per channel
    q = t.copy()
    q[:, 1] = np.clip(q[:, 1] + 0.1, 0, 1)
    v = M.psnr(q, t, per_image=True)
    assert np.all(np.isfinite(v)) and np.all(v < 100.0)


def test_clipping_of_predictions():
    t = np.full((1, 1, 16, 16), 1.0)
    p = np.full((1, 1, 16, 16), 1.7)  # out of range, clipped to 1 -> identical
    assert M.mse(p, t) == 0.0
    assert M.psnr(p, t) == M.PSNR_MAX_DB
    assert M.ssim_windowed(p, t) == pytest.approx(1.0)
    assert M.mse(p, t, clip=False) == pytest.approx((0.7 * 255) ** 2)
    neg = np.full((1, 1, 8, 8), -0.5)
    assert M.mse(neg, np.zeros_like(neg)) == 0.0
    # clipping does not modify the caller's array
    assert np.all(p == 1.7)


def test_scale_convention():
    p, t = _rand_pair(10)
    assert M.mse(p, t) == pytest.approx(255 ** 2 * M.mse(p, t, scale=None), rel=1e-12)
    # PSNR and SSIM are scale invariant when Q scales with the data
    assert M.psnr(p, t) == pytest.approx(M.psnr(p, t, scale=None), rel=1e-12)
    assert M.ssim_windowed(p, t) == pytest.approx(M.ssim_windowed(p, t, scale=None), rel=1e-9)
    assert M.ssim_global(p, t) == pytest.approx(M.ssim_global(p, t, scale=None), rel=1e-9)


def test_float32_input_ok():
    p, t = _rand_pair(11)
    assert M.ssim_windowed(p.astype(np.float32), t.astype(np.float32)) == pytest.approx(
        M.ssim_windowed(p.astype(np.float32).astype(np.float64),
                        t.astype(np.float32).astype(np.float64)), rel=1e-12)


def test_evaluate_metrics_keys_and_consistency():
    p, t = _rand_pair(12)
    r = M.evaluate_metrics(p, t)
    assert set(r) == {"mse", "psnr", "ssim_global", "ssim"}
    assert all(isinstance(v, float) for v in r.values())
    assert r["mse"] == M.mse(p, t)
    assert r["psnr"] == M.psnr(p, t)
    assert r["ssim"] == M.ssim_windowed(p, t)
    assert r["ssim_global"] == M.ssim_global(p, t)
    rp = M.evaluate_metrics(p, t, per_image=True)
    assert all(v.shape == (p.shape[0],) for v in rp.values())


def test_mean_std():
    res = [{"mse": 1.0, "ssim": 0.5}, {"mse": 3.0, "ssim": 0.7}]
    out = M.mean_std(res)
    assert out["mse"] == (2.0, 1.0)
    assert out["ssim"][0] == pytest.approx(0.6) and out["ssim"][1] == pytest.approx(0.1)
    out1 = M.mean_std(res, ddof=1)
    assert out1["mse"][1] == pytest.approx(np.sqrt(2.0))
    with pytest.raises(ValueError, match="at least one"):
        M.mean_std([])
    with pytest.raises(ValueError, match="keys"):
        M.mean_std([{"mse": 1.0}, {"psnr": 2.0}])


# ------------------------------------------------------------------------- errors
FUNCS = [M.mse, M.psnr, M.ssim_global, M.ssim_windowed, M.evaluate_metrics]


@pytest.mark.parametrize("fn", FUNCS)
def test_shape_mismatch(fn):
    with pytest.raises(ValueError, match="shape mismatch"):
        fn(np.zeros((2, 3, 16, 16)), np.zeros((2, 3, 16, 15)))


@pytest.mark.parametrize("fn", FUNCS)
def test_not_4d(fn):
    with pytest.raises(ValueError, match=r"pred must be a 4-D NCHW"):
        fn(np.zeros((3, 16, 16)), np.zeros((1, 3, 16, 16)))
    with pytest.raises(ValueError, match=r"target must be a 4-D NCHW"):
        fn(np.zeros((1, 3, 16, 16)), np.zeros((16, 16)))


@pytest.mark.parametrize("fn", FUNCS)
def test_nonfinite_named(fn):
    bad = np.zeros((1, 1, 16, 16))
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"pred contains non-finite values \(1 NaN"):
        fn(bad, np.zeros_like(bad))
    inf = np.zeros((1, 1, 16, 16))
    inf[0, 0, 3, 3] = np.inf
    with pytest.raises(ValueError, match=r"target contains non-finite values \(0 NaN, 1 Inf"):
        fn(np.zeros_like(inf), inf)


def test_integer_and_empty_rejected():
    with pytest.raises(ValueError, match="floating-point"):
        M.mse(np.zeros((1, 1, 4, 4), dtype=np.uint8), np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="empty"):
        M.mse(np.zeros((0, 1, 4, 4)), np.zeros((0, 1, 4, 4)))


def test_ssim_window_too_large():
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        M.ssim_windowed(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 8)))  # 11x11 gaussian window
    with pytest.raises(ValueError, match="odd"):
        M.ssim_windowed(np.zeros((1, 1, 8, 8)), np.zeros((1, 1, 8, 8)), gaussian=False, win_size=4)


# -- PSNR conventions where a target channel is all zero (Color-MNIST) ------------------------------------
def _one_channel_digits(n=4, seed=0):
    """Targets drawn in one colour channel (as Color-MNIST's digits): the other two are all zero."""
    rng = np.random.default_rng(seed)
    t = np.zeros((n, 3, 16, 16))
    for i in range(n):
        t[i, i % 2, 4:12, 6:10] = rng.uniform(0.5, 1.0, (8, 4))
    return t


def test_per_channel_psnr_rewards_a_black_image_and_all_channels_does_not():
    t = _one_channel_digits()
    black = np.zeros_like(t)
    good = np.clip(t + np.random.default_rng(1).normal(0, 0.05, t.shape), 0, 1)   # noise in every channel
    assert M.psnr(black, t) > 60 > M.psnr(good, t)          # Eq. 6: the black image "wins"
    assert M.psnr(black, t, channels="all") < 20 < M.psnr(good, t, channels="all")
    # channels="all": per image 20 log10(255 / RMSE over C*H*W), then the mean over images
    want = np.mean([20 * np.log10(255 / np.sqrt(np.mean(((good[i] - t[i]) * 255) ** 2))) for i in range(len(t))])
    assert M.psnr(good, t, channels="all") == pytest.approx(want, rel=1e-12)
    assert M.psnr(t, t, channels="all") == M.PSNR_MAX_DB
    with pytest.raises(ValueError, match="channels must be"):
        M.psnr(good, t, channels="pooled")


def test_psnr_of_mse_ranks_as_the_mse_does():
    t = _one_channel_digits()
    black = np.zeros_like(t)
    good = np.clip(t + np.random.default_rng(1).normal(0, 0.05, t.shape), 0, 1)
    for out in (black, good):
        assert M.psnr_of_mse(M.mse(out, t)) == pytest.approx(10 * np.log10(255.0 ** 2 / M.mse(out, t)))
    assert M.psnr_of_mse(M.mse(good, t)) > M.psnr_of_mse(M.mse(black, t))
    assert M.psnr_of_mse(0.0) == M.PSNR_MAX_DB and M.psnr_of_mse(1e-30) == M.PSNR_MAX_DB
    with pytest.raises(ValueError):
        M.psnr_of_mse(float("nan"))


def test_one_trial_has_no_spread():
    assert M.format_mean_std(1.23456, 0.0, 1, 2) == "1.23"
    assert M.format_mean_std(1.23456, 0.1, 5, 3) == "1.235 ± 0.100"
    assert M.format_mean_std(1.0, 0.5, 2, 1, " +/- ") == "1.0 +/- 0.5"
