"""The entry point ``signsym`` (group ``ngf``): what this package registers."""

import ngf
from ngf_signsym.data import npz_dataset
from ngf_signsym.model import signsym_mlp
from ngf_signsym.rules import brsf, frsf, usf


@ngf.hookimpl
def ngf_register_rules():
    """Register ``usf``, ``brsf`` and ``frsf``."""
    return {"usf": usf, "brsf": brsf, "frsf": frsf}


@ngf.hookimpl
def ngf_register_models():
    """Register ``signsym-mlp``."""
    return {"signsym-mlp": signsym_mlp}


@ngf.hookimpl
def ngf_register_datasets():
    """Register ``npz``."""
    return {"npz": npz_dataset}
