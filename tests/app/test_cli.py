"""The command line as a hostile user meets it: run folders that cannot be lost or mixed, every option checked
before any work, data that does not fit the model, clear one-line errors (issue 10).

Every CLI run here is tiny (T = 2, a few dozen embedded patches, backend numpy) so the file stays fast.
"""
import errno
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convngc import checkpoint, cli, data, rundir, train
from convngc.model import ConvNGC

from helpers import REPO, TINY_TRAIN, cli_main, cli_train, deny_access, edit_header, one_line, set_meta

EVAL = ["--limit", "6", "--trials", "1", "--tasks", "reconstruction", "--no-progress"]


def _popen(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "convngc.cli", *map(str, args)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# ------------------------------------------------------------------------------------------------ nothing lost, nothing mixed
def test_two_trainings_on_one_out_exactly_one_proceeds(tmp_path):
    """Two processes started together with the same --out: one trains, the other stops with a clear error, and
    the folder holds one run only (its config.json and its checkpoint come from the same process)."""
    run = tmp_path / "run"
    procs = [_popen(["train", *TINY_TRAIN, "--seed", seed, "--out", run], tmp_path) for seed in (1, 2)]
    outs = [p.communicate(timeout=600) for p in procs]
    rcs = [p.returncode for p in procs]
    assert sorted(rcs) == [0, 2], (rcs, outs)
    loser = one_line(outs[rcs.index(2)][1])
    assert re.search(r"in use by another convngc process|already holds a run", loser), loser
    seed = (1, 2)[rcs.index(0)]
    assert json.loads((run / "config.json").read_text())["run"]["seed"] == seed
    assert checkpoint.load(run / "checkpoint.npz")[3]["seed"] == seed


def test_default_run_folders_are_unique_within_one_second(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20250101-000000")
    for _ in range(2):
        assert cli_main(["train", *TINY_TRAIN]) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(r.startswith("embedded-20250101-000000") for r in runs), runs


def test_ctrl_c_before_the_first_checkpoint_can_be_resumed(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    learn = ConvNGC.learn

    def interrupted(self, x, T=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(ConvNGC, "learn", interrupted)
    assert cli_main(["train", *TINY_TRAIN, "--out", run]) == 130
    err = one_line(capsys.readouterr().err)
    assert "intact" not in err and "--resume" in err and "epoch 0" in err, err
    assert not (run / "checkpoint.npz").exists()

    monkeypatch.setattr(ConvNGC, "learn", learn)
    assert cli_main(["train", "--resume", run, "--no-progress"]) == 0         # starts again from epoch 0
    assert checkpoint.load(run / "checkpoint.npz")[3]["epoch"] == 1
    assert json.loads((run / "config.json").read_text())["model"]["T"] == 2


def test_ctrl_c_after_a_checkpoint_names_it(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert cli_train(run) == 0

    def interrupted(self, x, T=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(ConvNGC, "learn", interrupted)
    assert cli_main(["train", "--resume", run, "--epochs", "2", "--no-progress"]) == 130
    err = one_line(capsys.readouterr().err)
    assert "epoch 1" in err and "intact" in err and "--resume" in err, err


def test_evaluate_records_its_checkpoint_and_data_and_never_mixes_runs(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli_train(a) == 0
    assert cli_train(b, "--seed", "2") == 0
    before = {p.name: p.read_bytes() for p in b.iterdir()}
    assert cli_main(["evaluate", a, "--out", b, *EVAL]) == 2
    assert "holds another run" in one_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in b.iterdir()} == before

    out = tmp_path / "eval-a"
    assert cli_main(["evaluate", a, "--out", out, *EVAL]) == 0
    m = json.loads((out / "metrics.json").read_text())
    ck = m["checkpoint"]                       # a run folder is evaluated at its best epoch (best.npz)
    assert ck["path"] == str((a / "best.npz").resolve()) and ck["epoch"] == 1
    assert ck["sha256"] == hashlib.sha256((a / "best.npz").read_bytes()).hexdigest()
    d = m["results"]["reconstruction"]["data"]
    assert (d["dataset"], d["split"], d["n_images"], d["limit"], d["seed"]) == ("embedded", "test", 6, 6, 0)


def test_resume_refuses_options_that_would_change_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_train(run) == 0
    before = (run / "checkpoint.npz").read_bytes()
    for extra, name in [(["--T", "50"], "--T"), (["--lr", "5"], "--lr"), (["--channels", "5,3"], "--channels"),
                        (["--dataset", "cifar10"], "--dataset"), (["--batch-size", "7"], "--batch-size"),
                        (["--set", "beta=0.2"], "beta"), (["--seed", "9"], "--seed"), (["--limit", "5"], "--limit")]:
        assert cli_main(["train", "--resume", run, "--epochs", "2", "--no-progress", *extra]) == 2, extra
        err = one_line(capsys.readouterr().err)
        assert name in err and "cannot change" in err, err
    assert (run / "checkpoint.npz").read_bytes() == before
    # the recorded value itself is no conflict, and --epochs is the option that legitimately changes
    assert cli_main(["train", "--resume", run, "--epochs", "2", "--T", "2", "--no-progress"]) == 0
    assert "epochs: 1 -> 2" in capsys.readouterr().out
    assert checkpoint.load(run / "checkpoint.npz")[3]["epoch"] == 2


def test_a_checkpoint_that_disagrees_with_config_json_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_train(run) == 0
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["beta"] = 0.3
    (run / "config.json").write_text(json.dumps(cfg))
    edited = (run / "config.json").read_bytes()
    assert cli_main(["evaluate", run, *EVAL]) == 2
    assert re.search(r"config\.json.*beta", one_line(capsys.readouterr().err))
    assert cli_main(["train", "--resume", run, "--epochs", "2", "--no-progress"]) == 2
    assert re.search(r"config\.json.*beta", one_line(capsys.readouterr().err))
    assert (run / "config.json").read_bytes() == edited


def test_init_starts_a_new_run_from_a_checkpoint_with_other_settling_options(tmp_path, capsys):
    """--init: a new run that starts from a checkpoint's filters and Adam state (the study continues a run past
    the stability edge with a smaller beta and a larger T). It records which checkpoint it started from, and
    refuses layers that differ and a combination with --resume."""
    src = tmp_path / "src"
    assert cli_train(src) == 0
    ck = src / "checkpoint.npz"
    cfg0, p0, o0, _ = checkpoint.load(ck)
    assert o0["t"] == 2                                          # 20 images, batch 10, one epoch
    new = tmp_path / "new"
    assert cli_main(["train", *TINY_TRAIN, "--init", ck, "--set", "beta=0.05", "--T", "4", "--out", new]) == 0
    out = capsys.readouterr().out
    assert "beta 0.1 -> 0.05" in out and "T 2 -> 4" in out
    rec = json.loads((new / "config.json").read_text())
    assert rec["model"]["beta"] == 0.05 and rec["model"]["T"] == 4
    assert rec["run"]["init"]["sha256"] == hashlib.sha256(ck.read_bytes()).hexdigest()
    cfg1, p1, o1, meta = checkpoint.load(new / "checkpoint.npz")
    assert o1["t"] == 4 and meta["epoch"] == 1                 # Adam's count went on from the checkpoint's
    # the loaded state is exactly the checkpoint's, whatever options change
    params, opt, info = cli._init_from(str(ck), cfg1, lambda s: None)
    for k in p0:
        for a, b in zip(p0[k] or [], params[k] or []):
            assert (a is None and b is None) or np.array_equal(a, b)
    assert opt["t"] == o0["t"] and info["epoch"] == 1
    # --fresh-optimizer: the checkpoint's filters with a fresh Adam state (what the beta schedule does at a step)
    fresh = tmp_path / "fresh"
    assert cli_main(["train", *TINY_TRAIN, "--init", ck, "--fresh-optimizer", "--out", fresh]) == 0
    _, pf, of, _ = checkpoint.load(fresh / "checkpoint.npz")
    assert of["t"] == 2 and json.loads((fresh / "config.json").read_text())["run"]["init"]["fresh_optimizer"]
    assert cli_main(["train", *TINY_TRAIN, "--fresh-optimizer", "--out", tmp_path / "z"]) == 2
    assert "--fresh-optimizer applies to --init" in one_line(capsys.readouterr().err)
    # layers that differ, a missing file, and --resume together with --init: one-line errors, exit 2
    for extra, pattern in [(["--init", ck, "--channels", "5,3", "--out", tmp_path / "x"], r"--init .*channels"),
                           (["--init", tmp_path / "nope.npz", "--out", tmp_path / "y"], r"--init .*no such"),
                           (["--init", ck, "--resume", new], r"--init and --resume")]:
        assert cli_main(["train", *TINY_TRAIN, *extra]) == 2, extra
        assert re.search(pattern, one_line(capsys.readouterr().err))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_resume_of_a_finished_run_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_train(run) == 0
    capsys.readouterr()
    assert cli_main(["train", "--resume", run, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "already complete" in out and "--epochs" in out and "training" not in out


def test_stale_temporary_files_are_removed_on_the_next_start(tmp_path):
    run = tmp_path / "run"
    assert cli_train(run) == 0
    stale = [run / ".checkpoint.npz.k3j_a9x2.tmp", run / ".history.json.abcdefgh.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    assert cli_main(["train", "--resume", run, "--epochs", "2", "--no-progress"]) == 0
    assert not [p for p in stale if p.exists()]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_files_respect_the_umask(tmp_path, umask, mode):
    run = tmp_path / "run"
    old = os.umask(umask)
    try:
        assert cli_train(run) == 0
    finally:
        os.umask(old)
    for f in ("config.json", "checkpoint.npz", "history.json", "training.png"):
        assert stat.S_IMODE((run / f).stat().st_mode) == mode, f


def test_history_json_is_strict_json(tmp_path):
    run = tmp_path / "run"
    assert cli_train(run, "--val-limit", "0") == 0                          # no validation: no number to record

    def refuse(token):
        raise AssertionError("not strict JSON: %s" % token)
    assert json.loads((run / "history.json").read_text(), parse_constant=refuse)["val_mse"] == [None]


# ------------------------------------------------------------------------------------------------ every option checked first
BAD = [
    (["train", "--batch-size", "0"], r"--batch-size: must be an integer >= 1, got '0'"),
    (["train", "--batch-size", "-3"], r"--batch-size: must be an integer >= 1"),
    (["train", "--limit", "0"], r"--limit: must be an integer >= 1"),
    (["train", "--epochs", "0"], r"--epochs: must be an integer >= 1"),
    (["train", "--spike", "1"], r"--spike: must be 0 \(off\) or a factor > 1, got '1'"),
    (["train", "--spike", "nan"], r"--spike: must be 0 \(off\) or a factor > 1"),
    (["train", "--T", "0"], r"--T: T must be an integer in \[1, 100000\]"),
    (["train", "--T", "-1"], r"--T: T must be an integer in \[1, 100000\]"),
    (["train", "--T", "2.5"], r"--T: T must be an integer in \[1, 100000\], got '2.5'"),
    (["train", "--seed", "-1"], r"--seed: must be an integer >= 0"),
    (["train", "--lr", "-1"], r"--lr: lr must be a finite number >= 0"),
    (["train", "--beta", "nan"], r"--beta: beta must be a finite number >= 0"),
    (["train", "--channels", "a,b,c"], r"--channels: .*comma-separated integers >= 1.*'a,b,c'"),
    (["train", "--channels", ","], r"--channels: .*comma-separated integers >= 1"),
    (["train", "--channels", "10"], r"--channels: .*at least two"),
    (["train", "--set", "T=abc"], r"--set: T must be an integer in \[1, 100000\], got 'abc'"),
    (["train", "--set", "beta=fast"], r"--set: beta must be a finite number >= 0, got 'fast'"),
    (["train", "--set", "pcn=maybe"], r"--set: pcn must be true or false, got 'maybe'"),
    (["train", "--set", "adam_b1=2"], r"--set: adam_b1 must be a number in \[0, 1\), got '2'"),
    (["train", "--set", "lam=-5"], r"--set: lam must be a finite number >= 0, got '-5'"),
    (["train", "--set", "max_kernel_norm=0"], r"--set: max_kernel_norm must be a finite number > 0, got '0'"),
    (["train", "--set", "leak=nan"], r"--set: leak must be a number in \[0, 1\], got 'nan'"),
    (["train", "--set", "mu_z=inf"], r"--set: mu_z must be a finite number, got 'inf'"),
    (["train", "--set", "bogus=1"], r"--set: unknown option 'bogus'"),
    (["train", "--set", "T"], r"--set: expected KEY=VALUE, got 'T'"),
    (["train", "--channels", "4,10,15,20,25,30,3"], r"--channels: config: image side 32 does not divide by stride\^L"),
    (["evaluate", "RUN", "--trials", "0"], r"--trials: must be an integer >= 1"),
    (["evaluate", "RUN", "--T", "0"], r"--T: T must be an integer in \[1, 100000\]"),
    (["evaluate", "RUN", "--limit", "0"], r"--limit: must be an integer >= 1"),
    (["run", "--trials", "0"], r"--trials: must be an integer >= 1"),
    (["run", "--set", "adam_b2=1"], r"--set: adam_b2 must be a number in \[0, 1\)"),
    # issue 19: one field given by its flag and by --set with two values (cases 4-5), empty paths (6-7), a huge T (11)
    (["train", "--set", "T=5", "--T", "7"], r"--T 7 and --set T=5 set T to two values \(7 and 5\): give it once"),
    (["train", "--set", "pcn=false", "--pcn"], r"--pcn and --set pcn=false set pcn to two values"),
    (["train", "--channels", "5,3", "--set", "channels=6,3"], r"--channels 5,3 and --set channels=6,3 set channels"),
    (["run", "--lr", "0.1", "--set", "lr=0.2"], r"--lr 0.1 and --set lr=0.2 set lr to two values"),
    (["train", "--data-dir", ""], r"--data-dir: must be a path, got an empty string ''"),
    (["train", "--out", ""], r"--out: must be a path, got an empty string ''"),
    (["run", "--out", " "], r"--out: must be a path, got an empty string ' '"),
    (["train", "--resume", ""], r"--resume: must be a path, got an empty string"),
    (["train", "--init", ""], r"--init: must be a path, got an empty string"),
    (["evaluate", ""], r"checkpoint: must be a path, got an empty string"),
    (["evaluate", "RUN", "--out", ""], r"--out: must be a path, got an empty string"),
    (["evaluate", "RUN", "--data-dir", ""], r"--data-dir: must be a path, got an empty string"),
    (["train", "--T", "100000000000000000000"], r"--T: T must be an integer in \[1, 100000\], got '1000000"),
    (["train", "--set", "T=100001"], r"--set: T must be an integer in \[1, 100000\], got '100001'"),
    (["evaluate", "RUN", "--T", "1e20"], r"--T: T must be an integer in \[1, 100000\]"),
]


@pytest.mark.parametrize("argv,pattern", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_option_values_exit_2_before_any_work(tmp_path, monkeypatch, capsys, argv, pattern):
    def no_work(*a, **k):
        raise AssertionError("work started before the options were checked")
    monkeypatch.setattr(data, "load_dataset", no_work)
    monkeypatch.setattr(train, "load_model", no_work)
    out = ["--out", tmp_path / "r"] if argv[0] in ("train", "run") else []
    assert cli_main(argv + out) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err), err
    assert not (tmp_path / "r").exists()


def test_every_option_has_help_with_its_default():
    import argparse
    parser = cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    paper = {"--batch-size", "--lr", "--beta", "--gamma", "--T", "--trials", "--channels", "--leak", "--optimizer"}
    for name in ("train", "evaluate", "run"):
        for act in subs[name]._actions:
            if not act.option_strings or isinstance(act, argparse._HelpAction):
                continue
            opt = act.option_strings[-1]
            assert act.help and act.help != argparse.SUPPRESS, (name, opt)
            if act.nargs != 0:                                    # takes a value: say what happens without it
                assert "default" in act.help, (name, opt, act.help)
            if opt in paper:
                assert "paper" in act.help, (name, opt, act.help)


def test_cli_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "filter weights: 9225" in out and "T=60" in out


# ------------------------------------------------------------------------------------------------ one-line errors, nothing left
def test_out_pointing_at_a_file(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert cli_main(["train", *TINY_TRAIN, "--out", f]) == 2
    err = one_line(capsys.readouterr().err)
    assert str(f) in err and "not a folder" in err
    assert f.read_text() == "mine"


def test_out_in_a_read_only_folder(tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:          # root writes anywhere: make the folder refuse, as a read-only mount does
        real = os.mkdir

        def mkdir(p, *a, **k):
            if Path(os.path.abspath(p)).parent == ro:
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(p))
            return real(p, *a, **k)
        monkeypatch.setattr(os, "mkdir", mkdir)
    else:
        ro.chmod(0o500)
    try:
        assert cli_main(["train", *TINY_TRAIN, "--out", ro / "run"]) == 1
    finally:
        ro.chmod(0o700)
    err = one_line(capsys.readouterr().err)
    assert str(ro / "run") in err and "Permission denied" in err
    assert not (ro / "run").exists()


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert cli_train(run) == 0
    before = (run / "checkpoint.npz").read_bytes()

    def full(f, **arrays):
        f.write(b"the first bytes")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(checkpoint.np, "savez", full)
    assert cli_main(["train", "--resume", run, "--epochs", "2", "--no-progress"]) == 1
    err = one_line(capsys.readouterr().err)
    assert "No space left on device" in err and str(run / "checkpoint.npz") in err
    assert (run / "checkpoint.npz").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_data_error_leaves_no_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(["train", *TINY_TRAIN, "--dataset", "svhn", "--data-dir", tmp_path, "--out", run]) == 2
    assert "no supported files found" in capsys.readouterr().err
    assert not run.exists()


# ------------------------------------------------------------------------------------------------ data that does not fit
def test_mnist_with_the_default_model_becomes_color_mnist(tmp_path, shared_data, capsys):
    run = tmp_path / "run"
    assert cli_train(run, "--dataset", "mnist", "--data-dir", shared_data) == 0
    assert "Color-MNIST" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["run"]["dataset"] == "color-mnist"
    assert cli_main(["evaluate", run, "--tasks", "ood", "--ood-dataset", "mnist", "--limit", "4", "--trials", "1",
                  "--no-progress"]) == 0
    assert json.loads((run / "metrics.json").read_text())["results"]["ood"]["dataset"] == "color-mnist"
    assert cli_main(["run", "--dataset", "mnist", "--data-dir", shared_data, "--limit", "20", "--epochs", "1",
                  "--trials", "1", "--T", "2", "--no-progress", "--out", tmp_path / "main"]) == 0


def test_images_of_another_size_are_refused_with_the_fix(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            d = tmp_path / "data" / "cinic10" / split / cls
            d.mkdir(parents=True)
            for i in range(6):
                Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / f"{i}.png")
    run = tmp_path / "run"
    assert cli_main(["train", *TINY_TRAIN, "--dataset", "cinic10", "--data-dir", tmp_path / "data", "--out", run]) == 2
    err = one_line(capsys.readouterr().err)
    assert "64x64" in err and "32x32" in err and "--set image_hw=64,64" in err
    assert not run.exists()
    assert cli_train(run) == 0
    assert cli_main(["evaluate", run, "--tasks", "ood", "--ood-dataset", "cinic10", "--data-dir", tmp_path / "data",
                  "--limit", "4", "--trials", "1", "--no-progress"]) == 2
    assert "64x64" in one_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------------------ data_dir, warnings, progress
@pytest.fixture
def partial_cifar(tmp_path):
    """A CIFAR-10 copy with one training batch of 40 images (a partial copy: the loader warns)."""
    rng = np.random.default_rng(0)
    d = tmp_path / "d" / "cifar10"
    d.mkdir(parents=True)
    np.savez(d / "cifar10_train_batch1.npz", x=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
             y=rng.integers(0, 10, 40, dtype=np.uint8))
    np.savez(d / "cifar10_test.npz", x=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
             y=rng.integers(0, 10, 10, dtype=np.uint8))
    return tmp_path / "d"


def test_a_run_records_the_absolute_data_dir(tmp_path, partial_cifar, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["train", *TINY_TRAIN, "--dataset", "cifar10", "--data-dir", "d", "--out", "run"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["run"]["data_dir"] == str(partial_cifar)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli_main(["evaluate", tmp_path / "run", *EVAL]) == 0


def test_warnings_print_as_one_plain_line(tmp_path, partial_cifar, capsys):
    assert cli_main(["train", *TINY_TRAIN, "--dataset", "cifar10", "--data-dir", partial_cifar, "--out", tmp_path / "r"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"(?m)^warning: cifar10: only 1 of 5 training files", err), err
    assert "UserWarning" not in err and ".py:" not in err


def test_every_long_loop_shows_a_bar_with_the_running_mse(capsys):
    from ngc_ref.config import Config
    x = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    m = ConvNGC(Config(T=2))
    train.evaluate(m, x, "denoising", trials=1, batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert re.search(r"denoising.*mse=.*energy=", err), err
    train.fit(m, x, x, epochs=1, batch_size=2, progress=True, log=lambda s: None)
    err = capsys.readouterr().err
    assert re.search(r"validation.*mse=", err), err


# ------------------------------------------------------------------------------------------------ README
def test_readme_cli_examples_give_their_time_and_a_quick_try():
    text = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if "convngc train" in b)
    long = [ln for ln in block.splitlines() if re.match(r"convngc (train|evaluate|run)\b", ln)]
    assert long
    for ln in long:
        assert re.search(r"~\s*[\d.,]+\s*(s|min|h)\b", ln), "no expected time on: " + ln
    assert any("--limit" in ln for ln in long)


# ------------------------------------------------------------------------------------------------ issue 19: the last hostile cases
def test_an_option_given_twice_in_one_spelling_keeps_the_last_and_one_value_twice_is_no_conflict(tmp_path):
    """Cases 4-5, the other side: --T 5 --T 7 is argparse's last-wins (7); --T 4 --set T=4 agree (4)."""
    assert cli_train(tmp_path / "a", "--T", "5", "--T", "7") == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["model"]["T"] == 7
    assert cli_train(tmp_path / "b", "--T", "4", "--set", "T=4", "--pcn", "--set", "pcn=true") == 0
    model = json.loads((tmp_path / "b" / "config.json").read_text())["model"]
    assert model["T"] == 4 and model["pcn"] is True


def test_the_same_option_twice_on_resume_is_refused_before_the_run_is_touched(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_train(run) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert cli_main(["train", "--resume", run, "--epochs", "2", "--set", "T=5", "--T", "2", "--no-progress"]) == 2
    assert "--T 2 and --set T=5 set T to two values" in one_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_two_evaluations_started_together_each_claim_their_own_metrics_file(tmp_path):
    """Case 2: both picked the same free name and one metrics.json was lost (9 of 18 rounds). The name is now
    claimed atomically (O_EXCL): two claims before either writes get two names."""
    d = tmp_path / "claims"
    d.mkdir()
    assert [rundir.claim_free_name(d) for _ in range(3)] == ["", "-2", "-3"]
    assert sorted(p.name for p in d.iterdir()) == ["metrics-2.json", "metrics-3.json", "metrics.json"]
    (d / "metrics-5.json").write_text("an earlier evaluation")
    assert [rundir.claim_free_name(d) for _ in range(2)] == ["-4", "-6"]
    assert (d / "metrics-5.json").read_text() == "an earlier evaluation"

    run = tmp_path / "run"
    assert cli_train(run) == 0
    procs = [_popen(["evaluate", run, *EVAL, "--backend", "numpy", "--seed", seed], tmp_path) for seed in (1, 2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    names = sorted(p.name for p in run.glob("metrics*.json"))
    assert names == ["metrics-2.json", "metrics.json"], names
    seeds = {json.loads((run / n).read_text())["results"]["reconstruction"]["data"]["seed"] for n in names}
    assert seeds == {1, 2}


@pytest.mark.parametrize("name,argv", [
    ("best.npz", ["evaluate", "{run}", *EVAL]),                # evaluate RUN reads the run's best epoch
    ("checkpoint.npz", ["train", "--resume", "{run}", "--epochs", "2", "--no-progress"]),
    ("config.json", ["evaluate", "{run}", *EVAL]),
    ("config.json", ["train", "--resume", "{run}", "--epochs", "2", "--no-progress"]),
    (".lock", ["train", "--resume", "{run}", "--epochs", "2", "--no-progress"]),
])
def test_a_named_pipe_in_a_run_folder_is_refused_not_read(tmp_path, capsys, fifo, name, argv):
    """Case 3: RUN/checkpoint.npz replaced by a named pipe made `evaluate RUN` block forever on open."""
    run = tmp_path / "run"
    assert cli_train(run) == 0
    capsys.readouterr()
    fifo(run / name)
    assert cli_main([a.format(run=run) if isinstance(a, str) else a for a in argv]) == 2
    err = one_line(capsys.readouterr().err)
    assert re.search(re.escape(name) + r" is a named pipe, not a regular file", err), err


EDITED = [
    ("epoch -3 (case 10)", set_meta(epoch=-3), r"meta\.epoch must be an integer >= 0, got -3"),
    ("header a list (16)", lambda h: [h], r"header must be a JSON object, got list"),
    ("meta a list (17)", lambda h: dict(h, meta=[1]), r"meta must be a JSON object, got list"),
    ("opt_t abc (18)", lambda h: dict(h, opt_t="abc"), r"header\.opt_t .*got 'abc'"),
    ("rng_state (19)", set_meta(rng_state="garbage"), r"meta\.rng_state is not the state of a PCG64 generator"),
    ("epoch abc (20)", set_meta(epoch="abc"), r"meta\.epoch must be an integer >= 0, got 'abc'"),
    ("run_args.epochs", set_meta(run_args={"dataset": "embedded", "batch_size": 10, "epochs": "many"}),
     r"meta\.run_args\.epochs must be an integer >= 1, got 'many'"),
]


@pytest.mark.parametrize("edit,pattern", [e[1:] for e in EDITED], ids=[e[0] for e in EDITED])
@pytest.mark.parametrize("command", ["resume", "evaluate"])
def test_a_hand_edited_checkpoint_header_is_one_line_naming_the_field(tmp_path, capsys, command, edit, pattern):
    """Cases 10, 16-20: a header field of the wrong type or range gave a traceback (or, epoch -3, trained 6 epochs
    for --epochs 2); one schema check on load names the field, and nothing in the run changes."""
    run = tmp_path / "run"
    assert cli_train(run) == 0
    edit_header(run / "checkpoint.npz", edit)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    argv = (["train", "--resume", run, "--epochs", "2", "--no-progress"] if command == "resume"
            else ["evaluate", run / "checkpoint.npz", *EVAL, "--out", tmp_path / "ev"])
    assert cli_main(argv) == 2
    err = one_line(capsys.readouterr().err)
    assert re.search(r"checkpoint .*checkpoint\.npz.*" + pattern, err), err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name != ".lock"} == \
        {k: v for k, v in before.items() if k != ".lock"}


@pytest.mark.parametrize("edit,pattern", [
    (lambda c: c["run"].update(epochs="many"), r"run\.epochs must be an integer >= 1, got 'many'"),      # case 21
    (lambda c: c["run"].update(batch_size=None), r"run\.batch_size must be an integer >= 1, got None"),
    (lambda c: c["run"].pop("dataset"), r"run has no dataset"),
    (lambda c: c.update(run=[1]), r"run must be a JSON object, got list"),
    (lambda c: c.update(model="x"), r"\"model\" object"),
])
def test_a_hand_edited_config_json_is_one_line_naming_the_field(tmp_path, capsys, edit, pattern):
    """Case 21: config.json with run.epochs "many" and no checkpoint (a run stopped in its first epoch), then
    --resume: TypeError. config.json is checked once on load, naming the field."""
    run = tmp_path / "run"
    assert cli_train(run) == 0
    (run / "checkpoint.npz").unlink()
    (run / "best.npz").unlink()
    cfg = json.loads((run / "config.json").read_text())
    edit(cfg)
    (run / "config.json").write_text(json.dumps(cfg))
    assert cli_main(["train", "--resume", run, "--epochs", "2", "--no-progress"]) == 2
    err = one_line(capsys.readouterr().err)
    assert re.search(r"config\.json: unreadable \(.*" + pattern, err), err
    assert not (run / "checkpoint.npz").exists()


def test_a_model_too_big_for_memory_is_refused_with_the_estimate_before_any_work(tmp_path, monkeypatch, capsys):
    """Case 12: --channels 1000000,3 died with _ArrayMemoryError (95 GiB) after loading the data and making the
    folder; the memory a config needs is estimated first and the run refused with the estimate."""
    from convngc import model as M
    monkeypatch.setattr(M, "machine_memory", lambda backend="numpy": 16 * 2 ** 30)

    def no_work(*a, **k):
        raise AssertionError("data loaded before the memory check")
    monkeypatch.setattr(data, "load_dataset", no_work)
    assert cli_main(["train", *TINY_TRAIN, "--channels", "1000000,3", "--out", tmp_path / "r"]) == 2
    err = one_line(capsys.readouterr().err)
    assert re.search(r"--channels, --batch-size: channels 1000000,3 with a batch of 10 needs at least 29 GiB "
                     r"\(z, zbar, e of layer 1 \(1000000 maps of 16x16\) alone: 28.6 GiB\), more than the 16 GiB", err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra,cause", [
    (["--lr", "1e30"], r"the biases b reach \|b\^\d\| = 1e\+30 \(they start at 0 and move by the learning rate "
                       r"lr = 1e\+30\)"),
    (["--set", "mu_z=1e30"], r"the initial top state z\^L reaches \|z\^L\| = 1e\+30 \(drawn from N\(mu_z = 1e\+30"),
    (["--set", "w_std=1e30"], r"the filters W reach \|W\^\d\| = [\d.]+e\+30 \(they start at N\(0, w_std = 1e\+30\)"),
])
def test_an_overflow_at_step_0_is_not_blamed_on_beta(tmp_path, capsys, extra, cause):
    """Cases 23-25: 'the energy became Inf at step 0 ... lower beta': step 0 is before any correction."""
    assert cli_main(["train", *TINY_TRAIN, *extra, "--out", tmp_path / "r"]) == 2
    err = one_line(capsys.readouterr().err)
    assert "beta is not the cause" in err and "lower beta" not in err and re.search(cause, err), err


def test_a_cifar_npz_without_labels_trains(tmp_path):
    """Case 15: a CIFAR .npz without 'y' gave KeyError: 'y'; labels are not needed to train."""
    d = tmp_path / "d" / "cifar10"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for f in ("cifar10_train_batch1.npz", "cifar10_test.npz"):
        np.savez(d / f, x=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8))
    assert cli_train(tmp_path / "run", "--dataset", "cifar10", "--data-dir", tmp_path / "d") == 0
    assert cli_main(["evaluate", tmp_path / "run", *EVAL]) == 0


@pytest.mark.parametrize("what", ["folder", "file"])
def test_unreadable_data_is_a_read_failure_naming_the_file(tmp_path, monkeypatch, capsys, what):
    """Cases 27-28: a cifar10/ folder or a data file of another user (mode 000) gave 'cannot write ...npz:
    Permission denied'. It is a read that failed: exit 1, 'cannot read <file>'."""
    partial_cifar = tmp_path / "d"
    folder, f = partial_cifar / "cifar10", partial_cifar / "cifar10" / "cifar10_train_batch1.npz"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ["cifar10_train_batch%d.npz" % i for i in range(1, 6)] + ["cifar10_test.npz"]:
        np.savez(folder / name, x=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
                 y=rng.integers(0, 10, 10, dtype=np.uint8))
    deny_access(monkeypatch, **({"inside": folder} if what == "folder" else {"exact": f}))
    try:
        rc = cli_main(["train", *TINY_TRAIN, "--dataset", "cifar10", "--data-dir", partial_cifar, "--out", tmp_path / "r"])
    finally:
        folder.chmod(0o755)
        f.chmod(0o644)
    err = one_line(capsys.readouterr().err)
    assert rc == 1, err
    assert re.search(r"^error: cannot read \S*cifar10_train_batch1\.npz: Permission denied", err), err
    assert "write" not in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("stop,rc,word", [("Terminated", 143, "terminated"), ("KeyboardInterrupt", 130, "interrupted")])
def test_a_stop_names_the_checkpoint_epoch_that_is_on_disk(tmp_path, monkeypatch, capsys, stop, rc, word):
    """Cases 31-32: a SIGTERM (or Ctrl-C) during epoch 3 said 'checkpoint.npz (epoch 1) is intact' while the file
    held epoch 2: the epoch was recorded only after best.npz, history.json and the plot. Here the stop comes in
    the plot of epoch 2, after its checkpoint.npz is on disk."""
    from convngc.download import Terminated
    exc = {"Terminated": Terminated, "KeyboardInterrupt": KeyboardInterrupt}[stop]
    run = tmp_path / "run"
    real, calls = train.viz.plot_training, []

    def plot(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise exc()
        return real(*a, **k)
    monkeypatch.setattr(train.viz, "plot_training", plot)
    assert cli_main(["train", *TINY_TRAIN, "--epochs", "3", "--out", run]) == rc
    err = one_line(capsys.readouterr().err)
    assert checkpoint.load(run / "checkpoint.npz")[3]["epoch"] == 2
    assert err.startswith(word) and "checkpoint.npz (epoch 2) is intact" in err, err


HOOK = '''
import sys
class Block:
    """Stops the first import of NumPy until the parent sends its signal (the stdin pipe never gets a line)."""
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            sys.meta_path.remove(self)
            sys.stdout.write("importing numpy\\n")
            sys.stdout.flush()
            sys.stdin.readline()
        return None
sys.meta_path.insert(0, Block())
'''


@pytest.mark.parametrize("sig,rc,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path, sig, rc, word):
    """Case 22: Ctrl-C within the first ~0.1 s of `convngc train` (while NumPy & co. import) gave a
    KeyboardInterrupt traceback. The signal is sent while the import of NumPy is held, every time."""
    import importlib.metadata
    import signal as _signal
    ep = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "convngc"]
    assert ep and ep[0].value == "convngc.__main__:main", ep          # the command runs what is tested here
    (tmp_path / "hold_numpy.py").write_text(HOOK)
    p = subprocess.Popen([sys.executable, "-c", "import hold_numpy, runpy; runpy.run_module('convngc', "
                          "run_name='__main__', alter_sys=True)", "train", *TINY_TRAIN, "--out", tmp_path / "r"],
                         cwd=tmp_path, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=lambda: _signal.signal(_signal.SIGINT, _signal.SIG_DFL))
    try:
        import select
        ready = select.select([p.stdout], [], [], 120)[0]                # the child is held in its import
        assert ready and p.stdout.readline() == "importing numpy\n", p.poll()
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == rc and one_line(err) == "%s; nothing was written" % word, (p.returncode, err)
    assert not (tmp_path / "r").exists()


def test_progress_bars_only_on_a_terminal_unless_asked(tmp_path, capsys):
    """stderr redirected (here: captured, not a terminal): no bars by default, so a log holds none; --progress
    draws them anyway; --progress with --no-progress is refused."""
    from convngc import cli, progress

    class Tty:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty
    assert progress.wanted(None, Tty(True)) and not progress.wanted(None, Tty(False))
    assert progress.wanted(True, Tty(False)) and not progress.wanted(False, Tty(True))
    assert not progress.wanted(None, object())                # a stream without isatty
    train = ["train", "--dataset", "embedded", "--limit", "20", "--val-limit", "4", "--batch-size", "10", "--T", "2",
             "--epochs", "1", "--backend", "numpy"]
    assert cli.main(train + ["--out", str(tmp_path / "plain")]) == 0
    err = capsys.readouterr().err
    assert "epoch 1/" not in err and "batch/s" not in err and "s/batch" not in err
    assert cli.main(train + ["--progress", "--out", str(tmp_path / "bars")]) == 0
    err = capsys.readouterr().err
    assert "epoch 1/" in err and "batch" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(train + ["--progress", "--no-progress", "--out", str(tmp_path / "both")])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
