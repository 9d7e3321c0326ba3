"""Folders of image files, ``<root>/<split>/<class>/*.png`` (the layout CINIC-10 ships in)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from .errors import DataError

Array = np.ndarray


_IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp")


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
                with Image.open(f) as im:
                    a = np.asarray(im.convert("RGB"), dtype=np.uint8)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                raise DataError(f"{f}: unreadable image ({e}); delete or replace it") from e
            if images and a.shape != images[0].shape:
                raise DataError(f"{f}: image size {a.shape[:2]} differs from {images[0].shape[:2]} of the others")
            images.append(a)
            labels.append(k)
    if not images:
        raise DataError(f"{folder}: no image files (*.png) in the class folders {list(classes)}")
    return np.stack(images), np.asarray(labels, dtype=np.uint8), tuple(classes)
