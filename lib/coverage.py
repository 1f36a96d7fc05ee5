"""How often each CI the claims use covers the truth, by simulation at the suite's sample sizes and
levels: the check on the checker. tests/test_coverage.py asserts it; the README's table is

    python -m attnclaims.coverage            # markdown: method x data x n x level

Each cell draws `draws` samples of n units from a distribution whose truth is known, builds the CI of
every sample with the method's own engine and seed (the intervals attnclaims.stats gives the claims,
batched), and reports the share that contain the truth. Clopper-Pearson's coverage is exact: a sum of
the binomial pmf over the counts whose interval contains p, at its worst over a grid of p.

    cover("mean", "normal", n=8, confidence=0.9875)   # -> Cell(covered=0.9866, draws=6190, ...)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, binomtest
from scipy.stats import t as student_t

from attnclaims.bootstrap import mean_t, resample_count, resample_weights, welch_t
from attnclaims.stats import fieller_bounds

DISTRIBUTIONS = ("normal", "lognormal", "t3")  # symmetric; skewed (sigma 1); heavy-tailed (3 dof)
METHODS = {
    "mean": "bootstrap_ci, bootstrap_ci_diff (bootstrap-t)",
    "ratio": "bootstrap_ratio_ci (Fieller)",
    "two-sample": "bootstrap_ci_two_sample (bootstrap-t, Welch SE)",
    "t": "t_ci (Student t)",
    "percentile": "bootstrap_ci(statistic=...) on a mean (percentile; the old default)",
}
SIZES = (5, 8, 17, 40)
LEVELS = (0.95, 0.9875, 0.995, 0.999)  # alone; a family of 4; of 10; the strictest the ledger nears
TOLERANCE = 0.005  # coverage may fall this far below nominal (the half a percentage point)
BLOCK = 2_000  # samples per engine call


def draws_for(confidence: float, resolution: float = TOLERANCE, z: float = 3.0) -> int:
    """Samples for a cell whose standard error is resolution / z where its coverage would just fail,
    at confidence - resolution: a method that falls short by the tolerance is caught 3 SE away."""
    c = confidence - resolution
    return math.ceil(z**2 * c * (1 - c) / resolution**2)


def sample(rng: np.random.Generator, distribution: str, shape) -> tuple[np.ndarray, float]:
    """Draws of one distribution and its mean (the truth a mean CI must cover)."""
    if distribution == "normal":
        return rng.normal(size=shape), 0.0
    if distribution == "lognormal":
        return rng.lognormal(0.0, 1.0, size=shape), math.exp(0.5)
    if distribution == "t3":
        return rng.standard_t(3, size=shape), 0.0
    raise ValueError(f"unknown distribution {distribution!r}; use one of {DISTRIBUTIONS}")


@dataclass(frozen=True)
class Cell:
    method: str
    distribution: str
    n: int
    confidence: float
    covered: float  # share of samples whose interval contains the truth
    draws: int  # samples simulated (0: computed exactly)

    @property
    def holds(self) -> bool:
        """Covered at least nominal - TOLERANCE."""
        return self.covered >= self.confidence - TOLERANCE


def _bounds(method: str, data, confidence: float):
    """(low, high) per sample for one block of simulated data."""
    if method == "mean":
        return mean_t(data[0], confidence).bounds()
    if method == "ratio":
        return fieller_bounds(data[0], data[1], confidence)
    if method == "two-sample":
        return welch_t(data[0], data[1], confidence).bounds()
    x = data[0]
    n = x.shape[1]
    if method == "t":
        half = student_t.ppf(1 - (1 - confidence) / 2, n - 1) * x.std(1, ddof=1) / math.sqrt(n)
        return x.mean(1) - half, x.mean(1) + half
    if method == "percentile":  # as attnclaims.stats._percentile_ci draws it (seed 0)
        w = resample_weights(np.random.default_rng(0), n, resample_count(confidence)).T  # the same draws
        low, high = np.quantile(x @ w, [(1 - confidence) / 2, 1 - (1 - confidence) / 2], axis=1)
        return low, high
    raise ValueError(f"unknown method {method!r}; use one of {sorted(METHODS)} or 'clopper-pearson'")


def _data(method: str, rng, distribution: str, rows: int, n: int):
    """The simulated units for one block and the truth of the method's statistic."""
    x, mean = sample(rng, distribution, (rows, n))
    if method == "ratio":  # a share: num = 0.5 den + noise, den about 1 (a sensitivity that exists)
        den = 1.0 + 0.5 * rng.normal(size=(rows, n))
        return (0.5 * den + 0.5 * (x - mean), den), 0.5
    if method == "two-sample":  # groups of unequal spread, equal means
        y, y_mean = sample(rng, distribution, (rows, n))
        return (x, 2.0 * y), mean - 2.0 * y_mean
    return (x,), mean


