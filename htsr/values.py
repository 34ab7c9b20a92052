"""Equality of htsr's result values, NaN included (an undefined number is the same undefined number)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["NanEqual", "same_values"]


def same_values(a: Any, b: Any) -> bool:
    """Equality in which NaN equals NaN (an undefined number is the same undefined number: two runs of one
    analysis compare equal), through dataclasses (their fields but those of ``compare=False``), mappings, sequences
    and numpy arrays."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(same_values(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a) if f.compare)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")))
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


class NanEqual:
    """Mixin of the result dataclasses: ``==`` by :func:`same_values` (the dataclass' own ``==`` compared NaN
    fields, which nearly every row has, as unequal: a result was not even equal to its own copy)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return same_values(self, other) if type(other) is type(self) else NotImplemented

    def __hash__(self) -> int:  # (by the text and integer fields: equal values have equal hashes, NaN or not)
        return hash((type(self).__name__, *(v for v in (getattr(self, f.name) for f in dataclasses.fields(self))
                                            if isinstance(v, (str, int)))))
