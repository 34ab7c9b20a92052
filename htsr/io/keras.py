"""Reader for Keras weights without TensorFlow — files need ``h5py``: ``pip install 'htsr[keras]'`` —
and for live Keras 3 model objects (:class:`KerasModel`, any backend; needs only keras itself).

Three file layouts are read, all with h5py, lazily (opening reads the HDF5 metadata only; a tensor's data
is read when its :class:`~htsr.io.base.TensorRef` is loaded):

* **Keras 3** ``.keras`` archives: a zip holding ``config.json`` (the model's config) and
  ``model.weights.h5``; also the same two files unzipped in a folder (``save_model(zipped=False)``)
  and a bare ``*.weights.h5`` (``model.save_weights``, no config). The HDF5 tree follows the object
  graph (``keras/src/saving/saving_lib.py``: ``_save_state`` / ``H5IOStore``): the variables of the
  object at ``<path>`` are datasets ``<path>/vars/0``, ``/1`` … in the layer's own order (Dense:
  kernel, bias; LSTM/GRU cell: kernel, recurrent_kernel, bias). A model's layers are under
  ``layers/<name>``, where ``<name>`` is the snake-cased *class* name with a per-class counter
  (``dense``, ``dense_1``, ``conv2d`` …) — not the layer's own name — and other sub-objects under
  their attribute names (``lstm/cell``, ``multi_head_attention/query_dense`` or ``_query_dense``).
  ``config.json`` gives each layer's class and name: the file's ``layers/<name>`` entries are matched
  to the config's layer list by the same class-name counter. A stored ``model.weights.h5`` is read in
  place from the zip (no extraction); a compressed one is copied to a temporary file first.
* **Legacy Keras 2** ``.h5`` files (``keras/src/legacy/saving/legacy_h5_format.py``): a full model
  (``model_config`` attribute, weights under ``model_weights``) or weights only (``save_weights``),
  where a ``layer_names`` attribute lists the layers and each layer group has a ``weight_names``
  attribute of variable paths such as ``dense/kernel:0``, stored at ``<layer>/<weight name>``.

**Kinds and orientation.** Keras kernels are ``[in, out]`` (channels last); each tensor is oriented
like PyTorch's (see :mod:`htsr.matrices`) so names, shapes and ESDs match other readers:

=========================================  ==============================  =====================================
Keras layer (variable)                     stored                          htsr tensor
=========================================  ==============================  =====================================
Dense (kernel)                             ``[in, out]``                   ``dense`` ``[out, in]``
EinsumDense (kernel)                       by its equation                 ``dense`` ``[prod(out), prod(in)]``;
                                                                           ``stack`` if an axis is shared
MultiHeadAttention query/key/value         ``[dim, heads, head_dim]``      ``dense`` ``[heads·head_dim, dim]``
MultiHeadAttention attention_output        ``[heads, head_dim, dim]``      ``dense`` ``[dim, heads·head_dim]``
Embedding (embeddings)                     ``[vocab, dim]``                ``embedding`` as it is
Conv1D / 2D / 3D (+Transpose) (kernel)     ``[k…, c_in, c_out]``           ``conv1d`` … ``conv3d`` ``[c_out, c_in, k…]``
DepthwiseConv1D/2D (depthwise_kernel)      ``[k…, c_in, mult]``            ``conv1d`` / ``conv2d`` ``[c_in·mult, 1, k…]``
SeparableConv1D/2D                         depthwise + pointwise kernels   two conv tensors, as above
LSTM / GRU / SimpleRNN cell (kernel,       ``[in, k·h]``, ``[h, k·h]``     ``rnn`` ``[k·h, in]``, ``[k·h, h]``
recurrent_kernel)
ConvLSTM1D/2D/3D (kernel,                  ``[k…, c_in, 4·f]``,            ``conv1d`` … ``[4·f, c_in, k…]``,
recurrent_kernel)                          ``[k…, f, 4·f]``                ``[4·f, f, k…]``
=========================================  ==============================  =====================================

(Conv*Transpose kernels are ``[k…, c_out, c_in]`` and become ``[c_in, c_out, k…]``, as PyTorch stores
them. Gate blocks keep Keras's order, a row permutation of PyTorch's, which changes no singular value.)
Biases, normalization and other 1-D variables, optimizer and metric state are not yielded. A 2-D
variable of an unknown (custom) layer is yielded as stored with no kind (htsr infers it: dense);
a larger one is listed in :attr:`KerasFile.skipped`. A Keras 3 int8 Dense or Embedding
(``model.quantize("int8")``) is dequantized as Keras computes with it: kernel / kernel_scale (one scale per
unit), embeddings / embeddings_scale (one per token); other quantized kernels (int4, GPTQ, EinsumDense,
a legacy ``.h5`` copy) get a ``skipped`` row saying so.

**Names** are dotted paths of Keras layer names from the outermost layer (the model's own name is
left out): ``dense_1``, ``encoder.layer_0.dense``; attention projections ``attn.query``,
``attn.key``, ``attn.value``, ``attn.attention_output``; recurrent layers ``lstm.kernel`` and
``lstm.recurrent_kernel`` (a ``cell`` level is left out); other sub-objects by attribute name
without a leading underscore (``bidirectional.forward_layer.kernel``). Where no config lists a model's
layers (a bare ``.weights.h5``; a Functional subclass, such as keras_hub's backbones, whose config holds
its own arguments) they are named by the names Keras ≥ 3.8 stores with them (``vars`` attribute
``name``; live, the layer's ``name``), except a name of the form Keras makes up (``dense_7``: its count of
the layers of that class made in the process, which differs between two instances of one model), else by
the file's own ``dense_1``-style entries, and come in the file's alphabetical entry order. A model's own variables (``add_weight`` on a subclassed model) are
``vars.<i>``. A registered subclass of a Keras layer (``class StdConv2D(Conv2D)``) is read as that
layer: live by its class's ancestry, from files by its config, which is its base's
(:func:`_base_by_config`). Legacy files are named from the layer and its
weight's path (``mha/query/kernel:0`` in layer ``mha`` → ``mha.query``), a wrapper's inner layer by the
attribute Keras 3 names it by (``forward_layer``, ``backward_layer``; TimeDistributed's ``layer``), so a
model has the same rows, in the same order, live, as ``.keras`` and as legacy ``.h5``; a layer's
sub-objects come in the order it uses them (query, key, value, attention_output; forward, backward).

Bad input — a truncated or corrupt zip or HDF5 file, an archive without ``model.weights.h5``, an
HDF5 file that is not a Keras file, a weight listed but missing — raises
:class:`~htsr.errors.SourceError` with a one-line message naming the file and, where one is to blame,
the layer or tensor. Sharded weights (``*.weights.json`` + ``*_00000.weights.h5`` …) are refused, the
index and each shard (a shard is not the model), and npz-format archives are not read.

**Live models.** A Keras 3 model (or layer) object, of any backend, is read by :class:`KerasModel`
through the same mapping (:class:`_Walker`, one walk for both): its object tree is keyed as
``model.save`` would key it (``saving_lib._walk_saveable``: a Functional's or Sequential's ``layers``
first, then attributes in ``dir()`` order, private ones last, each layer once), each layer's
variables are what its ``save_own_variables`` would store, and the configs are what
``serialize_keras_object`` would write to ``config.json`` — so the tensors have the names, kinds,
shapes and values that saving the model to ``.keras`` and reading it with :class:`KerasFile` gives.
Only where the file holds no config for a layer (an attribute of a subclassed model or layer) does the
live model know more: there the file's class is a guess from the entry's or layer's default name, the
live one the layer's own class (or the known layer class it derives from). keras is imported only when such an object is read;
:func:`is_keras_object` tells one without importing it.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import re
import tempfile
import threading
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingExtraError, SourceError, described
from ..tensors import MAX_CONV_KERNEL, classify
from .base import (SAVED_AGAIN, TensorRef, check_stored_crc32, einsum_axes, expands_too_far, file_changed, file_stamp,
                   grouped_axes, import_extra, one_line, skipped_loader, stamp_of, stored_member_offset)
from .safetensors import natural_key

__all__ = ["HDF5_SIGNATURE", "KerasFile", "KerasModel", "is_hdf5", "is_keras_archive", "is_keras_object"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CONFIG = "config.json"
_WEIGHTS = "model.weights.h5"
#: a config.json larger than this is refused (a real one is kilobytes; a zip bomb expands to gigabytes)
_MAX_CONFIG_BYTES = 64 << 20

_MODELS = {"Functional", "Sequential", "Model"}
_DENSE = {"Dense", "QDense"}
_EINSUM = {"EinsumDense"}
_EMBEDDING = {"Embedding", "ReversibleEmbedding", "TokenAndPositionEmbedding", "PositionEmbedding"}
_CONV = {"Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Convolution1D",
         "Convolution2D", "Convolution3D", "Deconvolution2D", "Deconvolution3D"}
_DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
_SEPARABLE = {"SeparableConv1D", "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D"}
_RNN_LAYERS = {"LSTM": "LSTMCell", "GRU": "GRUCell", "SimpleRNN": "SimpleRNNCell", "CuDNNLSTM": "LSTMCell",
               "CuDNNGRU": "GRUCell"}
_CELLS = {"LSTMCell", "GRUCell", "SimpleRNNCell"}
# convolutional LSTMs: kernel [k…, c_in, 4·filters] and recurrent_kernel [k…, filters, 4·filters], two convs
_RNN_LAYERS.update({"ConvLSTM1D": "ConvLSTMCell", "ConvLSTM2D": "ConvLSTMCell", "ConvLSTM3D": "ConvLSTMCell"})
_CONV_CELLS = {"ConvLSTMCell", "ConvLSTM1DCell", "ConvLSTM2DCell", "ConvLSTM3DCell"}
_ATTENTION = {"MultiHeadAttention", "GroupedQueryAttention", "CachedMultiHeadAttention"}
# layers whose variables scale or shift entries one by one (2-D when they act over two axes): no matrices
_ELEMENTWISE = {"PReLU", "LayerNormalization", "BatchNormalization", "GroupNormalization", "RMSNormalization",
                "Normalization", "UnitNormalization"}
# a config names a built-in class by its public name; the weights file by the Python class's own
_CONFIG_ALIASES = {"GroupQueryAttention": "GroupedQueryAttention"}
# attention sub-layer attribute (Keras 3 file) or sub-layer name (legacy) → row name and kernel role
_PROJECTIONS = {"query_dense": "query", "key_dense": "key", "value_dense": "value",
                "output_dense": "attention_output", "query": "query", "key": "key", "value": "value",
                "attention_output": "attention_output"}
# top-level entries of a Keras 3 weights file that hold training state, not the model's weights
# (whole keys: a subclassed model's own layer attribute 'aux_loss_head' or 'metric_proj' is no training state)
_STATE = re.compile(r"_?(optimizer|metrics|compile_metrics|compile_loss|losses|loss_tracker|seed_generator(_\d+)?)",
                    re.IGNORECASE)
_COUNTER = re.compile(r"_\d+$")
# a recurrent layer's cell in a legacy weight path: cell, lstm_cell, and tf.keras 2's numbered lstm_cell_1
_CELL = re.compile(r"(\w+_)?cell(_\d+)?")
# a layer's sub-objects in the order the layer uses them (a file and dir() list them alphabetically:
# key, output, query, value; backward before forward); the rest after these, by name
_CHILD_ORDER = {"query": 0, "key": 1, "value": 2, "attention_output": 3, "forward_layer": 0, "backward_layer": 1}
# a LoRA-enabled layer's factors (Keras 3's enable_lora), by the variable they update
_LORA_FACTORS = {"kernel": ("lora_kernel_a", "lora_kernel_b"), "embeddings": ("lora_embeddings_a", "lora_embeddings_b")}
_LORA_OF = {f: var for var, pair in _LORA_FACTORS.items() for f in pair}
_WEIGHT_SUFFIX = re.compile(r":\d+$")


def _layer_name(lc: dict) -> Any:
    """A serialized layer's name (its config's, else its own), None if neither is there; a config that is
    no mapping (a corrupt config.json) names nothing, and the layer is read without it."""
    inner = lc.get("config")
    return (inner.get("name") if isinstance(inner, dict) else None) or lc.get("name")


def _quantization_mode(inner: dict) -> str | None:
    """The quantization mode a layer's config gives in its dtype policy ('int8', 'int4' for 'int4/128' or
    Keras 3.2-3.3's 'int4_from_float32' …), None when it gives none (no config: a bare .weights.h5)."""
    policy = inner.get("dtype")
    if isinstance(policy, str):
        return policy.split("_from_")[0] if "_from_" in policy else None
    cfg = policy.get("config") if isinstance(policy, dict) else None
    mode = cfg.get("mode") if isinstance(cfg, dict) else None
    return mode.split("/")[0] if isinstance(mode, str) else None


