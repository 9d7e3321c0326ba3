"""EmuModule: a CPU stand-in for cupy.RawModule that runs the unchanged kernels/*.cu with g++.

    mod = EmuModule(path="kernels/conv2d.cu", options=("-DTILE=16",))
    f = mod.get_function("conv2d_fwd_v3")
    f((ceil_div(n, 256),), (256,), (x, w, out, np.int32(n)), shared_mem=0)   # NumPy arrays in place of device arrays

The source gets cuda_emu.h force-included, a fill call after each static `__shared__` declaration (same
line, so line numbers hold), and generated C++ (definitions of `extern __shared__` arrays and one
trampoline per `__global__` function); it is built into a shared library cached on disk. Arguments are checked against the kernel's parameter list before every launch, which CuPy
does not do. See README.md in this folder for how the emulation works and what it proves.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np

EMU_DIR = Path(__file__).resolve().parent
HEADER = EMU_DIR / "cuda_emu.h"
LAUNCHER = EMU_DIR / "launcher_main.cpp"
# the order in which a block's threads run between synchronisation points (cuda_emu.h, run_block)
ORDERS = {"forward": 0, "reverse": 1, "shuffle": 2, "warp": 3}
DEFAULT_SMEM = 48 * 1024          # dynamic shared memory a launch may use without the opt-in attribute
H100_SMEM_LIMIT = 227 * 1024      # largest opt-in (sm_90), the default smem_limit; A100 (sm_80) allows 163 KB
FLAGS = ("-std=c++17", "-O2", "-g", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-U_FORTIFY_SOURCE",
         "-fvisibility=hidden", "-fstack-clash-protection", "-w")
SANITIZE_FLAGS = ("-std=c++17", "-O1", "-g", "-ffp-contract=off", "-fno-fast-math", "-U_FORTIFY_SOURCE",
                  "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined", "-w")
# options that only mean something to NVRTC/nvcc: accepted and ignored so the GPU option list can be reused
GPU_ONLY_OPTIONS = re.compile(r"^(-std=.*|-arch=.*|--gpu-architecture=.*|--device-as-default-execution-space|"
                              r"-Xptxas=.*|--fmad=.*|-lineinfo|--generate-line-info|--pch|-G|--device-debug|"
                              r"--extra-device-vectorization|-default-device|--std=.*|-dopt=.*|--dopt=.*)$")

# C type of a kernel parameter -> NumPy dtype (pointers: the array dtype; scalars: the scalar type)
CTYPES = {
    "float": np.float32, "double": np.float64, "int": np.int32, "signed": np.int32, "signed int": np.int32,
    "unsigned": np.uint32, "unsigned int": np.uint32, "long long": np.int64, "long long int": np.int64,
    "signed long long": np.int64, "unsigned long long": np.uint64, "unsigned long long int": np.uint64,
    "long": np.int64, "unsigned long": np.uint64, "size_t": np.uint64, "ptrdiff_t": np.int64,
    "short": np.int16, "unsigned short": np.uint16, "char": np.int8, "signed char": np.int8,
    "unsigned char": np.uint8, "bool": np.bool_, "int8_t": np.int8, "uint8_t": np.uint8, "int16_t": np.int16,
    "uint16_t": np.uint16, "int32_t": np.int32, "uint32_t": np.uint32, "int64_t": np.int64, "uint64_t": np.uint64,
    "half": np.float16, "__half": np.float16, "void": None,
}
QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict", "__grid_constant__"}


class Param:
    """One kernel parameter: `const float* __restrict__ x` -> Param('x', 'float', pointer=True)."""

    def __init__(self, name, ctype, pointer, const, text):
        self.name, self.ctype, self.pointer, self.const, self.text = name, ctype, pointer, const, text
        self.dtype = CTYPES.get(ctype, "unknown")

    def __repr__(self):
        return f"Param({self.text!r})"


def strip_comments(src: str) -> str:
    """Remove // and /* */ comments, keeping newlines so line numbers survive."""
    def repl(m):
        s = m.group(0)
        return s if s.startswith('"') else re.sub(r"[^\n]", " ", s)
    return re.sub(r'"(?:\\.|[^"\\\n])*"|//[^\n]*|/\*.*?\*/', repl, src, flags=re.S)


