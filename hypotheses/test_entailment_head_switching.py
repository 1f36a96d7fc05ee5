"""Does the model entail, or copy? And do the heads whose attention switches its answer carry either?

Question. Given "If it is wet, I take an umbrella. If it is dry, I leave the umbrella at home. When I
take an umbrella, I wear boots. When I leave the umbrella at home, I wear shoes. Today it is wet, so
I wear", does the answer follow the fact ("wet" -> boots, "dry" -> shoes), and which heads carry it?

What counts as entailment: the answer moves with the fact when nothing else changes. Each minimal
pair (prompts/entailment.py) is two texts that differ in the fact's word alone; rules, answer words
and answer positions are the same. Sensitivity = LD(text a) - LD(text b), LD = logit(answer a) -
logit(answer b) at the final position (attnclaims.protocols.entailment_sensitivity): recency, a favourite
word or copying what followed an earlier "I wear" are the same in both texts and cancel. Rule
orders are crossed in half the pairs (conditions a-first, answers b-first), where "the answer in
the same place as the matching condition" is wrong: sensitivity there is more than order matching.

What counts as copying: a head at the final "I wear" that attends to the tokens after earlier
"I wear"s (an induction head, or a head fed by one) and writes them out. Moving its weight from one
answer to the other moves LD whether or not anything follows the fact; it does not make its
attention depend on the fact.

Claims: (a) sensitivity: two-hop, crossed orders, one-hop; (b) the hop heads: their final-row
attention following the fact on their hop's word, and their pattern swap; (c) the copy account:
switch effect vs induction score, the top induction heads mean-ablated, and the token before each
answer replaced; (d) the original question's switch, rebuilt, against matched controls; (e) its
direct vs total effect. Heads against MLPs: test_entailment_layers.py. The same protocol on models
whose truth is known (trained toys, organisms, cheats): test_entailment_ground_truth.py.

Protocol (lib/studies/entailment_study.py run_entailment_study, the one protocol for real models and toys; the
arms: lib/studies/entailment_arms.py; every stacked forward goes through attnclaims.sweep.run_variants)
1. Pairs whose texts tokenize to equal length with single-token answers on the model. The unit is
   the group: families that share a verb or an answer word (a real family and its made-up twin)
   are one (entailment_pairs.twin_groups); groups are split once into discovery (1/3) and
   confirmation (2/3) (attnclaims.stats.discovery_confirmation_split), so the two share no answer.
2. Clean run of every prompt: LD, top-1, final-row attention of every head (on the answers and on
   the bridges: hop 2 and hop 1), and the activations later steps freeze or use as the reference.
3. Discovery: every head's pattern swap (its final-row pattern from the other text) and its switch
   (its final-row weight on the entailed answer moved to the alternative), one order per family.
   Hop heads: those whose swap removes >= 1/4 of the discovery sensitivity (at most 4), each labelled
   hop 1 or hop 2 by whether its attention follows the fact more on the bridge or on the answer;
   switch heads: ranked by switch effect.
4. Confirmation groups: the interventions of (b)-(e) against their controls. The mean ablation's
   reference is the mean of other groups' prompts, position-matched (BOS to BOS, then from the
   shared ending), never the prompts ablated; its note says how far it moves the heads' output.
Each family is used in two rule orders, one same and one crossed (ORDER_SETS, alternating between
families so that both condition orders occur); the discovery sweep uses one of them per family.
Claims that presume entailment are measured on crossed-order pairs, behind the premise that the
answer follows the fact there. Measures on one side only: the one-hop control and the copy test
(toys: the token before an answer is the bridge itself); accuracy by rule order, recovery of built
heads and learning (toys).

Measures, in nats unless said: delta = LD(intervention) - LD(clean) per prompt, averaged over a
family's prompts, then over the group's families; a switch = the top-1 token becomes the alternative
answer; CIs are bootstraps over groups (95%, or the family's simultaneous level: lib/claims.py).
Controls, never a compared head: per compared head another of its layer (heads.same_layer_controls)
or of the top decile of final-row attention to the entailed answer, moving as much attention onto
the alternative (interventions.ShiftAttention); their effects are in each claim's note. Checks of
the edit, not claims (tests/test_entailment_identities.py): its output is linear in the moved
weight, and values before the fact word are the same in both texts.
"""

from __future__ import annotations

