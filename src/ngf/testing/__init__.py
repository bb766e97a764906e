"""ngf's test kit: check a learning rule, or a model, against ngf's contract from your own tests.

Each check trains the rule for a few steps on a tiny model (a built-in one by name: ``mlp``,
``cnn``, ``resnet``; a registered name; a model factory; or an NNX module) and random
6×6 images of 3 classes, with the engine ``ngf run`` uses, in seconds on a CPU. Each
raises ``AssertionError`` with one line naming the rule, the check and what failed
(a rule that raises is named with its file and line), so a pytest test is one call::

    import ngf.testing
    from my_rules import my_rule

    def test_my_rule_keeps_ngfs_contract():
        ngf.testing.check_rule(my_rule(), name="my-rule")

The checks, each usable alone: ``check_rule_contract`` (one step's shapes, dtypes, finite
values, metrics, state), ``check_no_recompilation`` (each program compiles once),
``check_determinism`` (the same seed gives the same bits), ``check_checkpoint_round_trip``
(a resumed run equals an uninterrupted one, bit for bit), ``check_stack_matches_lone``
(``--stack`` gives each seed's lone run) and ``check_locality`` (no node's update reads
another node's forward weights). Every check takes ``model`` and the keywords ``name``
(what messages call the rule), ``model_opts``, ``input_shape``, ``n_classes`` and
``rank_promotion``. A rule whose idea does not apply to a model refuses it when the run
starts; ``check_refuses_model`` checks that the refusal is one ``NgfError`` line.

Rank promotion: ``ngf run`` leaves JAX's ``jax_numpy_rank_promotion`` at its default,
'allow' (an array of rank 1 broadcasts against one of rank 2 silently), so every check
runs under ``jax.numpy_rank_promotion("allow")`` whatever your test session sets: a rule
passes the kit exactly when ``ngf run`` would run it. Pass ``rank_promotion="raise"`` to
be stricter, as ngf's own suite is (tests/conftest.py): the failure then names the file
and line of the rule that broadcast.
"""

from __future__ import annotations

from ngf.core.rule import LearningRule
from ngf.testing.contract import (check_determinism, check_no_recompilation, check_refuses_model,
                                  check_rule_contract)
from ngf.testing.locality import check_locality
from ngf.testing.runs import check_checkpoint_round_trip, check_stack_matches_lone
from ngf.testing.subject import tiny_network

__all__ = ["check_checkpoint_round_trip", "check_determinism", "check_locality", "check_no_recompilation",
           "check_refuses_model", "check_rule",
           "check_rule_contract", "check_stack_matches_lone", "tiny_network"]


def check_rule(rule: LearningRule, model="mlp", *, local: bool = True, exempt=(), forward_reads: str = "none",
               nonzero: bool = True, **setup) -> None:
    """Every check of the kit on ``rule`` and ``model``, in order; the first failure is raised.

    ``local=False`` leaves out ``check_locality``, for a rule that reads forward weights by
    its definition (backprop, sign symmetry); ``exempt`` and ``forward_reads`` go to it,
    ``nonzero`` to ``check_rule_contract``; ``**setup`` (``name``, ``model_opts``,
    ``input_shape``, ``n_classes``, ``rank_promotion``) to every check.
    """
    check_rule_contract(rule, model, nonzero=nonzero, **setup)
    check_no_recompilation(rule, model, **setup)
    check_determinism(rule, model, **setup)
    check_checkpoint_round_trip(rule, model, **setup)
    check_stack_matches_lone(rule, model, **setup)
    if local:
        check_locality(rule, model, exempt=exempt, forward_reads=forward_reads, **setup)
