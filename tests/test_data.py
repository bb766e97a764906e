"""IDX reading, the search order, corrupt files, the offline failure and the Hub path."""

import gzip

import numpy as np
import pytest

from conftest import real_data_available
from ngf.data.sources import SPLIT_FILES, IdxDataset, read_idx_folder
from ngf.core.errors import NgfError
from ngf.data.idx import parse_idx, read_idx, write_idx


def write_folder(folder, n_train=5, n_test=3, fill=0):
    folder.mkdir(parents=True, exist_ok=True)
    images = {"train": np.full((n_train, 4, 4), fill, np.uint8), "t10k": np.full((n_test, 4, 4), fill, np.uint8)}
    for prefix, imgs in images.items():
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", imgs)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(len(imgs), dtype=np.uint8) % 3)
    return folder


def test_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(NgfError, match="train-images-idx3-ubyte.gz"):
        read_idx(path)


def test_short_payload_is_reported(tmp_path):
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 7)
    with pytest.raises(NgfError, match=r"x\.gz.*expected 10 data bytes.*found 7"):
        read_idx(path)


def test_bad_magic_is_reported():
    with pytest.raises(NgfError, match="not an IDX file"):
        parse_idx(b"hello world", "thing")


def test_missing_file_is_named(tmp_path):
    folder = write_folder(tmp_path / "toy")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(NgfError, match="t10k-labels-idx1-ubyte.gz"):
        read_idx_folder(folder, 3)


def test_labels_out_of_range_are_rejected(tmp_path):
    folder = write_folder(tmp_path / "toy")
    with pytest.raises(NgfError, match=r"labels must lie in \[0, 2\)"):
        read_idx_folder(folder, 2)


def test_search_order(tmp_path, monkeypatch):
    write_folder(tmp_path / "explicit" / "toy", fill=1)
    write_folder(tmp_path / "env" / "toy", fill=2)
    monkeypatch.setenv("NGF_DATA_DIR", str(tmp_path / "empty") + ":" + str(tmp_path / "env"))
    dataset = IdxDataset("toy", n_classes=3)
    assert dataset().x_train[0, 0, 0, 0] == 2
    assert dataset(tmp_path / "explicit").x_train[0, 0, 0, 0] == 1
    assert dataset(tmp_path / "explicit" / "toy").x_train.shape == (5, 4, 4, 1)


def test_data_dir_without_files_is_an_error(tmp_path):
    with pytest.raises(NgfError, match="no IDX files for dataset 'toy'"):
        IdxDataset("toy")(tmp_path)


@pytest.mark.parametrize("offline", [True, False])
def test_offline_failure_is_fast_and_says_what_to_do(tmp_path, monkeypatch, offline):
    """Fast by construction, whatever the machine's load: offline, no connection is tried at all; with the
    Hub unreachable, one probe bounded by HUB_TIMEOUT_S decides, before ``datasets`` (which waits ~20 s)."""
    import socket

    from ngf.data import sources

    tried = []

    def refuse(address, timeout=None, *args, **kwargs):
        tried.append((address, timeout))
        raise ConnectionRefusedError("nothing listens here")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("NGF_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(NgfError) as info:
        IdxDataset("nowhere", hub_id="someone/nowhere")()
    assert tried == ([] if offline else [(("huggingface.co", 443), sources.HUB_TIMEOUT_S)])
    assert "NGF_DATA_DIR" in str(info.value) and "--data-dir" in str(info.value)


def build_hub_dataset(folder, n_train=6, n_test=4):
    """A dataset in the Hub's layout (parquet with an Image feature), made by `datasets`."""
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n)
        data = {"image": [Image.fromarray(im) for im in images], "label": labels.tolist()}
        datasets.Dataset.from_dict(data, features=features).to_parquet(str(folder / f"{split}.parquet"))
        arrays[split] = (images, labels)
    return arrays


def test_hub_path_converts_once_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("NGF_DATA_DIR", str(tmp_path / "no-local-copy"))
    monkeypatch.setenv("NGF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    hub = tmp_path / "hub"
    arrays = build_hub_dataset(hub)
    dataset = IdxDataset("toyhub", hub_id=str(hub))
    loaded = dataset()
    np.testing.assert_array_equal(loaded.x_train[..., 0], arrays["train"][0])
    np.testing.assert_array_equal(loaded.y_test, arrays["test"][1])
    cached = tmp_path / "cache" / "datasets" / "toyhub"
    assert sorted(p.name for p in cached.iterdir()) == sorted(f + ".gz" for f in SPLIT_FILES.values())
    for path in hub.iterdir():  # the second load must come from the cache
        path.unlink()
    np.testing.assert_array_equal(dataset().x_train, loaded.x_train)


@pytest.mark.skipif(not real_data_available(), reason="real MNIST not on NGF_DATA_DIR")
def test_real_mnist_shapes():
    from ngf.plugins.datasets import ngf_register_datasets

    data = ngf_register_datasets()["mnist"]()
    assert data.x_train.shape == (60000, 28, 28, 1) and data.x_test.shape == (10000, 28, 28, 1)
    assert data.y_train.dtype == np.int32 and set(np.unique(data.y_train)) == set(range(10))
