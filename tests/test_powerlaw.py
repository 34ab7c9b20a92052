"""The power-law fitter against known answers and against the `powerlaw` package (Alstott et al.)."""

from __future__ import annotations

import contextlib
import io
import math
import warnings

import numpy as np
import pytest

import htsr

from htsr.fits.powerlaw import fit_power_law, ks_scan
from conftest import pareto_with_bulk

powerlaw = pytest.importorskip("powerlaw")


def _reference_fit(x: np.ndarray):
    # powerlaw 1.5 prints a progress line per candidate; powerlaw 2.0 switches to a numerical fit
    # for alpha outside (1.5, 3], so the reference is pinned to 1.5 (the closed-form CSN MLE)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return powerlaw.Fit(x, verbose=False)


CASES = [(n, a) for n in (100, 300, 1000, 5000) for a in (1.5, 2.5, 4.0)] + [(20000, 2.5)]


@pytest.mark.parametrize("n,alpha", CASES)
def test_matches_powerlaw_package(n, alpha):
    x = pareto_with_bulk(n, alpha, seed=n + int(10 * alpha))
    ref = _reference_fit(x)
    fit = fit_power_law(x)
    assert fit.status == "ok"
    # 1e-9 relative: both are the same closed-form MLE and KS statistic; only summation order differs
    assert fit.alpha == pytest.approx(ref.alpha, rel=1e-9)
    assert fit.xmin == pytest.approx(ref.xmin, rel=1e-9)
    assert fit.D == pytest.approx(ref.D, rel=1e-9)
    assert fit.sigma == pytest.approx(ref.sigma, rel=1e-9)  # (as above: the same closed form)
    assert fit.num_pl_spikes == int(np.sum(x >= ref.xmin))


def _brute_force(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WeightWatcher 0.7.7's loop, written out literally (WW_powerlaw.fit_power_law_standard)."""
    data = np.sort(x)
    N = len(data)
    log_data = np.log(data)
    alphas, Ds = np.zeros(N - 1), np.ones(N - 1)
    for i, xmin in enumerate(data[:-1]):
        n = float(N - i)
        with np.errstate(divide="ignore"):
            alpha = 1 + n / (np.sum(log_data[i:]) - n * log_data[i])
        alphas[i] = alpha
        if alpha > 1:
            Ds[i] = np.max(np.abs(1 - (data[i:] / xmin) ** (-alpha + 1) - np.arange(n) / n))
    return alphas, Ds


@pytest.mark.parametrize("seed", range(20))
def test_scan_equals_weightwatcher_loop(seed):
    rng = np.random.default_rng(seed)
    x = pareto_with_bulk(int(rng.integers(30, 400)), float(rng.uniform(1.5, 6)), seed=seed)
    if seed % 3 == 0:  # ties, as in the ESD of a matrix with repeated singular values
        x = np.round(x, 1) + 0.05
    x.sort()
    alphas, Ds = ks_scan(x)
    ref_a, ref_D = _brute_force(x)
    # a tail of equal values has alpha = inf in WeightWatcher (and D = (n-1)/n); htsr gives NaN and
    # excludes the candidate (D = 1) so that it can never be chosen: compare the finite ones only
    ok = np.isfinite(ref_a)
    assert np.all(np.isnan(alphas[~ok])) and np.all(Ds[~ok] == 1.0)
    # 1e-9: the vectorised scan and the loop sum the same logs in a different order
    np.testing.assert_allclose(alphas[ok], ref_a[ok], rtol=1e-9)
    np.testing.assert_allclose(Ds[ok], ref_D[ok], rtol=1e-9, atol=1e-12)
    fit = fit_power_law(x)
    # the fit's candidates start a run of equal values (the tail is every λ ≥ x_min: THEORY §3); WeightWatcher's
    # loop also tries x_min from inside a run, fitting part of the values equal to it (docs/weightwatcher.md)
    first = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
    first = first[first < x.size - 1]
    k = int(first[np.argmin(ref_D[first])])
    if seed % 3:  # no ties: exactly WeightWatcher's choice
        assert k == int(np.argmin(ref_D))
    assert fit.xmin == x[k]
    assert fit.alpha == pytest.approx(ref_a[k], rel=1e-9)  # (as above: the same logs in another order)


@pytest.mark.parametrize("seed", range(10))
def test_pruned_search_equals_full_scan(seed):
    # the fitter prunes candidates with a strided lower bound; it must pick exactly the argmin
    x = np.sort(pareto_with_bulk(3000, 2.0 + seed / 3, tail_fraction=0.1 + seed / 40, seed=seed))
    alphas, Ds = ks_scan(x)
    k = int(np.argmin(Ds))
    fit = fit_power_law(x)
    assert (fit.xmin, fit.alpha, fit.D) == (x[k], alphas[k], Ds[k])


@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0, 4.0, 6.0])
def test_recovers_known_exponent(alpha):
    # pure Pareto with x_min = 1: the MLE at the true x_min has standard error (alpha-1)/sqrt(n)
    rng = np.random.default_rng(int(alpha * 100))
    n = 20000
    x = (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))
    fixed = fit_power_law(x, xmin=1.0)
    assert fixed.num_pl_spikes == n
    assert abs(fixed.alpha - alpha) < 4 * (alpha - 1) / np.sqrt(n)  # 4 sigma: fails 1 in 16 000
    scanned = fit_power_law(x)
    # the KS scan uses a smaller tail, so its error is larger: 4 of its own sigmas
    assert abs(scanned.alpha - alpha) < 4 * scanned.sigma


