"""Reader for ``.onnx`` models (extra ``htsr[onnx]``): the weights of a graph, typed by the operator using them.

**Kinds and orientation.** An ONNX weight is a graph initializer (or the tensor of a ``Constant`` node,
which some exporters use instead, also inside ``If``/``Loop`` subgraphs). Its kind comes from the
operator that consumes it, and it is oriented like PyTorch's ``[out, in]`` so that names, shapes and
ESDs match a safetensors copy of the same weights:

=====================  ==============================  ==================================================
consumer (input)       ONNX layout                     htsr tensor
=====================  ==============================  ==================================================
MatMul (B)             ``[in, out]``                   ``dense`` ``[out, in]`` (transposed); ``stack`` if 3-D;
                                                       as stored under a PyTorch parameter's own name (below)
MatMul (A)             ``[out, in]``                   ``dense`` as it is
Gemm (B / A)           ``[in, out]`` or transB/transA  ``dense`` ``[out, in]``: transposed unless transB=1
                                                       (for A: transposed if transA=1)
Conv (W)               ``[c_out, c_in/g, k…]``         ``conv1d`` / ``conv2d`` / ``conv3d`` by rank
ConvTranspose (W)      ``[c_in, c_out/g, k…]``         the same, as PyTorch's ConvTranspose weight
Einsum (either operand) by the equation               ``dense`` ``[prod(out), prod(in)]``: in = letters the
                                                       other operand has, out = the output's alone; ``stack``
                                                       with letters of all three (see ``einsum_axes``)
Gather (data)          ``[vocab, dim]``                ``embedding``
another op (Add …)     a table by its name             ``embedding`` (ViT's ``position_embeddings``), as it is
LSTM / GRU / RNN (W,R) ``[dirs, k·hidden, in]``        ``rnn``: one ``[k·hidden, in]`` tensor per direction
Attention (weight)     ``[in, 3·hidden]``              ``dense`` ``[3·hidden, in]``: q, k, v stacked, one row
EmbedLayerNorm. (2-4)  ``[vocab, dim]``                ``embedding`` (word, position, segment tables)
MatMulNBits (B)        uint8 ``[N, blocks, bytes]``    ``dense`` ``[N, K]``, dequantized (see below)
=====================  ==============================  ==================================================

A MatMul or Gemm operand stored ``[in, out]`` under a PyTorch parameter's own dotted name
(``transformer.h.0.attn.c_attn.weight``) is that parameter as its module holds it — Hugging Face's GPT-2
``Conv1D``, or an ``nn.Parameter`` multiplied ``x @ W`` — and is kept so, as its state dict has it (PyTorch's
exporters give an ``nn.Linear`` weight to MatMul as a folded transposed copy of an opaque name, or by name to
Gemm with ``transB=1``).

(Attention, EmbedLayerNormalization — and PackedAttention, QAttention, DecoderAttention — are onnxruntime's
``com.microsoft`` operators that its transformer optimizer fuses a BERT or GPT-2 into, e.g. optimum's O2+
exports; the fused Attention weight is one row, as a fused qkv weight is from other formats, named as the
optimizer names it: ``Attention_0_qkv_weight``.)

**Quantized weights.** An integer initializer is dequantized when loaded, W = (q − zero_point)·scale with
the scale per tensor, per axis or per block (opset 21), in each of onnxruntime's formats: read by
``DequantizeLinear`` (QDQ, most deployment exports; ``axis``, ``block_size``), typed by the operator
after it; read by ``QLinearMatMul`` / ``QLinearConv`` (QOperator: the scale and zero point are the
operator's inputs, per output channel); read by ``MatMulInteger`` / ``ConvInteger`` (dynamic
quantization, e.g. ``model_quantized.onnx`` files: the zero point is an input, the scale the
``<name>_scale`` initializer); read by onnxruntime's ``com.microsoft.QGemm`` (a static model's Gemm), ``QAttention`` or
``DynamicQuantizeLSTM`` (W and R stored ``[dirs, in, 4·hidden]``, LSTM's transposed, turned back; a scale per
direction, or per direction and gate output), or ``QEmbedLayerNormalization`` (a quantized fused BERT's three
tables, a scale each); an int8 embedding table read by ``Gather`` (scale from the
``DequantizeLinear`` after it, or ``<name>_scale``); read by ``com.microsoft.MatMulNBits``, the block-quantized
2-, 4- or 8-bit format of onnxruntime's LLM exports (``B`` uint8 ``[N, blocks, block·bits/8]``, codes packed
low bits first, per-block scales and zero points — packed, float, or the default 2^(bits−1); g_idx is
not read: a skipped row), whose ``<name>_Q4`` / ``_Q4G128`` suffix is dropped. The integer operators type a weight as the float
ones do (MatMul, Conv), and so do the fused operators of a model saved by onnxruntime's graph optimizer
(``com.microsoft.FusedGemm``, ``FusedConv``, ``FusedMatMul`` with its ``transA``/``transB``). Its rows say float32, and onnxruntime's ``<name>_quantized`` is named ``<name>``,
as in the float model. An FP8 (or FP4) weight read by ``DequantizeLinear``
(onnxruntime's ``QFLOAT8E4M3FN``) is codes, dequantized with its scale as an integer one is. A float
weight passed through ``QuantizeLinear`` → ``DequantizeLinear`` ("fake quantization") is read as the float
it is. A scale or zero point computed at run time is listed in :attr:`OnnxFile.skipped`; the constant
ones (of any rank: a block scale is a matrix) are listed in :attr:`OnnxFile.not_weights`.

An initializer that reaches one of these operators only through ``Identity``, ``Cast``, ``Slice``,
``Concat``, ``Split``, ``Squeeze`` or ``Unsqueeze`` (e.g. PyTorch's LSTM export, which reorders the gate
blocks of ``weight_ih`` with Slice + Concat) is typed by that operator too, kept in its own layout
except for the MatMul/Gemm transposition above; a matrix may also pass through ``Transpose`` (an export
without constant folding feeds Linear's ``[out, in]`` to MatMul so), which turns that transposition around. The gate order of an ONNX LSTM (i, o, f, c) differs
from PyTorch's (i, f, g, o): a permutation of rows, which changes no singular value. Biases (Gemm C,
Conv B, LSTM B…), 1-D tensors, integer tensors (shapes, indices) and float tensors used by no weight
operator (masks, position tables added with ``Add``) are not yielded; :attr:`OnnxFile.skipped` lists
the float tensors of rank ≥ 2 left out and why.

**Names.** A node of torch's dynamo exporter (``torch.onnx.export(dynamo=True)``, the default) records
its module path in ``metadata_props`` (``pkg.torch.onnx.name_scopes``): that path is the node's scope,
and a tensor name without a dot (a folded constant: ``mul_1``, ``t_3``) is opaque. A tensor keeps its own name unless it is *opaque*: starting with ``onnx::`` (PyTorch's
exporter, e.g. ``onnx::MatMul_470``), made of digits and punctuation only, or of the form
``val_12`` / ``const_12``, or a node output such as ``/encoder/Constant_output_0``. An opaque tensor is named after its consumer node: the node name's scope,
``/`` turned into ``.``, without the last component (the operator instance) and with ``.weight``
appended — ``/encoder/layer.0/attention/self/query/MatMul`` → ``encoder.layer.0.attention.self.query.weight``
(row ``encoder.layer.0.attention.self.query``) — unless a float weight's bias, under a PyTorch parameter's name, gives
its path: Conv's or Gemm's third input, or the other operand of the Add after a MatMul (``conv1d.bias`` →
``conv1d.weight``, an attention's ``in_proj_bias`` → ``in_proj_weight``, as its state dict names them); an ``nn.Sequential``'s scope before its child's is dropped
(``/mlp/mlp.0/MatMul`` → ``mlp.0``) unless the tensors' own names show a module of the longer path. A node
onnxruntime's quantizer put in place of a dynamo node (``node_MatMul_1_quant``) has no metadata: it takes
the scope of the bias ``Add`` after it, reached through the quantizer's own nodes. Recurrent weights are named like PyTorch's:
``<scope>.weight_ih_l<n>`` (W) and ``<scope>.weight_hh_l<n>`` (R), n being the node's place among the
recurrent nodes of its scope (``LSTM`` → 0, ``LSTM_1`` → 1), with ``_reverse`` for the second direction (a non-opaque name gets the
``_reverse`` suffix alone). A dense copy of an embedding table (a tied LM head exported as the table's
folded transpose) is the table's tied twin, and the exporter's copies of one weight (a module called k times,
an unrolled RNN's recurrent weight: dynamo folds one copy per call) are one matrix: analysed once. A node without a name leaves the tensor's own name. Names are made unique
by suffixes ``_2``, ``_3``… (before a final ``.weight``); a name taken from a node never takes a tensor's own
name (``onnx::MatMul_5`` under ``/fc/MatMul`` is ``fc_2.weight`` where a tensor is named ``fc.weight``). When the model also has readable tensor
names and a scope's first two dotted components are not the first two of any of them, up to two leading
scope components are dropped if that makes them match: PyTorch's exporter names nodes after the module
path from the exported wrapper (``/model/model.0/auto_model/encoder/…``) while the parameters keep the
path from the inner model (``model.0.auto_model.embeddings.word_embeddings.weight``).

**Memory.** The model is parsed with ``onnx.load(path, load_external_data=False)``: with external data
(``data_location == EXTERNAL``) only the graph is read, and each tensor is read from its file
at its offset/length when it is loaded — the file must lie inside the model's folder and is checked
(present, large enough, no two tensors over the same bytes) when the model is opened. Sparse initializers
are listed as not read. Tensors embedded in the ``.onnx`` file are part of the
protobuf, which is in memory as a whole once parsed (protobuf cannot be read partially); they are
converted to numpy one at a time (``onnx.numpy_helper.to_array``) only when loaded.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SourceError, described, shown
from ..tensors import classify, is_recurrent
from .base import (
    FLOAT_DTYPES,
    TensorRef,
    as_loaded,
    einsum_axes,
    failing_loader,
    file_stamp,
    first_overlap,
    grouped_axes,
    import_extra,
    leaves_folder,
    numpy_dtype,
    one_line,
    read_span,
    skipped_loader,
    unreadable,
)

__all__ = ["OnnxFile", "is_onnx", "looks_like_onnx"]

# ModelProto field tags that can follow ir_version (field 1): producer_name (2), producer_version (3),
# domain (4), model_version (5, varint), doc_string (6), graph (7), opset_import (8), metadata_props (14),
# training_info (20), functions (25) — the last two are two-byte tags
_NEXT_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0xA2, 0xCA}
#: onnxruntime's quantizer names a weight's scale and zero point after it
_QUANT_PARAM = re.compile(r"_(scale|zero_point)$")

# ops a weight may pass through on its way to the operator that gives it a kind (layout unchanged)
# QuantizeLinear/DequantizeLinear pass a float weight on ("fake quantization": the float is the weight);
# an integer weight read by DequantizeLinear is dequantized instead (OnnxFile._dequantized)
_QDQ = {"QuantizeLinear", "DequantizeLinear"}
_PASS_THROUGH = {"Identity", "Cast", "Slice", "Concat", "Split", "Squeeze", "Unsqueeze"} | _QDQ
_QUANT_DTYPES = frozenset({"int8", "uint8", "int16", "uint16", "int32", "int4", "uint4"})
_RNN_OPS = {"LSTM", "GRU", "RNN"}
# operators that stand for a float one: integer operators of onnxruntime's quantized models (QOperator
# format, dynamic quantization) and the fused ones of its graph optimizer (a saved optimized model): the
# float operator, and which of their inputs is which input of it
_STAND_INS = {"QLinearMatMul": ("MatMul", {0: 0, 3: 1}), "MatMulInteger": ("MatMul", {0: 0, 1: 1}),
              "QLinearConv": ("Conv", {3: 1}), "ConvInteger": ("Conv", {1: 1}),
              # onnxruntime's com.microsoft domain
              "QGemm": ("Gemm", {0: 0, 3: 1}), "FusedGemm": ("Gemm", {0: 0, 1: 1, 2: 2}),
              "FusedConv": ("Conv", {1: 1}), "FusedMatMul": ("MatMul", {0: 0, 1: 1}),
              # its transformer optimizer's fused operators (optimum's O2+, onnxruntime.transformers):
              # Attention's weight is the q, k, v projections side by side, [in, 3·hidden] (one row, as a
              # fused qkv weight is from other formats), EmbedLayerNormalization's inputs 2-4 the word,
              # position and segment embeddings; MatMulNBits is a MatMul of a block-quantized B (see _nbits)
              "Attention": ("MatMul", {1: 1}), "PackedAttention": ("MatMul", {1: 1}),
              "QAttention": ("MatMul", {1: 1}), "DecoderAttention": ("MatMul", {2: 1, 3: 1}),
              "EmbedLayerNormalization": ("Gather", {2: 0, 3: 0, 4: 0}), "MatMulNBits": ("MatMul", {1: 1}),
              # its quantizer's: the three tables uint8, each with a scale (inputs 8-10) and zero point (13-15)
              "QEmbedLayerNormalization": ("Gather", {2: 0, 3: 0, 4: 0}),
              # its dynamic quantizer's LSTM: int8 W [dirs, in, 4·hidden] and R [dirs, hidden, 4·hidden]
              # (LSTM's, transposed), scale and zero point per direction (inputs 8-11)
              "DynamicQuantizeLSTM": ("LSTM", {i: i for i in range(8)})}


#: the scale and zero-point inputs of the quantized operators (a bias, a mask, a float fused operator's inputs
#: are not)
_SCALE_INPUTS = {"QLinearMatMul": {1, 2, 4, 5, 6, 7}, "MatMulInteger": {2, 3}, "QLinearConv": {1, 2, 4, 5, 6, 7},
                 "ConvInteger": {2, 3}, "QGemm": {1, 2, 4, 5, 7, 8}, "QAttention": {3, 4, 6, 7},
                 "MatMulNBits": {2, 3}, "DynamicQuantizeLSTM": {8, 9, 10, 11},
                 "QEmbedLayerNormalization": set(range(8, 18))}


def _parameter_input(node: Any, index: int) -> bool:
    """Whether input ``index`` of ``node`` is a scale or zero point of how a weight is read, not a weight:
    QuantizeLinear's / DequantizeLinear's, or a quantized operator's (QLinearMatMul, MatMulNBits …)."""
    if node.op_type in _QDQ:
        return index > 0
    return _known(node) and index in _SCALE_INPUTS.get(node.op_type, ())


