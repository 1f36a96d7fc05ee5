"""The dropout-and-redundancy study, computed once: hypotheses/test_dropout_redundancy.py claims.

    study = run_dropout(DESIGN, toy_model, device, figure_path, table_path)  # a row per model in .table
    paired(study.table, MEASURES["top_head_share"], "attention", 0.2)  # per replicate: p=0.2 - p=0
    slopes(study.table, MEASURES["top_head_share"], "attention", DESIGN.levels)  # per replicate: slope over p

Steps, in the order they run:
1. Every configuration (dropout kind x p x replicate; the p=0 models shared by both kinds) trained to a
   matched loss (attnclaims.matched_loss.train_to_loss: each stops the first time its loss on the
   repeated half reaches the target, or at the cap; one process per torch thread), cached like
   every toy.
2. Each model measured (Measured: circuit type, the whole effect and the redundancy measures of the
   hypothesis file's protocol, attnclaims.redundancy), into one table (results/dropout_redundancy.csv).
3. The figure: every measure against p, per kind, with each replicate's value.
Comparisons are per replicate: replicate s is trained with RNG seed s at every level, so its models
share their initialisation and data order, and its p=0 model is the pair of each of its dropout models.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from attnclaims import redundancy as R
from attnclaims.heads import Head
from attnclaims.interventions import source_cache
from attnclaims.matched_loss import train_to_loss
from attnclaims.metrics import mean_loss
from attnclaims.scores import attention_patterns, induction_circuit_type, offset_induction_score_from_pattern
from attnclaims.stats import bootstrap_ci
from attnclaims.tasks import repeat_batch
from attnclaims.tasks.repeat import halves
from attnclaims.toy import ToyConfig


@dataclass(frozen=True)
class Measure:
    column: str  # its column of the study's table
    what: str  # the measure in words (the claims' metric names it)
    sign: int  # +1: larger means more redundant
    effect: float  # the minimal difference vs p=0 (redundant direction) a claim needs
    why: str  # the reason for that minimal effect


@dataclass(frozen=True)
class DropoutDesign:
    """What the study trains and measures; the hypothesis file states the values."""

    base: ToyConfig  # every model's configuration but its dropout and RNG seed
    target: float  # nats on the repeated half: the matched loss
    levels: tuple[float, ...]  # dropout p, 0 first
    kinds: dict  # kind -> ToyConfig field ("attention": "attn_dropout", ...)
    seeds: tuple[int, ...]  # the replicates' RNG seeds: replicate s is trained with seed s at every level
    threshold_fraction: float  # heads to threshold: the share of the whole effect lost
    circuit_min: float  # best offset induction score below which no circuit is named
    model: str  # the ledger's name for these toys


def config(design: DropoutDesign, kind: str | None, p: float, seed: int) -> ToyConfig:
    return (
        design.base.replace(seed=seed)
        if p == 0
        else design.base.replace(seed=seed, **{design.kinds[kind]: p})
    )


def configs(design: DropoutDesign) -> list[ToyConfig]:
    grid = {config(design, k, p, s) for k in design.kinds for p in design.levels for s in design.seeds}
    return sorted(grid, key=lambda c: (c.attn_dropout, c.resid_dropout, c.seed))


@dataclass(frozen=True)
class Measured:
    """One model's figures (attnclaims.redundancy; effects in nats)."""

    circuit: str  # canonical / offset-d / none
    clean_loss: float
    whole_effect: float  # every head ablated
    effective_heads: float
    top_head_share: float
    heads_to_threshold: int
    repair_head: str  # the head whose self-repair is measured
    repair_direct: float
    repair_total: float
    repair_heads: float  # downstream components responding (effect with them frozen - total effect)
    repair_layernorm: float  # final-LayerNorm rescaling: reported beside, never counted as redundancy
    hydra: float  # compensation: the rise of direct effects of the downstream heads that do not read
    # repair_head (readers: their direct effect fell on the selection batch), when it is ablated
    hydra_readers: int  # downstream heads left out as readers


