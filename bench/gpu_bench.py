"""GPU benchmark: Conv-NGC settling and training, our CUDA kernels against eager PyTorch (cuDNN).

    python bench/gpu_bench.py                    # full run (~1-2 min on an H100), writes bench/results/<card>.json
    python bench/gpu_bench.py --out DIR --quick  # fewer repetitions and a shorter epoch
    python bench/gpu_bench.py --smoke            # one tiny settle through every path, checked (for compute-sanitizer)

What is timed (paper configuration: channels 10,15,20,25,3; 32x32; 3x3 filters, stride 2; T = 60):
  settle  B = 100 and 500, ancestral pass + 60 steps + the final recompute, after warm-up, CUDA events:
            ours/whole   kernels/ngc_settle.cu (one launch; block sizes 256/512/1024 swept, best reported)
            ours/step    the per-step kernels (ngc_cuda.model.settle(..., kernel=<per-step>))
            torch/fp32   bench/torch_ngc.py, eager, cuDNN, TF32 off (the like-for-like baseline)
            torch/tf32   the same with TF32 allowed (PyTorch's default for cuDNN convolutions), for reference
  epoch   45,000 images in batches of 500 (90 batches): settle + filter updates + Adam + projection,
            ours (model.settle kernel="auto", i.e. the whole-settle kernel when it fits) and torch/fp32.
Reported: ms, image-steps/s (B*T / time), speedup over torch/fp32, and the share of the FP32 floor:
  FLOPs per image-step = 4 * sum_l C_l C_{l-1} K^2 H_l W_l  (Eq. 1's transposed conv + Eq. 2's strided conv,
  2 FLOPs per multiply-add, H_l W_l the upper layer's map) = 2,037,600 for the paper's configuration;
  floor = FLOPs / peak FP32 FLOP/s (table by device name, else a measured cuBLAS SGEMM).
Before timing, every path's settle is checked against the others (and a B=2 slice against ngc_ref in float64).
"""
import argparse
import json
import math
import pathlib
import platform
import re
import sys
import time
import traceback

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ngc_ref import model as ref_model          # noqa: E402
from ngc_ref.config import Config                # noqa: E402

# peak dense FP32 (non-tensor-core) TFLOP/s by device name; first match wins
PEAK_FP32_TFLOPS = [
    (r"H200", 67.0), (r"H100.*PCIe", 51.0), (r"H100.*NVL", 60.0), (r"H100", 67.0), (r"GH200", 67.0),
    (r"A100", 19.5), (r"A10G", 31.2), (r"L40S", 91.6), (r"L4\b", 30.3), (r"V100", 15.7),
]

FAILURES = []


def section(name):
    """Run a benchmark section; a failure is recorded (and makes the exit code 1), the rest still runs."""
    def deco(fn):
        def run(*a, **kw):
            t0 = time.time()
            try:
                out = fn(*a, **kw)
                print("[%s] done in %.1f s" % (name, time.time() - t0), flush=True)
                return out
            except Exception:
                tb = traceback.format_exc()
                print("[%s] FAILED:\n%s" % (name, tb), file=sys.stderr, flush=True)
                FAILURES.append({"section": name, "error": tb})
                return None
        return run
    return deco


def flops_per_image_step(cfg):
    """4 * sum_l C_l C_{l-1} K^2 H_l W_l: one transposed conv (Eq. 1) + one strided conv (Eq. 2) per layer pair."""
    C, K = cfg.layer_channels, cfg.kernel
    return 4 * sum(C[l] * C[l - 1] * K * K * int(np.prod(cfg.map_hw(l))) for l in range(1, cfg.L + 1))


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def peak_fp32(cp, name):
    """(TFLOP/s used for the floor, where it came from, measured SGEMM TFLOP/s)."""
    n = 8192
    a = cp.random.random((n, n), dtype=cp.float32)
    b = cp.random.random((n, n), dtype=cp.float32)
    for _ in range(2):
        a @ b
    ev0, ev1 = cp.cuda.Event(), cp.cuda.Event()
    ev0.record()
    reps = 5
    for _ in range(reps):
        a @ b
    ev1.record()
    ev1.synchronize()
    measured = 2 * n ** 3 * reps / (cp.cuda.get_elapsed_time(ev0, ev1) * 1e-3) / 1e12
    for pat, tf in PEAK_FP32_TFLOPS:
        if re.search(pat, name):
            return tf, "table (%s)" % pat, measured
    return measured, "measured SGEMM 8192^3 (no table entry)", measured


