"""The shared layer: the ConvNGC API, its input checks, checkpoints, run folders and the CLI."""
import json
import os

import numpy as np
import pytest

from convngc import checkpoint, cli, fileio, rundir, train
from convngc.model import ConvNGC, DivergenceError
from ngc_ref.config import Config

from helpers import assert_adam_params_close, cli_train, edit_header, set_meta
from tolerances import TOL

TINY = Config(T=3)


@pytest.fixture
def x():
    return np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)


def test_settle_and_reconstruct(x):
    m = ConvNGC(TINY, seed=0)
    res = m.settle(x)
    assert res.energy.shape == (4, 2) and res.zbar[0].shape == x.shape
    assert m.reconstruct(x).shape == x.shape and m.n_filter_weights == 9225


def test_same_seed_same_numbers(x):
    a, b = ConvNGC(TINY, seed=3), ConvNGC(TINY, seed=3)
    np.testing.assert_array_equal(a.reconstruct(x), b.reconstruct(x))
    assert not np.array_equal(a.reconstruct(x), ConvNGC(TINY, seed=4).reconstruct(x))


@pytest.mark.parametrize("bad,err,msg", [
    (lambda x: x.transpose(0, 2, 3, 1), ValueError, "expected 3 channels.*NHWC"),
    (lambda x: (x * 255).astype(np.uint8), TypeError, "floating-point.*uint8"),
    (lambda x: x[0], ValueError, "4-D"),
    (lambda x: x[:, :, :16, :16], ValueError, "images of 32x32"),
    (lambda x: np.where(np.arange(32) == 5, np.nan, x).astype(np.float32), ValueError, "NaN or Inf"),
    (lambda x: x[:, :1], ValueError, "expected 3 channels"),
])
def test_bad_images_are_named(x, bad, err, msg):
    with pytest.raises(err, match=msg):
        ConvNGC(TINY).settle(bad(x))


def test_bad_options():
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        ConvNGC(TINY, backend="gpu")
    with pytest.raises(ValueError, match="clamp must be"):
        ConvNGC(TINY).settle(np.zeros((1, 3, 32, 32), np.float32), clamp="never")
    with pytest.raises(ValueError, match="does not divide by stride\\^L"):
        Config(image_hw=(30, 32))
    with pytest.raises(ValueError, match="unknown optimizer"):
        Config(optimizer="sgd")
    with pytest.raises(ValueError, match="unknown option.*bogus"):
        Config.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="beta must be a finite number"):
        Config(beta=float("nan"))


@pytest.mark.parametrize("kw,pattern", [
    ({"T": 2.5}, r"T must be an integer in \[1, 100000\], got 2\.5"),
    ({"T": 0}, r"T must be an integer in \[1, 100000\], got 0"),
    ({"T": True}, r"T must be an integer in \[1, 100000\], got True"),
    ({"kernel": 0}, r"kernel must be an integer >= 1"),
    ({"pcn": "maybe"}, r"pcn must be true or false, got 'maybe'"),
    ({"beta": "fast"}, r"beta must be a finite number >= 0, got 'fast'"),
    ({"adam_b1": 2}, r"adam_b1 must be a number in \[0, 1\), got 2"),
    ({"lam": -5}, r"lam must be a finite number >= 0, got -5"),
    ({"max_kernel_norm": 0}, r"max_kernel_norm must be a finite number > 0, got 0"),
    ({"leak": float("nan")}, r"leak must be a number in \[0, 1\], got nan"),
    ({"mu_z": float("inf")}, r"mu_z must be a finite number, got inf"),
    ({"adam_eps": 0.0}, r"adam_eps must be a finite number > 0"),
    ({"channels": (10, 0, 3)}, r"every layer needs >= 1 channel"),
])
def test_config_refuses_values_out_of_range(kw, pattern):
    """The ranges live on Config, so the API refuses what the command line refuses."""
    with pytest.raises(ValueError, match=pattern) as e:
        Config(**kw)
    assert getattr(e.value, "field", None) == next(iter(kw))


