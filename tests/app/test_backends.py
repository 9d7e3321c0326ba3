"""The three CPU-runnable backends through the one user-facing class, ConvNGC: numpy (the reference), cpu
(ngc_cpu) and cuda-emu (the CUDA kernels on the emulator) learn and infer the same numbers, with every
Config option; the command line picks the fastest backend."""
import dataclasses

import numpy as np
import pytest

import ngc_cuda
from convngc import checkpoint, cli
from convngc.backends import default as default_backend
from convngc.model import ConvNGC
from ngc_ref.config import Config

from helpers import assert_adam_params_close, tree64
from tolerances import TOL, assert_close


@pytest.fixture
def x():
    return np.random.default_rng(0).random((5, 3, 32, 32), dtype=np.float32)


def test_numpy_cpu_and_cuda_emu_agree_through_convngc(x):
    """Two learning steps (settle + dW + Adam + projection) and a denoising pass, seeded alike: the
    energies, the filters and the outputs of the three backends agree within the float32 tolerance."""
    cfg = Config(T=4)
    models = {name: ConvNGC(cfg, name, seed=5) for name in ("numpy", "cpu", "cuda-emu")}
    energies = {name: [m.learn(x) for _ in range(2)] for name, m in models.items()}
    ref = models["numpy"]
    for name in ("cpu", "cuda-emu"):
        assert energies[name] == pytest.approx(energies["numpy"], rel=1e-4), name
        # each backend steps on its own float32 gradients: Adam's eps makes a near-zero one's rounding visible
        assert_adam_params_close(models[name].host_params(), ref.host_params(), ref.host_opt_state()["v"], 2, cfg,
                                 len(x), TOL["adam-steps"], "%s after two steps" % name)
    outs = {}
    for name, m in models.items():
        m.rng = np.random.default_rng(9)                       # the same z^L draw for every backend
        outs[name] = m.denoise(x)
    for name in ("cpu", "cuda-emu"):
        assert_close(outs[name], outs["numpy"], **TOL["settled"], name="%s denoised image" % name)


@pytest.mark.parametrize("backend", ["cpu", "cuda-emu"])
def test_every_backend_takes_every_option(backend, x):
    """Every Config reading that changes the math at once (bias maps, batch means, no leak on a free z^0,
    PCN, learnable E): one learning step and a denoising pass agree with the reference."""
    cfg = Config(T=3, bias="pixel", reduce="mean", gamma_bottom=False, gamma=0.02, pcn=True, learn_E=True)
    ref, other = ConvNGC(cfg, "numpy", seed=2), ConvNGC(cfg, backend, seed=2)
    assert other.learn(x) == pytest.approx(ref.learn(x), rel=1e-4)
    for key in ("W", "b", "E"):
        for a, b in zip(other.host_params()[key][1:], ref.host_params()[key][1:]):
            assert a.shape == b.shape and (key != "b" or a.ndim == 3)
    # one Adam step on each backend's own gradients: a near-zero one's rounding is visible (assert_adam_close)
    assert_adam_params_close(other.host_params(), ref.host_params(), ref.host_opt_state()["v"], 1, cfg, len(x),
                             TOL["settled"], "%s after a mean-reduced step" % backend)
    ref.rng, other.rng = np.random.default_rng(3), np.random.default_rng(3)
    assert_close(other.denoise(x), ref.denoise(x), **TOL["settled"], name="%s denoised image" % backend)


