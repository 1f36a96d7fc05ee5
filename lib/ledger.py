"""The claims ledger: the files that hold every measured claim, and how two ledgers compare.

Two files under the results folder, and one beside them:
- `claims.csv`: one row per (hypothesis, claim, model, settings), the latest measurement, in stable
  columns (COLUMNS) with numbers rounded to 4 significant digits and rows sorted, so that `git diff`
  between two commits shows only the claims that moved. Tracked in git: the committed ledger is the
  record of expected verdicts (fixtures/claim.py fails a test whose verdict differs from it).
- `history.jsonl`: every measurement ever recorded, at full precision, with its run id, commit,
  time and run settings, one JSON object per line (append-only, untracked).
- `environments.json`: the run settings (device, dtype, threads, library versions) that each row's
  `env` id names. A non-default dtype or device is part of a row's identity (`settings`), so a
  bfloat16 run never overwrites a float32 row.

Writers hold a file lock, append to the history with fsync, and replace `claims.csv` with one
atomic rename, so parallel pytest-xdist workers lose no rows and an interrupted run leaves the
previous ledger intact.

Compare two ledgers (paths or git revisions of results/claims.csv):
    attnclaims diff HEAD~3 results/claims.csv
prints verdict changes, value shifts beyond the old CI and added/removed claims; it exits 1 on any
verdict change. `replication(table)` derives, for every claim measured on two or more real models,
whether it replicates.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from filelock import FileLock

from attnclaims.claims import COLUMNS, KEY, Claim, role_of, threshold_text

SIGNIFICANT_DIGITS = 4
NUMBERS = ["value", "ci_low", "ci_high", "threshold", "past_threshold", "p", "adjusted_p"]
INTEGERS = {"n": 1, "family_size": 0}  # whole-number columns and their defaults
RUN_FIELDS = ["run_id", "commit", "timestamp"]  # history.jsonl only
ENVIRONMENTS = "environments.json"


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
    for column in set(COLUMNS) - set(NUMBERS) - set(INTEGERS):
        table[column] = _text(table[column])
    for column, default in INTEGERS.items():
        table[column] = pd.to_numeric(table[column], errors="coerce").fillna(default).astype(int)
    derived = table.family.map(role_of)  # a ledger written before the column has it too
    table["role"] = table.role.where(table.role.isin(["check", "confirmatory", "exploratory"]), derived)
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

    def record(self, claim: Claim, environment: dict | None = None) -> dict:
        """Append the claim to the history and make it the ledger's row for its key; `environment`
        (run_settings()) is written to environments.json under the row's env id. The row keeps the
        adjusted p it had until its family is measured again: once every member of a confirmatory family
        is recorded in this run, the family's Holm is written at once (a run stopped later loses none)."""
        row = claim.row()
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            _ignore_run_files(self.folder)
            if environment is not None:
                self._remember(claim.env, environment)
            logged = {
                **row,
                "run_id": self.run_id,
                "commit": self.commit,
                "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "environment": environment,
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
            same = _same_key(table, row)
            new = normalise(pd.DataFrame([row]))
            if same.any() and math.isnan(row["adjusted_p"]) and row["family"]:
                new["adjusted_p"] = table.loc[same, "adjusted_p"].iloc[-1]  # until the family is complete
            table = pd.concat([table[~same], new], ignore_index=True)
            _atomic_write(self.csv, to_csv_text(table))
        if row["family"] and self._complete(row):
            self.adjust_families(family=(row["hypothesis"], row["family"], row["settings"]))
        return row

    def _complete(self, row: dict) -> bool:
        """Whether this run has recorded every member of the row's confirmatory family."""
        rows = self.run_rows()
        members = rows[
            (rows.hypothesis == row["hypothesis"])
            & (rows.family == row["family"])
            & (rows.settings == row["settings"])
        ]
        return members.drop_duplicates(KEY).shape[0] >= int(row["family_size"])

    def _remember(self, env_id: str, environment: dict) -> None:
        path = self.folder / ENVIRONMENTS
        known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if known.get(env_id) != environment:
            known[env_id] = environment
            _atomic_write(path, json.dumps(known, indent=1, sort_keys=True) + "\n")

    def adjust_families(self, run_id: str | None = None, family: tuple[str, str, str] | None = None) -> int:
        """Write Holm's adjusted p into the ledger rows of the confirmatory claims one run measured
        (default: this ledger's run), family by family (or only `family`: (hypothesis, family, settings));
        returns the number of rows adjusted. A member
        whose premise failed was not tested: it counts as p = 1, as an unmeasured member does, so its
        figure gives the others no step down, and its own row gets no adjusted p."""
        from attnclaims.stats import holm

        rows = self.run_rows(run_id)
        rows = rows[(rows.family != "") & rows.p.notna()]
        if family is not None:
            rows = rows[
                (rows.hypothesis == family[0]) & (rows.family == family[1]) & (rows.settings == family[2])
            ]
        if rows.empty:
            return 0
        rows = rows.groupby(KEY, sort=False).tail(1)  # a claim measured twice: its last figure
        adjusted = []
        for _, family in rows.groupby(["hypothesis", "family", "settings"], sort=False):
            tested = family[family.status != "inconclusive"]
            m = max(int(family.family_size.max()), len(family))
            p = holm([*tested.p, *[1.0] * (m - len(tested))])[: len(tested)]  # the untested: p = 1
            adjusted += [(tuple(r[k] for k in KEY), float(a)) for (_, r), a in zip(tested.iterrows(), p)]
            adjusted += [
                (tuple(r[k] for k in KEY), math.nan)
                for _, r in family.iterrows()
                if r.status == "inconclusive"
            ]
        with self._lock:
            table = self.table().set_index(KEY)
            for key, value in adjusted:
                if key in table.index:
                    table.loc[key, "adjusted_p"] = value
            _atomic_write(self.csv, to_csv_text(table.reset_index()))
        return len(adjusted)

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
                    if json.dumps(run_id)[1:-1] not in line:  # other runs' lines are not parsed
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError:  # a line cut short by a killed process: skip it
                        continue
                    if row.get("run_id") == run_id:
                        rows.append(row)
        frame = pd.DataFrame(rows, columns=sorted({*COLUMNS, "claim_id", *RUN_FIELDS}))
        return pd.concat([normalise(frame, sort=False), frame[RUN_FIELDS].reset_index(drop=True)], axis=1)


def _same_key(table: pd.DataFrame, row: dict) -> pd.Series:
    same = pd.Series(True, index=table.index)
    for column in KEY:
        same &= table[column] == row[column]
    return same


def run_settings(
    device: str = "cpu", dtype: str = "float32", cluster: str | None = None, device_map: str | None = None
) -> dict:
    """What a run's figures may depend on beyond the code: device, dtype, torch's thread count and
    the versions of the libraries that compute them; and where it ran, if elsewhere than one device
    of one process: the Ray pool of the sweeps (`--ray`) and the models' device map (`--device-map`),
    whose results equal one process's on one device."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "absent"

    return {
        "device": device,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        **{name: of(name) for name in ("torch", "transformers", "transformer-lens", "numpy", "scipy")},
        **({"cluster": cluster} if cluster else {}),
        **({"device_map": device_map} if device_map else {}),
    }


def settings_id(environment: dict) -> str:
    """A short stable id of run settings (the ledger's env column)."""
    return hashlib.sha256(json.dumps(environment, sort_keys=True).encode()).hexdigest()[:8]


def row_settings(device: str = "cpu", dtype: str = "float32") -> str:
    """The settings that are part of a row's identity: empty for float32 on the CPU."""
    parts = ([f"dtype={dtype}"] if dtype != "float32" else []) + (
        [f"device={device}"] if device != "cpu" else []
    )
    return ",".join(parts)


RUN_FILES = (".ledger.lock", "history.jsonl", "*.tmp")  # a run's own files, never tracked


def _ignore_run_files(folder: Path) -> None:
    """A results/.gitignore for the files a run keeps to itself (written once; a project's own edits stay),
    so `git add -A` after a run commits the ledger and its figures and nothing else."""
    path = folder / ".gitignore"
    if not path.exists():
        header = (
            "# written by attnclaims: the ledger's lock, every run's full history, atomic-write temporaries"
        )
        _atomic_write(path, "\n".join([header, *RUN_FILES]) + "\n")


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


def _is_commit(revision: str, where: Path) -> bool:
    try:
        _git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], where)
        return True
    except (OSError, subprocess.CalledProcessError):
        return False


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
        ci = (
            f"[{r.ci_low:.3g}, {r.ci_high:.3g}]"
            if pd.notna(r.ci_low) and pd.notna(r.ci_high)
            else ("exact" if math.isfinite(r.value) else "-")
        )
        model = f"{r.model} ({r.settings})" if r.settings else str(r.model)
        lines.append(
            (
                f"{r.status:<12}",
                f"{r.hypothesis}::{r.claim}",
                model,
                f"{r.value:.4g}" if math.isfinite(r.value) else "-",
                ci,
                threshold_text(r.direction, r.threshold),
            )
        )
    header = ("status", "claim", "model", "value", "CI", "threshold")
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*line) for line in lines])


