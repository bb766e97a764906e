"""``--dataset folder:PATH``: a tree of images with one subfolder per class, like torchvision's ImageFolder.

``PATH/train/<class>/*.png`` and ``PATH/test/<class>/*.png``, or ``PATH/<class>/*.png``
alone, of which a fixed part of each class (``test_fraction``, seed 0) is held out for
testing, with a note saying so. Classes are the subfolders' names in sorted order;
images are read with Pillow, in sorted order, and must share one size and mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ngf.core.errors import NgfError
from ngf.data.images import ImageStacker, held_out
from ngf.data.splits import DataSplits

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def _classes(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _open(path: Path):
    from PIL import Image  # Pillow: only when a folder is read

    try:
        image = Image.open(path)
        image.load()  # reads the pixels and, for a file Pillow opened itself, closes it
        return image
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise NgfError(f"cannot read image {path}: {' '.join(str(exc).split())}") from None


def _read_split(root: Path, classes: list[str], stacker: ImageStacker) -> tuple[np.ndarray, np.ndarray]:
    """Every image under ``root/<class>/`` for the given classes, and their class indices."""
    files = [(path, label) for label, name in enumerate(classes) if (root / name).is_dir()
             for path in _files(root / name)]
    x = stacker.stack((_open(path) for path, _ in files), lambda i: f"image {files[i][0]}", f"folder {root}")
    return x, np.asarray([label for _, label in files], dtype=np.int32)


def load_folder(path: str, data_dir=None, test_fraction: float = 0.2) -> DataSplits:
    """Images in one subfolder per class, under ``train/`` and ``test/`` or held out by class.

    Args:
      test_fraction: the part of each class held out for testing when there is no ``test/`` folder.
    """
    root, source = Path(path).expanduser(), f"folder:{path}"
    if not root.is_dir():
        raise NgfError(f"dataset {source}: {root} is not a folder")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    classes = _classes(root / "train" if split else root)
    if not classes:
        raise NgfError(f"dataset {source}: {root} holds no class subfolders (one folder of images per class, "
                       "optionally under train/ and test/)")
    stacker = ImageStacker()
    if not split:
        x, y = _read_split(root, classes, stacker)
        return DataSplits(*held_out(x, y, float(test_fraction), source), len(classes))
    unknown = sorted(set(_classes(root / "test")) - set(classes))
    if unknown:
        raise NgfError(f"dataset {source}: test/ has classes that train/ lacks: {', '.join(unknown)}")
    x_train, y_train = _read_split(root / "train", classes, stacker)
    x_test, y_test = _read_split(root / "test", classes, stacker)
    return DataSplits(x_train, y_train, x_test, y_test, len(classes))
