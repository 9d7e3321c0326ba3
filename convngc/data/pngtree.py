"""Folders of image files, ``<root>/<split>/<class>/*.png`` (the layout CINIC-10 ships in)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from .errors import DataError, open_data

Array = np.ndarray


_IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp")


def _rgb8(im) -> Array:
    """A PIL image as (H, W, 3) uint8. 16-bit grayscale PNGs (modes I;16*, or I) are scaled by 255/65535:
    PIL's convert("RGB") would clip them, so that every pixel above 255 became white."""
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im, dtype=np.float64)
        if a.min() < 0 or a.max() > 65535:
            raise DataError(f"{getattr(im, 'filename', 'image')}: integer pixels outside 0..65535; not a 16-bit image")
        g = np.rint(a / 257.0).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=-1)
    if im.mode == "F":
        raise DataError(f"{getattr(im, 'filename', 'image')}: floating-point pixels (mode F); expected 8- or 16-bit")
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_image_folder(root, split: Optional[str] = None, classes: Optional[Sequence[str]] = None,
                      ) -> Tuple[Array, Array, Tuple[str, ...]]:
    """Images in ``root/<split>/<class>/*.png`` (or ``root/<class>/*.png`` when ``split`` is None).

    Classes are the sorted sub-folder names unless given; files are read in sorted order. Grayscale (and
    palette/RGBA) images are converted to RGB, as CINIC-10 has a few grayscale PNGs. All images must have the
    same size. Returns ``(x (N,H,W,3) uint8, y uint8 class indices, classes)``.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    folder = root / split if split else root
    if not folder.is_dir():
        raise DataError(f"{folder}: directory not found (expected <root>/<split>/<class>/*.png, as CINIC-10 ships)")
    if classes is None:
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{folder}: no class sub-folders (expected {folder}/<class>/*.png)")
    images, labels = [], []
    for k, c in enumerate(classes):
        files = sorted(p for p in (folder / c).glob("*") if p.suffix.lower() in _IMG_EXT)
        for f in files:
            try:
                with open_data(f) as fh, Image.open(fh) as im:
                    a = _rgb8(im)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                raise DataError(f"{f}: unreadable image ({e}); delete or replace it") from e
            if images and a.shape != images[0].shape:
                raise DataError(f"{f}: image size {a.shape[:2]} differs from {images[0].shape[:2]} of the others")
            images.append(a)
            labels.append(k)
    if not images:
        raise DataError(f"{folder}: no image files (*.png) in the class folders {list(classes)}")
    return np.stack(images), np.asarray(labels, dtype=np.uint8), tuple(classes)