def test_fixed_xmin_is_the_closed_form():
    x = pareto_with_bulk(500, 3.0, seed=7)
    fit = fit_power_law(x, xmin=1.2)
    tail = x[x >= 1.2]
    alpha = 1 + tail.size / np.sum(np.log(tail / 1.2))
    assert fit.alpha == pytest.approx(alpha, rel=1e-12)  # same formula, same order of summation
    assert fit.xmin == 1.2 and fit.num_pl_spikes == tail.size


def test_a_fixed_xmin_far_below_the_spectrum_or_not_positive():
    """x_min = 1e-306: λ / x_min overflows to inf, which gave alpha exactly 1 with status ok; log λ − log x_min
    keeps the closed form (mpmath-free check: the same sum computed in logs). 0 and −1 are refused, as
    analyze's option is (never 'ok' with alpha 1 or NaN)."""
    x = np.sort(pareto_with_bulk(500, 3.0, seed=7))
    for xmin in (1e-300, 1e-306, 1e-320):
        fit = fit_power_law(x, xmin=xmin)
        expected = 1 + x.size / np.sum(np.log(x) - math.log(xmin))
        # (the same closed form in logs; only the summation order may differ: rounding)
        assert fit.status == "ok" and fit.alpha == pytest.approx(expected, rel=1e-12) and fit.alpha > 1
        assert math.isfinite(fit.D)
    for xmin in (0.0, -1.0):
        with pytest.raises(htsr.OptionError, match="xmin must be"):
            fit_power_law(x, xmin=xmin)


def test_median_xmin_uses_top_half():
    x = pareto_with_bulk(1001, 3.0, seed=3)
    fit = fit_power_law(x, xmin="median")
    assert fit.num_pl_spikes == 501
    assert fit.xmin == np.sort(x)[500]


def test_peak_xmin_stays_below_bound():
    x = pareto_with_bulk(2000, 2.5, seed=4)
    counts, edges = np.histogram(np.log10(x), bins=100)
    peak = 10 ** edges[np.argmax(counts)]
    fit = fit_power_law(x, xmin="peak")
    assert fit.status == "ok" and fit.xmin <= 1.5 * peak  # the 'peak' rule's own bound: no tolerance


