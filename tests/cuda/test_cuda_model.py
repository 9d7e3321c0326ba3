"""Rings (b) and (c) for the model: the fused step kernels, a whole T = 60 settle, the filter updates and
the optimisers of ngc_cuda against ngc_ref in float64, with every Config reading that changes the math
(bias="pixel", reduce="mean", gamma_bottom=False, pcn, learn_E).

Kernels run on the CPU emulator (the four thread orders of conftest.py's `be`) and on the GPU when there is one.
"""
import dataclasses
import logging

import numpy as np
import pytest

from ngc_cuda import model as cuda_model
from ngc_cuda import ngc_step
from ngc_cuda.backend import device
from ngc_cuda import optim as cuda_optim
from ngc_ref import model as ref_model
from ngc_ref import optim as ref_optim
from ngc_ref.config import Config

from helpers import assert_adam_params_close, compare, f64, host, on, setup, states, tree64, update_terms
from tolerances import TOL, assert_close, reduction

# small configurations with awkward sizes: odd maps, H != W, C not a multiple of 32, K 3 and 5, s 2 and 3
SMALL = Config(channels=(4, 5, 3), image_hw=(12, 20), T=8)
ODD = Config(channels=(3, 4, 2), image_hw=(9, 18), kernel=5, stride=3, T=6)


# ---- one fused step ----------------------------------------------------------------------------
@pytest.mark.parametrize("bias", ["channel", "pixel"])
@pytest.mark.parametrize("cfg", [SMALL, ODD], ids=["K3s2", "K5s3"])
def test_predict_error_step_matches_ref(be, rng, cfg, bias):
    """Eq. 1 and the errors of every layer; bias="pixel": b^l is a bias map (C_{l-1}, H_{l-1}, W_{l-1})."""
    cfg = dataclasses.replace(cfg, bias=bias)
    params, _, _ = setup(cfg, rng)
    z = states(cfg, rng)
    zbar_ref, e_ref = ref_model.predictions_and_errors([f64(a) for a in z], tree64(params), cfg)
    with be.run():
        zbar, e = cuda_model.predictions_and_errors([be(a) for a in z], on(be, params), cfg)
    for l in range(cfg.L):
        assert_close(zbar[l], zbar_ref[l], **TOL["step"], name="zbar[%d]" % l)
        assert_close(e[l], e_ref[l], **TOL["step"], name="e[%d]" % l)
    assert_close(e[cfg.L], e_ref[cfg.L], **TOL["elementwise"], name="e[L]")


def test_predict_error_inside_the_loop_stores_only_e(be, rng):
    """write_zbar=False (the settling loop): e is computed as before and the zbar buffer is not touched."""
    cfg = SMALL
    params, _, _ = setup(cfg, rng)
    z = states(cfg, rng)
    zbar_ref, e_ref = ref_model.predictions_and_errors([f64(a) for a in z], tree64(params), cfg)
    with be.run():
        zbar = be(np.full(z[0].shape, 7.0, np.float32))
        e = be(np.zeros(z[0].shape, np.float32))
        ngc_step.predict_error(be(z[1]), be(params["W"][1]), be(params["b"][1]), be(z[0]), cfg,
                               zbar=zbar, e=e, write_zbar=False, device=device(be.backend))
    assert_close(e, e_ref[0], **TOL["step"], name="e[0]")
    assert_close(zbar, np.full(z[0].shape, 7.0), rtol=0, atol=0, name="untouched zbar")


@pytest.mark.parametrize("pcn,free_bottom,learn_E,gamma_bottom", [
    (False, False, False, True), (True, False, False, True), (False, True, False, True), (False, False, True, True),
    (False, True, False, False)], ids=["ngc", "pcn", "free-bottom", "learn-E", "free-bottom-no-leak"])
