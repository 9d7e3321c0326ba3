"""Rings (b) and (c) for the cpu backend's model: every function of ngc_cpu.model and ngc_cpu.optim against
ngc_ref in float64, every Config option, the paper's configuration through a T = 60 settle and a learning
step, and determinism across thread counts.
"""
import dataclasses

import numpy as np
import pytest

import ngc_cpu
from ngc_cpu import model as cpu_model
from ngc_cpu import optim as cpu_optim
from ngc_ref import model as ref_model
from ngc_ref import optim as ref_optim
from ngc_ref.config import Config

from helpers import assert_adam_params_close, compare, copy_tree, f64, setup, states, tree64, update_terms
from tolerances import TOL, assert_close, reduction

# small configurations with awkward sizes: odd maps, H != W, C not a multiple of 4, K 1-5, s 1-3
SMALL = Config(channels=(4, 5, 3), image_hw=(12, 20), T=8)
CONFIGS = {
    "K3s2": SMALL,
    "K5s3": Config(channels=(3, 4, 2), image_hw=(9, 18), kernel=5, stride=3, T=6),
    "K1": Config(channels=(3, 4, 2), image_hw=(8, 12), kernel=1, stride=2, T=5),
    "K2s3": Config(channels=(2, 3, 1), image_hw=(9, 18), kernel=2, stride=3, T=5),
    "stride1": Config(channels=(3, 2), image_hw=(5, 7), kernel=3, stride=1, T=5),
    "K4s2_3layers": Config(channels=(2, 6, 5, 3), image_hw=(8, 16), kernel=4, stride=2, T=5),
}
# every option of Config that changes the math, on SMALL
OPTIONS = {
    "pcn": dict(pcn=True), "learn_E": dict(learn_E=True), "leak1": dict(leak=1.0), "leak0.01": dict(leak=0.01),
    "bias_pixel": dict(bias="pixel"), "reduce_mean": dict(reduce="mean"), "no_gamma_bottom": dict(gamma_bottom=False),
    "beta_gamma": dict(beta=0.05, gamma=0.01),
}


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def settle_both(cfg, params, x, z_top, **kw):
    res = cpu_model.settle(params, x, cfg, z_top, **kw)
    ref = ref_model.settle(tree64(params), f64(x), cfg, f64(z_top), **kw)
    assert all(a.dtype == np.float32 for a in res.z + res.zbar + res.e) and res.energy.dtype == np.float32
    return res, ref


# ---- the pieces of one step --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONFIGS) + list(OPTIONS))
def test_predictions_and_errors_match_ref(rng, name):
    cfg = CONFIGS.get(name) or dataclasses.replace(SMALL, **OPTIONS[name])
    params, _, _ = setup(cfg, rng, B=3)
    z = states(cfg, rng, B=19)                               # two tiles, the second partial
    zbar, e = cpu_model.predictions_and_errors(z, params, cfg)
    zbar_r, e_r = ref_model.predictions_and_errors([f64(a) for a in z], tree64(params), cfg)
    for l in range(cfg.L):
        assert_close(zbar[l], zbar_r[l], **TOL["step"], name="zbar[%d]" % l)
        assert_close(e[l], e_r[l], **TOL["step"], name="e[%d]" % l)
    assert np.all(e[cfg.L] == 0)
    assert_close(cpu_model.energy(e), ref_model.energy(e_r), **TOL["step"], name="energy")


@pytest.mark.parametrize("name", list(CONFIGS) + list(OPTIONS))
@pytest.mark.parametrize("free_bottom", [False, True], ids=["clamped", "free"])
def test_correct_matches_ref(rng, name, free_bottom):
    cfg = CONFIGS.get(name) or dataclasses.replace(SMALL, **OPTIONS[name])
    params, _, _ = setup(cfg, rng, B=3)
    z, e = states(cfg, rng, B=3), states(cfg, rng, B=3)
    z0 = [a.copy() for a in z]
    new = cpu_model.correct(z, e, params, cfg, free_bottom=free_bottom)
    ref = ref_model.correct([f64(a) for a in z], [f64(a) for a in e], tree64(params), cfg, free_bottom=free_bottom)
    for l in range(cfg.L + 1):
        assert_close(new[l], ref[l], **TOL["step"], name="z[%d]" % l)
        np.testing.assert_array_equal(z[l], z0[l])          # the inputs are not modified
    assert (new[0] is z[0]) == (not free_bottom)


