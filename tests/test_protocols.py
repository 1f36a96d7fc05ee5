"""The attention-switch protocol: its table, its exactness, and its errors."""

from __future__ import annotations

import pytest
import torch

from prompts.entailment import one_hop_prompts, two_hop_prompts
from lib import hooks as H
from lib.protocols import attention_switch, locate_answers

SEED = "When it rains I carry an umbrella. When I carry an umbrella, I wear boots. When I don't carry an umbrella I wear shoes. It rains, therefore I wear"


@pytest.mark.real_model
def test_switch_table_matches_a_direct_intervention(model):
    table = attention_switch(model, SEED, " boots", " shoes", heads=[(23, 2), (3, 4)])
    assert list(table[["layer", "head"]].itertuples(index=False, name=None)) == [(3, 4), (23, 2)]
    tokens, where = locate_answers(model, SEED, " boots", " shoes")
    a, b = where["pos"]["answer"], where["pos"]["alternative"]
    logits = model.run_with_hooks(tokens, fwd_hooks=H.move_attention(model, [(23, 2)], a, b))
    direct = float(logits[0, -1, where["ids"]["answer"]] - logits[0, -1, where["ids"]["alternative"]])
    row = table.set_index(["layer", "head"]).loc[(23, 2)]
    assert abs(row.ld_to_alternative - direct) < 1e-3
    assert abs(row.delta_to_alternative - (row.ld_to_alternative - row.clean_ld)) < 1e-6
    assert 0 <= row.attn_answer <= 1


@pytest.mark.real_model
@pytest.mark.parametrize(
    "answer, alternative, message",
    [
        (" sneakers", " shoes", r"' sneakers' is 2 tokens for this model \(\[' sne', 'akers'\]\)"),
        (" boots", " sandwich", r"' sandwich' does not occur in the prompt"),
        (" boots", " boots", "the same token"),
    ],
)
def test_bad_answers_are_named(model, answer, alternative, message):
    with pytest.raises(ValueError, match=message):
        attention_switch(model, SEED, answer, alternative)


@pytest.mark.real_model
def test_every_prompt_has_single_token_answers_in_context(model):
    for prompt in two_hop_prompts() + one_hop_prompts():
        locate_answers(model, prompt.text, prompt.answer, prompt.alternative)


def test_prompt_sets_are_counterbalanced():
    prompts = two_hop_prompts()
    assert len(prompts) == 128 and len(one_hop_prompts()) == 32
    assert sum(p.entailed_first for p in prompts) == 64
    assert {p.words for p in prompts} == {"real", "made-up"}
    for p in prompts:
        first, second = p.text.index(p.answer + "."), p.text.index(p.alternative + ".")
        assert (first < second) == p.entailed_first