def test_clip_xmax_removes_fingers():
    """An MP bulk (600 × 300 noise) and one eigenvalue 4× its edge: the KS scan takes a tail of 48 at α 5.45; without
    the finger the fit is 1.42 lower (measured), so clip_xmax removes it. The rule, pinned on both sides of each
    threshold: the first k ≤ max_fingers whose refit without the k largest is lower by more than finger_thresh."""
    rng = np.random.default_rng(2)
    W = rng.standard_normal((600, 300)) / np.sqrt(600)
    body = np.linalg.eigvalsh(W.T @ W)
    x = np.sort(np.concatenate([body, [4.0 * body.max()]]))
    plain = fit_power_law(x)
    refits = [fit_power_law(x[:-k]) for k in range(1, 11)]
    drops = [plain.alpha - r.alpha for r in refits]
    assert plain.alpha > 5 and drops[0] > 1.4  # (the setting this test is about: one finger, a large pull)
    clipped = fit_power_law(x, clip_xmax=True)
    assert clipped.raw_alpha == plain.alpha and clipped.num_fingers == 1
    assert clipped.alpha == refits[0].alpha and clipped.xmin == refits[0].xmin
    # max_fingers bounds the refits tried, the last one included: 1 allows the one this sample needs
    assert fit_power_law(x, clip_xmax=True, max_fingers=1).num_fingers == 1
    # a drop of exactly finger_thresh is not 'by more than' it: the first refit, lower by exactly drops[0] (the largest
    # drop; refits[0].alpha + drops[0] is plain.alpha in float64), is not taken
    assert refits[0].alpha + drops[0] == plain.alpha and drops[0] == max(drops)
    for thresh in (drops[0] - 1e-9, drops[0], drops[0] + 1e-9, drops[2] + 1e-9, max(drops) + 1e-9):
        want = next((k for k, d in enumerate(drops, 1) if d > thresh), 0)
        got = fit_power_law(x, clip_xmax=True, finger_thresh=thresh)
        assert got.num_fingers == want and got.alpha == (refits[want - 1].alpha if want else plain.alpha), thresh
    # a clean power law has no finger to remove; its raw_alpha is still reported (the unclipped alpha, not NaN)
    clean = pareto_with_bulk(2000, 2.5, seed=11)
    kept = fit_power_law(clean, clip_xmax=True)
    assert kept.num_fingers == 0 and kept.raw_alpha == kept.alpha == fit_power_law(clean).alpha


def test_degenerate_inputs_fail_with_status():
    assert fit_power_law(np.ones(100)).status.startswith("fit_failed")
    assert np.isnan(fit_power_law(np.ones(100)).alpha)
    assert fit_power_law(np.array([3.0])).status.startswith("fit_failed")
    with pytest.raises(ValueError):
        fit_power_law(np.array([1.0, -2.0, 3.0]))


def test_flat_spectrum_is_not_fitted():
    """An orthogonal matrix's eigenvalues are all 1 up to rounding (spread 3e-6 in float32): fitting that
    noise gave alpha ~ 1e6 with status ok. A spread below FLAT_SPREAD of the largest is a failed fit."""
    import scipy.stats

    import htsr
    from htsr.fits.powerlaw import FLAT_SPREAD

    Q = scipy.stats.ortho_group.rvs(200, random_state=0).astype(np.float32)
    for precision in ("fast", "accurate"):
        (row,) = htsr.analyze({"q.weight": 3 * Q}, precision=precision).layers
        assert row.status.startswith("fit_failed: a flat spectrum") and math.isnan(row.alpha)
    x = 1.0 + np.linspace(0.0, 2 * FLAT_SPREAD, 300)  # just above the threshold: fitted
    assert fit_power_law(x).status == "ok"
    # 'within' includes the bound: 9999..10000 spreads exactly FLAT_SPREAD of the largest (1e-4 · 1e4 is 1.0 in
    # float64), a flat spectrum, not a spectrum scanned only to find every candidate's tail flat
    x = np.linspace(9999.0, 10000.0, 50)
    assert x[-1] - x[0] == FLAT_SPREAD * x[-1]
    assert fit_power_law(x).status.startswith("fit_failed: a flat spectrum")


