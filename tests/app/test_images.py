"""Picture files (convngc/images.py): every format, bit depth and mode read to [0, 1] and written back as it was
(issue 16). Lossless formats must round-trip exactly; JPEG within its own loss."""
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from convngc import images

RNG = np.random.default_rng(16)


def _u8(shape):
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _u16(shape):
    return RNG.integers(0, 65536, shape, dtype=np.uint16)


def _roundtrip(path, out):
    """read(path), write its own pixels to out, return (picture, the stored array of out, of path)."""
    pic = images.read(path)
    images.write(out, pic, pic.pixels)
    return pic


def _stored(path):
    """The samples as stored, independently of images.py where possible."""
    if str(path).endswith(".npy"):
        return np.load(path)
    if str(path).endswith((".tif", ".tiff")):
        import tifffile
        return tifffile.imread(path)
    return np.asarray(Image.open(path))


# ------------------------------------------------------------------------------------------------ 8-bit, through Pillow
@pytest.mark.parametrize("ext", ["png", "bmp", "tif"])
@pytest.mark.parametrize("mode,shape,channels,alpha", [("L", (9, 13), 1, False), ("RGB", (9, 13, 3), 3, False),
                                                        ("RGBA", (9, 13, 4), 3, True), ("LA", (9, 13, 2), 1, True)])
def test_8bit_lossless_formats_round_trip_exactly(tmp_path, ext, mode, shape, channels, alpha):
    if ext == "bmp" and mode in ("LA", "RGBA"):
        pytest.skip("BMP stores no grey + alpha; Pillow reads an RGBA BMP back as RGB")
    a = _u8(shape)
    src = tmp_path / ("in." + ext)
    Image.fromarray(a, mode).save(src)
    pic = _roundtrip(src, tmp_path / ("out." + ext))
    assert pic.hw == (9, 13) and pic.channels == channels and (pic.alpha is not None) == alpha
    assert pic.dtype == np.uint8 and pic.pixels.dtype == np.float32
    assert pic.pixels.min() >= 0 and pic.pixels.max() <= 1
    np.testing.assert_array_equal(_stored(tmp_path / ("out." + ext)), _stored(src))
    if alpha:
        np.testing.assert_array_equal(pic.alpha, a[..., -1])


@pytest.mark.parametrize("mode,shape", [("L", (16, 24)), ("RGB", (16, 24, 3))])
def test_jpeg_round_trips_within_its_loss_and_stays_jpeg(tmp_path, mode, shape):
    a = np.clip(np.add.outer(np.arange(16) * 8, np.arange(24) * 4), 0, 255).astype(np.uint8)
    a = a if mode == "L" else np.stack([a, a[::-1], 255 - a], axis=2)
    src = tmp_path / "in.jpg"
    Image.fromarray(a, mode).save(src, quality=95)
    pic = _roundtrip(src, tmp_path / "out.jpg")
    assert pic.format == "JPEG" and pic.channels == (1 if mode == "L" else 3)
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.format == "JPEG" and im.mode == mode and im.size == (24, 16)
    assert np.abs(_stored(tmp_path / "out.jpg").astype(int) - _stored(src).astype(int)).mean() < 2


