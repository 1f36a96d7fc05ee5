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

Which claims tell them apart: (a) sensitivity, two-hop, crossed orders, one-hop control; (b) heads
whose final-row attention follows the fact, selected on discovery groups and confirmed on the
others, and whether giving them the other fact's pattern removes the sensitivity; (c) the copy
account: switch effect vs induction score over all heads, mean-ablating the top induction heads
(switch heads' attention on the answers, their recency bias), the same ablation reaching the switch
heads through their queries only (path patching), and what is left of the sensitivity without
them; (d) the seed's switch, rebuilt: top heads by discovery switch effect, held-out groups,
matched controls, additivity, the seed's one-hot redirect, switches of the top-1 token to the
alternative; (e) the switch's direct vs total effect. Heads against MLPs, layer by layer, on the
same pairs: test_entailment_layers.py. Where entailment does happen, in a model built to entail, is
test_two_hop_organism.py.

Protocol (lib/studies/entailment_study.py run_study, on attnclaims.protocols and
attnclaims.sweep.run_variants; every stacked forward goes through run_variants; group statistics:
lib/studies/entailment_stats.py)
1. Pairs whose texts tokenize to equal length with single-token answers on the model. The unit is
   the group: families that share a verb or an answer word (a real family and its made-up twin)
   are one (entailment_study.twin_groups); groups are split once into discovery (1/3) and
   confirmation (2/3) (attnclaims.stats.discovery_confirmation_split), so the two share no answer.
2. Clean run of every prompt: LD, final-row attention of every head, and the activations the later
   steps freeze or use as the mean-ablation reference.
3. Discovery: fact-following score of every head, F = mean over a pair's two texts of
   attention(entailed) - attention(alternative) at the final row (a head whose looking ignores the
   fact scores 0); switch effect of every head alone = change of LD(entailed - alternative) when its
   final-row weight on the entailed answer moves to the alternative (one order per family).
4. Confirmation groups: the interventions of (b)-(e) against their controls. The mean ablation's
   reference is the mean of other groups' prompts, position-matched (BOS to BOS, then from the
   shared ending), never the prompts ablated; its note says how far it moves the heads' output.
Each family is used in two rule orders, one same and one crossed (ORDER_SETS, alternating between
families so that both condition orders occur); the discovery sweep uses one of them per family.
5. Toy positive control (lib/tasks/entailment.py "rule-recall", 2-layer attention-only): its heads
   must route the queried rule's answer, so sensitivity and the fact heads' pattern swap must work.

Measures, in nats unless said: delta = LD(intervention) - LD(clean) per prompt, averaged over a
family's prompts and then over the group's families; a switch = the top-1 token becomes the
alternative answer; every CI is a bootstrap over groups, at 95% for exploratory claims and at the
family's simultaneous level for the confirmatory ones (lib/claims.py).
Controls, never a compared head: for each compared head another of its layer
(attnclaims.heads.same_layer_controls), or one drawn from the top decile of final-row attention to
the entailed answer; each moves as much attention onto the alternative as the head it stands for
(attnclaims.interventions.ShiftAttention). Their own effects are in each claim's note.
Implementation checks, not claims (tests/test_entailment_identities.py): the edit's output is
linear in the moved weight, and values before the fact word are the same in both texts.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from attnclaims.heads import label
from attnclaims.stats import bootstrap_ci
from attnclaims.studies.entailment_figures import write_figures
from attnclaims.studies.entailment_stats import (
    answers_attention,
    by_group,
    deltas,
    entails,
    group_ci,
    mean_of_draws,
    ratio_ci,
    switch_rate,
)
from attnclaims.studies.entailment_study import EntailmentDesign, Study, run_study
from attnclaims.studies.entailment_sweep import sensitivity_by_pair
from attnclaims.studies.entailment_toy import ToyStudy, run_toy_study
from attnclaims.toy import ToyConfig

