"""FC-NGC (ngc_ref/fc.py) against calculus: finite differences of its correction and update, the paper's
parameter count, descent of one learning step, and the column-norm constraint."""
import numpy as np
import pytest

from ngc_ref import fc

from helpers import numgrad

SMALL = dict(hidden=(5, 4, 6), image_shape=(2, 3, 2), T=8)          # 12 -> 6 -> 4 -> 5 units, float64


def params64(cfg, rng):
    p = fc.init_params(cfg, rng, np.float64)
    p["b"] = [None] + [rng.standard_normal(b.shape) * 0.1 for b in p["b"][1:]]
    return p


def states(cfg, B, rng, bottom01=False):
    z = [rng.standard_normal((B, n)) for n in cfg.layer_units]
    z = [np.where(np.abs(a) < 0.05, np.sign(a) * 0.05 + a, a) for a in z]      # leaky-ReLU kinks out of the stencil
    if bottom01:
        z[0] = rng.uniform(0.1, 0.9, z[0].shape)                                # pixels for the Bernoulli energy
    return z


def F(z, p, cfg):
    """The energy whose minus gradient the corrections and updates are: 1/2 sum_{l>=1} ||e^l||^2 plus, at the
    bottom, 1/2 ||e^0||^2 for an identity g^0 or the Bernoulli energy (cross-entropy of z^0 against
    zbar^0 = sigmoid(a)) for the paper's sigmoid g^0."""
    zbar, e = fc.predictions_and_errors(z, p, cfg)
    top = sum(0.5 * float(np.sum(el * el)) for el in e[1:])
    if cfg.bottom == "identity":
        return top + 0.5 * float(np.sum(e[0] * e[0]))
    x, q = z[0], zbar[0]
    return top - float(np.sum(x * np.log(q) + (1 - x) * np.log(1 - q)))


