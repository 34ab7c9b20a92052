"""The one reader interface: a source is an iterable of :class:`TensorRef` — named tensors read lazily."""

from __future__ import annotations

import contextlib
import errno
import importlib
import importlib.util
import math
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import ModuleType
from typing import Any, BinaryIO, Protocol, runtime_checkable

import numpy as np

__all__ = ["FLOAT_DTYPES", "MAX_EXPANSION", "TensorRef", "TensorSource", "as_loaded", "einsum_axes", "expands_too_far", "grouped_axes",
           "unit_roundoff",
           "first_overlap", "import_extra", "LFS_POINTER", "lfs_pointer_error", "numpy_dtype", "one_line", "one_split", "raising_loader", "skipped_loader",
           "SPLIT_NAME", "check_stored_crc32", "read_json", "stored_member_offset"]

#: dtype names (numpy / ml_dtypes spelling) whose tensors are weights htsr analyses
FLOAT_DTYPES = frozenset(
    {"float16", "float32", "float64", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"}
)


@dataclass(frozen=True)
class TensorRef:
    """A named tensor whose data is read only when :meth:`load` is called."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    loader: Callable[[], np.ndarray] = field(repr=False)
    kind: str | None = None  # set by readers that know the module class (e.g. torch modules)
    #: once loaded, the rms size of the rounding its entries carry from their inputs' storage (a delta
    #: W − W_base holds the rounding of both: its eigenvalues below that noise's are not the update's);
    #: None when the entries are the stored values themselves
    resolution: Callable[[], float] | None = field(default=None, repr=False, compare=False)
    #: where the values are stored (storage, offset, shape, strides), for readers that know it: two tensors
    #: with the same key are one tensor under two names (tied weights), analysed once
    storage_key: tuple | None = field(default=None, repr=False, compare=False)
    #: for a weight dequantized from integer or block-quantized codes (its dtype says float32): the bits a
    #: weight takes in storage (GGUF Q4_K 4.5, GPTQ 4, int8 8 …); its rounding is then far above float32's
    bits: float | None = field(default=None, repr=False, compare=False)
    #: and how many consecutive entries of the loaded array share a scale (a block: GGUF's 32, a GPTQ group,
    #: a row's per-channel scale; 0 the whole tensor), so its rounding is measured from the values; None:
    #: not known (estimated from the bits alone)
    quant_block: int | None = field(default=None, repr=False, compare=False)
    #: for a stack [E, …] (a mixture's fused experts): its e-th item alone, for a reader that can read one
    #: without the rest (a quantized GGUF stack dequantized whole would take E experts' float32 at once)
    load_item: Callable[[int], np.ndarray] | None = field(default=None, repr=False, compare=False)
    #: the stored tensor this ref is one of several of (an ONNX bidirectional RNN's W holds both directions'
    #: rows): counted once, under that name; None when the ref is its tensor
    part_of: str | None = field(default=None, repr=False, compare=False)

    def load(self) -> np.ndarray:
        """The tensor as a numpy array (float32 for reduced-precision floats; integers as stored)."""
        return self.loader()


def unit_roundoff(dtype: str) -> float:
    """Half the machine epsilon of a float dtype name (float32 2⁻²⁴, bfloat16 2⁻⁸, float8_e4m3fn 2⁻⁴ …): the
    largest relative rounding error of a value stored in it; 0 for other dtypes."""
    import ml_dtypes

    try:
        return float(ml_dtypes.finfo(numpy_dtype(dtype)).eps) / 2
    except (TypeError, ValueError):
        return 0.0


def as_loaded(a: np.ndarray) -> np.ndarray:
    """What :meth:`TensorRef.load` returns for a stored array: float32 and float64 as they are, other floats
    (fp16, bf16, fp8) widened to float32, integers as stored (packed quantized words keep their bits), complex
    values as stored (a RoPE table: analyze lists it by its dtype; float32 would keep the real parts alone)."""
    if a.dtype in (np.float32, np.float64) or a.dtype.kind in "iubc":
        return a
    try:
        return a.astype(np.float32)
    except (ValueError, TypeError):  # strings, records, raw bytes: no weights (one htsr error, not numpy's)
        from ..errors import SourceError

        raise SourceError(f"an array of dtype {a.dtype}: no numbers to analyse") from None


#: a compressed member (zip) or dataset (HDF5) declaring more than this many times the bytes it stores is not
#: decompressed: weights compress a few times at most (deflate's own limit, ~1032x, is reached only by
#: constant data), so a larger ratio is constant data or a decompression bomb
MAX_EXPANSION = 1000


def expands_too_far(declared: int, stored: int) -> bool:
    """More than :data:`MAX_EXPANSION` times the bytes stored (a MiB of slack for tiny members)."""
    return declared > MAX_EXPANSION * max(stored, 1) + (1 << 20)


def stored_member_offset(f: BinaryIO, info: zipfile.ZipInfo) -> int | None:
    """Where the bytes of zip member ``info`` begin in its archive ``f`` (an open binary file), read from the
    member's local header (30 bytes, then its name and extra field), so an uncompressed member can be read
    in place; None where that header is not the member's (bad signature, another name: zipfile says what is
    wrong when it reads the member)."""
    f.seek(info.header_offset)
    head = f.read(30)
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        return None
    n, extra = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30], "little")
    name = f.read(n)
    try:  # (the name's encoding as zipfile reads it: UTF-8 if flagged, else cp437)
        same = name.decode("utf-8" if info.flag_bits & 0x800 else "cp437") == info.orig_filename
    except UnicodeDecodeError:
        same = False
    return info.header_offset + 30 + n + extra if same else None


#: the bytes of an uncompressed member hashed at a time for its CRC-32 check (64 MiB)
CRC_WINDOW = 1 << 26


def read_span(path: str | os.PathLike, offset: int, nbytes: int, stamp: tuple | None = None) -> np.ndarray:
    """The ``nbytes`` bytes at ``offset`` of ``path``, read into memory (a read-only uint8 array). Not mapped: a file
    cut short while a map of it is read (saved again in place, as a training loop's ``torch.save`` or ``save_file`` to
    one path does) stops the process with SIGBUS, which no Python code can catch (the run had ended "Bus error",
    no outputs); read, the bytes missing are a SourceError, and the tensor's row fails saying so. (As much memory
    as the map's pages once read, and as fast from the page cache.) ``stamp``: the file's :func:`file_stamp` when
    its header was read, a SourceError if it is another file now."""
    out = np.empty(nbytes, dtype=np.uint8)
    with reopened(path, stamp) as f:
        _read_into(f, path, offset, memoryview(out))
    out.flags.writeable = False  # (as a read-only map was: what reads a weight never writes into it)
    return out


def file_stamp(path: str | os.PathLike) -> tuple[int, int, int, int]:
    """What tells the file at ``path`` from another saved there later: its device, inode, size and modification
    time. A reader takes it when it reads the file's header, and gives it to :func:`read_span`."""
    return stamp_of(os.stat(path))