DESIGN = EntailmentDesign(
    k=3,  # heads switched together (the seed's choice)
    dose_k=(1, 3, 5, 10),  # top switch heads moved together in the dose-response; 10 = the switch heads kept
    dose_alpha=(0.0, 0.25, 0.5, 0.75, 1.0),  # fraction of the entailed answer's weight moved
    control_draws=3,
    n_induction=5,  # top induction heads mean-ablated
    discovery_fraction=1 / 3,
    order_sets=(("ab/ab", "ab/ba"), ("ba/ba", "ba/ab")),  # per family, alternating: one same, one crossed
)
K, DOSE_K, DOSE_ALPHA, CONTROL_DRAWS = DESIGN.k, DESIGN.dose_k, DESIGN.dose_alpha, DESIGN.control_draws
TOY = ToyConfig(task="rule-recall", n_layers=2, n_content=16, steps=600, log_every=50)
TOY_OFFSET = 1  # the toy's layer-1 heads read each answer from the token after it (log, 2026-11-24)
TOY_PROMPTS = 48
UNIT = "groups"  # what every real-model claim's n counts: twin families (same verb or answer) are one


@pytest.fixture(scope="module")
def study(model, model_name) -> Study:
    """Steps 1-4 of the protocol on `model`, computed once per model."""
    return run_study(model, model_name, DESIGN)


@pytest.fixture(scope="module")
def figures(study, results_dir):
    """The study's four figures, entailment_head_switching_*_<model>.png in the results folder (once
    per model)."""
    write_figures(study, results_dir)


# ---------------------------------------------------------------------------------------------
# a. Does the answer follow the fact?


@pytest.mark.confirmatory
@pytest.mark.real_model
@pytest.mark.parametrize("hops", [2, 1], ids=["two-hop", "one-hop"])
def test_answer_follows_the_fact(study, figures, hops, claim):
    ci = group_ci(study.behaviour.query(f"hops == {hops}"), "sensitivity")
    assert claim(
        ci,
        ">=",
        0.0,
        why="any: the texts differ in the fact alone, so the sign is the claim",
        metric=f"sensitivity LD(fact a) - LD(fact b), {hops}-hop",
        note=f"{len(study.skipped)} pairs skipped (tokenization)",
    )


@pytest.mark.confirmatory
@pytest.mark.real_model
def test_answer_follows_the_fact_when_rule_orders_are_crossed(study, claim):
    """Crossed orders: the answer rules are in the opposite order to the condition rules, so
    "the answer in the matching place" is the wrong one."""
    crossed = group_ci(study.behaviour.query("hops == 2 and crossed"), "sensitivity")
    same = group_ci(study.behaviour.query("hops == 2 and not crossed"), "sensitivity")
    assert claim(
        crossed,
        ">=",
        0.0,
        why="any: matching the condition's place gives the wrong answer here, so following the fact is more",
        metric="sensitivity, two-hop, crossed rule orders",
        note=f"same-order pairs: {same}",
    )


# ---------------------------------------------------------------------------------------------
# b. Heads that follow the fact


@pytest.mark.confirmatory
@pytest.mark.real_model
def test_fact_heads_follow_the_fact_on_heldout_families(study, claim):
    two = study.attention.query("hops == 2 and split == 'confirmation'")
    pick = lambda heads: two[[(lyr, h) in heads for lyr, h in zip(two.layer, two["head"])]]
    top, control = (
        by_group(pick(study.fact_heads), "follows"),
        by_group(pick(study.same_layer[0]), "follows"),
    )
    ci = bootstrap_ci((top - control).to_numpy())
    assert claim(
        ci,
        ">=",
        0.05,
        why="5 points of attention beyond their layer: looking that moves with the fact",
        metric=f"attention(entailed - alternative), {label(study.fact_heads)} - same-layer heads",
        note=f"fact heads {bootstrap_ci(top.to_numpy())}; control {bootstrap_ci(control.to_numpy())}",
    )


@pytest.mark.confirmatory
@pytest.mark.real_model
def test_fact_heads_pattern_carries_the_sensitivity(study, claim):
    """Give the fact heads the other text's final-row pattern: the share of the sensitivity lost."""
    clean = sensitivity_by_pair(deltas(study, "fact_cross").assign(value=lambda f: f.ld - f.delta))
    moved = sensitivity_by_pair(deltas(study, "fact_cross"), "delta")
    control = sensitivity_by_pair(deltas(study, "fact_cross_control"), "delta")
    ci = ratio_ci(-by_group(moved, "delta"), by_group(clean, "value"))
    ctrl = ratio_ci(-by_group(control, "delta"), by_group(clean, "value"))
    assert claim(
        ci,
        ">=",
        0.5,
        why="half: the heads' pattern carries most of the sensitivity",
        metric=f"share of held-out sensitivity removed by swapping {label(study.fact_heads)}'s pattern",
        precondition=entails(study),
        note=f"same-layer control heads remove {ctrl}",
    )


