"""The study runner (convngc.experiments.study): its stability measure against a dense eigen-decomposition, and
resuming; it trains through train.fit and saves through convngc.checkpoint; its report reads the committed JSON."""
import json

import numpy as np
import pytest

from convngc import checkpoint, data, train
from convngc.experiments import study
from convngc.model import ConvNGC
from ngc_ref.config import Config

from helpers import oscillating_settle


def test_stability_eigenvalue_matches_a_dense_eigendecomposition():
    """A tiny model (leak 1, so the step is linear and its Jacobian does not depend on the state) with filters
    scaled up until the settling oscillates: the power iteration must find the most negative eigenvalue
    that np.linalg.eigvals finds in the dense Jacobian."""
    params, cfg, x, want = oscillating_settle()
    got, share = study.stability(params, cfg, x, T=0, iters=400)
    assert abs(got - want) < 1e-3 * abs(want), (got, want)
    assert abs(sum(share) - 1.0) < 1e-12 and len(share) == cfg.L


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, shared_data, monkeypatch):
    monkeypatch.setitem(study.EXPERIMENTS, "smoke", dict(study.EXPERIMENTS["smoke"], epochs=2))
    a = study.run("smoke", results=str(tmp_path / "a"), state=str(tmp_path / "sa"), log=lambda *_: None)
    monkeypatch.setitem(study.EXPERIMENTS, "smoke", dict(study.EXPERIMENTS["smoke"], epochs=1))
    study.run("smoke", results=str(tmp_path / "b"), state=str(tmp_path / "sb"), log=lambda *_: None)
    monkeypatch.setitem(study.EXPERIMENTS, "smoke", dict(study.EXPERIMENTS["smoke"], epochs=2))
    b = study.run("smoke", results=str(tmp_path / "b"), state=str(tmp_path / "sb"), log=lambda *_: None)
    cfg = Config(**study.EXPERIMENTS["smoke"]["cfg"])
    pa = study.load_params("smoke", tmp_path / "sa")
    pb = study.load_params("smoke", tmp_path / "sb")
    for l in range(1, cfg.L + 1):
        assert np.array_equal(pa["W"][l], pb["W"][l]) and np.array_equal(pa["b"][l], pb["b"][l])
    strip = lambda r: [{k: v for k, v in e.items() if k != "train_seconds"} for e in r["epochs"]]
    assert strip(a) == strip(b)
    on_disk = json.loads((tmp_path / "b" / "smoke.json").read_text())          # strict JSON: no bare NaN
    assert [e["epoch"] for e in on_disk["epochs"]] == [1, 2]
    # learning happened and every reading was measured at every T
    last = on_disk["epochs"][-1]
    for key in ("recon", "denoise_free", "denoise_free_z0", "denoise_free_noleak", "denoise_clamped"):
        for T in study.EXPERIMENTS["smoke"]["Ts"]:
            assert np.isfinite(last["%s_psnr_T%d" % (key, T)])
    assert on_disk["epochs"][-1]["recon_psnr_T10"] > on_disk["epochs"][0]["recon_psnr_T10"]
    # the fixed-point run reads the study's checkpoint (a short one here)
    fp = study.fixedpoint("smoke", marks=(0, 1, 3), n=5, results=str(tmp_path / "fp"), state=str(tmp_path / "sa"),
                          log=lambda *_: None)
    assert [r["t"] for r in fp["variants"]["literal"]] == [0, 1, 3]
    assert json.loads((tmp_path / "fp" / "fixedpoint-smoke.json").read_text())["n_images"] == 5


def test_the_study_trains_through_fit_and_saves_checkpoints(tmp_path, shared_data, monkeypatch):
    """A study run's filters are train.fit's on the same images and seeds (no loop of its own), and its run
    folder holds convngc.checkpoint files only: the last epoch (resumable, with Adam's state) and each epoch's."""
    monkeypatch.setitem(study.EXPERIMENTS, "smoke", dict(study.EXPERIMENTS["smoke"], epochs=2, eval_every=2))
    exp = study.EXPERIMENTS["smoke"]
    study.run("smoke", backend="numpy", results=str(tmp_path / "r"), state=str(tmp_path / "s"), log=lambda *_: None)
    cfg = Config(**exp["cfg"])
    xtr = data.to_model(data.load_dataset(exp["dataset"], "train", limit=exp["n_train"])[0])
    direct = ConvNGC(cfg, backend="numpy", seed=0)
    train.fit(direct, xtr, xtr[:0], exp["epochs"], exp["batch"], progress=False, seed=0, log=lambda *_: None)
    _, got, opt, meta = checkpoint.load(tmp_path / "s" / "smoke" / "checkpoint.npz", expect_cfg=cfg)
    for key in ("W", "b"):
        for l in range(1, cfg.L + 1):
            np.testing.assert_array_equal(got[key][l], direct.host_params()[key][l])
    assert meta["epoch"] == 2 and opt["t"] == direct.host_opt_state()["t"] > 0 and meta["study"] == "smoke"
    files = sorted(p.name for p in (tmp_path / "s" / "smoke").iterdir() if p.suffix == ".npz")
    assert files == ["checkpoint.npz", "ep001.npz", "ep002.npz"]
    for name in files:                            # one format: every file loads as a checkpoint
        checkpoint.load(tmp_path / "s" / "smoke" / name, expect_cfg=cfg)


def test_the_report_reads_the_committed_results_without_the_study_module(tmp_path):
    """results/study/*.json (written by earlier versions of the study) still make the report's tables; and the
    report does not import the study (the import cycle is gone)."""
    import pathlib
    import shutil
    import subprocess
    import sys
    code = "import sys, convngc.experiments.study_report; print('convngc.experiments.study' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    from convngc.experiments import study_report
    committed = next(p for p in pathlib.Path(__file__).resolve().parents if (p / "setup.py").is_file()) / "results" / "study"
    names = sorted(p.stem for p in committed.glob("*.json") if not p.stem.startswith("fixedpoint-"))
    assert len(names) >= 20
    for p in committed.glob("*.json"):
        shutil.copy(p, tmp_path)
    recs = {n: r for n, r in study_report._load(str(tmp_path)).items() if not n.startswith("fixedpoint-")}
    rows = {line.split(" | ")[0].lstrip("| ") for group in ("steps", "open", "long")
            for line in study_report.table(recs, group).splitlines()[2:]}
    assert rows == {n for n in names if recs[n]["experiment"]["group"] in ("steps", "open", "long")} and rows
