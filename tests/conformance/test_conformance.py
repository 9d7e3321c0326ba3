"""The contract every backend keeps, one suite over all of them (conftest's `backend`: every name of the registry,
numpy, cpu, cuda-emu, and cuda when there is a GPU): settle, filter_updates and step agree with the reference
(ngc_ref in float64, on float32 inputs upcast), on small awkward shapes with every Config reading that changes
the math and at the paper's size; every filter, W and a learnable E, ends a step inside the ball of radius
max_kernel_norm; a backend computes in the dtype it is given or refuses it, never casting in silence; the
inputs are left as they were. test_checks.py holds the same backends to the same input errors, test_golden.py
to the golden file. A backend's own ring (tests/cpu, tests/cuda) goes further (its kernels one by one, every
option, thread counts and orders); this suite is what a new backend must pass first (`make test-fast`).
"""
import dataclasses

import numpy as np
import pytest

from ngc_ref import model as ref_model
from ngc_ref import optim as ref_optim
from ngc_ref.config import Config

from helpers import compare, f64, setup, states, tree64, update_terms
from tolerances import TOL, assert_close, reduction

# odd maps, H != W, C not a multiple of 4 or 32: 3x5 -> 6x10 -> 12x20
SMALL = Config(channels=(4, 5, 3), image_hw=(12, 20), T=8)
MODES = {
    "ngc": {},
    "pcn": dict(pcn=True),
    "learn-E": dict(learn_E=True),
    "bias-pixel": dict(bias="pixel"),
    "reduce-mean": dict(reduce="mean"),
    "denoise-no-gamma-bottom": dict(gamma_bottom=False, gamma=0.02),
    "precision": {},
    "precision-momentum": {},
}
# the backends that compute in float64 when given it (the others refuse it: test_checks.py)
FLOAT64 = ("numpy", "cpu")


def _kernel_norms(w):
    return np.sqrt((f64(w) ** 2).sum(axis=(2, 3)))


@pytest.mark.parametrize("mode", list(MODES))
def test_settle_agrees_with_the_reference(backend, rng, mode):
    """Algorithm 1: one step at the one-step tolerance (drift shows where it starts), then T steps; the states,
    errors, predictions and energies in the dtype of the inputs; the inputs untouched; a clamped z^0 is x."""
    cfg = dataclasses.replace(SMALL, **MODES[mode])
    params, x, z_top = setup(cfg, rng, B=3)
    kw = dict(clamp="first" if mode.startswith("denoise") else "always", pi0=0.3 if mode.startswith("precision") else 1.0,
              momentum=0.9 if mode == "precision-momentum" else 0.0)
    p, xb, zb = backend.put_tree(params), backend.put(x.copy()), backend.put(z_top.copy())
    for T, tol in ((1, TOL["step"]), (cfg.T, TOL["settled"])):
        res = backend.settle(p, xb, cfg, zb, T=T, **kw)
        ref = ref_model.settle(tree64(params), f64(x), cfg, f64(z_top), T=T, **kw)
        got = ref_model.SettleResult(*[[backend.get(a) for a in v] for v in (res.z, res.zbar, res.e)],
                                     backend.get(res.energy))
        assert all(a.dtype == np.float32 for a in got.z + got.zbar + got.e) and got.energy.dtype == np.float32
        assert got.energy.shape == (T + 1, 3)
        compare(got, ref, cfg, tol, "%s %s T=%d" % (backend, mode, T))
        if kw["clamp"] == "always":
            np.testing.assert_array_equal(got.z[0], x)
    np.testing.assert_array_equal(backend.get(xb), x)
    np.testing.assert_array_equal(backend.get(zb), z_top)
    for k in ("W", "b"):
        for a, b in zip(p[k][1:], params[k][1:]):
            np.testing.assert_array_equal(backend.get(a), b)