_KERNEL_RE = re.compile(r"(template\s*<[^>]*>\s*)?(?:extern\s+\"C\"\s+)?__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?"
                        r"void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)\s*\{")
_EXTERN_SMEM_RE = re.compile(r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?"
                             r"((?:(?:const|volatile|unsigned|signed|long|short)\s+)*\w+)\s+"
                             r"(?:__align__\s*\(\s*\d+\s*\)\s*)?(\w+)\s*\[\s*\]")


def parse_params(text: str) -> list[Param]:
    params = []
    for raw in (p.strip() for p in text.split(",")):
        if not raw or raw == "void":
            continue
        stars = raw.count("*")
        if "&" in raw or "[" in raw:
            raise ValueError(f"cuda_emu: unsupported kernel parameter {raw!r}")
        toks = raw.replace("*", " ").split()
        const = "const" in toks
        toks = [t for t in toks if t not in QUALIFIERS]
        name = toks[-1] if len(toks) > 1 else f"arg{len(params)}"
        ctype = " ".join(toks[:-1] if len(toks) > 1 else toks)
        if stars > 1:
            raise ValueError(f"cuda_emu: pointer-to-pointer parameter {raw!r} is not supported")
        params.append(Param(name, ctype, stars == 1, const, raw))
    return params


def parse_kernels(src: str) -> dict[str, list[Param]]:
    """{kernel name: [Param, ...]} for every non-template `__global__ void NAME(...)` in the source."""
    kernels = {}
    for m in _KERNEL_RE.finditer(strip_comments(src)):
        if m.group(1):
            continue        # templates need name_expressions on CuPy; not emulated
        kernels[m.group(2)] = parse_params(m.group(3))
    return kernels


_STATIC_SMEM_RE = re.compile(r"(?<![\w])__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?[\w\s:<>,]*?(\w+)\s*"
                             r"((?:\[[^\];]*\]\s*)*);")


def fill_static_shared(src: str) -> str:
    """Append CUDA_EMU_STATIC_SHARED(name) after each function-scope `__shared__ T name[...];` declaration,
    on the same line, so that each block sees the variable filled with 0xFF bytes (cuda_emu.h). `extern
    __shared__` arrays are filled by the launch; namespace-scope ones are left as they are (README)."""
    code = strip_comments(src)              # same length as src: offsets carry over
    out, last = [], 0
    for m in _STATIC_SMEM_RE.finditer(code):
        before = code[:m.start()]
        if re.search(r"extern\s*$", before) or before.count("{") <= before.count("}"):
            continue                        # extern __shared__, or not inside a function body
        out.append(src[last:m.end()] + f" CUDA_EMU_STATIC_SHARED({m.group(1)});")
        last = m.end()
    return "".join(out) + src[last:]