def test_init_states_match_ref(rng):
    cfg = CONFIGS["K4s2_3layers"]
    params, x, z_top = setup(cfg, rng, B=5)
    z = cpu_model.init_states(x, params, cfg, z_top)
    ref = ref_model.init_states(f64(x), tree64(params), cfg, f64(z_top))
    for l in range(cfg.L + 1):
        assert_close(z[l], ref[l], **TOL["step"], name="z[%d]" % l)


# ---- Algorithm 1 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONFIGS) + list(OPTIONS))
@pytest.mark.parametrize("clamp", ["always", "first"])
def test_settle_matches_ref(rng, name, clamp):
    cfg = CONFIGS.get(name) or dataclasses.replace(SMALL, **OPTIONS[name])
    params, x, z_top = setup(cfg, rng, B=17)
    res, ref = settle_both(cfg, params, x, z_top, clamp=clamp)
    assert res.energy.shape == (cfg.T + 1, 17)
    compare(res, ref, cfg, TOL["settled"], "%s/%s" % (name, clamp))
    if clamp == "always":
        np.testing.assert_array_equal(res.z[0], x)


def test_settle_T0_and_T1_are_tight(rng):
    """Drift shows where it starts: no step and one step agree at the one-step tolerance."""
    params, x, z_top = setup(SMALL, rng, B=3)
    for T in (0, 1):
        res, ref = settle_both(SMALL, params, x, z_top, T=T)
        compare(res, ref, SMALL, TOL["step"], "T=%d" % T)


def test_gamma_bottom_false_means_no_leak_on_z0(rng):
    """gamma_bottom=False: a free z^0 moves by exactly -beta e^0 per step (checked on one step, both backends)."""
    cfg = dataclasses.replace(SMALL, gamma_bottom=False, gamma=0.3)     # a large leak, so its absence shows
    params, x, z_top = setup(cfg, rng, B=3)
    for settle in (cpu_model.settle, ref_model.settle):
        one = settle(params, x, cfg, z_top, T=1, clamp="first")
        zero = settle(params, x, cfg, z_top, T=0, clamp="first")
        assert_close(one.z[0], x - cfg.beta * zero.e[0], **TOL["step"], name="z^0 after one step")
    leaky = ref_model.settle(params, x, dataclasses.replace(cfg, gamma_bottom=True), z_top, T=1, clamp="first")
    assert np.abs(leaky.z[0] - one.z[0]).max() > 0.01          # the option changes what it says


def test_float64_settle_matches_ref_to_rounding(rng):
    cfg = dataclasses.replace(SMALL, pcn=True, T=10)
    params, x, z_top = setup(cfg, rng, B=9)
    p64 = tree64(params)
    res = cpu_model.settle(p64, f64(x), cfg, f64(z_top), clamp="first")
    ref = ref_model.settle(p64, f64(x), cfg, f64(z_top), clamp="first")
    assert res.z[1].dtype == np.float64
    compare(res, ref, cfg, dict(rtol=1e-10, atol=1e-12), "float64")


@pytest.mark.parametrize("name", ["K3s2", "K5s3", "learn_E", "bias_pixel", "reduce_mean"])
def test_float64_filter_updates_and_step_match_ref_to_rounding(rng, name):
    """Given float64 states, Algorithm 2 stays in float64: dW, db, dE float64 and the float64 reference's to the
    order of their sums (TOL["float64"], where a float32 rounding anywhere would show at 1e-7), and so are the
    parameters after an Adam step on them."""
    cfg = CONFIGS.get(name) or dataclasses.replace(SMALL, **OPTIONS[name])
    params, _, _ = setup(cfg, rng, B=3)
    p64 = tree64(params)
    z, e = [f64(a) for a in states(cfg, rng, B=18)], [f64(a) for a in states(cfg, rng, B=18)]
    e[cfg.L][:] = 0
    d = cpu_model.filter_updates(ref_model.SettleResult(z, None, e, None), p64, cfg)
    r = ref_model.filter_updates(ref_model.SettleResult(z, None, e, None), p64, cfg)
    for key in ("W", "b", "E"):
        assert (d[key] is None) == (r[key] is None)
        for l in range(1, cfg.L + 1) if r[key] is not None else ():
            assert d[key][l].dtype == np.float64, "d%s[%d] is %s in float64 mode" % (key, l, d[key][l].dtype)
            assert_close(d[key][l], r[key][l], **TOL["float64"], name="float64 d%s[%d]" % (key, l))
    p_cpu, p_ref = copy_tree(p64), copy_tree(p64)
    cpu_optim.step(p_cpu, r, cpu_optim.init_state(p_cpu), cfg)          # the same displacements on both sides
    ref_optim.step(p_ref, r, ref_optim.init_state(p_ref), cfg)
    for key in ("W", "b", "E"):
        for l in range(1, cfg.L + 1) if p_ref[key] is not None else ():
            assert p_cpu[key][l].dtype == np.float64
            assert_close(p_cpu[key][l], p_ref[key][l], **TOL["float64"], name="float64 %s[%d] after the step" % (key, l))


