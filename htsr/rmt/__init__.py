"""Random-matrix diagnostics (THEORY §5–§7): the Marchenko–Pastur bulk, randomisation and correlation
traps, the 5+1 phases, SETOL's ERG condition and eigenvector localisation. Pure numpy/scipy."""

from .localization import LOCALIZATION_COLUMNS, localization, localized_spike, spike_localization
from .mp import MPFit, fit_mp, mp_cdf, mp_quantiles, tw_edge
from .phases import (PHASES, PhaseThresholds, bbp_entry_scale, count_heavy_entries, mp_fits_bulk, num_zero_evals,
                     phase_of)
from .setol import ERGResult, delta_lambda_min, erg_eigenvalues, erg_tail, layer_quality
from .traps import Randomized, js_distance, randomize

__all__ = ["LOCALIZATION_COLUMNS", "localization", "localized_spike", "spike_localization", "MPFit", "fit_mp", "mp_cdf", "mp_quantiles", "tw_edge",
           "PHASES", "PhaseThresholds", "bbp_entry_scale", "count_heavy_entries", "mp_fits_bulk", "num_zero_evals", "phase_of", "ERGResult", "delta_lambda_min",
           "erg_eigenvalues", "erg_tail", "layer_quality", "Randomized", "js_distance", "randomize"]