@pytest.mark.parametrize("cfg", [SMALL, ODD], ids=["K3s2", "K5s3"])
def test_correct_step_matches_ref(be, rng, cfg, pcn, free_bottom, learn_E, gamma_bottom):
    """Eq. 2 for every free layer; gamma_bottom=False: a free z^0 moves by beta d^0 only (gamma = 0.05
    here, so a leak that should not be there is far outside the tolerance)."""
    cfg = dataclasses.replace(cfg, pcn=pcn, learn_E=learn_E, gamma_bottom=gamma_bottom, gamma=0.05)
    params, _, _ = setup(cfg, rng)
    if learn_E:      # E different from W, so using the wrong filters fails
        params["E"] = [None] + [(0.1 * rng.standard_normal(w.shape)).astype(np.float32) for w in params["W"][1:]]
    z = states(cfg, rng)
    e = states(cfg, rng)
    e[cfg.L][...] = 0
    ref = ref_model.correct([f64(a) for a in z], [f64(a) for a in e], tree64(params), cfg, free_bottom=free_bottom)
    with be.run():
        zb = [be(a) for a in z]
        new = cuda_model.correct(zb, [be(a) for a in e], on(be, params), cfg, free_bottom=free_bottom)
    for l in range(cfg.L + 1):
        assert_close(new[l], ref[l], **TOL["step"], name="z[%d]" % l)
    assert_close(zb[1], z[1], rtol=0, atol=0, name="input states untouched")


# ---- whole settles -----------------------------------------------------------------------------
def _settle_both(be, cfg, params, x, z_top, T, clamp="always"):
    ref = ref_model.settle(tree64(params), f64(x), cfg, f64(z_top), T=T, clamp=clamp)
    with be.run():
        res = cuda_model.settle(on(be, params), be(x), cfg, be(z_top), T=T, clamp=clamp, kernel="per-step")
    assert res.path == "per-step"
    return res, ref


def test_paper_config_settle_T60_matches_ref(one_be, rng):
    """The paper's configuration (Config() defaults: 4 layers, 32x32x3, K3 s2, T = 60), B = 2, per-step
    kernels vs ngc_ref in float64: step 1 tightly, then all 60 steps with the settled tolerance."""
    cfg, be = Config(), one_be
    params, x, z_top = setup(cfg, rng, B=2)
    one, one_ref = _settle_both(be, cfg, params, x, z_top, T=1)
    compare(one, one_ref, cfg, TOL["step"], "T=1")
    res, ref = _settle_both(be, cfg, params, x, z_top, T=60)
    assert res.energy.shape == (61, 2)
    compare(res, ref, cfg, TOL["settled"], "T=60")


MODES = {"ngc": {}, "pcn": dict(pcn=True), "denoise": {}, "learn-E": dict(learn_E=True),
         "bias-pixel": dict(bias="pixel"), "denoise-no-gamma-bottom": dict(gamma_bottom=False, gamma=0.02),
         "pixel-learn-E-denoise": dict(bias="pixel", learn_E=True, gamma_bottom=False, gamma=0.02)}


@pytest.mark.parametrize("mode", list(MODES))
def test_small_settle_modes_match_ref(be, rng, mode):
    """PCN (phi' factor), denoising (clamp='first': z^0 evolves after t = 1), learnable E, bias maps and
    no leak on the free z^0, T steps of the per-step kernels."""
    cfg = dataclasses.replace(SMALL, T=10, **MODES[mode])
    params, x, z_top = setup(cfg, rng)
    denoise = "denoise" in mode
    res, ref = _settle_both(be, cfg, params, x, z_top, T=cfg.T, clamp="first" if denoise else "always")
    compare(res, ref, cfg, TOL["settled"], mode)
    if not cfg.gamma_bottom:       # the option matters here: with the leak, z^0 ends outside the tolerance
        leaky = ref_model.settle(tree64(params), f64(x), dataclasses.replace(cfg, gamma_bottom=True), f64(z_top),
                                 clamp="first")
        with pytest.raises(AssertionError):
            assert_close(leaky.z[0], ref.z[0], **TOL["settled"], name="z^0 with the leak")
    if denoise:
        assert np.abs(np.asarray(ref.z[0]) - x).max() > 1e-4     # the bottom really moved
    else:
        assert_close(res.z[0], x, rtol=0, atol=0, name="clamped z^0")


