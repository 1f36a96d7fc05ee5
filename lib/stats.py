"""Statistics for claims measured over prompts or replicates: seeded bootstrap CIs, binomial CIs for
counts, Holm's correction, and a deterministic discovery/confirmation split.

Inputs are 1-D sequences (lists, numpy arrays or torch tensors) of per-prompt or per-replicate figures.
A mean over 5 or more units: `bootstrap_ci` (bootstrap-t; it holds its level from n = 5 on, the
README's coverage table, measured by attnclaims.coverage); paired figures (the same seed under two
conditions): `bootstrap_ci_diff`; two independent groups: `bootstrap_ci_two_sample`; a share:
`bootstrap_ratio_ci`, behind a premise that its denominator is there. With fewer units, report a
count k/n with `binomial_ci` or the mean with `t_ci`. A claim is decided on its CI
(attnclaims.claims); tests and effect sizes beyond that are scipy.stats's.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
from scipy.stats import t as student_t

from attnclaims.bootstrap import BootstrapT, mean_t, resample_count, welch_t
from attnclaims.claims import Premise


@dataclass(frozen=True)
class CI:
    """A confidence interval that can be recomputed at another level and turned into a p-value.

    `ci.at(0.995)` is the same interval at 99.5% (the simultaneous level of a Bonferroni family;
    bootstraps redraw with enough resamples for the tails); `ci.p_value(t)` is the smallest alpha at
    which the (1 - alpha) interval excludes t (two-sided). An interval built by hand (CI(1, 0, 2, 8))
    has neither and says so.
    """

    estimate: float  # the statistic on the full sample
    low: float
    high: float
    n: int
    confidence: float = 0.95
    redo: Callable[[float], CI] | None = field(default=None, repr=False, compare=False)
    pvalue: Callable[[float], float] | None = field(default=None, repr=False, compare=False)
    method: str = field(default="", compare=False)  # "bootstrap-t", "t", "clopper-pearson", ...
    # what the interval presumes, an attnclaims.claims.Premise the claim fixture decides at the claim's
    # level: a share's denominator is distinguished from 0 (bootstrap_ratio_ci)
    premise: object = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        """ "0.52 [0.41, 0.63]": how notes and messages quote a CI (3 significant digits)."""
        return f"{self.estimate:.3g} [{self.low:.3g}, {self.high:.3g}]"

    def at(self, confidence: float) -> CI:
        """This interval at another confidence level."""
        _check_confidence(confidence)
        if confidence == self.confidence:
            return self
        if self.redo is None:
            raise TypeError(
                f"this CI ({self.low:g}, {self.high:g}) was built by hand and cannot be recomputed at "
                f"{confidence:.4g}: build it with attnclaims.stats (bootstrap_ci, binomial_ci, ...)"
            )
        return self.redo(confidence)

    def p_value(self, threshold: float) -> float:
        """Two-sided p of `threshold`: the smallest alpha at which the (1 - alpha) CI excludes it."""
        if self.pvalue is None:
            raise TypeError(
                "this CI was built by hand and has no p-value: build it with attnclaims.stats "
                "(bootstrap_ci, ...)"
            )
        return float(self.pvalue(float(threshold)))


def _bootstrap_p(draws: np.ndarray) -> Callable[[float], float]:
    """Two-sided percentile-bootstrap p of a threshold, with the +1 correction."""
    ordered = np.sort(draws)

    def p(threshold: float) -> float:
        below = np.searchsorted(ordered, threshold, side="right")  # draws <= threshold
        above = ordered.size - np.searchsorted(ordered, threshold, side="left")  # draws >= threshold
        return min(1.0, 2 * (min(below, above) + 1) / (ordered.size + 1))

    return p


def _array(values, name: str = "values") -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()  # bfloat16 has no numpy type
    out = np.asarray(values, dtype=float).reshape(-1)
    if out.size == 0:
        raise ValueError(f"{name} is empty: a confidence interval needs at least one measurement")
    if np.isnan(out).any():
        raise ValueError(f"{name} contains NaN: drop or fix the failed measurements first")
    return out


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


BINOMIAL_METHODS = {"clopper-pearson": "exact", "wilson": "wilson"}  # our name -> scipy's


def binomial_ci(
    k: int, n: int, confidence: float = 0.95, method: Literal["clopper-pearson", "wilson"] = "clopper-pearson"
) -> CI:
    """CI of a proportion from a count: k successes out of n (replicates forming a circuit, models that
    learned). `clopper-pearson`: exact, never below the nominal coverage; `wilson`: the score
    interval, shorter. The estimate is k/n; k = 0 gives low = 0 and k = n gives high = 1.
    (scipy.stats.binomtest(k, n).proportion_ci)."""
    from scipy.stats import binomtest

    _check_confidence(confidence)
    if method not in BINOMIAL_METHODS:
        raise ValueError(f"unknown binomial CI method {method!r}; use 'clopper-pearson' or 'wilson'")
    for name, value in (("k", k), ("n", n)):
        if isinstance(value, bool) or int(value) != value:
            raise ValueError(f"{name}={value!r} must be a whole number (a count)")
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"a binomial CI needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    interval = binomtest(k, n).proportion_ci(confidence_level=confidence, method=BINOMIAL_METHODS[method])

    def pvalue(threshold: float) -> float:  # the exact test that Clopper-Pearson inverts, both tails
        from scipy.stats import binom

        if threshold <= 0 or threshold >= 1:
            return 1.0 if (threshold <= 0 and k == 0) or (threshold >= 1 and k == n) else 0.0
        return min(1.0, 2 * min(binom.sf(k - 1, n, threshold), binom.cdf(k, n, threshold)))

    return CI(
        k / n,
        float(interval.low),
        float(interval.high),
        n,
        confidence,
        redo=lambda level: binomial_ci(k, n, level, method),
        pvalue=pvalue,
        method=method,
    )


def _from_bootstrap(engine: BootstrapT, n: int, confidence: float, redo: Callable[[float], CI]) -> CI:
    low, high = engine.bounds(confidence)
    return CI(
        float(engine.estimate[0]),
        float(low[0]),
        float(high[0]),
        n,
        confidence,
        redo,
        lambda threshold: engine.p_value(threshold),
        method="bootstrap-t",
    )


def bootstrap_ci(
    values, statistic: Callable = np.mean, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> CI:
    """Bootstrap CI of `statistic` over the values (units resampled with replacement).

    The mean (the default) gets a studentized bootstrap (bootstrap-t, attnclaims.bootstrap), which holds
    its level from 5 units on (the README's coverage table); any other statistic gets a percentile
    interval, which the coverage simulation does not cover: restate such a claim as a mean of per-unit
    figures. With a single value the interval is degenerate (low = high = estimate).
    """
    x = _array(values)
    _check_confidence(confidence)
    if statistic is not np.mean:
        return _percentile_ci(x, statistic, n_resamples, confidence, seed)
    if x.size == 1:
        return CI(float(x[0]), float(x[0]), float(x[0]), 1, confidence, method="bootstrap-t")
    engine = mean_t(x[None], confidence, n_resamples, seed)
    return _from_bootstrap(
        engine, x.size, confidence, lambda level: bootstrap_ci(x, np.mean, n_resamples, level, seed)
    )


def _percentile_ci(x: np.ndarray, statistic: Callable, n_resamples: int, confidence: float, seed: int) -> CI:
    estimate = float(statistic(x))
    if x.size == 1:
        return CI(estimate, estimate, estimate, 1, confidence, method="percentile")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resample_count(confidence, n_resamples), x.size))
    stats = np.apply_along_axis(statistic, 1, x[idx])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    redo = lambda level: _percentile_ci(x, statistic, n_resamples, level, seed)
    return CI(
        estimate, float(low), float(high), int(x.size), confidence, redo, _bootstrap_p(stats), "percentile"
    )


def t_ci(values, confidence: float = 0.95) -> CI:
    """Student-t CI of the mean, mean +- t_(n-1) * sd / sqrt(n), for a handful of units (3-10 replicates)
    where a bootstrap has too few distinct resamples; its p-value is the one-sample t-test's
    (scipy.stats.ttest_1samp). Exact on normal values, short on skewed ones (the README's coverage
    table); needs n >= 2 and some spread."""
    from scipy.stats import ttest_1samp

    x = _array(values)
    _check_confidence(confidence)
    if x.size < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {x.size}: use more units")
    result = ttest_1samp(x, 0.0)
    interval = result.confidence_interval(confidence)
    return CI(
        float(x.mean()),
        float(interval.low),
        float(interval.high),
        int(x.size),
        confidence,
        redo=lambda level: t_ci(x, level),
        pvalue=lambda threshold: float(ttest_1samp(x, threshold).pvalue),
        method="t",
    )


def bootstrap_ratio_ci(numerator, denominator, confidence: float = 0.95, **_) -> CI:
    """CI of sum(numerator) / sum(denominator) over paired units: a share of an effect, e.g. of the
    sensitivity an intervention removes. Fieller's interval (Fieller 1954): the ratios r for which the
    t-test of mean(numerator - r denominator) = 0 does not reject, exact on normal units (the README's
    coverage table) where a bootstrap of the ratio undercovers; its p-value is that t-test's, or the
    denominator's own t-test's where that is larger. Where the denominator's t-test does not reject 0
    at this level the interval has infinite ends: a share is then never decided, so a decided share
    always stands on a denominator that is there at the claim's level, on the same units.
    (The name is kept for the call sites; resampling arguments are accepted and unused.)"""
    num, den = _array(numerator, "numerator"), _array(denominator, "denominator")
    _check_confidence(confidence)
    if num.shape != den.shape:
        raise ValueError(f"numerator and denominator differ in length: {num.size} vs {den.size}")
    if num.size < 2:
        raise ValueError(f"a ratio CI needs at least 2 units, got {num.size}")
    low, high = fieller_bounds(num[None], den[None], confidence)

    def pvalue(threshold: float) -> float:
        # at least the denominator's own p: where that does not reject 0, no ratio is rejected, as the
        # unbounded interval says (so the interval excludes r exactly when p < alpha, at every level)
        return max(_t_pvalue(num - threshold * den), _t_pvalue(den))

    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = float(num.sum() / den.sum())
    redo = lambda level: bootstrap_ratio_ci(num, den, level)
    # the share's premise, decided by the claim at its own level: bounded exactly where it is met
    premise = Premise(_mean_t(den, confidence), "!=", 0.0, "the share's denominator is there (mean per unit)")
    bounds = float(low[0]), float(high[0])
    return CI(estimate, *bounds, int(num.size), confidence, redo, pvalue, "fieller", premise)


def _t_pvalue(d: np.ndarray, threshold: float = 0.0) -> float:
    """One-sample t-test p of mean(d) = threshold; units with no spread (rounding aside) reject any
    other value outright."""
    sd = _centred(d[None], d.mean()[None])[0].std(ddof=1)
    if sd == 0:
        return 1.0 if d.mean() == threshold else 0.0
    return float(2 * student_t.sf(abs(d.mean() - threshold) / (sd / math.sqrt(d.size)), d.size - 1))


def _mean_t(x: np.ndarray, confidence: float) -> CI:
    """Student-t interval of mean(x), the one Fieller's boundedness is a test of (no spread: a point)."""
    sd = _centred(x[None], x.mean()[None])[0].std(ddof=1)
    half = student_t.ppf(1 - (1 - confidence) / 2, x.size - 1) * sd / math.sqrt(x.size)
    mean = float(x.mean())
    redo = lambda level: _mean_t(x, level)
    return CI(mean, mean - half, mean + half, int(x.size), confidence, redo, lambda t: _t_pvalue(x, t), "t")


def _centred(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """x - mean per row, with deviations within rounding of the row's values (16 ulps of its largest)
    set to 0: units that are all equal have no spread, not one of machine epsilon."""
    centred = x - mean[:, None]
    noise = 16 * np.finfo(float).eps * np.abs(x).max(1, keepdims=True)
    return np.where(np.abs(centred) <= noise, 0.0, centred)


def fieller_bounds(num: np.ndarray, den: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Fieller's (low, high) per row of [samples, n] numerators and denominators: the roots of
    (m_n - r m_d)^2 = t^2 (v_nn - 2 r v_nd + r^2 v_dd), v the (co)variances of the means; (-inf, inf)
    where the denominator is not distinguished from 0 (the quadratic's leading term m_d^2 - t^2 v_dd <= 0)."""
    n = num.shape[1]
    crit = student_t.ppf(1 - (1 - confidence) / 2, n - 1) ** 2
    mn, md = num.mean(1), den.mean(1)
    cn, cd = _centred(num, mn), _centred(den, md)
    vnn, vdd, vnd = ((cn**2).sum(1), (cd**2).sum(1), (cn * cd).sum(1))
    vnn, vdd, vnd = (v / (n - 1) / n for v in (vnn, vdd, vnd))
    a = md**2 - crit * vdd
    b = mn * md - crit * vnd  # the quadratic a r^2 - 2 b r + c = 0
    # b^2 - a c, expanded so that the products of means cancel exactly (computed as b^2 - a c they cancel
    # in floating point and leave a width of sqrt(machine epsilon) on units with no spread)
    disc = crit * (md**2 * vnn - 2 * mn * md * vnd + mn**2 * vdd) - crit**2 * (vnn * vdd - vnd**2)
    disc = np.maximum(disc, 0.0)
    bounded = a > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(bounded, (b - np.sqrt(disc)) / a, -np.inf)
        high = np.where(bounded, (b + np.sqrt(disc)) / a, np.inf)
    return low, high


def bootstrap_ci_diff(a, b, **kwargs) -> CI:
    """CI of the mean paired difference a - b (same prompts or replicates, same order): bootstrap-t."""
    a, b = _array(a, "a"), _array(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} vs {b.size}")
    return bootstrap_ci(a - b, **kwargs)


def bootstrap_ci_two_sample(a, b, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> CI:
    """CI of mean(a) - mean(b) for independent groups, each resampled on its own: bootstrap-t with
    Welch's standard error."""
    a, b = _array(a, "a"), _array(b, "b")
    _check_confidence(confidence)
    if min(a.size, b.size) < 2:
        raise ValueError(f"each group needs at least 2 values, got {a.size} and {b.size}")
    engine = welch_t(a[None], b[None], confidence, n_resamples, seed)
    redo = lambda level: bootstrap_ci_two_sample(a, b, n_resamples, level, seed)
    return _from_bootstrap(engine, int(min(a.size, b.size)), confidence, redo)


def minimal_detectable_effect(values, confidence: float = 0.95, power: float = 0.8) -> float:
    """The smallest mean (of paired differences, per-unit slopes, ...) that a two-sided test at
    `confidence` detects with probability `power` from this many units of this spread:
    (t_(1-alpha/2) + t_power) * sd / sqrt(n), t on n - 1 degrees of freedom."""
    values = _array(values)
    _check_confidence(confidence)
    n = values.size
    if n < 2:
        raise ValueError("a detectable effect needs at least 2 units (a spread to estimate)")
    quantiles = student_t.ppf(1 - (1 - confidence) / 2, n - 1) + student_t.ppf(power, n - 1)
    return float(quantiles * values.std(ddof=1) / math.sqrt(n))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order (monotone, capped at 1)."""
    p = _array(pvalues, "pvalues")
    order = np.argsort(p)
    scaled = (p.size - np.arange(p.size)) * p[order]
    adjusted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


def _key(item, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{item!r}".encode()).hexdigest()


def discovery_confirmation_split(
    items: Sequence, confirm_fraction: float = 0.5, seed: int = 0
) -> tuple[list, list]:
    """Disjoint (discovery, confirmation) lists, the same in every process for the same items and
    seed: items are ordered by a sha256 of (seed, repr(item)) and cut at the fraction."""
    items = list(items)
    if len(items) < 2:
        raise ValueError(f"a split needs at least 2 items, got {len(items)}")
    discovery_idx, confirm_idx = split_indices(
        len(items), confirm_fraction, seed, keys=[_key(i, seed) for i in items]
    )
    return [items[i] for i in discovery_idx], [items[i] for i in confirm_idx]


def split_indices(
    n: int, confirm_fraction: float = 0.5, seed: int = 0, keys: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(discovery, confirmation) index arrays of range(n), both non-empty for n >= 2 (sorted)."""
    if not 0 < confirm_fraction < 1:
        raise ValueError(f"confirm_fraction must lie in (0, 1), got {confirm_fraction}")
    if n < 2:
        raise ValueError(f"a split needs at least 2 items, got {n}")
    keys = keys if keys is not None else [_key(i, seed) for i in range(n)]
    order = np.argsort(np.array(keys), kind="stable")
    n_confirm = min(max(int(round(n * confirm_fraction)), 1), n - 1)
    return np.sort(order[: n - n_confirm]), np.sort(order[n - n_confirm :])