# ------------------------------------------------------------------------------------------------ 16-bit
def _png16_filtered(a, filters, interlace=False):
    """A 16-bit PNG written independently of images.py, with the given row filters (cycled) and optionally
    Adam7 interlacing: the decoder must undo every filter type."""
    h, w, C = a.shape
    bpp = 2 * C

    def encode_rows(sub):
        raw, prev = bytearray(), np.zeros(sub.shape[1] * bpp, np.int32)
        for r in range(sub.shape[0]):
            line = np.frombuffer(sub[r].astype(">u2").tobytes(), np.uint8).astype(np.int32)
            k = filters[r % len(filters)]
            left = np.concatenate([np.zeros(bpp, np.int32), line[:-bpp]])
            upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
            if k == 0:
                f = line
            elif k == 1:
                f = line - left
            elif k == 2:
                f = line - prev
            elif k == 3:
                f = line - (left + prev) // 2
            else:
                p = left + prev - upleft
                pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
                f = line - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
            raw += bytes([k]) + (f & 255).astype(np.uint8).tobytes()
            prev = line
        return bytes(raw)
    if interlace:
        raw = b"".join(encode_rows(a[y0::dy, x0::dx]) for y0, x0, dy, dx in images._ADAM7
                       if len(range(y0, h, dy)) and len(range(x0, w, dx)))
    else:
        raw = encode_rows(a)

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ct = {1: 0, 2: 4, 3: 2, 4: 6}[C]
    return (images.PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ct, 0, 0, int(interlace)))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("C", [1, 2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
def test_16bit_png_every_filter_and_interlacing_decodes_exactly(tmp_path, C, interlace):
    a = _u16((11, 13, C))
    src = tmp_path / "in.png"
    src.write_bytes(_png16_filtered(a, [0, 1, 2, 3, 4], interlace))
    np.testing.assert_array_equal(images.read_png16(src), a)
    pic = _roundtrip(src, tmp_path / "out.png")
    assert pic.dtype == np.uint16 and pic.channels == (1 if C <= 2 else 3) and (pic.alpha is not None) == (C in (2, 4))
    np.testing.assert_array_equal(images.read_png16(tmp_path / "out.png"), a)


def test_16bit_values_keep_their_precision(tmp_path):
    """A 16-bit picture is not squeezed through 8 bits: neighbouring 16-bit levels stay distinct."""
    a = (30000 + np.arange(3 * 5 * 3).reshape(3, 5, 3)).astype(np.uint16)
    images.write_png16(tmp_path / "a.png", a)
    pic = images.read(tmp_path / "a.png")
    assert len(np.unique(pic.pixels)) == a.size
    np.testing.assert_array_equal(images.from_unit(pic.pixels, np.uint16), a)


def test_16bit_grey_png_written_by_pillow(tmp_path):
    a = _u16((7, 9))
    Image.fromarray(a).save(tmp_path / "g.png")
    pic = _roundtrip(tmp_path / "g.png", tmp_path / "o.png")
    assert pic.dtype == np.uint16 and pic.channels == 1
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")), a)


@pytest.mark.parametrize("shape", [(6, 10), (6, 10, 3), (6, 10, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_8_16_bit_and_float_round_trip(tmp_path, shape, dtype):
    import tifffile
    a = (_u16(shape) if dtype == np.uint16 else _u8(shape) if dtype == np.uint8
         else RNG.random(shape, dtype=np.float32))
    extra = {"extrasamples": ["unassalpha"]} if len(shape) == 3 and shape[2] == 4 else {}
    tifffile.imwrite(tmp_path / "in.tif", a, photometric="rgb" if len(shape) == 3 else "minisblack", **extra)
    pic = _roundtrip(tmp_path / "in.tif", tmp_path / "out.tif")
    assert pic.format == "TIFF" and pic.dtype == dtype
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), a)


# ------------------------------------------------------------------------------------------------ .npy and arrays
@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4), (3, 5, 7), (2, 5, 7)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_npy_round_trips_in_its_own_shape_and_dtype(tmp_path, shape, dtype):
    a = (RNG.random(shape).astype(dtype) if np.dtype(dtype).kind == "f"
         else RNG.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype))
    np.save(tmp_path / "in.npy", a)
    pic = _roundtrip(tmp_path / "in.npy", tmp_path / "out.npy")
    b = np.load(tmp_path / "out.npy")
    assert b.shape == a.shape and b.dtype == a.dtype
    if a.dtype.kind == "f":
        np.testing.assert_allclose(b, a, atol=1e-7)
    else:
        np.testing.assert_array_equal(b, a)
    assert pic.hw == (5, 7)
    np.testing.assert_array_equal(images.to_array(images.from_array(a), images.from_array(a).pixels), b)


# ------------------------------------------------------------------------------------------------ modes converted, with a note
def test_palette_png_becomes_rgb_with_a_note(tmp_path):
    Image.fromarray(_u8((8, 8, 3))).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    pic = images.read(tmp_path / "p.png")
    assert pic.channels == 3 and pic.alpha is None
    assert any("palette" in n for n in pic.notes)
    images.write(tmp_path / "o.png", pic, pic.pixels)
    with Image.open(tmp_path / "o.png") as im:
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), np.asarray(Image.open(tmp_path / "p.png").convert("RGB")))


def test_palette_with_transparency_keeps_its_alpha(tmp_path):
    im = Image.fromarray(_u8((8, 8, 3))).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    pic = images.read(tmp_path / "p.png")
    assert pic.alpha is not None and set(np.unique(pic.alpha)) <= {0, 255} and pic.channels == 3


def test_cmyk_jpeg_becomes_rgb_with_a_note(tmp_path):
    Image.fromarray(_u8((8, 8, 4)), "CMYK").save(tmp_path / "c.jpg")
    pic = images.read(tmp_path / "c.jpg")
    assert pic.channels == 3 and pic.format == "JPEG" and any("CMYK" in n for n in pic.notes)
    images.write(tmp_path / "o.jpg", pic, pic.pixels)
    with Image.open(tmp_path / "o.jpg") as im:
        assert im.mode == "RGB"


