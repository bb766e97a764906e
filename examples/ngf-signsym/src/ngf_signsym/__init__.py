"""Sign-symmetry rules, a model and a dataset for ngf, as a third-party plugin package."""

from ngf_signsym.data import npz_dataset
from ngf_signsym.model import signsym_mlp
from ngf_signsym.rules import brsf, frsf, usf

__version__ = "0.1.0"

__all__ = ["brsf", "frsf", "npz_dataset", "signsym_mlp", "usf"]
