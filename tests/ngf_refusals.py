"""The built-in models a built-in rule refuses when a run starts, each with the words its one-line
refusal must contain (docs/rules.md's section of the rule says why). Every other pair is trained."""

REFUSED = {
    ("ff", "cnn"): "first node outputs a feature map",
    ("ff", "resnet"): "first node outputs a feature map",
}


def accepted(pairs):
    """The (rule, model) pairs of ``pairs`` that the rule does not refuse."""
    return [pair for pair in pairs if tuple(pair[:2]) not in REFUSED]
