"""Family-level statistics of the entailment study: what the claims read from a Study.

    ci = family_ci(deltas(study, ("switch", 3, 1.0)), "delta")  # held-out delta LD, CI over families
    ci = ratio_ci(by_family(direct, "delta"), by_family(total, "delta"))  # sum / sum, families resampled
    claim(ci, ">=", 0.5, ..., precondition=entails(study), note=f"control {ci}")

Families are the unit: a prompt's value is averaged within its family first, and every CI is a 95%
bootstrap over families (attnclaims.stats.bootstrap_ci). Variants are the keys of
attnclaims.studies.entailment_study (e.g. "clean", ("switch", k, alpha), ("same_layer", i),
"ablate_induction").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from attnclaims.stats import bootstrap_ci
from attnclaims.studies.entailment_study import Study


def by_family(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame.groupby("family")[column].mean()


def family_ci(frame: pd.DataFrame, column: str):
    return bootstrap_ci(by_family(frame, column).to_numpy())


def ratio_ci(numerator: pd.Series, denominator: pd.Series):
    """CI of sum(numerator) / sum(denominator) over families, resampling families."""
    num, den = numerator.to_numpy(), denominator.loc[numerator.index].to_numpy()
    return bootstrap_ci(
        np.arange(len(num)), statistic=lambda i: num[i.astype(int)].sum() / den[i.astype(int)].sum()
    )


def deltas(study: Study, variant) -> pd.DataFrame:
    """Per confirmation prompt: LD under `variant` minus clean."""
    c = study.confirm
    clean = c[c.variant.map(lambda v: v == "clean")].set_index(["pair", "text"]).ld
    v = c[c.variant.map(lambda x: x == variant)].copy()
    v["delta"] = v.ld.to_numpy() - clean.loc[list(zip(v.pair, v.text))].to_numpy()
    return v


def mean_of_draws(study: Study, kind: str) -> pd.DataFrame:
    """Per confirmation prompt: delta LD averaged over the draws of control `kind` (same_layer, decile)."""
    frames = [deltas(study, (kind, i)) for i in range(study.design.control_draws)]
    out = frames[0].copy()
    out["delta"] = np.mean([f.delta.to_numpy() for f in frames], axis=0)
    return out


def flip_rate(study: Study, variant) -> pd.DataFrame:
    """Per confirmation prompt: `flip` = 1.0 where the top-1 token under `variant` differs from clean."""
    c = study.confirm
    clean = c[c.variant.map(lambda v: v == "clean")].set_index(["pair", "text"]).top1
    v = c[c.variant.map(lambda x: x == variant)].copy()
    v["flip"] = (v.top1.to_numpy() != clean.loc[list(zip(v.pair, v.text))].to_numpy()).astype(float)
    return v


def answers_attention(study: Study, variant: str) -> pd.DataFrame:
    """Per family: the switch heads' final-row attention on both answers (`both`) and on the later
    answer minus the earlier one (`recency`), under `variant` ("clean", "ablate_induction", "path_q")."""
    c = study.captures[study.captures.variant == variant]
    return (
        c.assign(both=c.entailed + c.alternative, recency=c.later - c.earlier)
        .groupby("family")[["both", "recency"]]
        .mean()
    )


def entails(study: Study, split: str | None = "confirmation") -> tuple[bool, str]:
    """The premise of claims about entailment, on the families they measure: the two-hop answer follows
    the fact where the rule orders are crossed (there, matching the condition's place to the answer's
    gives the wrong answer, so a positive sensitivity is more than order matching)."""
    rows = study.behaviour.query("hops == 2 and crossed" + (f" and split == '{split}'" if split else ""))
    ci = family_ci(rows, "sensitivity")
    where = f"{split} families" if split else "all families"
    return (
        ci.low > 0,
        f"the model follows the fact when rule orders are crossed, on the {where} "
        f"(two-hop crossed sensitivity {ci} > 0)",
    )
