"""A study's tidy table, and the figures every claim selects from it.

    rows = select(table, SWITCH, "ld", against=CLEAN)   # per prompt: LD under the arm minus clean
    ci = mean_ci(per_unit(rows) - per_unit(control))    # a paired difference to a control, over units
    ci = share_ci(removed, clean)                        # a share (Fieller), its denominator a premise

A tidy table has one row per prompt x arm x measure: the prompt's columns (`PROMPT` identifies it,
`UNIT` says how prompts nest in the unit of every CI), `arm` (an arm's name, attnclaims.arms),
`measure` and `value`. `per_unit` averages a prompt's rows within its innermost level first (a
family), then those means within the unit (a group): every unit counts once, however many prompts it has.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from attnclaims.arms import Arm
from attnclaims.stats import bootstrap_ci, bootstrap_ratio_ci

PROMPT = ("pair", "text")  # the columns that identify a prompt
UNIT = ("group", "family")  # the unit of a CI, then the level its prompts are averaged at first


def tidy(frame: pd.DataFrame, measures: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """One row per prompt x arm x measure, from a frame with one row per prompt x arm and a column per
    measure; `columns`: the prompt columns kept."""
    return frame.melt(id_vars=[*columns, "arm"], value_vars=list(measures), var_name="measure")


def select(
    table: pd.DataFrame, arms: Arm | Sequence[Arm], measure: str, against: Arm | None = None, **where
) -> pd.DataFrame:
    """Per prompt (`where`: column == value): `measure` under `arms` (several: their mean per prompt,
    e.g. a control's draws), minus its value under `against` when given. A prompt that lacks the
    measure under any of them is left out; an arm (or `against`) with no rows at all is an error."""
    arms = [arms] if isinstance(arms, Arm) else list(arms)
    rows = filtered(table[table.measure == measure], where)
    keys = list(PROMPT)
    picked = []
    for arm in arms + ([] if against is None else [against]):
        these = rows[rows.arm == arm.name]
        if these.empty:
            raise ValueError(
                f"the table has no {measure!r} rows for arm {arm.name!r}"
                + (f" where {where}" if where else "")
                + f"; it holds arms {sorted(set(table.arm))}"
            )
        picked.append(these.set_index(keys))
    if against is not None:
        base = picked.pop().value
    out = picked[0].drop(columns=["arm"]).copy()
    if len(picked) > 1:
        values = pd.concat([p.value for p in picked], axis=1, join="inner")
        out = out.loc[values.index]
        out["value"] = np.mean(values.to_numpy(), axis=1)
    if against is not None:
        out = out.loc[out.index.intersection(base.index, sort=False)]
        out["value"] = out.value.to_numpy() - base.loc[out.index].to_numpy()
    return out.reset_index()


def per_unit(frame: pd.DataFrame, column: str = "value", levels: Sequence[str] = UNIT) -> pd.Series:
    """Per unit (levels[0]): the mean over its members at each level below, innermost first."""
    levels = list(levels)
    series = frame.groupby(levels)[column].mean()
    for depth in range(len(levels) - 1, 0, -1):
        series = series.groupby(level=levels[:depth]).mean()
    return series


def mean_ci(per_unit_values: pd.Series, **kwargs):
    """The CI of the mean over units (attnclaims.stats.bootstrap_ci: a studentized bootstrap)."""
    return bootstrap_ci(np.asarray(per_unit_values, dtype=float), **kwargs)


def share_ci(numerator: pd.Series, denominator: pd.Series):
    """CI of sum(numerator) / sum(denominator) over the numerator's units (Fieller; the CI carries the
    premise that the denominator is there, attnclaims.stats.bootstrap_ratio_ci)."""
    missing = numerator.index.difference(denominator.index)
    if len(missing):
        raise ValueError(f"the share's denominator has no value for units {list(missing)}")
    return bootstrap_ratio_ci(numerator.to_numpy(), denominator.loc[numerator.index].to_numpy())


def filtered(frame: pd.DataFrame, where: dict) -> pd.DataFrame:
    """The rows where each column named in `where` equals its value."""
    for column, value in where.items():
        if column not in frame:
            raise ValueError(f"no column {column!r} to select on; the table has {list(frame.columns)}")
        frame = frame[frame[column] == value]
    return frame