import pytest
from scipy.stats import spearmanr

from attnclaims.arms import CLEAN
from attnclaims.claims import Premise
from attnclaims.declaration import Hypothesis
from attnclaims.effects import mean_ci, share_ci
from attnclaims.heads import label
from attnclaims.studies.entailment_arms import (
    ABLATE_INDUCTION,
    HOP_SWAP,
    HOP_SWAP_CONTROL,
    INDUCTION_QUERIES,
    REDIRECT,
    REDIRECT_CONTROL,
    Decile,
    ReplaceBefore,
    SameLayer,
    SingleSwitch,
    Switch,
    SwitchDirect,
)
from attnclaims.studies.entailment_figures import write_figures
from attnclaims.studies.entailment_pairs import design_pairs
from attnclaims.studies.entailment_results import ON_ANSWERS, P_ALTERNATIVE, RECENCY, EntailmentStudy
from attnclaims.studies.entailment_study import EntailmentDesign, run_entailment_study

DESIGN = EntailmentDesign(
    k=3,  # heads switched together (the original question's choice)
    dose_k=(1, 3, 5, 10),  # top switch heads moved together in the dose-response; 10 = the switch heads kept
    dose_alpha=(0.0, 0.5, 1.0),  # fraction of the entailed answer's weight moved (the dose-response figure)
    control_draws=3,
    n_induction=5,  # top induction heads mean-ablated
    discovery_fraction=1 / 3,
    order_sets=(("ab/ab", "ab/ba"), ("ba/ba", "ba/ab")),  # per family, alternating: one same, one crossed
)
UNIT = "groups"  # what every claim's n counts: twin families (same verb or answer) are one
HELD_OUT = {"hops": 2, "split": "confirmation"}  # the confirmation groups' two-hop prompts

# The arms (lib/studies/entailment_arms.py), each built per bucket of confirmation prompts:
SWITCH = Switch(k=DESIGN.k)  # the top 3 switch heads' final-row weight on the entailed answer -> alternative
SAME_LAYER = tuple(SameLayer(draw) for draw in range(DESIGN.control_draws))  # per top head, one of its layer
DECILE = tuple(Decile(draw) for draw in range(DESIGN.control_draws))  # 3 heads of the top attention decile
CONTROLS = {"same_layer": SAME_LAYER, "decile": DECILE}  # each moves as much attention as the switch
JOINT = Switch(k=max(DESIGN.dose_k))  # the 10 switch heads kept, together (SingleSwitch: one at a time)
DIRECT = SwitchDirect(k=DESIGN.k)  # SWITCH with every later component held at its clean value
EDITS = {"switch": (SWITCH, SAME_LAYER), "original_redirect": (REDIRECT, REDIRECT_CONTROL)}  # with controls
BEFORE, TWO_BEFORE = ReplaceBefore(1), ReplaceBefore(2)  # the token before each answer replaced; its control
# REDIRECT / REDIRECT_CONTROL: the original question's one-hot redirect, and its matched control
# HOP_SWAP / HOP_SWAP_CONTROL: the hop heads' (or their controls') pattern from the other text
# ABLATE_INDUCTION / INDUCTION_QUERIES: the top induction heads mean-ablated, or only into SWITCH's queries

HYPOTHESIS = Hypothesis(
    "Does the model entail, or copy? And do the heads whose attention switches its answer carry either?",
    figures=tuple(
        f"entailment_head_switching_{what}_{{model}}.png"
        for what in ("switch_per_head", "dose_response", "attention_by_fact", "induction_vs_switch")
    ),
    arms=(
        *(CLEAN, SWITCH, *SAME_LAYER, *DECILE, JOINT, DIRECT, REDIRECT, REDIRECT_CONTROL, HOP_SWAP),
        *(HOP_SWAP_CONTROL, ABLATE_INDUCTION, INDUCTION_QUERIES, BEFORE, TWO_BEFORE),
        *(ReplaceBefore(arm.offset, SWITCH) for arm in (BEFORE, TWO_BEFORE)),
    ),
)


@pytest.fixture(scope="module")
def study(model, model_name, results_dir) -> EntailmentStudy:
    """Steps 1-4 of the protocol on `model`, computed once per model; writes its four figures,
    entailment_head_switching_*_<model>.png."""
    result = run_entailment_study(model, model_name, DESIGN, design_pairs(model, DESIGN))
    write_figures(result, results_dir)
    return result


