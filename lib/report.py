"""The research report, results/REPORT.md, rendered from the claims ledger alone in seconds.

    attnclaims report                      # or: make report (the suite's own results/)
    attnclaims report --results DIR --hypotheses DIR

The page holds, in order:
1. a claims x models table (rows: claims, those on real models first; columns: the real models,
   one column for the toy models, whose cells name the toy, and, where a claim was measured on two
   or more real models, a column "every model" with its replication verdict
   (attnclaims.ledger.replication); cells: status, value and CI);
2. one section per hypothesis, from what hypotheses/test_<hypothesis>.py declares (its HYPOTHESIS,
   attnclaims.declaration: the report imports the file): its question, its arms, its protocol (the
   numbered steps of the module docstring's "Protocol" paragraph, in brief, and in full when
   unfolded), a table of its claims (value, CI and its level, threshold and its reason, status, n
   and what n counts, model, role, Holm-adjusted p, precondition, note), and its figures: a forest
   plot per model, generated here (results/figures/<hypothesis>__<model>.png: each claim's value as a
   dot, its CI as a bar, its threshold as a mark, the model's name in the title), and the study
   figures it declares that are in the results folder (`study_figures`).

The page carries no timestamp, so it changes in git only when the ledger does.
"""

from __future__ import annotations

import inspect
import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from attnclaims import declaration
from attnclaims.claims import STATUSES, threshold_text
from attnclaims.declaration import Hypothesis
from attnclaims.ledger import read_ledger, replication, round_sig
from attnclaims.models import CHECKPOINTS

IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif")
STATUS_COLOURS = {
    "supported": "tab:green",
    "refuted": "tab:red",
    "undecided": "tab:orange",
    "inconclusive": "tab:gray",
}
FIGURES = "figures"  # the subfolder of the results folder that the report owns
TOY = "toy:"  # the prefix of toy models' names in the ledger
EVERY_MODEL = "every model"


@dataclass(frozen=True)
class Section:
    """What the report shows of a hypothesis before its claims."""

    hypothesis: Hypothesis  # its declaration: question, figures, arms
    protocol_steps: tuple[str, ...]  # one headline per numbered step
    protocol: str  # the Protocol paragraph as written ("" when the docstring has none)


def section(path: Path) -> Section:
    """Hypothesis file `path`'s declaration, read by importing it (attnclaims.declaration), and its
    protocol, from its module docstring."""
    if not path.exists():
        missing = f"(no file {path.name}: the ledger names a hypothesis that is not in the suite)"
        return Section(Hypothesis(missing), (), "")
    declared = declaration.declared(path)
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(declared.doc))
    protocol = next((p for p in paragraphs if p.lstrip().startswith("Protocol")), "")
    steps = tuple(_headline(m.group(2)) for m in re.finditer(r"^\s*(\d+)\.\s+(.+)$", protocol, flags=re.M))
    return Section(declared.hypothesis, steps, protocol)


def _headline(step: str) -> str:
    """The first clause of a protocol step: "Toys (lib/toy.py, ...): 2-layer ..." -> "Toys"."""
    text = re.sub(r"\s*\([^)]*\)?", "", step).strip()
    head = re.split(r"[:;,.]\s", text + " ", maxsplit=1)[0].strip().rstrip(":;,.")
    return textwrap.shorten(head, width=80, placeholder="...")


