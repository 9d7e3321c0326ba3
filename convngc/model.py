"""ConvNGC: the user-facing model, one class for every backend.

    model = ConvNGC(Config())                        # the fastest backend here (convngc/backends.py), or backend=
                                                     # "numpy" (the reference), "cpu", "cuda", "cuda-emu"
    res = model.settle(x)                            # Algorithm 1 on a (B, 3, 32, 32) batch in [0, 1]
    res.energy[-1], res.zbar[0]                      # energy per image after T steps, the reconstruction
    model.learn(x)                                   # settle + Algorithm 2 (Adam by default)

The math lives in the backends: `ngc_ref` (NumPy, the ground truth), `ngc_cpu` (compiled, fast on the CPU)
and `ngc_cuda` (CUDA kernels). This
class only validates input, moves arrays, draws the random initial top state on the host (so every
backend starts from the same numbers) and keeps the optimiser state.
"""
import functools
import os
import warnings

import numpy as np

from ngc_ref import checks as ref_checks, model as ref_model, optim as ref_optim
from ngc_ref.config import Config

from .backends import BACKENDS, BackendUnavailable, default as default_backend, get as get_backend  # noqa: F401


class DivergenceError(FloatingPointError):
    """Settling or learning produced NaN/Inf."""


class InitialOverflow(DivergenceError):
    """The energy is NaN/Inf at step 0 of a settle, before any correction: the initial states or the parameters
    are out of range (an absurd mu_z, lr or w_std), not the dynamics; nothing in training can take it back."""


class TooLarge(ValueError):
    """A config (or a batch for it) whose arrays cannot fit this machine's memory: refused, with the estimate,
    before anything is allocated."""


def machine_memory(backend=None):
    """Bytes of memory the backend's arrays can use at most: the GPU's for "cuda", else the host's physical
    memory (or the cgroup's limit when lower). None when it cannot be told."""
    if backend == "cuda":
        try:
            import cupy
            return int(cupy.cuda.runtime.memGetInfo()[1])
        except Exception:
            return None
    return _host_memory()


@functools.lru_cache(maxsize=None)
def _host_memory():
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit) as f:
                v = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if v > 0 and (total is None or v < total):
            total = v
    return total


def memory_estimate(cfg, batch, dtype=np.float32):
    """A lower bound on the bytes a settle (and a learning step) of `batch` images needs: the parameters with
    their two Adam moments and their updates, and the states z, the predictions zbar and the errors e of every
    layer. Returns (bytes, {what: bytes}) with the largest parts named."""
    item = np.dtype(dtype).itemsize
    n_par = sum(int(np.prod(ref_checks.param_shape(cfg, k, l), dtype=object)) for k in ("W", "b")
                for l in range(1, cfg.L + 1)) * (2 if cfg.learn_E else 1)
    parts = {"the parameters, their Adam moments and updates": 4 * n_par * item}
    for l in range(cfg.L + 1):
        H, W = cfg.map_hw(l)
        parts["z, zbar, e of layer %d (%d maps of %dx%d)" % (l, cfg.layer_channels[l], H, W)] = \
            3 * int(batch) * cfg.layer_channels[l] * H * W * item
    return sum(parts.values()), parts


def _gib(n):
    return "%.3g GiB" % (n / 2.0 ** 30)


def check_memory(cfg, batch, backend=None, dtype=np.float32):
    """Raise TooLarge, with the estimate, when `batch` images of this config cannot fit in memory."""
    need, parts = memory_estimate(cfg, batch, dtype)
    have = machine_memory(backend)
    if have is not None and need > have:
        what, most = max(parts.items(), key=lambda kv: kv[1])
        where = "on the GPU" if backend == "cuda" else "of this machine"
        channels = ",".join(map(str, cfg.channels))
        if not batch:
            raise TooLarge("channels %s: the parameters, their Adam moments and updates need at least %s, more than "
                           "the %s of memory %s: use fewer channels" % (channels, _gib(need), _gib(have), where))
        raise TooLarge("channels %s with a batch of %d needs at least %s (%s alone: %s), more than the %s of "
                       "memory %s: use fewer channels or a smaller batch"
                       % (channels, batch, _gib(need), what, _gib(most), _gib(have), where))


def check_batch(x, cfg, what="x"):
    """Validate an image batch for the model: float array (B, C_0, H, W) matching the config, finite, pixels in
    [0, 1] (a noisy input a little outside). Returns x as an array. The check is ngc_ref.checks.check_image_batch,
    the one module of checks (it also returns the pixel range it measured)."""
    return ref_checks.check_image_batch(x, cfg, what)[0]


def _check_finite_params(params, where, fix):
    """DivergenceError naming the first parameter that holds NaN or Inf (one pass over each array; on a GPU one
    synchronisation for all of them)."""
    bad = ref_checks.first_nonfinite(ref_checks.named_params(params))
    if bad is not None:
        (key, l), a = bad
        raise DivergenceError("%s: parameter %s[%d] contains %s; %s"
                              % (where, key, l, ref_checks.nonfinite_kind(a), fix))


