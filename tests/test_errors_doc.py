"""Every row of docs/errors.md's table, run as written: one line, exit status 2, nothing left behind.

The table is parsed from the document, so the document and the tests cannot drift apart.
"""

import gzip
import re
import shlex
import struct
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

import ngf
from conftest import make_tiny
from ngf.cli import main
from ngf.runs.configfile import dumps
from ngf.data.idx import write_idx
from ngf.models import Dense, Graph, Sequential
from ngf.runs.folder import lock

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def table_rows() -> list[dict]:
    """The rows between ``<!-- errors-table -->`` and ``<!-- /errors-table -->``."""
    text = DOC.read_text()
    body = text.split("<!-- errors-table -->")[1].split("<!-- /errors-table -->")[0]
    lines = [line for line in body.strip().splitlines() if line.startswith("|")][2:]  # after header and rule
    rows = []
    for line in lines:
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        number, what, command, message, status = cells
        rows.append({"id": f"{number}-{what}", "command": command.strip("`"), "message": message,
                     "status": int(status)})
    return rows


ROWS = table_rows()
HELD = []  # the lock on {locked}, held by this process for the module's rows


def _idx_folder(folder: Path, labels_max: int = 10) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (64, 6, 6), dtype=np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, labels_max, 64).astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 6, 6), dtype=np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 20).astype(np.uint8))
    return folder


def _saved_datasets(root: Path) -> tuple[Path, Path, Path]:
    """``datasets``' save_to_disk folders: integer labels with one missing (row 5), one label 2³¹ + 5
    (row 3), and a dataset whose splits hold no examples."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)) for _ in range(12)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    folders = []
    for name, changed in (("missing_label", {5: None}), ("big_label", {3: 2 ** 31 + 5}), ("empty_disk", None)):
        labels = [changed.get(i, i % 3) for i in range(12)] if changed is not None else []
        table = datasets.Dataset.from_dict({"image": images if changed is not None else [], "label": labels},
                                           features=features)
        datasets.DatasetDict({"train": table, "test": table}).save_to_disk(str(root / name))
        folders.append(root / name)
    return tuple(folders)


def _damaged_runs(root: Path, config: dict) -> tuple:
    """Run folders whose config.toml is a link to /dev/zero, a directory, empty or without its epochs line,
    and one whose checkpoint.msgpack is a directory."""
    folders = []
    for name in ("config_link", "config_dir", "config_empty", "config_no_epochs", "checkpoint_dir"):
        folder = root / name
        folder.mkdir()
        folders.append(folder)
        (folder / "config.toml").write_text(dumps(config))
    (folders[0] / "config.toml").unlink()
    (folders[0] / "config.toml").symlink_to("/dev/zero")
    (folders[1] / "config.toml").unlink()
    (folders[1] / "config.toml").mkdir()
    (folders[2] / "config.toml").write_text("")
    (folders[3] / "config.toml").write_text(dumps({k: v for k, v in config.items() if k != "epochs"}))
    (folders[4] / "checkpoint.msgpack").mkdir()
    return tuple(folders)


def _image_trees(root: Path) -> tuple[Path, Path, Path]:
    """``folder:`` trees: train/b without images; train/ without test/; class folders alone (a held-out test)."""
    from PIL import Image

    image = Image.fromarray(np.zeros((6, 6), dtype=np.uint8))
    layouts = {"empty_class": {"train/a": 3, "train/b": 0, "test/a": 2, "test/b": 2},
               "no_test": {"train/a": 3, "train/b": 3}, "flat": {"a": 5, "b": 5}}
    for name, folders in layouts.items():
        for folder, count in folders.items():
            (root / name / folder).mkdir(parents=True)
            for i in range(count):
                image.save(root / name / folder / f"{i}.png")
    return root / "empty_class", root / "no_test", root / "flat"


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict:
    """The files and folders the table's placeholders stand for."""
    root = tmp_path_factory.mktemp("bad-inputs")
    good = _idx_folder(root / "good")
    missing = _idx_folder(root / "missing")
    (missing / "t10k-labels-idx1-ubyte.gz").unlink()
    truncated = _idx_folder(root / "truncated")
    images = truncated / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:-100]))
    cut_gz = _idx_folder(root / "cut_gz")
    images = cut_gz / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:len(images.read_bytes()) // 2])
    not_gzip = _idx_folder(root / "not_gzip")
    (not_gzip / "train-images-idx3-ubyte.gz").write_bytes(b"plain text, not gzip")
    not_idx = _idx_folder(root / "not_idx")
    (not_idx / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04 not IDX"))
    bad_labels = _idx_folder(root / "bad_labels", labels_max=200)
    empty = root / "empty"
    empty.mkdir()
    file = root / "file"
    file.write_text("a plain file\n")
    config = {"rule": "bp", "model": "mlp", "dataset": "mnist", "data_dir": str(good), "epochs": 2,
              "batch_size": 16, "lr": 0.001, "optimizer": "adam", "seed": 0, "model_opts": {"widths": (8,)}}
    run = root / "run"
    run.mkdir()
    (run / "config.toml").write_text(dumps(config))
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    (run / "summary.json").write_text('{"status": "completed"}\n')
    (run / "checkpoint.msgpack").write_bytes(b"\x80 not read")
    damaged_run = root / "damaged_run"
    damaged_run.mkdir()
    (damaged_run / "config.toml").write_text(dumps(config))
    (damaged_run / "checkpoint.msgpack").write_bytes(b"garbage")
    cut_run = root / "cut_run"
    cut_run.mkdir()
    (cut_run / "config.toml").write_text(dumps(config))
    epoch = '{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "test_loss": 1.0, "test_accuracy": 0.5}'
    (cut_run / "metrics.jsonl").write_text(epoch + "\n" + epoch.replace("1", "2")[:30])
    locked = root / "locked"
    locked.mkdir()
    HELD.append(lock(locked))
    float_labels = _idx_folder(root / "float_labels")
    for prefix, n in (("train", 64), ("t10k", 20)):
        labels = (np.arange(n) % 3 + 0.7).astype(">f4")
        raw = bytes([0, 0, 0x0D, 1]) + struct.pack(">I", n) + labels.tobytes()
        (float_labels / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw))
    tomls = {"broken_toml": "lr = \n", "unknown_toml": "learning_rate = 0.1\n", "typed_toml": 'epochs = "five"\n',
             "deep_toml": "a = " + "[" * 5000 + "]" * 5000 + "\n",
             "dup_grid_toml": '[plan]\nrules = ["bp"]\n[plan.grid]\nlr = [0.1, 0.1]\n',
             "nested_plan_toml": '[plan]\nrules = [["bp"]]\n',
             "nested_grid_toml": '[plan]\nrules = ["bp"]\n[plan.grid]\n"model.widths" = [[[8]], [16]]\n'}
    for name, text in tomls.items():
        (root / f"{name}.toml").write_text(text)
    config_link, config_dir, config_empty, config_no_epochs, checkpoint_dir = _damaged_runs(root, config)
    missing_label, big_label, empty_disk = _saved_datasets(root)
    empty_class, no_test, flat = _image_trees(root)
    named = dict(locals())
    found = {name: str(value) for name, value in named.items() if isinstance(value, Path) and name != "images"}
    found.update({name: str(root / f"{name}.toml") for name in tomls})
    return found