@pytest.mark.parametrize("path", ["per-step", "whole"])
@pytest.mark.parametrize("learn_E", [False, True])
def test_precision_weighted_settle_matches_ref(be, rng, path, learn_E):
    """The precision reading (e^0 weighted by pi0 in z^1's correction, carried by E^1 scaled by pi0) on both
    kernel paths, every emulator thread order and the GPU, against ngc_ref in float64; pi0 changes the result."""
    cfg = dataclasses.replace(SMALL, T=10, learn_E=learn_E)
    params, x, z_top = setup(cfg, rng)
    ref = ref_model.settle(tree64(params), f64(x), cfg, f64(z_top), pi0=0.2)
    with be.run():
        res = cuda_model.settle(on(be, params), be(x), cfg, be(z_top), kernel=path, pi0=0.2)
    assert res.path == path
    compare(res, ref, cfg, TOL["settled"], "pi0 0.2, %s" % path)
    plain = ref_model.settle(tree64(params), f64(x), cfg, f64(z_top))
    assert np.abs(np.asarray(plain.z[1]) - np.asarray(ref.z[1])).max() > 1e-3
    with pytest.raises(ValueError, match="pi0 must be a finite number > 0"):
        cuda_model.settle(params, x, cfg, z_top, pi0=-1.0)


def test_momentum_takes_the_per_step_path_and_matches_ref(one_be, rng):
    """Heavy-ball momentum (ngc_ref.model.heavy_ball) runs on the per-step kernels, with the previous states kept
    as arrays: kernel 'auto' takes that path, 'whole' refuses it by name; the result is the reference's."""
    cfg = dataclasses.replace(SMALL, T=10)
    params, x, z_top = setup(cfg, rng)
    ref = ref_model.settle(tree64(params), f64(x), cfg, f64(z_top), pi0=0.2, momentum=0.9)
    with one_be.run():
        res = cuda_model.settle(on(one_be, params), one_be(x), cfg, one_be(z_top), pi0=0.2, momentum=0.9)
    assert res.path == "per-step"
    compare(res, ref, cfg, TOL["settled"], "momentum 0.9")
    with pytest.raises(ValueError, match="whole-settle kernel has no momentum"):
        cuda_model.settle(params, x, cfg, z_top, kernel="whole", momentum=0.9, backend="cuda-emu")
    with pytest.raises(ValueError, match="momentum is for clamped settles"):
        cuda_model.settle(params, x, cfg, z_top, clamp="first", momentum=0.9, backend="cuda-emu")


def test_settle_T0_and_odd_config(be, rng):
    params, x, z_top = setup(ODD, rng)
    res, ref = _settle_both(be, ODD, params, x, z_top, T=0)
    assert res.energy.shape == (1, 2)
    compare(res, ref, ODD, TOL["step"], "T=0")
    res, ref = _settle_both(be, ODD, params, x, z_top, T=ODD.T)
    compare(res, ref, ODD, TOL["settled"], "odd")


def test_settle_does_not_modify_inputs(rng):
    params, x, z_top = setup(SMALL, rng)
    x0, zt0, W0 = x.copy(), z_top.copy(), [w.copy() for w in params["W"][1:]]
    cuda_model.settle(params, x, SMALL, z_top, T=3, clamp="first", kernel="per-step")
    assert np.array_equal(x, x0) and np.array_equal(z_top, zt0)
    assert all(np.array_equal(a, b) for a, b in zip(params["W"][1:], W0))


def test_settle_validates_arguments(rng):
    params, x, z_top = setup(SMALL, rng)
    with pytest.raises(ValueError, match="kernel"):
        cuda_model.settle(params, x, SMALL, z_top, kernel="fast")
    with pytest.raises(ValueError, match="clamp"):
        cuda_model.settle(params, x, SMALL, z_top, clamp="never")
    with pytest.raises(ValueError, match="^settle: z_top has shape"):
        cuda_model.settle(params, x, SMALL, z_top[:, :, :1], kernel="per-step")
    with pytest.raises(TypeError, match="^settle: x is float64 but the parameters are float32"):
        cuda_model.settle(params, x.astype(np.float64), SMALL, z_top, kernel="per-step")
    with pytest.raises(ValueError, match=r"^init_states: params\['b'\] must be a list of L \+ 1"):
        cuda_model.init_states(x, dict(params, b=params["b"][:2]), SMALL, z_top)
    with pytest.raises(TypeError, match="^settle: T must be a whole number"):
        cuda_model.settle(params, x, SMALL, z_top, T=2.5)


