"""The bootstrap-t engines (attnclaims.bootstrap) against a loop over resamples written from the
definition, t* = (theta* - theta) / se*, and the stats wrappers against the batch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnclaims import bootstrap, stats

# values on a 0.1 grid with some spread: a resample's variance is then 0 or well above rounding
GRID = (
    st.lists(st.integers(-50, 50), min_size=5, max_size=12)
    .filter(lambda v: len(set(v)) > 1)
    .map(lambda v: [i / 10 for i in v])
)


def _loop_t(x, statistic, se_of, draws, seed):
    """t* for each resample, from the resampled units themselves (the rng draws as resample_weights)."""
    n = len(x[0])
    picks = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    theta = statistic(*x)
    out = []
    for p in picks:
        sample = [v[p] for v in x]
        se = se_of(*sample)
        out.append(
            (statistic(*sample) - theta) / se
            if se > 1e-12
            else np.copysign(np.inf, statistic(*sample) - theta)
        )
    return np.sort(out)


def _mean(v):
    return v.mean()


def _mean_se(v):
    return v.std(ddof=1) / np.sqrt(v.size)


@settings(max_examples=30, deadline=None)
@given(GRID, st.integers(0, 3))
def test_mean_t_equals_the_loop_over_resamples(values, seed):
    x = np.array(values)
    engine = bootstrap.mean_t(x[None], n_resamples=400, seed=seed)
    loop = _loop_t([x], _mean, _mean_se, engine.t.shape[1], seed)
    finite = np.isfinite(loop)
    np.testing.assert_allclose(np.sort(engine.t[0])[finite], loop[finite], rtol=1e-6, atol=1e-6)
    assert (np.isinf(np.sort(engine.t[0])) == ~finite).all()
    assert engine.se[0] == pytest.approx(_mean_se(x))


def test_welch_t_equals_the_loop_over_resamples():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1, 1, 9), rng.normal(0, 2, 7)
    engine = bootstrap.welch_t(a[None], b[None], n_resamples=300, seed=2)
    g = np.random.default_rng(2)
    pa, pb = g.integers(0, 9, size=(engine.t.shape[1], 9)), g.integers(0, 7, size=(engine.t.shape[1], 7))
    theta = a.mean() - b.mean()
    loop = [
        (a[i].mean() - b[j].mean() - theta) / np.sqrt(a[i].var(ddof=1) / 9 + b[j].var(ddof=1) / 7)
        for i, j in zip(pa, pb)
    ]
    np.testing.assert_allclose(np.sort(engine.t[0]), np.sort(loop), rtol=1e-6)


def test_a_ci_of_one_sample_is_its_row_of_the_batch():
    x = np.random.default_rng(5).lognormal(size=(6, 11))
    low, high = bootstrap.mean_t(x, 0.9875).bounds()
    for row in range(6):
        ci = stats.bootstrap_ci(x[row], confidence=0.9875)
        assert (ci.low, ci.high) == pytest.approx((low[row], high[row]), rel=1e-12)


def test_too_few_resamples_for_a_level_is_named():
    with pytest.raises(ValueError, match="cannot bound"):
        bootstrap.tail_rank(100, 0.999)
    with pytest.raises(ValueError, match=r"\[samples, n\]"):
        bootstrap.mean_t(np.ones(5))