@pytest.mark.parametrize("backend", ["cpu", "cuda-emu"])
@pytest.mark.parametrize("pcn,learn_E", [(False, False), (True, True)])
def test_precision_weighted_settle_matches_the_reference(backend, pcn, learn_E, x):
    """The pi0 reading (e^0 weighted by pi0 in z^1's correction) on every backend: settle and one correction
    agree with ngc_ref in float32; the cpu backend also in float64 to rounding."""
    from ngc_cpu import model as cpu_model
    from ngc_cuda import model as cuda_model
    from ngc_ref import model as ref_model
    cfg = Config(T=6, pcn=pcn, learn_E=learn_E, beta=0.05)
    rng = np.random.default_rng(7)
    p = ref_model.init_params(cfg, rng, np.float32)
    noisy = (x + rng.normal(0, 0.1, x.shape)).astype(np.float32)
    z_top = ref_model.draw_top(cfg, len(x), rng)
    fast = cpu_model if backend == "cpu" else cuda_model
    kw = {} if backend == "cpu" else {"backend": "cuda-emu"}
    for pi0 in (0.1, 1.0):
        want = ref_model.settle(p, noisy, cfg, z_top, pi0=pi0)
        got = fast.settle(p, noisy, cfg, z_top, pi0=pi0, **kw)
        for l in range(cfg.L + 1):
            assert_close(got.z[l], want.z[l], **TOL["settled"], name="%s pi0=%g z[%d]" % (backend, pi0, l))
        assert_close(got.zbar[0], want.zbar[0], **TOL["settled"], name="%s pi0=%g zbar[0]" % (backend, pi0))
        e = ref_model.predictions_and_errors(want.z, p, cfg)[1]
        step = fast.correct(want.z, e, p, cfg, pi0=pi0, **kw)
        for l in range(1, cfg.L + 1):
            assert_close(step[l], ref_model.correct(want.z, e, p, cfg, pi0=pi0)[l], **TOL["step"],
                         name="%s pi0=%g one correction, z[%d]" % (backend, pi0, l))
    a = ref_model.settle(p, noisy, cfg, z_top, pi0=0.1).zbar[0]
    assert np.abs(a - ref_model.settle(p, noisy, cfg, z_top).zbar[0]).max() > 1e-3     # pi0 changes the output
    want = ref_model.settle(p, noisy, cfg, z_top, pi0=0.1, momentum=0.9)                 # heavy-ball momentum
    got = fast.settle(p, noisy, cfg, z_top, pi0=0.1, momentum=0.9, **kw)
    for l in range(cfg.L + 1):
        assert_close(got.z[l], want.z[l], **TOL["settled"], name="%s momentum z[%d]" % (backend, l))
    assert np.abs(want.zbar[0] - ref_model.settle(p, noisy, cfg, z_top, pi0=0.1).zbar[0]).max() > 1e-3
    if backend == "cpu":
        args = (tree64(p), noisy.astype(np.float64), cfg, z_top.astype(np.float64))
        for mom in (0.0, 0.9):
            want, got = ref_model.settle(*args, pi0=0.1, momentum=mom), cpu_model.settle(*args, pi0=0.1, momentum=mom)
            for l in range(cfg.L + 1):
                assert_close(got.z[l], want.z[l], rtol=1e-12, atol=1e-13, name="cpu float64 pi0 momentum %g z[%d]"
                             % (mom, l))


def test_cpu_backend_dtypes(x):
    m64 = ConvNGC(Config(T=2), "cpu", dtype=np.float64)
    assert m64.settle(x.astype(np.float64)).z[1].dtype == np.float64
    with pytest.raises(TypeError, match="backend 'cpu' computes in float32 or float64"):
        ConvNGC(Config(T=2), "cpu", dtype=np.float16)


def test_output_z_reads_the_bottom_state(x):
    """output="z": reconstruction returns z^0, which is clamped to x, and so does the default (clamped)
    denoising; with a free z^0 (denoise="free") denoising returns the evolved z^0."""
    m = ConvNGC(Config(T=3, output="z"), "cpu", seed=1)
    np.testing.assert_array_equal(m.reconstruct(x), x)
    np.testing.assert_array_equal(m.denoise(x), x)
    cfg = Config(T=3, output="z", denoise="free")
    m = ConvNGC(cfg, "cpu", seed=1)
    m.rng = np.random.default_rng(4)
    out = m.denoise(x)
    m.rng = np.random.default_rng(4)
    res = m.settle(x, clamp="first")
    np.testing.assert_array_equal(out, res.z[0])
    assert not np.allclose(out, res.zbar[0])


def test_checkpoint_keeps_the_options_and_the_pixel_bias(tmp_path, x):
    cfg = Config(T=2, bias="pixel", reduce="mean", gamma_bottom=False, output="z")
    m = ConvNGC(cfg, "cpu", seed=0)
    m.learn(x)
    checkpoint.save(tmp_path / "c.npz", m.cfg, m.host_params(), m.host_opt_state(), {"epoch": 1})
    cfg2, params, opt, _ = checkpoint.load(tmp_path / "c.npz", expect_cfg=cfg)
    assert cfg2 == cfg and params["b"][1].shape == (3, 32, 32)
    np.testing.assert_array_equal(params["b"][2], m.host_params()["b"][2])
    wrong = dataclasses.replace(cfg, bias="channel")
    p = m.host_params()
    checkpoint.save(tmp_path / "w.npz", wrong, p)            # a per-pixel bias under a per-channel config
    with pytest.raises(checkpoint.CheckpointError, match=r"params/b/1 has shape \(3, 32, 32\) but the config needs \(3,\)"):
        checkpoint.load(tmp_path / "w.npz")