def test_no_x_min_candidate_leaves_a_flat_tail():
    """60 equal singular values above 140 others: the top 60 eigenvalues differ by the solver's rounding
    (3.9e-8 relative), and an x_min among them gave alpha 3.7e6 (fast) or 1.1e8 (accurate), status ok. A
    candidate whose tail lies within FLAT_SPREAD of the largest is no candidate: both paths agree now, and a
    spectrum all of whose candidates are so fails saying why."""
    import htsr
    from htsr.fits.powerlaw import FLAT_SPREAD

    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((300, 200)))
    V, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    W = ((U * np.r_[np.full(60, 3.0), np.full(140, 1.0)]) @ V.T).astype(np.float32)
    rows = [htsr.analyze({"fc.weight": W}, precision=p, tails=False).layers[0] for p in ("fast", "accurate")]
    assert all(r.status == "ok" and 1 < r.alpha < 10 for r in rows)
    assert rows[0].alpha == pytest.approx(rows[1].alpha, rel=1e-3)  # (the paths' eigenvalues differ by ~1e-7)
    x = np.r_[np.linspace(0.1, 1.0, 30), np.full(40, 9.0) * (1 + np.linspace(0, FLAT_SPREAD / 2, 40))]
    assert fit_power_law(x, xmin="median").status.startswith("fit_failed: a flat tail")
    # 'within FLAT_SPREAD of the largest' is measured against the largest value, not the candidate: a median x_min
    # 0.99995 × FLAT_SPREAD below the largest is no candidate (it is more than FLAT_SPREAD of itself below it)
    d = 0.99995 * FLAT_SPREAD
    x = np.array([0.2, 0.3, 1.0 - d, 1.0 - d / 2, 1.0])
    assert FLAT_SPREAD * x[2] < x[-1] - x[2] <= FLAT_SPREAD * x[-1]  # (the window this sample sits in)
    assert fit_power_law(x, xmin="median").status.startswith("fit_failed: a flat tail")


def test_drop_top_fits_without_the_k_largest_as_weightwatchers_negative_xmax():
    """WeightWatcher's analyze(xmax=-k) fits without the k largest eigenvalues (alpha 4.5937 against 3.5757 on a
    layer of its parity audit); htsr had no such option. drop_top=k is that fit, the k counted as fingers."""
    rng = np.random.default_rng(0)
    W = rng.standard_t(3, (500, 300))
    ev = np.sort(np.linalg.svd(W, compute_uv=False) ** 2)
    for k in (1, 3):
        row = htsr.analyze({"a.weight": W}, drop_top=k, precision="accurate").layers[0]
        ref = fit_power_law(ev[:-k])
        # 1e-12: the same fit of the same eigenvalues (accurate: a float64 SVD, as here)
        assert row.alpha == pytest.approx(ref.alpha, rel=1e-12) and row.xmin == pytest.approx(ref.xmin, rel=1e-12)
        assert row.num_fingers == k and row.raw_alpha == pytest.approx(fit_power_law(ev).alpha, rel=1e-12)
    with pytest.raises(htsr.OptionError, match="'drop_top' and option 'clip_xmax' both choose"):
        htsr.Options.create(drop_top=1, clip_xmax=True)
    # (it had said "none left to fit" with 2 left)
    assert fit_power_law(ev[:5], drop_top=3).status == (
        "fit_failed: 5 eigenvalues: 2 left without the 3 largest, and a fit needs 3")


def test_drop_top_and_clip_xmax_together_are_refused_as_analyze_refuses_them():
    # the drop_top fit had been returned and clip_xmax ignored without a word
    from htsr.errors import OptionError

    x = pareto_with_bulk(2000, 2.5, seed=0)
    with pytest.raises(OptionError, match="drop_top and clip_xmax both choose"):
        fit_power_law(x, clip_xmax=True, drop_top=2)


# ------------------------------------------------------------- known answers each line of the fit is held to
# (each test below fails for a one-point change of the code it names: a mutation the suite had let through)


def _pareto(n: int, alpha: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort((1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0)))


def test_fixed_xmin_D_sigma_and_tail_are_the_powerlaw_packages_and_the_closed_form():
    """At a fixed x_min: the tail is every value ≥ x_min (a reported x_min, an eigenvalue, refits to the same fit),
    D is the `powerlaw` package's (its empirical CDF steps at i/n), sigma is (α − 1)/√n."""
    powerlaw = pytest.importorskip("powerlaw")
    x = _pareto(1000, 3.0, 0)
    for xm in (1.2, float(x[300])):
        f = fit_power_law(x, xmin=xm)
        ref = powerlaw.Fit(x, xmin=xm, verbose=False)
        assert f.num_pl_spikes == ref.n_tail == int(np.sum(x >= xm))
        assert f.alpha == pytest.approx(ref.power_law.alpha, rel=1e-12)  # (the same MLE, summed in another order)
        assert f.D == pytest.approx(ref.power_law.D, rel=1e-9)  # (the same statistic; its CDF by another formula)
        assert f.sigma == pytest.approx((f.alpha - 1.0) / math.sqrt(f.num_pl_spikes), rel=1e-12)
    scanned = fit_power_law(x)
    again = fit_power_law(x, xmin=scanned.xmin)
    assert (again.xmin, again.num_pl_spikes) == (scanned.xmin, scanned.num_pl_spikes)
    # (the scan sums by cumulative sums, the fixed fit directly: the last digit may differ)
    assert again.alpha == pytest.approx(scanned.alpha, rel=1e-13) and again.D == pytest.approx(scanned.D, rel=1e-12)


