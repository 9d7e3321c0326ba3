"""Rings (b) and (c) for residual Conv-NGC on the cpu backend: every function of ngc_cpu.residual against
ngc_ref.residual (Appendix C, Eqs. 7-12) in float32 (inputs drawn as float32, the reference in float64) and in
float64, over the options the reference supports: the chain's post-ops (Eq. 7's, single ops, a chain of one,
a chain of five), skip none / identity / project / auto, pool windows 1, 3, 5, kernels 1-5, strides 1-3, odd
and non-square maps, channels that are not a multiple of the register block, leak, beta and gamma, clamp
"always" and "first"; the paper's configuration through a T = 60 settle and a learning step; determinism
across thread counts; the argument checks.

Not covered because the reference has no such option: a per-pixel bias (ngc_ref.residual's b^l is one value
per map), reduce="mean" and gamma_bottom=False (the reference does not read them; neither does the backend).
"""
import dataclasses

import numpy as np
import pytest

import ngc_cpu
from ngc_cpu import residual as cpu_res
from ngc_ref import model as ref_model
from ngc_ref import residual as ref_res
from ngc_ref.config import Config
from ngc_ref.residual import EQ7_OPS, ResidualConfig

from helpers import compare, f64
from tolerances import TOL, assert_close, reduction

SMALL = Config(channels=(4, 5, 3), image_hw=(12, 20), T=6)             # 3x5 -> 6x10 -> 12x20, C 3, 5, 4
CONFIGS = {
    "eq7": ResidualConfig(base=SMALL),                                  # Eq. 7's chain, projection skips
    "eq7_K5s3_pool5": ResidualConfig(base=Config(channels=(3, 4, 2), image_hw=(9, 18), kernel=5, stride=3, T=5),
                                     pool=5),                            # odd maps 9x18 -> 3x6 -> 1x2
    "K2s3": ResidualConfig(base=Config(channels=(2, 3, 1), image_hw=(9, 18), kernel=2, stride=3, T=5),
                           ops=("relu", "pool", "pool+relu")),           # an even kernel
    "K1": ResidualConfig(base=Config(channels=(3, 4, 2), image_hw=(8, 12), kernel=1, T=5),
                         ops=("pool+relu", "none")),
    "identity_stride1": ResidualConfig(base=Config(channels=(3, 3, 3), image_hw=(5, 7), stride=1, T=5),
                                       skip="identity"),                 # + z^l, odd 5x7 maps
    "auto_stride1": ResidualConfig(base=Config(channels=(3, 3, 5), image_hw=(6, 5), stride=1, T=5),
                                   ops=("relu", "pool")),                # auto: identity above, project below
    "skip_none": ResidualConfig(base=SMALL, ops=("pool+relu", "relu"), skip="none"),
    "chain1": ResidualConfig(base=SMALL, ops=("none",), skip="none"),   # Eq. 1 itself
    "chain1_pool_project": ResidualConfig(base=SMALL, ops=("pool",), skip="project"),
    "pool1": ResidualConfig(base=SMALL, pool=1),
    "chain5_K4_3layers": ResidualConfig(base=Config(channels=(2, 6, 5, 3), image_hw=(8, 16), kernel=4, T=4),
                                        ops=("relu", "none", "pool+relu", "pool", "relu")),
    "leak1_beta_gamma": ResidualConfig(base=dataclasses.replace(SMALL, leak=1.0, beta=0.05, gamma=0.01)),
    "leak0": ResidualConfig(base=dataclasses.replace(SMALL, leak=0.0)),
}
# four roundings-and-sums per block instead of one: the tolerance of one convolution per transform is not
# enough for the chain of four
CHAIN = TOL["residual-chain"]


@pytest.fixture
def rng():
    return np.random.default_rng(18)


def res_tree64(p):
    return {"W": [None] + [[f64(w) for w in ws] for ws in p["W"][1:]], "S": [f64(s) for s in p["S"]],
            "b": [f64(b) for b in p["b"]]}


def res_copy_tree(p):
    return {"W": [None] + [[w.copy() for w in ws] for ws in p["W"][1:]],
            "S": [None if s is None else s.copy() for s in p["S"]], "b": [None if b is None else b.copy() for b in p["b"]]}


