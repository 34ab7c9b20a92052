"""From a named weight tensor to the 2-D matrices whose spectra htsr analyses (THEORY §1).

Pure numpy. A :class:`LayerMatrices` describes one row of the result: its name, its kind, the shape
of its matrices, and how to produce them (lazily, so a file source keeps one tensor in memory).

Kinds and conventions (N = larger side, M = smaller side of each matrix):

==========  ==========================================  =============================================
kind        tensor                                      matrices
==========  ==========================================  =============================================
dense       Linear ``[out, in]``, HF Conv1D ``[in, out]``  the tensor itself
embedding   ``[vocab, dim]``                            the tensor itself
rnn         LSTM/GRU ``weight_ih_l*`` / ``weight_hh_l*``  the stacked gate blocks ``[k·hidden, in]``
conv1d      ``[c_out, c_in/groups, k]``                 k matrices ``c_out × c_in/groups``
conv2d      ``[c_out, c_in/groups, kh, kw]``            kh·kw matrices ``c_out × c_in/groups``
stack       3-D ``[E, out, in]`` (e.g. MoE experts)      one row per slice, named ``name[e]``
lora        LoRA factors B ``[out, r]``, A ``[r, in]``    one :class:`~htsr.factored.LowRank` (never formed);
            conv LoRA ``[out, in, k…]``                 one LowRank per kernel position, as a conv layer
==========  ==========================================  =============================================

A fused matrix the user asks to split (option ``split``: q, k and v in one weight, gate and up) is cut along one
side into one row per part, ``name[label]`` (:func:`split_rows`); a LoRA update's parts are its rows of B (or
columns of A), never the product.

Conv layers are pooled by default (all kernel positions' eigenvalues in one spectrum); with
``conv="per_position"`` each position is its own row, named ``name[i]`` or ``name[i,j]``.
WeightWatcher 0.7.7 multiplies the eigenvalues of a pooled Conv2d layer by 1/2 (and by kh·kw/2 per
kernel position when not pooling); htsr does the same by default (``ww_conv_scale``) so log norms and
alpha-hat compare. Conv1d layers are not scaled (WeightWatcher does not analyse them).

For a module the kind comes from the module's class (the reader passes it); for a file, from the
tensor's name and shape (:func:`htsr.tensors.infer_kind`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .errors import HtsrError
from .factored import Factored, LowRank
from .specs import SplitRule
# (what a named tensor is, htsr.tensors; re-exported: htsr.matrices had them)
from .tensors import (EXPERT, HEAD_SPLIT, MAX_CONV_KERNEL, VECTOR, SharedLoad, classify, infer_kind, is_bias_or_buffer,
                      is_recurrent, is_vector, row_name, squeeze_leading)

__all__ = ["MAX_CONV_KERNEL", "VECTOR", "LayerMatrices", "SharedLoad", "aspect_window_shape", "aspect_windows",
           "classify", "infer_kind", "is_bias_or_buffer", "is_recurrent", "is_vector", "layer_matrices", "row_name",
           "split_rows", "unread_tensor_row"]

@dataclass(frozen=True)
class LayerMatrices:
    """One result row: a name, a kind and a lazy list of equally shaped 2-D matrices."""

    name: str
    kind: str
    tensor_shape: tuple[int, ...]
    rows: int
    cols: int
    num_matrices: int
    scale: float  # eigenvalue multiplier (WeightWatcher's Conv2d convention)
    load: Callable[[], Sequence[np.ndarray]]
    #: after load(), the rms rounding its entries carry from their inputs' storage (TensorRef.resolution)
    resolution: Callable[[], float] | None = None
    #: the unit roundoff of the entries' storage when coarser than float32's (bfloat16 2⁻⁸, float8_e4m3fn 2⁻⁴)
    storage_eps: float = 0.0
    #: called once the row will load no more (analysed, or filtered out): a tensor read once for several rows
    #: (an expert stack, a conv's kernel positions) is not kept for it (:class:`SharedLoad`)
    release: Callable[[], None] | None = None

    @property
    def N(self) -> int:
        return max(self.rows, self.cols)

    @property
    def M(self) -> int:
        return min(self.rows, self.cols)

    @property
    def num_evals(self) -> int:
        return self.M * self.num_matrices


def unread_tensor_row(name: str, kind: str, shape: tuple[int, ...], load: Callable[[], Any]) -> LayerMatrices:
    """The one row of a stack or conv tensor the reader cannot read (``load`` raises LayerSkipped): it says
    why once, instead of once per expert or kernel position (a view of stride 0 can claim 2^40 experts over
    a few stored values)."""
    if kind == "stack":
        r, c, n = math.prod(shape[1:-1]), shape[-1], shape[0]
    else:  # a conv: c_out × c_in per kernel position
        r, c, n = shape[0], shape[1], math.prod(shape[2:])
    return LayerMatrices(row_name(name), kind, shape, r, c, n, 1.0, load)


def layer_matrices(
    name: str,
    kind: str,
    shape: tuple[int, ...],
    load: Callable[[], np.ndarray],
    conv: str = "pooled",
    ww_conv_scale: bool = True,
    load_item: Callable[[int], np.ndarray] | None = None,
) -> Iterator[LayerMatrices]:
    """Yield the result rows for one tensor. ``load()`` returns the tensor as a numpy array; for a stack,
    ``load_item(e)``, if given, its e-th matrix alone (each row then reads only its own)."""
    base = row_name(name)
    shape = tuple(int(s) for s in shape)
    # (a conv's c_out may be 1; a stack of one expert is still expert [0]; a batch axis of 1 is no stack)
    keep = kind in ("conv1d", "conv2d", "conv3d") or (kind == "stack" and EXPERT.search(name) is not None)
    sq = shape if keep else squeeze_leading(shape)

    def loaded() -> np.ndarray:
        return np.asarray(load()).reshape(sq)

    if kind == "lora" and len(shape) == 2:  # load() returns a LowRank: its spectrum comes from the factors
        r, c = shape
        yield LayerMatrices(base, kind, shape, r, c, 1, 1.0, lambda: [load()])
    elif kind == "dense" and len(sq) == 3 and HEAD_SPLIT.search(name):
        h, hd = sq[0], sq[1] * sq[2]  # [d_model, n_head, d_head]: o maps the heads to d_model, the others d_model out
        out = name.endswith(".o")
        r, c = (h, hd) if out else (hd, h)
        yield LayerMatrices(base, kind, shape, r, c, 1, 1.0,
                            lambda: [(lambda m: m if out else m.T)(loaded().reshape(h, hd))])
    elif kind in ("dense", "embedding", "rnn") or (kind == "stack" and len(sq) == 2):
        r, c = sq[-2], sq[-1]
        if len(sq) != 2:
            r, c = int(np.prod(sq[:-1])), sq[-1]
        yield LayerMatrices(base, kind, shape, r, c, 1, 1.0, lambda: [loaded().reshape(r, c)])
    elif kind == "stack":
        E, r, c = sq[0], int(np.prod(sq[1:-1])), sq[-1]
        if load_item is not None:
            for e in range(E):
                yield LayerMatrices(f"{base}[{e}]", kind, shape, r, c, 1, 1.0,
                                    lambda e=e: [np.asarray(load_item(e)).reshape(r, c)])
            return
        stack = SharedLoad(lambda: loaded().reshape(E, r, c), range(E))  # read once for all E rows
        for e in range(E):
            yield LayerMatrices(f"{base}[{e}]", kind, shape, r, c, 1, 1.0,
                                lambda e=e: [stack.take(e, lambda t: t[e])], release=lambda e=e: stack.release(e))
    elif kind in ("conv1d", "conv2d", "conv3d", "lora"):  # a conv LoRA: load() returns one LowRank per position
        c_out, c_in = shape[0], shape[1]  # never squeezed: a conv's c_out may be 1
        positions = [tuple(p) for p in np.ndindex(*shape[2:])]
        k = len(positions)
        # WeightWatcher scales Conv2d eigenvalues by 1/2 when pooled and by kh·kw/2 per position
        ww = (kind == "conv2d" or (kind == "lora" and len(shape) == 4)) and ww_conv_scale

        def part(t: Any, p: tuple[int, ...]) -> Any:  # (a conv LoRA's load() is a list of positions' LowRanks)
            return t[positions.index(p)] if kind == "lora" else np.ascontiguousarray(t[(slice(None), slice(None)) + p])

        if conv == "pooled":
            yield LayerMatrices(base, kind, shape, c_out, c_in, k, 0.5 if ww else 1.0,
                                lambda: (lambda t: [part(t, p) for p in positions])(load() if kind == "lora" else loaded()))
        else:
            # the tensor read once for all k rows, dropped when the last one has taken its position; with whether any
            # entry is nonzero (a zero position of a nonzero filter is a zero tap; of an all-zero one, the layer's zero)
            tensor = SharedLoad((lambda: (load(), True)) if kind == "lora" else
                                (lambda: (lambda t: (t, bool(np.any(t))))(loaded())), positions)

            def position(value: tuple[Any, bool], p: tuple[int, ...]) -> Any:
                if not value[1]:
                    raise HtsrError("all-zero matrix (every kernel position of the layer)")
                return part(value[0], p)

            for p in positions:
                label = ",".join(str(i) for i in p)
                yield LayerMatrices(f"{base}[{label}]", kind, shape, c_out, c_in, 1, k / 2.0 if ww else 1.0,
                                    lambda p=p: [tensor.take(p, lambda t, p=p: position(t, p))],
                                    release=lambda p=p: tensor.release(p))
    else:
        raise ValueError(f"unknown layer kind {kind!r}")


def split_rows(lm: LayerMatrices, rule: SplitRule) -> list[LayerMatrices]:
    """The rows of a fused matrix's parts under a ``split`` rule (:class:`~htsr.specs.SplitRule`): one per label,
    named ``name[label]``, each its part's rows (or columns) of the one matrix, which is read once for them all. A
    matrix whose shape the parts do not fit is one row, ``lm``'s, that fails saying why."""
    try:
        axis, length, index = _part_index(rule, lm.rows, lm.cols, lm.kind)
    except ValueError as e:
        message = f"option 'split' rule '{rule.text}' does not fit its {lm.rows} x {lm.cols} matrix: {e}"

        def fail() -> Sequence[np.ndarray]:
            raise HtsrError(message)

        fail.reason = message  # type: ignore[attr-defined]  # (as a reader's raising loader: said whatever the filters)
        return [dataclasses.replace(lm, load=fail)]
    # the matrix, read once for every part; once none wants it, its own row's tensor is released (an expert's stack)
    whole = SharedLoad(lambda: lm.load()[0], rule.labels, done=lm.release)

    def part(W: Any, idx: Any) -> Any:
        if isinstance(W, LowRank):  # a LoRA update's part: the part of a factor, never the out x in product
            return LowRank(W.B[idx], W.A, W.scale) if axis == 0 else LowRank(W.B, W.A[:, idx], W.scale)
        W = W.dense() if isinstance(W, Factored) else W
        return W[idx] if axis == 0 else W[:, idx]

    out = []
    for label, n, idx in zip(rule.labels, length, index):
        r, c = (n, lm.cols) if axis == 0 else (lm.rows, n)
        out.append(dataclasses.replace(lm, name=f"{lm.name}[{label}]", rows=r, cols=c,
                                       load=lambda label=label, idx=idx: [whole.take(label, lambda W: part(W, idx))],
                                       release=lambda label=label: whole.release(label)))
    return out