# ---------------------------------------------------------------------------------------------
# c. The copy account


@pytest.mark.real_model
def test_switch_effect_tracks_induction_score(study, figures, claim):
    table = study.switch_by_family.pivot_table(index="group", columns=["layer", "head"], values="delta")
    induction = np.array([study.induction[lyr, h] for lyr, h in table.columns])
    matrix = table.to_numpy()
    rho = lambda i: spearmanr(induction, -matrix[i.astype(int)].mean(0)).statistic
    assert claim(
        bootstrap_ci(np.arange(len(matrix)), statistic=rho),
        ">=",
        0.3,
        why="0.3: a moderate rank correlation, where copying predicts the switch heads",
        metric="Spearman rho, induction score vs -switch effect over all heads",
        unit="discovery groups",
    )


@pytest.mark.real_model
def test_ablating_induction_heads_removes_switch_heads_attention_on_answers(study, claim):
    clean, ablated = answers_attention(study, "clean"), answers_attention(study, "ablate_induction")
    ci = ratio_ci(clean.both - ablated.both, clean.both)
    assert claim(
        ci,
        ">=",
        0.25,
        why="a quarter: the induction heads feed a real part of the switch heads' attention on the answers",
        metric="share of switch heads' attention on both answers removed by mean-ablating "
        + label(study.induction_heads),
        note=f"clean {bootstrap_ci(clean.both.to_numpy())}, ablated {bootstrap_ci(ablated.both.to_numpy())}; "
        f"the reference (other groups' prompts) moves the heads' final-row output by "
        f"{study.ablation_change:.2f} of its norm",
    )


@pytest.mark.real_model
def test_ablating_induction_heads_removes_switch_heads_recency_bias(study, claim):
    clean, ablated = answers_attention(study, "clean"), answers_attention(study, "ablate_induction")
    """Premise: the switch heads' attention favours the later-mentioned answer at all."""
    ci = ratio_ci(clean.recency - ablated.recency, clean.recency)
    bias = bootstrap_ci(clean.recency.to_numpy())
    later = deltas(study, "ablate_induction")
    assert claim(
        ci,
        ">=",
        0.5,
        why="half: the recency bias comes mostly from the induction heads",
        metric="share of switch heads' attention(later answer) - attention(earlier) removed by the ablation",
        precondition=(
            bias.low > 0,
            f"the switch heads favour the later answer (recency bias {bias} > 0)",
        ),
        note=f"clean recency bias {bootstrap_ci(clean.recency.to_numpy())}; ablation moves LD "
        f"{group_ci(later, 'delta')}",
    )


@pytest.mark.real_model
def test_induction_heads_reach_switch_heads_through_queries(study, claim):
    """Premise: the full ablation lowers the switch heads' attention on the answers at all."""
    clean, ablated, path = (answers_attention(study, v) for v in ("clean", "ablate_induction", "path_q"))
    drop = bootstrap_ci((clean.both - ablated.both).to_numpy())
    ci = ratio_ci(clean.both - path.both, clean.both - ablated.both)
    premise = (
        drop.low > 0,
        f"the ablation lowers the switch heads' attention on the answers ({drop} > 0)",
    )
    assert claim(
        ci,
        ">=",
        0.5,
        why="half: the queries carry most of the ablation's effect",
        metric="query path alone / full ablation, drop of switch heads' attention on both answers",
        precondition=premise,
        note=f"path drop {bootstrap_ci((clean.both - path.both).to_numpy())}, full drop {drop}",
    )


@pytest.mark.real_model
def test_sensitivity_survives_induction_ablation(study, claim):
    """What copying leaves to entailment: the sensitivity without the top induction heads."""
    ablated = sensitivity_by_pair(deltas(study, "ablate_induction"), "ld")
    ci = group_ci(ablated, "ld")
    assert claim(
        ci,
        ">=",
        0.0,
        why="any: sensitivity left once the copying heads are gone",
        metric=f"held-out sensitivity with {label(study.induction_heads)} mean-ablated",
        precondition=entails(study),
    )


# ---------------------------------------------------------------------------------------------
# d. The seed's switch, rebuilt


