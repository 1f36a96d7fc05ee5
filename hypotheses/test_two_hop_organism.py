"""Where does entailment happen in a model that entails, and does the switch protocol find it?

Question. Neither real model entails through two rules (test_entailment_head_switching.py), so the
protocol's claims there cannot show where entailment lives. Here it runs on a model that does: a
two-hop model organism whose weights are set by hand (lib/studies/entailment_organism.py), so the
answer is known: L1H0 carries hop 1 (condition -> bridge word), L2H0 hop 2 (bridge -> answer), and
other heads look at the answers without following the fact (recency, both candidates) or at the
bridge without carrying it. Trained toys did not learn the task in the search logged below.

Task (lib/tasks/entailment.py, 16 words of each kind): "<bos> c3 b5 . b0 a7 . c1 b0 . b5 a2 . c3"
-> a2. Each prompt becomes a minimal pair with the other chain's condition as the query, so the
entailed and alternative answers trade places and nothing else changes (lib/studies/two_hop.py).

Protocol (lib/studies/two_hop.py run_two_hop): 240 pairs drawn with a seed no model was trained
on; every third pair is a discovery pair, the other 160 confirm; the pair is the unit of every CI.
1. Clean run: LD = logit(entailed) - logit(alternative), top-1 token, final-row attention.
2. Each hop's head: the top head by discovery fact-following (hop 1: attention on the entailed
   bridge word minus the other; hop 2: on the entailed answer minus the other); held out, its score
   minus the mean of its layer's other heads (a head that looks where every head looks scores 0).
3. That head gets the other text's final-row pattern: the share of the sensitivity removed.
4. The original question's switch: the 3 heads with most final-row attention on the entailed
   answer (discovery) move it to the alternative; controls are other heads of the same layers
   moving the same amount of attention onto the alternative (3 draws). A switch = the top-1 token
   becomes the alternative answer (counted on prompts whose clean answer is not already it).

Models. Every claim runs on the organism and on two controls that cannot entail: the one-hop toy
of the entailment file (rule-recall, trained 600 steps), on two-hop prompts, and an untrained toy
of the suite's own kind (3 layers, initialisation only). A claim that holds on a control would say
the protocol finds entailment where there is none. The organism has no MLPs (each adds exactly 0),
so its entailment is computed by attention alone, by construction; which layer does what is in
two_hop_<model>.png.

Positive control of the protocol on its own task: the one-hop toy reading one-hop prompts ("c1 a7 .
c3 a2 . c3" -> a2; lib/studies/entailment_toy.py) must route the queried rule's answer, so its
sensitivity and its fact heads' pattern swap (top 3 by discovery fact-following) must work there.
"""

from __future__ import annotations

import pytest

from attnclaims.effects import mean_ci, per_unit, share_ci
from attnclaims.heads import label, versus_layer
from attnclaims.stats import bootstrap_ci, bootstrap_ratio_ci
from attnclaims.studies.entailment_organism import MECHANISM, organism
from attnclaims.studies.entailment_sweep import sensitivity_by_pair
from attnclaims.studies.entailment_toy import RuleRecallStudy, run_toy_study
from attnclaims.studies.two_hop import plot_mechanism, run_two_hop, two_hop_pairs
from attnclaims.toy import ToyConfig

N_PAIRS, PAIR_SEED, K = 240, 11, 3  # 160 confirmation pairs: a CI half-width of ~0.08 on a 0/1 rate
ONE_HOP = ToyConfig(
    task="rule-recall", n_layers=2, n_content=16, steps=600, log_every=50
)  # as the entailment file's
UNTRAINED = ToyConfig(task="entailment", n_layers=3, n_content=16, steps=0)
MODELS = {
    "toy:two-hop-organism": None,
    "toy:rule-recall-2L-on-two-hop": ONE_HOP,
    "toy:entailment-3L-untrained": UNTRAINED,
}
UNIT = "pairs"  # what every claim's n counts: independently drawn minimal pairs
TOY_OFFSET = 1  # the one-hop toy's layer-1 heads read each answer from the token after it (2026-11-24)
TOY_PROMPTS = 48
HOPS = ["hop 1", "hop 2"]


