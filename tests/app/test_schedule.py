"""The beta schedule (convngc/schedule.py) and its measures (convngc/stability.py): a run that would cross the
settle's stability edge steps beta down instead, a blow-up is taken back to the restore point, resuming is
bit-identical, and the measures agree with dense linear algebra."""
import dataclasses
import json
import math

import numpy as np
import pytest

from convngc import checkpoint, cli, schedule, stability, train
from convngc.model import ConvNGC, DivergenceError
from ngc_ref import model as ref_model, ops
from ngc_ref.config import Config

from helpers import oscillating_settle

TINY = dict(channels=(2, 3, 3), image_hw=(16, 16))


def _images(n, seed=0, hw=(16, 16)):
    return np.random.default_rng(seed).random((n, 3) + hw).astype(np.float32)


def test_a_step_halves_beta_and_gamma_and_doubles_T():
    """The fixed point d = (gamma / beta) z and the integration time beta T stay what they were."""
    cfg = Config(beta=0.1, gamma=0.001, T=60, lr=3e-3)
    for k in range(4):
        c = schedule.stepped(cfg, k)
        assert c.gamma / c.beta == pytest.approx(cfg.gamma / cfg.beta, rel=1e-15)
        assert c.beta * c.T == pytest.approx(cfg.beta * cfg.T, rel=1e-15)
        assert (c.beta, c.T) == (cfg.beta / 2 ** k, cfg.T * 2 ** k) and c.lr == cfg.lr
    at = schedule.config_at(cfg, {"rung": 2, "lr_halvings": 1})
    assert (at.beta, at.T, at.lr) == (0.025, 240, 1.5e-3)


def test_gains_are_the_largest_eigenvalue_of_W_transpose_W():
    """sigma_max(W^l)^2 of the prediction operator, by power iteration, against the dense operator's SVD."""
    cfg = Config(**TINY)
    params = ref_model.init_params(cfg, np.random.default_rng(1), np.float64)
    got = stability.gains(params, cfg, iters=3000)      # power iteration: close top eigenvalues converge slowly
    for l in range(1, cfg.L + 1):
        hw, below = cfg.map_hw(l), cfg.map_hw(l - 1)
        n = params["W"][l].shape[0] * hw[0] * hw[1]
        cols = []
        for i in range(n):
            v = np.zeros(n)
            v[i] = 1
            cols.append(ops.conv2d_transpose(v.reshape((1, params["W"][l].shape[0]) + hw), params["W"][l],
                                             cfg.stride, below).ravel())
        want = np.linalg.svd(np.stack(cols, 1), compute_uv=False)[0] ** 2
        assert want * (1 - 1e-5) < got[l] <= want * (1 + 1e-12), l     # a Rayleigh quotient: never above


def test_settle_eigenvalue_matches_a_dense_eigendecomposition():
    """A linear step (leak 1) pushed past its edge: power iteration finds what np.linalg.eigvals finds."""
    params, cfg, x, want = oscillating_settle()
    got, _ = stability.settle_eigenvalue(params, cfg, x, T=0, iters=400)
    assert abs(got - want) < 1e-3 * abs(want)


def _fit(cfg, opts, epochs=3, run_dir=None, x=None, seed=0, **kw):
    x = _images(60, seed=3) if x is None else x
    model = ConvNGC(cfg, "cpu", seed=seed)
    sched = schedule.BetaSchedule(opts, cfg, x[40:], log=lambda *_: None)
    hist = train.fit(model, x[:40], x[40:], epochs, batch_size=10, run_dir=run_dir, progress=False, seed=seed,
                     log=lambda *_: None, schedule=sched, **kw)
    return model, sched, hist


