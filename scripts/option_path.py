"""How often one ``ngf`` command's options enter each ngf module on their way to the engine.

    python scripts/option_path.py run --rule lra --epochs 1 --out /tmp/x
    PYTHONPATH=/tmp/before/src python scripts/option_path.py run ...   # a tree from `git worktree add`

Runs the command in this process under ``sys.setprofile`` until ``Engine.__init__``
starts (nothing is trained) and counts, per ngf module, the calls that enter it from
another module (a module's own top-level code, run at import, is not counted). A
module entered once is passed once; each further entry is a re-entry.
"""

from __future__ import annotations

import collections
import os
import sys


#: functions JAX calls once per program it compiles (the compile cache's read): how many programs
#: compiled before the engine, not the path of the options
PROGRAM_HOOKS = ("get_executable_and_time",)


class _Reached(Exception):
    """Raised in the profiler once the engine is being built."""


def module_entries(argv: list[str]) -> collections.Counter:
    """Per ngf module, how many calls from another module entered it before the engine was built."""
    import ngf.core.engine as engine_module
    from ngf.cli import main

    root = os.path.dirname(os.path.dirname(engine_module.__file__))
    target = engine_module.Engine.__init__.__code__
    entries: collections.Counter = collections.Counter()

    def module_of(frame):
        while frame is not None and not frame.f_code.co_filename.startswith(root):
            frame = frame.f_back  # a library in between: the ngf module that called it
        if frame is None:
            return None
        return os.path.relpath(frame.f_code.co_filename, os.path.dirname(root)).removesuffix(".py") \
            .replace(os.sep, ".").removesuffix(".__init__")

    def profile(frame, event, arg):
        if event != "call" or frame.f_code.co_name in ("<module>", *PROGRAM_HOOKS):
            return
        if frame.f_code is target:
            sys.setprofile(None)
            raise _Reached
        callee = module_of(frame) if frame.f_code.co_filename.startswith(root) else None
        if callee is not None and module_of(frame.f_back) != callee:
            entries[callee] += 1

    sys.setprofile(profile)
    try:
        main(argv)
    except _Reached:
        pass
    finally:
        sys.setprofile(None)
    return entries


if __name__ == "__main__":
    for name, count in module_entries(sys.argv[1:] or ["run", "--epochs", "1", "--quiet"]).most_common():
        print(f"{count:4d}  {name}")