class ConvNGC:
    """A Conv-NGC model (Ororbia & Mali): parameters, optimiser state, and a backend that does the math."""

    def __init__(self, cfg=None, backend=None, seed=0, dtype=np.float32, params=None):
        if cfg is not None and not isinstance(cfg, Config):
            raise TypeError("ConvNGC(cfg=...): expected a Config (e.g. Config(T=60)), got %s %r"
                            % (type(cfg).__name__, cfg))
        self.cfg = cfg if cfg is not None else Config()
        if params is not None:                 # before any allocation: every layer and shape named
            # NaN/Inf is named below, as a DivergenceError
            ref_checks.check_params(params, self.cfg, where="ConvNGC(params=...)", finite=False)
            if self.cfg.learn_E and params.get("E") is None:
                raise ValueError("ConvNGC(params=...): the config has learn_E=True but params has no 'E' (the "
                                 "error filters E^l)")
        self.backend = get_backend(backend)                  # None: the default (backends.default)
        backend = self.backend.name
        self.dtype = np.dtype(dtype)
        check_memory(self.cfg, 0, backend, self.dtype)
        if backend == "cpu" and self.dtype not in (np.float32, np.float64):
            raise TypeError("backend 'cpu' computes in float32 or float64; got dtype %s" % self.dtype)
        if backend in ("cuda", "cuda-emu") and self.dtype != np.float32:
            raise TypeError("backend %r computes in float32 only; got dtype %s" % (backend, self.dtype))
        self.rng = np.random.default_rng(seed)
        host = params if params is not None else ref_model.init_params(self.cfg, self.rng, self.dtype)
        self.params = {k: None if v is None else [None if a is None else self.backend.to_device(a.astype(self.dtype))
                                                  for a in v] for k, v in host.items()}
        _check_finite_params(self.params, "ConvNGC(params=...)", "pass finite parameters")
        self.opt_state = self.backend.init_state(self.params)
        self.last_result = None                              # the SettleResult of the last learn() call

    # -- inference (Algorithm 1) ---------------------------------------------------------------
    def settle(self, x, T=None, clamp="always", z_top=None, noisy=False, pi0=1.0, momentum=0.0):
        """Run Algorithm 1 on a batch x (B, C, H, W) in [0, 1]; returns a SettleResult (arrays on the backend).
        `noisy=True` says x is a noisy denoising input (pixels may leave [0, 1]: no warning); pi0 weights
        its error e^0 in z^1's correction (precision-weighted denoising; 1 = Algorithm 1); momentum: the
        heavy-ball weight of each step (ngc_ref.model.heavy_ball; 0 = Algorithm 1)."""
        if clamp not in ("always", "first"):
            raise ValueError("clamp must be 'always' (reconstruction/training) or 'first' (denoising), got %r" % clamp)
        x, lo, hi = ref_checks.check_image_batch(x, self.cfg)      # shapes, dtype, NaN/Inf, range: one min, one max
        if clamp == "always" and not noisy and x.size and (lo < -1e-3 or hi > 1 + 1e-3):
            warnings.warn("ConvNGC.settle: the clamped input has values outside [0, 1] (range [%.3g, %.3g]); "
                          "clean images are expected here (a noisy denoising input is passed with noisy=True)"
                          % (lo, hi), stacklevel=2)
        check_memory(self.cfg, x.shape[0], self.backend.name, self.dtype)       # before allocating the states
        if z_top is None:
            z_top = ref_model.draw_top(self.cfg, x.shape[0], self.rng, self.dtype)
        # the parameters and z_top are checked once, by the backend's settle (ngc_ref.checks, as for every backend);
        # NaN/Inf that is already there is named here as such: only NaN/Inf born while settling is divergence
        try:
            with np.errstate(over="ignore", invalid="ignore"):      # divergence is reported below, by step
                res = self.backend.settle(self.params, self.backend.to_device(x.astype(self.dtype, copy=False)),
                                          self.cfg, self.backend.to_device(z_top), T=T, clamp=clamp, pi0=pi0,
                                          momentum=momentum)
        except ref_checks.NonFiniteError as exc:
            kind = ref_checks.nonfinite_kind(exc.array)
            if exc.key is None:
                raise ValueError("%s contains %s" % (exc.name, kind)) from None
            raise DivergenceError("ConvNGC.settle: parameter %s[%d] contains %s; the parameters were broken before "
                                  "settling (set by hand, or by an earlier failed update): reload a checkpoint"
                                  % (exc.key, exc.layer, kind)) from None
        energy = self.backend.to_host(res.energy)
        if not np.isfinite(energy).all():
            t = int(np.argmax(~np.isfinite(energy).all(axis=1)))
            kind = "NaN" if np.isnan(energy[t]).any() else "Inf"
            if t == 0:
                raise InitialOverflow(self._overflow_at_start(kind, z_top, energy.shape[0] - 1))
            raise DivergenceError("settling diverged: the energy became %s at step %d of %d (the states grew "
                                  "without bound from finite inputs and parameters); lower beta (now %g)"
                                  % (kind, t, energy.shape[0] - 1, self.cfg.beta))
        return res

    def _overflow_at_start(self, kind, z_top, T):
        """The message for an energy that is NaN/Inf at step 0: that is the initial states (the top state and
        the ancestral predictions from it), before any correction, so beta plays no part: name what is large."""
        cfg = self.cfg
        big = []
        top = float(np.max(np.abs(self.backend.to_host(z_top)))) if z_top.size else 0.0
        if top > 1e3:
            big.append("the initial top state z^L reaches |z^L| = %.3g (drawn from N(mu_z = %g, sigma_z = %g))"
                       % (top, cfg.mu_z, cfg.sigma_z))
        for key, name, why in (("W", "filters W", "they start at N(0, w_std = %g) and move by the learning rate "
                                "lr = %g" % (cfg.w_std, cfg.lr)),
                               ("b", "biases b", "they start at 0 and move by the learning rate lr = %g" % cfg.lr),
                               ("E", "error filters E", "learning rate lr = %g" % cfg.lr)):
            arrs = self.params.get(key)
            if not arrs:
                continue
            l, m = max(((l, float(np.max(np.abs(self.backend.to_host(a))))) for l, a in enumerate(arrs)
                        if a is not None and a.size), key=lambda lm: lm[1], default=(0, 0.0))
            if m > 1e3:
                big.append("the %s reach |%s^%d| = %.3g (%s)" % (name, key, l, m, why))
        cause = "; ".join(big) if big else ("the predictions of the ancestral pass grew too large for %s (no single "
                                            "value is large: the layers are wide or deep)" % self.dtype.name)
        return ("settling diverged: the energy became %s at step 0 of %d, before any state correction, so beta is "
                "not the cause: the initial states overflowed %s: %s" % (kind, T, self.dtype.name, cause))

    def reconstruct(self, x, T=None):
        """Reconstruction: z^0 clamped to x for all T steps; returns the output image (zbar^0, or z^0 with
        cfg.output = "z") on the host (B, C, H, W)."""
        return self.backend.to_host(ref_model.output_image(self.settle(x, T=T, clamp="always"), self.cfg))

    def denoise(self, x_noisy, T=None):
        """Denoising, by the reading cfg.denoise: z^0 = x_noisy, never corrected, with its error weighted by
        the precision cfg.pi0 in z^1's correction ("precision", the default) or not ("clamped", Algorithm 1),
        or z^0 = x_noisy at t = 1 only, then evolving by Eq. 2 ("free", Sec. 4). T: settling steps (default
        cfg.T_denoise, or cfg.T when that is 0), with the momentum cfg.momentum under the "precision" reading.
        Returns the output image (zbar^0, or z^0 with cfg.output = "z") on the host."""
        res = self.settle(x_noisy, T=self.cfg.denoise_T if T is None else T, clamp=ref_model.denoise_clamp(self.cfg),
                          noisy=True, pi0=self.cfg.denoise_pi0, momentum=self.cfg.denoise_momentum)
        return self.backend.to_host(ref_model.output_image(res, self.cfg))

    # -- learning (Algorithm 2) ----------------------------------------------------------------
    def learn(self, x, T=None):
        """Settle on x, then update the filters once. Returns the mean energy per image after settling."""
        res = self.last_result = self.settle(x, T=T, clamp="always")
        with np.errstate(over="ignore", invalid="ignore"):      # an overflow is reported below, by parameter
            deltas = self.backend.filter_updates(res, self.params, self.cfg)
            self.backend.step(self.params, deltas, self.opt_state, self.cfg)
        _check_finite_params(self.params, "learn", "the filter update overflowed: lower the learning rate "
                             "(lr, now %g)" % self.cfg.lr)
        return float(np.mean(self.backend.to_host(res.energy[-1])))

    # -- bookkeeping -----------------------------------------------------------------------------
    @property
    def n_filter_weights(self):
        return sum(int(np.prod(w.shape)) for w in self.params["W"][1:])

    def host_params(self):
        """A NumPy copy of the parameters ({"W": [None, ...], "b": [...], "E": [...] or None})."""
        return {k: None if v is None else [None if a is None else np.array(self.backend.to_host(a)) for a in v]
                for k, v in self.params.items()}

    def set_params(self, host):
        """Replace the parameters by a host copy ({"W": [None, ...], "b": [...], "E": [...] or None})."""
        self.params = {k: None if v is None else [None if a is None else self.backend.to_device(
            np.array(a, dtype=self.dtype)) for a in v] for k, v in host.items()}

    def reset_optimizer(self):
        """A fresh optimiser state (Adam's moments zero, its step count 0)."""
        self.opt_state = self.backend.init_state(self.params)

    def host_opt_state(self):
        st = self.opt_state
        conv = lambda d: {k: [None if a is None else np.array(self.backend.to_host(a)) for a in v] for k, v in d.items()}
        return {"t": int(st["t"]), "m": conv(st["m"]), "v": conv(st["v"])}

    def load_opt_state(self, st):
        conv = lambda d: {k: [None if a is None else self.backend.to_device(a.astype(self.dtype)) for a in v]
                          for k, v in d.items()}
        self.opt_state = {"t": int(st["t"]), "m": conv(st["m"]), "v": conv(st["v"])}
