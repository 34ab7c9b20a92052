"""PyTorch sources: ``nn.Module`` objects, state dicts in memory, and ``.pt`` / ``.pth`` / ``.bin`` files.

Files of ``torch.save`` (the zip format of PyTorch ≥ 1.6 and the legacy pickle format before it) are
read without torch by :mod:`htsr.io.torchzip` (classes it does not import are inert stand-ins, whole
pickled modules read as their state dicts); checkpoints holding torch functions that reader does not know
are loaded with ``torch.load(weights_only=True)`` — either way nothing in the file is executed, and a
pickle that names code to run (``os.system`` …) is refused. Checkpoints that wrap the state dict under a
key such as ``state_dict``, ``model`` or ``model_state`` are unwrapped; optimizer and scheduler state is
left out.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import re
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HtsrError, LayerSkipped, MissingExtraError, SourceError, described, listed
from ..tensors import infer_kind, is_adapter_part, is_bias_or_buffer, is_vector
from .base import TensorRef, TensorSource, import_extra, model_folder, one_line, raising_loader, skipped_loader
from .numpy import MAX_FLAT_DEPTH, flat_items
from .scales import with_scales

__all__ = ["TorchModule", "TorchStateDict", "held_kind", "is_exported_program", "is_torch_object",
           "live_modules_as_state_dicts", "load_torch_file", "module_kind", "unwrap_state", "with_notes"]

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module", "net", "network",
                "ema", "params")


def _torch():
    return import_extra("torch", "torch", "reading PyTorch models and checkpoints")


def is_torch_object(obj: Any) -> bool:
    """True for torch modules and tensors, checked without importing torch."""
    return any(c.__module__.split(".")[0] == "torch" for c in type(obj).__mro__)


#: torch's training wrappers → the attribute holding the module they wrap
_WRAPPERS = {"DataParallel": "module", "DistributedDataParallel": "module", "OptimizedModule": "_orig_mod"}


def unwrapped(model: Any) -> Any:
    """The module a training wrapper (``DataParallel``, ``DistributedDataParallel``, ``torch.compile``'s
    ``OptimizedModule``) wraps, at any depth: analysed and monitored under its layers' own names (not
    ``module.0``, ``_orig_mod.0``); anything else as it is."""
    while type(model).__module__.startswith("torch.") and type(model).__name__ in _WRAPPERS:
        model = getattr(model, _WRAPPERS[type(model).__name__])
    return model


def _named_modules(root: Any) -> Iterator[tuple[str, Any]]:
    """``root.named_modules(remove_duplicate=False)`` with the attribute of each training wrapper on a path left out:
    a block compiled or wrapped on its own (``model.blocks[3] = torch.compile(block)``) keeps its layers' own names,
    as a wrapped model does (:func:`unwrapped`), not ``blocks.3._orig_mod.attn``. One pass: a parent comes before
    its children."""
    clean, held = {"": ""}, {"": root}
    for raw, mod in root.named_modules(remove_duplicate=False):
        if raw:
            parent, _, part = raw.rpartition(".")
            kind, above = type(held[parent]), clean[parent]
            wrapper = kind.__module__.startswith("torch.") and _WRAPPERS.get(kind.__name__) == part
            clean[raw], held[raw] = above if wrapper else f"{above}.{part}" if above else part, mod
        yield clean[raw], mod


def live_modules_as_state_dicts(obj: Any, classes: dict[int, str], keras: dict[str, Any],
                                done: dict[int, Any] | None = None, path: tuple[str, ...] = ()) -> Any:
    """``obj`` with each live ``nn.Module`` (or ``ExportedProgram``) in its mappings and lists (a GAN's
    ``{'generator': G, 'critic': D}``, a checkpoint dict not yet saved) replaced by its state dict, as the file
    ``torch.save`` writes of it reads: the same rows under the same names, each weight typed by the class of its
    module (``classes`` gets id(tensor) → that class, for :class:`TorchStateDict`). Each live Keras model in it is
    taken out into ``keras``, by its dotted key path, to be read as it is alone (a torch-backend one is an
    ``nn.Module`` whose state dict holds its kernels in Keras' layout, under names of its internals); a list it
    leaves becomes a mapping by index, so the other items keep their names. The same object when it holds no
    module; each container converted once (``done``: id → result)."""
    from .keras import is_keras_object

    if is_keras_object(obj):
        keras[".".join(path)] = obj
        return _TAKEN
    if is_exported_program(obj):  # (its classes from its graph, as read alone)
        return _typed_state_dict(obj.module(), classes, exported_classes(obj))
    if is_torch_object(obj) and hasattr(obj, "named_modules"):
        return _typed_state_dict(unwrapped(obj), classes)
    if not isinstance(obj, (Mapping, list, tuple)) or len(path) > MAX_FLAT_DEPTH:  # (too deep: flat_items says so)
        return obj
    done = {} if done is None else done
    if id(obj) not in done:
        done[id(obj)] = obj  # (a container holding itself is left as it is there)
        items = list(obj.items()) if isinstance(obj, Mapping) else list(enumerate(obj))
        new = [(k, live_modules_as_state_dicts(v, classes, keras, done, (*path, str(k)))) for k, v in items]
        kept = [(k, n) for k, n in new if n is not _TAKEN]
        if len(kept) < len(new) and not isinstance(obj, Mapping):
            done[id(obj)] = {str(k): n for k, n in kept}
        elif any(n is not v for (_, n), (_, v) in zip(new, items)):  # (a tuple as a list: read alike)
            done[id(obj)] = dict(kept) if isinstance(obj, Mapping) else [n for _, n in kept]
    return done[id(obj)]


#: what :func:`live_modules_as_state_dicts` leaves where it took a Keras model out
_TAKEN = object()


def _kind_class(module: Any) -> str:
    """The class name a live module's weights are typed by: its own or a base class's among ``_MODULE_KINDS`` (a
    user's ``class MyConv1d(nn.Conv1d)``); a live TorchScript module's (scripted or traced) its Python class's,
    which it keeps as ``original_name``, as its saved file does; '' for none."""
    found = next((c.__name__ for c in type(module).__mro__ if c.__name__ in _MODULE_KINDS), "")
    original = getattr(module, "original_name", None) if "ScriptModule" in type(module).__name__ or \
        "TracedModule" in type(module).__name__ else None
    return found or (original if isinstance(original, str) and original in _MODULE_KINDS else "")


def _typed_state_dict(module: Any, classes: dict[int, str], known: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``module.state_dict()``, with id(tensor) → the class of the module holding it in ``classes`` for each of its
    modules' own parameters and buffers (a quantized layer's packed entries, which it names itself, get none);
    ``known``: name → class where the module's own is lost (an ExportedProgram's, :func:`exported_classes`)."""
    owners, known = {}, known or {}
    for mod_name, mod in module.named_modules(remove_duplicate=False):
        prefix, cls = f"{mod_name}." if mod_name else "", _kind_class(mod)
        for n, _ in [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]:
            if owner := cls or known.get(prefix + n):
                owners[prefix + n] = owner
    state = module.state_dict()
    classes.update((id(v), owners[k]) for k, v in state.items() if k in owners)
    return state


def _to_numpy(t) -> np.ndarray:
    """The tensor as numpy: float16 widened by numpy, which keeps every bit pattern (torch's widening quiets
    signalling NaNs, and codes stored in a float16 tensor — bitsandbytes' quant_storage, HQQ's
    view_as_float — must come back bit for bit); bfloat16 and fp8 widened by torch (bfloat16's is exact);
    integers as stored."""
    torch = _torch()
    if type(t).__name__ == "DTensor":  # FSDP2's, tensor parallel's: a shard per rank
        if t.device_mesh.size() > 1 and not all(p.is_replicate() for p in t.placements):
            raise LayerSkipped(f"a DTensor sharded over {t.device_mesh.size()} ranks (FSDP2, tensor parallel): "
                               "gather it first, get_model_state_dict(model, options=StateDictOptions("
                               "full_state_dict=True)) on every rank, and analyse that")
        t = t.to_local()  # (one rank, or replicated: the whole tensor)
    t = t.detach().cpu()
    if t.is_quantized:  # torch.ao's qint8 / quint8 with their scales and zero points (per tensor or channel)
        t = t.dequantize()
    if t.layout != torch.strided:  # sparse COO / CSR / CSC / BSR: the matrix the layer multiplies by
        t = t.to_dense()
    if t.dtype == torch.float16:
        return t.numpy().astype(np.float32)
    if t.dtype.is_floating_point and t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)  # bf16, fp8 (numpy has no such dtypes)
    return t.numpy()


def _storage_key(t) -> tuple | None:
    """Where a torch tensor's values live (None for one without storage of its own: quantized, empty, or a tensor
    subclass that has none to show: DTensor, torchao's, NF4); a meta tensor, which has no storage, by itself (a
    model built on the meta device ties its LM head to its embedding as the same Parameter)."""
    try:
        if t.is_meta and t.numel():
            return ("meta", id(t), tuple(t.shape))
        if t.is_quantized or t.is_meta or t.numel() == 0 or t.layout != _torch().strided:
            return None
        ptr = t.untyped_storage().data_ptr()
        return (ptr, t.storage_offset(), tuple(t.shape), tuple(t.stride()), str(t.dtype)) if ptr else None
    except Exception:  # noqa: BLE001 - a subclass's own storage() may raise anything: then no tie is known
        return None


def _dtype_name(t) -> str:
    if t.is_quantized:
        return "float32"  # what load() gives: the dequantized weights (as for GGUF's block-quantized types)
    return str(t.dtype).replace("torch.", "")  # (torch.half is torch.float16: its str says so)


#: where torch.ao's quantized Linear (static and dynamic) keeps its (weight, bias) in its state dict, and its
#: quantized Embedding / EmbeddingBag its weight
_PACKED = "_packed_params._packed_params"
_PACKED_TABLE = "_packed_params._packed_weight"


def _unpacked(items: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """State dict items with torch.ao's ``<prefix>_packed_params._packed_params = (weight, bias)`` given as
    ``<prefix>weight`` and ``<prefix>bias``, and its ``<prefix>_packed_params._packed_weight`` as
    ``<prefix>weight``, as a float Linear and Embedding name them."""
    for name, v in items:
        if name.endswith(_PACKED) and isinstance(v, (tuple, list)):
            yield from zip((f"{name[:-len(_PACKED)]}weight", f"{name[:-len(_PACKED)]}bias"), v)
        elif name.endswith(_PACKED_TABLE):
            yield f"{name[:-len(_PACKED_TABLE)]}weight", v
        else:
            yield name, v


class TorchStateDict:
    """A mapping of names to torch tensors (nested dicts are flattened with dots)."""

    def __init__(self, state: Mapping[str, Any], description: str = "<state dict>",
                 classes: Mapping[int, str] | None = None) -> None:
        """``classes``: id(tensor) → the class of the live module that held it (:func:`live_modules_as_state_dicts`),
        whose kind its weight gets, as a whole pickled module's file gives it."""
        self.description = description
        torch = _torch()
        # (lists of tensors named by index, as a pickle's; torch.ao's packed (weight, bias) kept whole)
        try:
            items = list(_unpacked(flat_items(state, lists=True, leaf=lambda name: name.endswith(_PACKED))))
        except SourceError as e:  # (a structure of no model: too deep, or one held under millions of names)
            raise SourceError(f"{description}: {e}") from None
        # (numpy arrays beside the tensors, as an in-memory dict may mix them: tensors too, not dropped)
        # (a nested tensor, whose rows have lengths of their own, has no matrix: its symbolic sizes had ended the run)
        self._tensors = {name: v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))
                         for name, v in items if (isinstance(v, torch.Tensor) and not v.is_nested) or (
                             isinstance(v, np.ndarray) and v.dtype.kind in "biuf")}
        self._classes = {name: classes[id(v)] for name, v in items if id(v) in classes} if classes else {}
        # torch.ao's packed weights other than a Linear's (a dynamic-quantized LSTM's CellParamsBase): named
        self.not_weights = [(name, "torch.ao packed parameters (a dynamic-quantized LSTM / GRU): analyse the live "
                                   "module, which unpacks them, or the float model")
                            for name, v in items if isinstance(v, torch.ScriptObject)]
        self.not_weights += [(name, "a nested tensor (torch.nested: rows of their own lengths): no weight matrix")
                             for name, v in items if isinstance(v, torch.Tensor) and v.is_nested]

    def __len__(self) -> int:
        return len(self._tensors)

    def __iter__(self) -> Iterator[TensorRef]:
        yield from with_scales(self.refs())

    def refs(self) -> Iterator[TensorRef]:
        """The tensors as stored (quantized weights and their scales or parts apart)."""
        for name, t in self._tensors.items():
            load = _meta_loader(t.ndim >= 2) if t.is_meta else (lambda t=t: _to_numpy(t))
            yield TensorRef(name, tuple(t.shape), _dtype_name(t), load,
                            held_kind(self._classes.get(name, ""), name, tuple(t.shape)), storage_key=_storage_key(t))