def entails(study: EntailmentStudy) -> Premise:
    """The premise of claims about entailment, decided at the level of the claim it guards: on the
    confirmation groups, the two-hop answer follows the fact where the rule orders are crossed (there,
    matching the condition's place to the answer's gives the wrong answer, so a positive sensitivity is
    more than order matching). The claims it guards are measured on the same crossed-order pairs."""
    return Premise(
        mean_ci(study.sensitivity(CLEAN, crossed=True, **HELD_OUT)),
        ">",
        0.0,
        "the model follows the fact when rule orders are crossed, on the confirmation groups "
        "(two-hop crossed sensitivity)",
    )


# ---------------------------------------------------------------------------------------------
# a. Does the answer follow the fact?


@pytest.mark.confirmatory
@pytest.mark.parametrize("hops", [2, 1], ids=["two-hop", "one-hop"])
def test_answer_follows_the_fact(study, hops, claim):
    assert claim(
        mean_ci(study.sensitivity(CLEAN, hops=hops)),
        ">=",
        0.0,
        why="any: the texts differ in the fact alone, so the sign is the claim",
        metric=f"sensitivity LD(fact a) - LD(fact b), {hops}-hop",
        note=f"{len(study.skipped)} pairs skipped (tokenization)",
    )


@pytest.mark.confirmatory
def test_answer_follows_the_fact_when_rule_orders_are_crossed(study, claim):
    """Crossed orders: the answer rules are in the opposite order to the condition rules, so
    "the answer in the matching place" is the wrong one."""
    same = mean_ci(study.sensitivity(CLEAN, hops=2, crossed=False))
    assert claim(
        mean_ci(study.sensitivity(CLEAN, hops=2, crossed=True)),
        ">=",
        0.0,
        why="any: matching the condition's place gives the wrong answer here, so following the fact is more",
        metric="sensitivity, two-hop, crossed rule orders",
        note=f"same-order pairs: {same}",
    )


# ---------------------------------------------------------------------------------------------
# b. Heads that follow the fact


def hop_heads_named(study: EntailmentStudy):
    """The premise of the hop heads' claims: discovery named at least one (a head whose pattern swap
    removes a quarter of the discovery sensitivity)."""
    shares = study.swap_shares.dropna()
    best = f"{shares.max():.3g} ({label([shares.idxmax()])})" if len(shares) else "none (sensitivity <= 0)"
    return bool(
        study.heads.hop
    ), f"a head's pattern swap removes >= 1/4 of the discovery sensitivity; best {best}"


@pytest.mark.confirmatory
def test_hop_heads_follow_the_fact_on_heldout_groups(study, claim):
    """Each hop head's final-row attention on its own hop's word (hop 1: the entailed bridge minus the
    other; hop 2: the entailed answer minus the other), minus a head of its layer, on crossed-order
    pairs (where matching the rules' order is not following the fact)."""
    heads = study.heads
    named, why_not = hop_heads_named(study)
    figure, note = None, ""
    if named:
        controls = dict(zip(heads.hop_controls, (heads.hop_of[h] for h in heads.hop)))
        top = study.following(heads.hop, heads.hop_of, crossed=True, **HELD_OUT)
        figure = mean_ci(top - study.following(heads.hop_controls, controls, crossed=True, **HELD_OUT))
        hops = ", ".join(f"{h} {hop}" for h, hop in heads.hop_of.items())
        note = f"hop heads {hops}; controls {label(heads.hop_controls)}"
    assert claim(
        figure,
        ">=",
        0.05,
        why="5 points of attention beyond their layer: looking that moves with the fact",
        metric="hop heads' attention(entailed - other) on their hop's word - same-layer heads, crossed",
        precondition=(named, why_not),
        note=note,
    )


@pytest.mark.confirmatory
def test_hop_heads_pattern_carries_the_sensitivity(study, claim):
    """Give the hop heads the other text's final-row pattern: the share of the sensitivity lost, on
    crossed-order pairs (where following the fact is more than matching the rules' order)."""
    named, why_not = hop_heads_named(study)
    figure, note = None, ""
    if named:
        clean = study.sensitivity(CLEAN, crossed=True, **HELD_OUT)
        removed = -study.sensitivity(HOP_SWAP, change=True, crossed=True)
        control = -study.sensitivity(HOP_SWAP_CONTROL, change=True, crossed=True)
        figure = share_ci(removed, clean)
        note = f"hop heads {label(study.heads.hop)}; their controls remove {share_ci(control, clean)}"
    assert claim(
        figure,
        ">=",
        0.5,
        why="half: the heads' pattern carries most of the sensitivity",
        metric="share of held-out crossed-order sensitivity removed by swapping the hop heads' pattern",
        precondition=entails(study) if named else (False, why_not),
        note=note,
    )


