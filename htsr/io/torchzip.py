"""Readers for ``torch.save`` checkpoints (``.pt``, ``.pth``, ``.bin``; the zip archive and the legacy pickle
format) and ``torch.jit.save`` archives (TorchScript: ``.jit``, ``.pt``) — no torch needed, nothing executed.

Both archives are a zip: ``<root>/data.pkl`` pickles the object (a state dict, a checkpoint dict that
wraps one, or a TorchScript module tree), ``<root>/data/<key>`` hold the raw little-endian storages the
tensors view. A TorchScript archive adds ``<root>/code/`` and ``constants.pkl``; each of its modules is an
object of a ``__torch__.<module path> <Class>`` type whose state is a dict of attributes (submodules,
parameters, buffers, plain values). ``data.pkl`` is read by a restricted unpickler that runs nothing and
imports nothing from the file: tensors become lazy views of their storages, ``__torch__.*`` types inert
attribute holders, ``torch.Size``/``torch.device``/dtypes plain values, numpy arrays read-only arrays over
their bytes in the pickle (numeric dtypes; object arrays become lists; :mod:`htsr.io.pickles` reads plain
pickles with the same unpickler). Any other class or function
(a pickled ``nn.Module`` and the model class around it, ``argparse.Namespace``, numpy scalars, a config
object) becomes an inert stand-in that only keeps the arguments and state it is given; a pickled module
reads as its state dict (parameters and persistent buffers, named as ``state_dict()`` names them), so
``torch.save(model)`` and checkpoints of whole models (``{"model": model, "ema": …}``) are read as state
dicts. Refused (:class:`RefusedGlobal`): torch's own functions outside the list (tensor rebuilders htsr
does not know: ``torch.load(weights_only=True)`` decides) and the globals of ``os``, ``sys``,
``subprocess``, ``builtins`` and the like, which a checkpoint only names to run code when loaded.
``torch.load(weights_only=True)`` refuses TorchScript archives, and ``torch.jit.load`` needs torch.

A ``torch.save`` checkpoint is unwrapped as :mod:`htsr.io.torch` does (keys such as ``state_dict`` or
``model``) and its tensors are named by their dotted keys. In a TorchScript archive a weight's kind comes
from its module's class name (``Linear``, ``Conv1d``, ``LSTMCell`` …), as for a live ``nn.Module``, and
constant tensors (``constants.pkl``, e.g. the weights of a frozen module) are named ``CONSTANTS.c<i>`` as
in the code. Storage extents are checked against the archive when it is opened, so a file whose pickle
claims more data than it holds is refused before anything is analysed.

The legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``, the default before PyTorch 1.6)
is one stream of five pickles — a magic number, the protocol version 1001, a system-info dict, the object,
the sorted list of storage keys — followed by each storage in that order as a little-endian int64 element
count and its raw bytes. :class:`TorchLegacyFile` reads the pickles with the same restricted unpickler and
maps each storage from its offset.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import pickle
import pickletools
import re
import reprlib
import types
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SourceError, described, listed
from .base import (FLOAT_DTYPES, TensorRef, as_loaded, check_stored_crc32, expands_too_far, failing_loader, file_stamp,
                   numpy_dtype, one_line, raising_loader, read_span, reopened, skipped_loader, stored_member_offset)
from .numpy import MAX_FLAT_ITEMS, named_pairs
from .scales import PackedConfig, with_scales
from .torch import _MODULE_KINDS, _PACKED, held_kind, owner_classes, unwrap_state, with_notes

__all__ = ["RefusedGlobal", "TorchExportArchive", "TorchLegacyFile", "TorchZipFile", "is_export_archive",
           "is_legacy_torch", "is_torchscript_archive"]

# storage class name in the pickle → numpy / ml_dtypes dtype name
_STORAGES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "Float8_e4m3fnStorage": "float8_e4m3fn",
    "Float8_e5m2Storage": "float8_e5m2", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",  # RoPE tables; no weights
}


def is_torchscript_archive(names: list[str]) -> bool:
    """True for the member list of a ``torch.jit.save`` zip (a ``torch.save`` zip has no code or constants)."""
    return any(n.endswith("/data.pkl") for n in names) and any(
        n.endswith("/constants.pkl") or "/code/" in n for n in names)


# the legacy format's first pickle: torch.serialization.MAGIC_NUMBER, then the protocol version
_LEGACY_MAGIC, _LEGACY_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


def is_legacy_torch(head: bytes) -> bool:
    """True for the first (at least 27) bytes of a legacy ``torch.save`` file: a pickle of the magic number
    (from protocol 2 a LONG1 of 10 bytes after the PROTO opcode, from protocol 4 also after a FRAME opcode
    and its length; before protocol 2 a decimal LONG)."""
    magic = b"\x8a\x0a" + _LEGACY_MAGIC.to_bytes(10, "little")
    if head[:1] != b"\x80":
        return head.startswith(b"L%dL\n" % _LEGACY_MAGIC)  # protocols 0 and 1: a LONG in decimal
    start = 11 if head[2:3] == b"\x95" else 2
    return head[start:start + 12] == magic


class _Sealed:
    """A value the pickle may not give state to after building it (a BUILD would write straight into its
    __dict__: a tensor's stride checked at construction could be changed afterwards)."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"state given to a {type(self).__name__.strip('_').lower()} after it was "
                                     "built: not a checkpoint's pickle")


@dataclass(frozen=True)
class _Storage(_Sealed):
    key: str  # the zip member holding the bytes, or the legacy format's storage key
    dtype: str

    def __post_init__(self) -> None:
        if not (isinstance(self.key, str) and self.dtype in _STORAGE_DTYPES):
            raise pickle.UnpicklingError(f"a storage of dtype {str(self.dtype)[:40]!r}: not one torch saves")


@dataclass(frozen=True)
class _Tensor(_Sealed):
    storage: _Storage
    offset: int  # in elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def extent(self) -> int:
        """Elements of the storage this view reaches (0 for an empty tensor)."""
        if any(s == 0 for s in self.shape):
            return 0
        return self.offset + 1 + sum((n - 1) * st for n, st in zip(self.shape, self.stride))


class _Object:
    """An instance of a TorchScript type: its class name and its pickled state, nothing else."""

    type_name = ""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Inert(_Object):
    """A stand-in for a class or function htsr does not import (a pickled ``nn.Module`` and the model class
    around it, ``argparse.Namespace``, a numpy scalar, a config object): called, it makes another stand-in
    and keeps the arguments; built, it keeps the state; appended or assigned to, it keeps the items. Nothing
    of the named global is looked up or run."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = object.__new__(cls)  # made by __new__ alone at protocol 2+ (copyreg.__newobj__): no __init__
        self.args, self.items = args, {}
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.items = args, {}

    def append(self, value: Any) -> None:
        self.items[len(self.items)] = value

    def extend(self, values: Any) -> None:
        for v in values:
            self.append(v)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    """``copyreg._reconstructor``, how protocols 0 and 1 make an object of a class: a stand-in of it, made
    from what its built-in base holds (a namedtuple's fields, an IntEnum's value), as ``__newobj__`` gives
    them at protocol 2."""
    make = cls if isinstance(cls, type) and issubclass(cls, _Inert) else _Inert
    if base is object or state is None:
        return make()
    if base is tuple and isinstance(state, tuple):
        return make(*state)
    if (base is dict and isinstance(state, dict)) or (base is list and isinstance(state, list)):
        obj = make()  # a dict or list subclass: the items it holds, as SETITEMS and APPENDS give them later
        for k, v in (state.items() if isinstance(state, dict) else enumerate(state)):
            obj[k] = v
        return obj
    return make(state)


#: modules named in one module tree: a module held twice is named twice, as state_dict() does (tied
#: submodules, or one activation held by every block), but k levels of that give 2^k names from a file of a
#: few kB (the largest models have some thousands)
_MAX_MODULE_NAMES = 200_000


class _StateDict(dict):
    """A pickled module's state dict, with the class name of the module holding each entry (``classes``), so
    that its weights' kinds are their modules' as from the live module (an ``EmbeddingBag`` named ``bag``)."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: dict[str, str] = {}