# torch.nn class names (a module's own class or a base class) → the kind of their weight matrices
_MODULE_KINDS = {
    "Embedding": "embedding", "EmbeddingBag": "embedding",
    "Conv1d": "conv1d", "ConvTranspose1d": "conv1d", "Conv2d": "conv2d", "ConvTranspose2d": "conv2d",
    "Conv3d": "conv3d", "ConvTranspose3d": "conv3d",
    "RNNBase": "rnn", "RNN": "rnn", "LSTM": "rnn", "GRU": "rnn",
    "RNNCellBase": "rnn", "RNNCell": "rnn", "LSTMCell": "rnn", "GRUCell": "rnn",
    "Linear": "dense", "Conv1D": "dense",  # Hugging Face's GPT-2 Conv1D stores [in, out]: same spectrum
    "Bilinear": "stack",  # [out, in1, in2]: one bilinear form x1ᵀ·W_k·x2 per output k, an in1 × in2 matrix each
}


def module_kind(class_name: str, pname: str, full: str, shape: tuple[int, ...]) -> str | None:
    """Kind of parameter ``pname`` (full name ``full``) of a module of class ``class_name`` (a key of
    ``_MODULE_KINDS``, or any other name to infer the kind from the tensor's name and shape)."""
    kind = _MODULE_KINDS.get(class_name)
    # the class types its weights and their parts (weight_v, weight_orig: a weight norm's, a pruning's); a
    # vector beside them (a subclass's gain [C, 1, 1, 1]) is typed as from a file, by its name and shape, and so
    # is a PEFT adapter's part (peft's lora_A.<adapter> is a Linear: a factor, listed as one)
    if (kind is None or (kind == "rnn" and not pname.startswith("weight_")) or is_bias_or_buffer(full)
            or is_vector(shape) or is_adapter_part(full)):
        return infer_kind(full, shape)  # (None for a bias, a batch-norm buffer or a weight norm's g)
    return kind


