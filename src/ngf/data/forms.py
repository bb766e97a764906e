"""Dataset names that are forms rather than registered names: ``hf:OWNER/NAME``, ``disk:PATH``, ``folder:PATH``.

``--dataset FORM:TARGET`` loads the target with the form's loader; its keyword options
(``image``, ``label``, ``test_fraction``) are set with ``--dataset-opt NAME=VALUE``.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

from ngf.core.errors import NgfError
from ngf.data.folder import load_folder
from ngf.data.hub import load_disk, load_hub


class Form(NamedTuple):
    """One dataset form: its loader ``(target, data_dir=None, **options)`` and what it reads."""

    loader: Callable
    example: str
    reads: str


FORMS = {
    "hf": Form(load_hub, "hf:OWNER/NAME", "any Hugging Face Hub image-classification dataset, cached as arrays"),
    "disk": Form(load_disk, "disk:PATH", "a dataset saved with datasets' save_to_disk"),
    "folder": Form(load_folder, "folder:PATH", "one subfolder of images per class (under train/ and test/, "
                                               "or held out by class)"),
}


def is_form(name) -> bool:
    """Whether ``name`` is a dataset form (``hf:...``, ``disk:...``, ``folder:...``), not a registered name."""
    return isinstance(name, str) and name.partition(":")[0] in FORMS and ":" in name


def form_loader(name: str) -> Callable | None:
    """The loader of the form ``name`` with its target bound, or None when ``name`` is no form."""
    if not is_form(name):
        return None
    prefix, _, target = name.partition(":")
    if not target.strip():
        raise NgfError(f"--dataset {name!r} has nothing after '{prefix}:' (expected {FORMS[prefix].example})")
    return functools.partial(FORMS[prefix].loader, target.strip())
