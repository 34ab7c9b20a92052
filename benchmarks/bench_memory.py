"""Peak memory of htsr on a safetensors checkpoint many times larger than its largest tensor.

Writes a synthetic bf16 checkpoint with LLaMA-style names (by default 2 blocks: 4 × 4096² attention
and 3 × 11008×4096 MLP matrices each, about 0.75 GB; ``--blocks`` scales it), then analyses it in a
child process and prints the child's peak RSS against the bound 3 × (largest tensor as float32)
+ 400 MB. The file is written with htsr's own knowledge of the format only in the sense of the
public safetensors writer (``safetensors.numpy.save_file``).

    python benchmarks/bench_memory.py [--blocks 2] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import ml_dtypes
import numpy as np

# The child reads its own high-water mark VmHWM (per address space, so it starts afresh at exec;
# getrusage's ru_maxrss would carry over the parent's RSS at fork time).
CHILD = """
import json, re, sys, time
import htsr
t = time.perf_counter()
r = htsr.analyze(sys.argv[1])
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"seconds": time.perf_counter() - t, "layers": len(r.layers),
                  "fitted": r.summary.num_fitted, "peak_rss_mb": hwm / 1024}))
"""


def write_checkpoint(path: Path, blocks: int) -> int:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors, largest = {}, 0
    shapes = {"self_attn.q_proj": (4096, 4096), "self_attn.k_proj": (4096, 4096),
              "self_attn.v_proj": (4096, 4096), "self_attn.o_proj": (4096, 4096),
              "mlp.gate_proj": (11008, 4096), "mlp.up_proj": (11008, 4096), "mlp.down_proj": (4096, 11008)}
    for b in range(blocks):
        for name, shape in shapes.items():
            w = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16)
            tensors[f"model.layers.{b}.{name}.weight"] = w
            largest = max(largest, int(np.prod(shape)) * 4)
    save_file(tensors, str(path))
    return largest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path = Path(d) / "model.safetensors"
        largest = write_checkpoint(path, args.blocks)
        size = path.stat().st_size
        out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
    bound = 3 * largest / 2**20 + 400
    print(f"checkpoint {size / 2**30:.2f} GiB bf16, {res['layers']} layers ({res['fitted']} fitted), "
          f"largest tensor as float32 {largest / 2**20:.0f} MiB, file / largest(bf16) = {size / (largest / 2):.1f}x")
    print(f"analysis {res['seconds']:.1f} s; peak RSS {res['peak_rss_mb']:.0f} MiB; bound 3 x largest + 400 = "
          f"{bound:.0f} MiB -> {'OK' if res['peak_rss_mb'] < bound else 'OVER'}")


if __name__ == "__main__":
    main()
