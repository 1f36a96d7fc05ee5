"""attnclaims.effects and attnclaims.arms: a tidy table's selections, per-unit means, and arms as keys."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnclaims.arms import CLEAN, Arm, check_arms
from attnclaims.effects import per_unit, select, share_ci, tidy


@dataclass(frozen=True)
class Edit(Arm):
    size: float

    @property
    def name(self) -> str:
        return f"edit {self.size:g}"

    def build(self, prompts):
        return []


def table(values: dict) -> pd.DataFrame:
    """Prompts p0..p3: group g1 holds family f1 (p0, p1, p2) and f2 (p3); `values`: arm -> 4 LDs."""
    frame = pd.DataFrame(
        [
            {
                "pair": pair,
                "text": "a",
                "family": family,
                "group": "g1",
                "crossed": pair != "p0",
                "arm": arm.name,
                "ld": v,
            }
            for arm, lds in values.items()
            for (pair, family), v in zip([("p0", "f1"), ("p1", "f1"), ("p2", "f1"), ("p3", "f2")], lds)
        ]
    )
    return tidy(frame, ["ld"], ["pair", "text", "family", "group", "crossed"])


def test_a_unit_is_the_mean_of_its_families_means():
    rows = select(table({CLEAN: [1.0, 2.0, 3.0, 10.0]}), CLEAN, "ld")
    assert per_unit(rows).to_dict() == {"g1": (2.0 + 10.0) / 2}  # not the mean of 4 prompts, 4.0


def test_an_effect_is_taken_prompt_by_prompt_and_draws_are_averaged_per_prompt():
    t = table({CLEAN: [1.0, 2.0, 3.0, 4.0], Edit(1): [2.0, 2.0, 2.0, 2.0], Edit(2): [0.0, 4.0, 2.0, 6.0]})
    change = select(t, Edit(1), "ld", against=CLEAN)
    assert change.value.tolist() == [1.0, 0.0, -1.0, -2.0]
    draws = select(t, [Edit(1), Edit(2)], "ld", against=CLEAN)
    assert draws.value.tolist() == [0.0, 1.0, -1.0, 0.0]
    assert select(t, Edit(1), "ld", against=CLEAN, crossed=True).pair.tolist() == ["p1", "p2", "p3"]


def test_a_missing_arm_or_column_is_named():
    t = table({CLEAN: [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match="no 'ld' rows for arm 'edit 1'.*holds arms \\['clean'\\]"):
        select(t, Edit(1), "ld")
    with pytest.raises(ValueError, match="no column 'split'"):
        select(t, CLEAN, "ld", split="confirmation")


def test_a_share_needs_a_denominator_for_every_unit():
    num = pd.Series([1.0, 2.0, 3.0], index=["a", "b", "c"])
    with pytest.raises(ValueError, match="no value for units \\['c'\\]"):
        share_ci(num, pd.Series([2.0, 4.0], index=["a", "b"]))
    ci = share_ci(num, pd.Series([8.0, 2.0, 4.0], index=["c", "a", "b"]))  # aligned by unit, not order
    assert ci.estimate == pytest.approx(6.0 / 14.0)


def test_arms_are_values_with_names_of_their_own():
    assert Edit(1) == Edit(1) and {Edit(1): 0}[Edit(1.0)] == 0  # equal arms are one key
    with pytest.raises(ValueError, match="arms share a name: edit 1"):
        check_arms([CLEAN, Edit(1), Edit(1.0)])
    with pytest.raises(TypeError, match="not an arm"):
        check_arms([CLEAN, ("switch", 3)])


@settings(max_examples=50, deadline=None)
@given(
    lds=st.lists(st.floats(-50, 50), min_size=4, max_size=4),
    shift=st.floats(-5, 5),
)
def test_an_arm_against_itself_is_zero_and_a_constant_shift_is_the_effect(lds, shift):
    t = table({CLEAN: lds, Edit(1): [v + shift for v in lds]})
    assert (select(t, CLEAN, "ld", against=CLEAN).value == 0).all()
    effect = per_unit(select(t, Edit(1), "ld", against=CLEAN))
    np.testing.assert_allclose(effect.to_numpy(), [shift], atol=1e-9)