def _module_state(obj: Any, prefix: str, out: _StateDict, path: tuple[int, ...] = (),
                  uses: list[int] | None = None) -> None:
    """``Module.state_dict()`` of a pickled module: its parameters and persistent buffers, then its
    submodules', named by attribute path (and each entry's module class in ``out.classes``)."""
    uses = [0] if uses is None else uses
    uses[0] += 1
    if id(obj) in path:
        raise pickle.UnpicklingError(f"module {prefix.rstrip('.') or '(root)'} contains itself")
    if uses[0] > _MAX_MODULE_NAMES:
        raise pickle.UnpicklingError(f"the module tree names more than {_MAX_MODULE_NAMES} modules (at "
                                     f"{prefix.rstrip('.')}): modules held under many names, not a model's")
    state = obj.state
    groups = [state.get(k) if state.get(k) is not None else {} for k in ("_parameters", "_buffers", "_modules")]
    skip = state.get("_non_persistent_buffers_set") or ()
    if not all(isinstance(g, dict) for g in groups) or not isinstance(skip, (list, tuple, set, frozenset)) \
            or not all(isinstance(k, str) for g in groups for k in g) or not all(isinstance(k, str) for k in skip):
        raise pickle.UnpicklingError(f"module {prefix.rstrip('.') or '(root)'} of {obj.type_name}: parameters, "
                                     "buffers or submodules that are not mappings of names")
    parameters, buffers, modules = groups
    cls = _layer_class(obj)
    for group, values in (("_parameters", parameters), ("_buffers", buffers)):
        for k, v in values.items():
            if v is not None and not (group == "_buffers" and k in skip):
                out[f"{prefix}{k}"] = v
                out.classes[f"{prefix}{k}"] = cls
                if len(out) > MAX_FLAT_ITEMS:  # (each visit of a module held under many names names all its
                    # parameters again: a 30 kB file's tree named billions and took all memory)
                    raise pickle.UnpicklingError(f"the module tree names more than {MAX_FLAT_ITEMS} parameters "
                                                 f"and buffers (at {prefix}{k}): modules held under many names, not a "
                                                 "model's")
    for k, m in modules.items():
        if _is_module(m):
            _module_state(m, f"{prefix}{k}.", out, (*path, id(obj)), uses)


def _layer_class(obj: Any) -> str:
    """The class name a pickled module's weights are typed by: its own, or for a class htsr does not know by
    name (a user's ``class MyConv1d(nn.Conv1d)``, whose base the pickle does not record) the torch layer its
    attributes make it: ``kernel_size`` with ``in_channels`` → Conv1d/2d/3d, ``num_embeddings`` → Embedding,
    ``in_features`` with ``out_features`` → Linear, an RNN's ``mode`` with ``hidden_size`` → RNNBase (a
    TorchScript module's from its code's constants, :func:`_script_constants`)."""
    own = obj.type_name.rsplit(".", 1)[-1]
    state = getattr(obj, "state", None)
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):  # (__dict__, __slots__)
        state = state[0]
    if own in _MODULE_KINDS or not isinstance(state, dict):
        return own
    params = state.get("_parameters")  # (a whole pickle's module; a TorchScript one holds its weight itself)
    weight = params.get("weight") if isinstance(params, dict) else state.get("weight")
    shape = getattr(weight, "shape", None)
    state = {**getattr(obj, "declared", {}), **state}  # a TorchScript class's constants are in its code
    k = state.get("kernel_size")
    if isinstance(k, (tuple, list)) and 1 <= len(k) <= 3 and "in_channels" in state and "out_channels" in state:
        layer, ndim = f"Conv{len(k)}d", len(k) + 2
    elif "num_embeddings" in state and "embedding_dim" in state:
        layer, ndim = "Embedding", 2
    elif "in_features" in state and "out_features" in state:
        layer, ndim = "Linear", 2
    elif "mode" in state and "hidden_size" in state and "num_layers" in state:
        return "RNNBase"  # (its weights are weight_ih_l0 …)
    else:
        return own
    # only if its weight has that layer's number of axes (a module of experts [E, out, in] that keeps its
    # in_features is no Linear)
    return layer if isinstance(shape, tuple) and len(shape) == ndim else own


#: a TorchScript class in an archive's code/ (its body: the lines indented under it), and a constant it declares
_SCRIPT_CLASS = re.compile(r"^class (\w+)\(Module\):\n((?:  .*\n?)*)", re.MULTILINE)
_SCRIPT_FINAL = re.compile(r"^  (\w+) : Final\[.*\] = (.+)$", re.MULTILINE)
#: code read for them (the code of the largest models is a few MB), the constants read (those _layer_class
#: asks for) and the longest value parsed
_MAX_CODE = 16 << 20
_LAYER_CONSTANTS = frozenset({"kernel_size", "in_channels", "out_channels", "num_embeddings", "embedding_dim",
                              "in_features", "out_features", "mode", "hidden_size", "num_layers"})
_MAX_CONSTANT = 200


def _script_constants(z: zipfile.ZipFile, code: str, infos: dict[str, int]) -> dict[str, dict[str, Any]]:
    """{class: {constant: value}} of the TorchScript classes in the archive's ``code`` folder (a scripted
    nn.Conv1d declares ``kernel_size : Final[Tuple[int]] = (64,)``, which its pickled state does not hold);
    values are Python literals (ast.literal_eval: nothing is run), others None."""
    import ast

    out: dict[str, dict[str, Any]] = {}
    for name, text in _code_files(z, code, infos):
        module = name[len(code):-len(".py")].replace("/", ".")
        for c in _SCRIPT_CLASS.finditer(text):
            consts: dict[str, Any] = {}
            for f in _SCRIPT_FINAL.finditer(c[2]):
                if f[1] not in _LAYER_CONSTANTS:
                    continue
                try:
                    consts[f[1]] = ast.literal_eval(f[2].strip()) if len(f[2]) <= _MAX_CONSTANT else None
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    consts[f[1]] = None
            out[f"{module}.{c[1]}"] = consts
    return out


def _code_files(z: zipfile.ZipFile, code: str, infos: dict[str, int]) -> Iterator[tuple[str, str]]:
    """(member, text) of the archive's TorchScript code files; none if they exceed :data:`_MAX_CODE` bytes
    (a hostile archive's 61 MB code folder took 39 s to parse)."""
    files = [n for n in infos if n.startswith(code) and n.endswith(".py")]
    if sum(infos[n] for n in files) > _MAX_CODE:
        return
    for name in files:
        try:
            yield name, z.read(name).decode("utf-8")
        except (UnicodeError, zipfile.BadZipFile, OSError, zlib.error):
            continue


#: the aten ops a frozen module's code passes its constants to, and the kind each makes of a matrix
_FROZEN_OPS = {"embedding": "embedding", "embedding_bag": "embedding", "_embedding_bag": "embedding",
               "conv1d": "conv1d", "conv_transpose1d": "conv1d", "conv2d": "conv2d", "conv_transpose2d": "conv2d",
               "conv3d": "conv3d", "conv_transpose3d": "conv3d", "lstm": "rnn", "gru": "rnn", "rnn_tanh": "rnn",
               "rnn_relu": "rnn", "lstm_cell": "rnn", "gru_cell": "rnn", "rnn_tanh_cell": "rnn",
               "rnn_relu_cell": "rnn", "linear": "dense", "matmul": "dense", "addmm": "dense", "mm": "dense"}
_CONSTANT_USE = re.compile(r"\bCONSTANTS\.(c\d+)\b")
_CONSTANT_LIST = re.compile(r"^\s*(\w+)\s*=\s*\[((?:\s*CONSTANTS\.c\d+\s*,?)+)\]\s*$", re.MULTILINE)
#: the tokens of a line _frozen_kinds reads: a call of a torch op (its parenthesis taken), a parenthesis, a
#: constant, a name (a list of constants assigned before)
_FROZEN_TOKEN = re.compile(r"\btorch\.(\w+)\(|([()])|\bCONSTANTS\.(c\d+)\b|\b(\w+)\b")


def _frozen_kinds(z: zipfile.ZipFile, code: str, infos: dict[str, int]) -> dict[str, str]:
    """A frozen TorchScript module's constants (``CONSTANTS.c<i>``, a ``torch.jit.freeze``'d module's
    weights) → the kind the op its code passes them to makes of them: ``torch.embedding(CONSTANTS.c2, …)``
    an embedding, ``torch.lstm(…, [CONSTANTS.c5, …], …)`` (through a list assigned first) recurrent weights;
    the innermost op whose parentheses hold a constant types it (``torch.linear(torch.conv1d(x, c0), c1)``:
    c0 conv1d, c1 dense), and the first use decides. Statements are one a line in TorchScript's code; each
    line is read once, left to right, keeping the op each open parenthesis is inside (linear in its length)."""
    out: dict[str, str] = {}
    for _, text in _code_files(z, code, infos):
        lists = {m[1]: _CONSTANT_USE.findall(m[2]) for m in _CONSTANT_LIST.finditer(text)}
        for line in text.splitlines():
            if "torch." not in line:
                continue
            assigned = line.lstrip().split("=", 1)[0].strip() if "=" in line else ""
            inside: list[str | None] = []  # per open parenthesis: the innermost op holding it
            for m in _FROZEN_TOKEN.finditer(line):
                call, paren, constant, name = m.groups()
                if call is not None or paren == "(":
                    held = inside[-1] if inside else None
                    inside.append(_FROZEN_OPS.get(call, held) if call else held)
                elif paren == ")":
                    if inside:
                        inside.pop()
                elif inside and inside[-1] is not None:
                    for c in [constant] if constant else lists.get(name, ()) if name != assigned else ():
                        out.setdefault(f"CONSTANTS.{c}", inside[-1])
    return out


def _is_module(obj: Any) -> bool:
    state = getattr(obj, "state", None)
    return isinstance(obj, _Inert) and isinstance(state, dict) and "_parameters" in state and "_modules" in state