@pytest.mark.confirmatory
@pytest.mark.real_model
def test_switching_top3_heads_moves_heldout_ld(study, claim):
    ci = group_ci(deltas(study, ("switch", K, 1.0)), "delta")
    assert claim(
        ci,
        "<=",
        -1.0,
        why="1 nat toward the alternative: the odds of the entailed answer cut by e",
        metric=f"held-out delta LD, switch {label(study.switch_heads[:K])}",
    )


@pytest.mark.confirmatory
@pytest.mark.real_model
@pytest.mark.parametrize("control", ["same_layer", "decile"])
def test_top3_switch_beats_matched_control(study, control, claim):
    top = by_group(deltas(study, ("switch", K, 1.0)), "delta")
    other = by_group(mean_of_draws(study, control), "delta")
    ci = bootstrap_ci((top - other).to_numpy())
    heads = study.same_layer if control == "same_layer" else study.decile
    assert claim(
        ci,
        "<=",
        -0.5,
        why="half a nat beyond matched heads: the top heads are special, not any heads moved alike",
        metric=f"delta(top heads) - delta({control} heads), paired",
        note=f"top {bootstrap_ci(top.to_numpy())}; control {bootstrap_ci(other.to_numpy())} "
        f"({'; '.join(label(h) for h in heads)})",
    )


@pytest.mark.real_model
def test_single_head_effects_add_up_to_the_joint_switch(study, claim):
    k = max(DOSE_K)
    joint = by_group(deltas(study, ("switch", k, 1.0)), "delta")
    singles = sum(by_group(deltas(study, ("single", head)), "delta") for head in study.switch_heads[:k])
    ci = ratio_ci(joint, singles)
    assert claim(
        ci,
        ">=",
        0.8,
        why="0.8: the heads act mostly independently",
        metric=f"joint / sum of single-head deltas, top {k} heads",
    )


@pytest.mark.confirmatory
@pytest.mark.real_model
@pytest.mark.parametrize("intervention", ["switch", "seed_redirect"])
def test_intervention_switches_the_answer_beyond_its_control(study, intervention, claim):
    """A switch: the top-1 token becomes the alternative answer (on prompts whose clean top-1 is not
    already the alternative). The seed's own intervention is the one-hot redirect of the heads that
    attend most to the answer; each control head moves as much attention as the head it stands for."""
    if intervention == "switch":
        top = switch_rate(study, ("switch", K, 1.0))
        controls = [switch_rate(study, ("same_layer", i)) for i in range(CONTROL_DRAWS)]
        control = controls[0].assign(switch=np.mean([c.switch.to_numpy() for c in controls], axis=0))
        heads = study.switch_heads[:K]
    else:
        top, control, heads = (
            switch_rate(study, "seed_redirect"),
            switch_rate(study, "seed_redirect_control"),
            study.seed_heads,
        )
    a, b = by_group(top, "switch"), by_group(control, "switch")
    ci = bootstrap_ci((a - b).to_numpy())
    assert claim(
        ci,
        ">=",
        0.3,
        why="0.3: the edit makes the alternative the answer in 30 more prompts in 100 than its control",
        metric=f"switch rate to the alternative, {intervention} {label(heads)} - same-layer control",
        note=f"switches {bootstrap_ci(a.to_numpy())}, control {bootstrap_ci(b.to_numpy())}; "
        f"p(alternative) {top.p_alternative.mean():.3f} vs control {control.p_alternative.mean():.3f}",
    )


# ---------------------------------------------------------------------------------------------
# e. Direct vs total


@pytest.mark.real_model
def test_switch_effect_is_mostly_direct(study, claim):
    """Direct effect: later heads, MLPs and ln_final's scale held at their clean values."""
    direct, total = (
        by_group(deltas(study, "switch_direct"), "delta"),
        by_group(deltas(study, ("switch", K, 1.0)), "delta"),
    )
    ci = ratio_ci(direct, total)
    assert claim(
        ci,
        ">=",
        0.5,
        why="half: most of the effect is the heads' own write to the logits",
        metric="direct / total delta LD of the top-3 switch",
        note=f"direct {bootstrap_ci(direct.to_numpy())}",
    )


# ---------------------------------------------------------------------------------------------
# Toy positive control: a model that must route the queried rule's answer


