"""The authors' own MNIST training of DRTP, PEPITA and Kolen–Pollack, ported to JAX (issue 31).

A reference to set ngf's reproductions (docs/reproductions/*.toml) beside: each protocol
follows its authors' PyTorch or numpy code line by line (initialisation, the update each
layer receives, the optimiser, batch, lr schedule, dropout, data scaling), cited by file
and line. It does not import ngf; MNIST is read from $NGF_DATA_DIR/mnist's IDX files.
Prints one JSON line per epoch with the test accuracy.

    NGF_DATA_DIR=../shared/datasets python scripts/authors_protocols.py drtp-fc --epochs 5

Protocols (the authors' code, fetched at its default branch):
  drtp-fc, drtp-conv  ChFrenkel/DirectRandomTargetProjection: main.py, models.py, module.py,
                      function.py, train.py, setup.py
  pepita-fc           GiorgiaD/PEPITA: Tutorial_PEPITA_FullyConnectedNets_CIFAR-10.ipynb (network,
                      update) with README.md's MNIST settings (eta 0.1, batch 64)
  pepita-conv         GiorgiaD/PEPITA: main_pytorch.py and models.py (Net1conv1fcXL), README.md
  kp                  makrout/Deep-Learning-without-Weight-Transport: fcnn/FCNN_BP.py, FCNN_FA.py,
                      FCNN_KP.py, main.py, README.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from authors_pepita import PEPITA
from authors_drtp_kp import DRTP_KP


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array: magic's 3rd byte = dtype 0x08, 4th = rank."""
    raw = path.read_bytes()
    raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    rank = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(rank))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)


def load_mnist() -> tuple:
    """(x_train, y_train, x_test, y_test): images in [0, 1] as [N, 28, 28, 1] (torchvision's ToTensor)."""
    root = Path(os.environ.get("NGF_DATA_DIR", "../shared/datasets")) / "mnist"

    def one(stem: str) -> np.ndarray:
        return read_idx(next(root.glob(stem + "*")))

    scale = lambda a: (a.astype(np.float32) / 255.0)[..., None]  # ToTensor: uint8 / 255
    return (scale(one("train-images")), one("train-labels").astype(np.int32),
            scale(one("t10k-images")), one("t10k-labels").astype(np.int32))


PROTOCOLS = {**DRTP_KP, **PEPITA}


def batches(n: int, size: int, rng: np.random.Generator | None, drop_last: bool):
    """Index arrays of one epoch: shuffled when rng is given (DataLoader(shuffle=True))."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % size if drop_last else n
    return [order[i:i + size] for i in range(0, stop, size)]


def accuracy(predict, params, x: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy, in batches of 1000 (the codes' test batch size or larger)."""
    hits = sum(int(jnp.sum(jnp.argmax(predict(params, jnp.asarray(x[i:i + 1000])), -1) == y[i:i + 1000]))
               for i in range(0, len(x), 1000))
    return hits / len(x)


def run(name: str, epochs: int, seed: int) -> list:
    """Train protocol ``name`` for ``epochs`` epochs; one dict per epoch (test accuracy, seconds)."""
    proto = PROTOCOLS[name]
    x_train, y_train, x_test, y_test = load_mnist()
    if proto.get("flat"):
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    key = jax.random.PRNGKey(seed)
    key, init_key = jax.random.split(key)
    state = proto["init"](init_key)
    step = jax.jit(proto["step"], static_argnames=("lr",))
    rng = np.random.default_rng(seed) if proto["shuffle"] else None
    history = []
    for epoch in range(epochs):
        lr = proto["lr"](epoch)
        start = time.time()
        for idx in batches(len(x_train), proto["batch"], rng, proto.get("drop_last", False)):
            key, sub = jax.random.split(key)
            state = step(state, jnp.asarray(x_train[idx]), jnp.asarray(y_train[idx]), sub, lr=lr)
        acc = accuracy(jax.jit(proto["predict"]), state, x_test, y_test)
        if not math.isfinite(acc):
            raise SystemExit(f"{name}: non-finite accuracy at epoch {epoch + 1}")
        history.append({"protocol": name, "epoch": epoch + 1, "test_acc": round(acc, 4),
                        "lr": lr, "seconds": round(time.time() - start, 1)})
        print(json.dumps(history[-1]), flush=True)
    return history


def main() -> None:
    """Parse the protocol, the epochs and the seed; train; print one JSON line per epoch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("protocol", choices=sorted(PROTOCOLS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(args.protocol, args.epochs, args.seed)


if __name__ == "__main__":
    main()
