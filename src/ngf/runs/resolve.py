"""From names to objects: the rule, the dataset, the model and its network view of a run.

Each of ``config.rule``, ``config.model`` and ``config.dataset`` is a registered name,
built by its factory with the options the run's spec bound (``ngf.runs.spec``), or an
object given through the Python API, checked and used as it is. A dataset given by name is loaded once per
process (``resolve_data``): the runs of a comparison share its arrays, read-only.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from flax import nnx

from ngf.core.errors import NgfError
from ngf.core.init import once_options, parse_init, seed_key
from ngf.core.losses import loss_named
from ngf.core.network import Network, atomic_layers
from ngf.core.rule import LearningRule
from ngf.data.forms import is_form
from ngf.data.splits import DataSplits, check_splits
from ngf.host.registry import Registry
from ngf.runs.config import RunConfig
from ngf.runs.memory import check_memory
from ngf.runs.protocol import prepare_data
from ngf.runs.spec import RunSpec


class Resolved(NamedTuple):
    """Everything a run is built from, with the names its files record."""

    rule: LearningRule
    data: DataSplits
    model: nnx.Module
    net: Network
    params: tuple
    names: dict  # {"rule": ..., "model": ..., "dataset": ...}
    val: tuple = ()  # (x_val, y_val): the training examples --val-split holds out, if any

    @property
    def atomic_nodes(self) -> list[str]:
        """``"layer 1 (Block)"`` for each node declared atomic (trained by backprop inside), as the
        summary's ``atomic_nodes`` and the start line name them (``ngf.core.network.atomic_layers``)."""
        return atomic_layers(self.model)


def resolve(run: RunConfig | RunSpec, registry: Registry, labels: dict | None = None) -> Resolved:
    """The rule, data, model and network of a run (its spec, or its config, bound here); bad input raises
    ``NgfError``.

    ``labels`` (``{"rule": "mine", ...}``, ``ngf.run``'s ``rule_name=``...) name objects
    given through the Python API in the summary and the files.
    """
    spec = as_spec(run, registry)
    config = spec.config
    rule, rule_name = resolve_rule(spec, registry)
    if rule.needs_nonzero_weights and parse_init(config.init)[0] == "zeros":
        raise NgfError(f"rule {rule_name!r} reads the forward weights (its feedback follows them), so it cannot "
                       f"start from --init zeros; choose another init")
    data, data_name = resolve_data(spec, registry)
    data, val = prepare_data(data, config, data_name)  # --pad-to, --val-split (seeded by the run's seed alone)
    if config.batch_size > len(data.x_train):
        raise NgfError(f"batch-size {config.batch_size} is larger than the {len(data.x_train)} training examples")
    model, model_name = resolve_model(spec, data, registry)
    names = labelled(config, {"rule": rule_name, "model": model_name, "dataset": data_name}, labels or {})
    net, params = build_network(model, data, names)
    net = dataclasses.replace(net, loss=loss_named(config.loss))  # every rule reads L and e from the network
    return Resolved(rule, data, model, net, params, names, val)


def as_spec(run: RunConfig | RunSpec, registry: Registry) -> RunSpec:
    """``run`` if it is a spec already, else its config's options bound (``RunSpec.of``)."""
    return run if isinstance(run, RunSpec) else RunSpec.of(run, registry)


def resolve_rule(run: RunConfig | RunSpec, registry: Registry) -> tuple[LearningRule, str]:
    """The rule of a run and its name (``custom`` for a ``LearningRule`` object without one)."""
    spec = as_spec(run, registry)
    config = spec.config
    if not isinstance(config.rule, str):  # a LearningRule object
        return config.rule, config.rule.name or "custom"
    rule = spec.entries["rule"].build(LearningRule, **spec.bound["rule_opts"])
    return (rule if rule.name else rule._replace(name=config.rule)), config.rule  # messages name the rule


