"""TorchScript archives read without torch: values, names and kinds against torch's own loader; frozen
modules; views into shared storages; refusal of foreign pickle globals; bad input (truncation, lying
storage sizes, Hypothesis byte mutations of data.pkl); and the real Silero VAD .jit (network-marked)."""

from __future__ import annotations

import io
import itertools
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import htsr
from htsr.errors import SourceError
from htsr.io import open_source
from htsr.io.torchscript import TorchScriptFile

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
    assert isinstance(src, TorchScriptFile)
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
        assert np.isnan(r.alpha) and np.isnan(b[n].alpha) or r.alpha == pytest.approx(b[n].alpha, rel=1e-12)


def test_half_precision_and_frozen_constants(net, tmp_path):
    half = tmp_path / "half.jit"
    torch.jit.save(torch.jit.script(_Net().to(torch.bfloat16).eval()), str(half))
    refs = {r.name: r for r in TorchScriptFile(half)}
    assert refs["head.weight"].dtype == "bfloat16" and refs["head.weight"].load().dtype == np.float32
    frozen = tmp_path / "frozen.jit"
    torch.jit.save(torch.jit.freeze(torch.jit.script(net)), str(frozen))
    consts = [r.load() for r in TorchScriptFile(frozen) if r.name.startswith("CONSTANTS.c")]
    # freezing inlines the weights as constants: the head's matrix is among them, bit for bit
    assert any(c.shape == (7, 12) and np.array_equal(c, net.head.weight.detach().numpy()) for c in consts)


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


def test_lying_storage_size_names_the_tensor(scripted, tmp_path):
    with zipfile.ZipFile(scripted) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
        members = [n for n in z.namelist() if "/data/" in n]
        # the storage of head.weight: the member whose size is 7 × 12 float32
        key = next(n for n in members if z.getinfo(n).file_size == 7 * 12 * 4)
    short = _rewrite(scripted, tmp_path / "short.pt", {key: b"\0" * 100})
    with pytest.raises(SourceError) as e:
        open_source(short)
    msg = str(e.value)
    assert "\n" not in msg and str(short) in msg and "head.weight" in msg and "holds 100" in msg
    assert pkl  # the pickle itself was left alone


def test_truncated_archive(scripted, tmp_path):
    raw = scripted.read_bytes()
    for cut in (len(raw) // 3, len(raw) - 30):
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(raw[:cut])
        with pytest.raises(SourceError) as e:
            open_source(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value)


def _small_scripted() -> tuple[bytes, str]:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 4))), buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
    return buf.getvalue(), name


_ARCHIVE, _PKL = _small_scripted()
_PKL_BYTES = zipfile.ZipFile(io.BytesIO(_ARCHIVE)).read(_PKL)
_counter = itertools.count()


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_PKL_BYTES) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzzed_pickle_raises_only_htsr_errors(tmp_path, mutations):
    raw = bytearray(_PKL_BYTES)
    for pos, byte in mutations:
        raw[pos] = byte
    path = tmp_path / f"fuzz{next(_counter)}.pt"
    with zipfile.ZipFile(io.BytesIO(_ARCHIVE)) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, bytes(raw) if info.filename == _PKL else zin.read(info))
    try:
        for ref in open_source(path):
            ref.load()
    except SourceError as e:
        assert "\n" not in str(e) and str(path) in str(e)


@pytest.mark.network
def test_silero_jit_equals_torch_and_onnx():
    """The real Silero VAD TorchScript file: htsr's reader (no torch) gives exactly torch.jit.load's
    parameters, and its 16 kHz model holds the weights of the wheel's ONNX copy (so the same alphas)."""
    from conftest import fetch_model
    from test_onnx import _value_match

    from htsr.io.onnx import OnnxFile

    jit_path, onnx_path = fetch_model("silero_jit"), fetch_model("silero_onnx")
    refs = {r.name: r for r in TorchScriptFile(jit_path)}
    live = torch.jit.load(str(jit_path), map_location="cpu")
    params = {n: p.detach().numpy() for n, p in live.named_parameters()}
    params.update({n: b.numpy() for n, b in live.named_buffers()})
    assert set(params) <= set(refs)
    for n, p in params.items():
        np.testing.assert_array_equal(refs[n].load(), p, err_msg=n)
    jit16 = {n: r.load() for n, r in refs.items() if n.startswith("_model.") and len(r.shape) >= 2}
    ox = {r.name: r.load() for r in OnnxFile(onnx_path)}
    match = _value_match(ox, jit16)
    assert len(match) == len(ox) == 8, match  # every ONNX weight is a JIT tensor
    a = {r.name: r for r in htsr.analyze(onnx_path).layers}
    b = {r.name: r for r in htsr.analyze(jit_path).layers}
    for on, jn in match.items():
        ra, rb = a[on.removesuffix(".weight")], b[jn.removesuffix(".weight")]
        assert ra.status == rb.status and ra.kind == rb.kind, (on, jn)
        if ra.status == "ok":
            # equal tensors (LSTM gate rows permuted): equal ESDs up to the float32 Gram's summation order
            assert ra.alpha == pytest.approx(rb.alpha, rel=1e-6), (on, jn)
