"""Tuning the denoising reading (convngc/tune.py, `convngc tune`, the last step of `convngc train`): the grid,
the choice, the checkpoint that stores it and the evaluation that uses it."""
import hashlib
import json

import numpy as np
import pytest

from convngc import checkpoint, cli, tune
from convngc.model import ConvNGC
from ngc_ref.config import Config


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_the_grid_picks_the_lowest_mse_and_measures_each_point_fairly():
    """Every row is the denoising MSE of one (pi0, T) on the same noisy images and z^L draws (recomputing a
    row by hand gives the same number to the last bit); the choice is the row with the lowest MSE."""
    cfg = Config(T=3, channels=(3, 4, 3), image_hw=(16, 16))
    model = ConvNGC(cfg, "cpu", seed=1)
    x = np.random.default_rng(0).random((6, 3, 16, 16)).astype(np.float32)
    table, best = tune.tune_denoising(model, x, pi0s=(1.0, 0.5), factors=(1, 2), seed=3)
    assert {(r["pi0"], r["T"]) for r in table} <= {(1.0, 3), (1.0, 6), (0.5, 3), (0.5, 6)}
    assert (1.0, 3) in {(r["pi0"], r["T"]) for r in table}
    low = min(r["mse"] for r in table)              # the cheapest point within 0.5% of the lowest MSE
    near = [r for r in table if r["mse"] <= low * 1.005]
    assert best["T"] == min(r["T"] for r in near) and best["mse"] <= low * 1.005
    row = table[-1]
    rng = np.random.default_rng([3, 7])
    noisy = (x + rng.normal(0.0, 0.1, size=x.shape)).astype(np.float32)
    out = tune._denoise(model, noisy, row["pi0"], row["T"], 3, 100, row["momentum"])
    from convngc import metrics
    assert metrics.mse(out, x) == row["mse"]
    assert best["noisy_input"]["mse"] == pytest.approx(metrics.mse(noisy, x))
    tuned = tune.tuned_config(cfg, best)
    assert (tuned.denoise, tuned.pi0, tuned.denoise_T) == ("precision", best["pi0"], best["T"])
    assert tuned.momentum == best["momentum"] and row["momentum"] in tune.MOMENTA        # it settles as tuned
    assert best["momenta"] == [tune.MOMENTUM, 0.0]
    assert tune.tuned_config(cfg, {"pi0": 0.1, "T": 5}).momentum == 0.0       # a tuning made before momentum


def test_a_fraction_of_T_is_a_whole_number_of_steps_and_a_tuning_by_an_older_grid_is_not_current():
    cfg = Config(T=6, channels=(3, 4, 3), image_hw=(16, 16))
    model = ConvNGC(cfg, "cpu", seed=1)
    x = np.random.default_rng(0).random((4, 3, 16, 16)).astype(np.float32)
    table, best = tune.tune_denoising(model, x, pi0s=(0.5,), factors=(0.25, 0.5, 1), seed=0)
    assert [r["T"] for r in table][:2] == [2, 3]                      # round(1.5) = 2, 3
    full = dict(best, pi0_grid=list(tune.PI0_GRID), t_factors=[float(f) for f in tune.T_FACTORS],
                max_steps=tune.MAX_STEPS, momenta=list(tune.MOMENTA))
    assert tune.is_current(full)
    assert not tune.is_current(dict(full, momenta=None))                # tuned before momentum: tune again
    assert not tune.is_current(dict(full, t_factors=[1, 2, 4, 8, 16]))


def test_the_choice_prefers_a_shorter_settle_that_is_nearly_as_good(monkeypatch):
    """A longer settle that gains less than 0.5% of MSE is not worth its cost: of pi0 0.05 at T 960 (MSE
    167.88) and T 1920 (167.81) the tuning keeps 960; a clearly better longer one is kept."""
    from convngc.model import ConvNGC as M
    mses = {(1.0, 4): 300.0, (1.0, 8): 299.0, (0.5, 4): 200.0, (0.5, 8): 167.88, (0.5, 16): 167.81}
    monkeypatch.setattr(tune, "_denoise", lambda model, noisy, pi0, T, seed, batch, momentum: (pi0, T))
    monkeypatch.setattr(tune.metrics, "mse", lambda out, x: mses[out] if isinstance(out, tuple) else 600.0)
    monkeypatch.setattr(tune.metrics, "psnr", lambda out, x: 20.0)
    model = M(Config(T=4, channels=(3, 4, 3), image_hw=(16, 16)), "cpu")
    x = np.zeros((2, 3, 16, 16), np.float32)
    _, best = tune.tune_denoising(model, x, pi0s=(1.0, 0.5), factors=(1, 2, 4))
    assert (best["pi0"], best["T"]) == (0.5, 8)
    mses[(0.5, 16)] = 150.0
    _, best = tune.tune_denoising(model, x, pi0s=(1.0, 0.5), factors=(1, 2, 4))
    assert (best["pi0"], best["T"]) == (0.5, 16)