def _not_a_matrix(cls: str, what: str) -> str:
    """Why a ≥ 2-D variable of a known layer class is not analysed."""
    if cls in _ELEMENTWISE:
        return f"element-wise parameters of a {cls} layer, no weight matrix"
    return f"{what} of a {cls} layer: a bias, a quantization scale or state"


def _one_d(var: _Var) -> str:
    """Why a 1-D variable is not analysed, in the words a state dict's 1-D tensor gets."""
    return classify(var.where, var.shape)[1]


def to_snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case`` (how a Keras 3 file names a container's entries)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


_KNOWN = (_MODELS | _DENSE | _EINSUM | _EMBEDDING | _CONV | _DEPTHWISE | _SEPARABLE | set(_RNN_LAYERS)
          | _CELLS | _CONV_CELLS | _ATTENTION | _ELEMENTWISE | {"Bidirectional", "TimeDistributed", "RNN", "StackedRNNCells"})
_CLASS_OF_SNAKE = {to_snake_case(c): c for c in sorted(_KNOWN)}


def is_hdf5(head: bytes) -> bool:
    """True if the first bytes are the HDF5 signature (no user block)."""
    return head.startswith(HDF5_SIGNATURE)


def is_keras_archive(names: list[str]) -> bool:
    """True for the member list of a Keras 3 ``.keras`` zip (config plus HDF5 or npz weights)."""
    return _CONFIG in names and any(n in (_WEIGHTS, "model.weights.npz") for n in names)


def _h5py() -> Any:
    return import_extra("h5py", "keras", "reading Keras .keras / .h5 files")


def _short(e: BaseException) -> str:
    return one_line(e, 200)




def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v)


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    """HDF5 object ``obj``'s attribute ``name`` (``default`` when it has none), read only when it holds strings or
    numbers, as every Keras writer stores them: HDF5 follows a variable-length sequence's heap pointer unchecked, and
    one flipped byte in a file's type message (a name's string type read as a sequence) had crashed the process
    (SIGSEGV, no message). Another type is a ValueError (a corrupt file, said in one line)."""
    if name not in obj.attrs:
        return default
    h5t = _h5py().h5t
    cls = _h5py().h5a.open(obj.id, name.encode()).get_type().get_class()
    if cls not in (h5t.STRING, h5t.INTEGER, h5t.FLOAT):
        raise ValueError(f"attribute {name!r} of {obj.name!r} holds HDF5 type class {cls}, neither strings nor "
                         "numbers as Keras stores them")
    return obj.attrs[name]


# ------------------------------------------------------------------------------------- orientations


@dataclass(frozen=True)
class _Plan:
    """How a stored Keras tensor becomes an htsr tensor: reshape, transpose, reshape."""

    kind: str | None
    shape: tuple[int, ...]  # htsr shape, what load() returns
    pre: tuple[int, ...] | None = None  # reshape before the transpose
    perm: tuple[int, ...] | None = None

    def apply(self, a: np.ndarray) -> np.ndarray:
        if self.pre is not None:
            a = a.reshape(self.pre)
        if self.perm is not None:
            a = a.transpose(self.perm)
        return np.ascontiguousarray(a.reshape(self.shape))


def _as_stored(shape: tuple[int, ...], kind: str | None) -> _Plan:
    return _Plan(kind, shape)


def _transposed(shape: tuple[int, ...], kind: str) -> _Plan | None:
    if len(shape) != 2:
        return None
    return _Plan(kind, (shape[1], shape[0]), perm=(1, 0))


def _conv(shape: tuple[int, ...]) -> _Plan | None:
    """Channels-last ``[k…, a, b]`` → ``[b, a, k…]`` (Conv: a = c_in, b = c_out)."""
    n = len(shape) - 2
    if n not in (1, 2, 3):
        return None
    perm = (n + 1, n) + tuple(range(n))
    return _Plan(f"conv{n}d", tuple(shape[p] for p in perm), perm=perm)


def _depthwise(shape: tuple[int, ...]) -> _Plan | None:
    """``[k…, c_in, mult]`` → ``[c_in·mult, 1, k…]`` (PyTorch's depthwise weight, groups = c_in)."""
    n = len(shape) - 2
    if n not in (1, 2):
        return None
    pre = tuple(shape[:n]) + (shape[n] * shape[n + 1], 1)
    perm = (n, n + 1) + tuple(range(n))
    return _Plan(f"conv{n}d", tuple(pre[p] for p in perm), pre=pre, perm=perm)


def _grouped(shape: tuple[int, ...], ins: list[int], outs: list[int], batch: list[int]) -> _Plan | None:
    """Axes of a kernel grouped into ``[out, in]`` (or ``[batch, out, in]``, a stack): :func:`grouped_axes`."""
    g = grouped_axes(shape, ins, outs, batch)
    return _Plan(g[0], g[1], perm=g[2]) if g else None


def _einsum(shape: tuple[int, ...], equation: Any) -> _Plan | None:
    """An EinsumDense kernel (the einsum's second operand), grouped by :func:`~htsr.io.base.einsum_axes`."""
    axes = einsum_axes(equation, 1, len(shape))
    return _grouped(shape, *axes) if axes else None


def _projection(shape: tuple[int, ...], role: str, mha: bool = True) -> _Plan | None:
    """A MultiHeadAttention projection: query/key/value ``[dim, heads, head_dim]``, output
    ``[heads, head_dim, *out]`` (the first two axes are the input, however many output axes
    ``output_shape`` gives: no config is needed to read it).

    ``mha=False``: a projection of a custom attention layer whose equation is not saved. Its output kernel
    is laid out as MultiHeadAttention's, but its query/key/value may be ``[heads, dim, head_dim]``
    (keras_hub's Gemma: ``btd,ndh->btnh``): the model width is the larger of the first two axes (the
    head size is last in both), and a kernel whose first two axes are equal is not guessed (None)."""
    r = len(shape)
    if r < 2:
        return None
    if role == "attention_output":
        n_in = 2 if r >= 3 else 1
        return _grouped(shape, list(range(n_in)), list(range(n_in, r)), [])
    if not mha and r == 3:
        if shape[0] == shape[1]:
            return None
        if shape[1] > shape[0]:
            return _grouped(shape, [1], [0, 2], [])
    return _grouped(shape, [0], list(range(1, r)), [])


# -------------------------------------------------------------------------------- the zip member


class _ArchiveChanged(SourceError, OSError):
    """A .keras archive saved again while h5py read its weights through :class:`_ZipMember`."""


