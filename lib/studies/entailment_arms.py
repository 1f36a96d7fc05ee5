"""The entailment study's arms: every intervention hypotheses/test_entailment_head_switching.py claims about.

    SWITCH = Switch(k=3)                                 # the original question's switch
    SAME_LAYER = tuple(SameLayer(draw) for draw in range(3))
    study.effect(SWITCH) - study.effect(SAME_LAYER)      # per group: the switch beyond its control
    frame, stores = sweep(model, buckets, [CLEAN, SWITCH], prompts_of)   # entailment_sweep.sweep

Each arm builds its intervention for one bucket of confirmation prompts (`Prompts`: the bucket, its
clean captures and the heads discovery found). The edits act on the final row (the prompt's last
position, where the answer is predicted); "the entailed answer" is the answer the prompt's fact
entails, "the alternative" the other. A control moves as much attention as the head it stands for
(ShiftAttention): control i moves, per prompt, the weight compared head i moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformer_lens.utilities import get_act_name

from attnclaims.arms import CLEAN, Arm
from attnclaims.heads import Head, label
from attnclaims.hooks import partner_row
from attnclaims.interventions import (
    AblateHeads,
    EditAttention,
    Hooks,
    MoveAttention,
    RedirectAttention,
    ShiftAttention,
    as_intervention,
)
from attnclaims.pair_hooks import freeze_after, path_to_queries


@dataclass(frozen=True)
class Heads:
    """The heads discovery chose, and their controls (never a compared head)."""

    k: int  # heads compared together: the top k switch heads
    switch: list  # by discovery switch effect, most negative first
    hop: list  # hop heads: whose pattern swap removes most of the discovery sensitivity (at least a share)
    hop_of: dict  # hop head -> "hop 1" (its attention follows the fact on the bridge more) or "hop 2"
    redirect: list  # top k by discovery attention on the entailed answer
    induction: list  # top induction heads below the top switch heads
    same_layer: list  # draws: for each top switch head, another head of its layer
    decile: list  # draws of k heads from the top decile of attention on the entailed answer
    hop_controls: list  # for each hop head, another head of its layer
    redirect_controls: list  # for each redirect head, another head of its layer

    @property
    def top(self) -> list:
        return self.switch[: self.k]


@dataclass(frozen=True)
class Prompts:
    """One bucket as an arm sees it."""

    model: object
    bucket: object  # attnclaims.studies.entailment_sweep.Bucket
    clean: dict  # the bucket's clean captures (entailment_study.clean_run); in discovery, none yet
    heads: Heads | None = None  # None in discovery, before any head is chosen
    reference: dict | None = None  # the mean-ablation reference (other groups' prompts)

    def weight_on(self, head, pos) -> torch.Tensor:
        """[batch]: `head`'s clean final-row weight on `pos`."""
        pattern = self.clean[(CLEAN, get_act_name("pattern", head[0]))]
        return pattern[torch.arange(len(pos)), head[1], pos]


def _matched(controls, masses, dst):
    """Control i moves masses[i] of its attention onto dst: as much as compared head i moves."""
    parts = [ShiftAttention([c], dst=dst, mass=m) for c, m in zip(controls, masses)]
    return sum(parts[1:], parts[0])


def _matched_to_switch(p: Prompts, controls):
    """Control i moves onto the alternative as much as top switch head i moves off the entailed answer."""
    moved = [p.weight_on(h, p.bucket.entailed_pos) for h in p.heads.top]
    return _matched(controls, moved, p.bucket.alternative_pos)


@dataclass(frozen=True)
class Switch(Arm):
    """The top `k` switch heads' final-row weight on the entailed answer, `alpha` of it, moved to the
    alternative."""

    k: int
    alpha: float = 1.0

    @property
    def name(self) -> str:
        return f"switch top {self.k}" + ("" if self.alpha == 1.0 else f" x{self.alpha:g}")

    def build(self, p: Prompts):
        b = p.bucket
        return MoveAttention(p.heads.switch[: self.k], b.entailed_pos, b.alternative_pos, self.alpha)


@dataclass(frozen=True)
class SingleSwitch(Arm):
    """One head's final-row weight on the entailed answer moved to the alternative."""

    head: tuple

    @property
    def name(self) -> str:
        return f"switch {Head(*self.head)}"

    def build(self, p: Prompts):
        return MoveAttention([self.head], p.bucket.entailed_pos, p.bucket.alternative_pos, 1.0)


@dataclass(frozen=True)
class SameLayer(Arm):
    """Draw `draw` of the switch's same-layer control: for each top switch head another of its layer,
    moving as much attention onto the alternative."""

    draw: int

    @property
    def name(self) -> str:
        return f"same-layer control {self.draw}"

    def build(self, p: Prompts):
        return _matched_to_switch(p, p.heads.same_layer[self.draw])


