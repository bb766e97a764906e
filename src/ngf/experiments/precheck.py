"""Every run of an experiment checked before the first one trains: its options, rule and model.

A bad grid value (``--grid lr=1e-3,-1``, ``--grid 'model.widths=16;0'``) would otherwise
surface only when its run starts, after the runs before it had trained, and end the
experiment without its tables. So each variant's config is validated, its rule built,
and its model built abstractly (shapes only, ``nnx.eval_shape``, which checks its
memory too) for each dataset, once, loading each dataset once.
"""

from __future__ import annotations

from ngf.core.errors import NgfError
from ngf.experiments.plan import Planned
from ngf.runs.memory import check_memory
from ngf.runs.protocol import pad_images
from ngf.runs.resolve import model_factory, resolve_data, resolve_rule
from ngf.runs.spec import RunSpec


def check_plan(runs: list[Planned], registry) -> None:
    """Raise ``NgfError`` naming the first run whose options, rule or model cannot be used."""
    loaded, checked = {}, set()
    for item in runs:
        config = item.config
        try:
            config.validate()  # every seed's run, cheap
            if (item.label, item.dataset) in checked:
                continue
            checked.add((item.label, item.dataset))
            spec = RunSpec.of(config, registry)  # its options bound, once
            resolve_rule(spec, registry)
            source = (config.dataset, config.data_dir, config.pad_to)
            if source not in loaded:  # the images the model will see: padded (--pad-to)
                data, name = resolve_data(spec, registry)
                loaded[source] = pad_images(data, config.pad_to, name)
            make, _, name = model_factory(spec, loaded[source], registry)
            check_memory(make, config.seed, name)
        except NgfError as exc:
            raise NgfError(f"run {item.label!r} on {item.dataset}: {exc}") from None
