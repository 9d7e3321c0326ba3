"""The generated parts of docs/*.md: what the code and the committed measurements say, never typed by hand.

    python docs/generate.py            rewrite them (`make docs`)
    python docs/generate.py --check    change nothing; exit 1 naming every block that differs (the tests run this)

A generated block sits between two comment lines in the Markdown file,

    <!-- generated: NAME (docs/generate.py, `make docs`: edits inside are overwritten) -->
    ...
    <!-- end generated: NAME -->

and the text around it is written by hand. The blocks:

    docs/cli.md          cli-commands, cli-<command>: every command of `convngc` and every option of each, from
                         the argparse parsers themselves (convngc/cli.py, pictures.py, download.py,
                         experiments/reproduce.py), so a new option appears here on the next `make docs`
    docs/performance.md  perf-cpu, perf-picture-speed, perf-picture-quality, perf-residual: the tables and the
                         numbers read from them, from bench/results/*.json (what `make bench` and the
                         scripts in bench/ write with --json)
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)                 # a checkout without an install generates the same text

BEGIN = "<!-- generated: %s (docs/generate.py, `make docs`: edits inside are overwritten) -->"
END = "<!-- end generated: %s -->"
BLOCK = re.compile(r"^<!-- generated: (?P<name>[\w-]+) .*?-->\n(?P<body>.*?)^<!-- end generated: (?P=name) -->$",
                   re.M | re.S)


def fill(text, blocks, where):
    """`text` with the body of every generated block replaced by blocks[name]. A block in the file that no
    generator makes, or a generator's block missing from the file, is an error naming it."""
    found = []

    def sub(m):
        name = m.group("name")
        if name not in blocks:
            raise SystemExit("%s: block %r has no generator (docs/generate.py)" % (where, name))
        found.append(name)
        return "%s\n%s\n%s" % (BEGIN % name, blocks[name].strip("\n"), END % name)
    out = BLOCK.sub(sub, text)
    missing = [n for n in blocks if n not in found]
    if missing:
        raise SystemExit("%s: no place for the generated block(s) %s: add the lines\n%s\n%s"
                         % (where, ", ".join(missing), BEGIN % missing[0], END % missing[0]))
    return out


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def _num(x, digits=0):
    return "{:,.{d}f}".format(x, d=digits)


# ---------------------------------------------------------------------------------------------------------------
# docs/cli.md
# ---------------------------------------------------------------------------------------------------------------
def _parsers():
    """[(command, help line, parser)] for every command of `convngc`, in the order of `convngc --help`."""
    from convngc import cli, download, models
    from convngc.experiments import reproduce
    names = models.names
    models.names = lambda: []          # the shipped models of this checkout must not change the text
    try:
        main = cli.build_parser()
    finally:
        models.names = names
    sub = next(a for a in main._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    own = {"download": download.build_parser("convngc download"), "reproduce": reproduce.build_parser()}
    return main, [(name, helps.get(name, ""), own.get(name, p)) for name, p in sub.choices.items()]


def _invocation(action):
    """How an argument is written: `--tile TILE`, `--backend {numpy,cpu,cuda,cuda-emu}`, `IMAGE [IMAGE ...]`."""
    if action.metavar is not None:
        meta = action.metavar
    elif action.choices is not None:
        meta = "{%s}" % ",".join(map(str, action.choices))
    else:
        meta = action.dest.upper() if action.option_strings else action.dest
    if action.nargs == 0:
        arg = ""
    elif action.nargs == "+":
        arg = "%s [%s ...]" % (meta, meta)
    elif action.nargs == "*":
        arg = "[%s ...]" % meta
    elif action.nargs == "?":
        arg = "[%s]" % meta
    elif action.nargs == argparse.REMAINDER:
        arg = "..."
    else:
        arg = meta
    if not action.option_strings:
        return arg
    return ", ".join(action.option_strings) + (" " + arg if arg else "")


def _help(parser, action):
    text = action.help or ""
    if "%" in text:
        text = parser._get_formatter()._expand_help(action)
    return text


def _options_table(parser):
    rows = ["| argument | what it does |", "|---|---|"]
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction) or a.help == argparse.SUPPRESS:
            continue
        rows.append("| `%s` | %s |" % (_invocation(a).replace("|", "\\|"), _cell(_help(parser, a))))
    return rows


def cli_blocks():
    main, commands = _parsers()
    blocks = {"cli-commands": "\n".join(
        ["| command | what it does |", "|---|---|"]
        + ["| [`convngc %s`](#convngc-%s) | %s |" % (name, name, _cell(text)) for name, text, _ in commands]
        + ["", _cell(main.epilog)])}
    for name, text, p in commands:
        what = _cell(p.description or text)
        lines = [what[:1].upper() + what[1:] + ("" if what.endswith(".") else ".")]
        if any(not isinstance(a, argparse._HelpAction) for a in p._actions):
            lines += [""] + _options_table(p)
        else:
            lines += ["", "No options."]
        if p.epilog and p.epilog != main.epilog:
            lines += ["", _cell(p.epilog)]
        blocks["cli-%s" % name] = "\n".join(lines)
    return blocks


