"""Residual Conv-NGC (ngc_ref/residual.py, Appendix C Eqs. 7-12): shapes, the reduction to the plain model
for a chain of length one, calculus where the block is linear in its parameters, and descent of one update."""
import copy
import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from ngc_ref import model, optim, residual
from ngc_ref.config import Config

from helpers import numgrad

SMALL = Config(channels=(3, 4, 2), image_hw=(8, 12), T=6)          # 2x3 -> 4x6 -> 8x12


def test_shapes_of_the_paper_block():
    """Eq. 7's chain (n = 4) on the paper's hierarchy: every state, prediction and update has its layer's shape."""
    cfg = residual.ResidualConfig(base=Config(channels=(4, 5, 3), image_hw=(16, 16), T=2))
    rng = np.random.default_rng(0)
    p = residual.init_params(cfg, rng, np.float64)
    assert cfg.n == 4 and [cfg.stride(q) for q in (4, 3, 2, 1)] == [2, 1, 1, 1]
    assert [w.shape for w in p["W"][1]] == [(3, 3, 3, 3)] * 3 + [(5, 3, 3, 3)] and p["W"][2][3].shape == (4, 5, 3, 3)
    assert p["W"][2][0].shape == (5, 5, 3, 3) and p["S"][2].shape == (4, 5, 3, 3)     # skip="auto" -> project
    x = rng.random((2, 3, 16, 16))
    res = residual.settle(p, x, cfg, model.draw_top(cfg.base, 2, rng, np.float64))
    assert [a.shape for a in res.z] == [(2, 3, 16, 16), (2, 5, 8, 8), (2, 4, 4, 4)]
    assert [a.shape for a in res.zbar] == [(2, 3, 16, 16), (2, 5, 8, 8)] and res.energy.shape == (3, 2)
    up = residual.filter_updates(res, p, cfg)
    for l in (1, 2):
        assert [a.shape for a in up["W"][l]] == [a.shape for a in p["W"][l]]
        assert up["S"][l].shape == p["S"][l].shape and up["b"][l].shape == p["b"][l].shape
    assert residual.n_filter_weights(p) == sum(w.size for ws in p["W"][1:] for w in ws) + 4 * 5 * 9 + 5 * 3 * 9


def test_chain_of_length_one_is_the_plain_model():
    """ops=("none",), skip="none": predictions, Eq. 8's correction, settling and Eq. 12's update are
    exactly ngc_ref.model's Eq. 1, Eq. 2, Algorithm 1 and Algorithm 2."""
    cfg = residual.ResidualConfig(base=SMALL, ops=("none",), skip="none")
    rng = np.random.default_rng(1)
    plain = model.init_params(SMALL, rng, np.float64)
    plain["b"] = [None] + [rng.standard_normal(b.shape) for b in plain["b"][1:]]
    p = {"W": [None] + [[w] for w in plain["W"][1:]], "S": [None, None, None], "b": plain["b"]}
    x, zt = rng.random((3, 2, 8, 12)), model.draw_top(SMALL, 3, rng, np.float64)
    for clamp in ("always", "first"):
        a = residual.settle(p, x, cfg, zt, clamp=clamp)
        b = model.settle(plain, x, SMALL, zt, clamp=clamp)
        for u, v in zip(a.z + a.zbar + a.e, b.z + b.zbar + b.e):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.energy, b.energy, rtol=1e-12)
    ua, ub = residual.filter_updates(a, p, cfg), model.filter_updates(b, plain, SMALL)
    for l in (1, 2):
        np.testing.assert_allclose(ua["W"][l][0], ub["W"][l], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ua["b"][l], ub["b"][l], rtol=1e-12, atol=1e-12)
    pa, pb = copy.deepcopy(p), copy.deepcopy(plain)
    residual.step(pa, ua, residual.init_state(pa), cfg)
    optim.step(pb, ub, optim.init_state(pb), SMALL)
    for l in (1, 2):
        np.testing.assert_allclose(pa["W"][l][0], pb["W"][l], rtol=1e-12, atol=1e-12)


