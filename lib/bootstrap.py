"""Studentized bootstrap intervals (bootstrap-t), computed for a whole batch of samples at once: the
engines behind attnclaims.stats's bootstrap CIs and behind the coverage simulation that measures them
(attnclaims.coverage).

    t = mean_t(x)                      # x [samples, n] -> BootstrapT: estimates, SEs, t*
    low, high = t.bounds(0.9875)       # [samples] each

A bootstrap-t interval of a statistic theta with standard error se is [theta - t*_hi se, theta - t*_lo
se], where t* = (theta* - theta) / se* over resamples of the units (Efron & Tibshirani 1993, ch. 12;
Hall 1988): unlike the percentile bootstrap, it corrects for the small-sample spread of se itself, which
is what a percentile interval misses at 5-40 units (its coverage: the README's table).

A bound is infinite where more than alpha / 2 of the resamples have no spread (n = 5 at 99.9%: the
data cannot bound it there). The (1 - alpha) interval takes its ends at order statistics of t*,
t*_(k) and t*_(B-k+1) with
k = ceil(alpha (B + 1) / 2 - 1), so that it is exactly the set of thresholds whose two-sided p,
2 (min(#t* >= t0, #t* <= t0) + 1) / (B + 1) at t0 = (theta - threshold) / se, is at least alpha
(`BootstrapT.p_value`): a p below alpha exactly when the interval excludes the threshold.

Resamples are multinomial counts drawn once per (n, B, seed) by numpy's default_rng(seed) and shared by
every sample of a batch, so attnclaims.stats's CI of one sample is the batch's row for it (to rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TAIL_DRAWS = 50  # resamples beyond each end of an interval, at the least: the tails need them
CHUNK = 4_000_000  # elements of a [samples, resamples] block computed at once (32 MB of float64)


def resample_count(confidence: float, n_resamples: int = 2000) -> int:
    """Resamples B for a `confidence` interval: n_resamples, or more so that each tail holds TAIL_DRAWS."""
    return max(int(n_resamples), math.ceil(TAIL_DRAWS / ((1 - confidence) / 2)))


def tail_rank(draws: int, confidence: float) -> int:
    """k: the (1 - alpha) interval lies between the k-th smallest and the k-th largest t* (see above)."""
    k = math.ceil((1 - confidence) * (draws + 1) / 2 - 1)
    if k < 1:
        raise ValueError(f"{draws} resamples cannot bound a {confidence:.4g} interval: use more")
    return k


def resample_weights(rng: np.random.Generator, n: int, draws: int) -> np.ndarray:
    """[draws, n]: each row the share of a resample (n units drawn with replacement) that is each unit."""
    picks = rng.integers(0, n, size=(draws, n))
    flat = (picks + n * np.arange(draws)[:, None]).ravel()
    return np.bincount(flat, minlength=draws * n).reshape(draws, n) / n


@dataclass(frozen=True)
class BootstrapT:
    """Bootstrap-t of a batch: per sample its estimate, standard error and t* [samples, B]."""

    estimate: np.ndarray  # [samples]
    se: np.ndarray  # [samples]
    t: np.ndarray  # [samples, B], in resample order; +-inf where a resample had no spread
    confidence: float  # the level B was sized for

    def bounds(self, confidence: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) [samples] of the interval at `confidence` (default: the level B was sized for);
        a sample with no spread (se = 0) gets [estimate, estimate]."""
        confidence = self.confidence if confidence is None else confidence
        draws = self.t.shape[1]
        k = tail_rank(draws, confidence)
        ends = np.partition(self.t, [k - 1, draws - k], axis=1)  # O(B): no full sort
        with np.errstate(invalid="ignore"):  # inf * 0 where se = 0: replaced below
            low = self.estimate - ends[:, draws - k] * self.se
            high = self.estimate - ends[:, k - 1] * self.se
        flat = self.se == 0
        return np.where(flat, self.estimate, low), np.where(flat, self.estimate, high)

    def p_value(self, threshold: float, row: int = 0) -> float:
        """Two-sided p of `threshold` for one sample (see the module docstring)."""
        estimate, se, t = self.estimate[row], self.se[row], np.sort(self.t[row])
        if se == 0:
            return 1.0 if threshold == estimate else 0.0
        t0 = (estimate - threshold) / se
        at_most = np.searchsorted(t, t0, side="right")  # t* <= t0
        at_least = t.size - np.searchsorted(t, t0, side="left")  # t* >= t0
        return min(1.0, 2 * (min(at_most, at_least) + 1) / (t.size + 1))


def _blocks(samples: int, draws: int):
    step = max(1, CHUNK // max(draws, 1))
    return [slice(i, min(i + step, samples)) for i in range(0, samples, step)]


def _studentize(deviation: np.ndarray, variance: np.ndarray, dof: int, floor: np.ndarray) -> np.ndarray:
    """t* = deviation / sqrt(variance / dof), +-inf where a resample has no spread (variance <= floor)."""
    flat = variance <= floor
    with np.errstate(divide="ignore", invalid="ignore"):
        t = deviation / np.sqrt(np.where(flat, 1.0, variance) / dof)
    return np.where(flat, np.where(deviation < 0, -np.inf, np.inf), t)


def _as_batch(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"{name} must be [samples, n] with n >= 2 units, got shape {x.shape}")
    return x


def mean_t(x, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> BootstrapT:
    """Bootstrap-t of the mean of each row of x [samples, n], se = sd / sqrt(n)."""
    x = _as_batch(x, "x")
    samples, n = x.shape
    draws = resample_count(confidence, n_resamples)
    w = resample_weights(np.random.default_rng(seed), n, draws).T  # [n, B]
    mean = x.mean(1)
    centred = x - mean[:, None]
    var = (centred**2).mean(1)  # ddof 0
    se = np.sqrt(var / (n - 1))  # = sd (ddof 1) / sqrt(n)
    t = np.empty((samples, draws))
    for rows in _blocks(samples, draws):
        c = centred[rows]
        shift = c @ w  # mean* - mean
        spread = (c**2) @ w - shift**2  # the resample's variance (ddof 0)
        t[rows] = _studentize(shift, spread, n - 1, 1e-12 * var[rows, None])
    return BootstrapT(mean, se, t, confidence)


def welch_t(a, b, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0) -> BootstrapT:
    """Bootstrap-t of mean(a) - mean(b) per row, independent groups each resampled on its own,
    se = sqrt(var_a / n_a + var_b / n_b) (Welch)."""
    a, b = _as_batch(a, "a"), _as_batch(b, "b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b hold different numbers of samples: {a.shape[0]} vs {b.shape[0]}")
    samples, (na, nb) = a.shape[0], (a.shape[1], b.shape[1])
    draws = resample_count(confidence, n_resamples)
    rng = np.random.default_rng(seed)
    wa, wb = resample_weights(rng, na, draws).T, resample_weights(rng, nb, draws).T
    ca, cb = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    va, vb = (ca**2).mean(1) / (na - 1), (cb**2).mean(1) / (nb - 1)  # var (ddof 1) / n
    se = np.sqrt(va + vb)
    t = np.empty((samples, draws))
    for rows in _blocks(samples, draws):
        sa, sb = ca[rows] @ wa, cb[rows] @ wb
        spread = ((ca[rows] ** 2) @ wa - sa**2) / (na - 1) + ((cb[rows] ** 2) @ wb - sb**2) / (nb - 1)
        t[rows] = _studentize(sa - sb, spread, 1, 1e-12 * (va + vb)[rows, None])
    return BootstrapT(a.mean(1) - b.mean(1), se, t, confidence)
