"""Hugging Face ``datasets`` tables into ``DataSplits``: which columns, which splits.

The image column is the one with an ``Image`` feature (else one named ``image`` or
``img``); the label column is one named ``label`` or ``labels``, else the one
``ClassLabel`` column. When that does not settle it, ``--dataset-opt image=NAME
label=NAME`` does. The test split is ``test``, else ``validation``; a dataset with
neither gets a fixed held-out part of ``train`` (``ngf.data.images.held_out``).
"""

from __future__ import annotations

import functools

from ngf.core.errors import NgfError
from ngf.data.images import NOTES, ImageStacker, class_indices, make_splits
from ngf.data.splits import DataSplits

IMAGE_NAMES = ("image", "img")
LABEL_NAMES = ("label", "labels")
TEST_SPLITS = ("test", "validation")


def _kind(feature) -> str:
    return type(feature).__name__  # Image, ClassLabel, Value...: no import of datasets needed


def _choose(found: list[str], what: str, option: str, columns, source: str) -> str:
    if len(found) == 1:
        return found[0]
    which = f"{what} columns: {', '.join(found)}" if found else f"columns: {', '.join(columns)}"
    raise NgfError(f"dataset {source}: cannot tell which column holds the {what}s ({which}); "
                   f"pass --dataset-opt {option}=COLUMN")


def pick_columns(features: dict, source: str, image: str = "", label: str = "") -> tuple[str, str]:
    """The names of the image and label columns of a table with ``features``."""
    columns = list(features)
    for given, option in ((image, "image"), (label, "label")):
        if given and given not in columns:
            raise NgfError(f"dataset {source}: no column {given!r} for --dataset-opt {option}; "
                           f"columns: {', '.join(columns)}")
    if not image:
        typed = [c for c in columns if _kind(features[c]) == "Image"]
        image = _choose(typed or [c for c in columns if c in IMAGE_NAMES], "image", "image", columns, source)
    if not label:
        named = [c for c in columns if c in LABEL_NAMES and c != image]
        typed = [c for c in columns if _kind(features[c]) == "ClassLabel" and c != image]
        label = _choose(named or typed, "label", "label", columns, source)
    return image, label


def _split_names(splits: dict, source: str) -> tuple[str, str | None]:
    if "train" not in splits:
        raise NgfError(f"dataset {source}: no 'train' split; splits: {', '.join(splits) or '(none)'}")
    return "train", next((name for name in TEST_SPLITS if name in splits), None)


def _example(source: str, split: str, index: int) -> str:
    return f"{source} {split} image {index}"  # names the example in errors


def tables_to_splits(splits: dict, source: str, image: str = "", label: str = "",
                     test_fraction: float = 0.2) -> DataSplits:
    """``DataSplits`` from ``{split name: datasets.Dataset}`` (a ``DatasetDict``)."""
    NOTES.clear()  # a note of an earlier read whose run never started
    train_name, test_name = _split_names(splits, source)
    features = splits[train_name].features
    image, label = pick_columns(features, source, image, label)
    names = getattr(features[label], "names", None) if _kind(features[label]) == "ClassLabel" else None
    stacker, images, labels = ImageStacker(), [], []
    used = (train_name, test_name) if test_name else (train_name,)
    for name in used:
        table = splits[name]
        if image not in table.column_names or label not in table.column_names:
            raise NgfError(f"dataset {source}: split {name!r} lacks column {image!r} or {label!r}")
        images.append(stacker.stack(table[image], functools.partial(_example, source, name),
                                    f"dataset {source} split {name!r}"))
        labels.append(list(table[label]))
    labels, n_classes = class_indices(labels, names, f"dataset {source}", used)
    pairs = list(zip(images, labels))
    return make_splits(pairs[0], pairs[1] if test_name else None, n_classes, f"dataset {source}",
                       float(test_fraction))
