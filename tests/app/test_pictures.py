"""`convngc denoise` / `convngc reconstruct` and `convngc.denoise()` / `convngc.reconstruct()` on picture files
and arrays of any size (issue 16): formats, bit depths, modes and size classes end to end, the noise options,
the shipped-model name, and every bad input with its one-line message, its exit status and nothing left behind.

The model is small (channels 2,3,4,5,3: still stride^L = 16) with T = 2, on the cpu backend, so each run is quick.
"""
import argparse
import errno
import os
import struct
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convngc
from convngc import apply, checkpoint, cli, images, models, pictures
from convngc.model import ConvNGC
from ngc_ref.config import Config

from helpers import REPO, cli_main, one_line

FAST = ["--T", "2", "--no-progress", "--backend", "cpu"]
# the API's notes and noise warnings are expected in most tests here; test_api_warns_* checks them
pytestmark = pytest.mark.filterwarnings("ignore:.*(estimated noise std|replicated to RGB|smaller than the model):UserWarning")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A small trained-looking checkpoint: random filters, a denoising reading tuned for noise std 0.1."""
    cfg = Config(channels=(2, 3, 4, 5, 3), T=2, pi0=0.25, T_denoise=2)
    m = ConvNGC(cfg, backend="numpy", seed=0)
    path = tmp_path_factory.mktemp("model") / "model.npz"
    checkpoint.save(path, cfg, m.host_params(), None, {"denoise_tuning": {"noise_std": 0.1, "pi0": 0.25}})
    return path


@pytest.fixture(scope="module")
def grey_ckpt(tmp_path_factory):
    cfg = Config(channels=(2, 3, 4, 5, 1), T=2)
    m = ConvNGC(cfg, backend="numpy", seed=0)
    path = tmp_path_factory.mktemp("grey") / "grey.npz"
    checkpoint.save(path, cfg, m.host_params(), None, {})
    return path


def _photo(h, w, c=3, dtype=np.uint8, seed=0):
    """A smooth synthetic picture (gradients and a disc) with a little texture."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = [0.5 + 0.4 * np.sin(xx / 9.0 + yy / 13.0), 0.3 + 0.5 * xx / max(w, 1),
            np.where((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2, 0.8, 0.2)]
    colour = {1: 1, 2: 1, 3: 3, 4: 3}[c]
    a = np.stack(base[:colour] + [np.full((h, w), 0.75)] * (c - colour), axis=2)     # alpha last
    a = np.clip(a + np.random.default_rng(seed).normal(0, 0.02, a.shape), 0, 1)
    top = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
    return (a * top).round().astype(dtype) if np.dtype(dtype).kind == "u" else a.astype(dtype)


def _save(path, a, mode=None):
    if str(path).endswith(".npy"):
        np.save(path, a)
    elif a.dtype == np.uint16 and str(path).endswith(".png"):
        images.write_png16(path, a)
    elif str(path).endswith((".tif", ".tiff")):
        import tifffile
        extra = {"extrasamples": ["unassalpha"]} if a.ndim == 3 and a.shape[2] in (2, 4) else {}
        tifffile.imwrite(path, a if a.ndim == 2 or a.shape[2] > 1 else a[:, :, 0],
                         photometric="rgb" if a.ndim == 3 and a.shape[2] >= 3 else "minisblack", **extra)
    else:
        Image.fromarray(a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a, mode).save(path)
    return path


# ------------------------------------------------------------------------------------------------ every format, depth, mode
CASES = [("png", np.uint8, 3), ("png", np.uint8, 4), ("png", np.uint8, 1), ("png", np.uint8, 2),
         ("png", np.uint16, 3), ("png", np.uint16, 4), ("png", np.uint16, 1),
         ("jpg", np.uint8, 3), ("jpg", np.uint8, 1), ("bmp", np.uint8, 3), ("bmp", np.uint8, 1),
         ("tif", np.uint8, 3), ("tif", np.uint16, 3), ("tif", np.uint16, 4), ("tif", np.uint16, 1),
         ("tif", np.float32, 3), ("npy", np.uint8, 3), ("npy", np.uint16, 4), ("npy", np.float32, 1)]


