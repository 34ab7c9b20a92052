"""Quantized weights stored with their scales (FP8 and int8 checkpoints): dequantize on load.

Formats that store a weight in 8 bits keep a float scale tensor beside it, named after the weight:

* ``<name>.weight_scale_inv`` — DeepSeek-V3 / Hugging Face FP8 (``float8_e4m3fn``) checkpoints: one
  scale per 128 × 128 block of the [out, in] weight, shape [⌈out/128⌉, ⌈in/128⌉];
* ``<name>.weight_scale`` — compressed-tensors / vLLM FP8 and int8 checkpoints: one scale for the
  tensor (shape [] or [1]) or one per output channel (shape [out] or [out, 1]), or blocks as above.

* ``<module>.SCB`` — bitsandbytes LLM.int8() checkpoints (``Linear8bitLt``): the int8 ``<module>.weight``
  and one absmax per output row, W = q · SCB / 127 (bitsandbytes' ``int8_vectorwise_dequant``).

All mean the same thing: W = q · s, with s broadcast over its block (DeepSeek's ``weight_dequant``
multiplies by ``weight_scale_inv`` despite the name), and s = SCB / 127 for bitsandbytes. :func:`with_scales` pairs each scale with its
weight by name, gives the weight a loader that dequantizes it to float32 — one tensor at a time —
and drops the scale tensors from the stream (a 2-D scale grid is not a layer). A dequantized int8
weight is reported as ``float32`` (the array htsr analyses), so it is not skipped as an integer buffer;
an FP8 weight keeps its FP8 dtype name. A scale whose shape fits none of the layouts makes that
weight's loader raise :class:`~htsr.errors.SourceError` naming both tensors.

An integer weight left without a scale — packed 4-bit words (GPTQ / AWQ ``qweight``, compressed-tensors
``weight_packed``), bitsandbytes 4-bit bytes, an int8 weight whose scale is missing — is not a matrix of
weights htsr can analyse as stored: :func:`unscaled_integer_weight` gives it a row that says so
(``skipped: …``) instead of dropping it like an integer buffer (position ids, step counters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np

from ..errors import SourceError
from .base import TensorRef, skipped_loader

__all__ = ["SCALE_SUFFIXES", "unscaled_integer_weight", "with_scales"]

SCALE_SUFFIXES = ("weight_scale_inv", "weight_scale", "SCB")
_DIVISOR = {"SCB": 127.0}  # bitsandbytes stores the row's absmax: q = round(127 · w / absmax)
_QUANTIZED = ("float8_e4m3fn", "float8_e5m2", "int8", "uint8")


def _expand(scale: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``scale`` broadcast to ``shape`` (a scalar, one per output row, or a grid of equal blocks)."""
    s = np.asarray(scale, dtype=np.float32)
    if s.size == 1:
        return s.reshape(())
    if len(shape) == 2 and s.squeeze().shape == (shape[0],):
        return s.reshape(shape[0], 1)
    if s.ndim == len(shape) == 2:
        # DeepSeek's 128 x 128 blocks when they fit (300 rows in 3 blocks could also be 100-row blocks),
        # else equal blocks that cover each side
        block = [128 if math.ceil(n / 128) == k else math.ceil(n / k) for n, k in zip(shape, s.shape)]
        if all(math.ceil(n / b) == k for n, b, k in zip(shape, block, s.shape)):
            full = np.repeat(np.repeat(s, block[0], axis=0), block[1], axis=1)
            return full[: shape[0], : shape[1]]
    raise SourceError(f"{what}: scale shape {tuple(s.shape)} fits no scale layout of a {tuple(shape)} weight "
                      "(scalar, per output row, or a grid of blocks); the file may be corrupt")


def with_scales(refs: Iterable[TensorRef]) -> list[TensorRef]:
    """The tensors with every quantized weight paired to its scale and the scale tensors removed."""
    refs = list(refs)
    by_name = {r.name: r for r in refs}
    scale_of: dict[str, tuple[TensorRef, float]] = {}
    for r in refs:
        for suffix in SCALE_SUFFIXES:
            if r.name.endswith("." + suffix):
                w = by_name.get(r.name[: -len(suffix)] + "weight")
                if w is not None and w.dtype in _QUANTIZED:
                    scale_of[w.name] = (r, _DIVISOR.get(suffix, 1.0))
                break
    used = {s.name for s, _ in scale_of.values()}
    out = []
    for r in refs:
        if r.name in used:
            continue
        if r.name not in scale_of:
            out.append(r)
            continue
        s, divisor = scale_of[r.name]

        def load(r: TensorRef = r, s: TensorRef = s, divisor: float = divisor) -> np.ndarray:
            q = np.asarray(r.load(), dtype=np.float32)
            scale = _expand(s.load(), q.shape, f"{r.name} with {s.name}")
            return q * (scale / np.float32(divisor)) if divisor != 1.0 else q * scale

        dtype = r.dtype if r.dtype.startswith("float8") else "float32"
        out.append(TensorRef(r.name, r.shape, dtype, load, r.kind))
    return out


# the last name component of a weight (not of an integer buffer such as position_ids or a step counter)
_WEIGHT_NAME = re.compile(r"(^|\.)(weight|qweight|weight_packed)$")


def unscaled_integer_weight(ref: TensorRef) -> TensorRef | None:
    """For an integer tensor named as a weight matrix: the tensor with a loader that skips it (its row
    says why); None for an integer buffer, which is no layer at all."""
    if not ref.dtype.startswith(("int", "uint")) or len(ref.shape) < 2 or not _WEIGHT_NAME.search(ref.name):
        return None
    if ref.name.endswith(("qweight", "weight_packed")):
        why = (f"{ref.dtype} words of packed low-bit values (GPTQ / AWQ / compressed-tensors), which htsr does "
               "not unpack; analyse the unquantized model or a dequantized copy")
    else:
        why = (f"{ref.dtype} weight without a scale htsr recognises ({', '.join(SCALE_SUFFIXES)}), so not "
               "analysed as raw integers; analyse the unquantized model or a dequantized copy")
    return TensorRef(ref.name, ref.shape, ref.dtype, skipped_loader(why), ref.kind)
