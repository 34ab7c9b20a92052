"""torch.save and torch.jit.save archives read without torch: values, names and kinds against torch's
own loaders; checkpoints with plain values beside the weights; frozen modules; views into shared
storages; refusal of foreign pickle globals (and torch.load's second opinion when torch is there);
bad input (truncation, lying storage sizes, Hypothesis byte mutations of data.pkl); and the real
Silero VAD .jit (network-marked)."""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import itertools
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import htsr
from htsr.errors import LayerSkipped, SourceError
from htsr.io import open_source
from htsr.io.base import stored_member_offset
from htsr.io.torch import load_torch_file
from htsr.io.torchzip import TorchExportArchive, TorchLegacyFile, TorchZipFile
from conftest import one_line_source_error

torch = pytest.importorskip("torch")
nn = torch.nn


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.conv = nn.Conv1d(16, 32, 3)
        self.conv2d = nn.Conv2d(3, 8, 3)
        self.rnn = nn.LSTM(32, 24)
        self.cell = nn.GRUCell(24, 12)
        self.blocks = nn.ModuleList([nn.Linear(12, 12) for _ in range(2)])
        self.head = nn.Linear(12, 7, bias=False)
        big = torch.arange(60, dtype=torch.float32).reshape(6, 10)
        self.register_buffer("window", big[2:, 1:9])  # a strided view with an offset into a shared storage

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.emb(ids).transpose(1, 2)).transpose(1, 2)
        out, _ = self.rnn(h)
        z = self.cell(out[:, -1])
        for b in self.blocks:
            z = b(z)
        return self.head(z) + self.window.sum()


@pytest.fixture(scope="module")
def net() -> _Net:
    torch.manual_seed(0)
    return _Net().eval()


@pytest.fixture(scope="module")
def scripted(net, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ts") / "net.pt"  # the usual .pt suffix: detected by content
    torch.jit.save(torch.jit.script(net), str(path))
    return path


def test_values_names_and_kinds_equal_torch(net, scripted):
    src = open_source(scripted)
    assert isinstance(src, TorchZipFile)
    refs = {r.name: r for r in src}
    expected = dict(net.state_dict())
    assert set(refs) == set(expected)  # parameters and buffers, named as in the state dict
    for name, t in expected.items():
        np.testing.assert_array_equal(refs[name].load(), t.numpy(), err_msg=name)  # exact: a byte copy
        assert refs[name].shape == tuple(t.shape)
    kinds = {n: r.kind for n, r in refs.items() if len(r.shape) >= 2}
    assert kinds == {"emb.weight": "embedding", "conv.weight": "conv1d", "conv2d.weight": "conv2d",
                     "rnn.weight_ih_l0": "rnn", "rnn.weight_hh_l0": "rnn", "cell.weight_ih": "rnn",
                     "cell.weight_hh": "rnn", "blocks.0.weight": "dense", "blocks.1.weight": "dense",
                     "head.weight": "dense",
                     "window": "dense"}  # a 2-D buffer of no known module class: typed as a state dict's is
    # the live module and its scripted copy give the same analysis
    a = {r.name: r for r in htsr.analyze(net, min_evals=5).layers}
    b = {r.name: r for r in htsr.analyze(scripted, min_evals=5).layers}
    assert a.keys() <= b.keys()
    for n, r in a.items():
        assert (r.kind, r.status) == (b[n].kind, b[n].status)
        # (the same float32 tensors: identical sums, rounding at most)
        assert np.isnan(r.alpha) and np.isnan(b[n].alpha) or r.alpha == pytest.approx(b[n].alpha, rel=1e-12)


def test_half_precision_and_frozen_constants(net, tmp_path):
    half = tmp_path / "half.jit"
    torch.jit.save(torch.jit.script(_Net().to(torch.bfloat16).eval()), str(half))
    refs = {r.name: r for r in TorchZipFile(half)}
    assert refs["head.weight"].dtype == "bfloat16" and refs["head.weight"].load().dtype == np.float32
    frozen = tmp_path / "frozen.jit"
    torch.jit.save(torch.jit.freeze(torch.jit.script(net)), str(frozen))
    consts = [r.load() for r in TorchZipFile(frozen) if r.name.startswith("CONSTANTS.c")]
    # freezing inlines the weights as constants: the head's matrix is among them, bit for bit
    assert any(c.shape == (7, 12) and np.array_equal(c, net.head.weight.detach().numpy()) for c in consts)


class Config:  # a class the weights-only readers do not know
    pass


def _checkpoint(tmp_path: Path, **save_kw) -> tuple[Path, dict[str, np.ndarray]]:
    """A training checkpoint as people write them: the state dict under 'model' beside plain values
    (epoch, sizes, a device, a dtype, bytes, a set), with bf16 / fp16 tensors, a Parameter, and q/k
    views into one fused storage at offsets."""
    torch.manual_seed(3)
    qkv = torch.randn(3 * 16, 16)
    model = {"q.weight": qkv[:16], "k.weight": qkv[16:32], "v.weight": qkv[32:],
             "fc.weight": torch.randn(24, 16).to(torch.bfloat16), "emb.weight": torch.randn(40, 16).half(),
             "gate.weight": torch.nn.Parameter(torch.randn(8, 16)), "fc.bias": torch.zeros(24),
             "norm.num_batches_tracked": torch.tensor(7)}
    ckpt = {"model": model, "epoch": 3, "shape": torch.Size([2, 3]), "device": torch.device("cpu"),
            "dtype": torch.float16, "tag": b"run-7", "seen": {1, 2}, "lr": 1e-3}
    path = tmp_path / "ckpt.pt"
    torch.save(ckpt, str(path), **save_kw)
    return path, {k: v.detach().float().numpy() for k, v in model.items()}


def test_torch_save_checkpoint_without_torch(tmp_path, monkeypatch):
    path, want = _checkpoint(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails from here on
    src = open_source(path)
    assert isinstance(src, TorchZipFile) and not src.script
    refs = {r.name: r for r in src}
    assert set(refs) == set(want)  # unwrapped from 'model'; named as in the state dict; plain values ignored
    for name, w in want.items():
        np.testing.assert_array_equal(refs[name].load(), w, err_msg=name)  # bf16/fp16 widen exactly
    assert refs["fc.weight"].dtype == "bfloat16" and refs["emb.weight"].dtype == "float16"
    assert all(r.kind is None for r in refs.values())  # typed by name and shape, as a state dict is
    r = htsr.analyze(path, min_evals=5)
    assert {l.name for l in r.layers} == {"q", "k", "v", "fc", "emb", "gate"}


@pytest.fixture
def no_crc32():
    """torch.save records no CRC-32 (0 for every member) while this is in use."""
    torch.serialization.set_crc32_options(False)
    try:
        yield
    finally:
        torch.serialization.set_crc32_options(True)


def test_archives_torch_wrote_without_crc32_are_read_as_torch_reads_them(tmp_path, no_crc32):
    """torch.serialization.set_crc32_options(False) (large checkpoints save faster) makes torch.save record a
    CRC-32 of 0 for every member, and torch.load reads its checkpoints; htsr had refused them as a 'corrupt PyTorch
    zip archive (BadZipFile: Bad CRC-32 …)'. A member whose CRC-32 is recorded is still checked: one flipped byte
    of a pickle is a corrupt archive."""
    path, want = _checkpoint(tmp_path)
    with zipfile.ZipFile(path) as z:
        assert {i.CRC for i in z.infolist()} == {0}  # (torch honours the option)
    assert {r.name: r.load().tolist() for r in open_source(path)} == {k: w.tolist() for k, w in want.items()}
    torch.serialization.set_crc32_options(True)
    path, want = _checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.index(b"fc.weight")  # (in data.pkl, the first member: its name is stored once, in the pickle)
    data[at] ^= 0x20  # 'Fc.weight': a pickle that still parses, under its recorded CRC-32
    (tmp_path / "pickle.pt").write_bytes(bytes(data))
    with pytest.raises(SourceError) as ei:
        open_source(tmp_path / "pickle.pt")
    one_line_source_error(ei, str(tmp_path / "pickle.pt"), "corrupt PyTorch zip archive (BadZipFile: Bad CRC-32")


def test_a_checkpoint_saved_under_skip_data_fails_its_rows_saying_so_and_is_read_once_filled_in(tmp_path):
    """torch.save under torch.serialization.skip_data() writes the pickle (with its CRC-32) and leaves each storage's
    bytes unwritten: zeros, under a CRC-32 of 0; torch.load reads zeros. Every row had been 'failed: all-zero
    matrix', which does not say why. Now each says its storage holds no data and what to do. Once the storages are
    filled in (skip_data's purpose: the bytes written in a later pass; the CRC-32s stay 0), the values are read."""
    torch.manual_seed(5)
    m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 16))
    path = tmp_path / "meta.pt"
    with torch.serialization.skip_data():
        torch.save(m.state_dict(), str(path))
    with zipfile.ZipFile(path) as z:
        storages = [i for i in z.infolist() if "/data/" in i.filename]
        assert {i.CRC for i in storages} == {0} and z.getinfo("meta/data.pkl").CRC  # (what torch writes)
    rows = {l.name: l.status for l in htsr.analyze(path, min_evals=2).layers}
    assert rows == {n: f"failed: {path}: storage meta/data/{k} holds no data: torch.save wrote the checkpoint under "
                       "torch.serialization.skip_data() (the tensors' shapes alone); fill in its storages or save it "
                       "without skip_data" for n, k in (("0", 0), ("1", 2))}
    data = bytearray(path.read_bytes())
    with open(path, "rb") as f:
        for info, t in zip(storages, m.state_dict().values()):  # (storages in the order the state dict saves them)
            at = stored_member_offset(f, info)
            data[at:at + info.file_size] = t.numpy().tobytes()
    path.write_bytes(bytes(data))
    refs = {r.name: r.load() for r in open_source(path)}
    for name, t in m.state_dict().items():
        np.testing.assert_array_equal(refs[name], t.numpy(), err_msg=name)
    assert [l.status for l in htsr.analyze(path, min_evals=2).layers] == ["ok", "ok"]


def test_a_storage_changed_in_place_fails_its_rows_alone_by_its_crc32(tmp_path, no_crc32):
    """A byte of a storage changed in place (a bad copy, a disk error) keeps the file's size, so nothing else
    shows it: the storage's recorded CRC-32 does, checked when it is first loaded. The tensors stored there fail,
    naming it; the others are read (torch.load reads the changed values without a word; htsr had too). Without
    recorded CRC-32s (set_crc32_options(False)) there is nothing to check against: the values as stored."""
    for crc in (True, False):
        torch.serialization.set_crc32_options(crc)
        path, want = _checkpoint(tmp_path)
        gate = want["gate.weight"].tobytes()
        data = bytearray(path.read_bytes())
        at = data.index(gate)  # (gate.weight is a storage of its own, stored as it is)
        assert data.count(gate) == 1
        data[at + 5] ^= 0x01  # one bit of one value
        path.write_bytes(bytes(data))
        got = {r.name: r for r in open_source(path)}
        for name, w in want.items():
            if name != "gate.weight":
                np.testing.assert_array_equal(got[name].load(), w, err_msg=name)
        if crc:
            with pytest.raises(SourceError, match=r"tensor gate\.weight: storage unreadable \(ckpt/data/\d+ does not "
                                                  r"match the CRC-32 the archive records for it\); the file is "
                                                  r"truncated or corrupt"):
                got["gate.weight"].load()
            row = {x.name: x for x in htsr.analyze(path, min_evals=5).layers}["gate"]
            assert row.status.startswith("failed: ") and "CRC-32" in row.status
        else:
            changed = got["gate.weight"].load()
            assert np.sum(changed != want["gate.weight"]) == 1  # (what torch.load gives, too)


def test_module_state_dict_with_metadata(tmp_path):
    """The commonest checkpoint of all: torch.save(model.state_dict()) — an OrderedDict whose _metadata
    attribute is restored by a BUILD in the pickle."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(16, 12), nn.BatchNorm1d(12), nn.Linear(12, 4))
    path = tmp_path / "sd.pt"
    torch.save(model.state_dict(), str(path))
    refs = {r.name: r for r in open_source(path)}
    assert isinstance(open_source(path), TorchZipFile)
    assert set(refs) == set(model.state_dict())
    for name, t in model.state_dict().items():
        np.testing.assert_array_equal(refs[name].load(), t.numpy().astype(refs[name].load().dtype), err_msg=name)


@pytest.mark.parametrize("legacy", [False, True])
def test_optimizer_and_scheduler_state_are_not_layers(tmp_path, legacy):
    """A GAN-style checkpoint keeps its networks under keys of their own, beside the optimizer's state:
    Adam's exp_avg / exp_avg_sq are tensors shaped like the weights, and were analysed as dense layers.
    They are training state, whatever the key (an optimizer state dict has param_groups) — in a file read
    without torch, in torch.load's fallback and in memory."""
    torch.manual_seed(5)
    G, D = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64)), nn.Linear(64, 32)
    opts = {k: torch.optim.Adam(m.parameters()) for k, m in (("g", G), ("d", D))}
    (G(torch.randn(8, 64)).sum() + D(torch.randn(8, 64)).sum()).backward()
    for o in opts.values():
        o.step()
    sched = torch.optim.lr_scheduler.StepLR(opts["g"], 10)
    ckpt = {"generator": G.state_dict(), "discriminator": D.state_dict(), "g_optim": opts["g"].state_dict(),
            "states": opts["d"].state_dict(), "lr_scheduler": sched.state_dict(), "epoch": 3}
    path = tmp_path / "gan.pt"
    torch.save(ckpt, str(path), _use_new_zipfile_serialization=not legacy)
    want = {"generator.0", "generator.2", "discriminator"}
    for source in (path, ckpt):
        assert {l.name for l in htsr.analyze(source, min_evals=5).layers} == want, source


@pytest.mark.parametrize("legacy", [False, True])
def test_a_checkpoint_s_other_weights_are_named_when_left_out(tmp_path, legacy):
    """A checkpoint with a 'model' and an 'ema' state dict: the 'model' entry is read (WRAPPER_KEYS order),
    and the source says which entry was read and that 'ema' was left out, never a silent choice."""
    W = torch.randn(100, 60, generator=torch.Generator().manual_seed(0))
    ckpt = {"model": {"fc.weight": W}, "ema": {"fc.weight": 10 * W}, "optimizer": {"state": {}, "param_groups": []}}
    path = tmp_path / "ema.pt"
    torch.save(ckpt, str(path), _use_new_zipfile_serialization=not legacy)
    note = ("(the 'model' entry read; 'ema' left out: other weights in the checkpoint, which Python reads as "
            "htsr.analyze(checkpoint['ema']))")
    for source, where in ((path, str(path)), (ckpt, "<state dict>")):
        r = htsr.analyze(source)
        assert r.source == f"{where} {note}"
        # the model's weights, not the 10x EMA's (float32 Gram against float64 squares: measured 3e-9)
        assert r.layers[0].log_norm == pytest.approx(float(np.log10(np.sum(W.numpy().astype(np.float64) ** 2))),
                                                     rel=1e-6)
    assert htsr.analyze({"model": {"fc.weight": W}, "optimizer": {"state": {}, "param_groups": []}}).source == \
        "<state dict>"  # only training state beside it: nothing left out to say
    # a Lightning checkpoint's callbacks hold scalar scores and an RNG state a byte vector: no weights
    assert htsr.analyze({"state_dict": {"fc.weight": W}, "callbacks": {"ModelCheckpoint": {
        "best_model_score": torch.tensor(0.5)}}, "rng": {"torch": torch.get_rng_state()}}).source == "<state dict>"
    # scalars and vectors at the top beside the wrapped state dicts (PyTorch's ImageNet example's best_acc1,
    # k-diffusion's RNG state demo_gen) do not make the checkpoint a state dict: its rows had been named
    # 'state_dict.fc', and a model beside its EMA gave both copies' rows
    top = {"model": {"fc.weight": W}, "model_ema": {"fc.weight": 10 * W}, "best_acc1": torch.tensor(76.1),
           "demo_gen": torch.Generator().manual_seed(0).get_state()}
    torch.save(top, str(path), _use_new_zipfile_serialization=not legacy)
    for source, where in ((path, str(path)), (top, "<state dict>")):
        r = htsr.analyze(source)
        assert [l.name for l in r.layers] == ["fc"]
        assert r.source == f"{where} (the 'model' entry read; 'model_ema' left out: other weights in the checkpoint, " \
                           "which Python reads as htsr.analyze(checkpoint['model_ema']))"
    # an EMA kept as a list of tensors (torch_ema's and diffusers' shadow_params) is named as left out too
    assert htsr.analyze({"model": {"fc.weight": W}, "ema": {"shadow_params": [10 * W], "decay": 0.999}}).source == \
        "<state dict> (the 'model' entry read; 'ema' left out: other weights in the checkpoint, which Python reads " \
        "as htsr.analyze(checkpoint['ema']))"


