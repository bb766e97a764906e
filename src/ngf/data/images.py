"""Images into arrays: PIL images or arrays stacked as uint8 [N, H, W, C], labels as classes.

Shared by every image-dataset form (``hf:``, ``disk:``, ``folder:``, ``cifar10``...):
all images of a dataset must have one size and one mode (a mismatch names the first
image that differs and the one it differs from); grey images get one channel, colour
images keep theirs last, as the models expect. A dataset without a test split gets a
fixed held-out part of each class (seed 0, whatever the run's seed), and says so.
"""

from __future__ import annotations

import sys
from typing import Callable, Iterable, Sequence

import numpy as np

from ngf.core.errors import NgfError
from ngf.data.splits import DataSplits

SPLIT_SEED = 0  # the held-out split does not move with the run's --seed: every run tests on the same images
LABEL_LIMIT = 2 ** 31  # labels are int32 class indices
NOTES: list[str] = []  # notes on how a dataset was read, printed once its run starts (print_notes)
CHANNELS = {"1": 1, "L": 1, "LA": 2, "RGB": 3, "RGBA": 4}  # PIL modes of 8-bit images


def _describe(image) -> tuple[tuple, str]:
    """(shape as H, W, C; a mode name) of a PIL image or an array."""
    if hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image
        if image.mode not in CHANNELS:
            return (), image.mode
        width, height = image.size
        return (height, width, CHANNELS[image.mode]), image.mode
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    return tuple(array.shape), f"array of {array.dtype}"


def _pixels(image) -> np.ndarray:
    array = np.asarray(image.convert("L") if getattr(image, "mode", None) == "1" else image)
    return array[..., None] if array.ndim == 2 else array


class ImageStacker:
    """Stacks the images of every split of one dataset, checking they share a size and mode."""

    def __init__(self):
        self.first = None  # (shape, mode, name) of the dataset's first image

    def stack(self, images: Iterable, where: Callable[[int], str], what: str) -> np.ndarray:
        """``images`` as one uint8 array [N, H, W, C]; ``where(i)`` names image i, ``what`` them all."""
        arrays = []
        for i, image in enumerate(images):
            shape, mode = _describe(image)
            if not shape:
                raise NgfError(f"{where(i)} has mode {mode}, not an 8-bit grey or colour image (L, RGB, RGBA); "
                               "convert the images first")
            if self.first is None:
                self.first = (shape, mode, where(i))
            elif (shape, mode) != self.first[:2]:
                raise NgfError(f"{where(i)} is {_size(shape, mode)} but {self.first[2]} is "
                               f"{_size(*self.first[:2])}: every image of a dataset needs one size and mode "
                               "(resize or convert them first)")
            array = _pixels(image)
            if array.dtype != np.uint8:
                raise NgfError(f"{where(i)} holds {array.dtype} pixels, not uint8 (0..255)")
            arrays.append(array)
        if not arrays:
            raise NgfError(f"{what} holds no images")
        return np.stack(arrays)


def _size(shape: tuple, mode: str) -> str:
    return f"{shape[1]}×{shape[0]} {mode}"  # width × height, as image tools say it


def class_indices(labels: Sequence, names: Sequence[str] | None, where: str,
                  splits: Sequence[str] = ("train", "test")) -> tuple[list[np.ndarray], int]:
    """Integer labels for each split of ``labels`` (a list of sequences, named by ``splits``) and the
    number of classes.

    ``names`` (a ``ClassLabel``'s) fixes the classes; otherwise integer labels count
    0..max and string labels are the sorted set of those seen in any split. A missing
    label (None) or an integer label outside [0, 2³¹) is refused, naming its split and row.
    """
    values = [_label_array(split, where, name) for split, name in zip(labels, splits)]
    if names is not None or all(_integers(v) for v in values):
        for v, name in zip(values, splits):
            _check_range(v, where, name)
        values = [v.astype(np.int32) for v in values]
        return values, len(names) if names is not None else int(max(v.max(initial=0) for v in values)) + 1
    if all(v.dtype.kind in "UO" for v in values):
        classes = sorted({str(x) for v in values for x in v})
        index = {name: i for i, name in enumerate(classes)}
        return [np.asarray([index[str(x)] for x in v], dtype=np.int32) for v in values], len(classes)
    raise NgfError(f"{where}: labels must be integers or class names, got {values[0].dtype}")


def _label_array(split: Sequence, where: str, name: str) -> np.ndarray:
    """One split's labels as an array; a missing one (None) is refused rather than made a class "None"."""
    values = np.asarray(split)
    if values.dtype.kind == "f" and not isinstance(split, np.ndarray) and all(_is_int(x) for x in split):
        values = np.asarray(split, dtype=object)  # Python integers past int64, which NumPy made floats
    missing = np.flatnonzero([x is None for x in values]) if values.dtype == object else ()
    if len(missing):
        more = f" (and {len(missing) - 1} more rows)" if len(missing) > 1 else ""
        raise NgfError(f"{where}: split {name!r} row {missing[0]} has no label (None){more}; "
                       "label or drop such rows first")
    return values


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _integers(values: np.ndarray) -> bool:
    """Integer labels: an integer array, or Python integers too large for one."""
    return values.dtype.kind in "iu" or values.dtype == object and all(_is_int(x) for x in values)


def _check_range(values: np.ndarray, where: str, name: str) -> None:
    """Labels in [0, 2³¹), int32 class indices; the first outside is named with its true value."""
    if values.size and (values.dtype == object or values.min() < 0 or values.max() >= LABEL_LIMIT):
        bad = next((i for i, x in enumerate(values) if not 0 <= int(x) < LABEL_LIMIT), None)
        if bad is not None:
            raise NgfError(f"{where}: split {name!r} row {bad} has label {int(values[bad])}; "
                           "a label must be a class index in [0, 2³¹)")


def held_out(x: np.ndarray, y: np.ndarray, fraction: float, source: str) -> tuple:
    """``(x_train, y_train, x_test, y_test)``: ``fraction`` of each class's examples held out, seed 0."""
    if not 0 < fraction < 1:
        raise NgfError(f"{source}: test_fraction must lie strictly between 0 and 1, got {fraction}")
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_test = min(len(members) - 1, max(1, round(fraction * len(members)))) if len(members) > 1 else 0
        test[members[:n_test]] = True
    if not test.any():
        raise NgfError(f"{source}: too few images to hold {fraction:.0%} out for testing")
    NOTES.append(f"note: {source} has no test split; testing on a fixed {fraction:.0%} of each class "
                 f"({int(test.sum())} of {len(y)} images, seed {SPLIT_SEED})")
    return x[~test], y[~test], x[test], y[test]


def make_splits(train: tuple, test: tuple | None, n_classes: int, source: str, test_fraction: float) -> DataSplits:
    """``DataSplits`` from ``(x, y)`` pairs; without ``test``, a held-out part of ``train``."""
    x_train, y_train = train
    if test is None:
        x_train, y_train, x_test, y_test = held_out(x_train, y_train, test_fraction, source)
    else:
        x_test, y_test = test
    if x_train.shape[1:] != x_test.shape[1:]:
        raise NgfError(f"{source}: training images are {x_train.shape[1:]} but test images {x_test.shape[1:]}")
    return DataSplits(x_train, y_train, x_test, y_test, n_classes)


def print_notes(file=None) -> None:
    """Print the notes of the datasets read since the last call, and forget them.

    A note is held until the run starts (``ngf.plugins.datasets``' ``ngf_run_start``), so
    that a bad input found after the data were read stays one line of output.
    """
    while NOTES:
        print(NOTES.pop(0), file=file or sys.stderr)