def test_a_longer_chain_is_not_the_plain_model():
    """The reduction above is not vacuous: Eq. 7's chain predicts something else from the same first kernel."""
    cfg = residual.ResidualConfig(base=SMALL)
    rng = np.random.default_rng(2)
    p = residual.init_params(cfg, rng, np.float64)
    plain = {"W": [None] + [ws[cfg.n - 1] for ws in p["W"][1:]], "b": p["b"], "E": None}
    z = [rng.standard_normal((2, c) + SMALL.map_hw(l)) for l, c in enumerate(SMALL.layer_channels)]
    assert not np.allclose(residual.predictions_and_errors(z, p, cfg)[0][0],
                           model.predictions_and_errors(z, plain, SMALL)[0][0])


def test_maxpool_is_scipy_maximum_filter():
    x = np.random.default_rng(3).standard_normal((2, 3, 7, 9))
    for k in (1, 3, 5):
        ref = ndimage.maximum_filter(x, size=(1, 1, k, k), mode="constant", cval=-np.inf)
        np.testing.assert_array_equal(residual.maxpool_same(x, k), ref)


def F(z, p, cfg):
    return float(model.energy(residual.predictions_and_errors(z, p, cfg)[1]).sum())


def test_output_transform_and_skip_updates_are_minus_the_gradient():
    """Where the block's output is linear in a kernel (W^{l,1} with no post-op, the projection skip S^l),
    Eq. 12's dW^{l,1} = e^{l-1} *_1 a^{l,1} and dS^l are exactly -dF/dW by finite differences."""
    cfg = residual.ResidualConfig(base=SMALL, ops=("none", "pool+relu", "none"), skip="project")
    rng = np.random.default_rng(4)
    p = residual.init_params(cfg, rng, np.float64)
    z = [rng.standard_normal((2, c) + SMALL.map_hw(l)) for l, c in enumerate(SMALL.layer_channels)]
    zbar, e = residual.predictions_and_errors(z, p, cfg)
    up = residual.filter_updates(model.SettleResult(z, zbar, e, None), p, cfg)
    for l in (1, 2):
        for arr, d in ((p["W"][l][0], up["W"][l][0]), (p["S"][l], up["S"][l])):
            for idx in [(0, 0, 0, 0), (arr.shape[0] - 1, arr.shape[1] - 1, 2, 1)]:
                assert d[idx] == pytest.approx(-numgrad(lambda: F(z, p, cfg), arr, idx), rel=1e-6, abs=1e-8)


def test_one_update_lowers_the_energy_on_the_same_batch():
    """Eq. 12's proxy updates (which skip Pool and ReLU) still descend: after one Adam step (Config's lr) the
    energy of the settled states is lower, and settling again from the same start ends lower too."""
    cfg = residual.ResidualConfig(base=Config(channels=(4, 5, 3), image_hw=(16, 16), T=10))
    rng = np.random.default_rng(5)
    p = residual.init_params(cfg, rng, np.float64)
    x, zt = rng.random((4, 3, 16, 16)), model.draw_top(cfg.base, 4, rng, np.float64)
    res = residual.settle(p, x, cfg, zt)
    new = copy.deepcopy(p)
    residual.step(new, residual.filter_updates(res, p, cfg), residual.init_state(new), cfg)
    assert F(res.z, new, cfg) < F(res.z, p, cfg)
    assert residual.settle(new, x, cfg, zt).energy[-1].sum() < res.energy[-1].sum()
    norms = np.sqrt((np.concatenate([w.reshape(-1, 9) for ws in new["W"][1:] for w in ws]) ** 2).sum(axis=1))
    assert norms.max() <= 1 + 1e-12                                          # every block kernel projected


