"""ngc_cuda.settle_whole (kernels/ngc_settle.cu, ngc_settle_v1) against ngc_ref.model.settle.

The whole of Algorithm 1 runs in one launch, so a wrong index or a missing barrier shows up as a
trajectory that drifts away from the float64 reference. Inputs are drawn in float32 and upcast for the
reference. Step 1's energy is checked tightly (it depends only on the ancestral pass and one predict),
the rest after T steps. On a machine with a GPU the kernel runs there (CuPy arrays); otherwise on the CPU
emulation of the same .cu file, where the thread order can be reversed, shuffled or run one warp at a time
to expose a missing __syncthreads(), with guard zones between its shared-memory areas. The Config readings
the kernel implements by a flag (bias maps, no leak on a free z^0) run in every thread order. The last
tests plant bugs in a copy of the kernel and check that these checks fire.
"""
import dataclasses

import numpy as np
import pytest

from ngc_ref import model
from ngc_ref.config import Config
from ngc_cuda import launch, model as cuda_model, settle_whole as sw
from ngc_cuda.backend import available, device
from ngc_cuda.defines import SMEM_GUARD_FLOATS

from helpers import tree64
from tolerances import TOL, assert_close

GPU = available()
if GPU:
    import cupy as cp

PAPER = Config()                                  # channels (10,15,20,25,3), 32x32, K 3, s 2, T 60
AWKWARD = Config(channels=(4, 5, 2), image_hw=(12, 20), kernel=5, stride=2)       # 3x5 -> 6x10 -> 12x20
K1 = Config(channels=(3, 4, 2), image_hw=(8, 12), kernel=1, stride=2)
STRIDE1 = Config(channels=(3, 2), image_hw=(5, 7), kernel=3, stride=1)            # odd sides, no stride
K2S3 = Config(channels=(2, 3, 1), image_hw=(9, 18), kernel=2, stride=3)           # even K, stride 3
PCN8 = Config(channels=(4, 5, 2), image_hw=(8, 8), pcn=True)
PIXEL = Config(bias="pixel")                      # the paper's network with a bias map per layer
AWKWARD_PIXEL, K2S3_PIXEL = (dataclasses.replace(c, bias="pixel") for c in (AWKWARD, K2S3))


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


def run_kernel(p, x, cfg, z_top, T=None, order="forward", sanitize=False, **kw):
    """settle_whole on the GPU (CuPy arrays) when there is one, else emulated in `order`; NumPy results."""
    T = cfg.T if T is None else T
    if GPU:
        to = lambda v: None if v is None else [None if a is None else cp.asarray(a) for a in v]  # noqa: E731
        res = sw.settle_whole({k: to(v) for k, v in p.items()}, cp.asarray(x), cfg, cp.asarray(z_top), T,
                              device=device("cuda"), **kw)
        get = cp.asnumpy
    else:
        with launch.emulation(order=order, sanitize=sanitize):
            res = sw.settle_whole(p, x, cfg, z_top, T, device=device("cuda-emu"), **kw)
        get = np.asarray
    return model.SettleResult([get(a) for a in res.z], [get(a) for a in res.zbar], [get(a) for a in res.e],
                              get(res.energy))


def check_against_ref(cfg, B=2, seed=0, T=None, clamp="always", learn_E=False, **kw):
    p, x, z_top = make_problem(cfg, B, seed, learn_E)
    out = run_kernel(p, x, cfg, z_top, T=T, clamp=clamp, **kw)
    ref = model.settle(tree64(p), x.astype(np.float64), cfg, z_top.astype(np.float64), T=T, clamp=clamp)
    T = cfg.T if T is None else T
    assert out.energy.shape == (T + 1, B) and out.energy.dtype == np.float32
    assert_close(out.energy[0], ref.energy[0], name="energy before step 1", **TOL["step"])
    assert_close(out.energy, ref.energy, name="energy trace", **TOL["settled"])
    for l in range(cfg.L + 1):
        assert out.z[l].shape == ref.z[l].shape and out.z[l].dtype == np.float32
        assert_close(out.z[l], ref.z[l], name="z^%d" % l, **TOL["settled"])
        assert_close(out.e[l], ref.e[l], name="e^%d" % l, **TOL["settled"])
    for l in range(cfg.L):
        assert_close(out.zbar[l], ref.zbar[l], name="zbar^%d" % l, **TOL["settled"])
    if clamp == "always":
        np.testing.assert_array_equal(out.z[0], x)                      # clamped: untouched, bit for bit
    return out, ref, x