@pytest.fixture(
    scope="module",
    # the hand-built organism passes by construction: its rows are checks of the protocol, not claims
    params=[
        pytest.param(name, marks=pytest.mark.check) if config is None else name
        for name, config in MODELS.items()
    ],
)
def toy_name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def two_hop_model(toy_name, toy_model):
    config = MODELS[toy_name]
    return organism() if config is None else toy_model(config)


@pytest.fixture(scope="module")
def study(two_hop_model, toy_name, results_dir):
    result = run_two_hop(two_hop_model, toy_name, two_hop_pairs(N_PAIRS, PAIR_SEED), k=K)
    plot_mechanism(result, results_dir / f"two_hop_{toy_name.removeprefix('toy:')}.png")
    return result


def per_pair(frame, column):
    """Per pair: the mean over its two texts (those with a figure)."""
    return frame.groupby("pair")[column].mean().dropna().to_numpy()


# ---------------------------------------------------------------------------------------------
# Does the model entail?


@pytest.mark.confirmatory
@pytest.mark.parametrize("crossed", [False, True], ids=["same-order", "crossed-order"])
def test_answers_heldout_two_hop_prompts(study, crossed, claim):
    rows = study.prompts.query("split == 'confirmation' and crossed == @crossed")
    by_order = study.prompts.query("split == 'confirmation'").groupby("order").correct.mean()
    assert claim(
        bootstrap_ci(per_pair(rows, "correct")),
        ">=",
        0.95,
        why="a model that entails: at most 1 prompt in 20 wrong",
        metric="held-out accuracy (top-1 = entailed answer), two-hop",
        note=f"lowest of the {len(by_order)} rule orders: {by_order.min():.3f} ({by_order.idxmin()})",
    )


@pytest.mark.confirmatory
@pytest.mark.parametrize("crossed", [False, True], ids=["same-order", "crossed-order"])
def test_answer_follows_the_query(study, crossed, claim):
    rows = study.behaviour.query("split == 'confirmation' and crossed == @crossed")
    assert claim(
        bootstrap_ci(rows.sensitivity.to_numpy()),
        ">=",
        1.0,
        why="the entailed answer's odds move by a factor e or more between the pair's texts",
        metric="sensitivity LD(text a) - LD(text b), two-hop, nats",
    )


# ---------------------------------------------------------------------------------------------
# Which heads carry each hop?


@pytest.mark.confirmatory
@pytest.mark.parametrize("hop", HOPS)
def test_hop_head_follows_the_fact_on_heldout_pairs(study, hop, claim):
    head = study.hop_heads[hop]
    column = "hop1" if hop == "hop 1" else "hop2"
    layer = study.follows.query(f"split == 'confirmation' and layer == {head.layer}")
    per_pair = layer.pivot(index="pair", columns="head", values=column).to_numpy()  # [pairs, heads]
    own, beyond = per_pair[:, head.head], versus_layer(per_pair, head.head)
    assert claim(
        bootstrap_ci(beyond),
        ">=",
        0.5,
        why="half the head's final-row weight moves with the fact, beyond its layer's other heads",
        metric=f"{hop} head {head} (discovery top): held-out fact-following - its layer's other heads",
        note=f"the head {own.mean():.3g}, the other heads of layer {head.layer} "
        f"{(own - beyond).mean():.3g}; the construction's {hop} head: {MECHANISM[hop]}",
    )


