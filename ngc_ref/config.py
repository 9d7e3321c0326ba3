"""Model configuration. The defaults are the paper's (Sec. 3, Appendix B); docs/reading.md settles the rest.

Channel order, stated once for the whole project: `channels` lists the maps per layer from the TOP down,
as the paper writes its configuration ({10, 15, 20, 25, 3}: the last entry is the image's colours).
Everywhere else (model code, params lists, the glossary of ngc_ref/model.py) layers are indexed bottom-up,
l = 0 (the image) .. L (the top), and `layer_channels[l]` = C_l = channels[L - l].
"""
import math
import numbers
from dataclasses import dataclass, asdict, fields


class ConfigError(ValueError):
    """A Config value out of its range; `field` names the option (the command line maps it to its flag)."""

    def __init__(self, field, message):
        super().__init__("config: " + message)
        self.field = field


# The allowed values of each scalar option: (kind, low, low included, high, high included); None = unbounded.
# Config.validate checks them and the command line checks each option against the same table.
RANGES = {
    "kernel": ("int", 1, True, None, None),
    "stride": ("int", 1, True, None, None),
    "T": ("int", 1, True, 100000, True),               # Algorithm 1 needs at least one settling step; the
                                                       # bound only stops a typo (1e20) from allocating
                                                       # without end: denoising settles use a few thousand
    "beta": ("float", 0, True, None, None),
    "gamma": ("float", 0, True, 1, True),
    "leak": ("float", 0, True, 1, True),               # leaky-ReLU slope: 0 = ReLU, 1 = identity
    "mu_z": ("float", None, None, None, None),
    "sigma_z": ("float", 0, True, None, None),
    "w_std": ("float", 0, True, None, None),
    "pcn": ("bool",),
    "learn_E": ("bool",),
    "lam": ("float", 0, True, None, None),
    "optimizer": ("choice", "adam", "normalized"),
    "lr": ("float", 0, True, None, None),
    "adam_b1": ("float", 0, True, 1, False),
    "adam_b2": ("float", 0, True, 1, False),
    "adam_eps": ("float", 0, False, None, None),
    "norm_eps": ("float", 0, False, None, None),
    "max_kernel_norm": ("float", 0, False, None, None),   # 0 would zero every filter
    "bias": ("choice", "channel", "pixel"),
    "reduce": ("choice", "sum", "mean"),
    "gamma_bottom": ("bool",),
    "output": ("choice", "zbar", "z"),
    "denoise": ("choice", "precision", "clamped", "free"),
    "pi0": ("float", 0, False, 1, True),               # precision of the noisy bottom error; 1 = plain clamped
    "T_denoise": ("int", 0, True, None, None),         # settling steps of a denoising settle; 0 = automatic
    "momentum": ("float", 0, True, 1, False),          # heavy-ball weight of a precision denoising settle; 0 = plain steps
}


def describe_range(name):
    """'an integer >= 1', 'a number in [0, 1)', ...: the words of the messages and of --help."""
    kind, *r = RANGES[name]
    if kind == "bool":
        return "true or false"
    if kind == "choice":
        return "one of " + ", ".join(r)
    lo, lo_in, hi, hi_in = r
    what = "an integer" if kind == "int" else ("a number" if lo is not None and hi is not None else "a finite number")
    if lo is not None and hi is not None:
        return "%s in %s%g, %g%s" % (what, "[" if lo_in else "(", lo, hi, "]" if hi_in else ")")
    if lo is not None:
        return "%s %s %g" % (what, ">=" if lo_in else ">", lo)
    return what


def check_option(name, value):
    """Raise ConfigError unless `value` is allowed for option `name` (see RANGES); return it unchanged."""
    kind, *r = RANGES[name]
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "choice":
        ok = value in r
    else:
        ok = isinstance(value, numbers.Integral if kind == "int" else numbers.Real) and not isinstance(value, bool)
        if ok:
            lo, lo_in, hi, hi_in = r
            v = float(value)
            ok = (math.isfinite(v) and (lo is None or (v >= lo if lo_in else v > lo))
                  and (hi is None or (v <= hi if hi_in else v < hi)))
    if not ok:
        raise ConfigError(name, "%s must be %s, got %r" % (name, describe_range(name), value))
    return value


def _int_tuple(name, value, example):
    """A list or tuple of whole numbers -> a tuple of ints; anything else (a string '10,3', one number 32, a
    2.5) is a ConfigError naming the field."""
    items = tuple(value) if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and
                                                                not isinstance(value, (str, bytes, dict))) else None
    if items is None or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
        raise ConfigError(name, "%s must be a list or tuple of integers, e.g. %s, got %r" % (name, example, value))
    return tuple(int(v) for v in items)


