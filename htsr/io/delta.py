"""Deltas: a model's tensors minus a base model's, matched by exact name (``analyze(MODEL, base=BASE)``).

For every tensor name present in both sources with the same shape, the stream yields a tensor whose
loader reads both and returns W − W_base (in the dtype the two loaders return, float32 for reduced
precisions). Nothing is ever analysed as a delta that is not one: a tensor present in only one of
the two sources, or whose shape differs from the base's, is still listed, but its loader raises
:class:`~htsr.errors.LayerSkipped`, so its row says ``skipped: …`` and why — if it is a weight matrix;
a bias or a norm scale gives no row either way, and keeps its own loader. Base-only tensors come
after the model's, in the base's order. Tied weights: a tensor tied in both sources is one delta; one tied
on one side to a delta and missing on the other (a tied LM head a ``.pt`` holds and a ``save_pretrained``
folder drops) is that delta, analysed once with it; a model's own LM head against a base folder whose config.json
ties it (``tie_word_embeddings``: the folder has no head) is its delta from the base's input embedding.

Names are matched exactly. When no name matches, a leading prefix of up to three name components of the model's
names is dropped, added or replaced, whichever makes the most names match — a task model wraps its base
(``bert.encoder.…`` against the base's ``encoder.…``, a sentence-transformers export's
``model.0.auto_model.encoder.…`` against the encoder's own checkpoint); the description says which
(:func:`align_names`).
If still no name matches, the sources are refused: nothing would be a delta. A tensor equal to its base tensor (a frozen layer) has nothing
to analyse: its row says ``skipped: unchanged …``, not a failed all-zero matrix.

Each source is listed once, when the delta source is made (names and shapes, no tensor data); each
delta reads one tensor of each source, so memory stays at two tensors at a time.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import LayerSkipped, SourceError
from ..tensors import EXPERT, infer_kind
from .base import FLOAT_DTYPES, TensorRef, TensorSource, model_folder, read_json, skipped_loader, unit_roundoff
from .scales import unscaled_integer_weight

__all__ = ["DeltaSource", "align_names"]


class DeltaSource:
    """``model − base`` tensor by tensor (see the module docstring)."""

    def __init__(self, model: TensorSource, base: TensorSource) -> None:
        # each source is listed once (the refs are lazy: no tensor data is read here)
        self._model = list(model)
        base_refs = list(base)
        self.description = f"{model.description} - base {base.description}"
        model_names = [t.name for t in self._model]
        shapes, base_shapes = {t.name: tuple(t.shape) for t in self._model}, {t.name: tuple(t.shape) for t in base_refs}
        same = (lambda a, b: shapes.get(a) == base_shapes.get(b))  # noqa: E731
        rename, note = align_names(model_names, [t.name for t in base_refs], same)
        # (a transformers folder against a live model)
        rename, note = align_saved(model_names, base_shapes, lambda: saved_names_of(base, model), rename, note, same)
        if rename is None and note:  # two renamings as good as each other
            raise SourceError(f"{model.description}: names matched to the base {base.description}: {note}")
        if rename is None:
            raise SourceError(
                f"{model.description}: no tensor name in common with the base {base.description} (model names "
                f"like {model_names[0]!r}, base names like {base_refs[0].name if base_refs else None!r}): "
                "nothing to subtract")
        self._base = {t.name: t for t in base_refs}
        self._key = rename  # a model name -> the base's name
        if note:
            self.description += f" (model names matched to the base's by {note})"
        # a model that unties its LM head, against a tied base's save_pretrained folder (which drops the tied head):
        # the head's delta is against the input embedding the base ties it to
        tied = Counter(t.storage_key for t in self._model if t.storage_key is not None)
        untied = [t.name for t in self._model if _LM_HEAD.search(t.name) and rename(t.name) not in self._base
                  and not (t.storage_key is not None and tied[t.storage_key] > 1)]  # (a tied head: its table's delta)
        for head in untied:
            table = _tied_table(base, base_refs, shapes[head])
            if table is not None:
                self._key = (lambda n, head=head, table=table, key=self._key: table if n == head else key(n))
                self.description += (f" ({head} paired with the base's {table}: its config.json ties its LM head to "
                                     "it, tie_word_embeddings)")

    def __len__(self) -> int:
        matched = {self._key(t.name) for t in self._model}  # in the base's names
        return len(self._model) + sum(1 for n in self._base if n not in matched)

    def __iter__(self) -> Iterator[TensorRef]:
        pairs = [(t, self._base.get(self._key(t.name))) for t in self._model]
        keys = self._tie_keys(pairs)
        # a tensor the model stores tied to a delta and the base does not store (the base's LM head tied to
        # nothing it saved) follows that delta, as the same tensor: analysed once with it
        waiting: dict[tuple, list[TensorRef]] = {}
        delta_of: dict[tuple, TensorRef] = {}  # an anchor's row by its tie key, once yielded

        def following(w: TensorRef, delta: TensorRef) -> TensorRef:  # w read as the delta it is tied to
            return dataclasses.replace(w, loader=delta.loader, resolution=delta.resolution)

        anchors = {k for (t, b), k in zip(pairs, keys) if b is not None and k is not None}
        # the base's tensors of one expert each (experts.3.w1), by layer: a model's fused stack they are not fused into
        base_experts: dict[str, str] = {}
        for name in self._base:
            if _ONE_EXPERT.search(name):
                base_experts.setdefault(_layer_of(name), name)
        seen = set()
        for (t, b), tie in zip(pairs, keys):
            seen.add(self._key(t.name))
            resolution = None
            if (b is None or tuple(b.shape) != tuple(t.shape)) and not _is_matrix(t):
                loader = t.load  # a bias or a norm scale: no row either way (analyze lists it as not analysed)
            elif b is None:
                apart = _experts_apart(t, base_experts)
                loader = skipped_loader(
                    f"only in the model: the base holds its experts one tensor each ({apart} …), which are not fused "
                    "back (not a delta): give the base as the model holds it, fused (the live base model, or its "
                    "state_dict() saved by torch.save or safetensors' save_file)" if apart else
                    "only in the model: the base has no tensor of this name (not a delta)")
            elif tuple(b.shape) != tuple(t.shape):
                loader = skipped_loader(f"shape {tuple(t.shape)} differs from the base's {tuple(b.shape)} (not a delta)")
            else:
                noise: dict[str, float] = {}  # set by the load
                loader = (lambda t=t, b=b, noise=noise: _delta(t, b, noise))
                resolution = (lambda noise=noise: noise["rms"])
            ref = TensorRef(t.name, t.shape, t.dtype, loader, t.kind, resolution=resolution, storage_key=tie)
            if b is None and tie in anchors:
                if tie in delta_of:  # after its delta: the same tensor, so that delta (a filter may keep it alone)
                    yield following(ref, delta_of[tie])
                else:
                    waiting.setdefault(tie, []).append(ref)
                continue
            yield ref
            if b is not None and tie is not None:  # the ones before it, now that their delta is known
                delta_of[tie] = ref
                yield from (following(w, ref) for w in waiting.pop(tie, []))
        for refs in waiting.values():  # (an anchor that was not yielded: none is, but nothing is dropped)
            yield from refs
        tied_base = {b.storage_key: k for (t, b), k in zip(pairs, keys) if b is not None and b.storage_key and k}
        fused = {_layer_of(t.name): t.name for t, b in pairs if b is None and _is_matrix(t) and len(t.shape) == 3
                 and EXPERT.search(t.name)}  # a layer's fused expert stack the base lacks → its name
        for name, b in self._base.items():
            if name not in seen:
                stack = fused.get(_layer_of(name)) if _ONE_EXPERT.search(name) else None
                yield TensorRef(b.name, b.shape, b.dtype, b.load if not _is_matrix(b) else skipped_loader(
                    f"only in the base: one expert's tensor, which the model holds fused ({stack} …): not paired "
                    "(not a delta)" if stack else
                    "only in the base: the model has no tensor of this name (not a delta)"), b.kind,
                    storage_key=tied_base.get(b.storage_key) if b.storage_key else None)

    @staticmethod
    def _tie_keys(pairs: list[tuple[TensorRef, TensorRef | None]]) -> list[tuple | None]:
        """Each model tensor's storage key in the delta stream: tied in both sources (lm_head and wte in the
        model and in the base), one delta; a tensor the model ties to a delta whose own base tensor is missing
        (or the base ties to a delta's base tensor one the model lacks: a tied LM head saved on one side only),
        that delta; else None — two names tied in the model only are two deltas when the base holds both."""
        keys: list[tuple | None] = [(t.storage_key, b.storage_key) if t.storage_key and b is not None and
                                    b.storage_key else None for t, b in pairs]
        by_model: dict[tuple, int] = {}  # a model storage key -> its first tensor with a base tensor
        for i, (t, b) in enumerate(pairs):
            if t.storage_key and b is not None:
                by_model.setdefault(t.storage_key, i)
        model_only = {t.storage_key for t, b in pairs if b is None and t.storage_key}
        base_keys = Counter(b.storage_key for _, b in pairs if b is not None and b.storage_key)
        for i, (t, b) in enumerate(pairs):
            if b is None or keys[i] is not None:
                continue
            if (t.storage_key in model_only and by_model.get(t.storage_key) == i) or (
                    b.storage_key and base_keys[b.storage_key] == 1):  # tied in the base to a tensor alone
                keys[i] = ("delta", t.name)
        for i, (t, b) in enumerate(pairs):
            if b is None and t.storage_key in by_model:
                keys[i] = keys[by_model[t.storage_key]]
        return keys


#: a transformers model's LM head
_LM_HEAD = re.compile(r"(^|\.)lm_head\.weight$")


def _tied_table(base: Any, refs: list[TensorRef], shape: tuple[int, ...]) -> str | None:
    """The base's input embedding of ``shape`` when its folder's config.json ties the LM head to it
    (``tie_word_embeddings`` true, a VLM's in its ``text_config``), the one embedding of that shape; else None."""
    folder = model_folder(getattr(base, "path", None))
    if folder is None:
        return None
    try:
        cfg = read_json(folder / "config.json")
    except (OSError, ValueError, RecursionError):
        return None
    tied = cfg.get("tie_word_embeddings") if isinstance(cfg, dict) else None
    if tied is None and isinstance(cfg, dict) and isinstance(cfg.get("text_config"), dict):
        tied = cfg["text_config"].get("tie_word_embeddings")
    tables = [t.name for t in refs if tuple(t.shape) == tuple(shape)
              and (t.kind or infer_kind(t.name, tuple(t.shape))) == "embedding"]
    return tables[0] if tied is True and len(tables) == 1 else None


#: a tensor of one expert (Mixtral's block_sparse_moe.experts.3.w1, Qwen-MoE's experts.3.gate_proj)
_ONE_EXPERT = re.compile(r"(^|\.)experts\.\d+\.")
_LAYER = re.compile(r"^(.*?(?:^|\.)(?:layers?|h|blocks?)\.\d+)\.")


def _layer_of(name: str) -> str:
    """The block a tensor belongs to ('model.layers.1' of 'model.layers.1.mlp.experts.gate_up_proj'), or ''."""
    m = _LAYER.match(name)
    return m.group(1) if m else ""


def _experts_apart(t: TensorRef, base_experts: dict[str, str]) -> str:
    """For a model's fused expert stack the base lacks, a tensor of one expert the base holds in that block instead
    (its name), else ''."""
    if len(t.shape) != 3 or not EXPERT.search(t.name) or not _layer_of(t.name):
        return ""
    return base_experts.get(_layer_of(t.name), "")


def _is_matrix(t: TensorRef) -> bool:
    """A tensor that gives a row (a weight matrix, conv kernel …), as opposed to a bias, a norm scale or an integer
    buffer (position ids: [1, 512] int64, no embedding; analyze lists it as it lists the model's own)."""
    if t.dtype not in FLOAT_DTYPES and unscaled_integer_weight(t) is None:
        return False
    return (t.kind or infer_kind(t.name, tuple(t.shape))) is not None


def quantization_noise(bits: float) -> float:
    """The rms error of a weight stored in ``bits``-bit codes scaled by its block's largest magnitude, over
    the weights' rms: 2^bits levels span ±absmax, a step Δ = 2·absmax/(2^bits − 1), an error uniform in ±Δ/2
    of rms Δ/√12, and the absmax of a block of 32 Gaussian weights is ≈ 2.4 times their rms (2.35 on average,
    2.39 in rms over blocks; 2.2, used before 2026-12-06, gave estimates 7 % low), so ≈ 1.39 / (2^bits − 1) (int8 0.54 %,
    4-bit 9.2 %): the estimate :func:`rounding` falls back on when the blocks are not known. (Min–max codes over
    groups of 128, GPTQ's, make ≈ 1.6 / (2^bits − 1): this is a rough floor, not a measurement.)"""
    return 2.4 / math.sqrt(3) / (2.0 ** bits - 1)


def _block_steps(blocks: np.ndarray, bits: float) -> np.ndarray:
    """Each block's quantization step Δ (one block a row of ``blocks``): absmax / (2^(bits−1) − 1) where the values
    are multiples of it — a symmetric format's (GGUF Q8_0 / Q4_0, int8 absmax), whose codes a block's own range
    need not span, so that its range over 2^bits − 1 reads Δ 11-30 % small —, else its range over 2^bits − 1 (a
    format with a minimum: Q4_1, GPTQ's zero points)."""
    b = blocks.astype(np.float64)
    top = np.abs(b).max(axis=1)
    span = (b.max(axis=1) - b.min(axis=1)) / (2.0 ** bits - 1)
    sym = top / max(2.0 ** (bits - 1) - 1, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        codes = b / sym[:, None]
        on_grid = np.all(np.abs(codes - np.rint(codes)) < 0.02, axis=1) & (sym > 0)  # (codes of float16 scales)
    return np.where(on_grid, sym, span)


def _block_variance(t: TensorRef, w: np.ndarray) -> np.ndarray | None:
    """The rounding variance Δ²/12 of each block of a quantized tensor's loaded values (blocks of ``quant_block``
    consecutive entries, in C order; 0: one scale for the whole tensor), or None when the blocks are not known."""
    flat = np.ravel(w)
    size = t.quant_block or flat.size
    if t.quant_block is None or flat.size == 0 or flat.size % size:
        return None
    return _block_steps(flat.reshape(-1, size), t.bits) ** 2 / 12


def rounding(t: TensorRef, w: np.ndarray) -> float:
    """The rms rounding of a quantized tensor's loaded values ``w`` (``t.bits`` set): with ``t.quant_block``,
    measured — each block's step Δ (:func:`_block_steps`), rounding to the nearest leaving an error uniform in
    ±Δ/2, rms Δ/√12; without, :func:`quantization_noise` times the values' rms."""
    return _noise(t, np.ravel(w), True)[0]


def _rms(a: np.ndarray) -> float:
    """The entries' rms, by BLAS's norm (no float64 copy of a large tensor); 0 for none."""
    return float(np.linalg.norm(np.ravel(a))) / math.sqrt(a.size) if a.size else 0.0


def _noise(t: TensorRef, w: np.ndarray, quantized: bool) -> tuple[float, tuple[np.ndarray, np.ndarray] | None]:
    """The rounding a tensor's loaded values ``w`` hold: its rms, and for a matrix its variance summed along each
    row and down each column (float64; None for an array that is no matrix). Per entry u²·w²/3 for a float
    (``quantized`` False: its dtype's unit roundoff u), a block's Δ²/12 for a quantized one (:func:`rounding`:
    :func:`quantization_noise` where the blocks are not known; spread evenly then, or where they run across rows)."""
    matrix = w.ndim == 2 and w.size > 0
    if not quantized:
        u2 = unit_roundoff(t.dtype) ** 2 / 3
        if not matrix:
            return math.sqrt(u2) * _rms(w), None
        sq = np.square(w, dtype=np.float32)
        rows = sq.sum(axis=1, dtype=np.float64) * u2
        return math.sqrt(float(rows.sum()) / w.size), (rows, sq.sum(axis=0, dtype=np.float64) * u2)
    var = _block_variance(t, w)
    rms = quantization_noise(t.bits) * _rms(np.ravel(w)) if var is None else float(np.sqrt(np.mean(var)))
    if not matrix:
        return rms, None
    (n_rows, cols), size = w.shape, t.quant_block or w.size
    if var is None or var.size == 1 or cols % size:  # (one scale, or blocks across rows: spread evenly)
        return rms, (np.full(n_rows, cols * rms ** 2), np.full(cols, n_rows * rms ** 2))
    per = var.reshape(n_rows, cols // size)
    return rms, (per.sum(axis=1) * size, np.repeat(per.sum(axis=0), size))


def _delta(t: TensorRef, b: TensorRef, noise: dict[str, float]) -> np.ndarray:
    """W − W_base; ``noise['rms']`` is set to the rounding it holds, as the rms of i.i.d. noise whose largest
    eigenvalue is the rounding's. A fine-tune starts from the stored base and is stored once: the difference holds
    the model's rounding only (not the base's, which both share), its entries rounded to within the model dtype's
    unit roundoff u (float32 2⁻²⁴, bfloat16 2⁻⁸), errors spread evenly in ±u·|w| at most, whose variance is
    u²·w²/3. A quantized tensor (``bits``: GGUF, GPTQ, int8 …) was rounded to its codes on its own: the model's
    :func:`rounding`, and when the model is quantized too, the base's (each quantized apart), added. A float model
    of a quantized base holds none of the base's (it started from the dequantized base).

    Rounding is not i.i.d.: it scales with each entry (a float) or block (codes), so a matrix whose columns differ
    in scale has noise whose largest eigenvalue lies well above the MP edge of its rms (3-13 × on a column-scaled
    1B model's Q8_0 against F16). Of a matrix, the edge is taken as (max_i √Σ_j σ²_ij + max_j √Σ_i σ²_ij)² — the
    bound of Latała and of Bandeira & van Handel on the norm of independent entries of variances σ²_ij, which is
    the MP edge (√rows + √cols)²·σ² when they are equal — and ``noise['rms']`` is the rms that gives it, never
    below the plain rms."""
    w, w0 = t.load(), b.load()
    if np.array_equal(w, w0):
        raise LayerSkipped("unchanged: equal to the base tensor (a frozen layer), no update to analyse")

    rms, sums = _noise(t, np.asarray(w), bool(t.bits))
    # the base's own rounding only when the model was quantized on its own too: a float fine-tune of a
    # quantized base (gpt-oss's MXFP4, a QLoRA merge) starts from the dequantized base, which it holds exactly
    if b.bits and t.bits:
        base, more = _noise(b, np.asarray(w0), True)
        rms = math.hypot(rms, base)
        sums = (sums[0] + more[0], sums[1] + more[1]) if sums is not None and more is not None else None
    if sums is not None:
        rows, cols = np.shape(w)
        edge = math.sqrt(float(sums[0].max())) + math.sqrt(float(sums[1].max()))
        rms = max(rms, edge / (math.sqrt(rows) + math.sqrt(cols)))
    noise["rms"] = rms
    return np.subtract(w, w0)


#: how many leading name components a renaming may span (a sentence-transformers export's 'model.0.auto_model.')
_PREFIX_DEPTH = 3


def _identity(name: str) -> str:
    return name


def align_names(names: list[str], ref: Iterable[str], same: Callable[[str, str], bool] | None = None
                ) -> tuple[Callable[[str], str] | None, str]:
    """A map of ``names`` onto the names of ``ref``, and what it does ("dropping 'bert.'").

    Candidates: the identity, and every change of a leading prefix of up to three components — dropped (a task
    model's ``bert.`` against its base, a sentence-transformers export's ``model.0.auto_model.`` against the
    encoder's own names), added, or replaced (a TorchScript ``_model.`` against an export's ``model.``). The one
    that makes the most names match wins, the identity on a tie; of changes that pair the same names (``a.`` →
    ``c.`` and ``a.b.`` → ``c.b.`` where every matched name is under ``a.b.``), the one of fewest components. A
    change must match a tenth of the names and at least two (a wrapper prefix covers many tensors; a module
    renamed, 'conv186.' as 'c144.', matches its weight and bias by chance) and must not send two names to one
    (T5's 'decoder.' replaced with 'encoder.' would subtract the decoder from the encoder's weights while the
    encoder's own names match as they are).
    None if no name matches either way, or if two changes tie for the most (BART's 'encoder.' and 'decoder.'
    layers have the same suffixes: adding either to an encoder's names matches as many), with a note saying so.
    ``same(name, ref_name)``, when given, says whether two tensors have the same shape: only such pairs count as
    matches (Silero's TorchScript '_model.' and '_model_8k.' each match 8 of an export's 'model.' names, 8 and 6
    of them with the same shape). Changes that tie but touch different components on both sides ('_model.' →
    'model.' and '_model_8k.' → 'model_8k.') are made together.

    The counts come from the names' suffixes after each of their first three components, and only prefixes that
    cover enough names are paired, so the search stays fast on thousands of flat names."""
    ref = set(ref)
    names = list(dict.fromkeys(names))
    own = set(names)
    if not names:
        return None, ""

    def by_prefix(ns: Iterable[str]) -> dict[str, set[str]]:  # 'bert.' -> {'fc.weight', …}; '' -> every name
        out: dict[str, set[str]] = {"": set(ns)}
        for n in out[""]:
            end = -1
            for _ in range(_PREFIX_DEPTH):
                end = n.find(".", end + 1)
                if end < 0:
                    break
                out.setdefault(n[:end + 1], set()).add(n[end + 1:])
        return out

    needed = max(2, math.ceil(0.1 * len(names)))
    # (sorted: a prefix before the longer ones it starts, so that of two changes pairing the same names the
    # shorter is met first)
    mine = {k: v for k, v in sorted(by_prefix(names).items()) if len(v) >= needed}
    theirs = {k: v for k, v in sorted(by_prefix(ref).items()) if len(v) >= needed}
    common = own & ref
    shared = len(common)

    def pairs(old: str, new: str, hits: set[str]) -> frozenset[tuple[str, str]]:
        """The (name, ref name) pairs a change makes: its hits, and the shared names it leaves as they are."""
        return frozenset([(old + h, new + h) for h in hits] + [(n, n) for n in common if not n.startswith(old)])

    best = (shared, _identity, "") if shared else None
    # the changes as good as the best, it first: (old, new, note, the pairs it makes)
    equal: list[tuple[str, str, str, frozenset[tuple[str, str]]]] = []
    for old, rest in mine.items():
        shared_under = sum(old + s in ref for s in rest)
        for new, targets in theirs.items():
            if old == new:
                continue
            hits = rest & targets if len(rest) <= len(targets) else targets & rest
            if same is not None:
                hits = {h for h in hits if same(old + h, new + h)}
            if len(hits) < needed:
                continue
            # names not under `old` keep theirs: they still match where they are shared
            count = len(hits) + shared - shared_under
            if best is not None and (count < best[0] or count == best[0] and not best[2]):
                continue
            # one name each: a changed name must not land on a name another, unchanged, name already has
            if any(new + s in own and not (new + s).startswith(old) for s in rest):
                continue
            note = (f"replacing {old!r} with {new!r}" if old and new else
                    f"dropping {old!r}" if old else f"adding {new!r}")
            paired = pairs(old, new, hits)
            if best is not None and count == best[0]:
                if any(paired == p for _, _, _, p in equal):
                    continue  # one of them, spelt with more components
                equal.append((old, new, note, paired))
                continue

            def swap(n: str, a: str = old, b: str = new) -> str:
                return b + n[len(a):] if n.startswith(a) else n

            best, equal = (count, swap, note), [(old, new, note, paired)]
    tied = equal[1][2] if len(equal) > 1 else ""  # another change as good as the best one
    if best is not None and tied:
        olds, news = [o for o, _, _, _ in equal], [n for _, n, _, _ in equal]
        if all(olds) and all(news) and _apart(olds) and _apart(news):  # changes of different components: all made
            def swaps(n: str) -> str:
                for a, b, _, _ in equal:
                    if n.startswith(a):
                        return b + n[len(a):]
                return n

            return swaps, " and ".join(note for _, _, note, _ in equal)
        return None, (f"ambiguous: {best[2]} and {tied} each match {best[0]} names; rename the tensors so that "
                      "the names themselves match")
    return (best[1], best[2]) if best is not None else (None, "")


def saved_namer(saved: dict[str, str]) -> Callable[[str], str]:
    """A name as a transformers checkpoint spells it, from ``saved`` ({name in memory: name saved}, see
    :func:`htsr.io.torch.checkpoint_names`): the name itself, or under one leading component a task model adds
    ('dinov2.' before a backbone's names), or the name unchanged."""
    spelled = set(saved.values())

    def name(n: str) -> str:
        if n in saved:
            return saved[n]
        if n in spelled:  # (already a checkpoint's name: 'language_model.lm_head' is no task model's 'lm_head')
            return n
        head, dot, rest = n.partition(".")
        return head + dot + saved[rest] if dot and rest in saved else n

    return name


def align_saved(names: list[str], ref: Iterable[str], saved: Callable[[], dict[str, str]],
                rename: Callable[[str], str] | None, note: str, same: Callable[[str, str], bool] | None = None
                ) -> tuple[Callable[[str], str] | None, str]:
    """(rename, note) of :func:`align_names` when it pairs every name; else, when spelling both sides' names as a
    transformers checkpoint does (``saved()``: {name in memory: name saved}, asked for only then) pairs more of them,
    that: a live transformers 5 model, its state dict or a peft adapter against the model's ``save_pretrained``
    folder (Llava's ``model.language_model.*`` against ``language_model.model.*``)."""
    ref = list(ref)
    paired = _count(rename, names, set(ref))
    if paired == len(names) or not (saved := saved()):
        return rename, note
    name = saved_namer(saved)
    theirs = {name(r): r for r in ref}
    if len(theirs) < len(ref):  # (two names spelled as one: no pairing by it)
        return rename, note
    ours = [name(n) for n in names]
    again, how = align_names(ours, theirs, None if same is None else (
        lambda a, b, back=dict(zip(ours, names)): same(back[a], theirs[b])))
    if again is None or _count(again, ours, theirs) <= paired:
        return rename, note
    return ((lambda n: theirs.get(again(name(n)), again(name(n)))),
            "naming both as transformers' checkpoints do" + (f", then {how}" if how else ""))


def saved_names_of(*sources: Any) -> dict[str, str]:
    """{name in memory: name saved} of the transformers model whose folder (or weight file beside its config) the
    first of ``sources`` that has one was read from (:func:`htsr.io.torch.checkpoint_names_of_folder`)."""
    from .torch import checkpoint_names_of_folder

    for src in sources:
        if saved := checkpoint_names_of_folder(getattr(src, "path", None)):
            return saved
    return {}


def _count(rename: Callable[[str], str] | None, names: list[str], ref: Container[str]) -> int:
    return 0 if rename is None else sum(rename(n) in ref for n in names)


def _apart(prefixes: list[str]) -> bool:
    """Whether no prefix (a leading component, with its dot) is another's."""
    return len(set(prefixes)) == len(prefixes) and not any(
        a != b and b.startswith(a) for a in prefixes for b in prefixes)
