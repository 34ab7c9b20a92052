"""Flax / JAX parameters: msgpack checkpoints (extra ``htsr[flax]``) and parameter pytrees in memory.

Neither jax nor flax is imported: a checkpoint is decoded with the ``msgpack`` package alone, and an
in-memory tree is read through the numpy array protocol of its leaves.

**Files.** :class:`FlaxMsgpackFile` reads what ``flax.serialization.to_bytes`` / ``msgpack_serialize``
write (e.g. Hugging Face's ``flax_model.msgpack``): one msgpack map of nested maps whose leaves are
arrays stored as msgpack extension type 1 (``ndarray``), its payload itself msgpack
``[shape, dtype name, C-order bytes]``. Type 3 (``npscalar``, same payload) and 2 (native complex) are
scalars, not weights; arrays above 1 GiB are split by flax into a map ``{"__msgpack_chunked_array__":
True, "shape": {"0": d0, …}, "chunks": {"0": 1-D array, …}}``, which is read as one array.

**Memory.** msgpack has no index: a file can only be decoded as a whole. It is memory-mapped and
decoded once when opened; msgpack copies each array's payload into a ``bytes`` object, which the
reader keeps (only its small header — shape and dtype — is parsed then). So **while the source is
alive, all the file's array bytes are in memory** (≈ the file's size), but no numpy array is built:
a tensor's array is made only when its :class:`~htsr.io.base.TensorRef` is loaded (a view of the
payload — copied if the payload is not aligned for its dtype — then the transposition below, which
copies that one tensor; reduced-precision floats are converted to float32; a chunked array is
concatenated). An in-memory tree is read where it is: a leaf (numpy or jax array) is
converted with ``numpy.asarray`` only when loaded.

**Which parameters.** If the top-level map has a ``params`` entry (a ``variables`` dict, a
``TrainState``), only that collection is read; the others (``batch_stats``, ``opt_state``, ``step`` …)
are listed in :attr:`FlaxTree.skipped`. Names are the dotted key paths below it, so
``{"params": {"encoder": {"layer_0": {"query": {"kernel": …}}}}}`` gives ``encoder.layer_0.query``.

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
=========================  ================================  ======================================

A ``kernel`` of 3 or more dimensions is a convolution if its module's name contains ``conv``
(``Conv_0``, ``conv1``, ``ConvTranspose_0`` …); otherwise a 4-D kernel is a ``conv2d`` and a 3-D one
(or one of 5 or more dimensions) a ``DenseGeneral`` kernel — except that modules named ``query``,
``key``, ``value``, ``qkv``, ``kv``, ``out``, ``q``, ``k``, ``v``, ``o``, ``q_proj``, ``k_proj``,
``v_proj``, ``out_proj`` and ``o_proj`` are always ``DenseGeneral``. The checkpoint does not
record which axes of a ``DenseGeneral`` kernel are inputs:
only the first axis is (flax's default ``axis=-1``), except for an output projection (``out``, ``o``,
``out_proj``, ``o_proj``: flax's ``MultiHeadDotProductAttention`` output uses ``axis=(-2, -1)``),
whose inputs are all axes but the last. So an attention ``query`` kernel ``[dim, heads, head_dim]``
becomes ``[heads·head_dim, dim]`` and its ``out`` kernel ``[heads, head_dim, dim]`` becomes
``[dim, heads·head_dim]`` — exactly the matrices of a PyTorch ``nn.Linear``. :attr:`FlaxTensorRef.path`
keeps the leaf's full key path and :attr:`FlaxTensorRef.flax_shape` its stored shape. Convolution
kernels of more than 5 dimensions are not analysed. Kernels of layers stacked by
``nn.scan`` / ``nn.vmap`` (a leading layer axis) are not recognised as such: unstack them first.

Biases, LayerNorm / BatchNorm ``scale``, and every leaf of fewer than two dimensions are not yielded.
Any other leaf of two dimensions, leading 1s aside (a parameter a module created under its own name,
e.g. a ViT's ``pos_embedding`` ``[1, tokens, dim]``), is yielded under its full key path with no kind, so
htsr infers it from the name as for any file; one of three or more dimensions has no known layout
and is listed in :attr:`~FlaxTree.skipped`.

**Bad input** — not msgpack, a truncated file, trailing bytes, a top level that is not a map, an array
payload that is malformed or whose byte count is not ``prod(shape) × itemsize``, an unknown dtype, an
inconsistent chunked array — raises :class:`~htsr.errors.SourceError` with a one-line message naming
the file (and the leaf) when the file is opened.
"""