def generated_code(src: str, kernels: dict[str, list[Param]]) -> str:
    """C++ appended to the kernel source: extern __shared__ storage and one trampoline per kernel."""
    out = ["\n// ---- generated by cuda_emu ----"]
    seen = {}
    for ctype, name in _EXTERN_SMEM_RE.findall(strip_comments(src)):
        if name in seen:
            continue
        seen[name] = ctype
        i = len(seen)
        out.append(f"alignas(16) thread_local {ctype} {name}[CUDA_EMU_DYN_SMEM_MAX / sizeof({ctype})];")
        out.append(f"static void* __emu_dsm_{i}() {{ return (void*){name}; }}")
        out.append(f"static int __emu_dsm_reg_{i} = ::cuda_emu::register_dyn_smem(&__emu_dsm_{i});")
    names = []
    for k, params in kernels.items():
        fields, unpack = [], []
        for j, p in enumerate(params):
            t = f"{p.ctype}*" if p.pointer else p.ctype
            fields.append(f"{t} a{j};")
            unpack.append(f"*({t}*)args[{j}]")
        call = ", ".join(f"c->a{j}" for j in range(len(params)))
        out.append(f"namespace {{ struct __emu_ctx_{k} {{ {' '.join(fields)} }};")
        out.append(f"void __emu_body_{k}(void* p) {{ auto* c = (__emu_ctx_{k}*)p; (void)c; {k}({call}); }} }}")
        out.append(f'extern "C" __attribute__((visibility("default"))) int __emu_launch_{k}('
                   f"const ::cuda_emu::LaunchCfg* cfg, void** args, char* err, int errlen) {{")
        out.append(f"  (void)args; __emu_ctx_{k} c{{{', '.join(unpack)}}};")
        out.append(f"  return ::cuda_emu::launch(*cfg, &__emu_body_{k}, &c, err, errlen); }}")
        names.append(k)
    out.append('extern "C" __attribute__((visibility("default"))) const char* const __emu_kernel_names[] = {'
               + "".join(f'"{k}", ' for k in names) + "nullptr};")
    out.append('typedef int (*__emu_launch_fn)(const ::cuda_emu::LaunchCfg*, void**, char*, int);')
    out.append('extern "C" __attribute__((visibility("default"))) const __emu_launch_fn __emu_kernel_fns[] = {'
               + "".join(f"&__emu_launch_{k}, " for k in names) + "nullptr};")
    return "\n".join(out) + "\n"


class LaunchCfg(ctypes.Structure):
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("shared_mem", ctypes.c_ulonglong),
                ("shared_mem_cap", ctypes.c_ulonglong), ("order", ctypes.c_int), ("seed", ctypes.c_ulonglong),
                ("fill_shared", ctypes.c_int)]


def cache_dir() -> Path:
    d = Path(os.environ.get("CONVNGC_EMU_CACHE") or Path.home() / ".cache" / "convngc" / "emu")
    d.mkdir(parents=True, exist_ok=True)
    return d


@functools.lru_cache(maxsize=None)
def _compiler() -> tuple[str, str]:
    cxx = os.environ.get("CONVNGC_EMU_CXX", "g++")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    return cxx, version


def _includes(src: str, dirs: list[Path], seen: dict) -> None:
    """Collect `#include "x"` headers reachable from src (for the cache key)."""
    for name in re.findall(r'^\s*#\s*include\s*"([^"]+)"', src, flags=re.M):
        for d in dirs:
            p = (d / name).resolve()
            if p.is_file():
                if p not in seen:
                    seen[p] = p.read_text()
                    _includes(seen[p], [p.parent] + dirs, seen)
                break


def _dim3(v, what) -> tuple[int, int, int]:
    t = tuple(v) if isinstance(v, (tuple, list)) else (v,)
    if not 1 <= len(t) <= 3 or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in t):
        raise TypeError(f"{what} must be an int or a tuple of 1 to 3 ints, got {v!r}")
    return tuple(int(x) for x in t) + (1,) * (3 - len(t))


