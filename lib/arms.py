"""Arms: what a study does to the model, as objects a hypothesis file imports and names.

    SWITCH = Switch(k=3)                          # an arm of the entailment study
    frame, stores = sweep(model, buckets, [CLEAN, SWITCH], prompts_of)   # its rows say arm.name
    study.effect(SWITCH)                          # selected by the object, never by a key

An arm is a rule that builds an intervention (attnclaims.interventions, or hooks) for each set of
prompts it is given: `build(prompts)`, where `prompts` is what the study hands its arms (for the
entailment study, a bucket of minimal pairs with its clean captures and the heads discovery found).
Arms are frozen dataclasses, so equal arms are one arm (a dict key, a selection from a table), and
`name` is what a person reads: the `arm` column of a study's table. `check_arms` refuses two
different arms with one name (each sweep checks its arms; a study checks all of them once).
"""

from __future__ import annotations

from dataclasses import dataclass


class Arm:
    """Subclasses are frozen dataclasses with a `name` and a `build(prompts)`."""

    @property
    def name(self) -> str:
        raise NotImplementedError

    def build(self, prompts):
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Clean(Arm):
    """The model as it is: the run every effect is measured against."""

    @property
    def name(self) -> str:
        return "clean"

    def build(self, prompts):
        return []


CLEAN = Clean()


def check_arms(arms) -> list:
    """The arms as a list, each an Arm, no two with one name (the table tells them apart by name)."""
    arms = list(arms)
    for arm in arms:
        if not isinstance(arm, Arm):
            raise TypeError(f"{arm!r} is not an arm: give attnclaims.arms.Arm objects (e.g. CLEAN)")
    names = [arm.name for arm in arms]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"arms share a name: {', '.join(twice)}. Fix: give each arm a name of its own")
    return arms


def build_all(arms, prompts) -> dict:
    """{arm: its intervention for `prompts`}, the arms checked: what attnclaims.sweep.run_variants runs."""
    return {arm: arm.build(prompts) for arm in check_arms(arms)}