def options_of_every_command():
    """{command: [every option string]}: what docs/cli.md must list (tests/app/test_docs.py)."""
    return {name: [s for a in p._actions for s in a.option_strings if not isinstance(a, argparse._HelpAction)]
            for name, _, p in _parsers()[1]}


# ---------------------------------------------------------------------------------------------------------------
# docs/performance.md
# ---------------------------------------------------------------------------------------------------------------
def _load(pattern):
    return [(os.path.relpath(p, REPO), json.load(open(p))) for p in sorted(glob.glob(os.path.join(REPO, pattern)))]


def _load_avg(d):
    return "load average %.1f-%.1f before, %.1f-%.1f after" % (min(d["load_before"]), max(d["load_before"]),
                                                              min(d["load_after"]), max(d["load_after"]))


def _span(values, fmt="%.1f", unit=""):
    lo, hi = min(values), max(values)
    return (fmt % lo + unit) if fmt % lo == fmt % hi else (fmt % lo + "-" + fmt % hi + unit)


def perf_cpu(files):
    if not files:
        return "No `bench/results/cpu-*.json` is committed: `make bench` prints the table, `--json` keeps it."
    out = []
    for path, d in files:
        rows = d["rows"]
        mm = d["matmul_gflops"]
        key = {(r["batch"], r["step"], r["backend"], r["threads"]): r for r in rows}
        order = {"cpu": 0, "torch": 1, "numpy": 2}
        names = {"cpu": "cpu", "torch": "PyTorch", "numpy": "numpy"}
        out += ["From `%s` (%s; NumPy's float32 matmul reached %.1f GFLOP/s in the same run; %.2f useful MFLOP "
                "per image-step):" % (path, _load_avg(d), mm, d["useful_mflop_per_image_step"]), "",
                "| B | step | backend | threads | image-steps/s | useful GFLOP/s | × PyTorch, same threads | "
                "% of matmul |", "|---|---|---|---|---|---|---|---|"]
        for r in sorted(rows, key=lambda r: (r["batch"], r["step"], r["threads"] or 1e9, order[r["backend"]])):
            torch = key.get((r["batch"], r["step"], "torch", r["threads"]))
            ratio = ("1" if r["backend"] == "torch" else "%.1f" % (r["image_steps_per_s"] / torch["image_steps_per_s"])
                     ) if torch else ""
            backend = names[r["backend"]] + (" (T = %d)" % r["T"] if r["backend"] == "numpy" else "")
            out.append("| %d | %s | %s | %s | %s | %.1f | %s | %.1f%% |" % (
                r["batch"], r["step"], backend, r["threads"] or "BLAS", _num(r["image_steps_per_s"]), r["gflops"],
                ratio, 100 * r["gflops"] / mm))
        threads = sorted({r["threads"] for r in rows if r["threads"]})
        out += [""]
        for n in threads:
            ratios = [r["image_steps_per_s"] / key[(r["batch"], r["step"], "torch", n)]["image_steps_per_s"]
                      for r in rows if r["backend"] == "cpu" and r["threads"] == n
                      and (r["batch"], r["step"], "torch", n) in key]
            if ratios:
                out.append("- cpu against PyTorch eager, %d thread%s: %sx (settle and training step, every batch)."
                           % (n, "" if n == 1 else "s", _span(ratios)))
        for name in ("cpu", "torch", "numpy"):
            sel = [100 * r["gflops"] / mm for r in rows if r["backend"] == name
                   and (r["threads"] in (None, threads[-1] if threads else None))]
            if sel:
                out.append("- %s%s: %s of the matmul rate in useful FLOPs." % (
                    names[name], " on %d threads" % threads[-1] if name != "numpy" and threads else
                    " (NumPy's BLAS threads)", _span(sel, unit="%")))
        if d.get("epoch_seconds"):
            out.append("- One CIFAR-10 epoch (45,000 images, batch 500, T = 60) on the cpu backend: %.1f s of wall "
                       "time measured (`python bench/cpu_bench.py --epoch`), %.1f s estimated from the training-step "
                       "row." % (d["epoch_seconds"], d["epoch_estimate_seconds"]))
        if d.get("compile_seconds"):
            out.append("- Numba's compile time: %.1f s for the first settle and filter update in a fresh cache "
                       "(float32), %.1f s to load them from the cache in a later process." % tuple(d["compile_seconds"]))
        out.append("")
    return "\n".join(out)


