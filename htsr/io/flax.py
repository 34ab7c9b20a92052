"""Flax / JAX parameters: msgpack checkpoints (extra ``htsr[flax]``) and parameter pytrees in memory.

Neither jax nor flax is imported: a checkpoint is decoded with the ``msgpack`` package alone, and an
in-memory tree is read through the numpy array protocol of its leaves.

**Files.** :class:`FlaxMsgpackFile` reads what ``flax.serialization.to_bytes`` / ``msgpack_serialize``
write (e.g. Hugging Face's ``flax_model.msgpack``): one msgpack map of nested maps whose leaves are
arrays stored as msgpack extension type 1 (``ndarray``), its payload itself msgpack
``[shape, dtype name, C-order bytes]``. Type 3 (``npscalar``, same payload) and 2 (native complex) are
scalars, not weights; arrays above 1 GiB are split by flax into a map ``{"__msgpack_chunked_array__":
True, "shape": {"0": d0, …}, "chunks": {"0": 1-D array, …}}``, which is read as one array.

**Memory.** msgpack has no index: a file's structure can only be decoded as a whole. It is
memory-mapped and decoded once when opened, by htsr's own decoder, which records where each array's
payload lies instead of copying it (msgpack's decoder copies every payload: the whole file in memory)
and parses only the payload's small header — shape and dtype. A tensor's array is made when its
:class:`~htsr.io.base.TensorRef` is loaded, from its own bytes, read then (:func:`~htsr.io.base.read_array`:
a stacked layer's alone) and dropped with it (then the transposition below, which copies that one tensor;
reduced-precision floats are converted to float32; a chunked array is concatenated, a stacked layer from
the chunks that hold it). So memory holds the structure and one tensor at a time, as for safetensors (a 512 MB
checkpoint of eight 2048 × 8192 kernels: peak RSS 425 MB, 316 MB from its safetensors copy; 951 MB with msgpack's
decoder). An in-memory tree is read where it is: a leaf (numpy or jax array) is converted with ``numpy.asarray``
only when loaded.

**Which parameters.** If the top-level map has a ``params`` entry (a ``variables`` dict, a
``TrainState``) — or one entry of it does (``{"state": TrainState}``) — only that collection is read;
the others (``batch_stats``, ``opt_state``, ``step`` …) are listed in :attr:`FlaxTree.skipped`. Without
one, the whole tree is read except a top-level optimizer state (``opt_state``, ``optimizer`` …, or an entry
holding optax's ``mu`` and ``nu``: its moments are shaped like the weights); a flax.optim ``Optimizer``
(``{"target", "state": {"param_states"}}``) is read as its ``target``. An integer kernel (AQT's int8) gets a
row saying it is not analysed: its scale is another leaf. Names are the dotted key paths below it, so
``{"params": {"encoder": {"layer_0": {"query": {"kernel": …}}}}}`` gives ``encoder.layer_0.query``. A
boxed parameter (``nn.with_partitioning``: ``{"value": kernel, "names": …}``) is the array it holds.

**Kinds and orientation.** htsr orients matrices like PyTorch, ``[out, in]``; Flax stores them the
other way round. A leaf is named after its module (the leaf key dropped) when it is a ``kernel`` or an
``embedding``:

=========================  ================================  ======================================
Flax leaf                  Flax layout                       htsr tensor (kind, shape)
=========================  ================================  ======================================
``Dense`` ``kernel`` 2-D   ``[in, out]``                     ``dense`` ``[out, in]`` (transposed)
``Conv`` ``kernel`` 3-D    ``[k, c_in/g, c_out]``            ``conv1d`` ``[c_out, c_in/g, k]``
``Conv`` ``kernel`` 4-D    ``[kh, kw, c_in/g, c_out]``       ``conv2d`` ``[c_out, c_in/g, kh, kw]``
``Conv`` ``kernel`` 5-D    ``[kd, kh, kw, c_in/g, c_out]``   ``conv3d`` ``[c_out, c_in/g, kd, kh, kw]``
``DenseGeneral`` kernel    ``[*in_axes, *out_axes]``         ``dense`` ``[prod(out), prod(in)]``
``Embed`` ``embedding``    ``[vocab, dim]``                  ``embedding`` as it is
TF-Keras cell ``kernel``   ``[in, 4·units]``                 ``rnn`` ``[4·units, in]`` (``recurrent_kernel`` too)
=========================  ================================  ======================================

A ``kernel`` of 3 or more dimensions is a ``DenseGeneral`` kernel if its module is named ``query``,
``key``, ``value``, ``qkv``, ``kv``, ``q``, ``k``, ``v``, ``q_proj``, ``k_proj``, ``v_proj``, ``out``,
``o``, ``out_proj``, ``o_proj``, ``proj_out``, ``output_proj``, ``attn_out`` or ``DenseGeneral_<n>``, or
if its module's ``bias`` has two or more axes (a DenseGeneral's bias is its output axes; a
convolution's is 1-D); otherwise it is a convolution if its module's name contains ``conv``
(``Conv_0``, ``conv1``, ``ConvTranspose_0`` …), if it has 4 or 5 dimensions, or 3 and a 1-D bias (a
Conv1D); a 3-D kernel without a bias is a ``DenseGeneral`` one (an attention projection). The checkpoint
does not record which axes of a ``DenseGeneral`` kernel are inputs: the bias's axes are the outputs
when there is one; otherwise only the first axis is an input (flax's default ``axis=-1``), except for
an output projection (``out``, ``o``, ``out_proj``, ``o_proj`` …: flax's ``MultiHeadDotProductAttention``
output uses ``axis=(-2, -1)``), whose inputs are all axes but the last. So an attention ``query`` kernel ``[dim, heads, head_dim]``
becomes ``[heads·head_dim, dim]`` and its ``out`` kernel ``[heads, head_dim, dim]`` becomes
``[dim, heads·head_dim]`` — exactly the matrices of a PyTorch ``nn.Linear``. :attr:`FlaxTensorRef.path`
keeps the leaf's full key path and :attr:`FlaxTensorRef.flax_shape` its stored shape. Convolution
kernels of more than 5 dimensions are not analysed.

**Stacked layers.** ``nn.scan``, ``nn.vmap`` and ``nn.remat_scan`` give every parameter of the block a
leading layer axis (two for ``remat_scan(lengths=(a, b))``). A block is recognised by its parameters: a
norm's ``scale`` or ``bias`` of more than one axis, an ``embedding`` of more than two, or a ``bias``
that is its kernel's output axes only once leading axes shared with the kernel are set aside. The
highest enclosing module whose every parameter shares those leading sizes is the stack (so its
bias-free kernels are stacked too), and each of its kernels gives one row per layer, named
``<module>[k]`` with k the layer in the order the scan runs them, rows written layer by layer. A scan
along axis 1 (t5x's and MaxText's ``param_scan_axis=1``: norm scales [dim, layers], kernels
[in, layers, out]) is recognised by its norm scales when axis 1 covers the block and axis 0 does not (an
attention output [heads, layers, head_dim, dim]); a block whose every parameter fits both is read along
axis 0, flax's default.

Biases, LayerNorm / BatchNorm ``scale`` (of any number of axes), and every leaf of fewer than two
dimensions are not yielded.
Any other leaf of two dimensions, leading 1s aside (a parameter a module created under its own name,
e.g. a ViT's ``pos_embedding`` ``[1, tokens, dim]``), is yielded under its full key path with no kind, so
htsr infers it from the name as for any file; one of three or more dimensions has no known layout
and is listed in :attr:`~FlaxTree.skipped`.

**Bad input** — not msgpack, a truncated file, trailing bytes, a top level that is not a map — raises
:class:`~htsr.errors.SourceError` with a one-line message naming the file when it is opened. One corrupt
array (a malformed payload, a byte count that is not ``prod(shape) × itemsize``, an unknown dtype, an
inconsistent chunked array) fails alone, listed in :attr:`~FlaxTree.skipped` with one line naming it and
saying why; the other arrays are analysed.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import struct
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SourceError
from ..tensors import classify, names_a_conv
from .base import (
    LFS_POINTER,
    TensorRef,
    as_loaded,
    file_stamp,
    import_extra,
    index_part,
    lfs_pointer_error,
    numpy_dtype,
    one_line,
    read_array,
    skipped_loader,
)

__all__ = ["FlaxMsgpackFile", "FlaxTensorRef", "FlaxTree", "flax_tensor", "is_flax_tree", "is_msgpack_checkpoint"]

EXT_NDARRAY, EXT_NATIVE_COMPLEX, EXT_NPSCALAR = 1, 2, 3  # flax.serialization._MsgpackExtType
CHUNKED = "__msgpack_chunked_array__"

_IN_PROJ = frozenset({"query", "key", "value", "qkv", "kv", "q", "k", "v", "q_proj", "k_proj", "v_proj"})
_OUT_PROJ = frozenset({"out", "o", "out_proj", "o_proj", "proj_out", "output_proj", "attn_out"})
# flax's automatic module names: DenseGeneral_3 is never a convolution
_AUTO_DENSE_GENERAL = re.compile(r"DenseGeneral_\d+")
# a boxed parameter as flax.serialization stores it (nn.with_partitioning's Partitioned, LogicallyPartitioned):
# {"value": array, "names": …}
_BOX_KEYS = frozenset({"value", "names", "mesh", "rules", "sharding", "sharding_names"})
# top-level entries of a saved training state that hold no weights of the model (optax's moments …)
_TRAINING_STATE = frozenset({"opt_state", "optimizer", "optimizer_state", "optim_state", "tx_state"})


def is_msgpack_checkpoint(head: bytes) -> bool:
    """True if the first bytes are a non-empty msgpack map whose first key is a string (a Flax checkpoint).

    An empty map (``0x80``) is not accepted: that byte starts every PyTorch pickle.
    """
    if not head:
        return False
    b = head[0]
    if 0x81 <= b <= 0x8F:
        k = 1
    elif b == 0xDE and head[1:3] not in (b"", b"\x00\x00"):
        k = 3
    elif b == 0xDF and head[1:5] not in (b"", b"\x00\x00\x00\x00"):
        k = 5
    else:
        return False
    return len(head) > k and (0xA0 <= head[k] <= 0xBF or head[k] in (0xD9, 0xDA, 0xDB))


def _msgpack() -> Any:
    return import_extra("msgpack", "flax", "reading Flax msgpack checkpoints")



# ------------------------------------------------------------------------------------ msgpack leaves


class _Payload:
    """An ``ndarray`` extension payload: where it lies in ``path`` (``data[start:end]`` of the file's memory map,
    read for the header while the file is opened); :meth:`array` makes the array on demand from its own bytes,
    read then (the file's map is closed once it is decoded: pages read stay resident as long as a map holds them)."""

    __slots__ = ("data", "dtype", "end", "offset", "path", "shape", "stamp", "start")

    def __init__(self, data: Any, start: int, end: int, path: Path, stamp: tuple | None = None) -> None:
        self.data, self.start, self.end, self.path, self.stamp = data, start, end, path, stamp
        self.shape: tuple[int, ...] = ()
        self.dtype = ""
        self.offset = 0  # of the array bytes, from start

    def parse(self, msgpack: Any) -> str | None:
        """Read the header ``[shape, dtype name, bin]`` without copying the bytes; an error message or None."""
        data = self.data[self.start:self.start + min(self.end - self.start, 4096)]  # the header is small
        u = msgpack.Unpacker(raw=True, strict_map_key=False)
        u.feed(data)
        try:
            if u.read_array_header() != 3:
                return "its payload is not [shape, dtype, bytes]"
            shape, dtype = u.unpack(), u.unpack()
        except Exception as e:  # noqa: BLE001 - any malformed header
            return f"its array header cannot be decoded ({one_line(e)})"
        if not (isinstance(shape, (list, tuple)) and all(isinstance(d, int) and d >= 0 for d in shape)):
            return f"its shape {shape!r} is not a list of sizes"
        if not isinstance(dtype, bytes):
            return f"its dtype {dtype!r} is not a name"
        name = dtype.decode("ascii", "replace")
        try:
            dt = numpy_dtype(name)
        except Exception:  # noqa: BLE001 - TypeError, ValueError, SyntaxError … from numpy's dtype parser
            return f"its dtype {name!r} is not a numpy dtype"
        if dt.hasobject or dt.fields is not None:
            return f"its dtype {name!r} is not a plain numeric dtype"
        pos = u.tell()
        tag = data[pos] if pos < len(data) else None
        widths = {0xC4: 1, 0xC5: 2, 0xC6: 4}
        if tag not in widths:
            return "its data is not a msgpack bin object"
        w = widths[tag]
        n = int.from_bytes(data[pos + 1 : pos + 1 + w], "big")
        start = pos + 1 + w
        expected = math.prod(shape) * dt.itemsize
        if n != self.end - self.start - start:
            return f"its data claims {n} bytes but holds {self.end - self.start - start}"
        if n != expected:
            return (f"{n} bytes of data for shape {tuple(shape)} {name} "
                    f"({math.prod(shape)} × {dt.itemsize} = {expected} bytes expected)")
        # (a shape its bytes do not hold is not kept: 10⁶ scanned layers declared over 4 bytes made 10⁶ rows)
        self.shape, self.dtype, self.offset = tuple(shape), name, start
        return None

    def array(self, idx: tuple[int, ...] = ()) -> np.ndarray:
        """The array, or its ``[idx]`` (one layer of a stack)."""
        dt = numpy_dtype(self.dtype)
        count = math.prod(self.shape)
        if count == 0:
            return np.zeros(self.shape, dt)[idx]
        return read_array(self.path, self.start + self.offset, dt, self.shape, idx, self.stamp)  # (aligned in memory)


class _Chunked:
    """A flax chunked array: 1-D chunks concatenated and reshaped when loaded."""

    __slots__ = ("chunks", "dtype", "shape")

    def __init__(self, chunks: list[_Payload], shape: tuple[int, ...]) -> None:
        self.chunks, self.shape = chunks, shape
        self.dtype = chunks[0].dtype if chunks else "float32"

    def array(self, idx: tuple[int, ...] = ()) -> np.ndarray:
        """The array, or its ``[idx]`` (one layer of a stack: read from the chunks that hold it)."""
        if not self.chunks:
            return np.zeros(self.shape, dtype=numpy_dtype(self.dtype))[idx]
        part = index_part(self.shape, idx) if idx else None
        if part is not None:
            # one layer of a stack (scanned along a leading or an inner axis): its elements, one contiguous run per
            # outer index in C order, from the chunks they lie in (not the whole stack, over 1 GiB since it is
            # chunked, for every layer)
            n_outer, first, last, kept = part
            inner = math.prod(self.shape[n_outer:])
            runs = [self._elements(k * inner + first, k * inner + last) for k in range(math.prod(self.shape[:n_outer]))]
            return np.concatenate(runs).reshape(kept) if runs else np.zeros(kept, numpy_dtype(self.dtype))
        return np.concatenate([c.array() for c in self.chunks]).reshape(self.shape)[idx]

    def _elements(self, lo: int, hi: int) -> np.ndarray:
        """The flat elements [lo, hi) of the chunks joined, read from the chunks they lie in."""
        parts, pos = [], 0
        for c in self.chunks:
            n = c.shape[0]
            if max(lo - pos, 0) < min(hi - pos, n):
                parts.append(c.array((slice(max(lo - pos, 0), min(hi - pos, n)),)))
            pos += n
            if pos >= hi:
                break
        return np.concatenate(parts) if parts else np.zeros(0, numpy_dtype(self.dtype))


class _Scalar:
    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code


_SCALARS: dict[int, _Scalar] = {}


# --------------------------------------------------------------------------------- naming and kinds


@dataclass(frozen=True)
class FlaxTensorRef(TensorRef):
    """A :class:`TensorRef` that also tells where the tensor is in the Flax tree and how it is stored."""

    path: str = ""  # full key path of the leaf, e.g. 'params.encoder.layer_0.query.kernel'
    flax_shape: tuple[int, ...] = ()  # the stored shape, in Flax's order


def flax_tensor(path: tuple[str, ...], shape: tuple[int, ...], bias: tuple[int, ...] | None = None,
                recurrent: bool = False,
                ) -> tuple[str, str | None, tuple[int, ...], Callable[[np.ndarray], np.ndarray]] | str:
    """How one leaf is analysed: ``(name, kind, htsr shape, transform)``, or the reason it is not.

    ``path`` is the leaf's key path below the ``params`` collection, ``shape`` its Flax shape, ``bias``
    the shape of its module's ``bias`` if it has one (its output axes: it tells a DenseGeneral's layout),
    ``recurrent`` whether its module also has a ``recurrent_kernel`` (a recurrent cell's input kernel); the transform turns the stored array into htsr's orientation (see the module docstring).
    """
    leaf, module = path[-1], path[:-1]
    mname = module[-1] if module else ""
    full = ".".join(path)
    n = len(shape)
    if n < 2:
        return "fewer than two dimensions"
    if leaf == "embedding" and n == 2:  # (a single module's state: no module name, the leaf's)
        return ".".join(module) or leaf, "embedding", shape, _identity
    if leaf in ("bias", "scale") and module:
        return f"a {n}-D {leaf} (one number per output unit: a DenseGeneral's or a norm's), no weight matrix"
    if leaf == "recurrent_kernel" or (leaf == "kernel" and recurrent):
        # a TF-Keras 2 recurrent cell's (``lstm/lstm_cell/recurrent_kernel:0``): named and laid out as the Keras
        # reader names a recurrent layer's, ``lstm.kernel`` [4·units, in] and ``lstm.recurrent_kernel`` (the cell
        # level left out); a ConvLSTM's kernels are convolutions
        parts = [m for m in module if not _RNN_CELL.fullmatch(m)]
        # a Bidirectional's two layers (TF-Keras' forward_lstm / backward_lstm) as the Keras reader names them
        parts = [f"{m.split('_')[0]}_layer" if k and parts[k - 1].startswith("bidirectional")
                 and m.startswith(("forward_", "backward_")) else m for k, m in enumerate(parts)]
        name = ".".join(parts + [leaf])
        if n == 2:
            return name, "rnn", (shape[1], shape[0]), _transpose2
        if n > 5:
            return f"a {n - 2}-D convolutional recurrent kernel (not analysed)"
        perm = (n - 1, n - 2, *range(n - 2))
        return name, f"conv{n - 2}d", tuple(shape[i] for i in perm), _permute(perm)
    if leaf != "kernel":
        if n - next((i for i, d in enumerate(shape) if d != 1), n) <= 2:  # 2-D once leading 1s are dropped
            return full, None, shape, _identity
        return f"a {n}-D parameter {leaf!r} of unknown layout"
    name = ".".join(module) or leaf
    if n == 2:
        return name, "dense", (shape[1], shape[0]), _transpose2
    lname = mname.lower()
    # a bias of two or more axes is a DenseGeneral's output axes (a convolution's bias is 1-D)
    out_axes = len(bias) if bias and 2 <= len(bias) < n and tuple(shape[-len(bias):]) == tuple(bias) else 0
    projection = lname in _IN_PROJ | _OUT_PROJ or bool(_AUTO_DENSE_GENERAL.fullmatch(mname))
    if not projection and not out_axes and (names_a_conv(mname) or n in (4, 5) or (n == 3 and bias)):
        # (a 3-D kernel with a 1-D bias: a Conv1D — a DenseGeneral of two input axes is an attention
        # output, named so above; without a bias a 3-D kernel is taken for an attention input projection)
        if n > 5:
            return f"a {n - 2}-D convolution kernel (not analysed)"
        perm = (n - 1, n - 2, *range(n - 2))
        return name, f"conv{n - 2}d", tuple(shape[i] for i in perm), _permute(perm)
    n_in = n - out_axes if out_axes else n - 1 if lname in _OUT_PROJ else 1
    rows, cols = math.prod(shape[n_in:]), math.prod(shape[:n_in])
    return name, "dense", (rows, cols), _dense_general(cols, rows)


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _transpose2(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)


def _permute(perm: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda a: np.ascontiguousarray(np.transpose(a, perm))


def _dense_general(n_in: int, n_out: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda a: np.ascontiguousarray(a.reshape(n_in, n_out).T)


def _key(k: Any) -> str:
    return k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)


def _select_params(tree: Mapping) -> tuple[Mapping, tuple[str, ...], list[tuple[str, str]]]:
    """The parameters: the ``params`` collection at the top, or one level down (a ``{"state": TrainState}``),
    else the whole tree without its optimizer state (``opt_state`` …: optax's moments, shaped like the
    weights). Returns them, their key path, and the entries left out (with why)."""
    params = tree.get("params") if hasattr(tree, "get") else None
    if isinstance(params, Mapping):
        return params, ("params",), [(_key(k), "not the 'params' collection") for k in tree if _key(k) != "params"]
    holders = [k for k, v in tree.items() if isinstance(v, Mapping) and isinstance(v.get("params"), Mapping)]
    if len(holders) == 1:
        outer = holders[0]
        inner = tree[outer]
        left = [(f"{_key(outer)}.{_key(k)}", "not the 'params' collection") for k in inner if _key(k) != "params"]
        left += [(_key(k), "not the 'params' collection") for k in tree if k != outer]
        return inner["params"], (_key(outer), "params"), left
    target, state = tree.get("target"), tree.get("state")
    if isinstance(target, Mapping) and isinstance(state, Mapping) and "param_states" in state:
        # flax.optim's Optimizer (flax before 0.6): the model is its target, the moments its state
        return target, ("target",), [(_key(k), "optimizer state, not the model's parameters")
                                     for k in tree if _key(k) != "target"]
    # the optimizer's state under a known name, or an optax state under any (its mu / nu mirror the weights)
    state = [k for k, v in tree.items() if _key(k) in _TRAINING_STATE or _holds_moments(v)]
    if state:
        kept = {k: v for k, v in tree.items() if k not in state}
        return kept, (), [(_key(k), "optimizer state, not the model's parameters") for k in state]
    return tree, (), []


def _holds_moments(node: Any, depth: int = 0) -> bool:
    """Whether ``node`` holds an optax state: a mapping with both ``mu`` and ``nu`` (Adam's moments, each
    shaped like the parameters), within a few levels (a chain's ``{"0": {"count", "mu", "nu"}}``)."""
    if not isinstance(node, Mapping) or depth > 4:
        return False
    keys = {_key(k) for k in node}
    return {"mu", "nu"} <= keys or any(_holds_moments(v, depth + 1) for v in node.values())


def _stacked_axes(params: Mapping[str, tuple[int, ...]]) -> int:
    """How many leading layer axes one module's parameters show it has been stacked along (``nn.scan``,
    ``nn.vmap``, ``nn.remat_scan``: every parameter gets them), 0 if none: a norm's ``scale`` / ``bias``
    of more than one axis, an ``embedding`` of more than two, or a ``bias`` that is the kernel's output
    axes only once leading axes shared with the kernel are set aside."""
    kernel, bias, emb = params.get("kernel"), params.get("bias"), params.get("embedding")
    if kernel is not None:
        if bias is None or len(bias) < 2 or tuple(kernel[-len(bias):]) == tuple(bias):
            return 0  # (a bias of one axis, or exactly the kernel's last axes: unstacked)
        for s in range(1, len(bias)):
            rest = len(bias) - s
            if bias[:s] == kernel[:s] and tuple(kernel[len(kernel) - rest:]) == tuple(bias[s:]) and len(kernel) - s >= 2:
                return s
        return 0
    if emb is not None:
        return max(len(emb) - 2, 0)
    norm = [shape for key, shape in params.items() if key in ("scale", "bias")]
    return min(len(sh) for sh in norm) - 1 if norm and all(len(sh) >= 2 for sh in norm) else 0


def _stacks(leaves: list[tuple[tuple[str, ...], tuple[int, ...]]]) -> dict[tuple[str, ...], tuple[int, int]]:
    """Scan roots → (position, number) of their stacked axes. A module whose own parameters show s stacked
    axes (:func:`_stacked_axes`) makes the highest of its ancestors whose every parameter shares those s
    leading sizes a root: every module below it has them (an ``nn.scan`` stacks the whole block, also
    its bias-free Dense and attention kernels). A scan along axis 1 (t5x's and MaxText's
    ``param_scan_axis=1``: a norm scale [dim, layers], kernels [in, layers, out]) is told by a norm scale of
    two axes whose second size every parameter of a block has at position 1, where the first does not
    cover the block (an attention kernel [heads, layers, head_dim, dim] has not dim first); axis 0 when both do."""
    modules: dict[tuple[str, ...], dict[str, tuple[int, ...]]] = {}
    under: dict[tuple[str, ...], list[tuple[int, ...]]] = {}  # every ancestor's leaves' shapes
    matrices: dict[tuple[str, ...], list[tuple[int, ...]]] = {}  # … and its kernels' and embeddings'
    for path, shape in leaves:
        modules.setdefault(path[:-1], {})[path[-1]] = shape
        for d in range(len(path)):
            under.setdefault(path[:d], []).append(shape)
            if path[-1] in ("kernel", "embedding"):
                matrices.setdefault(path[:d], []).append(shape)
    memo: dict[tuple, bool] = {}

    def shared(above: tuple[str, ...], pos: int, lead: tuple[int, ...]) -> bool:
        key = (above, pos, lead)
        if key not in memo:
            memo[key] = all(len(sh) > pos + len(lead) - 1 and sh[pos:pos + len(lead)] == lead for sh in under[above])
        return memo[key]

    def climb(module: tuple[str, ...], pos: int, lead: tuple[int, ...]) -> tuple[str, ...] | None:
        if not shared(module, pos, lead):
            return None
        root = module
        for depth in range(len(module) - 1, -1, -1):
            if not shared(module[:depth], pos, lead):
                break
            root = module[:depth]
        return root

    roots: dict[tuple[str, ...], tuple[int, int]] = {}
    for module, params in modules.items():
        s = _stacked_axes(params)
        if not s:
            continue
        first = next(iter(params.values()))
        candidates = [(climb(module, 0, first[:s]), 0, s)]
        if s == 1 and len(first) == 2 and "kernel" not in params and "embedding" not in params:
            candidates.append((climb(module, 1, first[1:]), 1, 1))  # a norm [dim, layers]?
        # (a scan leaves each layer's kernels matrices: a per-head norm scale [heads, head_dim] beside a
        # [dim, dim] kernel with dim = head_dim had made a scan along axis 1 of the whole tree, its kernels vectors)
        candidates = [c for c in candidates if c[0] is not None
                      and all(len(sh) - c[2] >= 2 for sh in matrices.get(c[0], ()))]
        if not candidates:
            continue
        # the candidate covering the most parameters (axis 0 on a tie: flax's default)
        root, pos, s = max(candidates, key=lambda c: (len(under[c[0]]), -c[1]))
        if root not in roots or roots[root][1] < s:
            roots[root] = (pos, s)
    return roots


def _one_layer(shape: tuple[int, ...], pos: int, s: int) -> tuple[int, ...]:
    """A stacked parameter's shape for one layer: without its ``s`` layer axes at ``pos``."""
    return tuple(shape[:pos]) + tuple(shape[pos + s:])


class _Tree:
    """Shared by the file and in-memory readers: walk the leaves and classify them."""

    description: str

    def _build(self, tree: Mapping, leaf: Callable[[tuple[str, ...], Any], Any]) -> None:
        """``leaf(path, value)`` returns ``(shape, dtype name, array function of an index)`` or None if not
        an array (a corrupt one is listed in ``self._corrupt`` by the file reader)."""
        top, prefix, self.skipped = _select_params(tree)
        self.not_weights: list[tuple[str, str]] = []  # (path, why) of the leaves of fewer than two dimensions
        self._refs: list[FlaxTensorRef] = []
        try:
            leaves = [(path, info) for path, value in _walk(top, ()) if (info := leaf(path, value)) is not None]
        except _TooLarge as e:
            raise SourceError(f"{self.description}: a tree of {e}; not a model's parameters") from None
        self.skipped += getattr(self, "_corrupt", [])
        shapes = {path: info[0] for path, info in leaves}
        roots = _stacks([(path, info[0]) for path, info in leaves])
        seen: set[str] = set()
        groups: dict[tuple[str, ...], list[tuple]] = {}  # scan root → its rows' makings, written layer by layer
        order: list[Any] = []  # refs and scan roots, in tree order
        lora, unpaired = _lora_pairs(shapes, roots)  # nnx LoRA modules: lora_a's path → lora_b's
        makes = {path: make for path, (_, _, make) in leaves}
        for path, (shape, dtype, make) in leaves:
            if path in lora:  # one row for the update lora_a·lora_b (x @ a @ b: scale 1), from its factors
                a, b = shapes[path], shapes[lora[path]]
                # named after the layer it adapts, beside its row as a PEFT adapter's <module>#delta is: nnx
                # LoRALinear keeps its LoRA as the layer's 'lora' beside its 'kernel'; a LoRA module alone by its own
                owner = path[:-2] if path[-2:-1] == ("lora",) and path[:-2] + ("kernel",) in shapes else path[:-1]
                order.append(FlaxTensorRef(f"{'.'.join(owner)}#delta", (b[1], a[0]), dtype, _lora_loader(
                    make, makes[lora[path]]), kind="lora", path=".".join(prefix + path), flax_shape=shape))
                continue
            if path in lora.values():
                continue
            if path in unpaired:  # (no update is formed; its factors are no layers)
                self.skipped.append((".".join(path), unpaired[path]))
                continue
            root = max((path[:d] for d in range(len(path)) if path[:d] in roots), key=len, default=None)
            pos, s = roots[root] if root is not None else (0, 0)
            bias = shapes.get(path[:-1] + ("bias",))
            how = flax_tensor(path, _one_layer(shape, pos, s), _one_layer(bias, pos, s) if bias is not None else None,
                              path[:-1] + ("recurrent_kernel",) in shapes)
            where = ".".join(path)
            if isinstance(how, str):
                if len(shape) - s >= 2:
                    self.skipped.append((where, how))
                else:  # in the words a state dict's 1-D tensor gets (a bias, a norm scale)
                    self.not_weights.append((where, classify(where, _one_layer(shape, pos, s))[1]))
                continue
            name, kind, htsr_shape, transform = how
            if name in seen:  # e.g. a module with both a 'kernel' and an 'embedding': keep the leaf key
                name = where
            seen.add(name)
            made = (name, kind, htsr_shape, dtype, make, transform, ".".join(prefix + path), shape)
            if root is None:
                order.append(self._ref(made, ()))
            else:
                if root not in groups:
                    groups[root] = []
                    order.append(root)
                groups[root].append(made)
        for item in order:
            if not isinstance(item, tuple):
                self._refs.append(item)
                continue
            pos, s = roots[item]
            layers = groups[item][0][7][pos:pos + s]
            for k, idx in enumerate(np.ndindex(*layers)):  # layer by layer, in the order the scan runs them
                self._refs += [self._ref(made, (slice(None),) * pos + idx, f"[{k}]") for made in groups[item]]

    @staticmethod
    def _ref(made: tuple, idx: tuple[int, ...], suffix: str = "") -> FlaxTensorRef:
        name, kind, htsr_shape, dtype, make, transform, full, shape = made
        load = _loader(make, transform, idx)
        if dtype.startswith(("int", "uint")):  # (AQT's int8 kernels: their scales are other leaves)
            load = skipped_loader(f"stored as {dtype}: a quantized {full.rsplit('.', 1)[-1]}, whose scale htsr does "
                                  "not apply; analyse the float parameters")
        return FlaxTensorRef(name + suffix, htsr_shape, dtype, load, kind=kind, path=full, flax_shape=shape)

    def __len__(self) -> int:
        return len(self._refs)

    def __iter__(self) -> Iterator[TensorRef]:
        return iter(self._refs)


def _lora_pairs(shapes: dict[tuple[str, ...], tuple[int, ...]], roots: dict
                ) -> tuple[dict[tuple[str, ...], tuple[str, ...]], dict[tuple[str, ...], str]]:
    """flax nnx's LoRA modules (``nnx.LoRA``, ``nnx.LoRALinear``'s ``lora``), a ``lora_a`` [in, r] and a
    ``lora_b`` [r, out] leaf side by side: lora_a's path → lora_b's of those outside a scan, and both factors'
    paths of the others → why no update is formed (a scanned block's pair, stacked, whose per-layer updates are
    not formed; factors whose shapes make no product)."""
    pairs: dict[tuple[str, ...], tuple[str, ...]] = {}
    unpaired: dict[tuple[str, ...], str] = {}
    for path, a in shapes.items():
        other = path[:-1] + ("lora_b",)
        b = shapes.get(other)
        if path[-1] != "lora_a" or b is None:
            continue
        if any(path[:d] in roots for d in range(len(path))):
            why = "an nnx LoRA factor of a scanned block: its per-layer update lora_a·lora_b is not formed"
        elif len(a) == len(b) == 2 and a[1] == b[0]:
            pairs[path] = other
            continue
        else:
            why = (f"an nnx LoRA factor: lora_a {list(a)} and lora_b {list(b)} make no product lora_a·lora_b "
                   "(not [in, r] and [r, out]); no update is formed")
        unpaired.update(dict.fromkeys((path, other), why))
    return pairs, unpaired


def _lora_loader(a: Callable[[tuple[int, ...]], np.ndarray], b: Callable[[tuple[int, ...]], np.ndarray]):
    """ΔW = (lora_a·lora_b)ᵀ, out × in, as a LowRank of B = lora_bᵀ (out × r) and A = lora_aᵀ (r × in)."""
    from ..factored import LowRank

    return lambda: LowRank(np.asarray(b(()), dtype=np.float32).T, np.asarray(a(()), dtype=np.float32).T, 1.0)


def _loader(make: Callable[[tuple[int, ...]], np.ndarray], transform: Callable[[np.ndarray], np.ndarray],
            idx: tuple[int, ...] = ()):
    return lambda: as_loaded(transform(make(idx)))


def _is_box(node: Mapping) -> bool:
    """A boxed parameter, ``{"value": array, "names": …}`` (see :data:`_BOX_KEYS`)."""
    return "value" in node and not isinstance(node["value"], Mapping) and set(map(_key, node)) <= _BOX_KEYS


class _TooLarge(Exception):
    """An in-memory tree past _MAX_VALUES nodes or _MAX_DEPTH levels (what the message says)."""


def _walk(node: Any, path: tuple[str, ...], budget: list[int] | None = None,
          seen: set[int] | None = None) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, leaf) of every leaf of a tree of maps and lists, in order; _TooLarge past _MAX_VALUES nodes visited
    or _MAX_DEPTH levels (a list holding the one below twice, k levels deep, has 2^k paths from a few hundred
    bytes: the walk had run for hours). With ``seen``, a map or list already walked is not walked again (its
    leaves under their first path only)."""
    budget = [_MAX_VALUES] if budget is None else budget
    if seen is not None and isinstance(node, (Mapping, list, tuple)):
        if id(node) in seen:
            return
        seen.add(id(node))
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge(f"more than {_MAX_VALUES} values (one held under many names?)")
    if len(path) > _MAX_DEPTH:
        raise _TooLarge(f"nested more than {_MAX_DEPTH} levels deep")
    if isinstance(node, Mapping) and path and _is_box(node):
        yield path, node["value"]
    elif isinstance(node, Mapping) and CHUNKED not in node:
        for k, v in node.items():
            yield from _walk(v, path + (_key(k),), budget, seen)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk(v, path + (str(i),), budget, seen)
    elif path:
        yield path, node


# ------------------------------------------------------------------------------------------ readers


#: values a checkpoint may hold (a model has a map per module and an array per parameter, thousands; each
#: value costs ~100 bytes of memory for a byte or a few of file, so an unbounded count lets a file take ~70
#: times its size)
_MAX_VALUES = 1_000_000
#: entries of one map or list (a module's parameters, a list of layers)
_MAX_LEN = 1 << 20
#: maps nested in maps (a model's tree is a few dozen deep)
_MAX_DEPTH = 256


class _Corrupt(Exception):
    """A msgpack structure error, with the message for the file's error."""


class _Decoder:
    """msgpack decoded from a memory map without copying its ``ndarray`` payloads: an extension of type 1 is a
    :class:`_Payload` of its offsets, other extensions one shared :class:`_Scalar` marker per type (a file of
    millions costs a pointer each), and the rest Python values. (msgpack's own decoder copies every payload
    into a ``bytes`` object: a checkpoint as large as memory could not be read.)"""

    def __init__(self, buf: Any, size: int, path: Path, stamp: tuple | None = None) -> None:
        self.buf, self.n, self.pos, self.values, self.path, self.stamp = buf, size, 0, 0, path, stamp

    def take(self, k: int) -> int:
        """The position of the next ``k`` bytes, which are skipped."""
        if k > self.n - self.pos:
            raise _Corrupt("truncated")
        start = self.pos
        self.pos += k
        return start

    def uint(self, k: int) -> int:
        start = self.take(k)
        return int.from_bytes(self.buf[start:start + k], "big")

    def count(self, k: int) -> int:
        """The length of a map or array that follows: each entry takes a byte at least."""
        n = self.uint(k)
        if n > _MAX_LEN or n > self.n - self.pos:
            raise _Corrupt(f"a length field claims {n} entries, more than a model's map or list holds or than the "
                           f"{self.n}-byte file holds")
        return n

    def value(self, depth: int = 0) -> Any:
        self.values += 1
        if self.values > _MAX_VALUES:
            raise _Corrupt(f"more than {_MAX_VALUES} values: not a parameter tree (a model has a map per module and "
                           "an array per parameter)")
        b = self.buf[self.take(1)]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
            n = b & 0x0F if b <= 0x8F else self.count(2 if b == 0xDE else 4)
            if depth >= _MAX_DEPTH:
                raise _Corrupt("deep")
            out = {}
            for _ in range(n):
                key = self.value(depth + 1)
                out[key if isinstance(key, (str, int, float, bool, bytes)) or key is None else repr(key)] = \
                    self.value(depth + 1)
            return out
        if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
            n = b & 0x0F if b <= 0x9F else self.count(2 if b == 0xDC else 4)
            if depth >= _MAX_DEPTH:
                raise _Corrupt("deep")
            return [self.value(depth + 1) for _ in range(n)]
        if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB):
            n = b & 0x1F if b <= 0xBF else self.uint({0xD9: 1, 0xDA: 2, 0xDB: 4}[b])
            start = self.take(n)
            return bytes(self.buf[start:start + n]).decode("utf-8", "surrogateescape")
        if b in (0xC4, 0xC5, 0xC6):  # bin: not a parameter (an array is an extension)
            start = self.take(self.uint({0xC4: 1, 0xC5: 2, 0xC6: 4}[b]))
            return _SCALARS.setdefault(-1, _Scalar(-1))
        if b in (0xC7, 0xC8, 0xC9) or 0xD4 <= b <= 0xD8:
            n = self.uint({0xC7: 1, 0xC8: 2, 0xC9: 4}[b]) if b <= 0xC9 else 1 << (b - 0xD4)
            code = int.from_bytes(self.buf[self.take(1):self.pos], "big", signed=True)
            start = self.take(n)
            if code == EXT_NDARRAY:
                return _Payload(self.buf, start, start + n, self.path, self.stamp)
            return _SCALARS.setdefault(code, _Scalar(code))  # npscalar (3), complex (2), unknown: no weights
        if b == 0xC0:
            return None
        if b in (0xC2, 0xC3):
            return b == 0xC3
        if b in (0xCA, 0xCB):
            start = self.take(4 if b == 0xCA else 8)
            return struct.unpack(">f" if b == 0xCA else ">d", self.buf[start:self.pos])[0]
        if 0xCC <= b <= 0xD3:  # uint 8-64, int 8-64
            k = 1 << ((b - 0xCC) % 4)
            start = self.take(k)
            return int.from_bytes(self.buf[start:self.pos], "big", signed=b >= 0xD0)
        raise _Corrupt(f"bad type byte 0x{b:02x} at byte {self.pos - 1}")


