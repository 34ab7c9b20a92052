"""SETOL's ERG (det X = 1) tail and layer-quality closed forms (htsr.rmt.setol, THEORY §7)."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from conftest import pareto_with_bulk

import htsr
from htsr.rmt.setol import ERGResult, delta_lambda_min, erg_tail, layer_quality

# The normalised edge is computed as λ/λ_max/mean(λ/λ_max): a sum of ≤ 30 terms plus two divisions,
# so its relative error against the exactly rounded value is ≤ ~(n + 3)·2⁻⁵³ < 1e-14. 1e-13 leaves
# a margin and would still catch any wrong eigenvalue or wrong normalisation (errors ≥ 1e-3 here).
EDGE_RTOL = 1e-13


def brute_force(evals: np.ndarray) -> tuple[int, Fraction | None, float]:
    """The literal definition in exact arithmetic: normalise to mean 1 with Fractions, walk down from
    the largest keeping the running PRODUCT, stop at the first product < 1 (included).
    Returns (num_erg, normalised edge, raw edge); (0, None, nan) when the product never drops."""
    x = sorted(float(v) for v in evals)
    n = len(x)
    fr = [Fraction(v) for v in x]
    total = sum(fr)
    norm = [v * n / total for v in fr]
    prod = Fraction(1)
    for k in range(n - 1, -1, -1):
        prod *= norm[k]
        if prod < 1:
            return n - k, norm[k], x[k]
    return 0, None, math.nan


def ww_detx_constraint(evals: np.ndarray) -> tuple[int, int]:
    """WeightWatcher 0.7.7 RMT_Util.detX_constraint (rescale=True), copied verbatim in logic."""
    if evals is None or len(evals) < 2:
        return 0, 0
    if not (evals[0] < evals[-1]):
        return 0, 0
    num_evals = len(evals)
    idx = 0
    evals = evals * (len(evals) / np.sum(evals))  # rescale_eigenvalues: (√N/√Σλ)² · λ
    for idx in range(len(evals) - 1, 0, -1):
        detX = np.prod(evals[idx:])
        if detX < 1.0:
            num_evals = len(evals) - idx
            break
    return num_evals, idx


def random_spectrum(rng: np.random.Generator) -> np.ndarray:
    """A small spectrum (2..30 values) from a mixture of shapes, sometimes with zeros and ties."""
    n = int(rng.integers(2, 31))
    kind = rng.integers(0, 5)
    if kind == 0:
        x = rng.uniform(0.0, 1.0, n)
    elif kind == 1:
        x = rng.lognormal(0.0, rng.uniform(0.1, 3.0), n)
    elif kind == 2:  # Pareto tail, density exponent in (1.2, 4): heavy-tailed
        a = rng.uniform(1.2, 4.0)
        x = (1.0 - rng.random(n)) ** (-1.0 / (a - 1.0))
    elif kind == 3:  # MP-like bulk plus a few large spikes
        x = rng.uniform(0.05, 1.0, n)
        k = int(rng.integers(1, max(2, n // 3) + 1))
        x[:k] = rng.uniform(5.0, 500.0, k)
    else:  # very wide: values spanning ~15 decades
        x = 10.0 ** rng.uniform(-8.0, 7.0, n)
    x = x * 10.0 ** rng.uniform(-5.0, 5.0)  # arbitrary scale
    if rng.random() < 0.3 and n > 2:  # ties: copy some values onto others
        m = int(rng.integers(1, n // 2 + 1))
        src = rng.integers(0, n, m)
        dst = rng.integers(0, n, m)
        x[dst] = x[src]
    if rng.random() < 0.25 and n > 2:  # zeros (rank-deficient layer)
        m = int(rng.integers(1, n - 1))
        x[rng.choice(n, m, replace=False)] = 0.0
    return np.sort(x)


def _assert_matches_brute(x: np.ndarray) -> ERGResult:
    r = erg_tail(x)
    num, edge_norm, edge_raw = brute_force(x)
    assert r.num_erg == num, (x, r)
    if num == 0:
        assert r.status.startswith("undefined"), (x, r)
        assert math.isnan(r.erg_lambda_min) and math.isnan(r.erg_lambda_min_raw)
    else:
        assert r.status == ""
        assert r.erg_lambda_min_raw == edge_raw  # the same input eigenvalue: exact
        assert math.isclose(r.erg_lambda_min, float(edge_norm), rel_tol=EDGE_RTOL, abs_tol=0.0), (x, r)
    return r


def test_erg_matches_brute_force_product_on_random_spectra():
    rng = np.random.default_rng(20250601)
    kinds = {"zeros": 0, "ties": 0, "whole": 0, "undefined": 0}
    for _ in range(1000):
        x = random_spectrum(rng)
        r = _assert_matches_brute(x)
        kinds["zeros"] += bool(np.any(x == 0))
        kinds["ties"] += len(np.unique(x)) < len(x)
        kinds["whole"] += r.num_erg == len(x)
        kinds["undefined"] += r.num_erg == 0
    # the mixture really exercised the special cases
    assert kinds["zeros"] > 50 and kinds["ties"] > 100 and kinds["whole"] > 10


def test_erg_agrees_with_weightwatcher_077_where_ww_is_sound():
    """Same count and edge index as WW's detX_constraint, except WW's documented quirk: when the tail
    is the whole spectrum WW returns idx = 1 (it never tests idx = 0)."""
    rng = np.random.default_rng(77)
    for _ in range(300):
        x = random_spectrum(rng)
        r = erg_tail(x)
        ww_num, ww_idx = ww_detx_constraint(x)
        n = len(x)
        if r.num_erg == 0:  # only flat spectra here (all equal)
            assert (ww_num, ww_idx) == (0, 0)
        elif r.num_erg == n:
            assert (ww_num, ww_idx) == (n, 1)
        else:
            assert (ww_num, ww_idx) == (r.num_erg, n - r.num_erg)


def test_ww_quirk_whole_spectrum():
    # mean 1 already; ln 1.6 + ln 1.3 > 0, adding ln 0.1 < 0: the tail is all three
    x = np.array([0.1, 1.3, 1.6])
    assert ww_detx_constraint(x) == (3, 1)  # WW: count 3 but edge index 1
    r = erg_tail(x)
    assert (r.num_erg, r.erg_lambda_min_raw, r.status) == (3, 0.1, "")


def test_erg_large_heavy_tailed_spectrum_where_the_product_overflows():
    x = np.sort(pareto_with_bulk(20_000, alpha=2.0, tail_fraction=0.5, seed=3))
    assert x.max() / x.min() > 1e5  # spans many decades
    n = len(x)
    xn = x * (n / x.sum())

    r = erg_tail(x)
    assert r.status == "" and 1 < r.num_erg < n
    assert math.isfinite(r.erg_lambda_min) and math.isfinite(r.erg_lambda_min_raw)

    # the hazard: the product of the top normalised eigenvalues overflows inside the ERG tail ...
    with np.errstate(over="ignore"):
        top = xn[::-1][: r.num_erg]
        assert np.isinf(np.prod(top[: r.num_erg // 2]))
        running_product = np.cumprod(top)
    assert np.isinf(running_product[-1])
    # ... so a product-based walk never sees it drop below 1 and would call the whole layer the tail
    assert not np.any(running_product < 1.0)
    # WW's literal loop is silently wrong: np.prod's blocked reduction mixes lanes that overflow to
    # inf with lanes that underflow to 0, so the product "drops below 1" at a meaningless index
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        ww = ww_detx_constraint(x)
    assert ww != (r.num_erg, n - r.num_erg)

    # independent reference: 50-digit mpmath, normalisation and log-sum in a plain Python loop
    mpmath.mp.dps = 50
    total = mpmath.fsum(mpmath.mpf(float(v)) for v in x)
    running = mpmath.mpf(0)
    prev = None
    num_ref = 0
    for k in range(n - 1, -1, -1):
        norm = mpmath.mpf(float(x[k])) * n / total
        prev = running
        running += mpmath.log(norm)
        if running < 0:
            num_ref = n - k
            edge_ref = norm
            break
    assert r.num_erg == num_ref
    # the crossing is not a near-tie, so float64 rounding (~1e-10 absolute on a sum of 10⁴ logs)
    # cannot move it: the sum is clearly ≥ 0 before and clearly < 0 after
    assert prev > 1e-6 and running < -1e-6
    # edge: λ/λ_max/mean over 20 000 terms, relative rounding ≲ 20 000·2⁻⁵³ ≈ 2e-12
    assert math.isclose(r.erg_lambda_min, float(edge_ref), rel_tol=1e-11)
    assert r.erg_lambda_min_raw == x[n - num_ref]


def test_erg_hand_computed():
    # mean 1.2 → λ̃ = [0, 0, 5/6, 5/3, 5/2]; log-sums from the top: 0.916, 1.427, 1.245, −∞
    r = erg_tail(np.array([0.0, 0.0, 1.0, 2.0, 3.0]))
    assert (r.num_erg, r.erg_lambda_min, r.erg_lambda_min_raw, r.status) == (4, 0.0, 0.0, "")
    # mean 2 → λ̃ = [1/4, 1/2, 5/4, 2]: ln 2 = 0.693, + ln 1.25 = 0.916, + ln 0.5 = 0.223,
    # + ln 0.25 = −1.163 → the whole spectrum
    r = erg_tail(np.array([0.5, 1.0, 2.5, 4.0]))
    assert (r.num_erg, r.erg_lambda_min_raw) == (4, 0.5)
    assert r.erg_lambda_min == pytest.approx(0.25, rel=1e-15)  # sum, mean exact; ≤ 1 ulp from the divisions
    # mean 1 → λ̃ = [0.2, 0.3, 0.5, 3]: ln 3 = 1.099, + ln 0.5 = 0.405, + ln 0.3 = −0.799 → 3
    r = erg_tail(np.array([0.2, 0.3, 0.5, 3.0]))
    assert (r.num_erg, r.erg_lambda_min_raw) == (3, 0.3)
    assert r.erg_lambda_min == pytest.approx(0.3, rel=1e-15)  # mean of exactly-1 floats: ≤ 1 ulp


def test_erg_exact_threshold_is_strict():
    # powers of two: λ̃ = [1/2, 1/2, 1, 1, 2] exactly, and ln ½ = −ln 2 exactly in floating point, so
    # the log-sum is exactly 0 (not < 0) after the first ½ and the tail needs the second ½ too
    r = erg_tail(np.array([0.5, 0.5, 1.0, 1.0, 2.0]))
    assert (r.num_erg, r.erg_lambda_min, r.status) == (5, 0.5, "")
    assert brute_force(np.array([0.5, 0.5, 1.0, 1.0, 2.0]))[0] == 5
    # and a log-sum just below 0 is a drop, with no tolerance: sum 4 (mean 1, to a few ulp), λ̃ from the top 3.2,
    # (1 − δ)/3.2 give ln(1 − δ) ≈ −1e-10, far beyond the ~1e-15 rounding of the normalisation and the logs: the
    # tail is those 2 (a cut at −1e-9 had walked on to the next, 0.25)
    d = 1e-10
    x = np.array([0.2375 + 0.3125 * d, 0.25, 0.3125 * (1 - d), 3.2])
    r = erg_tail(x)
    assert (r.num_erg, r.erg_lambda_min_raw, r.status) == (2, 0.3125 * (1 - d), "")
    assert brute_force(x)[0] == 2


def test_erg_input_order_does_not_matter():
    x = np.array([3.0, 0.0, 2.0, 1.0, 0.0])
    assert erg_tail(x) == erg_tail(np.sort(x))


@pytest.mark.parametrize(
    "evals, reason",
    [
        ([2.5] * 7, "all eigenvalues equal"),
        ([1e-300] * 3, "all eigenvalues equal"),
        ([0.0, 0.0, 0.0], "zero spectrum"),
        ([4.0], "fewer than 2 eigenvalues"),
        ([], "fewer than 2 eigenvalues"),
        ([0.0, 1.0, np.nan], "non-finite or negative eigenvalues"),
        ([0.0, 1.0, np.inf], "non-finite or negative eigenvalues"),
        ([-1e-3, 1.0, 2.0], "non-finite or negative eigenvalues"),
    ],
)
def test_erg_undefined(evals, reason):
    r = erg_tail(np.array(evals, dtype=float))
    assert r.status == f"undefined: {reason}"
    assert r.num_erg == 0 and not r.defined
    assert math.isnan(r.erg_lambda_min) and math.isnan(r.erg_lambda_min_raw)


def test_erg_equal_nonzero_with_zeros_is_defined():
    # [0, a, a]: λ̃ = [0, 1.5, 1.5]; the log-sum stays > 0 until the zero → tail = all 3
    r = erg_tail(np.array([0.0, 7.0, 7.0]))
    assert (r.num_erg, r.erg_lambda_min_raw, r.erg_lambda_min) == (3, 0.0, 0.0)


@pytest.mark.parametrize("c", [1e-200, 1e-7, 3.0, 1e150])
def test_erg_scale_invariance(c):
    rng = np.random.default_rng(5)
    for _ in range(50):
        x = random_spectrum(rng)
        r, rc = erg_tail(x), erg_tail(x * c)
        assert rc.num_erg == r.num_erg and rc.status == r.status
        if r.num_erg:
            # λ̃ is computed from x·c: a few extra roundings (sum of ≤ 30 terms) → ≤ 1e-13 relative
            assert math.isclose(rc.erg_lambda_min, r.erg_lambda_min, rel_tol=EDGE_RTOL)
            # the raw edge is the input value x[i]·c itself
            assert rc.erg_lambda_min_raw == x[len(x) - r.num_erg] * c


def test_erg_no_overflow_at_extreme_scale():
    # Σλ overflows float64 here; the normalisation divides by λ_max first
    x = np.array([1e-5, 1e307, 1e308, 1.5e308])
    with np.errstate(over="raise"):
        r = erg_tail(x)
    assert r.status == "" and r.num_erg == brute_force(x)[0]


def test_delta_lambda_min():
    erg = ERGResult(12, 0.75, 3.0, "")
    assert delta_lambda_min(1.25, erg) == 0.5  # 1.25 − 0.75, exact in binary
    assert delta_lambda_min(0.5, erg) == -0.25
    r = erg_tail(np.array([0.2, 0.3, 0.5, 3.0]))  # edge λ̃ = 0.3 (mean 1)
    assert delta_lambda_min(0.3, r) == pytest.approx(0.0, abs=1e-15)  # mean 1 to ≤ 1 ulp
    undefined = erg_tail(np.ones(4))
    assert math.isnan(delta_lambda_min(1.0, undefined))
    for bad in (math.nan, math.inf, None, "n/a"):  # (a text cell read back from a table: NaN, not ValueError)
        assert math.isnan(delta_lambda_min(bad, erg))
    # an ERG result whose status says undefined is undefined whatever edge it carries
    assert math.isnan(delta_lambda_min(1.25, ERGResult(12, 0.75, 3.0, "undefined: read back")))


def test_layer_quality_hand_computed():
    q = layer_quality(alpha=2.0, lambda_max=100.0, xmin=1.0)
    assert set(q) == {"logq_free_cauchy", "logq_levy_wigner", "logq_inverse_mp"}
    # log10 of exact powers of ten is exact; products with small integers are exact
    assert q["logq_free_cauchy"] == 2.0
    assert q["logq_levy_wigner"] == 2.0  # (2 − 1)·2: equals free Cauchy at α = 2
    assert q["logq_inverse_mp"] == 8.0  # 2·2·(2 − 0)

    q = layer_quality(alpha=1.5, lambda_max=1000.0, xmin=10.0)
    assert q["logq_free_cauchy"] == 3.0
    assert q["logq_levy_wigner"] == 1.5  # 0.5·3
    assert q["logq_inverse_mp"] == 6.0  # 3·(3 − 1)

    q = layer_quality(alpha=3.0, lambda_max=0.5, xmin=0.05)
    # log10 0.5 and log10 0.05 are rounded: 1e-15 absolute covers a few ulp of values of size ~1
    assert q["logq_free_cauchy"] == pytest.approx(-math.log10(2), abs=1e-15)
    assert q["logq_levy_wigner"] == pytest.approx(-2 * math.log10(2), abs=1e-15)
    assert q["logq_inverse_mp"] == pytest.approx(6.0, abs=1e-14)  # 6·(log10 0.5 − log10 0.05)


def test_layer_quality_nan_handling():
    nan = math.nan
    q = layer_quality(alpha=nan, lambda_max=100.0, xmin=1.0)  # failed fit: only free Cauchy survives
    assert q["logq_free_cauchy"] == 2.0
    assert math.isnan(q["logq_levy_wigner"]) and math.isnan(q["logq_inverse_mp"])
    q = layer_quality(alpha=2.0, lambda_max=100.0, xmin=0.0)  # x_min must be > 0
    assert q["logq_free_cauchy"] == 2.0 and q["logq_levy_wigner"] == 2.0
    assert math.isnan(q["logq_inverse_mp"])
    for lmax in (nan, 0.0, -1.0, math.inf, None):
        q = layer_quality(alpha=2.0, lambda_max=lmax, xmin=1.0)
        assert all(math.isnan(v) for v in q.values())
    for a in (-2.0, 0.0, math.inf, "n/a"):  # (text: NaN, not ValueError)
        q = layer_quality(alpha=a, lambda_max=100.0, xmin=1.0)
        assert math.isnan(q["logq_levy_wigner"]) and math.isnan(q["logq_inverse_mp"])
        assert q["logq_free_cauchy"] == 2.0


def test_a_flat_spectrum_has_no_erg_tail_at_any_scale():
    # an orthogonal layer's eigenvalues differ by its eigensolver's rounding: its ERG count had been that rounding
    # (80 at scale 1e-10, 56 at 1, undefined at 1e-3), and ln x − ln mean had cancelled to ~1e-13 far from scale 1
    Q, _ = np.linalg.qr(np.random.default_rng(7).standard_normal((100, 100)))
    for k in (1e-10, 1e-3, 1.0, 1e3, 1e10):
        r = htsr.analyze({"q.weight": Q * k}, precision="accurate").layers[0]
        assert math.isnan(r.num_erg) and math.isnan(r.erg_lambda_min)
    # the status says what flat means: within FLAT_SPREAD (1e-4) of the largest, relative
    assert erg_tail(np.array([1.0, 1.00000002]) * 1e-100).status == \
        "undefined: a flat spectrum: every eigenvalue within 0.0001 of the largest"
    # 'within' includes the bound: 10⁴ − 9999 = 1 = 1e-4·10⁴ exactly in binary is flat; a spread of 2 is not
    assert erg_tail(np.array([9999.0, 10000.0])).status.startswith("undefined: a flat spectrum")
    assert erg_tail(np.array([9998.0, 10000.0])).status == ""
    # and a spectrum that is not flat gives the same edge at every scale, to rounding
    x = np.sort(np.random.default_rng(3).pareto(2.0, 500) + 1.0)
    ref = erg_tail(x)
    for k in (1e-200, 1e-5, 1e5, 1e200):
        r = erg_tail(x * k)
        # (λ·n/Σλ: the scaling's rounding only)
        assert r.num_erg == ref.num_erg and r.erg_lambda_min == pytest.approx(ref.erg_lambda_min, rel=1e-12)


def test_erg_eigenvalues_leave_out_zeros_from_exactly_their_share():
    """ERG_ZERO_SHARE (10 %) zeros at float32 precision or more are left out (the walk over the rest); fewer stay in
    with the rank's eigenvalues: 10 of 100 is the share, 9 of 100 is not."""
    from htsr.rmt.setol import erg_eigenvalues

    ev = np.sort(np.r_[np.full(10, 1e-17), np.linspace(0.1, 1.0, 90)])
    assert erg_eigenvalues(ev, rank=100, num_zero=10).size == 90
    assert erg_eigenvalues(ev[1:], rank=99, num_zero=9).size == 99