def test_command_line_uses_the_fastest_backend_and_says_so(tmp_path, capsys):
    expected = "cuda" if ngc_cuda.available() else "cpu"
    assert default_backend() == expected
    assert cli.main(["train", "--dataset", "embedded", "--limit", "20", "--val-limit", "5", "--batch-size", "10",
                     "--T", "2", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "backend: %s (the fastest available here" % expected in out and "backend %s" % expected in out
    assert cli.main(["train", "--backend", "numpy", "--dataset", "embedded", "--limit", "20", "--val-limit", "5",
                     "--batch-size", "10", "--T", "2", "--epochs", "1", "--no-progress", "--out",
                     str(tmp_path / "ref")]) == 0
    out = capsys.readouterr().out
    assert "fastest available" not in out and "backend numpy" in out


# -- the registry (convngc/backends.py): the one place the default backend is decided -------------------------
def test_the_default_is_the_fastest_available_and_everything_asks_the_registry(monkeypatch, tmp_path):
    """ConvNGC(), train.load_model, the shipped-model loader and the pictures' loader take the registry's
    default when no backend is given: with the registry's answer changed, every one of them follows it."""
    from convngc import backends, models, pictures, train
    assert backends.default() == ("cuda" if ngc_cuda.available() else "cpu")
    assert backends.default() == backends.FASTEST_FIRST[[backends.available(n) for n in backends.FASTEST_FIRST]
                                                        .index(True)]
    cfg = Config(T=1, channels=(2, 3), image_hw=(4, 4))
    checkpoint.save(tmp_path / "m.npz", cfg, ConvNGC(cfg, "numpy").host_params())
    for name in ("numpy", "cuda-emu"):
        monkeypatch.setattr(backends, "default", lambda name=name: name)
        assert ConvNGC(cfg).backend.name == name
        assert train.load_model(tmp_path / "m.npz")[0].backend.name == name
        assert models.load(str(tmp_path / "m.npz")).backend.name == name
        assert pictures.load(str(tmp_path / "m.npz"))[0].backend.name == name


def test_no_other_place_chooses_a_default_backend():
    """Every function of the library and the experiments that takes a `backend` defaults it to None (the
    registry's default), and every --backend option defaults to None: a literal default anywhere else would be
    a second place deciding it."""
    import ast
    import pathlib
    root = next(p for p in pathlib.Path(__file__).resolve().parents if (p / "setup.py").is_file()) / "convngc"     # the repository, wherever this file sits
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "backends.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args + node.args.kwonlyargs
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + list(node.args.defaults) + \
                    list(node.args.kw_defaults)
                for a, d in zip(args, defaults):
                    if a.arg == "backend" and d is not None and not (isinstance(d, ast.Constant) and d.value is None):
                        found.append("%s:%d %s(backend=%s)" % (path.name, node.lineno, node.name, ast.unparse(d)))
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args and \
                    isinstance(node.args[0], ast.Constant) and node.args[0].value == "--backend":
                for kw in node.keywords:
                    if kw.arg == "default" and not (isinstance(kw.value, ast.Constant) and kw.value.value is None):
                        found.append("%s:%d --backend default=%s" % (path.name, node.lineno, ast.unparse(kw.value)))
    assert found == []


def test_availability_says_why_a_backend_cannot_run(monkeypatch):
    from convngc import backends
    assert backends.available("numpy") and backends.why_unavailable("numpy") is None
    monkeypatch.setenv("CONVNGC_EMU_CXX", "no-such-compiler-here")
    assert not backends.available("cuda-emu")
    assert "no-such-compiler-here" in backends.why_unavailable("cuda-emu")
    if not ngc_cuda.available():
        assert "CuPy" in backends.why_unavailable("cuda")
        with pytest.raises(backends.BackendUnavailable):
            backends.get("cuda")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        backends.available("tpu")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        backends.get("tpu")


def test_import_convngc_is_fast_and_exposes_the_entry_points():
    """`import convngc` imports nothing heavy (no NumPy); its entry points come on first use."""
    import subprocess
    import sys
    code = ("import sys, convngc; heavy = [m for m in ('numpy', 'numba', 'scipy') if m in sys.modules]; "
            "print(heavy); import convngc as c; "
            "print(c.ConvNGC.__name__, c.Config.__name__, c.load_dataset.__name__, c.to_model.__name__, "
            "c.evaluate_metrics.__name__, c.psnr.__name__, c.load_model.__name__, c.default_backend(), "
            "c.metrics.__name__, c.data.__name__, callable(c.denoise))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1].split() == ["ConvNGC", "Config", "load_dataset", "to_model", "evaluate_metrics", "psnr",
                              "load_model", ("cuda" if ngc_cuda.available() else "cpu"), "convngc.metrics",
                              "convngc.data", "True"]
