"""3-D convolutions (video and volumetric models): a [c_out, c_in, kd, kh, kw] kernel is one conv3d row
whose ESD pools the c_out × c_in matrices of its kd·kh·kw kernel positions, as conv2d's does (without
WeightWatcher's conv2d ½ scale, which it defines for 2-D kernels only) — from a live torch module, its
state dict file, an ONNX Conv and a Flax Conv kernel alike."""

from __future__ import annotations

import numpy as np
import pytest

import htsr

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper


def _pooled_evals(W: np.ndarray) -> np.ndarray:
    """The eigenvalues of every kernel position's c_out × c_in slice, pooled (float64 SVD)."""
    slices = [W[(slice(None), slice(None)) + p] for p in np.ndindex(*W.shape[2:])]
    return np.sort(np.concatenate([np.linalg.svd(s.astype(np.float64), compute_uv=False) ** 2 for s in slices]))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(24, 40, (3, 3, 3)), torch.nn.ReLU(), torch.nn.Conv3d(40, 8, 1))


def test_conv3d_rows_from_a_module_a_file_onnx_and_flax(net, tmp_path):
    W = net[0].weight.detach().numpy()
    want = _pooled_evals(W)
    path = tmp_path / "sd.pt"
    torch.save(net.state_dict(), str(path))
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="/0/Conv")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [onnx.numpy_helper.from_array(W, "w")])
    onnx_path = tmp_path / "m.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(onnx_path))
    flax_tree = {"params": {"Conv_0": {"kernel": np.transpose(W, (2, 3, 4, 1, 0)).copy(),  # [kd, kh, kw, in, out]
                                       "bias": np.zeros(40, np.float32)}}}
    for source in (net, path, onnx_path, flax_tree):
        r = htsr.analyze(source, keep_spectra=True, min_evals=5)
        row, sp = r.layers[0], r.spectra[0]
        assert (row.kind, row.shape, row.num_matrices, row.N, row.M) == ("conv3d", "40x24x3x3x3", 27, 40, 24), source
        assert row.status == "ok" and row.num_evals == 27 * 24
        # float32 Gram (the fast path) against the float64 SVD of the same slices: float32 rounding
        np.testing.assert_allclose(sp.evals, want, rtol=2e-4, atol=1e-5 * want[-1])
    # the 1×1×1 conv: one position, an 8 × 40 matrix; per position, conv3d rows are named by position
    per = {x.name: x for x in htsr.analyze(net, conv="per_position", min_evals=5).layers}
    assert len(per) == 28 and per["0[1,2,0]"].num_evals == 24 and per["2[0,0,0]"].shape == "8x40x1x1x1"
    assert [x.name for x in htsr.analyze(net, kinds="conv3d", min_evals=5).layers] == ["0", "2"]


def test_a_conv3d_with_one_output_channel_is_not_squeezed():
    """c_out = 1 and a kernel side above 32: the leading 1 is the output channel, not a batch axis to drop
    (it failed with an IndexError)."""
    torch.manual_seed(1)
    (row,) = htsr.analyze(torch.nn.Conv3d(4, 1, (40, 3, 3)), min_evals=2).layers
    assert (row.kind, row.shape, row.num_matrices) == ("conv3d", "1x4x40x3x3", 360)
    # each position is a 1 x 4 matrix with one eigenvalue: described, no fit to the pooled squared norms
    assert row.status.startswith("not_fitted: each of the 360 kernel positions is a 1 x 4 matrix")