def held_kind(class_name: str, name: str, shape: tuple[int, ...]) -> str | None:
    """:func:`module_kind` of a stored tensor ``name`` (its last part the parameter's) that a module of class
    ``class_name`` held, as a state dict's reader knows it; None without a class or below two axes (its name and
    shape decide later)."""
    return module_kind(class_name, name.rsplit(".", 1)[-1], name, shape) if class_name and len(shape) >= 2 else None


def owner_classes(fqn: Mapping[str, str], nodes: Iterable[tuple[Mapping[str, str], Iterable[str]]]) -> dict[str, str]:
    """Parameter and buffer names → the class name of the module that uses them, from a torch.export program's
    graph: ``fqn`` maps each placeholder to its parameter's name (the signature's input specs), and each node gives
    (its ``nn_module_stack`` as module path → class name, its inputs' names). The module whose path is the
    parameter's is its owner (a parameter used elsewhere, outside its module's forward, gets none). For a live
    program (:func:`exported_classes`) and a saved .pt2 (htsr.io.torchzip) alike."""
    out: dict[str, str] = {}
    for stack, args in nodes:
        for arg in args:
            name = fqn.get(arg)
            if name is not None and name.rpartition(".")[0] in stack:
                out.setdefault(name, stack[name.rpartition(".")[0]].rsplit(".", 1)[-1])
    return out


def is_exported_program(obj: Any) -> bool:
    """True for a live ``torch.export`` ExportedProgram (its weights are those of the module it unlifts to)."""
    return type(obj).__name__ == "ExportedProgram" and type(obj).__module__.startswith("torch.")


def exported_classes(program: Any) -> dict[str, str]:
    """:func:`owner_classes` of a live torch.export ExportedProgram (whose ``module()`` has plain Modules)."""
    fqn = {spec.arg.name: spec.target for spec in program.graph_signature.input_specs
           if spec.target is not None and hasattr(spec.arg, "name")}
    return owner_classes(fqn, _graph_stacks(program.graph))


