"""Random-matrix diagnostics (issue 4): MP fit, spikes, traps, 5+1 phases, localisation, integration.

Known answers come from matrices built to have them (htsr.rmt.synthetic): Gaussian noise of chosen σ,
spikes of chosen strength relative to the BBP threshold (whose outlier location is known in closed
form), Pareto entries of chosen tail exponent, exact low-rank products and one planted entry.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections import Counter

import numpy as np
import pytest
import scipy.integrate
import scipy.stats

import htsr
from htsr.errors import OptionError
from htsr.rmt import (PHASES, MPFit, fit_mp, js_distance, localization, mp_cdf, mp_quantiles, num_zero_evals,
                       phase_of, randomize, tw_edge)
from htsr.rmt import synthetic as S
from htsr.rmt.localization import LOCALIZED_TOP, localized_spike
from htsr.rmt.mp import zero_level
from htsr.rmt.phases import count_heavy_entries
from htsr.spectra import esd

N, M = 1000, 500
SEEDS = range(20)
BBP = S.bbp_threshold(N, M)


def _evals(W: np.ndarray) -> np.ndarray:
    return esd([W]).evals


# --- the MP law itself -------------------------------------------------------------------------------

@pytest.mark.parametrize("Q", [1.0, 1.5, 2.0, 4.0, 10.0])
def test_mp_cdf_matches_quadrature_of_the_density(Q):
    lm, lp = (1 - Q**-0.5) ** 2, (1 + Q**-0.5) ** 2
    rho = lambda x: Q * np.sqrt(max((lp - x) * (x - lm), 0.0)) / (2 * np.pi * x)  # noqa: E731
    for x in np.linspace(lm, lp, 9)[1:]:
        ref = scipy.integrate.quad(rho, lm, x, limit=200)[0]
        # 4097-point trapezoid on the smooth sin² substitution: error ~1e-7 (measured 3e-8)
        assert mp_cdf(x, Q) == pytest.approx(ref, abs=1e-6)


def test_mp_quantiles_invert_the_cdf_and_scale_with_sigma2():
    p = np.linspace(0.01, 0.99, 25)
    q = mp_quantiles(p, 2.0)
    assert np.allclose(mp_cdf(q, 2.0), p, atol=1e-6)  # interpolation error of the table, ~1e-7
    assert np.allclose(mp_quantiles(p, 2.0, sigma2=3.0), 3.0 * q)  # (σ² only scales them: rounding)


def test_tw_edge_is_johnstones_centring_and_scale():
    mu, s = tw_edge(1000, 500)
    a, b = math.sqrt(999.5), math.sqrt(499.5)
    # the same closed form: exact (approx's default rel 1e-6 is ample)
    assert mu == pytest.approx((a + b) ** 2) and s == pytest.approx((a + b) * (1 / a + 1 / b) ** (1 / 3))


# --- MP fit: sigma and spikes ------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [1.0, 0.02, 3.5])
def test_mp_fit_recovers_sigma_within_1_percent_with_no_spikes(sigma):
    for seed in SEEDS:
        f = fit_mp(_evals(S.gaussian(N, M, seed, sigma)), N, M)
        # the must-show: within 1 % (measured: within 0.3 %)
        assert math.sqrt(f.sigma2) == pytest.approx(sigma, rel=0.01), seed
        assert f.num_spikes == 0, seed
        assert f.lambda_plus == pytest.approx(f.sigma2 * (math.sqrt(N) + math.sqrt(M)) ** 2, rel=1e-12)  # (identity)
        assert f.softrank == pytest.approx(f.lambda_plus / _evals(S.gaussian(N, M, seed, sigma))[-1])  # (identity)



def test_num_spikes_is_what_lies_above_the_threshold_even_on_a_tiny_spectrum():
    """The bulk that sets σ² keeps at least 2 eigenvalues: with 2 eigenvalues in all, one of them may lie
    above the threshold, and it counts as a spike (it was 0 beside a threshold it exceeded)."""
    W = np.zeros((384, 2))
    W[:, 0], W[:, 1] = np.random.default_rng(0).standard_normal(384), 0.05 * np.random.default_rng(1).standard_normal(384)
    ev = np.sort(np.linalg.eigvalsh(W.T @ W))
    mp = fit_mp(ev, 384, 2)
    assert mp.num_spikes == int(np.sum(ev > mp.threshold)) >= 1
    row = htsr.analyze({"t.weight": W}, min_evals=2).layers[0]
    assert row.num_spikes == np.sum(ev > row.mp_threshold) >= 1


def test_an_undefined_mp_fit_counts_no_spikes_as_nan_not_0():
    r = htsr.analyze({"const.weight": np.ones((200, 100))}).layers[0]  # rank 1: no bulk to fit
    assert math.isnan(r.mp_threshold) and math.isnan(r.num_spikes)

@pytest.mark.parametrize("theta", [2.0, 3.0, 10.0])
def test_mp_fit_counts_exactly_the_planted_spikes(theta):
    for seed in SEEDS:
        ev = _evals(S.spiked(N, M, seed, 10, theta * BBP))
        f = fit_mp(ev, N, M)
        assert f.num_spikes == 10, seed
        assert math.sqrt(f.sigma2) == pytest.approx(1.0, rel=0.02), seed  # spikes do not bias the bulk
        # the outliers sit where the BBP formula puts them (finite-size spread ~2 %)
        assert np.median(ev[-10:]) / N == pytest.approx(S.spike_location(theta * BBP, N, M), rel=0.05)


@pytest.mark.parametrize("share", [0.25, 0.3, 0.4])
def test_mp_fit_counts_a_cluster_of_spikes_a_quarter_of_the_spectrum_and_more(share):
    """k strong spikes (5x BBP, ~7 lambda_+) making up a quarter of the spectrum or more: the sigma fitted to the
    whole spectrum put the threshold above the cluster, a self-consistent bulk too, and the layer read
    'random-like' with 0 spikes and sigma 3x too large. The bulk below the gap is the layer's."""
    n = 512
    k = int(share * n)
    ev = _evals(S.spiked(n, n, 0, k, 5 * S.bbp_threshold(n, n)))
    f = fit_mp(ev, n, n)
    assert f.num_spikes == k
    # the bulk of N x M noise less k directions is that of (N - k) x (M - k) noise, fitted with N and M: sigma is
    # low by (sqrt(N - k) + sqrt(M - k)) / (sqrt(N) + sqrt(M)) (0.87 to 0.77 here), within 2 %
    assert math.sqrt(f.sigma2) == pytest.approx(math.sqrt(1 - share), rel=0.02)
    # (no such cluster without its gap: the tails of real layers keep the largest bulk, tests of real models)


def test_mp_fit_sees_no_spike_below_the_bbp_threshold():
    assert all(fit_mp(_evals(S.spiked(N, M, s, 5, 0.6 * BBP)), N, M).num_spikes == 0 for s in SEEDS)


def test_mp_fit_units_follow_the_esd_scale():
    W = S.gaussian(N, M, 0, 2.0)
    a = fit_mp(_evals(W), N, M)
    b = fit_mp(0.5 * _evals(W), N, M, scale=0.5)  # an ESD multiplied by 1/2 (WeightWatcher's conv scaling)
    # (×1/2 is exact in binary: the same fit up to rounding; approx's default rel 1e-6)
    assert b.sigma2 == pytest.approx(a.sigma2) and b.lambda_plus == pytest.approx(0.5 * a.lambda_plus)
    # with spikes, the refit's threshold is in the ESD's units too: 10 spikes at 3x BBP leave the bulk at scale 0.01
    # as at 1 (a threshold 100x too high kept them in the bulk and moved σ²); ×1/100 is not exact: rounding
    ev = _evals(S.spiked(N, M, 0, 10, 3 * BBP))
    c, d = fit_mp(ev, N, M), fit_mp(0.01 * ev, N, M, scale=0.01)
    assert d.sigma2 == pytest.approx(c.sigma2, rel=1e-9) and d.num_spikes == c.num_spikes == 10


def test_mp_fit_leaves_zero_eigenvalues_out_of_the_bulk():
    W = S.gaussian(N, M, 1)
    W[:, :100] = 0.0  # 100 zero columns: 100 zero eigenvalues, the rest an MP law of a 1000 x 400 matrix
    sp = esd([W])
    f = fit_mp(sp.evals, N, M)
    assert f.num_zero == 100
    # the KS distance is over the bulk alone, the 100 zeros left out of it too (with them the empirical CDF starts
    # with a step of 0.2 at 0, a distance of 0.2 or more): scipy's kstest of the 400 non-zero eigenvalues against
    # the fitted law (no spikes here; the MP CDF from one table: interpolation, ~1e-8)
    assert f.num_spikes == 0
    ref = scipy.stats.kstest(sp.evals[100:] / (N * f.sigma2), lambda v: mp_cdf(v, N / M)).statistic
    assert f.ks == pytest.approx(ref, rel=1e-6)


def test_mp_fit_is_the_same_on_both_precision_paths_of_a_square_matrix():
    # a square matrix's smallest eigenvalues lie below the float32 Gram's floor (2-3 of 384 here, too few to
    # refine): they are tiny, not zero, and stay in the bulk on both paths. Leaving them out on the fast path
    # only moved sigma^2 by 0.3-0.6 %.
    n = 384
    for seed in range(10):
        W = S.spiked(n, n, seed, 10, 3 * S.bbp_threshold(n, n))
        fast, accurate = (htsr.analyze({"w.weight": W}, precision=p).layers[0] for p in ("fast", "accurate"))
        # float32 Gram eigenvalues are within ~1e-7 relative of the bulk's float64 ones (measured 1.6e-7 on sigma)
        assert fast.mp_sigma == pytest.approx(accurate.mp_sigma, rel=1e-5), seed
        assert fast.num_spikes == accurate.num_spikes == 10, seed


def test_mp_fit_ends_at_a_self_consistent_bulk_however_many_rounds_it_takes():
    # Pareto mu = 1 entries: a heavy tail that the alternating refit peels 14-30 rounds deep at this size
    n = 384
    for seed in range(3):
        ev = esd([S.pareto(n, n, seed, 1.0)], "accurate").evals
        f = fit_mp(ev, n, n)
        bulk = ev[f.num_zero:ev.size - f.num_spikes]
        assert bulk[-1] <= f.threshold < ev[ev.size - f.num_spikes], seed  # the spikes are what lies above it
        refit = fit_mp(bulk, n, n)  # the bulk alone gives back the same sigma: nothing left to peel
        assert refit.sigma2 == pytest.approx(f.sigma2, rel=1e-12) and refit.num_spikes == 0, seed


