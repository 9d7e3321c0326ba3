"""ngc_cuda.settle_whole (kernels/ngc_settle.cu, ngc_settle_v1) against ngc_ref.model.settle.

The whole of Algorithm 1 runs in one launch, so a wrong index or a missing barrier shows up as a
trajectory that drifts away from the float64 reference. Inputs are drawn in float32 and upcast for the
reference. Step 1's energy is checked tightly (it depends only on the ancestral pass and one predict),
the rest after T steps. On a machine with a GPU the kernel runs there (CuPy arrays); otherwise on the CPU
emulation of the same .cu file, where the thread order can be reversed or shuffled to expose a missing
__syncthreads().
"""
import numpy as np
import pytest

from ngc_ref import model
from ngc_ref.config import Config
from ngc_cuda import settle_whole as sw

try:                                              # the shared float32 tolerance table (STYLE.md section 5)
    from tolerances import TOL as _TOL
except ImportError:                               # not there: the same numbers, defined here
    _TOL = {}
# step-1 energy: one ancestral pass + one predict (the table's "step", 1e-5 / 1e-5)
TOL_STEP1 = _TOL.get("step", dict(rtol=1e-5, atol=1e-5))
# after T settling steps (STYLE.md: 1e-3 / 1e-4)
TOL_SETTLED = _TOL.get("settled", dict(rtol=1e-3, atol=1e-4))

try:
    import cupy as cp
    GPU = bool(cp.cuda.is_available())
except Exception:                                 # no CuPy or no driver: emulate
    cp, GPU = None, False

PAPER = Config()                                  # channels (10,15,20,25,3), 32x32, K 3, s 2, T 60
AWKWARD = Config(channels=(4, 5, 2), image_hw=(12, 20), kernel=5, stride=2)       # 3x5 -> 6x10 -> 12x20
K1 = Config(channels=(3, 4, 2), image_hw=(8, 12), kernel=1, stride=2)
STRIDE1 = Config(channels=(3, 2), image_hw=(5, 7), kernel=3, stride=1)            # odd sides, no stride
K2S3 = Config(channels=(2, 3, 1), image_hw=(9, 18), kernel=2, stride=3)           # even K, stride 3


def assert_close(actual, desired, rtol, atol, what=""):
    """np.testing-style check that reports max abs diff, max rel diff and the worst index."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    assert actual.shape == desired.shape, "%s: shape %s vs %s" % (what, actual.shape, desired.shape)
    diff = np.abs(actual - desired)
    bad = ~(diff <= atol + rtol * np.abs(desired))                   # NaN counts as a mismatch
    if bad.any():
        rel = diff / np.maximum(np.abs(desired), 1e-300)
        worst = np.unravel_index(np.argmax(np.nan_to_num(diff - rtol * np.abs(desired), nan=np.inf)), diff.shape)
        raise AssertionError("%s: %d of %d elements differ; max |diff| %.3g, max rel %.3g; worst at %s: %r vs %r"
                             % (what, bad.sum(), bad.size, diff.max(), rel.max(), worst,
                                actual[worst], desired[worst]))


def make_problem(cfg, B, seed, learn_E=False, bias=True):
    """float32 params (biases nonzero so they are tested), image in [0, 1], z^L from draw_top."""
    rng = np.random.default_rng(seed)
    p = model.init_params(cfg, rng)
    if bias:
        p["b"] = [None] + [(0.1 * rng.standard_normal(b.shape)).astype(np.float32) for b in p["b"][1:]]
    if learn_E:                                   # E different from W, so reading the wrong one shows
        p["E"] = [None] + [(cfg.w_std * rng.standard_normal(w.shape)).astype(np.float32) for w in p["W"][1:]]
    else:
        p["E"] = None
    x = rng.random((B, cfg.layer_channels[0]) + cfg.map_hw(0), dtype=np.float32)
    z_top = model.draw_top(cfg, B, rng)
    return p, x, z_top


def upcast(p):
    return {k: None if v is None else [None if a is None else a.astype(np.float64) for a in v] for k, v in p.items()}


def run_kernel(p, x, cfg, z_top, **kw):
    """settle_whole on the GPU (CuPy arrays) when there is one, else emulated; NumPy results either way."""
    if GPU:
        kw.pop("order", None)
        to = lambda v: None if v is None else [None if a is None else cp.asarray(a) for a in v]  # noqa: E731
        res = sw.settle_whole({k: to(v) for k, v in p.items()}, cp.asarray(x), cfg, cp.asarray(z_top), **kw)
        get = cp.asnumpy
    else:
        res = sw.settle_whole(p, x, cfg, z_top, **kw)
        get = np.asarray
    return model.SettleResult([get(a) for a in res.z], [get(a) for a in res.zbar], [get(a) for a in res.e],
                              get(res.energy))


def check_against_ref(cfg, B=2, seed=0, T=None, clamp="always", learn_E=False, **kw):
    p, x, z_top = make_problem(cfg, B, seed, learn_E)
    out = run_kernel(p, x, cfg, z_top, T=T, clamp=clamp, **kw)
    ref = model.settle(upcast(p), x.astype(np.float64), cfg, z_top.astype(np.float64), T=T, clamp=clamp)
    T = cfg.T if T is None else T
    assert out.energy.shape == (T + 1, B) and out.energy.dtype == np.float32
    assert_close(out.energy[0], ref.energy[0], what="energy before step 1", **TOL_STEP1)
    assert_close(out.energy, ref.energy, what="energy trace", **TOL_SETTLED)
    for l in range(cfg.L + 1):
        assert out.z[l].shape == ref.z[l].shape and out.z[l].dtype == np.float32
        assert_close(out.z[l], ref.z[l], what="z^%d" % l, **TOL_SETTLED)
        assert_close(out.e[l], ref.e[l], what="e^%d" % l, **TOL_SETTLED)
    for l in range(cfg.L):
        assert_close(out.zbar[l], ref.zbar[l], what="zbar^%d" % l, **TOL_SETTLED)
    if clamp == "always":
        np.testing.assert_array_equal(out.z[0], x)                      # clamped: untouched, bit for bit
    return out, ref


# ---- the paper's configuration, full T = 60 --------------------------------------------------------

@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_settle_whole_paper_config_matches_ref(order):
    check_against_ref(PAPER, B=2, order=order)


def test_settle_whole_denoising_frees_bottom():
    out, ref = check_against_ref(PAPER, B=2, seed=1, clamp="first")
    assert not np.array_equal(out.z[0], ref.z[0] * 0)                   # z^0 moved off the noisy image


def test_settle_whole_pcn():
    check_against_ref(Config(pcn=True), B=2, seed=2)


def test_settle_whole_learnable_error_filters():
    check_against_ref(Config(learn_E=True), B=2, seed=3)


# ---- small awkward shapes ---------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [AWKWARD, K1, STRIDE1, K2S3], ids=["K5_12x20", "K1", "stride1_5x7", "K2_s3"])
@pytest.mark.parametrize("clamp", ["always", "first"])
def test_settle_whole_small_configs(cfg, clamp):
    check_against_ref(cfg, B=3, seed=4, T=25, clamp=clamp)


@pytest.mark.skipif(GPU, reason="thread order is an emulator setting")
@pytest.mark.parametrize("cfg", [AWKWARD, Config(channels=(4, 5, 2), image_hw=(8, 8), pcn=True)],
                         ids=["K5_12x20", "pcn_8x8"])
def test_settle_whole_shuffled_thread_order(cfg):
    check_against_ref(cfg, B=2, seed=5, T=12, clamp="first", learn_E=True, order="shuffle")


@pytest.mark.parametrize("threads", [32, 96, 1024])
def test_settle_whole_block_sizes(threads):
    """Any multiple of 32 works: each layer's items are strided over the block, partial warps included."""
    check_against_ref(AWKWARD, B=1, seed=6, T=8, threads=threads)


