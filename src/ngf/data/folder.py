"""``--dataset folder:PATH``: a tree of images with one subfolder per class, like torchvision's ImageFolder.

``PATH/train/<class>/*.png`` and ``PATH/test/<class>/*.png``, or ``PATH/<class>/*.png``
alone, of which a fixed part of each class (``test_fraction``, seed 0) is held out for
testing, with a note saying so (printed when the run starts). Classes are the subfolders'
names in sorted order; images are read with Pillow, in sorted order, and must share one
size and mode. A class folder without images is refused, as torchvision's ImageFolder
refuses it, and so is ``train/`` without ``test/`` (or the reverse).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ngf.core.errors import NgfError
from ngf.data.images import NOTES, ImageStacker, held_out
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


def _read_split(root: Path, classes: list[str], stacker: ImageStacker, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Every image under ``root/<class>/`` for the given classes, and their class indices.

    A class folder without images is refused, as torchvision's ImageFolder does: its class
    would have no example, and its index would shift every class after it.
    """
    present = [(label, root / name) for label, name in enumerate(classes) if (root / name).is_dir()]
    found = {label: _files(folder) for label, folder in present}
    empty = [str(folder) for label, folder in present if not found[label]]
    if empty:
        raise NgfError(f"dataset {source}: class folder {empty[0]} holds no images "
                       f"({', '.join(IMAGE_SUFFIXES)}); remove the folder or add images to it")
    files = [(path, label) for label, _ in present for path in found[label]]
    x = stacker.stack((_open(path) for path, _ in files), lambda i: f"image {files[i][0]}", f"folder {root}")
    return x, np.asarray([label for _, label in files], dtype=np.int32)


def _layout(root: Path, source: str) -> bool:
    """Whether ``root`` holds train/ and test/ (True) or the class folders themselves (False)."""
    train, test = (root / "train").is_dir(), (root / "test").is_dir()
    if train != test:
        has, lacks = ("train", "test") if train else ("test", "train")
        raise NgfError(f"dataset {source}: {root} has {has}/ but no {lacks}/; give both train/ and test/ "
                       f"(one class folder each), or put the class folders in {root} itself to hold "
                       "a part of each class out for testing")
    return train


def load_folder(path: str, data_dir=None, test_fraction: float = 0.2) -> DataSplits:
    """Images in one subfolder per class, under ``train/`` and ``test/`` or held out by class.

    Args:
      test_fraction: the part of each class held out for testing when there is no ``test/`` folder.
    """
    root, source = Path(path).expanduser(), f"folder:{path}"
    if not root.is_dir():
        raise NgfError(f"dataset {source}: {root} is not a folder")
    NOTES.clear()  # a note of an earlier read whose run never started
    split = _layout(root, source)
    classes = _classes(root / "train" if split else root)
    if not classes:
        raise NgfError(f"dataset {source}: {root} holds no class subfolders (one folder of images per class, "
                       "optionally under train/ and test/)")
    stacker = ImageStacker()
    if not split:
        x, y = _read_split(root, classes, stacker, source)
        return DataSplits(*held_out(x, y, float(test_fraction), source), len(classes))
    unknown = sorted(set(_classes(root / "test")) - set(classes))
    if unknown:
        raise NgfError(f"dataset {source}: test/ has classes that train/ lacks: {', '.join(unknown)}")
    x_train, y_train = _read_split(root / "train", classes, stacker, source)
    x_test, y_test = _read_split(root / "test", classes, stacker, source)
    return DataSplits(x_train, y_train, x_test, y_test, len(classes))
