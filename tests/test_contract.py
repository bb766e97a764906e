"""Every built-in rule passes the checks of ngf.testing, the kit plugin authors run on their own rules:
the contract of one step on the mlp, cnn and resnet's graph of nodes (or its one-line refusal of a model);
one compile; determinism. An installed plugin's rules (examples/ngf-signsym's) run the kit in its own tests.

The kit's other checks run on every rule where they belong: exact resume in tests/test_checkpoint.py,
stacks in tests/test_stacked.py, locality in tests/test_locality.py."""

import pytest

import ngf.testing
from ngf.host.registry import load_registry
from ngf_refusals import REFUSED

REGISTRY = load_registry()
#: the built-in rules: an installed plugin's (examples/ngf-signsym's) run the kit in their own tests
BUILT_IN = sorted(name for name in REGISTRY.rules if REGISTRY.get("rule", name).plugin.startswith("ngf.plugins."))
MODELS = ("cnn", "mlp", "resnet")
#: rules whose step is not a per-node update: local search proposes one candidate change, or none
NOT_PER_NODE = {"local-search": "one accepted candidate (or none) per step, over a random subset"}


def built(rule_name: str):
    return REGISTRY.get("rule", rule_name).factory()


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("rule_name", BUILT_IN)
def test_rule_contract(rule_name, model_name):
    """Shapes, dtypes and finite values, and every weight node really learns: a library elsewhere shipped
    a bug that zeroed every hidden layer's update under all its rules. Under rank promotion 'raise'.
    A model the rule refuses (tests/ngf_refusals.py) is refused in one line when the run starts."""
    if (rule_name, model_name) in REFUSED:
        ngf.testing.check_refuses_model(built(rule_name), model_name, name=rule_name,
                                        match=REFUSED[rule_name, model_name])
        return
    ngf.testing.check_rule_contract(built(rule_name), model_name, name=rule_name, rank_promotion="raise",
                                    nonzero=rule_name not in NOT_PER_NODE)


@pytest.mark.parametrize("rule_name", BUILT_IN)
def test_one_compile_and_determinism(rule_name):
    """The scan of several steps and its shorter last call each compile once, and so does evaluation; the
    same seed gives the same bits.

    One step per call (convolutional models' default path) is checked for one compile, one rule of each
    kind the engine treats apart, by tests/test_conv_rules.py::test_one_step_per_call_compiles_once_and_learns_
    on_convolutional_models.
    """
    rule = built(rule_name)
    ngf.testing.check_no_recompilation(rule, "mlp", name=rule_name, rank_promotion="raise")
    ngf.testing.check_determinism(rule, "mlp", name=rule_name, rank_promotion="raise")
