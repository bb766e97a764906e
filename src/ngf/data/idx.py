"""Reading and writing IDX files (the MNIST format), plain or gzip-compressed."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ngf.core.errors import NgfError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
MAX_DIMS = 32  # numpy's own limit is 64; images are 3 or 4


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise NgfError(f"corrupt or truncated file {path}: {exc}") from None


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file into an array; errors name ``source``."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise NgfError(f"corrupt file {source}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise NgfError(f"corrupt file {source}: IDX header is truncated")
    if ndim > MAX_DIMS:
        raise NgfError(f"corrupt file {source}: IDX header says {ndim} dimensions (at most {MAX_DIMS})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize  # Python integers: no overflow
    found = len(raw) - header
    if found != expected:
        raise NgfError(f"corrupt or truncated file {source}: expected {expected} data bytes "
                       f"for shape {dims}, found {found}")
    try:
        return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))
    except ValueError as exc:  # an empty array whose other dimensions are absurd
        raise NgfError(f"corrupt file {source}: IDX shape {dims} cannot be read ({exc})") from None


def read_idx(path) -> np.ndarray:
    """Read an IDX file (``.gz`` or not); a corrupt or truncated file raises ``NgfError``."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def write_idx(path, array: np.ndarray) -> None:
    """Write ``array`` (uint8 or int8) as a gzip-compressed IDX file, atomically."""
    array = np.ascontiguousarray(array)
    if array.dtype not in _CODES:
        raise ValueError(f"write_idx supports uint8 and int8, not {array.dtype}")
    header = bytes([0, 0, _CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wb") as handle:
        handle.write(header + array.tobytes())
    os.replace(tmp, path)