@pytest.mark.parametrize("channels, skip", [((3, 4, 2), "project"), ((3, 3, 3), "identity")])
def test_gradient_feedback_is_minus_the_energy_gradient(channels, skip):
    """feedback="gradient": the settle's d^l and every block's updates (all n kernels and the skip) are exactly
    -dF/dz^l and -dF/dW by finite differences, through phi', Pool, ReLU and the skip; states are drawn away from
    ReLU's and Pool's kinks (a finite difference across a kink would not be the derivative)."""
    base = Config(channels=channels, image_hw=(8, 12), T=6, stride=2 if skip == "project" else 1)
    cfg = residual.ResidualConfig(base=base, skip=skip, feedback="gradient")
    rng = np.random.default_rng(6)
    p = residual.init_params(cfg, rng, np.float64)
    p["b"] = [None] + [rng.standard_normal(b.shape) for b in p["b"][1:]]
    z = [rng.standard_normal((2, c) + base.map_hw(l)) for l, c in enumerate(base.layer_channels)]
    zbar, e = residual.predictions_and_errors(z, p, cfg)
    d = residual.corrections(z, e, p, cfg)
    up = residual.filter_updates(model.SettleResult(z, zbar, e, None), p, cfg)
    for l in range(1, base.L + 1):
        for idx in [(0, 0, 0, 0), (1, z[l].shape[1] - 1, z[l].shape[2] - 1, 1), (1, 0, 1, z[l].shape[3] - 2)]:
            assert d[l][idx] == pytest.approx(-numgrad(lambda: F(z, p, cfg), z[l], idx, 1e-6), rel=1e-5, abs=1e-7)
        pairs = [(w, dw) for w, dw in zip(p["W"][l], up["W"][l])] + ([(p["S"][l], up["S"][l])] if p["S"][l] is not None else [])
        assert len(pairs) == cfg.n + (skip == "project")
        for arr, dw in pairs:
            for idx in [(0, 0, 0, 0), (arr.shape[0] - 1, arr.shape[1] - 1, 2, 1), (0, arr.shape[1] - 1, 1, 2)]:
                assert dw[idx] == pytest.approx(-numgrad(lambda: F(z, p, cfg), arr, idx, 1e-6), rel=1e-5, abs=1e-7)
    printed = residual.corrections(z, e, p, dataclasses.replace(cfg, feedback="printed"))
    assert not np.allclose(printed[1], d[1])                  # the printed Eq. 8 is another map


def test_maxpool_adjoint():
    """<maxpool'(x) g, v> = <g, d/dt maxpool(x + t v)> at t = 0, away from ties (x distinct almost surely)."""
    rng = np.random.default_rng(7)
    x, g, v = rng.standard_normal((2, 3, 7, 9)), rng.standard_normal((2, 3, 7, 9)), rng.standard_normal((2, 3, 7, 9))
    for k in (1, 3, 5):
        h = 1e-7
        jv = (residual.maxpool_same(x + h * v, k) - residual.maxpool_same(x - h * v, k)) / (2 * h)
        assert np.sum(residual.maxpool_same_adjoint(x, g, k) * v) == pytest.approx(np.sum(g * jv), rel=1e-6)


def test_gradient_settle_descends_where_the_printed_one_does_not():
    """The point of feedback="gradient": from freshly drawn filters on the paper's block, the energy of its
    settle never rises at a small beta, where the printed Eq. 8 settle climbs (results/residual-settle.json)."""
    base = Config(channels=(4, 6, 3), image_hw=(16, 16), T=120, beta=0.05)
    rng = np.random.default_rng(8)
    x = rng.random((3, 3, 16, 16))
    out = {}
    for fb in ("printed", "gradient"):
        cfg = residual.ResidualConfig(base=base, feedback=fb)
        p = residual.init_params(cfg, np.random.default_rng(9), np.float64)
        out[fb] = residual.settle(p, x, cfg, model.draw_top(base, 3, np.random.default_rng(10), np.float64)).energy.sum(1)
    assert np.all(np.diff(out["gradient"]) <= 1e-9 * out["gradient"][0])
    assert out["printed"].max() > out["printed"][0]