def test_a_spectrum_without_an_mp_bulk_keeps_its_lower_half_as_the_bulk():
    # Pareto mu = 0.8 entries at 64 x 64: every MP law fitted to what is left puts the top of it above its
    # edge, and refitting ran down to the two smallest eigenvalues (sigma 1/30 of this); the bulk stops at
    # the lower half, and the law fitted to it is the baseline
    from htsr.rmt.mp import _PROBS

    ev = esd([S.pareto(64, 64, 0, 0.8)], "accurate").evals
    f = fit_mp(ev, 64, 64)
    lower = ev[f.num_zero:f.num_zero + (ev.size - f.num_zero + 1) // 2]
    q, q_mp = np.quantile(lower, _PROBS) / 64, mp_quantiles(_PROBS, 1.0)
    # the same least-squares scale of np.quantile's linear quantiles: rounding only
    assert f.sigma2 == pytest.approx(float(q @ q_mp / (q_mp @ q_mp)), rel=1e-12)
    assert f.num_spikes >= ev.size // 2


def test_mp_fit_of_a_degenerate_spectrum_is_undefined():
    f = fit_mp(np.zeros(10), 20, 10)
    assert math.isnan(f.sigma2) and f.num_spikes == 0
    # a given variance of 0 (a constant layer's shuffled entries) is no law either: undefined, no spikes, rather
    # than a zero threshold with every eigenvalue a trap
    g = fit_mp(np.arange(1.0, 11.0), 20, 10, sigma2=0.0)
    assert math.isnan(g.sigma2) and math.isnan(g.threshold) and g.num_spikes == 0
    # a single eigenvalue is no spectrum, even with the variance given (an N x 1 layer's shuffle): undefined, not a
    # law with a KS distance over one value
    one = fit_mp(np.array([5.0]), 10, 1, sigma2=1.0)
    assert math.isnan(one.sigma2) and math.isnan(one.ks) and one.num_spikes == 0
    # nine zeros and one non-zero eigenvalue: no bulk to fit, but the fit still says how many zeros it left out
    z = fit_mp(np.r_[np.zeros(9), 1.0], 20, 10)
    assert math.isnan(z.sigma2) and z.num_zero == 9


# --- randomisation: traps ----------------------------------------------------------------------------

def test_traps_of_heavy_tailed_entries_are_their_large_entries():
    """The shuffled entries are i.i.d.: the baseline is the MP law of their variance (not a fit, which ran
    down the spectrum of heavy-tailed entries, no MP bulk, and called 40-60 of 256 eigenvalues traps).
    For Pareto entries with mu <= 2, an entry a whose a² is above the threshold is an outlier of its own
    (at about a² + σ²(N + M)): the traps are those entries."""
    n = 256
    for mu in (1.5, 2.0):
        for seed in range(10):
            W = S.pareto(n, n, seed, mu)
            R = randomize([W], n, n, seed=0)
            assert R.mp.sigma2 == pytest.approx(np.var(W), rel=1e-12)  # float64 two-pass variance as np.var's
            a2 = (W - W.mean()) ** 2
            lo, hi = np.sum(a2 > R.mp.threshold), np.sum(a2 + R.mp.sigma2 * 2 * n > R.mp.threshold)
            assert lo <= R.mp.num_spikes <= hi, (mu, seed)


def test_each_trap_is_located_at_a_large_entry_once():
    """Student-t(3) entries, 60 × 5000: seven traps, each carried by one of the matrix's largest entries. The
    argmax of |u| and of |v| taken apart met at a 0.1-sd entry, and two traps at one entry (listed twice),
    while the 44- and 37-sd entries were not listed."""
    rng = np.random.default_rng(0)
    rng.standard_t(3, (100000, 8))
    W = np.ascontiguousarray(rng.standard_t(3, (5000, 60)).astype(np.float32).T)
    R = randomize([W], 5000, 60, seed=0)
    located = [(r, c) for _, r, c in R.locations]
    assert R.mp.num_spikes == len(located) == len(set(located)) == 7
    # each trap's entry is one of the largest: among the top num_traps + 3 by size (ranks 0, 1, 2, 4, 6, 8, 9
    # measured; an entry of the bulk, as the 0.1-sd one was, ranks in the hundreds of thousands)
    order = np.argsort(-np.abs(W), axis=None, kind="stable")
    rank = {divmod(int(i), W.shape[1]): k for k, i in enumerate(order[:1000])}
    assert all(rank.get((r, c), 1000) < len(located) + 3 for r, c in located), [rank.get(x) for x in located]


def test_planted_entry_gives_exactly_one_trap_at_its_place():
    for seed in SEEDS:
        W, (r, c) = S.planted_entry(N, M, seed)
        R = randomize([W], N, M, seed=seed)
        assert R.num_traps == 1, seed
        assert R.locations == ((0, r, c),), seed

def test_a_mean_that_survives_shuffling_is_a_trap_named_mean_not_a_weight():
    """Entries of mean 0.02 beside noise of 0.05: the shuffled matrix keeps the rank-one mean, a trap no weight
    carries. It had been pinned on an arbitrary ordinary weight ('183,158'); it is 'mean' now, and two planted
    heavy entries beside it keep their places. So is a weak mean, just past the point where it makes a trap."""
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((400, 200)) * 0.05 + 0.02).astype(np.float32)
    r = htsr.analyze({"a.weight": W}, randomize=True).layers[0]
    assert (r.num_traps, r.trap_weights) == (1, "mean")
    W[5, 7], W[100, 50] = 3.0, -2.5
    r = htsr.analyze({"a.weight": W}, randomize=True).layers[0]
    assert (r.num_traps, r.trap_weights) == (3, "mean; 5,7; 100,50")
    # a mean just strong enough to make a trap: its singular vectors are only partly along the all-ones vectors
    # (a product of cosines of 0.46 to 0.74), but no weight of ~0.24 makes one (a lone entry needs ~0.84 here):
    # 'mean' too (it had been pinned on an ordinary weight, '228,8' or '183,158')
    for mean in (0.004, 0.005, 0.006):
        W = (np.random.default_rng(0).standard_normal((400, 200)) * 0.05 + mean).astype(np.float32)
        r = htsr.analyze({"a.weight": W}, randomize=True).layers[0]
        assert (r.num_traps, r.trap_weights) == (1, "mean"), mean