@pytest.mark.parametrize("legacy", [False, True])
def test_an_optimizer_state_file_is_refused_not_analysed(tmp_path, legacy):
    """torch.save(optimizer.state_dict()) (a Trainer's optimizer.pt, accelerate's optimizer.bin) holds Adam's
    moments, shaped like the weights: they had been analysed as 14 layers ('state.0.exp_avg dense 100x24')."""
    model = nn.Sequential(nn.Linear(24, 100), nn.Linear(100, 10))
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 24)).sum().backward()
    opt.step()
    path = tmp_path / "optimizer.pt"
    torch.save(opt.state_dict(), str(path), _use_new_zipfile_serialization=not legacy)
    for source, where in ((path, str(path)), (opt.state_dict(), "<state dict>")):
        with pytest.raises(SourceError) as ei:
            htsr.analyze(source)
        one_line_source_error(ei, f"{where}: an optimizer's state (torch.optim's state_dict: 'state' and "
                                  "'param_groups')", "give the model's own file")  # (what to do)


def test_torch_save_results_equal_torch_load(tmp_path):
    path, _ = _checkpoint(tmp_path)
    state = torch.load(str(path), weights_only=True)["model"]
    a = htsr.analyze(path, min_evals=5).layers
    b = htsr.analyze(dict(state), min_evals=5).layers
    assert [(l.name, l.kind, l.status, l.alpha, l.log_norm) for l in a] == \
        [(l.name, l.kind, l.status, l.alpha, l.log_norm) for l in b]  # the same bits in, the same numbers out


@pytest.mark.parametrize("legacy", [False, True])
def test_a_checkpoint_holding_a_bytearray_is_read_without_torch(tmp_path, monkeypatch, legacy):
    """torch.save pickles at protocol 2, where Python 3 spells a bytearray ``bytearray(bytes)`` and the bytes
    ``_codecs.encode(str, 'latin1')``: a checkpoint holding one (a tokenizer blob, a hash) reads, its weight
    bit for bit (the reader had taken only Python 2's ``bytearray(str, 'latin-1')``: the whole file failed,
    "bytes encoded as 'latin-1'")."""
    w = torch.randn(8, 6)
    path = tmp_path / "ba.pt"
    torch.save({"w": w, "buf": bytearray(b"\xffab"), "none": bytearray()}, path,
               _use_new_zipfile_serialization=not legacy)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails from here on
    refs = {r.name: r for r in open_source(path)}
    assert list(refs) == ["w"]
    np.testing.assert_array_equal(refs["w"].load(), w.numpy())


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_legacy_checkpoint_without_torch(tmp_path, monkeypatch, protocol):
    """The pre-1.6 pickle format (five pickles, then each storage as an int64 count and its bytes) is read
    without torch: the same tensors, bit for bit, as the zip format of the same checkpoint, and the same
    analysis; q/k/v are views into one storage at offsets. From pickle protocol 4 a FRAME opcode precedes
    the magic number (torch.load's weights-only unpickler cannot read those files; htsr can)."""
    (tmp_path / "old").mkdir()
    legacy, want = _checkpoint(tmp_path / "old", _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    zipped, _ = _checkpoint(tmp_path)
    with_torch = [(l.name, l.kind, l.status, l.alpha, l.log_norm) for l in htsr.analyze(zipped, min_evals=5).layers]
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails from here on
    src = open_source(legacy)
    assert isinstance(src, TorchLegacyFile) and isinstance(load_torch_file(legacy), TorchLegacyFile)
    refs = {r.name: r for r in src}
    assert set(refs) == set(want)
    for name, w in want.items():
        np.testing.assert_array_equal(refs[name].load(), w, err_msg=name)
    assert refs["fc.weight"].dtype == "bfloat16" and refs["emb.weight"].dtype == "float16"
    assert [(l.name, l.kind, l.status, l.alpha, l.log_norm)
            for l in htsr.analyze(legacy, min_evals=5).layers] == with_torch


def test_refused_globals_without_torch(tmp_path, monkeypatch):
    """A tensor htsr's reader cannot rebuild (a sparse one), in either format: refused, and the message
    says that installing torch lets its own weights-only loader decide."""
    odd = {"model": {"w": torch.randn(8, 8)}, "mask": torch.eye(8).to_sparse()}
    paths = [tmp_path / "odd.pt", tmp_path / "odd_legacy.pt"]
    torch.save(odd, str(paths[0]))
    torch.save(odd, str(paths[1]), _use_new_zipfile_serialization=False)
    monkeypatch.setitem(sys.modules, "torch", None)
    for path in paths:
        with pytest.raises(SourceError) as e:
            load_torch_file(path)
        msg = str(e.value)
        assert "\n" not in msg and str(path) in msg and "torch._utils._rebuild_sparse_tensor" in msg
        assert "htsr[torch]" in msg


def test_a_jagged_nested_tensor_is_refused_not_read_as_its_values(tmp_path, monkeypatch):
    """A torch.nested jagged tensor (NJT) pickles as torch.nested._internal.nested_tensor._rebuild_njt of its
    values, offsets and metadata: a torch rebuild function htsr's reader does not know, so refused naming it,
    in either format (it had been read as a values row 'tokens.0.0.values', offsets and seqlen rows beside,
    as if they were the model's weights). Written in a process of its own: once the jagged layout's machinery
    is imported, torch.load rebuilds NJTs too, which would leave this process unlike a fresh one."""
    script = f"""
import torch
torch.manual_seed(0)
njt = torch.nested.nested_tensor([torch.randn(3, 8), torch.randn(5, 8)], layout=torch.jagged)
d = {{"fc": torch.randn(16, 8), "tokens": [njt]}}
torch.save(d, {str(tmp_path / 'njt.pt')!r})
torch.save(d, {str(tmp_path / 'njt_legacy.pt')!r}, _use_new_zipfile_serialization=False)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    monkeypatch.setitem(sys.modules, "torch", None)  # htsr's own reader decides: torch's would depend on imports
    for name in ("njt.pt", "njt_legacy.pt"):
        with pytest.raises(SourceError) as ei:
            open_source(tmp_path / name)
        one_line_source_error(ei, str(tmp_path / name), "torch.nested._internal.nested_tensor._rebuild_njt",
                              "refused (nothing in the file is run)")


@pytest.mark.parametrize("legacy", [False, True])
def test_classes_htsr_does_not_import_are_inert_stand_ins(tmp_path, monkeypatch, legacy):
    """A checkpoint with a config object of the user's class, an argparse.Namespace and a numpy scalar beside
    its state dict was refused whole. Such globals become inert stand-ins (nothing is looked up or run) and
    the state dict is read; so is a checkpoint of whole modules — torch.save(model), or YOLO-style
    {"model": model, "ema": model, "optimizer": …} — as the modules' state dicts (parameters and persistent
    buffers, named as state_dict() names them), without torch."""
    torch.manual_seed(11)
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.Flatten(), nn.Linear(16 * 6 * 6, 10))
    net.register_buffer("scratch", torch.zeros(3), persistent=False)
    sd = net.state_dict()
    kw = {"_use_new_zipfile_serialization": not legacy}
    files = {"odd": {"model": sd, "config": Config(), "args": argparse.Namespace(lr=0.1), "best": np.float64(0.9)},
             "whole": net, "yolo": {"model": net, "ema": None, "epoch": 3,
                                    "optimizer": torch.optim.SGD(net.parameters(), lr=0.1).state_dict()}}
    for name, obj in files.items():
        torch.save(obj, str(tmp_path / f"{name}.pt"), **kw)
    monkeypatch.setitem(sys.modules, "torch", None)
    for name in files:
        refs = {r.name: r for r in load_torch_file(tmp_path / f"{name}.pt")}
        assert set(refs) == set(sd), name  # "scratch" is not persistent: not in the state dict
        for k, t in sd.items():
            np.testing.assert_array_equal(refs[k].load(), t.numpy(), err_msg=f"{name}: {k}")
        assert [(l.name, l.kind, l.status) for l in htsr.analyze(tmp_path / f"{name}.pt", min_evals=3).layers] == [
            ("0", "conv2d", "ok"), ("3", "dense", "ok")]


@pytest.mark.parametrize("legacy", [False, True])
def test_fp8_and_strided_views_without_torch(tmp_path, monkeypatch, legacy):
    """dtypes without a typed storage class (FP8) are saved as a byte storage and _rebuild_tensor_v3 with
    the dtype apart; strided views (a transpose, column slices) of fp8 / bf16 / fp16 / int storages are
    read element for element. torch.load cannot read the legacy FP8 file; htsr can."""
    torch.manual_seed(8)
    W = torch.randn(64, 32)
    tensors = {"w": W.to(torch.float8_e4m3fn), "s": W.to(torch.float8_e5m2)[:, 3:20], "h": W.half().T,
               "b": W.bfloat16()[::2], "i": (10 * W).int()[:, ::3]}
    path = tmp_path / "f8.pt"
    torch.save(tensors, str(path), _use_new_zipfile_serialization=not legacy)
    want = {n: (t.float() if t.is_floating_point() else t).numpy() for n, t in tensors.items()}
    monkeypatch.setitem(sys.modules, "torch", None)
    refs = {r.name: r for r in load_torch_file(path)}
    assert {n: r.dtype for n, r in refs.items()} == {"w": "float8_e4m3fn", "s": "float8_e5m2", "h": "float16",
                                                      "b": "bfloat16", "i": "int32"}
    for n, w in want.items():
        np.testing.assert_array_equal(refs[n].load(), w, err_msg=n)


@pytest.mark.parametrize("legacy", [False, True])
def test_fnuz_fp8_weights_are_analysed_and_a_scale_only_dtype_gets_a_row(tmp_path, monkeypatch, legacy):
    """AMD's FP8 (float8_e4m3fnuz, float8_e5m2fnuz) weights are floats like NVIDIA's: analysed; they had no
    row at all. A 2-D weight stored as E8M0 (exponents only, a dtype of scales) gets a skipped row."""
    torch.manual_seed(9)
    W = torch.randn(96, 64)
    tensors = {"a.weight": W.to(torch.float8_e4m3fnuz), "b.weight": W.to(torch.float8_e5m2fnuz),
               "e.weight": W.abs().to(torch.float8_e8m0fnu)}
    path = tmp_path / "fnuz.pt"
    torch.save(tensors, str(path), _use_new_zipfile_serialization=not legacy)
    monkeypatch.setitem(sys.modules, "torch", None)
    refs = {r.name: r for r in load_torch_file(path)}
    np.testing.assert_array_equal(refs["a.weight"].load(), tensors["a.weight"].float().numpy())
    rows = {l.name: l.status for l in htsr.analyze(path, min_evals=5).layers}
    assert rows["a"] == rows["b"] == "ok"
    assert rows["e"].startswith("skipped: stored as float8_e8m0fnu, not a dtype of weights htsr analyses")


def test_a_corrupt_deflated_storage_fails_its_row_naming_the_file(tmp_path):
    """A checkpoint re-zipped with compression whose member's deflate stream is damaged: zlib's error fails
    that tensor's row naming the file and the tensor (it named neither); the other tensor is read."""
    plain, deflated = tmp_path / "g.pt", tmp_path / "deflated.pt"
    torch.manual_seed(10)
    torch.save({"a.weight": torch.randn(100, 80), "b.weight": torch.randn(90, 70)}, str(plain))
    with zipfile.ZipFile(plain) as z, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as out:
        for info in z.infolist():
            out.writestr(info.filename, z.read(info.filename))
    raw = bytearray(deflated.read_bytes())
    with zipfile.ZipFile(deflated) as z:
        info = z.getinfo("g/data/0")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + 50:start + 80] = bytes(b ^ 0xFF for b in raw[start + 50:start + 80])
    deflated.write_bytes(bytes(raw))
    rows = {l.name: l.status for l in htsr.analyze(deflated, min_evals=5).layers}
    assert rows["b"] == "ok"
    assert rows["a"].startswith(f"failed: {deflated}: tensor a.weight: storage unreadable (Error -3 while "
                                "decompressing data") and rows["a"].endswith("save or download it again")


def test_members_that_expand_past_a_thousand_times_are_not_decompressed(tmp_path):
    """A 200 kB archive whose deflated data.pkl declares 200 MB (a valid pickle, then zeros) was decompressed
    whole before the pickle was read (a 1 GB one peaked at 2.1 GB); a deflated storage of zeros likewise.
    Both are refused by the ratio the keras and npz readers use (torch.save stores members uncompressed)."""
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("archive/data.pkl", "w", force_zip64=True) as f:
            f.write(b"\x80\x02}q\x00.")
            f.write(bytes(200 << 20))
    with pytest.raises(SourceError, match=r"archive/data.pkl would expand \d+ bytes to 209715206: .*zip bomb"):
        open_source(bomb)
    plain, zeros = tmp_path / "zeros.pt", tmp_path / "zeros_deflated.pt"
    z = torch.zeros(4096, 4096)
    # (an empty view of the same storage beside it)
    torch.save({"z.weight": z, "z.empty": z[:, :0], "b.weight": torch.randn(90, 70)}, str(plain))  # 64 MiB: ~65 kB
    with zipfile.ZipFile(plain) as z, zipfile.ZipFile(zeros, "w", zipfile.ZIP_DEFLATED) as out:
        for info in z.infolist():
            out.writestr(info.filename, z.read(info.filename))
    rows = {l.name: l.status for l in htsr.analyze(zeros, min_evals=5).layers}
    assert rows["b"] == "ok" and "would expand" in rows["z"] and rows["z"].startswith("failed:")
    # the empty view reads no byte of that member: its values are an empty matrix, not the member's refusal
    (empty,) = [r for r in TorchZipFile(zeros).refs() if r.name == "z.empty"]
    assert empty.load().shape == (4096, 0)


class _NamedAgainstKind(nn.Module):
    """Layers whose names say another kind than their classes (only the class can say it)."""

    def __init__(self) -> None:
        super().__init__()
        self.bag, self.tokens = nn.EmbeddingBag(90, 64), nn.Embedding(100, 64)
        self.lstmp = nn.LSTM(64, 64, proj_size=32)  # weight_hr_l0: the projection
        self.embed_out = nn.Linear(64, 200)  # GPT-NeoX's head, named like an embedding
        self.sinc_filters = nn.Conv1d(64, 80, kernel_size=65)  # a kernel longer than a name-less guess allows


def test_a_pickled_module_s_weights_have_their_module_classes_kinds(tmp_path, monkeypatch):
    """torch.save(model) holds each module's class: its weights get the kinds the live module gives (the
    class names were dropped with the modules, and the names guessed: bag and tokens dense, embed_out an
    embedding, sinc_filters 80 rows of a 'stack'); an LSTM's projection weight_hr_l0 is rnn from a state
    dict too."""
    torch.manual_seed(0)
    m = _NamedAgainstKind()
    live = {l.name: l.kind for l in htsr.analyze(m, min_evals=5).layers}
    assert live["bag"] == live["tokens"] == "embedding" and live["embed_out"] == "dense"
    assert live["sinc_filters"] == "conv1d" and live["lstmp.weight_hr_l0"] == "rnn"
    torch.save(m, str(tmp_path / "whole.pt"))
    torch.save(m.state_dict(), str(tmp_path / "sd.pt"))
    monkeypatch.setitem(sys.modules, "torch", None)
    assert {l.name: l.kind for l in htsr.analyze(tmp_path / "whole.pt", min_evals=5).layers} == live
    assert {l.name: l.kind for l in htsr.analyze(tmp_path / "sd.pt", min_evals=5).layers}["lstmp.weight_hr_l0"] == "rnn"


