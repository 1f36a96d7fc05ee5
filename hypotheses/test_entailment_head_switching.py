"""Can overwriting the attention of a few heads switch a model's answer to a rule-following prompt?

From the session planner (Day 02): "When it rains I carry an umbrella. When I carry an umbrella, I
wear boots. When I don't carry an umbrella I wear sneakers. It rains, therefore I wear" -- do some
heads connect the final position to the entailed answer, and does pointing them at the other answer
switch the prediction? Whether the model entails at all, or picks the most recent item, is part of
the question.

Protocol (prompts/entailment.py; lib/protocols.py)
1. Behaviour: logit difference LD = logit(entailed) - logit(alternative) at the final position, on
   128 two-hop prompts (8 real-word and 8 made-up-word families x 2 templates x 4 counterbalanced
   variants) and 32 one-hop controls.
2. Discovery (a fixed 25% of the two-hop prompts, lib.stats.discovery_confirmation_split): for every
   head alone, move its final-row attention weight from the entailed answer's token to the
   alternative's token (`attention_switch`); rank heads by the mean change of LD.
3. Confirmation (the other 75%, never used for selection): move the weight of the top K=3 heads
   together, and compare with controls on the same prompts:
   - K random heads switched the same way (5 draws per prompt);
   - the same heads with the answer's weight moved to a random non-answer token;
   - the same heads switched at a random earlier query position;
   - the same heads' value vectors at the two answer positions swapped at every query position,
     pattern untouched. (At the final row alone a value swap is algebraically the same as swapping
     the two attention weights, z = sum_k p_k v_k; tests/test_hooks.py checks that identity. Across
     all rows it also changes what every later position reads.)
4. The same on a toy model trained by the suite on rule recall ("c1 a7 . c3 a2 . c3" -> a2;
   lib/tasks/entailment.py), where routing the answer to the final position is the only way to solve
   the task: a positive control for the protocol. The toy reads each answer from the token after it
   (its heads attend there), so its switch moves attention between the tokens after the answers.

Measures: delta = LD(intervention) - LD(clean), in nats, per prompt; flip = a prompt the model
answered with the entailed word (LD > 0) now prefers the alternative (LD < 0). Every figure has a
bootstrap 95% CI over prompts (lib.stats).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from prompts.entailment import one_hop_prompts, two_hop_prompts
from lib import hooks as H
from lib.protocols import attention_switch, locate_answers
from lib.stats import bootstrap_ci, discovery_confirmation_split
from lib.tasks import TASKS
from lib.toy import ToyConfig

K = 3  # heads switched together
RANDOM_DRAWS = 5
# Claims the data refuted (see the log); each runs as a strict xfail, so a change in the science fails CI.
REFUTED = {
    "test_model_prefers_the_entailed_answer[real]@smollm2-135m": "mean LD -0.17 [-0.43, 0.08], n=128",
    "test_model_entails_against_recency[real]@smollm2-135m": "accuracy 0.36 [0.25, 0.48] when recency favours the alternative, n=64",
    "test_top3_heads_look_at_the_answer[real]@smollm2-135m": "top heads' final-row attention on the answer 0.28 [0.26, 0.30]",
    "test_value_swap_switches_as_well_as_the_pattern[real]@smollm2-135m": "value swap moves LD 2.16 [2.00, 2.32] nats less than the pattern switch",
}
TOY = ToyConfig(task="rule-recall", n_layers=2, n_content=16, steps=600, log_every=50)
TOY_OFFSET = 1  # the toy's layer-1 heads read each answer from the token after it (log, 2026-11-24)


@dataclass
class Subject:
    name: str  # as recorded in the ledger
    model: object
    prompts: list  # two-hop prompts (or the toy's task prompts)
    one_hop: list
    offset: int  # heads read the answer from the token `offset` places after it (see the log)


@pytest.fixture(scope="module", params=["real", "toy"])
def subject(request, model_name) -> Subject:
    if request.param == "real":
        model = request.getfixturevalue("model")
        return Subject(model_name, model, two_hop_prompts(), one_hop_prompts(), offset=0)
    model = request.getfixturevalue("toy_model")(TOY)
    prompts = TASKS[TOY.task].prompts(TOY, torch.Generator().manual_seed(7), 96)
    return Subject(f"toy:{TOY.task}-{TOY.key()}", model, prompts, [], offset=TOY_OFFSET)


def lds(model, prompt, variants=((),)) -> np.ndarray:
    """LD at the final position under each variant (a list of hooks), all in one stacked forward."""
    tokens, where = locate_answers(model, prompt.text, prompt.answer, prompt.alternative)
    with torch.no_grad():
        logits = model.run_with_hooks(tokens.repeat(len(variants), 1), fwd_hooks=H.stack_variants([list(v) for v in variants], 1))
    return (logits[:, -1, where["ids"]["answer"]] - logits[:, -1, where["ids"]["alternative"]]).numpy()


def confirm(model, prompt, top, all_heads, rng: random.Random, offset: int) -> dict:
    """Clean LD, the top-K switch and its controls on one held-out prompt."""
    tokens, where = locate_answers(model, prompt.text, prompt.answer, prompt.alternative)
    a, b, n = where["pos"]["answer"] + offset, where["pos"]["alternative"] + offset, tokens.shape[1]
    others = [p for p in range(1, n - 1) if p not in (a, b)]
    later = list(range(max(a, b) + 1, n - 1))  # earlier query positions that see both answers
    seen = {}  # the clean run's final attention rows of the top heads' layers
    watch = [(f"blocks.{l}.attn.hook_pattern", lambda p, hook, l=l: seen.__setitem__(l, p[0, :, -1])) for l in {l for l, _ in top}]
    variants = {
        "clean": watch,
        "switch": H.move_attention(model, top, a, b),
        **{f"random_heads_{i}": H.move_attention(model, rng.sample(all_heads, K), a, b) for i in range(RANDOM_DRAWS)},
        "random_token": H.move_attention(model, top, a, rng.choice(others)),
        "random_query": H.move_attention(model, top, a, b, query_pos=rng.choice(later)) if later else None,
        "value_swap": H.swap_head_values(model, top, a, b),
    }
    names = [k for k, v in variants.items() if v is not None]
    row = dict(zip(names, lds(model, prompt, [variants[k] for k in names])))
    row["random_heads"] = np.mean([row.pop(f"random_heads_{i}") for i in range(RANDOM_DRAWS)])
    row.setdefault("random_query", np.nan)
    row["top_attention"] = float(np.mean([seen[l][h, a] for l, h in top]))
    return {**row, "entailed_first": prompt.entailed_first}


@pytest.fixture(scope="module")
def study(subject) -> dict:
    """Everything the claims read, computed once per subject."""
    model = subject.model
    discovery, confirmation = discovery_confirmation_split(subject.prompts, confirm_fraction=0.75, seed=0)
    sweeps = pd.concat(
        [attention_switch(model, p.text, p.answer, p.alternative, offset=subject.offset).assign(prompt=i, words=getattr(p, "words", "toy"))
         for i, p in enumerate(discovery)]
    )  # fmt: skip
    per_head = sweeps.groupby(["layer", "head"]).delta_to_alternative.mean()
    top = [tuple(map(int, h)) for h in per_head.nsmallest(K).index]
    all_heads = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    rng = random.Random(0)
    frame = pd.DataFrame([confirm(model, p, top, all_heads, rng, subject.offset) for p in confirmation])
    for column in ("switch", "random_heads", "random_token", "random_query", "value_swap"):
        frame[f"d_{column}"] = frame[column] - frame["clean"]
    clean_discovery = sweeps.groupby("prompt").clean_ld.first()
    behaviour = pd.DataFrame(
        [{"ld": clean_discovery[i], "entailed_first": p.entailed_first, "hops": 2} for i, p in enumerate(discovery)]
        + [{"ld": r.clean, "entailed_first": r.entailed_first, "hops": 2} for r in frame.itertuples()]
        + [{"ld": float(lds(model, p)[0]), "entailed_first": p.entailed_first, "hops": 1} for p in subject.one_hop]
    )
    return {"top": top, "per_head": per_head, "sweeps": sweeps, "confirm": frame, "behaviour": behaviour}


def heads_label(heads) -> str:
    return ",".join(f"L{l}H{h}" for l, h in heads)


# ---------------------------------------------------------------------------------------------
# a. Behaviour


def test_model_prefers_the_entailed_answer(subject, study, claim):
    two_hop = study["behaviour"].query("hops == 2")
    ci = bootstrap_ci(two_hop.ld.to_numpy())
    assert claim(model=subject.name, metric="mean LD entailed - alternative, two-hop", value=ci.estimate, ci=ci, n=ci.n, threshold=0.0)


def test_model_entails_against_recency(subject, study, claim):
    """On prompts that state the entailed answer first, recency alone predicts the alternative:
    choosing the entailed answer on more than half of them is more than recency."""
    against = study["behaviour"].query("hops == 2 and entailed_first")
    ci = bootstrap_ci((against.ld > 0).astype(float).to_numpy())
    assert claim(model=subject.name, metric="accuracy when recency favours the alternative", value=ci.estimate, ci=ci, n=ci.n, threshold=0.5)


# ---------------------------------------------------------------------------------------------
# b. Switching the top heads on held-out prompts


def test_top3_heads_look_at_the_answer(subject, study, claim):
    """The seed's premise: the selected heads attend from the final position to the answer."""
    ci = bootstrap_ci(study["confirm"].top_attention.to_numpy())
    assert claim(model=subject.name, metric=f"held-out final-row attention of top heads on answer(+{subject.offset})",
                 value=ci.estimate, ci=ci, n=ci.n, threshold=0.3)  # fmt: skip


