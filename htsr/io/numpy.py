"""Readers for ``.npz`` / ``.npy`` files and in-memory mappings of names to numpy arrays (no pickles)."""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from ..errors import HtsrError, LayerSkipped, SourceError, described, listed
from .base import (TensorRef, as_loaded, check_stored_crc32, check_unchanged, expands_too_far, file_stamp, one_line,
                   raising_loader, read_array, read_span, skipped_loader, stored_member_offset)
from .scales import with_scales

__all__ = ["ArrayMapping", "NpyFile", "NpzFile"]

_PICKLED = ("an array of pickled Python objects, which htsr never unpickles; re-save the weights as numeric "
            "arrays (numpy.savez of float arrays, or safetensors)")


#: the longest .npy header parsed (numpy's own limit without allow_pickle: a literal that large is slow to parse)
_MAX_NPY_HEADER = 10_000


def _npy_header(f, order: bool = False) -> tuple | None:
    """Shape and dtype (and with ``order``, whether the data is Fortran-ordered) from the .npy header at the
    position of file object ``f``, which is left at the data; None for a format version numpy does not write
    (the member is then loaded, and numpy says so)."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version in ((1, 0), (2, 0)):
        start = f.tell()
        size = int.from_bytes(f.read(2 if version == (1, 0) else 4), "little")
        if size > _MAX_NPY_HEADER:  # (a valid header numpy will not read without pickles either: not loaded)
            raise LayerSkipped(f"a .npy header of {size} bytes (numpy reads up to {_MAX_NPY_HEADER} without "
                               "pickles)")
        f.seek(start)
        shape, fortran, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
    elif version == (3, 0):
        shape, fortran, dtype = _npy_header_3_0(f)
    else:
        return None
    return (tuple(shape), dtype, fortran) if order else (tuple(shape), dtype)


def _npy_header_3_0(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of a format 3.0 header: 2.0's, its text utf-8 (numpy writes 3.0 for field
    names beyond latin-1, and reads it only by loading the array: a member of pickled objects was reported corrupt,
    and every 3.0 member was read whole to learn its shape). ValueError for a header that is not numpy's."""
    size = int.from_bytes(f.read(4), "little")
    if size > _MAX_NPY_HEADER:
        raise LayerSkipped(f"a .npy header of {size} bytes (numpy reads up to {_MAX_NPY_HEADER} without pickles)")
    raw = f.read(size)
    if len(raw) != size:
        raise ValueError("the .npy header is cut short")
    try:
        d = ast.literal_eval(raw.decode("utf-8"))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"not a .npy header ({e.__class__.__name__})") from None
    if not (isinstance(d, dict) and d.keys() == {"descr", "fortran_order", "shape"}
            and isinstance(d["shape"], tuple) and all(isinstance(n, int) for n in d["shape"])
            and isinstance(d["fortran_order"], bool)):
        raise ValueError(f"not a .npy header: {str(d)[:80]}")
    try:
        dtype = np.lib.format.descr_to_dtype(d["descr"])
    except TypeError as e:
        raise ValueError(f"descr is not a dtype: {d['descr']!r}") from e
    return d["shape"], d["fortran_order"], dtype


def _holds_objects(path: Path) -> bool:
    """Whether a .npy file's header declares an object dtype (read without loading the data)."""
    try:
        with open(path, "rb") as f:
            header = _npy_header(f)
        return header is not None and header[1].hasobject
    except Exception:  # noqa: BLE001 - any parse failure of a corrupt header (TokenError, OverflowError …)
        return False


#: leaves and nesting of one structure of mappings and lists: a model's are thousands of names some tens of
#: levels deep; a crafted pickle holding each level twice names 2^k leaves from a few kB (hours, all memory)
MAX_FLAT_ITEMS = 1_000_000
MAX_FLAT_DEPTH = 200