class _WithActivation(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.act = nn.Linear(16, 16), nn.functional.gelu  # a torch function held as an attribute


def test_data_parallel_modules_with_torch_functions_and_protocol_1_legacy_files_are_read(tmp_path, monkeypatch):
    """torch's own classes and functions other than tensor rebuilders (DataParallel, F.gelu as an attribute)
    are stand-ins like any others (they were refused), and a legacy file of pickle protocol 1 (its magic
    number a decimal LONG) is recognised as one. At protocol 1 each module is made by copy_reg._reconstructor
    and keeps its class: a Bilinear, whose attributes make it no torch layer, is a stack of bilinear forms as
    live (a stand-in without its class had been typed by its weight's shape: a conv1d of 5 taps)."""
    dp = nn.DataParallel(_WithActivation())
    torch.save(dp, str(tmp_path / "dp.pt"))
    torch.save(dp.module, str(tmp_path / "p1.pt"), pickle_protocol=1, _use_new_zipfile_serialization=False)
    bilinear = nn.Module()
    bilinear.y = nn.Bilinear(6, 5, 4)
    torch.save(bilinear, str(tmp_path / "bilinear.pt"), pickle_protocol=1, _use_new_zipfile_serialization=False)
    live = [(r.name, r.kind, r.N, r.M) for r in htsr.analyze(bilinear, min_evals=2).layers]
    assert live == [(f"y[{k}]", "stack", 6, 5) for k in range(4)]
    monkeypatch.setitem(sys.modules, "torch", None)
    assert [r.name for r in load_torch_file(tmp_path / "dp.pt")] == ["module.fc.weight", "module.fc.bias"]
    assert isinstance(load_torch_file(tmp_path / "p1.pt"), TorchLegacyFile)
    assert [r.name for r in load_torch_file(tmp_path / "p1.pt")] == ["fc.weight", "fc.bias"]
    assert [(r.name, r.kind, r.N, r.M) for r in htsr.analyze(tmp_path / "bilinear.pt", min_evals=2).layers] == live


def test_a_whole_module_whose_tensor_carries_an_attribute_is_read(tmp_path, monkeypatch):
    """A tensor with a Python attribute of its own is pickled through torch._tensor._rebuild_from_type_v2 with
    the class torch.Tensor (transformers' BERT position_ids): torch.save(model) of such a model was refused
    ("the pickle references torch.Tensor"), by htsr and by torch.load(weights_only=True) after it."""
    m = _WithActivation()
    m.register_buffer("position_ids", torch.arange(64).unsqueeze(0))
    m.position_ids.tag = "ids"
    torch.save(m, str(tmp_path / "whole.pt"))
    # an optional submodule left out, registered as None (torchvision's downsample=None): no module to walk
    m.register_module("downsample", None)
    torch.save(m, str(tmp_path / "optional.pt"))
    monkeypatch.setitem(sys.modules, "torch", None)
    assert [r.name for r in load_torch_file(tmp_path / "whole.pt")] == list(m.state_dict())  # its order too
    assert [r.name for r in load_torch_file(tmp_path / "optional.pt")] == list(m.state_dict())


class _Masked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok, self.frontend = nn.Embedding(100, 32), nn.Conv1d(16, 24, 41)
        self.register_buffer("tril", torch.ones(8, 8).tril().bool(), persistent=False)


def test_optimizer_objects_modules_in_tuples_and_live_masks(tmp_path, monkeypatch):
    """A pickled optimizer object (its state a defaultdict(dict)) beside the model is training state, not a
    hostile file; a whole model inside a tuple reads as its state dict; a live module's bool mask buffer
    does not make it a quantized module (its layers kept their kinds: conv1d, embedding)."""
    m = _Masked()
    assert {r.name: r.kind for r in open_source(m) if r.kind} == {"tok.weight": "embedding", "frontend.weight": "conv1d"}
    torch.save({"model": m, "optimizer": torch.optim.Adam(m.parameters())}, str(tmp_path / "opt.pt"))
    torch.save((m, {"epoch": 1}), str(tmp_path / "tuple.pt"))
    torch.save([m, {"epoch": 1}], str(tmp_path / "list.pt"))  # a list of models (an ensemble) likewise
    monkeypatch.setitem(sys.modules, "torch", None)
    assert [r.name for r in load_torch_file(tmp_path / "opt.pt")] == list(m.state_dict())
    for name in ("tuple.pt", "list.pt"):
        assert [r.name for r in load_torch_file(tmp_path / name)] == [f"0.{k}" for k in m.state_dict()], name


@pytest.mark.parametrize("legacy", [False, True])
def test_refused_global_gets_torch_loads_verdict(tmp_path, legacy):
    odd = tmp_path / "odd.pt"
    torch.save({"model": {"w": torch.randn(8, 8)}, "loader": torch.serialization.load}, str(odd),
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(SourceError) as e:  # torch is installed: its weights-only unpickler refuses it too
        load_torch_file(odd)
    msg = str(e.value)  # htsr's reason (which global), whatever torch's wording for the format
    assert "\n" not in msg and "refused" in msg and "torch.serialization.load" in msg and "refuses it too" in msg
    assert "re-save it with torch.save(model.state_dict(), ...) or as safetensors" in msg  # what to do about it


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes]) -> Path:
    """Copy a zip, replacing the members whose name ends with a key of ``replace``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            for suffix, new in replace.items():
                if info.filename.endswith(suffix):
                    data = new
            zout.writestr(info, data)
    return dst


def test_foreign_global_is_refused_not_run(scripted, tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("executed",))  # a harmless stand-in for os.system

    path = _rewrite(scripted, tmp_path / "evil.pt", {"/data.pkl": pickle.dumps({"w": Boom()}, protocol=2)})
    with pytest.raises(SourceError) as e:
        open_source(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and ".print" in msg and "refused" in msg


def test_bytes_with_another_codec_are_refused(tmp_path):
    """Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1'): no other codec is looked up."""
    path = tmp_path / "b.pt"
    torch.save({"w": torch.randn(4, 4), "tag": b"xy"}, str(path))
    with zipfile.ZipFile(path) as z:
        member = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        pkl = z.read(member)
    assert b"latin1" in pkl
    bad = _rewrite(path, tmp_path / "bad.pt", {"/data.pkl": pkl.replace(b"latin1", b"rot_13")})
    with pytest.raises(SourceError, match="bytes encoded as 'rot_13'"):
        open_source(bad)


def test_lying_storage_size_names_the_tensor(scripted, tmp_path):
    with zipfile.ZipFile(scripted) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
        members = [n for n in z.namelist() if "/data/" in n]
        # the storage of head.weight: the member whose size is 7 × 12 float32
        key = next(n for n in members if z.getinfo(n).file_size == 7 * 12 * 4)
    short = _rewrite(scripted, tmp_path / "short.pt", {key: b"\0" * 100})
    refs = {r.name: r for r in open_source(short)}  # (the whole file had been refused: the other tensors are read)
    with pytest.raises(SourceError) as e:
        refs["head.weight"].load()
    msg = str(e.value)
    assert "\n" not in msg and str(short) in msg and "head.weight" in msg and "holds 100" in msg
    assert "save or download it again" in msg
    intact = {r.name: r.load() for r in open_source(scripted) if r.name != "head.weight"}
    for name, W in intact.items():
        np.testing.assert_array_equal(refs[name].load(), W, err_msg=name)
    assert pkl  # the pickle itself was left alone


def test_truncated_archive(scripted, tmp_path):
    raw = scripted.read_bytes()
    for cut in (len(raw) // 3, len(raw) - 30):
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(raw[:cut])
        with pytest.raises(SourceError) as e:
            open_source(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value)


def _small_archives() -> dict[str, tuple[bytes, str, bytes]]:
    """A small torch.jit.save and torch.save archive: (archive bytes, data.pkl member, its bytes)."""
    model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 4))
    script, saved = io.BytesIO(), io.BytesIO()
    torch.jit.save(torch.jit.script(model), script)
    torch.save({"model": model.state_dict(), "epoch": 1, "size": torch.Size([3])}, saved)
    out = {}
    for kind, buf in (("script", script), ("save", saved)):
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
            name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            out[kind] = (buf.getvalue(), name, z.read(name))
    return out


_ARCHIVES = _small_archives()
_counter = itertools.count()


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(sorted(_ARCHIVES)),
       st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzzed_pickle_raises_only_htsr_errors(tmp_path, which, mutations):
    archive, member, pkl = _ARCHIVES[which]
    raw = bytearray(pkl)
    for where, byte in mutations:
        raw[int(where * len(raw))] = byte
    path = tmp_path / f"fuzz{next(_counter)}.pt"
    with zipfile.ZipFile(io.BytesIO(archive)) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, bytes(raw) if info.filename == member else zin.read(info))
    _load_all(open_source, path)


# ------------------------------------------------------------------ hostile pickles (QA, 2026-12-04)

def _zip_with(path: Path, data_pkl: bytes, storages: dict[str, bytes] | None = None) -> Path:
    """A torch.save-style archive around a hand-written data.pkl."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            z.writestr(f"archive/data/{key}", data)
    return path


def _glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _text(s: str) -> bytes:
    return b"X" + len(s.encode()).to_bytes(4, "little") + s.encode()


def _ints(*xs: int) -> bytes:
    return b"(" + b"".join(b"J" + x.to_bytes(4, "little", signed=True) for x in xs) + b"t"


def _tensor(key: str, n: int) -> bytes:
    """_rebuild_tensor_v2 of an n × n float32 storage ``key``, as torch.save writes it."""
    pid = b"(" + _text("storage") + _glob("torch", "FloatStorage") + _text(key) + _text("cpu") + _ints(n * n)[1:-1] + b"tQ"
    return (_glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + _ints(0)[1:-1] + _ints(n, n) + _ints(n, 1)
            + b"\x89" + _glob("collections", "OrderedDict") + b")R" + b"tR")


@pytest.mark.parametrize("module, name", [("os", "system"), ("importlib.machinery", "SourceFileLoader"),
                                          ("os.path", "realpath"), ("ctypes.util", "find_library")])
def test_the_globals_of_hostile_packages_and_their_submodules_are_refused(tmp_path, module, name):
    """A hostile package's submodules (importlib.machinery's loader runs a file's code) are refused as the
    package is, not made inert stand-ins like another package's classes."""
    from htsr.io.torchzip import RefusedGlobal

    pkl = b"\x80\x02}(" + _text("w") + _tensor("0", 4) + _text("x") + _glob(module, name) + b"u."
    with pytest.raises(RefusedGlobal, match=f"references {module}.{name}, which"):
        TorchZipFile(_zip_with(tmp_path / "h.pt", pkl, {"0": bytes(64)}))


def test_another_packages_rebuild_function_is_inert_and_torchs_unknown_ones_refused(tmp_path):
    """transformers 5's pickled LLMs (torch.save(model) of Llama, Mixtral … with the kernels package) call
    kernels._internals.layer.layer._rebuild_kernel_func: the whole file was refused, as any '_rebuild…' was.
    Another package's is an inert stand-in (the weights beside it read); torch's own unknown ones are refused."""
    n = 16
    kernel = _glob("kernels._internals.layer.layer", "_rebuild_kernel_func") + b"(" + _text("rmsnorm") + b"tR"
    pkl = b"\x80\x02}(" + _text("w") + _tensor("0", n) + _text("k") + kernel + b"u."
    assert [r.name for r in open_source(_zip_with(tmp_path / "m.pt", pkl, {"0": bytes(4 * n * n)}))] == ["w"]
    sparse = _glob("torch._utils", "_rebuild_something_new") + b"(tR"
    with pytest.raises(SourceError, match="torch._utils._rebuild_something_new"):
        open_source(_zip_with(tmp_path / "s.pt", b"\x80\x02}(" + _text("w") + sparse + b"u."))


def test_state_given_to_a_tensor_after_it_was_built_is_refused(tmp_path):
    """A BUILD after the tensor's rebuild wrote into the checked tensor (negative strides: the loader read
    memory outside the storage, and crashed the process when it was memory-mapped)."""
    n = 16
    pkl = b"\x80\x02}" + _text("w") + _tensor("0", n) + b"}" + _text("stride") + _ints(-n, -1) + b"sbs."
    path = _zip_with(tmp_path / "negstride.pt", pkl, {"0": bytes(4 * n * n)})
    with pytest.raises(SourceError, match="state given to a tensor after it was built"):
        open_source(path)


def test_a_build_on_an_allowed_class_or_function_changes_nothing_for_later_files(tmp_path):
    """BUILD on the OrderedDict class (setting its items method to tuple) or on an allowed function set
    attributes every later read used: a good checkpoint then read as empty. Both are refused now."""
    good = tmp_path / "good.pt"
    torch.save(nn.Linear(8, 8).state_dict(), str(good))
    gadgets = {"class": _glob("collections", "OrderedDict") + b"(N}" + _text("items") + _glob("torch", "Size") + b"stb",
               "function": _glob("_codecs", "encode") + b"(N}" + _text("__defaults__") + b"(" + _text("rot13") + b"tstb"}
    for what, gadget in gadgets.items():
        with pytest.raises(SourceError):
            open_source(_zip_with(tmp_path / f"{what}.pt", b"\x80\x02" + gadget + b"0N."))
        assert {r.name for r in open_source(good)} == {"weight", "bias"}, what


def test_deep_nesting_and_keys_built_of_shared_parts_are_refused_before_unpickling(tmp_path):
    """CPython hashes a tuple key recursively in C without a depth guard (2000 nested tuples crashed the
    process, torch.load's too), and a key made of shared halves, k levels deep, costs 2^k to hash — also when
    the halves reach the key through a list filled in place."""
    deep = b"\x80\x02}" + b")" + b"\x85" * 2000 + b"Ns."  # {((((…)))): None}
    with pytest.raises(SourceError, match="nested more than 1000 levels"):
        open_source(_zip_with(tmp_path / "deep.pt", deep))
    # lists nested by APPEND (each list appended to the one below it) nest as deep as built ones
    appended = b"\x80\x02}" + _text("k") + b"]" * 2001 + b"a" * 2000 + b"s."  # {'k': [[[…]]]}
    with pytest.raises(SourceError, match="nested more than 1000 levels"):
        open_source(_zip_with(tmp_path / "appended.pt", appended))
    dag = b"\x80\x02}" + b")" + b"q\x00"  # t0 = (); memo 0
    for k in range(1, 25):  # t_k = (t_{k-1}, t_{k-1})
        dag += b"h" + bytes([k - 1]) + b"h" + bytes([k - 1]) + b"\x86q" + bytes([k])
    with pytest.raises(SourceError, match="key or set element of more than 1000 elements"):
        open_source(_zip_with(tmp_path / "dag.pt", dag + b"Ns."))
    # the same halves appended to a list (APPEND fills it in place) and the list made a tuple key by
    # builtins.tuple: what the list was filled with counts (the key's 2^12 elements had passed as one list)
    filled = b"\x80\x02}" + b")q\x000"  # t0 = (); memo 0; popped
    for k in range(1, 13):  # t_k = (t_{k-1}, t_{k-1}), memo k, popped
        filled += b"h" + bytes([k - 1]) + b"h" + bytes([k - 1]) + b"\x86q" + bytes([k]) + b"0"
    filled += _glob("builtins", "tuple") + b"]h\x0ca\x85R" + b"Ns."  # {tuple([t_12]): None}
    with pytest.raises(SourceError, match="key or set element of more than 1000 elements"):
        open_source(_zip_with(tmp_path / "filled.pt", filled))


@pytest.mark.parametrize("module", ["__builtin__", "builtins"])
def test_str_of_lists_built_of_shared_parts_is_refused_at_once(tmp_path, module):
    """str(), allowed for a str subclass's value at protocols 0 and 1, on lists L_k = [L_k-1, L_k-1] of 40
    levels: it walked 2^40 elements (27 levels of a 746-byte file took 40 s and 1.3 GB). Only a string is
    taken."""
    import struct

    p = b"\x80\x02]r" + struct.pack("<I", 0)
    for i in range(1, 41):
        g = b"j" + struct.pack("<I", i - 1)
        p += b"(" + g + g + b"lr" + struct.pack("<I", i)
    p += b"}X" + struct.pack("<I", 1) + b"x" + _glob(module, "str") + b"j" + struct.pack("<I", 40) + b"\x85Rs."
    with pytest.raises(SourceError, match="str\\(\\) called on a list"):
        open_source(_zip_with(tmp_path / "dag.pt", p))


class _Twice(nn.Module):
    def __init__(self, child: nn.Module) -> None:
        super().__init__()
        self.a, self.b = child, child


def test_a_submodule_shared_without_end_is_refused_and_a_tied_one_named_twice(tmp_path):
    """Each level holding the one below twice: 40 levels named 2^40 tensors from a 3 kB file. A module held
    by a few others is named once per holder, as state_dict() does."""
    m: nn.Module = nn.Linear(4, 4)
    for _ in range(40):
        m = _Twice(m)
    torch.save(m, str(tmp_path / "dag.pt"))
    with pytest.raises(SourceError, match="names more than 200000 modules"):
        open_source(tmp_path / "dag.pt")
    # fewer modules (2^9 visits), each visit of the leaf naming its 3000 parameters again: 1.5 million names from
    # a 30 kB file (at 17 levels, all memory: 24 GB)
    leaf = nn.Module()
    w = nn.Parameter(torch.ones(2, 2))
    for i in range(3000):
        leaf.register_parameter(f"p{i}", w)
    m = leaf
    for _ in range(9):
        m = _Twice(m)
    torch.save(m, str(tmp_path / "wide.pt"))
    with pytest.raises(SourceError, match="names more than 1000000 parameters and buffers"):
        open_source(tmp_path / "wide.pt")
    # one activation held by each of 80 blocks is no such tree (refused when a module's own uses were capped
    # at 64)
    act = nn.GELU()
    blocks = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), act) for _ in range(80))
    torch.save(blocks, str(tmp_path / "blocks.pt"))
    assert len(htsr.analyze(tmp_path / "blocks.pt", min_evals=2).layers) == 80
    tied = _Twice(nn.Linear(4, 4))
    torch.save(tied, str(tmp_path / "tied.pt"))
    torch.jit.save(torch.jit.script(tied), str(tmp_path / "tied_script.pt"))
    # TorchScript too (its alias filter for an LSTM's _flat_weights dropped a tied name without a word)
    for path in (tmp_path / "tied.pt", tmp_path / "tied_script.pt"):
        assert [r.name for r in open_source(path)] == list(tied.state_dict()), path.name
        r = htsr.analyze(path, min_evals=2)
        assert r.num_tensors == 4 and [l.name for l in r.layers] == ["a"], path.name


