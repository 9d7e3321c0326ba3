"""The reference model against calculus: finite differences, descent, and the paper's numbers."""
import numpy as np
import pytest

from ngc_ref import model, optim
from ngc_ref.config import Config

from helpers import H, F, numgrad, params64, random_states
from tolerances import TOL, assert_adam_close, assert_close, central_difference_atol

SMALL = dict(channels=(3, 4, 2), image_hw=(8, 12), T=10)       # 2x3 -> 4x6 -> 8x12, fast in float64


@pytest.mark.parametrize("leak,pcn", [(1.0, False), (0.2, True)])
def test_state_correction_is_minus_energy_gradient(leak, pcn):
    """Eq. 2 with E = W^T: d^l = -dF/dz^l when phi is the identity (NGC) or with phi' (PCN mode)."""
    cfg = Config(leak=leak, pcn=pcn, **SMALL)
    rng = np.random.default_rng(0)
    p, z = params64(cfg, rng), random_states(cfg, 2, rng, away_from_zero=True)
    _, e = model.predictions_and_errors(z, p, cfg)
    d = model.corrections(z, e, p, cfg, free_bottom=True)
    atol = central_difference_atol(F(z, p, cfg), H)
    for l in range(cfg.L + 1):
        for idx in [(0, 0, 0, 0), (1, z[l].shape[1] - 1, z[l].shape[2] - 1, z[l].shape[3] - 1), (1, 0, 1, 2)]:
            g = numgrad(lambda: F(z, p, cfg), z[l], idx)
            assert d[l][idx] == pytest.approx(-g, rel=TOL["finite-difference"]["rtol"], abs=atol), (l, idx)


@pytest.mark.parametrize("leak,pcn", [(1.0, False), (0.2, True)])
def test_precision_weighted_correction_is_minus_the_weighted_energy_gradient(leak, pcn):
    """Precision-weighted denoising: d^1 = -e^1 + pi0 E^1 *_s e^0 is -dF_pi/dz^l for the energy with the bottom
    error weighted by its precision, F_pi = pi0/2 ||e^0||^2 + 1/2 sum_{l>=1} ||e^l||^2 (z^0 clamped); every
    layer above z^1 is unchanged, and pi0 = 1 is Algorithm 1's correction to the last bit."""
    cfg = Config(leak=leak, pcn=pcn, channels=(2, 3, 4, 2), image_hw=(8, 8), T=3)
    rng = np.random.default_rng(5)
    p, z = params64(cfg, rng), random_states(cfg, 2, rng, away_from_zero=True)
    pi0 = 0.3

    def F_pi():
        e = model.predictions_and_errors(z, p, cfg)[1]
        return float(pi0 * model.energy(e[:1]).sum() + model.energy(e[1:]).sum())
    _, e = model.predictions_and_errors(z, p, cfg)
    d = model.corrections(z, e, p, cfg, pi0=pi0)
    d1 = model.corrections(z, e, p, cfg)
    atol = central_difference_atol(F(z, p, cfg), H)
    for l in range(1, cfg.L + 1):
        for idx in [(0, 0, 0, 0), (1, z[l].shape[1] - 1, z[l].shape[2] - 1, z[l].shape[3] - 1)]:
            g = numgrad(F_pi, z[l], idx)
            assert d[l][idx] == pytest.approx(-g, rel=TOL["finite-difference"]["rtol"], abs=atol), (l, idx)
        if l > 1:
            np.testing.assert_array_equal(d[l], d1[l])       # only z^1 hears e^0
    assert not np.allclose(d[1], d1[1])
    np.testing.assert_array_equal(model.corrections(z, e, p, cfg, pi0=1.0)[1], d1[1])
    # equivalently: E^1 scaled by pi0 (what the fast backends do)
    scaled = dict(p, E=[None, pi0 * p["W"][1]] + p["W"][2:])
    np.testing.assert_allclose(model.corrections(z, e, scaled, cfg)[1], d[1], rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="pi0 must be a finite number > 0"):
        model.settle(p, z[0], cfg, z[cfg.L], pi0=0.0)


def test_without_phi_prime_the_correction_is_not_the_gradient():
    """The NGC correction (no phi') differs from -dF/dz when phi is leaky: the test above can fail."""
    cfg = Config(leak=0.2, pcn=False, **SMALL)
    rng = np.random.default_rng(0)
    p, z = params64(cfg, rng), random_states(cfg, 2, rng, away_from_zero=True)
    d = model.corrections(z, model.predictions_and_errors(z, p, cfg)[1], p, cfg)
    grads = np.array([numgrad(lambda: F(z, p, cfg), z[1], (0, c, 0, 0)) for c in range(z[1].shape[1])])
    assert np.max(np.abs(d[1][0, :, 0, 0] + grads)) > 1e-3


