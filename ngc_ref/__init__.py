"""ngc_ref: the Conv-NGC paper written as NumPy code (slow, literal, the ground truth)."""
from . import ops  # noqa: F401
