"""A claim: its figure, its threshold, and the one rule that decides its verdict.

One decision rule (`decide`), from a claim's CI and threshold, with four outcomes:
- supported: the CI lies wholly on the claimed side of the threshold (">=": ci_low >= threshold;
  "<=": ci_high <= threshold; "within", a claim of no effect: the CI lies inside [-margin, margin]);
- refuted: the CI lies wholly on the other side: the data contradict the claim ("within": the CI
  lies wholly outside the margin);
- undecided: the CI straddles the threshold; `past_threshold` says how far it reaches past it, the
  distance more data would have to close;
- inconclusive: the claim's precondition (its premise) failed, whatever its figure.
A claim without a CI is decided on its figure alone, and only where that figure is exact (a rank on
one prompt, a count over every replicate trained): it says so with `exact=True`, and its row's ci_level reads
"exact".

Multiplicity. A hypothesis marks its confirmatory claims (`@pytest.mark.confirmatory`); the others
are exploratory. The confirmatory claims of one hypothesis on one model (its family, of m claims)
are decided on simultaneous CIs: each at level 1 - ALPHA/m (Bonferroni), recomputed from the data
by `attnclaims.stats.CI.at`. Every decision this makes, Holm's step-down procedure at ALPHA makes too (Holm
rejects all that Bonferroni rejects), so a confirmatory claim is supported or refuted only when it
survives Holm; one that Holm alone would decide stays undecided, the price of deciding each claim
when it is measured. The row's p is the two-sided p of its threshold (the smallest alpha at which
its CI excludes it), and adjusted_p is Holm's adjustment of the family's p-values, written as soon as
every member of the family is measured (until then a row keeps the adjusted p it had).

A claim's row in the ledger has the columns COLUMNS (lib/ledger.py writes, reads and compares ledgers).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Real

ALPHA = 0.05  # family-wise error rate of each hypothesis's confirmatory claims
DIRECTIONS = (">=", "<=", "within")
STATUSES = ("supported", "refuted", "undecided", "inconclusive")
# The tracked ledger's columns, in order. What each means:
#   hypothesis  the hypothesis file, hypotheses/test_<hypothesis>.py
#   claim       the test that makes the claim (with its parameters, e.g. "test_x[p=0.1]")
#   model       the model measured ("smollm2-135m", "toy:<config>")
#   settings    non-default run settings that change the figures ("dtype=bfloat16,device=cuda"; empty
#               for float32 on the CPU): part of the row's identity
#   metric      what was measured, in words with units
#   value, ci_low, ci_high   the figure and the CI it is decided on (empty when exact)
#   ci_level    the CI's level ("95%", "99.5%" for a confirmatory claim in a family of 10), or "exact"
#   threshold, direction     the claim: the CI >= or <= threshold, or within +-threshold
#   why         the threshold's reason, in a few words
#   status      supported / refuted / undecided / inconclusive (see `decide`)
#   past_threshold  undecided rows: how far the CI reaches past the threshold
#   n, unit     the sample size and what it counts (families, replicates, paragraphs, sequences)
#   role        confirmatory, exploratory or check (`role_of`: a claim with a family is confirmatory;
#               a check is a row about the protocol on a model whose truth is known, in no family
#               and no verdict tally)
#   family, family_size  confirmatory claims: their family (the model, or "toys") and its size m;
#               empty and 0 for exploratory claims
#   p, adjusted_p  confirmatory claims: the two-sided p of the threshold, and Holm's adjustment
#   precondition  "met: ..." or "failed: ..." with the reason (empty when the claim has none)
#   note        anything else a reader needs (controls, confounds)
#   env         the id of the run settings in environments.json
COLUMNS = [
    *("hypothesis", "claim", "model", "settings", "metric", "value", "ci_low", "ci_high", "ci_level"),
    *("threshold", "direction", "why", "status", "past_threshold", "n", "unit"),
    *("role", "family", "family_size"),
    *("p", "adjusted_p", "precondition", "note", "env"),
]
KEY = ["hypothesis", "claim", "model", "settings"]


@dataclass(frozen=True)
class Precondition:
    """What must be true for a claim to mean anything, and whether it was: `Precondition(loss < 1.0,
    f"the model learned the task (loss {loss:.2f} < 1.0 nats)")`. A `(ok, reason)` pair does the same."""

    ok: bool
    reason: str

    def __post_init__(self):
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ValueError("a precondition needs a reason: say what was required and what was measured")
        object.__setattr__(self, "ok", bool(self.ok))

    def __bool__(self) -> bool:
        return self.ok

    @classmethod
    def coerce(cls, precondition) -> Precondition | None:
        """None, a Precondition or an (ok, reason) pair -> Precondition or None."""
        if precondition is None or isinstance(precondition, Precondition):
            return precondition
        try:
            ok, reason = precondition
        except (TypeError, ValueError):
            raise TypeError(
                "precondition must be a Precondition or an (ok: bool, reason: str) pair, "
                f"got {precondition!r}"
            ) from None
        return cls(ok=ok, reason=reason)


@dataclass(frozen=True)
class Premise:
    """A premise measured with a CI and decided at the level of the claim it guards: `Premise(ci, ">",
    0.0, "the model follows the fact on crossed-order pairs")` is met when that CI, recomputed at the
    claim's level (the family's simultaneous level for a confirmatory claim), lies wholly above 0 ("<":
    below; "!=": on either side). So a claim decided at 99.4% never stands on a premise shown only at
    95%. `claim(..., precondition=)` takes one, and a CI may carry one (a share's denominator:
    attnclaims.stats.bootstrap_ratio_ci); `at(level)` gives the Precondition it is at that level."""

    ci: object  # an attnclaims.stats.CI (anything with .at(level), .low, .high)
    direction: str  # ">", "<" or "!="
    threshold: float
    what: str  # the premise, in words

    def __post_init__(self):
        if self.direction not in (">", "<", "!="):
            raise ValueError(f"a premise's direction is '>', '<' or '!=', got {self.direction!r}")
        if not callable(getattr(self.ci, "at", None)):
            raise TypeError(
                f"a premise needs a CI that can be recomputed at a level (attnclaims.stats), got {self.ci!r}"
            )

    def at(self, level: float) -> Precondition:
        ci = self.ci.at(level)
        above, below = ci.low > self.threshold, ci.high < self.threshold
        ok = {">": above, "<": below, "!=": above or below}[self.direction]
        side = {">": "above", "<": "below", "!=": "away from"}[self.direction]
        lies = "lies" if ok else "does not lie"
        return Precondition(ok, f"{self.what}: {ci} at {100 * level:.4g}% {lies} {side} {self.threshold:g}")

    @staticmethod
    def all_of(preconditions, level: float) -> Precondition | None:
        """Several premises as one, each decided at `level`: the first that failed, or all met."""
        decided = [p.at(level) if isinstance(p, Premise) else Precondition.coerce(p) for p in preconditions]
        decided = [p for p in decided if p is not None]
        if not decided:
            return None
        failed = [p for p in decided if not p.ok]
        return failed[0] if failed else Precondition(True, "; ".join(p.reason for p in decided))


def decide(direction: str, threshold: float, low: float, high: float) -> str:
    """The decision rule: supported, refuted or undecided, from a CI [low, high] (low = high = the
    figure for an exact claim) and the claim `direction` threshold (see the module docstring)."""
    if direction == ">=":
        return "supported" if low >= threshold else "refuted" if high < threshold else "undecided"
    if direction == "<=":
        return "supported" if high <= threshold else "refuted" if low > threshold else "undecided"
    if direction == "within":
        if -threshold <= low and high <= threshold:
            return "supported"
        return "refuted" if low > threshold or high < -threshold else "undecided"
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def past_threshold(direction: str, threshold: float, low: float, high: float) -> float:
    """How far a CI reaches past its threshold onto the other side (0 when it does not)."""
    if direction == ">=":
        return max(0.0, threshold - low)
    if direction == "<=":
        return max(0.0, high - threshold)
    return max(0.0, -threshold - low, high - threshold)


@dataclass(frozen=True, repr=False)
class Claim:
    hypothesis: str
    claim_id: str
    model: str
    metric: str
    value: float
    threshold: float
    direction: str = ">="
    why: str = ""
    ci_low: float = math.nan
    ci_high: float = math.nan
    ci_level: float = 0.95
    exact: bool = False
    n: int = 1
    unit: str = ""
    family: str = ""
    family_size: int = 0
    p: float = math.nan
    adjusted_p: float = math.nan
    precondition: Precondition | None = None
    note: str = ""
    settings: str = ""
    env: str = ""
    check: bool = False  # the protocol on a model whose truth is known: outside families and tallies

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"claim {self.claim_id!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}"
            )
        if self.direction == "within" and not self.threshold >= 0:
            raise ValueError(
                f"claim {self.claim_id!r}: an equivalence margin must be >= 0, got {self.threshold}"
            )
        premise_failed = self.precondition is not None and not Precondition.coerce(self.precondition).ok
        if math.isnan(self.value) and premise_failed and not self.has_ci:
            pass  # not measured: the premise failed, so there is no figure to record (`measured`)
        elif not math.isfinite(self.value):
            raise ValueError(
                f"claim {self.claim_id!r}: measured value is {self.value}; fix the measurement (only a claim "
                "whose precondition failed may record no figure)"
            )
        elif self.has_ci == self.exact:
            raise ValueError(
                f"claim {self.claim_id!r}: "
                + (
                    "an exact figure has no CI: give one or the other"
                    if self.exact
                    else "give a CI, or exact=True where the figure has no sampling error (a rank on one "
                    "prompt, a count over every replicate)"
                )
            )
        for name in ("p", "adjusted_p"):
            value = getattr(self, name)
            if not math.isnan(value) and not 0.0 <= value <= 1.0:
                raise ValueError(f"claim {self.claim_id!r}: {name} must lie in [0, 1], got {value}")
        object.__setattr__(self, "precondition", Precondition.coerce(self.precondition))

    @property
    def measured(self) -> bool:
        """False for a claim whose premise failed before there was anything to measure."""
        return not math.isnan(self.value)

    @property
    def has_ci(self) -> bool:
        """A CI was given: both ends are numbers (an end may be infinite where the data cannot bound it:
        a bootstrap-t whose resamples lack spread, a share over a denominator not distinguished from 0)."""
        return not (math.isnan(self.ci_low) or math.isnan(self.ci_high))

    @property
    def bounds(self) -> tuple[float, float]:
        """The interval the claim is decided on: its CI, or its exact figure twice."""
        return (self.ci_low, self.ci_high) if self.has_ci else (self.value, self.value)

    @property
    def status(self) -> str:
        if self.precondition is not None and not self.precondition.ok:
            return "inconclusive"
        return decide(self.direction, self.threshold, *self.bounds)

    @property
    def past_threshold(self) -> float:
        """Undecided claims: how far the CI reaches past the threshold (NaN otherwise)."""
        if self.status != "undecided":
            return math.nan
        return past_threshold(self.direction, self.threshold, *self.bounds)

    @property
    def supported(self) -> bool:
        return self.status == "supported"

    def __bool__(self) -> bool:
        """`assert claim(...)` asserts that the claim is supported: it holds and its precondition was met."""
        return self.supported

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        return f"{self.claim_id} on {self.model}: {self.figure()}; {self.verdict()}"

    def figure(self) -> str:
        """The measured figure in words: "x = 1 [95% CI 0.4, 1.6], n=8 replicates"."""
        if not self.measured:
            return f"{self.metric}: not measured"
        ci = (
            f" [{_percent(self.ci_level)} CI {self.ci_low:.4g}, {self.ci_high:.4g}]"
            if self.has_ci
            else " (exact)"
        )
        n = f"n={self.n}" + (f" {self.unit}" if self.unit else "")
        return f"{self.metric} = {self.value:.4g}{ci}, {n}"

    def verdict(self) -> str:
        claimed = f"claimed {threshold_text(self.direction, self.threshold)}"
        status = self.status
        if status == "inconclusive":
            return f"{claimed}: inconclusive (precondition failed: {self.precondition.reason})"
        if status == "undecided":
            return f"{claimed}: undecided (the CI reaches {self.past_threshold:.3g} past the threshold)"
        return f"{claimed}: {status}"

    def row(self) -> dict:
        """The ledger row at full precision (COLUMNS)."""
        fields = asdict(self)
        pre = self.precondition
        fields.update(
            claim=fields.pop("claim_id"),
            status=self.status,
            past_threshold=self.past_threshold,
            ci_level="exact" if self.exact else _percent(self.ci_level) if self.measured else "",
            role=role_of(self.family, self.check),
            precondition="" if pre is None else f"{'met' if pre.ok else 'failed'}: {pre.reason}",
        )
        return {column: fields[column] for column in COLUMNS}


def measure(
    figure,
    direction: str,
    threshold: float,
    *,
    why: str,
    exact: bool = False,
    precondition=None,
    family_size: int = 0,
    note: str = "",
    n: int | None = None,
    **fields,
) -> Claim:
    """The one claim path: the Claim a test's figure makes. `figure` is a CI (attnclaims.stats), an
    exact number (`exact=True`), or None where a failed premise left nothing to measure. The premises
    (`precondition`, and any the CI carries: a share's denominator) are decided at the claim's level:
    the family's simultaneous level 1 - ALPHA/m for a confirmatory claim (`family_size` m > 0), which
    its CI is then recomputed at, with the p of its threshold; else the CI's own. A claim whose premise
    failed records no figure (the one measured anyway is quoted in the note). `fields`: the rest of
    Claim's fields (hypothesis, claim_id, model, metric, unit, family, ...)."""
    if not isinstance(why, str) or not why.strip():
        raise TypeError("claim(): say why the threshold is where it is (why='...')")
    confirmatory, p = family_size > 0, math.nan
    premises = [precondition, getattr(figure, "premise", None)]
    precondition = Premise.all_of(premises, 1 - ALPHA / family_size if confirmatory else _level(figure))
    if figure is None and (precondition is None or precondition.ok):
        raise TypeError(
            "claim(): no figure (None) is recorded only for a claim whose precondition failed; "
            "measure it, or pass precondition=(False, reason)"
        )
    if figure is not None and not (precondition is None or precondition.ok):
        _figures(figure, exact)  # a malformed figure is an error whether or not the premise held
        quoted = f"{figure:.3g}" if exact and isinstance(figure, Real) else str(figure)
        figure, exact, note = None, False, f"no figure: measured anyway {quoted}; {note}"
    if confirmatory and figure is not None:
        figure, p = _simultaneous(figure, direction, float(threshold), family_size, exact)
    value, low, high, level, count = _figures(figure, exact)
    return Claim(
        value=value,
        threshold=float(threshold),
        direction=direction,
        why=why,
        ci_low=low,
        ci_high=high,
        ci_level=level,
        exact=exact,
        n=int(n if n is not None else count),
        family_size=family_size,
        p=p,
        precondition=precondition,
        note=note,
        **fields,
    )


def _figures(figure, exact: bool) -> tuple[float, float, float, float, int]:
    """(value, ci_low, ci_high, ci_level, n) of a CI or an exact number; all NaN (n 0) for None, the
    figure of a claim whose premise failed before anything could be measured."""
    if figure is None:
        return math.nan, math.nan, math.nan, math.nan, 0
    if exact:
        if not isinstance(figure, Real):
            raise TypeError(f"claim(): an exact figure is a number, got {type(figure).__name__}")
        return float(figure), math.nan, math.nan, math.nan, 1
    if isinstance(figure, Real):
        raise TypeError(
            f"claim(): {figure!r} is a bare number: pass its CI (attnclaims.stats), or exact=True where "
            "the figure has no sampling error"
        )
    try:
        return (
            float(figure.estimate),
            float(figure.low),
            float(figure.high),
            float(getattr(figure, "confidence", 0.95)),
            int(figure.n),
        )
    except AttributeError:
        raise TypeError(
            "claim(): the figure must be a CI with estimate, low, high and n (attnclaims.stats), "
            f"got {figure!r}"
        ) from None


def _level(figure) -> float:
    """The level an exploratory claim is decided at: its CI's own (95% for an exact figure or none)."""
    return float(getattr(figure, "confidence", 0.95))


def _simultaneous(figure, direction: str, threshold: float, size: int, exact: bool):
    """A confirmatory claim's CI at the family's simultaneous level, and the p of its threshold."""
    if exact or getattr(figure, "redo", None) is None or getattr(figure, "pvalue", None) is None:
        raise TypeError(
            "claim(): a confirmatory claim needs a CI that can be recomputed at the family's level "
            "(attnclaims.stats: bootstrap_ci, binomial_ci, ...); an exact figure or a hand-built CI is "
            "exploratory"
        )
    figure = figure.at(1 - ALPHA / size)
    if direction == "within":
        return figure, max(figure.p_value(-threshold), figure.p_value(threshold))
    return figure, figure.p_value(threshold)


def role_of(family: str, check: bool = False) -> str:
    """A claim's role: check (the protocol on a known-truth model: `@pytest.mark.check`), confirmatory
    when it belongs to a family, else exploratory."""
    return "check" if check else "confirmatory" if family else "exploratory"


def threshold_text(direction: str, threshold: float, number=lambda x: f"{x:g}") -> str:
    """The claimed side in words, the one place it is written: ">= 0.5", "<= 0", "within +-0.1";
    `number` formats the threshold (the report passes attnclaims.ledger.round_sig).

        threshold_text("within", 0.1)  # "within +-0.1"
    """
    side = "within +-" if direction == "within" else f"{direction} "
    return f"{side}{number(threshold)}"


def _percent(level: float) -> str:
    """0.95 -> "95%", 0.995 -> "99.5%", 1 - 0.05/30 -> "99.83%"."""
    return f"{100 * level:.4g}%"
