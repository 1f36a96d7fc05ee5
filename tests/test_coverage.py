"""The checker checked: every CI method the claims use, simulated at the suite's sizes and levels
(attnclaims.coverage). On normal data each must cover within half a percentage point of nominal or
above, with enough draws (3 standard errors at the margin) that a pass is not noise; skewed and
heavy-tailed data are simulated too and bounded loosely, and the README's table holds every cell."""

from __future__ import annotations

import pytest

from attnclaims import coverage

# The confirmatory levels the ledger uses: alone, a family of 4, of 10; and 99.9% at n = 8 only (such a
# cell needs 10^5 resamples per sample; the README's table has the rest).
GRID = [(n, c) for n in (5, 8, 17, 40) for c in (0.95, 0.9875, 0.995)] + [(8, 0.999)]


@pytest.mark.parametrize("n, confidence", GRID)
def test_the_default_mean_ci_holds_its_level_on_normal_data(n, confidence):
    cell = coverage.cover("mean", "normal", n, confidence)
    assert cell.holds, (
        f"bootstrap_ci covers {cell.covered:.4f} at n={n}, {confidence:.4g} ({cell.draws} draws)"
    )


OTHERS = [(m, n, c) for m in ("ratio", "t") for n, c in ((5, 0.95), (8, 0.9875), (17, 0.995), (40, 0.999))]


TWO_SAMPLE = [("two-sample", 5, 0.95), ("two-sample", 8, 0.9875)]


@pytest.mark.parametrize("method, n, confidence", OTHERS + TWO_SAMPLE)
def test_the_other_methods_hold_their_level_on_normal_data(method, n, confidence):
    cell = coverage.cover(method, "normal", n, confidence)
    assert cell.holds, f"{method} covers {cell.covered:.4f} at n={n}, {confidence:.4g} ({cell.draws} draws)"


def test_the_claims_mean_ci_at_a_family_of_four_covers_98_percent_at_n_8():
    assert coverage.cover("mean", "normal", 8, 0.9875).covered >= 0.98


@pytest.mark.parametrize("n", [5, 8, 17, 40])
def test_clopper_pearson_never_covers_less_than_nominal(n):
    for confidence in coverage.LEVELS:
        assert coverage.clopper_pearson_coverage(n, confidence) >= confidence - 1e-9


def test_on_skewed_data_the_bootstrap_t_beats_t_and_the_percentile_interval():
    """Lognormal units at n = 8: no method holds 95% (the README's table), but bootstrap-t is closest."""
    cells = {
        m: coverage.cover(m, "lognormal", 8, 0.95, draws=4000).covered for m in ("mean", "t", "percentile")
    }
    assert cells["mean"] > cells["t"] + 0.02 and cells["mean"] > cells["percentile"] + 0.02, cells
    assert coverage.cover("mean", "t3", 8, 0.95, draws=4000).covered > 0.9


def test_the_old_percentile_default_is_caught():
    """The check can fail: the percentile bootstrap the suite used before covers 0.89 at n = 8."""
    assert not coverage.cover("percentile", "normal", 8, 0.95).holds


def test_an_unknown_method_or_distribution_is_named():
    with pytest.raises(ValueError, match="unknown method"):
        coverage.cover("bca", "normal", 8, 0.95, draws=10)
    with pytest.raises(ValueError, match="unknown distribution"):
        coverage.cover("mean", "cauchy", 8, 0.95, draws=10)
