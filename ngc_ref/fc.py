"""FC-NGC: the fully-connected neural generative coding baseline of the paper (Appendix B, "Neural Generative
Coding"), and with `pcn=True` the PCN of Whittington & Bogacz that the paper says it recovers.

The same equations as Conv-NGC (ngc_ref/model.py) with matrices in place of (de)convolutions:
    zbar^{l-1} = g^{l-1}( phi(z^l) W^l + b^{l-1} )                     (Eq. 1, fully connected)
    e^{l-1}    = z^{l-1} - zbar^{l-1},  e^L = 0
    d^l        = -e^l + e^{l-1} E^l,   E^l = (W^l)^T                   (Eq. 2; times phi'(z^l) with pcn=True)
    z^l       <- z^l + beta d^l - gamma z^l
    dW^l       = phi(z^l)^T e^{l-1},  db^{l-1} = sum_batch e^{l-1}       (Sec. 3.2, summed over the batch)

Layout: a batch of states is (B, n_l); W^l is stored as (n_l, n_{l-1}), row i = the weights by which unit i of
layer l predicts layer l-1 (the same orientation as Conv-NGC's W[i, j]).

The paper's configuration and how each open point is read, one line each:
  - five state layers = the image (3072 units) + four latent layers of 200: this is the layout that gives the
    paper's 738,072 free parameters: 200*3072 + 3*200*200 weights + 3072 + 3*200 prediction biases.
  - phi = leaky ReLU (slope from Config, 0.2); g = identity except g^0 = logistic sigmoid (Appendix B).
  - every latent state starts from N(0.5, 0.05) ("at the first step ... they were non-zero"), no ancestral pass.
  - T = 60, beta = 0.1 (Appendix B); the leak gamma is not given for NGC: Conv-NGC's Config.gamma is used.
  - W ~ N(0, 0.1), b = 0; Adam 1e-3 on -dW (descent, as for Conv-NGC), batch 500 (the runner's).
  - "columns of the synaptic matrices have L2 norm <= 1": the columns of the dictionary D = (W^l)^T in
    x ~ D phi(z), i.e. the weight vector of each latent unit, which is row i of the stored W^l.
  - no g'(.) factor at the sigmoid bottom: e^0 (E^1) is then exactly minus the gradient of the Bernoulli
    (cross-entropy) energy of z^0 given layer 1, the usual pairing for a sigmoid output (tests/ref/test_fc_ngc.py
    checks it by finite differences). The energy reported is Eq. 3's squared form, as for Conv-NGC.
  - denoising: z^0 is the noisy image at t = 1 only, then evolves with d^0 = -e^0 (as for Conv-NGC).
"""
from dataclasses import dataclass, asdict
import numpy as np

from .checks import check_clamp
from .config import Config
from .model import SettleResult, energy, phi, phi_prime, settle_steps  # noqa: F401  (SettleResult: fc.SettleResult too)
from .optim import _adam

__all__ = ["FCConfig", "init_params", "n_free_parameters", "predict", "predictions_and_errors", "corrections",
           "correct", "energy", "draw_states", "settle", "filter_updates", "init_state", "step", "project_rows",
           "flatten_images", "unflatten_images"]

_D = Config()       # defaults shared with Conv-NGC are read from its Config, not copied


@dataclass(frozen=True)
class FCConfig:
    hidden: tuple = (200, 200, 200, 200)   # latent layers, top -> bottom (as Config.channels)
    image_shape: tuple = (3, 32, 32)       # the bottom layer is the flattened image: 3072 units
    T: int = 60
    beta: float = 0.1
    gamma: float = _D.gamma
    leak: float = _D.leak
    mu_z: float = 0.5                      # every latent state ~ N(mu_z, sigma_z) at t = 1
    sigma_z: float = 0.05
    w_std: float = _D.w_std
    bottom: str = "sigmoid"                # g^0: "sigmoid" (the paper) or "identity"
    pcn: bool = False                      # multiply the bottom-up message by phi'(z^l): PCN
    lr: float = 1e-3
    adam_b1: float = _D.adam_b1
    adam_b2: float = _D.adam_b2
    adam_eps: float = _D.adam_eps
    max_col_norm: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(c) for c in self.hidden))
        object.__setattr__(self, "image_shape", tuple(int(c) for c in self.image_shape))
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError("FCConfig: need at least one latent layer of >= 1 unit, got hidden=%s" % (self.hidden,))
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError("FCConfig: image_shape must be (C, H, W), got %s" % (self.image_shape,))
        if self.bottom not in ("sigmoid", "identity"):
            raise ValueError("FCConfig: bottom must be 'sigmoid' or 'identity', got %r" % (self.bottom,))
        if self.T < 0:
            raise ValueError("FCConfig: T must be >= 0, got %d" % self.T)

    @property
    def L(self):
        return len(self.hidden)

    @property
    def layer_units(self):
        """n_l for l = 0..L, bottom first: (3072, 200, 200, 200, 200) for the paper."""
        return (int(np.prod(self.image_shape)),) + self.hidden[::-1]

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def flatten_images(x):
    """(B, C, H, W) -> (B, C*H*W): the bottom layer of FC-NGC."""
    return x.reshape(x.shape[0], -1)


def unflatten_images(v, cfg):
    return v.reshape((v.shape[0],) + cfg.image_shape)


def sigmoid(v):
    """Logistic sigmoid, 1 / (1 + exp(-v)), written with tanh: no overflow, keeps the dtype."""
    return v.dtype.type(0.5) * (np.tanh(v * v.dtype.type(0.5)) + v.dtype.type(1))


