"""The beta schedule: training that steps the settle's rate down at its stability edge instead of diverging.

Learning raises the filters' gain until one synchronous settling step is at its stability edge (the most
negative eigenvalue of its Jacobian reaches -1, `stability.settle_eigenvalue`). There the settle oscillates,
the filter updates come from states that have not settled, learning slows, and some hundreds of updates later
training blows up (docs/training.md). The fixed point of the settle, d^l = (gamma / beta) z^l, does not
depend on beta once gamma / beta is kept, so halving beta (with gamma halved and T doubled: the same
integration time beta T) computes the same model with twice the room, at twice the cost per update.
A fresh Adam state goes with it: the old one's second moments remember the large, noisy updates of the
oscillating settle and would keep the steps small for about 1 / (1 - beta_2) = 1,000 updates.

`BetaSchedule` does this during `train.fit`. Every `check_every` updates it measures, on fixed validation
images, the eigenvalue and the reconstruction MSE, and keeps the parameters with the lowest MSE so far (the
restore point). It acts when

  edge      `patience` checks of this rung have found the eigenvalue below `edge` (-0.95: at the edge; -1 is
            past it), or one check below `deep` (-1.2): beta / 2, gamma / 2, T x 2, a fresh Adam state, the
            restore point's parameters;
  blow-up   the training energy since the last check is `blowup` times its lowest in this rung, or NaN/Inf, or
            the probe MSE has stayed `stall` times above the restore point's for `stall_checks` checks:
            the restore point's parameters and a fresh Adam state, and then beta steps down if the last check
            found the settle at its edge, else the Adam step halves (the learning step itself, not the settle,
            went unstable: this is the second limit, docs/training.md). No run ends diverged.
  spike     (`spike` 3; 0: off) one update's training energy is `spike` times the median of the rung's
            last `spike_window` updates, and the settle's eigenvalue, measured there, is below `edge`: the
            settle crossed its edge between two checks. Taken back at once like a blow-up (beta steps down),
            not at the next check: such a blow-up otherwise runs on for up to `check_every` updates, and the
            large updates it makes stay in the filters (CIFAR-10 seed 3: energy 26 -> 1008 within 6 updates,
            the top layer's gain 5 -> 10 for the rest of the run). A spike with the settle inside its edge
            changes nothing (the window rules above see it); a guard that also took those back halved the
            Adam step of seed 0 for its whole run after a spike at update 41 (validation MSE 4.50, not 2.91).

Beta steps down at most `max_steps` times (beta0 / 8, T0 x 8). `mode="fixed"` keeps the given beta (the
paper's): it only measures, and takes blow-ups back with a halved Adam step. Every check and every action is
recorded in the run's history (`history["checks"]`, `history["schedule"]`) and drawn on training.png.
"""
import dataclasses
import math

import numpy as np

from . import metrics, stability
from .model import DivergenceError

MODES = ("step", "fixed")