def circuit_type(model, tokens: torch.Tensor, design: DropoutDesign) -> str:
    """canonical / offset-d / none (attnclaims.scores.induction_circuit_type) in the layer whose best
    head has the highest offset induction score, d in 0..S/2-1: an offset-d head reads x_(i+1+d)
    from the first copy, where beyond S/2-1 fewer than half the repeated half's queries find it, and
    at d = S-2 its key is the previous token (a previous-token head, not an induction circuit)."""
    S = design.base.seq_len
    scores = torch.stack(
        [
            offset_induction_score_from_pattern(p, S, range(S // 2)).mean(0)
            for p in attention_patterns(model, tokens)
        ]
    )  # [layer, head, offset]
    best_layer = int(scores.flatten(1).max(1).values.argmax())
    return induction_circuit_type(scores[best_layer], design.circuit_min)[0]


def measure(model, design: DropoutDesign) -> Measured:
    base, S = design.base, design.base.seq_len
    tokens = repeat_batch(torch.Generator().manual_seed(123), 64, S, base.n_content)
    reference = source_cache(model, repeat_batch(torch.Generator().manual_seed(321), 64, S, base.n_content))
    selection = repeat_batch(torch.Generator().manual_seed(456), 64, S, base.n_content)
    metric = mean_loss(tokens, halves(S)[1])  # predictions of the 2nd..last token of the copy
    selection_metric = mean_loss(selection, halves(S)[1])
    effects = R.head_effects(model, tokens, metric, "mean", reference)
    selected = R.head_effects(model, selection, selection_metric, "mean", reference)
    upstream = [(layer, h) for layer in range(base.n_layers - 1) for h in range(base.n_heads)]
    direct = R.direct_effects(model, selection, selection_metric, "mean", reference, heads=upstream)
    top = max(upstream, key=lambda head: float(direct[head]))  # chosen on the selection batch
    (repair,) = R.self_repair_split(model, tokens, metric, [top], "mean", reference)
    readers = R.hydra_effect(model, selection, selection_metric, top, "mean", reference).readers()
    hydra = R.hydra_effect(model, tokens, metric, top, "mean", reference)
    order = sorted(R.every_head(model), key=lambda head: -float(selected.single[head]))
    losses = R.losses_along(model, tokens, metric, order, "mean", reference)
    return Measured(
        circuit=circuit_type(model, tokens, design),
        clean_loss=effects.clean,
        whole_effect=effects.whole,
        effective_heads=R.effective_heads(effects.single),
        top_head_share=R.top_head_share(effects.single, effects.whole, selection=selected.single),
        heads_to_threshold=R.heads_to_threshold(
            losses, effects.clean + design.threshold_fraction * effects.whole
        ),
        repair_head=str(Head(*top)),
        repair_direct=repair.direct,
        repair_total=repair.repair,
        repair_heads=repair.heads,
        repair_layernorm=repair.layernorm,
        hydra=hydra.compensation_without(readers),
        hydra_readers=len(readers),
    )


@dataclass(frozen=True)
class DropoutStudy:
    table: pd.DataFrame  # per model: kind, p, seed (its replicate's), steps, reached, train_loss, Measured
    train_seconds: float
    measure_seconds: float


def run_dropout(design: DropoutDesign, toy_model, device: str, figure: Path, table: Path) -> DropoutStudy:
    """Steps 1-3 of the module docstring: the table written to `table` (.csv), the figure to `figure`."""
    start = time.perf_counter()
    trained = train_to_loss(configs(design), design.target, device=device, workers=torch.get_num_threads())
    trained_at = time.perf_counter()
    rows = []
    for record in trained:
        c = record.config
        kind = (
            "none"
            if c.attn_dropout == c.resid_dropout == 0
            else ("attention" if c.attn_dropout else "residual")
        )
        row = {
            "kind": kind,
            "p": c.attn_dropout or c.resid_dropout,
            "seed": c.seed,
            "steps": record.steps,
            "reached": record.reached,
            "train_loss": record.loss,
        }
        rows.append({**row, **asdict(measure(toy_model(c), design))})
    measured = pd.DataFrame(rows)
    measured.to_csv(table, index=False)
    study = DropoutStudy(measured, trained_at - start, time.perf_counter() - trained_at)
    plot(study, design, figure)
    return study


def group(table: pd.DataFrame, kind: str, p: float) -> pd.DataFrame:
    """The models of one level, one per replicate (indexed by its seed): the shared p=0 models for p = 0."""
    rows = table[(table.p == 0) if p == 0 else ((table.kind == kind) & (table.p == p))]
    return rows.set_index("seed").sort_index()


def paired(table: pd.DataFrame, m: Measure, kind: str, p: float) -> np.ndarray:
    """Per replicate: the measure at p minus at p=0, signed so that > 0 is more redundant."""
    high, low = group(table, kind, p)[m.column], group(table, kind, 0.0)[m.column]
    return m.sign * (high - low.loc[high.index]).to_numpy(dtype=float)


def slopes(table: pd.DataFrame, m: Measure, kind: str, levels) -> np.ndarray:
    """Per replicate: the least-squares slope of the signed measure over p (its dose trend)."""
    by_level = pd.concat({p: group(table, kind, p)[m.column] for p in levels}, axis=1).dropna()
    values = m.sign * by_level.to_numpy(dtype=float)  # [replicate, level]
    return np.polyfit(np.asarray(levels, dtype=float), values.T, 1)[0]


def reached(table: pd.DataFrame, kind: str, levels) -> tuple[int, int]:
    """(models that reached the target, models) over the given levels of `kind`, p=0 included if given."""
    rows = pd.concat([group(table, kind, p) for p in levels])
    return int(rows.reached.sum()), len(rows)


def plot(study: DropoutStudy, design: DropoutDesign, path: Path) -> None:
    columns = ["effective_heads", "top_head_share", "heads_to_threshold", "hydra", "repair_layernorm"]
    panels = ["steps", "clean_loss", *columns]
    titles = {
        "steps": "steps to matched loss",
        "clean_loss": "probe loss (nats)",
        "effective_heads": "effective heads (exp entropy)",
        "top_head_share": "top head's share of the whole effect",
        "heads_to_threshold": f"heads to lose {design.threshold_fraction:.0%} of the effect",
        "hydra": "downstream heads' direct effects, rise (Hydra, nats)",
        "repair_layernorm": "final-LayerNorm rescaling (nats; not redundancy)",
    }
    fig, axes = plt.subplots(1, len(panels), figsize=(2.9 * len(panels), 3.2))
    for ax, column in zip(axes, panels):
        for offset, (kind, colour) in zip((-0.004, 0.004), (("attention", "C0"), ("residual", "C1"))):
            cis = [
                bootstrap_ci(group(study.table, kind, p)[column].to_numpy(dtype=float)) for p in design.levels
            ]
            xs = np.array(design.levels) + offset
            mean = np.array([ci.estimate for ci in cis])
            err = np.array([[ci.estimate - ci.low, ci.high - ci.estimate] for ci in cis]).T
            ax.errorbar(xs, mean, yerr=err, marker="o", color=colour, capsize=2, label=f"{kind} dropout")
            for x, p in zip(xs, design.levels):
                values = group(study.table, kind, p)[column]
                ax.scatter(np.full(len(values), x), values, s=6, alpha=0.35, color=colour)
        ax.set(xlabel="dropout p", xticks=design.levels, title=titles[column])
        ax.title.set_fontsize(7)
    axes[0].legend(fontsize=6)
    fig.suptitle(
        f"{design.model}: redundancy vs dropout, each model trained to {design.target} nats or "
        f"{design.base.steps} steps ({int(study.table.reached.sum())}/{len(study.table)} reached it); "
        f"mean and 95% CI over {len(design.seeds)} replicates",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