# ---- the paper's configuration, full T = 60 --------------------------------------------------------

@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_settle_whole_paper_config_matches_ref(order):
    check_against_ref(PAPER, B=2, order=order)


def test_settle_whole_denoising_frees_bottom():
    """clamp="first": z^0 starts at the noisy image and then evolves (d^0 = -e^0), as the reference's does.
    A kernel that kept z^0 clamped would leave it equal to x, much further from the reference's z^0 than
    the settled tolerance."""
    out, ref, x = check_against_ref(PAPER, B=2, seed=1, clamp="first")
    moved = np.abs(ref.z[0] - x)
    tol = TOL["settled"]
    assert np.any(moved > 100 * (tol["atol"] + tol["rtol"] * np.abs(ref.z[0]))), "the reference's z^0 barely moved"
    assert np.abs(out.z[0].astype(np.float64) - x).max() > 0.5 * moved.max()


def test_settle_whole_pcn():
    check_against_ref(Config(pcn=True), B=2, seed=2)


def test_settle_whole_learnable_error_filters():
    check_against_ref(Config(learn_E=True), B=2, seed=3)


def test_settle_whole_paper_config_with_bias_maps():
    """bias="pixel": 10,992 biases instead of 63, in shared memory beside the errors (169,404 bytes)."""
    check_against_ref(PIXEL, B=2, seed=4)


# ---- the Config readings the kernel implements by a flag, in every thread order ----------------------
# name: (Config fields, clamp, learnable E); gamma = 0.02 so that a leak on z^0 that should not be there
# (or one missing) moves z^0 far outside the settled tolerance
OPTIONS = {
    "bias-pixel": (dict(bias="pixel"), "always", False),
    "no-gamma-bottom": (dict(gamma_bottom=False, gamma=0.02), "first", False),
    "pixel-no-gamma-bottom-learn-E": (dict(bias="pixel", gamma_bottom=False, gamma=0.02), "first", True),
}


@pytest.mark.parametrize("order", launch.ORDERS)
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("cfg", [AWKWARD, PCN8], ids=["K5_12x20", "K3s2_pcn_8x8"])
def test_settle_whole_options_in_every_thread_order(cfg, option, order):
    if GPU and order != "forward":
        pytest.skip("thread order is an emulator setting")
    fields, clamp, learn_E = OPTIONS[option]
    cfg = dataclasses.replace(cfg, **fields)
    out, ref, x = check_against_ref(cfg, B=2, seed=11, T=12, clamp=clamp, learn_E=learn_E, order=order, threads=96)
    if not cfg.gamma_bottom:                      # the flag matters: the other reading ends elsewhere
        p, _, z_top = make_problem(cfg, 2, 11, learn_E)
        leaky = model.settle(tree64(p), x.astype(np.float64), dataclasses.replace(cfg, gamma_bottom=True),
                             z_top.astype(np.float64), T=12, clamp=clamp)
        with pytest.raises(AssertionError):
            assert_close(out.z[0], leaky.z[0], **TOL["settled"], name="z^0 against the leaky reading")


# ---- small awkward shapes ---------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [AWKWARD, K1, STRIDE1, K2S3], ids=["K5_12x20", "K1", "stride1_5x7", "K2_s3"])
@pytest.mark.parametrize("clamp", ["always", "first"])
def test_settle_whole_small_configs(cfg, clamp):
    check_against_ref(cfg, B=3, seed=4, T=25, clamp=clamp)