def slug(text: str) -> str:
    """A file-name-safe form of a model name: "toy:repeat 2L attn-only" -> "toy-repeat-2L-attn-only"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def forest_plot(rows: pd.DataFrame, title: str, path: Path) -> Path:
    """One row per claim: its value (dot), CI (bar) and threshold (red mark, with the claimed side),
    each row on its own scale since claims measure different things; colour = status."""
    n = len(rows)
    fig, axes = plt.subplots(n, 1, figsize=(10, 0.62 * n + 0.9), squeeze=False)  # one row of axes per claim
    for ax, row in zip(axes[:, 0], rows.itertuples()):
        colour = STATUS_COLOURS.get(row.status, "black")
        has_ci = math.isfinite(row.ci_low) and math.isfinite(row.ci_high)
        if has_ci:
            ax.plot([row.ci_low, row.ci_high], [0, 0], color=colour, lw=3, solid_capstyle="butt")
        if math.isfinite(row.value):
            ax.plot([row.value], [0], "o", color=colour, ms=6)
        ax.plot([row.threshold], [0], marker="|", color="red", ms=18, mew=2)
        ax.annotate(
            row.direction,
            (row.threshold, 0),
            xytext=(3, 6),
            textcoords="offset points",
            color="red",
            fontsize=7,
        )
        points = [v for v in (row.value, row.threshold, row.ci_low, row.ci_high) if math.isfinite(v)]
        low, high = min(points), max(points)
        pad = 0.15 * (high - low) or 0.15 * max(abs(high), 1.0)
        ax.set_xlim(low - pad, high + pad)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=7, pad=1)
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.text(
            -0.01, 0.5, _wrapped_name(row.claim), transform=ax.transAxes, ha="right", va="center", fontsize=8
        )
        ci = f" [{round_sig(row.ci_low)}, {round_sig(row.ci_high)}]" if has_ci else ""
        figure = f"{round_sig(row.value)}{ci}" if math.isfinite(row.value) else "no figure"
        verdict = f"{figure} {row.direction} {round_sig(row.threshold)}: {row.status}"
        ax.text(1.01, 0.5, verdict, transform=ax.transAxes, ha="left", va="center", fontsize=8, color=colour)
    fig.suptitle(title, fontsize=10)
    height = 0.62 * n + 0.9  # inches
    fig.subplots_adjust(left=0.33, right=0.66, top=1 - 0.55 / height, bottom=0.35 / height, hspace=1.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _wrapped_name(claim: str, width: int = 46) -> str:
    """A claim's name in at most two lines of about `width` characters, broken after an underscore or
    before its parameters, never inside a word (the middle lines give way to "..." when longer)."""
    name = claim.removeprefix("test_")
    pieces = re.findall(r"\[[^\]]*\]?|[^_\[]+_?|_", name)
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append(piece)
        else:
            lines[-1] += piece
    if len(lines) <= 2:
        return "\n".join(lines)
    tail = ""
    while pieces and len(tail) + len(pieces[-1]) <= width - 3:  # as much of the end as fits, whole pieces
        tail = pieces.pop() + tail
    return f"{lines[0]}\n...{tail or name[-(width - 3) :]}"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in line) + " |" for line in lines]
    return out


def _ci(row) -> str:
    if math.isfinite(row.ci_low) and math.isfinite(row.ci_high):
        return f"[{round_sig(row.ci_low)}, {round_sig(row.ci_high)}]"
    return ""


def render(results: Path, hypotheses: Path) -> str:
    """REPORT.md's text; writes the forest plots under results/figures (removing stale ones)."""
    ledger = read_ledger(results / "claims.csv")
    models = sorted(ledger.model.unique())
    checks = ledger.role == "check"  # rows about the protocol on known-truth toys: outside the tally
    counts = ledger[~checks].status.value_counts()
    lines = [
        "# Claims report",
        "",
        "Rendered by `attnclaims report` from `claims.csv` alone; edit the hypotheses, not this page. "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES)
        + f" ({int((~checks).sum())} claims on {len(models)} models"
        + (
            f"; and {int(checks.sum())} checks of the protocol on toys whose truth is known"
            if checks.any()
            else ""
        )
        + "). "
        + "A claim is supported when its whole CI lies on the claimed side of its threshold, refuted when "
        "it lies wholly on the other side, undecided when it straddles the threshold, and inconclusive "
        "when its precondition failed. Confirmatory claims are decided on simultaneous CIs (95% over "
        "the family: level 1 - 0.05/m); the others are exploratory, at 95%."
        + "".join(f" {name} is {CHECKPOINTS[name].note}." for name in models if name in CHECKPOINTS),
        "",
        "## Claims x models",
        "",
    ]
    # One column per real model; the toy models (a different one for nearly every claim) share one column.
    replicated = {
        (r.hypothesis, r.claim): r.verdict for r in replication(ledger, TOY).itertuples() if not r.settings
    }
    real = [m for m in models if not m.startswith(TOY)]
    toys = [m for m in models if m.startswith(TOY)]
    columns = real + (["toy model"] if toys else []) + ([EVERY_MODEL] if replicated else [])
    grid = []
    for (hypothesis, claim), group in ledger.groupby(["hypothesis", "claim"], sort=True):
        cells = dict.fromkeys(columns, "")
        if replicated:
            cells[EVERY_MODEL] = replicated.get((hypothesis, claim), "")
        for r in group.itertuples():
            measured = (
                f"{round_sig(r.value)} {_ci(r) or '(exact)'}" if math.isfinite(r.value) else "(no figure)"
            )
            figure = f"{r.status} {measured}" + (f" ({r.settings})" if r.settings else "")
            if r.model.startswith(TOY):
                cells["toy model"] = "; ".join(filter(None, [cells["toy model"], f"{figure} ({r.model})"]))
            else:
                cells[r.model] = figure
        on_real = any(cells[m] for m in real)
        grid.append((not on_real, [f"[{hypothesis}](#{_anchor(hypothesis)})", claim, *cells.values()]))
    grid.sort(key=lambda line: line[0])  # real-model claims first, then the toys' (stable: by name within)
    lines += _table(["hypothesis", "claim", *columns], [line for _, line in grid])

    figures = results / FIGURES
    written: set[Path] = set()
    sections = {name: section(hypotheses / f"test_{name}.py") for name in sorted(ledger.hypothesis.unique())}
    studies = study_figures(results, {name: s.hypothesis for name, s in sections.items()})
    for hypothesis, rows in ledger.groupby("hypothesis", sort=True):
        text = sections[hypothesis]
        lines += ["", f"## {hypothesis}", "", f"**Question.** {text.hypothesis.question}", ""]
        if text.hypothesis.arms:
            arms = text.hypothesis.arms
            lines += [f"**Arms** ({len(arms)}): " + "; ".join(arm.name for arm in arms) + ".", ""]
        if text.protocol_steps:
            steps = "; ".join(f"{i}. {s}" for i, s in enumerate(text.protocol_steps, 1))
            lines += [f"**Protocol** (hypotheses/test_{hypothesis}.py): {steps}.", ""]
            lines += [
                "<details><summary>Protocol in full</summary>",
                "",
                "```text",
                text.protocol,
                "```",
                "",
                "</details>",
            ]
            lines += [""]
        header = [
            "claim",
            "model",
            "metric",
            "value",
            "CI",
            "threshold (why)",
            "status",
            "n",
            "role",
            "adj. p",
            "precondition",
            "note",
        ]
        body = [_claim_line(r) for r in rows.itertuples()]
        lines += _table(header, body)
        lines += [""]
        for model, model_rows in rows.groupby("model", sort=True):
            path = forest_plot(
                model_rows, f"{hypothesis} on {model}", figures / f"{hypothesis}__{slug(model)}.png"
            )
            written.add(path)
            lines += [
                f"![{hypothesis} on {model}: value, CI and threshold per claim]({FIGURES}/{path.name})",
                "",
            ]
        for image in studies[hypothesis]:
            lines += [f"![{image.stem}]({image.name})", ""]
    for stale in figures.glob("*__*.png") if figures.exists() else ():
        if stale not in written:
            stale.unlink()
    return "\n".join(lines).rstrip() + "\n"


