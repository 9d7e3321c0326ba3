"""Picture files in and out: PNG, JPEG, TIFF, BMP (Pillow; 16-bit colour PNG and TIFF by this module and
tifffile) and .npy arrays, 8- and 16-bit (and float), grey, grey + alpha, RGB and RGBA, any size.

    pic = read("photo.png")            # Picture: pixels (H, W, C) float32 in [0, 1], C = 1 or 3; alpha aside
    write("out/photo.png", pic, y)     # y (H, W, C) in [0, 1]: the input's format, bit depth, mode and alpha
    probe("photo.png")                 # (H, W, C, format, bits) from the header alone, nothing decoded

Other modes are converted with a one-line note in `pic.notes`: palette -> RGB(A), CMYK / YCbCr / LAB / HSV ->
RGB, 1-bit -> grey, 32-bit integer grey -> 16-bit. Any other format Pillow reads (GIF, WebP, ...) is read
the same way and written as PNG, with a note. Every problem (missing, unreadable, truncated, not an image,
empty, a mode that cannot be converted) is an ImageError naming the file, one line.
"""
import dataclasses
import os
import struct
import warnings
import zlib

import numpy as np

from .data.errors import DataError

EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
              ".npy": "NPY"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageError(DataError):
    """A picture file that cannot be used: missing, unreadable, truncated, not an image, empty, ..."""


@dataclasses.dataclass
class Picture:
    """A decoded picture. pixels: (H, W, C) float32 in [0, 1], C = 1 (grey) or 3 (RGB), alpha removed;
    alpha: the alpha channel (H, W) as stored, or None; format: PNG, JPEG, TIFF, BMP or NPY (the format it is
    written back in); dtype: the stored sample type (uint8, uint16, float32, ...); notes: what was converted.
    npy_shape: a .npy array's own shape (written back in it)."""
    path: str
    pixels: np.ndarray
    alpha: np.ndarray = None
    format: str = "PNG"
    dtype: np.dtype = np.dtype(np.uint8)
    notes: list = dataclasses.field(default_factory=list)
    npy_shape: tuple = None
    info: dict = dataclasses.field(default_factory=dict)      # icc_profile / exif / dpi, written back by Pillow

    @property
    def hw(self):
        return self.pixels.shape[:2]

    @property
    def channels(self):
        return self.pixels.shape[2]

    @property
    def bits(self):
        return 8 * self.dtype.itemsize if self.dtype.kind in "ui" else "float%d" % (8 * self.dtype.itemsize)

    def describe(self):
        mode = {1: "grey", 3: "RGB"}[self.channels] + ("+alpha" if self.alpha is not None else "")
        bits = "%d-bit" % self.bits if isinstance(self.bits, int) else self.bits
        return "%dx%d %s %s %s" % (self.hw[1], self.hw[0], self.format, mode, bits)


# ------------------------------------------------------------------------------------------------------------
# samples <-> [0, 1]
# ------------------------------------------------------------------------------------------------------------
def to_unit(a):
    """Stored samples -> float32 in [0, 1]: integers divided by their type's maximum, floats as they are."""
    a = np.asarray(a)
    if a.dtype == bool:
        return a.astype(np.float32)
    if a.dtype.kind in "ui":
        return (a.astype(np.float64) / np.iinfo(a.dtype).max).astype(np.float32)
    return a.astype(np.float32)


def from_unit(y, dtype):
    """float values -> stored samples of `dtype`: clipped to [0, 1], integers rounded to the nearest level."""
    y = np.clip(np.asarray(y, np.float64), 0.0, 1.0)
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        return np.rint(y * np.iinfo(dtype).max).astype(dtype)
    return y.astype(dtype)


def _check_size(path, h, w):
    if h == 0 or w == 0:
        raise ImageError("%s: an empty image (%dx%d pixels): nothing to process" % (path, w, h))


# ------------------------------------------------------------------------------------------------------------
# 16-bit PNG: Pillow reads 16-bit colour PNG as 8-bit, so these are decoded and written here
# ------------------------------------------------------------------------------------------------------------
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}          # colour type -> samples per pixel (3, palette, is 8-bit or less)


def png_header(path):
    """(width, height, bit depth, colour type, interlace) of a PNG file's IHDR, or None when not a PNG."""
    with open(path, "rb") as f:
        head = f.read(33)
    if head[:8] != PNG_SIGNATURE:
        return None
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise ImageError("%s: a truncated or corrupt PNG (no IHDR header)" % path)
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return w, h, depth, ctype, interlace