def res_setup(cfg, rng, B=3, dtype=np.float32):
    """params of init_params with non-zero biases, an image in [0, 1] and z^L."""
    base = cfg.base
    params = ref_res.init_params(cfg, rng, dtype)
    params["b"] = [None] + [(0.1 * rng.standard_normal(b.shape)).astype(dtype) for b in params["b"][1:]]
    x = rng.random((B, base.layer_channels[0]) + base.map_hw(0)).astype(dtype)
    return params, x, ref_model.draw_top(base, B, rng, dtype)


def res_states(cfg, rng, B=3):
    """Random states of every layer (not a settled trajectory: both signs of phi, ReLU and every pool winner)."""
    b = cfg.base
    return [rng.standard_normal((B, b.layer_channels[l]) + b.map_hw(l), dtype=np.float32) for l in range(b.L + 1)]


def compare_updates(d, r, cfg, B, tol=None, dtype=np.float32):
    """Eq. 12's updates against the reference's: each entry sums at most B times the largest map's pixels of
    products, so float32 is held to the reduction tolerance of that length (tol: one tolerance for all)."""
    n = B * max(int(np.prod(cfg.base.map_hw(l))) for l in range(cfg.base.L + 1))
    close = (lambda a, want, name: assert_close(a, want, **(tol or reduction(n, want)), name=name))
    for l in range(1, cfg.base.L + 1):
        for q in range(cfg.n):
            assert d["W"][l][q].dtype == dtype
            close(d["W"][l][q], r["W"][l][q], "dW^{%d,%d}" % (l, q + 1))
        assert (d["S"][l] is None) == (r["S"][l] is None)
        if r["S"][l] is not None:
            close(d["S"][l], r["S"][l], "dS^%d" % l)
        close(d["b"][l], r["b"][l], "db^%d" % l)


# ---- the pieces ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("shape", [(3, 2, 7, 9), (17, 5, 4, 4), (1, 1, 1, 3)])
def test_maxpool_same_is_the_reference_exactly(rng, k, shape):
    """A max is exact: the pooled maps equal the reference's bit for bit, in both dtypes."""
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(shape).astype(dtype)
        out = cpu_res.maxpool_same(x, k)
        assert out.dtype == dtype and out.shape == x.shape
        np.testing.assert_array_equal(out, ref_res.maxpool_same(x, k))


def test_maxpool_keeps_nan_like_the_reference():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 3, 3] = 5.0
    np.testing.assert_array_equal(np.isnan(cpu_res.maxpool_same(x, 3)), np.isnan(ref_res.maxpool_same(x, 3)))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_predictions_and_errors_match_ref(rng, name):
    """Eq. 7 through every block from the same states (the fused kernel, final mode), and the blocks' activities."""
    cfg = CONFIGS[name]
    params, _, _ = res_setup(cfg, rng)
    z = res_states(cfg, rng, B=19)                               # two tiles, the second partial
    zbar, e, acts = cpu_res.predictions_and_errors(z, params, cfg, with_acts=True)
    zbar_r, e_r, acts_r = ref_res.predictions_and_errors([f64(a) for a in z], res_tree64(params), cfg, with_acts=True)
    L = cfg.base.L
    for l in range(L):
        assert_close(zbar[l], zbar_r[l], **CHAIN, name="zbar[%d]" % l)
        assert_close(e[l], e_r[l], **CHAIN, name="e[%d]" % l)
        assert zbar[l].dtype == np.float32
    assert np.all(e[L] == 0)
    for l in range(1, L + 1):
        for q in range(1, cfg.n + 1):
            assert_close(acts[l][q], acts_r[l][q], **CHAIN, name="a^{%d,%d}" % (l, q))
    assert_close(cpu_res.energy(e), ref_model.energy(e_r), **CHAIN, name="energy")