#: how :func:`file_changed` says a file's stamp no longer matches
SAVED_AGAIN = "saved again or replaced since htsr read its header"


def file_changed(path: Any, how: str, cls: type | None = None) -> Exception:
    """The error of a file that changed while htsr read it, ``how`` (of class ``cls``, a SourceError by default)."""
    from ..errors import SourceError

    return (cls or SourceError)(f"{path}: changed while being read: {how}; analyse it once its writer is done")


def check_unchanged(path: Any, stamp: tuple) -> None:
    """:func:`file_changed` if the file at ``path`` is gone or is not the one ``stamp`` describes."""
    try:
        now = file_stamp(path)
    except FileNotFoundError:
        raise file_changed(path, "it is gone (moved or deleted)") from None
    if now != tuple(stamp):
        raise file_changed(path, SAVED_AGAIN)


def stamp_of(st: os.stat_result) -> tuple[int, int, int, int]:
    """:func:`file_stamp` of a stat result (an open file's ``os.fstat``)."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@contextlib.contextmanager
def reopened(path: Any, stamp: tuple | None) -> Iterator[Any]:
    """``path`` opened for reading, and (with ``stamp``) checked to be the file its header was read from: one saved
    again in place or replaced by a rename since is read at the old header's offsets, bytes of neither file (rows
    had been 'ok' with numbers of no model)."""
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        raise file_changed(path, "it is gone (moved or deleted)") from None
    with f:
        if stamp is not None and stamp_of(os.fstat(f.fileno())) != tuple(stamp):
            raise file_changed(path, SAVED_AGAIN)
        yield f


def _read_into(f: Any, path: Any, offset: int, view: memoryview) -> None:
    """Fill ``view`` with the bytes at ``offset`` of the open file ``f`` (of ``path``); SourceError where the file
    ends before them (:func:`read_span`): cut while read, or, where it never held them, a header that places them
    past its end (a zip directory's size had been said to be a file 'changed while being read')."""
    size = os.fstat(f.fileno()).st_size
    f.seek(offset)
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            from ..errors import SourceError

            now = os.fstat(f.fileno()).st_size
            if now == size and offset + len(view) > size:
                raise SourceError(f"{path}: its header places this tensor's bytes {offset} to {offset + len(view)} "
                                  f"past the end of the {size}-byte file: truncated or corrupt; save or download it "
                                  "again")
            raise file_changed(path, f"it now ends at byte {now}, before byte {offset + len(view)} of this tensor "
                                     "(saved again while htsr read it?)")
        got += n


#: a part of an array read in more pieces than this is read with the whole array
_MAX_PIECES = 1 << 14


def read_array(path: str | os.PathLike, offset: int, dtype: np.dtype, shape: tuple[int, ...], idx: tuple = (),
               stamp: tuple | None = None) -> np.ndarray:
    """The C-order array of ``dtype`` and ``shape`` stored at ``offset`` of ``path`` (:func:`read_span`), or its
    ``[idx]``, of which only the bytes are read where ``idx`` is: whole axes (``slice(None)``), then integers, then at
    most one slice of step 1 (then whole axes): a stacked layer or an expert (``[e]``), a layer of a stack scanned
    along an inner axis (``[:, e]``: one piece per outer index), a range of a chunk (``[lo:hi]``). Any other index
    reads the whole array and indexes it. ``stamp``: as for :func:`read_span`."""
    dtype, shape = np.dtype(dtype), tuple(int(s) for s in shape)
    idx = idx if isinstance(idx, tuple) else (idx,)
    part = index_part(shape, idx)
    if part is None:
        a = read_span(path, offset, math.prod(shape) * dtype.itemsize, stamp).view(dtype).reshape(shape)
        return a[idx] if idx else a
    n_outer, first, last, kept = part
    pieces, size = math.prod(shape[:n_outer]), dtype.itemsize
    inner = math.prod(shape[n_outer:]) * size  # the bytes of one outer index
    run = (last - first) * size  # the part's bytes within one outer index
    out = np.empty(pieces * run, dtype=np.uint8)
    if out.size:
        view = memoryview(out)
        with reopened(path, stamp) as f:
            for k in range(pieces):
                _read_into(f, path, offset + k * inner + first * size, view[k * run:(k + 1) * run])
    out.flags.writeable = False
    return out.view(dtype).reshape(kept)


def index_part(shape: tuple[int, ...], idx: tuple) -> tuple[int, int, int, tuple[int, ...]] | None:
    """For an ``idx`` that :func:`read_array` reads in part: the number of whole outer axes, the part's first and
    end element within one outer index's elements (C order), and the part's shape; else None."""
    whole = slice(None)
    k = 0
    while k < len(idx) and k < len(shape) and isinstance(idx[k], slice) and idx[k] == whole:
        k += 1
    j, ints = k, []
    while j < len(idx) and j < len(shape) and isinstance(idx[j], (int, np.integer)) and not isinstance(idx[j], bool):
        if not 0 <= int(idx[j]) < shape[j]:
            return None  # (negative or out of range: indexed as numpy does, on the whole array)
        ints.append(int(idx[j]))
        j += 1
    cut = None
    if j < len(idx) and j < len(shape) and isinstance(idx[j], slice) and idx[j].step in (None, 1):
        lo, hi, _ = idx[j].indices(shape[j])
        cut = (lo, max(lo, hi))
    if len(idx) > len(shape) or any(not (isinstance(i, slice) and i == whole) for i in idx[j + (cut is not None):]):
        return None
    if cut is None:  # integers only: the last one is the cut axis, of one index, dropped from the shape
        if not ints:
            return None
        cut, ints, kept = (ints[-1], ints[-1] + 1), ints[:-1], ()
    else:
        kept = (cut[1] - cut[0],)
    if math.prod(shape[:k]) > _MAX_PIECES:
        return None
    axis = k + len(ints)  # the cut axis
    below = math.prod(shape[axis + 1:])  # the elements of one index of it
    first = ((int(np.ravel_multi_index(tuple(ints), shape[k:axis])) * shape[axis] if ints else 0) + cut[0]) * below
    return k, first, first + (cut[1] - cut[0]) * below, shape[:k] + kept + shape[axis + 1:]


def check_stored_crc32(path: str | os.PathLike, offset: int, info: zipfile.ZipInfo, stamp: tuple | None = None
                       ) -> None:
    """ValueError if the uncompressed member ``info``, whose bytes begin at ``offset`` of archive ``path``,
    does not match the CRC-32 the archive records for it: bytes changed in place (a bad copy, a disk error),
    which its size cannot show, and which a map of the member bypassing zipfile would read unchecked. A CRC-32
    recorded as 0 is none (torch.save with set_crc32_options(False)); :data:`CRC_WINDOW` bytes are read at
    a time, so a member far larger than what is read from it is never held in memory whole. ``stamp``: as for
    :func:`read_span`."""
    if not info.CRC:
        return
    running = 0
    for start in range(0, info.file_size, CRC_WINDOW):
        running = zlib.crc32(read_span(path, offset + start, min(CRC_WINDOW, info.file_size - start), stamp), running)
    if running != info.CRC:
        raise ValueError(f"{info.filename} does not match the CRC-32 the archive records for it")


#: a shard's name as Hugging Face and llama.cpp's gguf-split write it: <stem>-00001-of-00003.<ext>
SPLIT_NAME = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.(?P<ext>\w+)$")


def one_split(files: list[Path]) -> list[re.Match] | None:
    """The names of ``files`` matched by :data:`SPLIT_NAME` when they are all shards of one split (one stem,
    count and extension), else None."""
    parts = [SPLIT_NAME.match(f.name) for f in files]
    if not files or not all(parts) or len({(m["stem"], m["count"], m["ext"]) for m in parts}) != 1:
        return None
    return parts


def check_split_whole(folder: str | os.PathLike, parts: list[re.Match]) -> None:
    """SourceError when the shards ``parts`` (of :func:`one_split`, found without an index) leave one out: a
    model with a shard missing is no model to analyse."""
    from ..errors import SourceError

    count = int(parts[0]["count"])
    missing = sorted(set(range(1, count + 1)) - {int(m["no"]) for m in parts})
    if missing:
        m = parts[0]
        name = f"{m['stem']}-{missing[0]:05d}-of-{m['count']}.{m['ext']}"
        raise SourceError(f"{folder}: shard {missing[0]} of {count} of {m['stem']} {shard_absence(Path(folder) / name)}"
                          " (and no index lists them); download the model again")


def shard_absence(path: Path) -> str:
    """Why the shard at ``path``, not a regular file, cannot be read: 'is missing', or what is there instead (a
    folder, pipe or device of its name had been said to be missing)."""
    if os.path.islink(path) and not os.path.exists(path):
        return "is a link to a missing file (an interrupted download?)"
    if os.path.exists(path):
        kind = "a folder" if path.is_dir() else "a pipe, socket or device"
        return f"is {kind}, not a regular file"
    return "is missing"


def unreadable(path: Any, strerror: str | None) -> str:
    """The message of a file htsr may not read (a PermissionError)."""
    return f"{path}: cannot read it ({strerror}); give read access to it (and to the folders above it)"


def missing(path: Any) -> str:
    """The one-line message of a source ``path`` that does not exist: a link to a missing file (an interrupted
    download) or a loop of links (``stat`` fails with ELOOP, for ``path`` or a folder above it) said as such, where
    "no such file" would send the user looking for a name that is right there."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"{path}: a loop of symbolic links (too many levels of links); point the link at the model"
    if os.path.islink(path):
        return f"{path}: a link to {os.readlink(path)}, which does not exist; point it at the model"
    return f"{path}: no such file or folder"


def permission_denied(path: Path, e: PermissionError) -> str:
    """The one-line message of a source ``path`` that could not be read: a folder above it that may not be
    entered (no search permission: nothing in it can even be looked at; a folder that may be entered but not
    listed, a 0711 home, is no cause), the source itself when it is a folder that may not be listed or entered,
    else the file the error names."""
    # (os.path's tests, which say False where pathlib's raise PermissionError again: Python ≤ 3.13)
    if os.path.isdir(path) and not os.access(path, os.R_OK | os.X_OK):
        return unreadable(path, e.strerror)
    locked = next((p for p in (*path.parents, *path.absolute().parents)
                   if os.path.isdir(p) and not os.access(p, os.X_OK)), None)
    if locked is None:
        return unreadable(e.filename or path, e.strerror)
    return f"{path}: cannot read it ({e.strerror} on the folder {locked}); give read access to that folder"


#: the start of a Git LFS pointer: a clone without ``git lfs pull`` has these small text files for the weights
LFS_POINTER = b"version https://git-lfs"


def lfs_pointer_error(path: str | os.PathLike) -> Exception:
    """The SourceError for a Git LFS pointer where weights were expected."""
    from ..errors import SourceError

    return SourceError(f"{path}: a Git LFS pointer, not the weights (the repository was cloned without them); run "
                       "'git lfs pull' in it, or download the file")


def first_overlap(spans: list[tuple[int, int, str]]) -> tuple[str, str] | None:
    """The names of two byte ranges ``(begin, end, name)`` that overlap, or None: tensors of one file share
    no bytes (many names over the same data would make a small file cost one analysis per name)."""
    spans = sorted(s for s in spans if s[1] > s[0])
    for (_, end_a, a), (begin_b, _, b) in zip(spans, spans[1:]):
        if begin_b < end_a:
            return a, b
    return None


def is_gzip(head: bytes) -> bool:
    """True for the first bytes of a gzip stream (its magic number)."""
    return head.startswith(b"\x1f\x8b")


def einsum_axes(equation: str, operand: int, rank: int) -> tuple[list[int], list[int], list[int]] | None:
    """The axes of a weight that is operand ``operand`` (0 or 1) of a two-operand einsum, an input's and a
    weight's (Keras' EinsumDense, ONNX's Einsum): ``(inputs, outputs, batch)``. Its input axes are its letters
    the other operand has and the output has not (contracted; a letter of the weight's alone, summed, counts
    as one), its output axes those only the output has, its batch axes those all three have (a stack of
    matrices). None if the equation is not of that form or the weight's term is not of ``rank`` letters (an
    ellipsis dropped: it stands for the input's leading axes). An equation without ``->`` (implicit mode,
    ``'bi,io'``) has as output the letters that occur once, in alphabetical order, as numpy and ONNX read it."""
    try:
        lhs, arrow, out = str(equation).replace("...", "").replace(" ", "").partition("->")
        terms = lhs.split(",")
        if not arrow:
            out = "".join(sorted(c for c in set(lhs) if c != "," and lhs.count(c) == 1))
        mine, other = terms[operand], terms[1 - operand]
    except (ValueError, IndexError):
        return None
    if len(terms) != 2 or len(mine) != rank or len(set(mine)) != rank:
        return None
    ins, outs, batch = [], [], []
    for i, c in enumerate(mine):
        (batch if c in other and c in out else outs if c in out else ins).append(i)
    return ins, outs, batch


def grouped_axes(shape: tuple[int, ...], ins: list[int], outs: list[int], batch: list[int]
                 ) -> tuple[str, tuple[int, ...], tuple[int, ...]] | None:
    """A weight's axes grouped into a matrix ``[out, in]`` — or a stack ``[batch, out, in]`` —: (kind, shape,
    the transposition that orders the axes so, before the reshape); None unless the three lists part its axes
    with at least one input and one output axis (:func:`einsum_axes`'s, a DenseGeneral's)."""
    if sorted(ins + outs + batch) != list(range(len(shape))) or not ins or not outs:
        return None
    rows, cols = math.prod(shape[a] for a in outs), math.prod(shape[a] for a in ins)
    if batch:
        return "stack", (math.prod(shape[a] for a in batch), rows, cols), tuple(batch + outs + ins)
    return "dense", (rows, cols), tuple(outs + ins)


def model_folder(path: Any) -> Path | None:
    """The folder of a model a source was read from: ``path`` itself if a folder, a weight file's own folder (where
    its config.json lies); None for no path (an in-memory model)."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        return None
    path = Path(os.fspath(path))
    return path if path.is_dir() else path.parent


