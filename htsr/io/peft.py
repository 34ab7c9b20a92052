"""PEFT / LoRA adapter folders: ``adapter_config.json`` with ``adapter_model.safetensors`` (or ``.bin``).

No extra of its own: the weights are read by the safetensors (or weights-only torch) reader and the
config with :mod:`json`; neither peft nor transformers is imported.

A LoRA module stores A (``…lora_A.weight``, r × in) and B (``…lora_B.weight``, out × r); embeddings
store ``…lora_embedding_A`` (r × vocab) and ``…lora_embedding_B`` (dim × r). The update is
ΔW = s·B·A with s = lora_alpha / r, or lora_alpha / √r with ``use_rslora`` (PEFT's scalings);
``alpha_pattern`` overrides lora_alpha per module (PEFT's key match: the first key, a regular expression,
that the module name ends with),
and r is read from the factors' shapes, so ``rank_pattern`` needs no lookup. Each update becomes one
row of kind ``lora`` named ``<module>#delta`` whose eigenvalues come from the QR factors of B and Aᵀ
(:func:`htsr.spectra.lowrank_eigenvalues`); the out × in product is never formed. A conv LoRA (A a
conv kernel [r, in, k…], B a 1×1 conv [out, r, 1…]) has ΔW[:, :, p] = s·B·A[:, :, p] at every kernel
position p: one LowRank per position, pooled or per position like the base conv layer's matrices (and
with its WeightWatcher 1/2 scale for 2-D kernels), so its row compares with ``#base``.

With a base model (``analyze(ADAPTER, base=BASE)``, ``--base``) each adapted module also gets the rows
``<module>#base`` (the base weight W) and ``<module>#merged`` (W + ΔW, oriented like W: PEFT's
``fan_in_fan_out`` layers and embeddings store ΔWᵀ). Module names drop PEFT's ``base_model.model.``
prefix so they match the base model's tensor names (``<module>.weight``). A module whose base tensor is
missing or of another shape gets ``skipped: …`` rows, never a wrong merge. A DoRA adapter (``use_dora``)
merges as PEFT does: every output of V = W + ΔW (a Linear's rows, an in × out layer's columns, an
embedding's dims, a conv's output channels) is rescaled to its learned magnitude, m / ‖V‖ · V, with m
read from ``…lora_magnitude_vector``; its ``#delta`` row is still the low-rank direction update s·B·A (the
whole change m / ‖V‖ · V − W needs W, and is full-rank). Other tensors of the adapter (``modules_to_save``
copies) are analysed as ordinary weights.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LayerSkipped, SourceError
from ..matrices import infer_kind
from ..spectra import LowRank
from .base import TensorRef, TensorSource, skipped_loader

__all__ = ["ADAPTER_FILES", "PeftAdapter", "is_peft_folder"]

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_PREFIX = "base_model.model."
# module, factor, optional adapter name (PEFT strips it on save; in-memory state dicts keep it)
# (``lora_B.bias``, PEFT's lora_bias, is a bias of the update, not an adapter named "bias": no factor)
_FACTOR = re.compile(
    r"^(?P<module>.+?)\.lora_(?P<emb>embedding_)?(?P<ab>[AB])(?:\.(?P<adapter>(?!bias$)[^.]+))?(?:\.weight)?$")
_DORA = re.compile(r"^(?P<module>.+?)\.lora_magnitude_vector(?:\..+)?$")


def is_peft_folder(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


class PeftAdapter:
    """A PEFT LoRA adapter folder as a stream of low-rank updates (and, with a base, W and W + ΔW)."""

    def __init__(self, folder: str | Path) -> None:
        from . import (
            open_source,  # the adapter's weights file is read by its own format's reader
        )

        self.folder = Path(folder)
        cfg_path = self.folder / "adapter_config.json"
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SourceError(f"{cfg_path}: not a readable JSON adapter config ({e}); re-save the adapter") from None
        if not isinstance(cfg, dict):
            raise SourceError(f"{cfg_path}: not a JSON object; re-save the adapter")
        peft_type = str(cfg.get("peft_type", "LORA")).upper()
        if peft_type != "LORA":
            raise SourceError(f"{cfg_path}: peft_type {peft_type!r} is not supported (htsr reads LoRA adapters)")
        self.config = cfg
        try:
            self.lora_alpha = float(cfg.get("lora_alpha", 8))  # peft's LoraConfig default
            alpha_pattern = {str(k): float(v) for k, v in (cfg.get("alpha_pattern") or {}).items()}
        except (TypeError, ValueError, AttributeError):
            raise SourceError(f"{cfg_path}: lora_alpha must be a number and alpha_pattern an object of numbers; "
                              "re-save the adapter") from None
        if not all(math.isfinite(a) for a in (self.lora_alpha, *alpha_pattern.values())):
            raise SourceError(f"{cfg_path}: lora_alpha / alpha_pattern must be finite numbers; re-save the adapter")
        # peft's get_pattern_key: a key is a regular expression the module name ends with (after a '.'), and
        # the first key that matches, in the config's order, wins
        self.alpha_pattern: list[tuple[re.Pattern[str], float]] = []
        for key, value in alpha_pattern.items():
            try:
                self.alpha_pattern.append((re.compile(rf"(.*\.)?({key})$"), value))
            except re.error as e:
                raise SourceError(f"{cfg_path}: alpha_pattern key {key!r} is not a regular expression ({e}), as "
                                  "peft reads it; fix the key") from None
        def flag(key: str) -> bool:
            value = cfg.get(key, False)
            if value is not None and not isinstance(value, bool):  # "false" would be true
                raise SourceError(f"{cfg_path}: {key} must be true or false, not {value!r}; re-save the adapter")
            return bool(value)

        self.rslora, self.fan_in_fan_out, self.dora = flag("use_rslora"), flag("fan_in_fan_out"), flag("use_dora")
        weights = next((self.folder / f for f in ADAPTER_FILES if (self.folder / f).is_file()), None)
        if weights is None:
            raise SourceError(f"{self.folder}: adapter folder without {' or '.join(ADAPTER_FILES)}")
        self._refs = list(open_source(weights))
        self._base: dict[str, TensorRef] | None = None  # set by with_base
        self._key = _same  # a module's tensor name -> the base's name (set by with_base)
        self.description = str(self.folder)
        self._modules, self._others = self._group()

    def with_base(self, base: TensorSource) -> PeftAdapter:
        """The same adapter with W and W + ΔW rows from ``base`` (what ``--base`` means for an adapter);
        the config and the adapter's tensor list are not read again."""
        from .delta import align_names

        other = copy.copy(self)
        other._base = {t.name: t for t in base}
        other.description = f"{self.folder} on base {base.description}"
        # names matched as --base matches a model's: exactly, else by one leading component (an adapter
        # trained on a '…ForCausalLM' ('model.layers…') against the bare backbone's 'layers…')
        wanted = [f"{name}.weight" for name in self._modules]
        rename, note = align_names(wanted, other._base)
        if rename is None and wanted:
            raise SourceError(
                f"{self.folder}: no adapted module's weight is in the base {base.description} (adapter modules like "
                f"{wanted[0]!r}, base tensors like {next(iter(other._base), None)!r}): give the model the adapter "
                "was trained on")
        other._key = rename or _same
        if note:
            other.description += f" (module names matched to the base's by {note})"
        return other

    def _group(self) -> tuple[dict[str, dict[str, Any]], list[TensorRef]]:
        modules: dict[str, dict[str, Any]] = {}
        others = []
        for t in self._refs:
            m = _FACTOR.match(t.name)
            if m is not None:
                name = m["module"].removeprefix(_PREFIX)
                modules.setdefault(name, {})[m["ab"]] = t
                modules[name]["emb"] = modules[name].get("emb", False) or bool(m["emb"])
            elif (m := _DORA.match(t.name)) is not None:  # DoRA's magnitude vector m: used by the merge
                modules.setdefault(m["module"].removeprefix(_PREFIX), {})["m"] = t
            else:
                others.append(t)
        magnitudes_only = [n for n, e in modules.items() if "A" not in e and "B" not in e]
        for n in magnitudes_only:  # a magnitude without factors is an ordinary (1-D) tensor of the file
            others.append(modules.pop(n)["m"])
        return modules, others

    def scaling(self, module: str, r: int) -> float:
        alpha = next((value for key, value in self.alpha_pattern if key.match(module)), self.lora_alpha)
        return alpha / math.sqrt(r) if self.rslora else alpha / r

    def __len__(self) -> int:
        return len(self._modules) * (1 if self._base is None else 3) + len(self._others)

    def _factors(self, name: str, entry: dict[str, Any]) -> LowRank | list[LowRank]:
        """ΔW as a LowRank; for a conv LoRA (A a conv kernel [r, in, k…], B a 1×… conv [out, r, 1…]) one
        LowRank per kernel position p, ΔW[:, :, p] = scale·B·A[:, :, p], in ``numpy.ndindex`` order."""
        A, B = (np.asarray(entry[k].load(), dtype=np.float32) for k in "AB")
        if entry["emb"]:  # lora_embedding_A is r × vocab, lora_embedding_B is dim × r: ΔW = (B·A)ᵀ
            A, B = B.T, A.T
        conv = A.ndim in (3, 4, 5) and B.ndim == A.ndim and all(s == 1 for s in B.shape[2:])
        if conv:
            B = B.reshape(B.shape[:2])
        if not (A.ndim == 2 or conv) or B.ndim != 2 or B.shape[1] != A.shape[0]:
            raise SourceError(f"{self.folder}: {name}: LoRA factors of shapes {entry['B'].shape} (B) and "
                              f"{entry['A'].shape} (A) do not multiply; re-save the adapter with peft")
        scale = self.scaling(name, A.shape[0])
        if conv:
            return [LowRank(B, np.ascontiguousarray(A[(slice(None), slice(None)) + p]), scale)
                    for p in np.ndindex(*A.shape[2:])]
        return LowRank(B, A, scale)

    def _dense_delta(self, name: str, entry: dict[str, Any]) -> np.ndarray:
        """ΔW as a float32 array: out × in, or out × in × k… for a conv LoRA."""
        f = self._factors(name, entry)
        if isinstance(f, LowRank):
            return f.dense()
        kernel = tuple(int(s) for s in entry["A"].shape[2:])
        return np.stack([m.dense() for m in f], axis=-1).reshape(f[0].shape + kernel)

    def __iter__(self) -> Iterator[TensorRef]:
        for name, entry in self._modules.items():
            missing = [k for k in "AB" if k not in entry]
            ref = entry.get("A") or entry.get("B")
            if missing:
                yield TensorRef(f"{name}#delta", ref.shape, ref.dtype,
                                skipped_loader(f"lora_{missing[0]} is missing from the adapter"), "lora")
                continue
            A, B = entry["A"].shape, entry["B"].shape
            if len(A) < 2 or len(B) < 2 or 0 in A + B:
                yield TensorRef(f"{name}#delta", (1, 1), ref.dtype, skipped_loader(
                    f"LoRA factors of shapes {list(B)} (B) and {list(A)} (A) are not a rank-r update; re-save "
                    "the adapter with peft"), "lora")
                continue
            shape = (A[1], B[0]) if entry["emb"] else (B[0], *A[1:])  # a conv LoRA: [out, in, k…]
            yield TensorRef(f"{name}#delta", tuple(int(s) for s in shape), ref.dtype,
                            lambda n=name, e=entry: self._factors(n, e), "lora")
            if self._base is not None:
                yield from self._with_base(name, entry)
        yield from self._others

    def _with_base(self, name: str, entry: dict[str, Any]) -> Iterator[TensorRef]:
        key = self._key(f"{name}.weight")
        b = self._base.get(key) or self._base.get(self._key(name))
        if b is None:
            for tag in ("base", "merged"):
                yield TensorRef(f"{name}#{tag}", (1, 1), "float32",
                                skipped_loader(f"the base has no tensor {key}"), "dense")
            return
        kind = b.kind or infer_kind(b.name, b.shape)
        yield TensorRef(f"{name}#base", b.shape, b.dtype, b.load, kind)
        if self.dora and "m" not in entry:
            yield TensorRef(f"{name}#merged", b.shape, b.dtype,
                            skipped_loader("use_dora is set but the adapter has no lora_magnitude_vector"), kind)
            return

        def merged(b: TensorRef = b) -> np.ndarray:
            W = np.asarray(b.load(), dtype=np.float32)
            D = self._dense_delta(name, entry)
            # ΔW is out × in (an embedding's already vocab × dim); a fan_in_fan_out layer (HF Conv1D) stores W
            # as in × out, which only the config tells for a square matrix
            flip = D.ndim == 2 and (self.fan_in_fan_out if D.shape[0] == D.shape[1] else D.shape != W.shape)
            D = D.T if flip else D
            if D.shape != W.shape:
                raise LayerSkipped(f"the update's shape {D.shape} does not match the base tensor's {W.shape}")
            V = W + D
            if self.dora:
                # the output axis: an embedding's dim (W is vocab × dim) and an in × out layer's last axis
                V = _dora_rescale(V, np.asarray(entry["m"].load(), dtype=np.float32), 1 if entry["emb"] or flip else 0)
            return V

        yield TensorRef(f"{name}#merged", b.shape, b.dtype, merged, kind)


def _same(name: str) -> str:
    return name


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
