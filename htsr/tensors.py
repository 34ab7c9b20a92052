"""Named tensors, before they become matrices: what each one is (its layer kind, from its name and shape, or
why it is not analysed), the row it names, and a value loaded once for several rows.

The readers (htsr.io) name and type the tensors of a source with these; htsr.matrices turns the typed tensors into
matrices. Pure Python and numpy: no file is read here.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["EXPERT", "HEAD_SPLIT", "MAX_CONV_KERNEL", "ROW_TAG", "VECTOR", "SharedLoad", "classify", "infer_kind",
           "is_bias_or_buffer", "names_a_conv", "is_recurrent", "is_vector", "row_name", "squeeze_leading"]

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
# a learned token, by a name's last part: ViT's cls_token and dist_token, DINOv2's mask_token, a prompt's
# prompt_tokens (not a table of them: embed_tokens)
_TOKEN = re.compile(r"(^|\.)(?!embed)\w*tokens?$")
_AXIAL = re.compile(r"(^|\.)position_embeddings\.weights\.\d+$")
# XLNet's and Funnel's attention projections, [d_model, n_head, d_head] parameters read by einsum (q, k, v, r:
# "ibh,hnd->ibnd"; o: "ibnd,hnd->ibh"): one matrix between d_model and n_head·d_head, not d_model matrices of heads
HEAD_SPLIT = re.compile(r"(^|\.)(rel_attn\.[qkvor]|r_kernel)$")
# parameters of no linear map, whatever their shape: XLNet's and Funnel's per-head segment embeddings
# [2, n_head, d_head]; Mamba's A_log [d_inner, d_state], the state's per-channel decay rates
_NOT_A_MAP = {"seg_embed": "per-head segment embeddings (XLNet, Funnel: one vector per segment and head)",
              "A_log": "state-space decay rates (Mamba's A_log: one per channel and state, not a linear map)",
              # (transformers 4.2x's Llama rotary_emb buffers, which ColossalAI-trained checkpoints keep, as vLLM's
              # loader skips them: they had been embedding rows, h61)
              **dict.fromkeys(("cos_cached", "sin_cached", "_cos_cached", "_sin_cached"),
                              "rotary position cache (cos / sin of the positions' angles, computed, no weight)")}
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
# a LoRA factor as a bare parameter: loralib's (microsoft/LoRA: lora.Linear's lora_A [r, in], lora_B [out, r]), and
# AdaLoRA's in its adapter_model.safetensors (beside lora_E and ranknum)
_BARE_LORA = re.compile(r"(^|\.)lora_[AB]$")
# a PEFT LoHa / LoKr layer's parts (LyCORIS's names): <module>.hada_w1_a[.<adapter>] …
_LYCORIS_PART = re.compile(r"\.(hada_(w[12]_[ab]|t[12])|lokr_(w[12](_[ab])?|t[12]))(\.[^.]+)?$")
# nn.LSTM/GRU/RNN, and their *Cell (no _l<n>); an LSTM's projection (proj_size) weight_hr_l<n>, as its module's
_RNN = re.compile(r"weight_(ih|hh|hr)(_l\d+(_reverse)?)?$")
EXPERT = re.compile(r"expert|_exps\b", re.IGNORECASE)  # HF experts, GGUF ffn_*_exps
# biases, batch-norm buffers, and weight-norm magnitudes g left without their direction v (torch's
# weight_norm: ``weight_g``, or ``parametrizations.weight.original0``; with v, the readers combine the two
# into the weight, htsr.io.reparam); also in a list (a pickled network's ``biases.0``, its column vectors)
_NOT_A_WEIGHT = re.compile(r"(^|[._])(bias|biases|running_mean|running_var|num_batches_tracked|weight_g)(\.\d+)*$"
                           r"|parametrizations\.weight\.original0$"
                           r"|(^|[._])bias_(ih|hh)(_l\d+)?(_reverse)?$"  # nn.LSTM/GRU/RNN's and their cells' biases
                           r"|(^|[._])bias_[kvu]$")  # MultiheadAttention's add_bias_kv, conformers' pos_bias_u/v
# "conv" in a name (conv1, dwconv, pos_conv_embed, Conv_0, convolution), not in converter, convert, convex, convention
_CONV = re.compile(r"conv(?!e[nrx])", re.IGNORECASE)
# kernel sizes above this make a 3-D tensor a stack of matrices rather than a Conv1d kernel (unless the
# name says conv: wav2vec2's positional conv has kernel 128)
MAX_CONV_KERNEL = 32


#: the tag of an adapter's rows (a PEFT folder's, a llama.cpp LoRA file's): ``<module>#delta``, ``#base`` and
#: ``#merged``, and what follows it in a row of part of the tensor: an expert's ``[e]`` of a stack, a conv's kernel
#: position ``[i,j]``
ROW_TAG = re.compile(r"#(?P<tag>delta|base|merged)(?P<item>(?:\[[\w,]+\])*)$")


def row_name(tensor_name: str) -> str:
    """A row is named by its module's full dotted path: 'a.b.weight' → 'a.b'."""
    return tensor_name[: -len(".weight")] if tensor_name.endswith(".weight") else tensor_name