def snapshot(root: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def fill(text: str, places: dict) -> str:
    return PLACEHOLDER.sub(lambda m: places[m.group(1)], text)


def check_message(line: str, message: str, places: dict) -> None:
    """``line`` holds the message's parts (split at …) in order."""
    position = 0
    for part in fill(message, places).split("…"):
        part = part.strip()
        found = line.find(part, position)
        assert found >= 0, f"{part!r} not in {line!r}"
        position = found + len(part)


@pytest.mark.parametrize("row", ROWS, ids=[row["id"] for row in ROWS])
def test_bad_input_row(row, places, tmp_path, capsys):
    command = row["command"]
    root = Path(places["root"])
    before = snapshot(root)
    if command.startswith("ngf "):
        argv = [fill(token, places) for token in shlex.split(command)[1:]]
        added = None
        if argv[0] == "run":
            argv.append("--quiet")
            if "--out" not in argv and "--resume" not in argv:
                added = tmp_path / "new" / "out"
                argv += ["--out", str(added)]
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse's own errors
            status = exc.code
        output = capsys.readouterr()
        text = (output.out + output.err).strip()
        assert status == row["status"], text
        assert added is None or not added.exists() and not added.parent.exists(), "a partial --out was left"
    else:
        tiny = make_tiny()
        bad = make_tiny()
        bad.y_train[0] = 7
        namespace = {"ngf": ngf, "jax": jax, "tiny": tiny, "tiny_bad_labels": bad, "Dense": Dense, "Graph": Graph, "Sequential": Sequential,
                     "nnx": nnx}
        with pytest.raises(ngf.NgfError) as caught:
            eval(fill(command, places), namespace)  # the table's own Python calls
        assert caught.value.exit_code == row["status"]
        text = str(caught.value)
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    check_message(lines[0], row["message"], places)
    assert snapshot(root) == before, "a file the row names was changed"


def test_the_table_is_long_enough_and_covers_both_interfaces():
    assert len(ROWS) >= 25
    assert sum(row["command"].startswith("ngf.run(") for row in ROWS) >= 5
    assert all(row["status"] == 2 for row in ROWS)
    assert len({row["command"] for row in ROWS}) == len(ROWS)