@pytest.mark.parametrize("ext,dtype,c", CASES)
def test_each_format_depth_and_mode_comes_back_as_it_went_in(tmp_path, ckpt, ext, dtype, c, capsys):
    a = _photo(40, 56, c, dtype)
    if c in (2, 4):                                    # an alpha channel with structure, to see it kept exactly
        a[..., -1] = (np.arange(56)[None, :] * (np.iinfo(dtype).max // 60)).astype(dtype)
    src = _save(tmp_path / ("pic." + ext), a if (c > 1 or ext == "npy") else a[:, :, 0])
    assert cli_main(["denoise", src, "--model", ckpt, "--out", tmp_path / "out", *FAST]) == 0
    out = tmp_path / "out" / ("pic." + ext)
    inp, res = images.read(src), images.read(out)
    assert (res.format, res.dtype, res.hw, res.channels) == (inp.format, inp.dtype, inp.hw, inp.channels)
    if c in (2, 4):
        np.testing.assert_array_equal(res.alpha, inp.alpha)
    assert np.isfinite(res.pixels).all() and not np.array_equal(res.pixels, inp.pixels)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert str(src) in line and str(out) in line and "%s" % inp.describe() in line


@pytest.mark.parametrize("hw", [(1, 1), (1, 9), (7, 5), (20, 30), (32, 32), (33, 47), (64, 64), (100, 150),
                                (130, 70)])
def test_every_size_class(tmp_path, ckpt, hw):
    """A single pixel, a line, under 16, under 32, the training size, not a multiple of 16, several tiles."""
    a = _photo(*hw)
    src = _save(tmp_path / "p.png", a)
    for task in ("denoise", "reconstruct"):
        out = tmp_path / task
        assert cli_main([task, src, "--model", ckpt, "--out", out, *FAST]) == 0
        with Image.open(out / "p.png") as im:
            assert im.size == (hw[1], hw[0]) and im.mode == "RGB"


def test_small_and_single_pixel_pictures_get_a_note(tmp_path, ckpt, capsys):
    _save(tmp_path / "one.png", _photo(1, 1))
    _save(tmp_path / "small.png", _photo(20, 30))
    assert cli_main(["denoise", tmp_path / "one.png", tmp_path / "small.png", "--model", ckpt, "--out",
                  tmp_path / "o", *FAST]) == 0
    out = capsys.readouterr().out
    assert "single pixel" in out and "30x20 pixels, smaller than the model's 32x32 patches" in out


def test_grey_through_a_colour_model_and_colour_through_a_grey_model(tmp_path, ckpt, grey_ckpt, capsys):
    g = _save(tmp_path / "g.png", _photo(40, 50, 1)[:, :, 0])
    assert cli_main(["reconstruct", g, "--model", ckpt, "--out", tmp_path / "a", *FAST]) == 0
    assert "replicated to RGB" in capsys.readouterr().out
    with Image.open(tmp_path / "a" / "g.png") as im:
        assert im.mode == "L"
    c = _save(tmp_path / "c.png", _photo(40, 50, 3))
    assert cli_main(["reconstruct", c, "--model", grey_ckpt, "--out", tmp_path / "b", *FAST]) == 0
    assert "each of R, G, B" in capsys.readouterr().out
    with Image.open(tmp_path / "b" / "c.png") as im:
        assert im.mode == "RGB"
    assert cli_main(["reconstruct", g, "--model", grey_ckpt, "--out", tmp_path / "c", *FAST]) == 0
    assert "replicated" not in capsys.readouterr().out


def test_whole_and_tiles_write_the_same_file_for_a_picture_within_one_tile(tmp_path, ckpt):
    src = _save(tmp_path / "p.png", _photo(30, 20))
    for method in ("whole", "tiles"):
        assert cli_main(["denoise", src, "--model", ckpt, "--method", method, "--out", tmp_path / method, *FAST]) == 0
    assert (tmp_path / "whole" / "p.png").read_bytes() == (tmp_path / "tiles" / "p.png").read_bytes()


# ------------------------------------------------------------------------------------------------ noise, references, pictures
def test_add_noise_compare_and_numbers(tmp_path, ckpt, capsys):
    src = _save(tmp_path / "p.png", _photo(48, 64))
    assert cli_main(["denoise", src, "--model", ckpt, "--add-noise", "0.1", "--seed", "3", "--compare", "--out",
                  tmp_path / "o", *FAST]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "output PSNR" in line and "input PSNR" in line and "SSIM" in line and "MSE" in line
    for name in ("p.png", "p-noisy.png", "p-compare.png"):
        assert (tmp_path / "o" / name).is_file()
    with Image.open(tmp_path / "o" / "p-compare.png") as im:         # noisy | denoised | clean, with captions
        assert im.size[0] == 3 * 64 + 2 * 4 and im.size[1] > 48
    noisy = images.read(tmp_path / "o" / "p-noisy.png").pixels
    clean = images.read(src).pixels
    assert 0.07 < np.std(noisy - clean) < 0.11                      # N(0, 0.1), clipped to [0, 1] when stored
    # the numbers are those of the files written, against the clean picture
    q = pictures.quality(images.read(tmp_path / "o" / "p.png").pixels, clean)
    assert "output PSNR %.2f dB" % q["psnr"] in line


def test_clean_reference_prints_both_numbers(tmp_path, ckpt, capsys):
    clean = _photo(40, 40)
    noisy = np.clip(clean / 255 + np.random.default_rng(0).normal(0, 0.1, clean.shape), 0, 1)
    _save(tmp_path / "clean.png", clean)
    _save(tmp_path / "noisy.png", (noisy * 255).round().astype(np.uint8))
    assert cli_main(["denoise", tmp_path / "noisy.png", "--clean", tmp_path / "clean.png", "--model", ckpt, "--out",
                  tmp_path / "o", *FAST]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    psnr_in = pictures.quality(images.read(tmp_path / "noisy.png").pixels, clean / 255.0)["psnr"]
    assert "input PSNR %.2f dB" % psnr_in in line and "output PSNR" in line


def test_clean_of_another_size_is_refused(tmp_path, ckpt, capsys):
    _save(tmp_path / "a.png", _photo(40, 40))
    _save(tmp_path / "b.png", _photo(40, 41))
    assert cli_main(["denoise", tmp_path / "a.png", "--clean", tmp_path / "b.png", "--model", ckpt, "--out",
                  tmp_path / "o", *FAST]) == 2
    assert "size" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_noise_far_from_the_tuned_level_warns_in_one_line(tmp_path, ckpt, capsys):
    clean = _save(tmp_path / "clean.png", _photo(64, 64))
    assert cli_main(["denoise", clean, "--model", ckpt, "--out", tmp_path / "a", *FAST]) == 0
    out = capsys.readouterr().out
    warn = [ln for ln in out.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "far from the 0.1" in warn[0] and "--sigma" in warn[0]
    # at the tuned level: no warning; --sigma sets the reading for the given level: no warning either
    assert cli_main(["denoise", clean, "--model", ckpt, "--add-noise", "0.1", "--out", tmp_path / "b", *FAST]) == 0
    assert "warning" not in capsys.readouterr().out
    assert cli_main(["denoise", clean, "--model", ckpt, "--sigma", "0.01", "--out", tmp_path / "c", "--no-progress",
                  "--backend", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out and "set for noise std 0.01" in out and "pi0 1," in out


def test_a_folder_and_a_glob_one_bar_and_one_line_per_file(tmp_path, ckpt, capsys):
    d = tmp_path / "photos"
    d.mkdir()
    for k, ext in enumerate(("png", "jpg", "tif")):
        _save(d / ("p%d.%s" % (k, ext)), _photo(40 + 8 * k, 50, seed=k))
    (d / "readme.txt").write_text("not a picture")
    assert cli_main(["reconstruct", d, "--model", ckpt, "--out", tmp_path / "o", *FAST]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " -> " in ln]
    assert len(lines) == 3 and sorted(os.listdir(tmp_path / "o")) == ["p0.png", "p1.jpg", "p2.tif"]
    assert cli_main(["reconstruct", str(d / "*.png"), "--model", ckpt, "--out", tmp_path / "g", *FAST]) == 0
    assert os.listdir(tmp_path / "g") == ["p0.png"]


def test_progress_bar_counts_every_tile_of_every_picture(tmp_path, ckpt, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)     # as on a terminal (the default draws bars there)
    for k in range(2):
        _save(tmp_path / ("p%d.png" % k), _photo(100, 150, seed=k))
    assert cli_main(["denoise", tmp_path / "p0.png", tmp_path / "p1.png", "--model", ckpt, "--out", tmp_path / "o",
                  "--T", "2", "--backend", "cpu"]) == 0
    err = capsys.readouterr().err
    n = 2 * apply.tile_grid((100, 150), 64, 16).n
    assert "%d/%d" % (n, n) in err


# ------------------------------------------------------------------------------------------------ --model: shipped names
def test_the_shipped_name_resolves_through_models(tmp_path, ckpt, monkeypatch, capsys):
    src = _save(tmp_path / "p.png", _photo(40, 40))
    monkeypatch.setattr(models, "MODELS_DIR", str(tmp_path / "models"))
    assert cli_main(["denoise", src, "--out", tmp_path / "o", *FAST]) == 2      # --model cifar10 by default
    err = one_line(capsys.readouterr().err)
    assert "no shipped model 'cifar10'" in err and "run folder" in err
    (tmp_path / "models" / "cifar10").mkdir(parents=True)
    dest = tmp_path / "models" / "cifar10" / "model.npz"
    dest.write_bytes(Path(ckpt).read_bytes())
    (tmp_path / "models" / "cifar10" / "model.json").write_text('{"sha256": "%s"}' % models.sha256(dest))
    assert cli_main(["denoise", src, "--out", tmp_path / "o", *FAST]) == 0
    assert (tmp_path / "o" / "p.png").is_file()
    y = convngc.denoise(_photo(40, 40), T=2)                                 # the API's default too
    assert y.shape == (40, 40, 3) and y.dtype == np.uint8


def test_a_run_folder_as_model(tmp_path, ckpt):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.npz").write_bytes(Path(ckpt).read_bytes())
    src = _save(tmp_path / "p.png", _photo(40, 40))
    assert cli_main(["reconstruct", src, "--model", run, "--out", tmp_path / "o", *FAST]) == 0


# ------------------------------------------------------------------------------------------------ the API
def test_api_three_lines(tmp_path, ckpt):
    src = _save(tmp_path / "p.png", _photo(50, 70))
    y = convngc.denoise(str(src), model=str(ckpt), T=2)
    assert y.shape == (50, 70, 3) and y.dtype == np.uint8
    r = convngc.reconstruct(src, model=ckpt, T=2)
    assert r.shape == (50, 70, 3)
    # the same as the command line's file
    assert cli_main(["denoise", src, "--model", ckpt, "--out", tmp_path / "o", *FAST]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o" / "p.png")), y)


@pytest.mark.parametrize("layout,c,dtype", [("HW", 1, np.uint8), ("HWC", 3, np.uint8), ("HWC", 4, np.uint16),
                                             ("CHW", 3, np.float32), ("HWC", 3, np.float64), ("HWC", 2, np.uint8)])
def test_api_arrays_keep_their_shape_and_dtype(ckpt, layout, c, dtype):
    a = _photo(30, 40, c, dtype)
    if c in (2, 4):
        a[..., -1] = np.arange(40)[None, :].astype(dtype)
    a = a[:, :, 0] if layout == "HW" else (np.ascontiguousarray(np.moveaxis(a, 2, 0)) if layout == "CHW" else a)
    y = convngc.reconstruct(a, model=ckpt, T=2)
    assert y.shape == a.shape and y.dtype == a.dtype
    if c in (2, 4):
        np.testing.assert_array_equal(y[..., -1], a[..., -1])
    assert not np.array_equal(y, a)


def test_api_takes_a_model_object_and_options(ckpt):
    from convngc.train import load_model
    m, _ = load_model(ckpt, backend="cpu")
    a = _photo(70, 90)
    y1 = convngc.denoise(a, model=m, T=2, method="whole")
    y2 = convngc.denoise(a, model=m, T=2, method="tiles", tile=32, overlap=16)
    assert y1.shape == y2.shape == a.shape
    assert not np.array_equal(y1, y2)
    np.testing.assert_array_equal(convngc.denoise(a, model=m, T=2, seed=4), convngc.denoise(a, model=m, T=2, seed=4))


@pytest.mark.filterwarnings("default")
def test_api_warns_about_notes_and_the_noise_level(ckpt):
    with pytest.warns(UserWarning, match="estimated noise std 0.02.*far from the 0.1"):
        convngc.denoise(_photo(64, 64), model=ckpt, T=2)
    with pytest.warns(UserWarning, match="replicated to RGB"):
        convngc.reconstruct(_photo(64, 64, 1)[:, :, 0], model=ckpt, T=2)
    noisy = np.clip(_photo(64, 64) / 255 + np.random.default_rng(1).normal(0, 0.1, (64, 64, 3)), 0, 1)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # at the tuned level: no warning at all
        convngc.denoise(noisy.astype(np.float32), model=ckpt, T=2)
        convngc.denoise(_photo(64, 64), model=ckpt, T=2, sigma=0.02)     # a level given: no warning


def test_api_bad_input_raises_one_clear_error(ckpt, tmp_path):
    with pytest.raises(images.ImageError, match="no such file"):
        convngc.denoise(tmp_path / "nope.png", model=ckpt)
    with pytest.raises(images.ImageError, match=r"\[0, 1\]"):
        convngc.denoise(np.full((10, 10), 3.0), model=ckpt)
    with pytest.raises(models.ModelNotFound):
        convngc.denoise(np.zeros((10, 10), np.uint8), model=tmp_path / "no-model")


def test_import_convngc_stays_light():
    import subprocess
    code = ("import sys, convngc; heavy = [m for m in ('numba', 'scipy', 'PIL', 'convngc.pictures', 'ngc_cpu', "
            "'matplotlib') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------------ bad input, one line each
def _bad(tmp_path, capsys, args, status=2):
    rc = cli_main(args)
    err = capsys.readouterr().err
    assert rc == status, err
    return one_line(err)


def test_missing_unreadable_truncated_and_non_image_files(tmp_path, ckpt, capsys, monkeypatch):
    out = tmp_path / "o"
    base = ["--model", ckpt, "--out", out, *FAST]
    assert "no such file" in _bad(tmp_path, capsys, ["denoise", tmp_path / "nope.png", *base])
    (tmp_path / "text.png").write_text("not a picture at all")
    assert "not a picture" in _bad(tmp_path, capsys, ["denoise", tmp_path / "text.png", *base])
    _save(tmp_path / "a.png", _photo(64, 64))
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    assert "truncated" in _bad(tmp_path, capsys, ["denoise", tmp_path / "cut.png", *base])
    assert not out.exists() or os.listdir(out) == []
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p).endswith("a.png") else real(p, m))
    assert "permission denied" in _bad(tmp_path, capsys, ["denoise", tmp_path / "a.png", *base])


def test_a_truncated_file_among_good_ones_fails_alone(tmp_path, ckpt, capsys):
    """The header is fine, the pixels are cut: found while decoding; the other pictures are still written."""
    Image.fromarray(_photo(64, 64)).save(tmp_path / "a.jpg", quality=95)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "b.jpg").write_bytes(data[:len(data) // 2])
    rc = cli_main(["denoise", tmp_path / "a.jpg", tmp_path / "b.jpg", "--model", ckpt, "--out", tmp_path / "o", *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and "b.jpg" in err and "truncated" in err and "Traceback" not in err
    assert os.listdir(tmp_path / "o") == ["a.jpg"]


def test_zero_size_and_unsupported_pictures(tmp_path, ckpt, capsys):
    base = ["--model", ckpt, "--out", tmp_path / "o", *FAST]
    np.save(tmp_path / "z.npy", np.zeros((0, 4, 3), np.uint8))
    assert "empty" in _bad(tmp_path, capsys, ["denoise", tmp_path / "z.npy", *base])
    np.save(tmp_path / "v.npy", np.zeros((4, 5, 6, 3), np.uint8))
    assert "not a picture" in _bad(tmp_path, capsys, ["denoise", tmp_path / "v.npy", *base])


def test_cmyk_and_palette_are_converted_with_a_note(tmp_path, ckpt, capsys):
    Image.fromarray(_photo(40, 40, 3)).convert("CMYK").save(tmp_path / "c.jpg")
    Image.fromarray(_photo(40, 40, 3)).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    assert cli_main(["denoise", tmp_path / "c.jpg", tmp_path / "p.png", "--model", ckpt, "--out", tmp_path / "o",
                  *FAST]) == 0
    out = capsys.readouterr().out
    assert "note:" in out and "CMYK" in out and "palette" in out
    with Image.open(tmp_path / "o" / "c.jpg") as a, Image.open(tmp_path / "o" / "p.png") as b:
        assert a.mode == "RGB" and b.mode == "RGB"


def _huge_png(path, w, h):
    body = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(images.PNG_SIGNATURE + struct.pack(">I", 13) + b"IHDR" + body
                     + struct.pack(">I", zlib.crc32(b"IHDR" + body) & 0xFFFFFFFF))
    return path


def test_a_huge_picture_is_refused_with_the_estimate_before_decoding(tmp_path, ckpt, capsys, monkeypatch):
    big = _huge_png(tmp_path / "huge.png", 300000, 200000)
    err = _bad(tmp_path, capsys, ["denoise", big, "--model", ckpt, "--out", tmp_path / "o", *FAST])
    assert "300000x200000" in err and "GB" in err and "refused" in err and "available" in err
    assert not (tmp_path / "o").exists()
    # the same check on a picture that would fit a big machine: a small machine refuses it, naming both sizes
    _save(tmp_path / "p.png", _photo(200, 300))
    monkeypatch.setattr(apply, "available_memory", lambda: 2_000_000)
    err = _bad(tmp_path, capsys, ["denoise", tmp_path / "p.png", "--model", ckpt, "--out", tmp_path / "o", *FAST])
    assert "300x200" in err and "2 MB available" in err


def test_an_existing_output_is_never_overwritten_without_force(tmp_path, ckpt, capsys):
    src = _save(tmp_path / "p.png", _photo(40, 40))
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "p.png").write_bytes(b"mine")
    err = _bad(tmp_path, capsys, ["denoise", src, "--model", ckpt, "--out", tmp_path / "o", *FAST])
    assert "exists" in err and "--force" in err
    assert (tmp_path / "o" / "p.png").read_bytes() == b"mine"
    assert cli_main(["denoise", src, "--model", ckpt, "--out", tmp_path / "o", "--force", *FAST]) == 0
    assert images.read(tmp_path / "o" / "p.png").hw == (40, 40)


def test_the_input_is_never_its_own_output(tmp_path, ckpt, capsys):
    src = _save(tmp_path / "p.png", _photo(40, 40))
    before = src.read_bytes()
    err = _bad(tmp_path, capsys, ["denoise", src, "--model", ckpt, "--out", tmp_path, "--force", *FAST])
    assert "overwrite its own input" in err and src.read_bytes() == before


def test_two_inputs_with_one_output_name_are_refused(tmp_path, ckpt, capsys):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        _save(tmp_path / d / "p.png", _photo(40, 40))
    err = _bad(tmp_path, capsys, ["denoise", tmp_path / "a" / "p.png", tmp_path / "b" / "p.png", "--model", ckpt,
                                  "--out", tmp_path / "o", *FAST])
    assert "both be written" in err and not (tmp_path / "o").exists()


def test_a_read_only_output_folder(tmp_path, ckpt, capsys, monkeypatch):
    src = _save(tmp_path / "p.png", _photo(40, 40))
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:                 # root writes anywhere: refuse as a read-only mount does
        real = tempfile.mkstemp

        def mkstemp(*a, **k):
            if os.path.abspath(k.get("dir", "")) == str(ro):
                raise PermissionError(errno.EACCES, "Permission denied", str(ro))
            return real(*a, **k)
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    else:
        ro.chmod(0o500)
    try:
        err = _bad(tmp_path, capsys, ["denoise", src, "--model", ckpt, "--out", ro, *FAST], status=1)
    finally:
        ro.chmod(0o700)
    assert str(ro) in err and "Permission denied" in err
    assert os.listdir(ro) == []


def test_a_failed_write_leaves_no_partial_file(tmp_path, ckpt, capsys, monkeypatch):
    src = _save(tmp_path / "p.png", _photo(40, 40))

    def full(tmp, pic, y):
        with open(tmp, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n half a picture")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(images, "encode", full)
    err = _bad(tmp_path, capsys, ["denoise", src, "--model", ckpt, "--out", tmp_path / "o", *FAST], status=1)
    assert "No space left on device" in err and str(tmp_path / "o" / "p.png") in err
    assert os.listdir(tmp_path / "o") == []


@pytest.mark.parametrize("args,pattern", [
    (["--tile", "40"], "multiple of stride"),
    (["--overlap", "48"], "at most half"),
    (["--add-noise", "0"], "must be a number"),
    (["--sigma", "-1"], "must be a number"),
    (["--add-noise", "0.1", "--clean", "x.png"], "--add-noise makes"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path, ckpt, capsys, args, pattern):
    src = _save(tmp_path / "p.png", _photo(40, 40))
    rc = cli_main(["denoise", src, "--model", ckpt, "--out", tmp_path / "o", *FAST, *args])
    err = capsys.readouterr().err
    assert rc == 2 and pattern in err, err
    assert not (tmp_path / "o").exists()


def test_an_empty_folder_and_a_glob_without_match(tmp_path, ckpt, capsys):
    (tmp_path / "empty").mkdir()
    assert "without pictures" in _bad(tmp_path, capsys, ["denoise", tmp_path / "empty", "--model", ckpt, *FAST])
    assert "no picture file matches" in _bad(tmp_path, capsys, ["denoise", str(tmp_path / "*.png"), "--model", ckpt,
                                                                *FAST])


def test_every_option_has_help_with_its_default():
    parser = cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in ("denoise", "reconstruct"):
        for act in subs[name]._actions:
            if not act.option_strings or isinstance(act, argparse._HelpAction):
                continue
            assert act.help and "default" in act.help, (name, act.option_strings, act.help)


def test_the_readme_pictures_example_runs(tmp_path, ckpt, monkeypatch):
    """The README's second Python block (convngc.denoise / reconstruct on a file) runs as printed, with a small
    model standing in for the shipped cifar10."""
    import re
    readme = (REPO / "README.md").read_text()
    block = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "convngc.denoise(" in b][0]
    d = tmp_path / "models" / "cifar10"
    d.mkdir(parents=True)
    (d / "model.npz").write_bytes(Path(ckpt).read_bytes())
    (d / "model.json").write_text('{"sha256": "%s"}' % models.sha256(d / "model.npz"))
    monkeypatch.setattr(models, "MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)
    _save(tmp_path / "photo.png", _photo(50, 70))
    pictures._load.cache_clear()
    ns = {}
    exec(compile(block.replace('model="cifar10"', 'model="cifar10", T=2'), "README.md", "exec"), ns)
    assert ns["y"].shape == (50, 70, 3) and ns["y"].dtype == np.uint8 and ns["r"].shape == (50, 70, 3)


def test_ctrl_c_says_what_was_written_and_leaves_no_partial_file(tmp_path, ckpt, capsys, monkeypatch):
    for k in range(3):
        _save(tmp_path / ("p%d.png" % k), _photo(40, 40, seed=k))
    real, calls = pictures.process, []

    def stop_on_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(pictures, "process", stop_on_second)
    rc = cli_main(["denoise", *[tmp_path / ("p%d.png" % k) for k in range(3)], "--model", ckpt, "--out", tmp_path / "o",
                *FAST])
    assert rc == 130
    assert "interrupted; 1 of 3 pictures were written, none in part" in one_line(capsys.readouterr().err)
    assert os.listdir(tmp_path / "o") == ["p0.png"]
