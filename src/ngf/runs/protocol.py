"""A paper's training protocol: weight decay, momentum, a step schedule, a scaled length, a
validation split, padding and the loss (``--weight-decay``, ``--momentum``, ``--schedule
multistep``, ``--epochs-scale``, ``--val-split``, ``--pad-to``, ``--loss``; README, Options).

Each option is checked here before the run folder is touched (``check_protocol``), and
turned into what the run uses: the optimiser's extra transformations, the schedule's
boundaries, the epochs a scaled run trains, the held-out examples and the padded images.
"""

from __future__ import annotations

import itertools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ngf.core.errors import NgfError, unknown_name
from ngf.core.init import seed_key
from ngf.core.losses import loss_named
from ngf.data.splits import DataSplits
from ngf.runs.memory import _size as memory_size
from ngf.runs.memory import available_bytes
from ngf.runs.optimizers import MOMENTUM_OPTIMIZERS, optimizer_named

WEIGHT_DECAY_MODES = ("coupled", "decoupled")
DEFAULT_GAMMA = 0.1  # RunConfig.gamma's default: any other value asks for --schedule multistep
PAD_COPIES = 2  # padded images are held on the host and, for training, on the device
VAL_STREAM = 0x7A1  # folded into the run's seed for the validation split: the data order key is not used


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_milestones(config) -> None:
    """Milestones: increasing positive epochs ≤ --epochs, for --schedule multistep only; gamma > 0."""
    milestones, gamma = config.milestones, config.gamma
    if not _number(gamma) or gamma <= 0:
        raise NgfError(f"gamma must be a positive number (the lr's factor at each milestone), got {gamma!r}")
    if not isinstance(milestones, (tuple, list)) or any(
            isinstance(m, bool) or not isinstance(m, numbers.Integral) for m in milestones):
        raise NgfError(f"milestones must be a list of epochs (integers), e.g. 50,75; got {milestones!r}")
    if config.schedule != "multistep":
        if milestones:
            raise NgfError(f"milestones apply to --schedule multistep, not {config.schedule}")
        if gamma != DEFAULT_GAMMA:  # as --momentum for an optimiser without one: it would do nothing
            raise NgfError(f"--gamma applies to --schedule multistep, not {config.schedule}")
        return
    if not milestones:
        raise NgfError("--schedule multistep needs --milestones E1,E2,... (the epochs after which lr × gamma)")
    if any(m < 1 for m in milestones) or any(b <= a for a, b in itertools.pairwise(milestones)):
        raise NgfError(f"milestones must be strictly increasing positive epochs, got {tuple(milestones)}")
    if milestones[-1] > config.epochs:
        raise NgfError(f"milestone {milestones[-1]} is past the run's last epoch ({config.epochs})")


def check_protocol(config) -> None:
    """Refuse protocol options no run could use, each with one line."""
    if not _number(config.weight_decay) or config.weight_decay < 0:
        raise NgfError(f"weight-decay must be a number ≥ 0, got {config.weight_decay!r}")
    if config.weight_decay_mode not in WEIGHT_DECAY_MODES:
        raise unknown_name("weight decay mode", config.weight_decay_mode, WEIGHT_DECAY_MODES)
    if config.momentum is not None:
        if not _number(config.momentum) or not 0 <= config.momentum < 1:
            raise NgfError(f"momentum must be a number in [0, 1), got {config.momentum!r}")
        if config.optimizer not in MOMENTUM_OPTIMIZERS:
            raise NgfError(f"--momentum applies to the optimizers {', '.join(MOMENTUM_OPTIMIZERS)}, "
                           f"not {config.optimizer}")
    _check_milestones(config)
    if not _number(config.epochs_scale) or config.epochs_scale <= 0:
        raise NgfError(f"epochs-scale must be a positive number, got {config.epochs_scale!r}")
    value = config.val_split
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NgfError(f"val-split must be a non-negative integer, got {value!r}")
    value = config.pad_to  # 0, -3, 30.0 and 'x' (the command line passes what is not an integer on) alike
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise NgfError(f"pad-to must be a positive integer (the side S of the S×S padded images), got {value!r}")
    loss_named(config.loss)


def decoupled_weight_decay(weight_decay: float, lr) -> optax.GradientTransformation:
    """ΔW ← ΔW − η_t λ θ after the optimiser (AdamW's decay, Loshchilov & Hutter 2019), η_t the lr schedule."""

    def init(params):
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params):
        step = lr(state.count) if callable(lr) else lr
        updates = jax.tree.map(lambda u, p: u - step * weight_decay * p, updates, params)
        return updates, optax.ScaleByScheduleState(count=optax.safe_int32_increment(state.count))

    return optax.GradientTransformation(init, update)