@pytest.mark.parametrize("name", ["eq7", "identity_stride1", "chain1_pool_project", "eq7_K5s3_pool5"])
def test_predict_block_perturbations_and_corrections_match_ref(rng, name):
    """The single-block helpers, built from ngc_cpu.ops, against the reference's."""
    cfg = CONFIGS[name]
    params, _, _ = res_setup(cfg, rng)
    z, e = res_states(cfg, rng, B=5), res_states(cfg, rng, B=5)
    p64 = res_tree64(params)
    for l in range(1, cfg.base.L + 1):
        a, acts = cpu_res.predict_block(z[l], params, cfg, l, z[l - 1].shape[2:])
        a_r, acts_r = ref_res.predict_block(f64(z[l]), p64, cfg, l, z[l - 1].shape[2:])
        assert_close(a, a_r, **CHAIN, name="block %d prediction" % l)
        for q in range(1, cfg.n + 1):
            assert_close(acts[q], acts_r[q], **CHAIN, name="a^{%d,%d}" % (l, q))
        for q, (d, d_r) in enumerate(zip(cpu_res.perturbations(e[l - 1], params, cfg, l),
                                         ref_res.perturbations(f64(e[l - 1]), p64, cfg, l))):
            assert_close(d, d_r, **CHAIN, name="d^{%d,%d}" % (l, q))
    for free in (False, True):
        d = cpu_res.corrections(z, e, params, cfg, free_bottom=free)
        d_r = ref_res.corrections([f64(a) for a in z], [f64(a) for a in e], p64, cfg, free_bottom=free)
        for l in range(cfg.base.L + 1):
            assert (d[l] is None) == (d_r[l] is None)
            if d_r[l] is not None:
                assert_close(d[l], d_r[l], **CHAIN, name="d^%d" % l)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("free_bottom", [False, True], ids=["clamped", "free"])
def test_correct_matches_ref(rng, name, free_bottom):
    """Eq. 8 and Eq. 2 for every free layer (the fused kernel), from given states and errors."""
    cfg = CONFIGS[name]
    params, _, _ = res_setup(cfg, rng)
    z, e = res_states(cfg, rng), res_states(cfg, rng)
    z0 = [a.copy() for a in z]
    new = cpu_res.correct(z, e, params, cfg, free_bottom=free_bottom)
    ref = ref_res.correct([f64(a) for a in z], [f64(a) for a in e], res_tree64(params), cfg, free_bottom=free_bottom)
    for l in range(cfg.base.L + 1):
        assert_close(new[l], ref[l], **CHAIN, name="z[%d]" % l)
        np.testing.assert_array_equal(z[l], z0[l])          # the inputs are not modified
    assert (new[0] is z[0]) == (not free_bottom)


@pytest.mark.parametrize("name", ["eq7", "chain5_K4_3layers", "identity_stride1", "auto_stride1"])
def test_init_states_match_ref(rng, name):
    cfg = CONFIGS[name]
    params, x, z_top = res_setup(cfg, rng, B=5)
    z = cpu_res.init_states(x, params, cfg, z_top)
    ref = ref_res.init_states(f64(x), res_tree64(params), cfg, f64(z_top))
    for l in range(cfg.base.L + 1):
        assert_close(z[l], ref[l], **CHAIN, name="z[%d]" % l)


# ---- Algorithm 1 through the blocks ----------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("clamp", ["always", "first"])
def test_settle_matches_ref(rng, name, clamp):
    cfg = CONFIGS[name]
    params, x, z_top = res_setup(cfg, rng, B=17)
    res = cpu_res.settle(params, x, cfg, z_top, clamp=clamp)
    ref = ref_res.settle(res_tree64(params), f64(x), cfg, f64(z_top), clamp=clamp)
    assert res.energy.shape == (cfg.base.T + 1, 17) and res.energy.dtype == np.float32
    assert all(a.dtype == np.float32 for a in res.z + res.zbar + res.e)
    compare(res, ref, cfg, TOL["settled"], "%s/%s" % (name, clamp))
    if clamp == "always":
        np.testing.assert_array_equal(res.z[0], x)
    else:
        assert np.abs(res.z[0] - x).max() > 1e-3            # the free bottom moved


def test_settle_T0_and_T1_are_tight(rng):
    """Drift shows where it starts: no step and one step agree at the tolerance of one pass through the chain."""
    cfg = CONFIGS["eq7"]
    params, x, z_top = res_setup(cfg, rng)
    for T in (0, 1):
        res = cpu_res.settle(params, x, cfg, z_top, T=T)
        ref = ref_res.settle(res_tree64(params), f64(x), cfg, f64(z_top), T=T)
        compare(res, ref, cfg, CHAIN, "T=%d" % T)


