"""Heavy-ball momentum of the settle (ngc_ref.model.heavy_ball): Algorithm 1 when it is 0, the velocity form of
Polyak's method otherwise, and the same fixed point as Algorithm 1's plain steps, reached in far fewer steps."""
import dataclasses

import numpy as np
import pytest

from ngc_ref import model
from ngc_ref.config import Config, ConfigError

from helpers import params64

SMALL = Config(channels=(3, 4, 2), image_hw=(8, 12), T=10, beta=0.05, gamma=0.0005)


def _problem(cfg=SMALL, B=3, seed=0):
    rng = np.random.default_rng(seed)
    p = params64(cfg, rng)
    x = rng.random((B,) + (cfg.layer_channels[0],) + cfg.image_hw)
    return p, x + rng.normal(0, 0.1, x.shape), model.draw_top(cfg, B, rng, np.float64)


def test_momentum_zero_is_algorithm_1_to_the_last_bit():
    p, y, zt = _problem()
    a, b = model.settle(p, y, SMALL, zt, T=12, pi0=0.2), model.settle(p, y, SMALL, zt, T=12, pi0=0.2, momentum=0.0)
    for u, v in zip(a.z + a.zbar + [a.energy], b.z + b.zbar + [b.energy]):
        np.testing.assert_array_equal(u, v)


def test_the_settle_is_polyaks_velocity_form():
    """An independent loop: v_{t+1} = mu v_t + (Eq. 2's new state - z_t), z_{t+1} = z_t + v_{t+1}, v_0 = 0
    (algebraically z_{t+1} = correct(z_t) + mu (z_t - z_{t-1})); z^0 stays the noisy image."""
    p, y, zt = _problem()
    mu, pi0, T = 0.7, 0.2, 9
    z = model.init_states(y, p, SMALL, zt)
    v = [np.zeros_like(a) for a in z]
    for _ in range(T):
        e = model.predictions_and_errors(z, p, SMALL)[1]
        new = model.correct(z, e, p, SMALL, pi0=pi0)
        v = [mu * vl + (n - zl) for vl, n, zl in zip(v, new, z)]
        z = [zl + vl for zl, vl in zip(z, v)]
    got = model.settle(p, y, SMALL, zt, T=T, pi0=pi0, momentum=mu)
    for l in range(SMALL.L + 1):
        np.testing.assert_allclose(got.z[l], z[l], rtol=1e-12, atol=1e-13, err_msg="z[%d]" % l)
    np.testing.assert_array_equal(got.z[0], y)
    assert not np.allclose(got.z[1], model.settle(p, y, SMALL, zt, T=T, pi0=pi0).z[1], atol=1e-6)   # it moves


def test_momentum_reaches_the_fixed_point_of_the_plain_steps_in_far_fewer_steps():
    """Precision-weighted denoising (small pi0 settles slowly): 400 steps with momentum 0.9 end where 4,000 plain
    steps end; 400 plain steps are still far from it. The fixed point is one of both updates."""
    cfg = dataclasses.replace(SMALL, leak=1.0, gamma=0.005)    # phi = identity: one fixed point; the leak sets the
                                                               # slowest rate of the plain steps (4,000: converged)
    p, y, zt = _problem(cfg)
    plain = model.settle(p, y, cfg, zt, T=4000, pi0=0.05)
    fast = model.settle(p, y, cfg, zt, T=400, pi0=0.05, momentum=0.9)
    short = model.settle(p, y, cfg, zt, T=400, pi0=0.05)
    scale = np.abs(plain.zbar[0]).max()
    far = np.abs(short.zbar[0] - plain.zbar[0]).max()
    near = np.abs(fast.zbar[0] - plain.zbar[0]).max()
    assert near < 1e-8 * scale and far > 1e4 * near, (near, far)
    d = model.corrections(fast.z, fast.e, p, cfg, pi0=0.05)       # Eq. 2 at rest: beta d^l = gamma z^l
    for l in range(1, cfg.L + 1):
        np.testing.assert_allclose(cfg.beta * d[l], cfg.gamma * fast.z[l], atol=1e-9 * np.abs(fast.z[l]).max())


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan"), float("inf"), True, "0.9", None])
def test_a_momentum_outside_0_1_is_refused(bad):
    p, y, zt = _problem()
    with pytest.raises(ValueError, match="momentum must be a number in \\[0, 1\\)"):
        model.settle(p, y, SMALL, zt, T=2, momentum=bad)


def test_momentum_is_for_clamped_settles():
    p, y, zt = _problem()
    with pytest.raises(ValueError, match="momentum is for clamped settles"):
        model.settle(p, y, SMALL, zt, T=2, clamp="first", momentum=0.5)
    model.settle(p, y, SMALL, zt, T=2, clamp="first", momentum=0.0)         # plain steps: fine


def test_the_config_reads_momentum_only_under_the_precision_reading():
    assert Config().momentum == 0.0                                     # Algorithm 1 unless tuned
    cfg = Config(momentum=0.9)
    assert cfg.denoise_momentum == 0.9
    assert dataclasses.replace(cfg, denoise="clamped").denoise_momentum == 0.0
    assert dataclasses.replace(cfg, denoise="free").denoise_momentum == 0.0
    for bad in (1.0, -0.5):
        with pytest.raises(ConfigError, match="momentum"):
            Config(momentum=bad)
    assert Config.from_dict({k: v for k, v in cfg.to_dict().items() if k != "momentum"}).momentum == 0.0