def test_a_run_past_the_edge_steps_beta_down_instead():
    """beta 0.9 puts the synchronous step past its edge from the start (eigenvalue < -1): the "step" schedule
    halves beta until the measured eigenvalue is back above the edge, while "fixed" keeps the paper's beta
    and only measures; gamma / beta stays, T doubles, and the step is in the history."""
    cfg = Config(beta=0.9, gamma=0.009, T=4, lr=1e-3, w_std=0.5, **TINY)
    opts = schedule.ScheduleOptions(check_every=2, patience=1, max_steps=3)
    model, sched, hist = _fit(cfg, opts)
    first = hist["checks"][0]
    assert first["eigenvalue"] < -1 and first["beta"] == 0.9
    steps = [e for e in hist["schedule"] if e["reason"] == "edge"]
    assert steps and model.cfg.beta < 0.9
    assert model.cfg.gamma / model.cfg.beta == pytest.approx(0.01) and model.cfg.T == 4 * round(0.9 / model.cfg.beta)
    assert hist["checks"][-1]["eigenvalue"] > -1, hist["checks"]
    fixed, _, hist_f = _fit(cfg, schedule.ScheduleOptions(mode="fixed", check_every=2, patience=1))
    assert fixed.cfg == cfg and not [e for e in hist_f["schedule"] if e["reason"] == "edge"]
    assert all(c["beta"] == 0.9 for c in hist_f["checks"])


def test_a_blow_up_is_taken_back_to_the_restore_point(monkeypatch):
    """A diverged update (NaN) mid-run: the parameters go back to the restore point (the best probe MSE so
    far), beta steps down with a fresh Adam state, and the run ends finite; without a schedule it raises."""
    cfg = Config(T=3, **TINY)
    calls = {"n": 0}
    real = ConvNGC.learn

    def learn(self, x, T=None):
        calls["n"] += 1
        if calls["n"] == 7:
            self.params["W"][1] = self.params["W"][1] * np.nan
            raise DivergenceError("planted")
        return real(self, x, T)
    monkeypatch.setattr(ConvNGC, "learn", learn)
    model, sched, hist = _fit(cfg, schedule.ScheduleOptions(check_every=2))
    ev = [e for e in hist["schedule"] if e["reason"] == "blow-up"]
    assert len(ev) == 1 and ev[0]["update"] == 7 and ev[0]["restored_update"] == 6
    at_edge = [c for c in hist["checks"] if c["update"] == 6][0]["eigenvalue"] < schedule.ScheduleOptions.edge
    assert (model.cfg.beta, model.cfg.lr) == ((cfg.beta / 2, cfg.lr) if at_edge else (cfg.beta, cfg.lr / 2))
    assert all(np.isfinite(w).all() for w in model.host_params()["W"][1:])
    assert all(np.isfinite(v) for v in hist["val_mse"])
    calls["n"] = 5                                          # its second update is the planted one
    with pytest.raises(DivergenceError):
        train.fit(ConvNGC(cfg, "cpu"), _images(20), _images(4), 1, batch_size=10, progress=False,
                  log=lambda *_: None)


@pytest.mark.parametrize("eigenvalue,steps_beta", [(-1.2, True), (-0.5, False)])
def test_an_energy_blow_up_restores_and_steps_what_went_unstable(monkeypatch, eigenvalue, steps_beta):
    """The training energy jumping `blowup` times above the rung's lowest is a blow-up too (before any NaN):
    the restore point comes back with a fresh Adam state; beta steps down when the last check found the settle
    at its edge, else (the learning step went unstable, not the settle) the Adam step halves."""
    monkeypatch.setattr(stability, "settle_eigenvalue", lambda *a, **k: (eigenvalue, [1.0]))
    cfg = Config(T=3, **TINY)
    sched = schedule.BetaSchedule(schedule.ScheduleOptions(check_every=1, patience=5), cfg, _images(4),
                                  log=lambda *_: None)
    model = ConvNGC(cfg, "cpu")
    sched.start(model)
    assert sched.after_update(model, 1, 10.0) is None
    keep = model.host_params()
    model.set_params({k: None if v is None else [None if a is None else a * 2 for a in v]
                      for k, v in keep.items()})
    model.learn(_images(2))
    ev = sched.after_update(model, 2, 31.0)
    assert ev["reason"] == "blow-up" and ev["restored_update"] == 1
    for a, b in zip(model.host_params()["W"][1:], keep["W"][1:]):
        np.testing.assert_array_equal(a, b)
    assert model.opt_state["t"] == 0
    assert (model.cfg.beta, model.cfg.lr) == ((cfg.beta / 2, cfg.lr) if steps_beta else (cfg.beta, cfg.lr / 2))