def test_ks_scan_can_take_the_smallest_value_as_xmin():
    """A pure Pareto sample (seed 5) whose best x_min is its smallest value: the scan must try it, as the
    `powerlaw` package does (leaving it out gave x_min 1.078, a tail of 176)."""
    powerlaw = pytest.importorskip("powerlaw")
    x = _pareto(200, 3.0, 5)
    f = fit_power_law(x)
    ref = powerlaw.Fit(x, verbose=False)
    assert f.xmin == x[0] == ref.xmin and f.num_pl_spikes == 200
    assert f.alpha == pytest.approx(ref.power_law.alpha, rel=1e-12)  # (the same MLE, summed in another order)


def test_median_xmin_takes_the_top_half_for_even_and_odd_sizes():
    """'median': the tail is the top half, x_min the median eigenvalue (of an even count: the upper middle one)."""
    for n in (1000, 1001):
        x = _pareto(n, 3.0, 1)
        f = fit_power_law(x, xmin="median")
        assert f.num_pl_spikes == n - n // 2 and f.xmin == x[n // 2]


def test_peak_xmin_stays_below_its_bound_on_many_samples():
    """'peak': x_min among the candidates at most 1.5 × the log-histogram's peak (its bin's lower edge), on 20
    seeds (one seed had let a peak read at the upper edge through)."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y = np.sort(np.r_[rng.uniform(0.05, 1.0, 3000), (1.0 - rng.random(1000)) ** (-1.0 / 1.5)])
        counts, edges = np.histogram(np.log10(y), bins=100)
        peak = 10 ** edges[np.argmax(counts)]
        f = fit_power_law(y, xmin="peak")
        assert f.status == "ok" and f.xmin <= 1.5 * peak, seed


def _scan_best(x: np.ndarray, candidates: np.ndarray) -> float:
    """The x_min of the smallest D over ``candidates`` (indices into sorted ``x``), by WeightWatcher's loop."""
    alphas, Ds = _brute_force(x)
    Ds = np.where(alphas > 1, Ds, 1.0)
    return float(x[candidates[int(np.argmin(Ds[candidates]))]])


def test_peak_xmin_scans_the_candidates_up_to_1_5_times_the_log_histogram_peak():
    """xmin='peak': the KS scan over the candidates ≤ 1.5 × the peak of the 100-bin log10 histogram. This sample's
    best such candidate lies between 1.0 and 1.5 × the peak, so a bound at the peak itself gives another x_min."""
    rng = np.random.default_rng(1)
    x = np.sort(np.concatenate([rng.lognormal(0.0, 0.5, 300), 1.2 * (1 - rng.random(150)) ** (-1 / 1.5)]))
    counts, edges = np.histogram(np.log10(x), bins=100)
    peak = 10.0 ** edges[np.argmax(counts)]
    best = _scan_best(x, np.flatnonzero(x[:-1] <= 1.5 * peak))
    assert peak < best <= 1.5 * peak
    assert fit_power_law(x, xmin="peak").xmin == best  # exact: the same candidate
    # the histogram has 100 bins: on this sample (seed 12) a coarser one peaks elsewhere and bounds another scan
    rng = np.random.default_rng(12)
    x = np.sort(np.concatenate([rng.lognormal(0.0, 0.5, 300), 1.2 * (1 - rng.random(150)) ** (-1 / 1.5)]))
    bests = {}
    for bins in (100, 50):
        counts, edges = np.histogram(np.log10(x), bins=bins)
        bests[bins] = _scan_best(x, np.flatnonzero(x[:-1] <= 1.5 * 10.0 ** edges[np.argmax(counts)]))
    assert bests[100] != bests[50]  # (the setting this sample is for)
    assert fit_power_law(x, xmin="peak").xmin == bests[100]


