"""Fits of a spectrum's tail and how far to trust them. Pure numpy/scipy: no plotting, no files."""

from .bayes import BayesAlpha, bayesian_alpha, bayesian_alpha_averaged
from .bootstrap import BootstrapResult, bootstrap_power_law
from .powerlaw import PowerLawFit, fit_power_law, ks_scan
from .tails import TailComparison, compare_tails
from .tpl import TPLFit, fit_truncated_power_law
from .uncertainty import tail_uncertainty

__all__ = [
    "BayesAlpha", "BootstrapResult", "PowerLawFit", "TPLFit", "TailComparison", "bayesian_alpha",
    "bayesian_alpha_averaged", "bootstrap_power_law", "compare_tails", "fit_power_law",
    "fit_truncated_power_law", "ks_scan", "tail_uncertainty",
]
