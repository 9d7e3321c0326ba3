"""What the tests of every ring share, in one module: calculus (central differences, a dense Jacobian), the
problems the backend tests draw (float32 params with non-zero biases, random states, the reference's float64
problems), moving a params tree between dtypes and backends, comparing two settles, and driving the command
line. Fixtures (shared_data, rng, be, one_be, backend, fifo) live in tests/conftest.py; tolerances in
tests/tolerances.py.
"""
import errno
import json
import os
import pathlib

import numpy as np

from ngc_ref import model as ref_model

from tolerances import TOL, assert_adam_close, assert_close, reduction_atol

REPO = pathlib.Path(__file__).resolve().parents[1]

# ---- calculus ------------------------------------------------------------------------------------------------
H = 1e-6                                                         # central-difference step


def numgrad(f, arr, idx, h=H):
    """(f(arr[idx] + h) - f(arr[idx] - h)) / 2h, arr changed in place and restored: f reads arr."""
    old = arr[idx]
    arr[idx] = old + h
    fp = f()
    arr[idx] = old - h
    fm = f()
    arr[idx] = old
    return (fp - fm) / (2 * h)


def dense_jacobian(params, cfg, x, z):
    """Every column of one settling step's Jacobian w.r.t. the free states z^1..z^L, by central differences."""
    sizes = [a.size for a in z[1:]]

    def step(flat):
        parts, k = [], 0
        for a, n in zip(z[1:], sizes):
            parts.append(flat[k:k + n].reshape(a.shape))
            k += n
        zz = [z[0]] + parts
        _, e = ref_model.predictions_and_errors(zz, params, cfg)
        return np.concatenate([a.ravel() for a in ref_model.correct(zz, e, params, cfg)[1:]])
    flat = np.concatenate([a.ravel() for a in z[1:]])
    h = 1e-6
    J = np.empty((flat.size, flat.size))
    for i in range(flat.size):
        d = np.zeros_like(flat)
        d[i] = h
        J[:, i] = (step(flat + d) - step(flat - d)) / (2 * h)
    return J


def oscillating_settle():
    """A tiny model whose settling step oscillates, and that step's most negative eigenvalue by a dense
    eigendecomposition: leak 1 (the step is linear, its Jacobian the same at every state), filters N(0, 1)
    scaled by 3. Returns (params, cfg, x, eigenvalue): what a power iteration on J - I must find."""
    from ngc_ref.config import Config
    cfg = Config(channels=(2, 3, 2), image_hw=(4, 4), leak=1.0, w_std=1.0)
    rng = np.random.default_rng(0)
    params = ref_model.init_params(cfg, rng, np.float64)
    params["W"] = [None] + [3.0 * w for w in params["W"][1:]]
    x = rng.random((1, 2, 4, 4))
    z = ref_model.settle(params, x, cfg, ref_model.draw_top(cfg, 1, np.random.default_rng(0), np.float64), T=0).z
    eig = np.linalg.eigvals(dense_jacobian(params, cfg, x, z))
    want = eig.real[np.argmax(np.abs(eig - 1.0))]        # the eigenvalue furthest from 1: what J - I's power finds
    assert want < -1.0, "the test case must oscillate (most negative eigenvalue %.3f)" % want
    return params, cfg, x, want


# ---- the reference's own problems, in float64 (tests/ref) -------------------------------------------------------
def random_states(cfg, B, rng, away_from_zero=False):
    """float64 states of every layer, standard normal; away_from_zero keeps leaky-ReLU kinks out of a
    finite-difference stencil."""
    z = [rng.standard_normal((B, c) + cfg.map_hw(l)) for l, c in enumerate(cfg.layer_channels)]
    if away_from_zero:
        z = [np.where(np.abs(a) < 0.05, np.sign(a) * 0.05 + a, a) for a in z]
    return z