@pytest.mark.parametrize("leak", [1.0, 0.2])
def test_filter_updates_are_minus_energy_gradient(leak):
    """Alg. 2: dW = e *_1 Dilate(phi(z)) and db = sum e are -dF/dW, -dF/db (states held fixed)."""
    cfg = Config(leak=leak, **SMALL)
    rng = np.random.default_rng(1)
    p, z = params64(cfg, rng), random_states(cfg, 3, rng)
    zbar, e = model.predictions_and_errors(z, p, cfg)
    res = model.SettleResult(z, zbar, e, None)
    up = model.filter_updates(res, p, cfg)
    tol = dict(rel=TOL["finite-difference"]["rtol"], abs=central_difference_atol(F(z, p, cfg), H))
    for l in range(1, cfg.L + 1):
        for idx in [(0, 0, 0, 0), (p["W"][l].shape[0] - 1, p["W"][l].shape[1] - 1, 2, 1), (1, 0, 1, 1)]:
            assert up["W"][l][idx] == pytest.approx(-numgrad(lambda: F(z, p, cfg), p["W"][l], idx), **tol)
        for j in range(p["b"][l].shape[0]):
            assert up["b"][l][j] == pytest.approx(-numgrad(lambda: F(z, p, cfg), p["b"][l], (j,)), **tol)


def test_learnable_error_filters_are_used_and_updated():
    cfg = Config(learn_E=True, **SMALL)
    rng = np.random.default_rng(2)
    p, z = params64(cfg, rng, learn_E=True), random_states(cfg, 2, rng)
    _, e = model.predictions_and_errors(z, p, cfg)
    d_E = model.corrections(z, e, p, cfg)
    d_W = model.corrections(z, e, dict(p, E=None), cfg)
    assert not np.allclose(d_E[1], d_W[1])                          # E, not W, carries the error up
    up = model.filter_updates(model.SettleResult(z, *model.predictions_and_errors(z, p, cfg), None), p, cfg)
    np.testing.assert_allclose(up["E"][2], cfg.lam * up["W"][2])    # dE = lambda dW


@pytest.mark.parametrize("mode", [dict(leak=1.0), dict(pcn=True), dict(beta=0.01)])
def test_settling_lowers_the_energy(mode):
    """Settling descends F when the correction is the gradient (phi = identity or PCN) or beta is small.

    docs/reading.md: with leak 0.2 and beta 0.1 (the paper's dynamics) the energy first falls, then climbs
    back, so monotone descent is only claimed for these settings.
    """
    cfg = Config(**dict(dict(T=30), **mode))
    rng = np.random.default_rng(3)
    p = model.init_params(cfg, rng, np.float64)
    x = rng.random((2, 3, 32, 32))
    res = model.settle(p, x, cfg, model.draw_top(cfg, 2, rng, np.float64))
    E = res.energy                                                  # (T+1, B)
    assert E.shape == (31, 2)
    assert np.all(np.diff(E, axis=0) <= 1e-9 * E[:-1]), "energy rose during settling"
    assert np.all(E[-1] < 0.9 * E[0])


def test_paper_dynamics_fall_first():
    """The paper's configuration: the energy falls over the first steps (about 9% by step 6)."""
    cfg = Config(T=6)
    rng = np.random.default_rng(4)
    p = model.init_params(cfg, rng, np.float64)
    res = model.settle(p, rng.random((4, 3, 32, 32)), cfg, model.draw_top(cfg, 4, rng, np.float64))
    assert np.all(res.energy[-1] < 0.97 * res.energy[0])


@pytest.mark.parametrize("optimizer", ["adam", "normalized"])
def test_one_learning_step_lowers_the_energy(optimizer):
    """Descent sign (docs/reading.md): after one update the same batch has lower energy, with the states
    held at their settled values and after settling again; Algorithm 2's printed minus sign climbs."""
    cfg = Config(T=20, optimizer=optimizer, lr=1e-3)
    rng = np.random.default_rng(5)
    p = model.init_params(cfg, rng, np.float64)
    x, zt = rng.random((4, 3, 32, 32)), model.draw_top(cfg, 4, rng, np.float64)
    res = model.settle(p, x, cfg, zt)
    up = model.filter_updates(res, p, cfg)
    before = F(res.z, p, cfg)
    new = {k: None if v is None else list(v) for k, v in p.items()}
    optim.step(new, up, optim.init_state(new), cfg)
    assert F(res.z, new, cfg) < before
    assert model.settle(new, x, cfg, zt).energy[-1].sum() < res.energy[-1].sum()
    flipped = {k: None if v is None else [None if a is None else -a for a in v] for k, v in up.items()}
    wrong = {k: None if v is None else list(v) for k, v in p.items()}
    optim.step(wrong, flipped, optim.init_state(wrong), cfg)
    assert F(res.z, wrong, cfg) > before


