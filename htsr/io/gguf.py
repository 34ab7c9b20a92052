"""Reader for GGUF files (llama.cpp) — needs the ``gguf`` package: ``pip install 'htsr[gguf]'``.

The file is opened with ``gguf.GGUFReader`` (memory-mapped, read-only); opening it parses only the
header, and a tensor's bytes are read — and, for a quantized tensor, dequantized with
``gguf.quants.dequantize`` — only when its :class:`TensorRef` is loaded, one tensor at a time.

Shapes. GGUF lists a tensor's dimensions fastest-varying first (``ne[0]`` is the length of a row,
i.e. the *input* dimension of a weight matrix). htsr reports them reversed, in PyTorch / numpy order:
a llama.cpp ``ne = [in, out]`` weight becomes ``shape == (out, in)``, and a fused expert tensor
``ne = [in, out, n_expert]`` becomes ``(n_expert, out, in)``. The bytes are row-major in that order,
so no transpose is needed.

Dtypes. Every loader returns a float32 array (float64 for F64). ``TensorRef.dtype`` is the numpy
dtype of the stored values where there is one (``float32``, ``float16``, ``bfloat16``, ``float64``,
``int8`` … ``int64``); for block-quantized types (Q8_0, Q4_K, IQ2_XS, …) there is no numpy dtype, and
it is ``float32`` — the dtype of the dequantized array that :meth:`load` returns. That is what the
analysis sees (it analyses the dequantized weights) and it keeps quantized weights in
:data:`~htsr.io.base.FLOAT_DTYPES`, so ``analyze`` does not drop them as non-float buffers. The
storage type is kept, honestly and for every tensor, in :attr:`GGUFTensorRef.ggml_type` (the GGML type
name: ``'F32'``, ``'F16'``, ``'Q8_0'``, ``'Q4_K'`` …).

Layer roles. Tensor names are kept as written in the file (llama.cpp names such as
``blk.0.attn_q.weight``; rows are named without ``.weight``). The role part of the name (after
``blk.N.``, before ``.weight``) sets the layer kind:

=================================================================  ==========  ============================
llama.cpp role                                                     kind        tensor (htsr shape)
=================================================================  ==========  ============================
``token_embd``, ``token_types``, ``position_embd``,                embedding   ``[vocab, dim]``
``per_layer_token_embd``
``attn_rel_b``, ``cross_attn_rel_b`` (T5's position buckets)       embedding   ``[buckets, heads]``
``output`` (the LM head)                                           dense       ``[vocab, dim]``
``attn_q``, ``attn_k``, ``attn_v``, ``attn_qkv``, ``attn_output``  dense       ``[out, in]``
``attn_q_a``, ``attn_q_b``, ``attn_kv_a_mqa``, ``attn_kv_b``       dense       ``[out, in]`` (MLA)
``attn_k_b``, ``attn_v_b`` (MLA's kv_b split per head)             dense       ``[heads, d, rank]`` read as
                                                                               ``[heads · d, rank]`` (k_b,
                                                                               stored transposed, turned)
``ffn_gate``, ``ffn_up``, ``ffn_down``, ``ffn_gate_inp`` (router)  dense       ``[out, in]``
``ffn_gate_shexp``, ``ffn_up_shexp``, ``ffn_down_shexp``           dense       ``[out, in]`` (shared expert)
``ffn_gate_exps``, ``ffn_up_exps``, ``ffn_down_exps``,             stack       ``[n_expert, out, in]``:
``ffn_gate_up_exps``; RWKV6's ``time_mix_w2``                                  one row per expert
``*_norm`` (also 2-D: per head, per group), biases, 1-D tensors    (none)      not analysed
``ssm_a``, ``ssm_d``, ``ssm_conv1d`` (Mamba's A, D, conv taps),    (none)      listed, not analysed
``ssm_conv1d_q/k/v``, ``shortconv.conv`` (conv taps), RWKV's
``time_mix_first``, ``time_mix_r_k`` (per head), vectors
(``time_mix_lerp_*`` [1, 1, dim]: one axis longer than 1)
=================================================================  ==========  ============================

A role in the table whose tensor has an unexpected number of dimensions, and any other name, gets no
kind from the reader: htsr then infers it from the name and shape as for any file
(:func:`htsr.tensors.infer_kind`; 2-D → dense, 1-D → skipped). Tensors are listed in file order
(llama.cpp writes them in model order). A multimodal file's tower prefix (``v.``, ``a.``, ``mm.``) and an
encoder-decoder's (``enc.``, ``dec.``) are set aside for the role (``v.blk.0.attn_q`` is an ``attn_q``). Each expert row of a quantized stack
dequantizes that expert's bytes alone (``TensorRef.load_item``).

Split models. A model split by llama.cpp's ``gguf-split`` (``<name>-00001-of-00003.gguf`` …, ``split.count``
in each header) is read whole from any of its shards or from their folder (:func:`open_gguf`); a
missing shard is refused, naming it.

LoRA adapters. A llama.cpp adapter file (``general.type`` 'adapter', ``adapter.type`` 'lora', written by
``convert_lora_to_gguf.py``) holds factor pairs ``<weight>.lora_a`` / ``.lora_b``: each pair is one
``lora`` row ``<module>#delta`` of ΔW = (alpha / r)·B·A, as for a PEFT folder (see :func:`_lora_updates`).

Bad input — a wrong magic, a truncated file, a header field or a tensor's data running past the end
of the file, an unknown GGML type, a misaligned data offset — raises :class:`~htsr.errors.SourceError`
with a one-line message naming the file and, where one is to blame, the tensor. A big-endian GGUF file
(``gguf_convert_endian FILE big``) is read: its Q4_0, Q8_0, Q4_K and Q6_K blocks' float16 fields are
swapped back as that tool swapped them; other quantized types in it, and a type gguf cannot dequantize,
get a ``skipped: …`` row.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LayerSkipped, SourceError, described, listed
from ..factored import LowRank
from ..tensors import VECTOR, SharedLoad, is_vector
from .base import (MAX_DESCRIBED, SPLIT_NAME, TensorRef, check_unchanged, cut_off, failing_loader, file_stamp,
                   first_overlap, import_extra, read_span, skipped_loader)

__all__ = ["GGUF_MAGIC", "GGUFFile", "GGUFSplit", "GGUFTensorRef", "gguf_kind", "is_gguf", "open_gguf"]

GGUF_MAGIC = b"GGUF"
# GGML's types for the other operand of a quantized matmul (ggml's vec_dot_type): no file stores weights in them
_ACTIVATION_TYPES = ("Q8_1", "Q8_K")
_MIN_SIZE = 24  # magic, version, tensor count, metadata count
_MAX_DIMS = 4  # GGML_MAX_DIMS
# uniform block-quantized GGML types: (bits of a code, weights per scale: K-quants' sub-blocks) — a delta's
# rounding is measured from the values with them (htsr.io.delta.rounding)
# (the activation types Q8_1 and Q8_K hold no weights: their rows are skipped, so they have no entry)
_CODES = {"Q4_0": (4, 32), "Q4_1": (4, 32), "Q5_0": (5, 32), "Q5_1": (5, 32), "Q8_0": (8, 32),
          "Q2_K": (2, 16), "Q3_K": (3, 16), "Q4_K": (4, 32), "Q5_K": (5, 32), "Q6_K": (6, 16)}
# GGML types llama.cpp removed (ARM repacked layouts, now repacked at load time): files converted with them
_REMOVED_TYPES = {31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8", 36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8"}

_ROLE_KIND: dict[str, tuple[str, int]] = {  # role → (kind, number of dimensions it applies to)
    **{r: ("embedding", 2) for r in ("token_embd", "token_types", "position_embd", "per_layer_token_embd")},
    **{r: ("dense", 2) for r in (
        "output",
        "attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output",
        "attn_q_a", "attn_q_b", "attn_kv_a_mqa", "attn_kv_b", "attn_k_b", "attn_v_b",
        "ffn_gate", "ffn_up", "ffn_down", "ffn_gate_inp",
        "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp",
    )},
    **{r: ("stack", 3) for r in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "ffn_gate_up_exps",
                                 "time_mix_w2")},
    # MLA's kv_b_proj as convert_hf_to_gguf splits it: per head, k_b [n_head, kv_lora_rank, qk_nope] (transposed)
    # and v_b [n_head, v_head, kv_lora_rank]; each is read as one matrix [n_head · d, kv_lora_rank], its heads'
    # rows of kv_b_proj (k_b turned back: _MLA_TRANSPOSED)
    **{r: ("dense", 3) for r in ("attn_k_b", "attn_v_b")},
    # T5's relative position buckets (Hugging Face's relative_attention_bias, an nn.Embedding)
    **{r: ("embedding", 2) for r in ("attn_rel_b", "cross_attn_rel_b")},
}
_MLA_TRANSPOSED = "attn_k_b"
# a block's prefix, and a multimodal projector's towers' (v. vision, a. audio, mm. projector) or an
# encoder-decoder's halves' (enc., dec.)
_BLOCK = re.compile(r"^((v|a|mm|enc|dec)\.)?(blk\.\d+\.)?")
_CONV_TAPS = "a depthwise convolution's taps (one short filter per channel), not a weight matrix"
# parameters that are no weight matrix: a state-space (Mamba) layer's A (log decays) and D per channel; the
# depthwise convolutions' taps per channel (Mamba's, Kimi-Linear's q/k/v, LFM2's short conv); RWKV's vectors
# per head
_NOT_MATRICES = {"ssm_a": "a state-space layer's A (per-channel decay rates), not a weight matrix",
                 "ssm_d": "a state-space layer's D (per-channel skip weights), not a weight matrix",
                 **{r: _CONV_TAPS for r in ("ssm_conv1d", "ssm_conv1d_q", "ssm_conv1d_k", "ssm_conv1d_v",
                                            "shortconv.conv")},
                 **{r: "RWKV's vectors per head (bonus u, r_k), not a weight matrix"
                    for r in ("time_mix_first", "time_mix_r_k")}}


def _not_a_matrix(name: str, ne: tuple[int, ...]) -> str | None:
    """Why a tensor of two or more axes named ``name`` is no weight matrix, or None."""
    role = _role(name)
    if len(ne) < 2 or role in _ROLE_KIND or name.endswith((".lora_a", ".lora_b")):  # (a rank-1 LoRA's [1, in])
        return None
    return _NOT_MATRICES.get(role) or (VECTOR if is_vector(ne) else None)  # (RWKV's lerp [1, 1, dim])
_PLAIN = {"F32": "float32", "F16": "float16", "F64": "float64", "BF16": "bfloat16",
          "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64"}


#: the byte offsets of the float16 fields in one block of the quantized types gguf_convert_endian writes
#: big-endian (gguf's dequantizers read blocks little-endian; the other bytes are codes, in either order)
_BIG_ENDIAN_HALVES = {"Q4_0": (0,), "Q8_0": (0,), "Q4_K": (0, 2), "Q6_K": (208,), "MXFP4": (), "NVFP4": ()}


def _little_endian_blocks(raw: np.ndarray, type_name: str) -> np.ndarray:
    """A big-endian file's blocks of ``type_name`` (bytes) as the little-endian blocks gguf dequantizes: the
    float16 fields of each block swapped back, as gguf_convert_endian swapped them."""
    import gguf

    block = gguf.constants.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]][1]
    blocks = np.array(raw).reshape(-1, block)
    for off in _BIG_ENDIAN_HALVES[type_name]:
        blocks[:, [off, off + 1]] = blocks[:, [off + 1, off]]
    return blocks.reshape(-1)


def is_gguf(head: bytes) -> bool:
    """True if the first bytes are the GGUF magic."""
    return head[:4] == GGUF_MAGIC


def _role(name: str) -> str:
    """The llama.cpp role of a tensor name: the name without its block prefix and ``.weight``."""
    return _BLOCK.sub("", name.removesuffix(".weight"))


def gguf_kind(name: str, shape: tuple[int, ...]) -> str | None:
    """The layer kind of a llama.cpp tensor name (see the table above), or None to let htsr infer it."""
    if not name.endswith(".weight"):
        return None
    kind, ndim = _ROLE_KIND.get(_role(name), (None, 0))
    return kind if kind is not None and len(shape) == ndim else None


@dataclass(frozen=True)
class GGUFTensorRef(TensorRef):
    """A :class:`TensorRef` that also tells how the tensor is stored in the file."""

    ggml_type: str = ""  # GGML type name: 'F32', 'F16', 'BF16', 'Q8_0', 'Q4_K', …


def _gguf() -> Any:
    gguf = import_extra("gguf", "gguf", "reading GGUF (llama.cpp) files")
    import_extra("gguf.quants", "gguf", "reading GGUF (llama.cpp) files")
    return gguf




@functools.cache
def _reader_class() -> type:
    """``gguf.GGUFReader`` with bounds checks, so a corrupt header fails fast with a clear message.

    GGUFReader slices its memory map without checking the file's end (a truncated field comes back
    short) and loops over counts read from the file; the overrides make every read bounds-checked,
    refuse counts that cannot fit in the file, and validate each tensor's type, shape and data range
    (naming the tensor) before GGUFReader builds its views.
    """
    gguf = _gguf()
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

    min_value_size = {GGUFValueType.STRING: 8, GGUFValueType.ARRAY: 12}

    class _Reader(gguf.GGUFReader):
        def __init__(self, path: Path) -> None:
            self._path = path
            # a file cut off (an interrupted download): the tensors past its end, name → (GGUF ne[], type name,
            # why its row fails); the others are read
            self.cut_off: dict[str, tuple[tuple[int, ...], str, str]] = {}
            super().__init__(path, "r")

        def _fail(self, what: str) -> SourceError:
            return SourceError(f"{self._path}: {what}")

        def _get(self, offset, dtype, count=1, override_order=None):
            offset, count = int(offset), int(count)
            end = offset + np.dtype(dtype).itemsize * count
            if count < 0 or end > len(self.data):
                raise self._fail(
                    f"GGUF header is truncated or corrupt: a field at byte {offset} runs past the end "
                    f"of the {len(self.data)}-byte file")
            return super()._get(offset, dtype, count, override_order)

        def _get_field_parts(self, orig_offs, raw_type):
            if raw_type == GGUFValueType.ARRAY:
                itype = int(self._get(orig_offs, np.uint32)[0])
                alen = int(self._get(orig_offs + 4, np.uint64)[0])
                scalar = self.gguf_scalar_to_np.get(itype)  # type: ignore[call-overload]
                size = min_value_size.get(itype, np.dtype(scalar).itemsize if scalar else 1)
                if alen * size > len(self.data) - orig_offs - 12:
                    raise self._fail(
                        f"GGUF header is corrupt: a metadata array at byte {orig_offs} claims {alen} values, "
                        f"more than the {len(self.data)}-byte file can hold")
                if itype == GGUFValueType.STRING or scalar is not None:
                    # an array of strings or numbers (a tokenizer's 150k tokens and merges): its extent only,
                    # its values are no weights and htsr reads none (GGUFReader parses each as a numpy slice
                    # of the file: 10 s and 600 MB for a Qwen vocabulary); contents() of it is empty
                    offs = orig_offs + 12
                    if scalar is not None:
                        offs += alen * np.dtype(scalar).itemsize
                    else:
                        view, order = memoryview(self.data), "big" if self.byte_order == "S" else "little"
                        for _ in range(alen):
                            if offs + 8 > len(self.data):
                                offs = len(self.data) + 1  # (said below)
                                break
                            offs += 8 + int.from_bytes(view[offs:offs + 8], order)
                    if offs > len(self.data):
                        raise self._fail(f"GGUF header is truncated or corrupt: the metadata array at byte "
                                         f"{orig_offs} runs past the end of the {len(self.data)}-byte file")
                    head = [self._get(orig_offs, np.uint32), self._get(orig_offs + 4, np.uint64)]
                    return offs - orig_offs, head, [], [GGUFValueType.ARRAY, GGUFValueType(itype)]
            return super()._get_field_parts(orig_offs, raw_type)

        def _build_fields(self, offs, count):
            if int(count) > (len(self.data) - offs) // 13:  # a key/value pair takes at least 13 bytes
                raise self._fail(f"GGUF header is truncated or corrupt: {int(count)} metadata entries cannot fit in "
                                 "the file; fetch it again")
            return super()._build_fields(offs, count)

        def _build_tensor_info(self, offs, count):
            if int(count) > (len(self.data) - offs) // 24:  # a tensor description takes at least 24 bytes
                raise self._fail(f"GGUF header is truncated or corrupt: {int(count)} tensors cannot fit in the file; "
                                 "fetch it again")
            return super()._build_tensor_info(offs, count)

        def _build_tensors(self, start_offs, fields):
            size, seen, spans = len(self.data), set(), []
            align = int(self.alignment)  # (a general.alignment key is a numpy uint32: -n // it would overflow)
            expected, gap = 0, None  # as llama.cpp reads them: each tensor's data right after the last one's, padded
            past, kept, beyond = [], [], ""  # tensors past the file's end, the others, the first past's message
            for i, field in enumerate(fields):
                _, name_data, n_dims, dims, raw_type, offset = field.parts
                try:
                    name = bytes(name_data).decode("utf-8")
                except UnicodeDecodeError:
                    raise self._fail(f"GGUF header is corrupt: the name of tensor #{i} is not UTF-8") from None
                label = f"tensor {name!r}"
                if name in seen:
                    raise self._fail(f"GGUF header is corrupt: {label} appears twice")
                seen.add(name)
                if int(n_dims[0]) > _MAX_DIMS:
                    raise self._fail(f"{label} has {int(n_dims[0])} dimensions (GGUF allows at most {_MAX_DIMS})")
                try:
                    qtype = GGMLQuantizationType(int(raw_type[0]))
                    block, type_size = GGML_QUANT_SIZES[qtype]
                except (ValueError, KeyError):
                    code = int(raw_type[0])
                    if code in _REMOVED_TYPES:
                        raise self._fail(
                            f"{label} has GGML type {code}, {_REMOVED_TYPES[code]}, a repacked type llama.cpp removed "
                            "(it repacks at load time now): convert the model again with a current llama.cpp") from None
                    raise self._fail(
                        f"{label} has unknown GGML type {code} (corrupt file, or a type newer "
                        f"than gguf {_version()})") from None
                ne = [int(d) for d in dims]
                if ne and ne[0] % block:
                    raise self._fail(
                        f"{label}: row length {ne[0]} is not a multiple of the {qtype.name} block size {block}")
                nbytes = math.prod(ne) // block * type_size  # Python ints: no overflow
                rel = int(offset[0])
                if rel % align:
                    raise self._fail(f"{label}: data offset {rel} is not a multiple of the alignment {align}")
                if rel != expected and gap is None:
                    gap = (f"{label}: data offset {rel}, not {expected} where the tensors before it end (llama.cpp "
                           "refuses such a file too): a size, type or offset in the header is wrong")
                expected = rel + -(-nbytes // align) * align
                begin = int(start_offs) + rel
                if begin + nbytes > size:
                    past.append((name, tuple(ne), qtype.name, begin, nbytes))
                    beyond = beyond or (f"{label}: its {nbytes} bytes of {qtype.name} data at byte {begin} lie beyond "
                                        f"the end of the {size}-byte file (truncated, or a corrupt offset)")
                    continue
                spans.append((begin, begin + nbytes, name))
                kept.append(field)
            overlap = first_overlap(spans)
            if overlap:
                raise self._fail(f"GGUF header is corrupt: tensors {overlap[0]!r} and {overlap[1]!r} overlap in "
                                 "the data")
            if past and (gap is not None or not kept or max(b + n for *_, b, n in past) > MAX_DESCRIBED):
                raise self._fail(beyond)  # a corrupt offset or size, or nothing of it can be read
            if gap is not None:
                raise self._fail(gap)
            short = max((begin + nbytes for *_, begin, nbytes in past), default=size) - size
            self.cut_off = {name: (ne, qtype, cut_off(self._path, short, begin, begin + nbytes, size))
                            for name, ne, qtype, begin, nbytes in past}
            if size - (int(start_offs) + expected) >= align:
                raise self._fail(f"GGUF header is corrupt: {size - int(start_offs) - expected} bytes follow the "
                                 "last tensor's data (a tensor count, size or type in the header is wrong)")
            super()._build_tensors(start_offs, kept)

    return _Reader


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gguf")
    except PackageNotFoundError:  # pragma: no cover - gguf importable without its metadata
        return "?"


class GGUFFile:
    """The tensors of one ``.gguf`` file, read lazily (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self._gguf = _gguf()
        try:
            self._stamp = file_stamp(self.path)  # (before the header: a file saved again since is not read)
            size = self._stamp[2]
            with open(self.path, "rb") as f:
                head = f.read(4)
        except OSError as e:
            raise SourceError(f"{self.path}: cannot read ({e.strerror or e})") from None
        if not is_gguf(head):
            raise SourceError(f"{self.path}: not a GGUF file (starts with {head!r}, not {GGUF_MAGIC!r})")
        if size < _MIN_SIZE:
            raise SourceError(f"{self.path}: too short ({size} bytes) to be a GGUF file (truncated?)")
        try:
            self._reader = _reader_class()(self.path)
        except SourceError:
            raise
        except Exception as e:  # noqa: BLE001 - anything a corrupt header provokes in GGUFReader / numpy
            raise SourceError(
                f"{self.path}: corrupt or unsupported GGUF file ({described(e)})"
            ) from None

        if self._reader.cut_off:  # (said of the source too: a 1-D tensor past the cut is passed over, no failed row)
            self.description += (f" (cut off: {len(self._reader.cut_off)} tensor(s) past the end of the file; fetch it "
                                 "again)")
        # (name, why) of the tensors that are no weight matrix (not yielded)
        self.not_weights: list[tuple[str, str]] = [
            (name, why) for name, ne in [(t.name, tuple(int(d) for d in t.shape)) for t in self._reader.tensors]
            + [(name, ne) for name, (ne, _, _) in self._reader.cut_off.items()]
            if (why := _not_a_matrix(name, ne)) is not None]

    def __len__(self) -> int:
        return len(self._reader.tensors) + len(self._reader.cut_off) - len(self.not_weights)

    def _loader(self, t: Any, shape: tuple[int, ...], type_name: str, item: int | None = None):
        """The tensor's loader; with ``item``, of its ``item``-th slice along the first (outermost) axis
        alone: one expert of a stack, whose bytes are contiguous."""
        reader, path, gguf = self._reader, self.path, self._gguf
        offset, n_bytes, stored = int(t.data_offset), int(t.n_bytes), tuple(t.data.shape)
        if item is not None:
            n_bytes //= shape[0]
            offset += item * n_bytes
            shape, stored = shape[1:], stored[1:]

        def load() -> np.ndarray:
            if math.prod(shape) == 0:
                return np.zeros(shape, dtype=np.float64 if type_name == "F64" else np.float32)  # (as stored ones)
            # the tensor's bytes read on their own, dropped with the array: views into the reader's whole-file
            # map would keep every page read so far resident (6 GB RSS on a 6 GB file)
            raw = read_span(path, offset, n_bytes, self._stamp)
            data = raw.view(t.data.dtype).reshape(stored)
            if type_name in ("F32", "F64"):  # the bytes read, as for safetensors
                data = data.reshape(shape)
                return data if data.dtype.isnative else data.astype(data.dtype.newbyteorder("="))
            if type_name in ("F16", "I8", "I16", "I32", "I64"):
                return data.reshape(shape).astype(np.float32)
            if type_name == "BF16":  # the top half of a float32, in the file's byte order
                half = np.frombuffer(raw, dtype=">u2" if reader.byte_order == "S" else "<u2")
                return (half.astype(np.uint32) << 16).view(np.float32).reshape(shape)
            if reader.byte_order == "S":
                if type_name not in _BIG_ENDIAN_HALVES:
                    # (the types gguf_convert_endian swaps, which htsr reads so; it refuses the others too: its
                    # advice had been to run it, h58)
                    raise LayerSkipped(f"{type_name} data in a big-endian GGUF file (only Q4_0, Q8_0, Q4_K, Q6_K, "
                                       "MXFP4 and NVFP4 are read so, the types gguf_convert_endian converts): "
                                       "convert the model to GGUF again, little-endian")
                data = _little_endian_blocks(raw, type_name).view(t.data.dtype).reshape(stored)
            try:
                out = gguf.quants.dequantize(data, t.tensor_type)
            except NotImplementedError:
                if type_name in _ACTIVATION_TYPES:
                    raise LayerSkipped(f"{type_name} is a GGML type of intermediate results, not of stored weights; "
                                       "no dequantizer exists for it") from None
                raise LayerSkipped(f"gguf {_version()} cannot dequantize {type_name} (pip install -U gguf, if a "
                                   "newer one can)") from None
            except Exception as e:  # noqa: BLE001 - validated data; any failure means a corrupt tensor
                raise SourceError(f"{path}: tensor {t.name!r}: cannot dequantize its {type_name} data "
                                  f"({described(e)})") from None
            return np.asarray(out, dtype=np.float32).reshape(shape)

        return load

    @functools.cached_property
    def _tie_key(self) -> tuple | None:
        """A tied LM head stored twice: llama.cpp's GPT-2 and MPT converters write ``output.weight`` as a copy of
        ``token_embd.weight`` ("tied to (same as) wte"). Byte for byte the same: one storage key for both, so
        the matrix is analysed once (the other name is listed). Compared once per file, not per iteration."""
        by_name = {t.name: t for t in self._reader.tensors}
        emb, out = by_name.get("token_embd.weight"), by_name.get("output.weight")
        if emb is None or out is None or emb.tensor_type != out.tensor_type or list(emb.shape) != list(out.shape):
            return None
        a, b, n, step = int(emb.data_offset), int(out.data_offset), int(emb.n_bytes), 1 << 24
        if any(not np.array_equal(read_span(self.path, a + i, min(step, n - i), self._stamp),
                                  read_span(self.path, b + i, min(step, n - i), self._stamp))
               for i in range(0, n, step)):
            return None  # (16 MiB at a time: it stops at the first that differs)
        return ("gguf", str(self.path.resolve()), int(emb.data_offset))

    @property
    def is_lora_adapter(self) -> bool:
        """A llama.cpp LoRA adapter file (its rows are updates ΔW: no base to subtract)."""
        return self.lora_alpha() is not None

    def _field(self, key: str) -> Any:
        # (the reader's map of the header, of a file saved again since, would be read past a new end, SIGBUS, or hold
        # another file's fields)
        check_unchanged(self.path, self._stamp)
        f = self._reader.fields.get(key)
        try:
            return f.contents() if f is not None else None
        except Exception:  # noqa: BLE001 - a corrupt field is no field
            return None

    def lora_alpha(self) -> float | None:
        """``adapter.lora.alpha`` of a llama.cpp LoRA adapter (``general.type`` 'adapter', ``adapter.type``
        'lora'; 0 when absent, as llama.cpp reads it), else None."""
        if self._field("general.type") != "adapter" or self._field("adapter.type") != "lora":
            return None
        alpha = self._field("adapter.lora.alpha")
        return float(alpha) if isinstance(alpha, (int, float)) and math.isfinite(alpha) else 0.0

    def __iter__(self) -> Iterator[TensorRef]:
        check_unchanged(self.path, self._stamp)  # (as _field)
        refs = []
        listed = {name for name, _ in self.not_weights}
        for t in self._reader.tensors:
            if t.name in listed:
                continue
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # GGUF ne[] → PyTorch order
            type_name = t.tensor_type.name
            dtype = _PLAIN.get(type_name, "float32")  # block-quantized: the dtype of the dequantized array
            bits, block = _CODES.get(type_name, (None, None))
            if bits is None and type_name not in _PLAIN:  # IQ, FP4 …: non-uniform; the bits their name says
                m = re.match(r"[A-Z]*?(\d)", type_name)
                # (TQ1_0 and TQ2_0 hold ternary codes whatever their packing: 3 levels, log2 3 bits)
                bits = math.log2(3) if type_name.startswith("TQ") else float(m[1]) if m else 4.0
            kind = gguf_kind(t.name, shape)
            item = (lambda e, t=t, shape=shape, type_name=type_name: self._loader(t, shape, type_name, e)()) \
                if kind == "stack" else None  # one expert dequantized at a time
            load = self._loader(t, shape, type_name)
            if kind == "dense" and len(shape) == 3 and _role(t.name) == _MLA_TRANSPOSED:
                shape, load = (shape[0], shape[2], shape[1]), (lambda load=load: np.swapaxes(load(), 1, 2))
            refs.append(GGUFTensorRef(t.name, shape, dtype, load, kind=kind, bits=bits,
                                      quant_block=block, load_item=item, ggml_type=type_name))
        for name, (ne, type_name, why) in self._reader.cut_off.items():  # past the end of a cut-off file: failed rows
            if name not in listed:
                shape = tuple(reversed(ne))
                refs.append(GGUFTensorRef(name, shape, _PLAIN.get(type_name, "float32"),
                                          failing_loader(SourceError, why), kind=gguf_kind(name, shape),
                                          ggml_type=type_name))
        if self._tie_key is not None:
            refs = [dataclasses.replace(r, storage_key=self._tie_key)
                    if r.name in ("token_embd.weight", "output.weight") else r for r in refs]
        alpha = self.lora_alpha()
        yield from refs if alpha is None else _lora_updates(refs, alpha)


class GGUFSplit:
    """A model split by llama.cpp's ``gguf-split`` (``split.count`` shards ``<stem>-0000k-of-0000n.gguf``, each
    with its own tensors): its shards' tensors, in shard order, as one model."""

    def __init__(self, files: list[GGUFFile]) -> None:
        self.files = files
        self.description = f"{files[0].path} (+{len(files) - 1} shards)"
        self.not_weights = [x for f in files for x in f.not_weights]
        self.input_files = {f.path.resolve() for f in files}

    def __len__(self) -> int:
        return sum(len(f) for f in self.files)

    def __iter__(self) -> Iterator[TensorRef]:
        for f in self.files:
            yield from f


def open_gguf(path: str | os.PathLike) -> GGUFFile | GGUFSplit:
    """A ``.gguf`` file, or — when its header says it is one shard of ``split.count`` — all its shards (found
    beside it by llama.cpp's naming; a missing one is refused, naming it: part of a model is not the model)."""
    first = GGUFFile(path)
    if first._field("general.type") == "imatrix":  # llama-imatrix's output: activation statistics, no weights
        raise SourceError(f"{first.path}: an importance matrix (llama-imatrix's sums of squared activations), not a "
                          "model's weights; give the model's .gguf")
    count = first._field("split.count")
    if not isinstance(count, int) or count <= 1:
        return first
    m = SPLIT_NAME.match(first.path.name)  # (llama.cpp's gguf-split names: <stem>-00001-of-00003.gguf)
    if m is None or m["ext"] != "gguf" or int(m["count"]) != count:
        raise SourceError(f"{first.path}: shard of a model split in {count} files (split.count), but not named "
                          "<name>-0000k-of-0000n.gguf as llama.cpp's gguf-split names them; give the first shard "
                          "with its siblings beside it, or merge them (llama-gguf-split --merge)")
    width = len(m["no"])
    paths = [first.path.with_name(f"{m['stem']}-{k:0{width}d}-of-{m['count']}.gguf") for k in range(1, count + 1)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise SourceError(f"{first.path}: shard of a model split in {count} files; {listed(missing, 5)} "
                          f"{'is' if len(missing) == 1 else 'are'} missing from {first.path.parent}")
    files = [first if p == first.path else GGUFFile(p) for p in paths]
    for k, f in enumerate(files):
        if f._field("split.no") not in (None, k) or f._field("split.count") not in (None, count):
            raise SourceError(f"{f.path}: its header says shard {f._field('split.no')} of {f._field('split.count')}, "
                              f"not {k} of {count}: shards of different models?")
    return GGUFSplit(files)


def _lora_updates(refs: list[TensorRef], alpha: float) -> Iterator[TensorRef]:
    """A llama.cpp LoRA adapter's tensors (``convert_lora_to_gguf.py``): each ``<weight>.lora_a`` (r × in;
    ``token_embd``'s stored transposed, vocab × r) and ``<weight>.lora_b`` (out × r) pair becomes one
    ``lora`` row ``<module>#delta`` of ΔW = s·B·A, s = alpha / r (1 when alpha is 0, as llama.cpp scales);
    expert stacks ([E, r, in] and [E, out, r]) give one row per expert, ``#delta[e]``. Other tensors (the
    norms mergekit adds) are yielded as they are."""
    pairs: dict[str, dict[str, TensorRef]] = {}
    for t in refs:
        stem, dot, part = t.name.rpartition(".")
        if dot and part in ("lora_a", "lora_b"):
            pairs.setdefault(stem, {})[part] = t
        else:
            yield t
    for stem, p in pairs.items():
        row = f"{stem.removesuffix('.weight')}#delta"
        a, b = p.get("lora_a"), p.get("lora_b")
        if a is None or b is None:
            t = a or b
            yield TensorRef(row, (1, 1), t.dtype, skipped_loader(
                f"{t.name} has no {'lora_b' if b is None else 'lora_a'} beside it"), "lora")
            continue
        A, B = tuple(a.shape), tuple(b.shape)
        stacked = len(A) == len(B) == 3 and A[0] == B[0]
        r = B[-1]
        # only token_embd's lora_a is stored transposed (vocab × r; llama.cpp's llm_build_inp_embd)
        transposed = stem.split(".")[0] == "token_embd" and A[-2] != r
        if not (len(A) == len(B) == 2 or stacked) or r == 0 or 0 in A + B or r != (A[-1] if transposed else A[-2]):
            yield TensorRef(row, (1, 1), a.dtype, skipped_loader(
                f"LoRA factors of shapes {list(B)} ({b.name}) and {list(A)} ({a.name}) do not make a rank-r update"),
                "lora")
            continue
        scale = alpha / r if alpha else 1.0
        inp = A[-2] if transposed else A[-1]
        E = A[0] if stacked else 1

        def load(a: TensorRef = a, b: TensorRef = b, transposed: bool = transposed) -> tuple[np.ndarray, np.ndarray]:
            fa = np.asarray(a.load(), dtype=np.float32)
            return (np.swapaxes(fa, -1, -2) if transposed else fa), np.asarray(b.load(), dtype=np.float32)

        factors = SharedLoad(load, range(E))
        for e in range(E):
            def update(e: int = e, factors: SharedLoad = factors, scale: float = scale, stacked: bool = stacked) -> LowRank:
                return factors.take(e, lambda f: LowRank(np.ascontiguousarray(f[1][e] if stacked else f[1]),
                                                         np.ascontiguousarray(f[0][e] if stacked else f[0]), scale))

            yield TensorRef(f"{row}[{e}]" if stacked else row, (B[-2], inp), a.dtype, update, "lora")
