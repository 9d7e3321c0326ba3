"""The kernel checks that need no GPU: the CPU emulator (cuda_emu) and the NVRTC compile check.

Test kernels live in tests/cuda/emu_kernels/, several with a planted bug that a check must catch. g++ builds
are cached on disk ($CONVNGC_EMU_CACHE or ~/.cache/convngc/emu): a cold run spends ~10 s compiling, a
warm one ~2 s in total.
"""
from pathlib import Path

import numpy as np
import pytest

from cuda_emu import ORDERS, EmuModule, parse_kernels

from tolerances import TOL, assert_close, reduction

KDIR = Path(__file__).resolve().parent / "emu_kernels"


@pytest.fixture(scope="module")
def mod():
    return EmuModule(path=KDIR / "reduce.cu")


@pytest.fixture(scope="module")
def warp_mod():
    return EmuModule(path=KDIR / "warp_barrier.cu")


def block_sums(x, n_blocks, bs):
    xp = np.zeros(n_blocks * bs)
    xp[: x.size] = x.astype(np.float64) ** 2
    return xp.reshape(n_blocks, bs).sum(1)


@pytest.mark.parametrize("order", ORDERS)
def test_block_reduction_matches_numpy_in_every_order(mod, rng, order):
    n, bs = 1000, 256
    x = rng.standard_normal(n).astype(np.float32)
    out = np.zeros(4, np.float32)
    f = mod.get_function("block_sum_v1")
    f.order = order
    f((4,), (bs,), (x, out, np.int32(n)))
    ref = block_sums(x, 4, bs)
    assert_close(out, ref, **reduction(bs, ref), name="block sums (%s)" % order)


def test_missing_barrier_is_caught_by_comparing_orders(mod, rng):
    """block_sum_racy lacks the barrier after the load: some order reads a partner's stale value."""
    n, bs = 1000, 256
    x = rng.standard_normal(n).astype(np.float32) + 3.0
    ref = block_sums(x, 4, bs)
    results = {}
    for order in ORDERS:
        f = mod.get_function("block_sum_racy")
        f.order, f.seed = order, 7
        out = np.zeros(4, np.float32)
        f((4,), (bs,), (x, out, np.int32(n)))
        results[order] = out
    wrong = [o for o, r in results.items() if not np.allclose(r, ref, **reduction(bs, ref))]
    assert wrong, "the racy reduction gave the right answer in every order"
    assert not all(np.array_equal(results["forward"], r) for r in results.values())


def test_thread_exiting_before_a_barrier_is_an_error(mod):
    x = np.arange(64, dtype=np.float32)
    with pytest.raises(RuntimeError, match=r"exited while .* wait at __syncthreads\(\) \(.*reduce\.cu:\d+\)"):
        mod.get_function("early_exit")((1,), (64,), (x, np.int32(40)))
    mod.get_function("early_exit")((1,), (64,), (x, np.int32(64)))       # everyone arrives: fine
    np.testing.assert_array_equal(x, np.arange(64)[::-1])


def test_threads_at_different_barriers_are_an_error(mod):
    with pytest.raises(RuntimeError, match="different barriers"):
        mod.get_function("divergent_barriers")((1,), (32,), (np.zeros(32, np.float32),))


def test_dynamic_shared_memory_and_its_limits(mod, rng):
    count, blocks = 300, 3
    x = rng.standard_normal(count * blocks).astype(np.float32)
    y = np.zeros_like(x)
    f = mod.get_function("reverse_dyn")
    f((blocks,), (64,), (x, y, np.int32(count)), shared_mem=count * 4)
    np.testing.assert_array_equal(y.reshape(blocks, count), x.reshape(blocks, count)[:, ::-1])
    big = 60000 // 4                                            # over the 48 KB default
    xb, yb = rng.standard_normal(big).astype(np.float32), np.zeros(big, np.float32)
    with pytest.raises(RuntimeError, match="too much dynamic shared memory"):
        f((1,), (128,), (xb, yb, np.int32(big)), shared_mem=big * 4)
    f.max_dynamic_shared_size_bytes = 64 * 1024                 # opt in, as on a GPU
    f((1,), (128,), (xb, yb, np.int32(big)), shared_mem=big * 4)
    np.testing.assert_array_equal(yb, xb[::-1])
    with pytest.raises(RuntimeError, match="device limit"):
        f.max_dynamic_shared_size_bytes = 300 * 1024