def names_a_conv(name: str) -> bool:
    """Whether a name says convolution: conv1, dwconv, pos_conv_embed, Conv_0, convolution (not converter,
    convert, convex or convention)."""
    return _CONV.search(name) is not None


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


def is_adapter_part(name: str) -> bool:
    """Whether ``name`` is a part of a PEFT adapter (a LoRA factor, a LoHa / LoKr part, another type's), held in a
    model beside the weight it adapts: no layer's weight, whatever module holds it (peft's lora_A is a Linear)."""
    return any(p.search(name) for p in (_LORA_PART, _PEFT_PART, _LYCORIS_PART))


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
    if len(shape) == 3 and shape[0] == 1 and EXPERT.search(name) and min(shape) > 0:
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
    if _BARE_LORA.search(name):
        return None, ("a bare lora_A / lora_B factor (loralib's, or an AdaLoRA adapter's), no layer: htsr reads "
                      "PEFT's LoRA, LoHa and LoKr adapters; loralib merges its factors into the weight beside them "
                      "in eval mode (save the state dict after model.eval())")
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
    if len(shape) == 2 and shape[0] == 1 and _TOKEN.search(name):
        # (DINOv2's mask_token [1, D], a [1, D] cls_token: one learned vector, not a layer of one output, and
        # zero at initialisation: it had been an embedding row 'failed: all-zero matrix')
        return None, VECTOR
    shape = squeeze_leading(shape)
    if len(shape) < 2:
        return None, "1-D (norm scales, scalars)"
    if _NORM.search(name):
        return None, "norm scale (per head or group: 2-D)"
    # (an empty one, a dimension of size 0, keeps its kind: its row says 'skipped: an empty matrix', as a live
    # module's nn.Linear(5, 0) and an ONNX operator's empty weight say; the file had listed it as no layer)
    if len(shape) == 2:
        if is_recurrent(name):
            return "rnn", ""
        if _EMBEDDING.search(name):
            return "embedding", ""
        return "dense", ""
    if len(shape) == 3:
        if HEAD_SPLIT.search(name):
            return "dense", ""
        if 1 in shape and _AXIAL.search(name):  # an axial position embedding's factor, kept in its broadcast shape
            return "embedding", ""
        # a single input channel makes it a filter bank (e.g. an STFT basis [freq, 1, window]), not experts; a
        # short last axis makes a conv1d kernel of a module's weight, not of a bare parameter (a hand-written
        # mixture's w_out [E, out, in] with in ≤ 32 had been 32 'kernel positions' of E × out)
        if not EXPERT.search(name) and (shape[1] == 1 or names_a_conv(name) or (
                shape[2] <= MAX_CONV_KERNEL and _WEIGHT_NAME.search(name))):
            return "conv1d", ""
        return "stack", ""
    if len(shape) == 4:
        if any(k > MAX_CONV_KERNEL for k in shape[2:]) and not names_a_conv(name):
            # [2, 3, 128, 96] is no kernel of 128 × 96 taps (a grid of matrices: pooling it would mix them)
            return None, f"4-D tensor whose last axes ({shape[2]} × {shape[3]}) are no convolution kernel"
        return "conv2d", ""
    if len(shape) == 5 and all(k <= MAX_CONV_KERNEL for k in shape[2:]):  # [c_out, c_in, kd, kh, kw]
        return "conv3d", ""
    return None, f"{len(shape)}-D tensor of no layer kind htsr knows"