@dataclass(frozen=True)
class Decile(Arm):
    """Draw `draw` of the switch's attention-decile control: k heads of the top decile of attention
    on the entailed answer, moving as much attention onto the alternative."""

    draw: int

    @property
    def name(self) -> str:
        return f"decile control {self.draw}"

    def build(self, p: Prompts):
        return _matched_to_switch(p, p.heads.decile[self.draw])


@dataclass(frozen=True)
class Redirect(Arm):
    """The original question's edit: the heads most on the entailed answer attend only to the
    alternative (one-hot final row)."""

    @property
    def name(self) -> str:
        return "one-hot redirect"

    def build(self, p: Prompts):
        return RedirectAttention(p.heads.redirect, p.bucket.alternative_pos)


@dataclass(frozen=True)
class RedirectControl(Arm):
    """The redirect's control: another head of each redirect head's layer, moving onto the
    alternative as much as the redirect does (all the weight not already there)."""

    @property
    def name(self) -> str:
        return "one-hot redirect's control"

    def build(self, p: Prompts):
        alternative = p.bucket.alternative_pos
        redirected = [1 - p.weight_on(h, alternative) for h in p.heads.redirect]
        return _matched(p.heads.redirect_controls, redirected, alternative)


@dataclass(frozen=True)
class PatternSwap(Arm):
    """`heads`' final-row pattern replaced by the other text's (the pair's partner row)."""

    heads: tuple

    @property
    def name(self) -> str:
        return f"pattern swap {label(self.heads)}"

    def build(self, p):
        return EditAttention(list(self.heads), partner_row)


@dataclass(frozen=True)
class HopSwap(Arm):
    """The hop heads' final-row pattern replaced by the other text's; `control`: their same-layer
    controls' instead."""

    control: bool = False

    @property
    def name(self) -> str:
        return "hop heads' pattern swap" + ("'s control" if self.control else "")

    def build(self, p: Prompts):
        return PatternSwap(tuple(p.heads.hop_controls if self.control else p.heads.hop)).build(p)


REPLACEMENTS = (" indeed", " however", " quite")  # the first that is one token replaces a rule's token


@dataclass(frozen=True)
class ReplaceBefore(Arm):
    """The token `offset` places before each answer word in the rules replaced by REPLACEMENTS' first
    single-token word (at the embedding, so positions stay); `then`: an arm run on top of it. With
    offset 1 that is the token an induction head keys on ("wear" in "I wear boots"); offset 2 is its
    matched control (one token replaced per answer, as near, not the one induction reads)."""

    offset: int
    then: Arm | None = None

    @property
    def name(self) -> str:
        which = {1: "the token before", 2: "the token two before"}.get(self.offset, f"token -{self.offset}")
        return f"{which} each answer replaced" + ("" if self.then is None else f", {self.then.name}")

    def build(self, p: Prompts):
        b, model = p.bucket, p.model
        word = next(w for w in REPLACEMENTS if len(model.to_tokens(w, prepend_bos=False)[0]) == 1)
        _, cache = model.run_with_cache(model.to_tokens(word), names_filter=lambda name: name == "hook_embed")
        replacement = cache["hook_embed"][0, -1]  # [d_model], as the embedding hook sees it
        rows = torch.arange(len(b.rows))
        at = [b.entailed_pos - self.offset, b.alternative_pos - self.offset]

        def replace(embedded, hook):
            embedded = embedded.clone()
            for pos in at:
                embedded[rows, pos] = replacement.to(embedded.dtype)
            return embedded

        edit = Hooks((("hook_embed", replace),), what=self.name)
        return edit if self.then is None else edit + as_intervention(self.then.build(p))


@dataclass(frozen=True)
class SwitchDirect(Arm):
    """Switch(k) with every later head output, MLP output and ln_final's scale held at their clean
    values at the final position: its direct effect."""

    k: int

    @property
    def name(self) -> str:
        return f"switch top {self.k}, direct"

    def build(self, p: Prompts):
        top = p.heads.switch[: self.k]
        return Switch(self.k).build(p) + freeze_after(p.model, top, p.clean, CLEAN)


@dataclass(frozen=True)
class AblateInduction(Arm):
    """The induction heads mean-ablated at every position (reference: other groups' prompts)."""

    @property
    def name(self) -> str:
        return "induction heads mean-ablated"

    def build(self, p: Prompts):
        return AblateHeads(p.heads.induction, "mean", p.reference)


@dataclass(frozen=True)
class InductionQueries(Arm):
    """The induction heads mean-ablated on the path into the top switch heads' queries only (run
    inside attnclaims.patching.split_qkv_input)."""

    @property
    def name(self) -> str:
        return "induction heads mean-ablated into the switch heads' queries"

    def build(self, p: Prompts):
        return path_to_queries(p.model, p.heads.induction, p.heads.top, p.reference)


HOP_SWAP, HOP_SWAP_CONTROL = HopSwap(), HopSwap(control=True)
REDIRECT, REDIRECT_CONTROL = Redirect(), RedirectControl()
ABLATE_INDUCTION, INDUCTION_QUERIES = AblateInduction(), InductionQueries()