def test_nan_in_parameters_or_top_state_is_named_as_such(x):
    m = ConvNGC(TINY)
    m.params["W"][2][0, 0, 0, 0] = np.nan                      # set by hand after construction
    with pytest.raises(DivergenceError, match=r"parameter W\[2\] contains NaN") as e:
        m.settle(x)
    assert "beta" not in str(e.value)
    z_top = np.full((2, 10, 2, 2), np.inf, np.float32)
    with pytest.raises(ValueError, match=r"z_top contains Inf"):
        ConvNGC(TINY).settle(x, z_top=z_top)


@pytest.mark.parametrize("make,pattern", [
    (lambda x: x * 255, r"pixel values must lie in \[0, 1\].*got range \[[\d.]+, 25\d.*0-255 scale"),
    (lambda x: x - 3, r"pixel values must lie in \[0, 1\].*got range \[-3"),
])
def test_settle_refuses_pixels_far_outside_0_1(x, make, pattern):
    with pytest.raises(ValueError, match=pattern):
        ConvNGC(TINY).settle(make(x))


def test_settle_accepts_noisy_inputs_and_warns_about_a_negative_clean_one(x, recwarn):
    noisy = (x + np.random.default_rng(1).normal(0, 0.1, x.shape)).astype(np.float32)   # below 0, above 1
    assert noisy.min() < 0 and noisy.max() > 1
    ConvNGC(TINY).settle(noisy, clamp="first")                  # denoising input: fine, silent
    assert not recwarn.list
    with pytest.warns(UserWarning, match=r"clamped input has values outside \[0, 1\]"):
        ConvNGC(TINY).settle(x - 0.2)


def test_divergence_is_reported(x):
    with pytest.raises(DivergenceError, match=r"settling diverged: the energy became (NaN|Inf) at step \d+ .*lower beta"):
        ConvNGC(Config(T=60, beta=40.0)).settle(x)


def test_nan_parameters_are_refused():
    p = ConvNGC(TINY).host_params()
    p["W"][2][0, 0, 0, 0] = np.nan
    with pytest.raises(DivergenceError, match="W\\[2\\] contains NaN"):
        ConvNGC(TINY, params=p)


def test_learning_lowers_the_energy_of_the_batch(x):
    m = ConvNGC(Config(T=10, lr=1e-2), seed=0)
    m.rng = np.random.default_rng(1)
    before = float(m.settle(x).energy[-1].mean())
    for _ in range(3):
        m.learn(x)
    m.rng = np.random.default_rng(1)
    assert float(m.settle(x).energy[-1].mean()) < before


# -- checkpoints -------------------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path, x):
    m = ConvNGC(Config(T=3, learn_E=True), seed=0)
    m.learn(x)
    path = tmp_path / "c.npz"
    checkpoint.save(path, m.cfg, m.host_params(), m.host_opt_state(), {"epoch": 1})
    cfg, params, opt, meta = checkpoint.load(path, expect_cfg=m.cfg)
    assert cfg == m.cfg and meta == {"epoch": 1} and opt["t"] == 1
    for key in ("W", "b", "E"):
        for a, b in zip(params[key][1:], m.host_params()[key][1:]):
            np.testing.assert_array_equal(a, b)
    assert not [f for f in os.listdir(tmp_path) if f != "c.npz"]      # no temporary files left