@pytest.mark.parametrize("legacy", [False, True])
def test_an_expanded_view_gets_a_skipped_row_not_a_huge_matrix(tmp_path, legacy):
    """torch.save keeps an expand()ed view (stride 0): 4 stored values read as a 3000 × 3000 matrix took
    1 GB. Such a view is no stored matrix: its row says so — once for a whole expert stack or conv (a file
    of 24 kB claiming 2^40 experts, or 2048 × 2048 kernel positions, was one row per expert or a list of
    every position before the first row said so: it never finished)."""
    torch.save({"w": torch.randn(3000).expand(3000, 3000), "v": torch.randn(64, 32),
                "experts.w": torch.randn(100, 60).expand(2**40, 100, 60),
                "conv.weight": torch.randn(1).expand(64, 32, 2048, 2048)}, str(tmp_path / "x.pt"),
               _use_new_zipfile_serialization=not legacy)
    rows = {l.name: l.status for l in htsr.analyze(tmp_path / "x.pt", min_evals=5).layers}
    assert rows.keys() == {"v", "w", "experts.w", "conv"}
    assert rows["v"] == "ok" and rows["w"].startswith("skipped: an expanded view: 9000000 values over 3000")
    assert rows["experts.w"].startswith(f"skipped: an expanded view: {2**40 * 6000} values over 6000")
    assert rows["conv"].startswith(f"skipped: an expanded view: {64 * 32 * 2048**2} values over 1 ")


# ------------------------------------------------------------------ the legacy format's bad input


def _legacy_bytes() -> tuple[bytes, int]:
    """A small legacy torch.save file (two float32 storages) and the offset of its first storage's int64
    count (the storages come last: a count, then 4 bytes per element; 48 and 24 elements)."""
    torch.manual_seed(6)
    buf = io.BytesIO()
    torch.save({"a.weight": torch.randn(6, 8), "b.weight": torch.randn(4, 6)}, buf,
               _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    return raw, len(raw) - (8 + 4 * 48) - (8 + 4 * 24)


_LEGACY, _LEGACY_FIRST_COUNT = _legacy_bytes()


def test_legacy_truncated_anywhere(tmp_path, monkeypatch):
    """Every cut of the file: in its pickles, a storage's count or its bytes → one line naming the file."""
    monkeypatch.setitem(sys.modules, "torch", None)
    assert len(TorchLegacyFile(_write(tmp_path / "whole.pt", _LEGACY))) == 2
    for cut in range(14, len(_LEGACY)):  # from 14 bytes the magic number is whole: htsr's reader is used
        path = _write(tmp_path / f"cut{cut}.pt", _LEGACY[:cut])
        with pytest.raises(SourceError) as e:
            for ref in open_source(path):
                ref.load()
        assert "\n" not in str(e.value) and str(path) in str(e.value), cut


def test_legacy_lying_counts_and_header(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    raw = bytearray(_LEGACY)
    first = _LEGACY_FIRST_COUNT
    n = int.from_bytes(raw[first:first + 8], "little")
    assert n in (48, 24)
    raw[first:first + 8] = (n + 1000).to_bytes(8, "little")  # claims more bytes than the file holds
    with pytest.raises(SourceError, match="runs past the end of the file"):
        TorchLegacyFile(_write(tmp_path / "long.pt", bytes(raw)))
    # fewer elements than a tensor needs: the following storage is misplaced, the shorter one named
    raw[first:first + 8] = (n - 2).to_bytes(8, "little")
    with pytest.raises(SourceError) as e:
        TorchLegacyFile(_write(tmp_path / "short.pt", bytes(raw)))
    assert "\n" not in str(e.value) and ("needs" in str(e.value) or "past the end" in str(e.value))
    # the protocol version (a pickled 1001 right after the magic number) and the byte order
    proto = _LEGACY.index(b"M\xe9\x03")  # BININT2 1001
    bad = _LEGACY[:proto] + b"M\xea\x03" + _LEGACY[proto + 3:]
    with pytest.raises(SourceError, match="protocol 1002"):
        TorchLegacyFile(_write(tmp_path / "proto.pt", bad))
    endian = _LEGACY.index(b"little_endian") + len(b"little_endian")
    flag = _LEGACY.index(b"\x88", endian)  # NEWTRUE
    bad = _LEGACY[:flag] + b"\x89" + _LEGACY[flag + 1:]
    with pytest.raises(SourceError, match="not little-endian"):
        TorchLegacyFile(_write(tmp_path / "big.pt", bad))
    # a system-info dict that does not say little_endian at all (the key renamed, same length) says nothing
    bad = _LEGACY.replace(b"little_endian", b"little_endiaX", 1)
    with pytest.raises(SourceError, match="not little-endian"):
        TorchLegacyFile(_write(tmp_path / "unmarked.pt", bad))


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzzed_legacy_file_raises_only_htsr_errors(tmp_path, mutations):
    raw = bytearray(_LEGACY)
    for where, byte in mutations:
        raw[14 + int(where * (len(raw) - 14))] = byte  # the magic number intact: htsr's reader decides
    path = _write(tmp_path / f"fuzz{next(_counter)}.pt", bytes(raw))
    _load_all(TorchLegacyFile, path)


def _load_all(open_file, path: Path) -> None:
    """Open ``path`` and load every tensor: only htsr's errors may escape, in one line naming the file (a
    tensor's skipped row, LayerSkipped, is no error)."""
    try:
        for ref in open_file(path):
            with contextlib.suppress(LayerSkipped):
                ref.load()
    except SourceError as e:
        assert "\n" not in str(e) and str(path) in str(e)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.network
def test_silero_jit_equals_torch_and_onnx():
    """The real Silero VAD TorchScript file: htsr's reader (no torch) gives exactly torch.jit.load's
    parameters, and its 16 kHz model holds the weights of the wheel's ONNX copy (so the same alphas)."""
    from conftest import fetch_model
    from real_models import value_match

    from htsr.io.onnx import OnnxFile

    jit_path, onnx_path = fetch_model("silero_jit"), fetch_model("silero_onnx")
    refs = {r.name: r for r in TorchZipFile(jit_path)}
    live = torch.jit.load(str(jit_path), map_location="cpu")
    params = {n: p.detach().numpy() for n, p in live.named_parameters()}
    params.update({n: b.numpy() for n, b in live.named_buffers()})
    assert set(params) <= set(refs)
    for n, p in params.items():
        np.testing.assert_array_equal(refs[n].load(), p, err_msg=n)
    jit16 = {n: r.load() for n, r in refs.items() if n.startswith("_model.") and len(r.shape) >= 2}
    ox = {r.name: r.load() for r in OnnxFile(onnx_path)}
    match = value_match(ox, jit16)
    assert len(match) == len(ox) == 8, match  # every ONNX weight is a JIT tensor
    a = {r.name: r for r in htsr.analyze(onnx_path).layers}
    b = {r.name: r for r in htsr.analyze(jit_path).layers}
    for on, jn in match.items():
        ra, rb = a[on.removesuffix(".weight")], b[jn.removesuffix(".weight")]
        assert ra.status == rb.status and ra.kind == rb.kind, (on, jn)
        if ra.status == "ok":
            # equal tensors (LSTM gate rows permuted): equal ESDs up to the float32 Gram's summation order
            assert ra.alpha == pytest.approx(rb.alpha, rel=1e-6), (on, jn)


@pytest.mark.network
def test_efficientnet_lite0_legacy_pth_without_torch(efficientnet_lite0_path, monkeypatch):
    """The real EfficientNet-Lite0 checkpoint is a legacy (pre-zip) torch.save file: read without torch,
    every tensor equals torch.load's, bit for bit, and the analysis is the one of torch.load's state dict."""
    state = torch.load(str(efficientnet_lite0_path), map_location="cpu", weights_only=True)
    want = {n: t.numpy() for n, t in state.items()}
    def rows(result):  # repr: exact for floats, and NaN (not fitted) equals NaN
        return [(l.name, l.kind, l.status, repr(l.alpha)) for l in result.layers]

    by_torch = rows(htsr.analyze(dict(state)))
    monkeypatch.setitem(sys.modules, "torch", None)
    src = open_source(efficientnet_lite0_path)
    assert isinstance(src, TorchLegacyFile)
    refs = {r.name: r for r in src}
    assert set(refs) == set(want) and len(refs) == 296
    for n, w in want.items():
        np.testing.assert_array_equal(refs[n].load(), w.astype(refs[n].load().dtype), err_msg=n)
    assert rows(htsr.analyze(efficientnet_lite0_path)) == by_torch


def test_complex_tensors_are_read_and_a_short_record_before_them_is_refused(tmp_path):
    """A RoPE table (complex64) beside the weights: read without torch (it used to send the file to
    torch.load(mmap=True), which reads a short record on into the next one's bytes and gave a weight of
    garbage an 'ok' row); a 2-D complex weight gets a skipped row; a truncated storage is a clean error."""
    g = torch.Generator().manual_seed(0)
    sd = {"a.weight": torch.randn(64, 128, generator=g), "b.weight": torch.randn(64, 128, generator=g),
          "freqs": torch.randn(4, dtype=torch.complex64, generator=g),
          "c.weight": torch.randn(40, 30, dtype=torch.complex64, generator=g)}
    path = tmp_path / "cplx.pt"
    torch.save(sd, str(path))
    rows = {r.name: r for r in htsr.analyze(path, min_evals=5).layers}
    assert set(rows) == {"a", "b", "c"} and rows["a"].status == rows["b"].status == "ok"
    assert rows["c"].status.startswith("skipped: a complex64 weight: htsr analyses real matrices")
    # loaded, complex values come back as stored (they had been cast to float32: the real parts alone, with
    # numpy's ComplexWarning)
    refs = {r.name: r for r in open_source(path)}
    for name in ("freqs", "c.weight"):
        assert refs[name].load().dtype == np.complex64
        np.testing.assert_array_equal(refs[name].load(), sd[name].numpy(), err_msg=name)
    short = tmp_path / "short.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(short, "w") as dst:
        for n in src.namelist():
            data = src.read(n)
            dst.writestr(n, data[:-64] if n.endswith("/data/0") else data)
    rows = {r.name: r for r in htsr.analyze(short, min_evals=5).layers}  # the short storage's tensor fails alone
    assert rows["a"].status.startswith(f"failed: {short}: tensor a.weight: shape [64, 128] needs 32768 bytes of "
                                       "storage 0, which holds 32704 — truncated or corrupt file")
    assert rows["b"].status == "ok"


def test_a_bare_tensor_is_named_after_its_file(tmp_path):
    path = tmp_path / "proj.pt"
    torch.save(torch.randn(40, 30, generator=torch.Generator().manual_seed(1)), str(path))
    (row,) = htsr.analyze(path, min_evals=5).layers
    assert (row.name, row.shape, row.status) == ("proj", "40x30", "ok")


def test_a_lazy_model_saved_before_its_first_forward_gives_rows_that_say_so(tmp_path):
    """A LazyLinear's UninitializedParameter pickles as an object of no values: its tensors vanished (6 keys
    in the file, num_tensors 2, one row), as the live module's give skipped rows."""
    model = nn.Sequential(nn.LazyLinear(64), nn.ReLU(), nn.Linear(64, 100), nn.LazyConv2d(16, 3))
    torch.save(model.state_dict(), str(tmp_path / "lazy.pt"))
    r = htsr.analyze(tmp_path / "lazy.pt", min_evals=2)
    assert r.num_tensors == 6
    assert [(x.name, x.status) for x in r.layers] == [
        ("0", "skipped: not initialized: a Lazy module saved before its first forward pass; run one, then save"),
        ("2", "ok"),
        ("3", "skipped: not initialized: a Lazy module saved before its first forward pass; run one, then save")]
    assert [(n.reason, n.examples) for n in r.not_analysed] == [("bias or norm buffer", ("0.bias", "2.bias", "3.bias"))]
    # a LazyBatchNorm's running statistics are UninitializedBuffers: tensors of the file as much as its parameters
    norm = nn.Sequential(nn.LazyLinear(64), nn.LazyBatchNorm1d())
    torch.save(norm.state_dict(), str(tmp_path / "lazy_norm.pt"))
    r = htsr.analyze(tmp_path / "lazy_norm.pt", min_evals=2)
    assert r.num_tensors == len(norm.state_dict()) == 7
    assert ("bias or norm buffer", ("0.bias", "1.bias", "1.running_mean")) in [(n.reason, n.examples)
                                                                            for n in r.not_analysed]
    # live: the conv's row is of its kind (it had been 'dense', and --kinds conv2d dropped it), a LazyBatchNorm's
    # scale no row (it had one)
    live = nn.Sequential(nn.LazyConv2d(32, 3), nn.LazyBatchNorm2d(), nn.Flatten(), nn.Linear(64, 80))
    r = htsr.analyze(live, min_evals=2)
    assert [(x.name, x.kind, x.status) for x in r.layers] == [
        ("0", "conv2d", "skipped: LazyConv2d's weight is not initialized: run one forward pass first"),
        ("3", "dense", "ok")]
    assert "1.weight" in [e for n in r.not_analysed for e in n.examples]
    assert {"0.bias", "1.bias"} <= set(next(n.examples for n in r.not_analysed if n.reason == "bias or norm buffer"))
    assert [x.name for x in htsr.analyze(live, kinds="conv2d").layers] == ["0"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # torch.ao's migration notes
def test_a_quantized_torchscript_model_is_refused_with_what_to_analyse(tmp_path):
    """A torch.ao quantized model scripted (or saved for the lite interpreter) holds quantized tensors htsr does
    not rebuild: refused in one line, which said nothing of what to do."""
    q = torch.ao.quantization

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant, self.dequant, self.fc = q.QuantStub(), q.DeQuantStub(), nn.Linear(32, 100)

        def forward(self, x):
            return self.dequant(self.fc(self.quant(x)))

    net = Net().eval()
    net.qconfig = q.get_default_qconfig("fbgemm")
    prepared = q.prepare(net)
    prepared(torch.randn(4, 32))
    scripted = torch.jit.script(q.convert(prepared))
    scripted.save(str(tmp_path / "q.pt"))
    with pytest.raises(SourceError) as ei:
        htsr.analyze(tmp_path / "q.pt")
    msg = str(ei.value)
    assert "\n" not in msg and "a torch.ao quantized model: analyse the live model" in msg
    # a checkpoint that names a quantized dtype (torch.quint8) before any quantized tensor: the same hint
    from htsr.io.torchzip import RefusedGlobal

    pkl = b"\x80\x02}(" + _text("dtype") + _glob("torch", "quint8") + b"u."
    with pytest.raises(RefusedGlobal, match="torch.quint8, .*a torch.ao quantized model: analyse the live model"):
        TorchZipFile(_zip_with(tmp_path / "qdtype.pt", pkl))


class _MyConv1d(nn.Conv1d):
    pass


class _ScaledEmbedding(nn.Embedding):
    pass


class _MyConv3d(nn.Conv3d):
    pass


class _ScaledStdConv2d(nn.Conv2d):  # timm's NFNet conv: a gain per output channel beside its weight
    def __init__(self, *a) -> None:
        super().__init__(*a)
        self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1))


class _Experts(nn.Module):  # a module of experts that keeps Linear's attributes: no Linear
    def __init__(self) -> None:
        super().__init__()
        self.in_features, self.out_features = 96, 80
        self.weight = nn.Parameter(torch.randn(4, 80, 96))


class _Subclassed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fir, self.tok = _MyConv1d(4, 8, 64), _ScaledEmbedding(100, 32)
        self.std = _ScaledStdConv2d(16, 32, 3)

    def forward(self, x):
        return self.fir(x)


def test_a_subclassed_layer_is_typed_as_its_torch_base_from_files(tmp_path):
    """A user's class MyConv1d(nn.Conv1d) with 64 taps: its pickled class name is its own, and its kind was
    guessed from the name and shape (8 'stack' rows of 64 × 4 instead of one conv1d; the embedding 'dense').
    Its attributes (a whole pickle's state, a TorchScript class's constants in its code) say what it is."""
    torch.manual_seed(0)
    model = _Subclassed()
    torch.save(model, str(tmp_path / "whole.pt"))
    torch.jit.script(model).save(str(tmp_path / "script.pt"))
    live = [(r.name, r.kind, r.N, r.M, r.num_matrices) for r in htsr.analyze(model, min_evals=2).layers]
    assert live == [("fir", "conv1d", 8, 4, 64), ("tok", "embedding", 100, 32, 1), ("std", "conv2d", 32, 16, 9)]
    # the class types its weight alone: the gain [C, 1, 1, 1] is a vector, live as from the state dict (it was
    # a conv2d row live)
    state = htsr.analyze(dict(model.state_dict()), min_evals=2)  # (no classes: 'fir' by its shape, 8 stack rows)
    for path in (tmp_path / "whole.pt", tmp_path / "script.pt"):
        r = htsr.analyze(path, min_evals=2)
        assert [(x.name, x.kind, x.N, x.M, x.num_matrices) for x in r.layers] == live, path.name
        assert r.not_analysed == state.not_analysed == htsr.analyze(model, min_evals=2).not_analysed
    experts = nn.Module()
    experts.e = _Experts()
    torch.save(experts, str(tmp_path / "experts.pt"))
    assert [(x.name, x.kind) for x in htsr.analyze(tmp_path / "experts.pt", min_evals=2).layers] == [
        (f"e[{k}]", "stack") for k in range(4)]
    # a Conv3d subclass of 40 temporal taps (a 5-D weight no guess by shape takes for a kernel): conv3d, as live
    temporal = nn.Module()
    temporal.vol = _MyConv3d(3, 6, (40, 1, 1))
    torch.save(temporal, str(tmp_path / "temporal.pt"))
    assert [(x.name, x.kind, x.N, x.M, x.num_matrices) for x in htsr.analyze(tmp_path / "temporal.pt",
                                                                             min_evals=2).layers] == [
        ("vol", "conv3d", 6, 3, 40)] == [(x.name, x.kind, x.N, x.M, x.num_matrices)
                                         for x in htsr.analyze(temporal, min_evals=2).layers]


class _Labelled:
    __slots__ = ("label",)


class _FirFilter(_Labelled):  # no nn.Module: a conv's attributes in its __dict__, a slot from its base
    def __init__(self) -> None:
        self.label = "fir"
        self.in_channels, self.out_channels, self.kernel_size = 4, 8, (64,)
        self.weight = torch.randn(8, 4, 64, generator=torch.Generator().manual_seed(0))


def test_an_object_with_slots_is_typed_by_the_attributes_in_its_dict(tmp_path, monkeypatch):
    """An object whose class has __slots__ beside its __dict__ pickles its state as (__dict__, slots): the
    conv attributes in the first part make its weight a conv1d (8 x 4, 64 taps), as for a module; only the
    dict-state form had been exercised."""
    torch.save({"fir": _FirFilter()}, str(tmp_path / "slots.pt"))
    monkeypatch.setitem(sys.modules, "torch", None)
    assert [(x.name, x.kind, x.N, x.M, x.num_matrices) for x in htsr.analyze(tmp_path / "slots.pt",
                                                                             min_evals=2).layers] == [
        ("fir", "conv1d", 8, 4, 64)]


class _Frozen(nn.Module):  # a layer of each kind a frozen module's code names by its op
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 24)
        self.conv = nn.Conv1d(24, 20, 5)
        self.lstm = nn.LSTM(20, 32, batch_first=True)
        self.fc = nn.Linear(32, 10)

    def forward(self, tok):
        x = self.conv(self.emb(tok).transpose(1, 2)).transpose(1, 2)
        return self.fc(self.lstm(x)[0][:, -1])


