"""Fits of a spectrum's tail. Pure numpy: no plotting, no files."""

from .powerlaw import PowerLawFit, fit_power_law, ks_scan

__all__ = ["PowerLawFit", "fit_power_law", "ks_scan"]