def _as_state_dicts(obj: Any, done: dict[int, Any] | None = None) -> Any:
    """``obj`` with every pickled ``nn.Module`` (a stand-in whose state has ``_parameters`` and ``_modules``)
    replaced by its state dict, in the mappings and sequences that hold it: a checkpoint of whole models
    (``{"model": model, "ema": ema, …}``, or ``torch.save(model)``) reads as one of state dicts. Each
    container is converted once (``done``: id → result), so a tuple shared k levels deep stays shared
    instead of becoming 2^k copies."""
    done = {} if done is None else done
    if _is_module(obj):
        out = _StateDict()
        _module_state(obj, "", out)
        return out
    if id(obj) in done:
        return done[id(obj)]
    if isinstance(obj, dict):
        done[id(obj)] = obj
        for k, v in list(obj.items()):
            obj[k] = _as_state_dicts(v, done)
    elif isinstance(obj, list):
        done[id(obj)] = obj
        obj[:] = [_as_state_dicts(v, done) for v in obj]
    elif isinstance(obj, tuple):
        done[id(obj)] = new = tuple(_as_state_dicts(v, done) for v in obj)
        return new
    return obj


def _rebuild_tensor(storage, offset, size, stride, *_ignored) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor whose storage is not a persistent storage record")
    shape, strides = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(shape) != len(strides) or any(s < 0 for s in shape + strides) or int(offset) < 0:
        raise pickle.UnpicklingError(f"a tensor with shape {shape}, stride {strides}, offset {offset}")
    return _Tensor(storage, int(offset), shape, strides)


def _rebuild_tensor_v3(storage, offset, size, stride, _requires_grad, _hooks, dtype, *_ignored) -> _Tensor:
    """A tensor over an untyped (byte) storage, its dtype given apart: how torch saves dtypes that have no
    typed storage class (the float8 types, uint16 …)."""
    if not (isinstance(storage, _Storage) and isinstance(dtype, str) and dtype.startswith("torch.")):
        raise pickle.UnpicklingError("a v3 tensor without an untyped storage and a torch dtype")
    return _rebuild_tensor(_Storage(storage.key, dtype.removeprefix("torch.")), offset, size, stride)


#: dimensions a pickled numpy array may have (numpy's own limit is 64)
_MAX_NDIM = 64
#: dtype kinds whose arrays are weights (float, signed, unsigned, bool); other arrays (strings, records,
#: dates, complex) hold no weights and keep nothing
_NUMERIC_KINDS = frozenset("fiub")


class _NpDtype:
    """``numpy.dtype(spec, align, copy)`` as a pickle builds it, then given its byte order by one BUILD:
    only the spec and the byte order are kept (a structured dtype's fields are not)."""

    __slots__ = ("spec", "order", "structured", "built")

    def __init__(self, spec: Any) -> None:
        ml = isinstance(spec, type) and issubclass(spec, _Inert) and spec.type_name.startswith("ml_dtypes.")
        if ml:  # bfloat16, float8_e4m3fn …: the type ml_dtypes has by that name (JAX weights as numpy arrays)
            spec = spec.type_name[len("ml_dtypes."):]
        # anything but a short type code (numpy.record, a numpy 2 StringDType …) is kept as no spec: its
        # arrays hold no weights, and numpy.dtype is never given it
        ok = isinstance(spec, str) and 0 < len(spec) <= 32 and spec.isascii() and (
            spec.isidentifier() if ml else spec.isalnum())
        self.spec, self.order, self.structured, self.built = spec if ok else "", "|", False, False

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, subarray, names, fields, item size, alignment, flags)
        if self.built or not (isinstance(state, tuple) and len(state) >= 5 and state[1] in ("<", ">", "|", "=")):
            raise pickle.UnpicklingError("a numpy dtype's state is not (version, byte order, …)")
        self.built, self.order = True, state[1]
        self.structured = any(x is not None for x in state[2:5])

    def name(self) -> str:
        """numpy's name of the dtype (``str32``, ``void96`` for a structured one: its fields are not built)."""
        if not self.spec:  # (numpy.record's spec is a class)
            return "non-numeric"
        try:
            dt = numpy_dtype(self.spec)
        except TypeError:
            return "non-numeric"
        # a numeric base with fields (np.dtype((np.float32, {"bits": (np.uint32, 0)}))) is a structured dtype
        # too: named as one (void32), not as its base, which would list it among the weights to load
        return f"void{dt.itemsize * 8}" if self.structured else dt.name

    def numeric(self) -> np.dtype | None:
        """The dtype, in its byte order, of an array of weights; None for any other (strings, records …)."""
        if not self.spec:
            return None
        try:
            dt = numpy_dtype(self.spec)
        except TypeError:
            return None
        if self.structured or dt.hasobject or not (dt.kind in _NUMERIC_KINDS or dt.name in FLOAT_DTYPES):
            return None  # (ml_dtypes' floats are of numpy's kind 'V')
        return dt.newbyteorder(self.order) if self.order in "<>" else dt


def _np_dtype(spec: Any, align: Any = False, copy: Any = False) -> _NpDtype:
    return _NpDtype(spec)


class _NpArray:
    """A pickled numpy array: ``_reconstruct(ndarray, (0,), b'b')`` makes it empty and one BUILD gives it
    (version, shape, dtype, Fortran order, data); ``_frombuffer(data, dtype, shape, order)`` (protocol 5)
    makes it whole. A numeric array is read-only over the pickle's bytes (``array``; a bytearray's are
copied, as the pickle may still append to it), an object array
    the list of its items (walked like a list), any other array nothing. Nothing of numpy is called but
    ``frombuffer``."""

    __slots__ = ("array", "items", "built", "other", "shape")

    def __init__(self) -> None:
        self.array: np.ndarray | None = None
        self.items: list | None = None
        self.built = False
        self.other: str | None = None  # the dtype of an array of no weights (strings, records): named, not read
        self.shape: tuple[int, ...] = ()  # as given; a numeric array's array.shape too

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) in (4, 5)):
            raise pickle.UnpicklingError("a numpy array's state is not (version, shape, dtype, order, data)")
        shape, dtype, fortran, data = state[-4:]  # version 0 had no version
        self._fill(shape, dtype, "F" if fortran in (True, 1) else "C", data)

    def _fill(self, shape: Any, dtype: Any, order: str, data: Any) -> None:
        if self.built:
            raise pickle.UnpicklingError("state given to a numpy array after it was built")
        self.built = True
        if not (isinstance(shape, tuple) and len(shape) <= _MAX_NDIM
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
            raise pickle.UnpicklingError("a numpy array whose shape is not one numpy writes")
        self.shape = shape
        if not isinstance(dtype, _NpDtype):  # a dtype of its own class (numpy 2's StringDType …): no weights
            self.other = "non-numeric"
            return
        count = math.prod(shape)
        if dtype.spec.startswith("O"):  # an object array: its items, as a list
            if not (isinstance(data, list) and len(data) == count):
                raise pickle.UnpicklingError(f"an object array of shape {shape} with {reprlib.repr(data)[:40]}")
            self.items = data
            return
        dt = dtype.numeric()
        if dt is None:  # strings, records, dates: no weights (named among the tensors not analysed, as from .npz)
            self.other = dtype.name()
            return
        if isinstance(data, str):  # a Python 2 pickle's byte string, read as latin1
            data = data.encode("latin1")
        if not isinstance(data, (bytes, bytearray)) or len(data) != count * dt.itemsize:
            raise pickle.UnpicklingError(f"a numpy array of shape {shape} and dtype {dt} with "
                                         f"{len(data) if isinstance(data, (bytes, bytearray)) else 'no'} bytes "
                                         f"of data (it needs {count * dt.itemsize})")
        # a copy of a bytearray: a view would pin it, and a later APPEND to it raise BufferError
        a = np.frombuffer(bytes(data) if isinstance(data, bytearray) else data, dtype=dt).reshape(shape, order=order)
        a.flags.writeable = False
        self.array = a


def _np_reconstruct(cls: Any, shape: Any, typecode: Any) -> _NpArray:
    """``numpy.core.multiarray._reconstruct``: an empty array (of ``numpy.ndarray`` or a subclass stand-in)."""
    return _NpArray()


def _np_frombuffer(data: Any, dtype: Any, shape: Any, order: Any) -> _NpArray:
    """``numpy.core.numeric._frombuffer``: how protocol 5 pickles a contiguous array."""
    a = _NpArray()
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"a numpy array in order {reprlib.repr(order)[:20]}")
    a._fill(shape, dtype, order, data)
    return a


def _is_leaf(v: Any) -> bool:
    """A tensor or a numeric numpy array, or a Lazy module's parameter not yet initialized: what the tree's
    walk yields."""
    return isinstance(v, _Tensor) or (isinstance(v, _NpArray) and (v.array is not None or v.other is not None)) \
        or _uninitialized(v)