#: the largest JSON file beside a model htsr reads (a config, a shard index: kilobytes, a few megabytes at most)
MAX_JSON = 64 << 20


def read_json(path: Path) -> Any:
    """A JSON file beside a model (a config, a shard index), read only as a regular file of at most
    :data:`MAX_JSON` bytes: a FIFO of that name would block the read forever, a link to /dev/zero fill memory.
    OSError or ValueError (as reading and json raise them) otherwise."""
    import json

    if not path.is_file():  # (through links: a link to a regular file is one)
        raise OSError(errno.EINVAL if path.exists() else errno.ENOENT,
                      "not a regular file" if path.exists() else "no such file", str(path))
    if (size := path.stat().st_size) > MAX_JSON:
        raise ValueError(f"{size >> 20} MB: larger than a JSON file beside a model ({MAX_JSON >> 20} MB)")
    return json.loads(path.read_text(encoding="utf-8-sig"))


def raising_loader(error: Callable[[str], BaseException], message: str) -> Callable[[], np.ndarray]:
    """A loader that raises ``error(message)``: the row of its tensor says ``failed: <message>`` (an
    :class:`~htsr.errors.HtsrError`), or ``skipped: <message>`` (:func:`skipped_loader`). The message is also its
    ``reason`` attribute: a row that says why it cannot be read is shown whatever its shape, which may be unknown."""

    load = failing_loader(error, message)
    load.reason = message  # type: ignore[attr-defined]
    return load


