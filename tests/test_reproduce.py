"""`convngc reproduce` (convngc/reproduce.py): row selection, the shared noise, and the runner end to end on tiny
rows (a few images, 2 epochs, 2 trials): the files it writes and that its tables show the per-trial JSON's means."""
import json
import os
import re

import numpy as np
import pytest

from convngc import baselines, cli, reproduce, train
from convngc.model import ConvNGC
from ngc_ref.config import Config


def test_rows_are_unique_and_every_paper_number_has_a_row():
    rows = reproduce.all_rows()
    ids = [r.id for r in rows]
    assert len(ids) == len(set(ids))
    keys = {(r.paper_key, r.model) for r in rows}
    assert set(reproduce.PAPER) <= keys
    assert all(reproduce.SCALES[s]["train"].keys() >= set(reproduce.TRAINED) for s in reproduce.SCALES)


def test_conv_ngc_rows_use_the_documented_default_config():
    r = next(r for r in reproduce.all_rows() if r.id == "cifar10/conv-ngc")
    s = reproduce.row_setup(r, reproduce.SCALES["quick"], 5, "numpy")
    assert s["config"] == Config().to_dict() and s["seeds"] == [0, 1, 2, 3, 4]


def test_noise_is_the_draw_of_train_run_task():
    """Every model of a trial sees the noisy images Conv-NGC's evaluation makes (same seed, same numbers)."""
    x = np.random.default_rng(0).random((3, 3, 32, 32)).astype(np.float32)
    _, inp, _ = train.run_task(ConvNGC(Config(T=1)), x, "denoising", seed=7)
    np.testing.assert_array_equal(reproduce.noisy_inputs(x, 7), inp)
    assert not np.array_equal(reproduce.noisy_inputs(x, 8), inp)


def test_selection_skips_with_one_line_each(monkeypatch):
    monkeypatch.setattr(reproduce, "_have_dataset", lambda name, d: name != "svhn")
    monkeypatch.setattr(reproduce, "_have_module", lambda name: name != "torch")
    lines = []
    rows, skipped = reproduce.select_rows(["cifar10/*", "svhn/conv-ngc", "*->*/conv-ngc"], None, log=lines.append)
    ids = {r.id for r in rows}
    assert {"cifar10/conv-ngc", "cifar10/bm3d", "cifar10->cinic10/conv-ngc", "color-mnist->cifar10/conv-ngc"} <= ids
    assert not any(i.startswith("svhn") or "conv-ae" in i or "conv-dae" in i for i in ids)
    assert any("cifar10/conv-ae: PyTorch is not installed" in s for s in lines)
    assert any("svhn/conv-ngc: no SVHN data" in s for s in lines) and len(lines) == len(skipped)
    monkeypatch.setattr(reproduce, "_have_dataset", lambda name, d: True)       # with SVHN: the paper's own pairs
    rows, _ = reproduce.select_rows(["*->*/conv-ngc"], None, log=lambda s: None)
    assert {r.id for r in rows} == {"svhn->cifar10/conv-ngc", "svhn->cinic10/conv-ngc"}
    with pytest.raises(SystemExit, match="matches no row"):
        reproduce.select_rows(["cifar100/*"], None, log=lambda s: None)
    assert "cifar10/res-conv-ngc" not in {r.id for r in reproduce.select_rows(None, None, lambda s: None)[0]}


