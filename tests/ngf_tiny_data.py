"""A test plugin: small learnable datasets ``tiny`` and ``tiny-b`` (6×6 images, 3 classes).

Load it with ``--plugin ngf_tiny_data`` (the tests folder is on ``sys.path``) to run
the experiment commands end to end in seconds, without the real data.
"""

import numpy as np

from ngf.data.splits import DataSplits
from ngf.host.hookspecs import hookimpl


def tiny(seed: int, n_train: int = 192, n_test: int = 60) -> DataSplits:
    """Random images whose class is the brightness band of their first pixel."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n_train + n_test, 6, 6, 1), dtype=np.uint8)
    y = (x[:, 0, 0, 0].astype(np.int32) * 3 // 256).astype(np.int32)
    return DataSplits(x[:n_train], y[:n_train], x[n_train:], y[n_train:], 3)


@hookimpl
def ngf_register_datasets():
    """Register ``tiny`` and ``tiny-b``."""
    return {"tiny": lambda data_dir=None: tiny(0), "tiny-b": lambda data_dir=None: tiny(1)}
