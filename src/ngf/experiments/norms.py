"""Per-node update norms: how much signal each node (layer) gets from a rule.

For a finished run, rebuild its network, rule and state from ``config.toml`` (at
initialisation) and from its checkpoint (after training), take one batch of training
data, and compute ‖update_l‖ for every node l: the Frobenius norm of what
``local_update`` hands the optimiser (for ``bp``, the gradient of the loss); a node
without weights (a residual block's sum) has none. A rule's trainable parameters
(``LearningRule.init_params``) get one norm over all of them, ``rule_params``. A
vanishing backward signal shows as norms falling by orders of magnitude from the
top layer to the first.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp

from ngf.core.engine import Engine
from ngf.core.step import prepare_inputs, rule_pass
from ngf.core.init import initialise, seed_key
from ngf.core.losses import loss_named
from ngf.core.network import Network
from ngf.runs import checkpoint
from ngf.runs.config import RunConfig, make_optimizers
from ngf.runs.configfile import CONFIG_FILE, read
from ngf.runs.protocol import prepare_data
from ngf.runs.resolve import resolve_data, resolve_model, resolve_rule
from ngf.runs.spec import RunSpec


def update_norms(net: Network, rule, state, x, y) -> tuple[list[float | None], float | None]:
    """‖update_l‖ for each node l on the batch ``(x, y)`` from the engine's ``state`` (None for a node
    without weights, a sum), and the norm of the update of the rule's trainable parameters (None for
    a rule without any, ``LearningRule.init_params``)."""
    def norms(state):
        updates, _, _ = rule_pass(net, rule, state, prepare_inputs(x), y)
        return jnp.stack([frobenius(u) for u in updates.params]), frobenius(updates.rule_params)

    nodes, own = jax.jit(norms)(state)
    return ([float(v) if jax.tree.leaves(theta) else None for v, theta in zip(nodes, state.params)],
            float(own) if rule.init_params is not None else None)


def frobenius(tree) -> jax.Array:
    """The Frobenius norm over every leaf of ``tree``."""
    leaves = jax.tree.leaves(tree)
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in leaves)) if leaves else jnp.zeros(())


def run_norms(folder: Path, registry, batch: int = 512) -> dict:
    """``{"init": [...], "final": [...]}``: per-layer update norms of the run in ``folder``."""
    config = RunConfig(**read(Path(folder) / CONFIG_FILE))
    spec = RunSpec.of(config, registry)
    rule, _ = resolve_rule(spec, registry)
    data, name = resolve_data(spec, registry)
    data, _ = prepare_data(data, config, name)  # padded and split as the run saw them
    model, _ = resolve_model(spec, data, registry)
    net, params = Network.from_model(model, data.input_shape)
    net = dataclasses.replace(net, loss=loss_named(config.loss))
    params = initialise(params, config.init, config.seed)
    n_train = len(data.x_train)
    steps = n_train // config.batch_size
    optimizer, rule_optimizer = make_optimizers(config, steps, rule)
    engine = Engine(net, rule, optimizer, config.batch_size, n_train, 1, rule_optimizer=rule_optimizer)
    rule_key, _ = jax.random.split(seed_key(config.seed))
    start = engine.init(rule_key, params)
    x, y = jnp.asarray(data.x_train[:batch]), jnp.asarray(data.y_train[:batch])
    norms, own = {}, {}
    norms["init"], own["init"] = update_norms(net, rule, start, x, y)
    if (Path(folder) / checkpoint.CHECKPOINT).is_file():
        end, history = checkpoint.load(Path(folder), start)
        norms["final"], own["final"] = update_norms(net, rule, end, x, y)
        norms["epochs"] = len(history)
    if rule.init_params is not None:  # the rule's trainable parameters, counted apart from the nodes
        norms["rule_params"] = own
    return norms