# ---- kernel="auto": which path runs --------------------------------------------------------------
def test_auto_uses_whole_settle_when_it_fits(rng, caplog, monkeypatch):
    from ngc_cuda import settle_whole as sw
    params, x, z_top = setup(SMALL, rng)
    ref = ref_model.settle(tree64(params), f64(x), SMALL, f64(z_top), T=4)
    with caplog.at_level(logging.DEBUG, logger="ngc_cuda.model"):
        res = cuda_model.settle(params, x, SMALL, z_top, T=4, kernel="auto")
    assert res.path == "whole"
    assert "whole" in caplog.text
    compare(res, ref, SMALL, TOL["settled"], "auto/whole")
    # when it does not fit, auto falls back to the per-step kernels
    monkeypatch.setattr(sw, "fits", lambda *a, **k: False)
    res = cuda_model.settle(params, x, SMALL, z_top, T=4, kernel="auto")
    assert res.path == "per-step"
    compare(res, ref, SMALL, TOL["settled"], "auto/per-step")


def test_the_backend_is_decided_once_per_call(rng, monkeypatch):
    """settle(backend=...) with the name, as convngc passes it: nothing below asks the arrays' type, on
    either path; without a name, it is asked once, at the entry."""
    from ngc_cuda import backend
    params, x, z_top = setup(SMALL, rng)
    calls = []
    real = backend.backend_of
    monkeypatch.setattr(backend, "backend_of", lambda *a: calls.append(len(a)) or real(*a))
    for kernel in ("whole", "per-step"):
        res = cuda_model.settle(params, x, SMALL, z_top, T=2, kernel=kernel, backend="cuda-emu")
        assert res.path == kernel and calls == []
        cuda_model.settle(params, x, SMALL, z_top, T=2, kernel=kernel)
        assert len(calls) == 1
        calls.clear()