REPLICATES, DOES_NOT, REFUTED_EVERYWHERE = "replicates", "does not replicate", "refuted on every model"


def replication(table: pd.DataFrame, toy_prefix: str = "toy:") -> pd.DataFrame:
    """For every claim measured on two or more real models (same settings), one replication verdict:
    replicates (supported on every model), refuted on every model (that refutation replicates), does not
    replicate (refuted on some model and not on another; a failed premise elsewhere never hides that),
    else undecided (undecided on some model) or inconclusive. Columns:
    hypothesis, claim, settings, verdict, models, figures."""
    rows = normalise(table)
    rows = rows[~rows.model.str.startswith(toy_prefix)]
    out = []
    for (hypothesis, claim, settings), group in rows.groupby(["hypothesis", "claim", "settings"], sort=True):
        if group.model.nunique() < 2:
            continue
        statuses = set(group.status)
        verdict = (
            REPLICATES
            if statuses == {"supported"}
            else REFUTED_EVERYWHERE
            if statuses == {"refuted"}
            else DOES_NOT
            if "refuted" in statuses
            else "undecided"
            if "undecided" in statuses
            else "inconclusive"
        )
        figures = "; ".join(
            f"{r.model} {round_sig(r.value)}"
            + (f" [{round_sig(r.ci_low)}, {round_sig(r.ci_high)}]" if math.isfinite(r.ci_low) else "")
            + f" {r.status}"
            for r in group.itertuples()
        )
        out.append((hypothesis, claim, settings, verdict, ",".join(group.model), figures))
    return pd.DataFrame(out, columns=["hypothesis", "claim", "settings", "verdict", "models", "figures"])


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
            ("verdict changes", self.flips),
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
    """Verdict changes, value shifts beyond the old CI (any change of value when the old row had no CI),
    claims added and removed, between two ledgers."""
    old, new = normalise(old).set_index(KEY), normalise(new).set_index(KEY)
    flips, shifts = [], []
    for key in old.index.intersection(new.index, sort=False):
        o, n = old.loc[key], new.loc[key]
        name = _name(key)
        values = f"{round_sig(o.value)} -> {round_sig(n.value)}"
        if o.status != n.status:
            flips.append(f"{name}: {o.status} -> {n.status} ({o.metric}: {values})")
        elif math.isnan(o.value) != math.isnan(n.value):  # a premise-failed row that records no figure
            shifts.append(
                f"{name}: {round_sig(o.value) or 'no figure'} -> {round_sig(n.value) or 'no figure'}"
            )
        elif math.isfinite(o.ci_low) and math.isfinite(o.ci_high):
            if not o.ci_low <= n.value <= o.ci_high:
                shifts.append(
                    f"{name}: {values}, outside the old CI [{round_sig(o.ci_low)}, {round_sig(o.ci_high)}]"
                )
        elif round_sig(o.value) != round_sig(n.value):
            shifts.append(f"{name}: {values} (old row had no CI)")
    added = [f"{_name(k)}: {new.loc[k].status}" for k in new.index.difference(old.index, sort=False)]
    removed = [_name(k) for k in old.index.difference(new.index, sort=False)]
    return LedgerDiff(flips=flips, shifts=shifts, added=sorted(added), removed=sorted(removed))