def flat_items(mapping: Mapping, prefix: str = "", lists: bool = False,
               leaf: Callable[[str], bool] = lambda name: False) -> Iterator[tuple[str, object]]:
    """(dotted name, value) for every leaf of nested mappings, in order. ``lists``: a list or tuple that holds an
    array or a mapping somewhere (a hand-written network's ``{'weights': [W1, W2], 'biases': [b1, b2]}``, stax's
    ``[(W, b), …]``) is nested too, its items named by index, as a pickle's are, unless ``leaf(name)`` (a state
    dict's packed parameters); one of numbers is one array. SourceError past MAX_FLAT_ITEMS leaves or
    MAX_FLAT_DEPTH levels."""
    count = [0]
    holds: dict[int, bool] = {}  # _holds_array's answers by object: a list shared by many holders is looked at once

    def walk(node: object, prefix: str, depth: int) -> Iterator[tuple[str, object]]:
        if depth > MAX_FLAT_DEPTH:
            raise SourceError(f"{_shortened(prefix)}: nested more than {MAX_FLAT_DEPTH} levels deep; not a model's "
                              "weights")
        items = node.items() if isinstance(node, Mapping) else node if named_pairs(node) else enumerate(node)
        for k, v in items:
            name = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping) or (lists and isinstance(v, (list, tuple)) and _holds_array(v, holds)
                                          and not leaf(name)):
                yield from walk(v, name, depth + 1)
            else:
                count[0] += 1
                if count[0] > MAX_FLAT_ITEMS:
                    raise SourceError(f"{_shortened(name)}: more than {MAX_FLAT_ITEMS} values in one structure (one "
                                      "held under many names?); not a model's weights")
                yield name, v

    return walk(mapping, prefix, 0)


#: values of a nested list of numbers read as one array (numpy's conversion walks every path: a list holding the
#: one below twice, 40 levels deep, had 2^40, and took all memory)
_MAX_LIST_VALUES = 2_000_000


def _few_values(v: list | tuple) -> bool:
    """Whether a nested list has at most _MAX_LIST_VALUES items along all its paths, counted without numpy."""
    budget, stack = _MAX_LIST_VALUES, [v]
    while stack:
        node = stack.pop()
        budget -= len(node)
        if budget < 0:
            return False
        stack.extend(x for x in node if isinstance(x, (list, tuple)))
    return True


def _shortened(name: str) -> str:
    """A name as an error message quotes it: its ends, when it is a crafted path of hundreds of parts."""
    return name if len(name) <= 80 else f"{name[:40]}…{name[-30:]}"


def named_pairs(v: object) -> bool:
    """Whether a list or tuple is one of (name, value) pairs, distinct names all (``list(model.named_parameters())``,
    ``list(state_dict.items())``): read as the mapping it lists, not as items named by their index."""
    return (isinstance(v, (list, tuple)) and len(v) > 0
            and all(isinstance(x, (list, tuple)) and len(x) == 2 and isinstance(x[0], str) for x in v)
            and len({x[0] for x in v}) == len(v))


def _holds_array(v: object, holds: dict[int, bool], depth: int = 0) -> bool:
    """Whether a list or tuple holds a mapping or an array (not a scalar), at any depth: a network's list of
    weights and one of biases are each items, as in its pickle; a list of numbers is one array. ``holds``: the
    answers so far, by object (lists shared by many holders looked at once, not once per path to them)."""
    if isinstance(v, Mapping):
        return True
    if isinstance(v, (list, tuple)):
        if id(v) not in holds:
            holds[id(v)] = depth < 32 and any(_holds_array(x, holds, depth + 1) for x in v)
        return holds[id(v)]
    return len(getattr(v, "shape", ())) >= 1