# ---------------------------------------------------------------------------------------------
# c. The copy account


def test_switch_effect_tracks_induction_score(study, claim):
    """Per discovery group, the rank correlation over all heads of induction score and -switch effect;
    the CI is of the mean of those per-group figures (a mean the suite's coverage tests cover)."""
    effects = study.switch_effects()  # discovery groups x heads: mean single-head switch delta LD
    induction = study.induction_of(effects.columns)
    rho = [spearmanr(induction, -row).statistic for row in effects.to_numpy()]
    assert claim(
        mean_ci(rho),
        ">=",
        0.3,
        why="0.3: a moderate rank correlation, where copying predicts the switch heads",
        metric="mean over discovery groups of Spearman rho, induction score vs -switch effect over all heads",
        unit="discovery groups",
        note=f"rho of the groups' mean switch effect {spearmanr(induction, -effects.mean()).statistic:.3f}",
    )


def test_ablating_induction_heads_removes_switch_heads_attention_on_answers(study, claim):
    clean, ablated = study.values(CLEAN, ON_ANSWERS), study.values(ABLATE_INDUCTION, ON_ANSWERS)
    assert claim(
        share_ci(clean - ablated, clean),
        ">=",
        0.25,
        why="a quarter: the induction heads feed a real part of the switch heads' attention on the answers",
        metric="share of switch heads' attention on both answers removed by mean-ablating "
        + label(study.heads.induction),
        note=f"clean {mean_ci(clean)}, ablated {mean_ci(ablated)}; the reference (other groups' prompts) "
        f"moves the heads' final-row output by {study.ablation_change:.2f} of its norm",
    )


def test_ablating_induction_heads_removes_switch_heads_recency_bias(study, claim):
    """Premise: the switch heads' attention favours the later-mentioned answer at all."""
    clean, ablated = study.values(CLEAN, RECENCY), study.values(ABLATE_INDUCTION, RECENCY)
    assert claim(
        share_ci(clean - ablated, clean),
        ">=",
        0.5,
        why="half: the recency bias comes mostly from the induction heads",
        metric="share of switch heads' attention(later answer) - attention(earlier) removed by the ablation",
        precondition=Premise(
            mean_ci(clean), ">", 0.0, "the switch heads favour the later answer (recency bias)"
        ),
        note=f"clean recency bias {mean_ci(clean)}; ablation moves LD "
        f"{mean_ci(study.effect(ABLATE_INDUCTION))}",
    )


def test_induction_heads_reach_switch_heads_through_queries(study, claim):
    """Premise: the full ablation lowers the switch heads' attention on the answers at all."""
    clean, ablated, path = (
        study.values(arm, ON_ANSWERS) for arm in (CLEAN, ABLATE_INDUCTION, INDUCTION_QUERIES)
    )
    drop = mean_ci(clean - ablated)
    assert claim(
        share_ci(clean - path, clean - ablated),
        ">=",
        0.5,
        why="half: the queries carry most of the ablation's effect",
        metric="query path alone / full ablation, drop of switch heads' attention on both answers",
        precondition=Premise(
            drop, ">", 0.0, "the ablation lowers the switch heads' attention on the answers"
        ),
        note=f"path drop {mean_ci(clean - path)}, full drop {drop}",
    )


def test_sensitivity_survives_induction_ablation(study, claim):
    """What copying leaves to entailment: the crossed-order sensitivity without the top induction heads."""
    assert claim(
        mean_ci(study.sensitivity(ABLATE_INDUCTION, crossed=True)),
        ">=",
        0.0,
        why="any: sensitivity left once the copying heads are gone",
        metric=f"held-out crossed-order sensitivity with {label(study.heads.induction)} mean-ablated",
        precondition=entails(study),
    )


