"""Start-up (README.md, Start-up): one program creates the weights, the compile cache is shared
between processes, compilation is timed apart from the epochs, and a dataset loads once per process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax import monitoring

import ngf
import ngf_tiny_data
from ngf.cli import main
from ngf.cli.options import config_from_args
from ngf.cli.parser import build_parser
from ngf.runs import compilecache
from ngf.runs.callbacks import Callbacks
from conftest import product_xla_env
from ngf.core.init import seed_key
from ngf.runs.resolve import LOADED, created

TESTS = Path(__file__).resolve().parent
REGISTRY = ngf.load_registry(["ngf_tiny_data"])
SMALL = {"mlp": {"widths": (8, 7)}, "cnn": {"channels": (3, 4), "widths": (6,)},
         "resnet": {"stem": 3, "widths": (3, 4), "blocks": (1, 1)}}
TINY_RUN = dict(rule="bp", model="mlp", dataset="tiny", epochs=1, batch_size=16, model_opts={"widths": (8, 8, 8)})
#: Programs compiled (or read from the compile cache) by TINY_RUN until ``on_start``, measured in a
#: fresh process: 11. One creates the weights (``create_model``), one the optimiser's and the rule's
#: first state (``fresh``), one evaluates (``eval_batch``, first for the divergence bound); the other
#: 8 are JAX's eager operations, each compiled once per shape and dtype: the seed's key (stage, seed,
#: split, unstack), the key's conversion and the sums of the evaluation (convert, zeros, add). The
#: data and the copies of the state are transfers, which compile nothing. Then ``Engine.compile``
#: (``compile_seconds``) adds 5: the training call (``train_steps``: 12 steps, one per call, no shorter
#: last call) and the epoch's key and permutation (convert, fold_in, iota, shuffle); the divergence
#: check after the epoch one more. In this process some are compiled already, so this is an upper
#: bound. Before, the mlp's weights op by op compiled 14 programs instead of ``create_model``'s one,
#: and the optimiser's zeros 7 instead of ``fresh``'s one (fa's feedback: 9 more).
STARTUP_PROGRAMS = 11
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


EAGER_BUILD = """
import sys
import numpy as np
from flax import nnx
import jax
import ngf
from ngf.core.init import seed_key
from ngf.runs.resolve import created
REGISTRY, SMALL = ngf.load_registry(), {small!r}
for name, opts in sorted(SMALL.items()):
    factory = REGISTRY.get("model", name).factory
    make = lambda rngs: factory((6, 6, 1), 3, rngs=rngs, **opts)
    key = seed_key(2 ** 40 + 7)  # a seed of more than 32 bits: its high word is folded into the key
    jitted, eager = created(make, make, key), make(nnx.Rngs(key))
    ours, theirs = nnx.state(jitted, nnx.Param), nnx.state(eager, nnx.Param)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs), name
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert a.dtype == b.dtype and np.asarray(a).tobytes() == np.asarray(b).tobytes(), name
print("bitwise")
"""


def test_created_weights_are_the_eager_build_bitwise():
    """mlp, cnn and resnet, in a process with XLA's flags as ngf runs them: the suite's lowest optimisation
    level (tests/conftest.py) rounds the jitted build's last bits differently from the eager one."""
    done = subprocess.run([sys.executable, "-c", EAGER_BUILD.format(small=SMALL)], capture_output=True,
                          text=True, env=product_xla_env(), timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "bitwise", done.stderr[-2000:]


def test_a_factory_that_reads_a_value_is_built_eagerly():
    def reads(rngs):  # float() of a traced value fails under jit
        scale = float(jax.random.uniform(rngs.params()))
        return nnx.Linear(2, 2, kernel_init=nnx.initializers.constant(scale), rngs=rngs)

    model = created(reads, reads, seed_key(3))
    assert isinstance(model, nnx.Linear) and np.all(np.asarray(model.kernel[...]) > 0)


class Compilations(Callbacks):
    """The names of the programs compiled during a run, marking where its first epoch starts."""

    def __init__(self):
        self.names, self.started = [], None

    def __enter__(self):
        monitoring.register_event_duration_secs_listener(self.heard)
        return self

    def __exit__(self, *exc):
        monitoring.unregister_event_duration_listener(self.heard)

    def heard(self, event, seconds, **kwargs):
        if event == BACKEND_COMPILE:
            self.names.append(kwargs.get("fun_name"))

    def on_start(self, info):
        self.started = len(self.names)


def test_startup_compiles_a_bounded_number_of_programs_and_the_epochs_none():
    with Compilations() as seen:
        summary = ngf.run(registry=REGISTRY, callbacks=seen, **TINY_RUN)
    before = seen.names[:seen.started]  # start-up: until on_start, after which the epoch's programs compile
    assert len(before) <= STARTUP_PROGRAMS, before
    assert before.count("jit(create_model)") == 1 and before.count("jit(fresh)") == 1
    # compiled once each, ahead of the epochs (compile_seconds), never again in them
    assert seen.names.count("jit(train_steps)") == 1 and seen.names.count("jit(eval_batch)") == 1, seen.names
    assert summary["compile_seconds"] > 0
    assert summary["epoch_seconds"] == [r["seconds"] for r in summary["history"]]


def test_a_later_run_of_the_same_model_reuses_its_weight_program_and_compiles_one_first_state():
    """In one process (a comparison), a run of another rule on the same model compiles no weight
    program, and its feedback and optimiser state come from one program (``Engine.init``)."""
    ngf.run(registry=REGISTRY, **dict(TINY_RUN, seed=5))
    with Compilations() as seen:
        ngf.run(registry=REGISTRY, callbacks=seen, **dict(TINY_RUN, rule="fa", seed=6))
    before = seen.names[:seen.started]
    assert "jit(create_model)" not in before and before.count("jit(fresh)") == 1, before
    assert "jit(_normal)" not in before, before  # fa's feedback matrices: no program per shape


def test_a_rule_whose_init_reads_a_value_is_initialised_eagerly():
    from ngf.core.engine import Engine
    from ngf.core.rule import LearningRule
    from ngf.runs.config import RunConfig
    from ngf.runs.resolve import resolve

    bp = resolve(RunConfig(**dict(TINY_RUN, rule="bp")), REGISTRY)

    def init(key, net, params):  # float() of a traced value fails under jit
        return {"scale": jax.numpy.float32(float(jax.random.uniform(key)) + 1.0)}

    rule = bp.rule._replace(init=init)
    state = Engine(bp.net, rule, optax.adam(1e-3), 16, len(bp.data.x_train), 1).init(seed_key(1), bp.params)
    assert 1.0 < float(state.rule_state["scale"]) < 2.0
    assert jax.tree.structure(state.opt_state) == jax.tree.structure(optax.adam(1e-3).init(bp.params))


def test_summary_times_the_compilation_apart(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--plugin", "ngf_tiny_data", "--dataset", "tiny", "--model-opt", "widths=8",
                 "--batch-size", "16", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = list(summary)
    assert keys.index("compile_seconds") + 1 == keys.index("epoch_seconds")
    assert summary["compile_seconds"] > 0 and summary["epoch_seconds"] == [r["seconds"] for r in records]


COUNT_CACHE = """
import json, sys
from jax import monitoring
from ngf.cli import main
seen = {"hits": 0, "misses": 0}
def heard(event, **kwargs):
    for kind in seen:
        if event == "/jax/compilation_cache/cache_" + kind:
            seen[kind] += 1
monitoring.register_event_listener(heard)
status = main(sys.argv[1:])
print(json.dumps({**seen, "status": status}))
"""


def test_the_compile_cache_is_filled_once_and_read_by_the_next_process(tmp_path):
    cache = tmp_path / "jax"
    env = {**os.environ, "PYTHONPATH": str(TESTS), "NGF_COMPILE_CACHE": str(cache)}
    argv = ["run", "--plugin", "ngf_tiny_data", "--dataset", "tiny", "--model-opt", "widths=8", "--batch-size",
            "16", "--epochs", "1", "--overwrite", "--quiet", "--out", str(tmp_path / "run")]

    def counted():
        done = subprocess.run([sys.executable, "-c", COUNT_CACHE, *argv], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = counted()
    entries = sorted(p.name for p in cache.iterdir())
    assert first["misses"] > 0 and len(entries) >= first["misses"]
    second = counted()
    assert second["misses"] == 0 and second["hits"] == first["misses"] + first["hits"]
    assert sorted(p.name for p in cache.iterdir()) == entries


def test_no_compile_cache_turns_it_off_without_entering_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("NGF_COMPILE_CACHE", str(tmp_path / "jax"))  # restored after the test
    assert compilecache.enable_compile_cache() == tmp_path / "jax"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax")
    parser = build_parser()
    argv = ["run", "--plugin", "ngf_tiny_data", "--dataset", "tiny", "--quiet"]
    args = parser.parse_args([*argv, "--no-compile-cache"])
    assert config_from_args(args) == config_from_args(parser.parse_args(argv))  # not part of a run's config
    assert os.environ["NGF_COMPILE_CACHE"] == "off"
    assert compilecache.enable_compile_cache() is None and jax.config.jax_compilation_cache_dir is None
    for value in ("0", "OFF", " false ", "no"):
        monkeypatch.setenv("NGF_COMPILE_CACHE", value)
        assert compilecache.cache_folder() is None
    monkeypatch.setenv("NGF_COMPILE_CACHE", "")
    monkeypatch.setenv("NGF_CACHE_DIR", str(tmp_path / "ngf"))
    assert compilecache.cache_folder() == tmp_path / "ngf" / "jax"


def test_compare_loads_its_dataset_once(tmp_path, monkeypatch):
    loads = []

    def counted(seed, *args, **kwargs):
        loads.append(seed)
        return tiny(seed, *args, **kwargs)

    tiny = ngf_tiny_data.tiny
    monkeypatch.setattr(ngf_tiny_data, "tiny", counted)
    assert main(["compare", "--plugin", "ngf_tiny_data", "--rules", "bp,fa", "--datasets", "tiny", "--epochs", "1",
                 "--batch-size", "32", "--model-opt", "widths=8", "--val-split", "20", "--quiet",
                 "--out", str(tmp_path / "cmp")]) == 0
    assert loads == [0]  # the plan's check and both runs
    (data,) = LOADED.values()
    assert not data.x_train.flags.writeable and np.array_equal(data.x_train, tiny(0).x_train)
    ngf.run(registry=REGISTRY, **{**TINY_RUN, "dataset": "tiny-b"})  # another dataset: loaded too
    assert loads == [0, 1] and len(LOADED) == 2
