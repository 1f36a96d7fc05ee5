"""What the entailment study's claims select from: EntailmentStudy, its tidy table and its measures.

    study.effect(Switch(3))                     # per group: delta LD of the switch, prompt by prompt
    study.sensitivity(CLEAN, hops=2, crossed=True)
    study.switch_rate(SAME_LAYER)               # per group: the alternative made the answer, draws averaged

Built by attnclaims.studies.entailment_study.run_entailment_study; every per-group figure is a selection from
`table` (attnclaims.effects): one row per prompt x arm x measure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from attnclaims.arms import CLEAN
from attnclaims.effects import PROMPT, filtered, per_unit, select
from attnclaims.studies.entailment_arms import Heads
from attnclaims.studies.entailment_sweep import sensitivity_by_pair

if TYPE_CHECKING:
    from attnclaims.studies.entailment_study import EntailmentDesign

LD, TOP1, P_ALTERNATIVE = "ld", "alternative_top1", "p_alternative"  # per prompt, final position
CORRECT = "correct"  # 1.0 where the top-1 token is the entailed answer (the clean run, every prompt)
ON_ANSWERS, RECENCY = "on_answers", "recency"  # the top switch heads' final-row attention (their mean)
COLUMNS = ("pair", "family", "group", "words", "hops", "order", "crossed", "split", "swept", "text")


@dataclass(frozen=True)
class EntailmentStudy:
    """What the claims select from. Measures: LD = logit(entailed) - logit(alternative); CORRECT = 1.0
    where the entailed answer is the top-1 token; TOP1 = 1.0 where the alternative is; P_ALTERNATIVE
    its probability; ON_ANSWERS the top switch heads' attention on both answers, RECENCY on the later
    answer minus the earlier one."""

    name: str  # the model, as the ledger records it
    design: EntailmentDesign  # the design it was computed under
    skipped: dict  # pairs this model cannot use, with the reason
    table: pd.DataFrame  # tidy: per prompt x arm x measure (COLUMNS, arm, measure, value)
    attention: pd.DataFrame  # clean run, per prompt x head: entailed / alternative / later-answer attention
    induction: np.ndarray  # [layer, head] induction scores
    switch_by_family: pd.DataFrame  # discovery: per family x head, mean delta LD of the single-head switch
    swap_by_family: pd.DataFrame  # discovery: per family x head, sensitivity removed by its pattern swap
    swap_shares: pd.Series  # discovery: per head, the share of the sensitivity its pattern swap removes
    heads: Heads  # what discovery chose, and the controls
    ablation_change: float  # how far the mean ablation moves the induction heads' final-row output (relative)

    def rows(self, arms, measure=LD, change=False, switchable=False, **where) -> pd.DataFrame:
        """Per prompt: `measure` under `arms` (several: their mean), minus clean with `change`; with
        `switchable`, only prompts whose clean top-1 token is not already the alternative."""
        rows = select(self.table, arms, measure, against=CLEAN if change else None, **where)
        if switchable:
            clean = select(self.table, CLEAN, TOP1).set_index(list(PROMPT)).value
            rows = rows[clean.loc[list(zip(rows.pair, rows.text))].to_numpy() == 0]
        return rows

    def effect(self, arms, measure=LD, **where) -> pd.Series:
        """Per group: the change `arms` make to `measure` against clean, prompt by prompt."""
        return per_unit(self.rows(arms, measure, change=True, **where))

    def values(self, arms, measure=LD, **where) -> pd.Series:
        return per_unit(self.rows(arms, measure, **where))

    def sensitivity(self, arm=CLEAN, change=False, **where) -> pd.Series:
        """Per group: LD(text a) - LD(text b) of each pair under `arm` (with `change`: of its change)."""
        return per_unit(sensitivity_by_pair(self.rows(arm, LD, change=change, **where)))

    def switch_rate(self, arms) -> pd.Series:
        """Per group: how often `arms` make the alternative the top-1 token where it was not."""
        return per_unit(self.rows(arms, TOP1, switchable=True))

    def looking(self, heads, column="follows", **where) -> pd.Series:
        """Per group: `heads`' clean final-row attention (`column` of `attention`: follows = on the
        entailed answer minus the alternative, follows_bridge = on the entailed bridge minus the other)."""
        rows = filtered(self.attention, where)
        return per_unit(rows[[(layer, h) in heads for layer, h in zip(rows.layer, rows["head"])]], column)

    def following(self, heads, hop_of: dict, **where) -> pd.Series:
        """Per group: the mean over `heads` of each head's fact-following on its own hop (`hop_of`: head
        -> "hop 1", scored on the bridge, or "hop 2", on the answer)."""
        column = {"hop 1": "follows_bridge", "hop 2": "follows"}
        return sum(self.looking([h], column[hop_of[h]], **where) for h in heads) / len(heads)

    def accuracy(self, **where) -> pd.Series:
        """Per group: how often the clean top-1 token is the entailed answer."""
        return per_unit(self.rows(CLEAN, CORRECT, **where))

    def switch_effects(self) -> pd.DataFrame:
        """Discovery groups x heads: each head's mean single-switch delta LD (its families' means first)."""
        return (
            self.switch_by_family.groupby(["group", "layer", "head"]).delta.mean().unstack(["layer", "head"])
        )

    def induction_of(self, heads) -> np.ndarray:
        return np.array([self.induction[layer, head] for layer, head in heads])
