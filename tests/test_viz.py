"""Tests for convngc.viz: PNGs are written atomically, decode, and have the expected geometry."""
import os

import numpy as np
import pytest
from PIL import Image

from convngc import viz


def _png(path):
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB")), im.size


def _no_temp(d):
    assert [f for f in os.listdir(d) if f.endswith(".tmp") or f.startswith(".")] == []


def _rows(seed=0, n=10, c=3, h=8, w=8):
    rng = np.random.default_rng(seed)
    x = rng.random((n, c, h, w))
    return {"original": x, "noisy": np.clip(x + rng.normal(0, 0.3, x.shape), -0.5, 1.5),
            "reconstruction": x * 0.9}


def test_save_grid_size_and_labels(tmp_path):
    path = tmp_path / "sub" / "grid.png"
    rows = _rows()
    out = viz.save_grid(path, rows, n=6, upscale=4, pad=2, label_width=80)
    assert out == str(path) and path.exists()
    arr, size = _png(path)
    assert size == viz.grid_geometry(3, 6, 8, 8, 4, 2, 80) == (80 + 6 * 32 + 7 * 2, 3 * 32 + 4 * 2)
    # each row band has dark label pixels in the label column, and nothing between rows
    for r in range(3):
        y0 = 2 + r * 34
        band = arr[y0:y0 + 32, :80]
        assert (band.min(axis=-1) < 100).sum() > 10, f"row {r} has no label"
    assert np.all(arr[0:2] == 255) and np.all(arr[34:36] == 255)
    # first image is placed exactly, upscaled nearest x4
    x0 = 80 + 2
    cell = arr[2:34, x0:x0 + 32]
    want = np.rint(rows["original"][0].transpose(1, 2, 0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(cell[::4, ::4], want)
    np.testing.assert_array_equal(cell[3::4, 3::4], want)
    _no_temp(path.parent)


def test_save_grid_auto_label_width_and_few_images(tmp_path):
    path = tmp_path / "g.png"
    rows = {"a": np.zeros((3, 1, 5, 7)), "a much longer label": np.ones((2, 3, 5, 7))}
    viz.save_grid(path, rows, n=8, upscale=3, pad=1)
    arr, (w, h) = _png(path)
    assert h == 2 * 15 + 3  # two rows
    assert w > 3 * 21 + 4  # label column present, 3 columns (max available, < n)
    short = viz.save_grid(tmp_path / "s.png", {"a": np.zeros((3, 1, 5, 7))}, n=8, upscale=3, pad=1)
    assert _png(short)[1][0] < w  # longer label -> wider label column
    assert _png(short)[1][1] == 15 + 2
    _no_temp(tmp_path)


def test_save_grid_overwrite_and_errors(tmp_path):
    path = tmp_path / "g.png"
    viz.save_grid(path, _rows(n=2), n=2)
    viz.save_grid(path, _rows(n=4), n=4)  # atomic replace of an existing file
    assert _png(path)[1][0] > 0
    with pytest.raises(ValueError, match="at least one row"):
        viz.save_grid(tmp_path / "x.png", {})
    with pytest.raises(ValueError, match="1 or 3 channels"):
        viz.save_grid(tmp_path / "x.png", {"bad": np.zeros((2, 4, 8, 8))})
    assert not (tmp_path / "x.png").exists()
    _no_temp(tmp_path)


def test_plot_energy_variants(tmp_path):
    T, B = 20, 16
    rng = np.random.default_rng(0)
    e = np.exp(-np.linspace(0, 8, T + 1))[:, None] * (1 + 0.2 * rng.random((T + 1, B)))  # > 2 decades
    for name, arg, kw in [
        ("steps1d.png", e.mean(axis=1), {}),
        ("steps2d.png", e, {}),
        ("steps2d_minmax.png", e, {"band": "minmax"}),
        ("epochs.png", [5.0, 4.0, 3.5, 3.2], {"label": "train energy"}),
        ("multi.png", {"train": [3.0, 2.0, 1.0], "val": [3.5, 2.5, None]}, {}),
        ("negative.png", np.linspace(-1, 1, 11), {"title": "custom"}),
    ]:
        p = tmp_path / name
        assert viz.plot_energy(p, arg, **kw) == str(p)
        arr, (w, h) = _png(p)
        assert w > 100 and h > 100 and arr.std() > 0
    _no_temp(tmp_path)
    with pytest.raises(ValueError, match="expected shape"):
        viz.plot_energy(tmp_path / "bad.png", np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="band"):
        viz.plot_energy(tmp_path / "bad.png", e, band="iqr")
    assert not (tmp_path / "bad.png").exists()


def test_log_scale_rule():
    assert viz._use_log([np.array([1e3, 1.0])])
    assert not viz._use_log([np.array([50.0, 1.0])])
    assert not viz._use_log([np.array([1e3, 0.0])])
    assert not viz._use_log([np.array([np.nan])])


def test_plot_training(tmp_path):
    p = tmp_path / "hist.png"
    viz.plot_training(p, {"train_energy": [10.0, 5.0, 1.0, 0.05], "val_mse": [300.0, 200.0, 150.0, 140.0],
                          "empty": []})
    _, (w, h2) = _png(p)
    viz.plot_training(tmp_path / "one.png", {"val_mse": [3.0, 2.0]})
    _, (_, h1) = _png(tmp_path / "one.png")
    assert h2 > 1.5 * h1  # one panel per non-empty key
    with pytest.raises(ValueError, match="no non-empty"):
        viz.plot_training(tmp_path / "none.png", {"a": []})
    _no_temp(tmp_path)


def test_save_filters(tmp_path):
    rng = np.random.default_rng(0)
    W = rng.uniform(-0.1, 0.1, size=(4, 3, 3, 3))
    W[0, 0] = 0.0
    W[1, 1] = 1.0  # max |W|
    W[2, 2] = -0.5  # symmetric-around-zero scaling: -0.5 -> 0.25 grey
    p = viz.save_filters(tmp_path / "f.png", W, upscale=5, pad=1)
    arr, (w, h) = _png(p)
    assert (w, h) == (3 * 16 + 1, 4 * 16 + 1)
    np.testing.assert_array_equal(arr[1:16, 1:16], 128)  # zero kernel -> mid grey
    np.testing.assert_array_equal(arr[17:32, 17:32], 255)  # +max -> white
    np.testing.assert_array_equal(arr[33:48, 33:48], 64)  # -max/2 -> rint(0.25 * 255)
    big = rng.normal(size=(100, 70, 3, 3))
    _, size = _png(viz.save_filters(tmp_path / "big.png", big, upscale=2, pad=0, max_out=10, max_in=5))
    assert size == (5 * 6, 10 * 6)
    with pytest.raises(ValueError, match="4-D filter bank"):
        viz.save_filters(tmp_path / "bad.png", np.zeros((3, 3, 3)))
    _no_temp(tmp_path)