@pytest.mark.parametrize("make", [
    lambda s: S.gaussian(N, M, s),
    lambda s: S.spiked(N, M, s, 10, 3 * BBP),
    lambda s: S.spiked(N, M, s, 5, 1.3 * BBP),
    lambda s: S.low_rank(N, M, s, M // 4),
], ids=["noise", "spikes", "bleeding", "low-rank"])
def test_clean_matrices_have_no_traps(make):
    for seed in SEEDS:
        R = randomize([make(seed)], N, M, seed=seed)
        assert R.num_traps == 0 and R.locations == (), seed


def test_trap_location_in_a_pooled_layer_names_the_matrix():
    mats = [S.gaussian(200, 100, s) for s in range(3)]
    mats[2][17, 42] = 4 * (200 * 100) ** 0.25
    R = randomize(mats, 200, 100, seed=5)
    assert R.num_traps == 1 and R.locations == ((2, 17, 42),)


def test_randomize_is_seeded_and_leaves_the_input_alone():
    W, _ = S.planted_entry(300, 100, 0)
    before = W.copy()
    a, b = randomize([W], 300, 100, seed=3), randomize([W], 300, 100, seed=3)
    assert np.array_equal(W, before)
    assert np.array_equal(a.spectrum.evals, b.spectrum.evals)
    assert not np.array_equal(a.spectrum.evals, randomize([W], 300, 100, seed=4).spectrum.evals)
    # the MP baseline is the entries' variance, which a shuffle does not change: the same to the last digit for
    # every seed (it had been summed in the shuffled order, and moved in its last digit with the seed)
    W = np.random.default_rng(1).standard_cauchy((400, 300)).astype(np.float32)
    sigmas = {randomize([W[:200], W[200:]], 300, 200, seed=s).mp.sigma2 for s in range(6)}  # (two 200 x 300 matrices)
    assert len(sigmas) == 1


def test_js_distance_known_answers():
    rng = np.random.default_rng(0)
    a = rng.lognormal(size=1000)
    assert js_distance(a, a) == 0.0
    assert js_distance(a, 1e6 * a) == pytest.approx(1.0)  # disjoint supports: 1 up to rounding
    b = rng.lognormal(0.5, 1.0, size=1000)
    assert js_distance(a, b) == pytest.approx(js_distance(b, a))  # (the same terms summed in another order)
    assert 0.0 < js_distance(a, b) < 1.0
    # the zero bin: half zeros vs none is a large, finite distance
    z = np.concatenate([np.zeros(500), a[:500]])
    assert 0.3 < js_distance(z, a, floor_a=1e-12) < 1.0
    # an all-zero spectrum (a layer pruned to nothing) against a non-zero one: all its mass in the zero bin, the
    # other's in the log bins: disjoint, distance 1 (it was NaN, the zero spectrum's bins left empty); two all-zero
    # spectra are the same density, 0
    assert js_distance(np.zeros(10), a) == js_distance(a, np.zeros(10)) == pytest.approx(1.0)
    assert js_distance(np.zeros(10), np.zeros(20)) == 0.0


# --- the 5+1 phases ----------------------------------------------------------------------------------

SUITE = {
    "noise": ("random-like", lambda s: S.gaussian(N, M, s)),
    "spikes below BBP": ("random-like", lambda s: S.spiked(N, M, s, 5, 0.6 * BBP)),
    "spikes just above BBP": ("bleeding-out", lambda s: S.spiked(N, M, s, 5, 1.3 * BBP)),
    "spikes well above BBP": ("bulk+spikes", lambda s: S.spiked(N, M, s, 10, 3 * BBP)),
    "strong spikes": ("bulk+spikes", lambda s: S.spiked(N, M, s, 10, 10 * BBP)),
    # a low-rank correlation strong enough that its own entries pass the heavy-entry cut (hundreds of them at 80 x
    # BBP; at 40 x, the case had been, 0 or 1, and the rule it is for did not run): its singular vectors are spread,
    # no entry drives it (it had been 'bulk-decay')
    "very strong spikes": ("bulk+spikes", lambda s: S.spiked(N, M, s, 5, 80 * BBP)),
    "Pareto mu=1": ("heavy-tailed", lambda s: S.pareto(N, M, s, 1.0)),
    "Pareto mu=3": ("bulk-decay", lambda s: S.pareto(N, M, s, 3.0)),
    "Pareto mu=5": ("random-like", lambda s: S.pareto(N, M, s, 5.0)),
    "low rank": ("rank-collapse", lambda s: S.low_rank(N, M, s, M // 4)),
    "planted entry": ("bulk-decay", lambda s: S.planted_entry(N, M, s)[0]),
}


@pytest.mark.parametrize("case", list(SUITE))
def test_phase_label_is_right_in_at_least_95_percent_of_seeds(case):
    expected, make = SUITE[case]
    result = htsr.analyze({f"m{s}.weight": make(s) for s in SEEDS}, tails=False, workers=1)
    labels = Counter(r.phase for r in result.layers)
    assert labels[expected] >= 19, labels  # the must-show: >= 95 % of 20 seeds (measured: 20/20 each)
    assert result.summary.phases[expected] == labels[expected]
    if case == "very strong spikes":  # (the case is for the heavy-entry rule: it must have some in every seed)
        assert min(r.num_heavy_entries for r in result.layers) > 100


def test_phase_thresholds_are_options_that_change_the_label():
    W = S.spiked(N, M, 0, 5, 1.3 * BBP)
    assert htsr.analyze({"a.weight": W}).layers[0].phase == "bleeding-out"
    assert htsr.analyze({"a.weight": W}, phase_bleed_width=0.01).layers[0].phase == "bulk+spikes"
    assert htsr.analyze({"a.weight": W}, tw_margin=1e3).layers[0].phase == "random-like"
    P = S.pareto(N, M, 0, 1.0)
    assert htsr.analyze({"a.weight": P}).layers[0].phase == "heavy-tailed"
    assert htsr.analyze({"a.weight": P}, phase_ht_alpha=1.01).layers[0].phase == "bulk-decay"
    assert htsr.analyze({"a.weight": P}, phase_ht_share=0.9).layers[0].phase == "bulk-decay"  # heavy entries
    failed = htsr.analyze({"a.weight": P}, xmin=1e30).layers[0]  # a tail, but its fit failed: no alpha
    assert failed.status.startswith("fit_failed") and failed.num_spikes >= 0.05 * M and failed.phase == ""
    L = S.low_rank(N, M, 0, 450)  # 10 % zeros
    assert htsr.analyze({"a.weight": L}).layers[0].phase == "rank-collapse"
    assert htsr.analyze({"a.weight": L}, phase_rank_collapse=0.2).layers[0].phase != "rank-collapse"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_collapse_is_the_same_on_both_precision_paths(dtype):
    """A rank-20 product stored in float32 is full-rank in float64 (its rounding adds singular values near
    σ_max·ε₃₂): the float64 matrix_rank (WeightWatcher's) says 200 for the SVD path, but both paths see 180
    eigenvalues that are zero at float32 precision, and both say rank-collapse."""
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((400, 20)) @ rng.standard_normal((20, 200)) / 20).astype(dtype)
    rows = [htsr.analyze({"a.weight": W}, precision=p, tails=False).layers[0] for p in ("fast", "accurate")]
    assert [(r.num_zero_evals, r.phase) for r in rows] == [(180, "rank-collapse")] * 2
    assert rows[1].matrix_rank == (200 if dtype is np.float32 else 20)  # numpy's float64 tolerance σ_max·N·ε₆₄


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float8_e4m3fn"])
def test_a_low_rank_layer_in_a_coarse_storage_is_rank_collapsed_and_a_full_rank_one_is_not(dtype):
    """A rank-32 768 × 512 layer stored in bfloat16 (FP8, fp16) has its 480 other eigenvalues in the storage's
    rounding, orders of magnitude under its 32: they are zeros, as at float32 precision. They had been read
    as a spectrum: bfloat16 'heavy-tailed', alpha 4.95 fitted 'ok' over the rounding, 29 zeros. A full-rank
    layer in the same storage has no gap: its small eigenvalues stay (nothing changes from float32's)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = getattr(ml_dtypes, dtype, None) or np.dtype(dtype)
    rng = np.random.default_rng(0)
    low = (rng.standard_normal((768, 32)) @ rng.standard_normal((32, 512)) / 6).astype(np.float32)
    r = htsr.analyze({"a.weight": low.astype(dt)}).layers[0]
    assert (r.num_zero_evals, r.phase) == (480, "rank-collapse")
    assert r.status.startswith("not_fitted: 32 of 512 eigenvalues above the floor") and "storage, under a gap" in r.status
    full = (rng.standard_normal((384, 384)) * 0.05).astype(np.float32)  # a square one: some λ near 0, no gap
    want = htsr.analyze({"a.weight": full}).layers[0]
    got = htsr.analyze({"a.weight": full.astype(dt)}).layers[0]
    assert (got.num_zero_evals, got.phase, got.status) == (want.num_zero_evals, want.phase, want.status) == (
        0, "random-like", "ok")


def test_a_low_rank_update_merged_in_bfloat16_is_rank_collapsed():
    """A rank-8 update merged into a bfloat16 base, stored bfloat16, minus that base: the difference holds the
    merge's rounding under the update's 8 eigenvalues. Its phase had been 'bulk-decay' over that rounding."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(1)
    base = (rng.standard_normal((768, 512)) * 0.05).astype(ml_dtypes.bfloat16)
    update = (rng.standard_normal((768, 8)) @ rng.standard_normal((8, 512)) * 1e-3).astype(np.float32)
    tuned = (base.astype(np.float32) + update).astype(ml_dtypes.bfloat16)
    r = htsr.analyze({"l.weight": tuned}, base={"l.weight": base}).layers[0]
    assert (r.num_zero_evals, r.phase) == (504, "rank-collapse")


def test_num_zero_evals_counts_below_the_float32_rounding_level():
    tol = 4.0 * ((math.sqrt(100) + math.sqrt(36)) * 2.0 ** -23) ** 2  # λ_max = 4, N × M = 100 × 36
    # (a spectrum whose mean is λ_max's share of a Gaussian's or more: the λ_max level; mp.zero_level)
    ev = np.r_[0.0, 0.5 * tol, tol, 1.01 * tol, np.full(32, 4.0)]
    assert num_zero_evals(ev, 100, 36) == 3 and num_zero_evals(np.array([]), 100, 36) == 0


def test_a_tall_layers_small_eigenvalues_are_not_zeros():
    """numpy's float32 rank tolerance σ_max·N·ε grows with N: in a 150 000 × 128 embedding it called every
    singular value below 1.8 % of σ_max zero (rank-collapse: 100 of 128 eigenvalues resolved to 1e-8 by the
    SVD, singular values 1 to 2 under one of 100). The float32 rounding of the entries is ε·σ_max each at most:
    its largest eigenvalue, λ_max·((√N + √M)·ε)², is the zero level, and a rank-20 product's rounding stays
    under it (test_rank_collapse_is_the_same_on_both_precision_paths)."""
    rng = np.random.default_rng(0)
    sv = np.concatenate([[100.0], np.linspace(1.0, 2.0, 127)])
    W = (np.linalg.qr(rng.standard_normal((150_000, 128)))[0] * sv).astype(np.float32)
    r = htsr.analyze({"embed_tokens.weight": W}, tails=False, setol=False).layers[0]
    assert r.num_zero_evals == 0 and r.phase != "rank-collapse"  # (its singular values 1 to 2 are no MP bulk)


def test_every_phase_is_counted_in_the_summary():
    result = htsr.analyze({"a.weight": S.gaussian(300, 100, 0)})
    assert set(result.summary.phases) == set(PHASES)
    d = result.summary.as_dict()
    assert d["num_random_like"] == 1 and d["num_bulk_spikes"] == 0 and "phases" not in d


# --- localisation ------------------------------------------------------------------------------------

def test_localization_of_a_planted_entry_and_of_noise():
    W, _ = S.planted_entry(N, M, 0)
    loc = localization([W], num_tail=1)  # tail = the one spike
    # a coordinate-like eigenvector: PR ≈ 1 (it is 1 + O(1/θ²) for a finite spike; measured 1.10)
    assert loc["loc_pr_tail_mean"] < 1.5
    # random unit vectors in M dimensions: E[1/Σv⁴] ≈ M/3 (measured 168.5 for M = 500)
    assert loc["loc_pr_bulk_mean"] == pytest.approx(M / 3, rel=0.05)
    assert loc["loc_lr_tail_mean"] < 10 < loc["loc_lr_bulk_mean"]
    assert math.isnan(loc["loc_pr_tail_std"])  # one tail eigenvector: no spread


def test_localization_tail_is_the_fits_tail_however_the_eigenvalues_round():
    # the tail is the power-law fit's: num_pl_spikes eigenvectors (x_min, one of the spectrum's eigenvalues,
    # compared with eigenvalues recomputed with their vectors split them at random: 31 of 32 on MiniLM)
    # (and a square layer's eigenvectors are X = WᵀW's, THEORY's X, as a rectangular one's: they had been W·Wᵀ's)
    for seed, (n_rows, n_cols) in enumerate(((384, 300), (384, 300), (300, 300))):
        W = S.pareto(n_rows, n_cols, seed, 1.5)
        row = htsr.analyze({"w.weight": W}, precision="accurate", localization=True).layers[0]
        n = int(row.num_pl_spikes)
        ev, V = np.linalg.eigh(W.T.astype(np.float64) @ W)  # independent: numpy's solver, the vectors by rank
        lr = np.sum(np.abs(V), axis=0) / np.max(np.abs(V), axis=0)
        # the bulk above the float32 Gram's floor 4·√M·ε₃₂·λ_max where at most 1 % lie below it (the fast path
        # leaves those unresolved), else above the float64 Gram's (docs/rmt.md; seeds 0 and 2 have 1 and 10 below)
        g32, g64 = (4 * math.sqrt(n_cols) * np.finfo(t).eps * ev[-1] for t in (np.float32, np.float64))
        bulk = lr[:-n][ev[:-n] > (g32 if np.count_nonzero(ev < g32) <= 0.01 * n_cols else g64)]
        # the same vectors up to sign from two float64 solvers: 1e-8 relative on their norms' ratio
        assert row.loc_lr_tail_mean == pytest.approx(np.mean(lr[-n:]), rel=1e-8), seed
        assert row.loc_lr_bulk_mean == pytest.approx(np.mean(bulk), rel=1e-8), seed


def test_vector_entropy_known_answers():
    """WeightWatcher's vec_entropy: the Shannon entropy of the histogram of |v_i| in 100 equal bins over their range."""
    from htsr.rmt.localization import vector_entropy

    M = 400
    # a coordinate vector: M − 1 magnitudes in the first bin, one in the last. The 1e-10 added to each bin's
    # density (WeightWatcher's EPSILON; the densities sum to 100 over a range of 1) gives each of the 98 empty bins
    # p = 1e-12 and −p·ln p = 2.8e-11: 2.7e-9 in all, within 1e-8 absolute
    h = -((M - 1) / M) * math.log((M - 1) / M) - (1 / M) * math.log(1 / M)
    assert vector_entropy(np.eye(M), axis=0) == pytest.approx(np.full(M, h), abs=1e-8)
    # magnitudes spread evenly, 10 in each bin (bin centres), signs mixed: ln 100 (no empty bin: ε's effect is
    # 1e-12 relative; 1e-9 absolute)
    v = (np.arange(1000) // 10 + 0.5) * np.where(np.arange(1000) % 2, -1, 1)
    assert vector_entropy(v[:, None], axis=0)[0] == pytest.approx(math.log(100), abs=1e-9)
    # any vector: scipy's entropy of numpy's histogram density plus the ε (WeightWatcher's formula, computed
    # independently: the same float64 operations up to summation order, 1e-12 relative); the same for c·v and
    # along the other axis (the histogram of c·|v| has the same counts, exactly)
    rng = np.random.default_rng(0)
    V = rng.standard_normal((300, 5)) ** 3
    ref = [scipy.stats.entropy(np.histogram(np.abs(c), bins=100, density=True)[0] + 1e-10) for c in V.T]
    assert vector_entropy(V, axis=0) == pytest.approx(ref, rel=1e-12)
    # (without the ε, scipy's entropy of the bare counts is 3e-8 to 1e-7 lower: 56 to 74 of these bins are empty)
    # scale-free but for the ε, whose share of a bin scales with the range (above: < 1e-6 absolute at 8×)
    assert vector_entropy(-8.0 * V.T, axis=1) == pytest.approx(vector_entropy(V, axis=0), abs=1e-6)
    # a stack of matrices keeps its other axes: (2, 300, 5) along axis 1 gives (2, 5), one H per vector (the row
    # order reversed in the second: the same magnitudes, the same histogram, exactly)
    H = vector_entropy(np.stack([V, V[::-1]]), axis=1)
    assert H.shape == (2, 5) and np.array_equal(H[0], H[1])
    assert H[0] == pytest.approx(vector_entropy(V, axis=0), rel=1e-15)


@pytest.mark.parametrize("numpy_before_2_2", [False, True])
def test_a_vector_of_magnitudes_equal_but_for_their_last_bits_has_the_entropy_of_equal_ones(monkeypatch,
                                                                                             numpy_before_2_2):
    """numpy's histogram refuses 100 bins over a range of a few ULPs (it had failed the layer's localisation, and
    with it the phase and SETOL columns: a constant averaging layer's eigenvectors). numpy before 2.2 does not
    refuse: it returns NaN and inf densities, which had made the entropy NaN (on numpy 1.24, which htsr allows)."""
    from htsr.rmt.localization import vector_entropy

    v = np.full(100, 0.1) + np.arange(100) * 1e-18  # 0.1 plus less than one ULP (1.4e-17): 0.1 itself, or its neighbour
    assert np.ptp(v) > 0
    real = np.histogram
    if numpy_before_2_2:  # the older numpy's answer where today's raises
        def histogram(a, bins=10, **kw):
            try:
                return real(a, bins=bins, **kw)
            except ValueError:
                return np.full(bins, np.nan), np.full(bins + 1, float(np.min(a)))

        monkeypatch.setattr(np, "histogram", histogram)
    else:
        with pytest.raises(ValueError, match="Too many bins"):
            np.histogram(v, bins=100)
    equal = vector_entropy(np.full((1, 100), 0.1), axis=1)  # every magnitude in one bin: the ε's 99 empty bins' 2.8e-9
    assert vector_entropy(v[None, :], axis=1) == pytest.approx(equal, rel=1e-12)  # the same operations
    assert equal[0] == pytest.approx(2.83e-9, rel=1e-2)


def test_a_failed_localisation_loses_its_own_columns_only(monkeypatch):
    rng = np.random.default_rng(0)
    W = {"fc.weight": rng.standard_normal((300, 100)) @ np.diag(np.linspace(1, 10, 100))}
    plain = htsr.analyze(W).layers[0]

    def broken(*args, **kwargs):
        raise ValueError("broken")

    monkeypatch.setattr(sys.modules["htsr.analyze"], "localization", broken)  # (htsr.analyze: the function)
    row = htsr.analyze(W, localization=True).layers[0]
    assert row.status == "ok; diagnostics failed: localization: ValueError: broken"
    assert math.isnan(row.loc_pr_tail_mean) and math.isnan(row.loc_ent_bulk_mean)
    for column in ("phase", "num_zero_evals", "num_erg", "erg_delta_lambda_min", "logq_free_cauchy", "alpha"):
        assert getattr(row, column) == getattr(plain, column), column  # as without the option, exactly


def test_localization_entropy_splits_a_planted_entry_from_noise():
    W, _ = S.planted_entry(N, M, 0)
    loc = localization([W], num_tail=1)
    # the spike's eigenvector sits on one coordinate: H near a coordinate vector's 0.015 (M = 500; measured 0.27,
    # its other entries O(1/θ) spread over a few bins); a random unit vector's about 4.05 (measured 4.06, sd 0.09)
    assert loc["loc_ent_tail_mean"] < 1.0
    assert loc["loc_ent_bulk_mean"] == pytest.approx(4.05, abs=0.1)  # (±1 sd of one vector; the mean's is 0.004)


def test_localization_says_why_a_group_has_no_ratio():
    """A fixed x_min below the whole spectrum leaves no bulk eigenvector: its columns had been NaN on an 'ok' row
    with nothing saying why; so had a one-vector tail's spread."""
    W = S.pareto(300, 200, 0, 1.5)
    ev = np.linalg.eigvalsh(W.T.astype(np.float64) @ W)
    row = htsr.analyze({"w.weight": W}, xmin=float(ev[0]) * 0.5, localization=True).layers[0]
    assert math.isnan(row.loc_pr_bulk_mean) and row.status == "ok; localization: no bulk eigenvectors"
    row = htsr.analyze({"w.weight": W}, localization=True).layers[0]
    assert row.status == "ok" and math.isfinite(row.loc_pr_bulk_std)
    # x_min above the smallest eigenvalue alone: one bulk eigenvector, no spread
    row = htsr.analyze({"w.weight": W}, xmin=float(ev[1]) * (1 - 1e-9), localization=True,
                       precision="accurate").layers[0]
    assert math.isfinite(row.loc_pr_bulk_mean) and math.isnan(row.loc_pr_bulk_std)
    assert row.status == "ok; localization: one bulk eigenvector, no spread"


# --- integration: options, schema, CLI ---------------------------------------------------------------

def test_columns_are_nan_when_an_analysis_is_off():
    W = S.gaussian(300, 100, 0)
    r = htsr.analyze({"a.weight": W}, mp_fit=False, setol=False).layers[0]
    assert r.phase == "" and math.isnan(r.num_spikes) and math.isnan(r.num_erg)
    assert math.isnan(r.num_traps) and r.trap_weights == "" and math.isnan(r.loc_pr_bulk_mean)
    r = htsr.analyze({"a.weight": W}).layers[0]
    assert r.phase == "random-like" and r.num_spikes == 0 and r.num_erg > 0 and math.isnan(r.num_traps)


def test_analyze_reports_traps_with_their_weights():
    W, (r, c) = S.planted_entry(N, M, 7)
    row = htsr.analyze({"fc.weight": W}, randomize=True, localization=True).layers[0]
    assert row.num_traps == 1 and row.trap_weights == f"{r},{c}"
    assert row.rand_lambda_max > row.mp_threshold
    assert math.isfinite(row.rand_js_distance) and math.isfinite(row.loc_pr_bulk_mean)


def test_the_shuffled_matrix_s_mp_law_is_that_of_its_entries_variance():
    """The shuffled matrix's Marchenko-Pastur law is of i.i.d. entries of the layer's own variance, nothing
    fitted: sd numpy's std of the entries; edges σ²(√N ∓ √M)²; num_traps counts the shuffled eigenvalues above
    its threshold, which lies above the upper edge; softrank λ₊ over the shuffled λ_max. NaN without
    randomize."""
    W, _ = S.planted_entry(N, M, 7)
    r = htsr.analyze({"fc.weight": W}, randomize=True, keep_spectra=True)
    row, sp = r.layers[0], r.spectra[0]
    sd, n, m = float(np.std(W)), max(W.shape), min(W.shape)
    # (two-pass float64 variances, summed in other orders: rounding)
    assert row.rand_mp_sigma == pytest.approx(sd, rel=1e-12)
    assert row.rand_mp_lambda_plus == pytest.approx(sd**2 * (math.sqrt(n) + math.sqrt(m)) ** 2, rel=1e-12)
    assert row.rand_mp_lambda_minus == pytest.approx(sd**2 * (math.sqrt(n) - math.sqrt(m)) ** 2, rel=1e-12)
    assert row.rand_mp_threshold == sp.rand_threshold > row.rand_mp_lambda_plus
    assert row.num_traps == np.count_nonzero(sp.rand_evals > row.rand_mp_threshold) == 1
    assert row.rand_mp_softrank == pytest.approx(row.rand_mp_lambda_plus / row.rand_lambda_max, rel=1e-12)  # (ditto)
    plain = htsr.analyze({"fc.weight": W}).layers[0]
    assert all(math.isnan(getattr(plain, c)) for c in ("rand_mp_sigma", "rand_mp_lambda_minus",
                                                        "rand_mp_lambda_plus", "rand_mp_threshold",
                                                        "rand_mp_softrank"))


def test_pooled_conv_layer_gets_kernel_position_in_trap_weights():
    rng = np.random.default_rng(0)
    K = rng.standard_normal((128, 64, 3, 3))
    K[5, 9, 1, 2] = 4 * (128 * 64) ** 0.25
    row = htsr.analyze({"conv.weight": K}, randomize=True).layers[0]
    assert row.num_traps == 1
    pos = 1 * 3 + 2  # kernel positions are enumerated row-major over (kh, kw)
    assert row.trap_weights == f"{pos}:5,9"


def test_bad_phase_options_are_refused():
    for bad in (dict(tw_margin=-1), dict(phase_rank_collapse=0), dict(phase_ht_alpha=1.0), dict(randomize="yes")):
        with pytest.raises(OptionError):
            htsr.analyze({"a.weight": np.eye(60)}, **bad)


def test_cli_flags_reach_the_analysis(tmp_path, capsys):
    from htsr.cli import main

    W, (r, c) = S.planted_entry(400, 200, 1)
    path = tmp_path / "w.npz"
    np.savez(path, **{"fc.weight": W})
    assert main(["analyze", str(path), "--randomize", "--tw-margin", "4", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "bulk-decay" in out and "traps" in out
    text = (tmp_path / "o" / "layers.csv").read_text()
    assert f"{r},{c}" in text


def test_a_rank_deficient_layers_erg_spans_its_rank_and_a_nearly_full_one_keeps_weightwatchers():
    """A rank-32 512 x 256 float32 product: its ERG is taken over its 32 eigenvalues (float64's matrix_rank,
    256, had ended the tail on the float32 rounding, ~1e-16), whatever the phase options; a full-rank layer's
    over all of them, as WeightWatcher takes them."""
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((512, 32)) @ rng.standard_normal((32, 256)) * 0.02).astype(np.float32)
    ref = np.sort(np.linalg.svd(W.astype(np.float64), compute_uv=False) ** 2)[::-1]

    def erg(ev: np.ndarray) -> int:  # by hand: mean 1 over them, walked down to where the log-sum drops below 0
        live = ev * ev.size / ev.sum()
        return int(np.argmax(np.cumsum(np.log(live)) < 0)) + 1

    for opts in ({}, {"phase_rank_collapse": 0.95}):
        (x,) = htsr.analyze({"l.weight": W}, precision="accurate", **opts).layers
        assert x.num_zero_evals == 224 and x.matrix_rank == 256 and x.num_erg == erg(ref[:32]), opts
    G = rng.standard_normal((512, 256))
    (x,) = htsr.analyze({"l.weight": G}, precision="accurate").layers
    assert x.num_zero_evals == 0 and x.num_erg == erg(np.sort(np.linalg.svd(G, compute_uv=False) ** 2)[::-1])


def test_two_traps_of_equal_value_name_two_weights_and_no_mp_fit_counts_no_heavy_entry():
    """Two planted entries of one value (common in bf16 and int8 weights): trap_weights names both, not the
    first twice. A constant layer has no MP fit: its heavy-entry count is NaN, not 0."""
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((400, 200)) * 0.02).astype(np.float32)
    W[3, 4] = W[300, 100] = 0.75
    (x,) = htsr.analyze({"l.weight": W}, randomize=True).layers
    assert x.num_traps == 2 and x.trap_weights == "3,4; 300,100"
    (x,) = htsr.analyze({"l.weight": np.full((300, 200), 0.1, np.float32)}).layers
    assert math.isnan(x.mp_sigma) and math.isnan(x.num_heavy_entries)


def test_fit_mp_takes_eigenvalues_in_any_order():
    # numpy's SVD gives them descending: fit_mp had read the last as λ_max (softrank 26, 0 spikes) without a word
    from htsr.rmt import fit_mp

    W = np.random.default_rng(0).standard_normal((400, 200))
    W[:, :5] *= 8.0  # a few spikes
    ev = np.linalg.svd(W, compute_uv=False) ** 2  # descending
    assert fit_mp(ev, 400, 200) == fit_mp(np.sort(ev), 400, 200)


def test_localized_spike_tells_an_entry_driven_outlier_from_a_spread_correlation():
    """Known answers: one entry of 20 rms in 400 × 300 noise gives an outlier whose singular vectors sit on that
    entry's row and column (participation ratio ~1, far below 0.1 of the length); a rank-one u·vᵀ of spread
    unit vectors at 3× the noise edge has vectors spread over the matrix (a ratio near a random vector's 1/3)."""
    from htsr.rmt import count_heavy_entries

    rng = np.random.default_rng(7)
    noise = rng.standard_normal((400, 300)) / np.sqrt(400)
    W = noise.copy()
    W[17, 42] = 20.0  # (BBP scale of one entry: (NM)^¼·σ = 18.6·0.05 = 0.93)
    assert localized_spike(W, 1)
    u, v = rng.standard_normal(400), rng.standard_normal(300)
    spread = noise + 3.0 * (1 + np.sqrt(300 / 400)) * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    assert not localized_spike(spread, 1) and not localized_spike(spread.astype(np.float32), 3)
    assert localized_spike(W, 0)  # no spike to look at: the heavy-entry rule as before (True)
    # ARPACK failing (a NaN weight: 'could not build an Arnoldi factorization') falls back to that rule too: True
    bad = noise.copy()
    bad[3, 4] = np.nan
    assert localized_spike(bad, 1) is True
    # entries beyond a cut from the mean, both signs: exactly those planted
    X = np.zeros((50, 40))
    X[1, 2], X[3, 4], X[5, 6] = 5.0, -5.0, 0.5
    assert count_heavy_entries(X, 1.0) == 2 and count_heavy_entries(X, 0.1) == 3


# ------------------------------------------------------------- known answers each line is held to
# (each test below fails for a one-point change of the code it names: a mutation the suite had let through)


def test_mp_fit_leaves_out_eigenvalues_at_its_zero_floor_and_its_ks_is_scipys():
    """zero_floor (a coarse storage's rounding): the eigenvalues at or below it are the fit's zeros, and the bulk is
    fitted without them, as if they were not there. The fit's KS distance is scipy's kstest of the bulk against the
    fitted MP law (both sides of the empirical CDF's steps)."""
    from htsr.rmt import MPFit

    rng = np.random.default_rng(0)
    N, M = 1000, 500
    W = rng.standard_normal((N, 400)) @ rng.standard_normal((400, M)) / 20  # rank 400 of 500
    ev = np.sort(np.linalg.svd(W, compute_uv=False) ** 2)
    ev[:100] = np.sort(1e-4 * ev[-1] * rng.random(100))  # its 100 null directions, in a coarse storage's rounding
    floor = 2e-4 * ev[-1]
    m = fit_mp(ev, N, M, zero_floor=floor)
    assert m.num_zero == int(np.sum(ev <= floor)) == 100
    assert fit_mp(ev, N, M, zero_floor=ev[99]).num_zero == 100  # 'at or below': an eigenvalue equal to it is a zero
    assert isinstance(m, MPFit) and m.sigma2 > 0.5  # (without the floor: σ² 0.108 and 264 spikes, measured)
    for seed in (0, 1):  # (seed 0's distance is above the empirical CDF's steps, seed 1's below them)
        ev = np.sort(np.linalg.svd(np.random.default_rng(seed).standard_normal((N, M)), compute_uv=False) ** 2)
        m = fit_mp(ev, N, M)
        assert m.num_spikes == 0 and m.num_zero == 0
        ref = scipy.stats.kstest(ev / (N * m.sigma2), lambda v: mp_cdf(v, N / M)).statistic
        assert m.ks == pytest.approx(ref, rel=1e-6), seed  # (the MP CDF from one table: interpolation, ~1e-8)


def test_js_distance_is_scipys_on_the_documented_histogram():
    """Jensen–Shannon distance (base 2) of the two ESDs on shared log bins, Rice's 2·n^⅓ of them between the
    smallest and largest eigenvalue, with a bin of zeros in front: scipy's jensenshannon on that histogram."""
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    a = np.sort(np.linalg.svd(rng.standard_normal((1000, 500)), compute_uv=False) ** 2)
    b = np.sort(np.linalg.svd(rng.standard_t(3, (1000, 500)), compute_uv=False) ** 2)
    bins = int(np.clip(round(2 * 500 ** (1 / 3)), 10, 100))
    e = np.linspace(np.log10(min(a.min(), b.min())), np.log10(max(a.max(), b.max())), bins + 1)
    ha, hb = np.histogram(np.log10(a), e)[0], np.histogram(np.log10(b), e)[0]
    want = jensenshannon(np.r_[0, ha], np.r_[0, hb], base=2)
    assert js_distance(a, b) == pytest.approx(want, rel=1e-9)  # (the same sums in another order)
    # spectra of different sizes (two layers compared, or a shuffled conv): the bins are the larger one's, Rice's
    # rule of 500 eigenvalues (16), not of the other's 300 (13)
    c = np.sort(np.linalg.svd(rng.standard_t(3, (1000, 300)), compute_uv=False) ** 2)
    e = np.linspace(np.log10(min(a.min(), c.min())), np.log10(max(a.max(), c.max())), bins + 1)
    ha, hc = np.histogram(np.log10(a), e)[0], np.histogram(np.log10(c), e)[0]
    want = jensenshannon(np.r_[0, ha], np.r_[0, hc], base=2)
    assert js_distance(a, c) == pytest.approx(want, rel=1e-9) and js_distance(c, a) == pytest.approx(want, rel=1e-9)


def test_esd_bins_is_rices_rule_within_10_and_100():
    """esd_bins (js_distance's and the figures' bins): round(2·n^⅓) clipped to [10, 100]. 1000 eigenvalues get 20,
    500 get round(15.87) = 16; a small layer 10; 125 000 (a 250-bin Rice rule) and 10⁶ the cap of 100, not more."""
    from htsr.rmt.traps import esd_bins

    assert [esd_bins(n) for n in (1, 100, 500, 1000, 125_000, 10**6)] == [10, 10, 16, 20, 100, 100]


def test_phase_thresholds_at_their_boundaries():
    """At least ht_share (5 %) of the eigenvalues above the edge is a tail (5 of 100 is); spikes within
    bleed_width (25 %) of λ₊ — the edge itself, not the spike threshold — bleed out."""
    from htsr.rmt import MPFit, phase_of

    mp = MPFit(1.0, 100.0, 1000.0, 1100.0, 5, 0, 0.5, 0.01)  # λ₊ 1000, spike threshold 1100
    assert phase_of(100, 0, mp, 2000.0, 3.0, 0) == "heavy-tailed"  # 5 of 100: a tail, α 3
    assert phase_of(101, 0, mp, 2000.0, 3.0, 0) == "bulk+spikes"  # 5 of 101: a few spikes
    few = MPFit(1.0, 100.0, 1000.0, 1100.0, 2, 0, 0.5, 0.01)
    assert phase_of(500, 0, few, 1250.0, math.nan, 0) == "bleeding-out"  # (1 + 0.25)·λ₊
    assert phase_of(500, 0, few, 1300.0, math.nan, 0) == "bulk+spikes"  # within 25 % of the threshold, not of λ₊
    # no label without an MP fit (not 'random-like' for its 0 spikes) or without eigenvalues (not a division by 0)
    assert phase_of(500, 0, MPFit.undefined(), 1300.0, 3.0, 0) == ""
    assert phase_of(0, 0, few, 1300.0, 3.0, 0) == ""
    # 10 zeros of 100 is rank-collapse at the default 10 % (exact: 0.1 == 10 / 100); a single heavy entry is enough
    # for bulk-decay where the spikes are few
    assert phase_of(100, 10, mp, 2000.0, 3.0, 0) == "rank-collapse"
    assert phase_of(500, 0, few, 2000.0, math.nan, 1) == "bulk-decay"


def test_spikes_above_a_bulk_the_mp_law_does_not_fit_are_read_as_a_tail():
    """THEORY §6: bulk+spikes and bleeding-out are an MP bulk with spikes above it. Where the MP law does not fit the
    bulk (its KS distance over MP_KS_CUT/√bulk, rule 2's test), there is no MP bulk for the spikes to stand above:
    the ESD is read as a tail by its alpha, heavy-tailed or bulk-decay, as rule 3 reads one (a flat bulk with one
    spike, EfficientNet-Lite0's _conv_head at KS 3.2 times the cut, had been bulk+spikes; h42). Heavy entries are
    read only against an MP bulk, whose σ sets their cut."""
    from htsr.rmt import MPFit, phase_of
    from htsr.rmt.phases import MP_KS_CUT, mp_fits_bulk

    cut = MP_KS_CUT / math.sqrt(500 - 2)  # 0.0730 for the 498 eigenvalues below the 2 spikes
    fits, not_mp = (MPFit(1.0, 100.0, 1000.0, 1100.0, 2, 0, 0.5, ks) for ks in (cut, 1.01 * cut))
    assert mp_fits_bulk(fits, 500, 0) and not mp_fits_bulk(not_mp, 500, 0)
    assert phase_of(500, 0, fits, 3000.0, 3.0, 0) == "bulk+spikes"
    assert phase_of(500, 0, fits, 1250.0, 3.0, 0) == "bleeding-out"
    assert phase_of(500, 0, fits, 3000.0, 3.0, 1) == "bulk-decay"
    for lam, heavy in ((3000.0, 0), (1250.0, 0), (3000.0, 1)):
        assert phase_of(500, 0, not_mp, lam, 3.0, heavy) == "heavy-tailed"
        assert phase_of(500, 0, not_mp, lam, 8.0, heavy) == "bulk-decay"
        assert phase_of(500, 0, not_mp, lam, math.nan, heavy) == ""  # (no alpha: no tail to read)
    # zeros are no bulk: 100 of them leave 398 eigenvalues, whose cut is larger
    assert mp_fits_bulk(MPFit(1.0, 100.0, 1000.0, 1100.0, 2, 0, 0.5, 1.05 * cut), 500, 100)


def test_one_entry_among_a_layers_correlations_is_a_trap_not_bulk_decay():
    """Bulk-decay by heavy entries needs the entries to drive most of the largest spikes (up to LOCALIZED_TOP): a
    600 x 400 noise layer with 6 spread spikes (θ 8 … 2.6) and one planted entry (5.0, its outlier second largest)
    is bulk+spikes with one trap on the entry, as THEORY §6 reads spikes of correlations (it had been bulk-decay,
    the label of a heavy-tailed entry distribution, once the entry's outlier was among the top 3: h42). Three
    planted entries and no correlations stay bulk-decay."""
    from htsr.rmt import spike_localization

    rng = np.random.default_rng(4)
    N, M = 600, 400
    W = rng.standard_normal((N, M)) / math.sqrt(N)
    for theta in (8.0, 4.5, 4.0, 3.5, 3.0, 2.6):
        u, v = rng.standard_normal(N), rng.standard_normal(M)
        W += theta * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    W[17, 42] += 5.0
    assert spike_localization([W], 7) == (1, 3)  # the entry's outlier among the top 3, beside two spread ones
    row = htsr.analyze({"fc.weight": W}, randomize=True, tails=False).layers[0]
    assert (row.num_spikes, row.num_heavy_entries, row.num_traps, row.trap_weights) == (7, 1, 1, "17,42")
    assert row.phase == "bulk+spikes"
    entries = rng.standard_normal((N, M)) / math.sqrt(N)
    for i, j, x in ((5, 7, 6.0), (100, 200, 5.0), (300, 33, 4.0)):
        entries[i, j] += x
    assert spike_localization([entries], 3) == (3, 3)
    assert htsr.analyze({"fc.weight": entries}, tails=False).layers[0].phase == "bulk-decay"


def test_the_pure_phase_defaults_are_the_analysis_options_defaults():
    """phase_of's default PhaseThresholds (for callers of htsr.rmt) are the documented option defaults analyze
    passes in (10 %, 5 %, alpha 6, 25 %): the two sets of defaults cannot drift apart unseen."""
    from htsr.rmt import PhaseThresholds

    o = htsr.Options.create()
    assert PhaseThresholds() == PhaseThresholds(o.phase_rank_collapse, o.phase_ht_share, o.phase_ht_alpha,
                                                o.phase_bleed_width) == PhaseThresholds(0.10, 0.05, 6.0, 0.25)


# --- known answers from mutation round 9 ----------------------------------------------------------------

def _svd_evals(W: np.ndarray) -> np.ndarray:
    return np.sort(np.linalg.svd(np.asarray(W, dtype=np.float64), compute_uv=False) ** 2)


def test_a_bulkless_spectrum_keeps_the_lower_half_of_its_eigenvalues_rounded_up():
    """101 geometric eigenvalues (no MP bulk): the bulk keeps 'the lower half at least', 51 of 101, and σ² is the
    least-squares quantile match of exactly those 51 (numpy's quantile here: the same arithmetic in another order,
    rel 1e-9; 50 values would give 8 % less)."""
    from htsr.rmt.mp import _PROBS

    ev = 1.1 ** np.arange(101.0)
    f = fit_mp(ev, 101, 101)
    q, qm = np.quantile(ev[:51], _PROBS) / 101, mp_quantiles(_PROBS, 1.0)
    assert f.sigma2 == pytest.approx(float(q @ qm / (qm @ qm)), rel=1e-9)
    assert f.num_spikes == int(np.count_nonzero(ev > f.threshold))


def test_a_spike_cluster_without_a_gap_is_not_counted_as_spikes():
    """docs/rmt.md: 128 spikes at 5x BBP in 512 x 512 noise are all counted; at 2x BBP, with no gap between them
    and the bulk, they are not (3 counted, measured: the fit takes the cluster into its bulk)."""
    n, k = 512, 128
    f = fit_mp(_svd_evals(S.spiked(n, n, 0, k, 2.0 * S.bbp_threshold(n, n))), n, n)
    assert f.num_spikes < k // 2
    f5 = fit_mp(_svd_evals(S.spiked(n, n, 0, k, 5.0 * S.bbp_threshold(n, n))), n, n)
    assert f5.num_spikes == k


def test_js_distance_cuts_each_spectrum_at_its_own_floor():
    """a's floor 0.5 makes its 0.0 a zero; b's 0.1 leaves its 0.2 an eigenvalue of its own log bin: a quarter of
    the mass differs, JSD = 1/4 bit, distance 0.5 (rel 1e-12: a few float operations); symmetric."""
    a, b = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.2, 1.0, 2.0, 3.0])
    d = js_distance(a, b, 0.5, 0.1)
    assert d == pytest.approx(0.5, rel=1e-12)
    assert d == pytest.approx(js_distance(b, a, 0.1, 0.5), rel=1e-12)
    assert js_distance(a, b, 0.5, 0.5) == 0.0  # both cut at 0.5: the same densities
    # the default floors 0: a's exact 0.0 is a zero ('at or below'), not log10(0) = -inf in the bins; as above
    assert js_distance(a, b) == pytest.approx(0.5, rel=1e-12)


def test_an_alpha_equal_to_the_heavy_tailed_bound_is_bulk_decay():
    """docs/rmt.md rule 3: heavy-tailed if alpha < ht_alpha, else bulk-decay (exact float comparisons)."""
    from htsr.rmt.mp import MPFit
    from htsr.rmt.phases import PhaseThresholds, phase_of

    mp = MPFit(sigma2=1.0, lambda_minus=0.0, lambda_plus=4.0, threshold=4.5, num_spikes=10, num_zero=0,
               softrank=0.1, ks=0.01)  # 10 spikes in 100 eigenvalues: a tail (>= 5 %)
    assert phase_of(100, 0, mp, 40.0, 6.0, 0.0) == "bulk-decay"
    assert phase_of(100, 0, mp, 40.0, np.nextafter(6.0, 0.0), 0.0) == "heavy-tailed"
    assert phase_of(100, 0, mp, 40.0, 3.0, 0.0, PhaseThresholds(ht_alpha=3.0)) == "bulk-decay"


def test_heavy_entries_are_counted_about_the_mean_on_both_sides():
    """|W_ij − mean| > cut: a constant added to every entry changes no count; two entries 10 above and below a
    mean of 5, cut 3: exactly 2."""
    from htsr.rmt.phases import count_heavy_entries

    W = np.full((20, 10), 5.0)
    W[0, 0], W[1, 1] = 15.0, -5.0  # the mean stays 5
    assert count_heavy_entries(W, 3.0) == 2
    assert count_heavy_entries(W, 10.0) == 0  # 'more than' the cut: both lie exactly 10 from the mean (exact floats)
    # the cut itself, bbp_entry_scale: (NM)^¼·σ, 40000^¼·2 for 400 x 100 entries of variance 4 (rounding only)
    from htsr.rmt import bbp_entry_scale

    assert bbp_entry_scale(400, 100, 4.0) == pytest.approx(2.0 * 40000 ** 0.25, rel=1e-12)
    G = np.random.default_rng(0).standard_normal((200, 100))
    assert count_heavy_entries(G + 7.0, 2.5) == count_heavy_entries(G, 2.5) == \
        int(np.count_nonzero(np.abs(G - G.mean()) > 2.5))


def _pr_reference(W: np.ndarray, num_tail: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """The participation ratio 1/Σv⁴ of each unit eigenvector of X = WᵀW (numpy's eigh), largest eigenvalue
    first, split into the tail and the bulk above ``floor``."""
    ev, V = np.linalg.eigh(W.T @ W)
    order = np.argsort(ev)[::-1]
    pr, ev = 1.0 / np.sum(V[:, order] ** 4, axis=0), ev[order]
    return pr[:num_tail], pr[num_tail:][ev[num_tail:] > floor]


def test_localization_std_is_the_sample_standard_deviation():
    """Against numpy's eigh and np.std(ddof=1), rel 1e-6 (two eigensolvers on a generic 60 x 20 Gaussian matrix,
    whose vectors are well separated: the ratios agree to ~1e-12; ddof 0 is 18 % off for 3 vectors)."""
    W = np.random.default_rng(1).standard_normal((60, 20))
    out = localization([W], 3)
    tail, bulk = _pr_reference(W, 3, 0.0)
    assert out["loc_pr_tail_mean"] == pytest.approx(np.mean(tail), rel=1e-6)
    assert out["loc_pr_tail_std"] == pytest.approx(np.std(tail, ddof=1), rel=1e-6)
    assert out["loc_pr_bulk_std"] == pytest.approx(np.std(bulk, ddof=1), rel=1e-6)


def test_a_wide_layers_eigenvectors_are_its_smaller_sides():
    """A wide 20 x 60 layer's vectors are W·Wᵀ's 20 (its smaller side), as its transpose's: WᵀW's 60 would bring
    40 null-space vectors (eigenvalues ±1e-14, some above the floor 0) into the bulk, unseen while every layer
    tested was tall. A tail of two vectors has a spread (ddof 1 of two values). Reference and tolerance as above."""
    W = np.random.default_rng(3).standard_normal((20, 60))
    out = localization([W], 2)
    tail, bulk = _pr_reference(W.T, 2, 0.0)
    assert bulk.size == 18
    assert out["loc_pr_tail_std"] == pytest.approx(np.std(tail, ddof=1), rel=1e-6)
    assert out["loc_pr_bulk_mean"] == pytest.approx(np.mean(bulk), rel=1e-6)
    assert out["loc_pr_bulk_std"] == pytest.approx(np.std(bulk, ddof=1), rel=1e-6)
    assert out == pytest.approx(localization([W.T], 2), rel=1e-6)


def test_the_localization_bulk_leaves_out_the_null_space():
    """A rank-5 60 x 30 product: its 25 zero eigenvalues' vectors are any basis of the null space; the bulk is
    the 3 non-zero ones below the 2-vector tail (reference and tolerance as above)."""
    rng = np.random.default_rng(2)
    W = rng.standard_normal((60, 5)) @ rng.standard_normal((5, 30))
    floor = 1e-8 * float(np.linalg.norm(W, 2) ** 2)
    out = localization([W], 2, floor=floor)
    _, bulk = _pr_reference(W, 2, floor)
    assert bulk.size == 3
    assert out["loc_pr_bulk_mean"] == pytest.approx(np.mean(bulk), rel=1e-6)
    assert out["loc_pr_bulk_std"] == pytest.approx(np.std(bulk, ddof=1), rel=1e-6)


def _flat_spike(N: int, M: int, u_support: int, v_support: int, theta: float = 50.0, seed: int = 3) -> np.ndarray:
    """theta·u vᵀ + N(0, 1/N) noise, u and v flat on their first u_support / v_support coordinates: their
    participation ratios are u_support and v_support up to the noise (1/Σv⁴ of a flat vector)."""
    rng = np.random.default_rng(seed)
    u, v = np.zeros(N), np.zeros(M)
    u[:u_support], v[:v_support] = 1.0 / math.sqrt(u_support), 1.0 / math.sqrt(v_support)
    return theta * np.outer(u, v) + rng.standard_normal((N, M)) / math.sqrt(N)


def test_a_spike_is_localised_by_either_of_its_vectors_each_against_its_own_length():
    """A spike is entry-driven when its left OR right singular vector has a participation ratio below 0.1 of its
    own length: u on 2 of 400 rows, or v on 2 of 200 columns, is; a spike spread over a tall 1000 x 50 layer's
    rows and columns (shares ~1 and ~1) is not, and a planted entry of it is."""
    assert localized_spike(_flat_spike(400, 200, 2, 200), 1)
    assert localized_spike(_flat_spike(400, 200, 400, 2), 1)
    assert not localized_spike(_flat_spike(1000, 50, 1000, 50), 1)
    assert localized_spike(_flat_spike(1000, 50, 1, 1), 1)


@pytest.mark.parametrize("share,expected", [(0.05, True), (0.15, False), (0.3, False)])
def test_localised_means_a_participation_ratio_below_a_tenth_of_the_length(share, expected):
    """docs/rmt.md: 'participation ratio below 0.1 of its length'. v flat on share·M coordinates has ratio
    share·M; the noise (1/50 of the spike) moves it by < 1 %, so 0.05 and 0.15 are far from the cut."""
    assert localized_spike(_flat_spike(800, 400, 800, int(share * 400)), 1) is expected


def test_a_rank_one_layers_entropy_is_0():
    """METRICS: 'entropy … (0 = rank one, 1 = flat)': ln R = 0 for R = 1, so it is the limit 0, not NaN."""
    rng = np.random.default_rng(4)
    row = htsr.analyze({"fc.weight": np.outer(rng.standard_normal(80), rng.standard_normal(60))}).layers[0]
    assert row.matrix_rank == 1 and row.entropy == 0.0


def test_localization_bulk_is_strictly_above_the_floor_exact_zeros_left_out():
    """'bulk = the others above the numerical floor': X = diag(9, 1, 0, 0) exactly; with the default floor 0 the
    exact zeros' coordinate vectors are no bulk: one bulk vector (PR 1, LR 1, H of a 4-vector coordinate vector),
    no spread (>= floor took the null space in, std 0.0)."""
    W = np.zeros((6, 4))
    W[0, 0], W[1, 1] = 3.0, 1.0
    out = localization([W], 1)
    h = -(3 / 4) * math.log(3 / 4) - (1 / 4) * math.log(1 / 4)
    assert out["loc_pr_bulk_mean"] == 1.0 and out["loc_lr_bulk_mean"] == 1.0
    assert out["loc_ent_bulk_mean"] == pytest.approx(h, abs=1e-8)
    assert math.isnan(out["loc_pr_bulk_std"])


def test_localized_spike_looks_at_the_top_three():
    """LOCALIZED_TOP = 3: an entry-driven third spike behind two spread ones is found with k = 3, not with k = 1
    (only the top one looked at)."""
    assert LOCALIZED_TOP == 3
    rng = np.random.default_rng(7)
    N, M = 400, 300
    W = rng.standard_normal((N, M)) / math.sqrt(N)
    for theta in (12.0, 9.0):  # two spread spikes, well above the entry's
        u, v = rng.standard_normal(N), rng.standard_normal(M)
        W += theta * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    W[17, 42] += 6.0  # third outlier, on one entry
    assert localized_spike(W, 3) and not localized_spike(W, 1) and not localized_spike(W, 2)
    # and no further than the top three, whatever k says: a fourth outlier on one entry behind three spread spikes
    # (12, 10.5, 9 against the entry's ~6 and the noise edge 1.87) is left to them, as the docstring says
    W = rng.standard_normal((N, M)) / math.sqrt(N)
    for theta in (12.0, 10.5, 9.0):
        u, v = rng.standard_normal(N), rng.standard_normal(M)
        W += theta * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    W[17, 42] += 6.0
    assert not localized_spike(W, 4) and not localized_spike(W, 10)


def test_a_left_vector_is_measured_against_the_number_of_rows():
    """u flat on 30 of 400 rows: PR 30 = 0.075 of its length 400, localised; against the 200 columns it would be
    0.15, not (U's ratio divided by the column count). _flat_spike is the helper above in this file."""
    assert localized_spike(_flat_spike(400, 200, 30, 200), 1)
    assert not localized_spike(_flat_spike(400, 200, 60, 200), 1)  # 0.15 of 400: spread enough


def test_localization_compares_the_scaled_eigenvalues_with_the_floor():
    """The floor is in the ESD's scale (analyze passes its normalisation as ``scale``): X = diag(9, 1, 0.01) at
    scale 0.01 is 0.09, 0.01, 1e-4; floor 1e-3 leaves one bulk vector (the raw 0.01 passed, two)."""
    W = np.zeros((6, 3))
    W[0, 0], W[1, 1], W[2, 2] = 3.0, 1.0, 0.1
    out = localization([W], 1, scale=0.01, floor=1e-3)
    assert out["loc_pr_bulk_mean"] == 1.0 and math.isnan(out["loc_pr_bulk_std"])
    assert math.isfinite(localization([W], 1, scale=0.01, floor=1e-5)["loc_pr_bulk_std"])  # both above 1e-5


def test_localized_spike_looks_at_fewer_vectors_than_the_smaller_dimension():
    """svds needs k < min(N, M): a 3 x 200 Gaussian layer (a 3-vector's PR >= 1 is a share >= 1/3: never localised)
    is not localised for k = 3 (k = 3 made svds fail, read as True)."""
    assert localized_spike(np.random.default_rng(0).standard_normal((3, 200)), 3) is False


def test_an_eigenvalue_exactly_at_the_threshold_is_not_a_spike():
    """'Spikes are the eigenvalues *above* the threshold': one equal to it is bulk (given σ², the threshold is
    σ²·(μ_NM + t·s_NM) exactly)."""
    mu, s = tw_edge(N, M)
    thr = 1.0 * (mu + 4.0 * s)
    ev = np.sort(np.concatenate([_evals(S.gaussian(N, M, 0))[:-1], [thr]]))
    f = fit_mp(ev, N, M, sigma2=1.0)
    assert f.threshold == thr and f.num_spikes == 0
    # and it is in the bulk the KS distance is taken over (the whole spectrum here): scipy's kstest of it against
    # the unit law (the MP CDF from one table: interpolation, ~1e-8)
    ref = scipy.stats.kstest(ev / N, lambda v: mp_cdf(v, N / M)).statistic
    assert f.ks == pytest.approx(ref, rel=1e-6)


def test_the_shuffled_law_is_scale_free():
    """randomize's counts, locations and KS do not depend on the ESD's scale (a conv's WeightWatcher scaling):
    its bulk, the trap cut and the located traps are read in the same units as the eigenvalues."""
    W, (r, c) = S.planted_entry(N, M, 3)
    a = randomize([W], N, M, seed=1)
    b = randomize([W], N, M, seed=1, scale=9.0)
    assert a.num_traps == b.num_traps == 1
    assert a.locations == b.locations == ((0, r, c),)
    assert b.mp.threshold == pytest.approx(a.mp.threshold * 9.0, rel=1e-12)
    assert b.mp.ks == pytest.approx(a.mp.ks, rel=1e-9)


def test_the_traps_edge_is_the_tw_margin_given():
    """randomize's tw_margin sets the shuffled law's threshold σ²·(μ_NM + t·s_NM): a planted entry is one trap at
    the default 4 Tracy-Widom scales and none at 1000 (the margin had been left at 4 whatever was asked)."""
    W, (r, c) = S.planted_entry(300, 100, 0)
    a, b = randomize([W], 300, 100, seed=0), randomize([W], 300, 100, seed=0, tw_margin=1e3)
    mu, s = tw_edge(300, 100)
    assert b.mp.threshold == pytest.approx(a.mp.sigma2 * (mu + 1e3 * s), rel=1e-12)  # (the same products: rounding)
    assert (a.num_traps, a.locations, b.num_traps, b.locations) == (1, ((0, r, c),), 0, ())


def test_traps_are_located_largest_first():
    """Three planted entries of different sizes: the trap_weights column lists them by trap size, largest first."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((N, M))
    big = 4 * (N * M) ** 0.25
    places = [(10, 20, 3 * big), (300, 400, 2 * big), (700, 100, 1.5 * big)]  # largest first
    for r, c, v in places:
        W[r, c] = v
    R = randomize([W], N, M, seed=0)
    assert R.num_traps == 3
    assert R.locations == tuple((0, r, c) for r, c, _ in places)


def test_synthetic_generators_are_seeded_by_their_seed():
    """Each seed gives a different matrix (and a different planted place): the 20-seed suites test 20 matrices."""
    a, pa = S.planted_entry(200, 100, 0)
    b, pb = S.planted_entry(200, 100, 1)
    assert pa != pb and not np.array_equal(a, b)
    assert not np.array_equal(S.gaussian(200, 100, 0), S.gaussian(200, 100, 1))
    assert not np.array_equal(S.pareto(200, 100, 0, 3.0), S.pareto(200, 100, 1, 3.0))
    assert not np.array_equal(S.spiked(200, 100, 0, 2, 2.0), S.spiked(200, 100, 1, 2, 2.0))
    assert not np.array_equal(S.low_rank(200, 100, 0, 5), S.low_rank(200, 100, 1, 5))
    assert np.array_equal(S.planted_entry(200, 100, 1)[0], b)  # and the same seed, the same matrix


def test_synthetic_generators_have_unit_scale_entries():
    """The module's promise: entries of (about) unit scale, so σ_mp of gaussian/low_rank is ~1."""
    assert np.std(S.gaussian(N, M, 0)) == pytest.approx(1.0, rel=0.01)
    assert np.std(S.low_rank(N, M, 0, 50)) == pytest.approx(1.0, rel=0.1)


def test_a_gap_of_one_and_a_half_parts_a_spike_cluster_from_the_bulk():
    """fit_mp's gap rule: 128 spikes at 2.5x BBP in 512 x 512 noise stand ~1.7x above the bulk's largest
    eigenvalue (measured per seed below), more than the 1.5 that parts a cluster from its bulk: all are counted
    (a rule of 2 counted 2 to 6)."""
    n, k = 512, 128
    for seed in (0, 1, 2):
        ev = _svd_evals(S.spiked(n, n, seed, k, 2.5 * S.bbp_threshold(n, n)))
        assert 1.6 < ev[n - k] / ev[n - k - 1] < 1.8, seed  # the gap this test is about
        assert fit_mp(ev, n, n).num_spikes == k, seed
    # at 2.2x BBP the cluster stands only ~1.35x above the bulk, under the 1.5: it stays in the bulk (5 spikes
    # counted, measured; a rule of 1.2 had counted all 128)
    ev = _svd_evals(S.spiked(n, n, 0, k, 2.2 * S.bbp_threshold(n, n)))
    assert 1.3 < ev[n - k] / ev[n - k - 1] < 1.4
    assert fit_mp(ev, n, n).num_spikes < k // 2


def test_the_mp_law_of_entries_of_variance_sigma2_is_the_unit_law_scaled():
    """X/N of entries of variance σ² is σ² times that of unit entries: its CDF at x is the unit CDF at x/σ², its
    quantiles σ² times the unit ones (exactly: one division or product of the same table)."""
    x = np.linspace(0.0, 30.0, 301)
    for Q, s2 in ((1.0, 4.0), (2.5, 0.3)):
        assert np.array_equal(mp_cdf(x, Q, s2), mp_cdf(x / s2, Q))
        p = np.linspace(0.01, 0.99, 99)
        assert np.allclose(mp_quantiles(p, Q, s2), s2 * mp_quantiles(p, Q), rtol=1e-15, atol=0)
        assert mp_cdf(mp_quantiles(p, Q, s2), Q, s2) == pytest.approx(p, abs=1e-6)  # (the table's interpolation)


def test_the_tail_share_is_of_all_eigenvalues_zeros_included():
    """docs/rmt.md rule 3: a tail is at least ht_share of num_evals above the edge; the zeros (here 99 of 1000,
    below rank-collapse's 10 %) count in the denominator: 46 spikes are 4.6 %, a few spikes, though 46 of the
    901 nonzero ones would be 5.1 %."""
    mp = MPFit(1.0, 100.0, 1000.0, 1100.0, 46, 99, 0.5, 0.01)
    assert phase_of(1000, 99, mp, 2000.0, 3.0, 0) == "bulk+spikes"
    assert phase_of(1000, 99, MPFit(1.0, 100.0, 1000.0, 1100.0, 50, 99, 0.5, 0.01), 2000.0, 3.0, 0) == "heavy-tailed"


def test_planted_entry_is_the_size_given_or_four_bbp_scales_at_its_place():
    """planted_entry's entry is 4·(NM)^¼ by default, or the ``size`` given (nothing had passed one: a size ignored
    went unseen), at the returned (row, column), the rest of the seed's noise unchanged."""
    W, (r, c) = S.planted_entry(300, 100, 5)
    assert W[r, c] == 4.0 * 30000 ** 0.25
    assert np.unravel_index(np.argmax(np.abs(W)), W.shape) == (r, c)
    W2, place = S.planted_entry(300, 100, 5, size=-9.0)
    assert place == (r, c) and W2[r, c] == -9.0
    assert np.array_equal(np.delete(W2.ravel(), r * 100 + c), np.delete(W.ravel(), r * 100 + c))


def test_localized_spike_converts_integer_weights_to_float():
    """Integer (quantised) weights are looked at as float32: ARPACK refuses an integer start vector, and a spread
    spike had read as the fallback True. A spread spike (σ 6.1, noise edge 1.87) above an entry-driven one (σ 4.2),
    ×20 and rounded to int8: the top one is not localised, the top two are (shares ~1/3 and ~1/300, far from 0.1)."""
    rng = np.random.default_rng(11)
    W = rng.standard_normal((400, 300)) / 20.0  # N(0, 1/N) noise
    u, v = rng.standard_normal(400), rng.standard_normal(300)
    W += 6.0 * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    W[17, 42] += 4.0
    Q = np.round(W * 20).astype(np.int8)
    assert not localized_spike(Q, 1) and localized_spike(Q, 2)


def test_a_negative_tail_size_is_an_empty_tail():
    """num_tail is clamped to [0, n]: −1 leaves every vector to the bulk (order[:-1] had made all but one the
    tail). X = diag(9, 4, 1) exactly: coordinate vectors, PR 1 each, spread 0 over the three."""
    W = np.zeros((6, 3))
    W[0, 0], W[1, 1], W[2, 2] = 3.0, 2.0, 1.0
    out = localization([W], -1)
    assert math.isnan(out["loc_pr_tail_mean"]) and math.isnan(out["loc_pr_tail_std"])
    assert out["loc_pr_bulk_mean"] == 1.0 and out["loc_pr_bulk_std"] == 0.0
    assert localization([W], -1) == pytest.approx(localization([W], 0), nan_ok=True)  # (the same computation)


def test_planted_places_cover_every_row_and_column():
    """planted_entry's place is uniform over the whole matrix: 200 seeds of a 3 x 2 matrix reach all 6 places (each
    missed with probability (5/6)^200 ≈ 1e-16; a place that never fell in the last row had gone unseen)."""
    places = Counter(S.planted_entry(3, 2, seed)[1] for seed in range(200))
    assert set(places) == {(r, c) for r in range(3) for c in range(2)}


# --- known answers from mutation round 73 ---------------------------------------------------------------

def test_a_gap_alone_does_not_part_a_bulk_that_fits_the_mp_law_worse():
    """fit_mp takes the smaller self-consistent bulk below a gap only where it also fits the MP law better (KS).
    180 eigenvalues spread evenly over [0, 800] (no MP shape) and 20 at twice the top, a gap of 2: the bulk of the
    lower 180 alone has a larger KS distance than the whole spectrum's, so the whole is the bulk, no spikes (the gap
    alone had made the 20 spikes, σ² 1.63 instead of 2.20). The two KS distances from scipy's kstest."""
    n = 200
    bulk = n * 4 * (np.arange(180) + 0.5) / 180
    ev = np.sort(np.r_[bulk, np.full(20, 2 * bulk[-1])])
    f = fit_mp(ev, n, n)
    assert f.num_spikes == 0 and f.num_zero == 0
    whole = scipy.stats.kstest(ev / (n * f.sigma2), lambda v: mp_cdf(v, 1.0)).statistic
    assert f.ks == pytest.approx(whole, rel=1e-6)  # (the MP CDF from one table: interpolation, ~1e-8)
    lower = fit_mp(ev[:180], n, n)  # the smaller bulk the gap parts off: self-consistent, 0 spikes of its own
    assert lower.num_spikes == 0
    assert scipy.stats.kstest(ev[:180] / (n * lower.sigma2), lambda v: mp_cdf(v, 1.0)).statistic > whole


def test_at_most_ten_traps_are_located_the_largest():
    """MAX_LOCATED = 10 (docs/rmt.md): twelve planted entries, each well past the BBP scale and of a different size,
    give twelve traps, of which the ten largest are located, largest first. (Seed 1's shuffle puts the twelve in
    distinct rows and columns of the shuffled matrix; seed 0's puts two in one row, a single rank-one trap.)"""
    from htsr.rmt.traps import MAX_LOCATED

    assert MAX_LOCATED == 10
    rng = np.random.default_rng(0)
    W = rng.standard_normal((400, 200))
    big = 4 * (400 * 200) ** 0.25
    places = [(10 * k + 3, 15 * k + 1, (1.5 - 0.05 * k) * big) for k in range(12)]  # largest first
    for r, c, v in places:
        W[r, c] = v
    R = randomize([W], 400, 200, seed=1)
    assert R.num_traps == 12
    assert R.locations == tuple((0, r, c) for r, c, _ in places[:10])


def test_the_shuffled_esd_is_computed_at_the_precision_asked():
    """randomize's precision reaches the shuffled ESD: 'accurate' is the float64 SVD (method svd64), whose
    eigenvalues sum to the entries' sum of squares (a shuffle keeps it) to float64 rounding; the fast float32 Gram
    (method gram32, no eigenvalue below its floor to refine in a 400 x 200 layer) is ~1e-8 off (measured 1e-8)."""
    W = np.random.default_rng(0).standard_normal((400, 200)).astype(np.float32)
    fro = float(np.sum(W.astype(np.float64) ** 2))
    acc = randomize([W], 400, 200, seed=0, precision="accurate").spectrum
    fast = randomize([W], 400, 200, seed=0).spectrum
    assert (acc.method, fast.method) == ("svd64", "gram32")
    assert acc.evals.sum() == pytest.approx(fro, rel=1e-12)  # (float64 rounding of 200 terms)
    assert fast.evals.sum() == pytest.approx(fro, rel=1e-6)  # (float32 Gram: 1e-8 measured)


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
def test_the_shuffled_entries_variance_is_the_same_whatever_the_chunk(chunk):
    """The entries' variance (the shuffled law's σ²) is summed a chunk at a time so that a large layer needs no float64
    copy: any chunk size (the default 2^20 entries, and chunks that do not divide the 1000 entries) gives numpy's
    two-pass float64 variance; a chunk left out (the last, a layer past 2^20 entries) had gone unseen (rounding of
    the summation order: rel 1e-12)."""
    from htsr.rmt.traps import _variance

    x = (np.random.default_rng(1).standard_normal(1000) * 0.05 + 0.3).astype(np.float32)
    assert _variance(x, chunk) == pytest.approx(float(np.var(x.astype(np.float64))), rel=1e-12)


def test_the_fitted_bulk_follows_the_tw_margin_given():
    """tw_margin sets the threshold the bulk is refitted up to, not only the one reported: 10 spikes at 3x BBP in
    1000 x 500 noise are left out of the bulk at the default 4 Tracy-Widom scales, and at 1000 scales the whole
    spectrum is the bulk, σ² the least-squares match of its quantiles at 5 %, 10 %, …, 95 % to the unit MP law's
    (np.quantile's linear quantiles: the same arithmetic in another order, rel 1e-9). A margin of 4 kept for the
    refit had left σ² 4 % lower (measured), fitted without the spikes it no longer counts."""
    ev = _svd_evals(S.spiked(N, M, 0, 10, 3 * BBP))
    assert fit_mp(ev, N, M).num_spikes == 10
    wide = fit_mp(ev, N, M, tw_margin=1e3)
    probs = np.linspace(0.05, 0.95, 19)
    q, qm = np.quantile(ev, probs) / N, mp_quantiles(probs, N / M)
    assert wide.num_spikes == 0 and wide.sigma2 == pytest.approx(float(q @ qm / (qm @ qm)), rel=1e-9)


def test_random_like_needs_a_bulk_the_mp_law_fits_and_a_majority_of_spikes_is_found():
    """THEORY §6: random-like is 'well fitted by MP'. Three layers nothing like MP had been random-like:
    300 spikes of 500 at 5 × BBP, parted from the 200 noise eigenvalues by an 8x gap (the bulk kept the lower half,
    50 spikes with it: σ 3.5x, every spike under the threshold), 250 spikes at 2 × BBP with no gap, and an orthogonal
    matrix (its ESD one point). The gapped cluster is found now (the smallest self-consistent bulk is sought from the
    lowest quarter): 300 spikes, bulk-decay by its alpha. The other two get no label (their bulk's KS distance from
    the fitted law is over the 1 % critical value of a test of that many draws, 1.63/√n; Gaussian noise's is a
    tenth of it), and Gaussian noise stays random-like."""
    N, M = 1000, 500
    rows = {}
    for name, k, theta in (("gap", 300, 5), ("nogap", 250, 2), ("noise", 0, 1)):
        W = S.spiked(N, M, 0, k, theta * S.bbp_threshold(N, M)).astype(np.float32)
        rows[name] = htsr.analyze({"x.weight": W}, tails=False).layers[0]
    rows["orthogonal"] = htsr.analyze(
        {"q.weight": np.linalg.qr(np.random.default_rng(0).standard_normal((256, 256)))[0].astype(np.float32)},
        tails=False).layers[0]
    assert {n: r.phase for n, r in rows.items()} == {"gap": "bulk-decay", "nogap": "", "noise": "random-like",
                                                      "orthogonal": ""}
    assert rows["gap"].num_spikes == 300
    # (σ of the (N − k) × (M − k) noise the spikes leave: low by (√700 + √200) / (√1000 + √500) = 0.75; 0.80 here)
    assert 0.7 < rows["gap"].mp_sigma < 0.85
    assert rows["noise"].mp_ks < 0.1 * 1.63 / math.sqrt(500) < rows["nogap"].mp_ks


def test_the_helpers_refuse_or_say_nan_for_empty_input():
    """js_distance of an empty ESD is NaN (no density: 0 had read as identical, with numpy warnings on stderr);
    localization of no matrices is htsr's OptionError (a bare ValueError had escaped: h48)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(js_distance(np.array([]), np.array([])))
        assert math.isnan(js_distance(np.array([1.0, 2.0]), np.array([])))
    with pytest.raises(OptionError, match="^localization: no matrices given"):
        localization([], 3)
    for bad in (np.zeros((3, 0)), np.full((4, 3), np.nan)):  # (a numpy reduction error, or inf and NaN columns)
        with pytest.raises(OptionError, match="^localization: matrix 0 is empty or holds NaN"):
            localization(bad, 1)


def test_one_huge_entry_does_not_make_a_resolved_bulk_zeros():
    """A 400 × 200 Gaussian layer with one entry of 1e7: its 199 other eigenvalues (36.8 … 1146, float64 SVD) had
    been called zeros (num_zero_evals 199, phase rank-collapse) by a zero level of ε₃₂·σ_max rounding on every
    entry, while the same row fitted 172 of them (h55). An entry rounds by ε₃₂ of its own size: the level is at most
    the rms entry's noise edge times (√N + √M)², equal to the old one for a Gaussian matrix."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((400, 200)).astype(np.float32)
    ev = np.sort(np.linalg.svd(W.astype(np.float64), compute_uv=False) ** 2)
    N, M = W.shape
    # a Gaussian matrix: the rms bound is λ_max's (Gaussian λ_max ≈ (√N + √M)²·σ², within 10 %)
    edge = (math.sqrt(N) + math.sqrt(M)) ** 2
    assert zero_level(ev, N, M) == pytest.approx(ev[-1] * edge * np.finfo(np.float32).eps ** 2, rel=0.1)
    W[7, 9] = 1e7
    for precision in ("fast", "accurate"):
        row = htsr.analyze({"l.weight": W}, precision=precision).layers[0]
        assert (row.num_zero_evals, row.matrix_rank, row.status) == (0, 200, "ok"), precision
        assert row.phase != "rank-collapse" and math.isfinite(row.erg_delta_lambda_min)


def test_float32_weights_near_their_largest_count_heavy_entries_without_a_warning():
    """Weights up to 3.4e38 in float32: the heavy-entry bound m + cut lies beyond float32's range, and comparing
    the array with it had printed numpy's 'overflow encountered in cast' (h55). None lies beyond it: 0, quietly."""
    G = np.random.default_rng(5).standard_normal((300, 150))
    W = (G / np.abs(G).max() * 3.4e38).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert count_heavy_entries(W, 1e39) == 0
        assert htsr.analyze({"l.weight": W}).layers[0].num_heavy_entries == 0


def test_the_localisation_of_degenerate_eigenvalues_is_undefined():
    """Three orthonormal 128 × 128 matrices, one flat spectrum: their bulk's mean participation ratio had been 33
    (random orthogonal), 12 (Hadamard) and 1 (identity) — the basis the solver chose for one eigenvalue's space, not
    a property of the weights (h55). NaN, and the status says why; a matrix of distinct eigenvalues keeps its."""
    import scipy.linalg

    Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((128, 128)))
    for W in (Q, scipy.linalg.hadamard(128) / np.sqrt(128), np.eye(128)):
        notes: list[str] = []
        out = localization([W], 0, notes=notes)
        assert math.isnan(out["loc_pr_bulk_mean"]) and math.isnan(out["loc_ent_bulk_mean"])
        assert notes == ["bulk eigenvalues degenerate (their eigenvectors any basis): undefined"]
        row = htsr.analyze({"l.weight": W}, localization=True).layers[0]
        assert row.status.endswith("; localization: bulk eigenvalues degenerate (their eigenvectors any basis): "
                                   "undefined")
    notes = []
    out = localization([np.random.default_rng(2).standard_normal((200, 128))], 10, notes=notes)
    assert notes == [] and 20 < out["loc_pr_bulk_mean"] < 60  # (a random unit vector's PR ≈ M/3 = 43)
    # stored in float32, an orthogonal matrix's eigenvalues spread by ~2e-7: degenerate still (it had PR 86, h57);
    # a bulk under a spike 1e10 times its gaps is resolved (it had been called degenerate, relative to λ_max)
    notes = []
    assert math.isnan(localization([Q.astype(np.float32)], 0, notes=notes)["loc_pr_bulk_mean"]) and notes
    W = np.random.default_rng(3).standard_normal((400, 200))
    W[7, 9] = 1e7
    notes = []
    assert math.isfinite(localization([W], 1, notes=notes)["loc_pr_bulk_mean"]) and notes == []