from __future__ import annotations

import math
import mmap
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SourceError
from ..matrices import classify
from .base import TensorRef, as_loaded, import_extra, numpy_dtype, one_line

__all__ = ["FlaxMsgpackFile", "FlaxTensorRef", "FlaxTree", "flax_tensor", "is_flax_tree", "is_msgpack_checkpoint"]

EXT_NDARRAY, EXT_NATIVE_COMPLEX, EXT_NPSCALAR = 1, 2, 3  # flax.serialization._MsgpackExtType
CHUNKED = "__msgpack_chunked_array__"

_CONV = re.compile(r"conv", re.IGNORECASE)
_IN_PROJ = frozenset({"query", "key", "value", "qkv", "kv", "q", "k", "v", "q_proj", "k_proj", "v_proj"})
_OUT_PROJ = frozenset({"out", "o", "out_proj", "o_proj"})


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
    """An ``ndarray`` extension payload kept as bytes; :meth:`array` makes the numpy view on demand."""

    __slots__ = ("data", "dtype", "offset", "shape")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.shape: tuple[int, ...] = ()
        self.dtype = ""
        self.offset = 0

    def parse(self, msgpack: Any) -> str | None:
        """Read the header ``[shape, dtype name, bin]`` without copying the bytes; an error message or None."""
        data = self.data
        u = msgpack.Unpacker(raw=True, strict_map_key=False)
        u.feed(data[: min(len(data), 4096)])  # the header is small; the bytes are not decoded
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
        if n != len(data) - start:
            return f"its data claims {n} bytes but holds {len(data) - start}"
        if n != expected:
            return (f"{n} bytes of data for shape {tuple(shape)} {name} "
                    f"({math.prod(shape)} × {dt.itemsize} = {expected} bytes expected)")
        self.shape, self.dtype, self.offset = tuple(shape), name, start
        return None

    def array(self) -> np.ndarray:
        dt = numpy_dtype(self.dtype)
        count = math.prod(self.shape)
        a = np.frombuffer(self.data, dtype=dt, count=count, offset=self.offset).reshape(self.shape)
        # the payload starts at an arbitrary byte: an unaligned view would be read by numpy's slow,
        # non-BLAS loops (with other rounding than BLAS), so it is copied once to aligned memory
        return a if a.flags.aligned else a.copy()


class _Chunked:
    """A flax chunked array: 1-D chunks concatenated and reshaped when loaded."""

    __slots__ = ("chunks", "dtype", "shape")

    def __init__(self, chunks: list[_Payload], shape: tuple[int, ...]) -> None:
        self.chunks, self.shape = chunks, shape
        self.dtype = chunks[0].dtype if chunks else "float32"

    def array(self) -> np.ndarray:
        if not self.chunks:
            return np.zeros(self.shape, dtype=numpy_dtype(self.dtype))
        return np.concatenate([c.array() for c in self.chunks]).reshape(self.shape)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_NDARRAY:
        return _Payload(data)
    # npscalar (3), native complex (2), unknown types: not weights; one shared marker per code, so a file of
    # millions of them costs a pointer each, not an object each
    return _SCALARS.setdefault(code, _Scalar(code))


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


