"""The numeric core's public functions given what a library user passes: torch tensors, lists, unsorted or
descending eigenvalues, and bad arguments, each refused in one htsr error naming the function and argument."""

from __future__ import annotations

import numpy as np
import pytest

import htsr
from htsr.errors import OptionError
from htsr.fits import bayesian_alpha_averaged, bootstrap_power_law, compare_tails, fit_power_law
from htsr.fits.powerlaw import ks_scan
from htsr.rmt import fit_mp, localization, mp_cdf, mp_quantiles, num_zero_evals, randomize
from htsr.rmt.setol import erg_eigenvalues
from htsr.spectra import esd, matrix_eigenvalues
from conftest import matrix_with_singular_values


def test_esd_takes_a_torch_tensor_a_list_of_them_and_rows_of_numbers():
    """A torch weight had raised torch's TypeError (np.sum with a numpy dtype), rows of numbers an AttributeError,
    and a 1-D array of 5 had been iterated as scalars ('got shape ()')."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    W = torch.nn.Linear(100, 300).weight  # (requires grad: detached)
    ref = esd(W.detach().numpy())
    for given in (W, [W], [W.detach().numpy()]):
        np.testing.assert_array_equal(esd(given).evals, ref.evals)  # the same float32 values: exactly
    bf16 = esd(W.to(torch.bfloat16))  # (numpy has no bfloat16: read as float32, the values exactly)
    np.testing.assert_array_equal(bf16.evals, esd(W.to(torch.bfloat16).float().detach().numpy()).evals)
    rows = esd([[1.0, 2.0], [3.0, 4.0]], precision="accurate")
    np.testing.assert_allclose(rows.evals, np.sort(np.linalg.svd([[1.0, 2.0], [3.0, 4.0]], compute_uv=False) ** 2),
                               rtol=1e-12)  # (the same float64 SVD)
    for bad, says in ((np.ones(5), r"got shape \(5,\)"), ([np.ones((3, 3)), np.ones(4)], r"matrix 1 has shape \(4,\)"),
                      (np.ones((3, 3), complex), "dtype complex128"), ([1, 2, 3], r"got shape \(3,\)"),
                      ([[1.0, 2.0], [3.0]], "rows are not all of one length")):  # (numpy's ValueError had escaped)
        with pytest.raises(OptionError, match=says):
            esd(bad)


def test_matrix_eigenvalues_checks_its_options_and_has_no_minus_one():
    W = matrix_with_singular_values(np.linspace(1, 2, 50), 100, 50).astype(np.float32)
    with pytest.raises(OptionError, match="matrix_eigenvalues: precision must be"):
        matrix_eigenvalues(W, precision="bogus")  # (it had run the fast path)
    with pytest.raises(OptionError, match="matrix_eigenvalues: refine_fraction must be"):
        matrix_eigenvalues(W, refine_fraction=5)
    _, _, tol, method = matrix_eigenvalues(W)
    assert method == "gram32" and tol == -np.inf  # every eigenvalue counts (it had been the sentinel -1)


def test_sample_arguments_are_one_layer_s_positive_values():
    """Zeros, negatives and NaN had moved bootstrap_power_law's interval without a word (fit_power_law refuses the
    same x); a 2-D array or None gave numpy's 'truth value … ambiguous' or an AxisError."""
    rng = np.random.default_rng(0)
    x = np.sort((1 - rng.random(500)) ** (-1 / 1.5))  # Pareto, density exponent 2.5
    fit = fit_power_law(x)
    assert fit.status == "ok"
    for bad, says in ((np.r_[np.zeros(100), x], "100 of the 600 x are NaN, infinite or not positive"),
                      (np.r_[x, np.nan], "1 of the 501 x are NaN"), (x.reshape(20, 25), r"shape \(20, 25\)")):
        with pytest.raises(OptionError, match=says):
            bootstrap_power_law(bad, fit, 20)
    with pytest.raises(OptionError, match="fit must be fit_power_law's result"):
        bootstrap_power_law(x, None, 20)
    with pytest.raises(OptionError, match="fdb must be True or False"):
        bootstrap_power_law(x, fit, 20, fdb="no")
    assert np.isnan(bootstrap_power_law(x[:0], fit, 20).alpha_lo)  # (an empty sample: undefined, no IndexError)
    for call in (lambda: fit_power_law(x.reshape(20, 25)), lambda: fit_power_law(None),
                 lambda: bayesian_alpha_averaged(x.reshape(20, 25)), lambda: fit_mp(x.reshape(20, 25), 400, 200)):
        with pytest.raises(OptionError, match="1-D"):
            call()
    torch = pytest.importorskip("torch")
    assert fit_power_law(torch.from_numpy(x)).alpha == fit.alpha  # (float64 either way: exactly)
    # a single value: no test can be made, so no best fit (it had said 'power_law')
    assert compare_tails(x[-1:], fit.alpha, float(x[-1])).best_fit == ""
    with pytest.raises(OptionError, match="sorted ascending"):
        ks_scan(x[::-1])


