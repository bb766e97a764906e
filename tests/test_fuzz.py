"""Property-based tests: readers and parsers of untrusted input fail with NgfError and nothing else.

Example counts are modest so the suite stays fast; each property runs in well under
a few seconds.
"""

import gzip
import inspect
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ngf.runs.config import RunConfig
from ngf.runs.configfile import dumps, normalise, read
from ngf.core.errors import NgfError
from ngf.data.idx import parse_idx, read_idx, write_idx
from ngf.host.options import bind_options, coerce, parse_assignments
from ngf.host.registry import load_registry

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REGISTRY = load_registry()


def _idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


idx_header = st.builds(lambda code, dims: bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims),
                       st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x07]),
                       st.lists(st.integers(0, 2 ** 32 - 1) | st.integers(0, 4), max_size=70))


@FAST
@given(st.binary(max_size=300) | st.builds(lambda h, tail: h + tail, idx_header, st.binary(max_size=64)))
def test_random_bytes_parse_or_fail_cleanly(raw):
    try:
        array = parse_idx(raw)
    except NgfError as exc:
        assert "\n" not in str(exc)
        return
    assert array.size * array.dtype.itemsize == len(raw) - 4 - 4 * raw[3]


@FAST
@given(st.integers(1, 5), st.integers(1, 4), st.integers(1, 4), st.data())
def test_truncated_files_are_named_errors(n, h, w, data):
    array = np.arange(n * h * w, dtype=np.uint8).reshape(n, h, w)
    raw = _idx_bytes(array)
    np.testing.assert_array_equal(parse_idx(raw), array)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(NgfError, match="corrupt|truncated"):
        parse_idx(raw[:cut])


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200), st.booleans(), st.integers(0, 100))
def test_files_on_disk_gzip_or_not(tail, compress, cut):
    """Random, cut or valid bytes in a file, gzip-compressed or not: an array or an NgfError naming the file."""
    with tempfile.TemporaryDirectory() as folder:
        good = Path(folder) / "good.gz"
        write_idx(good, np.ones((2, 3), np.uint8))
        path = Path(folder) / ("data.gz" if compress else "data")
        blob = gzip.decompress(good.read_bytes()) + tail
        blob = gzip.compress(blob) if compress else blob
        path.write_bytes(blob[:len(blob) - cut] if cut < len(blob) else b"")
        try:
            read_idx(path)
        except NgfError as exc:
            assert str(path) in str(exc)


toml_scalar = (st.integers() | st.floats(allow_nan=True) | st.booleans() | st.text(max_size=10))
toml_value = st.recursive(toml_scalar, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
field_names = st.sampled_from([f.replace("_", "-") if i % 2 else f for i, f in
                               enumerate(inspect.signature(RunConfig).parameters)] + ["nope", "learning_rate"])


@FAST
@given(st.dictionaries(field_names, toml_value | st.dictionaries(st.text(max_size=8), toml_value, max_size=3),
                       max_size=6))
def test_config_records_build_a_valid_config_or_fail_cleanly(record):
    """What a config file may hold: known or unknown keys, any TOML values, options tables or not."""
    try:
        RunConfig(**normalise(record, "fuzz.toml")).validate()
    except NgfError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=80) | st.text(max_size=80).map(str.encode))
def test_config_file_bytes_read_or_fail_cleanly(blob):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.toml"
        path.write_bytes(blob)
        try:
            RunConfig(**read(path)).validate()
        except NgfError as exc:
            assert "\n" not in str(exc)


@FAST
@given(st.dictionaries(st.sampled_from(["rule", "lr", "epochs", "seed", "init", "schedule", "batch_size"]),
                       toml_scalar, max_size=5))
def test_written_configs_read_back(record):
    """What ngf writes as config.toml, it reads back to the same values (NaN aside)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_text(dumps(record))
        back = read(path)
        same = {k: v for k, v in record.items() if v == v}
        assert {k: v for k, v in back.items() if k in same} == same


assignment = st.text(st.characters(codec="utf-8"), max_size=20) | st.builds(
    lambda name, value: f"{name}={value}",
    st.sampled_from(["beta", "scale", "candidates", "widths", "activation", "learn_e", "dist", "x", ""]),
    st.text(st.sampled_from("0123456789.,-+eE naifurt"), max_size=12))


@FAST
@given(st.lists(assignment, max_size=4), st.sampled_from(sorted(REGISTRY.rules)))
def test_rule_options_parse_and_build_or_fail_cleanly(items, rule):
    """``--rule-opt`` strings, parsed and bound to every registered rule's factory, which is then called."""
    entry = REGISTRY.get("rule", rule)
    try:
        opts = bind_options("rule", rule, entry.factory, parse_assignments(items, "--rule-opt"), skip=())
        entry.build(object, **opts)
    except NgfError as exc:
        assert "\n" not in str(exc)


@FAST
@given(st.lists(assignment, max_size=4), st.sampled_from(sorted(REGISTRY.models)))
def test_model_options_parse_or_fail_cleanly(items, model):
    """``--model-opt`` strings, parsed and checked against every registered model's options (not built:
    a fuzzed width could ask for terabytes)."""
    entry = REGISTRY.get("model", model)
    try:
        bind_options("model", model, entry.factory, parse_assignments(items, "--model-opt"))
    except NgfError as exc:
        assert "\n" not in str(exc)


@FAST
@given(st.text(max_size=20), st.sampled_from([0.1, 3, True, "relu", (256, 256), (), None, (0.5,)]))
def test_coerce_follows_the_default_type_or_fails_cleanly(text, default):
    try:
        value = coerce(text, default, "rule option x")
    except NgfError:
        return
    if isinstance(default, bool):
        assert isinstance(value, bool)
    elif isinstance(default, (int, float)):
        assert isinstance(value, type(default))
    elif isinstance(default, tuple):  # empty text is the empty tuple (``--model-opt widths=``)
        assert isinstance(value, tuple) and (bool(value) or not text.strip())
