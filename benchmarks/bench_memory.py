"""Peak memory of htsr on checkpoints many times larger than their largest tensor.

Writes a synthetic LLaMA-style checkpoint with the public writers — a sharded bf16 Hugging Face folder
(``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``, names ``model.layers.{b}.
self_attn.q_proj.weight`` …, ``safetensors.numpy.save_file``) and/or a GGUF file (llama.cpp names
``blk.{b}.attn_q.weight`` …, F16, ``gguf.GGUFWriter``) and/or (``--format torch``, needs torch to write)
sharded ``pytorch_model-0000k-of-0000n.bin`` zips of ``torch.save`` with their index, analysed in a child
where ``import torch`` fails — then analyses it in a child process and prints the child's peak RSS
against the bound 3 × (largest tensor as float32) + 400 MB.

The default shape is a 1024-wide LLaMA block (4 × 1024² attention, 3 × 2816 × 1024 MLP) repeated 240
times: 6.1 GB of bf16 in 6 shards (the GGUF file: the same tensors in F16). Each block's matrices are
drawn once per shard and repeated within it (the values do not matter for memory; the writing time does).

    python benchmarks/bench_memory.py [--format safetensors gguf torch] [--blocks 240] [--hidden 1024]
                                      [--shards 6] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ml_dtypes
import numpy as np

# The child reads its own high-water mark VmHWM (per address space, so it starts afresh at exec;
# getrusage's ru_maxrss would carry over the parent's RSS at fork time).
CHILD = """
import json, re, sys, time
if sys.argv[2:] == ["no-torch"]:  # prove the reader needs no torch: `import torch` fails in this process
    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "torch":
                raise ImportError("torch is blocked in this benchmark")
    sys.meta_path.insert(0, NoTorch())
import htsr
t = time.perf_counter()
r = htsr.analyze(sys.argv[1])
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"seconds": time.perf_counter() - t, "layers": len(r.layers),
                  "fitted": r.summary.num_fitted, "peak_rss_mb": hwm / 1024}))
"""

HF = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
      "mlp.up_proj", "mlp.down_proj")
GGUF = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def block_shapes(hidden: int) -> list[tuple[int, int]]:
    inter = 256 * -(-8 * hidden // (3 * 256))  # LLaMA: 8/3 of hidden, up to 256s (2816 for 1024, 11008 for 4096)
    return [(hidden, hidden)] * 4 + [(inter, hidden), (inter, hidden), (hidden, inter)]


def _block(rng: np.random.Generator, hidden: int, dtype) -> list[np.ndarray]:
    return [(rng.standard_normal(s, dtype=np.float32) * 0.02).astype(dtype) for s in block_shapes(hidden)]


def write_safetensors(folder: Path, blocks: int, hidden: int, shards: int) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    folder.mkdir()
    weight_map = {}
    per = -(-blocks // shards)
    for k in range(shards):
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        mats = _block(rng, hidden, ml_dtypes.bfloat16)
        tensors = {f"model.layers.{b}.{n}.weight": m for b in range(k * per, min(blocks, (k + 1) * per))
                   for n, m in zip(HF, mats)}
        save_file(tensors, str(folder / fname))
        weight_map.update(dict.fromkeys(tensors, fname))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def write_torch(folder: Path, blocks: int, hidden: int, shards: int) -> None:
    """Sharded ``pytorch_model-0000k-of-0000n.bin`` (torch.save zips, bf16) with their index."""
    import torch

    torch.manual_seed(0)
    folder.mkdir()
    weight_map = {}
    per = -(-blocks // shards)
    for k in range(shards):
        fname = f"pytorch_model-{k + 1:05d}-of-{shards:05d}.bin"
        mats = [(torch.randn(s) * 0.02).to(torch.bfloat16) for s in block_shapes(hidden)]
        # torch.save writes a storage once per object: each entry gets its own copy
        tensors = {f"model.layers.{b}.{n}.weight": m.clone() for b in range(k * per, min(blocks, (k + 1) * per))
                   for n, m in zip(HF, mats)}
        torch.save(tensors, str(folder / fname))
        weight_map.update(dict.fromkeys(tensors, fname))
        del tensors
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def write_gguf(path: Path, blocks: int, hidden: int) -> None:
    import gguf

    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(blocks)
    mats = _block(rng, hidden, np.float16)  # the writer keeps references, so one block's arrays serve all
    for b in range(blocks):
        for n, m in zip(GGUF, mats):
            w.add_tensor(f"blk.{b}.{n}.weight", m)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def measure(path: Path, largest_f32: int, label: str, *child_args: str) -> None:
    files = [path] if path.is_file() else sorted(f for f in path.iterdir() if f.suffix in (".safetensors", ".bin"))
    size = sum(f.stat().st_size for f in files)
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), *child_args], check=False, capture_output=True,
                         text=True)
    if out.returncode:
        sys.exit(f"{label}: the analysis failed:\n{out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    bound = 3 * largest_f32 / 2**20 + 400
    print(f"{label}: {size / 1e9:.2f} GB in {len(files)} file(s), {res['layers']} layers ({res['fitted']} fitted), "
          f"largest tensor as float32 {largest_f32 / 2**20:.1f} MiB; file / largest(f32) = {size / largest_f32:.0f}x")
    print(f"  analysis {res['seconds']:.1f} s; peak RSS {res['peak_rss_mb']:.0f} MiB; bound 3 x largest + 400 = "
          f"{bound:.0f} MiB -> {'OK' if res['peak_rss_mb'] < bound else 'OVER'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", nargs="+", choices=("safetensors", "gguf", "torch"), default=["safetensors", "gguf"])
    ap.add_argument("--blocks", type=int, default=240)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--shards", type=int, default=6)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    if not Path(args.dir).is_dir():
        ap.error(f"--dir {args.dir}: no such folder (the checkpoint is written to a temporary folder inside it)")
    largest = max(r * c for r, c in block_shapes(args.hidden)) * 4
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        for fmt in args.format:
            t = time.perf_counter()
            child_args: tuple[str, ...] = ()
            if fmt == "safetensors":
                path = Path(d) / "hf"
                write_safetensors(path, args.blocks, args.hidden, args.shards)
                label = "sharded bf16 safetensors"
            elif fmt == "torch":
                path = Path(d) / "hf_torch"
                write_torch(path, args.blocks, args.hidden, args.shards)
                label, child_args = "sharded bf16 pytorch_model.bin (analysed with torch unimportable)", ("no-torch",)
            else:
                path = Path(d) / "model.gguf"
                write_gguf(path, args.blocks, args.hidden)
                label = "GGUF F16"
            print(f"wrote {label} in {time.perf_counter() - t:.0f} s", flush=True)
            measure(path, largest, label, *child_args)
            for f in ([path] if path.is_file() else list(path.iterdir())):
                f.unlink()


if __name__ == "__main__":
    main()
