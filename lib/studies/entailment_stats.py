"""Group-level statistics of the entailment study: what the claims read from an EntailmentStudy.

    ci = group_ci(deltas(study, ("switch", 3, 1.0)), "delta")  # held-out delta LD, CI over groups
    ci = ratio_ci(by_group(direct, "delta"), by_group(total, "delta"))  # sum / sum over groups (Fieller)
    claim(ci, ">=", 0.5, ..., precondition=entails(study), note=f"control {ci}")

Groups are the unit: families that share a verb or an answer word (a real family and its made-up
twin) form one group; a prompt's value is averaged within its family, the families within their
group, and every CI is over groups (attnclaims.stats: bootstrap-t of a mean, Fieller for a share).
Variants are the keys of attnclaims.studies.entailment_study (e.g. "clean", ("switch", k, alpha),
("same_layer", i), "ablate_induction").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from attnclaims.claims import Premise
from attnclaims.stats import bootstrap_ci, bootstrap_ratio_ci
from attnclaims.studies.entailment_study import EntailmentStudy


def by_group(frame: pd.DataFrame, column: str) -> pd.Series:
    """Per group (the unit: twin families, attnclaims.studies.entailment_study.twin_groups): the mean
    over its families, each family's own mean first."""
    return frame.groupby(["group", "family"])[column].mean().groupby("group").mean()


def group_ci(frame: pd.DataFrame, column: str):
    return bootstrap_ci(by_group(frame, column).to_numpy())


def ratio_ci(numerator: pd.Series, denominator: pd.Series):
    """CI of sum(numerator) / sum(denominator) over groups (Fieller: unbounded where the denominator is
    not distinguished from 0)."""
    return bootstrap_ratio_ci(numerator.to_numpy(), denominator.loc[numerator.index].to_numpy())


def deltas(study: EntailmentStudy, variant) -> pd.DataFrame:
    """Per confirmation prompt: LD under `variant` minus clean."""
    c = study.confirm
    clean = c[c.variant.map(lambda v: v == "clean")].set_index(["pair", "text"]).ld
    v = c[c.variant.map(lambda x: x == variant)].copy()
    v["delta"] = v.ld.to_numpy() - clean.loc[list(zip(v.pair, v.text))].to_numpy()
    return v


def mean_of_draws(study: EntailmentStudy, kind: str) -> pd.DataFrame:
    """Per confirmation prompt: delta LD averaged over the draws of control `kind` (same_layer, decile)."""
    frames = [deltas(study, (kind, i)) for i in range(study.design.control_draws)]
    out = frames[0].copy()
    out["delta"] = np.mean([f.delta.to_numpy() for f in frames], axis=0)
    return out


def switch_rate(study: EntailmentStudy, variant) -> pd.DataFrame:
    """Per confirmation prompt whose clean top-1 token is not the alternative answer: `switch` = 1.0
    where `variant` makes the alternative the top-1 token (a change to any other token is no switch)."""
    c = study.confirm
    clean = c[c.variant.map(lambda v: v == "clean")].set_index(["pair", "text"]).alternative_top1
    v = c[c.variant.map(lambda x: x == variant)].copy()
    was = clean.loc[list(zip(v.pair, v.text))].to_numpy()
    v = v[was == 0].copy()
    v["switch"] = v.alternative_top1.to_numpy()
    return v


def answers_attention(study: EntailmentStudy, variant: str) -> pd.DataFrame:
    """Per group: the switch heads' final-row attention on both answers (`both`) and on the later
    answer minus the earlier one (`recency`), under `variant` ("clean", "ablate_induction", "path_q")."""
    c = study.captures[study.captures.variant == variant]
    return (
        c.assign(both=c.entailed + c.alternative, recency=c.later - c.earlier)
        .groupby(["group", "family"])[["both", "recency"]]
        .mean()
        .groupby("group")
        .mean()
    )


def entails(study: EntailmentStudy) -> Premise:
    """The premise of claims about entailment, decided at the level of the claim it guards: on the
    confirmation groups, the two-hop answer follows the fact where the rule orders are crossed (there,
    matching the condition's place to the answer's gives the wrong answer, so a positive sensitivity is
    more than order matching). The claims it guards are measured on the same crossed-order pairs
    (`crossed`)."""
    rows = study.behaviour.query("hops == 2 and crossed and split == 'confirmation'")
    return Premise(
        group_ci(rows, "sensitivity"),
        ">",
        0.0,
        "the model follows the fact when rule orders are crossed, on the confirmation groups "
        "(two-hop crossed sensitivity)",
    )


def crossed(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of crossed-order pairs: where a claim presumes entailment, it is measured there."""
    return frame[frame.crossed.astype(bool)]
