"""Ring (b) for the cpu backend's operators: ngc_cpu.ops against ngc_ref.ops, one op at a time.

Inputs are drawn as float32 and upcast for the reference (tests/tolerances.py); the float64 path of the
backend is held to the float64 reference at 1e-12. Shapes are the reference's awkward ones: odd sizes,
H != W, K in {1, 3, 5}, strides 1-3, B = 1 and B past one tile (16 images).
"""
import numpy as np
import pytest

from ngc_cpu import ops as cpu_ops
from ngc_ref import ops as ref_ops

from helpers import OP_SHAPES
from tolerances import TOL, assert_close, reduction

# the reference's shapes, plus batches that fill one tile exactly, and spill into a second one
SHAPES_CPU = OP_SHAPES + [(16, 3, 5, 8, 6, 3, 2), (17, 4, 3, 7, 9, 3, 2), (33, 2, 6, 4, 4, 2, 2)]


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def _draw(rng, *shapes):
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


@pytest.mark.parametrize("B,Ci,Co,H,W,K,s", SHAPES_CPU)
def test_conv2d_matches_ref(rng, B, Ci, Co, H, W, K, s):
    x, w = _draw(rng, (B, Ci, H, W), (Co, Ci, K, K))
    out = cpu_ops.conv2d(x, w, s)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert_close(out, ref_ops.conv2d(x.astype(np.float64), w.astype(np.float64), s), **TOL["conv"], name="conv2d")


@pytest.mark.parametrize("B,Ci,Co,H,W,K,s", SHAPES_CPU)
def test_conv2d_transpose_matches_ref(rng, B, Ci, Co, H, W, K, s):
    z, w = _draw(rng, (B, Co, -(-H // s), -(-W // s)), (Co, Ci, K, K))
    out = cpu_ops.conv2d_transpose(z, w, s, (H, W))
    assert_close(out, ref_ops.conv2d_transpose(z.astype(np.float64), w.astype(np.float64), s, (H, W)), **TOL["conv"],
                 name="conv2d_transpose")


@pytest.mark.parametrize("B,Ci,Co,H,W,K,s", SHAPES_CPU)
def test_conv2d_weight_grad_matches_ref(rng, B, Ci, Co, H, W, K, s):
    e, a = _draw(rng, (B, Ci, H, W), (B, Co, -(-H // s), -(-W // s)))
    out = cpu_ops.conv2d_weight_grad(e, a, K, s)
    assert out.shape == (Co, Ci, K, K) and out.dtype == np.float32
    ref = ref_ops.conv2d_weight_grad(e.astype(np.float64), a.astype(np.float64), K, s)
    assert_close(out, ref, **reduction(a.shape[0] * a.shape[2] * a.shape[3], ref), name="conv2d_weight_grad")


@pytest.mark.parametrize("B,Ci,Co,H,W,K,s", SHAPES_CPU[:4] + SHAPES_CPU[-2:])
def test_float64_matches_ref_to_rounding(rng, B, Ci, Co, H, W, K, s):
    """In float64 the backend differs from the reference only by the order of its sums."""
    x, w = rng.standard_normal((B, Ci, H, W)), rng.standard_normal((Co, Ci, K, K))
    z = rng.standard_normal((B, Co, -(-H // s), -(-W // s)))
    tight = dict(rtol=1e-12, atol=1e-12)
    assert_close(cpu_ops.conv2d(x, w, s), ref_ops.conv2d(x, w, s), **tight, name="conv2d f64")
    assert_close(cpu_ops.conv2d_transpose(z, w, s, (H, W)), ref_ops.conv2d_transpose(z, w, s, (H, W)), **tight,
                 name="conv2d_transpose f64")
    assert_close(cpu_ops.conv2d_weight_grad(x, z, K, s), ref_ops.conv2d_weight_grad(x, z, K, s), **tight,
                 name="conv2d_weight_grad f64")


def test_adjoint_identity_holds_in_float64(rng):
    """<conv_s(x), y> = <x, deconv_s(y)>: the two cpu kernels are each other's adjoint, as the reference's are."""
    x, w, y = rng.standard_normal((3, 4, 9, 7)), rng.standard_normal((5, 4, 3, 3)), rng.standard_normal((3, 5, 5, 4))
    lhs = np.vdot(cpu_ops.conv2d(x, w, 2), y)
    rhs = np.vdot(x, cpu_ops.conv2d_transpose(y, w, 2, (9, 7)))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_ops_reject_bad_input(rng):
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="x has 3 channels, w expects 4"):
        cpu_ops.conv2d(x, rng.standard_normal((2, 4, 3, 3)).astype(np.float32), 2)
    with pytest.raises(TypeError, match="float32 or float64, got int64"):
        cpu_ops.conv2d(x.astype(np.int64), w, 2)
    with pytest.raises(TypeError, match="pass one dtype"):
        cpu_ops.conv2d(x, w.astype(np.float64), 2)
    with pytest.raises(ValueError, match="does not map back"):
        cpu_ops.conv2d_transpose(x, rng.standard_normal((3, 2, 3, 3)).astype(np.float32), 2, out_hw=(20, 16))
    with pytest.raises(ValueError, match="do not match at stride 2"):
        cpu_ops.conv2d_weight_grad(x, rng.standard_normal((1, 2, 3, 4)).astype(np.float32), 3, 2)
