"""The golden file: a seeded T = 60 settle and one learning step of the paper's configuration, computed by
ngc_ref in float64 from float32 inputs, inputs and outputs stored as float32 (tests/golden/paper_T60.npz).

    python tests/golden_data.py          # (make golden) rewrite it, after a deliberate change of the reference

tests/conformance/test_golden.py holds every backend to it, the reference included: parity tests between backends
cannot see the reference itself change, this file can (the way llm.c keeps a debug state of its model).
"""
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))   # run as a script from anywhere

from ngc_ref import model, optim  # noqa: E402
from ngc_ref.config import Config  # noqa: E402

from helpers import tree64  # noqa: E402

PATH = pathlib.Path(__file__).resolve().parent / "golden" / "paper_T60.npz"
CFG = Config()          # the paper's configuration: channels 10,15,20,25,3; 32x32; K 3, s 2; T 60; Adam 1e-3
SEED, B = 0, 2


def inputs():
    """The seeded inputs, float32: params as init_params draws them (N(0, 0.1) filters, zero biases),
    two images in [0, 1] and the initial top state."""
    rng = np.random.default_rng(SEED)
    params = model.init_params(CFG, rng)
    x = rng.random((B, CFG.layer_channels[0]) + CFG.map_hw(0), dtype=np.float32)
    z_top = model.draw_top(CFG, B, rng)
    return params, x, z_top


def learning_step(settle, filter_updates, init_state, step, params, x, z_top):
    """Algorithm 1, then Algorithm 2 once: settle for T steps, filter updates, one optimiser step.
    The four functions are a backend's (convngc.model.get_backend); params are updated in place.
    Returns the settle, the params and the optimiser's state after the step."""
    res = settle(params, x, CFG, z_top, T=CFG.T)
    state = init_state(params)
    step(params, filter_updates(res, params, CFG), state, CFG)
    return res, params, state


def flatten(res, params):
    """The stored outputs: the energy trace, every free state, the reconstruction zbar^0, the new filters."""
    out = {"energy": res.energy, "zbar0": res.zbar[0]}
    out.update({"z%d" % l: res.z[l] for l in range(1, CFG.L + 1)})
    out.update({"%s%d" % (k, l): params[k][l] for k in ("W", "b") for l in range(1, CFG.L + 1)})
    return out


def compute():
    """Inputs and ngc_ref's outputs, as the file stores them."""
    params, x, z_top = inputs()
    stored = {"x": x, "z_top": z_top}
    stored.update({"in_%s%d" % (k, l): params[k][l] for k in ("W", "b") for l in range(1, CFG.L + 1)})
    res, p64, _ = learning_step(model.settle, model.filter_updates, optim.init_state, optim.step, tree64(params),
                             x.astype(np.float64), z_top.astype(np.float64))
    stored.update(flatten(res, p64))
    return {k: np.asarray(v, np.float32) for k, v in stored.items()}


def load():
    """(params, x, z_top, expected outputs) from the committed file."""
    with np.load(PATH) as f:
        d = dict(f)
    params = {k: [None] + [d.pop("in_%s%d" % (k, l)) for l in range(1, CFG.L + 1)] for k in ("W", "b")}
    params["E"] = None
    return params, d.pop("x"), d.pop("z_top"), d


if __name__ == "__main__":
    PATH.parent.mkdir(exist_ok=True)
    data = compute()
    np.savez_compressed(PATH, **data)
    print("wrote %s (%d arrays, %d floats, %d bytes)" % (PATH, len(data), sum(a.size for a in data.values()),
                                                       PATH.stat().st_size))