def test_kernel_norm_projection():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((4, 5, 3, 3))
    w[0, 0] *= 0.01                                                 # a short kernel stays as it is
    out = optim.project_kernels(w, 1.0)
    norms = np.sqrt((out ** 2).sum(axis=(2, 3)))
    assert np.all(norms <= 1 + 1e-12)
    np.testing.assert_allclose(out[0, 0], w[0, 0])
    long = np.sqrt((w ** 2).sum(axis=(2, 3))) > 1
    np.testing.assert_allclose(norms[long], 1.0)
    np.testing.assert_allclose(out / np.linalg.norm(out, axis=(2, 3), keepdims=True),
                               w / np.linalg.norm(w, axis=(2, 3), keepdims=True))      # directions kept


@pytest.mark.parametrize("optimizer", ["adam", "normalized"])
def test_a_step_projects_learnable_E_as_it_projects_W(optimizer):
    """Sec. 3.2: after every update each K x K kernel of the filters is projected into the ball of radius
    max_kernel_norm; the error filters E, when learnable, are filters too (Eq. 2 carries the error up through
    them, unbounded they grow the correction). A kernel already inside the ball moves as the optimiser says."""
    cfg = Config(learn_E=True, optimizer=optimizer, **SMALL)
    rng = np.random.default_rng(10)
    p = params64(cfg, rng, learn_E=True)
    p["E"] = [None] + [5.0 * e for e in p["E"][1:]]            # N(0, 0.5) taps: kernels of norm ~1.5
    p["E"][1][0, 0] *= 0.1                                      # and one well inside
    assert max(np.sqrt((e ** 2).sum(axis=(2, 3))).max() for e in p["E"][1:]) > 1.5
    inside = p["E"][1][0, 0].copy()
    d = {k: [None] + [rng.standard_normal(a.shape) * 0.01 for a in p[k][1:]] for k in ("W", "b", "E")}
    optim.step(p, d, optim.init_state(p), cfg)
    for key in ("W", "E"):
        for l in range(1, cfg.L + 1):
            norms = np.sqrt((p[key][l] ** 2).sum(axis=(2, 3)))
            assert norms.max() <= cfg.max_kernel_norm * (1 + 1e-12), "%s[%d]: a kernel of norm %.4f" % (key, l, norms.max())
    moved = np.linalg.norm(p["E"][1][0, 0] - inside)            # by the optimiser only: at most lr per tap
    assert 0 < moved <= 3 * cfg.lr * (1 + 1e-9)


def test_adam_matches_the_formula():
    cfg = Config()
    p = {"W": [None, np.array([[[[0.5]]]])], "b": [None, np.zeros(1)], "E": None}
    st = optim.init_state(p)
    d = {"W": [None, np.array([[[[2.0]]]])], "b": [None, np.zeros(1)], "E": None}
    optim.step(p, d, st, cfg)
    # first bias-corrected Adam step moves by lr * sign(-grad) = +lr (gradient is -dW)
    assert p["W"][1][0, 0, 0, 0] == pytest.approx(0.5 + cfg.lr * 2.0 / (2.0 + cfg.adam_eps))


def test_adams_first_step_makes_a_rounding_difference_visible():
    """Why filters after an Adam step are compared with tolerances.assert_adam_close, not assert_close: the first
    step is lr g / (|g| + eps) with eps = 1e-8, so two gradients a rounding apart on either side of zero step
    2 lr apart, far outside the filters' tolerance, while the same rounding of a gradient far from zero changes
    nothing visible. assert_adam_close holds the near-zero entry to Adam's bound on a step and every other
    entry to the tolerance, so a wrong step anywhere else still fails."""
    cfg = Config()
    grads = {"ref": np.array([3e-6, -2.0, 0.5]), "other": np.array([-3e-6, -2.0 + 1e-6, 0.5 - 1e-6])}
    after = {}
    for side, g in grads.items():
        p = {"W": [None, np.full((1, 1, 1, 3), 0.5)], "b": [None, np.zeros(1)], "E": None}
        st = optim.init_state(p)
        optim.step(p, {"W": [None, -g.reshape(1, 1, 1, 3)], "b": [None, np.zeros(1)], "E": None}, st, cfg)
        after[side] = p["W"][1], st["v"]["W"][1]              # (the displacement is minus the gradient)
    (w, _), (w_ref, v_ref) = after["other"], after["ref"]
    assert abs(w[0, 0, 0, 0] - w_ref[0, 0, 0, 0]) == pytest.approx(2 * cfg.lr, rel=1e-2)
    assert np.abs(w - w_ref)[0, 0, 0, 1:].max() < 1e-12
    with pytest.raises(AssertionError, match="1 of 3 values differ"):
        assert_close(w, w_ref, **TOL["settled"], name="W after the step")
    floor = 1e-5                                               # how far the two gradients may differ
    assert_adam_close(w, w_ref, v_ref, 1, cfg, floor, **TOL["settled"], name="W after the step")
    wrong = w.copy()
    wrong[0, 0, 0, 2] -= 2 * cfg.lr                           # a step the wrong way on a gradient far from zero
    with pytest.raises(AssertionError, match="gradient above"):
        assert_adam_close(wrong, w_ref, v_ref, 1, cfg, floor, **TOL["settled"], name="W after a wrong step")