def test_switch_heads_attention_follows_the_token_before_the_answers(study, claim):
    """The switch heads' own copying, asked directly: replace the token before each answer in the rules
    ("I wear boots" -> "I indeed boots", which an induction-style head keys on) and measure how much
    of their attention on the answers goes, beyond replacing the token two before each answer."""
    clean, before, two_before = (study.values(arm, ON_ANSWERS) for arm in (CLEAN, BEFORE, TWO_BEFORE))
    assert claim(
        share_ci((clean - before) - (clean - two_before), clean),
        ">=",
        0.25,
        why="a quarter: a real part of where they look is keyed on the token before the answer",
        metric="share of the switch heads' attention on both answers lost when the token before each "
        "answer is replaced, minus the loss when the token two before is",
        note=f"attention on the answers: clean {mean_ci(clean)}, token before replaced {mean_ci(before)}, "
        f"two before {mean_ci(two_before)}",
    )


def test_switch_follows_the_token_before_the_answers(study, claim):
    """The same replacement under the switch: how much of the switch's effect on LD is lost on the
    changed text, beyond the loss on the text with the token two before each answer replaced."""
    switch = study.effect(SWITCH)  # per group: LD under the switch minus clean
    after = {
        arm: study.values(ReplaceBefore(arm.offset, SWITCH)) - study.values(arm)
        for arm in (BEFORE, TWO_BEFORE)
    }
    assert claim(
        share_ci((switch - after[BEFORE]) - (switch - after[TWO_BEFORE]), switch),
        ">=",
        0.25,
        why="a quarter: the switch acts through attention keyed on the token before the answer",
        metric="share of the switch's delta LD lost on text with the token before each answer replaced, "
        "minus the loss with the token two before replaced",
        note=f"switch {mean_ci(switch)}; on the changed text {mean_ci(after[BEFORE])}, on the control text "
        f"{mean_ci(after[TWO_BEFORE])}",
    )


# ---------------------------------------------------------------------------------------------
# d. The original question's switch, rebuilt


@pytest.mark.confirmatory
def test_switching_top3_heads_moves_heldout_ld(study, claim):
    assert claim(
        mean_ci(study.effect(SWITCH)),
        "<=",
        -1.0,
        why="1 nat toward the alternative: the odds of the entailed answer cut by e",
        metric=f"held-out delta LD, switch {label(study.heads.top)}",
    )


@pytest.mark.confirmatory
@pytest.mark.parametrize("control", list(CONTROLS))
def test_top3_switch_beats_matched_control(study, control, claim):
    top, other = study.effect(SWITCH), study.effect(CONTROLS[control])
    heads = study.heads.same_layer if control == "same_layer" else study.heads.decile
    assert claim(
        mean_ci(top - other),
        "<=",
        -0.5,
        why="half a nat beyond matched heads: the top heads are special, not any heads moved alike",
        metric=f"delta(top heads) - delta({control} heads), paired",
        note=f"top {mean_ci(top)}; control {mean_ci(other)} ({'; '.join(label(h) for h in heads)})",
    )


def test_single_head_effects_add_up_to_the_joint_switch(study, claim):
    """Additivity is an equivalence: the joint switch over the sum of the heads' single switches is
    near 1, from either side (less: the heads share the effect; more: they amplify one another)."""
    joint = study.effect(JOINT)
    singles = sum(study.effect(SingleSwitch(head)) for head in study.heads.switch[: JOINT.k])
    assert claim(
        share_ci(joint - singles, singles),
        "within",
        0.2,
        why="0.2: within a fifth of the sum, the heads act independently",
        metric=f"joint / sum of single-head deltas - 1, top {JOINT.k} heads",
        note=f"joint / sum {share_ci(joint, singles)}",
    )


@pytest.mark.confirmatory
@pytest.mark.parametrize("intervention", list(EDITS))
def test_intervention_switches_the_answer_beyond_its_control(study, intervention, claim):
    """A switch: the top-1 token becomes the alternative answer (on prompts whose clean top-1 is not
    already the alternative). The original question's own intervention is the one-hot redirect of
    the heads that attend most to the answer; each control head moves as much attention as the head
    it stands for."""
    edit, control = EDITS[intervention]
    a, b = study.switch_rate(edit), study.switch_rate(control)
    heads = study.heads.top if edit == SWITCH else study.heads.redirect
    p_edit, p_control = (
        study.rows(arm, P_ALTERNATIVE, switchable=True).value.mean() for arm in (edit, control)
    )
    assert claim(
        mean_ci(a - b),
        ">=",
        0.3,
        why="0.3: the edit makes the alternative the answer in 30 more prompts in 100 than its control",
        metric=f"switch rate to the alternative, {intervention} {label(heads)} - same-layer control",
        note=f"switches {mean_ci(a)}, control {mean_ci(b)}; p(alternative) {p_edit:.3f} vs control "
        f"{p_control:.3f}",
    )


