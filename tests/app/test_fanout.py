"""Fan-out (convngc/experiments/fanout.py): `convngc reproduce` on 2 local Ray workers writes the raw JSON the serial
run writes, bit for bit; a job that raises is reported and the others go on; a worker killed mid-job gets its job
run again; Ctrl-C keeps the finished rows and --resume skips them; bad --workers/--address are one-line errors."""
import json
import os
import re
import signal
import sys

import pytest

from convngc import cli
from convngc.experiments import fanout, reproduce

needs_ray = pytest.mark.skipif(not fanout.have_ray(), reason="Ray is not installed (pip install -e .[cluster]): this "
                               "check did NOT pass, it did not run")


def _measured(obj):
    """The record without its wall-clock measurements (every *seconds key): what must not depend on the workers."""
    if isinstance(obj, dict):
        return {k: _measured(v) for k, v in obj.items() if not k.endswith("seconds")}
    if isinstance(obj, list):
        return [_measured(v) for v in obj]
    return obj


def _raw(folder):
    return {f: json.loads((folder / "raw" / f).read_text()) for f in sorted(os.listdir(folder / "raw"))}


@needs_ray
@pytest.mark.slow
def test_two_ray_workers_write_the_raw_json_of_the_serial_run(tmp_path, shared_data):
    """Every kind of job: Conv-NGC on the cpu backend with its OOD row, FC-NGC (NumPy, BLAS), Conv-AE (PyTorch)
    and a classical denoiser, 2 trials each at the smoke scale; the seconds aside, the raw JSON is identical."""
    argv = ["reproduce", "--scale", "smoke", "--trials", "2", "--data-dir", str(shared_data), "--rows",
            "cifar10/conv-ngc", "cifar10->cinic10/conv-ngc", "cifar10/fc-ngc", "cifar10/conv-ae", "cifar10/tv"]
    if not reproduce._have_module("torch"):
        argv.remove("cifar10/conv-ae")
    assert cli.main(argv + ["--out", str(tmp_path / "serial"), "--workers", "1"]) == 0
    assert cli.main(argv + ["--out", str(tmp_path / "ray"), "--workers", "2"]) == 0
    serial, ray = _raw(tmp_path / "serial"), _raw(tmp_path / "ray")
    assert len(serial) == len(argv) - argv.index("--rows") - 1 and list(serial) == list(ray)
    for name in serial:
        assert _measured(serial[name]) == _measured(ray[name]), name
        assert [t["seed"] for t in ray[name]["trials"]] == [0, 1]
    assert sorted(os.listdir(tmp_path / "serial")) == sorted(os.listdir(tmp_path / "ray"))    # figures, tables


@needs_ray
@pytest.mark.slow
def test_the_study_sweep_on_two_ray_workers_writes_the_serial_json(tmp_path, shared_data, capsys):
    """`study run --group test` (two tiny experiments) as Ray tasks: the driver writes the JSON each returns, the
    same as the serial run's, and the run folders are where the serial run puts them."""
    from convngc.experiments import study
    names = [n for n, e in study.EXPERIMENTS.items() if e["group"] == "test"]
    assert len(names) == 2
    for workers in (1, 2):
        assert study.run_all(names, workers=workers, results=str(tmp_path / ("r%d" % workers)),
                             state=str(tmp_path / ("s%d" % workers)), log=lambda *_: None) == 0
    for name in names:
        serial, ray = (json.loads((tmp_path / d / (name + ".json")).read_text()) for d in ("r1", "r2"))
        assert _measured(serial) == _measured(ray) and len(ray["epochs"]) == 2, name
        assert (tmp_path / "s2" / name / "checkpoint.npz").is_file()
    assert study.main(["run", "--group", "test", "--workers", "1", "--address", "auto"]) == 2
    assert "--workers 1 runs the jobs in this process" in capsys.readouterr().err