def graph_classes(module: Any) -> dict[str, str]:
    """:func:`owner_classes` of a live fx GraphModule whose submodules are plain Modules (an ExportedProgram's
    ``module()``, given as it is): its ``get_attr`` nodes name the parameters; {} for any other module."""
    if not any(c.__name__ == "GraphModule" and c.__module__.startswith("torch.fx") for c in type(module).__mro__):
        return {}
    graph = module.graph
    fqn = {node.name: node.target for node in graph.nodes if node.op == "get_attr" and isinstance(node.target, str)}
    return owner_classes(fqn, _graph_stacks(graph)) if fqn else {}


def _graph_stacks(graph: Any) -> Iterator[tuple[dict[str, str], list[str]]]:
    """Each node's (``nn_module_stack`` as module path → class name, its inputs' names); a stack's class is a type
    or its qualified name."""
    for node in graph.nodes:
        yield ({path: cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))
                for path, cls in (node.meta.get("nn_module_stack") or {}).values()},
               [arg.name for arg in node.all_input_nodes])


class TorchModule:
    """An ``nn.Module``: each weight's kind comes from its module's class; its parameters and persistent
    float buffers, the rows its saved state dict gives. A quantized module (its own weights are integer
    codes, or bitsandbytes 4-bit parameters: bitsandbytes, HQQ, AQLM layers; torch.ao's quantized Linear and
    Conv, whose weights are packed) is read from its state dict, which holds the codes with their scales
    and quantization state, and dequantized as in a checkpoint (:mod:`htsr.io.scales`); torch.ao's dynamic
    quantized LSTM / GRU from its ``_weight_bias()``."""

    def __init__(self, module: Any, classes: Mapping[str, str] | None = None) -> None:
        self.module = module
        self.description = f"<{type(module).__name__}>"
        # parameter name → the class of its module, where the module's own class is lost (an ExportedProgram's
        # unlifted module: plain Modules; :func:`exported_classes`)
        self._classes = dict(classes or {})
        # quantized weights with their scales, and weights kept as a hook's parts (weight_g and weight_v …)
        # combined, as from the saved state dict
        self._refs = with_scales(self._walk())

    def _walk(self) -> Iterator[TensorRef]:
        # prefixes of what is read whole: quantized modules (from their state dicts), parametrizations (their
        # module computes the weight)
        read: list[str] = []
        # (a module held under two names is walked under each, as state_dict() names it: tied, not dropped)
        for mod_name, mod in _named_modules(self.module):
            if any(mod_name.startswith(q) for q in read):
                continue
            prefix = f"{mod_name}." if mod_name else ""
            cls = _kind_class(mod)
            if isinstance(getattr(mod, "parametrizations", None), _torch().nn.ModuleDict):
                # torch.nn.utils.parametrize: the weight the forward pass uses (weight norm, spectral norm,
                # orthogonal …), computed by the parametrization; its originals and buffers are no layers
                read.append(f"{prefix}parametrizations.")
                for pname in mod.parametrizations:
                    try:
                        p = _parametrized(mod, pname)
                    except Exception as e:  # noqa: BLE001 - a user's parametrization: its row fails, not the run
                        originals = [t for n, t in mod.parametrizations[pname].named_parameters(recurse=False)
                                     if n.startswith("original")] or [_torch().zeros(())]
                        shape = tuple(max(originals, key=lambda t: t.numel()).shape)  # (weight norm's v, not g)
                        yield TensorRef(f"{prefix}{pname}", shape, "float32", raising_loader(
                            HtsrError, f"its parametrization raised {described(e)}"),
                            module_kind(cls, pname, f"{prefix}{pname}", shape) if len(shape) >= 2 else None)
                        continue
                    # (on the meta device: no values, said as for a plain meta weight, not a failed row)
                    load = _meta_loader(p.ndim >= 2) if p.is_meta else (
                        lambda mod=mod, pname=pname: _parametrized_array(mod, pname))
                    yield TensorRef(f"{prefix}{pname}", tuple(p.shape), _dtype_name(p), load,
                                    module_kind(cls, pname, f"{prefix}{pname}", tuple(p.shape)),
                                    storage_key=_parts_key(mod.parametrizations[pname]))
            # a quantized layer's weight parameter holds integer codes (buffers such as masks or position
            # indices do not make a layer quantized)
            own = [t for _, t in mod.named_parameters(recurse=False)]
            if hasattr(mod, "_packed_params") or any(  # torch.ao's quantized Linear and Conv keep theirs packed
                    hasattr(t, "quant_state") or (t.ndim >= 2 and not t.dtype.is_floating_point
                                                  and str(t.dtype) != "torch.bool") for t in own):
                read.append(prefix)
                try:
                    # (prefixed here: HQQLinear's state_dict() takes no prefix)
                    state = {f"{prefix}{k}": v for k, v in mod.state_dict().items()}
                except Exception as e:  # one layer's failure is its row's status, not the run's end
                    yield TensorRef(f"{prefix}weight", (), "float32", skipped_loader(
                        f"{type(mod).__name__}.state_dict(), which holds its quantized weights, failed: {one_line(e)}"))
                    continue
                for r in TorchStateDict(state).refs():  # the weight typed by its class (a quantized Embedding)
                    kind = module_kind(cls, "weight", r.name, tuple(r.shape)) if r.name == f"{prefix}weight" else None
                    yield dataclasses.replace(r, kind=kind) if kind is not None and r.kind is None else r
                continue
            if (hasattr(mod, "_all_weight_values") or hasattr(mod, "_packed_weight_ih")) and callable(
                    getattr(mod, "_weight_bias", None)):
                # torch.ao's dynamic quantized LSTM / GRU (and their cells): its state dict holds opaque packed
                # objects, but _weight_bias() gives the quantized weight_ih_l0 … (a cell's weight_ih …) by name
                read.append(prefix)
                state = {f"{prefix}{k}": v for k, v in mod._weight_bias()["weight"].items()}
                yield from TorchStateDict(state).refs()
                continue
            # parameters, then the persistent float buffers (a frozen projection, an STFT basis): what the
            # module's state_dict() holds, so a live module gives the rows its saved checkpoint gives
            skip = getattr(mod, "_non_persistent_buffers_set", set())
            buffers = [(n, b) for n, b in mod.named_buffers(recurse=False) if n not in skip]
            for pname, p in [*mod.named_parameters(recurse=False), *buffers]:
                # every tensor, as from the saved state dict: biases, norm scales, counters and masks give no
                # row but are named among the tensors not analysed; a matrix's kind is its module class's
                # (None: its name and shape decide, and say why it is no layer if it is not)
                if type(p).__name__.startswith("Uninitialized"):  # a Lazy module before its first forward
                    kind = _MODULE_KINDS.get(cls) if not is_bias_or_buffer(prefix + pname) else None
                    # a layer's weight: a row of its kind that says so; its bias, a norm's scale: listed as a
                    # state dict's are, by name (no shape yet)
                    yield TensorRef(prefix + pname, (), "float32", skipped_loader(
                        f"{type(mod).__name__}'s {pname} is not initialized: run one forward pass first")
                        if kind else (lambda: np.zeros(())), kind)
                    continue
                matrix = p.ndim >= 2 and p.dtype.is_floating_point
                load = _meta_loader(matrix) if p.is_meta else (lambda p=p: _to_numpy(p))
                owner = cls or self._classes.get(prefix + pname, "")
                yield TensorRef(prefix + pname, tuple(p.shape), _dtype_name(p), load,
                                module_kind(owner, pname, prefix + pname, tuple(p.shape)) if matrix else None,
                                storage_key=_storage_key(p))

    def __len__(self) -> int:
        return len(self._refs)

    def __iter__(self) -> Iterator[TensorRef]:
        yield from self._refs