def test_the_ks_candidates_are_every_value_but_the_largest():
    """x_min may be the second largest value (a tail of 2): here it has the smallest D (0.3647)."""
    x = np.array([0.05, 0.5, 1.9, 2.0])
    fit = fit_power_law(x)
    alphas, Ds = _brute_force(x)
    assert fit.xmin == _scan_best(x, np.arange(x.size - 1)) == 1.9
    np.testing.assert_allclose([fit.alpha, fit.D], [alphas[2], Ds[2]], rtol=1e-9)  # same formulas, another order


def test_the_exact_pass_evaluates_every_candidate_the_pruning_keeps(monkeypatch):
    """With the pruning off every candidate goes through the exact pass in chunks of 32; this sample's best is the
    33rd, the first of the second chunk."""
    from htsr.fits import powerlaw as P

    monkeypatch.setattr(P, "_strides", lambda n: ())
    rng = np.random.default_rng(0)
    x = np.sort(np.concatenate([rng.uniform(0.2, 1.0, 60), (1 - rng.random(60)) ** (-1 / 1.5)]))
    alphas, Ds = P.ks_scan(x)
    assert int(np.argmin(Ds)) == 32
    f = P.fit_power_law(x)
    assert f.xmin == x[32] and f.D == Ds[32]  # exact: the same expression on the same values


def test_drop_top_leaving_exactly_three_values_fits():
    """'a fit needs 3': three values left without the two largest are a fit."""
    f = fit_power_law(np.array([1.0, 2.0, 4.0, 8.0, 16.0]), xmin=1.0, drop_top=2)
    assert f.status == "ok" and f.num_pl_spikes == 3 and f.num_fingers == 2


@pytest.mark.parametrize("xmin", ["ks", "median", "peak", 1.0])
def test_every_x_min_path_returns_plain_python_numbers(xmin):
    """A fit's fields are float and int on every path (the fixed x_min's sigma had been np.float64, which prints
    as 'np.float64(0.83…)' in a fit's repr)."""
    f = fit_power_law(_pareto(300, 2.5, 0), xmin=xmin)
    assert f.status == "ok"
    assert [type(v) for v in (f.alpha, f.sigma, f.D, f.xmin, f.xmax, f.num_pl_spikes)] == [float] * 5 + [int]
    assert f.xmax == _pareto(300, 2.5, 0)[-1]  # the largest value: every path's tail runs to it


# ------------------------------------------------------------------ mutation round 19 (2026-12-06)
def test_clip_xmax_never_refits_fewer_than_three_values():
    """clip_xmax tries k = 1.. only while at least 3 values remain (as drop_top, whose error says 'a fit needs 3'):
    on 4 values only k = 1 is tried. Here the k = 2 refit (a 2-value 'tail') would drop alpha by 4.7 and be kept."""
    x = np.array([1.113, 3.176, 3.326, 4.769])
    f = fit_power_law(x, clip_xmax=True)
    assert f.status == "ok" and f.num_fingers <= 1
    assert x.size - f.num_fingers >= 3 and f.num_pl_spikes >= 2
    rng = np.random.default_rng(0)
    for _ in range(300):  # the rule on many small samples
        y = np.sort(rng.uniform(0.1, 1, 4) ** -rng.uniform(0.2, 3))
        g = fit_power_law(y, clip_xmax=True)
        assert g.status != "ok" or y.size - g.num_fingers >= 3


# ------------------------------------------------------------------ mutation round 42 (2026-12-06)
def test_tied_ks_distances_take_the_first_candidate():
    """[1, 1, 1, 2, 2, 3]: x_min = 1 (the whole sample) and x_min = 2 (the top three) both have D = 1/3 exactly (the
    empirical CDF's step 2/6 = 1/3 over a fitted CDF of 0 at the tied values). The first minimum is taken, as
    WeightWatcher's argmin and its loop do; the last one had given x_min 2 and a tail of 3, and no sample had a tie."""
    x = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 3.0])
    alphas, Ds = _brute_force(x)
    assert Ds[0] == Ds[3] == Ds.min()  # (the tie this test is about, in WeightWatcher's own loop)
    f = fit_power_law(x)
    assert (f.xmin, f.num_pl_spikes) == (1.0, 6) and f.D == pytest.approx(1 / 3, rel=1e-15)  # (2/6: one rounding)
    assert f.alpha == pytest.approx(alphas[0], rel=1e-12)  # (the same closed form, summed in another order)