def test_switching_top3_heads_moves_heldout_ld_toward_alternative(subject, study, claim):
    ci = bootstrap_ci(study["confirm"].d_switch.to_numpy())
    assert claim(model=subject.name, metric=f"held-out delta LD, switch {heads_label(study['top'])}", value=ci.estimate, ci=ci,
                 n=ci.n, threshold=-1.0, direction="<=")  # fmt: skip


def test_switching_top3_heads_flips_heldout_prompts(subject, study, claim):
    answered = study["confirm"].query("clean > 0")
    ci = bootstrap_ci((answered.switch < 0).astype(float).to_numpy())
    assert claim(model=subject.name, metric="share of held-out prompts flipped to the alternative", value=ci.estimate, ci=ci,
                 n=ci.n, threshold=0.5)  # fmt: skip


def test_top3_heads_beat_random_heads(subject, study, claim):
    frame = study["confirm"]
    ci = bootstrap_ci((frame.d_switch - frame.d_random_heads).to_numpy())
    assert claim(model=subject.name, metric="delta(top heads) - delta(random heads), paired", value=ci.estimate, ci=ci, n=ci.n,
                 threshold=-0.5, direction="<=")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# c, d. Specificity: the alternative's token, and the final query position


def test_switch_is_specific_to_the_alternative_token(subject, study, claim):
    frame = study["confirm"]
    ci = bootstrap_ci((frame.d_switch - frame.d_random_token).to_numpy())
    assert claim(model=subject.name, metric="delta(to alternative) - delta(to random token), paired", value=ci.estimate, ci=ci,
                 n=ci.n, threshold=-0.5, direction="<=")  # fmt: skip


