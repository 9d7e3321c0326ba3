"""The paper's semantics pinned on the reference alone (no kernels needed to catch a reference bug).

Each check is a plain function that calls ngc_ref.model's public functions through the module, so it runs
against whatever those names hold. The tests below run each check on the reference, then plant one bug at a
time (a patched copy of a public function, monkeypatched in) and show that a check fires:
    a sequential instead of synchronous settle   -> check_one_step_is_synchronous
    the leak gamma dropped from the update        -> check_update_by_hand
    the ancestral pass skipped                    -> check_T0_errors_after_the_ancestral_pass
The hand-written computations use only ngc_ref.ops (checked against loops and scipy in test_ref_ops.py).
"""
import dataclasses

import numpy as np
import pytest

from ngc_ref import model
from ngc_ref.config import Config
from ngc_ref.ops import conv2d, conv2d_transpose

from tolerances import TOL, assert_close

DEEP = Config(channels=(3, 4, 5, 2), image_hw=(8, 16), T=3)     # 1x2 -> 2x4 -> 4x8 -> 8x16: two middle layers


def problem(cfg, seed=0, B=2):
    """float64 params with non-zero biases, an image and a top state."""
    rng = np.random.default_rng(seed)
    p = model.init_params(cfg, rng, np.float64)
    p["b"] = [None] + [0.1 * rng.standard_normal(b.shape) for b in p["b"][1:]]
    x = rng.random((B, cfg.layer_channels[0]) + cfg.map_hw(0))
    return p, x, model.draw_top(cfg, B, rng, np.float64)


def phi(v, leak):
    return np.where(v > 0, v, leak * v)


def hand_errors(z, p, cfg):
    """e^{l-1} = z^{l-1} - (W^l ⊙_s phi(z^l) + b^{l-1}) for l = 1..L, every one from the states z; e^L = 0."""
    e = [z[l - 1] - conv2d_transpose(phi(z[l], cfg.leak), p["W"][l], cfg.stride, z[l - 1].shape[2:])
         - p["b"][l][None, :, None, None] for l in range(1, cfg.L + 1)]
    return e + [np.zeros_like(z[cfg.L])]


def hand_step(z, p, cfg):
    """One synchronous step written out: all errors from the states before the step, then every free layer
    z^l + beta d^l - gamma z^l with d^l = -e^l + E^l *_s e^{l-1} (E = W^T: conv2d with the same filters)."""
    e = hand_errors(z, p, cfg)
    d = [None] + [-e[l] + conv2d(e[l - 1], p["W"][l], cfg.stride) for l in range(1, cfg.L + 1)]
    return [z[0]] + [z[l] + cfg.beta * d[l] - cfg.gamma * z[l] for l in range(1, cfg.L + 1)]


def hand_energy(e):
    return sum(0.5 * (a ** 2).reshape(a.shape[0], -1).sum(1) for a in e)


# ---- the checks ---------------------------------------------------------------------------------------
def check_one_step_is_synchronous(cfg=DEEP):
    """Steps 1 and 2 of settle equal the hand-written synchronous step, and correct(z, e(z)); the energy
    before each step is that of the states before it."""
    p, x, z_top = problem(cfg)
    z0 = model.init_states(x, p, cfg, z_top)
    z1 = hand_step(z0, p, cfg)
    z2 = hand_step(z1, p, cfg)
    for T, want in ((1, z1), (2, z2)):
        res = model.settle(p, x, cfg, z_top, T=T)
        for l in range(cfg.L + 1):
            assert_close(res.z[l], want[l], **TOL["float64"], name="z^%d after %d synchronous steps" % (l, T))
    assert_close(res.energy, np.stack([hand_energy(hand_errors(z, p, cfg)) for z in (z0, z1, z2)]),
                 **TOL["float64"], name="energy before steps 1, 2 and after step 2")
    by_api = model.correct(z0, model.predictions_and_errors(z0, p, cfg)[1], p, cfg)
    for l in range(cfg.L + 1):
        assert_close(by_api[l], z1[l], **TOL["float64"], name="correct(z, e(z))^%d" % l)