def test_a_frozen_modules_constants_are_typed_by_the_ops_its_code_passes_them_to(tmp_path):
    """torch.jit.freeze turns the weights into CONSTANTS.c<i> of no module: the embedding table (used by
    torch.embedding) and the LSTM's weights (a list passed to torch.lstm) had been dense rows. Live, a frozen
    module lists none of them: refused, saying to save it."""
    torch.manual_seed(2)
    net = _Frozen().eval()
    frozen = torch.jit.freeze(torch.jit.script(net))
    path = tmp_path / "frozen.pt"
    torch.jit.save(frozen, str(path))
    layers = htsr.analyze(path, min_evals=5).layers
    kinds = {r.shape: r.kind for r in layers}  # (every weight here has a shape of its own)
    for kind, weight in (("embedding", net.emb.weight), ("conv1d", net.conv.weight), ("rnn", net.lstm.weight_ih_l0),
                         ("rnn", net.lstm.weight_hh_l0), ("dense", net.fc.weight)):
        assert kinds["x".join(map(str, weight.shape))] == kind
    assert len(layers) == 5
    with pytest.raises(SourceError) as ei:
        htsr.analyze(frozen)
    one_line_source_error(ei, "a frozen TorchScript module (torch.jit.freeze)", "torch.jit.save it")
    # a 3-D constant passed to torch.matmul (a stack of 4 experts' matrices) is no dense matrix: one row each,
    # as a state dict's [4, 16, 8] parameter gives
    torch.jit.save(torch.jit.freeze(torch.jit.script(_FrozenExperts().eval())), str(tmp_path / "experts.pt"))
    assert [(r.name, r.kind) for r in htsr.analyze(tmp_path / "experts.pt", min_evals=2).layers] == [
        (f"CONSTANTS.c0[{k}]", "stack") for k in range(4)]