def test_checkpoint_errors(tmp_path, x):
    m = ConvNGC(TINY)
    path = tmp_path / "c.npz"
    checkpoint.save(path, m.cfg, m.host_params())
    with pytest.raises(checkpoint.CheckpointError, match="different config.*T: checkpoint 3 vs requested 60"):
        checkpoint.load(path, expect_cfg=Config())
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.npz")
    trunc = tmp_path / "t.npz"
    trunc.write_bytes(path.read_bytes()[:500])
    with pytest.raises(checkpoint.CheckpointError, match="not a readable .npz.*truncated"):
        checkpoint.load(trunc)
    p = m.host_params()
    p["W"][1] = p["W"][1][:, :2]
    checkpoint.save(tmp_path / "s.npz", m.cfg, p)
    with pytest.raises(checkpoint.CheckpointError, match="params/W/1 has shape .* needs \\(25, 3, 3, 3\\)"):
        checkpoint.load(tmp_path / "s.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(checkpoint.CheckpointError, match="no convngc header"):
        checkpoint.load(tmp_path / "other.npz")


def test_crash_during_save_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "c.npz"
    path.write_bytes(b"the earlier checkpoint")

    def crash(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        fileio.atomic_write(path, crash)
    assert path.read_bytes() == b"the earlier checkpoint"
    assert os.listdir(tmp_path) == ["c.npz"]


def test_run_folder_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    rundir.make_run_dir(run)
    (run / "metrics.json").write_text("{}")
    with pytest.raises(rundir.RunDirError, match="already holds a run.*--resume"):
        rundir.make_run_dir(run)
    assert (run / "metrics.json").read_text() == "{}"


# -- the CLI end to end (tiny: 3 settling steps, 40 embedded images) -----------------------------
# the default backend (the fastest here), 3 settling steps, 40 embedded images
SMALL_TRAIN = ["--dataset", "embedded", "--limit", "40", "--val-limit", "10", "--batch-size", "20", "--T", "3",
               "--seed", "1", "--no-progress"]


def test_cli_train_evaluate_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_train(run, "--epochs", "1", base=SMALL_TRAIN) == 0
    for f in ("config.json", "checkpoint.npz", "history.json", "training.png"):
        assert (run / f).exists(), f
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["T"] == 3 and cfg["n_filter_weights"] == 9225

    assert cli.main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert len(json.loads((run / "history.json").read_text())["val_mse"]) == 2

    # the same two epochs without the interruption give the very same filters
    straight = tmp_path / "straight"
    assert cli_train(straight, "--epochs", "2", base=SMALL_TRAIN) == 0
    a = checkpoint.load(run / "checkpoint.npz")[1]["W"]
    b = checkpoint.load(straight / "checkpoint.npz")[1]["W"]
    for wa, wb in zip(a[1:], b[1:]):
        np.testing.assert_array_equal(wa, wb)

    assert cli.main(["evaluate", str(run), "--limit", "10", "--trials", "2", "--tasks", "reconstruction",
                     "denoising", "--no-progress"]) == 0
    res = json.loads((run / "metrics.json").read_text())["results"]
    assert set(res) == {"reconstruction", "denoising"} and len(res["denoising"]["trials"]) == 2
    for f in ("samples_reconstruction.png", "samples_denoising.png", "energy.png"):
        assert (run / f).exists(), f
    out = capsys.readouterr().out
    assert "MSE" in out and "PSNR" in out


def test_cli_refuses_to_overwrite_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_train(run, "--epochs", "1", base=SMALL_TRAIN) == 0
    before = (run / "checkpoint.npz").read_bytes()
    assert cli_train(run, "--epochs", "1", base=SMALL_TRAIN) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "checkpoint.npz").read_bytes() == before


def test_cli_bad_options(tmp_path, capsys):
    """More in tests/app/test_cli.py: every option value is checked before any work, with exit status 2."""
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--dataset", "imagenet"])
    assert e.value.code == 2 and "invalid choice: 'imagenet'" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- the same shared layer on the emulated CUDA backend ------------------------------------------
def test_cuda_emu_backend_matches_numpy_through_convngc(x):
    """ConvNGC with backend="cuda-emu" (the kernels on the CPU emulator) learns what the reference learns."""
    cfg = Config(T=4)
    ref, emu = ConvNGC(cfg, "numpy", seed=5), ConvNGC(cfg, "cuda-emu", seed=5)
    for _ in range(2):
        e_ref, e_emu = ref.learn(x), emu.learn(x)
        assert e_emu == pytest.approx(e_ref, rel=TOL["reduction"]["rtol"])
    # float32 both, different sum orders; Adam's eps makes a near-zero gradient's rounding visible (assert_adam_close)
    assert_adam_params_close(emu.host_params(), ref.host_params(), ref.host_opt_state()["v"], 2, cfg, len(x),
                             TOL["adam-steps"], "after learning")


def test_cuda_backend_without_gpu_points_to_the_emulator(tmp_path, capsys):
    import ngc_cuda
    if ngc_cuda.available():
        pytest.skip("a GPU is present: this checks the message given without one")
    from convngc.model import BackendUnavailable
    with pytest.raises(BackendUnavailable, match="cuda-emu"):
        ConvNGC(TINY, backend="cuda")
    assert cli.main(["train", "--backend", "cuda", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "cuda-emu" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()                        # no empty run folder left behind


def test_cli_ood_evaluation(tmp_path, shared_data, capsys):
    run = tmp_path / "run"
    assert cli_train(run, "--epochs", "1", base=SMALL_TRAIN) == 0
    assert cli.main(["evaluate", str(run), "--tasks", "ood", "--ood-dataset", "cinic10", "--limit", "12",
                     "--trials", "2", "--data-dir", str(shared_data), "--T", "3", "--no-progress"]) == 0
    res = json.loads((run / "metrics.json").read_text())["results"]["ood"]
    assert res["dataset"] == "cinic10" and res["n_images"] == 12
    assert "12 images x 2 trials" in capsys.readouterr().out
    first = (run / "metrics.json").read_bytes()
    assert cli.main(["evaluate", str(run), "--tasks", "reconstruction", "--limit", "10", "--trials", "1",
                     "--T", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out                                       # one trial: no spread, "1 trial"
    assert "10 images x 1 trial\n" in out and "+/-" not in out and "1 trials" not in out
    assert (run / "metrics.json").read_bytes() == first                 # the earlier evaluation is kept
    assert "reconstruction" in json.loads((run / "metrics-2.json").read_text())["results"]
    assert (run / "samples_reconstruction-2.png").exists()


@pytest.mark.parametrize("reading,clamp,pi0,mom", [("precision", "always", 0.25, 0.0), ("precision", "always", 0.25, 0.6),
                                                   ("clamped", "always", 1.0, 0.0), ("free", "first", 1.0, 0.0)])
def test_denoise_follows_the_configured_reading(reading, clamp, pi0, mom):
    """cfg.denoise picks how denoising treats z^0: "precision" (the default) settles with the noisy image
    clamped throughout and its error weighted by cfg.pi0 in z^1's correction, "clamped" (Algorithm 1) the same
    with pi0 = 1, "free" (Sec. 4) clamps it at t = 1 only; all for cfg.T_denoise steps, with cfg.momentum under the
    precision reading only (a config with momentum 0.6 denoises with plain steps when clamped or free). ConvNGC.denoise and
    train.run_task must both settle exactly that way (same z^L draws, so the outputs are equal to the last bit)."""
    import dataclasses
    from convngc import train
    assert Config().denoise == "precision" and Config().denoise_pi0 == Config().pi0 < 1
    cfg = dataclasses.replace(TINY, denoise=reading, pi0=0.25, T_denoise=TINY.T + 2, momentum=0.6 if mom else 0.0)
    assert cfg.denoise_pi0 == pi0 and cfg.denoise_T == TINY.T + 2 and cfg.denoise_momentum == mom
    rng = np.random.default_rng(0)
    x = rng.random((3,) + (cfg.layer_channels[0],) + cfg.image_hw).astype(np.float32)
    noisy = (x + rng.normal(0, 0.1, x.shape)).astype(np.float32)
    a, b = ConvNGC(cfg, seed=4), ConvNGC(cfg, seed=4)
    got = a.denoise(noisy)
    want = b.settle(noisy, T=cfg.T_denoise, clamp=clamp, noisy=True, pi0=pi0, momentum=mom).zbar[0]
    np.testing.assert_array_equal(got, want)
    others = [("first" if clamp == "always" else "always", pi0, cfg.T_denoise, 0.0),
              (clamp, 0.5 if pi0 == 1 else 1.0, cfg.T_denoise, mom), (clamp, pi0, cfg.T, mom)]
    if clamp == "always":
        others.append((clamp, pi0, cfg.T_denoise, 0.3 if mom else 0.6))
    for other_clamp, other_pi0, other_T, other_mom in others:
        other = ConvNGC(cfg, seed=4).settle(noisy, T=other_T, clamp=other_clamp, noisy=True, pi0=other_pi0,
                                            momentum=other_mom).zbar[0]
        assert not np.array_equal(got, other)                # each part of the reading changes the output
    out, inp, _ = train.run_task(ConvNGC(cfg, seed=4), x, "denoising", batch_size=3, seed=11)
    m = ConvNGC(cfg, seed=4)
    m.rng = np.random.default_rng([11, 1])                   # run_task's z^L stream for seed 11
    np.testing.assert_array_equal(out, m.settle(inp, T=cfg.T_denoise, clamp=clamp, noisy=True, pi0=pi0,
                                                momentum=mom).zbar[0])


def test_denoising_evaluation_reports_the_noisy_input_beside_the_output():
    """The number a denoiser must beat stands beside its own: the metrics of the noisy input itself (the same
    noise draws), per trial averaged like the output's; reconstruction has no such entry."""
    from convngc import metrics, train
    rng = np.random.default_rng(3)
    x = rng.random((4, 3, 32, 32)).astype(np.float32)
    res, (out, inp, _) = train.evaluate(ConvNGC(TINY, seed=0), x, "denoising", trials=2, batch_size=4, seed=5)
    want = [metrics.mse(train.run_task(ConvNGC(TINY, seed=0), x, "denoising", 4, seed=5 + k)[1], x) for k in range(2)]
    assert abs(res["noisy_input"]["mse"]["mean"] - np.mean(want)) < 1e-9 * np.mean(want)
    assert res["noisy_input"]["psnr"]["mean"] < 21 and res["noisy_input"]["mse"]["mean"] > 400   # std 0.1 noise
    assert "noisy_input" not in train.evaluate(ConvNGC(TINY, seed=0), x, "reconstruction", batch_size=4)[0]


@pytest.mark.parametrize("task", ["reconstruction", "denoising"])
def test_evaluation_reports_the_metrics_of_the_clipped_output(task):
    """train.evaluate scores what a user gets, the output clipped to [0, 1] (convngc/train.py, metrics.py), not
    the raw zbar^0: with biases of +1.4 and -0.6 on two channels the output strays well outside [0, 1], and
    every metric evaluate reports (and the noisy input's beside it) is that of the clipped images, which here
    differs from the unclipped one's by far more than any rounding."""
    from convngc import metrics
    x = np.random.default_rng(3).random((4, 3, 32, 32)).astype(np.float32)
    m = ConvNGC(TINY, seed=0)
    p = m.host_params()
    p["b"][1] = np.array([1.4, -0.6, 0.5], np.float32)
    m.set_params(p)
    res, (out, inp, _) = train.evaluate(m, x, task, trials=1, batch_size=4, seed=5)
    assert out.max() > 1.2 and out.min() < -0.2, (out.min(), out.max())
    clipped = metrics.evaluate_metrics(np.clip(out, 0, 1), x, clip=False)
    raw = metrics.evaluate_metrics(out, x, clip=False)
    for key in ("mse", "psnr", "ssim_global", "ssim"):
        assert res["trials"][0][key] == pytest.approx(float(clipped[key]), rel=1e-9, abs=1e-12), key
        assert res["summary"][key]["mean"] == pytest.approx(float(clipped[key]), rel=1e-9, abs=1e-12), key
    assert raw["mse"] > 1.5 * clipped["mse"] and abs(raw["ssim"] - clipped["ssim"]) > 1e-3
    if task == "denoising":                           # the noisy input strays outside [0, 1] too (std 0.1 noise)
        assert res["noisy_input"]["mse"]["mean"] == pytest.approx(metrics.mse(np.clip(inp, 0, 1), x, clip=False),
                                                                  rel=1e-9)


def test_best_checkpoint_is_the_epoch_with_the_lowest_validation_mse(tmp_path):
    """Training can get worse past the settling's stability edge: best.npz keeps the epoch with the lowest
    validation MSE (NaN never counts), checkpoint.npz the last one."""
    assert train.is_best_epoch({"val_mse": [5.0, 3.0]}) and not train.is_best_epoch({"val_mse": [3.0, 5.0]})
    assert not train.is_best_epoch({"val_mse": [3.0, float("nan")]}) and train.is_best_epoch({"val_mse": [float("nan"), 9.0]})
    rng = np.random.default_rng(0)
    x = rng.random((40, 3, 32, 32)).astype(np.float32)
    model = ConvNGC(Config(T=3, lr=0.05), seed=0)                  # a large step: validation MSE is not monotone
    hist = train.fit(model, x[:30], x[30:], 4, batch_size=10, run_dir=str(tmp_path), progress=False,
                     log=lambda *_: None)
    best_epoch = int(np.nanargmin(hist["val_mse"])) + 1
    assert best_epoch < 4, hist["val_mse"]                         # measured: 5298, 5093, 6258, 8006
    _, _, _, meta_best = checkpoint.load(tmp_path / "best.npz")
    _, _, _, meta_last = checkpoint.load(tmp_path / "checkpoint.npz")
    assert meta_best["epoch"] == best_epoch and meta_last["epoch"] == 4


# -- issue 19: API misuse named by its argument, overflow named by its cause ---------------------------------
@pytest.mark.parametrize("make,field,pattern", [
    (lambda: Config(channels="10,3"), "channels", r"channels must be a list or tuple of integers.*got '10,3'"),
    (lambda: Config(image_hw=32), "image_hw", r"image_hw must be a list or tuple of integers.*got 32"),
    (lambda: Config(channels=(10, 2.5, 3)), "channels", r"channels must be a list or tuple of integers"),
    (lambda: Config(T=10 ** 20), "T", r"T must be an integer in \[1, 100000\]"),
])
def test_config_argument_errors_name_the_argument(make, field, pattern):
    """Cases 33-34 (and 11 through the API): `invalid literal for int()`, `'int' object is not iterable`."""
    with pytest.raises(ValueError, match=pattern) as e:
        make()
    assert e.value.field == field


@pytest.mark.parametrize("params,err,pattern", [
    ([1, 2, 3], TypeError, r"ConvNGC\(params=\.\.\.\): params must be a dict.*got list"),
    ({"W": [None, 1]}, ValueError, r"ConvNGC\(params=\.\.\.\): params has no 'b'"),
    ("weights", TypeError, r"ConvNGC\(params=\.\.\.\): params must be a dict.*got str"),
])
def test_convngc_params_errors_name_the_argument(params, err, pattern):
    """Case 35: ConvNGC(Config(), "cpu", params=[1, 2, 3]) raised AttributeError."""
    with pytest.raises(err, match=pattern):
        ConvNGC(Config(), "numpy", params=params)
    p = ConvNGC(TINY).host_params()
    p["W"][3] = p["W"][3][:1]
    with pytest.raises(ValueError, match=r"ConvNGC\(params=\.\.\.\): params\['W'\]\[3\] has shape \(1, 20, 3, 3\)"):
        ConvNGC(TINY, params=p)
    with pytest.raises(TypeError, match=r"ConvNGC\(cfg=\.\.\.\): expected a Config"):
        ConvNGC({"T": 3})


def test_a_huge_model_is_refused_with_its_memory_estimate_before_allocating(monkeypatch, x):
    """Case 12 through the API: the estimate is checked before the parameters or the states are allocated."""
    from convngc import model as M
    monkeypatch.setattr(M, "machine_memory", lambda backend="numpy": 8 * 2 ** 30)
    with pytest.raises(M.TooLarge, match=r"channels 1000000000,3: the parameters.* need at least 40\d GiB, more "
                                         r"than the 8 GiB"):
        ConvNGC(Config(channels=(10 ** 9, 3)))
    m = ConvNGC(Config(channels=(100000, 3), T=1))                   # the parameters fit (11 MB) ...
    with pytest.raises(M.TooLarge, match=r"batch of 50 needs at least 14.3 GiB.*layer 1 \(100000 maps of 16x16\)"):
        m.settle(np.repeat(x, 25, axis=0))                            # ... a batch of 50 states does not
    need, parts = M.memory_estimate(Config(), 100)
    assert 3 * 100 * 3 * 32 * 32 * 4 < need < 2 ** 30                  # the paper's model: some MB


@pytest.mark.parametrize("change,cause", [
    (dict(mu_z=1e30), r"the initial top state z\^L reaches \|z\^L\| = 1e\+30 \(drawn from N\(mu_z = 1e\+30"),
    (dict(w_std=1e30), r"the filters W reach \|W\^\d\| = [\d.]+e\+30 \(they start at N\(0, w_std = 1e\+30\)"),
    ("weights", r"the filters W reach \|W\^\d\| = [\d.]+e\+29"),
    ("biases", r"the biases b reach \|b\^\d\| = 1e\+30 \(they start at 0 and move by the learning rate"),
])
def test_an_overflow_at_step_0_names_what_overflowed_not_beta(x, change, cause):
    """Cases 23-26: an energy that is Inf/NaN at step 0 (before any correction) was blamed on beta."""
    if isinstance(change, dict):
        m = ConvNGC(Config(T=3, **change))
    else:
        m = ConvNGC(TINY)
        if change == "weights":                                       # the API user scales the weights x1e30
            m.params["W"] = [None] + [w * np.float32(1e30) for w in m.params["W"][1:]]
        else:                                                         # what --lr 1e30 does after one update
            m.params["b"][3][:] = 1e30
    with pytest.raises(DivergenceError, match=r"at step 0 of 3, before any state correction, so beta is not the "
                                              r"cause: the initial states overflowed float32: " + cause) as e:
        m.settle(x)
    assert "lower beta" not in str(e.value)


# -- issue 19: hand-edited checkpoint headers -----------------------------------------------------------------
HEADER_EDITS = [
    (lambda h: [h], r"the header must be a JSON object, got list"),                                       # case 16
    (lambda h: dict(h, meta=[1, 2]), r"meta must be a JSON object, got list"),                          # case 17
    (lambda h: dict(h, opt_t="abc"), r"header\.opt_t .*must be an integer >= 0 or null, got 'abc'"),   # case 18
    (set_meta(rng_state={"bit_generator": "MT19937"}), r"meta\.rng_state is not the state of a PCG64"),   # case 19
    (set_meta(epoch="abc"), r"meta\.epoch must be an integer >= 0, got 'abc'"),                            # case 20
    (set_meta(epoch=-3), r"meta\.epoch must be an integer >= 0, got -3"),                                  # case 10
    (set_meta(history={"val_mse": "low"}), r"meta\.history\.val_mse must be a list of numbers"),
    (set_meta(run_args={"batch_size": 0}), r"meta\.run_args\.batch_size must be an integer >= 1, got 0"),
    (lambda h: dict(h, config=[1]), r"header\.config must be a JSON object"),
    (lambda h: dict(h, has_E="yes"), r"header\.has_E must be true or false"),
    (lambda h: dict(h, config=dict(h["config"], learn_E=True)), r"config\.learn_E is true but header\.has_E is not"),
]


@pytest.mark.parametrize("edit,pattern", HEADER_EDITS, ids=[p for _, p in HEADER_EDITS])
def test_a_hand_edited_checkpoint_header_is_named_by_its_field(tmp_path, x, edit, pattern):
    """Cases 10, 16-20: one schema check of the header on load; each field of the wrong type or range is named."""
    m = ConvNGC(TINY)
    m.learn(x)
    train.save_run_state(tmp_path, m, 1, {"train_energy": [1.0], "val_mse": [2.0], "epoch_seconds": [3.0]}, 0,
                         {"run_args": {"dataset": "embedded", "batch_size": 2, "epochs": 1}})
    path = tmp_path / "checkpoint.npz"
    edit_header(path, edit)
    with pytest.raises(checkpoint.CheckpointError, match=pattern):
        checkpoint.load(path)


def test_unknown_header_and_history_keys_are_kept(tmp_path, x):
    """Later versions add keys (a schedule in meta, new history series): the schema check keeps them."""
    m = ConvNGC(TINY)
    meta = {"epoch": 2, "schedule": {"beta": [0.1, 0.05]}, "history": {"val_mse": [1.0, None], "psnr": [3, 4]}}
    checkpoint.save(tmp_path / "c.npz", m.cfg, m.host_params(), m.host_opt_state(), meta)
    assert checkpoint.load(tmp_path / "c.npz")[3] == meta


def test_load_model_reads_a_run_folders_best_epoch(tmp_path):
    """convngc.load_model (the API's loader) gives a run folder's best.npz, as `convngc evaluate RUN` does;
    convngc.train.load_model on the folder gives the state a run resumes from, checkpoint.npz."""
    import convngc
    cfg = Config(channels=(3, 4, 3), image_hw=(16, 16), T=2)
    best, last = (ConvNGC(cfg, backend="numpy", seed=s).host_params() for s in (1, 2))
    checkpoint.save(tmp_path / "best.npz", cfg, best, meta={"epoch": 1})
    checkpoint.save(tmp_path / "checkpoint.npz", cfg, last, meta={"epoch": 2})
    model, meta = convngc.load_model(tmp_path, backend="numpy")
    assert meta["epoch"] == 1
    np.testing.assert_array_equal(model.host_params()["W"][1], best["W"][1])
    assert train.load_model(tmp_path, backend="numpy")[1]["epoch"] == 2