class _ZipMember(io.RawIOBase):
    """A read-only, seekable window on an uncompressed zip member (h5py reads through it), of the file ``stamp``
    (:func:`~htsr.io.base.file_stamp`) describes: a model saved again in place (Keras' ModelCheckpoint) is not read
    at the old archive's offsets (its rows had mixed two models' weights, or read as NaN)."""

    def __init__(self, path: Path, start: int, size: int, stamp: tuple | None = None) -> None:
        super().__init__()
        self._f = open(path, "rb")  # noqa: SIM115 - closed with this object
        self._path, self._stamp = path, stamp
        self._start, self._size, self._pos = start, size, 0
        self._lock = threading.Lock()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b) -> int:
        n = max(0, min(len(b), self._size - self._pos))
        if n == 0:
            return 0
        with self._lock:
            if self._stamp is not None and stamp_of(os.fstat(self._f.fileno())) != tuple(self._stamp):
                # (an OSError, as h5py passes on from a file it reads; a SourceError, which the tensor's read
                # passes on as it is)
                raise file_changed(self._path, SAVED_AGAIN, _ArchiveChanged)
            self._f.seek(self._start + self._pos)
            got = self._f.readinto(memoryview(b)[:n])
        self._pos += got or 0
        return got or 0

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def _member_file(path: Path, z: zipfile.ZipFile, info: zipfile.ZipInfo) -> io.IOBase:
    """The weights member as a seekable file: a window on the zip if stored, else a temporary copy."""
    if info.flag_bits & 0x1:
        raise SourceError(f"{path}: {info.filename} is encrypted; htsr cannot read it")
    if info.compress_type == zipfile.ZIP_STORED:
        stamp = file_stamp(path)  # (before the member is found: a file saved again since is not read)
        with open(path, "rb") as f:
            start = stored_member_offset(f, info)
        if start is None:
            raise SourceError(f"{path}: corrupt zip archive (bad local header for {info.filename}); truncated?")
        if start + info.file_size > path.stat().st_size:
            raise SourceError(f"{path}: {info.filename} runs past the end of the archive (truncated?)")
        try:  # (h5py reads the window in place, past zipfile's check; the whole member is read once here)
            check_stored_crc32(path, start, info, stamp)
        except ValueError as e:
            raise SourceError(f"{path}: {e}; the file is corrupt: save or download it again") from None
        return _ZipMember(path, start, info.file_size, stamp)
    if expands_too_far(info.file_size, info.compress_size):
        raise SourceError(f"{path}: {info.filename} would expand {info.compress_size} bytes to {info.file_size}: "
                          "not a compressed weights file (a zip bomb?); re-save the model")
    tmp = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for h5py, deleted when closed
    try:
        with z.open(info) as src:
            head = src.read(len(HDF5_SIGNATURE))
            if head != HDF5_SIGNATURE:  # before anything is copied
                raise SourceError(f"{path}: {info.filename} is not an HDF5 file (starts with {head!r}); "
                                  "re-save the model")
            tmp.write(head)
            copied = len(head)
            while chunk := src.read(1 << 20):
                copied += len(chunk)
                if copied > info.file_size:  # a member that expands beyond what its header declares
                    raise SourceError(f"{path}: {info.filename} expands beyond its declared {info.file_size} "
                                      "bytes: corrupt archive")
                tmp.write(chunk)
    except SourceError:
        tmp.close()
        raise
    except Exception as e:  # noqa: BLE001 - BadZipFile, zlib.error, LZMAError, NotImplementedError, OSError …
        tmp.close()
        raise SourceError(f"{path}: cannot extract {info.filename} ({described(e, 200)}); "
                          "truncated or corrupt?") from None
    tmp.seek(0)
    return tmp


# ------------------------------------------------------------------------- the Keras 3 object tree


@dataclass(frozen=True)
class _Var:
    """One stored variable of an object: ``<path>/vars/<i>`` in a weights file, the same entry of
    ``save_own_variables`` for a live layer."""

    shape: tuple[int, ...]
    dtype: str
    where: str  # its HDF5 path (a live model: the path it would have), for skipped and messages
    ref: Any  # what the source loads: the HDF5 path, or the variable itself


@dataclass(frozen=True)
class _Entry:
    name: str
    ref: Any  # _Var.ref
    dtype: str
    plan: _Plan
    scale: Any = None  # a quantized kernel's scale (its _Var.ref): the weights are kernel / scale, as Keras's
    scale_axis: int = 1  # the stored kernel's axis the scale runs along (Dense: units; Embedding: vocab 0)
    lora: tuple[Any, Any, float] | None = None  # a LoRA-enabled layer in a legacy .h5: (A, B, alpha / rank)
    skip: str = ""  # why the tensor cannot be read (a quantized kernel htsr does not dequantize): its row says so


def _entry_ref(e: _Entry, read: Callable[[Any, str], np.ndarray]) -> TensorRef:
    """The tensor of entry ``e``, read through ``read`` (an int8 layer's codes: 8 bits, a scale per row)."""
    return TensorRef(e.name, e.plan.shape, e.dtype, _entry_loader(e, read), kind=e.plan.kind,
                     bits=8 if e.scale is not None else None,
                     quant_block=e.plan.shape[-1] if e.scale is not None else None)


def _entry_loader(e: _Entry, read: Callable[[Any, str], np.ndarray]) -> Callable[[], np.ndarray]:
    """The loader of entry ``e`` given ``read(ref, name)``, a reader's raw read of one variable."""
    if e.skip:
        return skipped_loader(e.skip)

    def load() -> np.ndarray:
        a = _float_array(read(e.ref, e.name))
        if e.lora is not None:  # W + (alpha / rank)·A·B, the weights Keras computes with
            A, B, scale = e.lora
            a = a + np.float32(scale) * (_float_array(read(A, e.name)) @ _float_array(read(B, e.name)))
        if e.scale is not None:  # Keras's int8 Dense and Embedding: the codes divided by their scale
            shape = [-1 if i == e.scale_axis else 1 for i in range(a.ndim)]
            a = a.astype(np.float32) / _float_array(read(e.scale, e.name)).astype(np.float32).reshape(shape)
        return e.plan.apply(a)

    return load


def _guess_class(key: str | None) -> str | None:
    """The class a Keras file entry or default layer name (``dense_1``) stands for, if a known one."""
    if not key:
        return None
    return _CLASS_OF_SNAKE.get(_COUNTER.sub("", key), _CLASS_OF_SNAKE.get(key))


def _class_by_shapes(shapes: list[tuple[int, ...]], cell: bool = False) -> str | None:
    """The Keras layer a file's object without a config or a telling name is, by its variables' shapes (in
    order), where they say it: a recurrent cell's kernel [in, g·h], recurrent kernel [h, g·h] (g = 4: LSTM, 3: GRU)
    and bias ([g·h], GRU's [2, g·h]) — with ``cell`` (an RNN's ``cell``: a cell for sure) also g = 1, SimpleRNN's,
    and g = 3 or 4 without a bias (a custom cell's bias-free W, U stay as stored, as its live layer holds them) —;
    a convolution's kernel [k…, in, out] with a bias [out], a depthwise one's [k…, in, mult] with a bias [in·mult];
    a bias-free kernel [k…, in, 1] as a convolution (a depthwise one of multiplier 1, the usual, read so has the
    same singular values); a Dense kernel [in, out] with a bias [out]. None otherwise: a bias-free kernel
    [k…, in, n > 1] is a convolution's or a depthwise one's of multiplier n, an Embedding's table a bias-free
    Dense's kernel, a custom layer's W [in, h], U [h, h], b [h] a SimpleRNN cell's, its [1, n, d] table a
    size-1 Conv1D kernel's."""
    if 2 <= len(shapes) <= 3 and all(len(s) == 2 for s in shapes[:2]):
        (_, gh), (h, gh2) = shapes[0], shapes[1]
        gates = gh // h if h and gh == gh2 and gh % h == 0 else 0
        bias = len(shapes) == 3 and shapes[2] in ((gh,), (2, gh))
        if gates in (3, 4) and (bias or cell) or (cell and gates == 1 and bias):
            return {1: "SimpleRNNCell", 3: "GRUCell", 4: "LSTMCell"}[gates]
    if len(shapes) in (1, 2) and 3 <= len(shapes[0]) <= 5 and max(shapes[0][:-2]) <= MAX_CONV_KERNEL:
        rank, bias = len(shapes[0]) - 2, shapes[1] if len(shapes) == 2 else None
        if bias is None and shapes[0][-1] == 1 and shapes[0][-2] > 1 or bias == shapes[0][-1:]:
            return f"Conv{rank}D"
        if rank < 3 and bias == (shapes[0][-2] * shapes[0][-1],):
            return f"DepthwiseConv{rank}D"
        return None
    if len(shapes) == 2 and len(shapes[0]) == 2 and shapes[1] == shapes[0][1:]:
        return "Dense"
    return None


def _base_by_config(inner: dict, shapes: list[tuple[int, ...]] | None = None) -> str | None:
    """The Keras layer a custom class's config is the config of (a registered subclass keeps its base's
    ``get_config``): Conv1D/2D/3D by ``filters`` and a ``kernel_size`` of that rank, DepthwiseConv by
    ``depth_multiplier``, SeparableConv by that and ``pointwise_initializer``, Embedding by ``input_dim`` and
    ``output_dim``, MultiHeadAttention by ``num_heads`` and ``key_dim``, EinsumDense by ``equation``, Dense by
    ``units`` (a recurrent cell's ``recurrent_*`` keys excluded); None for any other config. With the layer's
    variables' ``shapes`` (in order), only if they are that layer's: its kernel (of the convolution's rank; a
    separable one's two), then a bias at most — a custom cell or attention layer that keeps ``units`` in its
    config but weights of its own is no Dense."""
    base = _config_base(inner)
    if base is None or shapes is None or base == "MultiHeadAttention":  # (an attention's weights: sub-layers)
        return base
    rank = {"Conv1D": 3, "Conv2D": 4, "Conv3D": 5, "DepthwiseConv1D": 3, "DepthwiseConv2D": 4, "Dense": 2,
            "Embedding": 2, "SeparableConv1D": 3, "SeparableConv2D": 4}.get(base)
    kernels = 2 if base in _SEPARABLE else 1  # (a separable convolution: its depthwise, then pointwise kernel)
    fits = kernels <= len(shapes) <= kernels + 1 and all(
        len(s) == rank if rank else len(s) >= 2 for s in shapes[:kernels]) and all(
        len(s) == 1 or base == "EinsumDense" for s in shapes[kernels:]) and not (base == "Embedding" and len(shapes) > 1)
    return base if fits else None


#: a Keras layer's own variables by name, as a legacy .h5 names them
_BASE_VARIABLES = {"Dense": ("kernel",), "EinsumDense": ("kernel",), "Embedding": ("embeddings",),
                   "Conv1D": ("kernel",), "Conv2D": ("kernel",), "Conv3D": ("kernel",),
                   "DepthwiseConv1D": ("kernel", "depthwise_kernel"), "DepthwiseConv2D": ("kernel", "depthwise_kernel"),
                   "SeparableConv1D": ("depthwise_kernel", "pointwise_kernel"),
                   "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel"), "MultiHeadAttention": ("kernel",)}


def _config_base(inner: dict) -> str | None:
    keys = inner.keys()
    size = inner.get("kernel_size")
    rank = len(size) if isinstance(size, (list, tuple)) else 1 if isinstance(size, int) else 0
    if "depth_multiplier" in keys and rank in (1, 2):
        return f"SeparableConv{rank}D" if "pointwise_initializer" in keys else f"DepthwiseConv{rank}D"
    if "filters" in keys and rank in (1, 2, 3) and not any(k.startswith(("recurrent", "depth", "pointwise"))
                                                           for k in keys):
        return f"Conv{rank}D"
    if {"input_dim", "output_dim"} <= keys:
        return "Embedding"
    if {"num_heads", "key_dim"} <= keys:
        return "MultiHeadAttention"
    if "equation" in keys and "output_shape" in keys:
        return "EinsumDense"
    if "units" in keys and not any(k.startswith("recurrent") for k in keys):
        return "Dense"
    return None


