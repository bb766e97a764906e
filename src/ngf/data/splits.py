"""The arrays a run trains and tests on, and the checks that they fit together."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ngf.core.errors import NgfError


class DataSplits(NamedTuple):
    """Images [N, H, W, C] and integer labels, for training and testing.

    Images are uint8 pixels (0..255, divided by 255 on the device), or floating-point
    values already scaled to [0, 1] (taken as they are); ``check_splits`` refuses others.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def input_shape(self) -> tuple:
        """Shape of one example."""
        return tuple(self.x_train.shape[1:])


def check_splits(data: DataSplits, name: str) -> DataSplits:
    """``data`` if its arrays fit together: the same example shape, one integer label per
    example in [0, n_classes), and at least one example in each split."""
    n_classes = data.n_classes
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise NgfError(f"dataset {name!r}: n_classes must be an integer ≥ 2, got {n_classes!r}")
    shapes = []
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if not hasattr(x, "shape") or not hasattr(y, "shape") or x.ndim < 2 or y.ndim != 1:
            raise NgfError(f"dataset {name!r}: {split} images must be an array [N, ...] and labels [N]")
        if len(x) == 0 or len(y) == 0:
            raise NgfError(f"dataset {name!r}: the {split} split is empty (images {tuple(x.shape)}, "
                           f"labels {tuple(y.shape)}); each split needs at least one example")
        if len(x) != len(y):
            raise NgfError(f"dataset {name!r}: {split} images {tuple(x.shape)} and labels {tuple(y.shape)} "
                           "do not match")
        if not jnp.issubdtype(x.dtype, jnp.number) or not jnp.issubdtype(y.dtype, jnp.integer):
            raise NgfError(f"dataset {name!r}: {split} images must be numbers and labels integers, "
                           f"got {x.dtype} and {y.dtype}")
        _check_images(x, f"x_{split}", name)
        if y.min() < 0 or y.max() >= n_classes:
            raise NgfError(f"dataset {name!r}: {split} labels must lie in [0, {n_classes}), "
                           f"found {int(y.min())}..{int(y.max())}")
        shapes.append(tuple(x.shape[1:]))
    if shapes[0] != shapes[1]:
        raise NgfError(f"dataset {name!r}: train examples {shapes[0]} and test examples {shapes[1]} differ in shape")
    return data


def _check_images(x, array: str, name: str) -> None:
    """uint8 pixels, or floats already in [0, 1]; anything else would be scaled wrongly without a word."""
    if x.dtype == np.uint8:
        return
    if not np.issubdtype(x.dtype, np.floating):
        raise NgfError(f"dataset {name!r}: {array} is {x.dtype}; images must be uint8 pixels (0..255) "
                       "or floats in [0, 1]")
    low, high = float(np.min(x)), float(np.max(x))
    if not 0.0 <= low <= high <= 1.0:  # NaN fails too
        raise NgfError(f"dataset {name!r}: {array} holds floats from {low:g} to {high:g}; float images must "
                       "lie in [0, 1] (give pixels 0..255 as uint8)")
