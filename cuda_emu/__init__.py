"""cuda_emu: run unchanged CUDA C kernels on the CPU (g++ + cuda_emu.h); EmuModule stands in for cupy.RawModule.

See README.md in this folder for how it works and what an emulated pass proves.
"""
from .module import EmuModule, EmuFunction, parse_kernels, cache_dir, ORDERS, DEFAULT_SMEM, H100_SMEM_LIMIT

__all__ = ["EmuModule", "EmuFunction", "parse_kernels", "cache_dir", "ORDERS", "DEFAULT_SMEM", "H100_SMEM_LIMIT"]