def test_paper_config_settle_and_learning_step_match_ref(rng):
    """The paper's configuration (Config(): 4 layers, 32x32x3, K3 s2, T = 60), B = 20 (a full tile and a
    partial one): the settle, the filter updates and one Adam step + projection against the reference."""
    cfg = Config()
    params, x, z_top = setup(cfg, rng, B=20)
    res, ref = settle_both(cfg, params, x, z_top)
    assert res.energy.shape == (61, 20)
    compare(res, ref, cfg, TOL["settled"], "paper T=60")
    p_cpu, p_ref = copy_tree(params), tree64(params)
    d_cpu = cpu_model.filter_updates(res, p_cpu, cfg)
    d_ref = ref_model.filter_updates(ref, p_ref, cfg)
    for l in range(1, cfg.L + 1):
        assert_close(d_cpu["W"][l], d_ref["W"][l], **TOL["settled"], name="dW[%d]" % l)
        assert_close(d_cpu["b"][l], d_ref["b"][l], **TOL["settled"], name="db[%d]" % l)
    s_ref = ref_optim.init_state(p_ref)
    cpu_optim.step(p_cpu, d_cpu, cpu_optim.init_state(p_cpu), cfg)
    ref_optim.step(p_ref, d_ref, s_ref, cfg)
    # Adam's first step is lr g / (|g| + eps): a gradient within its rounding of zero steps +lr on one side and -lr
    # on the other. The gradients are compared above; W and b after the step where they are not near zero.
    assert_adam_params_close(p_cpu, p_ref, s_ref["v"], 1, cfg, 20, TOL["settled"], "after the step")


def test_results_do_not_depend_on_threads(rng):
    """Same inputs, 1 or 2 threads, twice: bit-identical states, energies and filter updates."""
    cfg = dataclasses.replace(SMALL, T=12)
    params, x, z_top = setup(cfg, rng, B=40)                 # 3 tiles: the threads get unequal shares
    before = ngc_cpu.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 1, 2):
            ngc_cpu.set_num_threads(n)
            res = cpu_model.settle(params, x, cfg, z_top, clamp="first")
            runs.append((res, cpu_model.filter_updates(res, params, cfg)))
    finally:
        ngc_cpu.set_num_threads(before)
    for res, d in runs[1:]:
        for a, b in zip(res.z + res.e + [res.energy], runs[0][0].z + runs[0][0].e + [runs[0][0].energy]):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(d["W"][1:] + d["b"][1:], runs[0][1]["W"][1:] + runs[0][1]["b"][1:]):
            np.testing.assert_array_equal(a, b)


def test_each_image_is_independent_of_its_batch(rng):
    """An image settles to the same numbers whatever else is in the batch and whichever lane it sits in."""
    params, x, z_top = setup(SMALL, rng, B=21)
    full = cpu_model.settle(params, x, SMALL, z_top)
    part = cpu_model.settle(params, x[5:8], SMALL, z_top[5:8])
    for l in range(SMALL.L + 1):
        np.testing.assert_array_equal(part.z[l], full.z[l][5:8])
    np.testing.assert_array_equal(part.energy, full.energy[:, 5:8])