def _known(node: Any) -> bool:
    """An operator of the ONNX domain, or one of onnxruntime's (com.microsoft) that htsr reads: its stand-ins, and
    its own copies of the QDQ operators, of the same meaning (its quantizer writes them there for int4 weights on an
    opset below 21, or with UseQDQContribOps: the model had been refused, h58)."""
    return node.domain in ("", "ai.onnx") or (node.domain == "com.microsoft"
                                              and (node.op_type in _STAND_INS or node.op_type in _QDQ))
_TYPED_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Gather", "Einsum"} | _RNN_OPS | set(_STAND_INS)
_MAX_HOPS = 6
#: ops that change a weight's layout or values on its way to its operator, which htsr does not follow (a
#: Reshape, a Transpose of more than two axes, a dequantization written as arithmetic: Cast → Sub → Mul); a
#: weight reaching its operator only through them is said to (not an Add: an attention mask reaches the scores so)
_UNFOLLOWED = {"Reshape", "Transpose", "Flatten", "Mul", "Div", "Sub"}
#: the inputs of each float operator that are a weight (a Gather's input 1 is indices, a Conv's input 0 data)
_WEIGHT_INPUTS = {"MatMul": {0, 1}, "Gemm": {0, 1}, "Einsum": {0, 1}, "Conv": {1}, "ConvTranspose": {1},
                  "Gather": {0}, "LSTM": {1, 2}, "GRU": {1, 2}, "RNN": {1, 2}}

_OPAQUE = re.compile(r"^(onnx::.*|[\W\d_]*|_?(val|const|constant|initializer)_?\d+|.*_output_\d+)$",
                     re.IGNORECASE)
_NBITS_SUFFIX = re.compile(r"_Q\d(G\d+)?$")
# an operator instance in a node's path ('MatMul', 'Gemm_3'): no module of the model
_OP_INSTANCE = re.compile(r"(MatMul|Gemm|Conv|ConvTranspose|Gather|LSTM|GRU|RNN|Add|Transpose)(_\d+)?")


def _onnx():
    return import_extra("onnx", "onnx", "reading ONNX models")


def is_onnx(head: bytes) -> bool:
    """True if the first bytes look like a serialized ONNX ModelProto.

    ONNX has no magic number, but every exporter writes ``ir_version`` (field 1, varint: tag byte
    0x08) first, with a small value, followed by another ModelProto field (producer_name, graph…).
    """
    return len(head) >= 3 and head[0] == 0x08 and 0 < head[1] < 0x80 and head[2] in _NEXT_TAGS


def looks_like_onnx(path: Path, head: bytes) -> bool:
    """Whether ``open_source`` should hand ``path`` to :class:`OnnxFile` (by content, or by extension:
    then a corrupt file gets an ONNX-specific error rather than 'unknown format')."""
    return is_onnx(head) or path.suffix.lower() == ".onnx"


# ------------------------------------------------------------------------------------------- helpers


#: dtypes ONNX packs several values a byte into (first value in the low bits), by bits per value
_SUB_BYTE = {"int4": 4, "uint4": 4, "float4_e2m1fn": 4, "int2": 2, "uint2": 2}


