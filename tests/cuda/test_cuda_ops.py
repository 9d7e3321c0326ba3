"""Ring (b): ngc_cuda.ops (the kernels) against ngc_ref.ops (float64), one op at a time, in float32.

Every kernel test runs on the CPU emulator of the kernels in the four thread orders of conftest.py's `be`
("forward", "reverse", "shuffle", "warp": a missing __syncthreads() changes a result in at least one of
them), and on the GPU as well when there is one (the "cuda" case is skipped, and reported as skipped,
without a GPU).
"""
import numpy as np
import pytest

import ngc_cuda
from ngc_cuda import ngc_step, ops
from ngc_cuda.backend import device
from ngc_ref import model as ref_model
from ngc_ref import ops as ref_ops
from ngc_ref.config import Config

from helpers import f64, host
from tolerances import TOL, assert_close, reduction

# (B, C_in, C_out, H, W, K, s): odd H/W, H != W, B = 1, C not a multiple of 32, K in {1, 3, 5}, s in {1, 2, 3}
SHAPES = [(2, 3, 4, 8, 8, 3, 2), (1, 2, 5, 7, 5, 3, 2), (2, 3, 2, 9, 6, 5, 3), (1, 4, 3, 4, 4, 1, 2),
          (2, 3, 3, 6, 7, 3, 1), (1, 1, 2, 5, 5, 1, 3), (1, 2, 2, 11, 4, 5, 2), (1, 33, 5, 5, 3, 3, 2)]
IDS = ["B%d-C%d-O%d-%dx%d-K%d-s%d" % s for s in SHAPES]


# ---- the three convolutions -----------------------------------------------------------------------
@pytest.mark.parametrize("B,Ci,Co,H,W,K,s", SHAPES, ids=IDS)
def test_conv2d_matches_ref(be, rng, B, Ci, Co, H, W, K, s):
    x = rng.standard_normal((B, Ci, H, W), dtype=np.float32)
    w = rng.standard_normal((Co, Ci, K, K), dtype=np.float32)
    ref = ref_ops.conv2d(f64(x), f64(w), stride=s)
    with be.run():
        out = ops.conv2d(be(x), be(w), stride=s)
    assert type(out) is type(be(x)) and out.dtype == np.float32
    assert_close(out, ref, **TOL["conv"], name="conv2d")


def _out_hw(H, W, s, odd):
    """The layer-below size: s*H, or one less when that still maps back (odd sizes, needs out_hw)."""
    Ho, Wo = H * s, W * s
    if odd and s > 1:
        Ho, Wo = Ho - 1, Wo - 1
    return Ho, Wo


@pytest.mark.parametrize("odd", [False, True], ids=["sH", "sH-1"])
@pytest.mark.parametrize("B,Ci,Co,H,W,K,s", SHAPES, ids=IDS)
def test_conv2d_transpose_matches_ref(be, rng, B, Ci, Co, H, W, K, s, odd):
    z = rng.standard_normal((B, Ci, H, W), dtype=np.float32)
    w = rng.standard_normal((Ci, Co, K, K), dtype=np.float32)
    out_hw = _out_hw(H, W, s, odd)
    ref = ref_ops.conv2d_transpose(f64(z), f64(w), stride=s, out_hw=out_hw)
    with be.run():
        out = ops.conv2d_transpose(be(z), be(w), stride=s, out_hw=out_hw if odd else None)
    assert_close(out, ref, **TOL["conv"], name="conv2d_transpose")


