"""The shipped models (models/<name>/): they load through the API and the command line, their files match their
cards, and each reproduces the numbers its card records on a small fixed subset of its test set."""
import json
import os
import shutil

import numpy as np
import pytest

import convngc.models as models
from convngc import checkpoint, cli

SHIPPED = ("cifar10", "color-mnist", "embedded")


def test_the_shipped_models_are_there():
    assert set(SHIPPED) <= set(models.names()), models.names()


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_loads_and_matches_its_card(name):
    card = models.card(name)
    path = models.resolve(name)
    assert models.sha256(path) == card["sha256"]
    cfg, params, _, meta = checkpoint.load(path)
    assert cfg.to_dict() == card["config"] and cfg.denoise == "precision"
    assert meta["run_args"].get("data_dir") is None                # nothing of the training machine's paths
    model = models.load(name, backend="cpu")
    assert model.cfg == cfg and model.n_filter_weights == card["n_filter_weights"]
    for cmd in card["regenerate"]:
        assert cmd.startswith(("convngc ", "bash ", "python ")), cmd
    assert card["denoising"]["pi0"] == cfg.pi0 and card["denoising"]["T"] == cfg.T_denoise
    assert card["denoising"]["momentum"] == cfg.momentum and card["denoising"]["momenta"] == [0.9, 0.0]


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_reproduces_its_check_numbers(name, shared_data):
    """The card's `check`: reconstruction and denoising of the first images of the test split, one seeded trial,
    on the cpu backend. Numbers within 0.5% of MSE (the cpu backend is deterministic on one machine; another
    CPU may round differently in the last bits, which the settle does not amplify that far)."""
    card = models.card(name)
    c = card["check"]
    got = models.check_numbers(models.load(name, backend="cpu"), c["dataset"], data_dir=shared_data,
                               split=c["split"], limit=c["limit"], trials=c["trials"], seed=c["seed"],
                               batch_size=c["batch_size"])
    for task in ("reconstruction", "denoising"):
        want = c["results"][task]
        assert got["results"][task]["mse"] == pytest.approx(want["mse"], rel=5e-3), task
        assert got["results"][task]["psnr"] == pytest.approx(want["psnr"], abs=0.02), task


def test_evaluate_model_by_name_writes_outside_the_models_folder(tmp_path, monkeypatch, capsys):
    """`convngc evaluate --model NAME` reads the shipped file and never writes into models/ (part of the code):
    its metrics go to a new runs/eval-NAME-<time> folder, or --out."""
    name = "embedded"
    before = {p: open(os.path.join(models.MODELS_DIR, name, p), "rb").read()
              for p in os.listdir(os.path.join(models.MODELS_DIR, name))}
    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", "--model", name, "--limit", "8", "--trials", "1", "--no-progress",
                     "--tasks", "reconstruction"]) == 0
    out = [d for d in os.listdir(tmp_path / "runs") if d.startswith("eval-embedded-")]
    assert len(out) == 1
    m = json.loads((tmp_path / "runs" / out[0] / "metrics.json").read_text())
    assert m["model"] == name and m["checkpoint"]["sha256"] == models.card(name)["sha256"]
    after = {p: open(os.path.join(models.MODELS_DIR, name, p), "rb").read()
             for p in os.listdir(os.path.join(models.MODELS_DIR, name))}
    assert after == before
    assert cli.main(["tune", name, "--no-progress"]) == 2
    assert "shipped model" in capsys.readouterr().err


def test_a_damaged_shipped_model_is_named_not_used(tmp_path, monkeypatch):
    shutil.copytree(os.path.join(models.MODELS_DIR, "embedded"), tmp_path / "embedded")
    monkeypatch.setattr(models, "MODELS_DIR", str(tmp_path))
    assert models.names() == ["embedded"]
    with open(tmp_path / "embedded" / "model.npz", "r+b") as f:
        f.seek(-10, 2)
        f.write(b"0123456789")
    with pytest.raises(checkpoint.CheckpointError, match="does not match the sha256"):
        models.resolve("embedded")
    np.testing.assert_equal(models.names(), ["embedded"])