def failing_loader(error: Callable[[str], BaseException], message: str) -> Callable[..., np.ndarray]:
    """A loader that raises ``error(message)``, of a tensor whose shape is known (a tensor past the end of a file
    cut off): its rows are made by its kind and shape as any other's, and each fails saying ``message`` (a 1-D
    norm weight is passed over as one). Takes an index as a Flax leaf's loader does."""

    def load(*_: Any) -> np.ndarray:
        raise error(message)

    return load


#: the most bytes a file cut off may be said to lack (1 PiB): a header describing more is corrupt, not cut off
MAX_DESCRIBED = 1 << 50


def cut_off(path: Any, short: int, begin: int, end: int, size: int) -> str:
    """Why a tensor of a file cut off ``short`` bytes before the end its header describes cannot be read: its bytes
    ``begin``–``end`` lie past, or run past, the ``size`` bytes there (in one frame: the file's, or its data
    section's). Its row's failed status; the tensors before the cut are read."""
    where = "lie past its end" if begin >= size else f"run past its end ({size - begin} of {end - begin} there)"
    return (f"{path}: cut off {short} byte{'s' * (short != 1)} short of the data its header describes (an "
            f"interrupted download or copy?): this tensor's bytes {where}; fetch the file again")


def skipped_loader(reason: str) -> Callable[[], np.ndarray]:
    """A loader that raises :class:`~htsr.errors.LayerSkipped`: the tensor's row says ``skipped: <reason>``
    (the reason is also its ``skip_reason`` attribute)."""
    from ..errors import LayerSkipped

    load = raising_loader(LayerSkipped, reason)
    load.skip_reason = reason  # type: ignore[attr-defined]
    return load


