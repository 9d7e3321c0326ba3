"""The first run on a fresh machine: `make run` / `make test` with nothing but Python 3 and make (issue 10).

`make -n` prints what a target would run without running it, so these checks cost a fraction of a second.
"""
import json
import os
import shutil
import subprocess

import pytest

from helpers import REPO


def _make_n(tmp_path, target, **env):
    if shutil.which("make") is None:
        pytest.fail("make is not installed; the README's two commands need it")
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    e.update(env)
    r = subprocess.run(["make", "-n", target], cwd=tmp_path, env=e, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _notes(out):
    return [ln for ln in out.splitlines() if "convngc: Python is" in ln]


@pytest.mark.parametrize("target", ["test", "run"])
def test_make_creates_and_uses_a_project_virtualenv(tmp_path, target):
    """No PYTHON, no active virtualenv: nothing goes into the system Python (which may be "externally
    managed"); a .venv/ is made on first use and every command runs its interpreter."""
    out = _make_n(tmp_path, target)
    assert "python3 -m venv .venv" in out
    assert ".venv/bin/python -m pip install" in out
    assert (".venv/bin/python -m pytest -q tests" if target == "test" else ".venv/bin/python -m convngc.cli run") in out
    assert "python3 -m pip" not in out
    notes = _notes(out)
    assert len(notes) == 1 and ".venv/" in notes[0], out


def test_make_does_not_recreate_an_existing_virtualenv(tmp_path):
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    out = _make_n(tmp_path, "test")
    assert "-m venv" not in out and ".venv/bin/python -m pytest" in out


def test_make_uses_the_python_it_is_given(tmp_path):
    out = _make_n(tmp_path, "test", PYTHON="/opt/py/bin/python")
    assert "-m venv" not in out and "/opt/py/bin/python -m pytest -q tests" in out
    assert len(_notes(out)) == 1 and "/opt/py/bin/python" in _notes(out)[0]


def test_make_uses_the_active_virtualenv(tmp_path):
    out = _make_n(tmp_path, "run", VIRTUAL_ENV="/opt/venv")
    assert "-m venv" not in out and "/opt/venv/bin/python -m convngc.cli run" in out
    assert len(_notes(out)) == 1 and "/opt/venv" in _notes(out)[0]


def test_make_test_installs_the_cpu_build_of_pytorch(tmp_path):
    """The baselines' tests run on the CPU: `make test` installs the pinned CPU wheel (from PyTorch's CPU index,
    whose +cpu version ranks above PyPI's CUDA build of the same version) before the extras, and keeps a PyTorch
    that is already installed; BASELINES=0 installs neither."""
    out = _make_n(tmp_path, "test")
    lines = out.splitlines()
    torch = [i for i, ln in enumerate(lines) if '"torch==' in ln]
    extras = [i for i, ln in enumerate(lines) if '-e ".[dev,baselines]"' in ln]
    assert len(torch) == 1 and extras and torch[0] < extras[0], out
    assert lines[torch[0]].startswith('.venv/bin/python -c "import torch" 2>/dev/null || ')
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines[torch[0]]
    out = _make_n(tmp_path, "test", BASELINES="0")
    assert "torch" not in out and "baselines" not in out


def test_make_test_fast_runs_the_reference_ring_and_the_conformance_suite(tmp_path):
    """`make test-fast` (under a minute): the reference ring and every backend through the conformance suite,
    leaving out what is marked slow; `make test` still runs every ring."""
    out = _make_n(tmp_path, "test-fast")
    assert '.venv/bin/python -m pytest -q tests/ref tests/conformance -m "not slow"' in out
    assert ".venv/bin/python -m pytest -q tests\n" in _make_n(tmp_path, "test")


def test_every_test_file_lives_in_a_ring():
    """tests/ref (the reference against independent math), tests/cpu and tests/cuda (each backend against the
    reference), tests/conformance (every backend's shared contract), tests/app (what a user touches); shared
    code in tests/helpers.py, tests/tolerances.py and tests/conftest.py, nowhere else."""
    rings = {"ref", "cpu", "cuda", "conformance", "app"}
    files = sorted((REPO / "tests").rglob("test_*.py"))
    assert len(files) > 30
    outside = [str(f.relative_to(REPO)) for f in files if f.parent.parent != REPO / "tests" or f.parent.name not in rings]
    assert not outside, "test files outside the rings %s: %s" % (sorted(rings), outside)


def test_ci_runs_exactly_the_readme_test_command():
    ci = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    assert ci == ["make test"]
    assert "make test" in (REPO / "README.md").read_text()


def test_compile_check_prints_one_line_when_all_is_well(monkeypatch, capsys):
    """`make test` starts with the kernel compile check: one line when the build matches kernels/resources.json,
    the whole table (and what differs) only on a mismatch."""
    from ngc_cuda import compile_check as cc
    from ngc_cuda._load import kernel_dir
    committed = json.loads((kernel_dir() / "resources.json").read_text())
    rows = [dict(r) for r in committed["kernels"]]
    monkeypatch.setattr(cc, "nvrtc_backend", lambda: (None, None, committed["nvrtc"]))
    monkeypatch.setattr(cc, "check_all", lambda archs, files=None: ([r for r in rows if r["arch"] in archs], []))
    assert cc.main(["--check"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1 and "up to date" in out, out
    rows[0]["registers"] += 1
    assert cc.main(["--check"]) == 1
    cap = capsys.readouterr()
    assert "| file |" in cap.out and "STALE" in cap.err
