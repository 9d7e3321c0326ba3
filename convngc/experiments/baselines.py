"""The baselines the reproduction places Conv-NGC among, behind one small interface (fit, output):

  FCNGCModel        the paper's fully-connected NGC (ngc_ref/fc.py; NumPy whatever the --backend)
  ResidualConvNGC   residual Conv-NGC (Appendix C): ngc_cpu/residual.py (Numba, the default when installed) or
                    the NumPy reference ngc_ref/residual.py (backend="numpy"); no CUDA kernel
  ClassicalDenoiser total variation and non-local means (scikit-image), BM3D (the `bm3d` package, optional)

Conv-AE and Conv-DAE live in convngc/experiments/autoencoder.py (PyTorch, optional). Every model takes and returns float
NCHW arrays in [0, 1] (denoising inputs are x + N(0, 0.1), not clipped); metrics are computed by the caller
with convngc.metrics, on outputs clipped to [0, 1] and scaled to [0, 255].
"""
import copy
import time

import numpy as np

from ngc_ref import fc, model as ref_model, residual
from ngc_ref.config import Config

from .. import metrics
from ..train import NOISE_STD, batches

__all__ = ["FCNGCModel", "ResidualConvNGC", "RESIDUAL_BACKENDS", "residual_backend", "ClassicalDenoiser", "CLASSICAL",
           "bm3d_available"]


class _SettlingModel:
    """fit/output for a settle-and-learn model written as module functions (fc, residual)."""

    def fit(self, train_x, val_x, epochs, batch_size=500, log=print, state_path=None, keep_best=False):
        """Algorithm 1 + 2 over minibatches; after each epoch the validation reconstruction MSE. state_path: a
        file the training state is kept in after every epoch (partial.py); a state found there for this
        training is continued, bit-identically. keep_best: end with the parameters of the epoch with the lowest
        validation MSE (history["best_epoch"], 1-based), as the Conv-NGC recipe does, instead of the last."""
        from . import partial
        history = {"train_energy": [], "val_mse": [], "epoch_seconds": []}
        order_rng = np.random.default_rng([self.seed, 2])
        want = partial.key(self.name, self.seed, epochs, batch_size, train_x, cfg=repr(self.cfg),
                           backend=getattr(self, "backend", "numpy"), dtype=np.dtype(self.dtype).name,
                           **({"keep_best": True} if keep_best else {}))
        start, self.resumed_from, best = 0, 0, None
        st = partial.load(state_path, want)
        if st is not None:
            self.params, self.opt_state, history, start = st["params"], st["opt_state"], st["history"], st["epoch"]
            self.rng.bit_generator.state, order_rng.bit_generator.state = st["rng"], st["order_rng"]
            best = st.get("best")
            self.resumed_from = start
            log("  resumed after epoch %d/%d (%s)" % (start, epochs, state_path))
        for epoch in range(start, epochs):
            t0, energies = time.time(), []
            for idx in batches(len(train_x), batch_size, order_rng):
                energies.append(self.learn(train_x[idx]))
            val = metrics.mse(self.output(val_x, seed=self.seed), val_x) if len(val_x) else float("nan")
            history["train_energy"].append(float(np.mean(energies)))
            history["val_mse"].append(float(val))
            history["epoch_seconds"].append(time.time() - t0)
            log("  epoch %d/%d: train energy %.4g per image, validation reconstruction MSE %.4g (0-255 scale), "
                "%.1fs" % (epoch + 1, epochs, history["train_energy"][-1], val, history["epoch_seconds"][-1]))
            if keep_best and np.isfinite(val) and (best is None or val < best[0]):
                best = (float(val), epoch + 1, copy.deepcopy(self.params))
            if state_path is not None and epoch + 1 < epochs:
                partial.save(state_path, want, {"epoch": epoch + 1, "history": history, "params": self.params,
                                                "opt_state": self.opt_state, "rng": self.rng.bit_generator.state,
                                                "order_rng": order_rng.bit_generator.state, "best": best})
        if keep_best and best is not None:
            self.params, history["best_epoch"] = best[2], best[1]
        return history

    def learn(self, x):
        res = self._settle(x, "always", self.rng)
        self.mod.step(self.params, self.mod.filter_updates(res, self.params, self.cfg), self.opt_state, self.cfg)
        for key in ("W", "b"):
            for a in self.params[key][1:]:
                for arr in (a if isinstance(a, list) else [a]):
                    if not np.all(np.isfinite(arr)):
                        raise FloatingPointError("%s: parameters became NaN/Inf while learning" % self.name)
        return float(np.mean(res.energy[-1]))

    def output(self, x, clamp="always", seed=0, batch_size=500):
        """zbar^0 after T steps: clamp="always" reconstructs x, "first" denoises it (x is the noisy input).
        The random initial states of this call come from `seed` alone (as train.run_task does)."""
        rng = np.random.default_rng([seed, 1])
        outs = [self._settle(x[idx], clamp, rng).zbar[0] for idx in batches(len(x), batch_size)]
        return np.concatenate(outs).reshape(x.shape)