def _uninitialized(v: Any) -> bool:
    """``torch.nn.parameter.UninitializedParameter`` / ``UninitializedBuffer``: a Lazy module saved before its
    first forward pass (no shape, no values)."""
    return isinstance(v, _Inert) and v.type_name in ("torch.nn.parameter.UninitializedParameter",
                                                     "torch.nn.parameter.UninitializedBuffer")


class _OrderedDict(dict):
    """``collections.OrderedDict``: a plain dict that also takes pickled attributes (``Module.state_dict()``
    carries ``_metadata``, restored by a BUILD) — kept on the instance: a BUILD on the class itself (which
    would set attributes of the class every later read uses) fails for want of an instance."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Call:
    """An allowed function as the pickle sees it: callable, and sealed against a BUILD, which would set
    attributes on the function itself (its defaults) for every later read."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("state given to a function: not a checkpoint's pickle")


def _first(value, *_ignored):
    return value


class RefusedGlobal(SourceError):
    """The pickle names a global outside the allow-list (torch's own weights-only loader may know it)."""


class _Refused(pickle.UnpicklingError):
    pass


# modules whose globals in a checkpoint can only mean code meant to run on loading (a stand-in would be
# inert, but such a file is hostile: it is refused)
_HOSTILE = frozenset({"os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "pickle",
                      "_pickle", "marshal", "ctypes", "pty", "code", "codeop", "webbrowser", "builtins",
                      "__builtin__",
                      # Python 2's names, which a protocol-2 pickle writes (subprocess.call as commands.call)
                      "commands", "popen2", "cPickle"})


# torch modules whose globals rebuild tensors and storages (those htsr knows are in _ALLOWED)
_TORCH_REBUILDERS = frozenset({"torch._utils", "torch._tensor", "torch.storage", "torch.serialization", "torch"})


def _refuse(module: str, name: str) -> _Refused:
    return _Refused(f"the pickle references {module}.{name}, which htsr's weights-only reader does not "
                    "load; refused (nothing in the file is run)")


def _rebuild_from_type(func, _new_type, args, *_state):
    return func(*args)  # a tensor subclass (e.g. nn.Parameter): the plain tensor


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    """How protocol-2 pickles spell bytes objects (``_codecs.encode(str, 'latin1')``); no other codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise pickle.UnpicklingError(f"bytes encoded as {encoding!r}")
    return text.encode(encoding)


def _bytes(*args) -> bytes:
    """``bytes()``: how protocols 0 to 2 spell an empty bytes object (an empty array's data); nothing else (a
    size argument would allocate that many bytes)."""
    if args:
        raise pickle.UnpicklingError("bytes() called with arguments")
    return b""


def _bytearray(data: Any = b"", encoding: str | None = None) -> bytearray:
    """How protocols 0 to 4 spell a bytearray: ``bytearray(bytes)`` (Python 3; the bytes themselves spelt as
    ``_codecs.encode(str, 'latin1')`` up to protocol 2), or ``bytearray(str, 'latin-1')`` (Python 2)."""
    if isinstance(data, bytes) and encoding is None:
        return bytearray(data)
    return bytearray(_codecs_encode(data, encoding or "latin-1"))


def _device(*args) -> str:
    if not all(isinstance(a, (str, int)) for a in args):
        raise pickle.UnpicklingError("a torch.device of other than a name and an index")
    return ":".join(str(a) for a in args)


def _str(value: Any = "") -> str:
    """``str()`` of a string only (a str subclass's value at protocols 0 and 1): str() of a list built of
    shared parts would walk 2^depth elements of a file of a few hundred bytes."""
    if not isinstance(value, str):
        raise pickle.UnpicklingError(f"str() called on a {type(value).__name__}")
    return value


def _set(items=()) -> list:
    return list(items)  # (a list, which the walk enters: a set's tensors are read, in the pickle's order)


# the only globals torch.save and torch.jit.save pickles need, and what each becomes here
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch.storage", "UntypedStorage"): "uint8",  # bytes; the v3 tensor over it says its dtype
    ("torch._utils", "_rebuild_parameter"): _first,
    ("collections", "OrderedDict"): _OrderedDict,
    ("torch.jit._pickle", "build_intlist"): _first,
    ("torch.jit._pickle", "build_doublelist"): _first,
    ("torch.jit._pickle", "build_boollist"): _first,
    ("torch.jit._pickle", "build_tensorlist"): _first,
    ("torch.jit._pickle", "restore_type_tag"): _first,
    ("torch._utils", "_rebuild_parameter_with_state"): _first,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch.nn.parameter", "Parameter"): "Parameter",
    ("torch", "Size"): tuple,
    ("torch", "device"): _device,
    ("_codecs", "encode"): _codecs_encode,
    # numpy arrays (numpy 1 and 2 spell the module apart)
    **{(f"numpy.{core}.{m}", n): f for core in ("core", "_core")
       for m, n, f in (("multiarray", "_reconstruct", _np_reconstruct), ("numeric", "_frombuffer", _np_frombuffer))},
    ("numpy", "dtype"): _np_dtype,
    ("numpy", "ndarray"): "numpy.ndarray",
    **{(m, n): f for m in ("builtins", "__builtin__")
       for n, f in (("set", _set), ("frozenset", _set), ("slice", slice), ("complex", complex),
                    ("object", object), ("dict", dict), ("list", list), ("bytes", _bytes),
                    ("bytearray", _bytearray), ("tuple", tuple), ("int", int), ("float", float), ("str", _str))},
    # object, tuple, int, float, str: copyreg._reconstructor's bases (a namedtuple, an IntEnum at protocols
    # 0 and 1); dict, list: a defaultdict's factory (an optimizer's state)
    ("torch", "Tensor"): "torch.Tensor",  # _rebuild_from_type_v2's type of a tensor with attributes of its own
}
# torch.float32, torch.bfloat16 …: a dtype stored as a plain value (e.g. a config entry)
_TORCH_DTYPES = frozenset({"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
                           "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "int64",
                           "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "bool", "complex64",
                           "complex128"})
_STORAGE_DTYPES = frozenset(_STORAGES.values()) | _TORCH_DTYPES


class _Unpickler(pickle.Unpickler):
    """Knows the globals of ``_ALLOWED``, storage classes, dtypes and TorchScript types; refuses the rest.
    ``storage(pid)`` turns a persistent id into a :class:`_Storage` (or raises ``UnpicklingError``)."""

    def __init__(self, stream: Any, storage: Callable[[tuple], _Storage], encoding: str = "ASCII",
                 declared: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(stream, encoding=encoding)
        self._storage = storage
        self._types: dict[str, type] = {}
        self._declared = declared or {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            key = f"{module}.{name}"
            if key not in self._types:  # (with the constants its code declares: _script_constants)
                self._types[key] = type(name, (_Object,), {"type_name": key, "declared": self._declared.get(key, {})})
            return self._types[key]
        if module == "torch" and name in _STORAGES:
            return _STORAGES[name]
        if module == "torch" and name in _TORCH_DTYPES:
            return f"torch.{name}"
        if (module, name) in _ALLOWED:
            found = _ALLOWED[(module, name)]
            return _Call(found) if isinstance(found, types.FunctionType) else found
        if module in ("copyreg", "copy_reg") and name == "_reconstructor":  # (Python 2's name at protocols 0, 1)
            return _Call(_reconstructor)
        # code to run (os.system …), and torch's own tensor rebuilders htsr does not know (sparse, quantized
        # or nested tensors: torch.load(weights_only=True) decides), are refused; another package's
        # '_rebuild…' (the kernels hub's _rebuild_kernel_func, in transformers 5's pickled LLMs) is inert
        root = module.split(".", 1)[0]
        if root in _HOSTILE or module in _TORCH_REBUILDERS or (root == "torch" and name.startswith("_rebuild")):
            raise _refuse(module, name)
        key = f"{module}.{name}"  # anything else (a model or config class, numpy): an inert stand-in
        if key not in self._types:
            self._types[key] = type(name, (_Inert,), {"type_name": key})
        return self._types[key]

    def persistent_load(self, pid: Any) -> Any:
        # the legacy format records a pickled module's class with its source: ('module', class, file, source)
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module" and isinstance(pid[1], type) \
                and issubclass(pid[1], _Inert):
            return pid[1]
        # ('storage', storage type, key, location, numel[, view metadata (legacy format)])
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[1], str)
                and isinstance(pid[2], str)):
            raise pickle.UnpicklingError(f"unknown persistent id {reprlib.repr(pid)[:60]}")
        return self._storage(pid)


def _byteorder(z: zipfile.ZipFile, member: str) -> str:
    """An archive's ``byteorder`` member: 'little', 'big', or 'not marked little or big' for anything else (read
    no further than 16 bytes: a crafted member of gigabytes, or one holding terminal escapes, went whole into the
    error message)."""
    info = z.getinfo(member)
    if info.file_size > 16 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return "not marked little or big"  # (bzip2 and lzma decompress a whole block to give 16 bytes)
    with z.open(info) as f:
        text = f.read(16).decode("ascii", errors="replace").strip()
    return text if text in ("little", "big") else "not marked little or big"


def _walk(obj: Any, prefix: str, module_class: str, seen: set[int]) -> Iterator[tuple[str, _Tensor, str]]:
    """(name, tensor, class name of the module holding it) for every tensor reachable from ``obj``; and a LoRA's
    ``alpha`` stored as a Python number (a .pt LoRA's ``lora_unet_….alpha: 4.0``) as the 0-D array its scale is
    read from (it had been dropped: the update scaled by 1, not alpha / r)."""
    if _is_leaf(obj):
        yield prefix, obj, module_class
        return
    if isinstance(obj, (int, float)) and not isinstance(obj, bool) and prefix.rpartition(".")[2] == "alpha":
        number = _NpArray()
        number.array, number.built = np.asarray(obj, dtype=np.float32), True
        yield prefix, number, module_class
        return
    if isinstance(obj, _NpArray):  # an object array: its items, as a list's (walked once, as any container)
        if id(obj) in seen:
            return
        seen.add(id(obj))
        obj = obj.items if obj.items is not None else ()
    if id(obj) in seen:
        return
    if isinstance(obj, _Object):
        seen.add(id(obj))
        state = getattr(obj, "state", None)
        cls = _layer_class(obj)
        if (isinstance(state, tuple) and len(state) == 2
                and all(isinstance(d, dict) or d is None for d in state)):  # (__dict__, __slots__ values)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            for k, v in state.items():
                yield from _walk(v, f"{prefix}.{_key(k)}" if prefix else _key(k), cls, seen)
        elif state is not None:
            yield from _walk(state, prefix, cls, seen)
        if isinstance(obj, _Inert):
            # what a stand-in was filled with (a dict or list subclass, a defaultdict), then what it was
            # made from (a namedtuple's fields, a deque's list)
            for k, v in obj.items.items():
                yield from _walk(v, f"{prefix}.{_key(k)}" if prefix else _key(k), cls, seen)
            for i, v in enumerate(obj.args):
                yield from _walk(v, f"{prefix}.{i}" if prefix else str(i), cls, seen)
    elif isinstance(obj, dict):
        seen.add(id(obj))
        classes = obj.classes if isinstance(obj, _StateDict) else {}
        for k, v in obj.items():
            yield from _walk(v, f"{prefix}.{_key(k)}" if prefix else _key(k), classes.get(k, module_class), seen)
    elif isinstance(obj, (list, tuple)):
        seen.add(id(obj))
        for i, v in (obj if named_pairs(obj) else enumerate(obj)):  # ((name, value) pairs by their names)
            yield from _walk(v, f"{prefix}.{_key(i)}" if prefix else _key(i), module_class, seen)


#: characters of a mapping key kept in a name (a checkpoint's keys are short; a name repeats its whole path)
_MAX_KEY_CHARS = 200


def _key(k: Any) -> str:
    """A mapping key as a name part: strings and numbers as they are, anything else by its type (a key the
    pickle built of shared parts would take 2^depth characters to print)."""
    if isinstance(k, str) and len(k) > _MAX_KEY_CHARS:  # each name repeats its path: keep them short
        return f"{k[:_MAX_KEY_CHARS]}…"
    return str(k) if isinstance(k, (str, int, float)) else f"<{type(k).__name__}>"


def _unaliased(found: list[tuple[str, _Tensor, str]]) -> list[tuple[str, _Tensor, str]]:
    """Without a tensor's private aliases: a module can hold a tensor twice (an LSTM's ``_flat_weights`` list
    aliases its ``weight_ih_l0`` …); the names with the fewest private (``_``) components stay — two of them
    (a tied ``lm_head.weight`` and ``wte.weight``) both, as the module's state dict names them."""
    fewest: dict[_Tensor, int] = {}
    private = [sum(part.startswith("_") for part in name.split(".")) for name, _, _ in found]
    for (_, t, _), p in zip(found, private):
        fewest[t] = min(p, fewest.get(t, p))
    return [f for f, p in zip(found, private) if p == fewest[f[1]]]