@pytest.mark.parametrize("mode", ["ngc", "learn-E", "bias-pixel", "reduce-mean"])
def test_filter_updates_agree_with_the_reference(backend, rng, mode):
    """Algorithm 2's displacements from the same float32 states and errors (random: both signs of phi): dW, db
    (a map for bias="pixel"), dE = lambda dW when E is learnable and None otherwise; averaged for
    reduce="mean"; in float32, within the reduction tolerance of their sums' length."""
    cfg = dataclasses.replace(SMALL, **MODES[mode])
    B = 7
    params, _, _ = setup(cfg, rng, B=B)
    z, e = states(cfg, rng, B), states(cfg, rng, B)
    e[cfg.L][:] = 0
    d = backend.filter_updates(ref_model.SettleResult([backend.put(a) for a in z], None, [backend.put(a) for a in e],
                                                      None), backend.put_tree(params), cfg)
    r = ref_model.filter_updates(ref_model.SettleResult([f64(a) for a in z], None, [f64(a) for a in e], None),
                                 tree64(params), cfg)
    for key in ("W", "b", "E"):
        assert (d[key] is None) == (r[key] is None), key
        for l in range(1, cfg.L + 1) if r[key] is not None else ():
            got = backend.get(d[key][l])
            assert got.dtype == np.float32 and got.shape == r[key][l].shape, (key, l, got.dtype, got.shape)
            assert_close(got, r[key][l], **reduction(update_terms(cfg, key, l, B), r[key][l]),
                         name="%s d%s[%d]" % (backend, key, l))


@pytest.fixture(scope="module")
def paper_size_updates():
    """The paper's configuration, B = 20 random states and errors, and the reference's displacements (computed
    once for every backend)."""
    cfg, B = Config(), 20
    rng = np.random.default_rng(20)
    params, _, _ = setup(cfg, rng, B=B)
    z, e = states(cfg, rng, B), states(cfg, rng, B)
    e[cfg.L][:] = 0
    r = ref_model.filter_updates(ref_model.SettleResult([f64(a) for a in z], None, [f64(a) for a in e], None),
                                 tree64(params), cfg)
    return cfg, B, params, z, e, r


def test_filter_updates_at_the_paper_size(backend, paper_size_updates):
    """The paper's configuration (32x32x3, channels 25, 20, 15, 10), B = 20: dW^1 sums 5,120 products per entry.
    Held to the reduction tolerance scaled to that length (tests/ref/test_ref_ops.py shows why a fixed atol
    cannot serve at this size)."""
    cfg, B, params, z, e, r = paper_size_updates
    d = backend.filter_updates(ref_model.SettleResult([backend.put(a) for a in z], None, [backend.put(a) for a in e],
                                                      None), backend.put_tree(params), cfg)
    for key in ("W", "b"):
        for l in range(1, cfg.L + 1):
            assert_close(backend.get(d[key][l]), r[key][l], **reduction(update_terms(cfg, key, l, B), r[key][l]),
                         name="%s d%s[%d], paper size" % (backend, key, l))