class EmuModule:
    """Stand-in for cupy.RawModule(code=..., options=...) that runs the kernels on the CPU.

    order: "forward", "reverse", "shuffle" (seeded by `seed`): the order in which a block's threads run
    to their next barrier or warp sync; "warp": one warp at a time, each to its next __syncthreads().
    Comparing orders exposes a missing __syncthreads() (README.md says which order sees what).
    sanitize: build with -fsanitize=address,undefined and run every launch in a child process
    (ASan needs its runtime loaded first, which Python cannot do for a ctypes library).
    """

    def __init__(self, code: str | None = None, path=None, options=(), include_dirs=(), order="forward",
                 sanitize=False, seed=0, smem_limit=H100_SMEM_LIMIT, stack_size=None, fill_shared=True):
        if (code is None) == (path is None):
            raise ValueError("give exactly one of code= or path=")
        if path is not None:
            path = Path(path).resolve()
            code = path.read_text()
        if order not in ORDERS:
            raise ValueError(f"order must be one of {sorted(ORDERS)}, got {order!r}")
        self.code, self.path, self.order, self.seed = code, path, order, seed
        self.sanitize, self.smem_limit, self.fill_shared = bool(sanitize), int(smem_limit), fill_shared
        self.kernels = parse_kernels(code)
        defines, incs = [], [Path(d).resolve() for d in include_dirs]
        opts = list(options)
        while opts:
            o = opts.pop(0)
            if o in ("-D", "-U", "-I") and opts:
                o += opts.pop(0)
            if o.startswith(("-D", "-U")):
                defines.append(o)
            elif o.startswith("-I"):
                incs.append(Path(o[2:]).resolve())
            elif not GPU_ONLY_OPTIONS.match(o):
                raise ValueError(f"cuda_emu: option {o!r} is neither -D/-U/-I nor a known GPU-only option")
        if path is not None:
            incs.insert(0, path.parent)
        self.include_dirs = incs
        self.defines = defines
        self.extra = [f"-DCUDA_EMU_DYN_SMEM_MAX={self.smem_limit}"]
        if stack_size:
            self.extra.append(f"-DCUDA_EMU_STACK_SIZE={int(stack_size)}")
        self.binary = self._build()
        self._lib = None if self.sanitize else ctypes.CDLL(str(self.binary))

    # -- build -------------------------------------------------------------------------------------
    def _build(self) -> Path:
        cxx, version = _compiler()
        headers = {}
        _includes(self.code, self.include_dirs, headers)
        flags = SANITIZE_FLAGS if self.sanitize else FLAGS + ("-shared",)
        h = hashlib.sha256()
        for part in (fill_static_shared(self.code), HEADER.read_text(), LAUNCHER.read_text() if self.sanitize else "",
                     generated_code(self.code, self.kernels), version, repr(flags), repr(self.defines),
                     repr(self.extra), repr([str(d) for d in self.include_dirs]),
                     repr(sorted((str(k), v) for k, v in headers.items())), str(self.path)):
            h.update(part.encode())
            h.update(b"\0")
        stem = (self.path.stem if self.path else "code") + "-" + h.hexdigest()[:20]
        out = cache_dir() / (stem + (".asan" if self.sanitize else ".so"))
        if out.exists():
            return out
        src_name = str(self.path) if self.path else "<code>.cu"
        tu = (f'#include "{HEADER}"\n#line 1 "{src_name}"\n{fill_static_shared(self.code)}\n#line 1 "<cuda_emu generated>"\n'
              + generated_code(self.code, self.kernels)
              + (f'#include "{LAUNCHER}"\n' if self.sanitize else ""))
        fd, tmp_src = tempfile.mkstemp(suffix=".cpp", prefix=stem + ".", dir=cache_dir())
        with os.fdopen(fd, "w") as f:
            f.write(tu)
        tmp_out = tmp_src[:-4] + ".tmp"
        cmd = [cxx, *flags, *self.extra, *self.defines, *[f"-I{d}" for d in self.include_dirs],
               tmp_src, "-o", tmp_out]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"cuda_emu: g++ failed for {src_name}:\n{r.stderr}\ncommand: {shlex.join(cmd)}")
            os.replace(tmp_out, out)      # atomic: concurrent pytest workers may build the same file
        finally:
            for p in (tmp_src, tmp_out):
                if os.path.exists(p):
                    os.unlink(p)
        return out

    def get_function(self, name: str) -> "EmuFunction":
        if name not in self.kernels:
            raise AttributeError(f"no __global__ function {name!r} in module (found: {sorted(self.kernels)})")
        return EmuFunction(self, name, self.kernels[name])