#: containers within containers a pickle may nest (real checkpoints nest a few dozen levels), and elements a
#: dict key or set element may hold: CPython hashes a tuple recursively in C with no depth guard (a 1 MB
#: pickle of nested tuples crashes it, torch.load included) and a key built of shared parts costs 2^depth
_MAX_NESTING, _MAX_KEY = 1000, 1000
_IN_PLACE = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})  # change stack[-k]
# opcode → (name, values it pops — or −1 − those below the mark for one that pops to a mark —, values it pushes)
_OPS = {op.code: (op.name, -1 - [x.name for x in op.stack_before].index("mark")
                  if any(x.name == "stackslice" for x in op.stack_before) else len(op.stack_before),
                  len(op.stack_after)) for op in pickletools.opcodes}
_KEYED = frozenset({"SETITEM", "SETITEMS", "DICT", "ADDITEMS", "FROZENSET"})
_GETS, _PUTS = frozenset({"GET", "BINGET", "LONG_BINGET"}), frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_EMPTY = frozenset({"EMPTY_DICT", "EMPTY_LIST", "EMPTY_SET"})  # containers that in-place ops fill


def _check_nesting(stream: Any) -> None:
    """Walk the opcodes of the pickle at ``stream``'s position (it is rewound) without building anything,
    tracking how deep each value nests and how many elements it holds (shared parts counted each time they
    are used), and refuse one that nests deeper than :data:`_MAX_NESTING` or hashes a key larger than
    :data:`_MAX_KEY` (pickle.UnpicklingError)."""
    start = stream.tell()
    mark, atom = object(), (0, 1)  # atoms share one record; a container gets its own, which in-place ops change
    stack: list[Any] = []  # per value: [depth, elements] (shared with the memo: in-place changes show there)
    memo: dict[Any, Any] = {}
    push, ops = stack.append, _OPS
    for op, arg, _ in pickletools.genops(stream):
        name, before, after = ops[op.code]
        if before == 0:
            if name in _GETS:
                push(memo.get(arg, atom))
            elif name in _PUTS:
                memo[arg] = stack[-1] if stack else atom
            elif name == "MARK":
                push(mark)
            elif after:
                push([0, 1] if name in _EMPTY else atom)
            continue
        if name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else atom
            continue
        if name == "DUP":
            push(stack[-1] if stack else atom)
            continue
        items: list[Any] = []
        below = before
        if before < 0:  # the values above the mark, then the mark, then -1 - before values below it
            while stack and stack[-1] is not mark:
                items.append(stack.pop())
            items.reverse()
            if stack:
                stack.pop()
            below = -1 - before
        popped = [v for v in [stack.pop() for _ in range(min(below, len(stack)))][::-1] if v is not mark]
        if name in _KEYED:
            keys = items if name in ("ADDITEMS", "FROZENSET") else (items[0::2] if items else popped[1:2])
            if any(k[1] > _MAX_KEY for k in keys):
                raise pickle.UnpicklingError(f"a dict key or set element of more than {_MAX_KEY} elements: "
                                             "no checkpoint holds one")
        if not after:
            continue
        if name in _IN_PLACE and popped and isinstance(popped[0], list):
            new, added = popped[0], popped[1:] + items
            new[0] = max(new[0], 1 + max((v[0] for v in added), default=0))
            new[1] += sum(v[1] for v in added)
        else:
            values = popped + items
            new = [1 + max((v[0] for v in values), default=-1), 1 + sum(v[1] for v in values)]
        if new[0] > _MAX_NESTING:
            raise pickle.UnpicklingError(f"values nested more than {_MAX_NESTING} levels deep: no checkpoint is")
        stack.extend([new] * after)
    stream.seek(start)