def test_a_row_s_delta_lambda_min_is_its_xmin_over_the_mean_less_the_erg_edge():
    """Δλ_min = x_min·n/Σλ − λ̃_min^ERG over the eigenvalues the ERG walk takes (THEORY §7): every one of a
    full-rank layer's; a rank-40 layer's 40 nonzero ones (its 60 zeros would cut the mean 2.5-fold, and a share
    of x_min/Σλ alone would be off by n)."""
    rng = np.random.default_rng(5)
    full = rng.standard_t(3.0, size=(150, 100))
    low = rng.standard_t(3.0, size=(150, 40)) @ rng.standard_normal((40, 100))
    r = htsr.analyze({"full.weight": full, "low.weight": low}, keep_spectra=True, precision="accurate", min_evals=20)
    for row, spec, n in zip(r.layers, r.spectra, (100, 40)):
        assert row.status == "ok" and row.matrix_rank == n, row.name
        live = spec.evals[-n:]
        want = row.xmin * n / live.sum() - row.erg_lambda_min
        assert row.erg_delta_lambda_min == pytest.approx(want, rel=1e-12), row.name  # the same sums: rounding


def test_erg_eigenvalues_take_at_least_one_and_at_most_all():
    """The rank's largest of ascending eigenvalues, clamped: rank 0 still gives the largest one ("at least one"),
    a rank above the size gives them all (a negative start had wrapped to the last few), 3 gives the top 3."""
    from htsr.rmt.setol import erg_eigenvalues

    ev = np.arange(1.0, 11.0)
    assert erg_eigenvalues(ev, rank=0).tolist() == [10.0]
    assert erg_eigenvalues(ev, rank=3).tolist() == [8.0, 9.0, 10.0]
    assert erg_eigenvalues(ev, rank=10).tolist() == ev.tolist()
    assert erg_eigenvalues(ev, rank=12).tolist() == ev.tolist()
    # 2 zeros of 10 (20 % ≥ ERG_ZERO_SHARE): all but them, whatever the rank says
    assert erg_eigenvalues(np.r_[0.0, 0.0, ev[2:]], rank=10, num_zero=2).tolist() == ev[2:].tolist()


def test_erg_of_float32_eigenvalues_is_computed_in_float64():
    """A float32 spectrum (a float32 layer's eigenvalues) gives exactly the result of the same values in float64:
    the normalisation and the log-sum had run in float32 (edges off by ~1e-8 relative, counts able to move)."""
    x = np.sort(np.random.default_rng(2).lognormal(0.0, 1.5, 50)).astype(np.float32)
    r, r64 = erg_tail(x), erg_tail(x.astype(np.float64))
    assert r.status == "" and 1 < r.num_erg < 50
    assert (r.num_erg, r.erg_lambda_min, r.erg_lambda_min_raw) == (r64.num_erg, r64.erg_lambda_min,
                                                                   r64.erg_lambda_min_raw)
    assert type(r.erg_lambda_min) is float
