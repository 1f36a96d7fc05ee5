"""The claims ledger: every measured claim, its figure, its threshold and whether it held.

A claim holds when its measured figure lies on the claimed side of the threshold. When the claim
carries a confidence interval, the whole interval must lie on that side (the lower bound for
">=", the upper bound for "<="): a point estimate that clears the bar by noise does not count.

Two files under the results folder:
- `claims.csv`: one row per (claim_id, model), the latest measurement. Tracked in git, so a
  diff between commits shows which figures and verdicts moved.
- `history.jsonl`: every measurement ever recorded, one JSON object per line (append-only).

Writers hold a file lock, append to the history with fsync, and replace `claims.csv` with one
atomic rename, so parallel pytest-xdist workers lose no rows and an interrupted run leaves the
previous ledger intact.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from filelock import FileLock

DIRECTIONS = (">=", "<=")
COLUMNS = [
    "hypothesis", "claim_id", "model", "metric", "value", "ci_low", "ci_high", "threshold",
    "direction", "n", "status", "commit", "timestamp", "run_id", "note",
]  # fmt: skip


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
    note: str = ""

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"claim {self.claim_id!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not math.isfinite(self.value):
            raise ValueError(f"claim {self.claim_id!r}: measured value is {self.value}; fix the measurement")

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.ci_low) and math.isfinite(self.ci_high)

    @property
    def decisive_bound(self) -> float:
        """The figure compared with the threshold: the CI bound nearest to it, or the value."""
        if not self.has_ci:
            return self.value
        return self.ci_low if self.direction == ">=" else self.ci_high

    @property
    def holds(self) -> bool:
        bound = self.decisive_bound
        return bound >= self.threshold if self.direction == ">=" else bound <= self.threshold

    def __bool__(self) -> bool:
        """`assert claim(...)` asserts that the claim holds."""
        return self.holds

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        ci = f" [95% CI {self.ci_low:.4g}, {self.ci_high:.4g}]" if self.has_ci else ""
        verdict = "holds" if self.holds else "does not hold"
        return (
            f"{self.claim_id} on {self.model}: {self.metric} = {self.value:.4g}{ci}, n={self.n}; "
            f"claimed {self.direction} {self.threshold:g}: {verdict}"
        )


class Ledger:
    """The results folder's ledger, shared safely between processes."""

    def __init__(self, folder: Path, run_id: str, commit: str | None = None):
        self.folder = Path(folder)
        self.run_id = run_id
        self.commit = commit if commit is not None else git_commit(self.folder)
        self.csv = self.folder / "claims.csv"
        self.history = self.folder / "history.jsonl"
        self._lock = FileLock(str(self.folder / ".ledger.lock"))

    def record(self, claim: Claim) -> dict:
        row = {
            **asdict(claim),
            "status": "supported" if claim.holds else "refuted",
            "commit": self.commit,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "run_id": self.run_id,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            with open(self.history, "a+b") as handle:
                if handle.tell() > 0:  # a writer killed mid-line leaves no newline: start a fresh line
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":
                        handle.write(b"\n")
                handle.write((json.dumps(row, allow_nan=True) + "\n").encode())
                handle.flush()
                os.fsync(handle.fileno())
            table = self.table()
            keep = ~((table["claim_id"] == claim.claim_id) & (table["model"] == claim.model))
            table = pd.concat([table[keep], pd.DataFrame([row])[COLUMNS]], ignore_index=True)
            table = table.sort_values(["hypothesis", "claim_id", "model"], kind="stable")
            _atomic_write_csv(table, self.csv)
        return row

    def table(self) -> pd.DataFrame:
        """The latest row of every claim (an empty frame with the columns when there is none)."""
        if not self.csv.exists():
            return pd.DataFrame(columns=COLUMNS)
        return pd.read_csv(self.csv, keep_default_na=False, na_values=["nan", "NaN"])

    def run_rows(self, run_id: str | None = None) -> pd.DataFrame:
        """Every measurement recorded by one run (default: this ledger's run)."""
        run_id = run_id or self.run_id
        if not self.history.exists():
            return pd.DataFrame(columns=COLUMNS)
        rows = []
        with open(self.history, encoding="utf-8") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except ValueError:  # a line cut short by a killed process: skip it
                    continue
                if row.get("run_id") == run_id:
                    rows.append(row)
        return pd.DataFrame(rows, columns=COLUMNS)


def _atomic_write_csv(table: pd.DataFrame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            table.to_csv(handle, index=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def git_commit(where: Path) -> str:
    """`git describe --always --dirty` of the checkout holding `where`, or "unknown"."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=where if Path(where).is_dir() else Path(where).parent,
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def format_table(rows: pd.DataFrame) -> str:
    """A fixed-width text table of claims for the terminal."""
    if rows.empty:
        return "(no claims recorded)"
    lines = []
    for _, r in rows.iterrows():
        ci = f"[{r.ci_low:.3g}, {r.ci_high:.3g}]" if pd.notna(r.ci_low) and pd.notna(r.ci_high) else "-"
        lines.append(
            (f"{r.status:<9}", f"{r.hypothesis}::{r.claim_id}", str(r.model), f"{r.value:.4g}", ci, f"{r.direction} {r.threshold:g}")
        )
    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    header = ("status", "claim", "model", "value", "95% CI", "threshold")
    widths = [max(w, len(h)) for w, h in zip(widths, header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*line) for line in lines])
