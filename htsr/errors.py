"""Exceptions raised by htsr.

Every error a user can cause derives from :class:`HtsrError`, so a caller (and the CLI) can catch one
type and show its one-line message::

    HtsrError
    ├── OptionError        an unknown option, or a value outside its allowed set or range (also a ValueError)
    ├── SourceError        a path that does not exist, an unknown or corrupt file, a refused pickle
    ├── OutputError        an output (``--out``, a report, a CSV) that cannot be written (also an OSError)
    ├── MissingExtraError  an optional dependency is not installed; the message has the pip line (also an
    │                      ImportError)
    ├── BrokenPackageError an optional dependency is installed but fails to import (also an ImportError)
    └── LayerSkipped       raised by a tensor's loader when that tensor must not be analysed (a delta
                           without a base tensor); caught per layer, it becomes a ``skipped: …`` status

Problems confined to one layer (NaN weights, an all-zero matrix, a failed fit) are never raised:
they become that layer's ``status`` and the analysis goes on.
"""

from __future__ import annotations

import re
import reprlib

__all__ = ["HtsrError", "OptionError", "SourceError", "OutputError", "MissingExtraError", "BrokenPackageError",
           "LayerSkipped", "shown", "listed", "described"]

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60


def shown(value: object) -> str:
    """``value`` as an error message quotes it: its repr, cut short (a list of 2000 values, 5 kB of bytes, a
    tensor) and on one line (a tensor's repr has several)."""
    try:
        text = _SHOWN.repr(value)
    except Exception:  # noqa: BLE001 - an object whose __repr__ raises
        text = f"<{type(value).__name__}>"
    return re.sub(r"\s*[\r\n]+\s*", " ", text)


def listed(items, limit: int = 4, sep: str = ", ") -> str:
    """The first ``limit`` of ``items`` as a message lists them, and how many more there are: ``a, b, c, d
    and 2 more``."""
    items = [str(i) for i in items]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return sep.join(items[:limit]) + more


def described(e: BaseException, limit: int | None = None) -> str:
    """An unexpected exception as a row's status or a message names it: ``ValueError: its message`` on one line
    (at most ``limit`` characters of message), or the class alone when the message is empty (an ``EOFError()``,
    an ``AssertionError``), not ``EOFError: ``."""
    text = " ".join(str(e).split())[:limit]
    return f"{e.__class__.__name__}: {text}" if text else e.__class__.__name__


class HtsrError(Exception):
    """Base class of every error htsr raises on bad input."""


class OptionError(HtsrError, ValueError):
    """An option is unknown or has a value outside its allowed set (``option`` and ``value`` name it, when
    it is one of htsr's options)."""

    def __init__(self, message: str, option: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.option, self.value = option, value


class SourceError(HtsrError):
    """A model source cannot be read: missing, unknown format, corrupt, or unsafe."""


class OutputError(HtsrError, OSError):
    """An output cannot be written: its path is a folder or no regular file, its folder cannot be made or written
    in, the disk is full. The message names the path (and the flag that gave it)."""


class _PackageError(HtsrError, ImportError):
    """An optional package that a purpose needs is missing or broken; ``_made_of``: the constructor's arguments,
    the purpose at ``_PURPOSE``."""

    _PURPOSE: int
    _made_of: tuple

    def __reduce__(self):  # (from a process pool's worker: Exception's own pickling passes the message alone)
        return type(self), self._made_of

    def naming(self, source: object) -> "_PackageError":
        """This error with ``source`` (a file that needs the package) before its purpose, unless it names it."""
        parts = list(self._made_of)
        if str(source) in parts[self._PURPOSE]:
            return self
        parts[self._PURPOSE] = f"{source}: {parts[self._PURPOSE]}"
        return type(self)(*parts)


class MissingExtraError(_PackageError):
    """An optional dependency is needed for this source or output: installed by htsr's ``extra``, or, for a
    package no extra installs (``extra`` None: a training framework the user brings), by its own name."""

    _PURPOSE = 2

    def __init__(self, package: str, extra: str | None, purpose: str) -> None:
        how = f"pip install 'htsr[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{purpose} needs the '{package}' package: {how}")
        self._made_of = (package, extra, purpose)


class BrokenPackageError(_PackageError):
    """An optional dependency is installed but fails to import (built for another numpy, a missing library of
    its own): installing htsr's extra again would change nothing."""

    _PURPOSE = 1

    def __init__(self, package: str, purpose: str, error: BaseException | str) -> None:
        """``error``: the import's exception, or its one-line account (``'ImportError: …'``)."""
        reason = error if isinstance(error, str) else described(error, 200)
        super().__init__(f"{purpose} needs the '{package}' package, which is installed but fails to import "
                         f"({reason}); reinstall or upgrade it: pip install -U {package}")
        self._made_of = (package, purpose, reason)  # (the import's exception itself is not kept: it may not pickle)


class LayerSkipped(HtsrError):
    """A tensor that is listed but must not be analysed; the message says why."""