@runtime_checkable
class TensorSource(Protocol):
    """What every reader returns (``open_source`` passes one through as it is)."""

    description: str  # e.g. the path, shown in results and error messages

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[TensorRef]: ...


def import_extra(module: str, extra: str | None, purpose: str) -> ModuleType:
    """Import an optional dependency, or raise MissingExtraError with the pip line for its extra (``extra`` None:
    for the package itself, the module's top-level name) when it is not installed, and BrokenPackageError when it
    is but fails to import (an h5py built for numpy 1 under numpy 2)."""
    from ..errors import BrokenPackageError, MissingExtraError

    package = top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except Exception as e:  # (not only ImportError: a binary built for another numpy raises ValueError)
        try:
            installed = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            installed = False
        # (not found: the package itself, or the submodule asked for; an ImportError inside an installed package,
        # "cannot import name '_ext' from 'pkg'", is a broken one)
        if isinstance(e, ModuleNotFoundError) and (not installed or getattr(e, "name", None) in (top, module)):
            raise MissingExtraError(package, extra, purpose) from None
        raise BrokenPackageError(package, purpose, e) from None


def one_line(e: BaseException, limit: int | None = None) -> str:
    """An exception's message on one line (whitespace collapsed, at most ``limit`` characters)."""
    text = " ".join(str(e).split())
    return (text[:limit] if limit else text) or e.__class__.__name__