class _PickledTensors:
    """The tensors of an unpickled checkpoint tree, validated against their storages' sizes and loaded one
    at a time; a subclass says where a storage's bytes are (:meth:`_raw`)."""

    path: Path
    script = False
    _const_kinds: dict[str, str] = {}  # a frozen TorchScript module's constants' kinds (_frozen_kinds)
    #: who writes the pickles this reader reads (in errors), and how a Python 2 byte string is decoded
    writer, encoding = "torch.save / torch.jit.save", "ASCII"

    @staticmethod
    def _is_weight(v: Any) -> bool:
        """What makes a mapping the state dict to unwrap: a torch tensor (a numpy array beside a checkpoint's
        ``state_dict``, such as a saved RNG state, does not make the checkpoint itself one)."""
        return isinstance(v, _Tensor)

    def _fail(self, what: str) -> SourceError:
        return SourceError(f"{self.path}: {what}")

    def _unpickle(self, stream: Any, what: str, storage: Callable[[tuple], _Storage],
                  declared: dict[str, dict[str, Any]] | None = None) -> Any:
        """One pickle from ``stream`` (``what`` names it in errors), its persistent ids resolved by ``storage``."""
        try:
            _check_nesting(stream)
            return _Unpickler(stream, storage, self.encoding, declared).load()
        except _Refused as e:
            hint = ("; a torch.ao quantized model: analyse the live model (its quantized layers are dequantized), "
                    "or its float model" if re.search(r"_rebuild_qtensor|torch\.q(u)?int", str(e)) else "")
            raise RefusedGlobal(f"{self.path}: {what}: {one_line(e, 200)}{hint}") from None
        except pickle.UnpicklingError as e:
            raise self._fail(f"{what}: {one_line(e, 200)}") from None
        except (EOFError, ValueError, TypeError, LookupError, AttributeError, RecursionError,
                UnicodeError, MemoryError, OverflowError, BufferError) as e:
            raise self._fail(f"{what}: corrupt pickle ({described(e, 80)}); "
                             f"truncated, or not written by {self.writer}") from None

    def _collect(self, tree: Any, consts: Any, sizes: dict[str, int]) -> None:
        """Name the tensors of ``tree`` (and TorchScript ``consts``) and check them against ``sizes`` (bytes
        per storage key)."""
        try:
            if not self.script:
                tree = _as_state_dicts(tree)
            notes: list[str] = []
            state = tree if self.script else unwrap_state(tree, self._is_weight, notes, str(self.path)) or tree
            self.description = with_notes(self.description, notes)
            found = list(_walk(state, "", "", set()))
        except RecursionError:
            raise self._fail("the pickle nests objects too deeply to be a model; corrupt or hostile file") from None
        except pickle.UnpicklingError as e:
            raise self._fail(f"{one_line(e, 200)}; corrupt or hostile file") from None
        except (TypeError, AttributeError, ValueError, LookupError, MemoryError) as e:
            raise self._fail(f"the pickle's objects are not a checkpoint's ({described(e, 80)}); corrupt or hostile file") from None
        if isinstance(consts, tuple):
            found += [(f"CONSTANTS.c{i}", t, "") for i, t in enumerate(consts) if _is_leaf(t)]
        # a bare tensor (torch.save(W, path)) is named after the file, as a .npy is; torch.ao's packed (weight, bias)
        # of a quantized Linear (fp16 dynamic quantization's holds plain float tensors) as a float Linear names them
        found = [(_PACKED_ITEM.sub(lambda m: f"{m[1]}{('weight', 'bias')[int(m[2])]}", name) or self.path.stem,
                  t, cls) for name, t, cls in found]
        # a module's aliases (an LSTM's _flat_weights) are dropped; a state dict's tied keys are kept, as torch.load does
        self._tensors = self._validated(_unaliased(found) if self.script else found, sizes)

    def _validated(self, found, sizes: dict[str, int]) -> list[tuple[str, _Tensor, str]]:
        """The tensors whose storage holds them; each other one gets a failed row (``_broken``: name → why), unless
        none does (the file is refused)."""
        out, problems, self._broken = [], [], {}
        for name, t, cls in found:
            if isinstance(t, _NpArray) or _uninitialized(t):  # its bytes were checked when it was built; none
                out.append((name, t, cls))
                continue
            try:
                itemsize = numpy_dtype(t.storage.dtype).itemsize
            except TypeError:
                problems.append((name, f"unknown dtype {t.storage.dtype}", t, cls))
                continue
            need, have = t.extent() * itemsize, sizes[t.storage.key]
            if need > have:
                problems.append((name, f"shape {list(t.shape)} needs {need} bytes of storage "
                                       f"{t.storage.key.rsplit('/', 1)[-1]}, which holds {have}", t, cls))
                continue
            out.append((name, t, cls))
        if problems and not out:
            raise self._fail("tensor " + listed([f"{n} ({why})" for n, why, _, _ in problems], 3, "; ")
                             + " — truncated or corrupt file")
        self._broken = {n: (t, cls, f"{self.path}: tensor {n}: {why} — truncated or corrupt file; save or download "
                                    "it again") for n, why, t, cls in problems}
        if problems:  # (said of the source too: a damaged norm weight's is passed over as 1-D, no failed row)
            self.description += (f" ({len(problems)} tensor(s) with storage truncated or corrupt, "
                                 f"{listed([n for n, *_ in problems], 3)}: save or download it again)")
        return out

    def __len__(self) -> int:
        return len(self._tensors) + len(self._broken)

    def _no_values(self, name: str, dtype: str) -> np.ndarray:
        raise self._fail(f"{name} is a numpy {dtype} array: no weights to load")

    def _raw(self, storage: _Storage, start: int, nbytes: int) -> Any:
        """The ``nbytes`` bytes of ``storage`` from its byte ``start`` (a buffer)."""
        raise NotImplementedError

    def _load(self, name: str, t: _Tensor) -> np.ndarray:
        dtype = numpy_dtype(t.storage.dtype)
        if math.prod(t.shape) == 0:
            return as_loaded(np.zeros(t.shape, dtype))
        try:
            # the bytes this view reaches alone (64 experts' views of one stacked storage had each read the
            # storage from its start, 33x its size in all)
            nbytes = (t.extent() - t.offset) * dtype.itemsize
            raw = self._raw(t.storage, t.offset * dtype.itemsize, nbytes)
            if len(raw) < nbytes:
                raise ValueError(f"storage {t.storage.key} ends before the tensor's last byte")
        # (zlib: a corrupt deflated member; NotImplementedError: zipfile's for a compression method byte it knows not)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, zlib.error, NotImplementedError) as e:
            raise self._fail(f"tensor {name}: storage unreadable ({one_line(e, 120)}); the file is truncated or "
                             "corrupt: save or download it again") from None
        # strided through an unsigned integer of the same size: numpy cannot stride ml_dtypes' bf16 / fp8
        word = np.dtype(f"<u{dtype.itemsize}") if dtype.itemsize in (1, 2, 4, 8) else dtype
        base = np.frombuffer(raw, dtype=word)
        view = np.lib.stride_tricks.as_strided(
            base, shape=t.shape, strides=tuple(s * dtype.itemsize for s in t.stride), writeable=False)
        if view.flags.c_contiguous and view.size == base.size:  # the bytes read are the tensor's: no copy
            return as_loaded(base.reshape(t.shape).view(dtype))
        return as_loaded(np.array(view).view(dtype))  # a copy: the storage's other bytes are not kept

    def __iter__(self) -> Iterator[TensorRef]:
        # quantized weights beside their scales or parts: dequantized (htsr.io.scales)
        yield from with_scales(self.refs(), PackedConfig.of_folder(self.path.parent))

    def refs(self) -> Iterator[TensorRef]:
        """The tensors as stored (quantized weights and their scales or parts apart)."""
        for name, t, cls in self._tensors:
            if _uninitialized(t):  # a row that says why (a bias, none: named among the tensors not analysed)
                yield TensorRef(name, (), "float32", skipped_loader(
                    "not initialized: a Lazy module saved before its first forward pass; run one, then save"))
                continue
            shape = t.shape  # (an array's, as its pickle gave it)
            kind = held_kind(cls, name, shape)
            if name in self._const_kinds and len(shape) >= 2:  # a frozen module's weight, by the op using it
                kind = self._const_kinds[name] if self._const_kinds[name] != "dense" or len(shape) == 2 else kind
            if isinstance(t, _NpArray) and t.array is None:  # strings, records: listed as a dtype of no weights
                # (never loaded by analyze, which lists it by its dtype)
                yield TensorRef(name, shape, t.other or "", functools.partial(self._no_values, name, t.other))
                continue
            if isinstance(t, _NpArray):  # in the pickle itself: copied out, in native byte order
                native = t.array.dtype.newbyteorder("=")
                yield TensorRef(name, shape, native.name, lambda a=t.array, d=native: as_loaded(np.array(a, d)), kind)
                continue
            load: Callable[[], np.ndarray] = lambda name=name, t=t: self._load(name, t)
            reach = max(t.extent() - t.offset, 0)  # the storage's elements this view reaches, from its first
            # a stride of 0 (expand: of a row, or of a column, whose reach spans more than it holds) or
            # overlapping strides
            if math.prod(t.shape) > reach or any(st == 0 and n > 1 for n, st in zip(t.shape, t.stride)):
                held = min(reach, math.prod(n for n, st in zip(t.shape, t.stride) if st))
                load = skipped_loader(f"an expanded view: {math.prod(t.shape)} values over {held} stored ones (a "
                                      "stride of 0), no stored matrix")
            # (the file's path with it: storage keys are unique within one file, and shards are read as one)
            yield TensorRef(name, t.shape, t.storage.dtype, load, kind,
                            storage_key=(str(self.path), t.storage.key, t.offset, t.shape, t.stride))
        for name, (t, cls, why) in self._broken.items():  # (rows by their kind and shape, failing when loaded)
            yield TensorRef(name, t.shape, "float32", failing_loader(SourceError, why), held_kind(cls, name, t.shape))


#: an item of torch.ao's ``<prefix>_packed_params._packed_params = (weight, bias)``, named by its position
_PACKED_ITEM = re.compile(rf"(^|\.){re.escape(_PACKED)}\.([01])$")