#: types onnx's numpy_helper decodes as their computation type before onnx 1.19 (bfloat16 and float8 as float32,
#: int4 as int8): htsr decodes their bytes itself (:func:`_decoded`)
_OWN_DECODING = frozenset({"bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                           "float8_e8m0fnu", "int4", "uint4", "float4_e2m1fn", "int2", "uint2"})


def _unpacked(a: np.ndarray, bits: int, rows: int, count: int) -> np.ndarray:
    """The first ``count`` codes of ``bits`` bits of each of ``rows`` rows of packed bytes, each byte's from its
    lowest bits up (as ONNX packs int4/int2 and MatMulNBits its weights)."""
    a = np.asarray(a, dtype=np.uint8).reshape(rows, -1)
    codes = np.stack([(a >> (bits * j)) & ((1 << bits) - 1) for j in range(8 // bits)], axis=-1)
    return codes.reshape(rows, -1)[:, :count]


def _decoded(raw: np.ndarray, dtype_name: str, shape: tuple[int, ...]) -> np.ndarray:
    """An ONNX tensor of one of _OWN_DECODING's types from its stored bytes (uint8): sub-byte values unpacked from
    the lowest bits of each byte up, as ONNX packs them, into the one byte per value ml_dtypes keeps (signed ones
    sign-extended)."""
    if dtype_name not in _SUB_BYTE:
        return raw.view(numpy_dtype(dtype_name)).reshape(shape)
    bits = _SUB_BYTE[dtype_name]
    codes = _unpacked(raw, bits, 1, math.prod(shape)).reshape(-1)
    if dtype_name in ("int4", "int2"):
        codes = codes.astype(np.int8)
        codes[codes >= 1 << (bits - 1)] -= np.int8(1 << bits)
    return codes.view(numpy_dtype(dtype_name)).reshape(shape)


def _bytes_of(t: Any, dtype_name: str) -> np.ndarray:
    """A TensorProto's stored bytes (uint8): its raw_data, or its int32_data, each entry a 16-bit (bfloat16) or an
    8-bit pattern (float8, a packed byte of sub-byte values), laid out as raw_data would hold them."""
    if t.raw_data:
        return np.frombuffer(t.raw_data, np.uint8)
    bits = np.asarray(t.int32_data, np.int64).astype("<u2" if dtype_name == "bfloat16" else np.uint8)
    return bits.view(np.uint8)


def _stored_bytes(dtype_name: str, count: int) -> int:
    """Bytes of ``count`` values of ``dtype_name`` as ONNX stores them (sub-byte types packed)."""
    if dtype_name in _SUB_BYTE:
        return -(-count * _SUB_BYTE[dtype_name] // 8)
    return count * numpy_dtype(dtype_name).itemsize


#: ONNX's TensorProto.DataType codes (fixed by the standard) → the numpy / ml_dtypes type their values have.
#: htsr's own table: onnx before 1.19 maps bfloat16 and the float8 types to float32 and int4 to int8 (their
#: computation type), which made every such weight read as "truncated or corrupt" (half its expected size)
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "object",
                9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128",
                16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2", 20: "float8_e5m2fnuz",
                21: "uint4", 22: "int4", 23: "float4_e2m1fn", 24: "float8_e8m0fnu", 25: "uint2", 26: "int2",
                27: "float6_e2m3fn", 28: "float6_e3m2fn"}


def _dtype_name(data_type: int) -> str | None:
    """The type name of ONNX data type code ``data_type``, None for one htsr does not know (``onnx`` unused: the
    codes are the standard's)."""
    return _ONNX_DTYPES.get(data_type) if isinstance(data_type, int) else None


def _torch_scope(node: Any, op: bool = False) -> str:
    """The module path torch's dynamo exporter records on a node (``metadata_props``
    ``pkg.torch.onnx.name_scopes``: ``['', 'm', …, 'm.encoder.layer.0.attention.self.query', 'linear']``,
    the last entry the operation; that with ``op``), or ''."""
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(p.value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return ""
            if isinstance(scopes, list) and len(scopes) >= 2 and all(isinstance(x, str) for x in scopes):
                return scopes[-1] if op else scopes[-2]
    return ""


#: a PyTorch module's bias parameter: ``….bias``, ``….in_proj_bias``
_BIAS = re.compile(r"(?:[A-Za-z_]\w*(\.\w+)*\.)?(\w+_)?bias")  # (a root module's own: 'bias')

#: the input that is a layer's bias, of the operators that take one (onnxruntime's fused and quantized ones as
#: it writes them); the others' bias is the Add after them (OnnxFile._added)
_BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2, "FusedConv": 2, "FusedGemm": 2, "QLinearConv": 8, "QGemm": 6}

#: the operation of an ``nn.Linear`` (``F.linear``) in dynamo's scopes: 'linear', 'linear_3'
_LINEAR_OP = re.compile(r"linear(_\d+)?")


def _scope_name(node_name: str, collapse: bool = True) -> str:
    """'/encoder/layer.0/attention/self/query/MatMul' → 'encoder.layer.0.attention.self.query'; an
    onnxruntime fusion's '/enc/fc1/MatMul/MatMulAddFusion' → 'enc.fc1', the fused operator's name dropped
    with the node's. PyTorch's exporter gives an ``nn.Sequential`` a scope of its own before its children's,
    which are named with the Sequential's name: '/mlp/mlp.0/MatMul' is module ``mlp.0`` (``collapse``;
    without it, ``mlp.mlp.0``, as it would be for a ModuleList ``mlp`` inside a module ``mlp``)."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) == 1 and node_name.startswith("/") and _OP_INSTANCE.fullmatch(parts[0]):
        return ""  # PyTorch's exporter's '/MatMul': an operator of the root module, which has no name
    if len(parts) <= 1:
        return "".join(parts)
    parts = parts[:-1]
    while len(parts) > 1 and _OP_INSTANCE.fullmatch(parts[-1]):
        parts = parts[:-1]
    if collapse:
        parts = [p for k, p in enumerate(parts) if k + 1 == len(parts) or not parts[k + 1].startswith(p + ".")]
    return ".".join(parts)


#: a PyTorch parameter's path (``transformer.h.0.attn.c_attn.weight``, ``experts.gate_up_proj``): dotted words
_TORCH_PARAMETER = re.compile(r"[A-Za-z_]\w*(\.\w+)+")


def _kept_as_stored(name: str, stored: str, opaque: bool) -> bool:
    """Whether a MatMul / Gemm operand stored [in, out] is kept so rather than turned to [out, in]: a tensor
    under a PyTorch parameter's own name is that parameter as its module holds it, and a module that holds
    [in, out] multiplies x @ W itself (Hugging Face's Conv1D in GPT-2, ``nn.Parameter`` experts). An
    ``nn.Linear`` weight, [out, in], reaches MatMul as a folded transposed copy of an opaque name
    (``onnx::MatMul_12``, dynamo's ``val_3``), or by name through Gemm's ``transB=1`` or a ``Transpose``
    node, none of which is this. onnxruntime's quantizer marks a weight it transposed (``_Transposed``)."""
    return not opaque and _TORCH_PARAMETER.fullmatch(name) is not None and "_Transposed" not in stored


def _tied(built: list[tuple[TensorRef, bool]]) -> list[tuple[TensorRef, bool]]:
    """Rows whose matrices hold the same values get one storage key: one matrix, analysed once. A dense row equal
    to an embedding table (a tied LM head, exported as a folded transposed copy of the table), and rows of one
    module equal to one another, of which one at least is an exporter's copy, named from its node rather than
    by its own tensor (dynamo's constant folding gives a module called k times k copies ``val_0``, ``val_2`` …
    under its name: an ALBERT-style shared layer, an unrolled ``nn.RNN``'s recurrent weight). Rows of other
    modules are other parameters, even when equal (identity-initialised layers), and so are two tensors under
    their own names. Only rows of a shape and module another row has (of a table's shape, for a table) are
    loaded, once each, to be compared by digest."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    tables = {tuple(ref.shape) for ref, _ in built if ref.kind == "embedding" and len(ref.shape) == 2}
    for i, (ref, _) in enumerate(built):
        if ref.kind in ("dense", "embedding") and len(ref.shape) == 2:
            # (a table's shape: its rows and the table, by shape; the others by shape and module)
            groups[(tuple(ref.shape),) if tuple(ref.shape) in tables else (tuple(ref.shape), ref.name)].append(i)
    keys: dict[int, tuple] = {}
    for key, group in groups.items():
        if len(group) < 2 or (len(key) == 2 and all(built[i][1] for i in group)):  # (a table's group holds it)
            continue
        first: dict[bytes, int] = {}  # a matrix's digest → the first row holding it
        for i in group:
            try:
                digest = _digest(built[i][0].load())
            except Exception:  # noqa: BLE001 - a row that cannot be read says so when it is analysed
                continue
            j = first.setdefault(digest, i)
            a, b = built[j], built[i]
            if j != i and (a[0].name == b[0].name and not (a[1] and b[1])
                           or "embedding" in (a[0].kind, b[0].kind)):
                keys[i] = keys[j] = keys.get(j) or a[0].storage_key or ("onnx tied", j)
    return [(dataclasses.replace(ref, storage_key=keys[i]) if i in keys else ref, own)
            for i, (ref, own) in enumerate(built)]


def _digest(a: np.ndarray) -> bytes:
    """A matrix's values as a digest: its dtype, shape and bytes."""
    import hashlib

    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(f"{a.dtype.str}{a.shape}".encode(), digest_size=20)
    h.update(a.view(np.uint8).reshape(-1) if a.size else b"")
    return h.digest()


class _Use:
    """How one tensor is used: the typed node, which input, and whether it got there directly; ``op`` and
    ``index`` are those of the float operator an integer one stands for (QLinearMatMul's input 3 is
    MatMul's input 1), -1 for an input that is no weight of it (a scale, a zero point)."""

    def __init__(self, node: Any, index: int, direct: bool, flipped: bool = False) -> None:
        self.node, self.direct = node, direct
        self.flipped = flipped  # reached through a Transpose of a 2-D tensor (an odd number of them)
        self.op, inputs = _STAND_INS.get(node.op_type, (node.op_type, None))
        self.index = index if inputs is None else inputs.get(index, -1)


@dataclasses.dataclass(frozen=True)
class _Dequantized:
    """An integer weight's float values, :meth:`load`-ed as W = (q − zero_point)·scale; ``bits`` per code;
    which entries share a scale: one for the whole tensor (``layout`` "tensor"), one per index of ``axis``
    ("axis"), one per ``block`` entries along ``axis`` ("block"), MatMulNBits' blocks along K ("nbits"), or a
    DynamicQuantizeLSTM weight's per direction and gate output ("gates")."""

    load: Callable[[], np.ndarray]
    bits: int
    layout: str
    axis: int
    block: int


class OnnxFile:
    """The weights of one ``.onnx`` model, read lazily (see the module docstring for the rules)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self.skipped: list[tuple[str, str]] = []
        # (name, reason) of the initializers that are no weights at all (1-D, integer shapes and indices)
        self.not_weights: list[tuple[str, str]] = []
        self.input_files: set[Path] = {self.path.resolve()}  # and its external data files, found below
        self._stamps: dict[Path, tuple] = {}  # each external data file's file_stamp, when first read
        self._spans: dict[Path, dict[str, tuple[int, int, str]]] = defaultdict(dict)  # external data, per file
        onnx = _onnx()
        from google.protobuf.message import DecodeError  # protobuf comes with onnx

        self._onnx = onnx
        try:
            model = onnx.load(str(self.path), load_external_data=False)
        except (DecodeError, ValueError, TypeError, RuntimeError, OSError, UnicodeDecodeError) as e:
            detail = str(e).splitlines()[0] if str(e) else e.__class__.__name__
            raise self._fail(f"not a valid ONNX model ({detail}); the file is truncated or corrupt: "
                             "re-export or download it again") from None
        if model.ir_version <= 0 or not model.opset_import or not (
            len(model.graph.node) or len(model.graph.initializer)
        ):
            raise self._fail("not a valid ONNX model (no ir_version, opset or graph); the file is truncated "
                             "or corrupt: re-export or download it again")
        self._model = model  # keeps the TensorProtos (and any embedded data) alive for the loaders
        try:
            self._refs = self._collect(model.graph)
            for target, spans in self._spans.items():  # as safetensors and GGUF: each tensor its own bytes
                if overlap := first_overlap(list(spans.values())):
                    raise self._fail(f"tensors {overlap[0]!r} and {overlap[1]!r} overlap in the external data "
                                     f"{target.name}; the file is corrupt: re-export the model")
        except SourceError:
            raise
        except Exception as e:  # a protobuf that parses but holds nonsense (found by the fuzz test)
            raise self._fail(f"corrupt ONNX graph ({described(e, 200)}); re-export or "
                             "download it again") from None

    def _fail(self, what: str) -> SourceError:
        return SourceError(f"{self.path}: {what}")

    # -------------------------------------------------------------------------------------- graph walk

    def _collect(self, graph) -> list[TensorRef]:
        onnx = self._onnx
        tensors: dict[str, Any] = {}  # name → TensorProto (initializers and Constant values), graph order
        nodes: list[Any] = []
        consumers: dict[str, list[tuple[Any, int]]] = defaultdict(list)
        producers: dict[str, Any] = {}  # value → the node that writes it

        initializers: set[str] = set()  # (a Constant's scalars and shapes are the graph's plumbing, not tensors)

        def walk(g) -> None:
            for t in g.initializer:
                if t.name in tensors and tensors[t.name] is not t:  # If/Loop branches scope their own names
                    self.not_weights.append((f"{t.name} ({g.name or 'a subgraph'})", "an initializer of a name "
                                             "an earlier (sub)graph's has: only that one is read"))
                    continue
                tensors[t.name] = t
                initializers.add(t.name)
            for sp in g.sparse_initializer:  # (rare: no exporter of trained models writes them)
                self.not_weights.append((sp.values.name or "(a sparse initializer)", "a sparse initializer: htsr "
                                         "reads dense tensors; save the model with dense initializers"))
            for n in g.node:
                nodes.append(n)
                for i, x in enumerate(n.input):
                    if x:
                        consumers[x].append((n, i))
                producers.update((o, n) for o in n.output if o)
                if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and n.output:
                    for a in n.attribute:
                        if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                            if tensors.setdefault(n.output[0], a.t) is not a.t and len(a.t.dims) >= 2:
                                self.not_weights.append((f"{n.output[0]} ({g.name or 'a subgraph'})", "a Constant "
                                                         "of a name an earlier (sub)graph's has: only that one is read"))
                        elif a.name == "sparse_value" and a.type == onnx.AttributeProto.SPARSE_TENSOR:
                            self.not_weights.append((n.output[0], "a sparse Constant: htsr reads dense tensors; save "
                                                     "the model with dense initializers"))
                for a in n.attribute:
                    if a.type == onnx.AttributeProto.GRAPH:
                        walk(a.g)
                    for sg in a.graphs:
                        walk(sg)

        walk(graph)
        node_order = {id(n): k for k, n in enumerate(nodes)}

        def walk(name: str, start: Any, follow: Callable[[Any, int, Any], Any]) -> Iterator[tuple[int, list]]:
            """Breadth-first from tensor ``name`` through the ops ``follow(node, input, state)`` lets through (it
            gives the state past the op, None to stop there), ``start`` the state at ``name``: per hop, the typed
            consumers reached, as (node, input, state)."""
            frontier, seen = [(name, start)], {name}
            for hop in range(_MAX_HOPS):
                nxt, found = [], []
                for v, state in frontier:
                    for n, i in consumers.get(v, ()):
                        if not _known(n):
                            continue
                        if n.op_type in _TYPED_OPS:
                            found.append((n, i, state))
                        elif (past := follow(n, i, state)) is not None:
                            nxt += [(o, past) for o in n.output if o and o not in seen]
                            seen.update(n.output)
                yield hop, found
                frontier = nxt
                if not frontier:
                    return

        def find_use(name: str, rank: int) -> _Use | None:
            """Breadth-first through pass-through ops to the first typed consumer (for a matrix, through
            Transpose too: an exporter that does not fold constants feeds Linear's [out, in] to MatMul so)."""
            def follow(n: Any, i: int, flipped: bool) -> bool | None:
                if n.op_type == "Transpose" and rank == 2:
                    return flipped ^ (next((list(a.ints) for a in n.attribute if a.name == "perm"), [1, 0]) == [1, 0])
                if n.op_type in _PASS_THROUGH and (i == 0 or n.op_type not in _QDQ):  # not a scale
                    return flipped
                return None

            for hop, found in walk(name, False, follow):
                # (a stand-in's scale or mask is no weight of it)
                uses = [u for n, i, flipped in found if (u := _Use(n, i, hop == 0, flipped)).index >= 0]
                if uses:
                    return min(uses, key=lambda u: node_order[id(u.node)])
            return None

        # the values computed from constants alone (a zero point's Cast), and the size of their largest constant
        const_size = {n: math.prod(int(d) for d in t.dims) for n, t in tensors.items()}
        for n in nodes:  # (in graph order: a node's inputs come before it)
            if n.op_type == "Constant" and n.output and n.output[0] not in const_size:  # value_float(s), value_int(s)
                size = max([len(a.floats) + len(a.ints) for a in n.attribute] + [1])
                const_size[n.output[0]] = size
            elif (any(n.input) and all(x in const_size for x in n.input if x)
                  and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute)):
                # (computed from constants: a Cast, a Reciprocal of a scale; not a node without inputs, RandomNormal,
                # nor an If / Loop / Scan, whose body reads the graph's values too)
                const_size.update((o, max(const_size[x] for x in n.input if x)) for o in n.output if o)

        def reached(name: str) -> tuple[_Use, list[str]] | None:
            """The operator a weight that :func:`find_use` does not type reaches through ops htsr does not
            follow (:data:`_UNFOLLOWED`), and those ops in order of the path; None if it reaches none so. An
            arithmetic op is followed only where the weight meets smaller constants there (a dequantization's
            scale and zero point): a mask multiplied into the activations, or a zero point subtracted from the
            codes, reaches no operator as its weight."""
            size = math.prod(int(d) for d in tensors[name].dims)

            def constants_smaller(n: Any, i: int) -> bool:
                return all(const_size.get(x, size) < size for k, x in enumerate(n.input) if k != i and x)

            def follow(n: Any, i: int, path: tuple) -> tuple | None:
                if n.op_type in _QDQ and i > 0:  # (a scale)
                    return None
                if n.op_type in _PASS_THROUGH:
                    return path
                if n.op_type in _UNFOLLOWED and (constants_smaller(n, i) if n.op_type in ("Mul", "Div", "Sub")
                                                 else i == 0):  # (not a Reshape's shape)
                    return (*path, n.op_type)
                return None

            for _, found in walk(name, (), follow):
                for n, i, path in found:
                    use = _Use(n, i, False)
                    if path and use.index in _WEIGHT_INPUTS.get(use.op, ()):
                        return use, list(dict.fromkeys(path))
            return None

        def unfollowed(name: str, dtype: str) -> str:
            """Why a weight reaching its operator through ops htsr does not follow is not read, or ''."""
            if (got := reached(name)) is None:
                return ""
            use, path = got
            article = "an" if dtype.startswith("int") else "a"  # (a uint8, a float16)
            if dtype in FLOAT_DTYPES:
                return f"{article} {dtype} tensor that reaches {use.node.op_type} through {', '.join(path)}, " \
                       "which htsr does not follow"
            return (f"{article} {dtype} weight that reaches {use.node.op_type} through {', '.join(path)}: a "
                    "dequantization htsr does not read (it reads DequantizeLinear and onnxruntime's quantized "
                    "operators); analyse the float model")

        # (node order, name, tensor, use, loader of an integer weight's floats, their shape if not the tensor's)
        pending: list[tuple[int, str, Any, _Use, _Dequantized | Callable[[], np.ndarray] | None,
                           tuple[int, ...] | None]] = []
        for name, t in tensors.items():
            if any(d < 0 for d in t.dims):  # (-2, -2) has a positive product: the size checks would pass it
                raise self._fail(f"tensor {name!r}: negative dimension in {list(t.dims)}; the file is corrupt")
            uses = consumers.get(name, ())
            if uses and all(_parameter_input(n, i) for n, i in uses):  # (2-D block scales, packed zero points too)
                if len(t.dims) >= 2 or name in initializers:
                    self.not_weights.append((name, "quantization scale or zero point"))
                continue
            if len(t.dims) < 2:
                if name in initializers:  # a quantizer's scales and zero points, else what a state dict's would be
                    self.not_weights.append((name, "quantization scale or zero point" if _QUANT_PARAM.search(name)
                                             else classify(name, tuple(t.dims))[1]))
                continue
            dtype = _dtype_name(t.data_type)
            loader, unreadable, shape = None, "", None
            # an FP8 (or FP4) weight read by DequantizeLinear is codes, dequantized with its scale as an integer one
            coded = dtype is not None and dtype.startswith(("float8", "float4")) and any(
                n.op_type == "DequantizeLinear" and i == 0 and _known(n) for n, i in uses)
            nbits = next((n for n, i in uses if i == 1 and n.op_type == "MatMulNBits"
                          and n.domain == "com.microsoft"), None)
            if dtype is None:  # a weight's row (or its listing) says so; the other layers are read
                unreadable = f"data_type {t.data_type}: not a tensor type onnx {onnx.__version__} can read"
                loader = skipped_loader(f"{unreadable}; re-export the model")
            elif nbits is not None and dtype == "uint8":
                got, shape = self._nbits(name, t, nbits, tensors)
                if isinstance(got, str):
                    unreadable, loader = got, skipped_loader(f"{got}; analyse the float model")
                else:
                    loader = got
            elif dtype not in FLOAT_DTYPES or coded:
                quant = self._quantization(name, consumers, tensors) if dtype in _QUANT_DTYPES or coded else None
                if quant is None and dtype.startswith(("float", "complex")):  # values, not indices: a row says so
                    quant = f"{dtype} values (htsr reads float16/32/64, bfloat16, FP8 and dequantized integers)"
                elif quant is None and dtype in _QUANT_DTYPES and (got := reached(name)):
                    # an integer weight dequantized as arithmetic (Cast → Mul(scale) → MatMul): a row says so, as
                    # of a state dict's int8 weight without its scale
                    use = got[0]
                    loader = skipped_loader(unfollowed(name, dtype))
                    pending.append((node_order[id(use.node)], name, t, use, loader, None))
                    continue
                elif quant is None:
                    if name in initializers:
                        self.not_weights.append((name, f"{dtype} tensor: shapes, indices, masks"))
                    continue
                loader = self._dequantized(name, t, *quant, tensors) if not isinstance(quant, str) else quant
                if isinstance(loader, str):  # a quantized weight htsr cannot dequantize: its row says why
                    unreadable, loader = loader, skipped_loader(f"{loader}; analyse the float model")
            use = find_use(name, len(t.dims))
            if (use is None and uses and loader is None and not _OPAQUE.match(name)
                    and classify(name, tuple(int(d) for d in t.dims))[0] == "embedding"):
                # a learned table added to the activations (ViT's position_embeddings, by Add): a table by its
                # name, as in the model's state dict
                use = _Use(min((n for n, _ in uses), key=lambda n: node_order[id(n)]), 0, True)
                use.op = "table"
            if use is None:  # listed here (a weight that gets a row is not listed as well)
                self.skipped.append((name, unreadable or unfollowed(name, dtype) or "used by no MatMul/Gemm/Einsum/"
                                                                                    "Conv/ConvTranspose/Gather/LSTM/GRU/RNN"))
                continue
            pending.append((node_order[id(use.node)], name, t, use, loader, shape))
        pending.sort(key=lambda p: p[0])  # model order: the order of the consuming nodes
        self._consumers, self._producers = consumers, producers
        self._rnn_instances: dict[str, dict[int, int]] = {}  # per scope: its recurrent nodes' layer numbers
        # the module paths the tensors' own names show (a bias's 'mlp.0.bias': module mlp.0)
        self._modules = {n.rpartition(".")[0] for n in tensors if "." in n and not _OPAQUE.match(n)}
        # biases under a PyTorch parameter's name: they name an opaque weight beside them (_bias_named); an
        # integer one onnxruntime's quantizer wrote ('enc.in_proj_bias_quantized') under its float name
        self._biases = {n: n.removesuffix("_quantized") for n, t in tensors.items()
                        if len(t.dims) == 1 and _BIAS.fullmatch(n.removesuffix("_quantized"))}
        # the first two dotted components of the readable names, to align node scopes with them
        self._prefixes = {".".join(n.split(".")[:2]) for _, n, _, _, _, _ in pending
                          if not _OPAQUE.match(n) and "." in n}

        built: list[tuple[TensorRef, bool]] = []  # (ref, named after its own tensor)
        self._count = 0  # tensors with rows (a bidirectional RNN's weight has two)
        for _, name, t, use, loader, shape in pending:
            # onnxruntime's quantizer names a weight <name>_quantized (<name>_Transposed_quantized when it
            # turned a Gemm's [out, in] B into MatMulInteger's [in, out]): the float model's name again
            # (and its MatMulNBits quantizer <name>_Q4, onnxruntime-genai's <name>_Q4G128)
            shown = _NBITS_SUFFIX.sub("", name).removesuffix("_quantized").removesuffix("_Transposed") if loader else name
            refs = [ref for ref in self._typed_refs(shown, t, use, loader, shape) if ref is not None]
            self._count += bool(refs)
            built += [(ref, ref.name.startswith(shown)) for ref in refs]
        built = _tied(built)
        # names made unique, a tensor's own name first: a name taken from an opaque tensor's node
        # ('fc.weight' for onnx::MatMul_5 under /fc/MatMul) never takes a tensor's own name from it
        names: dict[int, str] = {}
        taken: set[str] = set()
        for own in (True, False):
            for i, (ref, is_own) in enumerate(built):
                if is_own == own:
                    names[i] = self._unique(ref.name, taken)
                    taken.add(names[i])
            taken |= tensors.keys()
        return [dataclasses.replace(ref, name=names[i]) for i, (ref, _) in enumerate(built)]

    def _bias_named(self, node: Any, torch_scope: str = "") -> str:
        """The weight's name its bias gives, '' if none: a PyTorch module's bias (``conv1d.bias``, an
        ``nn.MultiheadAttention``'s ``in_proj_bias``) is Conv's or Gemm's third input, or the other operand of the
        Add that takes a MatMul's output. A folded weight's name is lost (``onnx::Conv_378``), and the node's
        scope is the module whose code calls the layer (Mamba's mixer for its ``conv1d``, the attention for its
        ``in_proj_weight``); the bias keeps the parameter's path, the weight's but for its last word. Not a bias
        other nodes read too (dynamo's optimizer keeps one of several equal biases, zeros at initialisation, for
        all of them), nor one outside a dynamo node's own module (``torch_scope``).

        onnxruntime's quantizer keeps the float bias's name: QLinearConv's and QGemm's bias input, QLinearAdd's
        other operand, or the Add after the integer product's Cast and scale Mul (dynamic) or its
        QuantizeLinear → DequantizeLinear pair (QDQ), the bias itself stored as ``<bias>_quantized`` and read
        through a DequantizeLinear (or, for a dynamic conv, a Reshape)."""
        k = _BIAS_INPUT.get(node.op_type)
        value = (node.input[k] if len(node.input) > k else "") if k is not None else self._added(node)
        producer = self._producers.get(value)
        if producer is not None and producer.op_type in ("DequantizeLinear", "Reshape"):
            if len(self._consumers.get(value, ())) != 1:  # (a bias of several layers names none of them)
                return ""
            value = producer.input[0]  # the bias's stored tensor
        if value not in self._biases or len(self._consumers.get(value, ())) != 1:
            return ""
        bias = self._biases[value]
        stem = bias.rpartition(".")[0]
        if torch_scope and not (stem == torch_scope or stem.startswith(torch_scope + ".")):
            return ""
        return bias[: -len("bias")] + "weight"  # ('enc.in_proj_bias' → 'enc.in_proj_weight'; the root's 'bias')

    def _added(self, node: Any) -> str:
        """The other operand of the one Add (or QLinearAdd) that takes ``node``'s output, '' if none: directly, or
        through the nodes onnxruntime's quantizer puts between (QuantizeLinear → DequantizeLinear; Cast and Mul
        by the scales after MatMulInteger / ConvInteger), each read by the next alone."""
        passing = _QDQ | ({"Cast", "Mul"} if node.op_type in ("MatMulInteger", "ConvInteger") else set())
        value = node.output[0] if node.output else ""
        for _ in range(4):
            uses = self._consumers.get(value, ())
            adds = [(n, i) for n, i in uses if n.op_type == "Add" or (n.op_type == "QLinearAdd" and i in (0, 3))]
            if len(adds) == 1:
                n, i = adds[0]
                return next((x for x in n.input if x != value), "") if n.op_type == "Add" else n.input[3 - i]
            if len(uses) != 1 or uses[0][0].op_type not in passing or not uses[0][0].output:
                return ""
            value = uses[0][0].output[0]
        return ""

    def _borrowed_scope(self, node: Any) -> str:
        """The module path of a node without torch's metadata that onnxruntime's quantizer put in place of a
        dynamo node (``node_MatMul_1_quant``): the scope of the bias ``Add`` its output reaches through the
        quantizer's own nodes (Cast, Mul by the scale), which have none either — an Add of the ``linear``
        operation; '' if there is none (a layer without a bias: the next node with metadata is another module's,
        such as the residual ``add`` after an ``o_proj``)."""
        frontier, seen = list(node.output), set(node.output)
        for _ in range(4):
            nxt = []
            for v in frontier:
                for n, _i in self._consumers.get(v, ()):
                    scope = _torch_scope(n)
                    if scope:
                        if n.op_type == "Add" and _LINEAR_OP.fullmatch(_torch_scope(n, op=True)):
                            return scope
                        continue
                    nxt += [o for o in n.output if o and o not in seen]
                    seen.update(n.output)
            frontier = nxt
        return ""

    @staticmethod
    def _unique(name: str, taken: set[str]) -> str:
        if name not in taken:
            return name
        stem, tail = (name[: -len(".weight")], ".weight") if name.endswith(".weight") else (name, "")
        k = 2
        while f"{stem}_{k}{tail}" in taken:
            k += 1
        return f"{stem}_{k}{tail}"

    def _quantization(self, name: str, consumers: dict[str, list[tuple[Any, int]]],
                      tensors: dict[str, Any]) -> tuple[str, str, str, int, int] | str | None:
        """How the integer tensor ``name`` is dequantized: (operator, scale name, zero-point name or "", axis,
        block size), from the node that reads it — DequantizeLinear (QDQ), QLinearMatMul / QLinearConv / QGemm
        (their own scale and zero-point inputs), MatMulInteger / ConvInteger (onnxruntime's dynamic
        quantization: the zero point is an input, the scale is the ``<name>_scale`` initializer beside
        ``<name>_quantized``), or a Gather whose output a DequantizeLinear reads (a quantized embedding
        table; or, when QLinear* operators read its rows, by the ``_scale`` / ``_zero_point`` names). None
        for an integer tensor no such node reads (shapes, indices); the reason if one does but its scale
        cannot be found, or if only operators of another domain read it."""
        unknown = None
        for n, i in consumers.get(name, ()):
            if not _known(n):
                unknown = f"read by {n.domain}.{n.op_type}, an operator whose quantization htsr does not know"
                continue
            op, ins = n.op_type, list(n.input) + ["", "", ""]
            if op == "DequantizeLinear" and i == 0 and n.output:
                attrs = {a.name: self._onnx.helper.get_attribute_value(a) for a in n.attribute}
                return op, ins[1], ins[2], int(attrs.get("axis", 1)), int(attrs.get("block_size", 0))
            if op in ("QLinearMatMul", "QLinearConv", "QGemm") and _STAND_INS[op][1].get(i) is not None:
                # per output channel: B's columns (MatMul input 1; Gemm's unless transB), A's rows (input 0),
                # a kernel's c_out
                trans_b = any(a.name == "transB" and a.i for a in n.attribute)
                axis = 1 if i == 3 and op != "QLinearConv" and not (op == "QGemm" and trans_b) else 0
                return op, ins[i + 1], ins[i + 2], axis, 0
            if op == "DynamicQuantizeLSTM" and i in (1, 2):
                return op, ins[6 + 2 * i], ins[7 + 2 * i], 0, 0
            if op == "QEmbedLayerNormalization" and i in (2, 3, 4):  # per tensor
                return op, ins[i + 6], ins[i + 11], 1, 0
            if op == "QAttention" and i == 1:  # weight_scale (input 4) and weight_zero_point (7): per tensor
                return op, ins[4], ins[7], 1, 0  # or per column of [in, 3·hidden]
            if op in ("MatMulInteger", "ConvInteger") and _STAND_INS[op][1].get(i) is not None:
                scale = name.removesuffix("_quantized") + "_scale"
                if scale not in tensors:
                    return f"{op} weight without the {scale} initializer onnxruntime's quantizer writes beside it"
                zp = ins[3] if op == "ConvInteger" or i == 1 else ins[2]
                return op, scale, zp, 1 if (op, i) == ("MatMulInteger", 1) else 0, 0
            if op == "Gather" and i == 0:
                dq = next((d for o in n.output for d, k in consumers.get(o, ())
                           if k == 0 and d.op_type == "DequantizeLinear"), None)
                if dq is not None:
                    dins = list(dq.input) + ["", ""]
                    return "Gather → DequantizeLinear", dins[1], dins[2], 1, 0
                base = name.removesuffix("_quantized")  # the gathered rows go on to QLinear* operators
                if base != name and base + "_scale" in tensors:
                    zero_point = base + "_zero_point"
                    return "Gather", base + "_scale", zero_point if zero_point in tensors else "", 1, 0
        return unknown

    def _dequantized(self, name: str, t: Any, op: str, scale: str, zero_point: str, axis: int, block: int,
                     tensors: dict[str, Any]) -> _Dequantized | str:
        """The loader of an integer weight: W = (q − zero_point)·scale, per tensor, per ``axis`` or per
        block (``block`` > 0, opset 21), the scale and zero point named as :meth:`_quantization` found them
        for the operator ``op``. Returns the reason instead when they are not constants of such a layout."""
        shape = tuple(int(d) for d in t.dims)
        scale_t, zp_t = tensors.get(scale), tensors.get(zero_point) if zero_point else None
        if scale_t is None or (zero_point and zp_t is None):
            return f"{op} with a scale or zero point that is not a constant"
        axis = axis + len(shape) if axis < 0 else axis
        sshape = tuple(int(d) for d in scale_t.dims)
        if math.prod(sshape) == 1:
            layout = "tensor"
        elif not 0 <= axis < len(shape):
            return f"{op} axis {axis} outside a rank-{len(shape)} weight"
        elif block == 0 and sshape == (shape[axis],):
            layout = "axis"
        elif block > 0 and sshape == shape[:axis] + (-(-shape[axis] // block),) + shape[axis + 1:]:
            layout = "block"
        elif op == "DynamicQuantizeLSTM" and len(shape) == 3 and sshape == (shape[0], shape[2]):
            layout = "gates"  # per channel: per direction and per gate output, of [dirs, in, 4·hidden]
        else:
            return f"{op} scale of shape {list(sshape)} fits no layout of a {list(shape)} weight"
        if zp_t is not None and tuple(int(d) for d in zp_t.dims) != sshape and math.prod(zp_t.dims) != 1:
            return f"{op} zero point of shape {list(zp_t.dims)} is not its scale's {list(sshape)}"
        q_raw, s_raw = self._raw_loader(name, t), self._raw_loader(scale, scale_t)
        z_raw = self._raw_loader(zero_point, zp_t) if zp_t is not None else None

        def spread(a: np.ndarray) -> np.ndarray:  # a scale or zero point, broadcast against the weight
            a = np.asarray(a, dtype=np.float32)
            if layout == "tensor" or a.size == 1:  # (a single zero point, admitted above, for every entry)
                return a.reshape(())
            if layout == "axis":
                return a.reshape([shape[axis] if k == axis else 1 for k in range(len(shape))])
            if layout == "gates":
                return a.reshape(shape[0], 1, shape[2])
            return np.repeat(a, block, axis=axis).take(range(shape[axis]), axis=axis)

        def load() -> np.ndarray:
            q = np.asarray(q_raw(), dtype=np.float32)
            z = spread(z_raw()) if z_raw is not None else np.float32(0.0)
            return (q - z) * spread(s_raw())

        stored = _dtype_name(t.data_type)
        return _Dequantized(load, _SUB_BYTE.get(stored) or 8 * numpy_dtype(stored).itemsize, layout, axis, block)

    def _nbits(self, name: str, t: Any, node: Any,
               tensors: dict[str, Any]) -> tuple[_Dequantized | str, tuple[int, int]]:
        """The loader (or why there is none) and [K, N] shape of MatMulNBits's B (onnxruntime's block quantization, the int4 format
        of its LLM exports): B is uint8 ``[N, blocks, block_size·bits/8]``, ``bits``-bit codes packed low bits
        first, each row of K codes in blocks of ``block_size`` along K; W[n, k] = (q − zero_point)·scale of
        block k // block_size; scales ``[N·blocks]``; zero points absent (2^(bits−1)), uint8 packed per row
        like B, or floats ``[N·blocks]``. The float B is ``[K, N]`` as MatMul's (Y = A·B): its row is
        ``[N, K]``. (Where K or N is not positive, the shape is the stored one's as a matrix.)"""
        attrs = {a.name: self._onnx.helper.get_attribute_value(a) for a in node.attribute}
        ins = list(node.input) + [""] * 6
        K, N, bits, block = (int(attrs.get(k, d)) for k, d in (("K", 0), ("N", 0), ("bits", 4), ("block_size", 0)))
        shape = tuple(int(d) for d in t.dims)
        float_shape = (K, N) if K > 0 and N > 0 else (shape[0], math.prod(shape[1:]))
        readable = bits in (2, 4, 8) and block > 0 and K > 0 and N > 0
        blocks, per_byte = (-(-K // block), 8 // bits) if readable else (0, 1)
        scale_t, zp_t = tensors.get(ins[2]), tensors.get(ins[3]) if ins[3] else None
        zp_float = zp_t is not None and _dtype_name(zp_t.data_type) in FLOAT_DTYPES
        if not readable:
            why = f"MatMulNBits with bits={bits}, block_size={block}, K={K}, N={N} (htsr reads 2, 4 and 8 bits)"
        elif ins[4]:
            why = "MatMulNBits with g_idx (act-order groups)"
        elif math.prod(shape) != N * blocks * (block // per_byte) or shape[0] != N:
            why = f"MatMulNBits B of shape {list(shape)} is not [N={N}, {blocks} blocks, {block // per_byte} bytes]"
        elif scale_t is None or (ins[3] and zp_t is None):
            why = "MatMulNBits with a scale or zero point that is not a constant"
        elif math.prod(scale_t.dims) != N * blocks:
            why = f"MatMulNBits scales of shape {list(scale_t.dims)}, not N·blocks = {N * blocks}"
        elif zp_t is not None and math.prod(zp_t.dims) != N * (blocks if zp_float else -(-blocks * bits // 8)):
            why = f"MatMulNBits zero points of shape {list(zp_t.dims)} fit no layout of {N} rows of {blocks} blocks"
        else:
            why = ""
        if why:
            return why, float_shape
        q_raw, s_raw = self._raw_loader(name, t), self._raw_loader(ins[2], scale_t)
        z_raw = self._raw_loader(ins[3], zp_t) if zp_t is not None else None

        def load() -> np.ndarray:
            q = _unpacked(q_raw(), bits, N, blocks * block).astype(np.float32).reshape(N, blocks, block)
            scale = np.asarray(s_raw(), dtype=np.float32).reshape(N, blocks, 1)
            if z_raw is None:
                zero = np.float32(1 << (bits - 1))
            elif zp_float:
                zero = np.asarray(z_raw(), dtype=np.float32).reshape(N, blocks, 1)
            else:
                zero = _unpacked(z_raw(), bits, N, blocks).astype(np.float32).reshape(N, blocks, 1)
            w = ((q - zero) * scale).reshape(N, blocks * block)[:, :K]
            return np.ascontiguousarray(w.T)  # MatMul's B, [K, N]

        return _Dequantized(load, bits, "nbits", 0, block), float_shape  # (blocks along K: the row's inputs)

    def _typed_refs(self, name: str, t: Any, use: _Use,
                    loader: _Dequantized | Callable[[], np.ndarray] | None = None,
                    float_shape: tuple[int, ...] | None = None) -> Iterator[TensorRef | None]:
        """The rows of tensor ``name`` typed by ``use``; ``loader``: an integer weight's float values (its rows
        then say float32), or the loader that says why they cannot be read; ``float_shape`` their shape where
        it is not the stored tensor's (MatMulNBits)."""
        onnx = self._onnx
        op, idx, node = use.op, use.index, use.node
        shape = float_shape or tuple(int(d) for d in t.dims)
        stored = _dtype_name(t.data_type)
        dtype = "float32" if loader else stored
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        quant = loader if isinstance(loader, _Dequantized) else None
        raw = quant.load if quant else loader or self._raw_loader(name, t)
        scope, nested = _scope_name(node.name), _scope_name(node.name, collapse=False)
        if nested != scope and nested in self._modules:  # a module 'mlp' holding a ModuleList 'mlp' after all
            scope = nested
        torch_scope = _torch_scope(node) or self._borrowed_scope(node)
        if torch_scope:  # torch's dynamo exporter: node names are 'node_MatMul_36', the module path is metadata
            scope = torch_scope
        # (dynamo also names folded constants after their op: 'mul_1', 't_3', no dots as a parameter has)
        opaque = (bool(_OPAQUE.match(name)) and bool(node.name)) or (bool(torch_scope) and "." not in name)
        tokens = scope.split(".")
        if self._prefixes and ".".join(tokens[:2]) not in self._prefixes:
            # PyTorch's exporter prefixes scopes with wrapper modules ('/model/model.0/…' while the
            # parameters are 'model.0.…'): drop up to two leading components if that aligns them
            for k in (1, 2):
                if len(tokens) > k + 1 and ".".join(tokens[k : k + 2]) in self._prefixes:
                    scope = ".".join(tokens[k:])
                    break
        layer = f"{scope}.weight" if opaque and scope else name
        if opaque and op in ("MatMul", "Gemm", "Conv", "ConvTranspose"):  # (quantized: the op its node replaced)
            layer = self._bias_named(node, torch_scope) or layer
        if (op == "Gather" and torch_scope and not opaque and _TORCH_PARAMETER.fullmatch(name)
                and name.rpartition(".")[0] != torch_scope):
            # a tied table stored under its LM head's name (dynamo's 'lm_head.weight' for a tied Llama's, GPT-2's):
            # named after the module that reads it as a table, as the model's state dict names it
            layer = f"{torch_scope}.weight"

        bits = quant.bits if quant else None  # of a dequantized weight's codes (a delta's noise floor)

        def block(shp: tuple[int, ...], flipped: bool, per_slice: bool) -> int | None:
            """How many consecutive entries of the row's array share a scale (TensorRef.quant_block)."""
            if quant is None:
                return None
            layout, axis, size = quant.layout, quant.axis, quant.block
            if layout == "tensor" or (per_slice and layout == "axis" and axis == 0):  # (an RNN's direction)
                return 0
            if layout == "gates":  # a direction's [4·hidden, in]: one scale per row
                return shp[-1]
            cols = shp[-1]
            if layout == "nbits" or (layout == "block" and (1 - axis if flipped else axis) == len(shp) - 1):
                return size if cols % size == 0 else None  # blocks along each row
            if layout == "axis" and not per_slice and (1 - axis if flipped else axis) == 0:
                return math.prod(shp[1:])  # one scale per output row (channel)
            return None

        def ref(n: str, shp: tuple[int, ...], kind: str, load: Callable[[], np.ndarray], flipped: bool = False,
                per_slice: bool = False) -> TensorRef:
            return TensorRef(n, shp, dtype, load, kind, bits=bits, quant_block=block(shp, flipped, per_slice),
                             part_of=name if per_slice else None)  # (a direction of a recurrent weight)

        if op in ("MatMul", "Gemm"):
            if idx > 1:
                self.skipped.append((name, f"{op} input {idx} (bias)"))
                return
            if op == "MatMul":  # Y = X @ B with B [in, out]; Y = A @ X with A [out, in]
                # (onnxruntime's FusedMatMul may say its operand is transposed)
                transpose = (idx == 1) ^ bool(attrs.get("transB" if idx == 1 else "transA", 0))
            elif idx == 1:  # Gemm: B is [in, out] unless transB=1
                transpose = not attrs.get("transB", 0)
            else:  # Gemm: A is [out, in] unless transA=1
                transpose = bool(attrs.get("transA", 0))
            transpose ^= use.flipped  # a Transpose node on the way
            if transpose and not use.flipped and float_shape is None and _kept_as_stored(name, t.name, opaque):
                transpose = False  # a module's own [in, out] parameter, as its state dict holds it (HF Conv1D)
            if len(shape) == 2:
                # an LSTM cell exported as Gemm (Silero's if-less copy) keeps its module's name: rnn, as in torch
                kind = "rnn" if is_recurrent(layer) else "dense"
                if transpose:
                    yield ref(layer, (shape[1], shape[0]), kind, lambda: as_loaded(raw()).T, flipped=True)
                else:
                    yield ref(layer, shape, kind, lambda: as_loaded(raw()))
            elif op == "MatMul":  # batched weights [..., in, out]: a stack of matrices
                if transpose:
                    shp = shape[:-2] + (shape[-1], shape[-2])
                    yield ref(layer, shp, "stack", lambda: np.swapaxes(as_loaded(raw()), -1, -2))
                else:
                    yield ref(layer, shape, "stack", lambda: as_loaded(raw()))
            else:
                self.skipped.append((name, f"Gemm input of rank {len(shape)}"))
        elif op in ("Conv", "ConvTranspose"):  # ConvTranspose's [c_in, c_out/g, k…], as PyTorch stores it
            if idx != 1:
                self.skipped.append((name, f"Conv input {idx}"))
                return
            kind = {3: "conv1d", 4: "conv2d", 5: "conv3d"}.get(len(shape))
            if kind is None:
                self.skipped.append((name, f"Conv kernel of rank {len(shape)} (1-D, 2-D and 3-D convolutions)"))
                return
            yield ref(layer, shape, kind, lambda: as_loaded(raw()))
        elif op == "Einsum":  # a weight contracted with an input (tf2onnx's EinsumDense, torch.einsum)
            equation = attrs.get("equation", b"")
            equation = equation.decode("utf-8", "replace") if isinstance(equation, bytes) else str(equation)
            axes = einsum_axes(equation, idx, len(shape))
            if axes is not None and use.flipped:  # the equation's letters are those of the transposed 2-D tensor
                axes = tuple([1 - a for a in x] for x in axes)
            grouped = grouped_axes(shape, *axes) if axes is not None else None
            if grouped is None:
                self.skipped.append((name, f"Einsum operand {idx} of {equation!r}: not a weight contracted with "
                                     "one input"))
                return
            kind, shp, perm = grouped
            r = ref(layer, shp, kind, lambda: as_loaded(np.ascontiguousarray(np.transpose(raw(), perm)).reshape(shp)),
                    flipped=perm == (1, 0))
            # (which entries of a regrouped 3-D or larger weight share a scale is not followed)
            yield r if len(shape) == 2 else dataclasses.replace(r, quant_block=None)
        elif op == "table":  # (see _collect: an embedding by its name, read by no typed operator)
            yield ref(name, shape, "embedding", lambda: as_loaded(raw()))
        elif op == "Gather":
            if idx != 0 or len(shape) != 2:
                self.skipped.append((name, f"Gather input {idx} of rank {len(shape)}"))
                return
            yield ref(layer, shape, "embedding", lambda: as_loaded(raw()))
        elif op in _RNN_OPS:
            if idx not in (1, 2):
                self.skipped.append((name, f"{op} input {idx} (bias or state)"))
                return
            which = "ih" if idx == 1 else "hh"
            if opaque and scope:
                # the layer: this node's place among the recurrent nodes of its scope ('LSTM', 'LSTM_1', a
                # quantizer's 'LSTM_1_quant', dynamo's 'node_LSTM_68' whose number counts every node)
                instances = self._rnn_instances.setdefault(scope, {})
                instance = instances.setdefault(id(node), len(instances))
                base = f"{scope}.weight_{which}_l{instance}"
            else:
                base = name
            if len(shape) == 2:  # reached through Slice/Concat/Unsqueeze: PyTorch's [k·hidden, in]
                yield ref(base, shape, "rnn", lambda: as_loaded(raw()))
            elif len(shape) == 3 and node.op_type == "DynamicQuantizeLSTM":  # [dirs, in, k·hidden]
                dirs = shape[0]
                for d in range(dirs):
                    n = base if d == 0 else f"{base}_reverse" if dirs == 2 else f"{base}[{d}]"
                    yield ref(n, (shape[2], shape[1]), "rnn", lambda d=d: as_loaded(raw()[d]).T, per_slice=True)
            elif len(shape) == 3:
                dirs = shape[0]
                for d in range(dirs):
                    n = base if d == 0 else f"{base}_reverse" if dirs == 2 else f"{base}[{d}]"
                    yield ref(n, shape[1:], "rnn", lambda d=d: as_loaded(raw()[d]), per_slice=True)
            else:
                self.skipped.append((name, f"{op} weight of rank {len(shape)}"))

    # ----------------------------------------------------------------------------------------- loading

    def _raw_loader(self, name: str, t: Any) -> Callable[[], np.ndarray]:
        onnx = self._onnx
        if t.data_location == onnx.TensorProto.EXTERNAL:
            return self._external_loader(name, t)
        dtype_name = _dtype_name(t.data_type)
        count = math.prod(int(d) for d in t.dims)
        if t.raw_data:
            got, need = len(t.raw_data), _stored_bytes(dtype_name, count)
        else:  # typed fields: float_data (float32), double_data, int32_data (16- and 8-bit floats; 4- and
            # 2-bit values packed into one byte per element)
            field = {"float32": t.float_data, "float64": t.double_data}.get(dtype_name, t.int32_data)
            got, need = len(field), (_stored_bytes(dtype_name, count) if dtype_name in _SUB_BYTE else count)
        if got != need:  # (its row fails; the other tensors are read)
            return failing_loader(self._fail, f"tensor {name!r}: {got} stored values/bytes for shape {list(t.dims)} "
                                              f"of {dtype_name}, expected {need}; the file is truncated or corrupt")

        def load() -> np.ndarray:
            try:
                if dtype_name in _OWN_DECODING:
                    return _decoded(_bytes_of(t, dtype_name), dtype_name, tuple(int(d) for d in t.dims))
                return onnx.numpy_helper.to_array(t)
            except Exception as e:  # whatever numpy_helper trips on in a corrupt TensorProto
                raise self._fail(f"tensor {name!r}: cannot decode its data ({one_line(e, 200)}); the file is "
                                 "corrupt") from None

        return load

    def _external_loader(self, name: str, t: Any) -> Callable[[], np.ndarray]:
        info = {e.key: e.value for e in t.external_data}
        shape = tuple(int(d) for d in t.dims)
        dtype_name = _dtype_name(t.data_type)
        numpy_dtype(dtype_name)  # (a type numpy and ml_dtypes lack raises here, before the file is looked for)
        folder = self.path.parent.resolve()
        location = info.get("location", "")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
        except ValueError:  # (its row fails, as for the checks below; the other tensors are read)
            return failing_loader(self._fail, (
                f"tensor {name!r}: external data has a bad offset or length (offset {shown(info.get('offset'))}, "
                f"length {shown(info.get('length'))}); the model is corrupt: re-export it"))
        if not location:
            raise self._fail(f"tensor {name!r}: external data without a location (no file named); the model is "
                             "corrupt: re-export it")
        # the name, not where a symbolic link leads: a Hugging Face cache snapshot's files link to ../../blobs (as
        # a shard index's shards are read; a name with '..' or a root is refused)
        if os.path.isabs(location) or leaves_folder(location):
            raise self._fail(f"tensor {name!r}: external data file {shown(location)} is outside the model's folder "
                             f"{folder}; refused")
        target = folder / location
        if not os.path.isfile(target):  # (pathlib's raises on a name too long, os.path's says False)
            what = ("is not a regular file" if os.path.lexists(target) and os.path.exists(target) else
                    "is a link to a missing file" if os.path.lexists(target) else "is missing from")
            raise self._fail(f"tensor {name!r}: external data file {shown(location)} {what}"
                             + (f" {folder}" if what.endswith("from") else "") + "; copy it beside the model")
        self.input_files.add(target)
        need = _stored_bytes(dtype_name, math.prod(shape))
        if length is None:
            length = need
        if target not in self._stamps:  # (a file saved again since is not read)
            self._stamps[target] = file_stamp(target)
            try:  # (one that may not be read is said so now, not as every row's PermissionError)
                with open(target, "rb"):
                    pass
            except PermissionError as e:
                raise self._fail(f"tensor {name!r}: {unreadable(target, e.strerror)}") from None
        stamp = self._stamps[target]
        size = stamp[2]
        if length != need or offset < 0 or offset + length > size:
            return failing_loader(self._fail, (
                f"tensor {name!r}: external data {shown(location)} offset {offset} length {length} does not hold "
                f"shape {list(shape)} of {dtype_name} in its {size} bytes; truncated?"))
        self._spans[target][name] = (offset, offset + length, name)

        def load() -> np.ndarray:
            if length == 0:
                return np.zeros(shape, dtype=np.float32)
            # (sub-byte values unpacked; any other type viewed as it is stored)
            return _decoded(read_span(target, offset, length, stamp), dtype_name, shape)

        return load

    # ---------------------------------------------------------------------------------------- protocol

    def __len__(self) -> int:  # tensors, not rows
        return self._count

    def __iter__(self) -> Iterator[TensorRef]:
        yield from self._refs