def test_a_settle_checks_at_its_entry_not_at_each_launch(rng, monkeypatch):
    """Check at the entry, trust inside: a per-step settle launches ~T(2L+1) kernels, but its arguments are
    checked once (no per-array check runs below the entry) and tested for NaN/Inf in one pass, however
    many steps it takes."""
    from ngc_cuda import checks
    from ngc_ref import checks as ref_checks
    params, x, z_top = setup(SMALL, rng)
    calls = []
    for module, name in ((checks, "inputs"), (checks, "output"), (checks, "_array"), (ref_checks, "first_nonfinite")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    for T in (1, 5):
        for kernel in ("per-step", "whole"):
            calls.clear()
            cuda_model.settle(params, x, SMALL, z_top, T=T, kernel=kernel, backend="cuda-emu")
            assert calls == ["first_nonfinite"], (T, kernel, calls)


# ---- learning: filter updates and the optimisers -------------------------------------------------
@pytest.mark.parametrize("options", [{}, dict(learn_E=True), dict(bias="pixel"), dict(reduce="mean"),
                                     dict(bias="pixel", reduce="mean", learn_E=True)],
                         ids=["E=W", "learn-E", "bias-pixel", "reduce-mean", "pixel-mean-learn-E"])
def test_filter_updates_match_ref(be, rng, options):
    """dW, db (a bias map for bias="pixel", summed over the batch only), dE; averaged for reduce="mean"."""
    cfg = dataclasses.replace(SMALL, **options)
    learn_E = cfg.learn_E
    params, x, z_top = setup(cfg, rng)
    ref_res = ref_model.settle(tree64(params), f64(x), cfg, f64(z_top), T=cfg.T)
    # both get the same (reference, rounded to float32) states, so only filter_updates is compared
    z32 = [a.astype(np.float32) for a in ref_res.z]
    e32 = [a.astype(np.float32) for a in ref_res.e]
    ref = ref_model.filter_updates(ref_model.SettleResult([f64(a) for a in z32], None, [f64(a) for a in e32], None),
                                   tree64(params), cfg)
    res32 = ref_model.SettleResult([be(a) for a in z32], None, [be(a) for a in e32], None)
    with be.run():
        d = cuda_model.filter_updates(res32, on(be, params), cfg)
    B = x.shape[0]
    for l in range(1, cfg.L + 1):
        for key in ("W", "b", "E") if learn_E else ("W", "b"):
            assert_close(d[key][l], ref[key][l], **reduction(update_terms(cfg, key, l, B), ref[key][l]),
                         name="d%s[%d]" % (key, l))
    assert (d["E"] is None) == (not learn_E)


def _deltas(cfg, params, rng, scale=1.0):
    keys = ("W", "b", "E") if params["E"] is not None else ("W", "b")
    out = {k: [None] + [(scale * rng.standard_normal(a.shape)).astype(np.float32) for a in params[k][1:]] for k in keys}
    out.setdefault("E", None)
    return out


@pytest.mark.parametrize("optimizer", ["adam", "normalized"])
@pytest.mark.parametrize("learn_E", [False, True], ids=["E=W", "learn-E"])
def test_optimizer_three_steps_match_ref(be, rng, optimizer, learn_E):
    """Three updates on the same displacements: Adam (bias-corrected, gradient -d) or the normalised
    step (per-kernel norm for W/E, whole vector for b), each followed by the kernel-norm projection.
    w_std = 0.25 makes about half the 5x5 kernels exceed norm 1, so the projection really acts. The same
    displacements on both sides: Adam's eps sees no rounding difference of the gradient, every entry is compared."""
    # K = 5 and an 11-map middle layer: groups of 25 taps, and a bias vector longer than one kernel
    cfg = dataclasses.replace(SMALL, channels=(4, 11, 3), kernel=5, optimizer=optimizer, learn_E=learn_E,
                              w_std=0.25, lr=0.05)
    params, _, _ = setup(cfg, rng)
    p_ref, p_cuda = tree64(params), on(be, params)
    s_ref, s_cuda = ref_optim.init_state(p_ref), cuda_optim.init_state(p_cuda)
    projected = 0
    for it in range(3):
        d = _deltas(cfg, params, rng, scale=[1.0, 1e-3, 30.0][it])     # tiny and large steps too
        norms = [np.sqrt((p ** 2).sum(axis=(2, 3))) for p in p_ref["W"][1:]]
        projected += sum(int((n > cfg.max_kernel_norm).sum()) for n in norms)
        ref_optim.step(p_ref, {k: (None if v is None else [f64(a) for a in v]) for k, v in d.items()}, s_ref, cfg)
        with be.run():
            out = cuda_optim.step(p_cuda, on(be, d), s_cuda, cfg)
        assert out is p_cuda and s_cuda["t"] == s_ref["t"] == it + 1
        for key in ("W", "b", "E"):
            if p_ref[key] is None:
                continue
            for l in range(1, cfg.L + 1):
                assert_close(p_cuda[key][l], p_ref[key][l], **TOL["elementwise"], name="%s[%d] step %d" % (key, l, it + 1))
                if optimizer == "adam":
                    assert_close(s_cuda["m"][key][l], s_ref["m"][key][l], **TOL["elementwise"], name="m")
                    assert_close(s_cuda["v"][key][l], s_ref["v"][key][l], **TOL["elementwise"], name="v")
    assert projected > 0
    for w in p_cuda["W"][1:]:
        wn = np.sqrt((np.asarray(w.get() if hasattr(w, "get") else w, np.float64) ** 2).sum(axis=(2, 3)))
        assert wn.max() <= cfg.max_kernel_norm * (1 + 1e-6)


def test_project_kernels_matches_ref(be, rng):
    w = (rng.standard_normal((5, 3, 3, 3)) * rng.choice([0.05, 1.0], size=(5, 3, 1, 1))).astype(np.float32)
    ref = ref_optim.project_kernels(f64(w), 1.0)
    with be.run():
        out = cuda_optim.project_kernels(be(w.copy()), 1.0)
    assert_close(out, ref, **TOL["elementwise"], name="project_kernels")


# ---- optim.cu writes nothing past its arrays ----------------------------------------------------------
# sizes that leave idle threads in the last block (BLOCK = 256 threads): 135 and 1,215 filter taps, 7 biases
OPTIM_SHAPES = [(5, 3, 3, 3), (9, 5, 3, 3), (7,)]
CANARY = np.float32(-3.0e33)                       # what every float after an array holds, and must still hold


def _with_canaries(be, a, pad=32):
    """(buffer, view): `a` copied to the head of a float32 buffer followed by `pad` canaries, on the backend; the
    kernels get the view, whose end is the array's end, so a write one element past it lands on a canary."""
    buf = np.full(a.size + pad, CANARY, np.float32)
    buf[:a.size] = a.ravel()
    buf = be(buf)
    return buf, buf[:a.size].reshape(a.shape)


def _canaries_intact(buf, n, what):
    tail = host(buf)[n:].view(np.uint32)
    changed = np.flatnonzero(tail != CANARY.view(np.uint32))
    assert changed.size == 0, "%s: %d of the %d floats after the array written, the first at element n + %d" % (
        what, changed.size, tail.size, changed[0] if changed.size else -1)


@pytest.mark.parametrize("shape", OPTIM_SHAPES, ids=["W5x3", "W9x5", "b7"])
def test_optim_kernels_write_nothing_past_their_arrays(be, rng, shape):
    """adam_v1 (p, m and v in place), normalized_step_v1 (per kernel for filters, one group for a bias vector)
    and project_kernels_v1, in every thread order and on the GPU, with canaries after every array they
    write: an off-by-one bound (k > n for k >= n) writes element n, past the end, and changes a canary; the
    heap abort it caused before came only later, elsewhere. The results are the reference's."""
    cfg = dataclasses.replace(SMALL, lr=0.05)
    w = (rng.standard_normal(shape) * 0.8).astype(np.float32)
    d = rng.standard_normal(shape).astype(np.float32)
    n, filters = w.size, len(shape) == 4
    bufs = {name: _with_canaries(be, a) for name, a in (("p", w), ("m", np.zeros_like(w)), ("v", np.zeros_like(w)))}
    with be.run():
        cuda_optim.adam(bufs["p"][1], be(d), bufs["m"][1], bufs["v"][1], 1, cfg)
    ref = {"W": [None, f64(w)], "b": [None, np.zeros(1)], "E": None}
    st = ref_optim.init_state(ref)
    ref_optim._adam(ref["W"][1], f64(d), st["m"]["W"][1], st["v"]["W"][1], 1, cfg)
    for name, (buf, view) in bufs.items():
        _canaries_intact(buf, n, "adam_v1, %s of %s" % (name, shape))
    want = ref_optim._adam(f64(w), f64(d), np.zeros(shape), np.zeros(shape), 1, cfg)
    assert_close(bufs["p"][1], want, **TOL["elementwise"], name="adam_v1 p")
    buf, p = _with_canaries(be, w)
    with be.run():
        cuda_optim.normalized(p, be(d), cfg, per_kernel=filters)
    _canaries_intact(buf, n, "normalized_step_v1 of %s" % (shape,))
    assert_close(p, ref_optim._normalized(f64(w), f64(d), cfg, per_kernel=filters), **TOL["elementwise"],
                 name="normalized_step_v1")
    if filters:
        buf, p = _with_canaries(be, w * 2)
        with be.run():
            cuda_optim.project_kernels(p, 1.0)
        _canaries_intact(buf, n, "project_kernels_v1 of %s" % (shape,))
        assert_close(p, ref_optim.project_kernels(f64(w * 2), 1.0), **TOL["elementwise"], name="project_kernels_v1")


def test_optim_kernels_under_sanitizers(rng):
    """Every kernel of optim.cu once under -fsanitize=address,undefined, each array in a buffer of exactly its
    size (cuda_emu/README.md): a read or write past an end, or undefined behaviour, fails the launch naming the
    line. Sizes leave idle threads in the block; bias_grad_v1 runs once per channel and once per pixel."""
    from ngc_cuda import ops as cuda_ops
    from ngc_cuda.launch import emulation
    cfg = dataclasses.replace(SMALL, lr=0.05)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    d = rng.standard_normal(w.shape).astype(np.float32)
    b, db = rng.standard_normal(7).astype(np.float32), rng.standard_normal(7).astype(np.float32)
    e = rng.standard_normal((2, 7, 5, 3)).astype(np.float32)
    p, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
    with emulation(sanitize=True):
        cuda_optim.adam(p, d, m, v, 1, cfg, backend="cuda-emu")
        pn = cuda_optim.normalized(w.copy(), d, cfg, per_kernel=True, backend="cuda-emu")
        bn = cuda_optim.normalized(b.copy(), db, cfg, per_kernel=False, backend="cuda-emu")
        pk = cuda_optim.project_kernels(2 * w, 1.0, backend="cuda-emu")
        g = cuda_ops.bias_grad(e, backend="cuda-emu")
        g_map = cuda_ops.bias_grad(e, pixel=True, mean=True, backend="cuda-emu")
    assert_close(p, ref_optim._adam(f64(w), f64(d), np.zeros(w.shape), np.zeros(w.shape), 1, cfg),
                 **TOL["elementwise"], name="adam_v1 (sanitized)")
    assert_close(m, -(1 - cfg.adam_b1) * f64(d), **TOL["elementwise"], name="adam_v1 m (sanitized)")
    assert_close(pn, ref_optim._normalized(f64(w), f64(d), cfg, True), **TOL["elementwise"], name="normalized (sanitized)")
    assert_close(bn, ref_optim._normalized(f64(b), f64(db), cfg, False), **TOL["elementwise"],
                 name="normalized bias (sanitized)")
    assert_close(pk, ref_optim.project_kernels(f64(2 * w), 1.0), **TOL["elementwise"], name="project (sanitized)")
    assert_close(g, f64(e).sum(axis=(0, 2, 3)), **reduction(2 * 5 * 3, f64(e).sum(axis=(0, 2, 3))),
                 name="bias_grad (sanitized)")
    assert_close(g_map, f64(e).mean(axis=0), **reduction(2, f64(e).mean(axis=0)), name="bias_grad map (sanitized)")


@pytest.mark.parametrize("optimizer", ["adam", "normalized"])
def test_three_training_steps_end_to_end(one_be, rng, optimizer):
    """Ring (c): settle -> filter_updates -> optim.step, three times, each backend on its own
    trajectory; the filters stay within the settled tolerance of the reference, and the energy falls."""
    cfg = dataclasses.replace(SMALL, optimizer=optimizer, T=10, lr=0.01)
    be = one_be
    params, x, z_top = setup(cfg, rng, B=3)
    p_ref, p_cuda = tree64(params), on(be, params)
    s_ref, s_cuda = ref_optim.init_state(p_ref), cuda_optim.init_state(p_cuda)
    energies = []
    for it in range(3):
        r = ref_model.settle(p_ref, f64(x), cfg, f64(z_top))
        ref_optim.step(p_ref, ref_model.filter_updates(r, p_ref, cfg), s_ref, cfg)
        with be.run():
            rc = cuda_model.settle(p_cuda, be(x), cfg, be(z_top), kernel="per-step")
            cuda_optim.step(p_cuda, cuda_model.filter_updates(rc, p_cuda, cfg), s_cuda, cfg)
        assert_close(rc.energy, r.energy, **TOL["settled"], name="energy, update %d" % it)
        energies.append(float(np.asarray(r.energy[-1]).sum()))
        if optimizer == "adam":      # each side on its own gradients: a near-zero one's rounding shows through eps
            assert_adam_params_close(p_cuda, p_ref, s_ref["v"], it + 1, cfg, 3, TOL["settled"],
                                     "after update %d" % (it + 1))
            continue
        for l in range(1, cfg.L + 1):
            assert_close(p_cuda["W"][l], p_ref["W"][l], **TOL["settled"], name="W[%d] after update %d" % (l, it + 1))
            assert_close(p_cuda["b"][l], p_ref["b"][l], **TOL["settled"], name="b[%d] after update %d" % (l, it + 1))
    assert energies[-1] < energies[0]