def flax_tensor(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[str, str | None, tuple[int, ...],
                                                                          Callable[[np.ndarray], np.ndarray]] | str:
    """How one leaf is analysed: ``(name, kind, htsr shape, transform)``, or the reason it is not.

    ``path`` is the leaf's key path below the ``params`` collection, ``shape`` its Flax shape; the
    transform turns the stored array into htsr's orientation (see the module docstring).
    """
    leaf, module = path[-1], path[:-1]
    mname = module[-1] if module else ""
    full = ".".join(path)
    n = len(shape)
    if n < 2:
        return "fewer than two dimensions"
    if leaf == "embedding" and n == 2 and module:
        return ".".join(module), "embedding", shape, _identity
    if leaf != "kernel" or not module:
        if n - next((i for i, d in enumerate(shape) if d != 1), n) <= 2:  # 2-D once leading 1s are dropped
            return full, None, shape, _identity
        return f"a {n}-D parameter {leaf!r} of unknown layout"
    name = ".".join(module)
    if n == 2:
        return name, "dense", (shape[1], shape[0]), _transpose2
    is_conv = bool(_CONV.search(mname)) and mname.lower() not in _IN_PROJ | _OUT_PROJ
    if is_conv or (n == 4 and mname.lower() not in _IN_PROJ | _OUT_PROJ):
        if n > 5:
            return f"a {n - 2}-D convolution kernel (not analysed)"
        perm = (n - 1, n - 2, *range(n - 2))
        return name, f"conv{n - 2}d", tuple(shape[i] for i in perm), _permute(perm)
    n_in = n - 1 if mname.lower() in _OUT_PROJ else 1
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


def _select_params(tree: Mapping) -> tuple[Mapping, list[tuple[str, str]]]:
    """The ``params`` collection if there is one at the top, and the top-level entries left out (with why)."""
    params = tree.get("params") if hasattr(tree, "get") else None
    if isinstance(params, Mapping):
        return params, [(_key(k), "not the 'params' collection") for k in tree if _key(k) != "params"]
    return tree, []


class _Tree:
    """Shared by the file and in-memory readers: walk the leaves and classify them."""

    description: str

    def _build(self, tree: Mapping, leaf: Callable[[tuple[str, ...], Any], Any]) -> None:
        """``leaf(path, value)`` returns ``(shape, dtype name, array function)`` or None if not an array."""
        top, self.skipped = _select_params(tree)
        self.not_weights: list[tuple[str, str]] = []  # (path, why) of the leaves of fewer than two dimensions
        self._refs: list[FlaxTensorRef] = []
        seen: set[str] = set()
        prefix = ("params",) if top is not tree else ()
        for path, value in _walk(top, ()):
            info = leaf(path, value)
            if info is None:
                continue
            shape, dtype, make = info
            how = flax_tensor(path, shape)
            full = ".".join(prefix + path)
            if isinstance(how, str):
                if len(shape) >= 2:
                    self.skipped.append((".".join(path), how))
                else:  # in the words a state dict's 1-D tensor gets (a bias, a norm scale)
                    self.not_weights.append((".".join(path), classify(".".join(path), tuple(shape))[1]))
                continue
            name, kind, htsr_shape, transform = how
            if name in seen:  # e.g. a module with both a 'kernel' and an 'embedding': keep the leaf key
                name = ".".join(path)
            seen.add(name)
            self._refs.append(FlaxTensorRef(name, htsr_shape, dtype, _loader(make, transform), kind=kind,
                                            path=full, flax_shape=shape))

    def __len__(self) -> int:
        return len(self._refs)

    def __iter__(self) -> Iterator[TensorRef]:
        return iter(self._refs)


def _loader(make: Callable[[], np.ndarray], transform: Callable[[np.ndarray], np.ndarray]):
    return lambda: as_loaded(transform(make()))


def _walk(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, Mapping) and CHUNKED not in node:
        for k, v in node.items():
            yield from _walk(v, path + (_key(k),))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk(v, path + (str(i),))
    elif path:
        yield path, node


# ------------------------------------------------------------------------------------------ readers


#: maps and lists a checkpoint may hold (a model has one map per module, thousands; each costs ~100 bytes of
#: memory for a byte or two of file, so an unbounded count lets a file take ~70 times its size)
_MAX_CONTAINERS = 1_000_000
#: entries of one map or list (a module's parameters, a list of layers)
_MAX_LEN = 1 << 20


class _TooMany(Exception):
    """Raised inside the msgpack decoder past :data:`_MAX_CONTAINERS`."""


class FlaxMsgpackFile(_Tree):
    """A Flax msgpack checkpoint (``flax.serialization.to_bytes``); see the module docstring for memory."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        msgpack = _msgpack()
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(16)
                if size == 0:
                    raise self._fail("empty file, not a Flax msgpack checkpoint")
                if not is_msgpack_checkpoint(head):
                    raise self._fail(f"not a Flax msgpack checkpoint (starts with {head[:8]!r}, not a msgpack map "
                                     "of parameters); save it with flax.serialization.to_bytes")
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    tree = self._decode(msgpack, mm, size)
        except OSError as e:
            raise SourceError(f"{self.path}: cannot read ({e.strerror or e})") from None
        self._msgpack = msgpack
        try:
            self._build(tree, self._leaf)
        except RecursionError:  # msgpack nests up to 1024 levels; the walk recurses once per level
            raise self._fail("the parameter tree nests too deeply to be a model's; corrupt file?") from None

    def _fail(self, what: str) -> SourceError:
        return SourceError(f"{self.path}: {what}")

    def _decode(self, msgpack: Any, buf: Any, size: int) -> Any:
        built = [0]

        def count(obj: Any) -> Any:  # every map and array decoded: a few bytes each in the file, ~100 in memory
            built[0] += 1
            if built[0] > _MAX_CONTAINERS:
                raise _TooMany
            return obj

        try:
            tree = msgpack.unpackb(buf, ext_hook=_ext_hook, raw=False, strict_map_key=False, object_hook=count,
                                   list_hook=count, max_array_len=_MAX_LEN, max_map_len=_MAX_LEN)
        except _TooMany:
            raise self._fail(f"more than {_MAX_CONTAINERS} maps and lists: not a parameter tree (a model has "
                             "one map per module); corrupt or hostile file") from None
        except msgpack.ExtraData:
            raise self._fail("trailing bytes after the msgpack checkpoint (two files concatenated, or corrupt); "
                             "re-save it") from None
        except msgpack.FormatError as e:
            raise self._fail(f"not valid msgpack ({one_line(e) or 'bad type byte'}); corrupt file?") from None
        except msgpack.StackError:
            raise self._fail("msgpack nesting too deep; corrupt file?") from None
        except ValueError as e:
            if "incomplete" in str(e):
                raise self._fail(f"truncated msgpack checkpoint (the {size}-byte file ends inside a value); "
                                 "re-download or re-save it") from None
            if "exceeds max_" in str(e):  # a length over _MAX_LEN, or (msgpack's own bound) over the input size
                raise self._fail(f"corrupt msgpack checkpoint: a length field claims more entries than a model's "
                                 f"map or list holds, or than the {size}-byte file holds ({one_line(e)}); "
                                 "re-download or re-save it") from None
            raise self._fail(f"not valid msgpack ({one_line(e)}); corrupt file?") from None
        except Exception as e:  # noqa: BLE001 - anything else msgpack raises on corrupt input
            raise self._fail(f"not valid msgpack ({e.__class__.__name__}: {one_line(e)}); corrupt file?") from None
        if not isinstance(tree, Mapping):
            raise self._fail(f"msgpack holding a {type(tree).__name__}, not a map of parameters")
        return tree

    def _leaf(self, path: tuple[str, ...], value: Any):
        where = ".".join(path)
        if isinstance(value, Mapping):  # a chunked array
            return self._chunked(where, value)
        if not isinstance(value, _Payload):
            return None
        err = value.parse(self._msgpack)
        if err:
            raise self._fail(f"array {where!r}: {err}; the checkpoint is corrupt, re-save it")
        return value.shape, value.dtype, value.array

    def _chunked(self, where: str, value: Mapping):
        bad = self._fail(f"chunked array {where!r} is inconsistent (shape, chunks); the checkpoint is corrupt")
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
                raise self._fail(f"array {where!r} chunk {i}: {err}; the checkpoint is corrupt, re-save it")
        if any(len(c.shape) != 1 for c in chunks) or len({c.dtype for c in chunks}) > 1 \
                or sum(c.shape[0] for c in chunks) != math.prod(shape) or any(d < 0 for d in shape):
            raise bad
        arr = _Chunked(chunks, shape)
        return shape, arr.dtype, arr.array


class FlaxTree(_Tree):
    """A Flax parameter pytree in memory: nested dicts / ``FrozenDict`` / nnx ``State`` of numpy or jax arrays.

    Leaves with a ``value`` attribute holding the array (nnx ``Variable`` / ``VariableState``) are unwrapped.
    """

    def __init__(self, tree: Mapping, description: str = "<flax params>") -> None:
        if not isinstance(tree, Mapping):
            raise SourceError(f"{description}: a Flax parameter tree must be a mapping, not {type(tree).__name__}")
        self.description = description
        self._build(tree, _memory_leaf)


def _array_like(v: Any) -> Any:
    if not (hasattr(v, "shape") and hasattr(v, "dtype")) and hasattr(v, "value"):
        v = v.value
    return v if hasattr(v, "shape") and hasattr(v, "dtype") else None


def _memory_leaf(path: tuple[str, ...], value: Any):
    a = _array_like(value)
    if a is None:
        return None
    try:
        dtype = np.dtype(a.dtype).name
    except TypeError:
        return None
    return tuple(int(d) for d in a.shape), dtype, (lambda a=a: np.asarray(a))


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
    for path, v in _walk(obj, ()):
        mod = top_module(v)
        if mod == "torch":
            return False
        nested = nested or len(path) > 1
        if mod in ("jax", "jaxlib", "flax") or (path[-1] in ("kernel", "embedding") and _array_like(v) is not None):
            evidence = True
    return evidence and nested
