"""Compile every kernels/*.cu for real GPU targets with NVRTC (no GPU needed) and report resources.

    python -m ngc_cuda.compile_check                              # sm_80 + sm_90, print the table
    python -m ngc_cuda.compile_check --write kernels/RESOURCES.md # also write it (+ kernels/resources.json)
    python -m ngc_cuda.compile_check --check                      # fail if kernels/resources.json is stale

Exits 1 on a compile error or on any register spill (spill stores/loads > 0 bytes).
A kernel file can ask to be compiled with -D values (one variant per line), e.g.
    // compile-check: TILE=16 K=3
Uses the same options as the GPU backend (ngc_cuda._load.compile_options).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ngc_cuda._load import CompileError, compile_nvrtc, kernel_dir, nvrtc_backend, parse_ptxas

VARIANT = re.compile(r"^\s*//\s*compile-check:\s*(.*)$", re.M)
FIELDS = ("registers", "smem_bytes", "stack", "spill_stores", "spill_loads", "cmem")


def variants(src: str) -> list[dict]:
    """-D sets requested by `// compile-check: A=1 B` lines; one empty set when there are none."""
    out = []
    for line in VARIANT.findall(src):
        d = {}
        for tok in line.split():
            k, _, v = tok.partition("=")
            d[k] = v if v else None
        out.append(d)
    return out or [{}]


def check_all(archs, files=None):
    """-> (rows, errors): one row per (file, defines, kernel, arch)."""
    rows, errors = [], []
    for path in files or sorted(kernel_dir().glob("*.cu")):
        for defines in variants(path.read_text()):
            dtext = " ".join(k if v is None else f"{k}={v}" for k, v in sorted(defines.items()))
            for arch in archs:
                try:
                    _, log = compile_nvrtc(path, arch, defines)
                except CompileError as e:
                    errors.append(f"{path.name} [{arch}] {dtext}\n{e.log}")
                    continue
                for r in parse_ptxas(log):
                    rows.append(dict(file=path.name, defines=dtext, **r))
    return rows, errors


def markdown(rows, nvrtc_version) -> str:
    lines = [f"# Kernel resources (NVRTC {nvrtc_version}, `python -m ngc_cuda.compile_check --write kernels/RESOURCES.md`)",
             "", "Generated: do not edit. Registers per thread, static shared memory per block, stack frame and spill",
             "bytes per thread, as ptxas reports them (cmem: constant bank 0; ptxas does not print it for sm_90).", "",
             "| file | defines | kernel | arch | registers | smem (B) | stack (B) | spill st/ld (B) | cmem (B) |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        cmem = "" if r["cmem"] is None else r["cmem"]
        lines.append(f"| {r['file']} | {r['defines']} | {r['kernel']} | {r['arch']} | {r['registers']} | "
                     f"{r['smem_bytes']} | {r['stack']} | {r['spill_stores']}/{r['spill_loads']} | {cmem} |")
    if not rows:
        lines.append("| (no kernels) | | | | | | | | |")
    return "\n".join(lines) + "\n"


def _key(r):
    return (r["file"], r["defines"], r["kernel"], r["arch"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ngc_cuda.compile_check", description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["sm_80", "sm_90"])
    ap.add_argument("--write", metavar="MD", help="write the markdown table here and resources.json beside it")
    ap.add_argument("--check", action="store_true", help="fail if kernels/resources.json differs from this build")
    ap.add_argument("files", nargs="*", type=Path, help="kernel files (default: every kernels/*.cu)")
    a = ap.parse_args(argv)
    # `--arch sm_90 file.cu`: nargs="+" swallows the file; hand non-arch words back to files
    a.files += [Path(x) for x in a.arch if not re.fullmatch(r"(sm|compute)_\d+[a-z]?", x)]
    a.arch = [x for x in a.arch if re.fullmatch(r"(sm|compute)_\d+[a-z]?", x)] or ["sm_80", "sm_90"]
    binding, _, version = nvrtc_backend()
    rows, errors = check_all(a.arch, a.files or None)
    if not a.check:                     # with --check the table is printed only when something is wrong
        print(markdown(rows, version), end="")
    status = 0
    for e in errors:
        print(f"\nCOMPILE ERROR {e}", file=sys.stderr)
        status = 1
    for r in rows:
        if r["spill_stores"] or r["spill_loads"]:
            print(f"SPILL {r['file']} {r['kernel']} [{r['arch']}] {r['defines']}: "
                  f"{r['spill_stores']} B stores, {r['spill_loads']} B loads", file=sys.stderr)
            status = 1
    doc = {"nvrtc": version, "archs": a.arch, "kernels": rows}
    if a.write:
        md = Path(a.write)
        md.write_text(markdown(rows, version))
        (md.parent / "resources.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {md} and {md.parent / 'resources.json'}")
    if a.check:
        committed = kernel_dir() / "resources.json"
        if not committed.is_file():
            print(f"STALE: {committed} does not exist; run with --write {kernel_dir() / 'RESOURCES.md'}", file=sys.stderr)
            return 1
        old = json.loads(committed.read_text())
        old_rows = {_key(r): r for r in old.get("kernels", []) if r.get("arch") in a.arch}
        new_rows = {_key(r): r for r in rows}
        diffs = [f"  {' '.join(k)}: only in {'committed' if k in old_rows else 'this build'}"
                 for k in sorted(set(old_rows) ^ set(new_rows))]
        for k in sorted(set(old_rows) & set(new_rows)):
            changed = [f"{f} {old_rows[k].get(f)} -> {new_rows[k].get(f)}" for f in FIELDS
                       if old_rows[k].get(f) != new_rows[k].get(f)]
            if changed:
                diffs.append(f"  {' '.join(k)}: {', '.join(changed)}")
        if diffs:
            note = f" (committed with NVRTC {old.get('nvrtc')}, this is {version})" if old.get("nvrtc") != version else ""
            print(f"STALE: {committed} differs from this build{note}:\n" + "\n".join(diffs), file=sys.stderr)
            status = 1
        if status:
            print(markdown(rows, version), end="")
        else:
            print(f"compile check: {len({(r['file'], r['kernel']) for r in rows})} kernels compiled for "
                  f"{', '.join(a.arch)} with NVRTC {version}, no spills; {committed} is up to date")
    return status


if __name__ == "__main__":
    sys.exit(main())