# jobs for fan_out, pickled by value to the Ray workers (this test module is not importable there). No print as
# log's default: ray.shutdown leaves its own safe_print as builtins.print, and the original then does not pickle
def _square(x, log=None):
    return x * x


def _fails(x, log=None):
    raise ValueError("job %d fails" % x)


def _dies_once(marker, log=None):
    """Killed (kill -9) the first time it runs, mid-job; its rerun returns."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return "ran again"


def _mixed(kind, arg, log=None):
    return {"square": _square, "fails": _fails, "dies": _dies_once}[kind](arg)


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=needs_ray)])
def test_a_failing_job_is_reported_and_a_killed_worker_job_runs_again(tmp_path, workers):
    if workers > 1:
        import ray
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    jobs = [("a", ("square", 3)), ("b", ("fails", 1)), ("c", ("square", 4))]
    if workers > 1:                                   # in this process, kill -9 would take the test with it
        jobs.append(("d", ("dies", str(tmp_path / "killed-once"))))
    got = {key: (result, error) for key, result, error in fanout.fan_out(_mixed, jobs, workers, log=lambda s: None)}
    assert got["a"] == (9, None) and got["c"] == (16, None)
    assert got["b"][0] is None and isinstance(got["b"][1], ValueError) and "job 1 fails" in str(got["b"][1])
    if workers > 1:
        assert got["d"] == ("ran again", None) and (tmp_path / "killed-once").exists()


def test_without_ray_the_jobs_run_one_after_another_saying_so(monkeypatch):
    monkeypatch.setattr(fanout, "have_ray", lambda: False)
    lines = []
    got = list(fanout.fan_out(_square, [(k, (k,)) for k in range(3)], workers=2, log=lines.append))
    assert got == [(0, 0, None), (1, 1, None), (2, 4, None)]
    assert len(lines) == 1 and lines[0].startswith("Ray is not installed (pip install -e .[cluster])")


def _fake_part(model_name, dataset, rows, scale_cfg, seeds, trials, backend, data_dir, partial_dir=None, log=print):
    """run_part without data or training: a classical row's part, or an error / Ctrl-C for the model FAKE_BREAK."""
    if model_name == os.environ.get("FAKE_BREAK"):
        raise (KeyboardInterrupt if os.environ.get("FAKE_CTRL_C") else ValueError)("the %s part breaks" % model_name)
    metrics = {m: 1.0 for m in reproduce.METRICS}
    return {"trials": {r.id: [{"seed": k, "denoising": metrics, "eval_seconds": 0.0} for k in seeds] for r in rows},
            "histories": {}, "figures": {}, "tuning": {"param": "weight", "value": 0.1, "seconds": 0.0},
            "seconds": 0.0}