def probe(a):
    return [(0, 0), (a.shape[0] - 1, a.shape[1] - 1), (1 % a.shape[0], a.shape[1] // 2)]


@pytest.mark.parametrize("bottom,leak,pcn", [("identity", 1.0, False), ("identity", 0.2, True),
                                             ("sigmoid", 1.0, False), ("sigmoid", 0.2, True)])
def test_correction_is_minus_energy_gradient(bottom, leak, pcn):
    """Eq. 2 with E = W^T: d^l = -dF/dz^l for every latent layer (phi = identity for NGC, or PCN's phi')."""
    cfg = fc.FCConfig(bottom=bottom, leak=leak, pcn=pcn, **SMALL)
    rng = np.random.default_rng(0)
    p, z = params64(cfg, rng), states(cfg, 2, rng, bottom01=(bottom == "sigmoid"))
    d = fc.corrections(z, fc.predictions_and_errors(z, p, cfg)[1], p, cfg, free_bottom=(bottom == "identity"))
    layers = range(0 if bottom == "identity" else 1, cfg.L + 1)        # d^0 = -e^0 is the squared term's gradient
    for l in layers:
        for idx in probe(z[l]):
            assert d[l][idx] == pytest.approx(-numgrad(lambda: F(z, p, cfg), z[l], idx), rel=1e-6, abs=1e-8), (l, idx)


def test_ngc_correction_without_phi_prime_is_not_the_gradient():
    """The paper's NGC (no phi') with a leaky phi is not a gradient step: the test above can fail."""
    cfg = fc.FCConfig(bottom="identity", leak=0.2, pcn=False, **SMALL)
    rng = np.random.default_rng(0)
    p, z = params64(cfg, rng), states(cfg, 2, rng)
    z[1][:] = -np.abs(z[1])                                            # every unit on the leaky side
    d = fc.corrections(z, fc.predictions_and_errors(z, p, cfg)[1], p, cfg)
    g = np.array([numgrad(lambda: F(z, p, cfg), z[1], (0, i)) for i in range(z[1].shape[1])])
    assert np.max(np.abs(d[1][0] + g)) > 1e-3


@pytest.mark.parametrize("bottom,leak", [("identity", 1.0), ("identity", 0.2), ("sigmoid", 0.2)])
def test_updates_are_minus_energy_gradient(bottom, leak):
    """dW^l = phi(z^l)^T e^{l-1} and db = sum e^{l-1} are -dF/dW, -dF/db with the states held fixed."""
    cfg = fc.FCConfig(bottom=bottom, leak=leak, **SMALL)
    rng = np.random.default_rng(1)
    p, z = params64(cfg, rng), states(cfg, 3, rng, bottom01=(bottom == "sigmoid"))
    zbar, e = fc.predictions_and_errors(z, p, cfg)
    up = fc.filter_updates(fc.SettleResult(z, zbar, e, None), p, cfg)
    for l in range(1, cfg.L + 1):
        assert up["W"][l].shape == p["W"][l].shape
        for idx in probe(p["W"][l]):
            assert up["W"][l][idx] == pytest.approx(-numgrad(lambda: F(z, p, cfg), p["W"][l], idx), rel=1e-6, abs=1e-8)
        for j in (0, p["b"][l].shape[0] - 1):
            assert up["b"][l][j] == pytest.approx(-numgrad(lambda: F(z, p, cfg), p["b"][l], (j,)), rel=1e-6, abs=1e-8)


def test_paper_parameter_count():
    """Appendix B: 738,072 free parameters = 200*3072 + 3*200*200 weights + 3072 + 3*200 biases."""
    cfg = fc.FCConfig()
    p = fc.init_params(cfg, np.random.default_rng(0))
    assert cfg.layer_units == (3072, 200, 200, 200, 200)
    assert fc.n_free_parameters(p) == 738072 == 200 * 3072 + 3 * 200 * 200 + 3072 + 3 * 200
    w = np.concatenate([a.ravel() for a in p["W"][1:]])
    assert abs(w.std() - 0.1) < 0.005 and all(np.all(b == 0) for b in p["b"][1:])
    z = fc.draw_states(cfg, 1000, np.random.default_rng(1))
    assert abs(z[0].mean() - 0.5) < 0.005 and abs(z[0].std() - 0.05) < 0.005


def test_one_learning_step_lowers_the_energy():
    """Descent: after one Adam step on the settled states the same batch has lower energy; the flipped sign climbs."""
    cfg = fc.FCConfig(hidden=(20, 30), image_shape=(3, 4, 4), T=20, bottom="identity")
    rng = np.random.default_rng(2)
    p = fc.init_params(cfg, rng, np.float64)
    x = rng.random((8, 3, 4, 4))
    res = fc.settle(p, x, cfg, fc.draw_states(cfg, 8, rng, np.float64))
    up = fc.filter_updates(res, p, cfg)

    def Fz(params):
        return float(fc.energy(fc.predictions_and_errors(res.z, params, cfg)[1]).sum())
    before = Fz(p)
    good = {k: None if v is None else list(v) for k, v in p.items()}
    fc.step(good, up, fc.init_state(good), cfg)
    bad = {k: None if v is None else list(v) for k, v in p.items()}
    flip = {k: None if v is None else [None if a is None else -a for a in v] for k, v in up.items()}
    fc.step(bad, flip, fc.init_state(bad), cfg)
    assert Fz(good) < before < Fz(bad)


def test_column_norms_are_projected():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 50))
    w[2] *= 0.01
    out = fc.project_rows(w)
    assert np.all(np.linalg.norm(out, axis=1) <= 1 + 1e-12)
    np.testing.assert_array_equal(out[2], w[2])
    cfg = fc.FCConfig(**SMALL)
    p = fc.init_params(cfg, rng, np.float64)
    p["W"][1] *= 100
    up = fc.filter_updates(fc.settle(p, rng.random((2, 2, 3, 2)), cfg, fc.draw_states(cfg, 2, rng, np.float64)), p, cfg)
    fc.step(p, up, fc.init_state(p), cfg)
    assert np.all(np.linalg.norm(p["W"][1], axis=1) <= 1 + 1e-9)


def test_settle_contract_and_denoising_mode():
    cfg = fc.FCConfig(**SMALL)
    rng = np.random.default_rng(4)
    p = fc.init_params(cfg, rng, np.float64)
    x, zi = rng.random((3, 2, 3, 2)), fc.draw_states(cfg, 3, rng, np.float64)
    a = fc.settle(p, x, cfg, zi, clamp="always")
    b = fc.settle(p, x, cfg, zi, clamp="first")
    assert a.energy.shape == (cfg.T + 1, 3) and a.zbar[0].shape == (3, 12)
    assert np.all((a.zbar[0] > 0) & (a.zbar[0] < 1))                  # sigmoid bottom
    np.testing.assert_array_equal(a.z[0], x.reshape(3, -1))
    assert not np.allclose(b.z[0], x.reshape(3, -1)) and a.energy[0, 0] == b.energy[0, 0]
    with pytest.raises(ValueError, match="bottom layer has 12 units"):
        fc.settle(p, rng.random((3, 3, 3, 2)), cfg, zi)
    with pytest.raises(ValueError, match="z_init must hold 3 latent"):
        fc.settle(p, x, cfg, zi[:2])
    with pytest.raises(ValueError, match="bottom must be"):
        fc.FCConfig(bottom="tanh")