_META = "on the meta device: no values; load the weights into the model first"


def checkpoint_names(module: Any, names: list[str]) -> dict[str, str]:
    """For a transformers model, the ``names`` its checkpoints spell otherwise: {name in memory: name saved}.
    transformers 5 renames some weights when it loads a checkpoint (Llava's ``language_model.model.*`` becomes
    ``model.language_model.*``, DINOv2's ``attention.attention.query`` ``attention.q_proj``, GPT-NeoX's
    ``embed_out`` ``lm_head``) and back when ``save_pretrained`` writes one (the Hub's files, transformers 4's and a
    Trainer's checkpoints have the saved names; a live model, its ``state_dict()`` and a peft adapter the ones in
    memory). Weights it converts (fused into another tensor) keep their names. Empty for any other module, or if
    transformers' mapping cannot be read."""
    if not any(c.__module__.startswith("transformers.") and c.__name__ == "PreTrainedModel"
               for c in type(module).__mro__):
        return {}
    try:  # (transformers' own reversal, revert_weight_conversion, on names alone: no tensor is converted)
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import (
            PrefixChange,
            WeightConverter,
            WeightRenaming,
            apply_converters,
            apply_renamings,
        )

        conversions = getattr(module, "_weight_conversions", None)
        if conversions is None:  # (not from from_pretrained: the registered mapping, as save_pretrained takes it)
            conversions = [c for c in get_model_conversion_mapping(module, add_legacy=False)
                           if not isinstance(c, PrefixChange)]
        reverse = [c.reverse_transform() for c in conversions[::-1]]
        renamings = [c for c in reverse if isinstance(c, WeightRenaming)]
        converters = [c for c in reverse if isinstance(c, WeightConverter)]
        out = {}
        for name in names:
            if apply_converters(name, converters)[1] is None:
                saved = apply_renamings(name, renamings)
                if saved != name:
                    out[name] = saved
    except Exception:  # (another transformers: its rows keep the names in memory)
        return {}
    return out if len(set(out.values()) | (set(names) - set(out))) == len(names) else {}  # one name each


def checkpoint_names_of_folder(folder: Any) -> dict[str, str]:
    """:func:`checkpoint_names` of the transformers model a saved folder's ``config.json`` describes, built on the
    meta device (no weights, no downloads): {name in memory: name the folder holds}. Empty without a config naming
    a transformers class, without transformers and torch, or if the model cannot be built."""
    path = model_folder(folder)  # (a weight file: the config beside it)
    if path is None or not (path / "config.json").is_file():
        return {}
    try:  # (once a config: compare asks it for the first result against each of the others)
        return _checkpoint_names_of_config(str(path.resolve()), (path / "config.json").stat().st_mtime_ns)
    except OSError:
        return {}


@functools.lru_cache(maxsize=16)
def _checkpoint_names_of_config(folder: str, mtime_ns: int) -> dict[str, str]:
    """:func:`checkpoint_names_of_folder` of a folder with a config.json (as of ``mtime_ns``); read only."""
    path = Path(folder)
    try:
        import torch
        import transformers

        # (never the folder's own code: a config that needs it is refused, and gives no names)
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        cls = getattr(transformers, (getattr(config, "architectures", None) or [""])[0], None)
        if cls is None:
            return {}
        with torch.device("meta"):
            model = cls(config)
        return checkpoint_names(model, list(model.state_dict()))
    except Exception:  # (another transformers, a custom class, a config it cannot build): the names as they are
        return {}


def _meta_loader(matrix: bool) -> Callable[[], np.ndarray]:
    """A meta tensor's loader: a matrix's row says why it has no values (skipped_loader); a 1-D tensor gets
    no row, but a weight combined from it (weight norm's g) is skipped with the same reason."""
    if matrix:
        return skipped_loader(_META)

    def load() -> np.ndarray:
        raise LayerSkipped(_META)

    return load