def check_update_by_hand():
    """correct() is z + beta d - gamma z for every free layer, with a large leak (gamma = 0.5) so that a
    dropped or mis-signed leak term is far outside round-off; d^0 = -e^0 for a free bottom layer."""
    cfg = dataclasses.replace(DEEP, beta=0.3, gamma=0.5)
    p, _, _ = problem(cfg, seed=1)
    rng = np.random.default_rng(2)
    z = [rng.standard_normal((2, c) + cfg.map_hw(l)) for l, c in enumerate(cfg.layer_channels)]
    e = [rng.standard_normal(a.shape) for a in z[:-1]] + [np.zeros_like(z[-1])]
    z_in = [a.copy() for a in z]
    new = model.correct(z, e, p, cfg, free_bottom=True)
    for l in range(cfg.L + 1):
        d = -e[l] + (conv2d(e[l - 1], p["W"][l], cfg.stride) if l > 0 else 0)
        assert_close(new[l], z[l] + 0.3 * d - 0.5 * z[l], **TOL["float64"], name="z^%d + beta d - gamma z" % l)
        np.testing.assert_array_equal(z[l], z_in[l])               # the input states are left as they were


def check_T0_errors_after_the_ancestral_pass(cfg=DEEP):
    """At T = 0 the states are the ancestral pass z^l = zbar^l (l = L-1..1): the errors of the middle
    layers are exactly 0; the bottom's (image minus prediction) and the clamped image are not touched."""
    p, x, z_top = problem(cfg)
    res = model.settle(p, x, cfg, z_top, T=0)
    for l in range(1, cfg.L):
        assert np.all(res.e[l] == 0), "e^%d at T = 0: max |e| %.3g, not exactly 0" % (l, np.abs(res.e[l]).max())
    assert np.abs(res.e[0]).max() > 0.1
    np.testing.assert_array_equal(res.z[0], x)
    assert res.energy.shape == (1, x.shape[0])


# ---- on the reference ---------------------------------------------------------------------------------
def test_one_settling_step_is_synchronous():
    check_one_step_is_synchronous()


def test_the_update_with_a_large_leak_by_hand():
    check_update_by_hand()


def test_T0_errors_of_the_middle_layers_are_exactly_zero():
    check_T0_errors_after_the_ancestral_pass()


# ---- planted bugs: patched copies of public functions, and the check that fires -----------------------
def sequential_settle(params, x, cfg, z_top, T=None, clamp="always"):
    """settle with a planted bug: layers corrected one at a time (bottom up), each from the latest states."""
    T = cfg.T if T is None else T
    z = model.init_states(x, params, cfg, z_top)
    trace = []
    for _ in range(T):
        trace.append(model.energy(model.predictions_and_errors(z, params, cfg)[1]))
        for l in range(1, cfg.L + 1):
            e = model.predictions_and_errors(z, params, cfg)[1]          # BUG: errors of the partly updated states
            z = z[:l] + [model.correct(z, e, params, cfg)[l]] + z[l + 1:]
    zbar, e = model.predictions_and_errors(z, params, cfg)
    trace.append(model.energy(e))
    return model.SettleResult(z, zbar, e, np.stack(trace))


def correct_without_gamma(z, e, params, cfg, free_bottom=False):
    """correct with a planted bug: z + beta d, the leak - gamma z dropped."""
    d = model.corrections(z, e, params, cfg, free_bottom)
    return [zl if dl is None else zl + cfg.beta * dl for zl, dl in zip(z, d)]


def settle_without_ancestral_pass(params, x, cfg, z_top, T=None, clamp="always"):
    """settle with a planted bug: the middle states start at 0 instead of their ancestral predictions."""
    T = cfg.T if T is None else T
    z = [x] + [np.zeros((x.shape[0], cfg.layer_channels[l]) + cfg.map_hw(l)) for l in range(1, cfg.L)] + [z_top]
    trace = []
    for _ in range(T):
        e = model.predictions_and_errors(z, params, cfg)[1]
        trace.append(model.energy(e))
        z = model.correct(z, e, params, cfg, free_bottom=(clamp == "first"))
    zbar, e = model.predictions_and_errors(z, params, cfg)
    trace.append(model.energy(e))
    return model.SettleResult(z, zbar, e, np.stack(trace))


@pytest.mark.parametrize("name,patch,check", [
    ("settle", sequential_settle, check_one_step_is_synchronous),
    ("correct", correct_without_gamma, check_update_by_hand),
    ("settle", settle_without_ancestral_pass, check_T0_errors_after_the_ancestral_pass),
], ids=["sequential-settle", "no-gamma", "no-ancestral-pass"])
def test_planted_reference_bug_is_caught(monkeypatch, name, patch, check):
    monkeypatch.setattr(model, name, patch)
    with pytest.raises(AssertionError):
        check()