def test_switch_at_a_random_query_position_does_nothing(subject, study, claim):
    moved = study["confirm"].d_random_query.dropna().abs()
    if len(moved) < 2:
        pytest.skip("no earlier query position sees both answer positions in these prompts")
    ci = bootstrap_ci(moved.to_numpy())
    assert claim(model=subject.name, metric="|delta LD| with the switch at a random earlier query", value=ci.estimate, ci=ci,
                 n=ci.n, threshold=0.3, direction="<=")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# e. Real words and made-up words


def test_same_heads_matter_for_real_and_made_up_words(subject, study, claim):
    if subject.one_hop == []:
        pytest.skip("the toy's vocabulary has no real/made-up distinction")
    sweeps = study["sweeps"]
    effect = sweeps.groupby(["words", "layer", "head"]).delta_to_alternative.mean().unstack("words")
    rho = spearmanr(effect["real"], effect["made-up"]).statistic
    rng = np.random.default_rng(0)
    prompts = {w: sweeps[sweeps.words == w].prompt.unique() for w in ("real", "made-up")}
    draws = []
    for _ in range(200):  # bootstrap over prompts within each word kind
        means = {
            w: sweeps[sweeps.prompt.isin(rng.choice(ids, len(ids)))].groupby(["layer", "head"]).delta_to_alternative.mean()
            for w, ids in prompts.items()
        }
        draws.append(spearmanr(means["real"], means["made-up"]).statistic)
    low, high = np.percentile(draws, [2.5, 97.5])
    assert claim(model=subject.name, metric="Spearman rho of per-head switch effects, real vs made-up", value=rho, ci=(low, high),
                 n=len(sweeps.prompt.unique()), threshold=0.5)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# f. Values, not where it looks