# ---------------------------------------------------------------------------------------------
# e. Direct vs total


def test_switch_effect_is_mostly_direct(study, claim):
    """Direct effect: later heads, MLPs and ln_final's scale held at their clean values."""
    direct = study.effect(DIRECT)
    assert claim(
        share_ci(direct, study.effect(SWITCH)),
        ">=",
        0.5,
        why="half: most of the effect is the heads' own write to the logits",
        metric="direct / total delta LD of the top-3 switch",
        note=f"direct {mean_ci(direct)}",
    )


# Log
# 2026-11-24 to 2026-12-02  Earlier designs, in brief (their entries in full: git log -p of this file).
#   11-24: prompts differing in labels and order, split by prompt. 11-25: minimal pairs, 23 / 22
#   families (smollm2-135m / gemma3-270m), CIs over families. 12-01: one decision rule, Holm. 12-02: every
#   intervention a spec the sweep engine reads (every value, CI and verdict reproduced exactly). Found then,
#   and still so below: neither model follows the fact once rule orders are crossed (-0.10 [-0.27, 0.05] /
#   0.02 [-0.20, 0.22] nats; undecided from 12-01 on); two-hop sensitivity comes from rule-order matching
#   (same-order pairs 0.47 / 0.38); no head's final-row attention follows the fact (0.008 / 0.012 over
#   same-layer heads); switching the top 3 heads' final-row attention moves held-out LD by -1.68 / -4.95
#   nats, beyond same-layer and top-decile heads; the original question's one-hot redirect of the heads
#   most on the answer flips fewer answers than its control. The rule-recall toy: sensitivity 16.6 [16.3,
#   16.9], its fact heads' pattern swap removes 1.67 of it. Runtime then: 13 min 16 s / 12 min 18 s wall on
#   2 loaded cores; 74 s setup idle once the sweep engine started each chunk at its patched layer.
# 2026-12-02  Units, controls and switches redesigned; both models rerun (1 thread each). 40 families (16
#   new: 8 twin groups with a verb and answers of their own), grouped into 17 units by shared verb or answer
#   word (twin_groups; the six "drink" and four "eat" families are one unit each); 6 discovery and 11
#   confirmation groups, which share no answer word; CIs over groups. Controls: one per compared head, from
#   its layer (or the attention decile), moving as much attention onto the alternative as that head
#   (ShiftAttention). A switch is the top-1 token becoming the alternative. The mean ablation's reference is
#   other groups' prompts (position-matched), never the ablated ones; it moves the induction heads' final
#   output by 0.71 / 0.54 of its norm (smollm2-135m / gemma3-270m), so a null is not a no-op. Removed as
#   claims, kept as implementation checks (tests/test_entailment_identities.py): the dose-response (the
#   edit is linear in the moved weight by construction) and where-vs-what (values before the fact word are
#   the same in both texts); the flip claims become switch claims (8 rows removed, 4 added).
#   a. Crossed orders -0.155 [-0.357, 0.049] / 0.213 [-0.055, 0.449]: undecided on both; on gemma3-270m's
#      11 confirmation groups alone 0.163 [0.003, 0.345] (95%), so its claims that presume entailment are
#      measured now (on smollm2-135m -0.264 [-0.416, -0.130]: still inconclusive). Two-hop 0.196 / 0.278
#      (gemma3-270m undecided -> supported); one-hop 0.250 [-0.135, 0.576] / 0.406 [0.175, 0.724].
#   b. Fact heads 0.017 [0.006, 0.030] / 0.013 [0.007, 0.019] over their layers: refuted (>= 0.05). On
#      gemma3-270m their pattern swap removes 4.05 [-4.03, 16.0] of the sensitivity (inconclusive ->
#      undecided: too wide to decide).
#   c. Induction score vs switch effect 0.290 / 0.042; the ablation removes -0.008 / 0.086 of the switch
#      heads' attention on the answers (refuted on both); query path / full drop on gemma3-270m 0.193 [0.126,
#      0.509] (refuted -> undecided); sensitivity without the induction heads on gemma3-270m 0.270 [0.138,
#      0.435] (inconclusive -> supported: what sensitivity gemma has does not run through them).
#   d. Top-3 switch -1.94 [-2.47, -1.34] / -5.15 [-6.05, -4.01], beyond matched same-layer heads -1.59 /
#      -4.57 and decile heads -1.80 / -5.82 (supported). It makes the alternative the answer in 0.60 / 0.85
#      of the prompts against 0.21 / 0.22 for its controls: 0.390 [0.172, 0.596] (undecided) / 0.626
#      [0.326, 0.861] (supported) beyond them. The original question's one-hot redirect switches 0.07 /
#      0.00, no more than controls moving as much attention (-0.030 / -0.049: refuted). Additive (1.02 /
#      1.05), mostly direct (0.85 / 1.55): supported. Verdict: no head is shown to carry entailment in
#      either model; the switch heads write the answer they look at (a model that does entail:
#      test_two_hop_organism.py).
# 2026-12-02  The sweep engine sizes chunks in rows (variants x prompts; lib/sweep.py): the study's setup on
#   smollm2-135m took 132 s instead of 153 s (2 threads). Float rounding moved with the batching: the
#   Spearman figure went 0.2904 -> 0.2902 / 0.0416 -> 0.0426 (near-tied switch effects change rank); no
#   other value moved and no verdict. Heads against MLPs on these pairs: test_entailment_layers.py.
# 2026-12-03  The rule-recall toy's two claims (the protocol's positive control) moved to
#   test_two_hop_organism.py, beside the same toy on two-hop prompts; their rows are renamed
#   entailment_head_switching -> two_hop_organism, figures unchanged.
# 2026-12-03  Inconclusive claims record no figure (the fixture puts it in the note): 4 rows on smollm2-135m,
#   1 on gemma3-270m (e.g. the fact heads' pattern swap, 0.597 [-0.605, 2.13] at 95%); verdicts unchanged.
# 2026-12-03  CIs that hold their level (bootstrap_ci of a mean is now a studentized bootstrap, shares
#   Fieller's interval, an end may be infinite where the data cannot bound it; README coverage table),
#   rerun on both models (2 threads): 7 verdicts moved: test_answer_follows_the_fact[two-hop] on
#   gemma3-270m: supported 0.2777 [0.04508, 0.4954] -> undecided 0.2777 [-0.006808, 0.5207];
#   test_fact_heads_pattern_carries_the_sensitivity on gemma3-270m: undecided 4.049 [-4.032, 16.01] ->
#   inconclusive (no figure); test_induction_heads_reach_switch_heads_through_queries on gemma3-270m:
#   undecided 0.1933 [0.1258, 0.5089] -> inconclusive (no figure);
#   test_intervention_switches_the_answer_beyond_its_control[switch] on gemma3-270m: supported 0.6263
#   [0.3258, 0.8611] -> undecided 0.6263 [0.09285, 0.9041]; test_sensitivity_survives_induction_ablation
#   on gemma3-270m: supported 0.2701 [0.1381, 0.4347] -> inconclusive (no figure);
#   test_switching_top3_heads_moves_heldout_ld on smollm2-135m: supported -1.943 [-2.471, -1.342] ->
#   undecided -1.943 [-2.579, -0.6782]; test_top3_switch_beats_matched_control[same_layer] on
#   smollm2-135m: supported -1.586 [-2.016, -1.081] -> undecided -1.586 [-2.094, -0.4816].
# 2026-12-04  One question per claim, both models rerun (2 threads). Premises are decided at the level of
#   the claim they guard (attnclaims.claims.Premise), and what presumes entailment (the fact heads'
#   pattern swap, the sensitivity without the induction heads) is measured on crossed-order pairs; a
#   share's denominator is a premise its CI carries. The fact heads are compared with their own same-layer
#   controls (controls.fact; before, the switch heads' first draw): 0.0165 [0.0049, 0.0391] -> 0.0124
#   [-0.0021, 0.0360] on smollm2-135m, 0.0129 -> 0.0117 [0.0044, 0.0191] on gemma3-270m, refuted on both
#   as before. Additivity is a `within` claim, joint / sum of singles - 1 within 0.2: 0.024 [-0.014,
#   0.062] / 0.054 [-0.009, 0.122], supported as before. The induction-score claim is the mean over the 6
#   discovery groups of each group's Spearman rho (the pooled rho's bootstrap had no coverage check): 1
#   verdict moved: test_switch_effect_tracks_induction_score on smollm2-135m: undecided 0.2902 [0.1981,
#   0.3303] -> refuted 0.2355 [-0.0977, 0.2893] (gemma3-270m 0.0723 [-0.0304, 0.1319], refuted as before).
# 2026-12-04  Rewritten on the study layer, both models rerun (2 threads): the arms are objects named at the
#   top of this file (lib/studies/entailment_arms.py), the results one tidy table of prompt x arm x measure
#   (attnclaims.effects), every effect taken against the clean run's LD (the confirmation sweep no longer
#   runs a clean variant of its own). `attnclaims diff` against the ledger before: no claim moved; ends of
#   CIs moved in the 4th digit (e.g. two-hop on gemma3-270m -0.006808 -> -0.006801). The Spearman figure
#   moved 0.2355 -> 0.2368 on smollm2-135m (the old code gives 0.2368 too on this session's machine: near-
#   tied switch effects change rank) and 0.0723 -> 0.0726 on gemma3-270m, refuted on both as before. The
#   switch claim's note now gives its control's p(alternative) over the 3 draws, not draw 0 alone (0.148 ->
#   0.119 / 0.184 -> 0.158).
# 2026-12-06  Before rerunning on 49 groups (32 new families, each a group of its own: 72 families), the
#   smallest crossed-order sensitivity the design detects at 80% power, two-sided at the family's 99.5%,
#   from the 17 groups' spread (SD 0.310 / 0.387 nats): 0.168 nats on smollm2-135m and 0.209 on
#   gemma3-270m (0.309 / 0.386 with 17 groups).
# 2026-12-06  49 groups (72 families), both models rerun (1 thread, alongside toy training). Fact heads are
#   now hop heads, selected by their pattern swap on discovery groups (the organisms' protocol); the copy
#   test replaces the token before each answer (control: two before). smollm2-135m / gemma3-270m:
#   crossed-order sensitivity -0.386 [-0.634, -0.158] / -0.041 [-0.272, 0.163] nats: undecided ->
#   refuted on smollm2-135m (it matches answers by rule order: same-order pairs 0.789 [0.596, 1.04]);
#   undecided on gemma3-270m, whose CI excludes the 0.209 the design was sized to detect (same-order
#   0.536). Hop heads L23H7, L23H2, L21H8 / L11H2, L9H3, L12H2 follow the fact by -0.021 [-0.033, -0.013]
#   / -0.003 [-0.005, -0.0004] beyond same-layer heads: refuted (new claim; the fact heads' 0.012 /
#   0.012 were refuted too); their pattern swap is inconclusive on both (crossed premise fails). Copying:
#   replacing the token before each answer takes the switch heads' attention on the answers from 0.562 to
#   0.252 / 0.244 to 0.145 (two before: 0.554 / 0.246), shares 0.537 [0.455, 0.619] / 0.416 [0.336,
#   0.495], supported; the switch loses 0.318 [0.227, 0.408] (undecided) / 0.362 [0.288, 0.434]
#   (supported) of its effect on that text beyond the control. Verdicts moved: smollm2-135m one-hop
#   undecided -> supported 0.439 [0.122, 0.820]; crossed undecided -> refuted; switching top 3 undecided
#   -> supported -2.30 [-2.72, -1.89]; beats same-layer undecided -> supported -1.33 [-1.61, -1.05];
#   original redirect refuted -> undecided 0.036 [0.001, inf]. gemma3-270m two-hop undecided ->
#   supported 0.248 [0.087, 0.387]; switch beyond control undecided -> supported 0.655 [0.448, 0.809];
#   induction query path inconclusive -> undecided 0.257 [0.164, 0.549]. Switch beyond control on
#   smollm2-135m stays undecided, 0.390 -> 0.201 [0.091, 0.363]. Reading: neither model is shown to
#   entail; the switch heads copy whatever follows the token their attention keys on, and the switch
#   moves the answer because of that. Runtime 17 min / 24 min at 1 thread beside 2 training processes.
