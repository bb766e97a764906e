"""ngf-signsym's own tests: its three rules, on its own model, pass ngf's test kit (``ngf.testing``).

Run from ngf's checkout they are part of its suite (pyproject.toml's ``testpaths``); a plugin
package of your own runs them the same way, with ``pytest`` in its folder.
"""

import pytest

import ngf.testing

signsym = pytest.importorskip("ngf_signsym", reason="examples/ngf-signsym is not installed")

#: the package's own model, small: the kit trains it on random 6×6 images of 3 classes
MODEL = {"model": signsym.signsym_mlp, "model_opts": {"widths": (8, 7)}}


def test_brsf_passes_the_kit():
    """The contract, one compile, determinism, exact resume and stacks, for brsf, whose state holds the
    random signs and a key; not locality: sign symmetry reads sign(θ) of the forward weights of the nodes
    above each node, by its definition."""
    ngf.testing.check_rule(signsym.brsf(), **MODEL, name="brsf", local=False)


@pytest.mark.parametrize("name", ["usf", "frsf"])
def test_the_other_rules_keep_the_contract_and_compile_once(name):
    """usf and frsf: the contract and one compile (their state is brsf's, or none)."""
    ngf.testing.check_rule_contract(getattr(signsym, name)(), **MODEL, name=name)
    ngf.testing.check_no_recompilation(getattr(signsym, name)(), **MODEL, name=name)


@pytest.mark.parametrize("model", ["cnn", "resnet"])
def test_the_contract_holds_on_ngfs_convolutional_models(model):
    """sign(θ) ⊙ M of a convolution's kernel walks the graph of ngf's cnn and resnet as of a dense node."""
    ngf.testing.check_rule_contract(signsym.usf(), model, name="usf")


def test_sign_symmetry_is_not_local_and_the_kit_says_so():
    with pytest.raises(AssertionError, match=r"^rule 'usf' fails the locality check: changing node 1's forward "
                                             r"weights moved the updates of nodes \[0\]"):
        ngf.testing.check_locality(signsym.usf(), **MODEL, name="usf")
