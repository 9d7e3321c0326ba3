"""The Config readings of the paper's open points (bias, reduce, gamma_bottom, output) in the reference:
each does what its one line says, checked against calculus or the plain formula; the defaults are the
earlier behaviour."""
import dataclasses

import numpy as np
import pytest

from ngc_ref import model
from ngc_ref.config import Config

from helpers import F, numgrad, params64, random_states

SMALL = Config(channels=(3, 4, 2), image_hw=(8, 12), T=10)


def test_defaults_are_the_literal_reading():
    cfg = Config()
    assert (cfg.bias, cfg.reduce, cfg.gamma_bottom, cfg.output) == ("channel", "sum", True, "zbar")


@pytest.mark.parametrize("key,value,msg", [("bias", "map", "bias must be one of channel, pixel, got 'map'"),
                                           ("reduce", "avg", "reduce must be one of sum, mean, got 'avg'"),
                                           ("output", "x", "output must be one of zbar, z, got 'x'"),
                                           ("gamma_bottom", "yes", "gamma_bottom must be true or false, got 'yes'")])
def test_bad_option_values_are_named(key, value, msg):
    with pytest.raises(ValueError, match=msg):
        Config(**{key: value})


def test_pixel_bias_is_a_map_per_layer_and_its_update_is_minus_the_gradient():
    """bias="pixel": b^l is (C_{l-1}, H_{l-1}, W_{l-1}), added pixel by pixel to the prediction, and
    db^l = sum over the batch of e^{l-1} is -dF/db^l (finite differences)."""
    cfg = dataclasses.replace(SMALL, bias="pixel")
    rng = np.random.default_rng(0)
    p = params64(cfg, rng)
    assert [b.shape for b in p["b"][1:]] == [(2, 8, 12), (4, 4, 6)]
    z = random_states(cfg, 3, rng)
    zbar = model.predict(z[1], p["W"][1], p["b"][1], cfg, (8, 12))
    no_bias = model.predict(z[1], p["W"][1], np.zeros_like(p["b"][1]), cfg, (8, 12))
    np.testing.assert_allclose(zbar - no_bias, np.broadcast_to(p["b"][1], zbar.shape), atol=1e-14)
    res = model.SettleResult(z, *model.predictions_and_errors(z, p, cfg), None)
    up = model.filter_updates(res, p, cfg)
    for l in (1, 2):
        assert up["b"][l].shape == p["b"][l].shape
        for idx in [(0, 0, 0), (1, 3, 5), (p["b"][l].shape[0] - 1, 1, 2)]:
            assert up["b"][l][idx] == pytest.approx(-numgrad(lambda: F(z, p, cfg), p["b"][l], idx), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("bias", ["channel", "pixel"])
def test_reduce_mean_is_the_sum_divided_by_the_batch(bias):
    cfg = dataclasses.replace(SMALL, bias=bias, learn_E=True)
    rng = np.random.default_rng(1)
    p = params64(cfg, rng)
    z = random_states(cfg, 5, rng)
    res = model.SettleResult(z, *model.predictions_and_errors(z, p, cfg), None)
    s = model.filter_updates(res, p, cfg)
    m = model.filter_updates(res, p, dataclasses.replace(cfg, reduce="mean"))
    for key in ("W", "b", "E"):
        for l in (1, 2):
            np.testing.assert_allclose(m[key][l], s[key][l] / 5, rtol=1e-15)


def test_gamma_bottom_false_drops_the_leak_on_a_free_bottom_only():
    cfg = dataclasses.replace(SMALL, gamma=0.2)
    rng = np.random.default_rng(2)
    p = params64(cfg, rng)
    z = random_states(cfg, 2, rng)
    _, e = model.predictions_and_errors(z, p, cfg)
    leaky = model.correct(z, e, p, cfg, free_bottom=True)
    plain = model.correct(z, e, p, dataclasses.replace(cfg, gamma_bottom=False), free_bottom=True)
    np.testing.assert_allclose(plain[0], z[0] - cfg.beta * e[0], rtol=1e-15)
    np.testing.assert_allclose(leaky[0], z[0] - cfg.beta * e[0] - cfg.gamma * z[0], rtol=1e-14)
    for l in (1, 2):                                            # the layers above keep their leak
        np.testing.assert_array_equal(plain[l], leaky[l])


def test_output_selects_the_image_read_after_settling():
    cfg = dataclasses.replace(SMALL, T=3)
    rng = np.random.default_rng(3)
    p = params64(cfg, rng)
    x = rng.random((2, 2, 8, 12))
    res = model.settle(p, x, cfg, model.draw_top(cfg, 2, rng, np.float64), clamp="first")
    assert model.output_image(res, cfg) is res.zbar[0]
    assert model.output_image(res, dataclasses.replace(cfg, output="z")) is res.z[0]
    assert not np.allclose(res.zbar[0], res.z[0])


def test_options_round_trip_through_to_dict():
    cfg = Config(bias="pixel", reduce="mean", gamma_bottom=False, output="z")
    assert Config.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in Config().to_dict().items() if k not in ("bias", "reduce", "gamma_bottom", "output")}
    assert Config.from_dict(old) == Config()                    # a config saved before the options existed


def test_import_exposes_the_modules():
    """`import ngc_ref` (and `import ngc_cpu`) alone give the submodules, in a fresh interpreter."""
    import subprocess
    import sys
    code = ("import ngc_ref, ngc_cpu; ngc_ref.model.settle; ngc_ref.ops.conv2d_transpose; ngc_ref.optim.apply_step; "
            "ngc_ref.config.Config; ngc_ref.checks.check_settle_inputs; ngc_cpu.model.settle; ngc_cpu.ops.conv2d; "
            "ngc_cpu.optim.step; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