def build_optimizer(config, steps_per_epoch: int, epochs: int, milestones: tuple) -> optax.GradientTransformation:
    """The run's optimiser (``ngf.runs.optimizers``) with its lr schedule, momentum and weight decay,
    for a run of ``epochs`` (scaled) with the schedule's (scaled) ``milestones``.

    Weight decay λ, coupled: g ← g + λ θ before the optimiser (L2, torch.optim.SGD's
    weight_decay); decoupled: ΔW ← ΔW − η_t λ θ after it (AdamW's; adamw takes λ itself).
    """
    lr = config.lr
    if config.schedule == "cosine":  # decays from lr to 0 over the whole run
        lr = optax.cosine_decay_schedule(config.lr, epochs * steps_per_epoch)
    elif config.schedule == "multistep":  # η_t = lr · γ^(milestones passed): × γ from the first step after each
        lr = optax.piecewise_constant_schedule(
            config.lr, {m * steps_per_epoch: config.gamma for m in milestones})
    decoupled = config.weight_decay and config.weight_decay_mode == "decoupled"
    if config.optimizer == "adamw" and decoupled:
        return optax.adamw(lr, weight_decay=config.weight_decay)  # its own decoupled decay, λ replacing 1e-4
    base = optimizer_named(config.optimizer, lr, config.momentum)  # --momentum M replaces the optimiser's own
    if not config.weight_decay:
        return base
    if not decoupled:
        return optax.chain(optax.add_decayed_weights(config.weight_decay), base)
    return optax.chain(base, decoupled_weight_decay(config.weight_decay, lr))


def prepare_data(data: DataSplits, config, name: str) -> tuple[DataSplits, tuple]:
    """``data`` padded (``--pad-to``) and without its validation examples, and those ``(x_val, y_val)``."""
    return hold_out(pad_images(data, config.pad_to, name), config.val_split, config.seed)


def pad_images(data: DataSplits, size: int | None, name: str) -> DataSplits:
    """Zero-pad every image to size × size, centred (torchvision's Pad(2) for 28 → 32); [N, H, W] or [N, H, W, C]."""
    if size is None:
        return data
    height, width = data.x_train.shape[1:3] if data.x_train.ndim >= 3 else (None, None)
    if height is None or height > size or width > size:
        raise NgfError(f"--pad-to {size}: dataset {name!r}'s images are {tuple(data.x_train.shape[1:])}, "
                       f"not images of at most {size}×{size}")

    _check_pad_memory(data, size, name)

    def pad(x):  # (S − H) // 2 rows above, the rest below; the same for columns
        rows, cols = size - height, size - width
        spec = [(0, 0), (rows // 2, rows - rows // 2), (cols // 2, cols - cols // 2)] + [(0, 0)] * (x.ndim - 3)
        return np.pad(np.asarray(x), spec)

    return data._replace(x_train=pad(data.x_train), x_test=pad(data.x_test))


def _check_pad_memory(data: DataSplits, size: int, name: str) -> None:
    """Refuse padding whose arrays cannot fit in memory, from shapes alone, before any is allocated
    (as ``ngf.runs.memory`` does for a model)."""
    count = len(data.x_train) + len(data.x_test)
    channels = int(np.prod(data.x_train.shape[3:]))
    needed = count * size * size * channels * data.x_train.dtype.itemsize
    limit, where = available_bytes()
    if limit is not None and PAD_COPIES * needed > limit:
        raise NgfError(f"--pad-to {size}: the {count:,} images of dataset {name!r} padded to {size}×{size} take "
                       f"{memory_size(needed)}; training holds {PAD_COPIES} copies of them "
                       f"({memory_size(PAD_COPIES * needed)}), more than the {memory_size(limit)} {where}")


def hold_out(data: DataSplits, n: int, seed: int) -> tuple[DataSplits, tuple]:
    """``data`` without ``n`` training examples, and those examples ``(x_val, y_val)``.

    The split is a permutation drawn from the run's seed alone (its own stream, not the
    data order key), so a resumed run holds out the same examples.
    """
    if not n:
        return data, ()
    total = len(data.x_train)
    if n >= total:
        raise NgfError(f"--val-split {n} leaves no training examples: the dataset has {total}")
    order = np.asarray(jax.random.permutation(jax.random.fold_in(seed_key(seed), VAL_STREAM), total))
    val, train = np.sort(order[:n]), np.sort(order[n:])
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    return data._replace(x_train=x[train], y_train=y[train]), (x[val], y[val])


def best_epoch(history: list) -> dict:
    """``best_epoch`` (highest val accuracy, the first on ties) and its test metrics; {} without a val split."""
    records = [r for r in history if "val_accuracy" in r]
    if not records:
        return {}
    best = max(records, key=lambda r: r["val_accuracy"])  # max keeps the first of equal ones
    return {"best_epoch": best["epoch"], "best_val_accuracy": best["val_accuracy"],
            "best_test_accuracy": best["test_accuracy"], "best_test_loss": best["test_loss"]}
