"""A checkpoint written before the state held the step key and count is refused in one line."""

import jax.numpy as jnp
import pytest
from flax import serialization

from ngf.core.errors import NgfError
from ngf.runs import checkpoint


def test_a_format_1_checkpoint_is_refused_by_name():
    state = {"params": jnp.ones(3), "step": jnp.zeros((), jnp.int32)}
    blob = checkpoint.encode(state, 1, [{"epoch": 1}])
    payload = serialization.msgpack_restore(blob)
    assert payload["format"] == checkpoint.FORMAT == 2
    restored, epoch, history = checkpoint.decode(blob, state)
    assert epoch == 1 and history == [{"epoch": 1}] and float(restored["params"][0]) == 1.0
    payload["format"] = 1
    with pytest.raises(NgfError, match=r"earlier ngf \(checkpoint format 1.*run it afresh"):
        checkpoint.decode(serialization.msgpack_serialize(payload), state)