# ---- Algorithm 2 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["K3s2", "K5s3", "K2s3", "learn_E", "bias_pixel", "reduce_mean"])
def test_filter_updates_match_ref(rng, name):
    """Both get the same float32 states and errors, so only filter_updates is compared."""
    cfg = CONFIGS.get(name) or dataclasses.replace(SMALL, **OPTIONS[name])
    params, _, _ = setup(cfg, rng, B=3)
    z, e = states(cfg, rng, B=18), states(cfg, rng, B=18)
    e[cfg.L][:] = 0
    d = cpu_model.filter_updates(ref_model.SettleResult(z, None, e, None), params, cfg)
    r = ref_model.filter_updates(ref_model.SettleResult([f64(a) for a in z], None, [f64(a) for a in e], None),
                                 tree64(params), cfg)
    for key in ("W", "b", "E"):
        assert (d[key] is None) == (r[key] is None)
        if r[key] is None:
            continue
        for l in range(1, cfg.L + 1):
            assert d[key][l].dtype == np.float32
            assert_close(d[key][l], r[key][l], **reduction(update_terms(cfg, key, l, 18), r[key][l]),
                         name="d%s[%d]" % (key, l))


@pytest.mark.parametrize("optimizer", ["adam", "normalized"])
@pytest.mark.parametrize("bias", ["channel", "pixel"])
def test_optimizer_steps_match_ref(rng, optimizer, bias):
    """Both sides step on the very same float32 displacements, so Adam's eps sees no difference of the gradient
    (unlike the tests where each side sums its own: tolerances.assert_adam_close) and every entry is compared."""
    cfg = dataclasses.replace(SMALL, optimizer=optimizer, bias=bias, learn_E=True, w_std=0.6, lr=0.05)
    params, _, _ = setup(cfg, rng, B=3)
    p_cpu, p_ref = copy_tree(params), tree64(params)
    s_cpu, s_ref = cpu_optim.init_state(p_cpu), ref_optim.init_state(p_ref)
    for it in range(3):
        d = {k: [None] + [rng.standard_normal(a.shape).astype(np.float32) for a in params[k][1:]] for k in ("W", "b", "E")}
        cpu_optim.step(p_cpu, d, s_cpu, cfg)
        ref_optim.step(p_ref, tree64(d), s_ref, cfg)
        for key in ("W", "b", "E"):
            for l in range(1, cfg.L + 1):
                assert p_cpu[key][l].dtype == np.float32
                assert_close(p_cpu[key][l], p_ref[key][l], **TOL["elementwise"], name="%s[%d] step %d" % (key, l, it))
    for w in p_cpu["W"][1:]:
        assert np.sqrt((w.astype(np.float64) ** 2).sum(axis=(2, 3))).max() <= cfg.max_kernel_norm * (1 + 1e-6)


def test_three_training_steps_end_to_end(rng):
    """Ring (c): settle -> filter_updates -> optimiser step, three times, each backend on its own trajectory."""
    cfg = dataclasses.replace(SMALL, T=10, lr=0.01)
    params, x, z_top = setup(cfg, rng, B=6)
    p_cpu, p_ref = copy_tree(params), tree64(params)
    s_cpu, s_ref = cpu_optim.init_state(p_cpu), ref_optim.init_state(p_ref)
    energies = []
    for it in range(3):
        r = ref_model.settle(p_ref, f64(x), cfg, f64(z_top))
        ref_optim.step(p_ref, ref_model.filter_updates(r, p_ref, cfg), s_ref, cfg)
        c = cpu_model.settle(p_cpu, x, cfg, z_top)
        cpu_optim.step(p_cpu, cpu_model.filter_updates(c, p_cpu, cfg), s_cpu, cfg)
        assert_close(c.energy, r.energy, **TOL["settled"], name="energy, update %d" % it)
        energies.append(float(r.energy[-1].sum()))
        # each side's Adam steps on its own gradients: the near-zero ones' rounding shows (assert_adam_close)
        assert_adam_params_close(p_cpu, p_ref, s_ref["v"], it + 1, cfg, 6, TOL["settled"], "after update %d" % (it + 1))
    assert energies[-1] < energies[0]


@pytest.mark.parametrize("bias", ["channel", "pixel"])
def test_predict_one_layer_matches_ref(rng, bias):
    cfg = dataclasses.replace(CONFIGS["K5s3"], bias=bias)
    params, _, _ = setup(cfg, rng, B=3)
    z = states(cfg, rng, B=4)
    out = cpu_model.predict(z[1], params["W"][1], params["b"][1], cfg, cfg.map_hw(0))
    ref = ref_model.predict(f64(z[1]), f64(params["W"][1]), f64(params["b"][1]), cfg, cfg.map_hw(0))
    assert out.dtype == np.float32
    assert_close(out, ref, **TOL["step"], name="predict")
