"""The tasks of ``--workers`` (``ngf.experiments.workers``): which runs go together, and which a worker takes next."""

from __future__ import annotations

import dataclasses
from collections import deque

from ngf.runs.fields import FIELDS_WITH


def tasks(keys: list[int], prepared: list, threads: int, stack) -> deque:
    """The runs to train as tasks, in plan order: a stack of runs that differ only in seed
    (``ngf.experiments.stacked``, ``--stack``), or one run; each config with its ``threads``."""
    from ngf.experiments.stacked import check_size, groups

    configs = {key: dataclasses.replace(prepared[key][0], threads=threads) for key in keys}
    stacked = groups([(configs.get(i, config), summary) for i, (config, summary) in enumerate(prepared)],
                     check_size(stack))
    group = {group[0]: group for group in stacked}
    inside = {key for group in stacked for key in group[1:]}
    return deque([(key, configs[key]) for key in group.get(key, [key])] for key in keys if key not in inside)


def programs(config) -> str:
    """What a run's compiled programs depend on beyond its seed and lr, as text: its rule, model and
    data with their options (a worker prefers tasks whose programs it has compiled)."""
    return repr(tuple(getattr(config, name) for name in FIELDS_WITH["compiled"]))


def next_task(held: list, index: int, todo: deque) -> list | None:
    """Worker ``index``'s next task, taken from ``todo``; None when none is left. ``held[i]`` is what
    worker i compiled last (``programs``), updated here.

    A task that runs the programs the worker compiled last (another seed of its rule) comes
    first, then one whose programs no other worker holds, then the first: a comparison's runs
    of one rule share a worker's compiled programs, rather than each worker compiling every
    rule (tasks come in plan order, a rule's seeds one after another).
    """
    others = {p for i, p in enumerate(held) if i != index}
    for wanted in (lambda p: p == held[index], lambda p: p not in others):
        found = next((n for n, task in enumerate(todo) if wanted(programs(task[0][1]))), None)
        if found is not None:
            task = todo[found]
            del todo[found]
            held[index] = programs(task[0][1])
            return task
    if not todo:
        return None
    held[index] = programs(todo[0][0][1])
    return todo.popleft()
