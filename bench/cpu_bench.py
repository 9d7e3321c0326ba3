"""CPU speed of Conv-NGC: the cpu backend (ngc_cpu) against PyTorch eager and the NumPy reference, in one process.

    python bench/cpu_bench.py                  # the table (~3 minutes on 2 cores)
    python bench/cpu_bench.py --epoch          # also time one real CIFAR-10 training epoch on the cpu backend
    python bench/cpu_bench.py --quick          # one repeat, batch 100 only (a smoke run)

It ends with the beta schedule's cost: one stability check against the 50 training updates it watches
(target: under 5% of training time).

Paper configuration (channels 10, 15, 20, 25, 3; 32x32; 3x3, stride 2; T = 60), float32, random N(0, 0.1)
filters and random images (the work does not depend on the data). For batch 100 and 500:
  settle     Algorithm 1: ancestral pass, T synchronous steps, the final predictions and errors
  train      one training step: settle + filter updates (dW, db) + Adam + kernel-norm projection
for   cpu    ngc_cpu.model / ngc_cpu.optim
      torch  bench/torch_ngc.py, eager PyTorch on the CPU, when installed
      numpy  ngc_ref, the literal reference, timed on T = 10 steps to keep the run short (per image-step its
             rate does not depend on T), for information (NumPy/BLAS threads as they are)
cpu and torch run with 1 thread and with all CPUs (--threads): on a machine that other processes load, the
one-thread ratio is the steadier one (PyTorch's OpenMP threads wait for each other when a core is taken).
Each measurement is repeated, the backends interleaved (other processes load a shared machine unevenly),
and the median is reported; the load average is printed before and after.
Columns: image-steps/s = B * T / seconds; useful GFLOP/s = that times 2.04 MFLOP per image-step (two
convolutions per layer pair, the zeros of a dilation not counted); the ratio to PyTorch; the share of a
float32 NumPy matmul measured in the same run. The epoch estimate is 90 training steps of batch 500
(45,000 CIFAR-10 training images, 5,000 held out).
"""
import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ngc_ref import model as ref_model, optim as ref_optim  # noqa: E402
from ngc_ref.config import Config  # noqa: E402

EPOCH_IMAGES, EPOCH_BATCH = 45_000, 500


def useful_flops_per_image_step(cfg):
    """4 * sum_l C_l * C_{l-1} * K*K * H_l * W_l: one transposed and one strided convolution per layer pair."""
    C, K = cfg.layer_channels, cfg.kernel
    return 4 * sum(C[l] * C[l - 1] * K * K * int(np.prod(cfg.map_hw(l))) for l in range(1, cfg.L + 1))


def matmul_gflops(n=2048, repeats=5):
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def _torch():
    try:
        import torch
    except ImportError:
        return None, None
    spec = importlib.util.spec_from_file_location("torch_ngc", ROOT / "bench" / "torch_ngc.py")
    tn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tn)
    return torch, tn


def make_runners(cfg, B, rng):
    """{backend: {"settle": f, "train": f}}, each f() doing one full measurement unit on fresh copies."""
    params = ref_model.init_params(cfg, rng)
    x = rng.random((B, 3, 32, 32), dtype=np.float32)
    z_top = ref_model.draw_top(cfg, B, rng)
    runners = {}

    import ngc_cpu
    from ngc_cpu import model as cm, optim as co
    p_cpu = {k: None if v is None else [None if a is None else a.copy() for a in v] for k, v in params.items()}
    s_cpu = co.init_state(p_cpu)

    def cpu_train():
        res = cm.settle(p_cpu, x, cfg, z_top)
        co.step(p_cpu, cm.filter_updates(res, p_cpu, cfg), s_cpu, cfg)
    runners["cpu"] = {"settle": lambda: cm.settle(params, x, cfg, z_top), "train": cpu_train, "T": cfg.T,
                      "set_threads": ngc_cpu.set_num_threads}

    torch, tn = _torch()
    if torch is not None:
        tp = tn.to_torch(params)
        tx, tz = torch.as_tensor(x), torch.as_tensor(z_top)
        opt = tn.Optimizer(tp, cfg)
        runners["torch"] = {"settle": lambda: tn.settle(tp, tx, cfg, tz), "train": lambda: tn.train_step(tp, opt, tx, cfg, tz),
                            "T": cfg.T, "set_threads": torch.set_num_threads}

    T_ref = min(cfg.T, 10)
    p_ref = {k: None if v is None else [None if a is None else a.copy() for a in v] for k, v in params.items()}
    s_ref = ref_optim.init_state(p_ref)

    def ref_train():
        res = ref_model.settle(p_ref, x, cfg, z_top, T=T_ref)
        ref_optim.step(p_ref, ref_model.filter_updates(res, p_ref, cfg), s_ref, cfg)
    runners["numpy"] = {"settle": lambda: ref_model.settle(params, x, cfg, z_top, T=T_ref), "train": ref_train,
                        "T": T_ref, "set_threads": None}
    return runners


