"""Heads or MLPs: which layer carries the fact to the answer?

Question. When the fact of a prompt changes ("Today it is wet" -> "dry") and the answer moves with
it, where does the change reach the answer: through attention at some layer, or through an MLP?
"Attention retrieves the operands, the MLPs compute the function" is the rival account of where
entailment happens; the head-switching file (test_entailment_head_switching.py) looks at heads only.

Protocol (lib/studies/layer_account.py, on the minimal pairs, twin groups and discovery/confirmation
split of test_entailment_head_switching.py, both rule orders of each family)
1. Discovery groups: at every layer, the block's attention output (all heads together) or its MLP
   output at the final position is replaced by the pair's other text's (activation patching,
   attnclaims.interventions.PatchOutput), one at a time; everything after it is recomputed. Its
   share = the sensitivity LD(a) - LD(b) it removes, summed over pairs / summed clean (0 = nothing,
   1 = all of it, 2 = the answer follows the other fact). Per component, the layer with the largest
   share is selected.
2. Confirmation groups: the two selected layers' patches; shares are ratios of sums over groups,
   CIs by resampling groups.
Why the final position only: at the fact word's own position an early MLP carries the word itself.
Why one component at a time: replacing every layer's attention output there would make the final
residual stream the other text's, which removes all of the sensitivity by construction.

Premise of every claim: the answer follows the fact on the confirmation groups (sensitivity > 0).
What that sensitivity is on the real models: mostly rule-order matching (same-order pairs), not
entailment (crossed orders undecided on both, head-switching file); the account locates the fact's
effect whatever computes it. On organisms whose mechanism is built (lib/studies/organisms.py) the
same account finds the layers of their hop heads, and the layer of an MLP that computes a hop, which
the head-switching protocol cannot name (tests/test_layer_account.py): a check of the method.
Figures: entailment_layers_<model>.png, share per layer on discovery groups and the held-out value of
each selected layer.
"""

from __future__ import annotations

import pytest
from test_entailment_head_switching import DESIGN  # the same pairs, groups, split and rule orders

from attnclaims.claims import Premise
from attnclaims.declaration import Hypothesis
from attnclaims.effects import per_unit, share_ci
from attnclaims.stats import bootstrap_ci
from attnclaims.studies.entailment_pairs import design_pairs
from attnclaims.studies.entailment_sweep import buckets
from attnclaims.studies.layer_account import LayerAccount, plot_account, removed_shares, run_layer_account

UNIT = "groups"  # twin families (same verb or answer word) are one unit, as in the head-switching file
FIGURE = "entailment_layers_{model}.png"
HYPOTHESIS = Hypothesis("Heads or MLPs: which layer carries the fact to the answer?", figures=(FIGURE,))


@pytest.fixture(scope="module")
def account(model, model_name, results_dir) -> LayerAccount:
    """Steps 1-2 on `model`, computed once per model, with its figure."""
    pairs = design_pairs(model, DESIGN)
    stacks = [(b.tokens, b.entailed_id, b.alternative_id, b.rows) for b in buckets(pairs.two_hop, pairs.meta)]
    result = run_layer_account(model, model_name, stacks)
    plot_account([result], results_dir / FIGURE.format(model=model_name))
    return result


def held_out(account: LayerAccount, kind: str):
    """Per confirmation group: sensitivity removed by the selected `kind` layer's patch, and clean."""
    rows = account.confirmation.query(f"component == '{kind}'")
    return per_unit(rows.assign(removed=rows.clean - rows.patched), "removed"), per_unit(rows, "clean")


def follows_the_fact(account: LayerAccount) -> Premise:
    """Decided at the level of the claim it guards (the family's, for a confirmatory claim)."""
    _, clean = held_out(account, "attention")
    return Premise(
        bootstrap_ci(clean.to_numpy()), ">", 0.0, "the answer follows the fact on the confirmation groups"
    )


def discovery_share(account: LayerAccount, kind: str, layer: int) -> float:
    return float(removed_shares(account.discovery).loc[(kind, layer)])


@pytest.mark.confirmatory
@pytest.mark.parametrize("kind", ["attention", "mlp"])
def test_one_layer_carries_half_of_the_fact(account, kind, claim):
    removed, clean = held_out(account, kind)
    layer, other = account.best[kind], "mlp" if kind == "attention" else "attention"
    assert claim(
        share_ci(removed, clean),
        ">=",
        0.5,
        why="half: one layer's output carries most of the fact's effect on the answer",
        metric=f"share of held-out sensitivity removed by patching L{layer}'s {kind} output (final position)",
        precondition=follows_the_fact(account),
        note=f"L{layer} selected on discovery groups (share {discovery_share(account, kind, layer):.3g}; "
        f"its {other} output there {discovery_share(account, other, layer):.3g}); 2 = the answer follows "
        "the other fact",
    )


