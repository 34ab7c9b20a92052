"""PEFT / LoRA adapter folders: ``adapter_config.json`` with ``adapter_model.safetensors`` (or ``.bin``);
live ``peft.PeftModel`` objects or models with an adapter injected (transformers' ``load_adapter``;
:meth:`PeftAdapter.from_model`: the active adapter, with the model's own base weights as the base); and
single-file LoRAs, kohya-ss's, LyCORIS's and diffusers' (:meth:`PeftAdapter.from_file`), read as a PEFT
adapter whose scale comes from the file.

No extra of its own: the weights are read by the safetensors (or weights-only torch) reader and the
config with :mod:`json`; neither peft nor transformers is imported.

A LoRA module stores A (``…lora_A.weight``, r × in) and B (``…lora_B.weight``, out × r); embeddings
store ``…lora_embedding_A`` (r × vocab) and ``…lora_embedding_B`` (dim × r). The update is
ΔW = s·B·A with s = lora_alpha / r, or lora_alpha / √r with ``use_rslora`` (PEFT's scalings);
``alpha_pattern`` overrides lora_alpha per module (PEFT's key match: the first key, a regular expression,
that the module name ends with),
and r is read from the factors' shapes, so ``rank_pattern`` needs no lookup. Each update becomes one
row of kind ``lora`` named ``<module>#delta`` whose eigenvalues come from the QR factors of B and Aᵀ
(:func:`htsr.factored.lowrank_eigenvalues`); the out × in product is never formed. The row is laid out as
the base weight, as PEFT's ``get_delta_weight`` gives it: ΔWᵀ for an in × out weight (HF Conv1D,
``fan_in_fan_out``; [E, in, out] experts), so that its shape and a ``split`` rule's side are its ``#base``'s.
A conv LoRA (A a conv kernel [r, in, k…], B a 1×1 conv [out, r, 1…]) has ΔW[:, :, p] = s·B·A[:, :, p]
at every kernel position p: one LowRank per position, pooled or per position like the base conv layer's matrices (and
with its WeightWatcher 1/2 scale for 2-D kernels), so its row compares with ``#base``.

With a base model (``analyze(ADAPTER, base=BASE)``, ``--base``) each adapted module also gets the rows
``<module>#base`` (the base weight W) and ``<module>#merged`` (W + ΔW, oriented like W: PEFT's
``fan_in_fan_out`` layers and embeddings store ΔWᵀ; a non-square layer's orientation is told by the
base's shape, a square one's by the other layers', see ``_square_layout``). Module names drop PEFT's ``base_model.model.``
prefix so they match the base model's tensor names (``<module>.weight``). A module whose base tensor is
missing or of another shape gets ``skipped: …`` rows, never a wrong merge. A DoRA adapter (``use_dora``)
merges as PEFT does: every output of V = W + ΔW (a Linear's rows, an in × out layer's columns, an
embedding's dims, a conv's output channels) is rescaled to its learned magnitude, m / ‖V‖ · V, with m
read from ``…lora_magnitude_vector``; its ``#delta`` row is still the low-rank direction update s·B·A (the
whole change m / ‖V‖ · V − W needs W, and is full-rank). Other tensors of the adapter (``modules_to_save``
copies) are analysed as ordinary weights.

A LoRA on a bare parameter (``target_parameters``: fused expert stacks [E, in, out] or [E, out, in], a
2-D parameter not named ``weight``) stores A as (r·E) × in and B as out × (r·E); expert e's update is
s·B[:, :, e]·A[e] (B seen as out × r × E, A as E × r × in), so each expert gets its own row,
``<module>.<parameter>#delta[e]`` (and ``#base[e]``, ``#merged[e]`` with a base; a merge of square experts
is skipped, as their layout is the model class's, not saved). Several such parameters on one module are
nested by peft (``experts.base_layer``) in an order the adapter does not record: the base's shapes tell
them apart; without a base their rows keep the saved module name.

LoHa and LoKr (peft's ``LOHA`` / ``LOKR`` adapters, whose scale is ``alpha`` / r, and LyCORIS's single files) are
read from their parts by :func:`_lycoris_update`: LoHa's s·(w1a·w1b) ∘ (w2a·w2b) as one LowRank of rank r1·r2,
LoKr's s·(w1 ⊗ w2) as a :class:`~htsr.factored.Kronecker`; a conv's per kernel position, its kernel given by a
Tucker core or a full conv factor, or for an update stored flattened (out × in·k…) by the base.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LayerSkipped, SourceError
from ..factored import Factored, Kronecker, LowRank, hadamard_lowrank
from ..tensors import SharedLoad, infer_kind
from .base import TensorRef, TensorSource, read_json, skipped_loader

__all__ = ["ADAPTER_FILES", "PeftAdapter", "is_peft_folder", "looks_like_lora", "single_file_lora"]

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_NESTED = re.compile(r"\.base_layer(?=\.(?!base_layer\b))")  # a wrapped layer's own sub-layer (MHA's out_proj)
_PREFIX = "base_model.model."
_SAVED_BASE = ".base_layer.weight"
_TOKENS = re.compile(r"\.token_adapter\.trainable_tokens_(delta|original)(\.[^.]+)?$")
_VARIANTS = ("kasa_config", "use_bdlora", "use_qalora", "monteclora_config", "arrow_config")
_MOVES_BASE = ("pissa", "olora", "corda", "lora_ga", "loftq")
# module, factor, optional adapter name (PEFT strips it on save; in-memory state dicts keep it)
# (``lora_B.bias``, PEFT's lora_bias, is a bias of the update, not an adapter named "bias": no factor)
_FACTOR = re.compile(
    r"^(?P<module>.+?)\.lora_(?P<emb>embedding_)?(?P<ab>[AB])(?:\.(?P<adapter>(?!bias$|weight$)[^.]+))?(?:\.weight)?$")
_DORA = re.compile(r"^(?P<module>.+?)\.lora_magnitude_vector(?:\.(?P<adapter>(?!weight$)[^.]+))?(?:\.weight)?$")

# single-file LoRAs (read by PeftAdapter.from_file)
#: factors under other tools' names, renamed to PEFT's: kohya-ss sd-scripts and LyCORIS (``lora_down`` is A,
#: ``lora_up`` B), diffusers' attention-processor formats (``lora.down``, ``lora_linear_layer.down``, and
#: ``processor.to_q_lora.down``, whose module is ``to_q``; ``to_out_lora``'s is ``to_out.0``)
_FILE_NAMES = [
    (re.compile(r"\.processor\.(to_[qkv])_lora\."), r".\1.lora."),
    (re.compile(r"\.processor\.to_out_lora\."), ".to_out.0.lora."),
    # (a text encoder's attention in the same format: CLIP's q_proj … out_proj, as diffusers maps them)
    (re.compile(r"\.self_attn\.to_([qkv])_lora\."), r".self_attn.\1_proj.lora."),
    (re.compile(r"\.self_attn\.to_out_lora\."), ".self_attn.out_proj.lora."),
    (re.compile(r"\.(?:lora_down|lora(?:_linear_layer)?\.down)\.weight$"), ".lora_A.weight"),
    (re.compile(r"\.(?:lora_up|lora(?:_linear_layer)?\.up)\.weight$"), ".lora_B.weight"),
]
_ALPHA = re.compile(r"^(?P<module>.+)\.alpha$")  # kohya-ss's alpha of a module: its scale is alpha / r
#: LyCORIS's LoHa and LoKr parts (peft's LOHA and LOKR adapters store them under the same names): their
#: updates are formed from the parts (:func:`_lycoris_update`), LoHa's as a LowRank, LoKr's as a Kronecker
_PART = re.compile(r"^(?P<module>.+?)\.(?P<part>hada_(?:w[12]_[ab]|t[12])|lokr_(?:w[12](?:_[ab])?|t[12]))"
                   r"(?:\.(?P<adapter>(?!weight$)[^.]+))?(?:\.weight)?$")
#: LyCORIS updates htsr does not form, by their parts' names
_UNFORMED = re.compile(r"^(?P<module>.+)\.(?P<part>oft_(?:blocks|diag|R)|lora_mid\.weight)$")
_ALGORITHMS = {"oft": "an OFT update (a rotation of W)", "lora": "a LoCon update with a Tucker core (lora_mid)"}
_DIFF = re.compile(r"^(?P<module>.+)\.diff(?P<bias>_b)?$")  # LyCORIS's full update of a module (and of its bias)
_DORA_SCALE = re.compile(r"^(?P<module>.+)\.dora_scale$")  # kohya-ss's and LyCORIS's DoRA magnitudes
_METADATA_KEY = "lora_adapter_metadata"  # diffusers' copy of the LoraConfig in a safetensors header


#: the names of a LoRA's factors or LyCORIS's parts, in any of the formats above
_LORA_NAME = re.compile(r"(\.(lora_(down|up|A|B|embedding_[AB])(\.[^.]+)?\.weight|hada_w1_a|lokr_w[12](_a)?"
                        r"|oft_(blocks|diag|R)|diff)|[._]lora(_linear_layer)?\.(down|up)\.weight)$")


def looks_like_lora(names: list[str]) -> bool:
    """Whether tensor names hold a LoRA's factors or LyCORIS's parts (a cheap test before
    :meth:`PeftAdapter.from_file`, which decides)."""
    return any(_LORA_NAME.search(n) for n in names)


def single_file_lora(path: Path, src: TensorSource) -> PeftAdapter | None:
    """The file ``src`` (opened from ``path``) read as a single-file LoRA, or None if it is not one: its names
    tested first (a safetensors file's from its header alone), then :meth:`PeftAdapter.from_file`."""
    names = src.names if hasattr(src, "names") else [t.name for t in src]
    if not looks_like_lora(names):
        return None
    return PeftAdapter.from_file(path, list(src), getattr(src, "metadata", None))


def is_peft_folder(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def is_live_peft(obj: Any) -> bool:
    """A live ``peft.PeftModel``, or a model with an adapter injected into it (transformers' ``load_adapter``
    / ``add_adapter``, ``peft.inject_adapter_in_model``: a ``peft_config`` and peft's layers): read as its
    active adapter; only LoRA, LoHa and LoKr are, others are refused by name (read as plain modules, their
    adapters' own factors would be dense rows and the wrapped weights ``base_layer``)."""
    if type(obj).__module__.startswith("peft.") and hasattr(obj, "get_base_model") and hasattr(obj, "peft_config"):
        return True
    return isinstance(getattr(obj, "peft_config", None), dict) and bool(_tuner_layers(obj))


def _tuner_layers(model: Any) -> list[Any]:
    """The layers a PEFT adapter wraps (peft's tuner layers, which hold the base layer and the factors)."""
    return [m for _, m in model.named_modules() if type(m).__module__.startswith("peft.tuners.")
            and hasattr(m, "active_adapters")]


class PeftAdapter:
    """A PEFT LoRA adapter folder (or a live PeftModel's adapter) as a stream of low-rank updates (and, with a
    base, W and W + ΔW)."""

    def __init__(self, folder: str | Path) -> None:
        from . import (
            open_source,  # the adapter's weights file is read by its own format's reader
        )

        folder = Path(folder)
        cfg_path = folder / "adapter_config.json"
        try:
            cfg = read_json(cfg_path)
        except (OSError, ValueError, RecursionError) as e:
            raise SourceError(f"{cfg_path}: not a readable JSON adapter config ({e}); re-save the adapter") from None
        if not isinstance(cfg, dict):
            raise SourceError(f"{cfg_path}: not a JSON object; re-save the adapter")
        weights = next((folder / f for f in ADAPTER_FILES if (folder / f).is_file()), None)
        if weights is None:
            raise SourceError(f"{folder}: adapter folder without {' or '.join(ADAPTER_FILES)}")
        # peft's save_pretrained of several adapters: the default one here, each other in a subfolder of its name
        others = sorted(d.name for d in folder.iterdir() if d.is_dir() and is_peft_folder(d))
        self._setup(cfg, str(cfg_path), lambda: list(open_source(weights)), str(folder))
        if others:
            self.description += (f" (other adapters beside it, not read: {', '.join(f'{n}/' for n in others)}; give "
                                 "one's folder to analyse it)")

    @classmethod
    def from_model(cls, model: Any) -> PeftAdapter:
        """A live ``peft.PeftModel`` with LoRA adapters: its active adapter's updates, with its own base
        weights (the wrapped layers' ``base_layer``) for the ``#base`` and ``#merged`` rows, as a saved
        adapter analysed with ``--base`` gives them."""
        from peft import get_peft_model_state_dict

        from .torch import TorchStateDict

        if type(model).__name__ == "PeftMixedModel":
            raise SourceError(f"<{type(model).__name__}>: a mixed-adapter model: analyse each adapter's saved "
                              "folder, or a PeftModel of one adapter")
        layers = _tuner_layers(model)
        # a PeftModel, or an adapter injected into the model itself
        base_model = model.get_base_model() if hasattr(model, "get_base_model") else model
        # the adapter the layers run (set_adapter of a list, disable_adapter): not the model's own attribute, which
        # a base_model.set_adapter([...]) leaves as it was
        active = sorted({a for m in layers for a in m.active_adapters})
        if any(getattr(m, "_disable_adapters", False) is True for m in layers):
            raise SourceError(f"<{type(model).__name__}>: its adapters are disabled (disable_adapter): the model runs "
                              "on its base weights; analyse model.get_base_model(), or enable the adapter")
        if len(active) > 1:
            raise SourceError(f"<{type(model).__name__}>: adapters {', '.join(map(repr, active))} are active at once: "
                              "htsr reads one adapter's update; set_adapter one of them, or analyse their saved folders")
        name = active[0] if active else (model.active_adapter if isinstance(model.active_adapter, str)
                                         else model.active_adapter[0])
        merged = [n for n, m in model.named_modules() if getattr(m, "merged_adapters", None)]
        if merged:  # its base_layer weights already hold W + ΔW
            raise SourceError(f"<{type(model).__name__}>: its adapters are merged into the weights ({merged[0]}, …): "
                              "call model.unmerge_adapter() first, or analyse model.merge_and_unload() as a model")
        config = model.peft_config[name]
        # PeftType.LORA → "LORA", a set of target_modules → a sorted list, as the saved adapter_config.json has them
        cfg = {k: sorted(v) if isinstance(v, (set, frozenset)) else getattr(v, "value", v)
               for k, v in config.to_dict().items()}
        adapter = TorchStateDict(get_peft_model_state_dict(model, adapter_name=name))
        self = cls.__new__(cls)
        description = f"<{type(model).__name__}, adapter {name!r}>"
        self._setup(cfg, description, lambda: list(adapter.refs()), description)
        self._live = True
        # each wrapped layer's own layout (peft's fan_in_fan_out per layer: True on HF Conv1D, False on nn.Linear),
        # which a saved adapter keeps one flag of: a square layer of an adapter on layers of both is merged right
        self._fan_in_fan_out = {n.removeprefix(_PREFIX): m.fan_in_fan_out for n, m in model.named_modules()
                                if isinstance(getattr(m, "fan_in_fan_out", None), bool) and hasattr(m, "base_layer")}
        # the base weights under the base model's names: a wrapped layer keeps W as <module>.base_layer.weight
        base = {re.sub(r"\.base_layer(?=\.)", "", k): v for k, v in base_model.state_dict().items()
                if not re.search(r"\.(lora_(A|B|embedding_A|embedding_B|magnitude_vector)|hada_\w+|lokr_\w+)\.", k)}
        other = self.with_base(TorchStateDict(base, description), own_weights=True)
        other.description = f"{description} with its base model's weights"  # (not 'X on base X')
        adapted = {other._key(n) for e in self._modules.values() for n in self._weight_names(e["module"])}
        adapted |= {other._key(f"{e['module']}.in_proj_weight") for e in self._modules.values()}  # (an attention's)
        # (a modules_to_save layer's trained copy is a row of the adapter, its original the base's own)
        # (its layers alone: a bias or a norm scale gives no row analysed on its own either)
        rest = [k for k, v in base.items() if k not in adapted and infer_kind(k, tuple(v.shape)) is not None
                and not re.search(r"\.(modules_to_save|original_module|token_adapter)\.", k)]
        if rest:  # (the adapter is the source: the model's other weights are no rows of it, and are said so)
            many = len(rest) > 1
            other.description += (f" ({len(rest)} other layer{'s' * many} of the model, {rest[0]}"
                                   f"{' …, are' if many else ', is'} not adapted: analyse "
                                   + ("model.get_base_model()" if hasattr(model, "get_base_model")
                                      else "the model without its adapter")  # (one injected: no PeftModel)
                                   + f" for {'them' if many else 'it'})")
        return other

    @classmethod
    def from_file(cls, path: str | Path, refs: list[TensorRef], metadata: dict[str, str] | None = None
                  ) -> PeftAdapter | None:
        """A single-file LoRA: kohya-ss sd-scripts' and LyCORIS's (``<module>.lora_down.weight``,
        ``.lora_up.weight``, ``.alpha``; module names spelt with ``_`` for ``.``, ``lora_unet_…``, ``lora_te_…``)
        or diffusers' (``pytorch_lora_weights.safetensors``: PEFT's names under a component, ``unet.…``,
        ``transformer.…``, or its older ``lora.down`` / ``processor.to_q_lora`` names); None if ``refs``, the
        tensors of the file at ``path``, are not one.

        ΔW = (alpha / r)·B·A per module, alpha from the module's ``.alpha`` tensor, else from the LoraConfig
        diffusers keeps in the header (``metadata['lora_adapter_metadata']``, per component, with rsLoRA and
        ``alpha_pattern`` as peft reads them), else alpha = r (scale 1), as kohya-ss's and diffusers' loaders
        take a file that stores none. LyCORIS's LoHa and LoKr updates are formed from their parts (alpha / r, r
        a low-rank pair's inner size, :func:`_lycoris_rank`); its OFT and Tucker LoCon (``lora_mid``) updates are
        skipped rows naming the algorithm; its full updates (``.diff``) are ``#delta`` rows as stored. With a
        base, kohya-ss's names are matched to the base's with ``.`` read as ``_`` (see :func:`_flat_align`).

        A PEFT adapter's own file (``adapter_model.*``, ``base_model.model.…`` names) is not one: its scale is
        in the ``adapter_config.json`` beside it; nor is a model's state dict holding adapted layers (the
        factors beside their module's own weight)."""
        path = Path(path)
        renamed = []
        for t in refs:
            name = t.name
            for pattern, to in _FILE_NAMES:
                name = pattern.sub(to, name)
            renamed.append(dataclasses.replace(t, name=name) if name != t.name else t)
        factored = {m["module"] for t in renamed if (m := _FACTOR.match(t.name) or _PART.match(t.name))}
        lycoris: dict[str, list[TensorRef]] = {}  # the modules of updates htsr does not form
        algorithm: dict[str, str] = {}  # a LyCORIS module's algorithm, by its parts' names
        for t in renamed:
            if m := _UNFORMED.match(t.name):
                lycoris.setdefault(m["module"], []).append(t)
                algorithm.setdefault(m["module"], _ALGORITHMS[m["part"].split("_")[0]])
        # (a Tucker LoCon's lora_up / lora_down belong to its update with lora_mid, which is not B·A)
        factored -= lycoris.keys()
        alphas = {m["module"]: t for t in renamed if (m := _ALPHA.match(t.name))}
        diffs = [t for t in renamed if _DIFF.match(t.name)]
        names = {t.name for t in refs}
        only_diffs = bool(diffs) and all(_DIFF.match(t.name) or _ALPHA.match(t.name) for t in renamed)
        if not (factored or lycoris or only_diffs):
            return None
        if any(f"{m}.weight" in names or f"{m}{_SAVED_BASE}" in names for m in factored | lycoris.keys()):
            return None  # a model's state dict with its adapters in it: the factors are listed as such
        own_names = [t for t, r in zip(refs, renamed) if t is not r]
        if not (own_names or alphas or lycoris or diffs) and (
                path.name.startswith("adapter_model") or any(n.startswith(_PREFIX) for n in names)):
            return None  # a PEFT adapter's file without its config
        raw = (metadata or {}).get(_METADATA_KEY)
        try:
            cfg = {} if raw is None else json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise SourceError(f"{path}: its {_METADATA_KEY} is not JSON ({e}); re-save the LoRA") from None
        if not isinstance(cfg, dict):
            raise SourceError(f"{path}: its {_METADATA_KEY} is not a JSON object; re-save the LoRA")
        # diffusers' pipelines key each component's config by its name: {'unet.r': 4, 'text_encoder.r': 8 …}
        components: dict[str, dict[str, Any]] = {}
        if cfg and not ({"r", "lora_alpha", "peft_type"} & cfg.keys()):
            for key, value in cfg.items():
                head, dot, rest = str(key).partition(".")
                components.setdefault(head if dot else "", {})[rest if dot else head] = value
        where = f"{path} ({_METADATA_KEY})"
        parts = {id(t) for ts in lycoris.values() for t in ts} | {id(t) for t in diffs} | {
            id(t) for t in renamed if (m := _FACTOR.match(t.name)) and m["module"] in lycoris}
        scales = {m: t for t in renamed if (m := _DORA_SCALE.match(t.name))}
        consumed = parts | {id(t) for t in alphas.values()} | {id(t) for t in scales.values()}
        kept = [t for t in renamed if id(t) not in consumed]
        self = cls.__new__(cls)
        # kohya-ss's module names have no '.' (lora_unet_down_blocks_0_…): matched to a base's by that spelling
        modules = factored | lycoris.keys() | {_DIFF.match(t.name)["module"] for t in diffs}
        flat = all("." not in m for m in modules)
        self._setup(cfg if not components else {}, where, lambda: kept,
                    f"{path} (a single-file LoRA, {'kohya-ss' if flat else 'diffusers'} names)")
        self._flat = flat
        parsed = {}
        for head, sub in components.items():  # each component's config, read (and checked) as peft reads it
            parsed[head] = cls.__new__(cls)
            parsed[head]._setup(sub, f"{where}, {head}", list, str(path))
        # (diffusers writes no use_dora without metadata: its loader tells DoRA by the magnitude vectors, per
        # component; so does a module here, by its own, where no config of its component says)
        self.dora = self.dora or any(p.dora for p in parsed.values()) or (
            not cfg and any(_DORA.match(t.name) for t in kept))
        self.moves_base = self.moves_base or next((p.moves_base for p in parsed.values() if p.moves_base), None)
        unconfigured = []  # modules under no component of the metadata
        for e in self._modules.values():
            head = next((h for h in parsed if h and e["module"].startswith(h + ".")), "")
            if components or not cfg:  # each component's own use_dora (a UNet's DoRA is not its text encoder's)
                e["dora"] = parsed[head].dora if head in parsed else "m" in e
            if "parts" in e:  # LoHa / LoKr: alpha / r, r the inner size of a low-rank pair (none: scale 1)
                r = _lycoris_rank(e["parts"])
            elif "A" not in e or len(e["A"].shape) < 2:  # (no factor: its row says so)
                continue
            else:
                r = int(e["A"].shape[0])
            module = e["module"]
            alpha = alphas.get(module)
            if r is None:  # LyCORIS's LoKr of two full factors: scale 1, whatever its alpha
                self._module_scale[module] = 1.0
            elif alpha is not None:  # kohya-ss: alpha / r, with alpha 0 read as r; not one finite number: no scale
                values = np.asarray(alpha.load(), dtype=np.float64).reshape(-1)
                a = float(values[0]) if values.size == 1 else math.nan
                self._module_scale[module] = (a / r if a else 1.0) if math.isfinite(a) and r else math.nan
            elif components:
                own = parsed.get(head)
                self._module_scale[module] = own.scaling(module.removeprefix(head + "."), r) if own is not None else 1.0
                if own is None:
                    unconfigured.append(module)
            elif not cfg:  # no alpha stored anywhere: alpha = r
                self._module_scale[module] = 1.0
        self._unmerged = {m["module"]: "a DoRA magnitude (dora_scale) as kohya-ss / LyCORIS store it, whose merge "
                          "htsr does not form" for m in scales}
        for module, ts in lycoris.items():
            self._others.append(TensorRef(f"{module}#delta", (1, 1), ts[0].dtype,
                                          skipped_loader(f"{algorithm[module]}, which htsr does not form"), "lora"))
        for t in diffs:
            m = _DIFF.match(t.name)
            kind = None if m["bias"] else infer_kind(f"{m['module']}.weight", t.shape)
            if kind is None:
                self.not_weights.append((t.name, "a LyCORIS full update of a bias or a 1-D tensor"))
            else:
                self._others.append(dataclasses.replace(t, name=f"{m['module']}#delta", kind=kind))
        # (an alpha is its update's, which counts once, as its factors do: it is not listed)
        self.not_weights += [(t.name, "a DoRA magnitude (dora_scale)") for t in scales.values()]
        if not alphas and not cfg:
            self.description += " (no alpha stored: scale 1, alpha = r, as kohya-ss and diffusers load it)"
        if unconfigured:
            self.description += (f" ({len(unconfigured)} modules, {unconfigured[0]} …, under no component of its "
                                 f"{_METADATA_KEY} ({', '.join(sorted(parsed))}): scale 1, alpha = r)")
        whole = [t.name for t in self._others if not t.name.endswith("#delta")]
        if whole:  # a modules_to_save copy, a full model beside the factors: its weights as they are, no deltas
            self.description += (f" ({len(whole)} tensors beside the updates, {whole[0]} …: analysed as they are, "
                                 "never as deltas)")
        return self

    def _setup(self, cfg: dict[str, Any], cfg_path: str, refs, description: str) -> None:
        """Read the config ``cfg`` (``cfg_path`` names it in errors), then the adapter's tensors (``refs()``)."""
        self.folder = description
        peft_type = str(cfg.get("peft_type", "LORA")).upper()
        if peft_type not in ("LORA", "LOHA", "LOKR"):
            raise SourceError(f"{cfg_path}: peft_type {peft_type!r} is not supported (htsr reads LoRA, LoHa and LoKr "
                              "adapters)")
        self.peft_type = peft_type
        self.config = cfg
        try:
            # peft's defaults: alpha 8, r 8 (LoraConfig's lora_alpha; LoHaConfig's and LoKrConfig's alpha)
            self.lora_alpha = float(cfg.get("lora_alpha" if peft_type == "LORA" else "alpha", 8))
            self.r = int(cfg.get("r", 8))
            alpha_pattern = {str(k): float(v) for k, v in (cfg.get("alpha_pattern") or {}).items()}
            rank_pattern = {str(k): int(v) for k, v in (cfg.get("rank_pattern") or {}).items()}
            targets = cfg.get("target_parameters") or []
            if isinstance(targets, str) or not all(isinstance(t, str) for t in targets):
                raise TypeError
            self.target_parameters = sorted(set(targets))  # peft matches them in sorted order
        except (TypeError, ValueError, AttributeError, OverflowError):  # (an r of 1e999: JSON's inf, no integer)
            raise SourceError(f"{cfg_path}: lora_alpha and r must be numbers, alpha_pattern and rank_pattern objects "
                              "of numbers, target_parameters a list of names; re-save the adapter") from None
        if not all(math.isfinite(a) for a in (self.lora_alpha, *alpha_pattern.values())):
            raise SourceError(f"{cfg_path}: lora_alpha / alpha_pattern must be finite numbers; re-save the adapter")
        # peft's get_pattern_key: a key is a regular expression the module name ends with (after a '.'), and
        # the first key that matches, in the config's order, wins
        self.alpha_pattern = _patterns(cfg_path, "alpha_pattern", alpha_pattern)
        self.rank_pattern = _patterns(cfg_path, "rank_pattern", rank_pattern)

        def flag(key: str) -> bool:
            value = cfg.get(key, False)
            if value is not None and not isinstance(value, bool):  # "false" would be true
                raise SourceError(f"{cfg_path}: {key} must be true or false, not {value!r}; re-save the adapter")
            return bool(value)

        self.rslora, self.fan_in_fan_out, self.dora = flag("use_rslora"), flag("fan_in_fan_out"), flag("use_dora")
        # LoRA variants whose update is not s·B·A (or DoRA's merge): KaSA's singular values between B and A,
        # BD-LoRA's block-diagonal factors, QA-LoRA's pooled inputs, MonteCLoRA's sampled factors
        variant = next((k for k in _VARIANTS if cfg.get(k) not in (None, False, {}, [])), None)
        if variant is not None:
            raise SourceError(f"{cfg_path}: {variant} is set: a LoRA variant whose update is not scale·B·A; htsr "
                              "reads LoRA, rsLoRA and DoRA adapters")
        # PiSSA, OLoRA, CorDA, LoRA-GA and LoftQ start from factors that hold part of W, and the model runs on the
        # base less that part (peft writes init_lora_weights true once the adapter is converted to a plain one)
        init = cfg.get("init_lora_weights", True)
        self.moves_base = init if isinstance(init, str) and init.lower().startswith(_MOVES_BASE) else None
        self._live = False  # a live model's adapter (from_model): its base weights are the ones it runs on
        self._module_scale: dict[str, float] = {}  # a single-file LoRA's scale per module (from_file)
        self._flat = False  # module names with '_' for '.' (kohya-ss): matched to a base's by that spelling
        self._unmerged: dict[str, str] = {}  # modules whose W + ΔW is not formed, and why
        self._fan_in_fan_out: dict[str, bool] = {}  # a live model's layouts, per module (from_model)
        self._refs = refs()
        self._base: dict[str, TensorRef] | None = None  # set by with_base
        self._key = _same  # a module's tensor name -> the base's name (set by with_base)
        self._square_flip: bool | None = self.fan_in_fan_out  # a square base weight's layout (set by with_base)
        self.description = description
        self._modules, self._others = self._group()
        # activated LoRA (aLoRA) applies its update only after its invocation tokens: there is no W + ΔW (peft
        # refuses to merge it)
        if cfg.get("alora_invocation_tokens"):
            self._unmerged.update({m: "an activated LoRA (alora_invocation_tokens): its update applies only after "
                                      "the invocation tokens, so no merged weight exists (peft does not merge it)"
                                   for m in self._modules})

    def with_base(self, base: TensorSource, own_weights: bool = False) -> PeftAdapter:
        """The same adapter with W and W + ΔW rows from ``base`` (what ``--base`` means for an adapter);
        the config and the adapter's tensor list are not read again. ``own_weights``: ``base`` is the adapted
        model's own base weights (a live model's), whose layers a ``layer_replication`` has replicated already."""
        from .delta import align_names, align_saved, saved_names_of

        other = copy.copy(self)
        other._base = {t.name: t for t in base}
        # (a live PeftModel's description says it runs on its base model's weights: those are replaced here)
        own = self.folder if getattr(self, "_live", False) else self.description
        other.description = f"{own} on base {base.description}"
        # names matched as --base matches a model's: exactly, else by a leading prefix (an adapter
        # trained on a '…ForCausalLM' ('model.layers…') against the bare backbone's 'layers…')
        # layer_replication: the adapted model's layers are copies of the base's, in the config's order (peft's
        # replicate_layers): adapted layer j runs on base layer layer_map[j], not on the base's layer j
        # (a live model's own weights, from_model's, are replicated already: its layer j is the copy)
        replicated = _same if own_weights else _replication(self.config.get("layer_replication"), self.folder)
        wanted = [replicated(n) for e in self._modules.values() for n in self._weight_names(e["module"])]
        updates = {replicated(f"{e['module']}.weight"): (int(e["B"].shape[0]), int(e["A"].shape[1]))
                   for e in self._modules.values() if "A" in e and "B" in e and len(e["A"].shape) >= 2
                   and len(e["B"].shape) >= 2 and not e["emb"]}
        for e in self._modules.values():  # a LoHa / LoKr update: out × in, or a conv's out × in·k…
            if "parts" in e:
                try:
                    shape = _lycoris_shape(e["parts"])
                except ValueError:  # (its row says so)
                    continue
                updates[replicated(f"{e['module']}.weight")] = (shape[0], math.prod(shape[1:]))
        rename, note = (_flat_align(wanted, other._base, updates) if self._flat
                        else align_names(wanted, other._base))
        if not self._flat:  # an adapter of a transformers 5 model names its modules as they are in memory; the
            # model's save_pretrained folder, as transformers writes them (DINOv2's attention.attention.query)
            rename, note = align_saved(wanted, other._base, lambda: saved_names_of(base), rename, note)
        if rename is None and note:
            raise SourceError(f"{self.folder}: module names matched to the base {base.description}: {note}")
        if rename is None and wanted:
            split = [n for n in other._base if re.search(r"\.experts\.\d+\.", n)]
            if split and all(self._wrapped(e["module"]) for e in self._modules.values()):  # (fused expert LoRAs)
                raise SourceError(
                    f"{self.folder}: its updates are on fused expert stacks ({wanted[0]!r} …), and the base "
                    f"{base.description} holds one tensor per expert ({split[0]!r} …), which htsr does not fuse "
                    "back: give the live model, or a base saved with its fused experts")
            raise SourceError(
                f"{self.folder}: no adapted module's weight is in the base {base.description} (adapter modules like "
                f"{wanted[0]!r}, base tensors like {next(iter(other._base), None)!r}): give the model the adapter "
                "was trained on")
        other._key = (lambda n, r=rename or _same: r(replicated(n))) if replicated is not _same else rename or _same
        if note:
            other.description += f" (module names matched to the base's by {note})"
        if replicated is not _same:
            other.description += " (layer_replication: each adapted layer paired with the base layer it copies)"
        other._square_flip = other._square_layout()
        return other

    def _square_layout(self) -> bool | None:
        """Whether a square layer's base weight is stored in × out (ΔWᵀ is added), or None if that cannot be
        told. peft sets fan_in_fan_out per layer type (True for HF Conv1D, which stores W as in × out; False
        for nn.Linear) and saves one flag for the whole adapter; the base's non-square weights show by their
        shapes which layouts the model has: one layout → it, both → unknown, none → the config's flag."""
        layouts = set()
        for e in self._modules.values():
            if e["emb"] or "A" not in e or "B" not in e or len(e["A"].shape) != 2 or len(e["B"].shape) != 2 \
                    or self._wrapped(e["module"]):
                continue
            out, inp = int(e["B"].shape[0]), int(e["A"].shape[1])
            b = self._base.get(self._key(f"{e['module']}.weight"))
            if out != inp and b is not None and tuple(b.shape) in ((out, inp), (inp, out)):
                layouts.add(tuple(b.shape) == (inp, out))
        return self.fan_in_fan_out if not layouts else layouts.pop() if len(layouts) == 1 else None

    def _wrapped(self, name: str) -> tuple[str, list[str]] | None:
        """For a LoRA on a bare parameter (peft's ``target_parameters``, e.g. fused experts): the module's
        name without peft's nesting of several such LoRAs on one module (``experts.base_layer``), and the
        parameters it may adapt, in peft's order; None for a LoRA on a module's weight."""
        if not self.target_parameters or (".base_layer" not in name and self._targets_module(name)):
            return None  # a module target_modules names: a LoRA on its weight (peft nests parameter LoRAs only)
        unwrapped = name
        while ".base_layer" in unwrapped:  # peft's strip_base_layer_from_name
            head, _, tail = unwrapped.rpartition(".base_layer")
            unwrapped = head + tail
        params: list[str] = []
        for key in self.target_parameters:
            param = key.rpartition(".")[2]
            full = f"{unwrapped}.{param}"
            if (full == key or full.endswith("." + key)) and param not in params:
                params.append(param)
        return (unwrapped, params) if params else None

    def _targets_module(self, name: str) -> bool:
        """Whether ``target_modules`` names the module (peft's check_target_module_exists: a string is a
        regular expression the whole name matches; a list holds names the module's ends with, after a '.').
        'all-linear' names none here: peft saves it expanded to its Linear layers' names, and a module holding
        a target parameter is none of them."""
        targets = self.config.get("target_modules")
        if isinstance(targets, str):
            try:
                return targets != "all-linear" and re.fullmatch(targets, name) is not None
            except re.error:
                return False
        return isinstance(targets, list) and any(
            isinstance(t, str) and (name == t or name.endswith("." + t)) for t in targets)

    def _weight_names(self, name: str) -> list[str]:
        """The tensor names of the base weight(s) a module's LoRA may update."""
        wrapped = self._wrapped(name)
        return [f"{wrapped[0]}.{p}" for p in wrapped[1]] if wrapped else [f"{name}.weight"]

    def _parameter_rows(self, name: str, entry: dict[str, Any], unwrapped: str, params: list[str]
                        ) -> Iterator[TensorRef]:
        """The rows of a LoRA on a bare parameter. peft stores A as (r·E) × in and B as out × (r·E) for a
        parameter of E experts; expert e's update is s·B[:, :, e]·A[e] with B seen as out × r × E and A as
        E × r × in (ParamWrapper.get_delta_weight): one ``lora`` row per expert, ``<parameter>#delta[e]``,
        and with a base the stack's rows ``#base[e]`` and ``#merged[e]``. E = (r·E) / r, r from the config
        (``rank_pattern`` on ``<module>.<parameter>``)."""
        ref = entry["A"]
        A, B = (tuple(int(x) for x in entry[k].shape) for k in "AB")
        if len(params) > 1 and self._base is not None:  # several on one module: the one whose base fits
            fit = [p for p in params if _fits(self._base.get(self._key(f"{unwrapped}.{p}")), A, B,
                                                  _lookup(self.rank_pattern, f"{unwrapped}.{p}", self.r))]
            params = fit if len(fit) == 1 else params
        ranks = {p: _lookup(self.rank_pattern, f"{unwrapped}.{p}", self.r) for p in params}
        settings = {(r, self.scaling(f"{unwrapped}.{p}", r) if r > 0 else math.nan) for p, r in ranks.items()}
        row = f"{unwrapped}.{params[0]}" if len(params) == 1 else name

        def skipped(reason: str) -> Iterator[TensorRef]:
            yield TensorRef(f"{row}#delta", (1, 1), ref.dtype, skipped_loader(reason), "lora")

        if len(A) != 2 or len(B) != 2 or B[1] != A[0] or 0 in A + B:
            yield from skipped(f"LoRA factors of shapes {list(B)} (B) and {list(A)} (A) of a target parameter are "
                               "not a rank-r update; re-save the adapter with peft")
            return
        if len(settings) != 1:
            yield from skipped(f"a LoRA on one of the parameters {', '.join(params)} of {unwrapped}, whose rank or "
                               "scale differ in the config; give the base model (--base) to tell which")
            return
        ((r, scale),) = settings
        if r <= 0 or A[0] % r:
            yield from skipped(f"the config's rank r = {r} is not positive; re-save the adapter" if r <= 0 else
                               f"A has {A[0]} rows, not a multiple of the config's rank r = {r}; re-save the adapter")
            return
        E, out, inp = A[0] // r, B[0], A[1]
        factors = SharedLoad(lambda: (np.asarray(entry["A"].load(), np.float32).reshape(E, r, inp),
                                      np.asarray(entry["B"].load(), np.float32).reshape(out, r, E)), range(E))

        def expert(e: int) -> LowRank:
            return factors.take(e, lambda f: LowRank(np.ascontiguousarray(f[1][:, :, e]), np.array(f[0][e]), scale))

        # each expert's update laid out as the base's experts ([E, in, out]: ΔWᵀ), where a base tells
        b = self._base.get(self._key(row)) if self._base is not None and len(params) == 1 else None
        flip = (b is not None and out != inp and tuple(b.shape) == ((E,) if E > 1 else ()) + (inp, out))
        for e in range(E):
            yield TensorRef(f"{row}#delta[{e}]" if E > 1 else f"{row}#delta", (inp, out) if flip else (out, inp),
                            ref.dtype, (lambda e=e: expert(e).T) if flip else (lambda e=e: expert(e)), "lora")
        if self._base is None:
            return
        if len(params) > 1:
            held = [p for p in params if self._key(f"{unwrapped}.{p}") in self._base]
            yield from _no_base_rows(row, (
                f"the factors fit none or several of the base's {', '.join(params)} of {unwrapped}" if held else
                f"the base has none of {', '.join(f'{unwrapped}.{p}' for p in params)} (a base saved one tensor "
                "per expert, experts.0.w1.weight …, is not fused back): give the live model, or a base saved with "
                "its fused experts"), (out, inp))
            return
        key = self._key(row)
        b = self._base.get(key)
        if b is None:
            yield from _no_base_rows(row, f"the base has no tensor {key}", (out, inp))
            return
        kind = "stack" if E > 1 else (b.kind or infer_kind(b.name, b.shape))
        yield TensorRef(f"{row}#base", b.shape, b.dtype, b.load, kind)

        def merged(b: TensorRef = b) -> np.ndarray:
            W = np.array(b.load(), dtype=np.float32)  # a copy: the sum is made in place
            if W.shape != ((E,) if E > 1 else ()) + W.shape[-2:] or {W.shape[-2], W.shape[-1]} != {out, inp}:
                raise LayerSkipped(f"the update ({E} x {out} x {inp}) does not match the base tensor's {W.shape}")
            # expert e's ΔW is B_e·A_e (out × in) or its transpose, as the parameter is laid out ([E, out, in]
            # or [E, in, out]: peft's is_transposed, a property of the model's class): told by the shape
            if E > 1 and out == inp:
                raise LayerSkipped(f"square experts ({out} x {inp}): the update may be laid out as W or as its "
                                   "transpose (the model class's is_transposed, not saved in the adapter); no merge")
            flip = W.shape[-2:] != (out, inp)
            for e in range(E):
                f = expert(e)
                D = f.dense().T if flip else f.dense()
                if E > 1:
                    W[e] += D
                else:
                    W += D
            return W

        yield TensorRef(f"{row}#merged", b.shape, b.dtype, merged, kind)

    def _group(self) -> tuple[dict[str, dict[str, Any]], list[TensorRef]]:
        """The adapter's modules by row label (the module's name; with several adapters in one file, as in a
        model's own state dict, ``<module>(<adapter>)``), each with its factors ``A``, ``B`` (LoRA) or its
        ``parts`` (LoHa's and LoKr's, by name), DoRA's ``m``, ``emb`` and the ``module`` name; and the file's
        other tensors (setting ``_saved_base``, the base weights saved with the factors, and ``not_weights``, the
        trainable tokens, which are neither)."""
        modules: dict[tuple[str, str | None], dict[str, Any]] = {}
        others = []
        for t in self._refs:
            m = _FACTOR.match(t.name) or _DORA.match(t.name) or _PART.match(t.name)
            if m is None:  # a modules_to_save copy and the like: named as the base model names it
                others.append(dataclasses.replace(t, name=t.name.removeprefix(_PREFIX)))
                continue
            # (peft wraps an nn.MultiheadAttention's out_proj inside the attention's base_layer: attn.base_layer.out_proj
            # is module attn.out_proj, as the model names it; a parameter LoRA's trailing nesting stays)
            module = _NESTED.sub("", m["module"].removeprefix(_PREFIX))
            entry = modules.setdefault((module, m["adapter"]), {"emb": False})
            if "ab" in m.groupdict():
                entry[m["ab"]] = t
                entry["emb"] = entry["emb"] or bool(m["emb"])
            elif "part" in m.groupdict():  # a LoHa / LoKr part
                entry.setdefault("parts", {})[m["part"]] = t
            else:  # DoRA's magnitude vector m: used by the merge
                entry["m"] = t
        for key in [k for k, e in modules.items() if "A" not in e and "B" not in e and "parts" not in e]:
            m = modules.pop(key)["m"]  # a magnitude without factors: an ordinary (1-D) tensor, named as the others
            others.append(dataclasses.replace(m, name=m.name.removeprefix(_PREFIX)))
        # the base weight W peft saves with the factors of an embedding or LM head it adapts (save_embedding_layers,
        # a resized vocabulary): the module's own #base, no layer of the adapter's
        adapted = {name for name, _ in modules}
        self._saved_base = {t.name.removesuffix(_SAVED_BASE): t for t in others
                            if t.name.endswith(_SAVED_BASE) and t.name.removesuffix(_SAVED_BASE) in adapted}
        others = [t for t in others if t.name.removesuffix(_SAVED_BASE) not in self._saved_base]
        # trainable tokens (trainable_token_indices): the new embedding rows of a few tokens, no update of a layer
        self.not_weights = [(t.name, "trainable tokens' own embedding rows (trainable_token_indices), not a layer")
                            for t in others if _TOKENS.search(t.name)]
        others = [t for t in others if not _TOKENS.search(t.name)]
        adapters = sorted({adapter or "unnamed" for _, adapter in modules})
        several = len(adapters) > 1
        if several:  # the folder has one config: which adapter it was written for, the file does not say
            self.description += (f" (adapters {', '.join(adapters)} in one file, every one scaled by this folder's "
                                 "adapter_config.json)")
        return {(f"{name}({adapter or 'unnamed'})" if several else name): {**e, "module": name}
                for (name, adapter), e in modules.items()}, others

    def scaling(self, module: str, r: int | None) -> float:
        """A module's scale: a single-file LoRA's own (from_file), else alpha / r, or alpha / √r with rsLoRA.
        peft's LoKr takes r from the config (``rank_pattern``), as a LoKr of full factors has none in its
        shapes; ``r`` None: the config's r as well."""
        if module in self._module_scale:
            return self._module_scale[module]
        if r is None or self.peft_type == "LOKR":
            r = _lookup(self.rank_pattern, module, self.r)
            if r <= 0:  # (a LoKr's scale divides by the config's r: its row says so, not ZeroDivisionError)
                raise LayerSkipped(f"the config's rank r = {r} is not positive; re-save the adapter")
        alpha = _lookup(self.alpha_pattern, module, self.lora_alpha)
        return alpha / math.sqrt(r) if self.rslora else alpha / r

    def __len__(self) -> int:  # tensors: each update, each base weight (a #merged row is neither), the others
        with_base = len(self._modules) if self._base is not None else len(self._saved_base)
        return len(self._modules) + with_base + len(self._others)

    def _factors(self, name: str, entry: dict[str, Any]) -> Factored | list[Factored]:
        """ΔW as a LowRank; for a conv LoRA (A a conv kernel [r, in, k…], B a 1×… conv [out, r, 1…]) one
        LowRank per kernel position p, ΔW[:, :, p] = scale·B·A[:, :, p], in ``numpy.ndindex`` order. A LoHa /
        LoKr update as :func:`_lycoris_update` forms it, a conv's per position of its row's kernel."""
        if "parts" in entry:
            scale = self.scaling(name, _lycoris_rank(entry["parts"]))
            if not math.isfinite(scale):
                raise LayerSkipped("no scale: the update's alpha is not one finite number (NaN, infinite, or several)")
            parts = {k: t.load() for k, t in entry["parts"].items()}
            return _lycoris_update(parts, scale, self._lycoris_row_shape(entry)[2:], self.peft_type == "LOKR")
        A, B = (np.asarray(entry[k].load(), dtype=np.float32) for k in "AB")
        if entry["emb"]:  # lora_embedding_A is r × vocab, lora_embedding_B is dim × r: ΔW = (B·A)ᵀ
            A, B = B.T, A.T
        conv = A.ndim in (3, 4, 5) and B.ndim == A.ndim and all(s == 1 for s in B.shape[2:])
        if conv:
            B = B.reshape(B.shape[:2])
        if conv and B.ndim == 2 and 0 < B.shape[1] < A.shape[0] and A.shape[0] % B.shape[1] == 0:
            raise LayerSkipped(f"LoRA on a grouped convolution (B takes {B.shape[1]} of A's {A.shape[0]} channels: "
                               f"{A.shape[0] // B.shape[1]} groups), whose update htsr does not form")
        if not (A.ndim == 2 or conv) or B.ndim != 2 or B.shape[1] != A.shape[0]:
            raise SourceError(f"{self.folder}: {name}: LoRA factors of shapes {entry['B'].shape} (B) and "
                              f"{entry['A'].shape} (A) do not multiply; re-save the adapter with peft")
        scale = self.scaling(name, A.shape[0])
        if not math.isfinite(scale):
            raise LayerSkipped("no scale: the LoRA's alpha is not one finite number (NaN, infinite, or several)")
        if conv:
            return [LowRank(B, np.ascontiguousarray(A[(slice(None), slice(None)) + p]), scale)
                    for p in np.ndindex(*A.shape[2:])]
        return LowRank(B, A, scale)

    def _dense_delta(self, name: str, entry: dict[str, Any]) -> np.ndarray:
        """ΔW as a float32 array: out × in, or out × in × k… for a conv LoRA."""
        f = self._factors(name, entry)
        if isinstance(f, Factored):
            return f.dense()
        kernel = self._lycoris_row_shape(entry)[2:] if "parts" in entry else tuple(int(s) for s in entry["A"].shape[2:])
        return np.stack([m.dense() for m in f], axis=-1).reshape(f[0].shape + kernel)

    def _base_ref(self, name: str) -> TensorRef | None:
        """The base tensor of a module (``<module>.weight``; an ``nn.MultiheadAttention``'s ``in_proj_weight``, which
        peft's LoRA on the attention updates; or the module's own name: a bare parameter)."""
        return (self._base.get(self._key(f"{name}.weight")) or self._base.get(self._key(f"{name}.in_proj_weight"))
                or self._base.get(self._key(name)))

    def _no_base(self, name: str) -> str:
        """Why a module has no base tensor (:meth:`_base_ref` found none)."""
        return (f"no base tensor of the update's shape is {name} with '_' read as '.'" if self._flat
                else f"the base has no tensor {self._key(f'{name}.weight')}")

    def _lycoris_row_shape(self, entry: dict[str, Any]) -> tuple[int, ...]:
        """A LoHa / LoKr update's row shape: its parts' (:func:`_lycoris_shape`), or with a base the base conv
        kernel's shape its flattened (out, in·k…) update is (a Conv1d's Tucker update, out × in × k × 1, is the
        base's out × in × k, and without a base, a peft adapter's); ValueError if the parts do not fit together."""
        stored = _lycoris_shape(entry["parts"])
        if self.peft_type != "LORA" and len(stored) == 4 and stored[3] == 1 and {"hada_t1", "lokr_t2"} & set(
                entry["parts"]):  # peft gives a Conv1d's Tucker core a kernel k × 1 (its make_weight_cp is 2-D)
            stored = stored[:3]
        b = self._base_ref(entry["module"]) if self._base is not None else None
        shape = tuple(int(x) for x in b.shape) if b is not None else ()
        if len(shape) > 2 and shape[0] == stored[0] and math.prod(shape[1:]) == math.prod(stored[1:]) and (
                len(stored) == 2 or shape[1] == stored[1]):
            return shape
        return stored

    def _lycoris_rows(self, label: str, entry: dict[str, Any]) -> Iterator[TensorRef]:
        """A LoHa / LoKr module's ``#delta`` row (its update from its parts) and, with a base, ``#base`` and
        ``#merged`` (W + ΔW; these layers are Linear and Conv, stored out × in (× k…), as the update is)."""
        name, ref = entry["module"], next(iter(entry["parts"].values()))
        if "A" in entry or "B" in entry:
            yield TensorRef(f"{label}#delta", (1, 1), ref.dtype, skipped_loader(
                "LoRA factors and LoHa / LoKr parts on one module; re-save the adapter"), "lora")
            return
        try:
            shape = self._lycoris_row_shape(entry)
        except ValueError as e:
            yield TensorRef(f"{label}#delta", (1, 1), ref.dtype, skipped_loader(f"{e}; re-save the adapter"), "lora")
            return
        yield TensorRef(f"{label}#delta", shape, ref.dtype, lambda: self._factors(name, entry), "lora")
        if self._base is None:
            return
        b = self._base_ref(name)
        if b is None or tuple(b.shape) != shape:
            yield from _no_base_rows(label, (
                f"the base tensor {b.name} is {'x'.join(map(str, b.shape))}, not the update's "
                f"{'x'.join(map(str, shape))}: another layer's, no base of this one" if b is not None else
                self._no_base(name)), shape)
            return
        kind = b.kind or infer_kind(b.name, b.shape)
        yield TensorRef(f"{label}#base", b.shape, b.dtype, b.load, kind)
        if name in self._unmerged:
            yield TensorRef(f"{label}#merged", b.shape, b.dtype, skipped_loader(self._unmerged[name]), kind)
            return

        def merged(b: TensorRef = b) -> np.ndarray:
            return np.asarray(b.load(), dtype=np.float32) + self._dense_delta(name, entry)

        yield TensorRef(f"{label}#merged", b.shape, b.dtype, merged, kind)

    def __iter__(self) -> Iterator[TensorRef]:
        for label, entry in self._modules.items():
            name = entry["module"]  # label is the row's name: the module's, and the adapter's if several
            if "parts" in entry:
                yield from self._lycoris_rows(label, entry)
                continue
            missing = [k for k in "AB" if k not in entry]
            ref = entry.get("A") or entry.get("B")
            if missing:  # (a row of the update's shape, which one factor does not tell)
                yield TensorRef(f"{label}#delta", (1, 1), ref.dtype,
                                skipped_loader(f"lora_{missing[0]} is missing from the adapter"), "lora")
                continue
            A, B = entry["A"].shape, entry["B"].shape
            if len(A) < 2 or len(B) < 2 or 0 in A + B:
                yield TensorRef(f"{label}#delta", (1, 1), ref.dtype, skipped_loader(
                    f"LoRA factors of shapes {list(B)} (B) and {list(A)} (A) are not a rank-r update; re-save "
                    "the adapter with peft"), "lora")
                continue
            if (wrapped := self._wrapped(name)) is not None:  # a LoRA on a bare parameter: experts
                yield from self._parameter_rows(name, entry, *wrapped)
                continue
            # laid out as the base weight (peft's get_delta_weight): an embedding's vocab x dim, a conv LoRA's
            # [out, in, k…], an in x out layer's (HF Conv1D's) ΔWᵀ
            flip = self._in_by_out(name, entry)
            shape = (A[1], B[0]) if entry["emb"] or flip else (B[0], *A[1:])
            yield TensorRef(f"{label}#delta", tuple(int(s) for s in shape), ref.dtype,
                            skipped_loader(self._moved("the factors hold the part of W it started from, not an "
                                                       "update: convert the adapter (save_pretrained with "
                                                       "path_initial_model_for_weight_conversion) for ΔW"))
                            if self.moves_base else (lambda n=name, e=entry: self._factors(n, e).T) if flip
                            else (lambda n=name, e=entry: self._factors(n, e)), "lora")
            if self._base is not None or name in self._saved_base:
                yield from self._with_base(name, entry, label)
        yield from self._others

    def _in_by_out(self, name: str, entry: dict[str, Any]) -> bool:
        """Whether a module's 2-D weight is stored in × out (HF Conv1D; peft's fan_in_fan_out), so that its update
        is laid out as ΔWᵀ: told by the base weight's shape where it is not square, else by the other layers'
        (``_square_layout``; without a base the config's flag)."""
        A, B = entry["A"].shape, entry["B"].shape
        if entry["emb"] or len(A) != 2 or len(B) != 2:
            return False
        out, inp = int(B[0]), int(A[1])
        b = self._saved_base.get(name) or (self._base_ref(name) if self._base is not None else None)
        if out != inp and b is not None and tuple(b.shape) in ((out, inp), (inp, out)):
            return tuple(b.shape) == (inp, out)
        return bool(self._square_flip)

    def _moved(self, what: str) -> str:
        return f"init_lora_weights {self.moves_base!r}: {what}"

    def _with_base(self, name: str, entry: dict[str, Any], label: str) -> Iterator[TensorRef]:
        saved = self._saved_base.get(name)  # (a resized vocabulary's W is the adapter's, not the base model's)
        b = saved or self._base_ref(name)
        A, B = entry["A"].shape, entry["B"].shape
        update = (int(A[1]), int(B[0])) if entry["emb"] else (int(B[0]), int(A[1]))
        shape = update if entry["emb"] else (*update, *(int(k) for k in A[2:]))  # (a conv LoRA's kernel)
        kind = "embedding" if entry["emb"] else None
        if b is None:
            yield from _no_base_rows(label, self._no_base(name), shape, kind)
            return
        if len(b.shape) < 2 or tuple(b.shape[:2]) not in (update, update[::-1]):
            yield from _no_base_rows(label, f"the base tensor {b.name} is {'x'.join(map(str, b.shape))}, not the "
                                            f"update's {update[0]}x{update[1]}: another layer's, no base of this one",
                                     shape, kind)
            return
        kind = ("embedding" if entry["emb"] else infer_kind(f"{name}.weight", b.shape)) if saved else (
            b.kind or infer_kind(b.name, b.shape))
        if self.moves_base and not self._live:  # the pretrained W, but the adapter runs on W less a part of it
            yield TensorRef(f"{label}#base", b.shape, b.dtype, b.load, kind)
            yield TensorRef(f"{label}#merged", b.shape, b.dtype, skipped_loader(self._moved(
                "the model runs on W less the factors' initial part, which the adapter does not hold; no merge")), kind)
            return
        # (a live model's wrapped weight is that residual: its W + ΔW is the model's weight, but not W itself)
        yield TensorRef(f"{label}#base", b.shape, b.dtype, skipped_loader(self._moved(
            "the live model's base weight is W less the factors' initial part, not W")) if self.moves_base else b.load,
                        kind)
        if name in self._unmerged:
            yield TensorRef(f"{label}#merged", b.shape, b.dtype, skipped_loader(self._unmerged[name]), kind)
            return
        dora = entry.get("dora", self.dora)  # (a single-file LoRA's components each say their own)
        if dora and "m" not in entry:
            yield TensorRef(f"{label}#merged", b.shape, b.dtype,
                            skipped_loader("use_dora is set but the adapter has no lora_magnitude_vector"), kind)
            return

        def merged(b: TensorRef = b) -> np.ndarray:
            W = np.asarray(b.load(), dtype=np.float32)
            D = self._dense_delta(name, entry)
            update = D.shape
            flip = False
            if D.shape != W.shape and _unit_kernel_free(D.shape) == _unit_kernel_free(W.shape):
                D = D.reshape(W.shape)  # a 1 × 1 conv's update on a linear layer, or the reverse: reshaped, as
                # kohya's, A1111's and ComfyUI's loaders merge them
            elif D.ndim == 2 and W.ndim == 2:
                # ΔW is out × in (an embedding's already vocab × dim); a fan_in_fan_out layer (HF Conv1D) stores W
                # as in × out, which the shapes tell, or for a square matrix the other layers (_square_layout)
                square = D.shape[0] == D.shape[1] and not entry["emb"]
                square_flip = self._fan_in_fan_out.get(entry["module"], self._square_flip)
                if square and square_flip is None:
                    raise LayerSkipped("a square layer of an adapter on layers of both layouts (HF Conv1D's in x out "
                                       "and nn.Linear's out x in): which this one has is not saved; no merge")
                flip = square_flip if square else D.shape != W.shape
                D = D.T if flip else D
            if D.shape != W.shape:
                raise LayerSkipped(f"the update's shape {update} does not match the base tensor's {W.shape}")
            V = W + D
            if dora:
                # the output axis: an embedding's dim (W is vocab × dim) and an in × out layer's last axis
                V = _dora_rescale(V, np.asarray(entry["m"].load(), dtype=np.float32), 1 if entry["emb"] or flip else 0)
            return V

        yield TensorRef(f"{label}#merged", b.shape, b.dtype, merged, kind)


def _unit_kernel_free(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape without the kernel axes of a 1 × 1 (× 1) conv: (out, in, 1, 1) is (out, in)."""
    return tuple(shape[:2]) if len(shape) > 2 and all(d == 1 for d in shape[2:]) else tuple(shape)


def _lycoris_rank(parts: dict[str, Any]) -> int | None:
    """The r of a LoHa / LoKr update's scale alpha / r, as ComfyUI and A1111 read a LyCORIS file: a low-rank
    pair's inner size (LoKr's second pair's first); None for a LoKr of two full factors (LyCORIS: scale 1)."""
    for key in ("hada_w1_b", "lokr_w2_b", "lokr_w1_b"):
        if key in parts and len(parts[key].shape) >= 1:
            return int(parts[key].shape[0])
    return None


#: the parts a LoHa / LoKr update needs, by its form (a Tucker core or not; LoKr's factors full or low-rank)
_LOHA = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
_LOKR_1 = (("lokr_w1",), ("lokr_w1_a", "lokr_w1_b"))
_LOKR_2 = (("lokr_w2",), ("lokr_t2", "lokr_w2_a", "lokr_w2_b"), ("lokr_w2_a", "lokr_w2_b"))


def _lycoris_shape(refs: dict[str, TensorRef]) -> tuple[int, ...]:
    """The shape of a LoHa / LoKr update from its parts' shapes: (out, in) for a linear layer, and for a conv
    (out, in, k…) when a Tucker core or a full conv factor gives its kernel, else the flattened (out, in·k…) it
    is stored as; ValueError saying what does not fit."""
    parts = {k: tuple(int(x) for x in t.shape) for k, t in refs.items()}
    names = set(parts)
    empty = [k for k, v in sorted(parts.items()) if 0 in v]
    if empty:
        raise ValueError(f"{', '.join(f'{k} {list(parts[k])}' for k in empty)}: parts of size 0, no update")
    if names & set(_LOHA):
        tucker = {"hada_t1", "hada_t2"} & names
        if names != set(_LOHA) | ({"hada_t1", "hada_t2"} if tucker else set()):
            raise ValueError(f"a LoHa update needs {', '.join(_LOHA)} (and hada_t1, hada_t2 with a Tucker core), "
                             f"not {', '.join(sorted(names))}")
        (o1, r1), (q1, n1), (o2, r2), (q2, n2) = (_dims(parts, k) for k in _LOHA)
        if not tucker and r1 == q1 and r2 == q2 and o1 == o2 and n1 == n2:
            return o1, n1
        if tucker:  # w_a is r × out, w_b r' × in, t r × r' × k…
            t1, t2 = parts["hada_t1"], parts["hada_t2"]
            if (len(t1) > 2 and t1[2:] == t2[2:] and t1[:2] == (o1, q1) and (o2, q2) == t2[:2] and r1 == r2
                    and n1 == n2):
                return (r1, n1, *t1[2:])
        raise ValueError("LoHa parts of shapes " + ", ".join(f"{k} {list(v)}" for k, v in sorted(parts.items()))
                         + " do not fit together")
    first = next((f for f in _LOKR_1 if set(f) <= names), None)
    second = next((f for f in _LOKR_2 if set(f) <= names), None)
    if first is None or second is None or names != set(first) | set(second):
        raise ValueError("a LoKr update needs lokr_w1 (or lokr_w1_a, lokr_w1_b) and lokr_w2 (or lokr_w2_a, "
                         f"lokr_w2_b, with lokr_t2 for a Tucker core), not {', '.join(sorted(names))}")
    fits = True
    if len(first) == 1:
        a, c = _dims(parts, "lokr_w1")
    else:
        (a, r), (q, c) = _dims(parts, "lokr_w1_a"), _dims(parts, "lokr_w1_b")
        fits = r == q
    if len(second) == 1:
        w2 = parts["lokr_w2"]
        if len(w2) < 2:
            raise ValueError(f"lokr_w2 of shape {list(w2)} is not a matrix or a conv kernel")
        b, d, kernel = w2[0], w2[1], w2[2:]
    elif len(second) == 3:  # w2_a is r × b, w2_b r' × d, t2 r × r' × k…
        t2, (r, b), (q, d) = parts["lokr_t2"], _dims(parts, "lokr_w2_a"), _dims(parts, "lokr_w2_b")
        fits, kernel = fits and len(t2) > 2 and t2[:2] == (r, q), t2[2:]
    else:  # w2_b is r × d, or r × d·k… (a conv's, flattened), or r × d × k… (LyCORIS's functional API)
        (b, r), w2b = _dims(parts, "lokr_w2_a"), parts["lokr_w2_b"]
        if len(w2b) < 2:
            raise ValueError(f"lokr_w2_b of shape {list(w2b)} is not a matrix or a conv kernel")
        q, d, kernel = w2b[0], w2b[1], w2b[2:]
        fits = fits and r == q
    if not fits:
        raise ValueError("LoKr parts of shapes " + ", ".join(f"{k} {list(v)}" for k, v in sorted(parts.items()))
                         + " do not fit together")
    return (a * b, c * d, *kernel)


def _dims(parts: dict[str, tuple[int, ...]], name: str, n: int = 2) -> tuple[int, ...]:
    if len(parts[name]) != n:
        raise ValueError(f"{name} of shape {list(parts[name])}, where a {n}-D part belongs")
    return parts[name]


def _lycoris_update(parts: dict[str, np.ndarray], scale: float, kernel: tuple[int, ...], peft: bool = False
                    ) -> Factored | list[Factored]:
    """A LoHa / LoKr update from its parts (as peft's get_delta_weight and LyCORIS form it, without forming it):
    LoHa's s·(w1a·w1b) ∘ (w2a·w2b) as one LowRank of rank r1·r2 (:func:`~htsr.factored.hadamard_lowrank`), LoKr's
    s·(w1 ⊗ w2) as a :class:`~htsr.factored.Kronecker`, with w1 = w1a·w1b and w2 = w2a·w2b when low-rank. A
    conv's (``kernel`` its kernel shape, () for a linear layer) is one per kernel position p in ``numpy.ndindex``
    order: a Tucker core's slice t[:, :, p] between the pair (wᵃᵀ·t_p·wᵇ), a full conv factor's slice, or the
    columns of the flattened (out, in·k…) update that hold position p (every K-th, K = the kernel's size).

    ``peft``: a peft LOKR adapter's, whose make_kron lines w1 up with a 4-D w2 only: a Conv1d's full w2 (b × d × k)
    makes torch.kron put w2 first, so that its ΔW_p is w2_p ⊗ w1 (LyCORIS's is w1 ⊗ w2_p; the spectra agree,
    the merges do not)."""
    P = {k: np.asarray(v, dtype=np.float64) for k, v in parts.items()}
    K = math.prod(kernel)
    positions = list(np.ndindex(*kernel)) if kernel else [None]

    def at(x: np.ndarray, i: int, p: tuple[int, ...] | None) -> np.ndarray:  # the i-th kernel position of a part
        if p is None:
            return x
        if x.ndim > 2:  # a Tucker core or a full conv factor: its slice (a Conv1d's core is r × r' × k × 1)
            return x.reshape(*x.shape[:2], -1)[:, :, i]
        return x[:, i::K]  # a flattened conv: the columns of position p

    def pair(t: str, a: str, b: str, i: int, p: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray]:
        if t in P:  # Tucker: (wᵃᵀ·t_p)·wᵇ
            return P[a].T @ at(P[t], i, p), P[b]
        return P[a], at(P[b], i, p)

    out: list[Factored] = []
    for i, p in enumerate(positions):
        if "hada_w1_a" in P:
            out.append(hadamard_lowrank(*pair("hada_t1", "hada_w1_a", "hada_w1_b", i, p),
                                        *pair("hada_t2", "hada_w2_a", "hada_w2_b", i, p), scale))
            continue
        W1 = P["lokr_w1"] if "lokr_w1" in P else P["lokr_w1_a"] @ P["lokr_w1_b"]
        W2 = at(P["lokr_w2"], i, p) if "lokr_w2" in P else np.matmul(*pair("lokr_t2", "lokr_w2_a", "lokr_w2_b", i, p))
        W2 = np.ascontiguousarray(W2)
        # rank(w1 ⊗ w2) = rank(w1)·rank(w2), each at most its pair's inner size (a Tucker core's sides)
        r1 = min(*W1.shape, *P["lokr_w1_b"].shape[:1]) if "lokr_w1_b" in P else min(W1.shape)
        r2 = min(*W2.shape, *(P["lokr_t2"].shape[:2] if "lokr_t2" in P else P["lokr_w2_b"].shape[:1]
                              if "lokr_w2_b" in P else ()))
        bound = r1 * r2
        out.append(Kronecker(W2, W1, scale, bound) if peft and P.get("lokr_w2", W1).ndim == 3
                   else Kronecker(W1, W2, scale, bound))
    return out if kernel else out[0]


def _no_base_rows(row: str, reason: str, shape: tuple[int, ...], kind: str | None = None) -> Iterator[TensorRef]:
    """The ``#base`` and ``#merged`` rows of a module whose base weight cannot be used, saying why; of the
    update's ``shape`` (the module's, as the adapter has it), typed ``kind`` or by the shape."""
    kind = kind or (infer_kind(f"{row}.weight", shape) or "dense" if len(shape) > 2 else "dense")
    for tag in ("base", "merged"):
        yield TensorRef(f"{row}#{tag}", shape, "float32", skipped_loader(reason), kind)


def _fits(b: TensorRef | None, A: tuple[int, ...], B: tuple[int, ...], r: int) -> bool:
    """Whether factors A ((r·E) × in) and B (out × (r·E)) fit the base parameter ``b`` ([E, out, in] or
    [E, in, out]; a 2-D one [out, in] with E = 1)."""
    if b is None or r <= 0 or A[0] % r or len(b.shape) not in (2, 3):
        return False
    E = A[0] // r
    shape = tuple(int(x) for x in b.shape)
    return (shape[0] == E if len(shape) == 3 else E == 1) and {shape[-2], shape[-1]} == {B[0], A[1]} and (
        len(shape) == 3 or shape == (B[0], A[1]))


def _patterns(cfg_path: str, what: str, pattern: dict[str, Any]) -> list[tuple[re.Pattern[str], Any]]:
    """A config's ``alpha_pattern`` / ``rank_pattern`` as peft's ``get_pattern_key`` reads it: each key a
    regular expression the module name ends with (after a '.'), tried in order."""
    out = []
    for key, value in pattern.items():
        if _NESTED_REPEAT.search(key):  # '(.*.){13}Z' took 24 s on one module name, 3x more per repeat
            raise SourceError(f"{cfg_path}: {what} key {key!r} repeats a group that repeats itself, which a regular "
                              "expression matcher can take exponential time on; write the module names out")
        try:
            out.append((re.compile(rf"(.*\.)?({key})$"), value))
        except re.error as e:
            raise SourceError(f"{cfg_path}: {what} key {key!r} is not a regular expression ({e}), as peft reads "
                              "it; fix the key") from None
    return out


#: a quantified group holding a repeated wildcard ('(.*.){13}', '(.+)+'): catastrophic backtracking (a group
#: of what cannot overlap, '(?:\w+\.)*', is matched in linear time and allowed)
_NESTED_REPEAT = re.compile(r"\((?=[^()]*(?<!\\)\.)[^()]*[*+}][^()]*\)\s*[*+{]")


def _lookup(pattern: list[tuple[re.Pattern[str], Any]], name: str, default: Any) -> Any:
    return next((value for key, value in pattern if key.match(name)), default)


def _same(name: str) -> str:
    return name


#: a decoder's or encoder's layer list, as peft's replicate_layers finds it: ``…layers.<j>.``, ``…encoder.layer.<j>.``,
#: ``…h.<j>.``
_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|encoder\.layer|h)\.(\d+)\.")


def _replication(layer_map: Any, where: str) -> Callable[[str], str]:
    """The map from an adapted module's name to the base module it copies under a config's ``layer_replication``
    (``[[1, 2], [0, 2]]``: the adapted layers 0, 1, 2 are base layers 1, 0, 1); ``_same`` without one."""
    if not layer_map:
        return _same
    try:
        copied = [i for start, end in layer_map for i in range(int(start), int(end))]
    except (TypeError, ValueError, OverflowError):
        raise SourceError(f"{where}: layer_replication must be a list of [start, end] ranges of layers, not "
                          f"{str(layer_map)[:80]}; re-save the adapter") from None

    def base_name(name: str) -> str:
        m = _LAYER_INDEX.search(name)
        j = int(m[1]) if m else -1
        if not 0 <= j < len(copied):
            return name  # (a module outside the layers: the embeddings, the head)
        return f"{name[:m.start(1)]}{copied[j]}{name[m.end(1):]}"

    return base_name


#: kohya-ss's module name prefixes: the network part (unet, a text encoder, a DiT) before the module's path
_FLAT_PREFIX = re.compile(r"^(?:lora|lycoris)_(?:(?:unet|te\d*|transformer|text_encoder(?:_\d)?)_)?")
_FLAT_ROOT = re.compile(r"^(?:lora|lycoris)_")  # (LyCORIS's names may start with the path: transformer_blocks_0…)


def _flat_align(names: list[str], ref: dict[str, TensorRef], updates: dict[str, tuple[int, int]]
                ) -> tuple[Callable[[str], str] | None, str]:
    """A map of kohya-ss names (``lora_unet_down_blocks_0_attentions_0_proj_in.weight``: a module's path with
    ``_`` for ``.``, after its network's prefix) onto the base's tensor names: the base name that, with ``.``
    read as ``_``, is the module's path (``down_blocks.0.attentions.0.proj_in.weight``), else the one that
    ends with it (``model.diffusion_model.…`` in a whole checkpoint); only a base tensor of the update's
    shape (``updates``: out x in) is one, and one base tensor is no two modules' (SDXL's lora_te1_ and
    lora_te2_ paths are alike). A name matched by none, or by two, is left as it is (its rows say the base
    lacks it). None if no name maps, with a note."""
    exact: dict[str, list[str]] = {}
    suffixes: dict[str, list[str]] = {}
    for n in ref:
        if not n.endswith(".weight"):
            continue
        flat = n.removesuffix(".weight").replace(".", "_")
        exact.setdefault(flat, []).append(n)
        for i in (i + 1 for i, c in enumerate(flat) if c == "_"):
            suffixes.setdefault(flat[i:], []).append(n)

    def fits(name: str, base: str) -> bool:  # (a conv's LoHa / LoKr update is stored flattened: out × in·k…)
        shape, update = tuple(ref[base].shape), updates.get(name)
        return update is None or (len(shape) >= 2 and (shape[:2] in (update, update[::-1]) or (
            shape[0] == update[0] and math.prod(shape[1:]) == update[1])))

    rename = {}
    for n in names:
        stem = n.removesuffix(".weight")
        keys = dict.fromkeys((_FLAT_PREFIX.sub("", stem), _FLAT_ROOT.sub("", stem)))
        for table in (exact, suffixes):  # a whole-path match first: 'transformer_blocks_0…' is not 'single_…'
            hits = {b for k in keys for b in table.get(k, ()) if fits(n, b)}
            if hits:
                if len(hits) == 1:
                    rename[n] = hits.pop()
                break
    taken = collections.Counter(rename.values())
    rename = {n: b for n, b in rename.items() if taken[b] == 1}
    if not rename:
        return None, ""
    return (lambda n: rename.get(n, n)), "reading the adapter's '_' as '.'"


def _dora_rescale(V: np.ndarray, magnitude: np.ndarray, out_axis: int) -> np.ndarray:
    """DoRA's merge: every output slice of V = W + ΔW rescaled to its learned magnitude, m / ‖V‖ · V, the
    norm taken over all the other axes (PEFT's ``get_weight_norm``)."""
    m = magnitude.reshape(-1)
    if m.size != V.shape[out_axis]:
        raise LayerSkipped(f"the DoRA magnitude has {m.size} entries for {V.shape[out_axis]} outputs")
    V = np.moveaxis(V, out_axis, 0)
    flat = V.reshape(len(V), -1)
    norm = np.sqrt(np.einsum("ij,ij->i", flat, flat, dtype=np.float64))
    factor = (m / norm).astype(np.float32).reshape((-1,) + (1,) * (V.ndim - 1))
    return np.moveaxis(V * factor, 0, out_axis)