def _config_class(cfg: dict) -> str:
    """The Python class name of a serialized object (``package>Name`` for registered custom ones)."""
    name = cfg["class_name"].split(">")[-1]
    return _CONFIG_ALIASES.get(name, name)


def _bidirectional_side(inner: Any, comp: str) -> tuple[bool, Any]:
    """Whether a Bidirectional's scope component ``comp`` (in a legacy file) is its backward layer, and that
    layer's config (None if its ``inner`` config has none). Keras 2 names its layers 'forward_<name>' and
    'backward_<name>', a given backward layer too (its config keeps its own name, which Keras 3 uses)."""
    inner = inner if isinstance(inner, dict) else {}
    back = inner.get("backward_layer")
    back_name = _layer_name(back) if isinstance(back, dict) else None
    backward = comp in (back_name, f"backward_{back_name}") if back_name else comp.startswith("backward_")
    return backward, back if backward and isinstance(back, dict) else inner.get("layer")


def _unique(entries: list[_Entry]) -> list[_Entry]:
    """Unique names: a repeated one gets _2, _3 …"""
    seen: dict[str, int] = {}
    out = []
    for e in entries:
        n = seen.get(e.name, 0) + 1
        seen[e.name] = n
        out.append(e if n == 1 else dataclasses.replace(e, name=f"{e.name}_{n}"))
    return out


class _Unlisted(Exception):
    """A live layer whose variables cannot be listed (its own save_own_variables raised)."""


