"""Quantized weights stored beside their scales or as packed low-bit codes (FP8, int8, GPTQ, AWQ,
bitsandbytes, MLX, compressed-tensors, MXFP4 checkpoints): dequantized on load, one tensor at a time.

Formats that store a weight in 8 bits keep a float scale tensor beside it, named after the weight:

* ``<name>.weight_scale_inv`` — DeepSeek-V3 / Hugging Face FP8 (``float8_e4m3fn``) checkpoints: one
  scale per 128 × 128 block of the [out, in] weight, shape [⌈out/128⌉, ⌈in/128⌉] (other power-of-two
  blocks likewise);
* ``<name>.weight_scale`` — compressed-tensors / vLLM FP8 and int8 checkpoints: one scale for the
  tensor (shape [] or [1]) or one per output channel (shape [out] or [out, 1]), or blocks as above;
* ``<module>.SCB`` — bitsandbytes LLM.int8() checkpoints (``Linear8bitLt``): the int8 ``<module>.weight``
  and one absmax per output row, W = q · SCB / 127 (bitsandbytes' ``int8_vectorwise_dequant``); its
  ``<module>.weight_format`` must say rows (0), the only layout bitsandbytes reads back.

* ``<name>_scale_inv`` / ``<name>_scale`` — transformers' FP8 experts (``FP8Expert``): a fused expert
  parameter such as ``experts.gate_up_proj`` [E, out, in] and its [E, ⌈out/128⌉, ⌈in/128⌉] grid.

All mean the same thing: W = q · s, with s broadcast over its block (DeepSeek's ``weight_dequant``
multiplies by ``weight_scale_inv`` despite the name), and s = SCB / 127 for bitsandbytes; an expert
stack [E, out, in] takes each expert's own scales ([E, …] in any of these layouts). An asymmetric weight
(compressed-tensors) also stores ``<name>.weight_zero_point``, laid out like its scale: W = (q − z) · s.
A uint8 weight beside a scale and no zero point is two 4-bit floats a byte (ModelOpt NVFP4, Quark MXFP4):
not dequantized, its row says so.
:func:`with_scales` pairs each scale with its weight by name, gives the weight a loader that
dequantizes it to float32 and drops the scale tensors from the stream (a 2-D scale grid is not a layer). A dequantized int8
weight is reported as ``float32`` (the array htsr analyses), so it is not skipped as an integer buffer;
an FP8 weight keeps its FP8 dtype name. A scale whose shape fits none of the layouts makes that
weight's loader raise :class:`~htsr.errors.SourceError` naming both tensors.

GPTQ and AWQ checkpoints store a linear layer as ``<module>.qweight`` (int32 words of unsigned codes,
lowest bits first; 3-bit codes run on across words as one bit stream), ``<module>.scales`` [groups, out], ``<module>.qzeros`` (the zero points,
packed the same way along the output axis) and, for GPTQ, ``<module>.g_idx`` (each input channel's group):

* GPTQ packs ``qweight`` [in·bits/32, out] along the input axis, and W[i, o] = scales[g_i, o] ·
  (code[i, o] − zero[g_i, o]); AutoGPTQ's format (``checkpoint_format`` "gptq", the default) stores each
  zero point minus one, "gptq_v2" stores it as is. Bits 2, 3, 4 and 8.
* AWQ (AutoAWQ's GEMM layout) packs ``qweight`` [in, out·4/32] along the output axis in the nibble order
  0 2 4 6 1 3 5 7, groups are consecutive input channels, and W[i, o] = scales[g, o] · (code − zero).

The layer becomes one ``<module>.weight`` tensor of shape [out, in], dequantized when loaded; the parts
are not layers. So does a bitsandbytes 4-bit (NF4 / FP4, QLoRA) layer: ``<module>.weight`` holds bytes,
each a pair of 4-bit codes (high nibble first) into ``weight.quant_map``, each code scaled by its block's
``weight.absmax``. With double quantization the absmax values are themselves 8-bit codes into
``weight.nested_quant_map``, times ``weight.nested_absmax``, plus an offset. The JSON tensor
``weight.quant_state.bitsandbytes__nf4`` gives the shape, the block sizes and the offset. The bytes are
stored as uint8, or viewed as another ``quant_storage`` dtype (FSDP-QLoRA uses bfloat16, float16 or
float32); they are recovered from it bit for bit. So does an MLX
quantized layer (``mlx-community`` models): a uint32 ``<module>.weight`` of 1-, 2-, 3-, 4-, 5-, 6- or 8-bit
codes packed along each row as one bit stream, lowest bits first ([out, words], or a mixture's
``switch_mlp`` expert stack [E, out, words]: one row per expert), beside ``<module>.scales`` and ``<module>.biases`` per group of inputs,
W = scale·q + bias; bits and group size from ``config.json``'s ``quantization`` (per layer where it says);
without it, a layer whose shapes fit several (bits, group size) pairs gets a ``skipped`` row. The format hints (bits without ``g_idx``, the GPTQ checkpoint format) come from the
model folder's ``config.json`` (``quantization_config``) or ``quantize_config.json``
(:meth:`PackedConfig.of_folder`).

So does a compressed-tensors ``pack-quantized`` layer (vLLM / llm-compressor W4A16 / W8A16 checkpoints):
``<module>.weight_packed`` int32 words of 1- to 8-bit signed codes stored plus 2^(bits−1), packed along
each row as one bit stream, lowest bits first, ``<module>.weight_scale`` per group of inputs (or per row)
and ``<module>.weight_shape``; W = (q − z) · scale, z = 0 for a symmetric layer and an asymmetric one's
``<module>.weight_zero_point`` (packed the same way down the rows); ``weight_g_idx`` (activation order)
gives each input its group; with the ``block`` strategy (config.json's ``block_structure`` [b0, b1]) one
scale and zero point per block of b0 rows and b1 inputs. A mixture's fused experts ([E, out, words],
``weight_shape`` [E, out, in]) give an expert stack. Checkpoints written before compressed-tensors 0.18 hold
⌊32 / bits⌋ codes a word for 3, 5, 6 and 7 bits; they are read as such when config.json's ``config_groups``
gives those bits (and its ``version`` is below 0.18, when it says: the word counts of the two packings can
coincide).

So does an HQQ layer (Hugging Face's ``HqqConfig``): ``<module>.W_q`` (1-, 2-, 4- or 8-bit codes in uint8,
3-bit in int32, packed along the first axis of the grouped weight; or those bytes viewed as the compute
dtype), ``<module>.scale`` and ``<module>.zero`` per group, and the meta HQQ encodes as tensors
(``shape``, ``axis``, ``group_size``, ``packing``, ``view_as_float`` …); W = (q − zero) · scale. So does an
AQLM layer (additive quantization): ``<module>.codes`` [out groups, in groups, K] pick one vector of each of
the K codebooks ``<module>.codebooks`` [K, 2^bits, out group, in group]; their sum times the output group's
``<module>.scales`` is the block.

So does an MXFP4 tensor (OpenAI's gpt-oss experts): ``<base>_blocks`` (uint8, two FP4 e2m1 codes a byte,
low nibble first, 16 bytes a group) beside ``<base>_scales`` (one E8M0 exponent a group, bias 127) give
``<base>``, W = fp4(code) · 2^(e − 127).

An integer weight left without a scale — packed 4-bit words (GPTQ / AWQ ``qweight``, compressed-tensors
``weight_packed``), bitsandbytes 4-bit bytes, an int8 weight whose scale is missing — is not a matrix of
weights htsr can analyse as stored: :func:`unscaled_integer_weight` gives it a row that says so
(``skipped: …``) instead of dropping it like an integer buffer (position ids, step counters).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import HtsrError, LayerSkipped, SourceError, described
from .base import TensorRef, numpy_dtype, one_line, read_json, skipped_loader
from .reparam import reparametrized_refs

__all__ = ["SCALE_SUFFIXES", "PackedConfig", "unscaled_integer_weight", "with_scales"]

SCALE_SUFFIXES = ("weight_scale_inv", "weight_scale", "SCB")
# transformers' FP8 experts (FP8Expert): a fused expert parameter <name> [E, out, in] beside <name>_scale_inv
_PARAM_SCALE_SUFFIXES = ("_scale_inv", "_scale")
_GPTQ_BITS = (2, 3, 4, 8)  # AutoGPTQ / GPTQModel
_DIVISOR = {"SCB": 127.0}  # bitsandbytes stores the row's absmax: q = round(127 · w / absmax)
_QUANTIZED = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "int8", "uint8")


def _block(n: int, k: int) -> int | None:
    """The block size that cuts ``n`` rows (or columns) into ``k`` blocks, the last one possibly short:
    DeepSeek's 128 when it fits (300 rows in 3 blocks could also be 100-row blocks), else the power of two
    that does (quantizers use power-of-two blocks; at most one fits when k > 1); None if none does."""
    if k <= 0:
        return None
    if math.ceil(n / 128) == k:
        return 128
    return next((b for b in (1 << e for e in range(31)) if math.ceil(n / b) == k), None)


class _NotConfigGrid(SourceError):
    """A scale grid that is not of the blocks the config gives (:func:`_expand`)."""


def _expand(scale: np.ndarray, shape: tuple[int, ...], what: str, stack: bool = False,
            config_block: tuple[int, int] | None = None) -> np.ndarray:
    """``scale`` broadcast to ``shape`` (a scalar, one per output row, or a grid of equal blocks); for an
    expert stack ``[E, out, in]`` (``stack``), each expert's the same way (``[E, …]`` scales), or the
    stack's as one. A grid must be of the blocks the config gives (``config_block``), when it gives them: another
    grid that also fits the shape (one transposed, another layer's) had been read as power-of-two blocks, the
    weight's values wrong and its row 'ok' (h58)."""
    s = np.asarray(scale, dtype=np.float32)
    if s.size == 1:
        return s.reshape(())
    if stack and len(shape) == 3 and s.ndim >= 1 and s.shape[0] == shape[0] and s.size % shape[0] == 0:
        per = s.reshape(shape[0], *(s.shape[1:] or (1,)))
        try:
            return np.stack([np.broadcast_to(_expand(per[e], shape[1:], what, config_block=config_block), shape[1:])
                             for e in range(shape[0])])
        except _NotConfigGrid:  # (an expert's grid not the config's: said so, not 'fits no scale layout')
            raise
        except SourceError:
            pass  # (then as the stack's own layout below)
    per_row = (shape[0],) + (1,) * (len(shape) - 1)
    if len(shape) >= 2 and s.shape in ((shape[0],), per_row):  # per output channel: a row, or a conv's c_out
        return s.reshape(per_row)
    if config_block is not None and s.ndim == len(shape) == 2:
        want = tuple(math.ceil(n / b) for n, b in zip(shape, config_block))
        if s.shape != want and s.shape == (1, shape[0]):  # one per row, laid as a row ([1, out] had been read as
            return s.reshape(per_row)  # blocks of columns, h60); DeepSeek's [1, in/128] grid is the config's
        if s.shape != want:
            raise _NotConfigGrid(f"{what}: scale grid {tuple(s.shape)} is not the {list(want)} blocks of "
                              f"{list(config_block)} (config.json's weight_block_size or block_structure) a "
                              f"{tuple(shape)} weight has; "
                              "the file may be corrupt, or the scale another layer's")
        return _grid(s, list(config_block), shape)
    block = [_block(n, k) for n, k in zip(shape, s.shape)] if s.ndim == len(shape) == 2 else [None]
    # a grid of blocks before a squeezed scale: DeepSeek's [1, in/128] of a [56, 7168] weight holds 56 numbers
    # but is no scale per row (a grid whose blocks are single rows or columns is one per row or column)
    if None not in block and all(b > 1 for b, k in zip(block, s.shape) if k > 1):
        return _grid(s, block, shape)
    if len(shape) >= 2 and s.squeeze().shape == (shape[0],):  # ([1, out]: per output channel, as it was read)
        return s.reshape(per_row)
    if None not in block:  # [1, in]: one per input column
        return _grid(s, block, shape)
    raise SourceError(f"{what}: scale shape {tuple(s.shape)} fits no scale layout of a {tuple(shape)} weight "
                      "(scalar, per output row, or a grid of power-of-two blocks); the file may be corrupt")


def _grid(s: np.ndarray, block: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """Block scales spread over the weight's shape (by index: repeated, a block size from a crafted config took
    memory in proportion to it, not to the weight)."""
    return s[np.arange(shape[0]) // block[0]][:, np.arange(shape[1]) // block[1]]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class PackedConfig:
    """What packed checkpoints' tensors do not say, from the model folder's config: GPTQ's bits (when there
    is no ``g_idx``) and whether its zero points are stored minus one (AutoGPTQ's "gptq" format) or as they
    are ("gptq_v2"); MLX's bits and group size, model-wide and per layer (``layers``)."""

    bits: int | None = None
    gptq_v2: bool = False
    group_size: int | None = None
    layers: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)
    found: bool = False  # a quantization config was read (MLX's defaults fill what it leaves out)
    # compressed-tensors before 0.18 packed 3/5/6/7-bit codes ⌊32/bits⌋ a word, from 0.18 as one bit
    # stream: True / False by the config's "version", None when it does not say
    ct_padded: bool | None = None
    # compressed-tensors' "block" strategy: the weights' [rows, inputs] block_structure, if all groups agree
    ct_block: tuple[int, int] | None = None
    # compressed-tensors: False when every group's weights are asymmetric (a layer then needs its zero point)
    ct_symmetric: bool | None = None
    # the config says the FP8 weights are scaled (quant_method fp8 / fbgemm_fp8, compressed-tensors 8-bit
    # floats): one without its scale is no weight as stored
    fp8_scaled: bool = False
    # the FP8 weights' [rows, inputs] scale blocks (quantization_config's weight_block_size: DeepSeek's [128, 128])
    weight_block: tuple[int, int] | None = None

    @classmethod
    def of_folder(cls, folder: Path) -> PackedConfig:
        """From ``config.json``'s ``quantization_config`` (Hugging Face) or ``quantization`` (MLX), or
        AutoGPTQ's ``quantize_config.json`` in ``folder``; the defaults when none says (or cannot be read)."""
        for name in ("config.json", "quantize_config.json"):
            try:
                cfg = read_json(folder / name)  # (a regular file: a FIFO named config.json had hung the run)
            except (OSError, ValueError, RecursionError):
                continue
            if not isinstance(cfg, dict):
                continue
            q = cfg if name == "quantize_config.json" else cfg.get("quantization_config") or cfg.get("quantization")
            if isinstance(q, dict):
                layers = {k: (_int(v.get("bits")), _int(v.get("group_size"))) for k, v in q.items()
                          if isinstance(v, dict)}
                bits = _int(q.get("bits"))
                groups = q.get("config_groups")  # compressed-tensors: the weights' num_bits, if all groups agree
                weights = [g["weights"] for g in groups.values() if isinstance(g, dict)
                           and isinstance(g.get("weights"), dict)] if isinstance(groups, dict) else []
                if bits is None and weights:
                    widths = {_int(w.get("num_bits")) for w in weights}
                    bits = widths.pop() if len(widths) == 1 else None
                blocks = {tuple(b) for w in weights if w.get("strategy") == "block"
                          and isinstance(b := w.get("block_structure"), list) and len(b) == 2
                          and all(_int(k) is not None and k > 0 for k in b)}
                version = re.match(r"(\d+)\.(\d+)", str(q.get("version", ""))) if isinstance(groups, dict) else None
                padded = (int(version[1]), int(version[2])) < (0, 18) if version else None
                fp8 = str(q.get("quant_method", "")).lower() in ("fp8", "fbgemm_fp8") or any(
                    w.get("type") == "float" and _int(w.get("num_bits")) == 8 for w in weights)
                symmetric = {w.get("symmetric") for w in weights if isinstance(w.get("symmetric"), bool)}
                wb = q.get("weight_block_size")
                weight_block = (tuple(wb) if isinstance(wb, list) and len(wb) == 2
                                and all(_int(k) is not None and k > 0 for k in wb) else None)
                return cls(bits, str(q.get("checkpoint_format", "")).lower() == "gptq_v2",
                           _int(q.get("group_size")), layers, found=True, ct_padded=padded,
                           ct_block=blocks.pop() if len(blocks) == 1 else None, fp8_scaled=fp8,
                           ct_symmetric=symmetric.pop() if len(symmetric) == 1 else None, weight_block=weight_block)
        return cls()


_PACKED_PARTS = ("qweight", "scales", "qzeros", "g_idx")
_WORDS = ("int32", "uint32")  # the dtypes of packed codes


def _weight_name(prefix: str, packed: str, by_name: Mapping[str, TensorRef]) -> str:
    """``<prefix>.weight`` for a layer unpacked from ``packed``, unless the file has a tensor of that name
    too (then the packed tensor's own name, so that no two rows share a name)."""
    return packed if f"{prefix}.weight" in by_name and f"{prefix}.weight" != packed else f"{prefix}.weight"


_AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)  # AutoAWQ: logical code k of a word is its nibble _AWQ_REVERSE_ORDER[k]
_ROWS_PER_STEP = 2048  # input channels dequantized at a time (bounds the temporary arrays)


class _NotUnpacked(Exception):
    pass


def _named(what: str, dequantize: Callable[..., np.ndarray], *args) -> np.ndarray:
    """``dequantize(*args)``, its failures on inconsistent parts (a missing state key, shapes that do not
    fit) raised as one :class:`SourceError` naming the layer."""
    try:
        return dequantize(*args)
    except (KeyError, ValueError, TypeError, IndexError, ZeroDivisionError, OverflowError) as e:
        raise SourceError(f"{what}: {described(e, 160)}") from None


def _not_read(name: str, like: TensorRef, why: str) -> TensorRef:
    """The row of a quantized weight htsr does not dequantize: ``skipped``, saying why and what to do."""
    return TensorRef(name, like.shape, like.dtype,
                     skipped_loader(f"{why}; analyse the unquantized model or a dequantized copy"), like.kind)


def _unpack(words: np.ndarray, bits: int, axis: int, stream: bool = True) -> np.ndarray:
    """The unsigned ``bits``-bit codes of int32 ``words`` (lowest bits first), laid out along ``axis``. For
    bits that do not divide 32 (3, 5, 6, 7) the words along ``axis`` are one bit stream, lowest bits first, in
    which codes cross word boundaries (GPTQ's 3-bit packing, MLX's 3-, 5- and 6-bit packing); with
    ``stream=False`` each word holds ⌊32 / bits⌋ codes and its top bits are unused (compressed-tensors
    before its dense packing)."""
    w = (np.asarray(words).astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)
    if 32 % bits and stream:
        raw = np.ascontiguousarray(np.moveaxis(w, axis, -1), dtype="<u4").view(np.uint8)
        bit = np.unpackbits(raw, axis=-1, bitorder="little")
        n = bit.shape[-1] // bits
        codes = bit[..., : n * bits].reshape(*bit.shape[:-1], n, bits)
        codes = codes.astype(np.uint32) @ (np.uint32(1) << np.arange(bits, dtype=np.uint32))
        return np.moveaxis(codes, -1, axis)
    per = 32 // bits
    shifts = np.arange(per, dtype=np.uint32) * np.uint32(bits)
    mask = np.uint32((1 << bits) - 1)
    if axis == 0:
        return ((w[:, None, :] >> shifts[None, :, None]) & mask).reshape(w.shape[0] * per, w.shape[1])
    return ((w[:, :, None] >> shifts[None, None, :]) & mask).reshape(w.shape[0], w.shape[1] * per)


def _words(n: int, bits: int, stream: bool = True) -> int:
    """The int32 words that hold ``n`` codes of ``bits`` packed as :func:`_unpack` reads them."""
    return -(-n * bits // 32) if stream or 32 % bits == 0 else -(-n // (32 // bits))


def _packed_layout(parts: dict[str, TensorRef], cfg: PackedConfig) -> tuple[str, int, int, int]:
    """(``gptq`` or ``awq``, bits, in, out) from the parts' shapes; :class:`_NotUnpacked` if none fits."""
    q, sc, g = parts["qweight"].shape, parts["scales"].shape, parts.get("g_idx")
    z = parts["qzeros"].shape if "qzeros" in parts else None
    if len(q) != 2 or len(sc) != 2 or 0 in q + sc or (z is not None and len(z) != 2) or (g and len(g.shape) != 1):
        raise _NotUnpacked(f"qweight {list(q)} with scales {list(sc)}, qzeros {z and list(z)}, g_idx "
                           f"{g and list(g.shape)}: not a packed linear layer")
    (rows, cols), (groups, out) = q, sc
    if cols == out:  # GPTQ: packed along the input axis
        guess = cfg.bits
        if g is None and guess is None:  # the widths the shapes allow: qweight's rows, the groups, the qzeros
            fits = [b for b in _GPTQ_BITS if (32 * rows) % b == 0 and (32 * rows // b) % groups == 0
                    and (z is None or z == (groups, _words(out, b)))]
            if len(fits) != 1:
                raise _NotUnpacked(f"GPTQ qweight {list(q)} with qzeros {z and list(z)} and no g_idx: "
                                   f"{len(fits)} bit widths fit its shapes, and no config.json or "
                                   "quantize_config.json beside it says which")
            guess = fits[0]
        n_in = g.shape[0] if g is not None else rows * 32 // guess
        bits, exact = divmod(32 * rows, n_in)
        if exact or bits not in _GPTQ_BITS:
            raise _NotUnpacked(f"GPTQ qweight {list(q)} for {n_in} inputs holds {32 * rows / n_in:g}-bit codes; "
                               "htsr unpacks 2, 3, 4 and 8 bits")
        if g is None and n_in % groups:
            raise _NotUnpacked(f"GPTQ qweight {list(q)}: {n_in} inputs in {groups} groups")
        if z is not None and z != (groups, _words(out, bits)):  # the zero points are packed at the same bits
            raise _NotUnpacked(f"GPTQ qzeros {list(z)} do not hold {groups} × {out} {bits}-bit zero points (qweight "
                               f"{list(q)}, g_idx of {n_in})")
        return "gptq", bits, n_in, out
    if cols and out == 8 * cols and rows % groups == 0 and z in (None, (groups, cols)):  # AWQ (GEMM): 4-bit
        return "awq", 4, rows, out
    raise _NotUnpacked(f"qweight {list(q)} with scales {list(sc)} fits neither GPTQ's nor AWQ's (GEMM) layout")


def _group_index(ref: TensorRef, n_in: int, groups: int, what: str) -> np.ndarray:
    """An act-order ``g_idx``: each of the ``n_in`` inputs' group, whole numbers in 0..groups − 1; all −1 (the
    placeholder written before GPTQ fills it in) is the consecutive order."""
    raw = np.asarray(ref.load()).reshape(-1)
    if raw.size == n_in and n_in % groups == 0 and np.all(raw == -1):
        return np.arange(n_in) // (n_in // groups)
    group = raw.astype(np.int64)
    if not np.array_equal(group, raw):  # a float g_idx with fractions: not group numbers
        raise SourceError(f"{what}: g_idx holds non-integer values ({raw.dtype}); re-save the checkpoint")
    if group.shape != (n_in,) or group.min(initial=0) < 0 or group.max(initial=0) >= groups:
        raise SourceError(f"{what}: g_idx must give each of the {n_in} inputs a group in 0..{groups - 1}")
    return group


def _dequantize_packed(parts: dict[str, TensorRef], layout: str, bits: int, n_in: int, out: int,
                       cfg: PackedConfig, what: str) -> np.ndarray:
    """The [out, in] float32 weight of a GPTQ or AWQ layer."""
    scales = np.asarray(parts["scales"].load(), dtype=np.float32)
    groups = scales.shape[0]
    axis = 0 if layout == "gptq" else 1
    codes = _unpack(parts["qweight"].load(), bits, axis)
    qzeros = parts.get("qzeros")
    if qzeros is None:  # symmetric quantization saved without zero points: the midpoint
        zeros = np.full((groups, out), float(1 << (bits - 1)), np.float32)
    else:
        zeros = _unpack(qzeros.load(), bits, 1)
        if zeros.shape[0] != groups or zeros.shape[1] < out:
            raise SourceError(f"{what}: qzeros {list(qzeros.shape)} do not cover {groups} groups × {out} outputs")
        zeros = zeros[:, :out].astype(np.float32)
        if layout == "gptq" and not cfg.gptq_v2:
            zeros += 1.0  # AutoGPTQ stores zero − 1
    if layout == "awq":
        order = np.arange(out).reshape(-1, 8)[:, _AWQ_REVERSE_ORDER].reshape(-1)
        codes, zeros = codes[:, order], zeros[:, order]
    if parts.get("g_idx") is not None:
        group = _group_index(parts["g_idx"], n_in, groups, what)
    else:
        group = np.arange(n_in) // (n_in // groups)
    W = codes.astype(np.float32)  # [in, out]
    del codes
    for i in range(0, n_in, _ROWS_PER_STEP):
        g = group[i:i + _ROWS_PER_STEP]
        W[i:i + _ROWS_PER_STEP] -= zeros[g]
        W[i:i + _ROWS_PER_STEP] *= scales[g]
    return W.T


def _packed_refs(by_name: dict[str, TensorRef], cfg: PackedConfig) -> tuple[dict[str, TensorRef], set[str]]:
    """{qweight name: the dequantizing ``<module>.weight`` ref} and the names of all their parts."""
    out, used = {}, set()
    for name, q in by_name.items():
        prefix = name[: -len(".qweight")]
        if not name.endswith(".qweight") or q.dtype not in _WORDS or f"{prefix}.scales" not in by_name:
            continue
        parts = {p: by_name[f"{prefix}.{p}"] for p in _PACKED_PARTS if f"{prefix}.{p}" in by_name}
        used.update(r.name for r in parts.values())
        weight = _weight_name(prefix, name, by_name)
        try:
            layout, bits, n_in, n_out = _packed_layout(parts, cfg)
        except _NotUnpacked as e:
            out[name] = _not_read(weight, q, f"packed quantized weight: {e}")
            continue
        what = f"{prefix} ({layout.upper()} {bits}-bit)"
        out[name] = TensorRef(weight, (n_out, n_in), "float32",
                              lambda parts=parts, a=(layout, bits, n_in, n_out), what=what:
                              _named(what, _dequantize_packed, parts, *a, cfg, what), q.kind, bits=bits,
                              quant_block=_row_groups(n_in, int(parts["scales"].shape[0]), parts.get("g_idx")))
    return out, used


def _ct_block(shape: tuple[int, ...], scale: tuple[int, ...], cfg: PackedConfig, g_idx: TensorRef | None
              ) -> int | None:
    """A compressed-tensors [out, in] layer's ``quant_block``: 0 for one scale (the tensor strategy), a row's
    inputs for one per row (channel: [out] or [out, 1]), a group's along each row ([out, groups]); None for
    blocks across rows (the block strategy) or an expert stack."""
    if len(shape) != 2 or cfg.ct_block is not None:
        return None
    if math.prod(scale) == 1:
        return 0
    if scale == (shape[0],):
        return shape[1]
    return _row_groups(shape[1], scale[-1], g_idx) if len(scale) == 2 and scale[0] == shape[0] else None


def _row_groups(n_in: int, groups: int, g_idx: TensorRef | None) -> int | None:
    """A quantized [out, in] weight's ``quant_block``: groups of n_in / ``groups`` consecutive inputs along each row,
    unless ``g_idx`` (GPTQ's act-order) maps inputs to groups otherwise; None when not so known. AutoGPTQ and
    GPTQModel write a g_idx also in the sequential order: it had made every such layer's blocks unknown, and a
    --base delta's rounding floor an estimate below its largest steps (rows fitted on rounding noise, h58)."""
    if groups <= 0 or n_in % groups:
        return None
    size = n_in // groups
    if g_idx is None:
        return size
    try:
        g = np.asarray(g_idx.load()).reshape(-1)
    except (HtsrError, ValueError, OSError):
        return None
    # (all −1: the placeholder written before GPTQ fills it in, the consecutive order, as _group_index reads it)
    return size if g.size == n_in and (np.array_equal(g, np.arange(n_in) // size) or np.all(g == -1)) else None


_BNB4_STATE = re.compile(r"^(.+)\.quant_state\.bitsandbytes__(nf4|fp4)$")


def _stored_bytes(stored: str, loaded: np.ndarray, what: str) -> np.ndarray:
    """The bytes of a tensor as stored, from its loaded array: bitsandbytes' ``quant_storage`` may hold
    packed codes in a float dtype (bfloat16 or float16, widened to float32 on load, or float32), or an
    integer one. Widening is exact and undone here bit for bit, NaN patterns included: bfloat16 is the high
    half of its float32, and float16 → float32 → float16 keeps every bit pattern."""
    if stored == "bfloat16" and loaded.dtype == np.float32:
        raw = (np.ascontiguousarray(loaded).view(np.uint32) >> 16).astype("<u2")
    elif stored == "float16" and loaded.dtype == np.float32:
        with np.errstate(invalid="ignore"):  # NaN patterns are codes here, carried over as they are
            raw = loaded.astype("<f2")
    elif loaded.dtype.kind in "iuf" and loaded.dtype.name == stored:
        raw = loaded.astype(loaded.dtype.newbyteorder("<"), copy=False)
    else:
        raise SourceError(f"{what}: codes stored as {stored}, which bitsandbytes' quant_storage does not use; "
                          "analyse the unquantized model or a dequantized copy")
    return np.ascontiguousarray(raw).reshape(-1).view(np.uint8)


def _bnb4_weight(parts: dict[str, TensorRef], state: dict, what: str) -> np.ndarray:
    """A bitsandbytes 4-bit weight: byte k holds codes 2k (high nibble) and 2k+1 (low nibble), each the
    index of a value of ``quant_map``, scaled by its block's absmax (itself 8-bit blockwise-quantized
    with an offset when the state is nested, bitsandbytes' double quantization)."""
    shape = tuple(int(d) for d in state["shape"])
    n, block = math.prod(shape), int(state["blocksize"])
    packed = _stored_bytes(parts["weight"].dtype, np.asarray(parts["weight"].load()), what)
    # a wider quant_storage rounds the bytes up to whole elements
    if not -(-n // 2) <= packed.size < -(-n // 2) + numpy_dtype(parts["weight"].dtype).itemsize or block <= 0:
        raise SourceError(f"{what}: {packed.size} bytes of codes for a {list(shape)} weight (blocksize {block})")
    codes = np.empty(packed.size * 2, np.uint8)
    codes[0::2], codes[1::2] = packed >> 4, packed & 0xF
    values = np.asarray(parts["quant_map"].load(), np.float32).reshape(-1)
    absmax = np.asarray(parts["absmax"].load()).reshape(-1)
    nested_parts = ("nested_absmax" in parts) + ("nested_quant_map" in parts)
    if nested_parts == 1 or (absmax.dtype == np.uint8) != (nested_parts == 2) or ("nested_offset" in state) != (
            nested_parts == 2):
        raise SourceError(f"{what}: a doubly quantized absmax needs uint8 codes, nested_absmax, nested_quant_map "
                          f"and nested_offset together (absmax is {absmax.dtype}, {nested_parts} of the 2 nested parts)")
    if nested_parts:  # absmax stored as 8-bit codes of nested_quant_map, blocks of nested_blocksize
        nested = np.asarray(parts["nested_quant_map"].load(), np.float32).reshape(-1)
        scale = np.asarray(parts["nested_absmax"].load(), np.float32).reshape(-1)
        step = int(state["nested_blocksize"])
        if absmax.dtype != np.uint8 or nested.size < 256 or step <= 0 or scale.size != -(-absmax.size // step):
            raise SourceError(f"{what}: nested absmax of {absmax.size} {absmax.dtype} values does not fit its state")
        # (by index, not np.repeat: a crafted block size of 2e9 had repeated the scales into gigabytes)
        absmax = nested[absmax] * scale[np.arange(absmax.size) // step] + np.float32(state["nested_offset"])
    absmax = absmax.astype(np.float32)
    if values.size < 16 or absmax.size != -(-n // block):
        raise SourceError(f"{what}: quant_map of {values.size} values or {absmax.size} block scales for {n} weights")
    return (values[codes[:n]] * absmax[np.arange(n) // block]).reshape(shape)


def _bnb4_refs(by_name: dict[str, TensorRef]) -> tuple[dict[str, TensorRef], set[str]]:
    """{packed weight name: its dequantizing ref} and the names of all parts, for each bitsandbytes 4-bit
    (NF4 / FP4) layer: ``<m>.weight`` (uint8 pairs of codes) beside ``<m>.weight.absmax``,
    ``<m>.weight.quant_map``, optionally ``<m>.weight.nested_absmax`` / ``nested_quant_map`` and the
    JSON state ``<m>.weight.quant_state.bitsandbytes__<nf4|fp4>`` (shape, blocksize, nested offset)."""
    out, used = {}, set()
    for name, state_ref in by_name.items():
        m = _BNB4_STATE.match(name)
        if m is None or m.group(1) not in by_name:
            continue
        weight = m.group(1)
        parts = {k: by_name[f"{weight}.{k}"] for k in ("absmax", "quant_map", "nested_absmax", "nested_quant_map")
                 if f"{weight}.{k}" in by_name}
        parts["weight"] = by_name[weight]
        used.update(r.name for r in parts.values())
        used.add(name)
        what = f"{weight} (bitsandbytes {m.group(2).upper()})"
        try:
            state = json.loads(bytes(np.asarray(state_ref.load(), np.uint8).reshape(-1)).decode("utf-8"))
            shape = tuple(int(d) for d in state["shape"])
            if len(shape) < 2 or min(shape) <= 0:
                raise ValueError(f"shape {list(shape)}")
        except (ValueError, RecursionError, KeyError, TypeError, HtsrError) as e:
            out[weight] = _not_read(weight, parts["weight"],
                                    f"bitsandbytes 4-bit weight whose quant_state cannot be read ({one_line(e, 100)})")
            continue
        # (named: the state was read, h58; a doubly quantized absmax's nested parts too, h63)
        needed = ("absmax", "quant_map") + (("nested_absmax", "nested_quant_map") if "nested_offset" in state else ())
        if lacking := [k for k in needed if k not in parts]:
            out[weight] = _not_read(weight, replace(parts["weight"], shape=shape),  # (its own shape)
                                    f"bitsandbytes 4-bit weight without its "
                                    f"{' and '.join(f'{weight}.{k}' for k in lacking)} (in another file?)")
            continue
        out[weight] = TensorRef(weight, shape, "float32", lambda parts=parts, state=state, what=what:
                                _named(what, _bnb4_weight, parts, state, what), parts["weight"].kind, bits=4,
                                quant_block=_int(state.get("blocksize")))
    return out, used


_MLX_DEFAULT = (4, 64)
_MLX_BITS = (1, 2, 3, 4, 5, 6, 8)  # mx.quantize's affine mode


def _mlx_layout(parts: dict[str, TensorRef], hint: tuple[int | None, int | None]) -> tuple[int, int]:
    """(bits, group size) of an MLX layer from its shapes and the config's ``hint``; when the config does not
    say, the one pair that fits the shapes (reading an 8-bit layer as 4-bit would give another weight)."""
    w, sc, b = parts["weight"].shape, parts["scales"].shape, parts["biases"].shape
    # [out, words], or [experts, out, words] for a mixture's switch_mlp stack
    if len(w) not in (2, 3) or len(sc) != len(w) or sc != b or sc[:-1] != w[:-1] or 0 in w + sc:
        raise _NotUnpacked(f"uint32 weight {list(w)} with scales {list(sc)} and biases {list(b)}: not an MLX "
                           "quantized layer")
    words, groups = w[-1], sc[-1]
    fits = [(bits, g) for bits in _MLX_BITS for g in (32, 64, 128) if words * 32 == groups * g * bits]
    if None not in hint:
        bits, group = hint
        if bits not in _MLX_BITS or words * 32 != groups * group * bits:
            raise _NotUnpacked(f"MLX weight {list(w)} with scales {list(sc)} at {bits} bits in groups of "
                               f"{group} (the config's): htsr unpacks {', '.join(map(str, _MLX_BITS))} bits, "
                               "whose words must cover the groups")
        return bits, group
    if len(fits) == 1:
        return fits[0]
    raise _NotUnpacked(f"MLX weight {list(w)} with scales {list(sc)}: {len(fits)} pairs of bits and group size fit "
                       "its shapes, and no config.json 'quantization' beside it says which")


def _mlx_weight(parts: dict[str, TensorRef], bits: int, group: int) -> np.ndarray:
    """An MLX affine-quantized weight: codes packed along each row, lowest bits first, W = scale·q + bias
    per group of ``group`` consecutive inputs (an expert stack: every expert's rows alike)."""
    words = np.asarray(parts["weight"].load())
    lead = words.shape[:-1]
    words = words.reshape(-1, words.shape[-1])
    scales = np.asarray(parts["scales"].load(), np.float32).reshape(words.shape[0], -1)
    biases = np.asarray(parts["biases"].load(), np.float32).reshape(words.shape[0], -1)
    out = np.empty((words.shape[0], words.shape[1] * 32 // bits), np.float32)
    for i in range(0, out.shape[0], _ROWS_PER_STEP):
        rows = slice(i, i + _ROWS_PER_STEP)
        out[rows] = _unpack(words[rows], bits, 1)
        out[rows] *= np.repeat(scales[rows], group, axis=1)
        out[rows] += np.repeat(biases[rows], group, axis=1)
    return out.reshape(*lead, out.shape[-1])


def _mlx_refs(by_name: dict[str, TensorRef], cfg: PackedConfig) -> tuple[dict[str, TensorRef], set[str]]:
    """{weight name: its dequantizing ref} and the names of the parts, for each MLX quantized layer: a
    uint32 ``<m>.weight`` beside ``<m>.scales`` and ``<m>.biases``."""
    out, used = {}, set()
    for name, w in by_name.items():
        prefix = name[: -len(".weight")]
        if not name.endswith(".weight") or w.dtype != "uint32" or f"{prefix}.scales" not in by_name:
            continue
        if f"{prefix}.biases" not in by_name:  # MLX's microscaled modes: uint8 exponents, no biases
            used.add(f"{prefix}.scales")
            out[name] = _not_read(name, w, "uint32 codes with scales but no biases (an MLX mxfp4 / nvfp4 / mxfp8 "
                                           "layer), a format htsr does not dequantize")
            continue
        parts = {"weight": w, "scales": by_name[f"{prefix}.scales"], "biases": by_name[f"{prefix}.biases"]}
        used.update(r.name for r in parts.values())
        layer = cfg.layers.get(prefix, (None, None))
        hint = (layer[0] or cfg.bits, layer[1] or cfg.group_size)
        if cfg.found:  # what the config leaves out is MLX's default (mlx.nn.quantize: 4 bits, groups of 64)
            hint = (hint[0] or _MLX_DEFAULT[0], hint[1] or _MLX_DEFAULT[1])
        try:
            bits, group = _mlx_layout(parts, hint)
        except _NotUnpacked as e:
            out[name] = _not_read(name, w, f"packed quantized weight: {e}")
            continue
        shape = (*w.shape[:-1], w.shape[-1] * 32 // bits)
        out[name] = TensorRef(name, shape, "float32", lambda parts=parts, bits=bits, group=group, name=name:
                              _named(f"{name} (MLX {bits}-bit)", _mlx_weight, parts, bits, group),
                              w.kind or ("stack" if len(shape) == 3 else None), bits=bits, quant_block=group)
    return out, used


def _ct_weight(parts: dict[str, TensorRef], bits: int, shape: tuple[int, int], stream: bool = True,
               block: tuple[int, int] | None = None) -> np.ndarray:
    """A compressed-tensors pack-quantized weight: signed codes stored with an offset of 2^(bits−1), packed
    along each row as one bit stream, lowest bits first; W = (q − z) · scale per group of inputs (or per
    row, or one, or per block of rows and inputs), z the zero point of an asymmetric layer (packed the same
    way down each group's column; a block's unpacked) and 0 for a symmetric one; ``weight_g_idx``
    (activation order) gives each input its group. With the config's ``block`` structure [b0, b1], a scale of
    [⌈out / b0⌉, ⌈in / b1⌉] holds one scale (and an unpacked zero point) per block."""
    out, n_in = shape
    offset = np.float32(1 << (bits - 1))
    scale = np.asarray(parts["weight_scale"].load(), np.float32)
    # a block's parameters are read as groups of inputs (columns // b1), its row repeated b0 times
    row_block, grid = None, scale.shape
    if block is not None and grid == (-(-out // block[0]), -(-n_in // block[1])):
        row_block, g_idx = block[0], np.arange(n_in) // block[1]

    def per_row(ref: TensorRef, a: np.ndarray) -> np.ndarray:
        if row_block is None:
            return _per_row_groups(ref, a, shape)
        if a.shape != grid:
            raise SourceError(f"{ref.name}: shape {list(a.shape)}, not the block scales' {list(grid)}")
        return a[np.arange(out) // row_block]

    scale = per_row(parts["weight_scale"], scale)
    groups = scale.shape[1]
    zero = None  # symmetric
    if "weight_zero_point" in parts:
        z = np.asarray(parts["weight_zero_point"].load())
        if z.dtype == np.int32 and z.shape == (_words(out, bits, stream), groups):  # packed down the rows
            z = _unpack(z, bits, 0, stream)[:out].astype(np.float32) - offset
        zero = per_row(parts["weight_zero_point"], np.asarray(z, np.float32))
        if zero.shape[1] != groups:
            raise SourceError(f"{parts['weight_zero_point'].name}: {zero.shape[1]} zero-point groups for "
                              f"{groups} scale groups")
    if "weight_g_idx" in parts:
        g_idx = _group_index(parts["weight_g_idx"], n_in, groups, parts["weight_g_idx"].name)
    if "weight_g_idx" in parts or row_block is not None:
        def spread(a: np.ndarray) -> np.ndarray:
            return a[:, g_idx]
    else:
        def spread(a: np.ndarray) -> np.ndarray:
            return np.repeat(a, n_in // groups, axis=1)
    words = np.asarray(parts["weight_packed"].load())
    W = np.empty(shape, np.float32)
    for i in range(0, out, _ROWS_PER_STEP):
        rows = slice(i, i + _ROWS_PER_STEP)
        W[rows] = _unpack(words[rows], bits, 1, stream)[:, :n_in]
        W[rows] -= offset
        if zero is not None:
            W[rows] -= spread(zero[rows] if zero.shape[0] > 1 else zero)
        W[rows] *= spread(scale[rows] if scale.shape[0] > 1 else scale)
    return W


def _per_row_groups(ref: TensorRef, a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A per-tensor, per-row or per-group parameter (scale, zero point) of an [out, in] weight as [1 or
    out, groups], the groups dividing the inputs."""
    out, n_in = shape
    if a.size == 1:
        return a.reshape(1, 1)
    if a.ndim == 1 and a.shape[0] == out:
        return a.reshape(out, 1)
    if a.ndim == 2 and a.shape[0] == out and a.shape[1] > 0 and n_in % a.shape[1] == 0:
        return a
    raise SourceError(f"{ref.name}: shape {list(a.shape)} is none of a {list(shape)} weight's (one, one per "
                      f"row, or [{out}, groups dividing {n_in}], or the blocks of a config.json's block_structure)")


def _ct_refs(by_name: dict[str, TensorRef], cfg: PackedConfig) -> tuple[dict[str, TensorRef], set[str]]:
    """{packed weight name: the ``<m>.weight`` ref} and the parts, for each compressed-tensors
    ``pack-quantized`` layer (vLLM / llm-compressor): ``<m>.weight_packed`` (int32), ``<m>.weight_scale``,
    ``<m>.weight_shape`` ([out, in], or [E, out, in] for a mixture's fused experts: a stack), and for an
    asymmetric layer ``<m>.weight_zero_point``; the bits (1 to 8) from the packed row's length."""
    out, used = {}, set()
    for name, packed in by_name.items():
        prefix = name[: -len(".weight_packed")]
        if not name.endswith(".weight_packed") or packed.dtype not in _WORDS or f"{prefix}.weight_scale" not in by_name:
            continue
        parts = {k: by_name[f"{prefix}.{k}"] for k in ("weight_packed", "weight_scale", "weight_shape",
                                                       "weight_zero_point", "weight_g_idx")
                 if f"{prefix}.{k}" in by_name}
        used.update(r.name for r in parts.values())
        weight = _weight_name(prefix, name, by_name)
        try:
            if "weight_shape" not in parts or len(packed.shape) not in (2, 3):
                raise _NotUnpacked(f"weight_packed {list(packed.shape)} without its weight_shape")
            shape = tuple(int(d) for d in np.asarray(parts["weight_shape"].load()).reshape(-1))
            fits = shape[:-1] == tuple(packed.shape[:-1])  # [out, in], or experts [E, out, in]
            bits = [b for b in range(1, 9) if fits and _words(shape[-1], b) == packed.shape[-1]]
            if len(bits) > 1 and cfg.bits in bits:  # a narrow layer fits several widths: the config says
                bits = [cfg.bits]
            # compressed-tensors before its dense packing (0.18): ⌊32 / bits⌋ codes a word for 3, 5, 6, 7
            # bits, told apart by the config's version, else by its bits and the row's length
            padded_fits = (cfg.bits is not None and 32 % cfg.bits and fits
                           and _words(shape[-1], cfg.bits, stream=False) == packed.shape[-1])
            stream = not (padded_fits and (cfg.ct_padded if cfg.ct_padded is not None else cfg.bits not in bits))
            if not stream:
                bits = [cfg.bits]
            if len(bits) != 1:
                raise _NotUnpacked(f"weight_packed {list(packed.shape)} holds codes of {len(bits)} bit widths from "
                                   f"1 to 8 for a {list(shape)} weight, not one")
            if cfg.ct_symmetric is False and "weight_zero_point" not in parts:
                raise _NotUnpacked("asymmetric, as config.json says, but without its weight_zero_point: analyse "
                                   "the whole model folder, whose other files hold it")
        except (_NotUnpacked, HtsrError, ValueError) as e:
            out[name] = _not_read(weight, packed, f"packed quantized weight: {one_line(e, 160)}")
            continue
        out[name] = TensorRef(weight, shape, "float32",
                              lambda parts=parts, bits=bits[0], shape=shape, name=name, stream=stream:
                              _named(f"{name} ({bits}-bit)", _ct_experts if len(shape) == 3 else _ct_weight,
                                     parts, bits, shape, stream, cfg.ct_block),
                              packed.kind or ("stack" if len(shape) == 3 else None), bits=bits[0],
                              quant_block=_ct_block(shape, tuple(parts["weight_scale"].shape), cfg,
                                                    parts.get("weight_g_idx")))
    return out, used


def _ct_experts(parts: dict[str, TensorRef], bits: int, shape: tuple[int, int, int], stream: bool,
                block: tuple[int, int] | None) -> np.ndarray:
    """A compressed-tensors expert stack [E, out, in] (a mixture's fused experts): each expert's slice of
    every part (those with a leading E; the others are shared) dequantized as a layer of its own."""
    loaded = {k: np.asarray(r.load()) for k, r in parts.items() if k != "weight_shape"}
    W = np.empty(shape, np.float32)
    for e in range(shape[0]):
        own = {k: TensorRef(f"{parts[k].name}[{e}]", a.shape[1:], a.dtype.name, lambda a=a[e]: a)
               if a.ndim >= 2 and a.shape[0] == shape[0] else parts[k] for k, a in loaded.items()}
        W[e] = _ct_weight(own, bits, shape[1:], stream, block)
    return W


# OCP microscaling FP4 (e2m1): the value of each 4-bit code
_FP4_E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)


def _mxfp4_weight(parts: dict[str, TensorRef], shape: tuple[int, ...]) -> np.ndarray:
    """An MXFP4 weight (gpt-oss): each byte holds two FP4 codes (low nibble first), each group of bytes
    shares a power-of-two scale stored as a biased exponent (E8M0, bias 127)."""
    blocks = np.asarray(parts["blocks"].load())
    scales = np.asarray(parts["scales"].load())
    if blocks.dtype != np.uint8 or scales.dtype != np.uint8 or blocks.shape[:-1] != scales.shape:
        raise SourceError(f"{parts['blocks'].name}: {blocks.dtype} blocks {list(blocks.shape)} with {scales.dtype} "
                          f"scales {list(scales.shape)} are not MXFP4 (uint8 codes, one uint8 exponent per group)")
    out = np.empty(blocks.shape[:-1] + (2 * blocks.shape[-1],), np.float32)
    out[..., 0::2], out[..., 1::2] = _FP4_E2M1[blocks & 0xF], _FP4_E2M1[blocks >> 4]
    out *= np.ldexp(np.float32(1), scales.astype(np.int32) - 127)[..., None]
    return out.reshape(shape)


def _mxfp4_refs(by_name: dict[str, TensorRef]) -> tuple[dict[str, TensorRef], set[str]]:
    """{blocks name: the ``<base>`` ref} and the parts, for each MXFP4 tensor as Hugging Face's gpt-oss
    checkpoints store them: ``<base>_blocks`` uint8 [..., groups, 16] beside ``<base>_scales`` uint8
    [..., groups]; the weight is [..., groups · 32], an expert stack [E, out, in], which is given as
    transformers holds it dequantized and bf16 gpt-oss checkpoints store it, [E, in, out] (one row an
    expert, either way; and a bf16 fine-tune's delta against the MXFP4 base matches it)."""
    out, used = {}, set()
    for name, blocks in by_name.items():
        base = name[: -len("_blocks")]
        scales = by_name.get(f"{base}_scales")
        if not name.endswith("_blocks") or scales is None or blocks.dtype != "uint8" or scales.dtype != "uint8":
            continue
        used.update((name, scales.name))
        if len(blocks.shape) < 3 or tuple(blocks.shape[:-1]) != tuple(scales.shape):
            # the row of the weight they would give ([..., groups · 32]; experts a stack), not of the blocks
            weight = TensorRef(base, (*blocks.shape[:-2], 32 * blocks.shape[-2]) if len(blocks.shape) > 1
                               else tuple(blocks.shape), "uint8", blocks.loader,
                               "stack" if len(blocks.shape) > 3 else blocks.kind)
            out[name] = _not_read(base, weight, f"MXFP4 blocks {list(blocks.shape)} with scales {list(scales.shape)}")
            continue
        shape = tuple(blocks.shape[:-2]) + (blocks.shape[-2] * blocks.shape[-1] * 2,)
        parts = {"blocks": blocks, "scales": scales}
        experts = len(shape) == 3  # transformers' [E, in, out]

        def load(parts=parts, shape=shape, base=base, experts=experts) -> np.ndarray:
            w = _named(f"{base} (MXFP4)", _mxfp4_weight, parts, shape)
            return np.swapaxes(w, 1, 2) if experts else w

        out[name] = TensorRef(base, (shape[0], shape[2], shape[1]) if experts else shape, "float32", load,
                              blocks.kind, bits=4, quant_block=None if experts else 32)
    return out, used


# HQQ's serialized meta beside <m>.W_q (hqq's encode_safetensor_type: strings as uint8 codes, numbers 0-d)
_HQQ_META = ("shape", "nbits", "axis", "packing", "group_size", "view_as_float", "unpack_view_dtype", "quant_scale",
             "quant_zero", "compute_dtype", "offload_meta", "encoded_state_dict", "stores_quant_config",
             "channel_wise", "optimize", "round_zero")
_HQQ_PACKING = {"8bit_u8": (8, "uint8"), "4bit_u8": (4, "uint8"), "2bit_u8": (2, "uint8"),
                "1bit_u8": (1, "uint8"), "3bit_32": (3, "int32")}
_HQQ_NBITS = {"8bit_u8": (8, 6, 5), "4bit_u8": (4,), "2bit_u8": (2, 1.58), "1bit_u8": (1,), "3bit_32": (3,)}


def _hqq_weight(parts: dict[str, TensorRef], meta: dict, what: str) -> np.ndarray:
    """An HQQ weight: the grouped weight ([group, n/group] for axis 0, [n/group, group] for axis 1; the weight
    itself without groups or channel_wise) has its codes packed along its first axis, k = 8 / bits (10 for
    3-bit in int32) consecutive chunks to a word, the first in the highest bits; W = (q − zero) · scale,
    reshaped to the layer's shape."""
    bits, view = _HQQ_PACKING[meta["packing"]]
    stored = parts["W_q"]
    words = np.asarray(stored.load())
    if meta["view_as_float"]:  # codes stored viewed as the compute dtype
        words = _stored_bytes(stored.dtype, words, what).reshape(words.shape[0], -1).view(view)
    if words.dtype != np.dtype(view):
        raise SourceError(f"{what}: W_q is {words.dtype}, not the {view} its packing {meta['packing']} stores")
    per = 10 if bits == 3 else 8 // bits
    shifts = [(per - 1 - j) * bits for j in range(per)]
    q = np.concatenate([(words >> s) & ((1 << bits) - 1) for s in shifts], axis=0) if per > 1 else words
    n, group = math.prod(meta["shape"]), meta["group_size"]
    if not (meta["channel_wise"] and group):  # the weight quantized in its own shape
        rows = meta["shape"][0]
    else:
        rows = group if meta["axis"] == 0 else n // group
    if q.shape[0] < rows or q.shape[0] * q.shape[1] < n:
        raise SourceError(f"{what}: W_q {list(stored.shape)} holds fewer than the {n} codes of a "
                          f"{list(meta['shape'])} weight")
    q = q[:rows].astype(np.float32)
    zero = np.asarray(parts["zero"].load(), np.float32)
    scale = np.asarray(parts["scale"].load(), np.float32)
    return ((q - zero) * scale).reshape(meta["shape"])


def _hqq_meta(parts: dict[str, TensorRef], key: str, default: object = None) -> object:
    """One entry of an HQQ layer's meta as its tensor encodes it: a string as uint8 character codes, a
    number or flag 0-d, a shape 1-D; ``default`` when the layer has none."""
    if key not in parts:
        return default
    a = np.asarray(parts[key].load())
    return "".join(map(chr, a.reshape(-1).tolist())) if a.ndim == 1 and a.dtype == np.uint8 else a


def _hqq_refs(by_name: dict[str, TensorRef]) -> tuple[dict[str, TensorRef], set[str]]:
    """{``<m>.W_q``: the ``<m>.weight`` ref} and the parts, for each HQQ layer as Hugging Face's ``HqqConfig``
    saves them: the packed codes ``<m>.W_q``, ``<m>.scale`` and ``<m>.zero`` (one per group) and the meta
    (``<m>.shape``, ``nbits``, ``axis``, ``group_size``, ``packing``, … encoded as tensors)."""
    out, used = {}, set()
    prefixes = dict.fromkeys(n.rsplit(".", 1)[0] for n in by_name if n.endswith((".W_q", ".packing")))
    for prefix in prefixes:
        if f"{prefix}.scale" not in by_name or f"{prefix}.packing" not in by_name:
            continue
        parts = {k: by_name[f"{prefix}.{k}"] for k in ("W_q", "scale", "zero", *_HQQ_META)
                 if f"{prefix}.{k}" in by_name}
        used.update(r.name for r in parts.values())
        codes = parts.get("W_q", parts["scale"])  # (the layer's row in place of its scale when W_q is missing)
        name = codes.name
        weight = _weight_name(prefix, f"{prefix}.W_q", by_name)
        what = f"{weight} (HQQ)"
        try:
            meta = {"shape": tuple(int(d) for d in np.asarray(_hqq_meta(parts, "shape", ())).reshape(-1)),
                    "packing": _hqq_meta(parts, "packing"), "axis": int(_hqq_meta(parts, "axis", 1)),
                    "group_size": int(_hqq_meta(parts, "group_size", 0)),
                    "channel_wise": bool(_hqq_meta(parts, "channel_wise", 1)),
                    "view_as_float": bool(_hqq_meta(parts, "view_as_float", 0))}
            if len(meta["shape"]) == 2:
                codes = TensorRef(codes.name, meta["shape"], codes.dtype, codes.loader, codes.kind)
            if "W_q" not in parts:
                raise _NotUnpacked("no W_q (its codes)")
            if meta["packing"] not in _HQQ_PACKING:
                raise _NotUnpacked(f"packing {meta['packing']!r}, none of {', '.join(_HQQ_PACKING)}")
            # (hqq's encode_safetensor_type stores a float nbits as float32: 1.58 reads back as 1.5800000429)
            nbits = round(float(_hqq_meta(parts, "nbits", _HQQ_NBITS[meta["packing"]][0])), 2)
            if nbits not in _HQQ_NBITS[meta["packing"]]:
                raise _NotUnpacked(f"nbits {nbits:g} with packing {meta['packing']}")
            if any(bool(_hqq_meta(parts, k, 0)) for k in ("quant_scale", "quant_zero", "offload_meta")):
                raise _NotUnpacked("quantized or offloaded scale and zero (an older HQQ serialization)")
            group = meta["group_size"]
            if "zero" not in parts or len(meta["shape"]) != 2 or min(meta["shape"]) <= 0 or group < 0 \
                    or meta["axis"] not in (0, 1) or (group and math.prod(meta["shape"]) % group):
                raise _NotUnpacked(f"shape {list(meta['shape'])}, group size {meta['group_size']}, axis "
                                   f"{meta['axis']}{'' if 'zero' in parts else ', no zero'}")
        except (_NotUnpacked, HtsrError, ValueError, TypeError) as e:
            out[name] = _not_read(weight, codes, f"HQQ layer that cannot be read ({one_line(e, 120)})")
            continue
        out[name] = TensorRef(weight, meta["shape"], "float32", lambda parts=parts, meta=meta, what=what:
                              _named(what, _hqq_weight, parts, meta, what), codes.kind,
                              bits=nbits)  # (the bits its codes take: a delta's rounding floor)
    return out, used


def _aqlm_weight(parts: dict[str, TensorRef], what: str) -> np.ndarray:
    """An AQLM weight: each [out_group, in_group] block is the sum over codebooks of the codebook vector its
    code picks (codes stored as signed integers of the codebook's bits, read modulo the codebook size), times
    its output group's scale."""
    codes = np.asarray(parts["codes"].load())
    books = np.asarray(parts["codebooks"].load(), np.float32)
    if codes.ndim != 3 or books.ndim != 4 or codes.shape[2] != books.shape[0] or codes.dtype.kind not in "iu":
        raise SourceError(f"{what}: codes {list(codes.shape)} ({codes.dtype}) and codebooks {list(books.shape)} do "
                          "not fit ([out groups, in groups, codebooks] integers, [codebooks, size, out, in] floats)")
    n_out, n_in, K = codes.shape
    size, og, ig = books.shape[1:]
    if size & (size - 1) or size > 1 << (8 * codes.dtype.itemsize):
        raise SourceError(f"{what}: codebooks of {size} vectors, not the 2^bits its {codes.dtype} codes address")
    W = np.zeros((n_out, n_in, og * ig), np.float32)
    flat = books.reshape(K, size, og * ig)
    for k in range(K):
        W += flat[k][codes[..., k].astype(np.int64) % size]
    scales = np.asarray(parts["scales"].load(), np.float32).reshape(-1)
    if scales.size != n_out:
        raise SourceError(f"{what}: {scales.size} scales for {n_out} output groups")
    W *= scales[:, None, None]
    return W.reshape(n_out, n_in, og, ig).swapaxes(1, 2).reshape(n_out * og, n_in * ig)


def _aqlm_refs(by_name: dict[str, TensorRef]) -> tuple[dict[str, TensorRef], set[str]]:
    """{``<m>.codes``: the ``<m>.weight`` ref} and the parts, for each AQLM layer (additive quantization:
    ``<m>.codes`` [out groups, in groups, codebooks], ``<m>.codebooks`` [codebooks, 2^bits, out group, in
    group], ``<m>.scales`` [out groups, 1, 1, 1])."""
    out, used = {}, set()
    prefixes = dict.fromkeys(n.rsplit(".", 1)[0] for n in by_name if n.endswith((".codes", ".codebooks")))
    for prefix in prefixes:
        parts = {k: by_name[f"{prefix}.{k}"] for k in ("codes", "codebooks", "scales") if f"{prefix}.{k}" in by_name}
        if len(parts) < 2:
            continue  # codes alone: unscaled_integer_weight's row says what is missing
        used.update(r.name for r in parts.values())
        codes = parts.get("codes", parts.get("codebooks"))  # the row's name: the codes', else the codebooks'
        books = parts.get("codebooks", codes)
        weight = _weight_name(prefix, f"{prefix}.codes", by_name)
        missing = [k for k in ("codes", "codebooks", "scales") if k not in parts]
        if missing or len(codes.shape) != 3 or len(books.shape) != 4 or codes.shape[2] != books.shape[0]:
            why = (f"without its {' and '.join(missing)}" if missing else
                   f"codes {list(codes.shape)} with codebooks {list(books.shape)} that do not fit")
            out[codes.name] = _not_read(weight, codes, f"AQLM layer {why}")
            continue
        shape = (codes.shape[0] * books.shape[2], codes.shape[1] * books.shape[3])
        out[codes.name] = TensorRef(weight, shape, "float32", lambda parts=parts, weight=weight:
                                    _named(f"{weight} (AQLM)", _aqlm_weight, parts, f"{weight} (AQLM)"), codes.kind)
    return out, used


def with_scales(refs: Iterable[TensorRef], packed: PackedConfig | None = None) -> list[TensorRef]:
    """The tensors with every quantized weight paired to its scale (or unpacked from its GPTQ / AWQ / MLX /
    compressed-tensors / MXFP4 parts, with the format hints ``packed``, or from its bitsandbytes 4-bit
    state), every weight stored as a reparametrization's parts combined (:mod:`htsr.io.reparam`), and the
    scale tensors and parts removed."""
    refs = list(refs)
    by_name = {r.name: r for r in refs}
    cfg = packed or PackedConfig()
    unpacked, parts = {}, set()
    for found, their_parts in (_packed_refs(by_name, cfg), _bnb4_refs(by_name), _mlx_refs(by_name, cfg),
                               _ct_refs(by_name, cfg), _mxfp4_refs(by_name), _hqq_refs(by_name),
                               _aqlm_refs(by_name), reparametrized_refs(by_name)):
        unpacked.update(found)
        parts |= their_parts
    scale_of: dict[str, tuple[TensorRef, float]] = {}
    zero_of: dict[str, TensorRef] = {}  # an asymmetric int8 weight's zero point (compressed-tensors)
    for r in refs:
        for suffix in SCALE_SUFFIXES + _PARAM_SCALE_SUFFIXES:
            dotted = suffix in SCALE_SUFFIXES
            if r.name.endswith("." + suffix if dotted else suffix):
                stem = r.name[: -len(suffix)]
                w = by_name.get(stem + "weight" if dotted else stem)
                if w is not None and w.dtype in _QUANTIZED and w.name not in scale_of:
                    scale_of[w.name] = (r, _DIVISOR.get(suffix, 1.0))
                    zero = by_name.get((stem + "weight" if dotted else stem) + "_zero_point")
                    if zero is not None:
                        zero_of[w.name] = zero
                break
    # bitsandbytes writes its LLM.int8() layout beside SCB: 0 = rows, the only one it reads back
    layout_of = {w: by_name[w[: -len("weight")] + "weight_format"] for w, (s, _) in scale_of.items()
                 if s.name.endswith(".SCB") and w[: -len("weight")] + "weight_format" in by_name}
    used = ({s.name for s, _ in scale_of.values()} | {f.name for f in layout_of.values()}
            | {z.name for z in zero_of.values()} | (parts - set(unpacked)))
    out = []
    for r in refs:
        if r.name in used:
            continue
        if r.name in unpacked:
            out.append(unpacked[r.name])
            continue
        if r.name not in scale_of:
            # (a weight named as such, or a fused expert parameter, whose scale would be <name>_scale_inv)
            named = _WEIGHT_NAME.search(r.name) is not None
            if cfg.fp8_scaled and r.dtype.startswith("float8") and len(r.shape) >= 2 and (
                    named or len(r.shape) == 3 and r.kind in (None, "stack")):
                scales = "weight_scale_inv / weight_scale" if named else "<name>_scale_inv / <name>_scale"
                r = TensorRef(r.name, r.shape, r.dtype, skipped_loader(
                    f"{r.dtype} weight without its scale ({scales}), which config.json's "
                    "quantization_config says it has: analyse the whole model folder, whose other files hold the "
                    "scales"), r.kind)
            out.append(r)
            continue
        s, divisor = scale_of[r.name]
        layout, zero = layout_of.get(r.name), zero_of.get(r.name)
        if r.dtype == "uint8" and zero is None:
            out.append(_not_read(r.name, r, f"uint8 codes beside {s.name}: 4-bit floats packed two a byte "
                                 "(NVFP4 / MXFP4 as ModelOpt or Quark write them), which htsr does not dequantize"))
            continue
        stack = len(r.shape) == 3 and (r.kind == "stack" or r.kind is None)

        def load(r: TensorRef = r, s: TensorRef = s, divisor: float = divisor, layout: TensorRef | None = layout,
                 zero: TensorRef | None = zero, stack: bool = stack) -> np.ndarray:
            if layout is not None and (code := np.asarray(layout.load()).reshape(-1).tolist()) != [0]:
                raise LayerSkipped(f"bitsandbytes int8 weight in layout {layout.name} = {code}, not rows (0), "
                                   "the only one bitsandbytes reads back; re-save it with a current bitsandbytes")
            q = np.asarray(r.load(), dtype=np.float32)
            if zero is not None:  # W = (q − z)·s, the zero point laid out as the scale
                q -= _expand(zero.load(), q.shape, f"{r.name} with {zero.name}", stack)
            scale = _expand(s.load(), q.shape, f"{r.name} with {s.name}", stack,
                            (cfg.weight_block or cfg.ct_block) if r.dtype.startswith("float8") else None)
            return q * (scale / np.float32(divisor)) if divisor != 1.0 else q * scale

        dtype = r.dtype if r.dtype.startswith("float8") else "float32"
        # one scale for the tensor, or one per output row: how many consecutive entries share it
        per = math.prod(s.shape)
        block = 0 if per == 1 else math.prod(r.shape[1:]) if per == r.shape[0] and len(r.shape) >= 2 else None
        out.append(TensorRef(r.name, r.shape, dtype, load, r.kind, bits=None if dtype != "float32" else 8,
                             quant_block=block if dtype == "float32" else None))
    return out


# the integer tensors that hold a packed layer's codes, by the format that names them so; with "weight",
# the last name components of a weight (not of an integer buffer such as position_ids or a step counter)
_PACKED_CODES = {"qweight": "GPTQ / AWQ", "weight_packed": "compressed-tensors", "q_weight": "EXL2 (exllamav2)",
                 "W_q": "HQQ", "codes": "AQLM"}
_WEIGHT_NAME = re.compile(rf"(^|\.)(weight|{'|'.join(_PACKED_CODES)})$")


#: numpy's raw voids of a float format it has no dtype for, saved without ml_dtypes: what they were, and the fix
_VOIDS = {"void16": "a bfloat16 array numpy saved as raw 2-byte voids",
          "void8": "an FP8 (float8) array numpy saved as raw 1-byte voids"}


def void_hint(dtype: str) -> str:
    """What a tensor of numpy's raw voids ``dtype`` was, and the fix, in parentheses ('' for another dtype)."""
    return f" ({_VOIDS[dtype]}: re-save it as float32)" if dtype in _VOIDS else ""


def unscaled_integer_weight(ref: TensorRef) -> TensorRef | None:
    """For an integer (or complex) tensor named as a weight matrix: the tensor with a loader that skips it
    (its row says why; a reader's own reason is kept); None for an integer buffer, which is no layer at all."""
    if hasattr(ref.loader, "reason"):
        return ref
    m = _WEIGHT_NAME.search(ref.name)
    if ref.dtype.startswith("complex") and len(ref.shape) >= 2 and m is not None:
        return TensorRef(ref.name, ref.shape, ref.dtype, skipped_loader(
            f"a {ref.dtype} weight: htsr analyses real matrices (the ESD of a complex one is not defined here)"),
            ref.kind)
    if len(ref.shape) >= 2 and m is not None and not ref.dtype.startswith(("int", "uint", "bool")):
        return TensorRef(ref.name, ref.shape, ref.dtype, skipped_loader(
            f"stored as {ref.dtype}, not a dtype of weights htsr analyses"
            + (void_hint(ref.dtype) or " (float16/32/64, bfloat16, float8 e4m3 or e5m2)")), ref.kind)
    if not ref.dtype.startswith(("int", "uint")) or len(ref.shape) < 2 or m is None:
        return None
    if m.group(2) in ("qweight", "weight_packed"):
        return _not_read(ref.name, ref, f"{ref.dtype} words of packed low-bit values (GPTQ / AWQ / compressed-"
                                        "tensors) without the scales htsr would unpack them with")
    if m.group(2) == "W_q":
        return _not_read(ref.name, ref, f"{ref.dtype} codes of an HQQ quantized layer without the scale, zero and "
                                        "meta (shape, packing…) htsr would dequantize them with")
    if m.group(2) == "codes":
        if len(ref.shape) != 3:  # AQLM's codes are [out groups, in groups, codebooks]: another model's integer buffer
            return None
        return _not_read(ref.name, ref, f"{ref.dtype} codes of an AQLM quantized layer without the codebooks htsr "
                                        "would decode them with")
    if m.group(2) in _PACKED_CODES:
        return _not_read(ref.name, ref, f"{ref.dtype} codes of an {_PACKED_CODES[m.group(2)]} quantized layer, "
                                        "a format htsr does not dequantize")
    return _not_read(ref.name, ref, f"{ref.dtype} weight without a scale htsr recognises "
                                    f"({', '.join(SCALE_SUFFIXES)}), so not analysed as raw integers")