@pytest.fixture(scope="module")
def toy_study(toy_model) -> ToyStudy:
    """Step 5: the toy positive control, trained (or loaded) and measured once."""
    return run_toy_study(toy_model(TOY), TOY, n_prompts=TOY_PROMPTS, offset=TOY_OFFSET, k=K)


@pytest.mark.confirmatory
def test_toy_answer_follows_the_query(toy_study, claim):
    assert claim(
        group_ci(toy_study.behaviour, "sensitivity"),
        ">=",
        2.0,
        why="2 nats: the queried rule decides the answer (odds e^2 = 7.4 to 1 between the texts)",
        model=toy_study.name,
        metric="sensitivity LD(query a) - LD(query b)",
        unit="prompt pairs",
    )


@pytest.mark.confirmatory
def test_toy_fact_head_pattern_carries_the_sensitivity(toy_study, claim):
    clean = toy_study.behaviour.query("split == 'confirmation'").set_index("family").sensitivity
    moved = sensitivity_by_pair(toy_study.crossed, "delta").set_index("family").delta
    assert claim(
        ratio_ci(-moved, clean),
        ">=",
        0.5,
        why="half: the fact heads' pattern carries most of the routing",
        model=toy_study.name,
        metric=f"share of sensitivity removed by swapping {label(toy_study.fact_heads)}'s pattern",
        unit="prompt pairs",
    )