@pytest.mark.confirmatory
def test_an_mlp_layer_carries_more_of_the_fact_than_any_attention_layer(account, claim):
    """The rival account: the best MLP layer removes more of the sensitivity than the best attention
    layer (both selected on discovery groups, each the largest of as many layers), in nats per group:
    a difference, not a ratio, since the sensitivity itself is small on these models."""
    mlp, clean = held_out(account, "mlp")
    attention, _ = held_out(account, "attention")
    best = account.best
    assert claim(
        bootstrap_ci((mlp - attention).to_numpy()),
        ">=",
        0.0,
        why="any: the sign says which kind of component carries more",
        metric=f"held-out sensitivity removed (nats), MLP L{best['mlp']} - attention L{best['attention']}",
        precondition=follows_the_fact(account),
        note=f"shares of the sensitivity: MLP {share_ci(mlp, clean)}, attention "
        f"{share_ci(attention, clean)}; clean sensitivity {bootstrap_ci(clean.to_numpy())}",
    )


# Log
# 2026-12-02  First run, both models (4-bit GGUF checkpoints de-quantised to float32), 2 torch threads:
#   the head-switching file's 40 families in 17 groups, both rule orders of each family; 6 discovery and
#   11 confirmation groups; confirmatory family of 3 per model, simultaneous CIs at 98.33%. Held-out
#   sensitivity 0.151 [0.045, 0.241] / 0.257 [0.085, 0.452] nats (smollm2-135m / gemma3-270m; premise met).
#   Selected on discovery groups: attention L23 (share 0.85) and MLP L29 (1.20) on smollm2-135m, attention
#   L12 (1.00) and MLP L17 (0.64) on gemma3-270m; nothing below layer 8 / layer 12 carries any of it.
#   Held out: smollm2-135m's L23 attention removes 2.91 [1.88, 10.3] of the sensitivity (supported: the
#   answer follows the other fact, and more; L23 is the switch heads' layer), its L29 MLP 1.57 [-0.48, 9.86]
#   (undecided); gemma3-270m's L12 attention 0.65 [-0.34, 2.21] and L17 MLP -0.33 [-6.5, 1.4] (undecided:
#   the MLP's discovery share did not come back). MLP minus attention, nats removed per group: -0.203
#   [-0.517, 0.085] / -0.252 [-0.783, 0.239] (undecided on both). Power: with 11 groups the simultaneous CI
#   of that difference spans 0.60 / 1.02 nats, 4 times the sensitivity itself, so a difference smaller
#   than ~0.3 / 0.5 nats cannot be decided; shares, ratios over a sensitivity of 0.15-0.26 nats,
#   are wider still. Verdict: on both models the fact's effect reaches the answer through late attention
#   (smollm2-135m: the switch heads' layer 23) at least as much as through any MLP; the rival account
#   (MLPs compute it) is not supported, and what is located is mostly rule-order matching, not entailment.
#   Runtime: 42 s (smollm2-135m) and 61 s (gemma3-270m) at 2 threads: every layer on the discovery
#   pairs, the two selected layers on the others. The sweep engine now sizes its chunks in rows
#   (variants x prompts), which took the head-switching study on smollm2-135m from 153 s to 132 s.
# 2026-12-03  CIs that hold their level (bootstrap_ci of a mean is now a studentized bootstrap, shares
#   Fieller's interval, an end may be infinite where the data cannot bound it; README coverage table),
#   rerun on both models (2 threads): 3 verdicts moved:
#   test_an_mlp_layer_carries_more_of_the_fact_than_any_attention_layer on smollm2-135m: undecided -0.2028
#   [-0.5168, 0.08541] -> inconclusive (no figure); test_one_layer_carries_half_of_the_fact[attention] on
#   smollm2-135m: supported 2.912 [1.881, 10.26] -> inconclusive (no figure);
#   test_one_layer_carries_half_of_the_fact[mlp] on smollm2-135m: undecided 1.571 [-0.4825, 9.859] ->
#   inconclusive (no figure).
# 2026-12-04  A share's denominator is a premise decided at the claim's level (its CI carries it; the
#   follows-the-fact premise is one too), rerun on both models (2 threads): 2 verdicts moved:
#   test_one_layer_carries_half_of_the_fact[attention] on gemma3-270m: undecided 0.6525 [-inf, inf] ->
#   inconclusive (no figure); test_one_layer_carries_half_of_the_fact[mlp] on gemma3-270m: undecided
#   -0.3272 [-inf, inf] -> inconclusive (no figure). Its sensitivity, 0.257 [-0.020, 0.534] at 98.33%, is
#   not distinguished from 0.
# 2026-12-06  49 groups (the head-switching file's 72 families; 16 discovery, 33 confirmation), both models
#   rerun (1 thread). The premise holds now on both (clean sensitivity 0.203 [0.081, 0.363] / 0.222
#   [0.104, 0.339]): smollm2-135m's L23 attention carries 2.04 [1.24, 6.01] of it (inconclusive ->
#   supported: the answer follows the other fact), its L29 MLP 0.570 [-0.594, 4.38] (inconclusive ->
#   undecided), MLP - attention -0.298 [-0.698, 0.036] nats (inconclusive -> undecided); gemma3-270m's
#   L10 attention 1.41 [0.74, 3.13] (inconclusive -> supported), its L11 MLP 0.029 [-0.669, 0.328]
#   (inconclusive -> refuted), MLP - attention -0.306 [-0.475, -0.132] (undecided -> refuted). On both,
#   late attention carries the fact's effect and no MLP carries more; what it carries is mostly rule-order
#   matching (head-switching file: crossed orders refuted / undecided).