def test_value_swap_switches_as_well_as_the_pattern(subject, study, claim):
    frame = study["confirm"]
    ci = bootstrap_ci((frame.d_value_swap - frame.d_switch).to_numpy())
    assert claim(model=subject.name, metric="delta(value swap) - delta(pattern switch), paired", value=ci.estimate, ci=ci, n=ci.n,
                 threshold=0.5, direction="<=")  # fmt: skip


# Log
# 2026-11-24  smollm2-135m (4-bit Q4_1 GGUF checkpoint de-quantised to float32), discovery 32 / confirmation 96
#   prompts. Behaviour: no entailment. Mean LD -0.17 [-0.43, 0.08] (refuted); when the entailed answer is
#   stated first (recency favours the alternative) it is chosen on 0.36 [0.25, 0.48] of prompts (refuted): the
#   model mostly answers with the later-mentioned consequent, as the seed's sneakers lead suggested.
#   Switching: the top heads by discovery are L23H7, L23H2, L23H0. Moving their final-row weight from the
#   answer to the alternative on held-out prompts moves LD by -2.03 [-2.19, -1.88] (supported, <= -1), flips
#   0.84 [0.73, 0.93] of the prompts it answered correctly (supported, >= 0.5); 2.00 [1.84, 2.17] nats more
#   than 3 random heads (supported); 0.88 [0.77, 0.99] more than moving the weight to a random non-answer
#   token (supported); at a random earlier query row |delta| 0.016 [0.008, 0.025] (supported, <= 0.3). The
#   same heads matter for real and made-up words: Spearman rho 0.74 [0.65, 0.79] (supported, >= 0.5).
#   They attend only 0.28 [0.26, 0.30] to the answer (refuted, >= 0.3): they need not look at it much to
#   matter. Values: swapping the two answers' value vectors at every row moves LD 2.16 [2.00, 2.32] less than
#   the pattern switch (refuted): the effect is in where these heads look, not in what they read.
#   Verdict: attention of three layer-23 heads switches the answer; the model does not entail.
# 2026-11-24  toy rule-recall (2-layer attention-only, 600 steps, accuracy 1.00): first with offset 0 the switch
#   moved LD only -0.20 [-0.24, -0.16]: its layer-1 heads put ~1.0 of the final row on the token after each
#   answer and read the answer from there. With TOY_OFFSET = 1: attention on answer+1 0.97 [0.96, 0.98];
#   switch -13.8 [-14.2, -13.5], flips 1.00, beats random heads by 7.8 [7.3, 8.3] and a random token by
#   7.4 [6.3, 8.6]; value swap within 0.28 [0.16, 0.42] of the switch. The protocol finds the routing the
#   task forces, once it looks where the heads look. A two-hop toy (lib/tasks/entailment.py "entailment",
#   3 layers, 2000 steps, with and without MLPs) stayed at chance (accuracy ~0.5), so the positive control is
#   one-hop.