def init_params(cfg, rng, dtype=np.float32):
    """W^l ~ N(0, w_std) of shape (n_l, n_{l-1}); b^{l-1} = 0 (Appendix B). E = W^T is not stored."""
    n = cfg.layer_units
    W = [None] + [(rng.standard_normal((n[l], n[l - 1])) * cfg.w_std).astype(dtype) for l in range(1, cfg.L + 1)]
    b = [None] + [np.zeros(n[l - 1], dtype) for l in range(1, cfg.L + 1)]
    return {"W": W, "b": b, "E": None}


def n_free_parameters(params):
    """Weights + biases: 738,072 for the paper's layout (Appendix B)."""
    return sum(a.size for key in ("W", "b") for a in params[key][1:])


def predict(z_l, W_l, b, cfg, l):
    """Eq. 1, fully connected: zbar^{l-1} = g^{l-1}( phi(z^l) W^l + b^{l-1} ), g^0 = sigmoid (Appendix B)."""
    mu = phi(z_l, cfg.leak) @ W_l                                        # (B, n_{l-1})
    mu += b[None, :]
    return sigmoid(mu) if (l == 1 and cfg.bottom == "sigmoid") else mu


def predictions_and_errors(z, params, cfg):
    """zbar^{l-1} from z^l for l = 1..L and e^{l-1} = z^{l-1} - zbar^{l-1}; e^L = 0."""
    zbar = [predict(z[l], params["W"][l], params["b"][l], cfg, l) for l in range(1, cfg.L + 1)]
    e = [z[l] - zbar[l] for l in range(cfg.L)] + [np.zeros_like(z[cfg.L])]
    return zbar, e


def corrections(z, e, params, cfg, free_bottom=False):
    """Eq. 2: d^l = -e^l + e^{l-1} (W^l)^T (times phi'(z^l) with pcn); d^0 = -e^0 when the bottom is free."""
    d = [-e[0] if free_bottom else None]
    for l in range(1, cfg.L + 1):
        up = e[l - 1] @ params["W"][l].T                                 # (B, n_l)
        if cfg.pcn:
            up *= phi_prime(z[l], cfg.leak)
        up -= e[l]
        d.append(up)
    return d


def correct(z, e, params, cfg, free_bottom=False):
    """z^l <- z^l + beta d^l - gamma z^l for every free layer, synchronously (as Conv-NGC)."""
    beta, gamma = z[0].dtype.type(cfg.beta), z[0].dtype.type(cfg.gamma)
    d = corrections(z, e, params, cfg, free_bottom)
    return [zl if dl is None else zl + beta * dl - gamma * zl for zl, dl in zip(z, d)]


def draw_states(cfg, batch, rng, dtype=np.float32):
    """Every latent layer l = 1..L ~ N(mu_z, sigma_z) per unit (Appendix B); drawn on the host."""
    return [(cfg.mu_z + cfg.sigma_z * rng.standard_normal((batch, n))).astype(dtype) for n in cfg.layer_units[1:]]


def settle(params, x, cfg, z_init, T=None, clamp="always"):
    """T synchronous steps from z^0 = x (flattened) and the drawn latent states; same contract as
    ngc_ref.model.settle (zbar[0] is the output, flattened to (B, n_0); energy is (T+1, B))."""
    check_clamp(clamp)
    T = cfg.T if T is None else T
    x = flatten_images(x) if x.ndim == 4 else x
    if x.shape[1] != cfg.layer_units[0]:
        raise ValueError("FC-NGC: images have %d values each, the bottom layer has %d units (image_shape %s)"
                         % (x.shape[1], cfg.layer_units[0], cfg.image_shape))
    if len(z_init) != cfg.L or any(zl.shape != (x.shape[0], n) for zl, n in zip(z_init, cfg.layer_units[1:])):
        raise ValueError("FC-NGC: z_init must hold %d latent batches of shapes %s"
                         % (cfg.L, [(x.shape[0], n) for n in cfg.layer_units[1:]]))
    z = [x] + list(z_init)
    return settle_steps(z, T, lambda z: predictions_and_errors(z, params, cfg),
                        lambda z, e: correct(z, e, params, cfg, free_bottom=(clamp == "first")))


def filter_updates(res, params, cfg):
    """dW^l = phi(z^l)^T e^{l-1} and db^{l-1} = sum_batch e^{l-1}: displacements (minus the gradient of the
    energy whose gradient the corrections are, see the module docstring); descent adds them."""
    dW = [None] + [phi(res.z[l], cfg.leak).T @ res.e[l - 1] for l in range(1, cfg.L + 1)]   # (n_l, n_{l-1})
    db = [None] + [res.e[l - 1].sum(axis=0) for l in range(1, cfg.L + 1)]
    return {"W": dW, "b": db, "E": None}


def project_rows(w, max_norm=1.0):
    """Rescale every row of W^l (one latent unit's weight vector, a column of D = W^T) to norm <= max_norm."""
    norms = np.sqrt(np.sum(w * w, axis=1, keepdims=True))
    return w * np.where(norms > max_norm, max_norm / np.maximum(norms, 1e-30), 1.0).astype(w.dtype)


def init_state(params):
    zeros = {k: [None if a is None else np.zeros_like(a) for a in params[k]] for k in ("W", "b")}
    return {"t": 0, "m": zeros, "v": {k: [None if a is None else a.copy() for a in v] for k, v in zeros.items()}}


def step(params, deltas, opt_state, cfg):
    """One Adam step on -displacement (descent), then the column-norm constraint on every W^l."""
    opt_state["t"] += 1
    for key in ("W", "b"):
        for l in range(1, len(params[key])):
            p = _adam(params[key][l], deltas[key][l], opt_state["m"][key][l], opt_state["v"][key][l],
                      opt_state["t"], cfg)
            params[key][l] = project_rows(p, cfg.max_col_norm) if key == "W" else p
    return params