def numpy_dtype(name: str) -> np.dtype:
    """The little-endian numpy dtype of a dtype name; the types numpy lacks (bfloat16, float8/6/4, int4, int2 …,
    one value a byte) come from ml_dtypes. An unknown name raises TypeError (as ``numpy.dtype`` does)."""
    try:
        return np.dtype(name).newbyteorder("<")
    except TypeError:
        import ml_dtypes

        t = getattr(ml_dtypes, name, None) if isinstance(name, str) and not name.startswith("_") else None
        if isinstance(t, type) and issubclass(t, np.generic):
            return np.dtype(t)
        raise


def leaves_folder(name: str) -> bool:
    """Whether a file name a model's index lists could lead out of its folder, on any system: absolute, rooted
    (Windows' '\\x' and drive-relative 'C:x' are not absolute there, and were let through), or with a '..' part."""
    return any(p.drive or p.root or ".." in p.parts for p in (PurePosixPath(name), PureWindowsPath(name)))


def _shard_names(weight_map: dict[str, str]) -> list[str]:
    """A shard index's files in order of first mention: the order of :attr:`ShardIndex.shards`."""
    return list(dict.fromkeys(weight_map.values()))


@dataclass(frozen=True)
class ShardIndex:
    """A Hugging Face shard index (``model.safetensors.index.json``, ``pytorch_model.bin.index.json``): the
    shard files in order of first mention, and which shard holds each tensor."""

    shards: tuple[Path, ...]
    weight_map: dict[str, str]

    @classmethod
    def read(cls, index: Path) -> ShardIndex:
        """Raises SourceError for an index that is not a JSON ``{"weight_map": {tensor: file}}``, names a
        shard outside its folder (htsr reads only the model's folder), or a shard that is missing."""
        from ..errors import SourceError

        try:
            weight_map = read_json(index)["weight_map"]
        except PermissionError as e:
            raise SourceError(f"{index}: cannot read it ({e.strerror}); give read access to it") from None
        except (OSError, ValueError, RecursionError, KeyError, TypeError) as e:
            raise SourceError(f"{index}: not a valid shard index ({one_line(e, 100)}); re-save the model") from None
        if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                       for k, v in weight_map.items()):
            raise SourceError(f"{index}: weight_map must map tensor names to shard file names; re-save the model")
        if not weight_map:  # (the folder's shards would be read as none: 'no analysable layer: 0 tensors')
            raise SourceError(f"{index}: weight_map lists no tensor; re-save the model, or move the index aside to "
                              "read the folder's weight files")
        shards = []
        for name in _shard_names(weight_map):
            # the name, not where a symlink leads: a Hugging Face cache snapshot's shards link to ../../blobs
            if leaves_folder(name):
                raise SourceError(f"{index}: shard {name!r} is outside the model's folder; htsr reads shards "
                                  "from the index's own folder only")
            path = index.parent / name
            if not path.is_file():
                raise SourceError(f"{index}: shard {path} {shard_absence(path)}; download the model again")
            shards.append(path)
        return cls(tuple(shards), weight_map)

    @staticmethod
    def merged(per_shard: list[list[TensorRef]], index: ShardIndex | None) -> list[TensorRef]:
        """The shards' tensors as one list: each name once, as :meth:`one_copy` picks, with an index; all of
        them in shard order without one."""
        return index.one_copy(per_shard) if index is not None else [r for refs in per_shard for r in refs]

    def one_copy(self, per_shard: list[list[TensorRef]]) -> list[TensorRef]:
        """The tensors of the shards (``per_shard`` in the order of :attr:`shards`), each name once: a
        tensor stored in several shards is read from the one the index names for it if that one holds it,
        else from the first that does (a stale index never loses a tensor)."""
        holders: dict[str, list[int]] = {}
        for i, refs in enumerate(per_shard):
            for r in refs:
                holders.setdefault(r.name, []).append(i)
        position = {name: i for i, name in enumerate(_shard_names(self.weight_map))}  # the order of shards
        out = []
        for i, refs in enumerate(per_shard):
            for r in refs:
                where = holders[r.name]
                named = position.get(self.weight_map.get(r.name, ""))
                if i == (named if named in where else where[0]):
                    out.append(r)
        # a tensor the index lists that no shard holds: an incomplete checkpoint, a row that says so
        out += [TensorRef(name, (), "float32", skipped_loader(f"the index puts it in {file}, which does not hold "
                                                             "it (no shard does); the checkpoint is incomplete"))
                for name, file in self.weight_map.items() if name not in holders]
        return out