@pytest.mark.skipif(GPU, reason="thread order is an emulator setting")
@pytest.mark.parametrize("order", ["shuffle", "warp"])
@pytest.mark.parametrize("cfg", [AWKWARD, PCN8], ids=["K5_12x20", "pcn_8x8"])
def test_settle_whole_other_thread_orders(cfg, order):
    """The unmutated kernel in the shuffled order and one warp at a time (test_planted_* show what each sees)."""
    check_against_ref(cfg, B=2, seed=5, T=12, clamp="first", learn_E=True, order=order)


@pytest.mark.parametrize("threads", [32, 96, 1024])
def test_settle_whole_block_sizes(threads):
    """Any multiple of 32 works: each layer's items are strided over the block, partial warps included."""
    check_against_ref(AWKWARD, B=1, seed=6, T=8, threads=threads)


def test_settle_whole_T0_is_the_ancestral_pass():
    cfg = AWKWARD
    out, ref, _ = check_against_ref(cfg, B=2, seed=7, T=0)
    assert out.energy.shape == (1, 2)
    for l in range(1, cfg.L):                     # each middle state is its own prediction
        assert_close(out.e[l], np.zeros_like(out.e[l]), **TOL["step"], name="e^%d at T = 0" % l)


# ---- the wrapper: sizes, fits, validation -----------------------------------------------------------

def test_smem_bytes_paper_config():
    # states 11,032 + errors 10,992 + filters 9,225 + biases 63 floats, plus 78 header ints + 32 partials
    assert sw.smem_bytes(PAPER) == 4 * (11032 + 10992 + 9225 + 63 + 78 + 32) == 125688
    assert sw.smem_bytes(PAPER, learn_E=True) == 125688 + 4 * 9225
    assert sw.fits(PAPER, False, 227 * 1024)                          # H100 / H200
    assert sw.fits(PAPER, True, 163 * 1024)                           # A100 (sm_80), just
    assert not sw.fits(PAPER, False, 48 * 1024)                       # without the opt-in
    assert sw.smem_bytes(PAPER, guard=16) == 125688 + 6 * 16 * 4      # a guard after each of the 6 areas
    # bias="pixel": the bias area holds b^l (C_{l-1}, H_{l-1}, W_{l-1}) for l = 1..L, as many floats as e
    assert sw.smem_bytes(PIXEL) == 125688 + 4 * (10992 - 63) == 169404
    assert sw.smem_bytes(PIXEL, learn_E=True) == 169404 + 4 * 9225
    assert sw.fits(PIXEL, True, 227 * 1024) and not sw.fits(PIXEL, False, 163 * 1024)   # H100 yes, A100 no


@pytest.mark.skipif(GPU, reason="the emulator reports the areas a kernel names")
@pytest.mark.parametrize("cfg,learn_E", [(AWKWARD, False), (K2S3, True), (AWKWARD_PIXEL, False), (K2S3_PIXEL, True)],
                         ids=["K5_12x20", "K2_s3-learn-E", "K5_12x20-bias-pixel", "K2_s3-learn-E-bias-pixel"])
def test_kernel_and_wrapper_agree_on_the_shared_memory_layout(cfg, learn_E):
    """The kernel computes its areas from the -D constants of ngc_cuda/defines.py and names them
    (CUDA_EMU_SHARED_AREA); settle_whole.layout computes them in Python. They must be the same areas, at
    the same offsets, of the same sizes, with the emulator's guard zones between them."""
    check_against_ref(cfg, B=1, seed=3, T=1, learn_E=learn_E)
    named = launch.function("cuda-emu", sw.KERNEL_FILE, sw.KERNEL_NAME).shared_areas
    assert named == sw.layout(cfg, learn_E, guard=SMEM_GUARD_FLOATS["cuda-emu"])
    assert [n for n, _, _ in named] == ["hdr", "red", "z", "e", "W", "b"] + (["E"] if learn_E else [])