class ArrayMapping:
    """A mapping ``{name: array-like}`` (nested mappings flattened with dots); arrays are used as they are,
    in the mapping's order."""

    def __init__(self, mapping: Mapping[str, object], description: str = "<mapping>") -> None:
        try:
            self._mapping = dict(flat_items(mapping, lists=True))
        except SourceError as e:
            raise SourceError(f"{description}: {e}") from None
        self.description = description

    def __len__(self) -> int:
        return len(self._mapping)

    def __iter__(self) -> Iterator[TensorRef]:
        yield from with_scales(self.refs())  # quantized weights beside their scales or parts, dequantized

    def refs(self) -> Iterator[TensorRef]:
        """The arrays as stored (quantized weights and their scales or parts apart)."""
        self.not_weights = []
        for name, value in self._mapping.items():
            if isinstance(value, (list, tuple)) and not _few_values(value):
                self.not_weights.append((str(name), f"a nested list of more than {_MAX_LIST_VALUES} values (one held "
                                                    "under many names?), not an array"))
                continue
            try:
                a = np.asarray(value)
            except Exception as e:  # noqa: BLE001 - a ragged list of numbers …: listed, saying so
                self.not_weights.append((str(name), f"not an array ({one_line(e, 60)})"))
                continue
            yield TensorRef(str(name), a.shape, a.dtype.name, (lambda a=a: as_loaded(a)))