class _TorchArchive(zipfile.ZipFile):
    """A zip archive torch wrote, its members read as torch reads them: a CRC-32 recorded as 0 is none, and is not
    checked. torch.save with ``torch.serialization.set_crc32_options(False)`` (to save large checkpoints faster)
    records 0 for every member, and torch.load reads them; zipfile had taken each member for corrupt ('Bad
    CRC-32'). A member whose CRC-32 is recorded is checked as zipfile checks it."""

    def open(self, name: str | zipfile.ZipInfo, mode: str = "r", pwd: bytes | None = None, *,
             force_zip64: bool = False) -> Any:
        if mode == "r":
            info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
            if info.CRC == 0 and info.file_size:  # (an empty member's CRC-32 is 0: nothing to skip)
                info = copy.copy(info)
                del info.CRC  # (zipfile checks the CRC-32 of a member whose ZipInfo has one)
            name = info
        return super().open(name, mode, pwd, force_zip64=force_zip64)


class TorchZipFile(_PickledTensors):
    """The tensors of a ``torch.save`` or ``torch.jit.save`` archive, read lazily (one storage per load)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        try:
            self._stamp = file_stamp(self.path)  # (before the archive's index: a file saved again since is not read)
            with _TorchArchive(self.path) as z:
                members = {i.filename: i for i in z.infolist()}
                infos = {n: i.file_size for n, i in members.items()}
                pkl = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
                if not pkl:
                    raise self._fail("a zip without <root>/data.pkl: not a PyTorch archive")
                root = pkl[0].split("/", 1)[0]
                order = _byteorder(z, f"{root}/byteorder") if f"{root}/byteorder" in infos else "little"
                if order != "little":
                    raise self._fail(f"storages are {order}-endian; re-save the model on a little-endian machine")
                declared = _script_constants(z, f"{root}/code/", infos)
                self._const_kinds = _frozen_kinds(z, f"{root}/code/", infos) if f"{root}/constants.pkl" in infos \
                    else {}
                tree = self._member(z, f"{root}/data.pkl", f"{root}/data", infos, declared)
                consts = (self._member(z, f"{root}/constants.pkl", f"{root}/constants", infos)
                          if f"{root}/constants.pkl" in infos else ())
        except (zipfile.BadZipFile, OSError, EOFError, UnicodeError, RuntimeError, NotImplementedError,
                zlib.error) as e:  # RuntimeError: an encrypted member; NotImplementedError: an unknown compression
            raise self._fail(f"corrupt PyTorch zip archive ({described(e, 120)}); "
                             "truncated?") from None
        self.script = is_torchscript_archive(list(infos))
        self._collect(tree, consts, infos)
        self._offsets = self._stored_offsets(members, {t.storage.key for _, t, _ in self._tensors
                                                       if isinstance(t, _Tensor)})

    def _member(self, z: zipfile.ZipFile, member: str, storage_dir: str, infos: dict[str, int],
                declared: dict[str, dict[str, Any]] | None = None) -> Any:
        """Unpickle ``member``; its tensors' storages are the members of ``storage_dir``."""
        import io

        def storage(pid: tuple) -> _Storage:
            key = f"{storage_dir}/{pid[2]}"
            if key not in infos:
                raise pickle.UnpicklingError(f"storage {pid[2]!r} is not in the archive (expected {key})")
            return _Storage(key, pid[1])

        info = z.getinfo(member)
        if expands_too_far(info.file_size, info.compress_size):  # (zipfile reads no more than it declares)
            raise self._fail(f"{member} would expand {info.compress_size} bytes to {info.file_size}: not a pickle "
                             "torch.save writes (a zip bomb?); re-save the model")
        return self._unpickle(io.BytesIO(z.read(member)), member, storage, declared)

    def _stored_offsets(self, members: dict[str, zipfile.ZipInfo], storages: set[str]) -> dict[str, int]:
        """The file offset of each uncompressed storage's bytes (torch.save stores storages uncompressed),
        read once from the local headers, so a load maps its bytes instead of reopening the archive; and (in
        ``_crcs``) the members whose CRC-32 is recorded and not checked yet (a CRC-32 recorded as 0 is none:
        torch.save with set_crc32_options(False)); where the archive records CRC-32s for its other members, a
        storage recorded as 0 is one torch.save wrote under ``torch.serialization.skip_data()`` (checked too)."""
        records = any(info.CRC for name, info in members.items() if name not in storages)
        self._crcs = {name: members[name] for name in storages if members[name].CRC
                      or (records and members[name].file_size)}
        out = {}
        with open(self.path, "rb") as f:
            for name in storages:
                info = members[name]
                if info.compress_type == zipfile.ZIP_STORED:  # (others are read through zipfile when loaded)
                    offset = stored_member_offset(f, info)
                    if offset is not None:  # (else zipfile says what is wrong when the tensor is loaded)
                        out[name] = offset
        return out

    def _raw(self, storage: _Storage, start: int, nbytes: int) -> Any:
        offset = self._offsets.get(storage.key)
        if offset is not None:
            self._check_crc(storage.key, offset)
            return read_span(self.path, offset + start, nbytes, self._stamp)
        # (through a file checked to be the one whose index was read: a deflated member is read whole, its CRC-32
        # the new file's)
        with reopened(self.path, self._stamp) as raw, _TorchArchive(raw) as z:
            info = z.getinfo(storage.key)
            if expands_too_far(info.file_size, info.compress_size):  # torch.save stores storages uncompressed
                raise ValueError(f"{storage.key} would expand {info.compress_size} bytes to {info.file_size} "
                                 "(a zip bomb?)")
            with z.open(info) as f:
                f.seek(start)  # (a compressed member: decompressed up to there, not held)
                return f.read(nbytes)

    def _check_crc(self, key: str, offset: int) -> None:
        """ValueError if the stored member ``key`` (its bytes at ``offset``) does not match the CRC-32 the archive
        records for it (:func:`check_stored_crc32`); torch.load does not check, numpy's np.load of an .npz does.
        A SourceError if it is a storage torch.save left unwritten (skip_data: zeros under a CRC-32 of 0). Each
        storage is checked once, when it is first loaded (then it leaves ``_crcs``)."""
        info = self._crcs.get(key)
        if info is None:
            return
        if info.CRC:
            check_stored_crc32(self.path, offset, info, self._stamp)
        elif not read_span(self.path, offset, info.file_size, self._stamp).any():
            # (recorded as 0 where the archive records the others': torch.save under skip_data() left its bytes
            # unwritten, zeros; filled in since, it is read)
            raise self._fail(f"storage {key} holds no data: torch.save wrote the checkpoint under "
                             "torch.serialization.skip_data() (the tensors' shapes alone); fill in its storages or "
                             "save it without skip_data")
        self._crcs.pop(key, None)  # (None: another thread's load checked it too)