def test_one_bit_image_becomes_grey(tmp_path):
    Image.fromarray(_u8((8, 8)) > 127).convert("1").save(tmp_path / "b.png")
    pic = images.read(tmp_path / "b.png")
    assert pic.channels == 1 and set(np.unique(pic.pixels)) <= {0.0, 1.0}


def test_another_format_pillow_reads_is_written_as_png(tmp_path):
    Image.fromarray(_u8((8, 8, 3))).save(tmp_path / "a.gif")
    pic = images.read(tmp_path / "a.gif")
    assert pic.format == "PNG" and any("PNG" in n for n in pic.notes)
    assert images.output_extension(pic) == ".png"


# ------------------------------------------------------------------------------------------------ bad files: one ImageError each
def test_missing_file(tmp_path):
    with pytest.raises(images.ImageError, match="no such file"):
        images.read(tmp_path / "nope.png")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("hello, this is text")
    with pytest.raises(images.ImageError, match="not a picture"):
        images.read(tmp_path / "notes.png")


@pytest.mark.parametrize("ext", ["png", "jpg", "tif", "bmp"])
def test_truncated_file(tmp_path, ext):
    a = _u8((64, 64, 3))
    Image.fromarray(a).save(tmp_path / ("a." + ext))
    data = (tmp_path / ("a." + ext)).read_bytes()
    (tmp_path / ("t." + ext)).write_bytes(data[:len(data) // 2])
    with pytest.raises(images.ImageError, match="truncated|corrupt|cannot be decoded"):
        images.read(tmp_path / ("t." + ext))


def test_truncated_16bit_png(tmp_path):
    images.write_png16(tmp_path / "a.png", _u16((32, 32, 3)))
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[:len(data) // 2])
    with pytest.raises(images.ImageError, match="truncated"):
        images.read(tmp_path / "t.png")


def test_zero_size_pictures(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(images.ImageError, match="empty"):
        images.read(tmp_path / "z.npy")
    # a PNG whose header says 0 x 5 (Pillow cannot write one)
    body = struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)
    png = (images.PNG_SIGNATURE + struct.pack(">I", 13) + b"IHDR" + body
           + struct.pack(">I", zlib.crc32(b"IHDR" + body) & 0xFFFFFFFF))
    (tmp_path / "z.png").write_bytes(png)
    with pytest.raises(images.ImageError, match="empty|not a picture|corrupt|truncated"):
        images.read(tmp_path / "z.png")


def test_npy_that_is_not_a_picture(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 5, 6, 7), np.uint8))
    with pytest.raises(images.ImageError, match="not a picture"):
        images.read(tmp_path / "a.npy")
    np.save(tmp_path / "b.npy", np.full((4, 5), 3.0))
    with pytest.raises(images.ImageError, match=r"\[0, 1\]"):
        images.read(tmp_path / "b.npy")
    np.save(tmp_path / "c.npy", np.zeros((4, 5), np.int64))
    with pytest.raises(images.ImageError, match="uint8"):
        images.read(tmp_path / "c.npy")


def test_a_folder_named_like_a_picture(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(images.ImageError, match="folder"):
        images.read(tmp_path / "d.png")


def test_an_unreadable_file(tmp_path, monkeypatch):
    Image.fromarray(_u8((4, 4, 3))).save(tmp_path / "a.png")
    monkeypatch.setattr(os, "access", lambda p, mode: False)       # root reads anything: refuse as a 000 file does
    with pytest.raises(images.ImageError, match="permission denied"):
        images.read(tmp_path / "a.png")


def test_probe_reads_only_the_header_of_a_huge_picture(tmp_path):
    """A PNG whose header claims 200,000 x 150,000 pixels (a decompression bomb): probe answers from the header,
    without decoding or refusing (the caller estimates the memory)."""
    body = struct.pack(">IIBBBBB", 200000, 150000, 8, 2, 0, 0, 0)
    png = (images.PNG_SIGNATURE + struct.pack(">I", 13) + b"IHDR" + body
           + struct.pack(">I", zlib.crc32(b"IHDR" + body) & 0xFFFFFFFF))
    (tmp_path / "huge.png").write_bytes(png + b"\0\0\0\0IEND\xaeB`\x82")
    assert images.probe(tmp_path / "huge.png")[:3] == (150000, 200000, 3)


def test_atomic_write_leaves_nothing_when_encoding_fails(tmp_path, monkeypatch):
    pic = images.from_array(_u8((4, 4, 3)))
    pic.format, pic.path = "PNG", "x.png"

    def half(tmp, p, y):
        with open(tmp, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(images, "encode", half)
    with pytest.raises(OSError):
        images.write(tmp_path / "o.png", pic, pic.pixels)
    assert os.listdir(tmp_path) == []
