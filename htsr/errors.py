"""Exceptions raised by htsr.

Every error a user can cause derives from :class:`HtsrError`, so a caller (and the CLI) can catch one
type and show its one-line message::

    HtsrError
    ├── OptionError      an unknown option, or a value outside its allowed set or range
    ├── SourceError      a path that does not exist, an unknown or corrupt file, a refused pickle
    ├── MissingExtraError  an optional dependency is not installed; the message has the pip line
    └── LayerSkipped     raised by a tensor's loader when that tensor must not be analysed (a delta
                         without a base tensor); caught per layer, it becomes a ``skipped: …`` status

Problems confined to one layer (NaN weights, an all-zero matrix, a failed fit) are never raised:
they become that layer's ``status`` and the analysis goes on.
"""

from __future__ import annotations

__all__ = ["HtsrError", "OptionError", "SourceError", "MissingExtraError", "LayerSkipped"]


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


class MissingExtraError(HtsrError, ImportError):
    """An optional dependency is needed for this source or output: installed by htsr's ``extra``, or, for a
    package no extra installs (``extra`` None: a training framework the user brings), by its own name."""

    def __init__(self, package: str, extra: str | None, purpose: str) -> None:
        how = f"pip install 'htsr[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{purpose} needs the '{package}' package: {how}")


class BrokenPackageError(HtsrError, ImportError):
    """An optional dependency is installed but fails to import (built for another numpy, a missing library of
    its own): installing htsr's extra again would change nothing."""

    def __init__(self, package: str, purpose: str, error: BaseException) -> None:
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        super().__init__(f"{purpose} needs the '{package}' package, which is installed but fails to import "
                         f"({reason}); reinstall or upgrade it: pip install -U {package}")


class LayerSkipped(HtsrError):
    """A tensor that is listed but must not be analysed; the message says why."""