def _png_chunks(data, path):
    pos, out = 8, []
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + 12 + n > len(data):
            raise ImageError("%s: a truncated PNG (chunk %s cut short)" % (path, kind.decode("latin-1")))
        out.append((kind, data[pos + 8:pos + 8 + n]))
        pos += 12 + n
        if kind == b"IEND":
            return out
    raise ImageError("%s: a truncated PNG (no IEND chunk)" % path)


def _unfilter(raw, rows, rowbytes, bpp, path):
    """Undo the PNG row filters: raw = rows x (1 filter byte + rowbytes) -> (rows, rowbytes) uint8."""
    buf = np.frombuffer(raw, np.uint8)
    if buf.size < rows * (rowbytes + 1):
        raise ImageError("%s: a truncated PNG (%d of %d bytes of pixel data)" % (path, buf.size, rows * (rowbytes + 1)))
    buf = buf[:rows * (rowbytes + 1)].reshape(rows, rowbytes + 1)
    kinds = buf[:, 0]
    if kinds.max(initial=0) > 4:
        raise ImageError("%s: a corrupt PNG (row filter %d)" % (path, int(kinds.max())))
    return _unfilter_rows()(np.ascontiguousarray(buf), bpp)


_KERNEL = []


def _unfilter_rows():
    """The row loop, compiled with Numba on first use (Average and Paeth run pixel by pixel along a row)."""
    if not _KERNEL:
        import numba

        @numba.njit(cache=True, nogil=True)
        def unfilter(buf, bpp):
            rows, n = buf.shape[0], buf.shape[1] - 1
            out = np.zeros((rows, n), np.uint8)
            for r in range(rows):
                k = buf[r, 0]
                for i in range(n):
                    x = np.int32(buf[r, i + 1])
                    a = np.int32(out[r, i - bpp]) if i >= bpp else np.int32(0)
                    b = np.int32(out[r - 1, i]) if r > 0 else np.int32(0)
                    c = np.int32(out[r - 1, i - bpp]) if (r > 0 and i >= bpp) else np.int32(0)
                    if k == 1:
                        x += a
                    elif k == 2:
                        x += b
                    elif k == 3:
                        x += (a + b) // 2
                    elif k == 4:
                        p = a + b - c
                        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                        x += a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
                    out[r, i] = np.uint8(x & 255)
            return out
        _KERNEL.append(unfilter)
    return _KERNEL[0]


_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))


def read_png16(path):
    """A 16-bit PNG (any colour type but palette) -> (H, W, C) uint16 array, C = 1, 2, 3 or 4."""
    with open(path, "rb") as f:
        data = f.read()
    w, h, depth, ctype, interlace = png_header(path)
    if depth != 16 or ctype not in _PNG_CHANNELS:
        raise ImageError("%s: not a 16-bit PNG" % path)
    _check_size(path, h, w)
    idat = b"".join(d for k, d in _png_chunks(data, path) if k == b"IDAT")
    try:
        raw = zlib.decompress(idat)
    except zlib.error as exc:
        raise ImageError("%s: a truncated or corrupt PNG (%s)" % (path, exc)) from None
    C = _PNG_CHANNELS[ctype]
    bpp = 2 * C
    if not interlace:
        rows = _unfilter(raw, h, w * bpp, bpp, path)
        return rows.view(">u2").reshape(h, w, C).astype(np.uint16)
    out = np.zeros((h, w, C), np.uint16)
    pos = 0
    for y0, x0, dy, dx in _ADAM7:
        ph, pw = len(range(y0, h, dy)), len(range(x0, w, dx))
        if ph == 0 or pw == 0:
            continue
        n = ph * (pw * bpp + 1)
        rows = _unfilter(raw[pos:pos + n], ph, pw * bpp, bpp, path)
        out[y0::dy, x0::dx] = rows.view(">u2").reshape(ph, pw, C)
        pos += n
    return out


def write_png16(path, a):
    """(H, W, C) uint16, C = 1, 2, 3 or 4 -> a 16-bit PNG (no filter, zlib level 6)."""
    a = np.asarray(a, np.uint16)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, C = a.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[C]
    rows = a.astype(">u2").reshape(h, w * C).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------------------------------------