def _parametrized(module: Any, pname: str):
    """The value of parametrized tensor ``pname`` of ``module``, as its forward pass computes it in eval mode:
    in train mode a spectral norm would first run a power iteration, which writes its ``_u`` and ``_v`` (the
    model analysed, or monitored while it trains, is never changed)."""
    plist = module.parametrizations[pname]
    with _PARAMETRIZED_LOCK:  # (analyses in two threads: one saving the other's eval mode would restore that)
        modes = [(m, m.training) for m in plist.modules()]
        try:
            plist.eval()
            with _torch().no_grad():
                return getattr(module, pname)
        finally:
            for m, training in modes:
                m.training = training


_PARAMETRIZED_LOCK = threading.RLock()


def _new_parametrized_lock() -> None:  # (a forked child's: see analyze._new_analysis_lock)
    global _PARAMETRIZED_LOCK
    _PARAMETRIZED_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_parametrized_lock)


def _parts_key(plist: Any) -> tuple | None:
    """Where a parametrized weight's parts (its originals, parameters and buffers) live: the same for a module
    held under two names (tied), None if one part has no storage of its own."""
    keys = tuple(_storage_key(t) for t in (*plist.parameters(), *plist.buffers()))
    return keys if keys and all(k is not None for k in keys) else None


def _parametrized_array(module: Any, pname: str) -> np.ndarray:
    """:func:`_parametrized` as numpy; a weight norm's and a spectral norm's as a checkpoint's parts give them
    (htsr.io.reparam: torch's own computation rounds otherwise, 1e-6 apart), so the live module's row and its
    saved state dict's are the same to the bit."""
    plist = module.parametrizations[pname]
    kind = type(plist[0]).__name__ if len(plist) == 1 else ""
    if kind == "_WeightNorm" and hasattr(plist, "original1"):
        from .reparam import weight_norm

        return weight_norm(_to_numpy(plist.original0), _to_numpy(plist.original1))
    if kind == "_SpectralNorm" and hasattr(plist, "original") and hasattr(plist[0], "_u"):
        from .reparam import spectral_norm

        return spectral_norm(_to_numpy(plist.original), _to_numpy(plist[0]._u), _to_numpy(plist[0]._v),
                             f"{pname}: the spectral norm uᵀ·W·v of its original")
    return _to_numpy(_parametrized(module, pname))


#: a sub-mapping under such a key holds training state (optimizer moments, scheduler, AMP scaler), not weights
_TRAINING_STATE_KEY = re.compile(r"optim|sched|scaler", re.IGNORECASE)


def _is_training_state(key: Any, value: Any) -> bool:
    """An optimizer's state dict (``state`` and ``param_groups``: Adam's exp_avg… are tensors shaped like
    the weights), or a list or mapping of them (a GAN's two optimizers); an entry named for training state
    (``optimizer``, ``g_optim``, Lightning's ``optimizer_states`` list, ``lr_scheduler``); or a pickled
    optimizer or scheduler object (read without torch: a stand-in named for its class)."""
    if isinstance(value, (Mapping, list, tuple)) and isinstance(key, str) and _TRAINING_STATE_KEY.search(key):
        return True
    return _is_optimizer(value)


def _is_optimizer(value: Any, depth: int = 2) -> bool:
    if isinstance(value, Mapping) and "param_groups" in value:
        return True
    if isinstance(value, (Mapping, list, tuple)):
        items = list(value.values() if isinstance(value, Mapping) else value)
        return depth > 0 and bool(items) and all(_is_optimizer(v, depth - 1) for v in items)
    return bool(_TRAINING_STATE_KEY.search(str(getattr(value, "type_name", ""))))