@pytest.mark.parametrize("eigenvalue", [-1.05, -0.5])
def test_a_spike_at_the_edge_is_taken_back_before_the_next_check(monkeypatch, eigenvalue):
    """One update whose energy is `spike` times the median of the rung's last `spike_window`, with the settle
    past its edge there, is a blow-up at once (seed 3 of CIFAR-10: energy 26 -> 80 -> 1008 within 6 updates,
    between two checks): the restore point comes back with a fresh Adam state and beta steps down. A spike
    with the settle inside its edge changes nothing, not even the model's random draws; below the factor, or
    with the guard off, nothing is measured."""
    measured = []
    monkeypatch.setattr(stability, "settle_eigenvalue", lambda *a, **k: measured.append(1) or (eigenvalue, [1.0]))
    cfg = Config(T=3, **TINY)
    opts = schedule.ScheduleOptions(check_every=50, spike=3.0, spike_window=5)
    sched = schedule.BetaSchedule(opts, cfg, _images(4), log=lambda *_: None)
    model = ConvNGC(cfg, "cpu")
    sched.start(model)
    keep = model.host_params()
    energies = [30.0, 28.0, 27.0, 26.0, 27.0, 25.0, 26.0 * 2.9]       # falling, then 2.9x: not yet a spike
    assert [sched.after_update(model, u, e) for u, e in enumerate(energies, 1)] == [None] * 7 and not measured
    model.learn(_images(2))                                          # the parameters move on
    moved, draws = model.host_params(), model.rng.bit_generator.state
    ev = sched.after_update(model, 8, 27.0 * 3.01)
    assert measured and sched.checks[-1]["spike"] and sched.checks[-1]["update"] == 8
    if eigenvalue > schedule.ScheduleOptions.edge:
        assert ev is None and sched.checks[-1]["probe_mse"] is None and model.rng.bit_generator.state == draws
        for a, b in zip(model.host_params()["W"][1:], moved["W"][1:]):
            np.testing.assert_array_equal(a, b)
        assert model.cfg == cfg and len(sched.recent) == 5
        return
    assert ev["reason"] == "blow-up" and "median" in ev["why"] and ev["restored_update"] is None
    for a, b in zip(model.host_params()["W"][1:], keep["W"][1:]):
        np.testing.assert_array_equal(a, b)
    assert model.opt_state["t"] == 0 and sched.checks[-1]["probe_mse"] > 0
    assert (model.cfg.beta, model.cfg.T, model.cfg.lr) == (cfg.beta / 2, cfg.T * 2, cfg.lr)
    assert sched.recent == [] and sched.best_update is None          # the spike's check is no restore point
    off = schedule.BetaSchedule(schedule.ScheduleOptions(check_every=50, spike=0), cfg, _images(4),
                                log=lambda *_: None)
    off.start(model)
    n = len(measured)
    assert [off.after_update(model, u, e) for u, e in enumerate(energies + [1000.0], 1)] == [None] * 8
    assert len(measured) == n