# probing (the header only)
# ------------------------------------------------------------------------------------------------------------
def kind_of(path):
    """The format a path's extension names (PNG, JPEG, TIFF, BMP, NPY), or None."""
    return EXTENSIONS.get(os.path.splitext(os.fspath(path))[1].lower())


def _exists(path):
    if not os.path.exists(path):
        raise ImageError("%s: no such file" % path)
    if os.path.isdir(path):
        raise ImageError("%s: a folder, not a picture file" % path)
    if not os.access(path, os.R_OK):
        raise ImageError("%s: cannot be read (permission denied)" % path)


def _pil():
    try:
        from PIL import Image
    except ImportError:                                  # pragma: no cover - pillow is a dependency
        raise ImageError("reading pictures needs Pillow: pip install pillow") from None
    return Image


class _NoBombCheck:
    """Pillow refuses pictures over 179 Mpx as decompression bombs; the caller checks the memory instead."""

    def __enter__(self):
        Image = _pil()
        self.old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        return Image

    def __exit__(self, *exc):
        _pil().MAX_IMAGE_PIXELS = self.old


def probe(path):
    """(H, W, C, format, stored dtype) from the file's header alone; an ImageError for a missing, unreadable,
    non-image or empty file. C counts colour channels without alpha after conversion (1 or 3)."""
    path = os.fspath(path)
    _exists(path)
    kind = kind_of(path)
    try:
        if kind == "NPY":
            a = np.load(path, mmap_mode="r", allow_pickle=False)
            (h, w, c), _ = _npy_layout(path, a.shape)
            _check_size(path, h, w)
            return h, w, (1 if c in (1, 2) else 3), "NPY", _npy_dtype(path, a.dtype)
        if kind == "TIFF":
            t = _tiff_probe(path)
            if t is not None:
                return t
        hdr = png_header(path)
        if hdr is not None:                             # the IHDR alone: a huge picture is not decoded here
            w, h, depth, ctype, _ = hdr
            _check_size(path, h, w)
            return h, w, (1 if ctype in (0, 4) else 3), "PNG", np.dtype(np.uint16 if depth == 16 else np.uint8)
        with _NoBombCheck() as Image:
            with Image.open(path) as im:
                w, h = im.size
                mode, fmt = im.mode, im.format
        _check_size(path, h, w)
        grey = mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "La")
        return h, w, (1 if grey else 3), (fmt if fmt in ("PNG", "JPEG", "TIFF", "BMP") else "PNG"), \
            np.dtype(np.uint16 if mode.startswith("I") else np.float32 if mode == "F" else np.uint8)
    except ImageError:
        raise
    except Exception as exc:
        raise _decode_error(path, exc) from None


def _decode_error(path, exc):
    name = type(exc).__name__
    msg = str(exc) or name
    if name == "UnidentifiedImageError" or "cannot identify" in msg:
        return ImageError("%s: not a picture Pillow can read (PNG, JPEG, TIFF, BMP, ... or .npy)" % path)
    if isinstance(exc, PermissionError):
        return ImageError("%s: cannot be read (permission denied)" % path)
    if "truncated" in msg.lower() or isinstance(exc, (EOFError, struct.error)) or "broken" in msg.lower():
        return ImageError("%s: a truncated or corrupt picture (%s)" % (path, msg))
    return ImageError("%s: cannot be decoded (%s: %s)" % (path, name, msg))


# ------------------------------------------------------------------------------------------------------------
# .npy
# ------------------------------------------------------------------------------------------------------------
def _npy_layout(path, shape):
    """An array's shape -> ((H, W, C), how to reach HWC): (H, W), (H, W, C) with C in 1..4, or (C, H, W)."""
    if len(shape) == 2:
        return (shape[0], shape[1], 1), "HW"
    if len(shape) == 3:
        if shape[2] in (1, 2, 3, 4):
            return tuple(shape), "HWC"
        if shape[0] in (1, 2, 3, 4):
            return (shape[1], shape[2], shape[0]), "CHW"
    raise ImageError("%s: an array of shape %s is not a picture: expected (H, W), (H, W, C) or (C, H, W) with C "
                     "= 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)" % (path, tuple(shape)))


def _npy_dtype(path, dtype):
    dtype = np.dtype(dtype)
    if dtype in (np.uint8, np.uint16) or dtype.kind == "f" or dtype == bool:
        return dtype
    raise ImageError("%s: samples of type %s: expected uint8 (0-255), uint16 (0-65535) or float in [0, 1]"
                     % (path, dtype))