class FlaxMsgpackFile(_Tree):
    """A Flax msgpack checkpoint (``flax.serialization.to_bytes``); see the module docstring for memory."""

    def __init__(self, path: str | os.PathLike, index: os.PathLike | None = None,
                 shards: tuple[Path, ...] = ()) -> None:
        """``index``: a Hugging Face shard index (``flax_model.msgpack.index.json``, transformers'
        ``save_pretrained(max_shard_size=…)``), or ``shards``, the files of a split without one: their trees,
        each of some of the parameters, are read as one (a module's kernel and bias may be in two shards); a
        parameter in two shards is read from the one the index names, a parameter the index lists that no shard
        holds is listed."""
        from .base import ShardIndex

        # (a sharded model's path is its folder: each array's errors name its own shard)
        self.path = Path(index).parent if index is not None else Path(path).parent if shards else Path(path)
        shard_index = ShardIndex.read(Path(index)) if index is not None else None
        self.description = str(self.path)
        self.input_files = shard_index.shards if shard_index is not None else tuple(shards) or (self.path,)
        self._msgpack = _msgpack()
        self._corrupt: list[tuple[str, str]] = []  # (path, why) of arrays too corrupt to give a row
        named = {k.replace("/", "."): v for k, v in shard_index.weight_map.items()} if shard_index else {}
        tree: dict = {}
        with contextlib.ExitStack() as maps:  # (the arrays' headers are read from the maps, all open until built)
            for shard in self.input_files:
                _merge(tree, self._read(shard, maps), shard, named)
            missing = [(k, f"the index puts it in {named[k]}, which does not hold it") for k in named
                       if not _holds(tree, k.split("."))]
            try:
                self._build(tree, self._leaf)
            except RecursionError:  # the walk recurses once per level
                raise self._fail("the parameter tree nests too deeply to be a model's; corrupt file?") from None
        self.skipped += missing

    def _read(self, path: Path, maps: contextlib.ExitStack) -> Mapping:
        """The tree of the file at ``path``, its arrays as payloads on a memory map ``maps`` holds."""
        try:
            stamp = file_stamp(path)  # (before it is decoded: a file saved again since is not read)
            size = stamp[2]
            with open(path, "rb") as f:
                head = f.read(32)
                if head.startswith(LFS_POINTER):
                    raise lfs_pointer_error(path)
                if size == 0:
                    raise self._fail("empty file, not a Flax msgpack checkpoint", path)
                if not is_msgpack_checkpoint(head):
                    raise self._fail(f"not a Flax msgpack checkpoint (starts with {head[:8]!r}, not a msgpack map "
                                     "of parameters); save it with flax.serialization.to_bytes", path)
                mm = maps.enter_context(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
            return self._decode(mm, size, path, stamp)
        except OSError as e:
            raise SourceError(f"{path}: cannot read ({e.strerror or e})") from None

    def _fail(self, what: str, path: Path | None = None) -> SourceError:
        return SourceError(f"{path or self.path}: {what}")

    def _decode(self, buf: Any, size: int, path: Path, stamp: tuple | None = None) -> Any:
        d = _Decoder(buf, size, path, stamp)

        def fail(what: str) -> SourceError:
            return self._fail(what, path)

        try:
            tree = d.value()
        except _Corrupt as e:
            what = str(e)
            if what == "truncated":
                raise fail(f"truncated msgpack checkpoint (the {size}-byte file ends inside a value); "
                                 "re-download or re-save it") from None
            if what == "deep":
                raise fail("the parameter tree nests too deeply to be a model's; corrupt file?") from None
            if what.startswith("bad type byte"):
                raise fail(f"not valid msgpack ({what}); corrupt file?") from None
            raise fail(f"corrupt msgpack checkpoint: {what}; corrupt or hostile file, re-download or re-save "
                             "it") from None
        if d.pos != size:
            raise fail("trailing bytes after the msgpack checkpoint (two files concatenated, or corrupt); "
                             "re-save it")
        if not isinstance(tree, Mapping):
            raise fail(f"msgpack holding a {type(tree).__name__}, not a map of parameters")
        return tree

    def _leaf(self, path: tuple[str, ...], value: Any):
        """An array's (shape, dtype, array function). A corrupt one fails alone: it is listed (in ``_corrupt``)
        with why, and the others are read."""
        where = ".".join(path)
        chunks = value.get("chunks") if isinstance(value, Mapping) else None
        first = next(iter(chunks.values()), None) if isinstance(chunks, Mapping) else value
        file = first.path if isinstance(first, _Payload) else self.path  # (its shard's, of a sharded model)
        try:
            if isinstance(value, Mapping):  # a chunked array
                return self._chunked(where, value, file)
            if not isinstance(value, _Payload):
                return None
            err = value.parse(self._msgpack)
            if err:
                raise self._fail(f"array {where!r}: {err}; the checkpoint is corrupt, re-save it", file)
        except SourceError as e:
            self._corrupt.append((where, str(e).removeprefix(f"{file}: ")))
            return None
        return value.shape, value.dtype, self._reading(where, value.array, file)

    def _chunked(self, where: str, value: Mapping, file: Path):
        bad = self._fail(f"chunked array {where!r} is inconsistent (shape, chunks); the checkpoint is corrupt", file)
        shape_d, chunks_d = value.get("shape"), value.get("chunks")
        if not isinstance(shape_d, Mapping) or not isinstance(chunks_d, Mapping):
            raise bad
        try:
            shape = tuple(int(shape_d[str(i)]) for i in range(len(shape_d)))
            chunks = [chunks_d[str(i)] for i in range(len(chunks_d))]
        except (KeyError, TypeError, ValueError, OverflowError):  # a missing size, a size of inf …
            raise bad from None
        for i, c in enumerate(chunks):
            if not isinstance(c, _Payload):
                raise bad
            err = c.parse(self._msgpack)
            if err:
                raise self._fail(f"array {where!r} chunk {i}: {err}; the checkpoint is corrupt, re-save it", file)
        if any(len(c.shape) != 1 for c in chunks) or len({c.dtype for c in chunks}) > 1 \
                or sum(c.shape[0] for c in chunks) != math.prod(shape) or any(d < 0 for d in shape):
            raise bad
        arr = _Chunked(chunks, shape)
        return shape, arr.dtype, self._reading(where, arr.array, file)

    def _reading(self, where: str, array: Callable[[tuple[int, ...]], np.ndarray], file: Path):
        """``array``, its read failing in one line naming the file and the array (the file changed since it
        was opened: shorter, or gone)."""
        def read(idx: tuple[int, ...] = ()) -> np.ndarray:
            try:
                return array(idx)
            except SourceError as e:  # (read_span's: the file cut short since)
                raise self._fail(f"array {where!r} cannot be read: {str(e).split(': ', 1)[-1]}", file) from None
            except (OSError, ValueError) as e:
                raise self._fail(f"array {where!r} cannot be read ({one_line(e)}): the file changed since it was "
                                 "opened?", file) from None
        return read


def _merge(tree: dict, part: Mapping, path: Path, named: dict[str, str], prefix: str = "") -> None:
    """``part``, one shard's tree, into ``tree``: a parameter in two shards is taken from the shard the index
    (``named``: dotted path → shard file name) names for it, else from the first."""
    for k, v in part.items():
        where = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and not _is_array_map(v) and isinstance(tree.get(k, {}), dict):
            _merge(tree.setdefault(k, {}), v, path, named, where)
        elif k not in tree or named.get(where) == path.name:
            tree[k] = v


def _holds(tree: Mapping, keys: list[str]) -> bool:
    """Whether the nested ``tree`` has the leaf at the path ``keys``."""
    for k in keys:
        if not isinstance(tree, Mapping) or k not in tree:
            return False
        tree = tree[k]
    return True


def _is_array_map(v: Mapping) -> bool:  # a chunked array's map (module docstring): a leaf, not a module
    return "chunks" in v and "shape" in v


class FlaxTree(_Tree):
    """A Flax parameter pytree in memory: nested dicts / ``FrozenDict`` / nnx ``State`` of numpy or jax arrays.

    Leaves with a ``value`` attribute holding the array (nnx ``Variable`` / ``VariableState``) are unwrapped.
    """

    def __init__(self, tree: Mapping, description: str = "<flax params>",
                 leaf: Callable[[tuple[str, ...], Any], Any] | None = None, corrupt: Iterator[tuple[str, str]] = ()) -> None:
        """``leaf``: how a leaf becomes ``(shape, dtype name, array function of an index)`` (see
        :meth:`_Tree._build`), arrays in memory by default; ``corrupt``: (path, why) of leaves that cannot be
        read (listed as skipped)."""
        if not isinstance(tree, Mapping):
            raise SourceError(f"{description}: a Flax parameter tree must be a mapping, not {type(tree).__name__}")
        self.description = description
        self._corrupt = list(corrupt)
        self._build(tree, leaf or _memory_leaf)


def _array_like(v: Any) -> Any:
    if not (hasattr(v, "shape") and hasattr(v, "dtype")) and hasattr(v, "value"):
        v = v.value
    return v if hasattr(v, "shape") and hasattr(v, "dtype") else None


def _memory_leaf(path: tuple[str, ...], value: Any):
    a = _array_like(value)
    if a is None:
        return None
    if not hasattr(a, "__array__") and not isinstance(a, np.ndarray):  # jax.ShapeDtypeStruct (eval_shape)
        raise SourceError(f"<flax params>: {'.'.join(path)!r} is an abstract array ({type(a).__name__}: a shape "
                          "without values, as jax.eval_shape gives); analyse the initialised or restored parameters")
    try:
        dtype = np.dtype(a.dtype).name
    except TypeError:
        return None
    return tuple(int(d) for d in a.shape), dtype, (lambda idx=(), a=a: np.asarray(a[idx] if idx else a))


def unflattened(keys: Iterator[str] | list[str], values: Callable[[str], Any] = lambda k: k,
                ndim: Callable[[str], int] | None = None) -> dict | None:
    """Flat Flax (or Keras) parameter paths nested again — ``Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel``,
    as the ViT and big_vision ``.npz`` checkpoints store them, or dotted, or TF-Keras 2's ``dense/kernel:0`` (the
    ``:0`` dropped) — with ``values(key)`` as leaves; None unless some key ends in a ``kernel`` or ``embedding``
    leaf and none in a ``weight`` of two or more dimensions (``ndim(key)``; without it, none in ``weight``: a
    PyTorch state dict's matrices; a Flax Llama's RMSNorm scales are 1-D ``weight`` leaves), or if one key is both
    a leaf and a parent. Their kernels are [in, out] and channels-last, as in a Flax tree."""
    keys = list(keys)
    sep = "/" if any("/" in k for k in keys) else "."
    path = {k: _VARIABLE_INDEX.sub("", k).split(sep) for k in keys}
    leaves = {p[-1] for p in path.values()}
    weights = [k for k, p in path.items() if p[-1] == "weight"]
    if not leaves & {"kernel", "embedding"} or (weights and (ndim is None or any(ndim(k) >= 2 for k in weights))):
        return None
    tree: dict = {}
    for k in keys:
        node, (*parents, leaf) = tree, path[k]
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                return None
        if leaf in node:
            return None
        node[leaf] = values(k)
    return tree


#: a recurrent layer's cell level in a TF-Keras 2 variable path: cell, lstm_cell, gru_cell_1 …
_RNN_CELL = re.compile(r"(\w+_)?cell(_\d+)?")

#: TensorFlow's variable index in a variable's name (``dense/kernel:0``)
_VARIABLE_INDEX = re.compile(r":\d+$")


def is_flax_tree(obj: Any) -> bool:
    """True for a nested mapping that looks like Flax parameters, checked without importing flax or jax.

    Evidence: a flax ``FrozenDict`` / nnx ``State``, a jax array or flax variable leaf, a ``params``
    mapping at the top, or a ``kernel`` / ``embedding`` leaf holding an array. Never for a mapping
    holding torch tensors (those are PyTorch state dicts) or for a flat mapping of names to arrays.
    """
    if not isinstance(obj, Mapping):
        return False

    def top_module(x: Any) -> str:
        return type(x).__module__.split(".")[0]

    evidence = top_module(obj) == "flax" or isinstance(obj.get("params") if hasattr(obj, "get") else None, Mapping)
    nested = False
    try:
        for path, v in _walk(obj, (), seen=set()):  # (a shared subtree's leaves are evidence once)
            mod = top_module(v)
            if mod == "torch":
                return False
            nested = nested or len(path) > 1
            if mod in ("jax", "jaxlib", "flax") or (path[-1] in ("kernel", "embedding") and _array_like(v) is not None):
                evidence = True
    except _TooLarge:  # (no model's tree: the reader it goes to says what it is)
        return False
    # (an nnx State of one module, {'kernel': Param, 'bias': Param}, is flax's own type though not nested)
    return evidence and (nested or top_module(obj) == "flax")
