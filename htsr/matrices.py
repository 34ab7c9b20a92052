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

Conv layers are pooled by default (all kernel positions' eigenvalues in one spectrum); with
``conv="per_position"`` each position is its own row, named ``name[i]`` or ``name[i,j]``.
WeightWatcher 0.7.7 multiplies the eigenvalues of a pooled Conv2d layer by 1/2 (and by kh·kw/2 per
kernel position when not pooling); htsr does the same by default (``ww_conv_scale``) so log norms and
alpha-hat compare. Conv1d layers are not scaled (WeightWatcher does not analyse them).

For a module the kind comes from the module's class (the reader passes it); for a file, from the
tensor's name and shape (:func:`infer_kind`).
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .errors import HtsrError

__all__ = ["MAX_CONV_KERNEL", "LayerMatrices", "aspect_window_shape", "aspect_windows", "classify", "infer_kind", "is_recurrent", "layer_matrices", "row_name"]

# the module that holds the weight is named as an embedding table (word_embeddings, embed_tokens, tok_emb,
# wte …; T5's "shared", not a mixture's shared_expert; T5's and LongT5's (global_)relative_attention_bias, an
# nn.Embedding of buckets × heads, as its Flax copy says). A projection named after embeddings is a Linear:
# electra.embeddings_project, ALBERT's embedding_hidden_mapping_in, GPT-NeoX's embed_out head, a time_embedding's
# linear_1 (the enclosing module's name does not make its Linear layers tables); Swin's and BEiT's
# relative_position_bias_table [positions, heads], a table of biases as T5's is
# (a table in a ModuleList keeps its index: MusicGen's embed_tokens.0 … one per codebook)
_EMBEDDING = re.compile(r"(^|\.)((\w+_)?(emb|embed|embeds|embedding|embed_positions|embed_in)"
                        r"|(\w+_)?(embeddings|embed_tokens)(\.\d+)?"
                        r"|wte|wpe|tok_embeddings|shared|\w*relative_attention_bias|relative_position_bias_table"
                        r"|position_embeddings\.weights\.\d+)"  # (Reformer's axial factors: [512, 1, 64], [1, 1024, 192])
                        r"(\.\w+)?$", re.IGNORECASE)
_AXIAL = re.compile(r"(^|\.)position_embeddings\.weights\.\d+$")
# XLNet's and Funnel's attention projections, [d_model, n_head, d_head] parameters read by einsum (q, k, v, r:
# "ibh,hnd->ibnd"; o: "ibnd,hnd->ibh"): one matrix between d_model and n_head·d_head, not d_model matrices of heads
_HEAD_SPLIT = re.compile(r"(^|\.)(rel_attn\.[qkvor]|r_kernel)$")
# parameters of no linear map, whatever their shape: XLNet's and Funnel's per-head segment embeddings
# [2, n_head, d_head]; Mamba's A_log [d_inner, d_state], the state's per-channel decay rates
_NOT_A_MAP = {"seg_embed": "per-head segment embeddings (XLNet, Funnel: one vector per segment and head)",
              "A_log": "state-space decay rates (Mamba's A_log: one per channel and state, not a linear map)"}
# a quantized weight's scale or zero point (the readers pair them with their weight; one left over belongs to
# a weight in another file, e.g. another shard)
# a normalization's scale (a module named *norm: q_norm, attn_q_norm, ssm_norm, input_layernorm): one number per
# unit even when stored 2-D (per head: Command R's [heads, head_dim]; per group: Mamba-2's)
_NORM = re.compile(r"(^|[._])[a-z_]*norm(\.(weight|scale))?$", re.IGNORECASE)
_QUANT_SCALE = re.compile(r"(^|\.)(weight_scale(_inv|_2)?|SCB|weight_zero_point)$|_scale_inv$")
# a static activation or KV-cache quantization's scale (llm-compressor / compressed-tensors' W8A8 and FP8
# models, ModelOpt's: q_proj.input_scale, self_attn.k_scale): of what a layer reads or caches, not of a weight
_ACTIVATION_SCALE = re.compile(r"(^|\.)((input|output)_(scale|zero_point|global_scale)|[qkv]_(scale|zero_point)"
                               r"|kv_scale)$")
# a layer's weight matrix by its name (PyTorch's weight, Keras's and Flax's kernel, a hand-written network's
# weights.2 or W2)
_WEIGHT_NAME = re.compile(r"(^|[._/])(weights?|kernel|w\d*)(\.\d+)*$", re.IGNORECASE)
# a PEFT LoRA layer's factors and DoRA magnitudes in a whole model's state dict (an adapter folder's are
# read by htsr.io.peft): <module>.lora_A.<adapter>.weight …
_LORA_PART = re.compile(r"\.lora_(A|B|embedding_A|embedding_B|magnitude_vector)\.([^.]+\.)?(weight|[^.]+)$")
# the parts of PEFT's other adapter types, as their adapter_model.safetensors names them: AdaLoRA's lora_A / lora_B /
# lora_E (no .weight) and ranknum, VeRA's shared vera_A / vera_B and per-layer vera_lambda_b / _d, IA3's ia3_l,
# OFT's oft_R, BOFT's boft_R / boft_s, FourierFT's spectrum, C3A's kernel, RandLoRA's and SHiRA's parts …
_PEFT_PART = re.compile(r"(^|\.)(lora_[ABE]|ranknum|vera_(A|B|lambda_[bd])|ia3_l|oft_(R|s)|boft_(R|s)|"
                        r"fourierft_spectrum|c3a_kernel|randlora_(A|B|lambda|gamma)|shira_weight|bone_block|"
                        r"miss_block|hra_u)(\.[^.]+)?$")
# a PEFT LoHa / LoKr layer's parts (LyCORIS's names): <module>.hada_w1_a[.<adapter>] …
_LYCORIS_PART = re.compile(r"\.(hada_(w[12]_[ab]|t[12])|lokr_(w[12](_[ab])?|t[12]))(\.[^.]+)?$")
# nn.LSTM/GRU/RNN, and their *Cell (no _l<n>); an LSTM's projection (proj_size) weight_hr_l<n>, as its module's
_RNN = re.compile(r"weight_(ih|hh|hr)(_l\d+(_reverse)?)?$")
_EXPERT = re.compile(r"expert|_exps\b", re.IGNORECASE)  # HF experts, GGUF ffn_*_exps
# biases, batch-norm buffers, and weight-norm magnitudes g left without their direction v (torch's
# weight_norm: ``weight_g``, or ``parametrizations.weight.original0``; with v, the readers combine the two
# into the weight, htsr.io.reparam); also in a list (a pickled network's ``biases.0``, its column vectors)
_NOT_A_WEIGHT = re.compile(r"(^|[._])(bias|biases|running_mean|running_var|num_batches_tracked|weight_g)(\.\d+)*$"
                           r"|parametrizations\.weight\.original0$"
                           r"|(^|[._])bias_(ih|hh)(_l\d+)?(_reverse)?$"  # nn.LSTM/GRU/RNN's and their cells' biases
                           r"|(^|[._])bias_[kvu]$")  # MultiheadAttention's add_bias_kv, conformers' pos_bias_u/v
_CONV = re.compile(r"conv", re.IGNORECASE)
# kernel sizes above this make a 3-D tensor a stack of matrices rather than a Conv1d kernel (unless the
# name says conv: wav2vec2's positional conv has kernel 128)
MAX_CONV_KERNEL = 32


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


def row_name(tensor_name: str) -> str:
    """A row is named by its module's full dotted path: 'a.b.weight' → 'a.b'."""
    return tensor_name[: -len(".weight")] if tensor_name.endswith(".weight") else tensor_name


def is_recurrent(name: str) -> bool:
    """A recurrent layer's input or hidden weight by its name (``weight_ih``, ``weight_hh_l0`` …)."""
    return _RNN.search(name) is not None


def is_bias_or_buffer(name: str) -> bool:
    """A bias or a batch-norm buffer by its name: never a layer."""
    return _NOT_A_WEIGHT.search(name) is not None


#: why a vector kept in the shape it is broadcast in is no layer
VECTOR = "vector (one axis longer than 1: a layer scale, a class token)"


def is_vector(shape: tuple[int, ...]) -> bool:
    """A tensor of three or more axes with at most one longer than 1: a vector kept in the shape it is
    broadcast in (ConvNeXt's layer_scale [C, 1, 1], ViT's class_token [1, 1, D], RWKV's lerp [1, 1, D]). A 2-D
    [1, n] or [n, 1] may be a layer of one output (a classifier's or a reranker's head): not one."""
    return len(shape) >= 3 and min(shape) >= 1 and sum(d > 1 for d in shape) <= 1


def infer_kind(name: str, shape: tuple[int, ...]) -> str | None:
    """Kind of a tensor read from a file, from its name and shape; None if it is not analysed."""
    return classify(name, shape)[0]


#: LitEma (CompVis latent diffusion, Stable Diffusion 1.x/2.x checkpoints): a buffer per weight of the model, named
#: model_ema.<its name without the dots> (model_ema.diffusion_modelinput_blocks00weight)
_LIT_EMA = re.compile(r"model_ema\.diffusion_model[A-Za-z0-9_]+(weight|bias)$")


def classify(name: str, shape: tuple[int, ...]) -> tuple[str | None, str]:
    """(kind, '') for a tensor that is analysed, (None, why not) for one that is not (see :func:`infer_kind`)."""
    if is_bias_or_buffer(name):  # biases and batch-norm buffers; norm weights are 1-D below
        return None, "bias or norm buffer"
    if len(shape) == 3 and shape[0] == 1 and _EXPERT.search(name) and min(shape) > 0:
        return "stack", ""  # a mixture of one expert: expert [0] (not squeezed into a dense layer)
    if _QUANT_SCALE.search(name):
        return None, "quantization scale without its weight (in another file?)"
    if _ACTIVATION_SCALE.search(name) and len(shape) <= 1:
        return None, "activation or KV-cache quantization scale (of a layer's inputs, not its weight)"
    if name == "_flat_param" or name.endswith("._flat_param"):
        return None, ("an FSDP flat parameter (a wrapped unit's parameters concatenated): save the full state dict "
                      "(FULL_STATE_DICT) and analyse that")
    if _LIT_EMA.match(name):
        return None, ("the EMA copy of a weight (LitEma's model_ema.<name without dots>, as CompVis / Stable "
                      "Diffusion checkpoints keep it beside the model's own weights under model.)")
    if _LORA_PART.search(name):
        return None, ("a LoRA factor without its adapter_config.json (its scale unknown): analyse the live model, "
                      "or the folder save_pretrained writes")
    if _PEFT_PART.search(name) and not _LORA_PART.search(name):
        return None, ("a part of a PEFT adapter of a type htsr does not read (AdaLoRA, VeRA, IA3, OFT, BOFT, "
                      "FourierFT …; it reads LoRA, LoHa and LoKr adapters)")
    if _LYCORIS_PART.search(name):
        return None, ("a LoHa / LoKr part without its adapter_config.json (its scale unknown): analyse the live "
                      "model, or the folder save_pretrained writes")
    if is_vector(shape) and not (_WEIGHT_NAME.search(name) and _conv_shaped_vector(shape)):
        # (a conv's [1, in, 1, 1] weight, one output channel, is its module's: named weight, as is a one-channel
        # conv's [1, 1, k] (ECA's); ConvNeXt-V2's GRN weight [1, 1, 1, C], long on its last axis beyond any
        # kernel, is a vector in channels-last broadcast shape)
        return None, VECTOR
    why = _NOT_A_MAP.get(name.rsplit(".", 1)[-1])
    if why is not None:
        return None, why
    shape = _squeeze_leading(shape)
    if len(shape) < 2:
        return None, "1-D (norm scales, scalars)"
    if _NORM.search(name):
        return None, "norm scale (per head or group: 2-D)"
    if min(shape) == 0:
        return None, "empty (a dimension of size 0)"
    if len(shape) == 2:
        if is_recurrent(name):
            return "rnn", ""
        if _EMBEDDING.search(name):
            return "embedding", ""
        return "dense", ""
    if len(shape) == 3:
        if _HEAD_SPLIT.search(name):
            return "dense", ""
        if 1 in shape and _AXIAL.search(name):  # an axial position embedding's factor, kept in its broadcast shape
            return "embedding", ""
        # a single input channel makes it a filter bank (e.g. an STFT basis [freq, 1, window]), not experts; a
        # short last axis makes a conv1d kernel of a module's weight, not of a bare parameter (a hand-written
        # mixture's w_out [E, out, in] with in ≤ 32 had been 32 'kernel positions' of E × out)
        if not _EXPERT.search(name) and (shape[1] == 1 or _CONV.search(name) or (
                shape[2] <= MAX_CONV_KERNEL and _WEIGHT_NAME.search(name))):
            return "conv1d", ""
        return "stack", ""
    if len(shape) == 4:
        if any(k > MAX_CONV_KERNEL for k in shape[2:]) and not _CONV.search(name):
            # [2, 3, 128, 96] is no kernel of 128 × 96 taps (a grid of matrices: pooling it would mix them)
            return None, f"4-D tensor whose last axes ({shape[2]} × {shape[3]}) are no convolution kernel"
        return "conv2d", ""
    if len(shape) == 5 and all(k <= MAX_CONV_KERNEL for k in shape[2:]):  # [c_out, c_in, kd, kh, kw]
        return "conv3d", ""
    return None, f"{len(shape)}-D tensor of no layer kind htsr knows"


def _conv_shaped_vector(shape: tuple[int, ...]) -> bool:
    """Whether a vector-shaped weight reads as a conv's: its long axis the output's or the input's channels, or
    a kernel axis no longer than a kernel (MAX_CONV_KERNEL)."""
    long = max(range(len(shape)), key=shape.__getitem__)
    return long <= 1 or shape[long] <= MAX_CONV_KERNEL


def _squeeze_leading(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop leading singleton dimensions ([1, 197, 768] position embeddings), but not a conv kernel's
    single output channel ([1, c_in, k] or [1, c_in, kh, kw] with kernel sizes ≤ 32)."""
    shape = tuple(shape)
    while len(shape) > 2 and shape[0] == 1 and not all(k <= MAX_CONV_KERNEL for k in shape[2:]):
        shape = shape[1:]
    return shape


class SharedLoad:
    """A value loaded once for several takers (the slices of an expert stack or of a conv's kernel positions,
    read as one tensor): loaded by the first :meth:`take`, dropped once every key has taken its part or been
    :meth:`release`-d (a row filtered out, or done: it will not take); safe across the analysis threads. A
    key taking again after the drop loads again."""

    def __init__(self, load: Callable[[], Any], keys: Iterable[Any]) -> None:
        self._load, self._keys = load, frozenset(keys)
        self._released: set[Any] = set()
        self._pending = set(self._keys)
        self._value: Any = None
        self._lock = threading.Lock()

    def take(self, key: Any, part: Callable[[Any], Any]) -> Any:
        """``part(value)`` copied (never a view that would keep the whole value alive) for ``key``."""
        with self._lock:
            if self._value is None:
                self._value = self._load()
                self._pending = set(self._keys) - self._released - {key}
            out = part(self._value)
            out = np.array(out) if isinstance(out, np.ndarray) else out
            self._pending.discard(key)
            if not self._pending:
                self._value = None
            return out

    def release(self, key: Any) -> None:
        """``key`` will not take (again): the value is not kept for it."""
        with self._lock:
            self._released.add(key)
            self._pending.discard(key)
            if not self._pending:
                self._value = None


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
    keep = kind in ("conv1d", "conv2d", "conv3d") or (kind == "stack" and _EXPERT.search(name) is not None)
    sq = shape if keep else _squeeze_leading(shape)

    def loaded() -> np.ndarray:
        return np.asarray(load()).reshape(sq)

    if kind == "lora" and len(shape) == 2:  # load() returns a LowRank: its spectrum comes from the factors
        r, c = shape
        yield LayerMatrices(base, kind, shape, r, c, 1, 1.0, lambda: [load()])
    elif kind == "dense" and len(sq) == 3 and _HEAD_SPLIT.search(name):
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