def _read_npy(path):
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ImageError("%s: not a readable .npy array (%s)" % (path, exc)) from None
    (h, w, c), layout = _npy_layout(path, a.shape)
    _check_size(path, h, w)
    dtype = _npy_dtype(path, a.dtype)
    hwc = a[:, :, None] if layout == "HW" else (a.transpose(1, 2, 0) if layout == "CHW" else a)
    if dtype.kind == "f":
        if not np.isfinite(hwc).all():
            raise ImageError("%s: contains NaN or Inf" % path)
        lo, hi = float(hwc.min()), float(hwc.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ImageError("%s: float samples must lie in [0, 1], got [%.4g, %.4g]%s"
                             % (path, lo, hi, " (0-255? save it as uint8)" if hi > 1.5 else ""))
    return hwc, dtype, tuple(a.shape), layout


def _write_npy(tmp, pic, y, alpha):
    a = from_unit(y, pic.dtype) if pic.dtype != bool else (np.asarray(y) >= 0.5)
    if alpha is not None:
        a = np.concatenate([a, alpha[:, :, None].astype(a.dtype)], axis=2)
    shape = pic.npy_shape
    if len(shape) == 2:
        a = a[:, :, 0]
    elif shape[2] not in (1, 2, 3, 4) or (len(shape) == 3 and shape[0] in (1, 2, 3, 4) and shape[2] != a.shape[2]):
        a = a.transpose(2, 0, 1)
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(a), allow_pickle=False)


# ------------------------------------------------------------------------------------------------------------
# TIFF through tifffile (any bit depth, RGB 16-bit included), Pillow for what it does not handle
# ------------------------------------------------------------------------------------------------------------
def _tifffile():
    try:
        import tifffile
    except ImportError:                                  # a scikit-image dependency; Pillow then reads 8-bit
        return None
    return tifffile


def _tiff_probe(path):
    tf = _tifffile()
    if tf is None:
        return None
    try:
        with tf.TiffFile(path) as t:
            page = t.pages[0]
            photometric = int(page.photometric)
            shape, axes, dtype = page.shape, page.axes, page.dtype
    except Exception:
        return None                                     # Pillow gets its turn (and names the problem)
    if photometric not in (0, 1, 2) or dtype.kind not in "uf" or "S" in axes and len(shape) != 3:
        return None
    h, w = shape[axes.index("Y")], shape[axes.index("X")]
    _check_size(path, h, w)
    s = shape[axes.index("S")] if "S" in axes else 1
    return h, w, (1 if s in (1, 2) else 3), "TIFF", np.dtype(dtype)


def _read_tiff(path):
    """(H, W, C) array, its dtype, notes, or None when tifffile cannot (Pillow then reads it)."""
    tf = _tifffile()
    if tf is None:
        return None
    try:
        with tf.TiffFile(path) as t:
            page = t.pages[0]
            photometric = int(page.photometric)
            if photometric not in (0, 1, 2) or page.dtype.kind not in "uf":
                return None                             # palette, CMYK, YCbCr, ...: Pillow converts them
            a = page.asarray()
            axes = page.axes
            more = len(t.pages) > 1
    except Exception as exc:
        if isinstance(exc, (ValueError, OSError, EOFError, struct.error, IndexError)):
            raise _decode_error(path, exc) from None
        return None
    if axes.startswith("S"):
        a = np.moveaxis(a, 0, -1)
    elif "S" not in axes:
        a = a[:, :, None]
    if a.ndim != 3:
        return None
    if photometric == 0:                                # MINISWHITE: 0 is white
        a = (np.iinfo(a.dtype).max - a) if a.dtype.kind == "u" else 1 - a
    if a.dtype.kind == "u" and a.dtype not in (np.uint8, np.uint16):
        if a.max(initial=0) > 65535:
            raise ImageError("%s: %s samples above 65535: only 8- and 16-bit integer TIFFs are read" % (path, a.dtype))
        a = a.astype(np.uint16)
    notes = ["%s: a TIFF with %d pages: the first is used" % (path, len(t.pages))] if more else []
    return a, np.dtype(a.dtype), notes