def _part_index(rule: SplitRule, rows: int, cols: int, kind: str = "dense") -> tuple[int, list[int], list[Any]]:
    """The side (0: rows, 1: columns) a rule's parts lie along, each part's length along it, and its index there: a
    slice, or with groups the part's rows of every group. ValueError where the parts do not fit."""
    k, G = len(rule.labels), rule.groups
    side = ("its rows", "its columns")
    which = "say which side holds the parts with '@0' (rows) or '@1' (columns)"
    groups = f" ({k} parts in each of {G} groups)" if G > 1 else ""
    if rule.sizes is None:  # equal parts of the given side, else of the longer one
        if rule.axis is None and rows == cols and kind != "rnn":
            raise ValueError(f"it is square: {which}")
        axis = rule.axis if rule.axis is not None else 0 if kind == "rnn" else int(cols > rows)  # (gates: rows)
        length = (rows, cols)[axis]
        if length % (k * G):
            raise ValueError(f"{side[axis]}, {length}, are not {k * G} equal parts{groups}")
        sizes = [length // (k * G)] * k
    else:
        sizes = list(rule.sizes)
        total = sum(sizes) * G
        sides = [a for a, n in enumerate((rows, cols)) if n == total and rule.axis in (None, a)]
        if len(sides) != 1:
            raise ValueError(f"the parts' sizes sum to {total}{groups}" + (
                f", as both sides do: {which}" if sides else f", and {side[rule.axis]} are {(rows, cols)[rule.axis]}"
                if rule.axis is not None else ", and neither side is that long"))
        axis = sides[0]
    group = sum(sizes)
    starts = np.cumsum([0, *sizes[:-1]])
    lengths = [z * G for z in sizes]
    if G == 1:
        return axis, lengths, [slice(int(o), int(o + z)) for o, z in zip(starts, sizes)]
    return axis, lengths, [(np.arange(G)[:, None] * group + o + np.arange(z)[None, :]).ravel()
                           for o, z in zip(starts, sizes)]


def aspect_window_shape(N: int, M: int, aspect: float) -> tuple[int, int]:
    """The sides (w_N, w_M) of :func:`aspect_windows`' windows of an N × M matrix (N ≥ M)."""
    wM = max(1, min(M, int(N / aspect + 1e-9)))  # + 1e-9: 110 / 2.2 is 49.99999999999999 in binary
    return min(N, max(1, int(round(aspect * wM)))), wM


def aspect_windows(W: np.ndarray, aspect: float) -> list[np.ndarray]:
    """Submatrices of ``W`` that all have the aspect ratio ``aspect`` (FARMS, Hu et al., ICML 2025).

    With N ≥ M the sides of ``W``, each window is w_N × w_M with w_M = min(M, ⌊N/aspect⌋) and
    w_N = round(aspect·w_M), in ``W``'s own orientation. Windows are laid out on a grid that covers
    ``W``: ⌈N/w_N⌉ × ⌈M/w_M⌉ positions, evenly spaced from one edge to the other (they overlap when the
    sides are not multiples). Pooling the windows' eigenvalues gives an ESD whose random-matrix bulk
    has the same shape (Marchenko–Pastur with Q = aspect) for every layer, whatever its own shape, so
    the tail's alpha compares across layers. A matrix that already has the aspect ratio is one window.
    """
    rows, cols = W.shape
    N, M = max(rows, cols), min(rows, cols)
    wN, wM = aspect_window_shape(N, M, aspect)
    starts_N = np.unique(np.linspace(0, N - wN, -(-N // wN)).round().astype(int))
    starts_M = np.unique(np.linspace(0, M - wM, -(-M // wM)).round().astype(int))
    out = []
    for a in starts_N:
        for b in starts_M:
            if rows >= cols:
                out.append(W[a : a + wN, b : b + wM])
            else:
                out.append(W[b : b + wM, a : a + wN])
    return out
