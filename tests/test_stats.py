"""Statistics: bootstrap and binomial CIs, Holm, the discovery/
confirmation split."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.stats import beta, norm

from attnclaims import stats


def test_bootstrap_ci_contains_the_mean_and_is_deterministic():
    x = np.random.default_rng(1).normal(2.0, 1.0, 50)
    ci = stats.bootstrap_ci(x)
    assert ci.low <= x.mean() <= ci.high and ci.estimate == pytest.approx(x.mean()) and ci.n == 50
    assert stats.bootstrap_ci(x) == ci
    assert stats.bootstrap_ci(x, seed=1) != ci


def test_bootstrap_ci_narrows_with_n():
    rng = np.random.default_rng(2)
    small, large = stats.bootstrap_ci(rng.normal(size=20)), stats.bootstrap_ci(rng.normal(size=2000))
    assert (large.high - large.low) < (small.high - small.low) / 5


def test_cis_take_tensors_of_any_float_dtype():
    import torch

    values = torch.tensor([0.6055, 0.6211, 0.6133, 0.6250], dtype=torch.bfloat16)  # a --dtype bfloat16 run
    assert stats.bootstrap_ci(values).estimate == pytest.approx(float(values.double().mean()))


def test_two_sample_and_paired_differences():
    a, b = np.arange(10.0), np.arange(10.0) - 3
    assert stats.bootstrap_ci_diff(a, b) == stats.bootstrap_ci(a - b)
    two = stats.bootstrap_ci_two_sample(a + 10, a)
    assert two.estimate == pytest.approx(10.0) and two.low < 10 < two.high


@pytest.mark.parametrize("k, n", [(3, 10), (0, 8), (8, 8), (1, 1), (5, 9)])
def test_clopper_pearson_equals_the_beta_quantiles(k, n):
    """The exact interval: low = Beta(a/2; k, n-k+1), high = Beta(1-a/2; k+1, n-k), 0 and 1 at the ends."""
    ci = stats.binomial_ci(k, n)
    assert ci.estimate == pytest.approx(k / n) and ci.n == n
    assert ci.low == pytest.approx(beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0, abs=1e-9)
    assert ci.high == pytest.approx(beta.ppf(0.975, k + 1, n - k) if k < n else 1.0, abs=1e-9)


@pytest.mark.parametrize("k, n", [(3, 10), (0, 8), (8, 8), (5, 9)])
def test_wilson_equals_the_score_interval_formula(k, n):
    z, phat = norm.ppf(0.975), k / n
    centre = (phat + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2))
    ci = stats.binomial_ci(k, n, method="wilson")
    assert (ci.low, ci.high) == pytest.approx((max(centre - half, 0.0), min(centre + half, 1.0)), abs=1e-9)


def test_binomial_ci_edges_and_known_values():
    assert stats.binomial_ci(0, 8).low == 0.0 and stats.binomial_ci(8, 8).high == 1.0
    assert stats.binomial_ci(0, 8).high == pytest.approx(1 - 0.025 ** (1 / 8))  # closed form at k = 0
    assert stats.binomial_ci(8, 8).low == pytest.approx(0.025 ** (1 / 8))
    wilson, exact = stats.binomial_ci(3, 10, method="wilson"), stats.binomial_ci(3, 10)
    assert exact.low < wilson.low < 0.3 < wilson.high < exact.high  # Wilson is shorter, inside the exact one
    assert stats.binomial_ci(3, 10, confidence=0.5).high < exact.high


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-10, 10), min_size=3, max_size=20),
    level=st.sampled_from([0.95, 0.99, 1 - 0.05 / 8, 1 - 0.05 / 30]),
    kind=st.sampled_from(["mean", "ratio", "two-sample"]),
)
@example(values=[3.920069245136755] * 3, level=0.95, kind="ratio")  # equal units: no spread, not rounding's
def test_a_bootstrap_ci_at_a_level_excludes_exactly_what_its_p_value_rejects(values, level, kind):
    """The simultaneous CIs of a confirmatory family and the p-values that Holm adjusts agree exactly: a
    threshold outside the (1 - alpha) interval has p < alpha, one inside (or on an end) has p >= alpha."""
    x = np.array(values)
    ci = {
        "mean": lambda: stats.bootstrap_ci(x),
        "ratio": lambda: stats.bootstrap_ratio_ci(x, np.abs(x) + 1),
        "two-sample": lambda: stats.bootstrap_ci_two_sample(x, x[::-1] ** 2 / 10),
    }[kind]().at(level)
    alpha = 1 - level
    assert ci.confidence == level and ci.method == ("fieller" if kind == "ratio" else "bootstrap-t")
    spread = ci.high - ci.low if np.isfinite(ci.high - ci.low) else 1.0
    step = 1e-6 * spread if spread > 0 else 1e-9 * max(1.0, abs(ci.estimate))
    for end, outward in ((ci.low, -1), (ci.high, 1)):
        if np.isfinite(end):
            assert ci.p_value(end + outward * step) < alpha
            if ci.high > ci.low:
                assert ci.p_value(end - outward * step) >= alpha
    if np.isfinite(ci.low) and np.isfinite(ci.high) and ci.high > ci.low:
        assert ci.p_value((ci.low + ci.high) / 2) >= alpha


def test_an_interval_the_data_cannot_bound_is_infinite():
    """At n = 5 and 99.9%, more than alpha / 2 of the resamples repeat one unit: no spread, no bound."""
    ci = stats.bootstrap_ci([0.1, 0.4, 0.35, 0.9, 0.2], confidence=0.999)
    assert ci.low == -np.inf and ci.high == np.inf
    assert np.isfinite(stats.bootstrap_ci([0.1, 0.4, 0.35, 0.9, 0.2], confidence=0.99).low)


def test_other_statistics_get_a_percentile_interval_and_say_so():
    ci = stats.bootstrap_ci(np.arange(10.0), statistic=np.median)
    assert ci.method == "percentile" and ci.low <= 4.5 <= ci.high and ci.at(0.99).method == "percentile"


def test_ci_at_another_level_widens_and_keeps_its_kind():
    wide = stats.bootstrap_ci(np.arange(12.0)).at(0.995)
    narrow = stats.bootstrap_ci(np.arange(12.0))
    assert wide.low < narrow.low and wide.high > narrow.high and wide.confidence == 0.995
    two = stats.bootstrap_ci_two_sample([1.0, 2, 3, 4], [0.0, 1, 1, 2])
    assert two.at(0.99).high > two.high
    assert stats.bootstrap_ci(np.arange(12.0)).at(0.95) == narrow
    with pytest.raises(TypeError, match="built by hand"):
        stats.CI(1.0, 0.5, 1.5, 8).at(0.99)
    with pytest.raises(TypeError, match="no p-value"):
        stats.CI(1.0, 0.5, 1.5, 8).p_value(0.0)


def test_clopper_pearson_p_value_is_the_test_the_interval_inverts():
    ci = stats.binomial_ci(7, 10)  # [0.348, 0.933]
    assert ci.p_value(ci.low - 1e-3) < 0.05 < ci.p_value(ci.low + 1e-3)
    assert ci.p_value(ci.high + 1e-3) < 0.05 < ci.p_value(ci.high - 1e-3)
    strict = ci.at(1 - 0.05 / 4)
    assert strict.low < ci.low and strict.p_value(strict.low - 1e-3) < 0.05 / 4
    assert stats.binomial_ci(10, 10).p_value(1.0) == 1.0 and stats.binomial_ci(9, 10).p_value(1.0) == 0.0


def test_holm_hand_worked():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_holm_properties(p):
    adjusted = stats.holm(p)
    assert (adjusted >= np.array(p) - 1e-12).all() and (adjusted <= 1).all()
    order = np.argsort(p, kind="stable")
    assert (np.diff(adjusted[order]) >= -1e-12).all()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=40, unique=True), st.floats(0.1, 0.9))
def test_split_properties(items, fraction):
    discovery, confirmation = stats.discovery_confirmation_split(items, fraction, seed=3)
    assert set(discovery).isdisjoint(confirmation) and sorted(discovery + confirmation) == sorted(items)
    assert discovery and confirmation
    assert abs(len(confirmation) - fraction * len(items)) <= 1
    assert stats.discovery_confirmation_split(items, fraction, seed=3) == (discovery, confirmation)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: stats.bootstrap_ci([]), "empty"),
        (lambda: stats.bootstrap_ci([1.0, float("nan")]), "NaN"),
        (lambda: stats.bootstrap_ci([1.0, 2.0], confidence=1.5), "confidence"),
        (lambda: stats.bootstrap_ci_diff([1.0], [1.0, 2.0]), "differ in length"),
        (lambda: stats.discovery_confirmation_split(["a"]), "at least 2"),
        (lambda: stats.split_indices(10, confirm_fraction=1.0), "confirm_fraction"),
        (lambda: stats.binomial_ci(5, 4), "0 <= k <= n"),
        (lambda: stats.binomial_ci(0, 0), "n >= 1"),
        (lambda: stats.binomial_ci(1.5, 4), "whole number"),
        (lambda: stats.binomial_ci(1, 4, method="jeffreys"), "clopper-pearson"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_ci_reads_as_notes_quote_it():
    assert str(stats.bootstrap_ci([0.5, 0.52, 0.55, 0.6, 0.61])).startswith("0.556 [")
    assert str(stats.CI(1.23456, 1.0, 1.5, 8)) == "1.23 [1, 1.5]"


def test_t_ci_matches_the_textbook_interval_and_its_test():
    x = np.array([0.61, 0.72, 0.70, 0.66, 0.75])
    ci = stats.t_ci(x)
    half = scipy.stats.t.ppf(0.975, 4) * x.std(ddof=1) / np.sqrt(5)
    assert ci.low == pytest.approx(x.mean() - half) and ci.high == pytest.approx(x.mean() + half)
    assert ci.p_value(0.5) == pytest.approx(scipy.stats.ttest_1samp(x, 0.5).pvalue)
    assert ci.at(0.99).high > ci.high
    assert ci.p_value(float(ci.low)) == pytest.approx(0.05, abs=1e-9)  # the interval inverts the test
    with pytest.raises(ValueError, match="at least 2"):
        stats.t_ci([0.7])


def test_fieller_is_the_set_of_ratios_a_t_test_does_not_reject():
    rng = np.random.default_rng(6)
    den = 1 + 0.3 * rng.normal(size=12)
    num = 0.4 * den + 0.2 * rng.normal(size=12)
    ci = stats.bootstrap_ratio_ci(num, den, confidence=0.99)
    assert ci.estimate == pytest.approx(num.sum() / den.sum()) and ci.low < ci.estimate < ci.high
    for end in (ci.low, ci.high):  # at each end, the t interval of num - r den just touches 0
        t = stats.t_ci(num - end * den, 0.99)
        assert min(abs(t.low), abs(t.high)) == pytest.approx(0, abs=1e-9)
        assert ci.p_value(end) == pytest.approx(0.01)
    unknown = stats.bootstrap_ratio_ci(num, rng.normal(size=12) * 0.1)  # a denominator about 0
    assert unknown.low == -np.inf and unknown.high == np.inf
    assert min(unknown.p_value(r) for r in (-50, 0, 0.4, 1e6)) >= 0.05  # no ratio rejected: none decided


@settings(max_examples=60, deadline=None)
@given(
    num=st.lists(st.floats(-5, 5), min_size=3, max_size=12),
    shift=st.floats(-2, 2),
    level=st.sampled_from([0.95, 1 - 0.05 / 4, 1 - 0.05 / 30]),
)
def test_a_share_carries_the_premise_that_its_denominator_is_there(num, shift, level):
    """The premise a share carries (its denominator's mean away from 0) is met at a level exactly where
    Fieller's interval at that level is bounded: a decided share always stands on a met premise."""
    num = np.array(num)
    den = shift + np.cos(np.arange(num.size)) * (1 + np.abs(num).mean())
    ci = stats.bootstrap_ratio_ci(num, den).at(level)
    assert ci.premise.at(level).ok == bool(np.isfinite(ci.low) and np.isfinite(ci.high))