class NpzFile:
    """A ``.npz`` archive; each array is read from the zip when it is loaded. Pickled arrays are refused."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self._spans: dict[str, tuple | None] = {}  # where stored members lie, for layers of stacks
        try:
            self._stamp = file_stamp(self.path)  # (before the members' headers: a file saved again since is not read)
            self._npz = np.load(self.path, allow_pickle=False, mmap_mode="r")
            files = self._npz.files
        except Exception as e:  # noqa: BLE001 - zipfile and numpy raise many kinds on a corrupt archive
            raise SourceError(f"{self.path}: not a readable .npz archive ({described(e, 120)})") from None
        # shape and dtype of each member; one whose header cannot be read gets a row saying so (its
        # neighbours are still analysed)
        self._meta: dict[str, tuple[tuple[int, ...], np.dtype] | str | HtsrError] = {}
        for name in files:
            try:
                info = self._npz.zip.getinfo(name + ".npy")
                if expands_too_far(info.file_size, info.compress_size):
                    self._meta[name] = (f"the member would expand {info.compress_size} bytes to {info.file_size}: "
                                        "constant data or a zip bomb, not loaded")
                    continue
                self._meta[name] = self._header(name, info.file_size)
            except LayerSkipped as e:  # (a header numpy would not read either: not loaded)
                self._meta[name] = f"its .npy header cannot be read ({e}); not loaded"
            except Exception as e:  # noqa: BLE001 - zlib/lzma errors, TokenError, OverflowError, KeyError …
                # (a damaged member fails its row, as one failing its CRC-32 does; a member not loaded is skipped)
                self._meta[name] = HtsrError(f"its .npy header cannot be read ({described(e, 120)}); truncated or corrupt member")

    def _header(self, name: str, size: int) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype from the member's .npy header, without reading its data; a header whose shape the
        member's ``size`` bytes cannot hold raises ValueError (10⁶ experts declared over 256 bytes)."""
        with self._npz.zip.open(name + ".npy") as f:
            header = _npy_header(f)
        if header is None:  # a version numpy does not write: loading it says so
            a = self._npz[name]
            header = tuple(a.shape), a.dtype
        shape, dtype = header
        if any(d < 0 for d in shape):
            raise ValueError(f"its header declares shape {shape}")
        if not dtype.hasobject and math.prod(shape) * dtype.itemsize > size:
            raise ValueError(f"its header declares shape {shape} {dtype} ({math.prod(shape) * dtype.itemsize} "
                             f"bytes), and the member holds {size}")
        return header

    def __len__(self) -> int:
        return len(self._meta)

    def _loader(self, name: str):
        if self._meta[name][1].hasobject:  # loading it would unpickle: a row that says so instead
            return skipped_loader(_PICKLED)

        def load() -> np.ndarray:
            # (the archive np.load opened reads the file that is there now: one saved again since says so, not
            # 'Bad CRC-32 … corrupt?')
            check_unchanged(self.path, self._stamp)
            try:
                return as_loaded(self._npz[name])
            except Exception as e:  # noqa: BLE001 - a corrupt or truncated member's data
                raise SourceError(f"{self.path}: tensor {name!r}: cannot read its data ({described(e, 80)}); truncated or corrupt?") from None

        return load

    @property
    def names(self) -> list[str]:
        return list(self._meta)

    def ndim(self, name: str) -> int:
        """Member ``name``'s number of dimensions (0 if its header cannot be read)."""
        meta = self._meta[name]
        return 0 if isinstance(meta, (str, HtsrError)) else len(meta[0])

    def unreadable(self) -> list[tuple[str, str]]:
        """(name, why) of the members whose header cannot be read."""
        return [(name, str(meta)) for name, meta in self._meta.items() if isinstance(meta, (str, HtsrError))]

    def leaf(self, path: tuple[str, ...], name: str):
        """Member ``name`` as a Flax tree's leaf: ``(shape, dtype name, array function of an index)``, read
        when loaded; None for an unreadable one (listed by :meth:`unreadable`)."""
        meta = self._meta[name]
        if isinstance(meta, (str, HtsrError)):
            return None
        load = self._loader(name)

        def make(idx: tuple = ()) -> np.ndarray:
            # one layer of a stacked (scanned) member: its own bytes, where the member is stored as it is (np.savez,
            # C order), not the whole member decompressed once per layer
            span = self._span(name) if idx and not meta[1].hasobject else None
            return read_array(self.path, *span, idx, self._stamp) if span is not None else load()[idx]

        return meta[0], meta[1].name, make

    def _span(self, name: str) -> tuple[int, np.dtype, tuple[int, ...]] | None:
        """:meth:`_stored_span`, found once per member (a stack is read one layer at a time)."""
        if name not in self._spans:
            self._spans[name] = self._stored_span(name)
        return self._spans[name]

    def _stored_span(self, name: str) -> tuple[int, np.dtype, tuple[int, ...]] | None:
        """Where member ``name``'s C-order array lies in the file (offset, dtype, shape), where the archive stores
        it uncompressed and its bytes match the CRC-32 it records, else None (the member is read through zipfile,
        which says what is wrong)."""
        info = self._npz.zip.getinfo(name + ".npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        try:
            with open(self.path, "rb") as f:
                start = stored_member_offset(f, info)
                if start is None:
                    return None
                f.seek(start)
                header = _npy_header(f, order=True)
                if header is None:
                    return None
                (shape, dtype, fortran), offset = header, f.tell()
            if offset - start + math.prod(shape) * dtype.itemsize > info.file_size:
                return None  # (a header that lies: read the usual way, which says so)
            check_stored_crc32(self.path, start, info, self._stamp)  # (a mismatch: read the usual way, whose
            # zipfile says so)
            return None if fortran else (offset, dtype, tuple(shape))
        except (OSError, ValueError, LayerSkipped):
            return None

    def _ref(self, name: str) -> TensorRef:
        meta = self._meta[name]
        if isinstance(meta, (str, HtsrError)):  # a row that says why (whatever its shape: it is unknown)
            return TensorRef(name, (), "float32", skipped_loader(meta) if isinstance(meta, str) else
                             raising_loader(HtsrError, str(meta)))
        shape, dtype = meta
        return TensorRef(name, shape, dtype.name, self._loader(name))

    def __iter__(self) -> Iterator[TensorRef]:
        yield from with_scales(self._ref(name) for name in self._meta)


class NpyFile:
    """A single ``.npy`` array, named after the file's stem; its header read when opened, its bytes when loaded."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        try:
            self._stamp = file_stamp(self.path)  # (before the header: a file saved again since is not read)
            self._arr = np.load(self.path, allow_pickle=False, mmap_mode="r")
        except Exception as e:  # noqa: BLE001 - a corrupt header raises TokenError, OverflowError, SyntaxError …
            if _holds_objects(self.path):
                raise SourceError(f"{self.path}: {_PICKLED}") from None
            raise SourceError(f"{self.path}: not a readable .npy file ({described(e, 120)})") from None

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[TensorRef]:
        a = self._arr  # (a map, for its header's offset, shape, dtype and order: not read through, see read_span)
        order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
        yield TensorRef(self.path.stem, a.shape, a.dtype.name, lambda: as_loaded(
            read_span(self.path, a.offset, a.nbytes, self._stamp).view(a.dtype).reshape(a.shape, order=order)
            if isinstance(a, np.memmap) else np.array(a)))  # (no map of an empty array)


#: the largest ww_config.json read
_MAX_WW_CONFIG = 64 << 20


class WeightWatcherFolder:
    """A folder written by WeightWatcher's ``extract_pytorch_bins`` (``weightwatcher.WeightWatcher.analyze`` of
    such a folder): ``ww_config.json`` and one ``.npy`` a weight and a bias. Each is named by the model's own key
    the config records (``10.weight``, ``10.bias``; the files are numbered by WeightWatcher's layer ids,
    ``seq.1.weight.npy``), else by its file. Read as a ``.npy``."""

    def __init__(self, folder: str | os.PathLike) -> None:
        import json

        self.path = Path(folder)
        self.description = f"{self.path} (WeightWatcher's extracted layers)"
        config = self.path / "ww_config.json"
        try:
            if config.stat().st_size > _MAX_WW_CONFIG:  # (a list of layers: kilobytes)
                raise SourceError(f"{config}: larger than {_MAX_WW_CONFIG >> 20} MB: not WeightWatcher's layer list")
            layers = json.loads(config.read_text(encoding="utf-8-sig")).get("layers")
        except (OSError, ValueError, RecursionError, AttributeError) as e:
            raise SourceError(f"{config}: not WeightWatcher's layer list ({e.__class__.__name__}); extract the "
                              "layers again, or give one .npy") from None
        if not isinstance(layers, dict):
            raise SourceError(f"{config}: no 'layers' in it; extract the layers again, or give one .npy")
        files: list[tuple[str, Path]] = []
        for entry in (e for e in layers.values() if isinstance(e, dict)):
            key = entry.get("key") if isinstance(entry.get("key"), str) and entry.get("key") else None
            bias = key[:-len("weight")] + "bias" if key and key.endswith("weight") else None
            for part, name in (("weightfile", key), ("biasfile", bias)):
                file = entry.get(part)
                # (a plain name in the folder: the config names no other file htsr reads)
                if (isinstance(file, str) and file.endswith(".npy") and Path(file).name == file
                        and (self.path / file).is_file()):
                    files.append((name or file[:-len(".npy")], self.path / file))
        if not files:
            # WeightWatcher extracts no .npy of a safetensors model: its config names the model's own file(s)
            named = (e.get("weightfile") for e in layers.values() if isinstance(e, dict))
            elsewhere = sorted({f for f in named if isinstance(f, str) and f and not f.endswith(".npy")})
            if elsewhere:
                raise SourceError(f"{config}: WeightWatcher extracted no layers here: they are read from "
                                  f"{listed(elsewhere, 2)}; give htsr that file (or its folder) instead")
            raise SourceError(f"{config}: lists no weight file present in {self.path}; extract the layers again")
        self.input_files = {f.resolve() for _, f in files}
        # (each opened now: a bad file is named in one line before the analysis)
        self._refs = [dataclasses.replace(next(iter(NpyFile(f))), name=name) for name, f in files]

    def __len__(self) -> int:
        return len(self._refs)

    def __iter__(self) -> Iterator[TensorRef]:
        yield from self._refs