def _name(key) -> str:
    """("h", "test_x", "m", "dtype=bfloat16") -> "h::test_x on m (dtype=bfloat16)"."""
    hypothesis, claim, model, settings = key
    return f"{hypothesis}::{claim} on {model}" + (f" ({settings})" if settings else "")


def expected_ledgers(csv: Path) -> list[tuple[pd.DataFrame, str]]:
    """The records of expected verdicts for a run writing `csv`, each with a phrase saying which: the
    ledger as committed at HEAD, where git tracks it, and the file as it stands before the run writes
    to it, where it differs (an edit not yet committed). A claim must match both."""
    csv = Path(csv)
    out = []
    try:
        top = Path(_git(["rev-parse", "--show-toplevel"], csv.parent).strip())
        relative = csv.resolve().relative_to(top.resolve()).as_posix()
        committed = _git(["show", f"HEAD:{relative}"], top)
        out.append((read_ledger(io.StringIO(committed)), f"the committed {relative}"))
    except (OSError, ValueError, subprocess.SubprocessError):  # not in git, not tracked, or no commit yet
        committed = None
    if csv.exists() and csv.read_text(encoding="utf-8") != committed:
        out.append((read_ledger(csv), f"{csv} as the run found it"))
    return out


def load_ledger(spec: str, csv: Path = Path("results/claims.csv")) -> pd.DataFrame:
    """A ledger file, or a git revision: its copy of `csv` (the working file's path; "REV:path" names
    another file, relative to the repository's top, or to `csv`'s folder as "REV:./name"). A commit that
    holds no ledger yet (a new project's first run) is an empty ledger: every row reads as added."""
    if Path(spec).is_file():
        return read_ledger(Path(spec))
    csv = Path(csv)
    where = csv.parent if csv.parent.is_dir() else Path.cwd()
    revision = spec if ":" in spec else f"{spec}:./{csv.name}"
    try:
        text = _git(["show", revision], where)
    except (OSError, subprocess.CalledProcessError) as error:
        if ":" not in spec and csv.parent.is_dir() and _is_commit(spec, where):
            return normalise(pd.DataFrame(columns=COLUMNS))
        why = getattr(error, "stderr", None) or str(error)
        raise FileNotFoundError(
            f"{spec!r} is neither a ledger file nor a git revision holding {csv} (git: {why.strip()}); "
            "pass a path to a claims.csv or a commit such as HEAD~1"
        ) from None
    return read_ledger(io.StringIO(text))
