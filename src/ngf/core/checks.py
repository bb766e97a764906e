"""Range checks for hyperparameters, for factories to call before they build anything.

``number("lra", "beta", beta, minimum=0)`` returns ``beta`` as a float or raises an
``NgfError`` whose one line names the factory, the option, the range and the value
(``lra option beta must be a finite number ≥ 0, got -1.0``). NaN and infinity are
never accepted, nor are booleans where a number is expected.
"""

from __future__ import annotations

import math
import numbers

from ngf.core.errors import NgfError


def _describe(minimum, maximum, exclusive: bool, integer: bool) -> str:
    what = "an integer" if integer else "a finite number"
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if exclusive else '≥'} {minimum:g}")
    if maximum is not None:
        parts.append(f"≤ {maximum:g}")
    return what + (" " + " and ".join(parts) if parts else "")


def number(owner: str, name: str, value, *, minimum: float | None = None, maximum: float | None = None,
           exclusive: bool = False, integer: bool = False):
    """``value`` checked to be a finite number (an integer if ``integer``) in range.

    ``minimum`` is inclusive unless ``exclusive``; ``maximum`` is inclusive.
    """
    wanted = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, wanted) and not isinstance(value, bool)
    if ok:
        ok = math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if exclusive else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        raise NgfError(f"{owner} option {name} must be {_describe(minimum, maximum, exclusive, integer)}, "
                       f"got {value!r}")
    return int(value) if integer else float(value)