def test_too_big_config_does_not_fit_and_says_why():
    cfg = Config(channels=(64, 64, 64, 3), image_hw=(64, 64))
    assert not sw.fits(cfg, False, 227 * 1024)
    p, x, z_top = make_problem(cfg, 1, 0)
    with pytest.raises(sw.SettleDoesNotFit) as info:
        cuda_model.settle(p, x, cfg, z_top, T=1, kernel="whole")
    msg = str(info.value)
    assert str(sw.smem_bytes(cfg)) in msg and "per-step" in msg and "bytes" in msg


def test_rejects_float64_and_wrong_shapes():
    """The entry (model.settle) checks the inputs of either path before any kernel sees them, with the errors
    of every backend (ngc_ref.checks; tests/conformance/test_checks.py runs each case on every backend)."""
    cfg = AWKWARD
    p, x, z_top = make_problem(cfg, 2, 0)

    def settle(p, x, z_top, **kw):
        return cuda_model.settle(p, x, cfg, z_top, T=1, kernel="whole", **kw)
    with pytest.raises(TypeError, match="^settle: x is float64 but the parameters are float32"):
        settle(p, x.astype(np.float64), z_top)
    with pytest.raises(TypeError, match=r"^settle: params\[.W.\]\[1\] has dtype float64; this backend computes in"):
        settle(tree64(p), x, z_top)
    with pytest.raises(ValueError, match="^settle: z_top has shape"):
        settle(p, x, z_top[:, :1])
    with pytest.raises(ValueError, match="^settle: x has shape"):
        settle(p, x[:, :, :-1], z_top)
    with pytest.raises(ValueError, match="^settle: clamp"):
        settle(p, x, z_top, clamp="never")
    with pytest.raises(ValueError, match=r"^settle: params\[.W.\]\[2\] has shape"):
        settle(dict(p, W=p["W"][:2] + [p["W"][2][:, :1]]), x, z_top)


def test_non_contiguous_inputs_are_copied():
    cfg = AWKWARD
    p, x, z_top = make_problem(cfg, 2, 8)
    xt = np.asfortranarray(x)                                       # same values, other strides
    a = run_kernel(p, x, cfg, z_top, T=3)
    b = run_kernel(p, xt, cfg, z_top, T=3)
    np.testing.assert_array_equal(a.energy, b.energy)


@pytest.mark.skipif(GPU, reason="AddressSanitizer/UBSan run the emulated kernel; on a GPU use compute-sanitizer")
@pytest.mark.parametrize("learn_E", [False, True], ids=["E=W", "learn-E"])
def test_settle_whole_under_address_sanitizer(learn_E):
    """Out-of-bounds shared/global accesses by source line (ASan + UBSan build of the emulator). With E = W^T
    the biases are the last area, so a write past them reaches the end of the launch's shared memory."""
    for cfg in (AWKWARD, K2S3):
        check_against_ref(cfg, B=2, seed=9, T=2, clamp="first", learn_E=learn_E, threads=96, sanitize=True)


# ---- planted bugs: a mutated copy of ngc_settle.cu, and the check that must fire ---------------------
def _mutant(monkeypatch, *edits):
    """Run settle_whole on a copy of kernels/ngc_settle.cu with `edits` ((old, new) text pairs, each of
    which must occur exactly once, so a changed kernel fails here instead of silently planting nothing).
    The copy goes to the system's temporary folder under a name made of its content, so that the
    emulator's build cache (keyed by path and content) serves it again on the next run."""
    import hashlib
    import os
    import pathlib
    import tempfile
    from cuda_emu import EmuModule
    from ngc_cuda import _load
    from ngc_cuda.defines import kernel_defines
    src = _load.read_source(sw.KERNEL_FILE)
    for old, new in edits:
        assert src.count(old) == 1, "the planted edit no longer matches kernels/ngc_settle.cu: %r" % old[:60]
        src = src.replace(old, new)
    folder = pathlib.Path(tempfile.gettempdir()) / ("convngc-mutants-%d" % os.getuid())
    folder.mkdir(exist_ok=True)
    path = folder / ("ngc_settle-%s.cu" % hashlib.sha256(src.encode()).hexdigest()[:16])
    if not path.is_file():
        path.write_text(src)
    modules = {}
    real = launch.function

    def function(backend, file, kernel, gpu_id=None):
        if file != sw.KERNEL_FILE:
            return real(backend, file, kernel, gpu_id)
        key = tuple(sorted(launch.emu_settings().items()))
        if key not in modules:
            modules[key] = EmuModule(path=path, options=_load.compile_options(None, kernel_defines(file, "cuda-emu")),
                                     **dict(key))
        return modules[key].get_function(kernel)
    monkeypatch.setattr(launch, "function", function)