class FCNGCModel(_SettlingModel):
    """The paper's FC-NGC (Appendix B): ngc_ref.fc with Adam and the column-norm constraint."""
    name = "FC-NGC"
    mod = fc

    def __init__(self, cfg=None, seed=0, dtype=np.float32):
        self.cfg = cfg or fc.FCConfig()
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self.params = fc.init_params(self.cfg, self.rng, dtype)
        self.opt_state = fc.init_state(self.params)
        self.dtype = dtype

    def _settle(self, x, clamp, rng):
        x = np.asarray(x, self.dtype)
        return fc.settle(self.params, x, self.cfg, fc.draw_states(self.cfg, len(x), rng, self.dtype), clamp=clamp)

    @property
    def n_parameters(self):
        return fc.n_free_parameters(self.params)


RESIDUAL_BACKENDS = ("cpu", "numpy")


def residual_backend(name=None):
    """The backend that runs residual Conv-NGC for a requested one: "numpy" (the reference) stays "numpy"; any
    other ("cpu", "cuda", "cuda-emu": there is no CUDA kernel for the residual blocks) or None is "cpu" when
    Numba is installed, else "numpy"."""
    from .. import backends
    if name == "numpy":
        return "numpy"
    return "cpu" if backends.available("cpu") else "numpy"      # the registry says whether Numba is here


class ResidualConvNGC(_SettlingModel):
    """Residual Conv-NGC (Appendix C). backend "cpu": ngc_cpu.residual (Numba, all cores, the default when Numba
    is installed); "numpy": the reference ngc_ref.residual (about 15x slower). Both start from the same
    parameters and draws for a seed and differ only by rounding (tests/cpu/test_cpu_residual.py)."""
    name = "residual Conv-NGC"

    def __init__(self, cfg=None, seed=0, dtype=np.float32, backend=None):
        backend = residual_backend() if backend is None else backend
        if backend not in RESIDUAL_BACKENDS:
            raise ValueError("ResidualConvNGC: backend must be one of %s, got %r (residual_backend() maps the "
                             "others)" % (", ".join(RESIDUAL_BACKENDS), backend))
        if backend == "cpu":
            try:
                from ngc_cpu import residual as cpu_residual
            except ImportError as exc:
                from ..backends import BackendUnavailable
                raise BackendUnavailable("residual Conv-NGC backend 'cpu' needs Numba (pip install numba): %s"
                                         % exc) from None
            if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
                raise TypeError("ResidualConvNGC: backend 'cpu' computes in float32 or float64; got dtype %s"
                                % np.dtype(dtype))
            self.mod = cpu_residual
        else:
            self.mod = residual
        self.backend = backend
        self.cfg = cfg or residual.ResidualConfig(base=Config())
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self.params = residual.init_params(self.cfg, self.rng, dtype)
        self.opt_state = residual.init_state(self.params)
        self.dtype = dtype

    def _settle(self, x, clamp, rng):
        x = np.asarray(x, self.dtype)
        z_top = ref_model.draw_top(self.cfg.base, len(x), rng, self.dtype)
        return self.mod.settle(self.params, x, self.cfg, z_top, clamp=clamp)

    @property
    def n_parameters(self):
        return residual.n_filter_weights(self.params)