def cover(
    method: str, distribution: str, n: int, confidence: float, draws: int | None = None, seed: int = 0
) -> Cell:
    """Coverage of one method on one distribution at n units and one level (see the module docstring)."""
    if method == "clopper-pearson":
        return Cell(method, "binomial", n, confidence, clopper_pearson_coverage(n, confidence), 0)
    draws = draws_for(confidence) if draws is None else int(draws)
    rng = np.random.default_rng([seed, n, round(confidence * 1e6)])
    covered = 0
    for start in range(0, draws, BLOCK):
        rows = min(BLOCK, draws - start)
        data, truth = _data(method, rng, distribution, rows, n)
        low, high = _bounds(method, data, confidence)
        covered += int(((low <= truth) & (truth <= high)).sum())
    return Cell(method, distribution, n, confidence, covered / draws, draws)


def clopper_pearson_coverage(n: int, confidence: float, grid: int = 199) -> float:
    """The least exact coverage of binomial_ci(k, n) over p in a grid on (0, 1)."""
    k = np.arange(n + 1)
    intervals = [binomtest(int(i), n).proportion_ci(confidence_level=confidence) for i in k]
    low = np.array([i.low for i in intervals])
    high = np.array([i.high for i in intervals])
    p = np.linspace(0, 1, grid + 2)[1:-1]
    inside = (low[None] <= p[:, None]) & (p[:, None] <= high[None])
    return float((binom.pmf(k[None], n, p[:, None]) * inside).sum(1).min())


def table(
    methods=("mean", "ratio", "t", "percentile"), distributions=DISTRIBUTIONS, sizes=SIZES, levels=LEVELS
) -> str:
    """Markdown: one row per method, data and n; one column per level (two-sample: normal data only).
    Bold: a cell on normal data below nominal - TOLERANCE."""
    head = "| method | data | n | " + " | ".join(f"{c:.4g}%" for c in (100 * np.array(levels))) + " |"
    lines = [head, "|" + "---|" * (3 + len(levels))]
    for method in methods:
        for distribution in distributions:
            for n in sizes:
                cells = [cover(method, distribution, n, c) for c in levels]
                lines.append(
                    f"| {method} | {distribution} | {n} | " + " | ".join(_cell(c) for c in cells) + " |"
                )
    for n in sizes:
        cells = [cover("two-sample", "normal", n, c) for c in levels]
        lines.append(f"| two-sample | normal | {n} | " + " | ".join(_cell(c) for c in cells) + " |")
    for n in sizes:
        cells = [cover("clopper-pearson", "binomial", n, c) for c in levels]
        lines.append(
            f"| clopper-pearson | binomial (least over p) | {n} | "
            + " | ".join(f"{c.covered:.4f}" for c in cells)
            + " |"
        )
    return "\n".join(lines)


def _cell(cell: Cell) -> str:
    return f"{cell.covered:.4f}" if cell.holds or cell.distribution != "normal" else f"**{cell.covered:.4f}**"


if __name__ == "__main__":
    print(table())
