"""Reader for plain Python pickles of weights (``.pkl``, ``.pickle``, gzip-compressed too): ``pickle.dump`` of
numpy arrays, of lists and dicts of them, or of an object that holds them (a hand-written network class
with ``weights`` and ``biases`` lists, as in Nielsen's *Neural Networks and Deep Learning* and its ports).

Nothing in the file is run or imported: the pickle is read by the restricted unpickler of
:mod:`htsr.io.torchzip`, which rebuilds numpy arrays from their bytes (numeric dtypes only; object arrays
become lists) and turns every other class into an inert stand-in that keeps its state, so an object's
arrays are found by attribute path (``weights.0``, ``biases.1``). Globals that can only mean code meant to
run on loading (``os``, ``subprocess``, ``builtins.eval`` …) are refused, as are torch tensors pickled
with ``pickle`` rather than ``torch.save``. Protocols 0 to 5; a Python 2 pickle's byte strings are read as
latin1, as numpy advises for its arrays.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from pathlib import Path

from ..errors import described
from .base import is_gzip
from .torchzip import _is_leaf, _PickledTensors

__all__ = ["PICKLE_SUFFIXES", "PickleFile", "gzipped_pickle", "is_pickle_head"]

#: names that say "a pickle" when the content cannot (protocols 0 and 1 have no header)
PICKLE_SUFFIXES = (".pkl", ".pickle")


def is_pickle_head(head: bytes) -> bool:
    """True for the first bytes of a pickle of protocol 2 to 5 (the PROTO opcode and its version)."""
    return head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")


def gzipped_pickle(path: Path) -> bool:
    """True if ``path`` is a gzip file whose content starts as a pickle of protocol 2 to 5, or is named as a
    pickle (``.pkl.gz``, or ``.pkl`` itself: protocols 0 and 1 have no header)."""
    if path.suffix.lower() in PICKLE_SUFFIXES or Path(path.stem).suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with gzip.open(path, "rb") as f:
            return is_pickle_head(f.read(2))
    except (OSError, EOFError, zlib.error):
        return False


class PickleFile(_PickledTensors):
    """The numeric arrays of a plain pickle (optionally gzip-compressed), named by their path in it."""

    writer, encoding = "pickle.dump", "latin1"
    _is_weight = staticmethod(_is_leaf)  # a mapping of arrays is the state

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.description = str(self.path)

        def storage(pid: tuple) -> None:
            raise pickle.UnpicklingError("a persistent id: written by torch.save or another pickler, not "
                                         "pickle.dump")

        try:
            with open(self.path, "rb") as raw:
                compressed = is_gzip(raw.read(2))
            with (gzip.open if compressed else open)(self.path, "rb") as f:
                tree = self._unpickle(f, "pickle", storage)
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise self._fail(f"unreadable ({described(e, 120)}); truncated or corrupt "
                             "file?") from None
        self._collect(tree, (), {})
