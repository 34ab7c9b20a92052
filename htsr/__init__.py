"""htsr: how well each layer of a trained neural network is trained, from its weights alone.

Heavy-Tailed Self-Regularization (Martin & Mahoney) diagnostics: the empirical spectral density of
every weight matrix, a power-law fit of its tail (alpha) and the norm and rank metrics built on it.

>>> import htsr
>>> result = htsr.analyze("model.safetensors")            # doctest: +SKIP
>>> result.summary.means["alpha"], result.to_pandas()     # doctest: +SKIP
"""

from .analyze import analyze
from .errors import BrokenPackageError, HtsrError, MissingExtraError, OptionError, OutputError, SourceError
from .fits.powerlaw import PowerLawFit, fit_power_law
from .options import OPTION_SPECS, Options
from .results import COLUMNS, AnalysisResult, LayerResult, LayerSpectra, Summary, load_result
from .spectra import Spectrum, esd

__version__ = "0.1.0"

#: submodules that ``htsr.<name>`` imports on first use (``htsr.plot.plot_layer(...)`` after ``import htsr``),
#: so that importing htsr loads neither matplotlib nor the training hooks
_LAZY_SUBMODULES = frozenset({"compare", "figures", "monitor", "plot", "report"})


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_SUBMODULES)

__all__ = [
    "analyze",
    "load_result",
    "AnalysisResult",
    "LayerResult",
    "LayerSpectra",
    "Summary",
    "COLUMNS",
    "Options",
    "OPTION_SPECS",
    "fit_power_law",
    "PowerLawFit",
    "esd",
    "Spectrum",
    "HtsrError",
    "OptionError",
    "SourceError",
    "OutputError",
    "MissingExtraError",
    "BrokenPackageError",
    "__version__",
]
