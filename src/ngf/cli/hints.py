"""One line after a run's results where a rule at its defaults is known to miss its paper's protocol.

``PROTOCOL_HINTS`` is the whole policy: a rule, a model, one of the model's options and
what its value must be, and the reproduction file (docs/reproductions.md) that runs the
paper's protocol instead. A run matches when it names that rule with none of its options
changed from their defaults, and that model with the option's value (given, or the
factory's default) passing the test. Nothing else is printed, and nothing changes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from ngf.host.options import factory_options


class ProtocolHint(NamedTuple):
    """The rule at its defaults on ``model`` whose ``option`` passes ``holds``: run ``file`` instead."""

    rule: str
    model: str
    option: str
    holds: Callable[[Any], bool]
    file: str


PROTOCOL_HINTS = (
    # drtp on the default relu mlp: Frenkel et al.'s FC protocol
    ProtocolHint("drtp", "mlp", "activation", lambda act: str(act) == "relu",
                 "docs/reproductions/frenkel2021-drtp-fc.toml"),
    # pepita on a pooled cnn (the default cnn stays at chance): Dellaferrera & Kreiman's conv protocol
    ProtocolHint("pepita", "cnn", "pool", lambda pool: int(pool) > 1,
                 "docs/reproductions/dellaferrera2022-pepita-conv.toml"),
)


def at_defaults(factory: Callable, given: dict) -> bool:
    """Whether every option in ``given`` equals ``factory``'s default (none given: true)."""
    defaults = {o.name: o.default for o in factory_options(factory, ())}
    return all(name in defaults and value == defaults[name] for name, value in given.items())


def protocol_hint(config, registry) -> str | None:
    """The line for a run's ``RunConfig``, or None when no ``PROTOCOL_HINTS`` entry matches."""
    for hint in PROTOCOL_HINTS:
        if config.rule != hint.rule or config.model != hint.model:
            continue
        if not at_defaults(registry.get("rule", hint.rule).factory, dict(config.rule_opts or {})):
            continue
        model_defaults = {o.name: o.default for o in factory_options(registry.get("model", hint.model).factory, ())}
        value = (config.model_opts or {}).get(hint.option, model_defaults.get(hint.option))
        try:
            matches = hint.holds(value)
        except (TypeError, ValueError):  # a value the test cannot read: no hint
            matches = False
        if matches:
            return (f"note: {hint.rule} at its defaults on this {hint.model} is not its paper's protocol; "
                    f"for that, run ngf compare --config {hint.file} --out DIR")
    return None


def protocol_hints(configs, registry) -> list[str]:
    """The distinct lines for several runs (``ngf compare``, ``ngf sweep``), in the runs' order."""
    lines = [protocol_hint(config, registry) for config in configs]
    return list(dict.fromkeys(line for line in lines if line))