@pytest.mark.parametrize("name", ["eq7", "identity_stride1", "chain5_K4_3layers", "eq7_K5s3_pool5"])
def test_float64_settle_and_updates_match_ref_to_rounding(rng, name):
    """In float64 the backend differs from the reference only in the order of its sums."""
    cfg = CONFIGS[name]
    params, x, z_top = res_setup(cfg, rng, B=9, dtype=np.float64)
    tight = dict(rtol=1e-10, atol=1e-12)
    for clamp in ("always", "first"):
        res = cpu_res.settle(params, x, cfg, z_top, clamp=clamp)
        ref = ref_res.settle(params, x, cfg, z_top, clamp=clamp)
        assert res.z[1].dtype == np.float64 and res.energy.dtype == np.float64
        compare(res, ref, cfg, tight, "float64/" + clamp)
    compare_updates(cpu_res.filter_updates(res, params, cfg), ref_res.filter_updates(ref, params, cfg), cfg, B=9,
                    tol=dict(rtol=1e-10, atol=1e-10), dtype=np.float64)


# ---- feedback="gradient" (not the paper's: the energy's exact gradient) --------------------------------------
GRADIENT = ["eq7", "identity_stride1", "chain5_K4_3layers", "eq7_K5s3_pool5", "auto_stride1", "K2s3"]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_pool_adjoint_is_the_reference_exactly(rng, k):
    """The routing, ties included (integer-valued maps have many), bit-identical: g holds small integers, so
    the sums at an input that wins several windows are exact in any order."""
    x = rng.integers(0, 3, (2, 3, 7, 9)).astype(np.float32)
    g = rng.integers(-50, 50, (2, 3, 7, 9)).astype(np.float32)
    np.testing.assert_array_equal(cpu_res.maxpool_same_adjoint(x, g, k), ref_res.maxpool_same_adjoint(x, g, k))


@pytest.mark.parametrize("name", GRADIENT)
def test_gradient_feedback_matches_ref(rng, name):
    """The corrections, a correction step, the settle (both clamps) and the updates of feedback="gradient"
    against the reference, float32 to the chain's tolerance and float64 to rounding. The gradient's masks
    switch at ReLU's kinks and Pool's ties, so over a settle a float32 rounding can move a state across one and
    the trajectory then differs from the float64 reference by more than rounding (K2s3's tiny maps: 1 value of
    270): the float32 settle is compared where the block is the paper's, the float64 settle everywhere."""
    cfg = dataclasses.replace(CONFIGS[name], feedback="gradient")
    params, x, z_top = res_setup(cfg, rng, B=5)
    z, e = res_states(cfg, rng), res_states(cfg, rng)
    p64 = res_tree64(params)
    for free in (False, True):
        d = cpu_res.corrections(z, e, params, cfg, free)
        d_r = ref_res.corrections([f64(a) for a in z], [f64(a) for a in e], p64, cfg, free)
        n = cpu_res.correct(z, e, params, cfg, free)
        n_r = ref_res.correct([f64(a) for a in z], [f64(a) for a in e], p64, cfg, free)
        for l in range(1, cfg.base.L + 1):
            assert_close(d[l], d_r[l], **CHAIN, name="d^%d" % l)
            assert_close(n[l], n_r[l], **CHAIN, name="z^%d" % l)
    printed = cpu_res.corrections(z, e, params, CONFIGS[name], False)
    assert not np.allclose(printed[1], d[1], rtol=1e-3, atol=1e-3)          # not the printed Eq. 8
    e[cfg.base.L][:] = 0
    compare_updates(cpu_res.filter_updates(ref_model.SettleResult(z, None, e, None), params, cfg),
                    ref_res.filter_updates(ref_model.SettleResult([f64(a) for a in z], None, [f64(a) for a in e],
                                                                  None), p64, cfg), cfg, B=3)
    for clamp in ("always", "first"):
        res = cpu_res.settle(params, x, cfg, z_top, clamp=clamp)
        assert res.energy.shape == (cfg.base.T + 1, 5) and all(a.dtype == np.float32 for a in res.z + res.e)
        if cfg.ops == EQ7_OPS:
            ref = ref_res.settle(p64, f64(x), cfg, f64(z_top), clamp=clamp)
            compare(res, ref, cfg, TOL["settled"], "gradient/%s/%s" % (name, clamp))
    params, x, z_top = res_setup(cfg, rng, B=9, dtype=np.float64)
    for clamp in ("always", "first"):
        res = cpu_res.settle(params, x, cfg, z_top, clamp=clamp)
        ref = ref_res.settle(params, x, cfg, z_top, clamp=clamp)
        compare(res, ref, cfg, dict(rtol=1e-10, atol=1e-12), "gradient/float64/" + clamp)
    compare_updates(cpu_res.filter_updates(res, params, cfg), ref_res.filter_updates(ref, params, cfg), cfg, B=9,
                    tol=dict(rtol=1e-10, atol=1e-10), dtype=np.float64)