def test_a_spike_inside_the_edge_does_not_decide_a_later_blow_up(monkeypatch):
    """A regular check at the edge, then a spike whose own check is inside it, then a NaN: the blow-up steps
    beta as the regular check says, as it would without the guard."""
    eigs = iter([-1.0, -0.5])
    monkeypatch.setattr(stability, "settle_eigenvalue", lambda *a, **k: (next(eigs), [1.0]))
    cfg = Config(T=3, **TINY)
    sched = schedule.BetaSchedule(schedule.ScheduleOptions(check_every=6, patience=5, spike=3.0, spike_window=5),
                                  cfg, _images(4), log=lambda *_: None)
    model = ConvNGC(cfg, "cpu")
    sched.start(model)
    assert [sched.after_update(model, u, 10.0) for u in range(1, 7)] == [None] * 6    # the check at 6: edge
    assert sched.after_update(model, 7, 40.0) is None and sched.checks[-1]["spike"]     # the spike: inside
    ev = sched.after_update(model, 8, float("nan"))
    assert ev["reason"] == "blow-up" and (model.cfg.beta, model.cfg.lr) == (cfg.beta / 2, cfg.lr)


def test_a_run_recorded_before_the_spike_guard_resumes_without_it():
    """A run whose record has no `spike` ran without the guard: resuming keeps it off whatever the default is,
    so that it continues bit-identically; a recorded factor is kept as recorded."""
    old = {k: v for k, v in dataclasses.asdict(schedule.ScheduleOptions()).items() if k != "spike"}
    assert schedule.options_of_record(old).spike == 0.0
    assert schedule.options_of_record(dict(old, spike=2.5)).spike == 2.5


def test_on_the_last_rung_a_blow_up_halves_the_adam_step():
    cfg = Config(T=3, lr=1e-3, **TINY)
    sched = schedule.BetaSchedule(schedule.ScheduleOptions(check_every=1, max_steps=0), cfg, _images(4),
                                  log=lambda *_: None)
    model = ConvNGC(cfg, "cpu")
    sched.start(model)
    sched.after_update(model, 1, 1.0)
    ev = sched.after_update(model, 2, float("nan"))
    assert ev["reason"] == "blow-up" and model.cfg.beta == cfg.beta and model.cfg.lr == 5e-4