class _Walker:
    """The one mapping of a Keras 3 object tree to htsr tensors — names, kinds and orientations — for
    a weights file (:class:`_H5Node`) and a live model (:class:`_LiveNode`) alike.

    A node is one object as ``model.save`` stores it (``saving_lib._save_state``): ``children()`` its
    sub-objects under the keys the file uses (``layers`` for a model's layer list, otherwise the
    attribute name; a list's items by snake-cased class name + counter), ``variables()`` its
    ``vars/<i>``, ``resolve_class(guess)`` its class where no config reaches it (a file: the guess from
    its key, else from its stored layer name; a live object: its own class) and ``own_config()`` its
    config there (a live object's ``get_config()``; a file has none). Classes and configs come from
    the model's serialized config first (``config.json``; for a live model the same
    ``serialize_keras_object``), matched to a model's layer list by the same class-name counter."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.skipped: list[tuple[str, str]] = []  # (HDF5 path, reason) of ≥2-D variables not yielded
        self.not_weights: list[tuple[str, str]] = []  # (HDF5 path, reason) of the 1-D ones: biases, norm scales

    def walk(self, root: Any, config: dict | None) -> list[_Entry]:
        cfg = config if isinstance(config, dict) and isinstance(config.get("class_name"), str) else None
        self._visit(root, cfg, _config_class(cfg) if cfg else None, [], top=True)
        return _unique(self.entries)

    def add(self, name: str, var: _Var, plan: _Plan | None, reason: str = "",
            lora: tuple[Any, Any, float] | None = None, skip: str = "", mode: str | None = None) -> None:
        """One variable: a row by ``plan``, else listed with ``reason``; ``mode``: the layer's quantization mode
        (its config's dtype policy), which names integer codes (int4 stored packed two to an int8)."""
        if plan is None:
            if len(var.shape) >= 2:
                self.skipped.append((var.where, reason or f"{len(var.shape)}-D variable of an unknown layer"))
            else:
                self.not_weights.append((var.where, _one_d(var)))
            return
        if var.dtype.startswith(("int", "uint")):  # quantized codes (a complex dtype is said as such downstream)
            codes = (f"{mode} codes (packed two to an {var.dtype}: the shape shown is the packed one)"
                     if mode in ("int4", "int2") and mode != var.dtype else f"{var.dtype} codes")
            self.entries.append(_Entry(name, var.ref, var.dtype, plan, skip=(
                f"{codes} of a quantized Keras layer that htsr does not dequantize (it does int8 Dense "
                "and Embedding layers of .keras files and live models); analyse the float model")))
            return
        self.entries.append(_Entry(name, var.ref, var.dtype, plan, lora=lora, skip=skip))

    def _quantized(self, base: str, variables: dict[str, _Var], inner: dict, embedding: bool) -> bool:
        """Keras's int8 Dense and Embedding (``quantize("int8")``, which the layer's config says in its dtype
        policy's mode): a Dense stores kernel (int8 [in, units]), bias if any, kernel_scale (float [units]); an
        Embedding embeddings (int8 [vocab, dim]) and embeddings_scale ([vocab]); the weights are the codes
        divided by their scale. One entry, True. (Keras 3.11-3.12 store int4 as packed int8 of the same
        layout, half as many rows: their configs say the mode, which tells them apart; without a config the
        layout decides.)"""
        if _quantization_mode(inner) not in ("int8", None):  # (no mode said: the layout rule below decides)
            return False
        last_key = str(len(variables) - 1)
        codes, last = variables.get("0"), variables.get(last_key)
        axis = 0 if embedding else 1
        if (codes is None or codes.dtype != "int8" or len(codes.shape) != 2 or len(variables) not in (2, 3)
                or last is None or last.shape != (codes.shape[axis],) or not last.dtype.startswith("float")):
            return False
        del variables["0"], variables[last_key]
        plan = _as_stored(codes.shape, "embedding") if embedding else _transposed(codes.shape, "dense")
        self.entries.append(_Entry(base, codes.ref, "float32", plan, scale=last.ref, scale_axis=axis))
        return True

    def _visit(self, node: Any, cfg: dict | None, cls: str | None, parts: list[str], top: bool = False,
               mha: bool = True) -> None:
        inner = cfg.get("config", {}) if isinstance(cfg, dict) else {}
        inner = inner if isinstance(inner, dict) else {}
        if not isinstance(cfg, dict):  # no config reaches this object: what it tells of itself
            cls = node.resolve_class(cls)
            if cls in _EINSUM:  # (its equation; an attention layer's config holds none of its projections')
                inner = node.own_config()
        elif cls not in _KNOWN and not top:  # a registered subclass of a Keras layer (StdConv2D(Conv2D)): that layer
            try:
                shapes = [v.shape for _, v in sorted(node.variables().items(), key=lambda kv: natural_key(kv[0]))]
            except _Unlisted:
                shapes = []
            cls = node.known_base() or _base_by_config(inner, shapes) or cls
        self._vars(node, inner, cls, parts, mha)  # (a subclassed model's own add_weight matrices too)
        def order(kc: tuple[str, Any]) -> tuple:
            attr = kc[0].lstrip("_")
            return _CHILD_ORDER.get(_PROJECTIONS.get(attr, attr), len(_CHILD_ORDER)), natural_key(kc[0])

        for key, child in sorted(node.children(), key=order):
            if key in ("layers", "_layer_checkpoint_dependencies"):
                self._container(child, inner.get("layers"), parts)
                continue
            attr = key.lstrip("_")
            if top and _STATE.fullmatch(key):
                continue  # optimizer, metrics, losses: training state
            cell = attr == "cell" and not top  # an RNN's cell (a model's own attribute 'cell' is a layer of it)
            sub_cfg, sub_cls = self._attribute(cls, inner, attr)
            if cell and sub_cls is None and sub_cfg is None:  # an RNN's cell of no class the file gives
                try:
                    sub_cls = _class_by_shapes([v.shape for _, v in sorted(child.variables().items(),
                                                                             key=lambda kv: natural_key(kv[0]))], cell=True)
                except _Unlisted:
                    pass
            if cell:
                sub_parts = parts
            elif cls in _ATTENTION or (sub_cls == "EinsumDense" and attr in _PROJECTIONS):
                sub_parts = parts + [_PROJECTIONS.get(attr, attr)]
            else:
                sub_parts = parts + [attr]
            # (an attention projection's layout is MultiHeadAttention's under a known attention class only)
            self._visit(child, sub_cfg, sub_cls, sub_parts, mha=cls in _ATTENTION)

    def _container(self, node: Any, layers: Any, parts: list[str]) -> None:
        """A list of layers: entries named by snake-cased class name + counter, matched to the config."""
        by_entry: dict[str, dict] = {}
        order: list[str] = []
        if isinstance(layers, list):
            used: dict[str, int] = {}
            for lc in layers:
                if not isinstance(lc, dict) or not isinstance(lc.get("class_name"), str):
                    continue
                n = to_snake_case(_config_class(lc))
                used[n] = used.get(n, -1) + 1
                entry = n if used[n] == 0 else f"{n}_{used[n]}"
                by_entry[entry] = lc
                order.append(entry)
        children = dict(sorted(node.children(), key=lambda kc: natural_key(kc[0])))
        for key in [k for k in order if k in children] + [k for k in children if k not in by_entry]:
            lc = by_entry.get(key)
            if lc is not None:
                name = _layer_name(lc) or key
                cls = _config_class(lc)
            else:  # (a Functional subclass's config has no layer list: keras_hub's backbones): its own name, unless
                # one Keras made up (dense_7: its count of Dense layers in the process, no name of this model's)
                cls, stored = _guess_class(key), children[key].stored_name()
                auto = stored is not None and re.fullmatch(rf"{re.escape(_COUNTER.sub('', key))}(_\d+)?", stored)
                name = stored if stored and not auto else key
            self._visit(children[key], lc, cls, parts + [str(name)])

    def _attribute(self, cls: str | None, inner: dict, attr: str) -> tuple[dict | None, str | None]:
        """Config and class of the sub-object stored under attribute ``attr`` of a ``cls`` layer."""
        key = {"forward_layer": "layer", "backward_layer": "backward_layer"}.get(attr, attr)
        sub = inner.get(key)
        if attr == "backward_layer" and not isinstance(sub, dict):
            sub = inner.get("layer")
        if isinstance(sub, dict) and isinstance(sub.get("class_name"), str):
            return sub, _config_class(sub)
        if attr == "cell" and cls in _RNN_LAYERS:
            return None, _RNN_LAYERS[cls]
        if attr in _PROJECTIONS and (cls in _ATTENTION or cls is None or cls not in _KNOWN):
            return None, "EinsumDense"
        return None, _guess_class(attr)

    def _vars(self, node: Any, inner: dict, cls: str | None, parts: list[str], mha: bool = True) -> None:
        """The per-layer-class mapping: which of an object's variables are weights, and their plans."""
        base = ".".join(parts)
        try:
            variables: dict[str, _Var] = dict(node.variables())
        except _Unlisted as e:
            self.entries.append(_Entry(base or "<model>", None, "float32", _Plan(None, ()), skip=str(e)))
            return

        coded: list[bool] = []  # whether each kernel taken holds quantized codes (int8, int4 packed, float8)

        def take(index: int, suffix: str, plan_of: Callable[[tuple[int, ...]], _Plan | None]) -> None:
            var = variables.pop(str(index), None)
            if var is not None:
                coded.append(var.dtype.startswith(("int", "uint", "float8")))
                name = f"{base}.{suffix}" if suffix else base
                plan = plan_of(var.shape)
                if plan is None and var.dtype.startswith(("int", "uint")):  # packed codes (int4: half the rows)
                    plan = _as_stored(var.shape, None)  # (a row saying they are not read, as from a file)
                self.add(name or suffix, var, plan, f"unexpected shape for a {cls} kernel", mode=_quantization_mode(inner))

        if cls in _DENSE:
            if not self._quantized(base, variables, inner, embedding=False):
                take(0, "", lambda s: _transposed(s, "dense"))
        elif cls in _EINSUM:
            role = parts[-1] if parts and parts[-1] in ("query", "key", "value", "attention_output") else None
            if "equation" in inner:
                take(0, "", lambda s: _einsum(s, inner["equation"]))
            elif role is not None:
                take(0, "", lambda s: _projection(s, role, mha))
            else:
                take(0, "", lambda s: _transposed(s, "dense"))
        elif cls in _EMBEDDING:
            if not self._quantized(base, variables, inner, embedding=True):
                take(0, "", lambda s: _as_stored(s, "embedding") if len(s) == 2 else None)
            if cls == "ReversibleEmbedding" and len(variables) == 1:
                # tie_weights=False (keras_hub's LLM heads): the output projection [dim, vocab], as [vocab, dim]
                take(int(next(iter(variables))), "reverse_embeddings", lambda s: _transposed(s, "dense"))
        elif cls in _CONV:
            take(0, "", _conv)
        elif cls in _DEPTHWISE:
            take(0, "", _depthwise)
        elif cls in _SEPARABLE:
            take(0, "depthwise", _depthwise)
            take(1, "pointwise", _conv)
        elif cls in _CELLS:
            take(0, "kernel", lambda s: _transposed(s, "rnn"))
            take(1, "recurrent_kernel", lambda s: _transposed(s, "rnn"))
        elif cls in _CONV_CELLS:
            take(0, "kernel", _conv)
            take(1, "recurrent_kernel", _conv)
        if cls in _KNOWN:
            for k, var in variables.items():  # biases (2-D for EinsumDense and GRU), quantization scales
                if len(var.shape) >= 2 and len(variables) == 1 and coded and not any(coded):
                    # the one left after a float layer's kernels: its bias, as a legacy .h5 file names it (h62); a
                    # quantized layer's may be its scale (a bias-free int8 projection's kernel_scale, h63)
                    self.not_weights.append((var.where, "2-D bias of a layer"))
                elif len(var.shape) >= 2:
                    self.skipped.append((var.where, _not_a_matrix(cls, f"variable {k}")))
                else:  # (a weight layer's is its bias, in a state dict's words: its path in the file, vars/1,
                    # had been taken for a norm scale; a norm layer's, its scales and buffers)
                    self.not_weights.append((var.where, _one_d(var) if cls in _ELEMENTWISE
                                             else classify(f"{base}.bias", var.shape)[1]))
            return
        for k in sorted(variables, key=natural_key):
            var = variables[k]
            if len(var.shape) == 2:
                self.add(f"{base}.vars.{k}" if base else f"vars.{k}", var, _as_stored(var.shape, None))
            elif len(var.shape) > 2:
                self.add("", var, None, f"{len(var.shape)}-D variable of a {cls} layer" if cls else
                         f"{len(var.shape)}-D variable of a layer the file gives no class for (a custom layer's, or a "
                         "bias-free convolution's, whose kernel a depthwise one's looks like): analyse the live model")
            else:
                self.not_weights.append((var.where, _one_d(var)))


class _H5Node:
    """A group of a Keras 3 weights file as a node of the object tree."""

    def __init__(self, group: Any, h5py: Any, seen: set) -> None:
        self.group, self._h5py, self._seen = group, h5py, seen  # seen: the groups walked (shared by the tree)

    def children(self) -> list[tuple[str, _H5Node]]:
        """The child groups not walked before: a group hard-linked under several names (2^n paths through
        a chain of n doubly linked groups, in a few kilobytes) is walked once, under its first name."""
        Group, out = self._h5py.Group, []
        for k in self.group:
            g = self.group.get(k) if k != "vars" else None
            if isinstance(g, Group) and g.id not in self._seen:
                self._seen.add(g.id)
                out.append((k, _H5Node(g, self._h5py, self._seen)))
        return out

    def variables(self) -> dict[str, _Var]:
        v = self.group.get("vars")
        if not isinstance(v, self._h5py.Group):
            return {}
        Dataset = self._h5py.Dataset
        return {k: _Var(tuple(ds.shape), _h5_dtype(ds), ds.name, ds.name)
                for k in v if isinstance(ds := v.get(k), Dataset) and ds.shape is not None}  # None: h5py.Empty

    def resolve_class(self, guess: str | None) -> str | None:
        if guess is not None:
            return guess
        name = self.stored_name()  # (Keras ≥ 3.8 stores the object's name: a default one gives the class)
        known = _guess_class(name) if name is not None else None
        if known is None:  # no config, and a name of the user's (or none: Keras < 3.8): what its variables are
            shapes = [v.shape for _, v in sorted(self.variables().items(), key=lambda kv: natural_key(kv[0]))]
            known = _class_by_shapes(shapes)
        return known

    def own_config(self) -> dict:
        return {}

    def known_base(self) -> str | None:
        return None  # (a file does not say what a custom class derives from: its config does, _base_by_config)

    def stored_name(self) -> str | None:
        """The layer's own name, which Keras ≥ 3.8 stores on its ``vars`` group."""
        v = self.group.get("vars")
        name = _attr(v, "name") if isinstance(v, self._h5py.Group) else None
        return (_text(name) or None) if name is not None else None


def _h5_dtype(ds: Any) -> str:
    if _is_bf16(ds):
        return "bfloat16"
    return ds.dtype.name


def _is_bf16(ds: Any) -> bool:
    """A bfloat16 dataset: Keras 3 marks it with a dtype attribute; its legacy .h5 writer stores the same
    two bytes a value as an opaque 2-byte type ('void16', which Keras itself cannot read back)."""
    # (two bytes a value either way: a float32 dataset marked bfloat16 is read as the float32 it holds)
    return ds.dtype.itemsize == 2 and (_text(_attr(ds, "dtype", "")) == "bfloat16" or ds.dtype.kind == "V")


def _float_array(a: np.ndarray) -> np.ndarray:
    """Reduced-precision floats as float32 (what htsr analyses), byte order native (a big-endian float64
    stays float64)."""
    if a.dtype.name.startswith(("bfloat16", "float8")):  # ml_dtypes
        return a.astype(np.float32)
    if a.dtype.kind == "f" and not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype.kind == "f" and a.dtype not in (np.float32, np.float64):
        return a.astype(np.float32)
    return a


# ------------------------------------------------------------------------------------------- reader


class KerasFile:
    """The weights of a ``.keras`` archive (or its unzipped folder), a Keras 3 ``.weights.h5``, or a
    legacy Keras 2 ``.h5`` model / weights file, read lazily (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self._walker = _Walker()  # the Keras 3 tree walk; legacy files add their entries to it too
        # (HDF5 path, reason) of ≥2-D variables not yielded
        self.skipped: list[tuple[str, str]] = self._walker.skipped
        self.not_weights: list[tuple[str, str]] = self._walker.not_weights
        self._h5py = _h5py()
        self._fileobj: io.IOBase | None = None
        self._where = str(self.path)  # the HDF5 file, for messages
        config = None
        try:
            if self.path.is_dir():
                if (self.path / _CONFIG).stat().st_size > _MAX_CONFIG_BYTES:
                    raise SourceError(f"{self.path / _CONFIG}: larger than {_MAX_CONFIG_BYTES >> 20} MB: not a "
                                      "Keras config")
                config = self._read_config((self.path / _CONFIG).read_bytes(), self.path / _CONFIG)
                self._where = str(self.path / _WEIGHTS)
                self._h5 = self._open_h5(self.path / _WEIGHTS)
            else:
                with open(self.path, "rb") as f:
                    head = f.read(8)
                if head.startswith(b"PK"):
                    config = self._open_archive()
                elif is_hdf5(head):
                    self._h5 = self._open_h5(self.path)
                else:
                    raise SourceError(f"{self.path}: neither a .keras (zip) archive nor an HDF5 file "
                                      f"(starts with {head[:8]!r})")
        except OSError as e:
            raise SourceError(f"{self.path}: cannot read ({e.strerror or _short(e)})") from None
        try:
            if not hasattr(self._h5, "visititems_links"):  # (h5py 3.11: the link walk _check_contained needs)
                raise MissingExtraError("h5py>=3.11", "keras", f"reading {self._where} (h5py "
                                        f"{getattr(self._h5py, '__version__', '?')} is installed)")
            self._check_contained()
            self._entries = self._scan(config)
        except Exception as e:  # anything corrupt HDF5 metadata provokes in h5py
            self.close()
            if isinstance(e, (SourceError, MissingExtraError)):
                raise
            raise SourceError(f"{self._where}: corrupt Keras weights file ({described(e, 200)}); re-save the model") from None
        self._lock = threading.Lock()

    # --------------------------------------------------------------------------------------- opening

    def _fail(self, what: str) -> SourceError:
        return SourceError(f"{self._where}: {what}")

    def _read_config(self, raw: bytes, where: Any) -> dict:
        try:
            config = json.loads(raw)
        except ValueError as e:  # (not UTF-8, not JSON, an integer of thousands of digits)
            raise SourceError(f"{where}: corrupt Keras config ({_short(e)})") from None
        except RecursionError:
            raise SourceError(f"{where}: corrupt Keras config (nested too deeply to be a model's)") from None
        if not isinstance(config, dict):
            raise SourceError(f"{where}: corrupt Keras config (not a JSON object)")
        return config

    def _open_archive(self) -> dict:
        try:
            z = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, EOFError) as e:
            raise SourceError(f"{self.path}: corrupt zip archive ({_short(e)}); truncated?") from None
        with z:
            names = z.namelist()
            if _WEIGHTS not in names:
                if "model.weights.npz" in names:
                    raise SourceError(f"{self.path}: the weights are stored as model.weights.npz (pickled "
                                      "arrays), which htsr does not load; re-save with model.save(...) "
                                      "(the default h5 weights format)")
                raise SourceError(f"{self.path}: a zip archive without {_WEIGHTS}: not a Keras 3 .keras "
                                  "model (save one with model.save('model.keras'))")
            if _CONFIG not in names:
                raise SourceError(f"{self.path}: a .keras archive without {_CONFIG}; re-save the model")
            info = z.getinfo(_CONFIG)
            if info.file_size > _MAX_CONFIG_BYTES:
                raise SourceError(f"{self.path}: {_CONFIG} declares {info.file_size} bytes, more than "
                                  f"{_MAX_CONFIG_BYTES >> 20} MB: not a Keras config (a zip bomb?)")
            try:
                with z.open(info) as f:
                    raw = f.read(_MAX_CONFIG_BYTES + 1)  # never more, whatever the header says
            except Exception as e:  # noqa: BLE001 - BadZipFile, zlib.error, LZMAError, NotImplementedError …
                raise SourceError(f"{self.path}: cannot read {_CONFIG} ({described(e, 200)}); "
                                  "truncated or corrupt?") from None
            if len(raw) > _MAX_CONFIG_BYTES:
                raise SourceError(f"{self.path}: {_CONFIG} expands beyond {_MAX_CONFIG_BYTES >> 20} MB: not a "
                                  "Keras config (a zip bomb?)")
            config = self._read_config(raw, f"{self.path}: {_CONFIG}")
            self._where = f"{self.path}: {_WEIGHTS}"
            self._fileobj = _member_file(self.path, z, z.getinfo(_WEIGHTS))
        self._h5 = self._open_h5(self._fileobj)
        return config

    def _open_h5(self, target: Any) -> Any:
        try:
            return self._h5py.File(target, "r")
        except FileNotFoundError:
            raise self._fail("no such file") from None
        except Exception as e:  # noqa: BLE001 - h5py raises OSError, ValueError… for corrupt files
            if self._fileobj is not None:
                self._fileobj.close()
            raise self._fail(f"not a readable HDF5 file (truncated or corrupt?): {_short(e)}") from None

    def close(self) -> None:
        """Close the HDF5 file (and the archive); tensors cannot be loaded afterwards."""
        self._h5.close()
        if self._fileobj is not None:
            self._fileobj.close()

    # -------------------------------------------------------------------------------------- scanning

    def _check_contained(self) -> None:
        """Refuse a file whose data lives elsewhere: external links, external raw storage and virtual
        datasets make HDF5 read other files (any file on disk: /etc/passwd as a kernel; a FIFO, forever).
        Every link and object is visited once (HDF5's own walks), without following external links."""
        h5py = self._h5py

        def link(name: str, lnk: Any) -> str | None:
            if isinstance(lnk, h5py.ExternalLink):
                return f"{name!r} is a link into another file ({lnk.filename!r})"
            return None

        def dataset(name: str, obj: Any) -> str | None:
            if isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    return f"dataset {name!r} is a virtual dataset (its data are in other files)"
                if obj.external:
                    return f"dataset {name!r} stores its data in another file ({obj.external[0][0]!r})"
            return None

        why = self._h5.visititems_links(link) or self._h5.visititems(dataset)
        if why:
            raise self._fail(f"{why}; htsr reads only the file it is given: re-save the weights into one file")

    def _scan(self, config: dict | None) -> list[_Entry]:
        h5, Group = self._h5, self._h5py.Group
        if "layer_names" in h5.attrs or "layer_names0" in h5.attrs:
            self._legacy(h5, self._legacy_config(h5))
        elif isinstance(h5.get("model_weights"), Group):
            self._legacy(h5["model_weights"], self._legacy_config(h5))
        elif any(isinstance(h5.get(k), Group) for k in ("layers", "_layer_checkpoint_dependencies", "vars")):
            return self._walker.walk(_H5Node(h5, self._h5py, set()), config)
        else:
            raise self._fail("an HDF5 file that is not a Keras model or weights file (no layers, "
                             "model_weights or layer_names)")
        return _unique(self._walker.entries)

    def _add(self, name: str, ds: Any, plan: _Plan | None, reason: str = "",
             lora: tuple[Any, Any, float] | None = None, skip: str = "", mode: str | None = None) -> None:
        self._walker.add(name, _Var(tuple(ds.shape), _h5_dtype(ds), ds.name, ds.name), plan, reason, lora, skip,
                         mode)

    # legacy Keras 2 ---------------------------------------------------------------------------------

    def _legacy_config(self, h5: Any) -> dict | None:
        raw = _attr(h5, "model_config")
        if raw is None:
            return None
        try:
            config = json.loads(_text(raw))
        except (ValueError, RecursionError):
            return None  # weights are still readable; layer classes come from variable names
        return config if isinstance(config, dict) else None

    @staticmethod
    def _names(group: Any, attr: str) -> list[str]:
        if attr in group.attrs:
            return [_text(n) for n in np.atleast_1d(_attr(group, attr))]
        out, i = [], 0
        while f"{attr}{i}" in group.attrs:  # long lists are split over several attributes
            out.extend(_text(n) for n in np.atleast_1d(_attr(group, f"{attr}{i}")))
            i += 1
        return out

    @staticmethod
    def _layer_configs(config: dict | None) -> dict[str, dict]:
        """The configs of a model's layers, or of a wrapper's (TimeDistributed) layer, by name (a Bidirectional's
        two: :func:`_bidirectional_side`)."""
        inner = (config or {}).get("config", {})
        layers = inner.get("layers") if isinstance(inner, dict) else None
        if not isinstance(layers, list) and isinstance(inner, dict):
            layers = [inner["layer"]] if isinstance(inner.get("layer"), dict) else []
        out = {}
        for lc in layers if isinstance(layers, list) else []:
            if isinstance(lc, dict):
                name = _layer_name(lc)
                if isinstance(name, str):
                    out[name] = lc
        return out

    @classmethod
    def _scope_config(cls, lc: dict, comp: str) -> dict | None:
        """The config of scope component ``comp`` inside layer config ``lc``: a nested layer by its name, or a
        Bidirectional's side by the name Keras 2 gives it there too (forward_<name>, backward_<name>; a CuDNNLSTM
        has no cell level to tell its kernel by)."""
        if isinstance(lc.get("class_name"), str) and _config_class(lc) == "Bidirectional":
            sub = _bidirectional_side(lc.get("config"), comp)[1]
        else:
            sub = cls._layer_configs(lc).get(comp)
        return sub if isinstance(sub, dict) else None

    def _legacy(self, root: Any, config: dict | None) -> None:
        Dataset = self._h5py.Dataset
        top = self._layer_configs(config)
        read: set = set()  # each dataset once: a name listed again costs a few bytes, its analysis seconds
        layers = list(dict.fromkeys(self._names(root, "layer_names")))
        groups: dict[str, Any] = {}
        for layer in layers:
            groups[layer] = root.get(layer)
            if groups[layer] is None:
                raise self._fail(f"layer {layer!r} is listed in layer_names but missing from the file")
        holders = Counter(w for g in groups.values() for w in set(self._names(g, "weight_names")))
        first: dict[str, str] = {}  # a shared layer's weight name → the layer group that read it
        for layer, g in groups.items():
            weights = []
            for wname in self._names(g, "weight_names"):
                ds = g.get(wname)
                if not isinstance(ds, Dataset):
                    raise self._fail(f"layer {layer!r}: weight {wname!r} is listed but missing from the file")
                comps = [c for c in _WEIGHT_SUFFIX.sub("", wname).split("/") if c]
                # a layer shared by two nested models: Keras 3 writes a copy into each one's group, under the
                # name of the model that owns it (s1/shared/kernel in groups s1 and s2): read once, in the
                # first group that lists it (the model that calls it first, as a live model's and a .keras
                # file's rows are: s2.shared when s2 comes first), its copies listed. (Under the layer's own name,
                # shared/kernel, a copy cannot be told from two nested models' own layers of one name, equal
                # values too — frozen twins: both are read.)
                if comps and comps[0] in groups and holders[wname] > 1:
                    if first.setdefault(wname, layer) != layer:
                        self._walker.not_weights.append((ds.name, f"a copy of {first[wname]}'s weight (a layer "
                                                                  "shared by two models): analysed once"))
                        continue
                    if comps[0] != layer:
                        comps = [layer, *comps[1:]]  # (named as the group reading it holds it: s2/shared/kernel)
                # Keras 3 names a weight under its model's name scope too (``mlp/fc1/kernel`` in layer ``fc1``
                # of Sequential ``mlp``): the scope is what follows the layer's own name
                scope = comps[comps.index(layer) + 1:-1] if layer in comps[:-1] else comps[:-1]
                weights.append((ds, comps[-1], scope))
            # a LoRA-enabled layer (Keras 3's enable_lora) stores its factors beside its kernel or embeddings
            factors = {(tuple(sc), v): ds for ds, v, sc in weights if v in _LORA_OF}
            owners = {(tuple(sc), v) for _, v, sc in weights if v in _LORA_FACTORS}
            shapes: dict[tuple, list] = defaultdict(list)  # each object's variables' shapes, in order
            for ds, v, sc in weights:
                if v not in _LORA_OF and ds.shape is not None:
                    shapes[tuple(sc)].append(tuple(ds.shape))
            cells = {tuple(sc) for _, v, sc in weights if v == "recurrent_kernel"}  # (a cell of any name)
            for ds, var, scope in weights:
                if ds.id in read or (var in _LORA_OF and (tuple(scope), _LORA_OF[var]) in owners):
                    continue  # (the factors are read with what they update)
                read.add(ds.id)
                # the class: follow the scope down the nested configs, else the layer's own
                lc = top.get(layer)
                cls = lc.get("class_name") if lc else None
                for c in scope:
                    sub = self._scope_config(lc, c) if lc else None
                    if sub is not None:
                        lc, cls = sub, sub.get("class_name")
                pair = tuple(factors.get((tuple(scope), f)) for f in _LORA_FACTORS.get(var, ()))
                self._legacy_weight(ds, layer, self._as_attributes(top.get(layer), scope), var, lc, cls,
                                    pair if pair and all(pair) else None, shapes[tuple(scope)], tuple(scope) in cells)
        # a subclassed model's own variables (add_weight on the model), named as the other formats name them
        own = root.get("top_level_model_weights")
        if isinstance(own, self._h5py.Group):
            for k, wname in enumerate(self._names(own, "weight_names")):
                ds = own.get(wname)
                if isinstance(ds, Dataset) and ds.shape is not None and ds.id not in read:
                    read.add(ds.id)
                    self._add(f"vars.{k}", ds, _as_stored(tuple(ds.shape), None) if len(ds.shape) == 2 else None,
                              f"{len(ds.shape)}-D variable of the model itself")

    @classmethod
    def _as_attributes(cls, lc: dict | None, scope: list[str]) -> list[str]:
        """A wrapper's inner layer under the attribute Keras 3 files and live models name it by (``layer``;
        ``forward_layer``, ``backward_layer``) instead of its layer name (``dense``; ``forward_lstm``, a given
        backward layer's own name or Keras 2's ``backward_<that name>``), so that a layer's rows are named alike
        from every format; at any depth of ``scope`` (a wrapper inside a nested model), the configs followed down
        from the layer's ``lc``."""
        out: list[str] = []
        for i, comp in enumerate(scope):
            kind = lc.get("class_name") if isinstance(lc, dict) else None
            inner = lc.get("config") if isinstance(lc, dict) else None
            inner = inner if isinstance(inner, dict) else {}
            cells = any(_CELL.fullmatch(c) for c in scope[i + 1:])
            if kind == "TimeDistributed":
                out.append("layer")
                lc = inner.get("layer")
            elif kind == "Bidirectional" or (kind is None and cells and comp.startswith(("forward_", "backward_"))):
                backward, lc = _bidirectional_side(inner, comp)
                out.append("backward_layer" if backward else "forward_layer")
            else:
                out.append(comp)
                lc = cls._layer_configs(lc).get(comp) if isinstance(lc, dict) else None
        return out

    def _legacy_weight(self, ds: Any, layer: str, scope: list[str], var: str, lc: dict | None,
                       cls: str | None, lora: tuple[Any, Any] | None = None,
                       siblings: list[tuple[int, ...]] = (), cell: bool = False) -> None:
        """One weight of a legacy file's layer; ``siblings``: the shapes of its object's variables, in order;
        ``cell``: the object has a recurrent_kernel (a cell, of any name)."""
        if ds.shape is None:  # a null dataspace (h5py.Empty): no values, no weight
            return
        shape = tuple(ds.shape)
        if len(shape) < 2 or var == "bias":
            self._walker.not_weights.append((ds.name, classify(f"{ds.name}.{var}" if var == "bias" else ds.name,
                                                               shape)[1] if len(shape) < 2 else "2-D bias of a layer"))
            return
        inner = (lc or {}).get("config", {}) if isinstance(lc, dict) else {}
        inner = inner if isinstance(inner, dict) else {}
        if cls is not None and cls not in _KNOWN:  # a registered subclass of a Keras layer: that layer, if the
            base = _base_by_config(inner)  # weight is one of that layer's (a custom layer's own W, u are not)
            cls = base if base and var in _BASE_VARIABLES.get(base, ()) else cls
        unclassed = cls is None or cls in ("RNN", "StackedRNNCells")  # (a custom class's layout is its own)
        cell_cfg = inner.get("cell") if cls == "RNN" else None
        if isinstance(cell_cfg, dict) and isinstance(cell_cfg.get("class_name"), str):  # RNN(cell): the cell's class
            cls = _config_class(cell_cfg)
        if cls is None or cls in ("RNN", "StackedRNNCells"):  # no config (a subclassed model's) or a cell of
            # RNN([cells]): its default name (depthwise_conv2d), else what its variables' shapes say (a depthwise
            # kernel's bias, a cell's recurrent kernel)
            cls = (_guess_class(scope[-1] if scope else layer)
                   or _class_by_shapes(list(siblings), cell=cls is not None or _CELL.fullmatch(scope[-1] if scope else "")
                                       is not None) or cls)
        elif cls not in _KNOWN and scope:  # a custom layer's sub-layer of a default name (block/conv1d): that layer
            # (not its own variables, which its config's class names: they are what the live layer holds)
            cls = _guess_class(scope[-1]) or cls
        is_cell = (cell and unclassed) or (bool(scope) and _CELL.fullmatch(scope[-1]) is not None)
        # a ConvLSTM's kernels are convolutions (without a config: a cell's kernel of more than two axes)
        conv_cell = cls in _CONV_CELLS or _RNN_LAYERS.get(cls) in _CONV_CELLS or (is_cell and len(shape) > 2)
        parts = [layer] + [c for c in scope if not _CELL.fullmatch(c)]
        base = ".".join(parts)
        # (the layer's quantization mode names its integer codes: int4 ones packed two to an int8, h62)
        add = functools.partial(self._add, mode=_quantization_mode(inner))
        if lora is not None:  # W + (alpha / rank)·A·B, as Keras merges it (a Dense kernel, an Embedding table)
            A, B = lora
            rank, alpha = inner.get("lora_rank"), inner.get("lora_alpha")
            # (A [..., rank] and B [rank, out] of a kernel [..., out]: an EinsumDense's of three axes too, merged
            # by the same matmul, as Keras does)
            fits = len(B.shape) == 2 and A.shape == (*shape[:-1], B.shape[0]) and B.shape[1:] == shape[-1:]
            plan = _transposed(shape, "dense") if var == "kernel" else _as_stored(shape, "embedding")
            if len(shape) > 2 and var == "kernel":  # an EinsumDense's (a MultiHeadAttention projection's) kernel
                plan = (_einsum(shape, inner["equation"]) if cls in _EINSUM and "equation" in inner else
                        _projection(shape, _PROJECTIONS[scope[-1]], mha=cls in _ATTENTION)
                        if scope and scope[-1] in _PROJECTIONS else None)
            if fits and isinstance(rank, int) and rank == B.shape[0] and rank > 0:
                scale = float(alpha if isinstance(alpha, (int, float)) and alpha else rank) / rank
                add(base, ds, plan, lora=(A.name, B.name, scale))
            elif not isinstance(rank, int):  # (a sub-layer's enable_lora, a MultiHeadAttention projection's: the
                # model config does not record it, and without lora_alpha the scale is unknown)
                add(base, ds, plan, skip=(
                    "a LoRA-enabled layer whose lora_rank and lora_alpha the model config does not give (its scale "
                    "is unknown): analyse the model saved as .keras, which stores the merged kernel"))
            else:
                add(base, ds, plan, skip=(
                    "a LoRA-enabled layer whose factors or lora_rank (model config) do not fit its kernel: "
                    "analyse the model saved as .keras, which stores the merged kernel"))
        elif var == "kernel":
            if conv_cell:
                add(f"{base}.kernel", ds, _conv(shape), f"{len(shape)}-D convolutional LSTM kernel")
            elif cls in _RNN_LAYERS or cls in _CELLS or is_cell:
                add(f"{base}.kernel", ds, _transposed(shape, "rnn"))
            elif cls in _EINSUM and "equation" in inner:
                add(base, ds, _einsum(shape, inner["equation"]))
            elif scope and scope[-1] in _PROJECTIONS and (cls in _ATTENTION or len(shape) != 2):
                add(base, ds, _projection(shape, _PROJECTIONS[scope[-1]], mha=cls in _ATTENTION),
                          "a custom attention layer's projection whose layout its first two axes do not tell")
            elif len(shape) == 2:
                add(base, ds, _transposed(shape, "dense"))
            elif cls in _DEPTHWISE:  # Keras 3 names its kernel 'kernel' (Keras 2: depthwise_kernel, below)
                add(base, ds, _depthwise(shape))
            elif cls in _CONV or (cls is None and len(shape) in (3, 4, 5) and max(shape[:-2]) <= MAX_CONV_KERNEL):
                add(base, ds, _conv(shape), f"{len(shape)}-D convolution kernel")
            else:
                add(base, ds, None, f"{len(shape)}-D kernel of a {cls} layer" if cls else
                          f"{len(shape)}-D kernel of a layer the file gives no class for (no model config: an "
                          "EinsumDense's axes are unknown); analyse the file model.save writes")
        elif var == "recurrent_kernel":
            add(f"{base}.recurrent_kernel", ds, _conv(shape) if conv_cell else _transposed(shape, "rnn"),
                      f"{len(shape)}-D recurrent kernel")
        elif var == "embeddings":
            add(base, ds, _as_stored(shape, "embedding") if len(shape) == 2 else None)
        elif var == "reverse_embeddings":  # ReversibleEmbedding(tie_weights=False): the output projection
            add(f"{base}.reverse_embeddings", ds, _transposed(shape, "dense"))
        elif var == "depthwise_kernel":
            add(f"{base}.depthwise" if cls in _SEPARABLE else base, ds, _depthwise(shape))
        elif var == "pointwise_kernel":
            add(f"{base}.pointwise", ds, _conv(shape))
        elif var == "bias":
            return
        elif cls in _KNOWN:  # a known layer's other variables: a quantized layer's scales and zero points …
            add("", ds, None, _not_a_matrix(cls, repr(var)))
        elif len(shape) == 2:
            add(f"{base}.{var}", ds, _as_stored(shape, None))
        else:
            add("", ds, None, f"{len(shape)}-D variable {var!r} of a {cls or 'custom'} layer")

    # ------------------------------------------------------------------------------------- iteration

    def __len__(self) -> int:
        return len(self._entries)

    def _read(self, ref: str, name: str) -> np.ndarray:
        try:
            with self._lock:
                ds = self._h5[ref]
                declared, stored = ds.size * ds.dtype.itemsize, ds.id.get_storage_size()
                if expands_too_far(declared, stored):
                    raise SourceError(f"{self._where}: tensor {name!r} ({ref}) declares {declared} bytes "
                                      f"but stores {stored}: constant or unwritten data (read as the fill "
                                      "value), not loaded")
                a = ds[()]
                bf16 = _is_bf16(ds)
        except SourceError:
            raise
        except Exception as ex:  # noqa: BLE001 - a corrupt chunk, a closed file…
            raise SourceError(f"{self._where}: tensor {name!r} ({ref}): cannot read its data "
                              f"({described(ex, 200)}); truncated or corrupt?") from None
        a = np.asarray(a)
        if bf16:
            import ml_dtypes

            a = a.view(ml_dtypes.bfloat16)
        return a

    def __iter__(self) -> Iterator[TensorRef]:
        for e in self._entries:
            yield _entry_ref(e, self._read)


# ------------------------------------------------------------------------------------ live models


def is_keras_object(obj: Any) -> bool:
    """True for a live Keras layer or model (any backend), told without importing keras: a class of
    the object's type is keras's ``Layer``. (A torch-backend layer is also an ``nn.Module``.)"""
    for c in type(obj).__mro__:
        module = getattr(c, "__module__", None) or ""
        if c.__name__ == "Layer" and (module == "keras" or module.startswith("keras.")):
            return hasattr(obj, "weights")
    return False


def _obj_type(obj: Any) -> str:
    """What ``saving_lib`` calls the object's type (``_obj_type()``): Functional, Sequential or Layer."""
    names = {c.__name__ for c in type(obj).__mro__ if (getattr(c, "__module__", None) or "").startswith("keras")}
    return "Functional" if "Functional" in names else "Sequential" if "Sequential" in names else "Layer"


def _dtype_name(keras: Any, v: Any) -> str:
    try:
        return str(keras.backend.standardize_dtype(v.dtype))
    except Exception:  # noqa: BLE001 - a value keras does not know the dtype of
        return str(getattr(v, "dtype", "unknown")).removeprefix("torch.")


class _LiveNode:
    """A live layer (or a list of layers: ``obj`` None) as a node of the tree ``model.save`` writes."""

    def __init__(self, keras: Any, obj: Any, path: str) -> None:
        self._keras, self.obj, self.path = keras, obj, path
        self.kids: list[tuple[str, _LiveNode]] = []

    def children(self) -> list[tuple[str, _LiveNode]]:
        return self.kids

    def variables(self) -> dict[str, _Var]:
        """What the file holds under ``<path>/vars``: the layer's own ``save_own_variables`` (its
        variables themselves; Dense with LoRA: the merged kernel), nothing copied."""
        if self.obj is None:
            return {}
        store: dict[str, Any] = {}
        try:
            self.obj.save_own_variables(store)
        except Exception as e:  # noqa: BLE001 - a custom layer's own code: its row says so, the others go on
            raise _Unlisted(f"{type(self.obj).__name__}.save_own_variables failed, so its variables cannot be "
                            f"listed ({described(e, 200)})") from None
        out = {}
        for k, v in store.items():
            shape = getattr(v, "shape", None)
            if shape is None:
                continue
            try:
                shape = tuple(int(d) for d in shape)
            except (TypeError, ValueError):  # an unknown dimension: not a weight htsr can read
                continue
            out[str(k)] = _Var(shape, _dtype_name(self._keras, v), f"{self.path}/vars/{k}", v)
        return out

    def resolve_class(self, guess: str | None) -> str | None:
        """Its own class if a known one, else the nearest known layer class it derives from (a subclass
        keeps its base's variables), else what the file would guess (the key, the default name)."""
        if self.obj is None:
            return guess
        own = type(self.obj).__name__
        return own if own in _KNOWN else self.known_base() or guess or _guess_class(self.stored_name())

    def known_base(self) -> str | None:
        """The nearest known Keras layer class the object's class derives from (its variables are that
        layer's), or None."""
        if self.obj is None:
            return None
        return next((c.__name__ for c in type(self.obj).__mro__[1:] if c.__name__ in _KNOWN
                     and c.__name__ not in _MODELS), None)

    def stored_name(self) -> str | None:
        name = getattr(self.obj, "name", None)
        return name if isinstance(name, str) and name else None

    def own_config(self) -> dict:
        try:
            config = self.obj.get_config() if self.obj is not None else {}
        except Exception:  # noqa: BLE001 - custom layers may not implement it
            return {}
        return config if isinstance(config, dict) else {}


def _live_tree(keras: Any, root: Any, path: str = "") -> _LiveNode:
    """The object tree of ``root`` keyed as ``model.save`` keys it (``saving_lib._save_state``,
    ``_walk_saveable``, ``_save_container_state``): a Functional's or Sequential's ``layers`` first,
    then every attribute in ``dir()`` order with private ones last, except those every Layer has; a
    list's (or dict's, tuple's) layers by snake-cased class name + counter; each layer once, where the
    walk meets it first. Only layers are kept: optimizers, metrics and losses hold no weights."""
    Layer = keras.layers.Layer
    visited: set[int] = set()
    probe = set(dir(Layer(name="htsr_probe"))) | {"_self_unconditional_dependency_names"}
    skipsets = {"Layer": probe, "Functional": probe | {"operations", "_operations"},
                "Sequential": probe | {"_functional"}}

    def attributes(obj: Any) -> Iterator[tuple[str, Any]]:
        obj_type = _obj_type(obj)
        if obj_type in ("Functional", "Sequential"):
            yield "layers", obj.layers
        skip = skipsets[obj_type]
        for attr in sorted(dir(obj), key=lambda a: f"~{a}" if a.startswith("_") else a):
            if attr.startswith("__") or attr in skip:
                continue
            try:
                child = getattr(obj, attr)
            except Exception:  # noqa: BLE001, S112 - as keras: a property that cannot be read is passed over
                continue
            yield attr, child

    def state(obj: Any, path: str) -> _LiveNode | None:
        if id(obj) in visited:
            return None
        node = _LiveNode(keras, obj, path)
        visited.add(id(obj))
        for attr, child in attributes(obj):
            if isinstance(child, Layer):
                kid = state(child, f"{path}/{attr}")
            elif isinstance(child, (list, dict, tuple)):
                kid = container(child, f"{path}/{attr}", set())
            else:
                continue
            if kid is not None:
                node.kids.append((attr, kid))
        return node

    def container(items: Any, path: str, seen: set[int]) -> _LiveNode | None:
        if id(items) in seen:
            return None
        seen.add(id(items))
        node = _LiveNode(keras, None, path)
        used: dict[str, int] = {}

        def unique(name: str) -> str:
            if name in used:
                used[name] += 1
                return f"{name}_{used[name]}"
            used[name] = 0
            return name

        for item in list(items.values()) if isinstance(items, dict) else items:
            if isinstance(item, Layer):
                key = unique(to_snake_case(type(item).__name__))
                kid = state(item, f"{path}/{key}")
            elif isinstance(item, (list, dict, tuple)):
                key = unique("container")
                kid = container(item, f"{path}/{key}", seen)
            else:
                continue
            if kid is not None:
                node.kids.append((key, kid))
        return node if node.kids else None

    return state(root, path)  # type: ignore[return-value]  # the root is never visited before


def _live_config(keras: Any, obj: Any) -> dict | None:
    """What ``model.save`` writes to ``config.json`` (``serialize_keras_object``); a model that cannot
    be serialized gets its layer list only (names and classes), so that names still match."""
    try:
        config = keras.saving.serialize_keras_object(obj)
        if isinstance(config, dict) and isinstance(config.get("class_name"), str):
            return config
    except Exception:  # noqa: BLE001, S110 - a custom layer without get_config, …
        pass
    config = {"class_name": type(obj).__name__, "config": {"name": getattr(obj, "name", None)}}
    if _obj_type(obj) in ("Functional", "Sequential"):
        config["config"]["layers"] = [_live_config(keras, layer) for layer in obj.layers]
    return config


class KerasModel:
    """The weights of a live Keras 3 model or layer (any backend: TensorFlow, JAX, PyTorch), with the
    names, kinds and shapes that saving it to ``.keras`` and reading that with :class:`KerasFile`
    gives: the same walk (:class:`_Walker`) over the object tree ``model.save`` would write, with the
    configs ``model.save`` would write. Where the file holds no config for a layer (the attributes of a
    subclassed model or layer), the file's class is a guess from the entry's name, the live one is the
    layer's own class: there a live model can give kinds (and names) the file cannot.

    Nothing is copied when the model is opened; loading a tensor converts that variable to numpy (a
    copy: the model's weights are never modified). A bare layer is read as a one-layer model. Each weight's
    storage key is its variable, so one variable under two names (in two models of an in-memory mapping) is
    analysed once, as a live torch module's tied weights are; a file holds a copy under each name."""

    def __init__(self, model: Any) -> None:
        keras = import_extra("keras", None, "reading Keras model objects")
        self._keras = keras
        self.model = model
        name = getattr(model, "name", None)
        self.description = f"<{type(model).__name__} {name!r}>" if name else f"<{type(model).__name__}>"
        if not isinstance(model, keras.layers.Layer):
            version = getattr(keras, "__version__", "?")
            raise SourceError(f"{self.description}: not a layer of the installed Keras {version} (a Keras 2 or "
                              "tf_keras model?); save it with model.save('model.h5') and analyse the file")
        if not model.weights and not getattr(model, "built", True):
            raise SourceError(f"{self.description}: the model is not built and has no weights yet; call it on "
                              "data or model.build(input_shape) first")
        if isinstance(model, keras.Model):
            root, config = _live_tree(keras, model), _live_config(keras, model)
        else:  # a bare layer: as the one layer of a model
            key = to_snake_case(type(model).__name__)
            root, layers = _LiveNode(keras, None, ""), _LiveNode(keras, None, "/layers")
            layers.kids = [(key, _live_tree(keras, model, f"/layers/{key}"))]
            root.kids = [("layers", layers)]
            config = {"class_name": "Sequential", "config": {"layers": [_live_config(keras, model)]}}
        walker = _Walker()
        try:
            self._entries = walker.walk(root, config)
        except SourceError as e:  # the walk names the layer to blame
            raise SourceError(f"{self.description}: {e}") from None
        self.skipped = walker.skipped  # (path in a saved weights file, reason) of ≥2-D variables not yielded
        self.not_weights = walker.not_weights  # and of the 1-D ones

    def __len__(self) -> int:
        return len(self._entries)

    def _read(self, v: Any, name: str) -> np.ndarray:
        try:
            a = np.asarray(self._keras.ops.convert_to_numpy(v))
        except Exception as ex:  # noqa: BLE001 - a deleted variable, a device error…
            raise SourceError(f"{self.description}: tensor {name!r} ({getattr(v, 'path', '')}): cannot read "
                              f"its value ({described(ex, 200)})") from None
        if not a.flags.owndata or not a.flags.writeable:  # a view on the variable's memory: copy
            a = a.copy()
        return a

    def __iter__(self) -> Iterator[TensorRef]:
        for e in self._entries:  # (a variable under two names, or in two models of one mapping: tied weights)
            ref = _entry_ref(e, self._read)
            yield ref if e.skip or e.ref is None else dataclasses.replace(ref, storage_key=("keras", id(e.ref)))
