"""The claims ledger: every measured claim, its figure, its threshold and its status.

A claim holds when its measured figure lies on the claimed side of the threshold. When the claim
carries a confidence interval, the whole interval must lie on that side (the lower bound for
">=", the upper bound for "<="): a point estimate that clears the bar by noise does not count.
A claim may name its precondition (e.g. "the model learned the task"); when that failed, the claim
is `inconclusive` whatever its figure, and never `supported`.

Statuses: supported (precondition met or none, claim holds), refuted (precondition met or none,
claim does not hold), inconclusive (precondition failed).

Two files under the results folder:
- `claims.csv`: one row per (hypothesis, claim, model), the latest measurement, in stable columns
  (COLUMNS) with numbers rounded to 4 significant digits and rows sorted, so that `git diff`
  between two commits shows only the claims that moved. Tracked in git.
- `history.jsonl`: every measurement ever recorded, at full precision, with its run id, commit and
  time, one JSON object per line (append-only, untracked).

Writers hold a file lock, append to the history with fsync, and replace `claims.csv` with one
atomic rename, so parallel pytest-xdist workers lose no rows and an interrupted run leaves the
previous ledger intact.

Compare two ledgers (paths or git revisions of results/claims.csv):
    python -m lib.claims diff HEAD~3 results/claims.csv
prints status flips, value shifts beyond the old CI and added/removed claims; it exits 1 on any
status flip.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from filelock import FileLock

DIRECTIONS = (">=", "<=")
STATUSES = ("supported", "refuted", "inconclusive")
SIGNIFICANT_DIGITS = 4
# The tracked ledger's columns, in order. What each means:
#   hypothesis  the hypothesis file, hypotheses/test_<hypothesis>.py
#   claim       the test that makes the claim (with its parameters, e.g. "test_x[p=0.1]")
#   model       the model measured ("smollm2-135m", "toy:<config>")
#   metric      what was measured, in words with units
#   value, ci_low, ci_high   the figure and its 95% CI (empty when none)
#   threshold, direction     the claim: value (or the whole CI) >= or <= threshold
#   status      supported / refuted / inconclusive
#   n, unit     the sample size and what it counts (prompts, families, seeds, sequences, heads)
#   adjusted_p  the Holm-adjusted p-value where the claim is one of a family (empty otherwise)
#   precondition  "met: ..." or "failed: ..." with the reason (empty when the claim has none)
#   note        anything else a reader needs (controls, confounds)
COLUMNS = [
    *("hypothesis", "claim", "model", "metric", "value", "ci_low", "ci_high", "threshold", "direction"),
    *("status", "n", "unit", "adjusted_p", "precondition", "note"),
]
KEY = ["hypothesis", "claim", "model"]
NUMBERS = ["value", "ci_low", "ci_high", "threshold", "adjusted_p"]
RUN_FIELDS = ["run_id", "commit", "timestamp"]  # history.jsonl only
LEDGER_PATH = "results/claims.csv"  # inside the repository, for `diff` against a git revision


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


def decisive_bound(direction: str, value: float, ci_low: float, ci_high: float) -> float:
    """The figure a claim compares with its threshold: the CI bound nearest to it (the lower bound for
    ">=", the upper for "<="), or the value when there is no CI."""
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return value
    return ci_low if direction == ">=" else ci_high


@dataclass(frozen=True, repr=False)
class Claim:
    hypothesis: str
    claim_id: str
    model: str
    metric: str
    value: float
    threshold: float
    direction: str = ">="
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int = 1
    unit: str = ""
    adjusted_p: float = math.nan
    precondition: Precondition | None = None
    note: str = ""

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"claim {self.claim_id!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}"
            )
        if not math.isfinite(self.value):
            raise ValueError(f"claim {self.claim_id!r}: measured value is {self.value}; fix the measurement")
        if not math.isnan(self.adjusted_p) and not 0.0 <= self.adjusted_p <= 1.0:
            raise ValueError(f"claim {self.claim_id!r}: adjusted p must lie in [0, 1], got {self.adjusted_p}")
        object.__setattr__(self, "precondition", Precondition.coerce(self.precondition))

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.ci_low) and math.isfinite(self.ci_high)

    @property
    def decisive_bound(self) -> float:
        """The figure compared with the threshold (see `decisive_bound`)."""
        return decisive_bound(self.direction, self.value, self.ci_low, self.ci_high)

    @property
    def holds(self) -> bool:
        """Whether the figure lies on the claimed side of the threshold (preconditions aside)."""
        bound = self.decisive_bound
        return bound >= self.threshold if self.direction == ">=" else bound <= self.threshold

    @property
    def status(self) -> str:
        if self.precondition is not None and not self.precondition.ok:
            return "inconclusive"
        return "supported" if self.holds else "refuted"

    @property
    def supported(self) -> bool:
        return self.status == "supported"

    def __bool__(self) -> bool:
        """`assert claim(...)` asserts that the claim is supported: it holds and its precondition was met."""
        return self.supported

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        ci = f" [95% CI {self.ci_low:.4g}, {self.ci_high:.4g}]" if self.has_ci else ""
        n = f"n={self.n}" + (f" {self.unit}" if self.unit else "")
        verdict = {"supported": "holds", "refuted": "does not hold"}.get(self.status)
        if verdict is None:
            verdict = f"inconclusive (precondition failed: {self.precondition.reason})"
        return (
            f"{self.claim_id} on {self.model}: {self.metric} = {self.value:.4g}{ci}, {n}; "
            f"claimed {self.direction} {self.threshold:g}: {verdict}"
        )

    def row(self) -> dict:
        """The ledger row at full precision (COLUMNS)."""
        fields = asdict(self)
        pre = self.precondition
        fields.update(
            claim=fields.pop("claim_id"),
            status=self.status,
            precondition="" if pre is None else f"{'met' if pre.ok else 'failed'}: {pre.reason}",
        )
        return {column: fields[column] for column in COLUMNS}


def round_sig(x, digits: int = SIGNIFICANT_DIGITS) -> str:
    """A number as text with `digits` significant digits ("" for a missing one): 2.1234567 -> "2.123"."""
    if x is None or x == "":
        return ""
    x = float(x)
    if math.isnan(x):
        return ""
    if x == 0:
        return "0"
    return f"{x:.{digits}g}"


def normalise(table: pd.DataFrame, sort: bool = True) -> pd.DataFrame:
    """Any ledger frame (this format or the old one, with `claim_id`, commit, timestamp and run id
    columns) -> COLUMNS, numbers as floats, rows sorted by (hypothesis, claim, model) unless `sort`
    is False."""
    table = table.copy()
    if "claim_id" in table.columns:  # the old format; history.jsonl may hold rows of both
        old = _text(table.pop("claim_id"))
        table["claim"] = (
            old
            if "claim" not in table.columns
            else _text(table["claim"]).where(_text(table["claim"]) != "", old)
        )
    for column in COLUMNS:
        if column not in table.columns:
            table[column] = math.nan if column in NUMBERS else ""
    table = table[COLUMNS].copy()
    for column in NUMBERS:
        table[column] = pd.to_numeric(table[column].replace("", math.nan), errors="coerce").astype(float)
    for column in set(COLUMNS) - set(NUMBERS) - {"n"}:
        table[column] = _text(table[column])
    table["n"] = pd.to_numeric(table["n"], errors="coerce").fillna(1).astype(int)
    if sort:
        table = table.sort_values(KEY, kind="stable")
    return table.reset_index(drop=True)


def _text(column: pd.Series) -> pd.Series:
    return column.map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))


def read_ledger(source) -> pd.DataFrame:
    """A ledger from a path, a file-like object or CSV text, normalised (see `normalise`)."""
    if isinstance(source, str) and "\n" in source:
        source = io.StringIO(source)
    table = pd.read_csv(source, dtype=str, keep_default_na=False)
    return normalise(table)


def to_csv_text(table: pd.DataFrame) -> str:
    """The tracked form: COLUMNS, numbers rounded to SIGNIFICANT_DIGITS, rows sorted."""
    table = normalise(table)
    for column in NUMBERS:
        table[column] = table[column].map(round_sig)
    return table.to_csv(index=False, lineterminator="\n")


class Ledger:
    """The results folder's ledger, shared safely between processes."""

    def __init__(self, folder: Path, run_id: str, commit: str | None = None):
        self.folder = Path(folder)
        self.run_id = run_id
        self.commit = commit if commit is not None else git_commit(self.folder, exclude=self.folder)
        self.csv = self.folder / "claims.csv"
        self.history = self.folder / "history.jsonl"
        self._lock = FileLock(str(self.folder / ".ledger.lock"))

    def record(self, claim: Claim) -> dict:
        row = claim.row()
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            logged = {
                **row,
                "run_id": self.run_id,
                "commit": self.commit,
                "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            with open(self.history, "a+b") as handle:
                if handle.tell() > 0:  # a writer killed mid-line leaves no newline: start a fresh line
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        handle.write(b"\n")
                handle.write((json.dumps(logged, allow_nan=True) + "\n").encode())
                handle.flush()
                os.fsync(handle.fileno())
            table = self.table()
            same = (
                (table.hypothesis == row["hypothesis"])
                & (table.claim == row["claim"])
                & (table.model == row["model"])
            )
            table = pd.concat([table[~same], normalise(pd.DataFrame([row]))], ignore_index=True)
            _atomic_write(self.csv, to_csv_text(table))
        return row

    def table(self) -> pd.DataFrame:
        """The latest row of every claim (an empty frame with the columns when there is none)."""
        if not self.csv.exists():
            return normalise(pd.DataFrame(columns=COLUMNS))
        return read_ledger(self.csv)

    def run_rows(self, run_id: str | None = None) -> pd.DataFrame:
        """Every measurement recorded by one run (default: this ledger's run), with RUN_FIELDS."""
        run_id = run_id or self.run_id
        rows = []
        if self.history.exists():
            with open(self.history, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        row = json.loads(line)
                    except ValueError:  # a line cut short by a killed process: skip it
                        continue
                    if row.get("run_id") == run_id:
                        rows.append(row)
        frame = pd.DataFrame(rows, columns=sorted({*COLUMNS, "claim_id", *RUN_FIELDS}))
        return pd.concat([normalise(frame, sort=False), frame[RUN_FIELDS].reset_index(drop=True)], axis=1)


def _atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename; the file gets the mode a new file gets (0666 less the umask),
    not mkstemp's 0600, so a shared results folder stays readable."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _git(args: list[str], where: Path, timeout: float = 10) -> str:
    where = Path(where)
    cwd = where if where.is_dir() else where.parent
    while not cwd.exists():
        cwd = cwd.parent
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=True
    ).stdout


def git_commit(where: Path, exclude: Path | None = None) -> str:
    """The commit of the checkout holding `where` (12 hex digits), with "-dirty" when tracked files outside
    `exclude` (the results folder) differ from it: a run writing its own ledger does not make it dirty.
    "unknown" outside a git checkout."""
    try:
        commit = _git(["rev-parse", "--short=12", "HEAD"], where).strip()
        top = Path(_git(["rev-parse", "--show-toplevel"], where).strip())
        pathspec = ["--", "."]
        if exclude is not None:
            try:
                relative = Path(exclude).resolve().relative_to(top.resolve())
                pathspec.append(f":(exclude){relative.as_posix()}")
            except ValueError:  # results outside the checkout: nothing to exclude
                pass
        changed = _git(["status", "--porcelain", "--untracked-files=no", *pathspec], top).strip()
        return f"{commit}-dirty" if changed else (commit or "unknown")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def format_table(rows: pd.DataFrame) -> str:
    """A fixed-width text table of claims for the terminal."""
    if rows.empty:
        return "(no claims recorded)"
    lines = []
    for r in normalise(rows).itertuples():
        ci = f"[{r.ci_low:.3g}, {r.ci_high:.3g}]" if pd.notna(r.ci_low) and pd.notna(r.ci_high) else "-"
        threshold = f"{r.direction} {r.threshold:g}"
        lines.append(
            (f"{r.status:<12}", f"{r.hypothesis}::{r.claim}", str(r.model), f"{r.value:.4g}", ci, threshold)
        )
    header = ("status", "claim", "model", "value", "95% CI", "threshold")
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*line) for line in lines])