def _gradient_setup(beta, T, gain, seed=8):
    base = Config(channels=(4, 6, 3), image_hw=(16, 16), T=T, beta=beta)
    x = np.random.default_rng(seed).random((3, 3, 16, 16))
    cfg = residual.ResidualConfig(base=base, feedback="gradient", descent=True)
    p = residual.init_params(cfg, np.random.default_rng(seed + 1), np.float64)
    p["W"][1] = [w * gain for w in p["W"][1]]              # a learnt-like gain (x gain^4 along the chain)
    return cfg, p, x, model.draw_top(base, 3, np.random.default_rng(seed + 2), np.float64)


def _gradient_settles(beta, T, gain, clamp="always"):
    cfg, p, x, top = _gradient_setup(beta, T, gain)
    with np.errstate(all="ignore"):
        return {d: residual.settle(p, x, dataclasses.replace(cfg, descent=d), top, clamp=clamp) for d in (False, True)}


@pytest.mark.parametrize("clamp", ["always", "first"])
def test_descent_settle_never_raises_an_images_objective(clamp):
    """descent=True: with a gain where the gradient settle at beta 0.1 blows up (to 1e117), no image's
    G = F + gamma / (2 beta) ||z||^2 over its free layers rises at any step, and F ends below its start."""
    out = _gradient_settles(beta=0.1, T=20, gain=4.0, clamp=clamp)
    assert not np.all(np.isfinite(out[False].energy[-1])) or np.all(out[False].energy[-1] > 1e6 * out[False].energy[0])
    assert np.all(out[True].energy[-1] < 0.5 * out[True].energy[0])
    cfg, p, x, top = _gradient_setup(beta=0.1, T=20, gain=4.0)
    G = []
    for t in range(21):                                    # the state after t steps: a prefix of the settle
        r = residual.settle(p, x, cfg, top, T=t, clamp=clamp)
        leak = sum(np.sum(r.z[l].reshape(3, -1) ** 2, axis=1) for l in range(len(r.z)) if l or clamp == "first")
        G.append(model.energy(r.e) + cfg.base.gamma / (2 * cfg.base.beta) * leak)
    G = np.array(G)
    assert np.all(np.diff(G, axis=0) <= 1e-12 * G[0])
    assert np.all(G[-1] < 0.5 * G[0])


def test_descent_settle_is_the_plain_one_where_no_step_climbs():
    """At a small beta no step is retaken, and descent_steps computes settle_steps exactly (bit for bit)."""
    out = _gradient_settles(beta=0.005, T=30, gain=2.0)
    for a, b in zip(out[False].z + out[False].e, out[True].z + out[True].e):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out[False].energy, out[True].energy)


def test_descent_retakes_only_the_images_that_climb():
    """Each image keeps its own rate: at beta 0.01 only image 0's plain settle climbs; descent retakes image 0
    alone, and images 1 and 2 move exactly as in the plain settle (the batch is not slowed down as a whole)."""
    out = _gradient_settles(beta=0.01, T=30, gain=3.0)
    climbs = np.diff(out[False].energy, axis=0).max(axis=0) > 0
    assert list(climbs) == [True, False, False]
    assert not np.array_equal(out[True].z[1][0], out[False].z[1][0])
    assert out[True].energy[-1, 0] < out[False].energy[-1, 0]
    for l in range(1, len(out[True].z)):
        np.testing.assert_array_equal(out[True].z[l][1:], out[False].z[l][1:])


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="ops must be"):
        residual.ResidualConfig(ops=("none", "maxout"))
    with pytest.raises(ValueError, match="feedback must be"):
        residual.ResidualConfig(feedback="exact")
    with pytest.raises(ValueError, match="descent=True needs feedback='gradient'"):
        residual.ResidualConfig(descent=True)
    with pytest.raises(ValueError, match="skip must be"):
        residual.ResidualConfig(skip="dense")
    with pytest.raises(ValueError, match="learn_E and pcn"):
        residual.ResidualConfig(base=Config(pcn=True))
    with pytest.raises(ValueError, match="identity skip needs"):
        residual.init_params(residual.ResidualConfig(base=SMALL, skip="identity"), np.random.default_rng(0))