@pytest.mark.parametrize("name", ["eq7", "identity_stride1"])
def test_descent_settle_matches_ref(rng, name):
    """descent=True (the reference's descent_steps with this backend's operators): at a beta where steps are
    retaken (the plain gradient settle climbs), the float64 settle, both clamps, equals the reference's."""
    cfg = dataclasses.replace(CONFIGS[name], feedback="gradient", descent=True,
                              base=dataclasses.replace(CONFIGS[name].base, beta=0.5, T=12))
    params, x, z_top = res_setup(cfg, rng, B=6, dtype=np.float64)
    params["W"][1] = [w * 3.0 for w in params["W"][1]]
    for clamp in ("always", "first"):
        res = cpu_res.settle(params, x, cfg, z_top, clamp=clamp)
        ref = ref_res.settle(params, x, cfg, z_top, clamp=clamp)
        compare(res, ref, cfg, dict(rtol=1e-10, atol=1e-10), "descent/float64/" + clamp)   # e^0 of a free z^0 cancels
        plain = cpu_res.settle(params, x, dataclasses.replace(cfg, descent=False), z_top, clamp=clamp)
        assert np.diff(plain.energy, axis=0).max() > 0 >= np.diff(res.energy, axis=0).max() - 1e-9 * res.energy[0].max()


def test_the_chain_of_one_is_the_plain_cpu_model(rng):
    """ops=("none",), skip="none": the residual kernels settle exactly as ngc_cpu.model (Eq. 1) up to rounding."""
    cfg = CONFIGS["chain1"]
    params, x, z_top = res_setup(cfg, rng, B=7)
    plain = {"W": [None] + [ws[0] for ws in params["W"][1:]], "b": params["b"], "E": None}
    a = cpu_res.settle(params, x, cfg, z_top, clamp="first")
    b = ngc_cpu.model.settle(plain, x, cfg.base, z_top, clamp="first")
    compare(a, b, cfg, TOL["step"], "chain of one")


def test_each_image_is_independent_of_its_batch(rng):
    """An image settles to the same numbers whatever else is in the batch and whichever lane it sits in."""
    cfg = CONFIGS["eq7"]
    params, x, z_top = res_setup(cfg, rng, B=21)
    full = cpu_res.settle(params, x, cfg, z_top)
    part = cpu_res.settle(params, x[5:8], cfg, z_top[5:8])
    for l in range(cfg.base.L + 1):
        np.testing.assert_array_equal(part.z[l], full.z[l][5:8])
    np.testing.assert_array_equal(part.energy, full.energy[:, 5:8])


def test_results_do_not_depend_on_threads(rng):
    """Same inputs, 1 or 2 threads, twice: bit-identical states, energies and filter updates."""
    cfg = ResidualConfig(base=dataclasses.replace(SMALL, T=8))
    params, x, z_top = res_setup(cfg, rng, B=40)                 # 3 tiles: the threads get unequal shares
    before = ngc_cpu.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 1, 2):
            ngc_cpu.set_num_threads(n)
            res = cpu_res.settle(params, x, cfg, z_top, clamp="first")
            runs.append((res, cpu_res.filter_updates(res, params, cfg)))
    finally:
        ngc_cpu.set_num_threads(before)
    for res, d in runs[1:]:
        for a, b in zip(res.z + res.e + [res.energy], runs[0][0].z + runs[0][0].e + [runs[0][0].energy]):
            np.testing.assert_array_equal(a, b)
        for l in (1, 2):
            for a, b in zip(d["W"][l] + [d["S"][l], d["b"][l]], runs[0][1]["W"][l] + [runs[0][1]["S"][l], runs[0][1]["b"][l]]):
                np.testing.assert_array_equal(a, b)