@pytest.mark.parametrize("ctrl_c", [False, True])
def test_a_failed_or_interrupted_job_keeps_the_finished_rows_and_resume_skips_them(tmp_path, monkeypatch, capsys,
                                                                                   ctrl_c):
    """Three jobs, the second to run breaks (the parts run longest first, as reproduce.run hands them): an error
    is reported by row and the third still runs; Ctrl-C keeps the first's row and runs nothing after it; --resume
    skips the finished rows."""
    monkeypatch.setattr(reproduce, "_have_dataset", lambda name, d: True)
    monkeypatch.setattr(reproduce, "_have_module", lambda name: True)
    ids = ["cifar10/tv", "cifar10/nlm", "cifar10/bm3d"]
    by_id = {r.id: r for r in reproduce.all_rows()}
    est = reproduce.estimate_seconds([by_id[i] for i in ids], "smoke", 2, per_job=True)
    first, broken, last = sorted(["tv", "nlm", "bm3d"], key=lambda m: -est[m, "cifar10"][0])
    monkeypatch.setenv("FAKE_BREAK", broken)
    if ctrl_c:
        monkeypatch.setenv("FAKE_CTRL_C", "1")
    out = tmp_path / "rep"
    argv = ["reproduce", "--scale", "smoke", "--trials", "2", "--workers", "1", "--out", str(out), "--rows", *ids]
    ran = []
    monkeypatch.setattr(reproduce, "run_part", lambda m, *a, **k: ran.append(m) or _fake_part(m, *a, **k))
    assert cli.main(argv) == (130 if ctrl_c else 1)
    assert ran == ([first, broken] if ctrl_c else [first, broken, last])
    err = capsys.readouterr().err
    if ctrl_c:
        assert "interrupted; the rows finished before it are in" in err
        assert os.listdir(out / "raw") == ["cifar10__%s.json" % first]
    else:                                            # the job after the failed one ran too
        assert re.search(re.escape("error: %s on CIFAR-10 failed (ValueError: the %s part breaks)"
                                   % (reproduce.NAMES[broken], broken)), err)
        assert sorted(os.listdir(out / "raw")) == sorted(["cifar10__%s.json" % first, "cifar10__%s.json" % last])
    monkeypatch.delenv("FAKE_CTRL_C", raising=False)
    ran.clear()
    assert cli.main(argv + ["--resume"]) == 1                       # it still breaks; the finished rows are kept
    assert ran == ([broken, last] if ctrl_c else [broken])
    assert "skipping cifar10/%s: finished in" % first in capsys.readouterr().out


@pytest.mark.parametrize("argv,pattern", [
    (["--workers", "0"], r"--workers: must be an integer >= 1"),
    (["--workers", "two"], r"--workers: must be an integer >= 1"),
    (["--address", "localhost"], r"--address: must be auto, ray://HOST:PORT or HOST:PORT, got 'localhost'"),
    (["--address", "ray://head:99999"], r"--address: must be auto, ray://HOST:PORT"),
])
def test_bad_workers_or_address_exit_2(argv, pattern, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", "--scale", "smoke", "--rows", "cifar10/tv", *argv])
    assert e.value.code == 2 and re.search(pattern, capsys.readouterr().err)


def test_address_with_one_worker_or_resume_without_out_is_one_line(capsys):
    assert cli.main(["reproduce", "--rows", "cifar10/tv", "--address", "auto", "--workers", "1"]) == 2
    assert cli.main(["reproduce", "--rows", "cifar10/tv", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--workers 1 runs the jobs in this process" in err[0]
    assert "--resume needs --out" in err[1]


_SIGTERM_CHILD = """
import sys, time
from convngc.download import Terminated, sigterm_raises
from convngc.experiments import fanout
try:
    with sigterm_raises():
        for _ in fanout.fan_out(time.sleep, [(k, (120,)) for k in range(2)], workers=2,
                                log=lambda s: print(s, flush=True)):
            pass
except Terminated:
    print("terminated", flush=True)
    sys.exit(143)
"""


@needs_ray
@pytest.mark.slow
def test_sigterm_on_the_driver_cancels_the_ray_jobs_through_the_commands_own_handler():
    """ray.init installs its own SIGTERM handler (a stack dump, then exit); fan_out gives SIGTERM back to
    Python's, so `convngc reproduce` stops as on Ctrl-C: its jobs cancelled, not waited for, exit 143."""
    import subprocess
    import time
    child = subprocess.Popen([sys.executable, "-c", _SIGTERM_CHILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        lines = []
        for line in child.stdout:                                   # Ray is up and both jobs are submitted
            lines.append(line)
            if line.startswith("Ray: 2 workers"):
                break
        assert lines and lines[-1].startswith("Ray: 2 workers"), "".join(lines)
        time.sleep(2)
        t0 = time.time()
        child.send_signal(signal.SIGTERM)
        rest = child.stdout.read()
        assert child.wait(timeout=100) == 143, rest
        assert "terminated" in rest and "SIGTERM received" not in rest, rest
        assert time.time() - t0 < 100                               # the 120 s jobs were not waited for
    finally:
        if child.poll() is None:
            child.kill()