def labelled(config: RunConfig, names: dict, labels: dict) -> dict:
    """``names`` with the ``labels`` of the objects among rule, model and dataset (a name stays a name)."""
    names = dict(names)
    for kind, label in labels.items():
        if label is None:
            continue
        if not isinstance(label, str) or not label.strip():
            raise NgfError(f"{kind}_name must be a non-empty string, got {label!r:.80}")
        if isinstance(getattr(config, kind), str):
            raise NgfError(f"{kind}_name labels a {kind} object; {kind} {getattr(config, kind)!r} is a "
                           f"registered name already")
        names[kind] = label.strip()
    return names


LOADED: collections.OrderedDict = collections.OrderedDict()  # key → DataSplits, the newest last
LOADED_BYTES = 2 << 30  # datasets kept beyond the newest, in all
DATA_ENVIRONMENT = ("NGF_DATA_DIR", "NGF_CACHE_DIR", "HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE",
                    "HF_DATASETS_OFFLINE")  # what the loaders' search reads


def resolve_data(run: RunConfig | RunSpec, registry: Registry) -> tuple[DataSplits, str]:
    """The dataset of a run, checked, and its name.

    A dataset given by name or form is loaded once per process: the next run with the same
    name, options, ``data_dir``, loader and search path (``$NGF_DATA_DIR``...) gets the same
    arrays, read-only (runs copy what they change: ``ngf.runs.protocol``). The newest is
    kept, and earlier ones while they fit in ``LOADED_BYTES``.
    """
    spec = as_spec(run, registry)
    config = spec.config
    if isinstance(config.dataset, DataSplits):
        return check_splits(config.dataset, "custom"), "custom"
    entry, opts = spec.entries["dataset"], dict(spec.bound["dataset_opts"])  # a form (hf:...) is its own entry
    key = _data_key(config, None if is_form(config.dataset) else entry.factory, opts)
    if key in LOADED:
        LOADED.move_to_end(key)
        return LOADED[key], config.dataset
    data = read_only(check_splits(entry.build(DataSplits, config.data_dir, **opts), config.dataset))
    LOADED[key] = data
    while len(LOADED) > 1 and sum(_nbytes(d) for d in LOADED.values()) > LOADED_BYTES:
        LOADED.popitem(last=False)  # the least recently used
    return data, config.dataset


def _data_key(config: RunConfig, factory, opts: dict) -> tuple:
    """What a loaded dataset depends on: its name (a form holds its path), the registered factory
    itself, the options, the folder and the search path, as seen from the working folder."""
    where = str(Path(config.data_dir).expanduser().absolute()) if config.data_dir is not None else None
    return (config.dataset, factory, repr(sorted(opts.items())), where, os.getcwd(),
            tuple(os.environ.get(name) for name in DATA_ENVIRONMENT))


def read_only(data: DataSplits) -> DataSplits:
    """``data`` with read-only views of its NumPy arrays: the runs that share them cannot change them."""
    def view(array):
        if not isinstance(array, np.ndarray):
            return array
        array = array.view()
        array.flags.writeable = False
        return array
    return data._replace(**{name: view(getattr(data, name)) for name in ("x_train", "y_train", "x_test", "y_test")})


def _nbytes(data: DataSplits) -> int:
    return sum(getattr(getattr(data, name), "nbytes", 0) for name in ("x_train", "y_train", "x_test", "y_test"))


def resolve_model(run: RunConfig | RunSpec, data: DataSplits, registry: Registry) -> tuple[nnx.Module, str]:
    """The model of a run, built for ``data``'s input shape and classes, and its name."""
    spec = as_spec(run, registry)
    config = spec.config
    if isinstance(config.model, nnx.Module):
        return config.model, type(config.model).__name__
    make, build, name = model_factory(spec, data, registry)
    check_memory(make, config.seed, name)  # from shapes alone, before a huge model is allocated
    same = _model_key(spec, data)
    return created(make, build, seed_key(config.seed), same), name  # all 64 bits of the seed


