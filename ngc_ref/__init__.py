"""ngc_ref: the Conv-NGC paper written as NumPy code (slow, literal, the ground truth).

    ngc_ref.ops      the operators of Sec. 3: dilate, pad, conv2d (*_s), conv2d_transpose, conv2d_weight_grad
    ngc_ref.model    Eqs. 1-3 and Algorithms 1-2: predict, correct, energy, settle, filter_updates
    ngc_ref.optim    Algorithm 2 line 12 (Adam or the normalised step) and the kernel-norm projection
    ngc_ref.config   Config: the paper's configuration and the readings of its open points
    ngc_ref.checks   what settle accepts, checked the same way for every backend
"""
from . import checks, config, model, ops, optim  # noqa: F401
