"""The study runner (convngc.study): its stability measure against a dense eigen-decomposition, and resuming."""
import json

import numpy as np
import pytest

from convngc import study
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
    pa = study.load_params(tmp_path / "sa" / "smoke" / "last.npz", cfg)
    pb = study.load_params(tmp_path / "sb" / "smoke" / "last.npz", cfg)
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