@pytest.mark.confirmatory
@pytest.mark.parametrize("hop", HOPS)
def test_hop_head_pattern_carries_the_sensitivity(study, hop, claim):
    head = study.hop_heads[hop]
    rows = study.swaps.query(f"split == 'confirmation' and layer == {head.layer} and head == {head.head}")
    removed, clean = (rows.clean - rows.swapped).to_numpy(), rows.clean.to_numpy()
    others = study.swaps.query(f"split == 'confirmation' and layer == {head.layer} and head != {head.head}")
    control = (others.clean - others.swapped).sum() / others.clean.sum()  # same layer, same swap
    assert claim(
        bootstrap_ratio_ci(removed, clean),
        ">=",
        0.5,
        why="the head's pattern carries at least half of the sensitivity",
        metric=f"share of sensitivity removed by giving {head} the other text's pattern",
        note=f"clean sensitivity {clean.mean():.3g}; 2 = the answer follows the other fact; the other "
        f"heads of layer {head.layer}, swapped alike, remove {control:.3g} each on average",
    )


# ---------------------------------------------------------------------------------------------
# The original question: does overwriting a few heads' attention switch the entailed answer?


@pytest.mark.confirmatory
def test_switch_moves_the_answer_to_the_alternative(study, claim):
    rows = study.switch.query("split == 'confirmation'")
    rows = rows.dropna(subset=["switched"])  # prompts already answering the alternative cannot switch to it
    switched, control = per_pair(rows, "switched"), per_pair(rows, "control_switched")
    assert claim(
        bootstrap_ci(switched - control),
        ">=",
        0.5,
        why="the switch makes the alternative the answer in at least half the prompts its control does not",
        metric=f"switch rate to the alternative, {', '.join(map(str, study.switch_heads))} minus same-layer "
        "controls moving as much attention",
        note=f"switch {switched.mean():.3f}, control {control.mean():.3f}; delta LD "
        f"{rows.delta.mean():.3g} vs control {rows.control_delta.mean():.3g}",
    )


# ---------------------------------------------------------------------------------------------
# The one-hop toy on its own task: the positive control of the entailment file's protocol


@pytest.fixture(scope="module")
def toy_study(toy_model) -> RuleRecallStudy:
    """The one-hop toy on one-hop prompts, with the entailment file's protocol (trained once)."""
    return run_toy_study(toy_model(ONE_HOP), ONE_HOP, n_prompts=TOY_PROMPTS, offset=TOY_OFFSET, k=K)


@pytest.mark.confirmatory
def test_toy_answer_follows_the_query(toy_study, claim):
    assert claim(
        mean_ci(per_unit(toy_study.behaviour, "sensitivity")),
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
        share_ci(-moved, clean),
        ">=",
        0.5,
        why="half: the fact heads' pattern carries most of the routing",
        model=toy_study.name,
        metric=f"share of sensitivity removed by swapping {label(toy_study.fact_heads)}'s pattern",
        unit="prompt pairs",
    )