def perf_picture_speed(files):
    if not files:
        return "No `bench/results/picture-speed-*.json` is committed."
    out = []
    for path, d in files:
        out += ["From `%s` (%s):" % (path, _load_avg(d)), "",
                "| task | backend | method | T | π0 | momentum | tiles | seconds | Mpx-steps/s | how |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in d["speed"]:                      # files made before momentum: plain steps
            out.append("| %s | %s | %s | %d | %g | %g | %d | %.1f | %.2f | %s |" % (
                r["task"], r["backend"], _cell(r["method"]), r["T"], r["pi0"], r.get("momentum", 0.0), r["tiles"],
                r["seconds"], r["megapixel_steps_per_s"], _cell(r["note"]) or "timed in full"))
        out.append("")
    return "\n".join(out)


def perf_picture_quality(files):
    if not files:
        return "No `bench/results/picture-quality-*.json` is committed."
    out = []
    for path, d in files:
        groups = {}
        for q in d["quality"]:
            groups.setdefault((q["method"], q["tile"], q["overlap"]), []).append(q)
        photos = sorted({q["photo"] for q in d["quality"]})
        noisy = statistics.mean(q["noisy_psnr"] for q in d["quality"] if q["method"] == "whole")
        out += ["From `%s` (%s): the mean over %d crops (%s); the noisy inputs average %.2f dB." % (
                path, _load_avg(d), len(photos), ", ".join(photos), noisy), "",
                "| method | reconstruction PSNR | \\|out − whole\\| | seam ratio | time | denoising PSNR | "
                "\\|out − whole\\| | seam ratio | time |", "|---|---|---|---|---|---|---|---|---|"]
        for (method, tile, overlap), qs in groups.items():
            label = "whole map" if method == "whole" else "tiles %d, %s" % (
                tile, "overlap %d" % overlap if overlap else "no overlap")
            cells = []
            for task in ("reconstruct", "denoise"):
                cells += ["%.2f dB" % statistics.mean(q[task]["psnr"] for q in qs),
                          "%.2f" % statistics.mean(q[task]["diff"] for q in qs) if method != "whole" else "0",
                          "%.2f" % statistics.mean(q[task]["seam"] for q in qs) if method != "whole" else "1",
                          "%.1f s" % sum(q[task]["seconds"] for q in qs)]
            out.append("| %s | %s |" % (label, " | ".join(cells)))
        out.append("")
    return "\n".join(out)


def perf_residual(files):
    if not files:
        return ("No `bench/results/residual-*.json` is committed yet: `python bench/residual_bench.py --json "
                "bench/results/residual-<machine>.json` writes one, and `make docs` tables it here.")
    out = []
    for path, d in files:
        B, T, flops = d["batch"], d["T"], d["useful_mflop_per_image_step"] * 1e6
        ref = next(r for r in d["rows"] if r["backend"] == "numpy")
        ref_train = (ref["settle_seconds"] + ref["learn_seconds"]) / B
        out += ["From `%s` (%s; batch %d, T = %d, %.1f useful MFLOP per image-step):" % (
                path, _load_avg(d), B, T, flops / 1e6), "",
                "| backend | threads | settle, image-steps/s | useful GFLOP/s | training step, s per image | "
                "× reference |", "|---|---|---|---|---|---|"]
        for r in d["rows"]:
            if r["backend"] == "plain":
                continue
            rate = B * T / r["settle_seconds"]
            train = (r["settle_seconds"] + r["learn_seconds"]) / B
            out.append("| %s | %s | %s | %.1f | %.3f | %.1f |" % (
                "numpy (reference, extrapolated from T = 2 and 6)" if r["backend"] == "numpy" else r["backend"],
                r["threads"] or "BLAS", _num(rate), rate * flops / 1e9, train, ref_train / train))
        for r in d["rows"]:
            if r["backend"] == "plain":
                cpu = next(c for c in d["rows"] if c["backend"] == "cpu" and c["threads"] == r["threads"])
                out.append("\nPlain Conv-NGC on the cpu backend in the same run, %d thread%s: %s image-steps/s; a "
                           "residual settle costs %.1fx a plain one." % (
                               r["threads"], "" if r["threads"] == 1 else "s", _num(B * T / r["settle_seconds"]),
                               cpu["settle_seconds"] / r["settle_seconds"]))
        out.append("")
    return "\n".join(out)


def performance_blocks():
    return {"perf-cpu": perf_cpu(_load("bench/results/cpu-*.json")),
            "perf-picture-speed": perf_picture_speed(_load("bench/results/picture-speed-*.json")),
            "perf-picture-quality": perf_picture_quality(_load("bench/results/picture-quality-*.json")),
            "perf-residual": perf_residual(_load("bench/results/residual-*.json"))}


DOCS = {"cli": ("docs/cli.md", cli_blocks), "performance": ("docs/performance.md", performance_blocks)}


def main(argv=None):
    ap = argparse.ArgumentParser(description="Rewrite the generated blocks of docs/*.md.")
    ap.add_argument("docs", nargs="*", metavar="PAGE", help="%s (default: all)" % " or ".join(sorted(DOCS)))
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page differs")
    args = ap.parse_args(argv)
    unknown = [d for d in args.docs if d not in DOCS]
    if unknown:
        ap.error("unknown page %s: choose from %s" % (", ".join(unknown), ", ".join(sorted(DOCS))))
    stale = []
    for name in args.docs or sorted(DOCS):
        rel, make = DOCS[name]
        path = os.path.join(REPO, rel)
        with open(path, encoding="utf-8") as f:
            old = f.read()
        new = fill(old, make(), rel)
        if new == old:
            continue
        if args.check:
            stale.append(rel)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
            print("wrote %s" % rel)
    if stale:
        print("stale: %s; run `make docs` and commit the result" % ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
