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


C0, C1 = (31, 119, 180), (255, 127, 14)           # matplotlib's first two line colours


def _count(arr, rgb, tol=40):
    return int((np.abs(arr.astype(int) - rgb).sum(axis=-1) < tol).sum())


def test_plot_energy_variants(tmp_path):
    """What the user sees: a PNG of the fixed size, with every curve drawn in its colour."""
    T, B = 20, 16
    rng = np.random.default_rng(0)
    e = np.exp(-np.linspace(0, 8, T + 1))[:, None] * (1 + 0.2 * rng.random((T + 1, B)))  # > 2 decades
    for name, arg, kw, colours in [
        ("steps1d.png", e.mean(axis=1), {}, [C0]),
        ("steps2d.png", e, {}, [C0]),
        ("steps2d_minmax.png", e, {"band": "minmax"}, [C0]),
        ("epochs.png", [5.0, 4.0, 3.5, 3.2], {"label": "train energy"}, [C0]),
        ("multi.png", {"train": [3.0, 2.0, 1.0], "val": [3.5, 2.5, None]}, {}, [C0, C1]),
        ("narrow.png", np.linspace(2.0, 1.0, 11), {"title": "custom"}, [C0]),
    ]:
        p = tmp_path / name
        assert viz.plot_energy(p, arg, **kw) == str(p)
        arr, size = _png(p)
        assert size == (640, 400), (name, size)
        for c in colours:
            assert _count(arr, c) > 150, (name, c, _count(arr, c))
    _no_temp(tmp_path)
    with pytest.raises(ValueError, match="expected shape"):
        viz.plot_energy(tmp_path / "bad.png", np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="band"):
        viz.plot_energy(tmp_path / "bad.png", e, band="iqr")
    with pytest.raises(ValueError, match=r"energies must be > 0 for the log axis, got -1"):
        viz.plot_energy(tmp_path / "bad.png", np.linspace(-1, 1, 11))
    assert not (tmp_path / "bad.png").exists()


def test_energy_axis_is_always_logarithmic():
    """One rule: energy is a sum of squares that falls over decades in some runs and by a factor of two in
    others; a log axis shows both the same way (it used to switch at two decades)."""
    narrow = np.linspace(50.0, 30.0, 21)
    wide = np.exp(-np.linspace(0, 8, 21))
    for curve in (narrow, wide, {"a": narrow, "b": wide}, [3.0, 2.0]):
        ax = viz.energy_figure(curve).axes[0]
        assert ax.get_yscale() == "log"
        assert "energy" in ax.get_ylabel() and "log" in ax.get_ylabel()


def test_plot_training(tmp_path):
    p = tmp_path / "hist.png"
    viz.plot_training(p, {"train_energy": [10.0, 5.0, 1.0], "val_mse": [300.0, 200.0, None], "empty": []})
    _, (w, h2) = _png(p)
    viz.plot_training(tmp_path / "one.png", {"val_mse": [3.0, 2.0]})
    _, (_, h1) = _png(tmp_path / "one.png")
    assert h2 > 1.5 * h1  # one panel per non-empty key
    with pytest.raises(ValueError, match="no non-empty"):
        viz.plot_training(tmp_path / "none.png", {"a": []})
    _no_temp(tmp_path)


def test_training_axes_are_words_with_units_and_whole_epochs():
    fig = viz.training_figure({"train_energy": [10.0, 5.0, 1.0], "val_mse": [300.0, 200.0, 150.0]})
    energy_ax, mse_ax = fig.axes
    assert energy_ax.get_ylabel() == "training energy per image\n(after T steps, log)"
    assert mse_ax.get_ylabel() == "validation MSE\n(reconstruction, 0-255 scale)"
    assert energy_ax.get_yscale() == "log" and mse_ax.get_yscale() == "linear"
    for ax in fig.axes:
        assert ax.get_xlabel() == "epoch"
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_filter_tiles_show_the_rgb_layer_in_colour():
    rng = np.random.default_rng(0)
    W = rng.uniform(-0.1, 0.1, size=(4, 3, 3, 3))
    W[1, 0] = 1.0                       # max |W|: the red channel of kernel 1 is pure +max
    W[2] = 0.0                          # zero kernel -> mid grey
    img, m = viz.filter_tiles(W, upscale=5, pad=1, ncols=2)
    assert m == 1.0 and img.dtype == np.uint8 and img.shape == (2 * 16 + 1, 2 * 16 + 1, 3)

    def tile(i):
        r, c = divmod(i, 2)
        return img[1 + 16 * r: 16 * (r + 1), 1 + 16 * c: 16 * (c + 1)]
    want = np.rint(255 * (0.5 + 0.5 * W / m)).astype(np.uint8).transpose(0, 2, 3, 1)     # (4, K, K, RGB)
    for i in range(4):
        np.testing.assert_array_equal(tile(i)[::5, ::5], want[i])
        np.testing.assert_array_equal(tile(i)[4::5, 4::5], want[i])
    assert (tile(1)[..., 0] == 255).all() and (tile(2) == 128).all()
    assert (img[0] == 255).all()                                     # white gaps between kernels


def test_filter_tiles_of_a_deeper_layer_use_a_diverging_map():
    from matplotlib import colormaps
    W = np.zeros((2, 5, 3, 3))
    W[0, 1] = 0.5
    W[1, 4] = -0.5
    img, m = viz.filter_tiles(W, upscale=4, pad=1)
    assert m == 0.5 and img.shape == (2 * 13 + 1, 5 * 13 + 1, 3)
    cmap = colormaps[viz.FILTER_CMAP]
    rgb = lambda v: np.rint(np.asarray(cmap(v)[:3]) * 255).astype(np.uint8)
    np.testing.assert_array_equal(img[1, 1], rgb(0.5))                       # W[0, 0] = 0
    np.testing.assert_array_equal(img[1, 1 + 13], rgb(1.0))                  # W[0, 1] = +max
    np.testing.assert_array_equal(img[1 + 13, 1 + 4 * 13], rgb(0.0))         # W[1, 4] = -max


def test_save_filters_is_large_titled_and_has_a_scale(tmp_path):
    W = np.random.default_rng(0).normal(0, 0.1, size=(25, 3, 3, 3))
    fig = viz.filters_figure(W, title="Layer 1 filters")
    image_ax, colorbar_ax = fig.axes
    assert image_ax.get_title() == "Layer 1 filters" and "weight" in colorbar_ax.get_ylabel()
    p = viz.save_filters(tmp_path / "f.png", W)
    arr, (w, h) = _png(p)
    tiles, _ = viz.filter_tiles(W)
    assert w > tiles.shape[1] and h > tiles.shape[0]              # every kernel pixel at least 1:1 on screen
    assert tiles.shape[0] >= 5 * 3 * 16                           # 25 kernels in 5 rows, 3x3 at 16x
    assert arr.std() > 10
    big = np.random.default_rng(1).normal(size=(100, 70, 3, 3))
    assert viz.filter_tiles(big, upscale=2, pad=0, max_out=10, max_in=5)[0].shape == (10 * 6, 5 * 6, 3)
    with pytest.raises(ValueError, match="4-D filter bank"):
        viz.save_filters(tmp_path / "bad.png", np.zeros((3, 3, 3)))
    _no_temp(tmp_path)