# Log
# 2026-12-02  Training search first (python -m attnclaims.studies.two_hop_search; loss curves in
#   results/two_hop_search.png, one seed each, one thread): 3 layers attention-only d128, 8000 steps
#   (13.5 min): held-out answer loss 0.722 (ln 2 = 0.693), accuracy 0.52; 4 layers with MLPs d128, lr 5e-4,
#   3000 steps: 0.733, 0.49; 3 layers d128 with 4 words of each kind, 4000 steps: 0.689, 0.53. Training
#   loss fell to 0.12 in all three: later queries of a training sequence repeat earlier ones, which
#   copying answers; held-out prompts ask one query, which no toy answered above chance. No
#   toy learned, so the organism is built by construction.
#   First run, 240 pairs (seed 11), 160 confirmation; simultaneous CIs at 99.44% (family of 9 per model).
#   Organism: accuracy 1 [1, 1] in same and crossed orders (all 12 orders 1.0); sensitivity 20.0 [20.0,
#   20.0] nats; hop heads found on discovery pairs L1H0 and L2H0 (the construction's), fact-following 1.00
#   held out; each one's pattern swap removes 2.00 of the sensitivity (the answer follows the other fact);
#   the switch of L2H0, L1H2, L1H1 (most attention on the answer: hop 2, the candidates and recency heads)
#   makes the alternative the answer in 1.00 of prompts, its matched controls in 0.00 (delta LD -27.9 vs
#   -4.9): all supported. One-hop toy on two-hop prompts: accuracy 0.21 [0.11, 0.32] / 0.25 [0.16, 0.35];
#   sensitivity -1.22 [-3.18, 0.88] (refuted) / 1.30 [-1.01, 3.49] (undecided); hop heads L1H1, L0H3 follow
#   the fact by 0.004 and 0.000 (refuted); pattern swaps undecided (CIs +-35); switch -0.071 [-0.123, -0.029]
#   beyond control on the 140 pairs with a prompt not already answering the alternative (refuted).
#   Untrained toy: accuracy 0.03 / 0.04, sensitivity -0.04 / -0.001, fact-following 0.0001, switch -0.003:
#   refuted, pattern swaps undecided. Where entailment happens here: in attention,
#   L1H0 then L2H0 (two_hop_two-hop-organism.png); no claim is supported on a model that cannot entail.
#   Runtime: 28 s for the three models on one thread (the one-hop toy's training included).
# 2026-12-02  The hop heads' fact-following is now measured against their layer's other heads (the head's
#   score minus their mean, per pair), as the real-model fact-head claim is: organism 1.00 for both hops
#   (the other heads of layers 1 and 2 score 0); one-hop toy 0.0008 (was 0.0040 alone) and 0.0003; untrained
#   toy 0.00004 and -0.0001: verdicts unchanged (supported / refuted / refuted). The account of heads vs
#   MLPs layer by layer (test_entailment_layers.py) finds the organism's mechanism exactly: patching the
#   attention output of layer 1 or layer 2 at the final position from the other text removes 2.00 of the
#   sensitivity, layer 0 and every MLP 0 (tests/test_layer_account.py; its MLPs add 0 by construction,
#   so that is a check of the method, not a claim).
# 2026-12-03  The one-hop toy's positive control moved here from test_entailment_head_switching.py (its rows
#   renamed, entailment_head_switching -> two_hop_organism): on its own one-hop prompts (48 pairs) the same
#   toy that fails two-hop prompts above routes the queried rule: sensitivity 16.6 [16.2, 16.9] nats, and
#   its top-3 fact heads' pattern swap removes 1.67 [1.61, 1.73] of it (both supported, a family of 2).
# 2026-12-03  The rule-recall toy's two rows are named toy:rule-recall-2L (were its config hash,
#   toy:rule-recall-216a6d0b0307cf42, which changes with the training code's version); figures unchanged,
#   16.6 [16.2, 16.9] and 1.67 [1.61, 1.73], supported. Every toy was retrained under the new version.
# 2026-12-03  CIs that hold their level (bootstrap_ci of a mean is now a studentized bootstrap, shares
#   Fieller's interval, an end may be infinite where the data cannot bound it; README coverage table),
#   rerun on both models (2 threads): 2 verdicts moved: test_answer_follows_the_query[same-order] on
#   toy:rule-recall-2L-on-two-hop: refuted -1.215 [-3.177, 0.8755] -> undecided -1.215 [-3.123, 1.143];
#   test_answers_heldout_two_hop_prompts[same-order] on toy:entailment-3L-untrained: refuted 0.03125 [0,
#   0.075] -> undecided 0.03125 [0.001592, inf].
# 2026-12-04  A share's denominator is a premise its CI carries, decided at the claim's level: the
#   controls' pattern-swap shares of a sensitivity about 0 are inconclusive, not undecided. 4 verdicts
#   moved: test_hop_head_pattern_carries_the_sensitivity[hop 1] and [hop 2] on
#   toy:entailment-3L-untrained: undecided -0.0123 / -0.0075 [-inf, inf] -> inconclusive (sensitivity
#   -0.021 [-0.065, 0.024] at 99.44%); on toy:rule-recall-2L-on-two-hop: undecided 1.188 / 2.251 [-inf,
#   inf] -> inconclusive (sensitivity 0.041 [-1.52, 1.60]). The organism's rows are unchanged.