_KERNEL = re.compile(r"(^|[._/])kernel(:0)?$", re.IGNORECASE)


def channels_last_conv(name: str, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The axes' order that turns a conv kernel stored channels-last — TensorFlow's ``[kh, kw, c_in, c_out]``, a
    conv1d's ``[k, c_in, c_out]`` — into torch's ``[c_out, c_in, kh, kw]`` (for :func:`numpy.transpose`), when its
    name says conv or kernel and only its leading axes can be a kernel's: its trailing ones are longer than
    MAX_CONV_KERNEL taps, or (2-D kernels) the leading pair is square and the trailing one is not, and longer (a
    [3, 3, 16, 32] kernel, not 3 x 3 channels of 16 x 32 taps). None for any other tensor: a kernel in torch's
    layout, or one whose axes can be a kernel's either way (torch's layout is then taken: [8, 3, 7, 7])."""
    k = len(shape) - 2
    if (k not in (1, 2) or is_vector(shape) or EXPERT.search(name)
            or not all(0 < s <= MAX_CONV_KERNEL for s in shape[:k])):
        return None  # (a vector in a conv's broadcast shape, ECA's [1, 1, k], stays one; so does an expert stack)
    # torch's layout is impossible where its kernel axes (the last k) are longer than a kernel's: named a conv (a
    # 3-D one: any 'kernel' of three axes may be Keras' EinsumDense), else a grid of matrices [2, 3, 128, 96]
    if any(s > MAX_CONV_KERNEL for s in shape[2:]):
        return (k + 1, k, *range(k)) if names_a_conv(name) or (k == 2 and _KERNEL.search(name)) else None
    if k == 2 and shape[0] == shape[1] >= 2 and shape[2] != shape[3] and shape[2] + shape[3] > 2 * shape[0]:
        return (3, 2, 0, 1)  # (read as a conv2d either way: classify takes any 4-D weight of short axes for one)
    return None


def _conv_shaped_vector(shape: tuple[int, ...]) -> bool:
    """Whether a vector-shaped weight reads as a conv's: its long axis the output's or the input's channels, or
    a kernel axis no longer than a kernel (MAX_CONV_KERNEL)."""
    long = max(range(len(shape)), key=shape.__getitem__)
    return long <= 1 or shape[long] <= MAX_CONV_KERNEL


def squeeze_leading(shape: tuple[int, ...]) -> tuple[int, ...]:
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
    key taking again after the drop loads again. ``done``, if given, is called each time the value is no longer
    wanted (every key has taken or been released): what it was read from is released in turn (a split part's
    matrix, an expert of a stack)."""

    def __init__(self, load: Callable[[], Any], keys: Iterable[Any], done: Callable[[], None] | None = None) -> None:
        self._load, self._keys, self._done = load, frozenset(keys), done
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
            emptied = self._settle(key)
        if emptied and self._done is not None:
            self._done()
        return out

    def release(self, key: Any) -> None:
        """``key`` will not take (again): the value is not kept for it."""
        with self._lock:
            self._released.add(key)
            emptied = self._settle(key)
        if emptied and self._done is not None:
            self._done()

    def _settle(self, key: Any) -> bool:
        """``key`` off the pending ones, the value dropped when none is left; whether that was the last (locked)."""
        was = bool(self._pending)
        self._pending.discard(key)
        if not self._pending:
            self._value = None
        return was and not self._pending