# ---------------------------------------------------------------------------------------------
# diff


@dataclass(frozen=True)
class LedgerDiff:
    flips: list[str]
    shifts: list[str]
    added: list[str]
    removed: list[str]

    def lines(self) -> list[str]:
        sections = [
            ("status flips", self.flips),
            ("shifts beyond the old CI", self.shifts),
            ("added", self.added),
            ("removed", self.removed),
        ]
        out = []
        for title, items in sections:
            if items:
                out.append(f"{title} ({len(items)}):")
                out.extend(f"  {item}" for item in items)
        return out or ["no claim moved"]


def diff_ledgers(old: pd.DataFrame, new: pd.DataFrame) -> LedgerDiff:
    """Status flips, value shifts beyond the old CI (any change of value when the old row had no CI),
    claims added and removed, between two ledgers."""
    old, new = normalise(old).set_index(KEY), normalise(new).set_index(KEY)
    flips, shifts = [], []
    for key in old.index.intersection(new.index, sort=False):
        o, n = old.loc[key], new.loc[key]
        name = f"{key[0]}::{key[1]} on {key[2]}"
        values = f"{round_sig(o.value)} -> {round_sig(n.value)}"
        if o.status != n.status:
            flips.append(f"{name}: {o.status} -> {n.status} ({o.metric}: {values})")
        elif math.isfinite(o.ci_low) and math.isfinite(o.ci_high):
            if not o.ci_low <= n.value <= o.ci_high:
                shifts.append(
                    f"{name}: {values}, outside the old CI [{round_sig(o.ci_low)}, {round_sig(o.ci_high)}]"
                )
        elif round_sig(o.value) != round_sig(n.value):
            shifts.append(f"{name}: {values} (old row had no CI)")
    added = [
        f"{k[0]}::{k[1]} on {k[2]}: {new.loc[k].status}" for k in new.index.difference(old.index, sort=False)
    ]
    removed = [f"{k[0]}::{k[1]} on {k[2]}" for k in old.index.difference(new.index, sort=False)]
    return LedgerDiff(flips=flips, shifts=shifts, added=sorted(added), removed=sorted(removed))


