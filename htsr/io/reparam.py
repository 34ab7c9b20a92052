"""Weights stored as the parts of a reparametrization (``torch.nn.utils``), combined on load.

A model trained with weight norm, spectral norm or pruning keeps no tensor named ``weight``: its checkpoint
holds the parts, and the layer's forward pass uses the weight they make. htsr analyses that weight (the
one WeightWatcher reads from the live module), named ``<module>.weight``, and the parts are not layers:

* **weight norm**: ``<m>.weight_g`` and ``<m>.weight_v`` (``torch.nn.utils.weight_norm``), or
  ``<m>.parametrizations.weight.original0`` and ``original1`` (``parametrizations.weight_norm``):
  W = g · v / ‖v‖, the norm taken over the dimensions along which g has size 1 (all of them for a scalar
  g), as ``torch._weight_norm`` (a live module's weight norm is computed here too, from its parts: the same
  weight to the bit as its saved state dict's). Analysing v alone leaves out the per-row scale g the layer learned
  (wav2vec2's positional conv: alpha 19 for v, 2.5 for W);
* **spectral norm**: ``<m>.weight_orig`` with the power-iteration vectors ``<m>.weight_u`` and
  ``<m>.weight_v`` (``torch.nn.utils.spectral_norm``), or ``<m>.parametrizations.weight.original`` with
  ``<m>.parametrizations.weight.0._u`` and ``._v``: W = W_orig / σ, σ = uᵀ·W_mat·v with W_mat the
  original reshaped to [size along u, rest] (along dim 0, or 1: ConvTranspose's, or a Linear's given dim=1; if
  both fit, the one u points along) — the σ the module divides by in eval mode (a live module's
  too, whatever its mode: in train mode, reading its weight would run a power iteration that writes u and v);
* **pruning**: ``<m>.weight_orig`` and its 0/1 ``<m>.weight_mask`` (``torch.nn.utils.prune``):
  W = W_orig · mask (the mask is no layer);
* **orthogonal** (``parametrizations.orthogonal``, which also stores ``parametrizations.weight.0.base``):
  the weight is a function of the unconstrained original that depends on the map the module was built
  with, so the row is ``skipped`` (analyse the live module, which gives the weight itself); so is a
  ``parametrizations.<name>.original`` of any other parametrization (a user's ``register_parametrization``:
  its function is code, which no checkpoint holds).

Any parameter name works as ``weight`` does (``weight_hh_l0_g`` …). The combined weight keeps the
original's dtype name and kind.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from ..errors import SourceError
from .base import TensorRef, skipped_loader

__all__ = ["reparametrized_refs", "spectral_norm", "weight_norm"]

# <module>.parametrizations.<tensor>.original…, or without a module for a parametrized root module
_PARAM = re.compile(r"^(?:(.*)\.)?parametrizations\.([^.]+)\.(original[01]?)$")


def _weight_norm(g: TensorRef, v: TensorRef, name: str) -> np.ndarray:
    return weight_norm(g.load(), v.load())


def weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """W = g · v / ‖v‖ (see the module docstring), in the parts' precision (at least float32): the one
    computation for a checkpoint's parts and a live module's, so both give the same weight to the bit."""
    gv, vv = np.asarray(g), np.asarray(v)
    dtype = np.result_type(gv.dtype, vv.dtype, np.float32)
    gv, vv = gv.astype(dtype, copy=False), vv.astype(dtype, copy=False)
    if gv.ndim == vv.ndim and gv.size > 1:
        axes = tuple(i for i, a in enumerate(gv.shape) if a == 1)
    else:  # a scalar g: the norm of the whole tensor
        axes, gv = tuple(range(vv.ndim)), gv.reshape(())
    with np.errstate(divide="ignore", invalid="ignore"):
        return vv * (gv / np.sqrt(np.sum(vv * vv, axis=axes, keepdims=True)))


def _spectral_norm(orig: TensorRef, u: TensorRef, v: TensorRef, name: str) -> np.ndarray:
    return spectral_norm(orig.load(), u.load(), v.load(), f"{name}: the spectral norm uᵀ·W·v of {orig.name}")


def spectral_norm(w: np.ndarray, u: np.ndarray, v: np.ndarray, what: str) -> np.ndarray:
    """W = W_orig / σ with σ = uᵀ·W_mat·v (see the module docstring): the one computation for a checkpoint's
    parts and a live module's (whose own forward pass in train mode would first run a power iteration,
    writing its u and v), so both give the same weight to the bit; ``what`` names σ in the error."""
    w = np.asarray(w)
    w = w.astype(np.result_type(w.dtype, np.float32), copy=False)
    uu, vv = np.asarray(u, np.float64).reshape(-1), np.asarray(v, np.float64).reshape(-1)
    # the dim u's length fits (_dims_of); if both do (as many input as output channels), the one whose W_mat·v
    # points along u, as power iteration leaves it (dim 0 when neither does)
    mats = [np.moveaxis(w, d, 0).reshape(uu.size, -1).astype(np.float64)
            for d in _dims_of(w.shape, uu.size)]  # (_vectors_fit says there is one)

    def alignment(mat: np.ndarray) -> float:
        wv = mat @ vv
        return abs(float(uu @ wv)) / (float(np.linalg.norm(wv)) or 1.0)

    best = max(mats, key=alignment)
    if alignment(best) < 0.5:  # u and v never iterated (saved before a training step: random, ~1/√n along either):
        best = mats[0]  # torch's default dim, 0 (a ConvTranspose's 1 fits alone unless it has as many in as out)
    sigma = float(uu @ (best @ vv))
    if not (math.isfinite(sigma) and sigma != 0.0):
        raise SourceError(f"{what} is {sigma}; not a weight to divide by it")
    return w / w.dtype.type(sigma)


def _masked(orig: TensorRef, mask: TensorRef) -> np.ndarray:
    w = np.asarray(orig.load())
    return w * np.asarray(mask.load()).astype(w.dtype, copy=False)


def _combined(name: str, like: TensorRef, load, *parts: TensorRef) -> TensorRef:
    """The weight ``name`` made of ``like`` and the other ``parts``: tied to another such weight (a module
    held under two names) when all its parts are the same tensors."""
    keys = tuple(p.storage_key for p in (like, *parts))
    return TensorRef(name, tuple(like.shape), like.dtype, load, like.kind,
                     storage_key=keys if all(k is not None for k in keys) else None)


def _norm_fits(g: TensorRef, v: TensorRef) -> bool:
    """g broadcasts over v as weight norm's magnitude: a scalar, or v's shape with 1 on the normed dims."""
    return math.prod(g.shape) == 1 or (len(g.shape) == len(v.shape)
                                       and all(a in (1, b) for a, b in zip(g.shape, v.shape)))


# the parameters torch's weight_norm is put on: weight, and an RNN's weight_ih_l0 … (RWKV's time_mix_g and
# time_mix_v, of one shape, are two parameters, no norm's parts)
_WEIGHT_PARAM = re.compile(r"(^|\.)weight(_[a-z]+(_l\d+)?(_reverse)?)?$")


def _dims_of(shape: tuple[int, ...], nu: int) -> list[int]:
    """The dims spectral norm may have normalised a weight of ``shape`` along with a u of ``nu`` values:
    dim 0 (torch's default), or dim 1 (its choice for ConvTranspose, and anyone's ``spectral_norm(m, dim=1)``:
    a Linear's too, whose W_mat is then Wᵀ)."""
    return [d for d in range(min(2, len(shape))) if shape[d] == nu]


def _vectors_fit(orig: TensorRef, u: TensorRef, v: TensorRef) -> bool:
    """u and v are spectral norm's power-iteration vectors of ``orig`` reshaped along one of its dims."""
    nu, nv = math.prod(u.shape), math.prod(v.shape)
    return bool(_dims_of(tuple(orig.shape), nu)) and math.prod(orig.shape) == nu * nv


def reparametrized_refs(by_name: Mapping[str, TensorRef]) -> tuple[dict[str, TensorRef], set[str]]:
    """{name of the part that stands for the weight: the weight's ref} and the names of all parts, for each
    weight stored as a reparametrization's parts (module docstring)."""
    out: dict[str, TensorRef] = {}
    used: set[str] = set()

    def weight_norm(name: str, g: TensorRef, v: TensorRef | None) -> None:
        if v is not None and _norm_fits(g, v):
            out[v.name] = _combined(name, v, lambda g=g, v=v, name=name: _weight_norm(g, v, name), g)
            used.update((g.name, v.name))

    def spectral_norm(name: str, orig: TensorRef, u: TensorRef | None, v: TensorRef | None) -> bool:
        if u is None or v is None or not _vectors_fit(orig, u, v):
            return False
        out[orig.name] = _combined(name, orig, lambda o=orig, u=u, v=v, name=name: _spectral_norm(o, u, v, name),
                                   u, v)
        used.update((orig.name, u.name, v.name))
        return True

    for key, r in by_name.items():
        if (m := _PARAM.match(key)) is not None:
            module, pname, part = m.groups()
            name = f"{module}.{pname}" if module else pname
            if part == "original0":  # parametrizations.weight_norm
                weight_norm(name, r, by_name.get(key[:-1] + "1"))
            elif part == "original":  # parametrizations.spectral_norm or .orthogonal
                stem = key[: -len("original")] + "0."
                base = by_name.get(stem + "base")
                if not spectral_norm(name, r, by_name.get(stem + "_u"), by_name.get(stem + "_v")):
                    # the weight is a function of the original that the checkpoint does not say
                    what = ("an orthogonal parametrization's unconstrained" if base is not None
                            else "the original of a parametrization htsr does not know (its function is code, not "
                                 "in the checkpoint):")
                    out[key] = TensorRef(name, tuple(r.shape), r.dtype, skipped_loader(
                        f"{what} {key}, not the weight the layer uses: analyse the live module, which gives the "
                        "weight"), r.kind)
                    used.update((key, base.name) if base is not None else (key,))
        elif key.endswith("_g") and _WEIGHT_PARAM.search(key[:-2]):  # torch.nn.utils.weight_norm
            weight_norm(key[:-2], r, by_name.get(key[:-2] + "_v"))
        elif key.endswith("_orig"):
            stem = key[: -len("_orig")]
            if not spectral_norm(stem, r, by_name.get(stem + "_u"), by_name.get(stem + "_v")):
                mask = by_name.get(stem + "_mask")  # torch.nn.utils.prune
                if mask is not None and tuple(mask.shape) == tuple(r.shape):
                    out[key] = _combined(stem, r, lambda o=r, m=mask: _masked(o, m), mask)
                    used.update((key, mask.name))
    return out, used
