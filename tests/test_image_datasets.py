"""Any image-classification dataset (issue 17): ``disk:``, ``folder:``, ``hf:``, ``cifar10`` / ``cifar100``.

Every path is tested with small RGB datasets built here (``tests/rgb_forms.py``); the
Hub is never contacted: ``HF_HUB_OFFLINE=1`` makes it count as unreachable, and a
faked ``datasets`` cache stands for an earlier download. Nothing here trains
(``tests/test_rgb_models.py`` does).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import ngf
from ngf.cli import main
from ngf.data.hub import write_arrays
from ngf.data.images import print_notes
from ngf.host.registry import load_registry
from ngf.runs import configfile
from ngf.runs.config import RunConfig
from ngf.runs.resolve import resolve_data
from rgb_forms import HUB_ID, rgb_splits, write_disk, write_hub_cache, write_tree

REGISTRY = load_registry()


@pytest.fixture(scope="module")
def data():
    return rgb_splits(n_train=24, n_test=9, size=12)


@pytest.fixture(scope="module")
def built(tmp_path_factory, data):
    """The same dataset as a save_to_disk folder, a PNG tree and a faked Hub cache."""
    root = tmp_path_factory.mktemp("image-forms")
    return {"disk": write_disk(root / "disk", data), "tree": write_tree(root / "tree", data),
            "cache": write_hub_cache(root / "hf-cache", data), "root": root}


@pytest.fixture
def hub_cache(built, monkeypatch):
    """``datasets`` reads ``built``'s faked cache; the Hub counts as unreachable."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(built["cache"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return built["cache"]


def load(dataset: str, **opts):
    """The dataset ``--dataset DATASET --dataset-opt ...`` names, through the run's resolver."""
    return resolve_data(RunConfig(dataset=dataset, dataset_opts=opts), REGISTRY)[0]


def same(a, b) -> bool:
    return a.n_classes == b.n_classes and all(np.array_equal(x, y) for x, y in zip(a[:4], b[:4]))


def test_the_three_forms_give_back_the_same_rgb_arrays(built, hub_cache, data):
    for dataset in (f"disk:{built['disk']}", f"folder:{built['tree']}", f"hf:{HUB_ID}"):
        loaded = load(dataset)
        assert loaded.x_train.dtype == np.uint8 and loaded.input_shape == (12, 12, 3), dataset
        assert same(loaded, data), dataset


def test_a_hub_dataset_is_cached_as_arrays_once(hub_cache, data, tmp_path, monkeypatch):
    import datasets

    load(f"hf:{HUB_ID}")
    cached = Path(tmp_path / "ngf-cache" / "datasets" / "hf" / HUB_ID / "arrays.npz")
    assert cached.is_file()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "empty"))  # datasets' copy gone
    assert same(load(f"hf:{HUB_ID}"), data)


def test_a_folder_without_splits_holds_out_a_fixed_part_of_each_class_and_says_so(tmp_path, data, capsys):
    tree = write_tree(tmp_path / "flat", data, split=False)
    first = load(f"folder:{tree}")
    assert capsys.readouterr().err == ""  # the note waits for the run to start (issue 32)
    print_notes()
    note = capsys.readouterr().err
    again = load(f"folder:{tree}", test_fraction="0.25")
    assert "has no test split; testing on a fixed 20% of each class" in note and "seed 0" in note
    assert len(first.x_train) + len(first.x_test) == len(data.x_train)
    for label in range(3):  # every class on both sides, in proportion
        n = int(np.sum(data.y_train == label))
        assert np.sum(first.y_test == label) == min(n - 1, max(1, round(0.2 * n)))
    assert same(first, load(f"folder:{tree}")) and len(again.x_test) >= len(first.x_test)