@dataclasses.dataclass(frozen=True)
class ScheduleOptions:
    mode: str = "step"          # "step": beta halves at the edge; "fixed": the paper's beta throughout
    check_every: int = 50       # updates between two checks (eigenvalue + probe MSE)
    edge: float = -0.95         # the eigenvalue below which the settle is at its edge (-1: past it)
    patience: int = 4           # checks of a rung at the edge before beta steps down
    deep: float = -1.2          # an eigenvalue below this (well past the edge) steps down at once
    stall: float = 1.2          # a probe MSE this many times the restore point's, `stall_checks` checks in a row,
    stall_checks: int = 2       # is a blow-up in slow motion: taken back the same way
    max_steps: int = 3          # at most beta0 / 8 (and T0 x 8)
    blowup: float = 3.0         # a training energy this many times the rung's lowest is a blow-up
    spike: float = 3.0          # one update's energy this many times the median of the rung's last `spike_window`
    spike_window: int = 20      # updates is a blow-up taken back at once, before the next check (spike 0: off)
    probe: int = 100            # validation images for the probe MSE (the restore point's criterion)
    eig_images: int = 10        # validation images the eigenvalue is measured on (30 power iterations)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError("beta schedule must be one of %s, got %r" % (", ".join(MODES), self.mode))
        for name in ("check_every", "patience", "probe", "eig_images", "stall_checks", "spike_window"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError("schedule %s must be an integer >= 1, got %r" % (name, v))
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 0:
            raise ValueError("schedule max_steps must be an integer >= 0, got %r" % (self.max_steps,))
        if not (math.isfinite(self.edge) and -2 < self.edge < 0):
            raise ValueError("schedule edge must be an eigenvalue in (-2, 0), got %r" % (self.edge,))
        if not (math.isfinite(self.deep) and self.deep <= self.edge):
            raise ValueError("schedule deep must be an eigenvalue <= edge (%g), got %r" % (self.edge, self.deep))
        for name in ("blowup", "stall"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 1):
                raise ValueError("schedule %s must be a factor > 1, got %r" % (name, v))
        if not (math.isfinite(self.spike) and (self.spike == 0 or self.spike > 1)):
            raise ValueError("schedule spike must be 0 (off) or a factor > 1, got %r" % (self.spike,))


def options_of_record(recorded):
    """The ScheduleOptions a run recorded (run_args["beta_schedule"]). A run recorded before the spike guard
    existed ran without it: resuming it keeps it off, so it continues as it began."""
    return ScheduleOptions(**dict({"spike": 0.0}, **recorded))


def stepped(cfg, k):
    """The config of rung k: beta / 2^k, gamma / 2^k (gamma / beta kept), T x 2^k."""
    if k == 0:
        return cfg
    return dataclasses.replace(cfg, beta=cfg.beta / 2 ** k, gamma=cfg.gamma / 2 ** k, T=cfg.T * 2 ** k)


def config_at(cfg0, state):
    """The config a checkpoint with schedule state `state` was trained at: rung and Adam halvings of cfg0."""
    cfg = stepped(cfg0, int(state.get("rung", 0)))
    h = int(state.get("lr_halvings", 0))
    return dataclasses.replace(cfg, lr=cfg.lr / 2 ** h) if h else cfg


class BetaSchedule:
    """Watches training (call `after_update` after every model.learn) and steps beta down; see the module doc.

    cfg0: the run's starting config (rung 0); probe_x: validation images (the first `probe` give the probe
    MSE, the first `eig_images` the eigenvalue). state() / load_state() carry it through a checkpoint."""

    def __init__(self, opts, cfg0, probe_x, log=print):
        self.opts, self.cfg0, self.log = opts, cfg0, log
        self.probe_x = probe_x[:opts.probe]
        self.eig_x = probe_x[:opts.eig_images]
        self.rung, self.lr_halvings = 0, 0
        self.past_edge, self.stalled = 0, 0
        self.best_mse, self.best_update, self.best_params = math.inf, None, None
        self.window, self.rung_min, self.recent = [], math.inf, []
        self.checks, self.events = [], []

    def start(self, model):
        """Before the first update: without a restore point yet (a new run), the initial parameters are one."""
        if self.best_params is None:
            self.best_params = model.host_params()
        model.cfg = self.config()

    # -- what a checkpoint carries ------------------------------------------------------------------------
    def state(self):
        return {"options": dataclasses.asdict(self.opts), "cfg0": self.cfg0.to_dict(),
                "rung": self.rung, "lr_halvings": self.lr_halvings, "past_edge": self.past_edge,
                "stalled": self.stalled,
                "best_mse": None if not math.isfinite(self.best_mse) else self.best_mse,
                "best_update": self.best_update, "window": list(self.window),
                "rung_min": None if not math.isfinite(self.rung_min) else self.rung_min,
                "recent": list(self.recent)}

    def load_state(self, st, best_params):
        self.rung, self.lr_halvings = int(st["rung"]), int(st.get("lr_halvings", 0))
        self.past_edge, self.stalled = int(st["past_edge"]), int(st.get("stalled", 0))
        self.best_mse = math.inf if st["best_mse"] is None else float(st["best_mse"])
        self.best_update, self.best_params = st["best_update"], best_params
        self.window = [float(v) for v in st["window"]]
        self.rung_min = math.inf if st["rung_min"] is None else float(st["rung_min"])
        self.recent = [float(v) for v in st.get("recent", [])]

    def config(self):
        """The config training runs at now: rung `rung` of cfg0, with the Adam step halved after blow-ups on
        the last rung."""
        return config_at(self.cfg0, self.state())

    # -- the watch ----------------------------------------------------------------------------------------
    def after_update(self, model, update, energy):
        """Called after update number `update` (1-based, counted over the whole run) with its mean training
        energy (NaN/Inf when the update diverged). May change model.cfg, its parameters and Adam state."""
        if not math.isfinite(energy):
            return self._step(model, update, "blow-up", "the training energy became %s" % energy)
        if self.opts.spike and len(self.recent) >= self.opts.spike_window:
            typical = float(np.median(self.recent))
            if energy > self.opts.spike * typical and self._spike_at_edge(model, update, energy):
                return self._step(model, update, "blow-up", "one update's training energy %.3g per image, %.1f "
                                  "times the median of this rung's last %d (%.3g), with the settle at its edge"
                                  % (energy, energy / typical, len(self.recent), typical), at_edge=True)
        if self.opts.spike:
            self.recent = (self.recent + [float(energy)])[-self.opts.spike_window:]
        self.window.append(float(energy))
        if update % self.opts.check_every:
            return None
        mean = float(np.mean(self.window))
        self.window = []
        if self.rung_min < math.inf and mean > self.opts.blowup * self.rung_min:
            return self._step(model, update, "blow-up", "training energy %.3g per image, %.1f times this rung's "
                              "lowest (%.3g)" % (mean, mean / self.rung_min, self.rung_min))
        self.rung_min = min(self.rung_min, mean)
        try:
            mse, eig = self._check(model, update, mean)
        except DivergenceError as exc:
            return self._step(model, update, "blow-up", "the probe images' settle diverged (%s)" % exc)
        if mse < self.best_mse:
            self.best_mse, self.best_update, self.best_params = mse, update, model.host_params()
        if eig < self.opts.edge:
            self.past_edge += 1
        self.stalled = self.stalled + 1 if mse > self.opts.stall * self.best_mse else 0
        if self.stalled >= self.opts.stall_checks:
            return self._step(model, update, "blow-up", "the probe MSE has been above %g times the restore point's "
                              "(%.3f, update %d) for %d checks (now %.3f)" % (self.opts.stall, self.best_mse,
                                                                              self.best_update, self.stalled, mse))
        if self.opts.mode == "step" and self.rung < self.opts.max_steps:
            if self.past_edge >= self.opts.patience:
                return self._step(model, update, "edge", "%d checks of this rung found the settle's eigenvalue "
                                  "below %g (now %.3f)" % (self.past_edge, self.opts.edge, eig))
            if eig < self.opts.deep:
                return self._step(model, update, "edge", "the settle's eigenvalue is %.3f, well past the edge (-1)"
                                  % eig)
        return None

    def _check(self, model, update, mean):
        """Measure the probe MSE and the settle's eigenvalue now and record them in the history. Raises
        DivergenceError."""
        mse = metrics.mse(model.reconstruct(self.probe_x), self.probe_x) if len(self.probe_x) else mean
        eig = self._eigenvalue(model)
        self.checks.append({"update": update, "beta": model.cfg.beta, "T": model.cfg.T, "eigenvalue": eig,
                            "probe_mse": mse, "train_energy": mean,
                            "gains": stability.gains(model.host_params(), model.cfg)[1:]})
        return mse, eig

    def _eigenvalue(self, model):
        """The settle's most negative eigenvalue on the eig images (its own draws: model.rng is untouched)."""
        if not len(self.eig_x):
            return math.nan
        return stability.settle_eigenvalue(model.host_params(), model.cfg, self.eig_x, iters=30)[0]

    def _spike_at_edge(self, model, update, energy):
        """A spike: is the settle past its edge now (the guard's case: a blow-up that began between two
        checks)? The eigenvalue alone is measured first (its draws are its own, so a spike that is not at the
        edge leaves the run exactly as it would be without the guard: the window rules handle it); at the edge
        the probe MSE too. Either way the check is recorded, marked "spike" (never a restore point)."""
        eig = self._eigenvalue(model)
        at_edge = eig < self.opts.edge
        mse = None
        if at_edge and len(self.probe_x):
            try:
                mse = metrics.mse(model.reconstruct(self.probe_x), self.probe_x)
            except DivergenceError:
                mse = math.inf
        self.checks.append({"update": update, "beta": model.cfg.beta, "T": model.cfg.T, "eigenvalue": eig,
                            "probe_mse": mse, "train_energy": float(np.mean(self.window + [energy])),
                            "gains": stability.gains(model.host_params(), model.cfg)[1:], "spike": True})
        return at_edge

    def _at_edge(self):
        """Did the last regular check of this rung find the settle at its edge? (A spike's check is not one: a
        spike inside the edge must leave the run as it would be without the guard.)"""
        last = [c for c in self.checks if c.get("beta") == self.config().beta and not c.get("spike")]
        return bool(last) and last[-1].get("eigenvalue") is not None and last[-1]["eigenvalue"] < self.opts.edge

    def _step(self, model, update, reason, why, at_edge=None):
        """Take the restore point back with a fresh Adam state, and step beta down (an edge, or a blow-up with
        the settle at its edge: the last regular check's, or `at_edge` when given) or else halve the Adam step."""
        can_step = self.opts.mode == "step" and self.rung < self.opts.max_steps
        if reason == "edge" or (can_step and (self._at_edge() if at_edge is None else at_edge)):
            self.rung += 1
        else:                                   # a blow-up of the learning step (or no beta step left)
            self.lr_halvings += 1
        before = model.cfg
        model.cfg = self.config()
        if self.best_params is not None:
            model.set_params(self.best_params)
        model.reset_optimizer()
        self.past_edge, self.stalled, self.window, self.rung_min, self.recent = 0, 0, [], math.inf, []
        event = {"update": update, "reason": reason, "why": why, "beta": model.cfg.beta, "T": model.cfg.T,
                 "gamma": model.cfg.gamma, "lr": model.cfg.lr, "restored_update": self.best_update,
                 "restored_probe_mse": None if not math.isfinite(self.best_mse) else self.best_mse}
        self.events.append(event)
        what = ("beta %g -> %g, T %d -> %d, gamma %g -> %g" % (before.beta, model.cfg.beta, before.T, model.cfg.T,
                                                             before.gamma, model.cfg.gamma)
                if model.cfg.beta != before.beta else "the settle was not at its edge: Adam step %g -> %g"
                % (before.lr, model.cfg.lr))
        self.log("update %d: %s: %s; %s, a fresh Adam state, %s" % (
            update, reason, why, what, "the parameters of update %d (probe MSE %.3f)" % (self.best_update, self.best_mse)
            if self.best_update is not None else "the initial parameters" if self.best_params is not None
            else "the current parameters"))
        return event