class _FrozenExperts(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 16, 8, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return torch.matmul(x, self.w)


class _Tied(nn.Module):  # a language model's embedding and LM head sharing one matrix
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.head = nn.Linear(16, 100, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tok):
        return self.head(self.emb(tok))


def test_a_frozen_tied_embedding_and_head_is_typed_by_its_first_use(tmp_path):
    """Frozen, a tied embedding / LM head is one constant used twice on one line:
    torch.linear(torch.embedding(CONSTANTS.c0, tok), CONSTANTS.c0). Its kind is its first use's, embedding:
    the live module's row (the last use had made it dense). The rule both ways, on code: a constant first
    passed to torch.linear stays dense when torch.embedding takes it later."""
    torch.manual_seed(0)
    net = _Tied().eval()
    frozen = torch.jit.freeze(torch.jit.script(net))
    assert "torch.linear(torch.embedding(CONSTANTS.c0, tok), CONSTANTS.c0)" in frozen.code  # the case guarded
    path = tmp_path / "tied.pt"
    torch.jit.save(frozen, str(path))
    live = htsr.analyze(net, min_evals=5).layers
    saved = htsr.analyze(path, min_evals=5).layers
    assert [(x.kind, x.shape) for x in live] == [("embedding", "100x16")]
    assert [(x.name, x.kind, x.shape) for x in saved] == [("CONSTANTS.c0", "embedding", "100x16")]
    assert saved[0].log_norm == live[0].log_norm  # the same bits in

    import io as _io

    from htsr.io.torchzip import _frozen_kinds

    code = ("    y = torch.linear(x, CONSTANTS.c1)\n"
            "    e = torch.embedding(CONSTANTS.c1, tok)\n"
            "    z = torch.linear(torch.embedding(CONSTANTS.c2, tok), CONSTANTS.c2)\n")
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("r/code/m.py", code)
    with zipfile.ZipFile(buf) as z:
        kinds = _frozen_kinds(z, "r/code/", {n: z.getinfo(n).file_size for n in z.namelist()})
    assert kinds == {"CONSTANTS.c1": "dense", "CONSTANTS.c2": "embedding"}


def test_a_torch_export_archive_is_read_without_torch(tmp_path, monkeypatch):
    """torch.export.save writes a .pt2 (no data.pkl: 'a zip archive that is neither .npz nor a PyTorch
    checkpoint'): its weights are raw members described by JSON, each typed by the class of the module whose
    graph node uses it. The rows equal the live module's, bit for bit; a live ExportedProgram too."""
    torch.manual_seed(4)
    net = _Frozen().eval()
    program = torch.export.export(net, (torch.randint(0, 100, (2, 12)),))
    path = tmp_path / "m.pt2"
    torch.export.save(program, str(path))
    live = htsr.analyze(net, min_evals=5)
    exported = htsr.analyze(program, min_evals=5)
    assert exported.source == "<ExportedProgram>"
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails from here on
    saved = htsr.analyze(path, min_evals=5)
    for r in (saved, exported):
        assert [(x.name, x.kind, x.shape) for x in r.layers] == [(x.name, x.kind, x.shape) for x in live.layers]
        assert [x.log_norm for x in r.layers] == [x.log_norm for x in live.layers]  # the same bits in
    # an AOTInductor package holds compiled code, its weights inside a shared library: refused, saying so
    with zipfile.ZipFile(tmp_path / "aoti.pt2", "w") as z:
        z.writestr("aoti/archive_format", "pt2")
        z.writestr("aoti/data/aotinductor/model/x.wrapper.so", b"\x7fELF")
    with pytest.raises(SourceError) as ei:
        htsr.analyze(tmp_path / "aoti.pt2")
    one_line_source_error(ei, "an AOTInductor package")


class _Unnamed(nn.Module):  # _Frozen's layers under names that do not say their kinds
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(100, 24)
        self.c = nn.Conv1d(24, 20, 5)
        self.rec = nn.LSTM(20, 32, batch_first=True)
        self.out = nn.Linear(32, 10)

    def forward(self, tok):
        x = self.c(self.tok(tok).transpose(1, 2)).transpose(1, 2)
        return self.out(self.rec(x)[0][:, -1])


def test_a_torch_export_archives_kinds_come_from_its_module_classes_not_names(tmp_path, monkeypatch):
    """A .pt2, and a live ExportedProgram, keep each graph node's nn_module_stack (key, module path, class): a
    weight's kind is its module's class, found by the module's path. With names that say nothing (tok an nn.Embedding), the rows'
    kinds equal the live module's; read by the stack's key instead of its path, they had fallen back to the
    names' (tok a dense row). A live program inside a mapping is read as alone, under its key."""
    torch.manual_seed(4)
    net = _Unnamed().eval()
    path = tmp_path / "m.pt2"
    program = torch.export.export(net, (torch.randint(0, 100, (2, 12)),))
    torch.export.save(program, str(path))
    live = [(x.name, x.kind, x.shape) for x in htsr.analyze(net, min_evals=5).layers]
    assert [k for _, k, _ in live] == ["embedding", "conv1d", "rnn", "rnn", "dense"]  # the live module's classes
    # the live program too: its unlifted module() has plain Modules, and its kinds had been the names' (tok dense)
    assert [(x.name, x.kind, x.shape) for x in htsr.analyze(program, min_evals=5).layers] == live
    # and inside a mapping, under its key (it had been dropped: 'holds no tensors')
    assert [(x.name, x.kind, x.shape) for x in htsr.analyze({"p": program}, min_evals=5).layers] == [
        (f"p.{n}", k, s) for n, k, s in live]
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails from here on: the file alone
    assert [(x.name, x.kind, x.shape) for x in htsr.analyze(path, min_evals=5).layers] == live


def test_sharded_training_saves_say_what_to_convert(tmp_path):
    """A torch.distributed.checkpoint save (.distcp files: several torch.save archives joined, of which zipfile
    saw the last, one tensor named after the file), a DeepSpeed ZeRO-3 model_states.pt (empty placeholders:
    '8 1-D (norm scales)') and an FSDP flat parameter each say what they are and what to run."""
    import torch.distributed.checkpoint as dcp

    net = _Frozen()
    dcp.save({"model": net.state_dict()}, checkpoint_id=str(tmp_path / "dcp"))
    for source in (tmp_path / "dcp", next((tmp_path / "dcp").glob("*.distcp")), tmp_path / "dcp" / ".metadata"):
        with pytest.raises(SourceError) as ei:
            htsr.analyze(source)
        one_line_source_error(ei, f"{source}: a torch.distributed.checkpoint (DCP) save", "dcp_to_torch_save")
    placeholders = {k: torch.empty(0) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    placeholders["position_ids"] = torch.arange(12).reshape(1, 12)  # a 2-D buffer: no placeholder (BERT's)
    torch.save({"module": placeholders, "ds_version": "0.15.0", "buffer_names": ["position_ids"], "optimizer": None},
               str(tmp_path / "mp_rank_00_model_states.pt"))
    with pytest.raises(SourceError) as ei:
        htsr.analyze(tmp_path / "mp_rank_00_model_states.pt")
    one_line_source_error(ei, "a DeepSpeed ZeRO-3 checkpoint", "zero_to_fp32.py")
    torch.save({"_fsdp_wrapped_module._flat_param": torch.randn(5000)}, str(tmp_path / "flat.pt"))
    with pytest.raises(SourceError) as ei:
        htsr.analyze(tmp_path / "flat.pt")
    one_line_source_error(ei, "an FSDP flat parameter")


def test_dtensors_are_read_on_one_rank_and_their_files_say_how_to_gather(tmp_path):
    """An FSDP2 model (fully_shard): live, its DTensors' rows had failed ('.numpy() is not supported for tensor
    subclasses'); its state_dict saved by torch.save is refused with how to save the gathered weights. Run in a
    process of its own: the process group is global state."""
    script = f"""
import torch, torch.distributed as dist, htsr
from torch.distributed.fsdp import fully_shard
dist.init_process_group("gloo", init_method="file://" + {str(tmp_path / 'pg')!r}, rank=0, world_size=1)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(24, 64), torch.nn.Linear(64, 10))
want = [x.log_norm for x in htsr.analyze(net, min_evals=5).layers]
fully_shard(net)
got = htsr.analyze(net, min_evals=5).layers
assert [x.status for x in got] == ["ok", "ok"] and [x.log_norm for x in got] == want, got
torch.save(net.state_dict(), {str(tmp_path / 'dtensor.pt')!r})
dist.destroy_process_group()
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    # in a fresh process (once torch.distributed is imported, torch.load rebuilds DTensors: one rank's, read)
    cli = subprocess.run([sys.executable, "-m", "htsr", "analyze", str(tmp_path / "dtensor.pt")],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 2 and "holds tensor subclasses (DTensors" in cli.stderr
    assert "full_state_dict=True" in cli.stderr and len(cli.stderr.strip().splitlines()) == 1
    assert "save the gathered weights, get_model_state_dict(model" in cli.stderr  # (what to run, not only an option)


class _Rope(nn.Module):  # a layer with a non-persistent buffer (a RoPE cache) and a lifted constant
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(16, 16)
        self.register_buffer("cos_cached", torch.randn(32, 16), persistent=False)

    def forward(self, x):
        return self.q(x) * self.cos_cached[: x.shape[0]] + torch.ones(16, 16)[: x.shape[0]]


def test_a_torch_export_archive_holds_its_state_dict_and_a_broken_one_is_named(tmp_path):
    """A .pt2 stores the program's non-persistent buffers and lifted constants beside its weights: they had
    been rows the live module does not have. A config whose sizes are not integers (1e400 raised a bare
    OverflowError; true is none either), an archive without its weights config (read as the rest, silently), and one cut short
    (zipfile found its sample inputs' zip and read it as the model) each get a one-line error."""
    import json

    torch.manual_seed(6)
    net = _Rope().eval()
    path = tmp_path / "r.pt2"
    torch.export.save(torch.export.export(net, (torch.randn(8, 16),)), str(path))
    r = htsr.analyze(path, min_evals=5)
    assert [x.name for x in r.layers] == [x.name for x in htsr.analyze(net, min_evals=5).layers] == ["q"]
    assert "cos_cached" in [n for x in r.not_analysed for n in x.examples]

    def rewrite(name: str, change, member: str = "model_weights_config.json") -> Path:
        out = tmp_path / name
        with zipfile.ZipFile(path) as z, zipfile.ZipFile(out, "w") as w:
            for info in z.infolist():
                data = z.read(info)
                if info.filename.endswith(member):
                    data = change(data)
                    if data is None:
                        continue
                w.writestr(info, data)
        return out

    def first_size(value):
        def change(data: bytes) -> bytes:
            cfg = json.loads(data)
            cfg["config"]["q.weight"]["tensor_meta"]["sizes"][0]["as_int"] = value
            return json.dumps(cfg).encode()
        return change

    def meta(key: str, value):
        def change(data: bytes) -> bytes:
            cfg = json.loads(data)
            cfg["config"]["q.weight"]["tensor_meta"][key] = value
            return json.dumps(cfg).encode()
        return change

    # a program's JSON of some hundred kB (a large model's graph; here 300 kB of JSON whitespace) is read
    big = rewrite("big.pt2", lambda data: data + b" " * (300 << 10), "/models/model.json")
    assert [x.name for x in htsr.analyze(big, min_evals=5).layers] == ["q"]
    # a sparse layout (torch.export's Layout enum: 7 is strided) is no plain tensor: a row that says so
    (sparse,) = [x for x in TorchExportArchive(rewrite("sparse.pt2", meta("layout", 1))).refs() if x.name == "q.weight"]
    with pytest.raises(LayerSkipped, match="not a strided tensor"):
        sparse.load()
    # a weight's member gone from the archive (its central directory's name damaged) is a corrupt file's failed row
    # (it had been skipped, as a tensor kind htsr does not read, with torch.export.load as the advice); a member of
    # a compression method zipfile knows not fails its row as unreadable, not with zipfile's NotImplementedError
    rows = {x.name: x.status for x in htsr.analyze(rewrite("gone.pt2", lambda data: None, "weights/weight_0"),
                                                   min_evals=5).layers}
    assert rows["q"].startswith("failed: ") and "its member " in rows["q"] and rows["q"].endswith(
        "weight_0 is missing from the archive: the file is truncated or corrupt; save it again")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        member = next(i for i in z.infolist() if i.filename.endswith("weights/weight_0"))
    entry = data.rfind(b"PK\x01\x02", 0, data.rfind(member.filename.encode()))  # its central-directory entry
    data[entry + 10] = 0xFF  # the compression method
    (tmp_path / "method.pt2").write_bytes(bytes(data))
    (row,) = htsr.analyze(tmp_path / "method.pt2", min_evals=5).layers
    assert row.status.startswith("failed: ") and "tensor q.weight: storage unreadable (That compression method is not " \
        "supported); the file is truncated or corrupt" in row.status
    for bad, why in ((rewrite("inf.pt2", first_size(1e400)), "corrupt torch.export archive (ValueError: q.weight: "
                                                              "inf is not an integer)"),
                     # JSON's true is no size (Python's bool an int, it had been read as a size of 1)
                     (rewrite("true.pt2", first_size(True)), "corrupt torch.export archive (ValueError: q.weight: "
                                                             "True is not an integer)"),
                     # a negative storage offset would start the view before the member's bytes
                     (rewrite("negoffset.pt2", meta("storage_offset", {"as_int": -4})),
                      "corrupt torch.export archive (ValueError: q.weight: sizes [16, 16], strides [16, 1], offset -4)"),
                     (rewrite("nocfg.pt2", lambda data: None), "have no stored tensor (its weights config is "
                                                               "missing?)")):
        with pytest.raises(SourceError) as ei:
            htsr.analyze(bad)
        one_line_source_error(ei, why)
    cut = tmp_path / "cut.pt2"
    cut.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(SourceError) as ei:
        htsr.analyze(cut)
    one_line_source_error(ei, f"{cut}: a zip archive cut short")


_PT2: dict[str, bytes] = {}  # a small torch.export archive's members, made once


def _pt2_members() -> dict[str, bytes]:
    if not _PT2:
        import io as _io

        torch.manual_seed(7)
        buf = _io.BytesIO()
        torch.export.save(torch.export.export(nn.Sequential(nn.Linear(6, 8), nn.Conv1d(8, 4, 3)).eval(),
                                              (torch.randn(2, 8, 6),)), buf)
        with zipfile.ZipFile(buf) as z:
            _PT2.update({n: z.read(n) for n in z.namelist()})
    return _PT2


def _leaves(obj, path=()):
    """The key paths of a JSON document's values."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))
    yield path


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                          st.one_of(st.integers(-2 ** 70, 2 ** 70), st.floats(), st.text(max_size=4), st.none(),
                                    st.booleans(), st.builds(list), st.builds(dict))), min_size=1, max_size=4),
       st.sampled_from(["weights", "model"]))
def test_fuzzed_torch_export_archive_raises_only_htsr_errors(tmp_path, mutations, which):
    """Values anywhere in a .pt2's weights config or program JSON replaced by others: only htsr's errors."""
    import json

    members = dict(_pt2_members())
    name = next(n for n in members if n.endswith("model_weights_config.json" if which == "weights" else
                                                  "models/model.json"))
    doc = json.loads(members[name])
    paths = [p for p in _leaves(doc) if p]
    for where, value in mutations:
        *head, last = paths[int(where * len(paths))]
        target = doc
        try:
            for k in head:
                target = target[k]
            target[last] = copy.deepcopy(value)  # (one object placed twice could come to hold itself)
        except (KeyError, IndexError, TypeError):  # (an earlier mutation changed the path's shape)
            continue
    members[name] = json.dumps(doc).encode()
    path = tmp_path / f"fuzz{next(_counter)}.pt2"
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    _load_all(TorchExportArchive, path)


def test_a_frozen_constant_takes_the_kind_of_the_innermost_op_holding_it():
    """Nested calls on one line of TorchScript's code: each constant is typed by the op whose parentheses hold
    it (the first op of the line had typed them all), a list of constants by the op it is passed to; a call of
    no kind of its own (torch.t) by the op around it (it had left its constant untyped)."""
    import io as _io

    from htsr.io.torchzip import _frozen_kinds

    code = ("    w = [CONSTANTS.c5, CONSTANTS.c6]\n"
            "    x = torch.linear(torch.conv1d(x, CONSTANTS.c0), CONSTANTS.c1)\n"
            "    e = torch.transpose(torch.embedding(CONSTANTS.c2, tok), 1, 2)\n"
            # a transposed convolution is its dimension's conv (a 2-D decoder's upsampling)
            "    u = torch.conv_transpose2d(e, CONSTANTS.c3, None, [2, 2])\n"
            "    _1, _2, _3 = torch.lstm(x, [h, c], w, True, 1, 0., False, False, True)\n"
            # a closed call is not held open by a later parenthesis (counting parentheses had said it was)
            "    y = (torch.linear(x, CONSTANTS.c7), (CONSTANTS.c8))\n"
            # a call htsr has no kind for (torch.t) inside an op types its constant by that op
            "    v = torch.matmul(x, torch.t(CONSTANTS.c4))\n"
            # read in one pass: a line of 20 000 nested calls (quadratic before, 6 s; a 16 MB code file hours)
            "    z = " + "torch.mm(CONSTANTS.c9, " * 20_000 + ")" * 20_000 + "\n")
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("r/code/m.py", code)
    with zipfile.ZipFile(buf) as z:
        kinds = _frozen_kinds(z, "r/code/", {n: z.getinfo(n).file_size for n in z.namelist()})
    assert kinds == {"CONSTANTS.c0": "conv1d", "CONSTANTS.c1": "dense", "CONSTANTS.c2": "embedding",
                     "CONSTANTS.c3": "conv2d", "CONSTANTS.c4": "dense", "CONSTANTS.c5": "rnn", "CONSTANTS.c6": "rnn", "CONSTANTS.c7": "dense",
                     "CONSTANTS.c9": "dense"}


@pytest.mark.parametrize("byteorder, compression, says", [
    ("big", zipfile.ZIP_STORED, "storages are big-endian"),
    ("big\n", zipfile.ZIP_STORED, "storages are big-endian"),  # the word with a line end, as echo writes it
    ("\x1b]0;title\x07\x1b[2Jhtsr: done", zipfile.ZIP_STORED, "storages are not marked little or big-endian"),
    ("l" * 100_000_000, zipfile.ZIP_BZIP2, "storages are not marked little or big-endian"),  # 100 MB from ~100 bytes
])
def test_an_archives_byteorder_member_is_read_no_further_than_its_word(tmp_path, byteorder, compression, says):
    """The byteorder member had been read whole and put in the error message: a bzip2 member of gigabytes from a
    kilobyte file (8.5 GB of memory), terminal escapes printed raw. It says little, big, or neither."""
    path = tmp_path / "m.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        z.writestr(zipfile.ZipInfo("archive/byteorder"), byteorder, compress_type=compression)
    with pytest.raises(SourceError) as e:
        TorchZipFile(path)
    assert str(e.value) == f"{path}: {says}; re-save the model on a little-endian machine"


# round 13 of mutation testing (io/torchzip.py): survivors' known answers

@pytest.mark.parametrize("legacy", [False, True])
def test_signed_and_unsigned_integer_storages_keep_their_values(tmp_path, legacy):
    """[T01, T02] CharStorage is int8 and ShortStorage int16 (read as uint8 / uint16, -1 became 255 / 65535):
    every integer dtype equals torch's values, zip and legacy."""
    t = {"i8": torch.tensor([[-128, -1], [0, 127]], dtype=torch.int8),
         "u8": torch.tensor([[0, 1], [128, 255]], dtype=torch.uint8),
         "i16": torch.tensor([[-32768, -2], [3, 32767]], dtype=torch.int16),
         "i32": torch.tensor([[-(2**31), -3], [4, 2**31 - 1]], dtype=torch.int32),
         "i64": torch.tensor([[-(2**40), -4], [5, 2**40]], dtype=torch.int64)}
    path = tmp_path / "ints.pt"
    torch.save(t, str(path), _use_new_zipfile_serialization=not legacy)
    refs = {r.name: r for r in (TorchLegacyFile if legacy else TorchZipFile)(path).refs()}
    for k, v in t.items():
        assert refs[k].dtype == str(v.dtype).removeprefix("torch."), k
        np.testing.assert_array_equal(np.asarray(refs[k].load(), np.float64), v.double().numpy(), err_msg=k)


@pytest.mark.parametrize("offset, stride, says", [
    (0, (-10_000, 10_000), "a tensor with shape (2, 3), stride (-10000, 10000), offset 0"),
    # a negative offset: the view would start 40 kB before the storage
    (-10_000, (3, 1), "a tensor with shape (2, 3), stride (3, 1), offset -10000"),
    # fewer strides than axes: the storage extent was computed over the first axis alone
    (0, (10_000,), "a tensor with shape (2, 3), stride (10000,), offset 0"),
], ids=["negative stride", "negative offset", "missing stride"])
def test_negative_strides_are_refused_when_the_tensor_is_rebuilt(tmp_path, offset, stride, says):
    """[T07] torch never saves a negative stride; a pickle that claims one (here (-10000, 10000) over a storage of
    10001 values) would read 40 kB before the storage: refused when rebuilt, naming shape and stride. So are a
    negative storage offset and a stride tuple shorter than the shape (neither had been checked)."""
    K = 10_000
    pid = (b"(" + _text("storage") + _glob("torch", "FloatStorage") + _text("0") + _text("cpu")
           + _ints(K + 1)[1:-1] + b"tQ")
    tensor = (_glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + _ints(offset)[1:-1] + _ints(2, 3)
              + _ints(*stride) + b"\x89" + _glob("collections", "OrderedDict") + b")R" + b"tR")
    path = _zip_with(tmp_path / "neg.pt", b"\x80\x02}" + _text("w") + tensor + b"s.", {"0": bytes(4 * (K + 1))})
    # (in a child process: a reader that took the stride would read unmapped memory, and may crash)
    code = ("import sys\nfrom htsr.errors import SourceError\nfrom htsr.io.torchzip import TorchZipFile\n"
            f"try:\n    [r.load() for r in TorchZipFile({str(path)!r}).refs()]\nexcept SourceError as e:\n"
            "    print('REFUSED', e)\n    sys.exit(0)\nprint('READ')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("REFUSED"), (out.returncode, out.stdout, out.stderr[-300:])
    assert says in out.stdout


def test_legacy_storage_views_are_refused(tmp_path, monkeypatch):
    """[T09] A legacy storage record's sixth field is a view (key, offset, size) in files of PyTorch < 0.4;
    read as the whole storage, the view's offset was lost: refused, saying why."""
    monkeypatch.setitem(sys.modules, "torch", None)
    raw = _LEGACY
    i = raw.index(b"cpu", raw.index(b"storage"))
    j = raw.index(b"Nt", i)  # the record's last field, None, then TUPLE
    bad = raw[:j] + b"K\x00" + raw[j + 1:]  # a sixth field that is not None
    with pytest.raises(SourceError, match="storage views"):
        TorchLegacyFile(_write(tmp_path / "view.pt", bad))


def _legacy_key_list(raw: bytes) -> tuple[int, list[str]]:
    """Where a legacy file's fifth pickle (its storage keys) starts, and the keys."""
    import pickletools

    f = io.BytesIO(raw)
    for _ in range(4):  # magic number, protocol, system info, the object
        for _op in pickletools.genops(f):
            pass
    return f.tell(), pickle.loads(raw[f.tell():])


def test_a_legacy_storage_key_declared_with_two_dtypes_is_refused(tmp_path, monkeypatch):
    """Two tensors' records naming one storage key with two storage classes (float32, int32) cannot both
    be right about its bytes: refused naming both (one of them would read the other's floats as ints)."""
    buf = io.BytesIO()
    torch.save({"a": torch.ones(4, 4), "b": torch.ones(4, 4, dtype=torch.int32)}, buf,
               _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    monkeypatch.setitem(sys.modules, "torch", None)
    start, keys = _legacy_key_list(raw)
    # each key as the object's pickle spells it (BINUNICODE), in the order of its records: a's, then b's
    spelt = {k: b"X" + len(k.encode()).to_bytes(4, "little") + k.encode() for k in keys}
    first, second = sorted(keys, key=lambda k: raw.index(spelt[k]))
    at = raw.index(spelt[second])
    assert at < start  # (in the object's pickle, not in the key list after it)
    bad = raw[:at] + spelt[first] + raw[at + len(spelt[second]):]
    with pytest.raises(SourceError, match=f"storage '{first}' declared as float32 and int32"):
        TorchLegacyFile(_write(tmp_path / "twice.pt", bad))


def test_a_legacy_storage_missing_from_the_key_list_is_named(tmp_path, monkeypatch):
    """The fifth pickle lists the storages that follow; one a tensor uses but the list leaves out is refused
    when the file is opened, naming it (the reader had no size for it: a KeyError, not a SourceError)."""
    monkeypatch.setitem(sys.modules, "torch", None)
    start, keys = _legacy_key_list(_LEGACY)
    assert len(keys) == 2
    end = start + len(pickle.dumps(keys, protocol=2))
    assert pickle.loads(_LEGACY[start:end]) == keys  # (the list as torch.save pickled it)
    bad = _LEGACY[:start] + pickle.dumps(keys[:1], protocol=2) + _LEGACY[end:]
    with pytest.raises(SourceError, match=f"storage '{keys[1]}' is used by a tensor but not stored"):
        TorchLegacyFile(_write(tmp_path / "unlisted.pt", bad))


def test_a_storage_one_element_short_is_refused_when_opened(tmp_path):
    """[T16] A storage one float32 short of what its 16 x 16 tensor reaches: refused at open, naming the tensor
    (the load had read 4 bytes of whatever follows the member in the zip)."""
    n = 16
    pid = (b"(" + _text("storage") + _glob("torch", "FloatStorage") + _text("0") + _text("cpu")
           + _ints(n * n)[1:-1] + b"tQ")
    tensor = (_glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + _ints(0)[1:-1] + _ints(n, n) + _ints(n, 1)
              + b"\x89" + _glob("collections", "OrderedDict") + b")R" + b"tR")
    path = _zip_with(tmp_path / "short.pt", b"\x80\x02}" + _text("w") + tensor + b"s.", {"0": bytes(4 * n * n - 4)})
    with pytest.raises(SourceError, match=r"w \(shape \[16, 16\] needs 1024 bytes of storage 0, which holds 1020\)"):
        TorchZipFile(path)
    # five such tensors: the first three named, and how many more (two) said
    five = b"\x80\x02}(" + b"".join(_text(f"w{i}") + _tensor(str(i), n) for i in range(5)) + b"u."
    path = _zip_with(tmp_path / "five.pt", five, {str(i): bytes(4 * n * n - 4) for i in range(5)})
    with pytest.raises(SourceError, match=r"w2 \(shape \[16, 16\] needs 1024 bytes of storage 2, which holds 1020\) "
                                          r"and 2 more — truncated or corrupt file"):
        TorchZipFile(path)


@pytest.mark.parametrize("legacy", [False, True])
def test_an_expanded_view_of_two_values_over_one_is_skipped(tmp_path, legacy):
    """[T22] The expanded-view rule has no slack: 2 values over 1 stored (shape (2, 1), stride (0, 1)) is a
    skipped row like any other expand()."""
    torch.save({"w": torch.randn(1, 1).expand(2, 1)}, str(tmp_path / "x.pt"), _use_new_zipfile_serialization=not legacy)
    (ref,) = (TorchLegacyFile if legacy else TorchZipFile)(tmp_path / "x.pt").refs()
    with pytest.raises(LayerSkipped, match="an expanded view: 2 values over 1"):
        ref.load()


def test_a_pt_lora_whose_alpha_is_a_python_int_is_scaled_by_it(tmp_path):
    """[T25] kohya-ss's .pt LoRAs store alpha as a Python number: an int (alpha 8) as much as a float."""
    torch.manual_seed(25)
    A, B = torch.randn(4, 16), torch.randn(24, 4)
    m = "lora_unet_proj_in"
    torch.save({f"{m}.lora_down.weight": A, f"{m}.lora_up.weight": B, f"{m}.alpha": 8}, str(tmp_path / "l.pt"))
    (row,) = htsr.analyze(tmp_path / "l.pt", min_evals=2).layers
    want = np.linalg.norm(2.0 * (B.double() @ A.double()).numpy(), 2) ** 2  # alpha / r = 8 / 4
    assert row.name == f"{m}#delta" and row.lambda_max == pytest.approx(want, rel=1e-5)


class _ViewNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        fused = torch.randn(3 * 16, 16)
        self.q = torch.nn.Linear(16, 16, bias=False)
        self.k = torch.nn.Linear(16, 16, bias=False)
        self.q.weight = torch.nn.Parameter(fused[:16])  # a view at offset 0
        self.k.weight = torch.nn.Parameter(fused[16:32])  # a view at offset 256 of the same storage

    def forward(self, x):
        return self.k(self.q(x))


def test_a_torch_export_archive_keeps_half_weights_and_storage_offsets(tmp_path, monkeypatch):
    """[T26, T27] A .pt2 of float16 weights (serialized dtype 6), of bfloat16 ones (13) and of weights that are views at an offset into
    one storage: every value equals the live module's."""
    torch.manual_seed(27)
    net = _ViewNet().eval()
    for name, model, x in (("half", _ViewNet().half().eval(), torch.randn(2, 16).half()),
                           ("bfloat16", _ViewNet().bfloat16().eval(), torch.randn(2, 16).bfloat16()),  # dtype 13
                           ("view", net, torch.randn(2, 16))):
        path = tmp_path / f"{name}.pt2"
        torch.export.save(torch.export.export(model, (x,)), str(path))
        want = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
        got = {r.name: r for r in TorchExportArchive(path).refs()}
        assert got.keys() == want.keys(), name
        for k in want:
            assert got[k].dtype == {"half": "float16", "bfloat16": "bfloat16"}.get(name, "float32"), (name, k)
            np.testing.assert_array_equal(np.asarray(got[k].load(), np.float32), want[k], err_msg=f"{name} {k}")


def test_a_legacy_file_short_by_a_few_bytes_is_refused_when_opened(tmp_path, monkeypatch):
    """[T31] Each storage's count and bytes are checked against the file's size when it is opened: a file missing
    the last 4 bytes of its last storage is refused then, not when that tensor is loaded."""
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(SourceError, match="runs past the end of the file"):
        TorchLegacyFile(_write(tmp_path / "cut.pt", _LEGACY[:-4]))


# ------------------------------------------------------------------ mutation round 53 (torch.py, second pass)
def test_a_pickle_torch_refuses_as_unsupported_global_is_called_code_to_run_not_corrupt(tmp_path):
    """A .pt that is neither zip nor protocol-2+ pickle (PROTO 1 opcode) and does not end in STOP goes to torch's
    weights-only loader, whose wording is 'Unsupported global' or 'unsupported GLOBAL' by version: either way
    the file is called a pickle that needs to run code (with the re-save advice), not truncated or corrupt."""
    path = tmp_path / "gadget.pt"
    path.write_bytes(b"\x80\x01cos\nsystem\n(S'true'\ntR.\n")  # os.system('true'), then a newline after STOP
    with pytest.raises(SourceError) as e:
        load_torch_file(path)
    one_line_source_error(e, str(path), "needs to run code", "os.system", "torch.save(model.state_dict()")
    assert "corrupt" not in str(e.value)


def test_a_refused_global_whose_file_torch_cannot_read_either_keeps_htsrs_reason(tmp_path):
    """A sparse tensor (a rebuild htsr's reader refuses, torch's allows) whose storages are missing: torch's
    loader fails on the missing record, not on the global; the message leads with htsr's reason (which global)
    and says torch cannot read it either, rather than only calling the file corrupt."""
    src, dst = tmp_path / "sparse.pt", tmp_path / "cut.pt"
    torch.save({"mask": torch.eye(8).to_sparse()}, str(src))
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if "/data/" not in info.filename or info.filename.endswith("serialization_id"):
                zout.writestr(info, zin.read(info))  # (the storages data/0 and data/1 left out)
    with pytest.raises(SourceError) as e:
        load_torch_file(dst)
    one_line_source_error(e, str(dst), "torch._utils._rebuild_sparse_tensor", "refused",
                          "torch.load(weights_only=True) cannot read it either")


def test_a_checkpoint_only_torch_reads_keeps_its_notes_and_a_bare_tensor_says_what_it_is(tmp_path):
    """A sparse tensor (htsr's reader refuses its rebuild, torch's weights-only loader allows it) sends the file
    to torch.load: the 'model' entry beside an 'ema' copy is read with the note naming what was left out, as
    htsr's own reader says it (that path had dropped the notes, a silent choice); a bare tensor saved alone is
    no state dict, and the one-line error names the file and what it holds."""
    torch.manual_seed(0)
    sd = torch.nn.Sequential(torch.nn.Linear(30, 40)).state_dict()
    ckpt = {"model": {**sd, "mask": torch.eye(8).to_sparse()}, "ema": {k: v.clone() for k, v in sd.items()}}
    torch.save(ckpt, tmp_path / "sparse.pt")
    r = htsr.analyze(tmp_path / "sparse.pt", min_evals=2)
    assert [l.name for l in r.layers] == ["0", "mask"]
    assert "the 'model' entry read; 'ema' left out" in r.source and "htsr.analyze(checkpoint['ema'])" in r.source
    torch.save(torch.eye(8).to_sparse(), tmp_path / "bare.pt")
    with pytest.raises(SourceError) as e:
        load_torch_file(tmp_path / "bare.pt")
    one_line_source_error(e, str(tmp_path / "bare.pt"), "no state dict found in the checkpoint (a Tensor)")


def test_the_first_line_of_an_error_is_the_reason_given():
    """A loader's error quoted in a one-line message: its first non-empty line without terminal colour codes
    (its last line had been quoted: a traceback's tail, not the reason)."""
    from htsr.io.torch import _first_line

    err = RuntimeError("\x1b[31m\n  PytorchStreamReader failed reading zip archive\x1b[0m\nException raised from x.cpp:12\n")
    assert _first_line(err) == "PytorchStreamReader failed reading zip archive"
    assert _first_line(EOFError()) == "EOFError"  # (no text: the error's class)


def test_a_stepped_optimizer_object_under_a_key_of_its_own_is_training_state(tmp_path, monkeypatch):
    """A pickled torch.optim.Adam object (not its state_dict) after a step, under a key that does not say
    'optim' ('adam'): read without torch it is a stand-in named for its class, whose moments exp_avg /
    exp_avg_sq are shaped like the weights; it is training state, not tensors of the model."""
    torch.manual_seed(0)
    g = torch.nn.Sequential(torch.nn.Linear(16, 24))
    opt = torch.optim.Adam(g.parameters())
    g(torch.randn(4, 16)).sum().backward()
    opt.step()
    torch.save({"generator": g.state_dict(), "adam": opt}, str(tmp_path / "gan.pt"))
    monkeypatch.setitem(sys.modules, "torch", None)
    assert [r.name for r in load_torch_file(tmp_path / "gan.pt")] == ["generator.0.weight", "generator.0.bias"]


# round 61 of mutation testing (io/torchzip.py, third pass): survivors' known answers

def test_only_a_number_named_alpha_is_read_as_a_lora_scale(tmp_path):
    """A Python number is read as a tensor only under the name ``alpha`` (a .pt LoRA's scale): a config's
    ``lora_alpha`` and a flag ``alpha: True`` are plain values, not 0-D tensors added to the file's count."""
    path = tmp_path / "cfg.pt"
    torch.save({"fc.weight": torch.ones(3, 2), "cfg.lora_alpha": 16, "cfg.alpha": True, "up.alpha": 4.0}, str(path))
    refs = {r.name: r for r in TorchZipFile(path).refs()}
    assert sorted(refs) == ["fc.weight", "up.alpha"]
    assert refs["up.alpha"].shape == () and float(refs["up.alpha"].load()) == 4.0


def test_a_zip_whose_data_pkl_is_one_folder_deeper_is_not_a_torch_archive(tmp_path):
    """torch.save's data.pkl sits in the archive's one top folder; a zip of an unpacked checkpoint folder
    (outer/archive/data.pkl) is no archive torch reads: refused in one line saying so, not a KeyError."""
    path = tmp_path / "zipped_folder.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("outer/archive/data.pkl", pickle.dumps({}, protocol=2))
        z.writestr("outer/archive/byteorder", "little")
    with pytest.raises(SourceError) as e:
        TorchZipFile(path)
    assert str(e.value) == f"{path}: a zip without <root>/data.pkl: not a PyTorch archive"


def test_a_scripted_layers_constant_longer_than_any_layer_writes_is_not_evaluated():
    """A TorchScript class's declared constants are parsed (ast.literal_eval) only up to 200 characters: a
    longer value (a crafted code file's) is kept as None, not evaluated; a layer's own (kernel_size (3,))
    still reads."""
    import io as _io

    from htsr.io.torchzip import _script_constants

    code = ("class Conv1d(Module):\n"
            "  kernel_size : Final[Tuple[int]] = (3,)\n"
            "  in_channels : Final[int] = (" + " " * 250 + "4)\n")
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("r/code/__torch__/m.py", code)
    with zipfile.ZipFile(buf) as z:
        consts = _script_constants(z, "r/code/", {n: z.getinfo(n).file_size for n in z.namelist()})
    assert consts == {"__torch__.m.Conv1d": {"kernel_size": (3,), "in_channels": None}}



def test_a_code_file_that_is_not_utf8_leaves_the_others_read():
    """A TorchScript code file that does not decode (a damaged or foreign member of code/) is skipped alone: the
    classes of the files after it still give their constants (reading had stopped at the first such file)."""
    import io as _io

    from htsr.io.torchzip import _script_constants

    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("r/code/__torch__/a.py", b"class A(Module):\n  x : Final[int] = \xff\n")
        z.writestr("r/code/__torch__/m.py", "class Conv1d(Module):\n  kernel_size : Final[Tuple[int]] = (3,)\n")
    with zipfile.ZipFile(buf) as z:
        assert [i.filename for i in z.infolist()][0].endswith("/a.py")  # (the bad file comes first)
        consts = _script_constants(z, "r/code/", {n: z.getinfo(n).file_size for n in z.namelist()})
    assert consts == {"__torch__.m.Conv1d": {"kernel_size": (3,)}}


class _Codes(torch.nn.Module):  # a layer beside integer buffers of each width (a quantizer's codes, an index)
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        for dt, lo, hi in ((torch.uint8, 0, 255), (torch.int8, -128, 127), (torch.int16, -32768, 32767),
                           (torch.uint16, 0, 65535), (torch.int32, -(2**31), 2**31 - 1)):
            self.register_buffer(str(dt).removeprefix("torch."), torch.tensor([[lo, 1], [7, hi]], dtype=dt))

    def forward(self, x):
        return self.fc(x) + sum(b.to(torch.float32).sum() for b in self.buffers())


def test_a_torch_export_archives_integer_buffers_keep_their_dtypes_and_values(tmp_path):
    """A .pt2's serialized integer dtypes (uint8 1, int8 2, int16 3, int32 4, uint16 28): each buffer reads in
    its own dtype with torch's values (a signed/unsigned mix-up turns 65535 into -1 and -128 into 128)."""
    model = _Codes().eval()
    path = tmp_path / "codes.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 3),)), str(path))
    got = {r.name: r for r in TorchExportArchive(path).refs()}
    for name, want in model.state_dict().items():
        assert got[name].dtype == str(want.dtype).removeprefix("torch."), name
        np.testing.assert_array_equal(np.asarray(got[name].load(), np.float64), want.double().numpy(), err_msg=name)


def test_a_pickled_module_that_contains_itself_is_refused_saying_so(tmp_path):
    """A module registered as its own submodule (torch.save pickles the cycle; state_dict() would never end) is
    refused naming the module that contains itself, not as a pickle nested too deeply."""
    inner = nn.Sequential(nn.Linear(4, 4))
    inner.add_module("loop", inner)
    outer = nn.Module()
    outer.block = inner
    torch.save(outer, str(tmp_path / "loop.pt"))
    with pytest.raises(SourceError) as e:
        TorchZipFile(tmp_path / "loop.pt")
    assert "module block.loop contains itself" in str(e.value) and "\n" not in str(e.value)


def test_a_parameter_registered_as_none_is_no_entry_of_a_pickled_modules_state_dict(tmp_path):
    """state_dict() leaves out a parameter registered as None; so does a whole pickled module's: a checkpoint's
    'model' holding only such a parameter has no weights, and its 'ema' (a Linear) is read instead of nothing.
    Likewise a submodule registered as None."""
    stub = nn.Module()
    stub.register_parameter("weight", None)
    assert not stub.state_dict()
    ema = nn.Linear(4, 3)
    torch.save({"model": stub, "ema": ema}, str(tmp_path / "ckpt.pt"))
    refs = {r.name: r for r in TorchZipFile(tmp_path / "ckpt.pt").refs()}
    assert list(refs) == ["weight", "bias"]
    np.testing.assert_array_equal(refs["weight"].load(), ema.weight.detach().numpy())
    # a submodule slot holding None (register_module(name, None), a layer switched off) is no module: skipped as
    # state_dict() skips it (it had been read as a module and the whole file refused as not a checkpoint's)
    seq = nn.Sequential(nn.Linear(4, 3))
    seq.register_module("pool", None)
    torch.save(seq, str(tmp_path / "seq.pt"))
    assert [r.name for r in TorchZipFile(tmp_path / "seq.pt").refs()] == list(seq.state_dict()) == ["0.weight",
                                                                                                     "0.bias"]


class _Positions(nn.Module):  # keeps an Embedding's num_embeddings but no embedding_dim: no Embedding
    def __init__(self) -> None:
        super().__init__()
        self.num_embeddings = 64
        self.weight = nn.Parameter(torch.randn(48, 64, generator=torch.Generator().manual_seed(3)))


class _InputWidth(nn.Module):  # keeps a Linear's in_features but no out_features: no Linear
    def __init__(self) -> None:
        super().__init__()
        self.in_features = 64
        self.weight = nn.Parameter(torch.randn(48, 64, generator=torch.Generator().manual_seed(4)))


def test_a_module_with_num_embeddings_but_no_embedding_dim_is_not_typed_an_embedding(tmp_path):
    """Embedding's attributes are num_embeddings and embedding_dim together: a module keeping only the first is
    typed as its state dict's weight is (by name and shape), not as an embedding. Likewise Linear's in_features
    and out_features: a token table keeping only in_features stays an embedding by its name, not a dense layer
    (one attribute alone had made it a Linear)."""
    model = nn.Module()
    model.pos = _Positions()
    model.embed_tokens = _InputWidth()
    torch.save(model, str(tmp_path / "pos.pt"))
    want = [(r.name, r.kind) for r in htsr.analyze(dict(model.state_dict()), min_evals=2).layers]
    assert want == [("pos", "dense"), ("embed_tokens", "embedding")]
    assert [(r.name, r.kind) for r in htsr.analyze(tmp_path / "pos.pt", min_evals=2).layers] == want


def test_torch_sizes_and_devices_as_keys_and_a_set_of_tensors_are_read(tmp_path):
    """torch.Size and torch.device are values a checkpoint may key a mapping by (a cache per shape, state per
    device), and a set may hold tensors: a Size key is hashable (the file read, not refused as corrupt), each
    device keeps its index in its name (cuda:0 and cuda:1 are two entries), and the set's tensor is read."""
    torch.save({"w": torch.ones(3, 2), "cache": {torch.Size([3, 2]): "fc"},
                "dev": {torch.device("cuda", 0): torch.zeros(2, 2), torch.device("cuda", 1): torch.ones(2, 2)},
                "s": {torch.full((4, 4), 2.0)}}, str(tmp_path / "keys.pt"))
    refs = {r.name: r for r in TorchZipFile(tmp_path / "keys.pt").refs()}
    assert list(refs) == ["w", "dev.cuda:0", "dev.cuda:1", "s.0"]
    assert refs["dev.cuda:1"].load().tolist() == [[1.0, 1.0], [1.0, 1.0]] and refs["s.0"].load().max() == 2.0


def test_a_storage_s_crc32_is_computed_once_however_many_views_and_loads(tmp_path, monkeypatch):
    """Each stored storage is checked against its recorded CRC-32 once, when it is first loaded: q, k and v
    are three views of one fused storage, and loading each twice hashes that storage once (hashing it for
    every view and every load had gone unseen: the same bytes read again and again, a fused qkv of a large
    model three times over)."""
    import zlib

    from htsr.io import base

    path, want = _checkpoint(tmp_path)
    src = TorchZipFile(path)
    refs = {r.name: r for r in src}
    hashed = []
    real = zlib.crc32
    monkeypatch.setattr(base, "zlib", argparse.Namespace(crc32=lambda b, *v: hashed.append(len(b)) or real(b, *v),
                                                             error=zlib.error))
    for _ in range(2):
        for name in ("q.weight", "k.weight", "v.weight"):
            np.testing.assert_array_equal(refs[name].load(), want[name], err_msg=name)
    assert hashed == [3 * 16 * 16 * 4]  # the fused storage, whole, once
    refs["gate.weight"].load()
    assert hashed == [3 * 16 * 16 * 4, 8 * 16 * 4]  # another storage: its own check


@pytest.mark.parametrize("window", [100, 512, 1 << 26])
def test_a_storage_s_crc32_is_hashed_a_window_at_a_time(tmp_path, monkeypatch, window):
    """The CRC-32 check maps a storage a window at a time (a flat parameter far larger than the tensor loaded from
    it is not held mapped whole): windows that split the storage unevenly (100 bytes over gate's 512), exactly
    (512) or not at all give the one CRC-32, so an intact storage loads and a changed byte in its last window
    is caught."""
    from htsr.io import base

    monkeypatch.setattr(base, "CRC_WINDOW", window)
    path, want = _checkpoint(tmp_path)
    np.testing.assert_array_equal({r.name: r for r in TorchZipFile(path)}["gate.weight"].load(), want["gate.weight"])
    data = bytearray(path.read_bytes())
    data[data.index(want["gate.weight"].tobytes()) + 511] ^= 0x01  # (the last byte of the storage)
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="does not match the CRC-32 the archive records for it"):
        {r.name: r for r in TorchZipFile(path)}["gate.weight"].load()


def test_a_storage_whose_local_header_is_damaged_fails_its_load(tmp_path, no_crc32):
    """A storage member whose local file header lost its signature (the central directory still pointing at
    it) is a damaged archive: its tensor's load fails naming the reason zipfile gives (torch.load refuses it
    too), even with no CRC-32 recorded to catch it; the header is not trusted for the storage's offset."""
    path, want = _checkpoint(tmp_path)
    with zipfile.ZipFile(path) as z:
        src = TorchZipFile(path)
        key = next(r.storage_key[1] for r in src.refs() if r.name == "gate.weight")
        at = z.getinfo(key).header_offset
    data = bytearray(path.read_bytes())
    assert data[at:at + 4] == b"PK\x03\x04"
    data[at:at + 4] = b"PK\x00\x00"  # the signature alone: name, sizes and extra field as they were
    path.write_bytes(bytes(data))
    refs = {r.name: r for r in open_source(path)}
    np.testing.assert_array_equal(refs["fc.weight"].load(), want["fc.weight"])  # the others read
    with pytest.raises(SourceError, match=r"tensor gate\.weight: storage unreadable \(Bad magic number for file "
                                          r"header\); the file is truncated or corrupt"):
        refs["gate.weight"].load()


def test_a_pickle_naming_a_storage_the_archive_lacks_is_refused_naming_it(tmp_path):
    """A data.pkl whose tensor names a storage member the archive does not hold is refused when the pickle is
    read, in one line naming the key and the member expected (it had ended in a bare KeyError)."""
    pkl = b"\x80\x02}(" + _text("w") + _tensor("0", 4) + _text("x") + _tensor("7", 4) + b"u."
    path = _zip_with(tmp_path / "missing.pt", pkl, {"0": bytes(64)})
    with pytest.raises(SourceError) as ei:
        TorchZipFile(path)
    one_line_source_error(ei, str(path), "archive/data.pkl: storage '7' is not in the archive (expected "
                                         "archive/data/7)")


def test_shards_saved_through_file_objects_are_not_taken_for_tied_weights(tmp_path):
    """torch.save to an open file names every archive's root 'archive', so two shards of one checkpoint hold a
    storage archive/data/0 each, at the same offset, shape and stride. They are two tensors: both analysed
    (the second had been passed over as 'the same tensor as a.weight (tied weights)', its layer lost)."""
    import json

    torch.manual_seed(0)
    for i, key in ((1, "a.weight"), (2, "b.weight")):
        with open(tmp_path / f"pytorch_model-0000{i}-of-00002.bin", "wb") as f:
            torch.save({key: torch.randn(16, 16)}, f)
    with zipfile.ZipFile(tmp_path / "pytorch_model-00002-of-00002.bin") as z:
        assert "archive/data/0" in z.namelist()  # (the same member name in both shards)
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {
        "a.weight": "pytorch_model-00001-of-00002.bin", "b.weight": "pytorch_model-00002-of-00002.bin"}}))
    r = htsr.analyze(tmp_path, min_evals=2)
    assert [(x.name, x.status) for x in r.layers] == [("a", "ok"), ("b", "ok")] and r.not_analysed == ()


def test_a_numpy_array_beside_a_checkpoints_state_dict_does_not_make_it_the_state_dict(tmp_path):
    """Only torch tensors make a mapping the state dict: a checkpoint keeping the RNG states of its data loader's
    workers (a 2-D uint32 numpy array) beside its 'state_dict' reads as its state dict, as the live checkpoint
    does (the array had made the checkpoint itself the state dict: 'state_dict.fc' and an 'rng' entry)."""
    torch.manual_seed(0)
    ckpt = {"state_dict": {"fc.weight": torch.randn(8, 6)},
            "rng": np.random.default_rng(0).integers(0, 2**32, (4, 624), dtype=np.uint32)}
    torch.save(ckpt, str(tmp_path / "ckpt.pt"))
    assert [r.name for r in TorchZipFile(tmp_path / "ckpt.pt").refs()] == ["fc.weight"]
    live, saved = htsr.analyze(ckpt, min_evals=2), htsr.analyze(tmp_path / "ckpt.pt", min_evals=2)
    assert [x.name for x in saved.layers] == [x.name for x in live.layers] == ["fc"]
    assert saved.not_analysed == live.not_analysed == ()


def test_a_container_held_twice_is_walked_once(tmp_path):
    """A list held under two keys, and lists of shared halves (L_k = [L_k-1, L_k-1]), are walked once each: the
    tensor is named once, under its first path (walking every path had named it 2^k times, and 40 levels of a
    file of a few hundred bytes would never have ended)."""
    t = torch.ones(4, 4)
    shared = [t]
    nested = shared
    for _ in range(3):
        nested = [nested, nested]
    torch.save({"a": shared, "b": shared, "c": nested}, str(tmp_path / "shared.pt"))
    assert [r.name for r in TorchZipFile(tmp_path / "shared.pt").refs()] == ["a.0"]


def test_a_saved_list_of_named_parameters_is_named_by_its_names(tmp_path):
    """torch.save(list(model.state_dict().items())) (or of named_parameters()) pickles (name, tensor) pairs: each
    tensor is named by its pair's name, as the mapping the list spells (it had been 'params.0.1', the index of the
    pair and the tensor's place in it)."""
    model = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 4))
    torch.save({"params": list(model.state_dict().items())}, str(tmp_path / "pairs.pt"))
    refs = {r.name: r for r in TorchZipFile(tmp_path / "pairs.pt").refs()}
    assert list(refs) == [f"params.{k}" for k in model.state_dict()]
    np.testing.assert_array_equal(refs["params.1.weight"].load(), model[1].weight.detach().numpy())