def test_a_resumed_scheduled_run_is_bit_identical(tmp_path):
    """Stopped after epoch 2 and resumed (the schedule's state and restore point come from the checkpoint):
    the filters after epoch 4 equal an uninterrupted run's to the last bit, steps included."""
    x = _images(60, seed=3)
    common = ["--dataset", "embedded", "--limit", "60", "--val-limit", "20", "--batch-size", "10", "--T", "4",
              "--beta", "0.6", "--set", "gamma=0.006", "--set", "w_std=0.5", "--channels", "2,3,3", "--check-every",
              "2", "--spike", "3", "--tune-limit", "4", "--no-progress"]
    assert cli.main(["train", *common, "--epochs", "4", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["train", *common, "--epochs", "2", "--out", str(tmp_path / "b")]) == 0
    assert cli.main(["train", "--resume", str(tmp_path / "b"), "--epochs", "4", "--no-progress"]) == 0
    ca, pa, oa, ma = checkpoint.load(tmp_path / "a" / "checkpoint.npz")
    cb, pb, ob, mb = checkpoint.load(tmp_path / "b" / "checkpoint.npz")
    assert ca == cb and ma["schedule"] == mb["schedule"] and ma["schedule"]["recent"]   # the spike guard's too
    for key in ("W", "b"):
        for a, b in zip(pa[key][1:], pb[key][1:]):
            np.testing.assert_array_equal(a, b)
    ha = json.loads((tmp_path / "a" / "history.json").read_text())
    hb = json.loads((tmp_path / "b" / "history.json").read_text())
    assert ha["schedule"] == hb["schedule"] and ha["val_mse"] == hb["val_mse"]
    assert ha["schedule"], "the case must step at least once"
    assert ca.beta < 0.6 and json.loads((tmp_path / "a" / "config.json").read_text())["model"]["beta"] == 0.6
    assert (tmp_path / "a" / "training.png").stat().st_size > 0
    restore = checkpoint.load_extra(tmp_path / "a" / "checkpoint.npz", "restore")
    assert restore is not None and restore["W"][1].shape == pa["W"][1].shape
    # evaluate reads the run with its stepped config (config.json records the starting one)
    assert cli.main(["evaluate", str(tmp_path / "a"), "--limit", "8", "--trials", "1", "--no-progress",
                     "--tasks", "reconstruction"]) == 0


def test_schedule_options_are_checked():
    for bad in (dict(mode="sometimes"), dict(check_every=0), dict(edge=-3.0), dict(edge=math.nan), dict(deep=-0.5),
                dict(blowup=1.0), dict(max_steps=-1), dict(spike=1.0), dict(spike=-2.0), dict(spike=math.inf),
                dict(spike_window=0)):
        with pytest.raises(ValueError, match="schedule"):
            schedule.ScheduleOptions(**bad)


def test_a_stalled_probe_is_taken_back(monkeypatch):
    """A probe MSE that stays `stall` times above the restore point's for `stall_checks` checks (learning that
    slowly goes uphill with the settle stable) restores the restore point and halves the Adam step."""
    monkeypatch.setattr(stability, "settle_eigenvalue", lambda *a, **k: (-0.4, [1.0]))
    probe = iter([10.0, 9.0, 12.0, 12.0])
    monkeypatch.setattr(schedule.metrics, "mse", lambda *a, **k: next(probe))
    cfg = Config(T=3, lr=1e-3, **TINY)
    sched = schedule.BetaSchedule(schedule.ScheduleOptions(check_every=1), cfg, _images(4), log=lambda *_: None)
    model = ConvNGC(cfg, "cpu")
    sched.start(model)
    events = [sched.after_update(model, u, 1.0) for u in range(1, 5)]
    assert events[:3] == [None, None, None]
    assert events[3]["reason"] == "blow-up" and events[3]["restored_update"] == 2 and "probe MSE" in events[3]["why"]
    assert (model.cfg.beta, model.cfg.lr) == (cfg.beta, 5e-4)


@pytest.mark.parametrize("earlier,replaced", [(1e9, True), (0.0, False)])
def test_the_restore_point_becomes_best_npz_only_when_it_validates_better(tmp_path, earlier, replaced):
    cfg = Config(T=3, **TINY)
    x = _images(12)
    model = ConvNGC(cfg, "cpu", seed=2)
    sched = schedule.BetaSchedule(schedule.ScheduleOptions(), cfg, x, log=lambda *_: None)
    sched.start(model)
    sched.best_update = 5
    history = {"train_energy": [1.0], "val_mse": [earlier], "epoch_seconds": [1.0]}
    train.keep_the_restore_point(str(tmp_path), model, x, 6, 0, history, sched, {}, lambda *_: None)
    assert (tmp_path / "best.npz").exists() == replaced
    if replaced:
        _, p, _, meta = checkpoint.load(tmp_path / "best.npz")
        assert meta["restore_point"]["update"] == 5 and meta["restore_point"]["val_mse"] < 1e9
        np.testing.assert_array_equal(p["W"][1], sched.best_params["W"][1])


def test_the_spike_guard_is_on_by_default_and_off_with_spike_0():
    """`convngc train` without --spike takes a spike at the edge back (the recipe whose five CIFAR-10 seeds all
    meet the paper); --spike 0 is the schedule without the guard; a run recorded with a factor keeps it."""
    from convngc import cli
    parse = cli.build_parser().parse_args
    assert cli._schedule_options(parse(["train"])).spike > 1
    assert cli._schedule_options(parse(["train", "--spike", "0"])).spike == 0
    recorded = dataclasses.asdict(cli._schedule_options(parse(["train"])))
    assert schedule.options_of_record(recorded) == schedule.ScheduleOptions()
