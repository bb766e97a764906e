"""Small RGB image datasets built here, in the three forms ngf reads (issue 17), for the tests.

The same arrays are written as a ``save_to_disk`` folder (``disk:``), a PNG tree with
``train/`` and ``test/`` (``folder:``) and a ``datasets`` cache of a Hub repository as a
download leaves it (``hf:``, read in offline mode), so every form must give back the
same ``DataSplits``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ngf.data.splits import DataSplits

CLASSES = ("cat", "dog", "frog")
HUB_ID = "someone/tiny-rgb"


def rgb_splits(n_train: int = 32, n_test: int = 16, size: int = 32, seed: int = 0) -> DataSplits:
    """Random colour images whose class sets the red channel's level (learnable), sorted by class."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.sort(rng.integers(0, len(CLASSES), n)).astype(np.int32)  # folder order: by class, then by name
        x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        x[..., 0] = (40 + 80 * y)[:, None, None]
        return x, y

    return DataSplits(*split(n_train), *split(n_test), len(CLASSES))


def _features(datasets):
    return datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES))})


def write_disk(folder: Path, data: DataSplits) -> Path:
    """``data`` as a ``DatasetDict`` saved with ``save_to_disk`` (PNG-encoded images)."""
    import datasets

    splits = {name: datasets.Dataset.from_dict({"img": list(x), "label": y.tolist()}, features=_features(datasets))
              for name, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test))}
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def write_tree(folder: Path, data: DataSplits, split: bool = True) -> Path:
    """``data`` as PNG files, ``[train/|test/]<class>/<index>.png``."""
    from PIL import Image

    parts = (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)) if split else \
        (("", data.x_train, data.y_train),)
    for name, x, y in parts:
        for i, (image, label) in enumerate(zip(x, y)):
            target = folder / name / CLASSES[label]
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(target / f"{i:04d}.png")
    return folder


def write_hub_cache(cache: Path, data: DataSplits, repo_id: str = HUB_ID, label: str = "label") -> Path:
    """``data`` in a ``datasets`` cache folder laid out as a download of ``repo_id`` leaves it."""
    import datasets

    features = datasets.Features({"img": datasets.Image(), label: datasets.ClassLabel(names=list(CLASSES))})

    class Download(datasets.GeneratorBasedBuilder):
        def _info(self):
            return datasets.DatasetInfo(features=features)

        def _split_generators(self, dl_manager):
            return [datasets.SplitGenerator(name=name, gen_kwargs={"x": x, "y": y})
                    for name, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test))]

        def _generate_examples(self, x, y):
            for i, (image, value) in enumerate(zip(x, y)):
                yield i, {"img": image, label: int(value)}

    builder = Download(cache_dir=str(cache), dataset_name=repo_id.split("/")[-1], repo_id=repo_id,
                       config_name="plain_text", hash="0123abcd")
    builder.download_and_prepare()
    return cache
