"""ngc_ref.optim for the cpu backend: Adam or the normalised step, then the kernel-norm projection.

The update loop is ngc_ref.optim.apply_step, written once for every backend; the per-array rules are the
reference's own NumPy ones. That is a measured choice, not a shortcut: the paper's model has 9,225 filter
weights and 63 biases, so one optimiser step costs well under a millisecond in NumPy, against about a
second of settling per batch of 500; compiled rules would only add compile time.
"""
from ngc_ref.optim import _adam, _normalized, apply_step, init_state, project_kernels

__all__ = ["init_state", "step", "project_kernels"]


def step(params, deltas, opt_state, cfg):
    """One update in place (== ngc_ref.optim.step): Adam (cfg.optimizer == "adam") or the normalised step,
    then each filter kernel of W (and learnable E) projected to norm <= cfg.max_kernel_norm."""
    return apply_step(params, deltas, opt_state, cfg, _adam, _normalized, project_kernels)