@pytest.mark.parametrize("kind", ["size", "mode"])
def test_mixed_sizes_or_modes_are_one_line_naming_the_file(tmp_path, data, kind, capsys):
    from PIL import Image

    tree = write_tree(tmp_path / "tree", data)
    odd = tree / "test" / "dog" / "odd.png"
    image = Image.fromarray(data.x_test[0])
    (image.resize((16, 12)) if kind == "size" else image.convert("L")).save(odd)
    status = main(["run", "--dataset", f"folder:{tree}", "--quiet", "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 2 and len(lines) == 1 and str(odd) in lines[0] and str(tree / "train") in lines[0]
    assert ("16×12 RGB but" if kind == "size" else "12×12 L but") in lines[0]
    assert not (tmp_path / "out").exists()


def test_columns_are_detected_or_named_with_dataset_opts(tmp_path, data):
    import datasets

    features = datasets.Features({"picture": datasets.Image(),
                                  "fine_label": datasets.ClassLabel(names=["a", "b", "c"]),
                                  "coarse_label": datasets.ClassLabel(names=["x", "y"])})
    table = datasets.Dataset.from_dict({"picture": list(data.x_train), "fine_label": data.y_train.tolist(),
                                        "coarse_label": (data.y_train % 2).tolist()}, features=features)
    table.save_to_disk(str(tmp_path / "one"))  # one Dataset, no test split: a held-out part
    source = f"disk:{tmp_path / 'one'}"
    with pytest.raises(ngf.NgfError, match="labels .label columns: fine_label, coarse_label.; "
                                           "pass --dataset-opt label=COLUMN"):
        load(source)
    coarse = load(source, label="coarse_label")
    assert coarse.n_classes == 2 and np.array_equal(np.sort(np.concatenate([coarse.y_train, coarse.y_test])),
                                                    np.sort(data.y_train % 2))
    with pytest.raises(ngf.NgfError, match="no column 'pixels' for --dataset-opt image; columns: picture"):
        load(source, image="pixels")
    with pytest.raises(ngf.NgfError, match="unknown option 'colour' for dataset 'disk:.*valid options: image, "
                                           "label, test_fraction"):
        load(source, colour="red")


def test_cifar10_offline_without_a_local_copy_is_one_line_within_10_s(tmp_path, monkeypatch, capsys):
    import datasets

    monkeypatch.setenv("NGF_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    started = time.perf_counter()
    status = main(["run", "--dataset", "cifar10", "--quiet", "--out", str(tmp_path / "out")])
    seconds = time.perf_counter() - started
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 2 and len(lines) == 1 and seconds < 10, (lines, seconds)
    for where in (tmp_path / "data" / "cifar10", tmp_path / "ngf-cache" / "datasets" / "cifar10",
                  tmp_path / "hf-cache", "'uoft-cs/cifar10'", "unreachable"):
        assert str(where) in lines[0]
    assert not (tmp_path / "out").exists()


def test_cifar_names_read_a_local_copy_first_then_the_hub_cache(tmp_path, monkeypatch, data):
    import datasets

    write_arrays(tmp_path / "data" / "cifar10" / "arrays.npz", data)
    monkeypatch.setenv("NGF_DATA_DIR", str(tmp_path / "data"))
    assert same(load("cifar10"), data)
    write_hub_cache(tmp_path / "hf-cache", data, repo_id="uoft-cs/cifar100", label="fine_label")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert same(load("cifar100"), data)  # its labels column is fine_label
    assert (tmp_path / "ngf-cache" / "datasets" / "cifar100" / "arrays.npz").is_file()


def test_dataset_opts_are_recorded_in_config_toml(tmp_path):
    config = RunConfig(dataset="folder:/x", dataset_opts={"test_fraction": "0.3"}, log=("tensorboard",),
                       out=str(tmp_path))
    names = {"rule": "lra", "model": "mlp", "dataset": "folder:/x"}
    path = tmp_path / "config.toml"
    path.write_text(configfile.dumps(configfile.resolved(config, REGISTRY, names)))
    back = RunConfig(**configfile.read(path))
    assert back.dataset_opts == {"test_fraction": "0.3"} and tuple(back.log) == ("tensorboard",)
    plain = configfile.resolved(RunConfig(), REGISTRY, {"rule": "lra", "model": "mlp", "dataset": "mnist"})
    assert "dataset_opts" not in plain and "log" not in plain  # earlier runs' files still compare equal


def test_ngf_datasets_lists_the_names_and_the_forms(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for shown in ("cifar10", "cifar100", "hf:OWNER/NAME", "disk:PATH", "folder:PATH", "test_fraction=0.2"):
        assert shown in out


def test_dataset_opts_for_a_datasplits_object_are_refused():
    with pytest.raises(ngf.NgfError, match="this dataset is a DataSplits, so they would not be used"):
        ngf.run(dataset=rgb_splits(n_train=4, n_test=2, size=4), dataset_opts={"label": "fine_label"})
