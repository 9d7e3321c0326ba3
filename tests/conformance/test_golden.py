"""Every backend reproduces the golden file (tests/golden_data.py): a seeded T = 60 settle and one learning
step of the paper's configuration, computed once by ngc_ref. The reference itself is held to it too, so a
silent change of the reference (which the parity tests between backends cannot see) fails here.
After a deliberate change of the reference: `make golden`, and say why in the commit.
"""
import numpy as np
import pytest

import golden_data as golden
from convngc.model import get_backend
from ngc_cuda.backend import available

from helpers import assert_adam_params_close
from tolerances import TOL, assert_close

# (backend, dtype it computes in, tolerance of TOL): adding a backend is one line
BACKENDS = [
    pytest.param("numpy", np.float64, "golden-ref", id="numpy"),          # the reference, in float64
    pytest.param("cpu", np.float32, "settled", id="cpu"),                 # ngc_cpu (Numba)
    pytest.param("cpu", np.float64, "golden-ref", id="cpu-float64"),      # ngc_cpu in float64: as the reference
    pytest.param("cuda-emu", np.float32, "settled", id="cuda-emu"),       # the CUDA kernels, emulated
    pytest.param("cuda", np.float32, "settled", id="cuda",
                 marks=pytest.mark.skipif(not available(), reason="no GPU (CuPy + device)")),
]


def test_golden_file_is_the_paper_configuration():
    params, x, z_top, want = golden.load()
    assert [w.shape for w in params["W"][1:]] == [(25, 3, 3, 3), (20, 25, 3, 3), (15, 20, 3, 3), (10, 15, 3, 3)]
    assert sum(w.size for w in params["W"][1:]) == 9225 and x.shape == (golden.B, 3, 32, 32)
    assert want["energy"].shape == (golden.CFG.T + 1, golden.B)


def test_the_inputs_are_drawn_as_stored():
    """The seeded inputs, drawn again (init_params, the images, draw_top's z^L ~ N(mu_z, sigma_z)), are the stored
    ones to the last bit: a change of how the filters or the top state are drawn fails here, by name (the
    backends below draw their inputs too, so it fails them as well)."""
    params, x, z_top, _ = golden.load()
    drawn_params, drawn_x, drawn_z_top = golden.inputs()
    np.testing.assert_array_equal(drawn_z_top, z_top, err_msg="z^L from model.draw_top")
    np.testing.assert_array_equal(drawn_x, x, err_msg="the images")
    for k in ("W", "b"):
        for l in range(1, golden.CFG.L + 1):
            np.testing.assert_array_equal(drawn_params[k][l], params[k][l], err_msg="%s%d from init_params" % (k, l))


@pytest.mark.parametrize("name,dtype,tol", BACKENDS)
def test_backend_reproduces_the_golden_file(name, dtype, tol):
    params, x, z_top = golden.inputs()             # drawn, z^L by draw_top: the draw is under test too
    want = golden.load()[3]
    be = get_backend(name)

    def on(a):
        return None if a is None else be.to_device(a.astype(dtype))
    p = {k: None if v is None else [on(a) for a in v] for k, v in params.items()}
    res, p, state = golden.learning_step(be.settle, be.filter_updates, be.init_state, be.step, p, on(x), on(z_top))
    got = golden.flatten(res, p)
    assert sorted(got) == sorted(want)
    learned = [key for key in want if key[0] in "Wb" and key[1:].isdigit()]
    for key in want:                               # energy, z1..zL, zbar0
        if key not in learned:
            assert_close(be.to_host(got[key]), want[key], **TOL[tol], name="%s: %s" % (name, key))
    # the learning step, W1.. and b1..: Adam's first step is lr g / (|g| + eps), so a gradient within its
    # rounding of zero steps +lr here and -lr in the file; such entries are held to Adam's bound only
    # (assert_adam_close), judged by this backend's own second moments (the file keeps no gradients)
    tree = {k: [None] + [want["%s%d" % (k, l)] for l in range(1, golden.CFG.L + 1)] for k in ("W", "b")}
    host = {k: [None] + [be.to_host(a) for a in p[k][1:]] for k in ("W", "b")}
    v = {k: [None] + [be.to_host(a) for a in state["v"][k][1:]] for k in ("W", "b")}
    assert_adam_params_close(host, tree, v, 1, golden.CFG, golden.B, TOL[tol], name, drift=TOL[tol]["rtol"])
