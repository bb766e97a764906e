"""A test plugin: ``owned``, a rule that uses every part of the LearningRule interface (tests/test_rule_interface.py).

Direct Kolen–Pollack (dfa's direct signals δ^l = f'(h^l) ⊙ pᵀ(B_l s), the B_l trainable rule
parameters that learn as a forward connection p(z^l) → output would, gradient p(z^l)ᵀ e / batch),
where the error s sent down is e plus ``noise`` × a normal draw from the step's key. Its state is
the raw data of the last step's key, so tests see which keys the steps got. It reports
``b_norm``, the mean Frobenius norm of the B_l. Load it with ``--plugin ngf_owned_rule``.
"""

import jax
import jax.numpy as jnp

from ngf.core.network import updates_from_deltas
from ngf.core.rule import LearningRule, Updates
from ngf.host.hookspecs import hookimpl
from ngf.plugins.dfa import direct_feedback, direct_signals


def key_data(key: jax.Array) -> jax.Array:
    """A PRNG key's raw uint32 words (a typed key's data, or a raw key as it is)."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def owned(noise: float = 0.1, scale: float = 0.1, params_lr: float = 1.0, params_decay: bool = True,
          predict_class: int = -1, own_passes: bool = False, bad: str = "") -> LearningRule:
    """Direct Kolen–Pollack with a noisy error from the step's key (a test rule).

    Args:
      noise: σ of the normal noise (from the step's key) added to the error sent to the hidden nodes.
      scale: B's initial scale, in units of Glorot's standard deviation.
      params_lr: the B's learning rate, as a multiple of --lr.
      params_decay: whether --weight-decay applies to the B.
      predict_class: if ≥ 0, evaluation predicts this class for every example (``predict``).
      own_passes: run its own forward pass (``uses_trace=False``) and hand back its logits.
      bad: ``metrics`` reports an undeclared metric, ``shape`` a B update of the wrong shape.
    """

    def init(key, net, params):
        return jnp.zeros_like(key_data(key))  # the raw data of the last step's key

    def init_params(key, net, params):
        return direct_feedback(key, net, params, scale, "normal")  # one B_l per hidden node

    def compute_targets(net, params, trace, labels, state, rule_params, key, x):
        if own_passes:
            assert trace is None, "uses_trace=False: the engine ran no forward pass"
            _, trace = net.forward(params, x)
        e = net.loss.error(trace[-1].pre, labels)
        sent = e + noise * jax.random.normal(key, e.shape, e.dtype)
        return (direct_signals(net, trace, rule_params, sent) + (e,), trace), key_data(key)

    def local_update(net, params, trace, signals, state, rule_params):
        deltas, trace = signals  # the trace of its own pass when it ran one
        e, batch = deltas[-1], deltas[-1].shape[0]
        grads = tuple(net.read_output(l, trace[l].out).reshape(batch, -1).T @ e / batch
                      for l in range(len(rule_params)))
        metrics = {"b_norm": jnp.mean(jnp.stack([jnp.linalg.norm(b) for b in rule_params]))}
        if bad == "metrics":
            metrics["surprise"] = jnp.zeros(())
        if bad == "shape":
            grads = (grads[0][:, :1],) + grads[1:]
        logits = trace[-1].pre if own_passes else None
        return Updates(updates_from_deltas(net, params, trace, deltas), grads, metrics, logits), state

    def predict(net, params, x, state, rule_params):
        return jnp.zeros((x.shape[0], rule_params[-1].shape[-1])).at[:, predict_class].set(1.0)

    return LearningRule(init, compute_targets, local_update, init_params=init_params,
                        predict=predict if predict_class >= 0 else None, metrics=("b_norm",),
                        uses_trace=not own_passes, params_lr=params_lr, params_decay=params_decay)


@hookimpl
def ngf_register_rules():
    """Register ``owned``."""
    return {"owned": owned}