def params64(cfg, rng, learn_E=False):
    """float64 params as init_params draws them, with biases N(0, 0.1) (and E != W when learn_E)."""
    p = ref_model.init_params(cfg, rng, np.float64)
    p["b"] = [None] + [rng.standard_normal(b.shape) * 0.1 for b in p["b"][1:]]
    if learn_E:
        p["E"] = [None] + [rng.standard_normal(w.shape) * 0.1 for w in p["W"][1:]]
    return p


def F(z, p, cfg):
    """Total energy of the batch, Eq. 3 (positive): 1/2 sum_l ||e^l||^2."""
    return float(ref_model.energy(ref_model.predictions_and_errors(z, p, cfg)[1]).sum())


# (B, C_in, C_out, H, W, K, s): odd sizes, H != W, K in {1, 3, 5}, strides 1-3, B = 1
OP_SHAPES = [(2, 3, 4, 8, 8, 3, 2), (1, 2, 5, 7, 5, 3, 2), (2, 3, 2, 9, 6, 5, 3), (1, 4, 3, 4, 4, 1, 2),
             (2, 3, 3, 6, 7, 3, 1), (1, 1, 2, 5, 5, 1, 3), (1, 2, 2, 11, 4, 5, 2), (3, 5, 3, 2, 2, 3, 2)]


# ---- float32 problems for the backends (tests/cpu, tests/cuda, tests/conformance) -------------------------------
def setup(cfg, rng, B=2, bias=True):
    """float32 params with non-zero biases (so their path is exercised; bias=False keeps them 0) and, when E is
    learnable, E = W + N(0, 0.05) (so reading the wrong filters shows); an image in [0, 1]; z^L from draw_top."""
    params = ref_model.init_params(cfg, rng)
    if bias:
        params["b"] = [None] + [(0.1 * rng.standard_normal(b.shape)).astype(np.float32) for b in params["b"][1:]]
    if params["E"] is not None:
        params["E"] = [None] + [(w + 0.05 * rng.standard_normal(w.shape)).astype(np.float32) for w in params["W"][1:]]
    x = rng.random((B, cfg.layer_channels[0]) + cfg.map_hw(0)).astype(np.float32)
    return params, x, ref_model.draw_top(cfg, B, rng)


def states(cfg, rng, B=2):
    """Random float32 states of every layer (not a settled trajectory: both signs of phi are exercised)."""
    return [rng.standard_normal((B, cfg.layer_channels[l]) + cfg.map_hw(l), dtype=np.float32)
            for l in range(cfg.L + 1)]


def host(a):
    """A NumPy array from a NumPy or CuPy one."""
    return a.get() if hasattr(a, "get") else a


def f64(a):
    return None if a is None else np.asarray(host(a), np.float64)


def tree64(p):
    """A params (or displacements) dict upcast to float64 for the reference."""
    return {k: (None if v is None else [f64(a) for a in v]) for k, v in p.items()}


def copy_tree(p):
    return {k: (None if v is None else [None if a is None else a.copy() for a in v]) for k, v in p.items()}


def on(be, p):
    """A params dict moved to a kernel backend (conftest's `be`): copies, so in-place updates never touch the
    caller's arrays."""
    return {k: (None if v is None else [None if a is None else be(a.copy()) for a in v]) for k, v in p.items()}


def update_terms(cfg, key, l, B):
    """How many products one entry of filter_updates' key^l sums (tolerances.reduction's n): dW^l and dE^l sum
    B*H_l*W_l (the activity of layer l against the error below), db^l sums e^{l-1} over B*H_{l-1}*W_{l-1}
    (over the batch only, B, for a bias map)."""
    if key == "b":
        return B if cfg.bias == "pixel" else B * int(np.prod(cfg.map_hw(l - 1)))
    return B * int(np.prod(cfg.map_hw(l)))


