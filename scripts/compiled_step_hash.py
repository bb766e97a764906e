"""A hash of the compiled training step of each rule on mlp and cnn, source locations left out.

    python scripts/compiled_step_hash.py                          # this tree
    PYTHONPATH=/tmp/before/src python scripts/compiled_step_hash.py  # a tree from `git worktree add`

Equal hashes mean XLA compiled the same program: a refactoring that prints the same
hashes as the tree before it costs nothing at run time.
"""
import hashlib, sys, jax, jax.numpy as jnp
from flax import nnx
from ngf.core.network import Network
from ngf.core.engine import make_train_step, TrainState
from ngf.host.registry import load_registry
import optax
reg = load_registry()
for model_name, opts in (("mlp", {}), ("cnn", {})):
    model = reg.get("model", model_name).factory((28, 28, 1), 10, rngs=nnx.Rngs(0), **opts)
    net, params = Network.from_model(model, (28, 28, 1))
    for rule_name in ("bp", "fa", "dfa", "lra", "dtp"):
        rule = reg.get("rule", rule_name).factory()
        opt = optax.adam(1e-3)
        state = TrainState(params, opt.init(params), rule.init(jax.random.key(0), net, params))
        step = make_train_step(net, rule, opt)
        x = jnp.zeros((64, 28, 28, 1), jnp.uint8); y = jnp.zeros(64, jnp.int32)
        text = jax.jit(step).lower(state, x, y).compile().as_text()
        # drop metadata that names source lines
        import re
        text = re.sub(r', metadata=\{[^}]*\}', '', text)
        text = "\n".join(l for l in text.splitlines() if not re.match(r'^\d+ ["{]', l))
        text = re.sub(r'stack_frame_id=\d+', '', text)
        print(model_name, rule_name, hashlib.sha256(text.encode()).hexdigest()[:16], len(text))