# ------------------------------------------------------------------------------------------------------------
# classical denoisers
# ------------------------------------------------------------------------------------------------------------
def bm3d_available():
    try:
        import bm3d  # noqa: F401
        return True
    except ImportError:
        return False


def _tv(img, weight):
    from skimage.restoration import denoise_tv_chambolle
    return denoise_tv_chambolle(img, weight=weight, channel_axis=-1)


def _nlm(img, h):
    from skimage.restoration import denoise_nl_means
    # 5x5 patches searched over 13x13 (scikit-image's recommended small-image setting); sigma = the known noise
    return denoise_nl_means(img, h=h, sigma=NOISE_STD, patch_size=5, patch_distance=6, fast_mode=True,
                            channel_axis=-1)


def _bm3d(img, sigma):
    import bm3d
    profile = bm3d.BM3DProfile()
    # nf = 0: the library's "conventional" white-noise BM3D (Dabov et al. 2007); its default mode estimates a
    # correlated-noise PSD, for the same result on white noise (within 3% MSE on 8 CIFAR-10 validation images)
    # at ~40x the time. One thread: its thread pool costs more than it saves on 32x32 images.
    profile.nf, profile.num_threads = 0, 1
    return bm3d.bm3d_rgb(img, sigma, profile=profile)


# name -> (function(image HWC float64, parameter), parameter name, validation grid)
CLASSICAL = {
    "tv": (_tv, "weight", (0.02, 0.04, 0.06, 0.08, 0.1, 0.14, 0.2)),
    "nlm": (_nlm, "h", (0.03, 0.05, 0.07, 0.09, 0.12, 0.15)),
    "bm3d": (_bm3d, "sigma", (0.06, 0.08, 0.1, 0.12, 0.15)),
}


class ClassicalDenoiser:
    """A classical denoiser with one parameter, tuned on validation images (never on the test images)."""

    def __init__(self, name, param=None):
        if name not in CLASSICAL:
            raise ValueError("unknown classical denoiser %r: choose one of %s" % (name, ", ".join(CLASSICAL)))
        if name == "bm3d" and not bm3d_available():
            raise ImportError("BM3D needs the optional `bm3d` package: pip install .[baselines] (or pip install bm3d)")
        self.name = name
        self.fn, self.param_name, self.grid = CLASSICAL[name]
        self.param = param

    def output(self, x_noisy, param=None):
        """Denoise every image of a (N, C, H, W) batch; channels go to the last axis for the libraries."""
        p = self.param if param is None else param
        if p is None:
            raise ValueError("%s: no parameter: call tune() on validation images first" % self.name)
        x = np.asarray(x_noisy, np.float64)
        out = np.stack([self.fn(img.transpose(1, 2, 0), p).transpose(2, 0, 1) for img in x])
        return out.astype(np.float32)

    def tune(self, val_clean, val_noisy, log=print):
        """Pick the grid value with the lowest validation MSE (0-255 scale, outputs clipped as for the models)."""
        scores = {p: metrics.mse(self.output(val_noisy, p), val_clean) for p in self.grid}
        self.param = min(scores, key=scores.get)
        log("  %s: %s = %g on %d validation images (validation MSE %s)"
            % (self.name, self.param_name, self.param, len(val_clean),
               ", ".join("%g: %.1f" % kv for kv in scores.items())))
        return {"param": self.param_name, "value": self.param, "val_mse": {str(k): v for k, v in scores.items()}}