def assert_adam_params_close(p, p_ref, v_ref, t, cfg, B, tol, what, drift=TOL["settled"]["rtol"]):
    """Every learnable array after t Adam steps against the reference's, each side's from its own gradients of B
    images (tolerances.assert_adam_close: entries whose gradient lies within reach of zero are held only to
    Adam's bound on a step). How far the two sides' gradients may differ: the float32 rounding of their sums
    (reduction_atol) plus, where each side settled on its own, `drift` (the settled tolerance's rtol) of their
    size S, the root mean square of sqrt(vhat) of the reference's second moments v_ref."""
    for key in ("W", "b", "E"):
        if p_ref.get(key) is None:
            continue
        for l in range(1, cfg.L + 1):
            v = f64(v_ref[key][l])
            S = float(np.sqrt(np.mean(v / (1 - cfg.adam_b2 ** t))))
            floor = reduction_atol(update_terms(cfg, key, l, B), S) + drift * S
            assert_adam_close(p[key][l], p_ref[key][l], v, t, cfg, floor, **tol, name="%s %s[%d]" % (what, key, l))


def compare(res, ref, cfg, tol, what):
    """Two SettleResults: every state, error, prediction and the energy trace within tol (cfg: a Config, or a
    ResidualConfig, whose layers are its base's)."""
    cfg = getattr(cfg, "base", cfg)
    for l in range(cfg.L + 1):
        assert_close(res.z[l], ref.z[l], **tol, name="%s z[%d]" % (what, l))
        assert_close(res.e[l], ref.e[l], **tol, name="%s e[%d]" % (what, l))
    for l in range(cfg.L):
        assert_close(res.zbar[l], ref.zbar[l], **tol, name="%s zbar[%d]" % (what, l))
    assert_close(res.energy, ref.energy, **tol, name="%s energy" % what)


# ---- the command line (tests/app) -------------------------------------------------------------------------------
def cli_main(argv):
    """cli.main's exit status, whether it returns it or argparse raises it."""
    from convngc import cli
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


# a training run of the CLI that takes a second: T = 2, a few dozen embedded patches, the numpy backend
TINY_TRAIN = ["--dataset", "embedded", "--limit", "20", "--val-limit", "4", "--batch-size", "10", "--T", "2",
              "--epochs", "1", "--seed", "1", "--no-progress", "--backend", "numpy"]


def cli_train(out, *extra, base=TINY_TRAIN):
    """`convngc train <base> --out OUT <extra>`: its exit status."""
    return cli_main(["train", *base, "--out", out, *extra])


def one_line(text):
    """The one non-empty line of an error output (and no traceback)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def edit_header(path, edit):
    """Rewrite a checkpoint's JSON header with edit(header) -> header, as a hand edit would."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = edit(json.loads(arrays["header"].tobytes().decode()))
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def set_meta(**kw):
    """An edit for edit_header: header["meta"] updated with kw."""
    def edit(h):
        h["meta"].update(kw)
        return h
    return edit


def deny_access(monkeypatch, inside=None, exact=None):
    """Make the OS refuse access as it does to another user's files (mode 000): `inside`, every path below this
    folder (the folder itself is made mode 000); `exact`, opening this file (made mode 000). Root reads
    everything, so for root os.stat / os.open refuse what a non-root user would be refused. The caller restores
    the mode (chmod) in a finally."""
    for p in (inside, exact):
        if p is not None:
            p.chmod(0o000)
    if os.geteuid() != 0:
        return
    real_stat, real_open = os.stat, os.open

    def below(p):
        return inside is not None and os.path.abspath(os.fspath(p)).startswith(str(inside) + os.sep)

    def stat_(p, *a, **k):
        if below(p):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(p))
        return real_stat(p, *a, **k)

    def open_(p, *a, **k):
        if below(p) or (exact is not None and os.path.abspath(os.fspath(p)) == str(exact)):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(p))
        return real_open(p, *a, **k)
    monkeypatch.setattr(os, "stat", stat_)
    monkeypatch.setattr(os, "open", open_)