def timed(sync_record, fn, min_time=0.5, max_iters=50, warmup=2):
    """Mean ms per call with events after warm-up; iterations sized to ~min_time seconds."""
    for _ in range(warmup):
        fn()
    t = sync_record(None)
    fn()
    est = sync_record(t)
    iters = int(min(max_iters, max(3, math.ceil(min_time * 1e3 / max(est, 1e-3)))))
    t = sync_record(None)
    for _ in range(iters):
        fn()
    return sync_record(t) / iters, iters


def cupy_clock(cp):
    def rec(start):
        if start is None:
            ev = cp.cuda.Event()
            ev.record()
            return ev
        ev = cp.cuda.Event()
        ev.record()
        ev.synchronize()
        return cp.cuda.get_elapsed_time(start, ev)
    return rec


def torch_clock(torch):
    def rec(start):
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        if start is None:
            return ev
        ev.synchronize()
        return start.elapsed_time(ev)
    return rec


def problem(cfg, B, seed=0):
    rng = np.random.default_rng(seed)
    p = ref_model.init_params(cfg, rng)
    p["b"] = [None] + [(0.1 * rng.standard_normal(b.shape)).astype(np.float32) for b in p["b"][1:]]
    p["E"] = None
    x = rng.random((B, cfg.layer_channels[0]) + cfg.map_hw(0), dtype=np.float32)
    return p, x, ref_model.draw_top(cfg, B, rng)


def to_cupy(cp, p):
    return {k: None if v is None else [None if a is None else cp.asarray(a) for a in v] for k, v in p.items()}


def step_kernel_name(ngc_model):
    """The value of ngc_cuda.model.settle's `kernel` argument that selects the per-step kernels."""
    names = [k for k in getattr(ngc_model, "KERNELS", ()) if "step" in k]
    if not names:
        raise RuntimeError("ngc_cuda.model.KERNELS names no per-step path: %r" % (getattr(ngc_model, "KERNELS", None),))
    return names[0]


def settle_paths(cp, cfg, params_cp, threads):
    """{path name: settle(x, z_top) -> result with .energy, .zbar} for our two kernels."""
    import ngc_cuda.model as ngc_model
    from ngc_cuda.backend import device
    from ngc_cuda.settle_whole import settle_whole
    step = step_kernel_name(ngc_model)
    gpu = device("cuda")
    paths = {"ours/whole@%d" % t: (lambda x, zt, t=t: settle_whole(params_cp, x, cfg, zt, cfg.T, threads=t,
                                                                  device=gpu)) for t in threads}
    paths["ours/step"] = lambda x, zt: ngc_model.settle(params_cp, x, cfg, zt, kernel=step)
    return paths, step


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / (np.abs(b) + 1e-3)))


@section("device")
def device_info(cp, results):
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    dev = cp.cuda.Device()
    tf, src, measured = peak_fp32(cp, name)
    results["device"] = {
        "name": name, "cc": "%d.%d" % (props["major"], props["minor"]), "sms": props["multiProcessorCount"],
        "smem_per_block_optin": int(dev.attributes["MaxSharedMemoryPerBlockOptin"]),
        "smem_per_sm": int(dev.attributes["MaxSharedMemoryPerMultiprocessor"]),
        "peak_fp32_tflops": tf, "peak_source": src, "measured_sgemm_tflops": measured,
        "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(), "driver": cp.cuda.runtime.driverGetVersion(),
        "cupy": cp.__version__, "python": platform.python_version(),
    }
    print("device: %s (cc %s, %d SMs), peak FP32 %.1f TFLOP/s [%s], SGEMM measured %.1f"
          % (name, results["device"]["cc"], results["device"]["sms"], tf, src, measured))
    return name