class _Packed:  # keeps its state as a list, not a __dict__ (its own __getstate__)
    def __init__(self, w: torch.Tensor) -> None:
        self.w = w

    def __getstate__(self) -> list:
        return [self.w]

    def __setstate__(self, state: list) -> None:
        self.w = state[0]


def test_an_object_whose_state_is_a_list_has_its_tensors_read(tmp_path):
    """An object whose __getstate__ gives a list (not a __dict__) is a stand-in whose state is that list: its
    tensors are read, named by their place in it (they had been dropped without a word)."""
    w = torch.arange(12.0).reshape(3, 4)
    torch.save({"packed": _Packed(w)}, str(tmp_path / "packed.pt"))
    refs = {r.name: r for r in TorchZipFile(tmp_path / "packed.pt").refs()}
    assert list(refs) == ["packed.0"]
    np.testing.assert_array_equal(refs["packed.0"].load(), w.numpy())


def test_a_live_scripted_traced_or_unlifted_module_is_typed_as_its_source_module():
    """A live TorchScript module (torch.jit.script or trace) and an ExportedProgram's module() keep no Python layer
    classes (RecursiveScriptModule, plain Modules): an Embedding had been a dense row, a ConvTranspose1d of 40 taps
    64 'stack' rows of 64 x 40 and a Conv1d named expert_proj another 64. Typed now as the nn.Module (from a
    script module's original_name, and from the unlifted graph's nn_module_stack), as their saved files are."""

    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok, self.up = torch.nn.Embedding(300, 64), torch.nn.ConvTranspose1d(64, 64, 40)
            self.expert_proj = torch.nn.Conv1d(64, 64, 3)

        def forward(self, x):
            return self.expert_proj(self.up(self.tok(x).transpose(1, 2)))

    torch.manual_seed(0)
    m, x = M().eval(), torch.randint(0, 300, (1, 50))
    want = [(r.name, r.kind, r.shape, r.lambda_max) for r in htsr.analyze(m, min_evals=2).layers]
    assert [k for _, k, _, _ in want] == ["embedding", "conv1d", "conv1d"]
    program = torch.export.export(m, (x,))
    for live in (torch.jit.script(m), torch.jit.trace(m, x), program.module()):
        assert [(r.name, r.kind, r.shape, r.lambda_max) for r in htsr.analyze(live, min_evals=2).layers] == want, \
            type(live).__name__