@pytest.mark.parametrize("optimizer", ["adam", "normalized"])
def test_step_agrees_with_the_reference_and_projects_every_filter(backend, rng, optimizer):
    """Two updates of W, b and a learnable E on the same float32 displacements (so Adam's eps sees no rounding
    difference of the gradient, and every entry is compared): Adam's moments and the parameters within the
    elementwise tolerance. Filters start with kernels of norm up to about 2 (w_std 0.6, E = W + noise) and
    every kernel of W and of E ends each step with norm <= max_kernel_norm, the projection's promise."""
    cfg = dataclasses.replace(SMALL, optimizer=optimizer, learn_E=True, w_std=0.6, lr=0.05)
    params, _, _ = setup(cfg, rng, B=1)
    assert min(_kernel_norms(w).max() for k in ("W", "E") for w in params[k][1:]) > 1.2     # the projection acts
    p, p_ref = backend.put_tree(params), tree64(params)
    s, s_ref = backend.init_state(p), ref_optim.init_state(p_ref)
    for it in range(2):
        d = {k: [None] + [rng.standard_normal(a.shape).astype(np.float32) for a in params[k][1:]] for k in ("W", "b", "E")}
        backend.step(p, backend.put_tree(d), s, cfg)
        ref_optim.step(p_ref, tree64(d), s_ref, cfg)
        assert s["t"] == s_ref["t"] == it + 1
        for key in ("W", "b", "E"):
            for l in range(1, cfg.L + 1):
                got = backend.get(p[key][l])
                assert got.dtype == np.float32
                assert_close(got, p_ref[key][l], **TOL["elementwise"], name="%s %s[%d] step %d" % (backend, key, l, it + 1))
                if optimizer == "adam":
                    for mom in ("m", "v"):
                        assert_close(backend.get(s[mom][key][l]), s_ref[mom][key][l], **TOL["elementwise"],
                                     name="%s Adam %s of %s[%d]" % (backend, mom, key, l))
                if key != "b":
                    norms = _kernel_norms(got)
                    assert norms.max() <= cfg.max_kernel_norm * (1 + 1e-6), (
                        "%s: a kernel of %s[%d] has norm %.4f > max_kernel_norm %g after step %d"
                        % (backend, key, l, norms.max(), cfg.max_kernel_norm, it + 1))


def test_float64_is_computed_in_float64_or_refused(backend, rng):
    """Given float64 arrays, a backend computes in float64 (numpy, cpu: every output float64 and as the float64
    reference to its rounding) or refuses them with a TypeError naming the dtype (the CUDA kernels): it never
    returns float32, or float32's accuracy, in silence."""
    cfg = dataclasses.replace(SMALL, learn_E=True, T=5)
    params, x, z_top = setup(cfg, rng, B=3)
    p64, x64, zt64 = tree64(params), f64(x), f64(z_top)
    if backend.name not in FLOAT64:
        with pytest.raises(TypeError, match="computes in float32"):
            backend.settle(backend.put_tree(p64), backend.put(x64), cfg, backend.put(zt64))
        return
    tol = TOL["float64"]
    res = backend.settle(backend.put_tree(p64), backend.put(x64), cfg, backend.put(zt64), clamp="first")
    ref = ref_model.settle(p64, x64, cfg, zt64, clamp="first")
    got = ref_model.SettleResult(*[[backend.get(a) for a in v] for v in (res.z, res.zbar, res.e)], backend.get(res.energy))
    assert all(a.dtype == np.float64 for a in got.z + got.zbar + got.e) and got.energy.dtype == np.float64
    compare(got, ref, cfg, tol, "%s float64 settle" % backend)
    d = backend.filter_updates(res, backend.put_tree(p64), cfg)
    r = ref_model.filter_updates(ref, p64, cfg)
    for key in ("W", "b", "E"):
        for l in range(1, cfg.L + 1):
            got = backend.get(d[key][l])
            assert got.dtype == np.float64, "%s: d%s[%d] is %s in float64 mode" % (backend, key, l, got.dtype)
            assert_close(got, r[key][l], **tol, name="%s float64 d%s[%d]" % (backend, key, l))
    p = backend.put_tree(p64)                     # the reference's displacements on both sides: Adam's eps
    backend.step(p, backend.put_tree(r), backend.init_state(p), cfg)      # sees no difference of the gradient
    ref_optim.step(p64, r, ref_optim.init_state(p64), cfg)
    for key in ("W", "b", "E"):
        for l in range(1, cfg.L + 1):
            got = backend.get(p[key][l])
            assert got.dtype == np.float64, "%s: %s[%d] is %s after a float64 step" % (backend, key, l, got.dtype)
            assert_close(got, p64[key][l], **tol, name="%s float64 %s[%d] after the step" % (backend, key, l))
