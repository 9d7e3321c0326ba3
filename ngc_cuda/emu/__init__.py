"""CPU emulation of kernels/*.cu: cuda_emu.h + EmuModule, a stand-in for cupy.RawModule (see README.md)."""
from ._emu import EmuModule, EmuFunction, parse_kernels, cache_dir, ORDERS, DEFAULT_SMEM, H100_SMEM_LIMIT

__all__ = ["EmuModule", "EmuFunction", "parse_kernels", "cache_dir", "ORDERS", "DEFAULT_SMEM", "H100_SMEM_LIMIT"]