class TorchLegacyFile(_PickledTensors):
    """The tensors of a legacy (pre-zip) ``torch.save`` file, each storage read when loaded."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        dtypes: dict[str, str] = {}  # storage key → dtype, as the object's pickle declares them

        def storage(pid: tuple) -> _Storage:
            if len(pid) != 6:
                raise pickle.UnpicklingError(f"a storage record of {len(pid)} fields (the legacy format has 6)")
            if pid[5] is not None:  # (view key, offset, size): storage views, written by PyTorch < 0.4
                raise _Refused("storage views (written by PyTorch before 0.4) are not read without torch")
            if dtypes.setdefault(pid[2], pid[1]) != pid[1]:
                raise pickle.UnpicklingError(f"storage {pid[2]!r} declared as {dtypes[pid[2]]} and {pid[1]}")
            return _Storage(pid[2], pid[1])

        def none(pid: tuple) -> _Storage:
            raise pickle.UnpicklingError("a storage outside the object's pickle")

        try:
            self._stamp = file_stamp(self.path)  # (before the pickle: a file saved again since is not read)
            size = self._stamp[2]
            with open(self.path, "rb") as f:
                if self._unpickle(f, "magic number", none) != _LEGACY_MAGIC:
                    raise self._fail("a pickle without torch.save's magic number: not a PyTorch checkpoint")
                if (proto := self._unpickle(f, "protocol", none)) != _LEGACY_PROTOCOL:
                    raise self._fail(f"legacy torch.save protocol {proto if isinstance(proto, int) else type(proto).__name__} "
                                     f"(htsr reads {_LEGACY_PROTOCOL})")
                info = self._unpickle(f, "system info", none)
                if not (isinstance(info, dict) and info.get("little_endian") is True):
                    raise self._fail("storages are not little-endian; re-save the model on a little-endian machine")
                tree = self._unpickle(f, "object", storage)
                keys = self._unpickle(f, "storage keys", none)
                if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
                    raise self._fail("the storage key list is not a list of strings; corrupt file")
                self._offsets, sizes = {}, {}
                pos = f.tell()
                for key in keys:  # each: int64 element count, then the bytes
                    if key not in dtypes:
                        raise self._fail(f"storage {key!r} is listed but no tensor uses it; corrupt file")
                    f.seek(pos)
                    head = f.read(8)
                    numel = int.from_bytes(head, "little", signed=True) if len(head) == 8 else -1
                    nbytes = numel * numpy_dtype(dtypes[key]).itemsize
                    if numel < 0 or pos + 8 + nbytes > size:
                        raise self._fail(f"storage {key!r} runs past the end of the file ({size} bytes); "
                                         "truncated?")
                    self._offsets[key], sizes[key] = pos + 8, nbytes
                    pos += 8 + nbytes
        except OSError as e:
            raise self._fail(f"unreadable ({described(e, 120)})") from None
        except TypeError:  # numpy_dtype of a storage type htsr has no dtype for
            raise self._fail(f"a storage of unknown type among {sorted(set(dtypes.values()))}") from None
        if missing := set(dtypes) - set(sizes):
            raise self._fail(f"storage {min(missing)!r} is used by a tensor but not stored; truncated?")
        self._collect(tree, (), sizes)

    def _raw(self, storage: _Storage, start: int, nbytes: int) -> Any:
        return read_span(self.path, self._offsets[storage.key] + start, nbytes, self._stamp)


#: torch.export's serialized dtypes (torch._export.serde.schema.ScalarType) as htsr names them
_EXPORT_DTYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32",
                  8: "float64", 12: "bool", 13: "bfloat16", 28: "uint16", 29: "float8_e4m3fn", 30: "float8_e5m2",
                  31: "float8_e4m3fnuz", 32: "float8_e5m2fnuz"}


def is_export_archive(names: list[str]) -> bool:
    """True for the member list of a ``torch.export.save`` archive (``.pt2``): ``<root>/archive_format``
    and no ``data.pkl``."""
    return any(n.count("/") == 1 and n.endswith("/archive_format") for n in names) and not any(
        n.endswith("/data.pkl") for n in names)


class TorchExportArchive(TorchZipFile):
    """A ``torch.export.save`` archive (``.pt2``), read without torch: each weight's bytes are a member
    ``<root>/data/weights/<path>`` (buffers and lifted constants ``data/constants/``), described by
    ``<root>/data/weights/model_weights_config.json`` (name → dtype, sizes, strides, storage offset); its
    kind comes from the class of the module whose graph node uses it, which the program records
    (``nn_module_stack`` in ``<root>/models/model.json``), as for a live module. A tensor stored pickled (a
    subclass) gets a skipped row. An AOTInductor package (compiled code, its weights inside a shared
    library) is refused, saying what to give instead."""

    def __init__(self, path: str | os.PathLike) -> None:
        import json

        self.path = Path(path)
        self.description = str(self.path)
        self._pickled: dict[str, str] = {}
        self._missing: dict[str, str] = {}  # a weight whose member the archive lacks → that member
        self.not_weights: list[tuple[str, str]] = []
        try:
            self._stamp = file_stamp(self.path)  # (before the archive's index: a file saved again since is not read)
            with _TorchArchive(self.path) as z:
                members = {i.filename: i for i in z.infolist()}
                root = next(n.split("/", 1)[0] for n in members if n.endswith("/archive_format"))
                if any(n.startswith(f"{root}/data/aotinductor/") for n in members):
                    raise self._fail("an AOTInductor package (compiled code; its weights are inside the shared "
                                     "library): analyse the torch.export archive (torch.export.save) or the model "
                                     "it was compiled from")
                order = _byteorder(z, f"{root}/byteorder") if f"{root}/byteorder" in members else "little"
                if order != "little":
                    raise self._fail(f"weights are {order}-endian; re-save the program on a little-endian machine")
                configs = sorted(n for n in members if re.fullmatch(
                    rf"{re.escape(root)}/data/(weights|constants)/[^/]*(weights|constants)_config\.json", n))
                classes: dict[str, str] = {}
                state: set[str] = set()  # the parameters and persistent buffers: the state dict's names
                for model in (n for n in members if re.fullmatch(rf"{re.escape(root)}/models/[^/]+\.json", n)):
                    program = json.loads(self._small(z, members[model]))
                    classes.update(_export_classes(program))
                    state |= _export_state(program)
                found, stored = [], set()
                for config in configs:
                    folder = config.rsplit("/", 1)[0]
                    entries = json.loads(self._small(z, members[config])).get("config", {})
                    for name, e in entries.items():
                        stored.add(name)
                        if name not in state:  # a non-persistent buffer (a RoPE cache), a lifted constant
                            self.not_weights.append((name, "a non-persistent buffer or constant of the program: "
                                                           "no state-dict tensor"))
                            continue
                        found.append(self._entry(name, e, f"{folder}/{e.get('path_name')}", members,
                                                 classes.get(name, "")))
                if state - stored:
                    raise self._fail(f"corrupt torch.export archive: {len(state - stored)} of the program's "
                                     f"weights ({sorted(state - stored)[0]!r} …) have no stored tensor (its "
                                     "weights config is missing?); save it again")
        except SourceError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, UnicodeError, RuntimeError, NotImplementedError, zlib.error,
                ValueError, KeyError, TypeError, AttributeError, StopIteration, OverflowError, RecursionError) as e:
            raise self._fail(f"corrupt torch.export archive ({described(e, 120)}); save it "
                             "again") from None
        self.script = False
        self._tensors = self._validated([f for f in found if f is not None],
                                        {k: i.file_size for k, i in members.items()})
        self._offsets = self._stored_offsets(members, {t.storage.key for _, t, _ in self._tensors})

    def _small(self, z: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
        if info.file_size > 1 << 28 or expands_too_far(info.file_size, info.compress_size):
            raise self._fail(f"{info.filename} declares {info.file_size} bytes: not the JSON torch.export writes")
        return z.read(info)

    def _entry(self, name: str, e: dict, member: str, members: dict, cls: str) -> tuple[str, _Tensor, str] | None:
        meta = e["tensor_meta"]

        def number(v: Any) -> int:  # (JSON's 16.5, "16", true or 1e400 are no sizes)
            if type(v) is not int:
                raise ValueError(f"{name}: {v!r} is not an integer")
            return v

        shape = tuple(number(s["as_int"]) for s in meta["sizes"])
        stride = tuple(number(s["as_int"]) for s in meta["strides"])
        offset = number(meta.get("storage_offset", {}).get("as_int", 0))
        dtype = _EXPORT_DTYPES.get(number(meta["dtype"]))
        if member not in members and not e.get("use_pickle"):  # (what the weights config names is gone: corrupt)
            self._missing[name] = member
            return None
        if e.get("use_pickle") or dtype is None or meta.get("layout", 7) != 7:
            why = ("stored pickled (a tensor subclass)" if e.get("use_pickle") else
                   f"serialized dtype {meta['dtype']}" if dtype is None else "not a strided tensor")
            self._pickled[name] = why
            return None
        if len(shape) != len(stride) or min(shape + stride + (offset,), default=0) < 0:
            raise ValueError(f"{name}: sizes {list(shape)}, strides {list(stride)}, offset {offset}")
        return name, _Tensor(_Storage(member, dtype), offset, shape, stride), cls

    def refs(self) -> Iterator[TensorRef]:
        yield from super().refs()
        for name, why in self._pickled.items():
            yield TensorRef(name, (), "float32", skipped_loader(f"{why}: htsr reads plain tensors; analyse "
                                                                "torch.export.load(path).module()"))
        for name, member in self._missing.items():
            yield TensorRef(name, (), "float32", raising_loader(self._fail, (
                f"its member {member} is missing from the archive: the file is truncated or corrupt; save it again")))

    def __len__(self) -> int:
        return super().__len__() + len(self._pickled) + len(self._missing)


def _export_state(program: dict) -> set[str]:
    """The names of a serialized ExportedProgram's parameters and persistent buffers (its signature's input
    specs): what its module's state dict holds."""
    out = set()
    for spec in program.get("graph_module", {}).get("signature", {}).get("input_specs", []):
        if "parameter" in spec:
            out.add(spec["parameter"]["parameter_name"])
        elif "buffer" in spec and spec["buffer"].get("persistent", True):
            out.add(spec["buffer"]["buffer_name"])
    return out


def _export_classes(program: dict) -> dict[str, str]:
    """:func:`htsr.io.torch.owner_classes` of a serialized ExportedProgram: its signature's input specs, and each
    node's ``nn_module_stack`` as ``key,path,class;…``."""
    gm = program.get("graph_module", {})
    fqn = {}
    for spec in gm.get("signature", {}).get("input_specs", []):
        for kind, field in (("parameter", "parameter_name"), ("buffer", "buffer_name"),
                            ("tensor_constant", "tensor_constant_name")):
            if kind in spec:
                fqn[spec[kind]["arg"]["name"]] = spec[kind][field]

    def node_stack_and_args(node: dict) -> tuple[dict[str, str], list[str]]:
        stack = {}
        for item in str((node.get("metadata") or {}).get("nn_module_stack", "")).split(";"):
            parts = item.split(",")
            if len(parts) >= 3:
                stack[parts[1]] = parts[-1]
        args = []
        for i in node.get("inputs", []):
            arg = i.get("arg", {})
            args += [arg["as_tensor"]] if "as_tensor" in arg else list(arg.get("as_tensors", []))
        return stack, [a.get("name") for a in args]

    return owner_classes(fqn, map(node_stack_and_args, gm.get("graph", {}).get("nodes", [])))