# Log
# 2026-11-24  (earlier protocol: prompts differing in labels and order, split by prompt; superseded below)
#   smollm2-135m (4-bit Q4_1 GGUF checkpoint de-quantised to float32): mean LD entailed - alternative
#   -0.17 [-0.43, 0.08]; accuracy 0.36 [0.25, 0.48] when recency favoured the alternative; switching the
#   final-row attention of L23H7, L23H2, L23H0 moved held-out LD by -2.03 [-2.19, -1.88], flipped 0.84 of
#   the prompts answered correctly, 2.00 more than random heads. Toy rule-recall: the switch with offset 1
#   moved LD by -13.8 [-14.2, -13.5]; the toy's layer-1 heads read each answer from the token after it.
# 2026-11-25  Minimal pairs. smollm2-135m (4-bit Q4_1 GGUF checkpoint de-quantised to float32); 23 of 24
#   families usable ("tam"/"quill" tokenize to different lengths: skipped with the reason); 8 discovery,
#   15 confirmation families; CIs over families.
#   a. Sensitivity, two-hop 0.18 [0.06, 0.31] (supported) but all of it from rule-order matching: same-order
#      pairs 0.47 [0.31, 0.63], crossed -0.10 [-0.27, 0.05] (refuted). One-hop 0.15 [-0.11, 0.40] (refuted).
#      Verdict: the model does not entail; it matches the fact's condition to the answer in the same place.
#   b. No head's final-row attention follows the fact: top fact heads L21H8, L24H4, L22H4 on held-out
#      families 0.008 [-0.009, 0.023] over same-layer heads (refuted, >= 0.05). Giving them the other
#      fact's pattern removes -0.55 [-5.4, 1.7] of the held-out sensitivity (refuted).
#   c. Copy account: induction score vs switch effect, Spearman 0.31 [0.21, 0.33] over 270 heads (refuted
#      at >= 0.3: weak). Mean-ablating the top induction heads L18H6, L17H4, L17H5, L17H3, L18H7 leaves
#      the switch heads' attention on both answers unchanged (0.530 -> 0.532; share removed -0.003
#      [-0.025, 0.012], refuted); the switch heads show no recency bias to remove (0.024 [-0.020, 0.069]:
#      inconclusive), so the path-patching ratio is inconclusive too (the query path alone lowers their
#      attention on the answers by 0.043 [0.008, 0.077]; the full ablation by -0.002). The same ablation
#      removes the sensitivity (0.16 -> 0.01 [-0.13, 0.15], refuted "survives"): what sensitivity there is
#      (order matching) runs through the induction heads, not through the switch heads.
#   d. Switch, rebuilt: top heads by discovery effect L23H7, L24H7, L23H0; held-out delta LD -1.68
#      [-1.91, -1.46] (supported, <= -1); 1.09 [0.90, 1.28] more than same-layer heads (their own effect
#      -0.58 [-0.68, -0.48]) and 2.01 [1.76, 2.25] more than heads of the top attention decile (their own
#      effect +0.33 [0.23, 0.43]) (both supported). Linear in the moved weight: delta(0.5)/delta(1)
#      0.498 [0.492, 0.502]; K=1,3,5,10 at alpha=1: -0.80, -1.68, -2.54, -4.18. Additive: joint / sum of
#      single-head deltas (top 10) 1.08 [1.02, 1.15] (supported). Top-1 flips 0.50 [0.38, 0.62] vs 0.22
#      [0.13, 0.32] for same-layer heads (difference 0.28 [0.19, 0.36], refuted at >= 0.3); p(alternative)
#      0.32 vs 0.23. The seed's intervention (one-hot redirect of the heads with most attention on the
#      answer, L17H5, L17H4, L21H7: induction heads) flips 0.12 [0.05, 0.20], fewer than its same-layer
#      control 0.38 [0.22, 0.57] (refuted).
#   e. Where vs what: the switch heads carry a little of the sensitivity through where they look (the
#      other fact's pattern: -0.16 [-0.27, -0.05]; its values: -0.04 [-0.16, 0.07]; difference -0.12
#      [-0.26, 0.03], refuted). Direct / total effect of the switch 0.75 [0.66, 0.86] (supported): mostly a
#      direct write of the answer read from where the head looks.
#   Toy rule-recall (48 pairs): sensitivity 16.6 [16.3, 16.9] (supported); giving its top-3 fact heads
#   (L1H3, L1H0, L1H2) the other query's pattern removes 1.67 [1.62, 1.72] of it (supported; with the top
#   head alone 0.54 [0.49, 0.59]): the protocol finds routing by the fact where it exists.
#   Verdict: copying with a positional shortcut, not entailment. The switch heads move LD because they
#   write whatever answer they look at; where they look does not depend on the fact.
#   Runtime: 13 min 16 s wall, 684 s user CPU on 2 cores shared with five other jobs (load ~10).
# 2026-11-25  Cold run on a fresh clone, idle 2 cores: the smollm2-135m study's setup took 74 s (the sweep
#   engine now starts each chunk at its patched layer); every figure above reproduced to 3 digits.
#   gemma3-270m: 22 of 24 families tokenize position-matched ("zorp", "blick" split differently); the
#   study has not been run on it yet, so no gemma figures exist.
# 2026-11-25  gemma3-270m (4-bit Q4_K_M GGUF checkpoint de-quantised to float32, base model), same protocol;
#   22 families (8 discovery, 14 confirmation). Figures as smollm2-135m above -> gemma3-270m.
#   a. Two-hop 0.18 -> 0.20 [0.05, 0.34] (supported on both), again all order matching: same-order 0.38
#      [0.20, 0.56], crossed 0.02 [-0.20, 0.22] (refuted on both). One-hop 0.52 [0.35, 0.71] (supported:
#      gemma follows a directly stated middle term; smollm2 does not). Verdict unchanged: neither model
#      entails through two rules.
#   b. Top fact heads L13H3, L11H2, L17H2: 0.012 [0.006, 0.019] over same-layer heads (refuted, >= 0.05);
#      their pattern swap removes 2.2 [0.31, 9.9] of the held-out sensitivity (refuted: the CI is too wide).
#   c. Induction score vs switch effect, Spearman 0.19 [0.07, 0.21] over 72 heads (refuted). Mean-ablating
#      the induction heads L5H2, L5H3, L5H0 removes 0.019 [0.005, 0.034] of the switch heads'
#      attention on the answers (refuted); no recency bias to remove (-0.007 [-0.030, 0.017]: inconclusive);
#      query path alone 0.048 [-0.001, 0.16] of the full drop (refuted); sensitivity after the ablation 0.11
#      [-0.02, 0.26] (refuted "survives").
#   d. Switch heads L11H2, L12H1, L17H0: held-out delta LD -4.95 [-5.64, -4.22] (supported), 5.80 [4.87,
#      6.66] beyond same-layer heads (their own effect +0.85) and 5.62 [4.71, 6.44] beyond decile heads
#      (+0.68) (supported); delta(0.5)/delta(1) 0.48 [0.47, 0.50]; joint / sum of singles 0.99 [0.94, 1.03]
#      (both supported). Flips 0.55 vs 0.17 for same-layer heads: difference 0.38 [0.27, 0.49] (refuted at
#      >= 0.3 by its CI); the seed's redirect (L5H1, L10H2, L5H3) flips 0.13 vs its control 0.68 (refuted).
#   e. Where vs what: the other fact's pattern moves the sensitivity -0.37 [-0.54, -0.21], its values
#      -0.02 [-0.10, 0.08]; difference -0.36 [-0.54, -0.18] (supported on gemma, refuted on smollm2).
#      Direct / total 1.46 [1.34, 1.56] (supported: later layers partly undo the direct write).
#   Replicates on both models (test_replicates_in_every_model): two-hop sensitivity, the top-3 switch and
#   both its controls, dose-response, additivity, a mostly direct effect. Does not: one-hop, where-vs-what.
#   Runtime: 12 min 18 s wall, 414 s user CPU on 2 cores shared with two other jobs.
# 2026-12-01  One decision rule (lib/claims.py). Confirmatory family per model (m = 10, simultaneous CIs at
#   99.5%): two-hop, one-hop and crossed-order sensitivity, the fact heads and their pattern swap, the
#   top-3 switch and its two controls, and both flip claims; the toy's two claims are a family of 2. The
#   premise of the entailment claims is now the crossed-order sensitivity on the confirmation families (a
#   positive figure there is more than order matching), not the pooled two-hop figure that order
#   matching drives: it fails on both models, so the pattern swap, the sensitivity after the induction
#   ablation and where-vs-what are inconclusive (they were refuted, and where-vs-what supported on
#   gemma3-270m). Moves, smollm2-135m / gemma3-270m: crossed orders -0.105 [-0.344, 0.121] / 0.020
#   [-0.299, 0.320], refuted -> undecided (the data show no entailment; they do not exclude a small one);
#   one-hop on smollm2-135m 0.149 [-0.233, 0.522] refuted -> undecided; two-hop on gemma3-270m 0.200
#   [-0.011, 0.420] supported -> undecided (Holm p 0.036: Holm alone would decide it, its simultaneous CI
#   does not); top-1 flips beyond control 0.278 [0.156, 0.400] / 0.381 [0.220, 0.536] refuted ->
#   undecided; Spearman on smollm2-135m 0.304 [0.204, 0.335] (exploratory; 2000 resamples, were 500)
#   refuted -> undecided. Still refuted: fact heads following the fact, 0.008 [-0.017, 0.027] / 0.012
#   [0.004, 0.022] against 0.05; the seed's redirect beyond its control; the ablation's share of the
#   switch heads' attention. Still supported on both: the top-3 switch, -1.68 [-1.98, -1.35] / -4.95
#   [-5.84, -3.87], beyond both controls (Holm p 0.001); the toy, 16.6 [16.2, 16.9] and 1.67 [1.61, 1.73].
#   Verdict: neither model is shown to entail (crossed-order sensitivity undecided on both, CIs from
#   -0.34 to +0.32 nats); the switch heads write what they look at.
# 2026-12-01  Holm now counts the inconclusive pattern-swap claim as untested (p = 1, no adjusted p of its
#   own); no verdict moved (undecided claims' Holm p rose, e.g. gemma3-270m flips beyond control 0.30 ->
#   0.45).
# 2026-12-02  Every intervention is a spec (attnclaims.interventions: MoveAttention, RedirectAttention,
#   EditAttention, AblateHeads, EditValues, and the declared Hooks of freeze_after, path_to_queries and
#   watch) that the sweep engine reads instead of hook names; make research reproduced every value, CI,
#   p, adjusted p and verdict exactly. Metric names list heads as "L23H7, L24H7, L23H0".
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
#      [0.326, 0.861] (supported) beyond them. The seed's one-hot redirect switches 0.07 / 0.00, no more than
#      controls moving as much attention (-0.030 / -0.049: refuted). Additive (1.02 / 1.05), mostly direct
#      (0.85 / 1.55): supported. Verdict: no head is shown to carry entailment in either model; the switch
#      heads write the answer they look at. Where entailment happens in a model that does entail:
#      test_two_hop_organism.py.
# 2026-12-02  The sweep engine sizes chunks in rows (variants x prompts; lib/sweep.py): the study's setup on
#   smollm2-135m took 132 s instead of 153 s (2 threads). Float rounding moved with the batching: the
#   Spearman figure went 0.2904 -> 0.2902 / 0.0416 -> 0.0426 (near-tied switch effects change rank); no
#   other value moved and no verdict. Heads against MLPs on these pairs: test_entailment_layers.py.