@section("resources")
def resources(cp, results):
    """ptxas report of ngc_settle_v1 for sm_80/sm_90 (NVRTC) and CuPy's attributes of the loaded kernel."""
    from ngc_cuda import _load
    from ngc_cuda.settle_whole import smem_bytes, KERNEL_NAME, KERNEL_FILE
    out = {}
    for arch in ("sm_80", "sm_90"):
        try:
            _, log = _load.compile_nvrtc(KERNEL_FILE, arch)
            out[arch] = _load.parse_ptxas(log)
        except Exception as e:          # the GPU numbers below still count
            out[arch] = "compile check failed: %s" % e
    fn = _load.load_module(KERNEL_FILE, "cuda").get_function(KERNEL_NAME)
    cfg = Config()
    need = smem_bytes(cfg)
    sm = results["device"]["smem_per_sm"]
    out["loaded"] = {"num_regs": fn.num_regs, "local_size_bytes": fn.local_size_bytes,
                     "max_threads_per_block": fn.max_threads_per_block,
                     "dyn_smem_bytes_paper": need, "blocks_per_sm_by_smem": sm // (need + 1024)}
    results["resources"] = out
    print("ngc_settle_v1:", json.dumps(out["loaded"]))


@section("correctness")
def correctness(cp, torch, tn, results, cfg, threads, B=100):
    """All paths agree with each other at batch B and with ngc_ref (float64) on the first 2 images."""
    p, x, zt = problem(cfg, B, seed=1)
    pc = to_cupy(cp, p)
    paths, step = settle_paths(cp, cfg, pc, threads)
    outs = {k: f(cp.asarray(x), cp.asarray(zt)) for k, f in paths.items()}
    if torch is not None:
        pt = tn.to_torch(p, "cuda", torch.float32)
        torch.backends.cudnn.allow_tf32 = False
        r = tn.settle(pt, torch.as_tensor(x, device="cuda"), cfg, torch.as_tensor(zt, device="cuda"))
        outs["torch/fp32"] = r
    p64 = {k: None if v is None else [None if a is None else a.astype(np.float64) for a in v] for k, v in p.items()}
    ref = ref_model.settle(p64, x[:2].astype(np.float64), cfg, zt[:2].astype(np.float64))
    get = lambda a: a.detach().cpu().numpy() if hasattr(a, "detach") else cp.asnumpy(a)  # noqa: E731
    rep, bad = {"per_step_kernel_arg": step}, []
    for k, r in outs.items():
        e, zb0 = get(r.energy), get(r.zbar[0])
        rep[k] = {"energy_vs_ref": rel_err(e[:, :2], ref.energy), "zbar0_vs_ref": rel_err(zb0[:2], ref.zbar[0])}
        if rep[k]["energy_vs_ref"] > 1e-3 or rep[k]["zbar0_vs_ref"] > 1e-3:
            bad.append(k)
    base = get(outs["ours/step"].energy)
    for k, r in outs.items():
        rep[k]["energy_vs_ours_step"] = rel_err(get(r.energy), base)
        if rep[k]["energy_vs_ours_step"] > 1e-3:
            bad.append(k)
    results["correctness"] = rep
    print(json.dumps(rep, indent=1))
    if bad:
        raise AssertionError("paths disagree with the reference or each other: %s" % sorted(set(bad)))


def settle_row(results, key, B, T, ms, iters, flop, peak):
    img_steps = B * T / (ms * 1e-3)
    floor_ms = flop * B * T / (peak * 1e12) * 1e3
    row = {"B": B, "T": T, "ms": ms, "iters": iters, "image_steps_per_s": img_steps,
           "floor_ms": floor_ms, "share_of_fp32_floor": floor_ms / ms}
    results.setdefault("settle", {}).setdefault(str(B), {})[key] = row
    print("  B=%-4d %-16s %9.3f ms  %12.0f image-steps/s  %5.1f%% of FP32 floor"
          % (B, key, ms, img_steps, 100 * floor_ms / ms), flush=True)


@section("settle")
def bench_settle(cp, torch, tn, results, cfg, batches, threads, quick):
    T, flop, peak = cfg.T, flops_per_image_step(cfg), results["device"]["peak_fp32_tflops"]
    min_time = 0.2 if quick else 0.6
    for B in batches:
        p, x, zt = problem(cfg, B, seed=2)
        pc, xc, ztc = to_cupy(cp, p), cp.asarray(x), cp.asarray(zt)
        paths, _ = settle_paths(cp, cfg, pc, threads)
        for k, f in paths.items():
            ms, it = timed(cupy_clock(cp), lambda: f(xc, ztc), min_time)
            settle_row(results, k, B, T, ms, it, flop, peak)
        whole = {k: v for k, v in results["settle"][str(B)].items() if k.startswith("ours/whole@")}
        best = min(whole, key=lambda k: whole[k]["ms"])
        results["settle"][str(B)]["ours/whole"] = dict(whole[best], threads=int(best.split("@")[1]))
        if torch is not None:
            pt = tn.to_torch(p, "cuda", torch.float32)
            xt, ztt = torch.as_tensor(x, device="cuda"), torch.as_tensor(zt, device="cuda")
            for key, tf32 in (("torch/fp32", False), ("torch/tf32", True)):
                torch.backends.cudnn.allow_tf32 = tf32
                torch.backends.cuda.matmul.allow_tf32 = tf32
                ms, it = timed(torch_clock(torch), lambda: tn.settle(pt, xt, cfg, ztt), min_time)
                settle_row(results, key, B, T, ms, it, flop, peak)
            torch.backends.cudnn.allow_tf32 = False
            rows = results["settle"][str(B)]
            for k in ("ours/whole", "ours/step"):
                rows[k]["speedup_vs_torch_fp32"] = rows["torch/fp32"]["ms"] / rows[k]["ms"]
                print("  B=%-4d %-16s %.2fx faster than torch/fp32" % (B, k, rows[k]["speedup_vs_torch_fp32"]))


@section("epoch")
def bench_epoch(cp, torch, tn, results, cfg, images, batch):
    """One epoch of training (settle + filter updates + optimiser) on synthetic images: time is data-independent."""
    import ngc_cuda.model as ngc_model
    import ngc_cuda.optim as ngc_optim
    n_batches = max(1, images // batch)
    rng = np.random.default_rng(3)
    pool = 4                                    # distinct batches, cycled (content does not change the work)
    xs = [rng.random((batch, 3, 32, 32), dtype=np.float32) for _ in range(pool)]
    zs = [ref_model.draw_top(cfg, batch, rng) for _ in range(pool)]
    p, _, _ = problem(cfg, 1, seed=4)
    flop_epoch = flops_per_image_step(cfg) * cfg.T * batch * n_batches
    out = {"images": n_batches * batch, "batch": batch, "batches": n_batches}

    pc = to_cupy(cp, p)
    state = ngc_optim.init_state(pc)
    xc, zc = [cp.asarray(a) for a in xs], [cp.asarray(a) for a in zs]

    def ours(i):
        res = ngc_model.settle(pc, xc[i % pool], cfg, zc[i % pool])
        ngc_optim.step(pc, ngc_model.filter_updates(res, pc, cfg), state, cfg)
    for i in range(2):
        ours(i)
    clock = cupy_clock(cp)
    t = clock(None)
    for i in range(n_batches):
        ours(i)
    ms = clock(t)
    out["ours"] = {"ms": ms, "image_steps_per_s": n_batches * batch * cfg.T / (ms * 1e-3),
                   "share_of_fp32_floor": flop_epoch / (results["device"]["peak_fp32_tflops"] * 1e12) / (ms * 1e-3)}
    print("  epoch (%d x %d) ours        %9.1f ms" % (n_batches, batch, ms), flush=True)
    if torch is not None:
        torch.backends.cudnn.allow_tf32 = False
        pt = tn.to_torch(p, "cuda", torch.float32)
        opt = tn.Optimizer(pt, cfg)
        xt = [torch.as_tensor(a, device="cuda") for a in xs]
        zt = [torch.as_tensor(a, device="cuda") for a in zs]
        for i in range(2):
            tn.train_step(pt, opt, xt[i % pool], cfg, zt[i % pool])
        clock = torch_clock(torch)
        t = clock(None)
        for i in range(n_batches):
            tn.train_step(pt, opt, xt[i % pool], cfg, zt[i % pool])
        ms_t = clock(t)
        out["torch/fp32"] = {"ms": ms_t, "image_steps_per_s": n_batches * batch * cfg.T / (ms_t * 1e-3)}
        out["ours"]["speedup_vs_torch_fp32"] = ms_t / ms
        print("  epoch (%d x %d) torch/fp32  %9.1f ms  (ours %.2fx faster)" % (n_batches, batch, ms_t, ms_t / ms))
    results["epoch"] = out


def print_table(results):
    """The summary: one line per (batch, path), then the epoch."""
    print("\n%-6s %-16s %10s %16s %10s %10s" % ("B", "path", "ms", "image-steps/s", "vs torch", "% floor"))
    for B, rows in results.get("settle", {}).items():
        base = rows.get("torch/fp32", {}).get("ms")
        for k, r in rows.items():
            if "@" in k:
                continue
            sp = "%.2fx" % (base / r["ms"]) if base else "-"
            print("%-6s %-16s %10.3f %16.0f %10s %9.1f%%" % (B, k if k != "ours/whole" else "ours/whole@%d" % r["threads"],
                                                           r["ms"], r["image_steps_per_s"], sp,
                                                           100 * r["share_of_fp32_floor"]))
    ep = results.get("epoch")
    if ep:
        for k in ("ours", "torch/fp32"):
            if k in ep:
                print("epoch  %-16s %10.1f %16.0f %10s" % (k, ep[k]["ms"], ep[k]["image_steps_per_s"],
                                                          "%.2fx" % ep[k]["speedup_vs_torch_fp32"]
                                                          if "speedup_vs_torch_fp32" in ep[k] else "-"))


def smoke(cp):
    """A tiny settle through both kernel paths, checked against ngc_ref: the compute-sanitizer target."""
    cp.cuda.set_allocator(None)                 # one cudaMalloc per array: memcheck sees every overrun
    import ngc_cuda.model as ngc_model
    from ngc_cuda.backend import device
    from ngc_cuda.settle_whole import settle_whole
    step = step_kernel_name(ngc_model)
    failures = []
    for cfg, clamp in ((Config(T=3), "always"), (Config(channels=(4, 5, 2), image_hw=(12, 20), kernel=5, T=3), "first"),
                       (Config(T=2, pcn=True, learn_E=True), "always")):
        p, x, zt = problem(cfg, 2, seed=5)
        if cfg.learn_E:
            p["E"] = [None] + [w * 0.5 for w in p["W"][1:]]
        p64 = {k: None if v is None else [None if a is None else a.astype(np.float64) for a in v] for k, v in p.items()}
        ref = ref_model.settle(p64, x.astype(np.float64), cfg, zt.astype(np.float64), clamp=clamp)
        pc = to_cupy(cp, p)
        for name, f in (("whole", lambda: settle_whole(pc, cp.asarray(x), cfg, cp.asarray(zt), cfg.T, clamp=clamp,
                                                       device=device("cuda"))),
                        ("step", lambda: ngc_model.settle(pc, cp.asarray(x), cfg, cp.asarray(zt), clamp=clamp,
                                                          kernel=step))):
            r = f()
            cp.cuda.Device().synchronize()
            err = rel_err(cp.asnumpy(r.energy), ref.energy)
            print("smoke %-5s %s clamp=%s: energy rel err %.2e" % (name, cfg.channels, clamp, err))
            if not err < 1e-3:
                failures.append((name, cfg.channels, clamp, err))
    if failures:
        raise SystemExit("smoke: paths disagree with ngc_ref: %s" % failures)
    print("smoke: OK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="folder for <card-slug>.json")
    ap.add_argument("--batches", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--threads", type=int, nargs="+", default=[256, 512, 1024], help="block sizes of ngc_settle_v1")
    ap.add_argument("--epoch-images", type=int, default=45000)
    ap.add_argument("--epoch-batch", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="shorter timings and a 10-batch epoch")
    ap.add_argument("--smoke", action="store_true", help="tiny checked settle only (compute-sanitizer target)")
    ap.add_argument("--T", type=int, default=Config().T, help="settling steps (default: the paper's 60)")
    ap.add_argument("--check-batch", type=int, default=100, help="batch of the cross-path correctness check")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()

    import cupy as cp
    if not cp.cuda.is_available():
        raise SystemExit("gpu_bench: no CUDA GPU visible to CuPy")
    if args.smoke:
        return smoke(cp)
    torch = tn = None
    if not args.no_torch:
        try:
            import torch
            import torch_ngc as tn
            if not torch.cuda.is_available():
                raise RuntimeError("torch %s sees no CUDA GPU (CPU-only wheel?)" % torch.__version__)
            torch.backends.cudnn.benchmark = True
        except Exception:
            FAILURES.append({"section": "torch import", "error": traceback.format_exc()})
            print("torch baseline unavailable:\n%s" % traceback.format_exc(), file=sys.stderr)
            torch = tn = None

    cfg = Config(T=args.T)
    results = {"config": cfg.to_dict(), "flops_per_image_step": flops_per_image_step(cfg),
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": getattr(torch, "__version__", None)}
    name = device_info(cp, results)
    if name is None:
        raise SystemExit("gpu_bench: could not read the device")
    resources(cp, results)
    correctness(cp, torch, tn, results, cfg, args.threads, args.check_batch)
    bench_settle(cp, torch, tn, results, cfg, args.batches, args.threads, args.quick)
    images = min(args.epoch_images, 10 * args.epoch_batch) if args.quick else args.epoch_images
    bench_epoch(cp, torch, tn, results, cfg, images, args.epoch_batch)
    results["failures"] = FAILURES
    print_table(results)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("%s.json" % slug(name))
    path.write_text(json.dumps(results, indent=1, default=float))
    print("wrote", path)
    if FAILURES:
        print("gpu_bench: %d section(s) FAILED: %s" % (len(FAILURES), ", ".join(f["section"] for f in FAILURES)),
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
