"""One validation for every backend (ngc_ref.checks): the same bad input gets the same clear error from every
backend of the registry (conftest's `backend`: the numpy reference, the cpu backend, the CUDA kernels emulated
and on a GPU: ngc_cuda checks before any launch), before any work. Part of the conformance suite with
test_conformance.py."""
import numpy as np
import pytest

from ngc_cpu import model as cpu_model
from ngc_cuda import model as cuda_model
from ngc_ref import model as ref_model
from ngc_ref.config import Config

CFG = Config(channels=(4, 5, 3), image_hw=(8, 12), T=2)


def good(B=2, dtype=np.float32):
    rng = np.random.default_rng(0)
    params = ref_model.init_params(CFG, rng, dtype)
    x = rng.random((B, 3, 8, 12)).astype(dtype)
    return params, x, ref_model.draw_top(CFG, B, rng, dtype)


def _drop(key):
    def f(p, x, z):
        del p[key]
        return p, x, z
    return f


def _set(key, l, value):
    def f(p, x, z):
        p[key][l] = value(p[key][l]) if callable(value) else value
        return p, x, z
    return f


CASES = {
    "missing b": (_drop("b"), ValueError, r"params has no 'b' \(the biases b\^l\)"),
    "missing W": (_drop("W"), ValueError, r"params has no 'W'"),
    "missing layer": (lambda p, x, z: (dict(p, W=p["W"][:2]), x, z), ValueError,
                      r"params\['W'\] must be a list of L \+ 1 = 3 entries .* got 2 entries"),
    "W[2] is None": (_set("W", 2, None), ValueError, r"params\['W'\]\[2\] is None; every layer 1..2 needs"),
    "b[1] is None": (_set("b", 1, None), ValueError, r"params\['b'\]\[1\] is None"),
    "wrong W shape": (_set("W", 1, lambda w: w[:, :2]), ValueError,
                      r"params\['W'\]\[1\] has shape \(5, 2, 3, 3\), the config needs \(5, 3, 3, 3\)"),
    "pixel bias for a channel config": (_set("b", 2, lambda b: np.zeros((5, 4, 6), b.dtype)), ValueError,
                                        r"params\['b'\]\[2\] has shape \(5, 4, 6\), the config needs \(5,\)"),
    "E wrong shape": (lambda p, x, z: (dict(p, E=[None, p["W"][1], p["W"][1]]), x, z), ValueError,
                      r"params\['E'\]\[2\] has shape \(5, 3, 3, 3\), the config needs \(4, 5, 3, 3\)"),
    "params not a dict": (lambda p, x, z: ([p["W"], p["b"]], x, z), TypeError, r"params must be a dict"),
    "batch size 0": (lambda p, x, z: (p, x[:0], z[:0]), ValueError, r"the batch is empty"),
    "x wrong channels": (lambda p, x, z: (p, x[:, :2], z), ValueError, r"x has shape \(2, 2, 8, 12\), the config needs"),
    "x 3-D": (lambda p, x, z: (p, x[0], z), ValueError, r"x has shape \(3, 8, 12\)"),
    "z_top wrong shape": (lambda p, x, z: (p, x, z[:1]), ValueError,
                          r"z_top has shape \(1, 4, 2, 3\), the config needs \(2, 4, 2, 3\)"),
    "x integer": (lambda p, x, z: (p, (x * 255).astype(np.uint8), z), TypeError, r"x has dtype uint8"),
    "x float64, params float32": (lambda p, x, z: (p, x.astype(np.float64), z), TypeError,
                                  r"x is float64 but the parameters are float32; pass every array in one dtype"),
    "mixed params": (_set("b", 2, lambda b: b.astype(np.float64)), TypeError, r"params\['b'\]\[2\] is float64"),
    "x NaN": (lambda p, x, z: (p, np.where(x > 0.5, np.nan, x).astype(x.dtype), z), ValueError,
              r"x contains NaN or Inf"),
    "z_top Inf": (lambda p, x, z: (p, x, np.full_like(z, np.inf)), ValueError, r"z_top contains NaN or Inf"),
    "W NaN": (_set("W", 2, lambda w: np.full_like(w, np.nan)), ValueError, r"params\['W'\]\[2\] contains NaN or Inf"),
    "x not an array": (lambda p, x, z: (p, x.tolist(), z), TypeError, r"x must be an array, got list"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_the_same_clear_error(backend, case):
    break_it, err, msg = CASES[case]
    params, x, z_top = break_it(*good())
    with pytest.raises(err, match="^settle: " + msg):
        backend.settle(backend.put(params), backend.put(x), CFG, backend.put(z_top))


@pytest.mark.parametrize("T,err,msg", [(2.5, TypeError, "a whole number"), (True, TypeError, "a whole number"),
                                       (-1, ValueError, ">= 0")])
def test_bad_step_count(backend, T, err, msg):
    params, x, z_top = good()
    with pytest.raises(err, match="settle: T must be " + msg):
        backend.settle(backend.put(params), backend.put(x), CFG, backend.put(z_top), T=T)


def test_dtypes_each_backend_computes_in():
    """float16 is a float the reference computes in; the cpu backend names the two it supports, the CUDA
    kernels the one (float64 too is refused there, not cast: the reference would then be float64)."""
    params, x, z_top = good(dtype=np.float16)
    assert ref_model.settle(params, x, CFG, z_top).z[1].dtype == np.float16
    with pytest.raises(TypeError, match=r"^settle: params\['W'\]\[1\] has dtype float16; this backend computes "
                                        r"in float32 or float64$"):
        cpu_model.settle(params, x, CFG, z_top)
    for dtype in (np.float16, np.float64):
        params, x, z_top = good(dtype=dtype)
        with pytest.raises(TypeError, match=r"^settle: params\['W'\]\[1\] has dtype %s; this backend computes "
                                            r"in float32$" % np.dtype(dtype).name):
            cuda_model.settle(params, x, CFG, z_top)


def test_a_missing_E_key_means_E_is_W(backend):
    """'E' is optional: without it (or None) the error filters are W itself, the paper's setting."""
    params, x, z_top = backend.put(good())
    with_none = backend.settle(params, x, CFG, z_top)
    del params["E"]
    np.testing.assert_array_equal(backend.get(backend.settle(params, x, CFG, z_top).z[1]), backend.get(with_none.z[1]))


# ---- ConvNGC: every array checked once per settle (each check on a GPU is a synchronisation) ----------------
def test_convngc_tests_the_arrays_for_nan_once_per_settle(backend, monkeypatch):
    """ConvNGC.settle checks its batch (one min and one max answer NaN/Inf and the pixel range) and leaves the
    parameters and z_top to the backend's settle, which tests all its arrays in one pass (first_nonfinite: one
    synchronisation on a GPU); learn adds one pass over the updated parameters."""
    from convngc.model import ConvNGC
    from ngc_ref import checks
    calls = []
    real = checks.first_nonfinite
    monkeypatch.setattr(checks, "first_nonfinite", lambda named: calls.append(len(named)) or real(named))
    model = ConvNGC(CFG, backend.name, seed=0)
    calls.clear()
    x = good()[1]
    model.settle(x)
    assert calls == [2 * CFG.L + 2]                        # W and b of every layer, x, z_top
    calls.clear()
    model.learn(x)
    assert calls == [2 * CFG.L + 2, 2 * CFG.L]


def test_convngc_names_nan_in_its_parameters_or_top_state(backend):
    """The backend's check finds it; ConvNGC names it as before: a DivergenceError for a parameter that was
    broken before settling, a ValueError for a given z_top."""
    from convngc.model import ConvNGC, DivergenceError
    model = ConvNGC(CFG, backend.name, seed=0)
    x = good()[1]
    z_top = np.full((2, 4, 2, 3), np.inf, np.float32)
    with pytest.raises(ValueError, match=r"^z_top contains Inf$"):
        model.settle(x, z_top=z_top)
    params = model.host_params()
    params["b"][2][1] = np.nan
    model.set_params(params)
    with pytest.raises(DivergenceError, match=r"^ConvNGC.settle: parameter b\[2\] contains NaN; the parameters "
                                              r"were broken before settling"):
        model.settle(x)