# ---- Eq. 12 and the optimiser ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONFIGS))
def test_filter_updates_match_ref(rng, name):
    """Both get the same float32 states and errors, so only filter_updates is compared."""
    cfg = CONFIGS[name]
    params, _, _ = res_setup(cfg, rng)
    z, e = res_states(cfg, rng, B=18), res_states(cfg, rng, B=18)
    e[cfg.base.L][:] = 0
    d = cpu_res.filter_updates(ref_model.SettleResult(z, None, e, None), params, cfg)
    r = ref_res.filter_updates(ref_model.SettleResult([f64(a) for a in z], None, [f64(a) for a in e], None),
                               res_tree64(params), cfg)
    compare_updates(d, r, cfg, B=18)


def assert_close_to_scale(actual, desired, rel, name):
    """|actual - desired| <= rel * (|desired| + max |desired|): relative to the array's scale, not to each value."""
    assert_close(actual, desired, rtol=rel, atol=rel * float(np.abs(np.asarray(desired)).max()), name=name)


def test_paper_config_settle_and_learning_step_match_ref(rng):
    """The paper's hierarchy (channels 10, 15, 20, 25, 3; 32x32; K3 s2; T = 60) with Eq. 7's blocks and
    projection skips, B = 20 (a full tile and a partial one): the settle, Eq. 12's updates and one Adam step
    + kernel projection against the reference.

    Tolerance: relative to each array's scale, 5e-4. With random filters this settle is unstable (its energy
    grows about 180x over the 60 steps: Eq. 8's perturbations skip the pools and ReLUs, so a correction is not
    the energy's gradient), and the growth amplifies float32 rounding into values that pass through zero:
    measured against the float64 reference, the reference's own float32 settle is off by up to 8.7e-5 of each
    map's largest value, the backend's by up to 1.3e-4 (its sums run sequentially per pixel, the reference's
    through BLAS), and the updates by 6.5e-6 and 3.3e-5. An elementwise rtol would fail on the near-zero values
    of both. The Adam step (lr 1e-3) is compared where it is decided: wherever the two gradients agree in sign."""
    cfg = ResidualConfig(base=Config())
    params, x, z_top = res_setup(cfg, rng, B=20)
    res = cpu_res.settle(params, x, cfg, z_top)
    ref = ref_res.settle(res_tree64(params), f64(x), cfg, f64(z_top))
    assert res.energy.shape == (61, 20)
    L = cfg.base.L
    for l in range(L + 1):
        assert_close_to_scale(res.z[l], ref.z[l], 5e-4, "paper T=60 z[%d]" % l)
    for l in range(L):
        assert_close_to_scale(res.zbar[l], ref.zbar[l], 5e-4, "paper T=60 zbar[%d]" % l)
        assert_close_to_scale(res.e[l], ref.e[l], 5e-4, "paper T=60 e[%d]" % l)
    assert_close(res.energy, ref.energy, rtol=5e-4, atol=0, name="paper T=60 energy")
    p_cpu, p_ref = res_copy_tree(params), res_tree64(params)
    d_cpu = cpu_res.filter_updates(res, p_cpu, cfg)
    d_ref = ref_res.filter_updates(ref, p_ref, cfg)
    pairs = [("W^{%d,%d}" % (l, q + 1), d_cpu["W"][l][q], d_ref["W"][l][q]) for l in range(1, L + 1) for q in range(cfg.n)]
    pairs += [("S^%d" % l, d_cpu["S"][l], d_ref["S"][l]) for l in range(1, L + 1)]
    pairs += [("b^%d" % l, d_cpu["b"][l], d_ref["b"][l]) for l in range(1, L + 1)]
    for what, a, b in pairs:
        assert a.dtype == np.float32
        assert_close_to_scale(a, b, 5e-4, "d" + what)
    cpu_res.step(p_cpu, d_cpu, cpu_res.init_state(p_cpu), cfg)
    ref_res.step(p_ref, d_ref, ref_res.init_state(p_ref), cfg)
    after = [("W^{%d,%d}" % (l, q + 1), p_cpu["W"][l][q], p_ref["W"][l][q]) for l in range(1, L + 1) for q in range(cfg.n)]
    after += [("S^%d" % l, p_cpu["S"][l], p_ref["S"][l]) for l in range(1, L + 1)]
    after += [("b^%d" % l, p_cpu["b"][l], p_ref["b"][l]) for l in range(1, L + 1)]
    for (what, a, b), (_, da, db) in zip(after, pairs):
        agree = np.sign(da) == np.sign(db)
        assert agree.mean() > 0.99, "%s: the gradients' signs differ in %.1f%%" % (what, 100 * (1 - agree.mean()))
        assert a.dtype == np.float32
        assert_close(a[agree], b[agree], **TOL["settled"], name=what + " after the step")