def test_descending_eigenvalues_count_the_same_zeros_and_erg_space():
    """numpy's SVD gives them descending: num_zero_evals had counted 0 zeros of 180, and erg_eigenvalues had
    taken the zeros for the 20 largest."""
    W = matrix_with_singular_values(np.linspace(1, 3, 20), 400, 200)
    ev = np.sort(np.linalg.svd(W, compute_uv=False) ** 2)
    assert num_zero_evals(ev, 400, 200) == num_zero_evals(ev[::-1], 400, 200) == 180
    np.testing.assert_array_equal(erg_eigenvalues(ev[::-1], 20), erg_eigenvalues(ev, 20))
    assert erg_eigenvalues(ev, 20).min() > 0.5


def test_randomize_and_localization_take_one_array_and_check_the_sides():
    """Sides that are not the matrices' had given 154 false traps on pure noise; one 2-D array had been iterated
    by rows; a negative seed had raised numpy's error."""
    W = np.random.default_rng(1).standard_normal((400, 200))
    assert randomize(W, 400, 200).num_traps == randomize([W], 400, 200).num_traps == 0
    with pytest.raises(OptionError, match="N=40 and M=20 must be the matrices' larger and smaller sides, 400 and 200"):
        randomize([W], 40, 20)
    with pytest.raises(OptionError, match="randomize: seed must be"):
        randomize([W], 400, 200, seed=-1)
    assert localization(W, 10) == localization([W], 10)


def test_the_mp_law_s_parameters_are_checked():
    for call, says in ((lambda: mp_quantiles(np.array([1.5, -0.5]), 2.0), r"probs must lie in \[0, 1\]"),
                       (lambda: mp_cdf([0.1, 1.0], 2.0, sigma2=0), "sigma2 must be a finite number > 0"),
                       (lambda: mp_cdf(1.0, 0), "Q must be a finite number >= 1"),
                       (lambda: mp_cdf(1.0, 0.5), "Q must be a finite number >= 1"),
                       (lambda: fit_mp(np.ones(10), 20, 10, tw_margin=-100), "fit_mp: tw_margin must be"),
                       (lambda: fit_mp(np.ones(10), 20, 10, scale=0), "fit_mp: scale must be")):
        with pytest.raises(OptionError, match=says):
            call()


def test_every_argument_error_is_an_htsr_error():
    """errors.py: every error a user can cause derives from HtsrError; the numeric core had raised plain
    ValueErrors beside OptionErrors, so 'except htsr.HtsrError' missed half of them."""
    x = np.sort(np.random.default_rng(2).pareto(1.5, 300) + 1)
    for call in (lambda: esd(np.ones((5, 5)), scale=0), lambda: fit_power_law(np.r_[0.0, x]),
                 lambda: compare_tails(x, 0.5, 1.0), lambda: fit_mp(x, 0, 5),
                 lambda: bayesian_alpha_averaged(x, min_tail=0)):
        with pytest.raises(htsr.HtsrError):
            call()