def unwrap_state(obj: Any, is_tensor: Callable[[Any], bool],
                 notes: list[str] | None = None, where: str = "<state dict>") -> Mapping[str, Any] | None:
    """The state dict inside a checkpoint mapping: ``obj`` itself if it holds tensors, else the first mapping
    with weights in it under one of :data:`WRAPPER_KEYS` (recursively; a config dict under ``model`` is passed
    over), else ``obj`` (several networks under keys of their own: ``generator``, ``teacher``…); without the
    training state in it, at any of the levels read (optimizer moments are tensors shaped like the weights, not
    weights: a GAN's ``{'generator': {'model', 'optimizer'}}``). None if ``obj`` is no mapping or empty. Shared by
    the torch reader, the torch-free zip reader and in-memory checkpoint dicts. An optimizer's state dict alone
    raises :class:`SourceError` naming ``where``.

    ``notes``, when given, receives one line per entry taken whose siblings hold other weights (a
    checkpoint's ``model`` beside its ``ema``), naming what was left out: never a silent choice."""
    if not isinstance(obj, Mapping):
        return None
    if _zero3_placeholders(obj, is_tensor):
        raise SourceError(f"{where}: a DeepSpeed ZeRO-3 checkpoint, whose weights are partitioned across the "
                          "*_optim_states.pt files; run the zero_to_fp32.py DeepSpeed saved beside it and "
                          "analyse its output")
    if "param_groups" in obj and "state" in obj:  # torch.optim's state_dict(): a Trainer's optimizer.pt …
        raise SourceError(f"{where}: an optimizer's state (torch.optim's state_dict: 'state' and 'param_groups'), "
                          "whose moments are shaped like the weights but are not them; give the model's own file")
    if "ds_version" in obj and "module" in obj and obj["module"] is None:
        raise SourceError(f"{where}: a DeepSpeed pipeline-parallel checkpoint, whose weights are in the "
                          "layer_*-model_states.pt files beside it (one per pipeline stage); give one of them, or run "
                          "the zero_to_fp32.py DeepSpeed saved beside it and analyse its output")
    split = _model_parallel(obj.get("args"))
    if split and notes is not None:
        notes.append(f"one shard of a model split {split}: its matrices are slices of the model's, and their "
                     "spectra are not the model's; merge the shards first (Megatron's checkpoint converter)")
    weights = _without_training_state(obj, depth=1)  # (obj itself when it holds none)
    if "ds_version" in obj and "optimizer_state_dict" in obj and not any(
            is_tensor(v) or _holds_tensors(v, is_tensor) for v in weights.values()):
        # (DeepSpeed's *_optim_states.pt: its fp32 partitions are flat vectors, under 'optimizer_state_dict')
        raise SourceError(f"{where}: training state only ({listed(map(repr, obj))}: optimizer moments "
                          "and the like, shaped like the weights but not them); give the model's own file (DeepSpeed: "
                          "mp_rank_00_model_states.pt, or the output of its zero_to_fp32.py)")
    direct = [v for v in weights.values() if is_tensor(v)]
    # a state dict holds its tensors at the top; a checkpoint may too, beside its wrapped state dict, but only
    # scalars and vectors (PyTorch's ImageNet example's best_acc1, k-diffusion's RNG state demo_gen)
    wrapped = not any(len(getattr(v, "shape", ())) >= 2 for v in direct) and any(
        _holds_tensors(obj.get(k), is_tensor) for k in WRAPPER_KEYS)
    if direct and not wrapped:
        return weights
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        # (a wrapper key holding no weights, a config dict under 'model', is passed over for the next one)
        if isinstance(inner, Mapping) and inner and _holds_tensors(inner, is_tensor):
            found = unwrap_state(inner, is_tensor, notes, where)
            if found is not None:
                others = [k for k, v in weights.items() if k != key and _holds_tensors(v, is_tensor)]
                if notes is not None and others:
                    notes.append(f"the {key!r} entry read; {', '.join(map(repr, others))} left out: other weights "
                                 f"in the checkpoint, which Python reads as htsr.analyze(checkpoint[{others[0]!r}])")
                return found
    # (several networks under keys of their own, each beside its optimizer: {'generator': {'model', 'optimizer'}})
    return {k: _without_training_state(v) for k, v in weights.items()} or None


def _without_training_state(v: Any, depth: int = 4) -> Any:
    """A mapping with the training state in it (at most ``depth`` levels down) left out; anything else, and a
    mapping without any, as it is (the same object: a pickled module's state dict keeps its classes)."""
    if not isinstance(v, Mapping) or depth == 0:
        return v
    kept = {k: _without_training_state(x, depth - 1) for k, x in v.items() if not _is_training_state(k, x)}
    return v if len(kept) == len(v) and all(kept[k] is x for k, x in v.items()) else kept


def _model_parallel(args: Any) -> str:
    """How a Megatron-LM checkpoint's model is split across its rank files, from the ``args`` it saves (an
    argparse.Namespace: a stand-in's state, or the object itself): '2 ways by tensor parallelism' …, or ''."""
    state = getattr(args, "state", None)
    state = state if isinstance(state, Mapping) else getattr(args, "__dict__", {})
    ways = [(state.get(k), what) for k, what in (("tensor_model_parallel_size", "tensor"),
                                                 ("pipeline_model_parallel_size", "pipeline"))]
    return " and ".join(f"{n} ways by {what} parallelism" for n, what in ways if isinstance(n, int) and n > 1)


def _zero3_placeholders(obj: Mapping, is_tensor: Callable[[Any], bool]) -> bool:
    """Whether ``obj`` is DeepSpeed's ``mp_rank_00_model_states.pt`` of a ZeRO-3 run: its ``module``'s
    parameters (``param_shapes`` names them, else all but ``buffer_names``: position_ids is no placeholder) are
    empty, the weights being partitioned across the optimizer-state files."""
    module = obj.get("module")
    if "ds_version" not in obj or not isinstance(module, Mapping):
        return False
    buffers = obj.get("buffer_names") if isinstance(obj.get("buffer_names"), (list, tuple)) else ()
    shapes_of = obj.get("param_shapes") if isinstance(obj.get("param_shapes"), (list, tuple)) else ()
    params = ({n for d in shapes_of if isinstance(d, Mapping) for n in d if isinstance(n, str)}
              or set(module) - {b for b in buffers if isinstance(b, str)})
    shapes = [tuple(getattr(module[n], "shape", ())) for n in params if n in module and is_tensor(module[n])]
    return bool(shapes) and all(0 in s for s in shapes)


def with_notes(description: str, notes: list[str]) -> str:
    """A source's description with :func:`unwrap_state`'s notes (what a checkpoint left out) after it."""
    return description + "".join(f" ({n})" for n in notes)


def _holds_tensors(v: Any, is_tensor: Callable[[Any], bool], depth: int = 4) -> bool:
    """A mapping or list with a weight matrix in it (a tensor of 2 or more dimensions), ``depth`` levels down at
    most: a sibling state dict, an EMA copy (torch_ema's and diffusers' ``shadow_params`` are a list) — not a
    callback's scalar scores or an RNG state."""
    if not isinstance(v, (Mapping, list, tuple)) or depth == 0:
        return False
    return any((is_tensor(x) and len(getattr(x, "shape", ())) >= 2) or _holds_tensors(x, is_tensor, depth - 1)
               for x in (v.values() if isinstance(v, Mapping) else v))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(e: BaseException) -> str:
    """First non-empty line of an exception's text, without terminal colour codes."""
    lines = [l.strip() for l in _ANSI.sub("", str(e)).splitlines() if l.strip()]
    return lines[0][:200] if lines else e.__class__.__name__