def test_a_view_into_a_shared_storage_reads_only_its_own_bytes(tmp_path, monkeypatch):
    """64 experts saved as views of one stacked storage (stack.unbind(0)): each load had read the storage from its
    first byte up to its view's end (33x the storage in all, the last expert holding all of it)."""
    torch = pytest.importorskip("torch")
    import htsr.io.base as base

    stack = torch.randn(16, 32, 24)
    torch.save({f"experts.{e}.weight": v for e, v in enumerate(stack.unbind(0))}, tmp_path / "m.pt")
    read: list[int] = []
    real = base._read_into
    monkeypatch.setattr(base, "_read_into", lambda f, p, o, view: (read.append(len(view)), real(f, p, o, view))[1])
    refs = {r.name: r for r in htsr.io.open_source(tmp_path / "m.pt")}
    for e in (0, 7, 15):
        read.clear()
        got = refs[f"experts.{e}.weight"].load()
        np.testing.assert_array_equal(got, stack[e].numpy())
        # its 32 x 24 float32 bytes (and the storage's CRC-32 check, once, in its windows)
        assert read[-1] == 32 * 24 * 4, read
    # a transposed view (strided within its bytes) still reads its own span and is copied in its shape
    torch.save({"w": stack[3].t()}, tmp_path / "t.pt")
    np.testing.assert_array_equal(next(iter(htsr.io.open_source(tmp_path / "t.pt"))).load(), stack[3].t().numpy())


def test_an_expanded_view_at_a_storage_offset_is_skipped_as_one_at_offset_0(tmp_path):
    """base[90:91].expand(64, 48): its stride-0 rows had been taken for a stored matrix (the check counted the
    storage's elements before the view's offset as its own): 'not_fitted', matrix_rank 1, where base[0:1]'s was
    skipped. Both say how many values they reach: 48."""
    torch = pytest.importorskip("torch")
    base = torch.randn(100, 48)
    torch.save({"at0.weight": base[0:1].expand(64, 48), "at1.weight": base[90:91].expand(64, 48),
                "col.weight": base[:, 3].unsqueeze(1).expand(100, 40), "empty.weight": base[99:99]}, tmp_path / "m.pt")
    rows = {r.name: r.status for r in htsr.analyze(tmp_path / "m.pt", min_evals=10, kinds=None).layers}
    for name in ("at0", "at1"):
        assert rows[name] == ("skipped: an expanded view: 3072 values over 48 stored ones (a stride of 0), no stored "
                              "matrix"), rows
    # a column expanded: its reach spans the base's rows (4753 elements), more than its 4000 values; it holds 100
    assert rows["col"] == ("skipped: an expanded view: 4000 values over 100 stored ones (a stride of 0), no stored "
                           "matrix"), rows


def test_a_deflated_storage_is_read_from_the_file_whose_index_was_read(tmp_path):
    """A torch zip re-zipped with its storages deflated (read whole through zipfile), then saved again and renamed
    over: the rows had been 'ok' with the new file's numbers, or 'failed: KeyError' naming no file."""
    torch = pytest.importorskip("torch")
    from htsr.io import open_source

    def deflated(seed, path):
        torch.save({"l0.weight": torch.randn(120, 80, generator=torch.Generator().manual_seed(seed))}, tmp_path / "s.pt")
        with zipfile.ZipFile(tmp_path / "s.pt") as z, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
            for info in z.infolist():
                out.writestr(info.filename, z.read(info))
        return path

    path = deflated(0, tmp_path / "m.pt")
    src = open_source(path)
    os.replace(deflated(1, tmp_path / "new.pt"), path)
    (row,) = htsr.analyze(src, min_evals=10).layers
    assert row.status.startswith(f"failed: {path}: changed while being read: saved again or replaced"), row.status


def test_a_stored_size_past_the_end_of_the_file_is_said_to_be_corrupt_not_changed(tmp_path):
    """A zip directory recording storage data/0 as 64 MiB in a 26 kB file that never changed: its row had said
    the file 'changed while being read … (saved again while htsr read it?)' (h53). The bytes were never there: the
    header places them past the end; the other tensor is read."""
    W = torch.from_numpy(np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32))
    path = tmp_path / "lie.pt"
    torch.save({"a.weight": W, "b.weight": W.T.contiguous() * 2}, str(path))
    raw = bytearray(path.read_bytes())
    i = raw.find(b"PK\x01\x02")  # the central directory's entries
    while i >= 0:
        n = struct.unpack_from("<H", raw, i + 28)[0]
        if raw[i + 46:i + 46 + n].endswith(b"/data/0"):
            struct.pack_into("<II", raw, i + 20, 1 << 26, 1 << 26)  # its compressed and uncompressed sizes
        i = raw.find(b"PK\x01\x02", i + 4)
    path.write_bytes(bytes(raw))
    rows = {r.name: r for r in htsr.analyze(path, min_evals=5).layers}
    assert rows["a"].status.startswith(f"failed: {path}: its header places this tensor's bytes ")
    assert rows["a"].status.endswith(f"past the end of the {len(raw)}-byte file: truncated or corrupt; save or "
                                     "download it again")
    assert rows["b"].status == "ok"


def test_a_short_storages_tensor_keeps_its_kind_and_shape(tmp_path):
    """A conv weight whose storage is recorded short: its failed row had been a 'dense' one of no shape, and
    --kinds conv2d then found no layer (h54); a 1-D norm weight's had been a failed row too. The row is the conv's,
    failing; the norm weight is passed over as one."""
    g = torch.Generator().manual_seed(0)
    sd = {"fc.weight": torch.randn(128, 96, generator=g), "conv.weight": torch.randn(64, 32, 3, 3, generator=g),
          "norm.weight": torch.ones(32)}
    path, short = tmp_path / "m.pt", tmp_path / "short.pt"
    torch.save(sd, str(path))
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(short, "w") as dst:
        for n in src.namelist():
            data = src.read(n)
            dst.writestr(n, data[:-64] if n.endswith(("/data/1", "/data/2")) else data)
    r = htsr.analyze(short, min_evals=5)
    rows = {row.name: row for row in r.layers}
    assert sorted(rows) == ["conv", "fc"] and rows["fc"].status == "ok"
    # the source says it, the damaged norm weight named (it gets no row: h57)
    assert r.source == (f"{short} (2 tensor(s) with storage truncated or corrupt, conv.weight, norm.weight: save or "
                        "download it again)")
    assert (rows["conv"].kind, rows["conv"].shape) == ("conv2d", "64x32x3x3")
    assert rows["conv"].status.startswith(f"failed: {short}: tensor conv.weight: shape [64, 32, 3, 3] needs")
    assert [r.name for r in htsr.analyze(short, min_evals=5, kinds="conv2d").layers] == ["conv"]