def _write_tiff(tmp, a, alpha):
    tf = _tifffile()
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    extra = {}
    if alpha is not None:
        a = np.concatenate([a.reshape(a.shape[:2] + (-1,)), alpha[:, :, None].astype(a.dtype)], axis=2)
        extra["extrasamples"] = ["unassalpha"]
    if tf is not None:
        photometric = "rgb" if a.ndim == 3 and a.shape[2] >= 3 else "minisblack"
        tf.imwrite(tmp, a, photometric=photometric, **extra)
        return
    _pil().fromarray(a).save(tmp, format="TIFF")           # pragma: no cover - without tifffile


# ------------------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------------------
def _split_alpha(a):
    """(H, W, C) stored array -> (colour (H, W, 1 or 3), alpha (H, W) or None)."""
    c = a.shape[2]
    if c in (2, 4):
        return a[:, :, :c - 1], a[:, :, c - 1]
    return a, None


_CONVERT = {"CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "RGBX": "RGB", "RGBa": "RGBA",
            "La": "LA", "PA": "RGBA", "1": "L"}


def _read_pil(path):
    Image = _pil()
    notes, info = [], {}
    with _NoBombCheck():
        with Image.open(path) as im:
            fmt = im.format
            if getattr(im, "n_frames", 1) > 1:
                notes.append("%s: %d frames: the first is used" % (path, im.n_frames))
            im.load()
            for key in ("icc_profile", "exif", "dpi"):
                if im.info.get(key):
                    info[key] = im.info[key]
            mode = im.mode
            if mode == "P":
                has_alpha = "transparency" in im.info
                im = im.convert("RGBA" if has_alpha else "RGB")
                notes.append("%s: a palette image: converted to %s (written back as %s)"
                              % (path, im.mode, im.mode))
                info.pop("icc_profile", None) if has_alpha else None
            elif mode in _CONVERT:
                im = im.convert(_CONVERT[mode])
                notes.append("%s: %s pixels: converted to %s (written back as %s)" % (path, mode, im.mode, im.mode))
                if mode == "CMYK":
                    info.pop("icc_profile", None)             # a CMYK profile does not describe RGB pixels
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                a = np.asarray(im).astype(np.uint16)[:, :, None]
            elif im.mode == "I":
                a = np.asarray(im)
                if a.min(initial=0) < 0 or a.max(initial=0) > 65535:
                    raise ImageError("%s: 32-bit integer samples outside 0..65535: not a picture this reads" % path)
                a = a.astype(np.uint16)[:, :, None]
                notes.append("%s: 32-bit integer grey: read and written back as 16-bit" % path)
            elif im.mode == "F":
                a = np.asarray(im, np.float32)[:, :, None]
                if not np.isfinite(a).all() or a.min(initial=0) < -1e-6 or a.max(initial=0) > 1 + 1e-6:
                    raise ImageError("%s: float samples must be finite and lie in [0, 1]" % path)
            elif im.mode in ("L", "LA", "RGB", "RGBA"):
                a = np.asarray(im)
                a = a[:, :, None] if a.ndim == 2 else a
            else:
                raise ImageError("%s: pixel mode %s is not supported (grey, grey + alpha, RGB, RGBA, palette, "
                                 "CMYK, 8- or 16-bit)" % (path, im.mode))
    if fmt not in ("PNG", "JPEG", "TIFF", "BMP"):
        notes.append("%s: a %s file: the output is written as PNG" % (path, fmt))
        fmt = "PNG"
    if fmt in ("JPEG", "BMP") and a.dtype != np.uint8:                        # pragma: no cover
        fmt = "PNG"
    return a, fmt, notes, info


def read(path):
    """Decode a picture file -> Picture (see the module's docstring); an ImageError names any problem."""
    path = os.fspath(path)
    probe(path)
    kind = kind_of(path)
    notes, info, npy_shape = [], {}, None
    try:
        if kind == "NPY":
            a, dtype, npy_shape, _ = _read_npy(path)
            fmt = "NPY"
        else:
            got = _read_tiff(path) if kind == "TIFF" else None
            hdr = None if got is not None else png_header(path)
            if got is not None:
                a, dtype, notes = got
                fmt = "TIFF"
            elif hdr is not None and hdr[2] == 16:
                a, fmt = read_png16(path), "PNG"
                dtype = np.dtype(np.uint16)
            else:
                a, fmt, notes, info = _read_pil(path)
                dtype = np.dtype(a.dtype)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("%s: not enough memory to decode it" % path) from None
    except Exception as exc:
        raise _decode_error(path, exc) from None
    _check_size(path, a.shape[0], a.shape[1])
    colour, alpha = _split_alpha(a)
    if colour.shape[2] not in (1, 3):
        raise ImageError("%s: %d colour channels: expected grey (1) or RGB (3), with or without alpha"
                         % (path, colour.shape[2]))
    return Picture(path=path, pixels=to_unit(colour), alpha=alpha, format=fmt, dtype=np.dtype(dtype), notes=notes,
                   npy_shape=npy_shape, info=info)