def load_ledger(spec: str, repo: Path | None = None) -> pd.DataFrame:
    """A ledger path, or a git revision (its results/claims.csv; "REV:path" names another file)."""
    if Path(spec).is_file():
        return read_ledger(Path(spec))
    repo = Path(repo or Path(__file__).resolve().parents[1])
    revision = spec if ":" in spec else f"{spec}:{LEDGER_PATH}"
    try:
        text = _git(["show", revision], repo)
    except subprocess.CalledProcessError as error:
        raise SystemExit(
            f"{spec!r} is neither a ledger file nor a git revision holding {LEDGER_PATH} "
            f"(git: {error.stderr.strip()}); pass a path to a claims.csv or a commit such as HEAD~1"
        ) from None
    return read_ledger(io.StringIO(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.claims", description="The claims ledger.")
    commands = parser.add_subparsers(dest="command", required=True)
    diff = commands.add_parser("diff", help="what moved between two ledgers; exit 1 on any status flip")
    diff.add_argument("old", help="ledger path or git revision (then its results/claims.csv)")
    diff.add_argument("new", help="ledger path or git revision (then its results/claims.csv)")
    args = parser.parse_args(argv)
    changes = diff_ledgers(load_ledger(args.old), load_ledger(args.new))
    print("\n".join(changes.lines()))
    return 1 if changes.flips else 0


if __name__ == "__main__":
    sys.exit(main())