def test_three_training_steps_end_to_end(rng):
    """Ring (c): settle -> filter_updates -> Adam step, three times, each backend on its own trajectory."""
    cfg = ResidualConfig(base=dataclasses.replace(SMALL, T=8, lr=0.01), ops=("none", "pool+relu", "relu"))
    params, x, z_top = res_setup(cfg, rng, B=6)
    p_cpu, p_ref = res_copy_tree(params), res_tree64(params)
    s_cpu, s_ref = cpu_res.init_state(p_cpu), ref_res.init_state(p_ref)
    energies = []
    for it in range(3):
        r = ref_res.settle(p_ref, f64(x), cfg, f64(z_top))
        ref_res.step(p_ref, ref_res.filter_updates(r, p_ref, cfg), s_ref, cfg)
        c = cpu_res.settle(p_cpu, x, cfg, z_top)
        cpu_res.step(p_cpu, cpu_res.filter_updates(c, p_cpu, cfg), s_cpu, cfg)
        assert_close(c.energy, r.energy, **TOL["settled"], name="energy, update %d" % it)
        energies.append(float(r.energy[-1].sum()))
        for l in range(1, cfg.base.L + 1):
            assert_close(p_cpu["S"][l], p_ref["S"][l], **TOL["settled"], name="S^%d after update %d" % (l, it + 1))
            for q in range(cfg.n):
                assert_close(p_cpu["W"][l][q], p_ref["W"][l][q], **TOL["settled"],
                             name="W^{%d,%d} after update %d" % (l, q + 1, it + 1))
    assert energies[-1] < energies[0]


# ---- what it refuses -----------------------------------------------------------------------------------
def test_bad_arguments_are_named(rng):
    cfg = CONFIGS["eq7"]
    params, x, z_top = res_setup(cfg, rng)
    with pytest.raises(ValueError, match="clamp must be"):
        cpu_res.settle(params, x, cfg, z_top, clamp="never")
    with pytest.raises(ValueError, match="x has shape"):
        cpu_res.settle(params, x[:, :, :-1], cfg, z_top)
    with pytest.raises(ValueError, match="z_top has shape"):
        cpu_res.settle(params, x, cfg, z_top[:2])
    with pytest.raises(TypeError, match="float32 or float64"):
        cpu_res.settle(params, x.astype(np.float16), cfg, z_top)
    with pytest.raises(TypeError, match="one dtype"):
        cpu_res.settle(params, x.astype(np.float64), cfg, z_top)
    bad = res_copy_tree(params)
    bad["S"][1] = None
    with pytest.raises(ValueError, match=r"params\['S'\]\[1\] is None"):
        cpu_res.settle(bad, x, cfg, z_top)
    bad = res_copy_tree(params)
    bad["W"][2] = bad["W"][2][:-1]
    with pytest.raises(ValueError, match="n = 4 kernels"):
        cpu_res.settle(bad, x, cfg, z_top)
    bad = res_copy_tree(params)
    bad["W"][1][2] = bad["W"][1][2][:, :, :2]
    with pytest.raises(ValueError, match=r"params\['W'\]\[1\]\[2\] has shape"):
        cpu_res.settle(bad, x, cfg, z_top)
    bad = res_copy_tree(params)
    bad["b"][1] = np.zeros((3, 12, 20), np.float32)                  # a per-pixel bias: not in the reference
    with pytest.raises(ValueError, match=r"params\['b'\]\[1\] has shape"):
        cpu_res.settle(bad, x, cfg, z_top)
    bad = res_copy_tree(params)
    bad["W"][1][0][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        cpu_res.settle(bad, x, cfg, z_top)
    with pytest.raises(ValueError, match="is given but"):
        cpu_res.settle(params, x, ResidualConfig(base=SMALL, skip="none"), z_top)
    with pytest.raises(ValueError, match="identity skip needs"):
        cpu_res.settle(params, x, ResidualConfig(base=SMALL, skip="identity"), z_top)