def test_settle_whole_T0_is_the_ancestral_pass():
    cfg = AWKWARD
    out, ref = check_against_ref(cfg, B=2, seed=7, T=0)
    assert out.energy.shape == (1, 2)


# ---- the wrapper: sizes, fits, validation -----------------------------------------------------------

def test_smem_bytes_paper_config():
    # states 11,032 + errors 10,992 + filters 9,225 + biases 63 floats, plus 84 header ints + 32 partials
    assert sw.smem_bytes(PAPER) == 4 * (11032 + 10992 + 9225 + 63 + 84 + 32) == 125712
    assert sw.smem_bytes(PAPER, learn_E=True) == 125712 + 4 * 9225
    assert sw.fits(PAPER, device_smem_bytes=227 * 1024)            # H100 / H200
    assert sw.fits(PAPER, learn_E=True, device_smem_bytes=163 * 1024)   # A100 (sm_80), just
    assert not sw.fits(PAPER, device_smem_bytes=48 * 1024)         # without the opt-in


def test_too_big_config_does_not_fit_and_says_why():
    cfg = Config(channels=(64, 64, 64, 3), image_hw=(64, 64))
    assert not sw.fits(cfg)
    assert not sw.fits(cfg, device_smem_bytes=227 * 1024)
    p, x, z_top = make_problem(cfg, 1, 0)
    with pytest.raises(sw.SettleDoesNotFit) as info:
        sw.settle_whole(p, x, cfg, z_top, T=1)
    msg = str(info.value)
    assert str(sw.smem_bytes(cfg)) in msg and "per-step" in msg and "bytes" in msg


def test_rejects_float64_and_wrong_shapes():
    cfg = AWKWARD
    p, x, z_top = make_problem(cfg, 2, 0)
    with pytest.raises(TypeError, match="float32"):
        sw.settle_whole(p, x.astype(np.float64), cfg, z_top, T=1)
    with pytest.raises(TypeError, match="float32"):
        sw.settle_whole(upcast(p), x, cfg, z_top, T=1)
    with pytest.raises(ValueError, match="z_top"):
        sw.settle_whole(p, x, cfg, z_top[:, :1], T=1)
    with pytest.raises(ValueError, match="x"):
        sw.settle_whole(p, x[:, :, :-1], cfg, z_top, T=1)
    with pytest.raises(ValueError, match="clamp"):
        sw.settle_whole(p, x, cfg, z_top, T=1, clamp="never")


def test_non_contiguous_inputs_are_copied():
    cfg = AWKWARD
    p, x, z_top = make_problem(cfg, 2, 8)
    xt = np.asfortranarray(x)                                       # same values, other strides
    a = run_kernel(p, x, cfg, z_top, T=3)
    b = run_kernel(p, xt, cfg, z_top, T=3)
    np.testing.assert_array_equal(a.energy, b.energy)


@pytest.mark.skipif(GPU, reason="AddressSanitizer/UBSan run the emulated kernel; on a GPU use compute-sanitizer")
def test_settle_whole_under_address_sanitizer():
    """Out-of-bounds shared/global accesses by source line (ASan + UBSan build of the emulator)."""
    for cfg in (AWKWARD, K2S3):
        check_against_ref(cfg, B=2, seed=9, T=2, clamp="first", learn_E=True, threads=96, sanitize=True)
