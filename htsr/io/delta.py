"""Deltas: a model's tensors minus a base model's, matched by exact name (``analyze(MODEL, base=BASE)``).

For every tensor name present in both sources with the same shape, the stream yields a tensor whose
loader reads both and returns W − W_base (in the dtype the two loaders return, float32 for reduced
precisions). Nothing is ever analysed as a delta that is not one: a tensor present in only one of
the two sources, or whose shape differs from the base's, is still listed, but its loader raises
:class:`~htsr.errors.LayerSkipped`, so its row says ``skipped: …`` and why. Base-only tensors come
after the model's, in the base's order.

Each source is listed once, when the delta source is made (names and shapes, no tensor data); each
delta reads one tensor of each source, so memory stays at two tensors at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import LayerSkipped
from .base import TensorRef, TensorSource

__all__ = ["DeltaSource"]


def _skipped(reason: str):
    def load() -> np.ndarray:
        raise LayerSkipped(reason)

    return load


class DeltaSource:
    """``model − base`` tensor by tensor (see the module docstring)."""

    def __init__(self, model: TensorSource, base: TensorSource) -> None:
        # each source is listed once (the refs are lazy: no tensor data is read here)
        self._model = list(model)
        self._base = {t.name: t for t in base}
        self.description = f"{model.description} - base {base.description}"

    def __len__(self) -> int:
        model_names = {t.name for t in self._model}
        return len(self._model) + sum(1 for n in self._base if n not in model_names)

    def __iter__(self) -> Iterator[TensorRef]:
        seen = set()
        for t in self._model:
            seen.add(t.name)
            b = self._base.get(t.name)
            if b is None:
                loader = _skipped("only in the model: the base has no tensor of this name (not a delta)")
            elif tuple(b.shape) != tuple(t.shape):
                loader = _skipped(f"shape {tuple(t.shape)} differs from the base's {tuple(b.shape)} (not a delta)")
            else:
                loader = (lambda t=t, b=b: np.subtract(t.load(), b.load()))
            yield TensorRef(t.name, t.shape, t.dtype, loader, t.kind)
        for name, b in self._base.items():
            if name not in seen:
                yield TensorRef(name, b.shape, b.dtype, _skipped("only in the base: the model has no tensor of this "
                                                                 "name (not a delta)"), b.kind)