# Part 1 of issue 11: the barrier between phase 1 (predictions, errors, the warp partials of the energy)
# and phase 2 (corrections) removed; the energy is read after the step's last barrier instead.
NO_PHASE_BARRIER = [
    ("""        ngc_warp_partial(part, red);
        __syncthreads();""", """        ngc_warp_partial(part, red);
        if (last) { __syncthreads(); if (tid == 0) energy_out[(size_t)t * B + b_img] = 0.5f * ngc_block_total(red); }"""),
    ("""        if (tid == 0) energy_out[(size_t)t * B + b_img] = 0.5f * ngc_block_total(red);
        if (last) break;""", """        if (last) break;"""),
    ("""        __syncthreads();   // next phase 1 reads the corrected states of every layer (and red[] is reused)
    }""", """        __syncthreads();
        if (tid == 0) energy_out[(size_t)t * B + b_img] = 0.5f * ngc_block_total(red);
    }"""),
]


@pytest.mark.skipif(GPU, reason="planted bugs are run on the emulator")
def test_planted_missing_phase_barrier_is_caught_one_warp_at_a_time(monkeypatch):
    """Without the barrier, phase 2 of one warp reads errors other warps have not written yet. The warp
    shuffle of the energy just before it hides that in the orders that run every thread to its next
    synchronisation point (the shuffle then acts as a block barrier, which it never is on a GPU): they
    pass. Run one warp at a time, the kernel settles to the wrong states."""
    _mutant(monkeypatch, *NO_PHASE_BARRIER)
    for order in ("forward", "reverse", "shuffle"):
        check_against_ref(AWKWARD, B=2, seed=5, T=6, order=order, threads=96)
    with pytest.raises(AssertionError):
        check_against_ref(AWKWARD, B=2, seed=5, T=6, order="warp", threads=96)


# Part 2 of issue 11: the bias load writes one float past the end of the bias area (a loop bound <=).
BIAS_OVERRUN = [("for (int k = tid; k < nb; k += nth) bs[k] = bg[k];",
                 "for (int k = tid; k <= nb; k += nth) bs[k] = k < nb ? bg[k] : 0.0f;")]


@pytest.mark.skipif(GPU, reason="planted bugs are run on the emulator")
@pytest.mark.parametrize("learn_E,bias", [(False, "channel"), (True, "channel"), (True, "pixel")],
                         ids=["E=W", "learn-E", "learn-E-bias-pixel"])
def test_planted_write_past_the_biases_is_reported_by_area(monkeypatch, learn_E, bias):
    """The extra float changes no result: with E = W^T nothing is stored after the biases, and with
    learnable E the load of E may land after it on a GPU. So only the guard zone after 'b' sees it, and the
    emulator names the area that overflowed. (ASan reports the same write by line: the guard zones are
    poisoned in the sanitizer build, tests/cuda/test_emu.py shows it on a small kernel.)"""
    _mutant(monkeypatch, *BIAS_OVERRUN)
    after = "between 'b' and 'E'" if learn_E else "after 'b', the last area,"
    with pytest.raises(RuntimeError, match="guard zone %s was written" % after):
        check_against_ref(K2S3_PIXEL if bias == "pixel" else K2S3, B=1, seed=9, T=1, learn_E=learn_E)
