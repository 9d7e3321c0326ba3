"""Find, compile and load kernels/*.cu: on a GPU with CuPy, on the CPU with the emulator, or for a
GPU architecture with NVRTC alone (no device needed, the compile check).

    load_module("conv2d", backend="cuda")        # cupy.RawModule, compiled once per device
    load_module("conv2d", backend="cuda-emu")    # cuda_emu.EmuModule, same calling code
    compile_nvrtc("conv2d", "sm_90")              # (cubin, log with the ptxas resource lines)

All three share compile_options() and the -D constants of ngc_cuda/defines.py, so the check compiles
exactly what the backend runs.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from .defines import kernel_defines

REPO_KERNELS = Path(__file__).resolve().parent.parent / "kernels"


class CompileError(RuntimeError):
    """NVRTC rejected a kernel file; .log holds the compiler output."""

    def __init__(self, name, arch, log):
        super().__init__(f"NVRTC failed to compile {name} for {arch}:\n{log}")
        self.log = log


def kernel_dir() -> Path:
    """kernels/ of a source checkout, else the installed package ngc_cuda.kernels."""
    if REPO_KERNELS.is_dir():
        return REPO_KERNELS
    import importlib.util
    spec = importlib.util.find_spec("ngc_cuda.kernels")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("no kernels/ folder next to ngc_cuda and no ngc_cuda.kernels package")
    return Path(list(spec.submodule_search_locations)[0])


def source_path(name_or_path) -> Path:
    """'conv2d' -> <kernel_dir>/conv2d.cu; a path to an existing .cu file is returned as is."""
    p = Path(name_or_path)
    if p.suffix == ".cu" and p.is_file():
        return p.resolve()
    q = kernel_dir() / (p.name if p.suffix == ".cu" else f"{p.name}.cu")
    if not q.is_file():
        raise FileNotFoundError(f"no kernel file {q}")
    return q


def read_source(name) -> str:
    return source_path(name).read_text()


def _define_opts(defines: dict | None) -> tuple[str, ...]:
    return tuple(f"-D{k}" if v is None or v is True else f"-D{k}={v}" for k, v in sorted((defines or {}).items()))


# What cupy.RawModule (CuPy 13/14, NVRTC backend) appends to every compile by itself: the compile check
# adds these so it builds exactly what the GPU backend runs. -ftz=true flushes float32 denormals (values
# below 1.2e-38), which the emulator does not do; no test value comes near that range.
CUPY_ADDED_OPTIONS = ("--device-as-default-execution-space", "-ftz=true")


def compile_options(arch: str | None, defines: dict | None = None) -> tuple[str, ...]:
    """Our options for NVRTC, shared by the GPU backend, the compile check and (-D/-I only) the emulator.

    arch: "sm_80", "sm_90", ... or None where CuPy adds -arch for the current device itself.
    CuPy appends CUPY_ADDED_OPTIONS itself; `compile_nvrtc` appends them for the check. No fast math (STYLE.md 3).
    """
    opts = ["-std=c++17"]
    if arch is not None:
        opts.append(f"-arch={arch}")
    opts.append(f"-I{kernel_dir()}")
    return tuple(opts) + _define_opts(defines)


# -- NVRTC without a device ---------------------------------------------------------------------------
def _nvrtc_backend():
    """(name, compile(src, filename, options) -> (ok, cubin, log), version) using whichever binding imports."""
    try:
        from cuda.bindings import nvrtc as nv

        def check(res):
            err, *rest = res if isinstance(res, tuple) else (res,)
            if err != nv.nvrtcResult.NVRTC_SUCCESS:
                raise RuntimeError(f"nvrtc: {err}")
            return rest[0] if len(rest) == 1 else rest

        def compile_(src, filename, options):
            prog = check(nv.nvrtcCreateProgram(src.encode(), filename.encode(), 0, [], []))
            try:
                err, = nv.nvrtcCompileProgram(prog, len(options), [o.encode() for o in options])
                n = check(nv.nvrtcGetProgramLogSize(prog))
                log = b" " * n
                check(nv.nvrtcGetProgramLog(prog, log))
                log = log.rstrip(b"\0 ").decode(errors="replace")
                if err != nv.nvrtcResult.NVRTC_SUCCESS:
                    return False, b"", log
                n = check(nv.nvrtcGetCUBINSize(prog))
                cubin = b" " * n
                check(nv.nvrtcGetCUBIN(prog, cubin))
                return True, bytes(cubin), log
            finally:
                nv.nvrtcDestroyProgram(prog)

        major, minor = check(nv.nvrtcVersion())
        return "cuda.bindings", compile_, f"{major}.{minor}"
    except ImportError:
        pass
    from cupy.cuda import nvrtc as nv   # CuPy's low-level binding works with no device

    def compile_(src, filename, options):
        prog = nv.createProgram(src, filename, [], [])
        try:
            try:
                nv.compileProgram(prog, list(options))
                ok = True
            except nv.NVRTCError:
                ok = False
            log = nv.getProgramLog(prog).rstrip("\0 \n")
            return ok, (nv.getCUBIN(prog) if ok else b""), log
        finally:
            nv.destroyProgram(prog)

    major, minor = nv.getVersion()
    return "cupy.cuda.nvrtc", compile_, f"{major}.{minor}"


@functools.lru_cache(maxsize=None)
def nvrtc_backend():
    """Cached (binding name, compile function, NVRTC version); raises ImportError if no NVRTC is usable."""
    try:
        return _nvrtc_backend()
    except ImportError as e:
        raise ImportError("NVRTC not found: pip install nvidia-cuda-nvrtc==13.0.88 cuda-bindings (or cupy-cuda13x)") from e
    except OSError as e:            # the binding imports but libnvrtc.so does not load
        raise ImportError(f"NVRTC library missing: {e}") from e


def compile_nvrtc(name_or_path, arch: str, defines: dict | None = None, ptxas_verbose: bool = True):
    """Compile one kernel file for `arch` (e.g. "sm_90") with NVRTC, no GPU needed -> (cubin, log).

    A file of kernels/ gets the GPU backend's -D constants (defines.kernel_defines), `defines` on top.
    With ptxas_verbose the log holds ptxas' resource lines (parse them with parse_ptxas). Raises
    CompileError carrying the NVRTC log when the source does not compile.
    """
    path = source_path(name_or_path)
    if path.parent == kernel_dir():
        defines = {**kernel_defines(path.stem, "cuda"), **(defines or {})}
    opts = list(compile_options(arch, defines)) + list(CUPY_ADDED_OPTIONS)   # what RawModule would compile
    if path.parent != kernel_dir():
        opts.append(f"-I{path.parent}")
    if ptxas_verbose:
        opts += ["-Xptxas=-v", "-Xptxas=-warn-spills"]      # NVRTC wants one ptxas option per flag
    _, compile_, _ = nvrtc_backend()
    ok, cubin, log = compile_(path.read_text(), str(path), opts)
    if not ok:
        raise CompileError(path.name, arch, log)
    return cubin, log


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(\w+)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_CMEM = re.compile(r"(\d+) bytes cmem\[0\]")


def parse_ptxas(log: str) -> list[dict]:
    """ptxas -v lines -> [dict(kernel, arch, registers, smem_bytes, cmem, spill_stores, spill_loads, stack)]."""
    out, cur, props_of = [], None, None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            cur = dict(kernel=m.group(1), arch=m.group(2), registers=0, smem_bytes=0, cmem=0,
                       spill_stores=0, spill_loads=0, stack=0)
            out.append(cur)
            props_of = None
        elif m := _PROPS.search(line):
            props_of = m.group(1)
        elif (m := _FRAME.search(line)) and cur is not None and props_of == cur["kernel"]:
            cur["stack"], cur["spill_stores"], cur["spill_loads"] = (int(g) for g in m.groups())
        elif (m := _USED.search(line)) and cur is not None:
            cur["registers"] = int(m.group(1))
            cur["smem_bytes"] = int(s.group(1)) if (s := _SMEM.search(line)) else 0
            cur["cmem"] = int(c.group(1)) if (c := _CMEM.search(line)) else None   # sm_90 ptxas omits it
    return out


# -- the backends --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _gpu_module(name, device_id):
    import cupy as cp
    with cp.cuda.Device(device_id):
        # CuPy appends -arch for this device and keeps its own on-disk cache keyed by source + options
        return cp.RawModule(code=read_source(name), options=compile_options(None, kernel_defines(name, "cuda")))


def gpu_module(name: str):
    """cupy.RawModule for kernels/<name>.cu on the current device (cached per name and device)."""
    import cupy as cp
    return _gpu_module(name, cp.cuda.runtime.getDevice())


@functools.lru_cache(maxsize=None)
def emu_module(name: str, order: str = "forward", sanitize: bool = False):
    """cuda_emu.EmuModule for kernels/<name>.cu (built with g++, cached on disk and per process); its
    shared-memory limit is cuda_emu's default, H100_SMEM_LIMIT."""
    from cuda_emu import EmuModule
    return EmuModule(path=source_path(name), options=compile_options(None, kernel_defines(name, "cuda-emu")),
                     order=order, sanitize=sanitize)


def load_module(name: str, backend: str, order: str = "forward", sanitize: bool = False):
    """A module with .get_function(kernel) -> f(grid, block, args, shared_mem=0), for either backend
    (order and sanitize are the emulator's settings; a GPU ignores them)."""
    if backend == "cuda":
        return gpu_module(name)
    if backend == "cuda-emu":
        return emu_module(name, order, sanitize)
    raise ValueError(f"backend must be 'cuda' or 'cuda-emu', got {backend!r}")