class EmuFunction:
    """Callable like cupy.RawKernel: f(grid, block, args, shared_mem=0)."""

    def __init__(self, module: EmuModule, name: str, params: list[Param]):
        self.module, self.name, self.params = module, name, params
        self.order, self.seed = module.order, module.seed
        self._max_dyn = 0
        self._fn = None if module.sanitize else getattr(module._lib, f"__emu_launch_{name}")
        if self._fn is not None:
            self._fn.restype = ctypes.c_int
            self._fn.argtypes = [ctypes.POINTER(LaunchCfg), ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                                 ctypes.c_int]

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        return self._max_dyn

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, v):
        v = int(v)
        if not 0 <= v <= self.module.smem_limit:     # what cuFuncSetAttribute rejects on the device
            raise RuntimeError(f"{self.name}: max_dynamic_shared_size_bytes={v} exceeds the device limit "
                               f"{self.module.smem_limit}")
        self._max_dyn = v

    def _check(self, args) -> list:
        """Check each argument against its parameter; returns ctypes values (or arrays) in order."""
        if not isinstance(args, tuple):
            raise TypeError(f"{self.name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            raise TypeError(f"{self.name}: takes {len(self.params)} arguments "
                            f"({', '.join(p.text for p in self.params)}), got {len(args)}")
        out = []
        for p, a in zip(self.params, args):
            where = f"{self.name}: parameter {p.name!r} ({p.text})"
            if p.dtype == "unknown":
                raise TypeError(f"{where}: parameter type {p.ctype!r} is not supported by the emulator")
            if p.pointer:
                if not isinstance(a, np.ndarray):
                    raise TypeError(f"{where} needs a NumPy array, got {type(a).__name__}")
                if p.dtype is not None and a.dtype != np.dtype(p.dtype):
                    raise TypeError(f"{where} needs a {np.dtype(p.dtype)} array, got {a.dtype}")
                if not a.flags.c_contiguous:
                    raise ValueError(f"{where}: array is not C-contiguous (the kernel ignores strides; "
                                     f"pass np.ascontiguousarray(x))")
                if not p.const and not a.flags.writeable:
                    raise ValueError(f"{where}: array is read-only but the parameter is not const")
                out.append(a)
            else:
                if not isinstance(a, np.generic):   # (np.float64 subclasses float: test np.generic)
                    raise TypeError(f"{where} needs a NumPy scalar np.{np.dtype(p.dtype).name}(...), got "
                                    f"{type(a).__name__} {a!r} (on a GPU CuPy passes a Python int as long long "
                                    f"and a float as double)")
                if a.dtype != np.dtype(p.dtype):
                    raise TypeError(f"{where} needs np.{np.dtype(p.dtype).name}, got np.{a.dtype.name}")
                out.append(a)
        return out

    def _cfg(self, grid, block, shared_mem) -> LaunchCfg:
        g, b = _dim3(grid, "grid"), _dim3(block, "block")
        if not isinstance(shared_mem, (int, np.integer)) or shared_mem < 0:
            raise TypeError(f"shared_mem must be a non-negative int, got {shared_mem!r}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {sorted(ORDERS)}")
        cap = self._max_dyn if self._max_dyn else DEFAULT_SMEM
        if max(g + b) >= 2 ** 32 or min(g + b) < 0:
            raise RuntimeError(f"{self.name}: invalid configuration grid={g} block={b}")
        return LaunchCfg((ctypes.c_uint * 3)(*g), (ctypes.c_uint * 3)(*b), int(shared_mem), cap,
                         ORDERS[self.order], int(self.seed) & (2 ** 64 - 1), int(bool(self.module.fill_shared)))

    def __call__(self, grid, block, args, shared_mem=0):
        vals = self._check(args)
        cfg = self._cfg(grid, block, shared_mem)
        if self.module.sanitize:
            return self._run_sanitized(cfg, vals)
        keep, ptrs = [], []
        for p, a in zip(self.params, vals):
            v = ctypes.c_void_p(a.ctypes.data) if p.pointer else ctypes.create_string_buffer(a.tobytes(), 8)
            keep.append(v)
            ptrs.append(ctypes.addressof(v))
        argv = (ctypes.c_void_p * max(1, len(ptrs)))(*ptrs)
        err = ctypes.create_string_buffer(2048)
        rc = self._fn(ctypes.byref(cfg), argv, err, len(err))
        if rc != 0:
            raise RuntimeError(f"cuda_emu: {self.name}: {err.value.decode(errors='replace')}")

    @property
    def shared_areas(self) -> list[tuple[str, int, int]]:
        """[(name, byte offset, bytes)] of the shared-memory areas the last block of the latest launch named
        with CUDA_EMU_SHARED_AREA (in this process: not available with sanitize=True)."""
        if self.module.sanitize:
            raise RuntimeError("shared_areas: a sanitized launch runs in a child process; use sanitize=False")
        buf = ctypes.create_string_buffer(4096)
        self.module._lib.cuda_emu_shared_areas(buf, len(buf))
        return [(n, int(o), int(b)) for n, o, b in (line.split() for line in buf.value.decode().splitlines())]

    def _run_sanitized(self, cfg: LaunchCfg, vals):
        """One launch in a child process built with ASan/UBSan; arrays travel through files."""
        arrays = [(i, a) for i, (p, a) in enumerate(zip(self.params, vals)) if p.pointer]
        spans = sorted((a.ctypes.data, a.ctypes.data + a.nbytes, i) for i, a in arrays)
        regions = []                          # [start, end, [arg indices]]; overlapping arrays share one
        for s, e, i in spans:
            if regions and s < regions[-1][1]:
                regions[-1][1] = max(regions[-1][1], e)
                regions[-1][2].append(i)
            else:
                regions.append([s, e, [i]])
        region_of = {i: r for r, (_, _, idx) in enumerate(regions) for i in idx}
        with tempfile.TemporaryDirectory(prefix="cuda_emu_") as tmp:
            lines = [f"kernel {self.name}",
                     "cfg " + " ".join(str(x) for x in (*cfg.grid, *cfg.block, cfg.shared_mem, cfg.shared_mem_cap,
                                                        cfg.order, cfg.seed, cfg.fill_shared))]
            for r, (s, e, _) in enumerate(regions):
                fn = os.path.join(tmp, f"r{r}.bin")
                with open(fn, "wb") as f:
                    f.write(ctypes.string_at(s, e - s))
                lines.append(f"region {e - s} {fn}")
            for i, (p, a) in enumerate(zip(self.params, vals)):
                if p.pointer:
                    lines.append(f"arg p {region_of[i]} {a.ctypes.data - regions[region_of[i]][0]}")
                else:
                    lines.append(f"arg s {a.nbytes} {a.tobytes().hex()}")
            spec = os.path.join(tmp, "spec.txt")
            with open(spec, "w") as f:
                f.write("\n".join(lines) + "\n")
            env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0",
                       UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
            env.pop("LD_PRELOAD", None)
            r = subprocess.run([str(self.module.binary), spec], capture_output=True, text=True, env=env)
            if r.returncode != 0 or "runtime error:" in r.stderr or "ERROR: AddressSanitizer" in r.stderr:
                raise RuntimeError(f"cuda_emu (sanitized): {self.name} failed (exit {r.returncode}):\n{r.stderr}")
            for ri, (s, e, idx) in enumerate(regions):
                if any(not self.params[i].const for i in idx) and all(vals[i].flags.writeable for i in idx):
                    data = open(os.path.join(tmp, f"r{ri}.bin"), "rb").read()
                    ctypes.memmove(s, data, e - s)