def study_figures(results: Path, declared: dict[str, Hypothesis]) -> dict[str, list[Path]]:
    """{hypothesis: the images in the results folder that it declares (Hypothesis.figures), by name}.
    An image two hypotheses declare is an error naming both: a figure has one owner."""
    out: dict[str, list[Path]] = {name: [] for name in declared}
    for image in sorted(p for p in results.iterdir() if p.suffix in IMAGE_SUFFIXES):
        owners = [name for name, hypothesis in declared.items() if hypothesis.shows(image.name)]
        if len(owners) > 1:
            raise ValueError(
                f"{image.name} is declared by {' and '.join(owners)}: give each hypothesis figure names of "
                "its own"
            )
        if owners:
            out[owners[0]].append(image)
    return out


def _claim_line(r) -> list[str]:
    side = threshold_text(r.direction, r.threshold, round_sig)
    threshold = f"{side} ({r.why})" if r.why else side
    status = f"**{r.status}**" + (
        f" (CI {round_sig(r.past_threshold)} past)" if r.status == "undecided" else ""
    )
    role = f"{r.role}, 1 of {r.family_size}" if r.family else r.role
    return [
        r.claim,
        r.model + (f" ({r.settings})" if r.settings else ""),
        r.metric,
        round_sig(r.value),
        f"{_ci(r)} {r.ci_level}".strip(),
        threshold,
        status,
        f"{r.n} {r.unit}".strip(),
        role,
        round_sig(r.adjusted_p),
        r.precondition,
        r.note,
    ]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def write_report(results: Path, hypotheses: Path) -> Path:
    results, hypotheses = Path(results), Path(hypotheses)
    if not (results / "claims.csv").exists():
        raise FileNotFoundError(
            f"no ledger at {results / 'claims.csv'}: run the hypotheses first (pytest; in the suite's "
            "checkout: make research), or point --results at a folder holding claims.csv"
        )
    out = results / "REPORT.md"
    out.write_text(render(results, hypotheses), encoding="utf-8")
    return out