@pytest.mark.parametrize("B,Ci,Co,H,W,K,s", SHAPES, ids=IDS)
def test_conv2d_weight_grad_matches_ref(be, rng, B, Ci, Co, H, W, K, s):
    # e is the error of the layer below (H x W), a the activity above (ceil(H/s) x ceil(W/s))
    e = rng.standard_normal((B, Ci, H, W), dtype=np.float32)
    a = rng.standard_normal((B, Co, -(-H // s), -(-W // s)), dtype=np.float32)
    ref = ref_ops.conv2d_weight_grad(f64(e), f64(a), K, stride=s)
    with be.run():
        out = ops.conv2d_weight_grad(be(e), be(a), K, stride=s)
    assert out.shape == (Co, Ci, K, K)
    assert_close(out, ref, **reduction(a.shape[0] * a.shape[2] * a.shape[3], ref), name="conv2d_weight_grad")


def test_weight_grad_reduction_spans_many_blocks_of_threads(be, rng):
    """B*H*W = 3*40*36 = 4320 terms per tap: every thread of the 256-wide tree holds a partial sum."""
    e = rng.standard_normal((3, 2, 40, 36), dtype=np.float32)
    a = rng.standard_normal((3, 3, 20, 18), dtype=np.float32)
    ref = ref_ops.conv2d_weight_grad(f64(e), f64(a), 3, stride=2)
    with be.run():
        out = ops.conv2d_weight_grad(be(e), be(a), 3, stride=2)
    assert_close(out, ref, **reduction(3 * 20 * 18, ref), name="conv2d_weight_grad (large)")


def test_conv2d_and_transpose_are_adjoint(be, rng):
    """<conv2d(x), z> == <x, conv2d_transpose(z)> on the kernels alone (an oracle independent of ngc_ref)."""
    x = rng.standard_normal((2, 3, 9, 7), dtype=np.float32)
    w = rng.standard_normal((4, 3, 3, 3), dtype=np.float32)
    z = rng.standard_normal((2, 4, 5, 4), dtype=np.float32)
    with be.run():
        lhs = np.sum(f64(host(ops.conv2d(be(x), be(w), 2))) * f64(z))
        rhs = np.sum(f64(x) * f64(host(ops.conv2d_transpose(be(z), be(w), 2, out_hw=(9, 7)))))
    assert abs(lhs - rhs) <= 1e-4 * max(abs(lhs), 1.0), (lhs, rhs)


# ---- the fused pieces the model uses -------------------------------------------------------------
@pytest.mark.parametrize("leak,mean", [(0.2, False), (1.0, False), (0.2, True)], ids=["sum", "leak1", "mean"])
def test_conv2d_weight_grad_phi_matches_ref(be, rng, leak, mean):
    """The dW of filter_updates: summed over the batch, or (cfg.reduce = "mean") averaged, B = 3."""
    e = rng.standard_normal((3, 3, 7, 9), dtype=np.float32)
    z = rng.standard_normal((3, 5, 4, 5), dtype=np.float32)
    ref = ref_ops.conv2d_weight_grad(f64(e), ref_model.phi(f64(z), leak), 3, stride=2) / (3 if mean else 1)
    with be.run():
        out = ops.conv2d_weight_grad_phi(be(e), be(z), 3, 2, leak, mean=mean)
    assert_close(out, ref, **reduction(3 * 4 * 5, ref), name="conv2d_weight_grad_phi")


@pytest.mark.parametrize("pixel", [False, True], ids=["channel", "pixel"])
@pytest.mark.parametrize("mean", [False, True], ids=["sum", "mean"])
def test_bias_grad_matches_ref(be, rng, pixel, mean):
    """db: e summed over batch and space per map, or over the batch only for a bias map (cfg.bias =
    "pixel"); divided by the batch size for cfg.reduce = "mean"."""
    e = rng.standard_normal((3, 5, 13, 11), dtype=np.float32)
    with be.run():
        out = ops.bias_grad(be(e), pixel=pixel, mean=mean)
    ref = f64(e).sum(axis=(0,) if pixel else (0, 2, 3)) / (3 if mean else 1)
    assert_close(out, ref, **reduction(3 if pixel else 3 * 13 * 11, ref), name="bias_grad")


def test_energy_matches_ref(be, rng):
    errors = [rng.standard_normal((3,) + shp, dtype=np.float32) for shp in [(3, 16, 12), (5, 8, 6), (7, 4, 3)]]
    ref = ref_model.energy([f64(e) for e in errors])
    with be.run():
        out = ngc_step.energy([be(e) for e in errors], device=device(be.backend))
    assert_close(out, ref, **reduction(sum(e[0].size for e in errors), ref), name="energy")


# ---- what the wrappers check (CuPy does not) -----------------------------------------------------
def test_float64_is_refused_not_cast(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    with pytest.raises(TypeError, match="float32"):
        ops.conv2d(x, w)
    with pytest.raises(TypeError, match="float32"):
        ops.conv2d_transpose(rng.standard_normal((1, 3, 3, 3)), w)
    with pytest.raises(TypeError, match="float32"):
        ops.conv2d_weight_grad(x, rng.standard_normal((1, 3, 3, 3)).astype(np.float32), 3)


def test_shape_errors_match_ref(rng):
    x = rng.standard_normal((1, 2, 5, 5), dtype=np.float32)
    w = rng.standard_normal((3, 4, 3, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="x has 2 channels, w expects 4"):
        ops.conv2d(x, w)
    with pytest.raises(ValueError, match="z has 2 channels, w expects 3"):
        ops.conv2d_transpose(x, w)
    with pytest.raises(ValueError, match="does not map back"):
        ops.conv2d_transpose(rng.standard_normal((1, 3, 3, 3), dtype=np.float32), w, out_hw=(8, 6))
    with pytest.raises(ValueError, match="4-D"):
        ops.conv2d(x[0], w)
    with pytest.raises(ValueError, match="square"):
        ops.conv2d(x, rng.standard_normal((3, 2, 3, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="must be"):
        ops.conv2d_weight_grad(x, rng.standard_normal((1, 3, 2, 3), dtype=np.float32), 3)
    with pytest.raises(ValueError, match="stride"):
        ops.conv2d(x, rng.standard_normal((3, 2, 3, 3), dtype=np.float32), stride=0)


def test_mixed_or_foreign_arrays_are_refused(rng):
    x = rng.standard_normal((1, 2, 5, 5), dtype=np.float32)
    with pytest.raises(TypeError):
        ops.conv2d(x.tolist(), x)
    if ngc_cuda.available():
        import cupy as cp
        with pytest.raises(TypeError, match="mix"):
            ops.conv2d(x, cp.asarray(x))


def test_non_contiguous_inputs_are_made_contiguous(rng):
    x = rng.standard_normal((1, 5, 7, 2), dtype=np.float32).transpose(0, 3, 1, 2)   # (1, 2, 5, 7) view
    w = np.ascontiguousarray(rng.standard_normal((3, 3, 3, 2), dtype=np.float32)).transpose(0, 3, 1, 2)
    assert not x.flags.c_contiguous and not w.flags.c_contiguous
    assert_close(ops.conv2d(x, w, 2), ref_ops.conv2d(f64(x), f64(w), 2), **TOL["conv"], name="conv2d (views)")


def test_backend_of_and_gpu_requirements():
    assert ngc_cuda.backend_of(np.zeros(1, np.float32)) == "cuda-emu"
    if ngc_cuda.available():
        ngc_cuda.require_gpu()
    else:
        with pytest.raises(RuntimeError, match="cuda-emu"):
            ngc_cuda.require_gpu()


def test_a_named_backend_is_not_asked_again(rng, monkeypatch):
    """backend= decides where a call runs once, at its entry: nothing below asks the arrays' type again."""
    from ngc_cuda import backend
    x = rng.standard_normal((1, 2, 5, 5), dtype=np.float32)
    w = rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    monkeypatch.setattr(backend, "backend_of", lambda *a: pytest.fail("backend_of called below the entry"))
    assert_close(ops.conv2d(x, w, 2, backend="cuda-emu"), ref_ops.conv2d(f64(x), f64(w), 2), **TOL["conv"],
                 name="conv2d, backend named")
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.conv2d(x, w, 2, backend="cpu-emu")


# ---- the sanitizer build (ASan + UBSan, one child process per launch): small shapes only ----------
def test_kernels_under_sanitizers(rng):
    """Every kernel family of ngc_step.cu and conv2d_weight_grad.cu once, on a small odd shape, under
    -fsanitize=address,undefined with arrays allocated to their exact size: an out-of-bounds read or
    write, or undefined behaviour, fails the launch; and every result matches the reference."""
    from ngc_cuda.launch import emulation
    cfg = Config(pcn=True, beta=0.1, gamma=0.001)
    z = rng.standard_normal((1, 3, 3, 2), dtype=np.float32)
    zb = rng.standard_normal((1, 2, 5, 3), dtype=np.float32)
    e_own = rng.standard_normal(z.shape, dtype=np.float32)
    W = rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    b = rng.standard_normal(2, dtype=np.float32)
    b_map = rng.standard_normal((2, 5, 3), dtype=np.float32)              # cfg.bias = "pixel"
    with emulation(sanitize=True):
        emu = device("cuda-emu")
        zbar, e = ngc_step.predict_error(z, W, b, zb, cfg, device=emu)
        zbar_map = ngc_step.predict(z, W, b_map, cfg, (5, 3), device=emu)
        z1 = ngc_step.correct_(z.copy(), e_own, e, W, cfg, device=emu)
        en = ngc_step.energy([e], device=emu)
        dW = ops.conv2d_weight_grad_phi(e, z, 3, 2, cfg.leak, mean=True)
        db = ops.bias_grad(e)
        db_map = ops.bias_grad(e, pixel=True, mean=True)
    ref_zbar = ref_model.predict(f64(z), f64(W), f64(b), cfg, (5, 3))
    assert_close(zbar, ref_zbar, **TOL["step"], name="zbar (sanitized)")
    assert_close(zbar_map, ref_model.predict(f64(z), f64(W), f64(b_map), cfg, (5, 3)), **TOL["step"],
                 name="zbar with a bias map (sanitized)")
    assert_close(e, f64(zb) - ref_zbar, **TOL["step"], name="e (sanitized)")
    # the correction of layer 1 of a two-layer model (z^0 = zb below it, z^1 = z) by the reference
    ref_z1 = ref_model.correct([f64(zb), f64(z)], [f64(e), f64(e_own)], {"W": [None, f64(W)], "E": None},
                               Config(channels=(3, 2), pcn=True))[1]
    assert_close(z1, ref_z1, **TOL["step"], name="corrected z (sanitized)")
    ref_en = ref_model.energy([f64(e)])
    assert_close(en, ref_en, **reduction(e[0].size, ref_en), name="energy (sanitized)")
    ref_dW = ref_ops.conv2d_weight_grad(f64(e), ref_model.phi(f64(z), cfg.leak), 3, 2)
    assert_close(dW, ref_dW, **reduction(z[0, 0].size, ref_dW), name="dW, B = 1 (sanitized)")
    ref_db = f64(e).sum(axis=(0, 2, 3))
    assert_close(db, ref_db, **reduction(e[0, 0].size, ref_db), name="db (sanitized)")
    assert_close(db_map, f64(e)[0], **reduction(1, f64(e)[0]), name="db of a bias map, B = 1 (sanitized)")
