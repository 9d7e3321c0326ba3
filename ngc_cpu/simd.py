"""A small SIMD vocabulary for Numba: one 64-byte vector of floats as a value, and the operations the kernels need.

Why it exists: a register-blocked loop keeps a few accumulators in registers while it streams the inputs.
Written with NumPy arrays as accumulators, Numba (LLVM) cannot prove that the accumulator array does not
alias the input arrays, so every multiply-add becomes load + FMA + store. With a vector *value* type there
is nothing to alias: an accumulator is an SSA value, and LLVM keeps it in a register. Measured on one core,
the paper's largest prediction (20 -> 25 maps, 8x8 -> 16x16), in the first tile layout tried: 5 GFLOP/s for
a plain loop over the lanes (not vectorised: aliasing again), 24 with array accumulators, 30 with these
vector values (and 106 once the layout was fixed too, kernels.py).

`Vec(dtype)` is LLVM's <N x float> (N = 16 for float32, 8 for float64: 64 bytes, one AVX-512 register,
two AVX2 registers). Every operation is exact IEEE arithmetic in the array's dtype; the multiply-add
uses llvm.fmuladd, which is one fused FMA where the CPU has FMA units and a multiply then an add where it
does not (so results can differ in the last bit between such machines, never between runs).

    v = vload(a, i)           a[i : i+N] (a C-contiguous 1-D float array)
    vstore(a, i, v)           a[i : i+N] = v
    vzeros(a)                 a vector of zeros of a's dtype
    vbroadcast(a, i)          N copies of a[i] (no negative-index wraparound: Numba's a[i] checks i < 0
                              on every access, which costs more than the multiply-add in the inner loops)
    vfmav(acc, u, v)          acc + u * v       (elementwise, one fused multiply-add per lane)
    vadd, vsub, vmul          elementwise u + v, u - v, u * v
    vscale(v, s)              v * s
    vphi(v, leak)             leaky ReLU: v if v > 0 else leak * v
    vphi_prime(v, leak)       1 if v > 0 else leak
    vrelu(v)                  max(v, 0), NaN kept (np.maximum(v, 0))
    vmax(u, v)                elementwise max, NaN in either kept (the max of np.max over a window)
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

__all__ = ["LANE_BYTES", "lanes", "Vec", "vload", "vstore", "vbroadcast", "vzeros", "vfmav", "vadd", "vsub",
           "vmul", "vscale", "vphi", "vphi_prime", "vrelu", "vmax"]

LANE_BYTES = 64                     # one vector = 64 bytes: 16 float32 or 8 float64


def lanes(dtype):
    """Lanes of one vector of this dtype (16 for float32, 8 for float64)."""
    return LANE_BYTES // np.dtype(dtype).itemsize


class Vec(types.Type):
    """Numba type of one vector of `lanes(dtype)` floats, held as an LLVM vector value (a register)."""

    def __init__(self, dtype):
        self.dtype = dtype                       # a Numba float type: types.float32 or types.float64
        self.n = lanes(np.float32 if dtype == types.float32 else np.float64)
        super().__init__(name="Vec(%s x %d)" % (dtype, self.n))


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(_llvm_float(fe_type.dtype), fe_type.n))


def _llvm_float(dtype):
    return ir.FloatType() if dtype == types.float32 else ir.DoubleType()


def _float_type(t, what):
    if t not in (types.float32, types.float64):
        raise TypeError("simd.%s: needs float32 or float64, got %s" % (what, t))
    return t


def _vec_ptr(context, builder, arrty, arr, idx, vty):
    """Pointer to arr.flat[idx] viewed as one vector (C-contiguous arrays only)."""
    ary = context.make_array(arrty)(context, builder, arr)
    p = builder.gep(ary.data, [idx])
    return builder.bitcast(p, ir.PointerType(context.get_value_type(vty)))


def _splat(builder, vty_ll, s):
    undef = ir.Constant(vty_ll, ir.Undefined)
    v = builder.insert_element(undef, s, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(ir.IntType(32), vty_ll.count), [0] * vty_ll.count))


def _fmuladd(builder, vty_ll, a, b, c):
    """a * b + c, fused where the target has FMA (llvm.fmuladd)."""
    name = "llvm.fmuladd.v%d%s" % (vty_ll.count, "f32" if vty_ll.element == ir.FloatType() else "f64")
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty_ll, [vty_ll] * 3), name)
    return builder.call(fn, [a, b, c])


def _check_array(arr, what):
    if not isinstance(arr, types.Array) or arr.layout != "C":
        raise TypeError("simd.%s: needs a C-contiguous array, got %s" % (what, arr))
    return _float_type(arr.dtype, what)


@intrinsic
def vload(typingctx, arr, idx):
    vty = Vec(_check_array(arr, "vload"))

    def codegen(context, builder, sig, args):
        return builder.load(_vec_ptr(context, builder, sig.args[0], args[0], args[1], vty), align=4)
    return vty(arr, types.intp), codegen


@intrinsic
def vstore(typingctx, arr, idx, v):
    vty = Vec(_check_array(arr, "vstore"))
    if v != vty:
        raise TypeError("simd.vstore: %s into an array of %s" % (v, arr.dtype))

    def codegen(context, builder, sig, args):
        builder.store(args[2], _vec_ptr(context, builder, sig.args[0], args[0], args[1], vty), align=4)
        return context.get_dummy_value()
    return types.none(arr, types.intp, vty), codegen


@intrinsic
def vbroadcast(typingctx, arr, idx):
    vty = Vec(_check_array(arr, "vbroadcast"))

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        s = builder.load(builder.gep(ary.data, [args[1]]), align=4)
        return _splat(builder, context.get_value_type(vty), s)
    return vty(arr, types.intp), codegen


@intrinsic
def vzeros(typingctx, arr):
    vty = Vec(_check_array(arr, "vzeros"))

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vty), None)
    return vty(arr), codegen


@intrinsic
def vfmav(typingctx, acc, u, v):
    if not isinstance(acc, Vec) or u != acc or v != acc:
        raise TypeError("simd.vfmav: three vectors of one dtype, got %s, %s, %s" % (acc, u, v))

    def codegen(context, builder, sig, args):
        return _fmuladd(builder, context.get_value_type(acc), args[1], args[2], args[0])
    return acc(acc, u, v), codegen


def _binary(name, op):
    @intrinsic
    def f(typingctx, u, v):
        if not isinstance(u, Vec) or v != u:
            raise TypeError("simd.%s: two vectors of one dtype, got %s, %s" % (name, u, v))

        def codegen(context, builder, sig, args):
            return getattr(builder, op)(args[0], args[1])
        return u(u, v), codegen
    f.__name__ = name
    return f


vadd = _binary("vadd", "fadd")
vsub = _binary("vsub", "fsub")
vmul = _binary("vmul", "fmul")


@intrinsic
def vscale(typingctx, v, s):
    if not isinstance(v, Vec) or s != v.dtype:
        raise TypeError("simd.vscale: a vector and a scalar of one dtype, got %s, %s" % (v, s))

    def codegen(context, builder, sig, args):
        return builder.fmul(args[0], _splat(builder, context.get_value_type(v), args[1]))
    return v(v, s), codegen


def _select_positive(builder, v, if_pos, if_not):
    zero = ir.Constant(v.type, None)
    return builder.select(builder.fcmp_ordered(">", v, zero), if_pos, if_not)


# vphi / vphi_prime: phi and phi' for the cpu backend, one of four definitions (one per language); the list
# of what to change with the activation is above ngc_ref.model.phi.
@intrinsic
def vphi(typingctx, v, leak):
    """phi(v) = v if v > 0 else leak * v (the reference's np.where(v > 0, v, leak * v))."""
    if not isinstance(v, Vec) or leak != v.dtype:
        raise TypeError("simd.vphi: a vector and a scalar of one dtype, got %s, %s" % (v, leak))

    def codegen(context, builder, sig, args):
        lv = builder.fmul(args[0], _splat(builder, context.get_value_type(v), args[1]))
        return _select_positive(builder, args[0], args[0], lv)
    return v(v, leak), codegen


@intrinsic
def vphi_prime(typingctx, v, leak):
    """phi'(v) = 1 if v > 0 else leak."""
    if not isinstance(v, Vec) or leak != v.dtype:
        raise TypeError("simd.vphi_prime: a vector and a scalar of one dtype, got %s, %s" % (v, leak))

    def codegen(context, builder, sig, args):
        vty_ll = context.get_value_type(v)
        one = ir.Constant(vty_ll, [ir.Constant(vty_ll.element, 1.0)] * vty_ll.count)
        return _select_positive(builder, args[0], one, _splat(builder, vty_ll, args[1]))
    return v(v, leak), codegen


@intrinsic
def vrelu(typingctx, v):
    """max(v, 0) as np.maximum(v, 0): 0 where v < 0, v itself elsewhere (a NaN stays NaN)."""
    if not isinstance(v, Vec):
        raise TypeError("simd.vrelu: a vector, got %s" % (v,))

    def codegen(context, builder, sig, args):
        zero = ir.Constant(args[0].type, None)
        return builder.select(builder.fcmp_ordered("<", args[0], zero), zero, args[0])
    return v(v), codegen


@intrinsic
def vmax(typingctx, u, v):
    """Elementwise max that keeps a NaN of either side, as np.max over a window does: u if u is NaN, else v if
    v > u or v is NaN, else u."""
    if not isinstance(u, Vec) or v != u:
        raise TypeError("simd.vmax: two vectors of one dtype, got %s, %s" % (u, v))

    def codegen(context, builder, sig, args):
        a, b = args
        take_b = builder.fcmp_unordered(">", b, a)                 # b > a, or either is NaN
        pick = builder.select(take_b, b, a)
        return builder.select(builder.fcmp_unordered("uno", a, a), a, pick)
    return u(u, v), codegen
