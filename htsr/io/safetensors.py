"""Reader for ``.safetensors`` files and Hugging Face folders of sharded safetensors — no torch needed.

The file format: an 8-byte little-endian header length, a JSON header mapping each tensor name to its
dtype, shape and ``data_offsets`` (relative to the data section), then the raw little-endian data.
The header is validated in full before anything is read (every offending tensor is named), and each
tensor's bytes are read (:func:`~htsr.io.base.read_span`) only when it is loaded. FP8 and int8 weights stored with a
``weight_scale_inv`` / ``weight_scale`` tensor are dequantized on load (:mod:`htsr.io.scales`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import SourceError, described, listed
from .base import (
    LFS_POINTER,
    MAX_DESCRIBED,
    ShardIndex,
    TensorRef,
    as_loaded,
    check_split_whole,
    cut_off,
    file_stamp,
    first_overlap,
    lfs_pointer_error,
    numpy_dtype,
    one_split,
    failing_loader,
    read_array,
    skipped_loader,
    unreadable,
)
from .scales import PackedConfig, with_scales

__all__ = ["SafetensorsFile", "ShardedSafetensors", "is_safetensors", "natural_key", "weight_files"]

_MAX_HEADER = 100 * 1024 * 1024

# safetensors dtype → (numpy dtype spelling, item size); reduced floats are decoded with ml_dtypes
_DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1),
    "F8_E4M3FNUZ": ("float8_e4m3fnuz", 1), "F8_E5M2FNUZ": ("float8_e5m2fnuz", 1),  # (AMD's FP8 checkpoints)
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
    "U64": ("uint64", 8), "U32": ("uint32", 4), "U16": ("uint16", 2), "U8": ("uint8", 1),
    "BOOL": ("bool", 1), "C64": ("complex64", 8), "F8_E8M0": ("float8_e8m0fnu", 1),
}
# valid safetensors dtypes of fewer than 8 bits, which htsr does not decode: such a tensor named as a
# weight gets a skipped row (the rest of the file is read)
_SUB_BYTE: dict[str, int] = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object's pairs as a dict, refusing a key given twice."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return d


def natural_key(name: str) -> list:
    """Sort key that orders 'layer.2' before 'layer.10' (model order for numbered blocks)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def is_safetensors(head: bytes, size: int) -> bool:
    """True if the first bytes look like a safetensors file (plausible length, then a JSON object)."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= size - 8 and head[8:9] == b"{"


class SafetensorsFile:
    """The tensors of one ``.safetensors`` file, read lazily."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self._past: dict[str, str] = {}  # a cut-off file's tensors past its end → their failed rows' message
        try:
            self._stamp = file_stamp(self.path)  # (before the header: a file saved again since is not read)
            self._entries = self._read_header()
        except PermissionError as e:  # (in the words a file given alone gets)
            raise SourceError(unreadable(self.path, e.strerror)) from None
        except OSError as e:  # gone, a folder, unreadable (a shard named by an index)
            raise self._fail(f"cannot read ({e.strerror or e})") from None

    def _fail(self, what: str) -> SourceError:
        return SourceError(f"{self.path}: {what}")

    def _read_header(self) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise self._fail("too short to be a safetensors file (truncated?)")
            n = int.from_bytes(raw, "little")
            if n > size - 8 or n > _MAX_HEADER:
                if (raw + f.read(len(LFS_POINTER) - 8)).startswith(LFS_POINTER):  # (a shard an index names)
                    raise lfs_pointer_error(self.path)
                if raw.startswith((b"PK", b"\x80")):
                    raise self._fail("a PyTorch checkpoint (zip or pickle), not a safetensors file; give it by its own "
                                     "path, or convert it")
                if n <= size - 8:  # (within the file, over the cap safetensors' own reader sets too)
                    raise self._fail(f"header length {n} is over the {_MAX_HEADER}-byte limit of a safetensors "
                                     "header: not a safetensors file, or not one a safetensors writer made")
                raise self._fail(
                    f"header length {n} exceeds the file size {size}: truncated or not a safetensors file"
                )
            try:
                header = json.loads(f.read(n), object_pairs_hook=_unique_keys)
            except (ValueError, RecursionError) as e:  # (not JSON, not UTF-8, nested too deep, an integer of
                # thousands of digits: Python's limit on converting them)
                raise self._fail(f"corrupt safetensors header ({described(e)})") from None
            except _DuplicateKey as e:  # (json keeps the last: the first tensor would vanish unlisted)
                raise self._fail(f"corrupt safetensors header: tensor {e.args[0]!r} appears twice — not written by a "
                                 "safetensors writer") from None
        if not isinstance(header, dict):
            raise self._fail("corrupt safetensors header (not a JSON object)")
        self._data_start = 8 + n
        meta = header.get("__metadata__")  # free text, string to string (a LoRA's config, the format …)
        self.metadata = {k: v for k, v in meta.items() if isinstance(v, str)} if isinstance(meta, dict) else {}
        data_len = size - self._data_start
        entries, problems, past = {}, [], {}  # past: a tensor whose data lies past the end of a truncated file
        for name, info in header.items():
            if name == "__metadata__":
                continue
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate from a JSON escape (\udcff): no text names it
                problems.append(f"{name.encode('utf-8', 'backslashreplace').decode()} (a name that is not valid "
                                "UTF-8 text)")
                continue
            try:
                if info["dtype"] in _SUB_BYTE:
                    dtype, bits = f"safetensors {info['dtype']}", _SUB_BYTE[info["dtype"]]
                else:
                    dtype, itemsize = _DTYPES[info["dtype"]]
                    bits = 8 * itemsize
                shape = tuple(info["shape"])
                begin, end = info["data_offsets"]
                if not all(type(s) is int and s >= 0 for s in shape):  # not bool, a subclass of int
                    raise ValueError(f"bad shape {shape}")
                if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
                    raise ValueError(f"data_offsets {[begin, end]} outside the {data_len}-byte data section")
                if end - begin != -(-math.prod(shape) * bits // 8):  # Python ints: no overflow
                    raise ValueError(f"{end - begin} bytes for shape {list(shape)} of {info['dtype']}")
                if end > data_len:
                    past[name] = f"data_offsets {[begin, end]} outside the {data_len}-byte data section"
            except KeyError as e:
                problems.append(f"{name} (unknown dtype or missing field {e})")
                continue
            except (TypeError, ValueError) as e:
                problems.append(f"{name} ({e})")
                continue
            entries[name] = (dtype, shape, begin, end)
        def corrupt(tensors: list[str]) -> SourceError:
            return self._fail("corrupt safetensors header: tensor " + listed(tensors, 3, "; ")
                              + " — the file is truncated or was not written by a safetensors writer")

        if problems:
            raise corrupt(problems)
        # past the end: of a copy cut off (an interrupted download), whose header is sound: each such tensor gets a
        # failed row, the others are read; else (nothing before the cut, or the header unsound) the offsets lie
        past_error = corrupt([f"{k} ({v})" for k, v in past.items()]) if past else None
        if past and (len(past) == len(entries) or max(e for _, _, _, e in entries.values()) > MAX_DESCRIBED):
            raise past_error  # (nothing before the cut to read, or more data described than any file holds)
        overlap = first_overlap([(b, e, name) for name, (_, _, b, e) in entries.items()])  # as safetensors requires
        if overlap:
            raise past_error or self._fail(f"corrupt safetensors header: tensors {overlap[0]!r} and {overlap[1]!r} "
                                           "overlap in the data section — not written by a safetensors writer")
        # the tensors cover the data section end to end, as safetensors' own reader requires: bytes no entry names
        # are a tensor whose entry the header lost (or data appended, or the offsets shifted)
        pos = 0
        for begin, end, name in sorted((b, e, name) for name, (_, _, b, e) in entries.items()):
            if begin > pos:
                raise past_error or self._fail(
                    f"corrupt safetensors header: bytes {pos} to {begin} of the data section, before tensor {name!r}, "
                    "belong to no tensor — a tensor's entry is missing; re-save the file")
            pos = max(pos, end)
        self._past = {name: cut_off(self.path, pos - data_len, *entries[name][2:], data_len) for name in past}
        if past:  # (said of the source too: a 1-D tensor past the cut is passed over, no failed row)
            self.description += (f" (cut off {pos - data_len} bytes short: {len(past)} tensor(s) past the cut; "
                                 "fetch it again)")
        if pos < data_len:
            raise self._fail(f"corrupt safetensors header: {data_len - pos} bytes follow the last tensor's data and "
                             "belong to no tensor — a tensor's entry is missing, or the file was appended to; "
                             "re-save the file")
        return entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def ndim(self, name: str) -> int:
        """Tensor ``name``'s number of dimensions."""
        return len(self._entries[name][1])

    def leaf(self, path: tuple[str, ...], name: str):
        """Tensor ``name`` as a Flax tree's leaf: ``(shape, dtype name, array function of an index)``, read when
        loaded (a stacked, scanned, tensor one layer at a time from its map)."""
        dtype, shape, _, _ = self._entries[name]
        return shape, dtype, self._loader(name)

    def _loader(self, name: str):
        dtype, shape, begin, end = self._entries[name]
        if name in self._past:
            return failing_loader(SourceError, self._past[name])  # (its row by its shape, failing)
        if dtype.startswith("safetensors "):
            return skipped_loader(f"stored as {dtype}, a dtype htsr does not decode")

        def load(idx: tuple = ()) -> np.ndarray:
            if end == begin:
                return as_loaded(np.zeros(shape, dtype=numpy_dtype(dtype))[idx])  # (the dtype a stored one has)
            return as_loaded(read_array(self.path, self._data_start + begin, numpy_dtype(dtype), shape, idx,
                                        self._stamp))

        return load

    def refs(self) -> list[TensorRef]:
        """The file's tensors as stored (quantized weights and their scales apart)."""
        return [TensorRef(name, self._entries[name][1], self._entries[name][0], self._loader(name))
                for name in sorted(self._entries, key=natural_key)]

    def __iter__(self) -> Iterator[TensorRef]:
        yield from with_scales(self.refs(), PackedConfig.of_folder(self.path.parent))


def weight_files(folder: Path, pattern: str) -> list[Path]:
    """The regular files in ``folder`` matching ``pattern`` (a folder or a pipe of that name is no weight
    file: a pipe would block the read forever). A link to a missing file is refused: a folder with one
    shard's link dangling (an interrupted Hugging Face download) would be read as the rest of the model."""
    out = []
    for p in folder.glob(pattern):
        if p.name.startswith("."):  # a hidden file: macOS's AppleDouble ._model.safetensors, a download's temp
            continue
        if p.is_file():  # (a regular file, through links)
            out.append(p)
        elif p.is_symlink() and not p.exists():
            raise SourceError(f"{p}: a link to a missing file (an interrupted download?); download the model "
                              "again, or remove the link")
    return out


def _is_lora_file(f: SafetensorsFile) -> bool:
    from .peft import single_file_lora

    return single_file_lora(f.path, f) is not None


#: diffusers' variants of a weights file: x.fp16.safetensors, x.non_ema.safetensors … beside x.safetensors
_VARIANT = re.compile(r"\.(fp16|fp32|bf16|fp8\w*|ema|non_ema)$")


def variant_stem(name: str) -> str:
    """The file a variant is of: 'x.fp16.safetensors' → 'x', 'x.fp16.bin' → 'x' ('sd_xl_base_1.0.safetensors'
    keeps its dot)."""
    return _VARIANT.sub("", name.removesuffix(Path(name).suffix))


def safetensors_index(folder: Path) -> Path | None:
    """A folder's shard index: ``model.safetensors.index.json``, else the one other ``*.safetensors.index.json``
    not of a variant (diffusers' ``diffusion_pytorch_model.safetensors.index.json`` beside its ``.fp16`` one)."""
    if (folder / "model.safetensors.index.json").is_file():
        return folder / "model.safetensors.index.json"
    found = [p for p in folder.glob("*.safetensors.index.json") if p.is_file() and not p.name.startswith(".")
             and not _VARIANT.search(p.name.removesuffix(".safetensors.index.json"))]
    return found[0] if len(found) == 1 else None


class ShardedSafetensors:
    """A Hugging Face model folder: ``model.safetensors.index.json`` (diffusers':
    ``diffusion_pytorch_model.safetensors.index.json``) and its shards, or loose files."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.description = str(self.folder)
        index = safetensors_index(self.folder)
        self._index = None
        if index is not None:
            self._index = ShardIndex.read(index)
            self._files = [SafetensorsFile(p) for p in self._index.shards]
        else:
            paths = sorted(weight_files(self.folder, "*.safetensors"), key=lambda p: natural_key(p.name))
            # Mistral's own copy of the weights (its tensor names) beside the Hugging Face files
            mistral = [p for p in paths if p.name.startswith("consolidated")]
            left = [p.name for p in mistral] if len(mistral) < len(paths) else []
            # a PEFT adapter's weights beside the model's, without the adapter_config.json that makes the folder
            # an adapter: its lora_A / lora_B factors are no layers of the model
            adapters = [p.name for p in paths if p.name.startswith("adapter_model") and p.name not in left]
            adapters = adapters if len(adapters) < len(paths) - len(left) else []
            files = [SafetensorsFile(p) for p in paths if p.name not in left + adapters]
            # a single-file LoRA beside a model's weights (a Hub snapshot's offset LoRA): an update, no part of it
            loras = [f for f in files if _is_lora_file(f)] if len(files) > 1 else []
            loras = loras if len(loras) < len(files) else []
            self._files = self._one_copy([f for f in files if f not in loras], left)
            parts = one_split([f.path for f in self._files])  # model-00001-of-00003 … without their index
            if parts is not None:
                check_split_whole(self.folder, parts)
            if adapters:
                self.description += (f" ({', '.join(adapters)} left out: a LoRA adapter, which htsr reads with "
                                     "the adapter_config.json it lacks here)")
            if loras:
                self.description += (f" ({', '.join(f.path.name for f in loras)} left out: a LoRA, an update of the "
                                     "model: analyse it on its own, with --base for W and W + ΔW)")
        if cut := [f.path.name for f in self._files if f._past]:  # (a shard's own note: the folder's source)
            self.description += f" ({', '.join(cut)} cut off: tensors past the cut; fetch them again)"

    def _one_copy(self, files: list[SafetensorsFile], left: list[str]) -> list[SafetensorsFile]:
        """Loose files are one model's parts unless they repeat tensor names. Variants of one file
        (diffusers' ``x.safetensors`` beside ``x.fp16.safetensors``, ``x.non_ema.safetensors`` …) are one
        model stored twice: the plain file (else the first variant) is kept, and the description says
        which were left out (with the files in ``left``, left out already: a ``consolidated.safetensors``
        beside Hugging Face files is the same model under Mistral's names). Other files that share names
        are refused: which is the model is unknowable."""
        left = list(left)
        while True:
            owner: dict[str, SafetensorsFile] = {}
            clash = next(((owner[n], f, n) for f in files for n in f.names if owner.setdefault(n, f) is not f),
                         None)
            if clash is None:
                break
            a, b, name = clash
            stem = variant_stem(a.path.name)
            if variant_stem(b.path.name) != stem:
                raise SourceError(f"{self.folder}: {a.path.name} and {b.path.name} both hold tensor {name!r}; "
                                  "analyse one file, or add a model.safetensors.index.json")
            group = [f for f in files if variant_stem(f.path.name) == stem]
            keep = next((f for f in group if f.path.name == f"{stem}.safetensors"), group[0])
            left += [f.path.name for f in group if f is not keep]
            files = [f for f in files if f not in group or f is keep]
        if left:
            self.description = (f"{self.folder} ({', '.join(f.path.name for f in files)}; the copies "
                                f"{', '.join(left)} left out)")
        return files

    @property
    def files(self) -> list[SafetensorsFile]:
        """The files read: the index's shards, or the loose files (copies left out)."""
        return list(self._files)

    @property
    def indexed(self) -> bool:
        return self._index is not None

    def __len__(self) -> int:  # tensors, each name once (a copy in a second shard is not read)
        return len(self._owners)

    @functools.cached_property
    def _owners(self) -> dict[str, SafetensorsFile]:
        """Each tensor's name → the file it is read from: the copy :meth:`ShardIndex.merged` picks, as iterating
        the folder reads it (the shard the index names, if it holds the tensor; the row it makes of a tensor no
        shard holds has none)."""
        per_shard = [f.refs() for f in self._files]
        file_of = {id(r): f for f, refs in zip(self._files, per_shard) for r in refs}
        return {r.name: file_of[id(r)] for r in ShardIndex.merged(per_shard, self._index) if id(r) in file_of}

    @property
    def names(self) -> list[str]:
        return list(self._owners)

    def ndim(self, name: str) -> int:
        return self._owners[name].ndim(name)

    def leaf(self, path: tuple[str, ...], name: str):
        """Tensor ``name`` as a Flax tree's leaf (:meth:`SafetensorsFile.leaf`), from the file it is read from."""
        return self._owners[name].leaf(path, name)

    def __iter__(self) -> Iterator[TensorRef]:
        # a scale may sit in another shard than its weight; a tensor stored in two shards is read once, from
        # the one the index names
        per_shard = [f.refs() for f in self._files]
        refs = ShardIndex.merged(per_shard, self._index)
        yield from sorted(with_scales(refs, PackedConfig.of_folder(self.folder)), key=lambda r: natural_key(r.name))