def test_a_fixed_xmin_with_one_value_above_it_or_a_tail_all_at_xmin_fails_saying_why():
    """A fixed x_min between the two largest values leaves one value: no fit (it had been fitted, alpha from a
    single log). A tail of values all equal to x_min has Σ ln(λ/x_min) = 0: failed with the reason (it had raised
    ZeroDivisionError)."""
    x = np.array([1.0, 2.0, 3.0, 5.0, 8.0])
    assert fit_power_law(x, xmin=6.0).status == "fit_failed: fewer than 2 eigenvalues above the fixed xmin 6"
    assert fit_power_law(x, xmin=5.0).status == "ok"  # (two values: fitted)
    tied = np.array([1.0, 2.0, 3.0, 5.0, 5.0])
    f = fit_power_law(tied, xmin=5.0)
    assert f.status == "fit_failed: all tail eigenvalues equal the fixed xmin" and math.isnan(f.alpha)


def test_drop_top_counts_what_is_left_and_leaves_a_failed_fit_as_it_is():
    """drop_top beyond the sample says 0 are left (not a negative count); a fit that fails on every eigenvalue fails
    the same way with drop_top, with no fingers counted (it had refitted the rest and counted k fingers)."""
    x = np.array([1.0, 2.0, 3.0, 5.0, 8.0])
    assert fit_power_law(x, drop_top=7).status == (
        "fit_failed: 5 eigenvalues: 0 left without the 7 largest, and a fit needs 3")
    flat = 1.0 + np.linspace(0.0, 1e-5, 50)  # (a flat spectrum: FLAT_SPREAD)
    f, g = fit_power_law(flat, drop_top=2), fit_power_law(flat)
    assert f.status == g.status and g.status.startswith("fit_failed: a flat spectrum")
    assert f.num_fingers == 0 and math.isnan(f.raw_alpha)


def test_a_refit_drop_top_fails_says_what_drop_top_left_out():
    """A fixed x_min with 4 eigenvalues at or above it, the 3 largest dropped: the refit's 'fewer than 2 eigenvalues
    above the fixed xmin' is about the rest, and had read as if the layer had fewer than 2 (h41)."""
    x = np.r_[np.linspace(0.1, 1.0, 60), 5.0, 6.0, 7.0, 8.0]
    assert fit_power_law(x, xmin=5.0).num_pl_spikes == 4
    assert fit_power_law(x, xmin=5.0, drop_top=3).status == (
        "fit_failed: without the 3 largest eigenvalues (drop_top): fewer than 2 eigenvalues above the fixed xmin 5; "
        "with them, 4 lie at or above x_min 5")


def test_x_min_inside_a_run_of_equal_values_takes_the_whole_run():
    """Singular values 1 (× 75) and 2 (× 75): the scan had put x_min at the value 1 from inside its run, fitting
    128 of the 150 eigenvalues ≥ it (alpha 2.2311, num_pl_spikes 128): no tail THEORY §3 defines (h55). The tail
    is every λ ≥ x_min: alpha = 1 + n / Σ ln(λ / x_min) over all 150."""
    ev = np.array([1.0] * 75 + [4.0] * 75)
    fit = fit_power_law(ev)
    tail = ev[ev >= fit.xmin]
    assert fit.num_pl_spikes == tail.size
    assert fit.alpha == pytest.approx(1 + tail.size / np.sum(np.log(tail / fit.xmin)), rel=1e-12)  # (summation)
    assert (fit.xmin, fit.num_pl_spikes) == (1.0, 150) and fit.alpha == pytest.approx(1 + 150 / (75 * np.log(4)))
    # a median x_min inside the run takes it whole too; values apart by a solver's rounding (1e-7) are one run
    for x in (np.array([0.5] * 10 + [1.0] * 75 + [4.0] * 75), np.array([0.5] * 10 + [1.0] * 75 + [4.0] * 75)
              * (1 + 1e-7 * np.arange(160))):
        fit = fit_power_law(x, xmin="median")
        assert fit.num_pl_spikes == 150 and fit.xmin == x[10]