def _model_key(spec: RunSpec, data: DataSplits):
    """What makes a registered model's weight program: its factory, options, input shape and
    classes (hashable); None for a factory given as an object, whose program is not kept."""
    if not isinstance(spec.config.model, str):
        return None
    key = (spec.entries["model"].factory, tuple(sorted(spec.bound["model_opts"].items())),
           tuple(data.input_shape), data.n_classes, jax.default_backend())
    try:
        hash(key)
    except TypeError:  # an option given as a list or a dict: not kept
        return None
    return key


#: The weight programs of this process, by ``_model_key``: a comparison's later runs of the same
#: model (other seeds, other rules) call the compiled program again, with nothing traced or compiled.
CREATORS: dict = {}


def created(make, build, key, same=None):
    """The model ``make(nnx.Rngs(key))`` draws, created by one compiled program (README.md, Start-up).

    Built op by op, every initialiser of every shape was a compilation of its own (14 for a
    3-layer mlp); under one ``jax.jit`` the weights are the same, bitwise (tests/test_startup.py).
    A factory that cannot be traced (it reads a value) is built eagerly with ``build``, which
    names its failures. ``same`` (hashable, or None) names what makes the program: the
    program of a ``same`` seen before in this process is called again.
    """
    program, graphs = CREATORS.get(same, (None, []))  # None is never kept: a fresh program

    def create_model(k):  # the program's name in JAX's logs: jit(create_model)
        graph, state = nnx.split(make(nnx.Rngs(k)))
        graphs.append(graph)  # the structure, static: known once traced
        return state

    if program is None:
        program = jax.jit(create_model, compiler_options=once_options())
    try:
        state = program(key)  # traced at its first call, which fills ``graphs``
        model = nnx.merge(graphs[-1], state)
    except Exception:  # noqa: BLE001 - any failure: the eager build below reports it, or succeeds
        model = None
    if not isinstance(model, nnx.Module):
        return build(nnx.Rngs(key))
    if same is not None:
        CREATORS[same] = (program, graphs)
    return model


def model_factory(run: RunConfig | RunSpec, data: DataSplits, registry: Registry):
    """``(make, build, name)`` for a model given by name or factory: ``make(rngs)`` calls the factory,
    ``build(rngs)`` too, with a registered factory's failures named by plugin."""
    spec = as_spec(run, registry)
    model = spec.config.model
    shape, classes = data.input_shape, data.n_classes  # not ``data``: a kept weight program must not hold it
    if not isinstance(model, str):  # a factory(input_shape, n_classes, *, rngs)
        make = lambda rngs: model(shape, classes, rngs=rngs)
        return make, make, getattr(model, "__name__", "custom")
    entry, opts = spec.entries["model"], dict(spec.bound["model_opts"])
    return (lambda rngs: entry.factory(shape, classes, rngs=rngs, **opts),
            lambda rngs: entry.build(nnx.Module, shape, classes, rngs=rngs, **opts), model)


def build_network(model, data: DataSplits, names: dict) -> tuple[Network, tuple]:
    """The network view of ``model``, once its forward pass is known to fit the data."""
    try:
        net, params = Network.from_model(model, data.input_shape)
        trace = net.trace_shapes(params, batch=2)
    except NgfError:
        raise
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise NgfError(f"model {names['model']!r} does not fit dataset {names['dataset']!r} "
                       f"(one example: {tuple(data.input_shape)}): {detail}") from None
    for l, layer in enumerate(trace):  # docs/rules.md#notation: f_l keeps h^l's shape, so J^T lands where rules expect
        if layer.pre.shape != layer.out.shape:
            raise NgfError(f"model {names['model']!r}: layer {l + 1}'s activation changes the shape "
                           f"{tuple(layer.pre.shape[1:])} → {tuple(layer.out.shape[1:])}; pooling and flattening "
                           f"belong at the start of the next layer's map (docs/plugins.md)")
    logits = trace[-1].pre
    if logits.shape != (2, data.n_classes):
        raise NgfError(f"model {names['model']!r} gives logits of shape {tuple(logits.shape[1:])} per example; "
                       f"dataset {names['dataset']!r} has {data.n_classes} classes")
    return net, params