def from_array(a, name="array"):
    """An array (H, W), (H, W, C) or (C, H, W) with C = 1..4, uint8, uint16 or float in [0, 1] -> Picture
    (format NPY, written back in the array's own shape and dtype)."""
    a = np.asarray(a)
    (h, w, c), layout = _npy_layout(name, a.shape)
    _check_size(name, h, w)
    dtype = _npy_dtype(name, a.dtype)
    hwc = a[:, :, None] if layout == "HW" else (a.transpose(1, 2, 0) if layout == "CHW" else a)
    if dtype.kind == "f" and (not np.isfinite(hwc).all() or hwc.min() < -1e-6 or hwc.max() > 1 + 1e-6):
        raise ImageError("%s: float samples must be finite and lie in [0, 1] (0-255? pass uint8)" % name)
    colour, alpha = _split_alpha(hwc)
    return Picture(path=name, pixels=to_unit(colour), alpha=alpha, format="NPY", dtype=dtype, npy_shape=tuple(a.shape))


def to_array(pic, y):
    """The result y (H, W, C) in [0, 1] as the input array was: its shape, its dtype, its alpha."""
    a = from_unit(y, pic.dtype) if pic.dtype != bool else (np.asarray(y) >= 0.5)
    if pic.alpha is not None:
        a = np.concatenate([a, pic.alpha[:, :, None].astype(a.dtype)], axis=2)
    shape = pic.npy_shape
    if shape is None:
        return a
    if len(shape) == 2:
        return a[:, :, 0]
    (_, _, _), layout = _npy_layout(pic.path, shape)
    return np.ascontiguousarray(a.transpose(2, 0, 1)) if layout == "CHW" else a


# ------------------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------------------
def output_extension(pic):
    """The extension of the output file: the input's own when it is one of ours, else .png."""
    ext = os.path.splitext(pic.path)[1]
    return ext if kind_of(pic.path) == pic.format else {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif",
                                                         "BMP": ".bmp", "NPY": ".npy"}[pic.format]


def encode(tmp, pic, y):
    """Write y (H, W, C) in [0, 1] to the file `tmp` in pic's format, bit depth, channels and alpha."""
    y = np.asarray(y)
    if y.ndim == 2:
        y = y[:, :, None]
    if pic.format == "NPY":
        return _write_npy(tmp, pic, y, pic.alpha)
    a = from_unit(y, pic.dtype)
    if pic.format == "TIFF" and (_tifffile() is not None):
        return _write_tiff(tmp, a, pic.alpha)
    full = a if pic.alpha is None else np.concatenate([a, pic.alpha[:, :, None].astype(a.dtype)], axis=2)
    if pic.format == "PNG" and a.dtype == np.uint16:
        return write_png16(tmp, full)
    Image = _pil()
    if a.dtype == np.uint16:                                                    # grey 16-bit, not PNG
        im = Image.fromarray(full[:, :, 0], mode=None) if full.shape[2] == 1 else None
    elif a.dtype.kind == "f":
        im = Image.fromarray(full[:, :, 0].astype(np.float32), mode="F") if full.shape[2] == 1 else None
    else:
        im = Image.fromarray(full[:, :, 0] if full.shape[2] == 1 else full)
    if im is None:                                                              # pragma: no cover
        raise ImageError("%s: cannot write %s samples with %d channels as %s" % (pic.path, a.dtype, full.shape[2],
                                                                                 pic.format))
    kw = {k: v for k, v in pic.info.items() if k in ("icc_profile", "exif", "dpi")}
    if pic.format == "JPEG":
        if im.mode == "RGBA":                                                   # pragma: no cover
            im = im.convert("RGB")
        kw.update(quality=95, subsampling=0)
    if pic.format == "BMP":
        kw.pop("icc_profile", None)
        kw.pop("exif", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        im.save(tmp, format=pic.format, **kw)


def write(path, pic, y):
    """Write y as pic's format to `path` atomically (a temporary file renamed into place: no partial file)."""
    from .fileio import atomic_write
    return atomic_write(path, lambda tmp: encode(tmp, pic, y))