def _table_rows(path):
    """{(section, model, pair): [cells]} from a generated markdown table."""
    out, section = {}, None
    for line in open(path, encoding="utf-8"):
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("| ") and not line.startswith("| model"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out[(section, cells[0])] = cells
    return out


def _check_cell(cell, values, decimals):
    m = re.fullmatch(r"(-?[\d.]+) ± ([\d.]+)", cell)
    assert m, cell
    assert abs(float(m.group(1)) - np.mean(values)) <= 0.5 * 10 ** -decimals + 1e-12, (cell, values)
    assert abs(float(m.group(2)) - np.std(values)) <= 0.5 * 10 ** -decimals + 1e-12, (cell, values)


@pytest.mark.slow
def test_runner_end_to_end_on_tiny_rows(tmp_path, shared_data, monkeypatch):
    """Two trials of Conv-NGC (T cut to 4 to keep the test short; the rows' code path is unchanged) on CIFAR-10,
    its OOD row on the CINIC-10 sample, and total variation; then a second run adds non-local means."""
    monkeypatch.setattr(reproduce, "conv_ngc_config", lambda: Config(T=4))
    out = tmp_path / "results"
    rc = cli.main(["reproduce", "--scale", "smoke", "--trials", "2", "--backend", "numpy", "--data-dir",
                   str(shared_data), "--out", str(out), "--rows", "cifar10/conv-ngc", "cifar10->cinic10/conv-ngc",
                   "cifar10/tv"])
    assert rc == 0
    names = sorted(os.listdir(out))
    assert names == ["figure3-cifar10.png", "figure4-cifar10.png", "raw", "table1-2a-cifar10.md",
                     "table2b-ood.md", "training-cifar10-conv-ngc.png"]
    assert sorted(os.listdir(out / "raw")) == ["cifar10-to-cinic10__conv-ngc.json", "cifar10__conv-ngc.json",
                                               "cifar10__tv.json"]
    for png in ("figure3-cifar10.png", "figure4-cifar10.png", "training-cifar10-conv-ngc.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cifar = _table_rows(out / "table1-2a-cifar10.md")
    ood = _table_rows(out / "table2b-ood.md")
    checked = 0
    for f, section, table in (("cifar10__conv-ngc.json", "Reconstruction", cifar),
                              ("cifar10__conv-ngc.json", "Denoising (x + N(0, 0.1))", cifar),
                              ("cifar10__tv.json", "Denoising (x + N(0, 0.1))", cifar),
                              ("cifar10-to-cinic10__conv-ngc.json", "Out-of-distribution reconstruction", ood)):
        rec = json.loads((out / "raw" / f).read_text())
        assert len(rec["trials"]) == 2 and [t["seed"] for t in rec["trials"]] == [0, 1]
        task = {"Reconstruction": "reconstruction", "Out-of-distribution reconstruction": "ood"}.get(section,
                                                                                                 "denoising")
        cells = table[(section, reproduce.NAMES[rec["row"]["model"]])]
        # columns: model, [pair], MSE, paper, SSIM (Eq. 5), paper, SSIM (windowed), PSNR, paper, setup, seconds
        first = 2 if task == "ood" else 1
        ours = [cells[first], cells[first + 2], cells[first + 4], cells[first + 5]]
        for cell, metric in zip(ours, reproduce.METRICS):
            _check_cell(cell, [t[task][metric] for t in rec["trials"]], reproduce.DECIMALS[metric])
            checked += 1
        if rec["row"]["model"] == "conv-ngc":
            assert len(rec["trials"][0]["history"]["val_mse"]) == 2                      # 2 epochs
            assert rec["setup"]["config"]["T"] == 4 and rec["setup"]["backend"] == "numpy"
    assert checked == 16
    assert "6.3668 ± 1.2522" in cifar[("Reconstruction", "Conv-NGC")]                       # the paper's number beside
    assert "substitute; paper: SVHN -> CINIC-10" in ood[("Out-of-distribution reconstruction", "Conv-NGC")][1]
    tv = json.loads((out / "raw" / "cifar10__tv.json").read_text())
    assert tv["tuning"]["param"] == "weight" and tv["tuning"]["value"] in baselines.CLASSICAL["tv"][2]

    rc = cli.main(["reproduce", "--scale", "smoke", "--trials", "2", "--data-dir", str(shared_data),
                   "--out", str(out), "--rows", "cifar10/nlm"])
    assert rc == 0
    cifar = _table_rows(out / "table1-2a-cifar10.md")
    assert {k[1] for k in cifar if k[0].startswith("Denoising")} == {"Conv-NGC", "Total variation (Chambolle)",
                                                                     "Non-local means"}


def test_list_prints_rows_and_an_estimate(capsys, shared_data):
    assert cli.main(["reproduce", "--list", "--data-dir", str(shared_data)]) == 0
    text = capsys.readouterr().out
    assert "cifar10/conv-ngc" in text and "estimated time:" in text and "svhn/conv-ngc" in text