@dataclass(frozen=True)
class Config:
    channels: tuple = (10, 15, 20, 25, 3)  # top -> bottom, as the paper lists them; last = image channels
    image_hw: tuple = (32, 32)             # bottom map; each layer up divides it by the stride
    kernel: int = 3                        # K x K filters
    stride: int = 2                        # s in *_s and ⊙_s
    T: int = 60                            # settling steps
    beta: float = 0.1                      # state correction rate (Eq. 2)
    gamma: float = 0.001                   # state leak (Eq. 2)
    leak: float = 0.2                      # leaky-ReLU slope of phi (not in the paper; TensorFlow's default)
    mu_z: float = 0.5                      # z^L ~ N(mu_z, sigma_z): Appendix B (Sec. 3.1 says 5)
    sigma_z: float = 0.05
    w_std: float = 0.1                     # W ~ N(0, 0.1), b = 0
    pcn: bool = False                      # multiply the bottom-up message by phi'(z): recovers PCN
    learn_E: bool = False                  # separate learnable error filters (default E = W^T)
    lam: float = 0.9                       # lambda: dE = lambda * dW
    optimizer: str = "adam"                # "adam" (the experiments) or "normalized" (Algorithm 2)
    lr: float = 1e-3                       # Adam step / alpha of the normalised step
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    norm_eps: float = 1e-8                 # epsilon of Algorithm 2's normalised step
    max_kernel_norm: float = 1.0           # each K x K kernel is projected back to norm <= this
    # Readings of points the paper leaves open (docs/reading.md); the defaults are the literal/first reading.
    bias: str = "channel"                  # b^l: "channel" one scalar per map of layer l-1; "pixel" a map (C_{l-1}, H_{l-1}, W_{l-1})
    reduce: str = "sum"                    # dW and db over the batch: "sum" or "mean" (the sum divided by the batch size)
    gamma_bottom: bool = True              # denoising: the leak gamma also acts on a free z^0 (False: z^0 <- z^0 - beta e^0)
    output: str = "zbar"                   # the output image: "zbar" = zbar^0 of the final states, "z" = z^0 (differs only in denoising)
    denoise: str = "precision"             # denoising: "precision" = z^0 clamped to the noisy image, its error weighted
                                           # by pi0 in z^1's correction (docs/reading.md); "clamped" = Algorithm 1 (pi0 = 1);
                                           # "free" = Sec. 4 (z^0 = the noisy image at t = 1, then it evolves by Eq. 2)
    pi0: float = 0.1                       # "precision": the precision of e^0 (the noisy image's error), in (0, 1]
    T_denoise: int = 0                     # settling steps of a denoising settle (0: T x ceil(0.25 / pi0), see denoise_T)
    momentum: float = 0.0                  # "precision": heavy-ball momentum of the denoising settle (ngc_ref.model.heavy_ball);
                                           # 0 = Algorithm 1's plain steps; `convngc tune` sets 0.9 (same fixed point, 16x fewer steps)

    def __post_init__(self):
        object.__setattr__(self, "channels", _int_tuple("channels", self.channels, "(10, 15, 20, 25, 3)"))
        object.__setattr__(self, "image_hw", _int_tuple("image_hw", self.image_hw, "(32, 32)"))
        self.validate()

    @property
    def L(self):
        """Index of the top layer (layers are 0..L, 0 = image)."""
        return len(self.channels) - 1

    @property
    def layer_channels(self):
        """C_l for l = 0..L (bottom first, the paper's layer index)."""
        return self.channels[::-1]

    def map_hw(self, l):
        """(H_l, W_l): the bottom size divided by s^l."""
        return tuple(v // self.stride ** l for v in self.image_hw)

    def validate(self):
        for name in ("kernel", "stride"):               # before the layer sizes below divide by them
            check_option(name, getattr(self, name))
        if len(self.channels) < 2:
            raise ConfigError("channels", "need at least two layers (a latent layer and the image), got channels=%s"
                             % (self.channels,))
        if any(c < 1 for c in self.channels):
            raise ConfigError("channels", "every layer needs >= 1 channel, got channels=%s" % (self.channels,))
        if len(self.image_hw) != 2:
            raise ConfigError("image_hw", "image_hw must be (H, W), got %s" % (self.image_hw,))
        f = self.stride ** self.L
        for v in self.image_hw:
            if v % f or v // f < 1:
                sizes = " -> ".join("%g" % (v / self.stride ** l) for l in range(self.L + 1))
                raise ConfigError("image_hw",
                    "image side %d does not divide by stride^L = %d^%d = %d, so the maps do not "
                    "halve cleanly (%s). Use an image side that is a multiple of %d or fewer layers."
                    % (v, self.stride, self.L, f, sizes, f))
        if self.optimizer not in ("adam", "normalized"):
            raise ConfigError("optimizer", "unknown optimizer %r (choose 'adam' or 'normalized')" % (self.optimizer,))
        for name in RANGES:
            check_option(name, getattr(self, name))

    @property
    def denoise_pi0(self):
        """The weight of e^0 in z^1's correction when denoising: pi0 under the "precision" reading, else 1."""
        return self.pi0 if self.denoise == "precision" else 1.0

    @property
    def denoise_momentum(self):
        """The heavy-ball momentum of a denoising settle: momentum under the "precision" reading, else 0 (the
        clamped and free readings are Algorithm 1's steps)."""
        return self.momentum if self.denoise == "precision" else 0.0

    @property
    def denoise_T(self):
        """The settling steps of a denoising settle: T_denoise; when it is 0, T, or under the "precision" reading
        T x ceil(0.25 / pi0): a smaller precision drives z^1 more weakly and settles more slowly (measured:
        pi0 0.1 needs about 2-3 T, 0.05 about 4-5 T; docs/reading.md)."""
        if self.T_denoise:
            return self.T_denoise
        if self.denoise == "precision":
            return self.T * max(1, math.ceil(0.25 / self.pi0 - 1e-9))
        return self.T

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError("config: expected a dict of options, got %s %r" % (type(d).__name__, d))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError("config: unknown option(s) %s; known options: %s" % (", ".join(unknown), ", ".join(sorted(known))))
        return cls(**d)