def test_float_atomic_add_across_blocks(mod, rng):
    n = 1000
    x = rng.standard_normal(n).astype(np.float32)
    out = np.zeros(1, np.float32)
    mod.get_function("atomic_sum")((8,), (32, 4), (x, out, np.int32(n)))    # 2D blocks
    ref = x.astype(np.float64).sum(keepdims=True)
    assert_close(out[:1], ref, **reduction(n, ref), name="atomic sum")


@pytest.mark.parametrize("order", ORDERS)
def test_warp_shuffle_reduction(mod, rng, order):
    n = 200
    x = rng.standard_normal(n).astype(np.float32)
    out = np.zeros(8, np.float32)
    f = mod.get_function("warp_sum")
    f.order = order
    f((2,), (128,), (x, out, np.int32(n)))
    xp = np.zeros(256)
    xp[:n] = x
    ref = xp.reshape(8, 32).sum(1)
    assert_close(out, ref, **reduction(32, ref), name="warp sums (%s)" % order)


# ---- the "warp" order: one warp at a time --------------------------------------------------------
def neighbour_warp_sums(x, B, n):
    xs = x.astype(np.float64).reshape(B, n)
    return (np.repeat(xs.reshape(B, n // 32, 32).sum(-1), 32, axis=1) + np.roll(xs, -32, axis=1)).ravel()


def test_a_warp_shuffle_is_not_a_block_barrier_in_warp_order(warp_mod, rng):
    """neighbour_warp_sum_no_barrier reads another warp's shared memory after a warp shuffle, with no
    __syncthreads(): forward, reverse and shuffle run every thread to the shuffle before any warp goes on,
    so the shuffle acts as a block barrier and the planted bug gives the right answer in all three. Run one
    warp at a time, as a GPU may, warp 0 reads warp 1's entries before they are written (NaN). The kernel
    with its barrier is right in every order."""
    B, n = 2, 96
    x = rng.standard_normal(B * n).astype(np.float32)
    ref = neighbour_warp_sums(x, B, n)
    for kernel, wrong_in in (("neighbour_warp_sum_v1", set()), ("neighbour_warp_sum_no_barrier", {"warp"})):
        f = warp_mod.get_function(kernel)
        for order in ORDERS:
            f.order = order
            y = np.zeros_like(x)
            f((B,), (n,), (x, y))
            if order in wrong_in:
                assert np.isnan(y[:32]).all(), "%s, %s order: warp 0 did not read unwritten memory" % (kernel, order)
            else:
                assert_close(y, ref, **reduction(33, ref), name="%s, %s order" % (kernel, order))


def test_warp_order_keeps_warp_syncs_and_block_barriers(mod, rng):
    """In warp order a warp's shuffles still meet (each warp's own lanes) and __syncthreads() still holds."""
    f = mod.get_function("warp_sum")
    f.order = "warp"
    x = rng.standard_normal(200).astype(np.float32)
    out = np.zeros(8, np.float32)
    f((2,), (128,), (x, out, np.int32(200)))
    xp = np.zeros(256)
    xp[:200] = x
    ref = xp.reshape(8, 32).sum(1)
    assert_close(out, ref, **reduction(32, ref), name="warp sums (warp order)")
    with pytest.raises(RuntimeError, match=r"exited while .* wait at __syncthreads\(\)"):
        g = mod.get_function("early_exit")
        g.order = "warp"
        g((1,), (64,), (np.arange(64, dtype=np.float32), np.int32(40)))


# ---- shared memory: NaN before each block, guard zones between named areas --------------------------
@pytest.mark.parametrize("order", ORDERS)
def test_unwritten_static_shared_memory_reads_nan_in_every_block(warp_mod, rng, order):
    """Static __shared__ arrays are filled with NaN bytes before each block uses them (dynamic ones are
    filled by the launch), so reading an entry this block never wrote gives NaN in every order, and never
    a stale value of the previous block (the planted bug of unwritten_static_smem)."""
    f = warp_mod.get_function("unwritten_static_smem")
    f.order = order
    x = rng.standard_normal(3 * 64).astype(np.float32)
    y = np.zeros_like(x)
    f((3,), (64,), (x, y, np.int32(40)))
    y, x = y.reshape(3, 64), x.reshape(3, 64)
    assert np.isnan(y[:, 40:]).all()
    np.testing.assert_array_equal(y[:, :40], x[:, :40])


@pytest.fixture(scope="module")
def areas_mod():
    return EmuModule(path=KDIR / "areas.cu")


def _two_areas(m, n=50, gap=8, over_a=0, over_b=0, shared=None, threads=64):
    f = m.get_function("two_areas")
    x = np.arange(n, dtype=np.float32)
    y = np.zeros(n, np.float32)
    shared = 4 * 2 * (n + gap) if shared is None else shared
    f((1,), (threads,), (x, y, np.int32(n), np.int32(gap), np.int32(over_a), np.int32(over_b)), shared_mem=shared)
    return f, x, y


def test_named_shared_memory_areas_and_their_guard_zones(areas_mod):
    f, x, y = _two_areas(areas_mod)
    np.testing.assert_array_equal(y, 3 * x)
    assert f.shared_areas == [("a", 0, 200), ("b", 232, 200)]
    with pytest.raises(RuntimeError, match="guard zone between 'a' and 'b' was written \\(byte 0 past the end of 'a'"):
        _two_areas(areas_mod, over_a=1)                # planted: one float past a
    with pytest.raises(RuntimeError, match="guard zone after 'b', the last area, was written \\(byte 0 past its end"):
        _two_areas(areas_mod, over_b=2)                # planted: two floats past b, the last area
    with pytest.raises(RuntimeError, match="area 'b' .* runs past the 400 bytes of dynamic shared memory"):
        _two_areas(areas_mod, shared=400)              # the launch asked for less than the areas span
    _two_areas(areas_mod)                              # the module stays usable


def test_asan_reports_the_line_that_writes_into_a_guard_zone():
    m = EmuModule(path=KDIR / "areas.cu", sanitize=True)
    f, x, y = _two_areas(m)
    np.testing.assert_array_equal(y, 3 * x)
    with pytest.raises(RuntimeError, match=r"(?s)AddressSanitizer: use-after-poison.*areas\.cu:15"):
        _two_areas(m, over_a=2)


def test_scalar_kinds_and_argument_checks(mod, rng):
    x = rng.standard_normal(100).astype(np.float32)
    y = np.zeros_like(x)
    f = mod.get_function("scalars")
    f(1, 128, (x, y, np.uint32(100), np.float32(2), np.float64(0.5)))
    assert_close(y, 2 * x.astype(np.float64) + 0.5, **TOL["elementwise"], name="a x + b")
    good = (x, y, np.uint32(100), np.float32(2), np.float64(0.5))
    bad = {
        2: (100, TypeError, "'n'.*np.uint32.*got int"),                     # Python int: long long on a GPU
        3: (2.0, TypeError, "'a'.*got float"),                              # Python float: double on a GPU
        4: (np.float32(0.5), TypeError, "'b'.*needs np.float64"),
        0: (x.astype(np.float64), TypeError, "'x'.*float32 array, got float64"),
        1: (np.zeros(200, np.float32)[::2], ValueError, "'y'.*not C-contiguous"),
    }
    for i, (val, exc, msg) in bad.items():
        args = list(good)
        args[i] = val
        with pytest.raises(exc, match=msg):
            f(1, 128, tuple(args))
    with pytest.raises(TypeError, match="takes 5 arguments"):
        f(1, 128, (x, y))


def test_launch_configuration_errors(mod):
    x = np.zeros(2048, np.float32)
    with pytest.raises(RuntimeError, match="at most 1024"):
        mod.get_function("atomic_sum")((1,), (64, 32), (x, x[:1], np.int32(1)))


def test_fiber_stack_overflow_is_an_error_not_a_crash(mod):
    x = np.ones(64, np.float32)
    with pytest.raises(RuntimeError, match="stack overflow"):
        mod.get_function("big_stack")((1,), (4,), (x, np.int32(64)))
    test_block_reduction_matches_numpy_in_every_order(mod, np.random.default_rng(0), "forward")  # still usable


def test_parse_kernels_reads_parameter_lists():
    k = parse_kernels((KDIR / "reduce.cu").read_text())
    p = k["scalars"]
    assert [(q.name, q.ctype, q.pointer, q.const) for q in p] == [
        ("x", "float", True, True), ("y", "float", True, False), ("n", "unsigned", False, False),
        ("a", "float", False, False), ("b", "double", False, False)]


def test_asan_build_reports_out_of_bounds_write_with_source_line():
    m = EmuModule(path=KDIR / "oob.cu", sanitize=True)
    f = m.get_function("oob_write")
    x = np.arange(100, dtype=np.float32)
    y = np.zeros(99, np.float32)
    f((1,), (128,), (x[:99], y, np.int32(98)))                    # i <= 98 stays in bounds: runs
    np.testing.assert_array_equal(y, np.r_[2 * x[:98], 0.0])     # results came back from the child
    with pytest.raises(RuntimeError, match=r"(?s)heap-buffer-overflow.*oob\.cu:4"):
        f((1,), (128,), (x[:99], y, np.int32(99)))


# -- NVRTC compile check (no GPU needed) --------------------------------------------------------------
def _nvrtc():
    from ngc_cuda import _load
    try:
        _load.nvrtc_backend()
    except ImportError as e:
        pytest.skip(f"NVRTC library missing ({e}): pip install nvidia-cuda-nvrtc==13.0.88 cuda-bindings")
    return _load


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_test_kernels_and_reports_registers(arch):
    load = _nvrtc()
    cubin, log = load.compile_nvrtc(KDIR / "reduce.cu", arch)
    assert len(cubin) > 1000
    res = {r["kernel"]: r for r in load.parse_ptxas(log)}
    assert set(res) == set(parse_kernels((KDIR / "reduce.cu").read_text()))
    r = res["block_sum_v1"]
    assert r["arch"] == arch and 0 < r["registers"] <= 255
    assert r["smem_bytes"] == 256 * 4 and r["spill_stores"] == 0 and r["stack"] == 0
    assert res["big_stack"]["stack"] >= 40000 * 4


def test_nvrtc_compile_error_carries_the_log():
    load = _nvrtc()
    with pytest.raises(load.CompileError, match=r"broken\.cu\(3\): error: identifier \"undefined_name\"") as e:
        load.compile_nvrtc(KDIR / "broken.cu", "sm_80")
    assert "undefined_name" in e.value.log


def test_compile_check_cli_exit_codes(capsys):
    _nvrtc()
    from ngc_cuda import compile_check
    assert compile_check.main(["--arch", "sm_90", str(KDIR / "oob.cu")]) == 0
    assert "| oob.cu |  | oob_write | sm_90 |" in capsys.readouterr().out
    assert compile_check.main(["--arch", "sm_90", str(KDIR / "broken.cu")]) == 1
    assert "undefined_name" in capsys.readouterr().err


def test_compile_options_match_cupy_and_carry_defines():
    from ngc_cuda._load import CUPY_ADDED_OPTIONS, compile_options, kernel_dir
    o = compile_options("sm_90", {"TILE": 16, "USE_X": None})
    assert o[:2] == ("-std=c++17", "-arch=sm_90")
    assert f"-I{kernel_dir()}" in o and o[-2:] == ("-DTILE=16", "-DUSE_X")
    assert not any("fast" in x for x in o)
    assert "-arch" not in " ".join(compile_options(None))     # CuPy adds -arch for the device itself
    assert not set(CUPY_ADDED_OPTIONS) & set(o)               # ... and these: not given twice


def test_compile_check_adds_what_cupy_adds():
    """The check must build what RawModule builds: CuPy appends CUPY_ADDED_OPTIONS to every NVRTC compile.
    Where CuPy is installed, read its compiler to confirm it still adds exactly these."""
    import inspect
    from ngc_cuda import _load
    seen = []
    real = _load.nvrtc_backend

    def spy():
        name, compile_, version = real()
        return name, (lambda src, path, opts: seen.append(list(opts)) or compile_(src, path, opts)), version
    _load.nvrtc_backend = spy
    try:
        _load.compile_nvrtc(KDIR / "reduce.cu", "sm_80")
    finally:
        _load.nvrtc_backend = real
    assert all(opt in seen[0] for opt in _load.CUPY_ADDED_OPTIONS)
    try:
        from cupy.cuda import compiler
    except Exception:
        return                                                 # nothing more to compare against
    src = inspect.getsource(compiler)
    for opt in _load.CUPY_ADDED_OPTIONS:
        assert "'%s'" % opt in src, "CuPy no longer adds %s: update CUPY_ADDED_OPTIONS" % opt