def test_paper_configuration():
    cfg = Config()
    p = model.init_params(cfg, np.random.default_rng(0))
    assert model.n_filter_weights(p) == 9225
    assert cfg.layer_channels == (3, 25, 20, 15, 10)
    assert [cfg.map_hw(l) for l in range(5)] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert sum(b.size for b in p["b"][1:]) == 63
    w = np.concatenate([a.ravel() for a in p["W"][1:]])
    assert abs(w.std() - 0.1) < 0.005 and abs(w.mean()) < 0.005  # N(0, 0.1)
    assert Config(learn_E=True).learn_E and sum(a.size for a in model.init_params(
        Config(learn_E=True), np.random.default_rng(0))["E"][1:]) == 9225          # 18,450 with E


@pytest.mark.parametrize("mu_z,sigma_z", [(0.5, 0.05), (5.0, 0.3), (-2.0, 1.0)], ids=["appendix-B", "sec-3.1", "negative"])
def test_the_top_state_is_drawn_from_N_mu_z_sigma_z(mu_z, sigma_z):
    """Algorithm 1 line 4: z^L ~ N(mu_z, sigma_z), each element independently, of z^L's shape, in the dtype asked
    for; the same generator state gives the same draw (every backend starts from the host's numbers). 80,000
    elements: their mean within 5 standard errors of mu_z, their std within 5 of sigma_z, and about 68% within
    one sigma_z of mu_z."""
    cfg = Config(mu_z=mu_z, sigma_z=sigma_z)
    B = 2000
    z = model.draw_top(cfg, B, np.random.default_rng(11))
    assert z.shape == (B, 10, 2, 2) and z.dtype == np.float32
    assert model.draw_top(cfg, 3, np.random.default_rng(0), np.float64).dtype == np.float64
    v, n = z.astype(np.float64).ravel(), z.size
    assert abs(v.mean() - mu_z) < 5 * sigma_z / np.sqrt(n), "mean %.5f, mu_z %g" % (v.mean(), mu_z)
    assert abs(v.std() - sigma_z) < 5 * sigma_z / np.sqrt(2 * n), "std %.5f, sigma_z %g" % (v.std(), sigma_z)
    assert abs(np.mean(np.abs(v - mu_z) < sigma_z) - 0.6827) < 0.01
    per_map = z.astype(np.float64).mean(axis=(0, 2, 3))                   # no map drawn apart from the others
    assert np.all(np.abs(per_map - mu_z) < 5 * sigma_z / np.sqrt(n / 10))
    np.testing.assert_array_equal(model.draw_top(cfg, B, np.random.default_rng(11)), z)


def test_denoising_mode_lets_the_bottom_evolve():
    cfg = Config(T=5)
    rng = np.random.default_rng(7)
    p = model.init_params(cfg, rng, np.float64)
    x, zt = rng.random((1, 3, 32, 32)), model.draw_top(cfg, 1, rng, np.float64)
    clamped = model.settle(p, x, cfg, zt, clamp="always")
    free = model.settle(p, x, cfg, zt, clamp="first")
    np.testing.assert_array_equal(clamped.z[0], x)
    assert not np.allclose(free.z[0], x)
    # t = 1 is identical in both modes: same states, same first energy
    assert free.energy[0, 0] == clamped.energy[0, 0]


def test_settle_rejects_unknown_clamp():
    cfg = Config(T=1)
    rng = np.random.default_rng(9)
    p = model.init_params(cfg, rng)
    with pytest.raises(ValueError, match="clamp must be 'always' or 'first'"):
        model.settle(p, np.zeros((1, 3, 32, 32), np.float32), cfg, model.draw_top(cfg, 1, rng), clamp="sometimes")


def test_reference_keeps_the_dtype():
    for dt in (np.float32, np.float64):
        cfg = Config(T=2)
        rng = np.random.default_rng(8)
        p = model.init_params(cfg, rng, dt)
        res = model.settle(p, rng.random((1, 3, 32, 32)).astype(dt), cfg, model.draw_top(cfg, 1, rng, dt))
        assert all(a.dtype == dt for a in res.z + res.zbar + res.e)