def test_train_tunes_best_npz_and_evaluate_uses_it(tmp_path):
    """`convngc train` ends by tuning best.npz on validation images: its config then holds the chosen pi0 and
    T_denoise (config.json keeps the training config; the run still resumes), and `convngc evaluate RUN`
    denoises with them. `convngc tune --dry-run` changes nothing; an explicit --denoise overrides."""
    run = tmp_path / "run"
    assert cli.main(["train", "--dataset", "embedded", "--limit", "40", "--val-limit", "12", "--epochs", "1",
                     "--batch-size", "20", "--T", "4", "--tune-limit", "8", "--no-progress", "--out", str(run)]) == 0
    cfg, _, _, meta = checkpoint.load(run / "best.npz")
    tuning = meta["denoise_tuning"]
    assert cfg.denoise == "precision" and cfg.pi0 == tuning["pi0"] and cfg.T_denoise == tuning["T"]
    assert cfg.momentum == tuning["momentum"] and cfg.momentum in tune.MOMENTA
    assert tuning["n_images"] == 8 and len(tuning["table"]) >= 2
    assert json.loads((run / "config.json").read_text())["model"]["pi0"] == Config().pi0
    before = _sha(run / "best.npz")
    assert cli.main(["tune", str(run), "--tune-limit", "8", "--dry-run", "--no-progress"]) == 0
    assert _sha(run / "best.npz") == before
    assert cli.main(["evaluate", str(run), "--limit", "8", "--trials", "1", "--no-progress"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["checkpoint"]["path"].endswith("best.npz")
    assert m["pi0"] == cfg.pi0 and m["T_denoise"] == cfg.T_denoise and m["momentum"] == cfg.momentum
    assert "psnr_of_mse" in m["results"]["denoising"]["summary"]
    assert cli.main(["evaluate", str(run), "--limit", "8", "--trials", "1", "--no-progress", "--denoise", "clamped",
                     "--T-denoise", "5"]) == 0
    m2 = json.loads((run / "metrics-2.json").read_text())
    assert m2["pi0"] == 1.0 and m2["T_denoise"] == 5 and m2["config"]["denoise"] == "clamped"
    assert m2["momentum"] == 0.0                                        # the clamped reading: Algorithm 1's steps
    assert cli.main(["evaluate", str(run), "--limit", "8", "--trials", "1", "--no-progress", "--momentum", "0"]) == 0
    assert json.loads((run / "metrics-3.json").read_text())["momentum"] == 0.0
    assert cli.main(["train", "--resume", str(run), "--epochs", "2", "--tune-limit", "0", "--no-progress"]) == 0


def test_plain_steps_compete_at_no_more_steps_than_the_momentum_choice(monkeypatch):
    """Heavy ball's grid first; then plain steps (momentum 0), each no longer than heavy ball's choice, and the
    choice is the cheapest within 0.5 % of the lowest MSE over both: a plain settle stopped early that denoises
    better at the same cost wins; a longer plain settle is never tried."""
    from convngc.model import ConvNGC as M
    mses = {(0.9, 1.0, 2): 300.0, (0.9, 1.0, 4): 200.0, (0.9, 1.0, 8): 199.9,
            (0.0, 1.0, 2): 400.0, (0.0, 1.0, 4): 190.0}
    calls = []

    def fake(model, noisy, pi0, T, seed, batch, momentum):
        calls.append((momentum, T))
        return (momentum, pi0, T)
    monkeypatch.setattr(tune, "_denoise", fake)
    monkeypatch.setattr(tune.metrics, "mse", lambda out, x: mses.get(out, 999.0) if isinstance(out, tuple) else 600.0)
    monkeypatch.setattr(tune.metrics, "psnr", lambda out, x: 20.0)
    model = M(Config(T=4, channels=(3, 4, 3), image_hw=(16, 16)), "cpu")
    x = np.zeros((2, 3, 16, 16), np.float32)
    table, best = tune.tune_denoising(model, x, pi0s=(1.0,), factors=(0.5, 1, 2, 4))
    assert (best["momentum"], best["T"], best["mse"]) == (0.0, 4, 190.0)
    assert max(T for m, T in calls if m == 0.0) == 4 and (0.9, 8) in calls          # capped at heavy ball's choice
    mses[(0.0, 1.0, 4)] = 200.5                                     # same steps, a higher MSE: heavy ball kept
    _, best = tune.tune_denoising(model, x, pi0s=(1.0,), factors=(0.5, 1, 2, 4))
    assert (best["momentum"], best["T"]) == (0.9, 4)


def test_a_resumed_training_tunes_with_the_runs_seed(tmp_path):
    """The tuning at the end of `train --resume` draws the noise and z^L with the run's seed, as `convngc tune RUN`
    does (it once used seed 0: the same model tuned twice got two tables)."""
    run = tmp_path / "run"
    assert cli.main(["train", "--dataset", "embedded", "--limit", "40", "--val-limit", "12", "--epochs", "1",
                     "--batch-size", "20", "--T", "4", "--seed", "3", "--tune-limit", "0", "--no-progress",
                     "--out", str(run)]) == 0
    assert cli.main(["train", "--resume", str(run), "--epochs", "2", "--tune-limit", "8", "--no-progress"]) == 0
    tuning = checkpoint.load(run / "best.npz")[3]["denoise_tuning"]
    assert tuning["seed"] == 3
    assert cli.main(["tune", str(run), "--tune-limit", "8", "--dry-run", "--no-progress"]) == 0


def test_evaluate_needs_one_model(tmp_path, capsys):
    assert cli.main(["evaluate", "--limit", "4"]) == 2
    assert "which model?" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path), "--model", "cifar10"]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli.main(["evaluate", "--model", str(tmp_path / "nothing-here")]) == 2
    assert "does not exist: not a shipped model" in capsys.readouterr().err
