"""The kernel checks that need no GPU: the CPU emulator (ngc_cuda.emu) and the NVRTC compile check.

Test kernels live in tests/emu_kernels/. g++ builds are cached on disk ($CONVNGC_EMU_CACHE or
~/.cache/convngc/emu): a cold run spends ~10 s compiling, a warm one ~2 s in total.
"""
from pathlib import Path

import numpy as np
import pytest

from ngc_cuda.emu import EmuModule, parse_kernels

KDIR = Path(__file__).resolve().parent / "emu_kernels"
ORDERS = ("forward", "reverse", "shuffle")


@pytest.fixture(scope="module")
def mod():
    return EmuModule(path=KDIR / "reduce.cu")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


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
    np.testing.assert_allclose(out, block_sums(x, 4, bs), rtol=1e-5)


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
    wrong = [o for o, r in results.items() if not np.allclose(r, ref, rtol=1e-5)]
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
    np.testing.assert_allclose(out[0], x.astype(np.float64).sum(), rtol=1e-4, atol=1e-4)


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
    np.testing.assert_allclose(out, xp.reshape(8, 32).sum(1), rtol=1e-5, atol=1e-6)


def test_scalar_kinds_and_argument_checks(mod, rng):
    x = rng.standard_normal(100).astype(np.float32)
    y = np.zeros_like(x)
    f = mod.get_function("scalars")
    f(1, 128, (x, y, np.uint32(100), np.float32(2), np.float64(0.5)))
    np.testing.assert_allclose(y, 2 * x + 0.5, rtol=1e-6)
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