#: the paragraphs of torch's weights-only error that are the same for every file (its advice to load with
#: weights_only=False, which would run the pickle, is not passed on)
_TORCH_BOILERPLATE = ("Weights only load failed", "Check the documentation", "Please file an issue",
                      "You can use the following")


def _unpickler_detail(e: BaseException) -> str:
    """The specific reason in torch's weights-only error text: after 'WeightsUnpickler error:' (e.g.
    'Unsupported global: GLOBAL x'), or the paragraph of its own torch ≥ 2.10 gives it ('Trying to load
    unsupported GLOBAL posix.system whose module posix is blocked.')."""
    text = _ANSI.sub("", str(e))
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. |\.\n|\nCheck the documentation|$)", text, re.DOTALL)
    if m:
        return " ".join(m.group(1).split())[:160]
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        if paragraph and not paragraph.startswith(_TORCH_BOILERPLATE):
            return paragraph[:160]
    return "torch's weights-only loader refused it"


def _last_byte(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1)
    except OSError:
        return b""


def load_torch_file(path: str | os.PathLike) -> TensorSource:
    """Open a ``.pt`` / ``.pth`` / ``.bin`` checkpoint safely (weights only).

    The zip format of ``torch.save`` (since PyTorch 1.6) and the legacy pickle format before it are read
    without torch by :class:`~htsr.io.torchzip.TorchZipFile` and :class:`~htsr.io.torchzip.TorchLegacyFile`;
    a checkpoint they refuse (a global outside their allow-list) goes to ``torch.load(weights_only=True)``,
    read into memory (not memory-mapped: torch does not check a mapped record's size, and a truncated
    storage would be read on into the next record's bytes).
    """
    from .pickles import PickleFile, is_pickle_head
    from .torchzip import RefusedGlobal, TorchLegacyFile, TorchZipFile, is_legacy_torch

    path = Path(path)
    reader, refused, head = None, None, b""
    if zipfile.is_zipfile(path):
        reader = TorchZipFile
    else:
        try:
            with open(path, "rb") as f:
                head = f.read(32)
        except PermissionError:  # (open_source's message names the file, or a folder above it that may not be
            raise  # entered; zipfile.is_zipfile above swallowed the error)
        except OSError as e:
            raise SourceError(f"{path}: unreadable ({_first_line(e)})") from None
        if is_legacy_torch(head):
            reader = TorchLegacyFile
        elif is_pickle_head(head) or _last_byte(path) == b".":
            # pickle.dump, not torch.save (whose files are zips or start with its magic number): torch.load
            # cannot read it at all. Protocols 0 and 1 have no header, but end with the STOP opcode
            return PickleFile(path)
        elif head[:1] != b"\x80":  # no zip, no pickle (protocol 2 on starts with 0x80): torch.load cannot read it
            from . import SUPPORTED_FILES

            raise SourceError(f"{path}: not a PyTorch checkpoint: it starts with {head[:8]!r}, neither a zip archive "
                              f"nor a pickle (truncated, or another format?); supported: {SUPPORTED_FILES}")
    if reader is not None:
        try:
            return reader(path)
        except RefusedGlobal as e:
            refused = e
            try:
                _torch()  # torch's own weights-only unpickler knows more types: let it decide
            except MissingExtraError:
                raise SourceError(f"{refused}; install htsr[torch] to let torch.load(weights_only=True) "
                                  "try it") from None
    torch = _torch()
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol: the error below says it all
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _unpickler_detail(e)
        if "ScriptObject" in detail:  # re-saving the state dict, the usual advice, would write the same objects
            raise SourceError(f"{path}: holds TorchScript objects (torch.ao's packed parameters of a dynamic-quantized "
                              "LSTM or GRU, in its state dict too) that only torch's own code rebuilds; analyse the "
                              "live model, which unpacks them, or the float model") from None
        if "_rebuild_wrapper_subclass" in f"{refused} {detail}" or "DTensor" in detail:
            raise SourceError(f"{path}: holds tensor subclasses (DTensors: an FSDP2 or tensor-parallel model's "
                              "state_dict() is its shards), which weights-only loading does not rebuild; save the "
                              "gathered weights, get_model_state_dict(model, options=StateDictOptions("
                              "full_state_dict=True, cpu_offload=True)), and analyse that") from None
        if refused is not None:  # htsr's reader said which global; torch's wording differs by format
            raise SourceError(f"{refused}; torch.load(weights_only=True) refuses it too; re-save it with "
                              "torch.save(model.state_dict(), ...) or as safetensors") from None
        if "unsupported global" in detail.lower():
            raise SourceError(
                f"{path}: refused: the checkpoint is a pickle that needs to run code ({detail}), and htsr loads "
                "weights only (nothing in the file was run); re-save it with torch.save(model.state_dict(), ...) "
                "or as safetensors"
            ) from None
        raise SourceError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {detail}") from None
    except Exception as e:  # zip errors, EOF on truncated files, bad storage sizes
        if refused is not None:  # htsr's own reason first: torch's failure may be about something else
            raise SourceError(f"{refused}; torch.load(weights_only=True) cannot read it either "
                              f"({_first_line(e)})") from None
        raise SourceError(
            f"{path}: cannot be read as a PyTorch checkpoint (truncated or corrupt?): {_first_line(e)}"
        ) from None
    notes: list[str] = []
    state = obj.state_dict() if isinstance(obj, torch.nn.Module) else unwrap_state(
        obj, lambda v: isinstance(v, torch.Tensor), notes, str(path))
    if state is None:
        raise SourceError(f"{path}: no state dict found in the checkpoint (a {type(obj).__name__})")
    return TorchStateDict(state, with_notes(str(path), notes))