def time_once(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def compile_seconds():
    """Numba's compile time for a first settle + filter update, in a fresh process with an empty cache, and
    the load time from the then-warm cache in a second fresh process."""
    code = ("import time; t = time.perf_counter(); import numpy as np; from ngc_cpu import model as m; "
            "from ngc_ref.config import Config; from ngc_ref import model as r; c = Config(T=2); "
            "g = np.random.default_rng(0); p = r.init_params(c, g); x = g.random((2, 3, 32, 32), dtype=np.float32); "
            "s = m.settle(p, x, c, r.draw_top(c, 2, g)); m.filter_updates(s, p, c); print(time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        out = [float(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                    text=True).stdout.strip()) for _ in range(2)]
    return out


def real_epoch(limit=None, log=print):
    """One training epoch of the cpu backend on CIFAR-10 (45,000 images after the held-out split, batch
    500, T = 60, Adam 1e-3), from ../shared/data or $CONVNGC_DATA_DIR. Returns seconds, or None without data."""
    from convngc import data
    from convngc.model import ConvNGC
    try:
        x, _ = data.load_dataset("cifar10", "train", limit=limit)
    except data.DataError as exc:
        log("real epoch skipped: %s" % exc)
        return None
    x = data.to_model(x)
    import ngc_cpu
    ngc_cpu.set_num_threads(len(os.sched_getaffinity(0)))
    model = ConvNGC(Config(), "cpu", seed=0)
    model.learn(x[:EPOCH_BATCH], T=2)                         # compile / load the kernels outside the timing
    order = np.random.default_rng(0).permutation(len(x))
    t = time.perf_counter()
    for k in range(0, len(x), EPOCH_BATCH):
        model.learn(x[order[k:k + EPOCH_BATCH]])
    seconds = time.perf_counter() - t
    log("real CIFAR-10 epoch, cpu backend: %d images, batch %d, T=60: %.1f s" % (len(x), EPOCH_BATCH, seconds))
    return seconds


def schedule_overhead(T=60, batch=100, repeats=3, log=print):
    """The beta schedule's cost (convngc/schedule.py): one check (the settle's eigenvalue on 20 images, the probe
    MSE on 200, the layer gains) against the `check_every` training updates of batch `batch` it watches, on the
    cpu backend at settling length T. Returns the check's share of training time."""
    from convngc import schedule
    from convngc.model import ConvNGC
    cfg = Config(T=T, beta=0.1 * 60 / T, gamma=0.001 * 60 / T)
    rng = np.random.default_rng(0)
    x = rng.random((batch, 3, 32, 32), dtype=np.float32)
    probe = rng.random((schedule.ScheduleOptions.probe, 3, 32, 32), dtype=np.float32)
    model = ConvNGC(cfg, "cpu", seed=0)
    every = schedule.ScheduleOptions.check_every
    sched = schedule.BetaSchedule(schedule.ScheduleOptions(mode="fixed", check_every=1), cfg, probe, log=lambda *_: None)
    sched.start(model)
    model.learn(x)
    sched.after_update(model, 1, 1.0)                       # warm-up: compile, first touch
    learn = statistics.median(time_once(lambda: model.learn(x)) for _ in range(repeats))
    check = statistics.median(time_once(lambda: sched.after_update(model, 1, 1.0)) for _ in range(repeats))
    share = check / (check + every * learn)
    log("beta schedule, T=%d: one check %.2f s, %d updates of batch %d %.1f s: %.1f%% of training time"
        % (T, check, every, batch, every * learn, 100 * share))
    return {"T": T, "check_seconds": check, "update_seconds": learn, "check_every": every, "share": share}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats per measurement (median reported)")
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts for cpu and torch "
                    "(default: 1 and all CPUs)")
    ap.add_argument("--quick", action="store_true", help="batch 100, one repeat, no compile-time measurement")
    ap.add_argument("--epoch", action="store_true", help="also time one real CIFAR-10 epoch on the cpu backend")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    ap.add_argument("--no-picture", action="store_true", help="skip the 512x768 photograph (bench/picture_bench.py)")
    ap.add_argument("--picture-model", default=None, help="the model of the photograph rows: a shipped name, run "
                    "folder or checkpoint (default: cifar10 when shipped, else the paper's configuration)")
    args = ap.parse_args(argv)
    if args.quick:
        args.batches, args.repeats = [100], 1
    cfg = Config()
    flops = useful_flops_per_image_step(cfg)
    threads = args.threads or sorted({1, len(os.sched_getaffinity(0))})
    load0 = os.getloadavg()
    print("machine: %d CPUs (%s); load average %.1f %.1f %.1f; NumPy %s" % (
        os.cpu_count(), _cpu_name(), *load0, np.__version__))
    compile_s = None if args.quick else compile_seconds()
    if compile_s:
        print("numba compile (cold cache, first settle + filter update, fresh process): %.1f s; "
              "from the warm cache: %.1f s" % tuple(compile_s))
    mm = [matmul_gflops()]
    rows = {}
    for B in args.batches:
        runners = make_runners(cfg, B, np.random.default_rng(B))
        plan = [(name, n) for name, r in runners.items() for n in (threads if r["set_threads"] else [None])]
        for name, n in plan:                                  # warm-up: compile, first touch, thread pools
            if n:
                runners[name]["set_threads"](n)
            runners[name]["settle"]()
            runners[name]["train"]()
        times = {(name, n, what): [] for name, n in plan for what in ("settle", "train")}
        for _ in range(args.repeats):
            for what in ("settle", "train"):
                for name, n in plan:
                    if n:
                        runners[name]["set_threads"](n)
                    times[(name, n, what)].append(time_once(runners[name][what]))
        for (name, n, what), ts in times.items():
            sec = statistics.median(ts)
            rate = B * runners[name]["T"] / sec
            rows[(B, what, name, n)] = {"seconds": sec, "all_seconds": ts, "T": runners[name]["T"],
                                        "image_steps_per_s": rate, "gflops": rate * flops / 1e9, "threads": n}
    mm.append(matmul_gflops())
    mm = max(mm)
    load1 = os.getloadavg()
    torch, _ = _torch()
    print("float32 NumPy matmul (2048^2), best in this run: %.1f GFLOP/s" % mm)
    if torch is None:
        print("PyTorch is not installed: no torch column (pip install torch, a CPU build, to compare)")
    print()
    print("| B | step | backend | threads | T | median s | image-steps/s | useful GFLOP/s | x PyTorch | % of matmul |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    order = {"cpu": 0, "torch": 1, "numpy": 2}
    for (B, what, name, n), r in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3] or 1e9, order[kv[0][2]])):
        ref = rows.get((B, what, "torch", n))
        ratio = "%.2f" % (r["image_steps_per_s"] / ref["image_steps_per_s"]) if ref else "-"
        print("| %d | %s | %s | %s | %d | %.3f | %s | %.1f | %s | %.1f%% |" % (
            B, what, name, n or "BLAS", r["T"], r["seconds"], "{:,.0f}".format(r["image_steps_per_s"]),
            r["gflops"], ratio, 100 * r["gflops"] / mm))
    out = {"load_before": load0, "load_after": load1, "matmul_gflops": mm, "compile_seconds": compile_s,
           "useful_mflop_per_image_step": flops / 1e6,
           "rows": [dict(batch=B, step=w, backend=name, **r) for (B, w, name, n), r in rows.items()]}
    if (EPOCH_BATCH, "train", "cpu", max(threads)) in rows:
        est = EPOCH_IMAGES / EPOCH_BATCH * rows[(EPOCH_BATCH, "train", "cpu", max(threads))]["seconds"]
        print("\nCIFAR-10 epoch estimate, cpu backend, %d threads (90 training steps of batch 500, T=60): %.0f s"
              % (max(threads), est))
        out["epoch_estimate_seconds"] = est
    if args.epoch:
        out["epoch_seconds"] = real_epoch()
    print()
    out["schedule_overhead"] = [schedule_overhead(T) for T in ((60,) if args.quick else (60, 120, 240))]
    if not args.no_picture:                      # one 512x768 RGB photograph, denoise and reconstruct
        sys.path.insert(0, str(ROOT / "bench"))
        import picture_bench
        print()
        out["picture"] = picture_bench.speed(args.picture_model, repeats=1 if args.quick else args.repeats)
    print("load average after: %.1f %.1f %.1f" % load1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
