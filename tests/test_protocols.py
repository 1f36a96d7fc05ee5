"""Minimal pairs, entailment sensitivity and the attention-switch protocol: tables, exactness, errors."""

from __future__ import annotations

import pytest
import torch

from attnclaims.interventions import MoveAttention
from attnclaims.prompts.entailment import FAMILIES, ORDERS, minimal_pairs
from attnclaims.protocols import (
    attention_switch,
    entailment_sensitivity,
    locate_answers,
    tokenize_pair,
    tokenize_pairs,
)

SEED = (
    "When it rains I carry an umbrella. When I carry an umbrella, I wear boots. "
    "When I don't carry an umbrella I wear shoes. It rains, therefore I wear"
)


def pair_name(p) -> str:
    return f"{p.family}/{p.hops}/{p.order}"


@pytest.mark.real_model
def test_switch_table_matches_a_direct_intervention(model):
    table = attention_switch(model, SEED, " boots", " shoes", heads=[(23, 2), (3, 4)])
    assert list(table[["layer", "head"]].itertuples(index=False, name=None)) == [(3, 4), (23, 2)]
    where = locate_answers(model, SEED, " boots", " shoes")
    tokens, a, b = where.tokens, where.answer_pos, where.alternative_pos
    logits = model.run_with_hooks(tokens, fwd_hooks=MoveAttention([(23, 2)], a, b).hooks(model))
    direct = float(logits[0, -1, where.answer_id] - logits[0, -1, where.alternative_id])
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


def test_minimal_pairs_differ_in_the_fact_alone():
    pairs = minimal_pairs(2)
    assert len(FAMILIES) >= 16 and {p.words for p in pairs} == {"real", "made-up"}
    assert len(pairs) == 4 * len(FAMILIES) and {p.order for p in pairs} == set(ORDERS)
    assert sum(p.crossed for p in pairs) == 2 * len(FAMILIES)
    assert len(minimal_pairs(1)) == 2 * len(FAMILIES)
    for p in pairs + minimal_pairs(1):
        a, b = (text.split(" ") for text in p.texts)
        differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        assert len(a) == len(b) and len(differ) == 1, p  # one word: the fact
        assert all(
            p.texts[0].count(answer + ".") == 1 for answer in p.answers
        )  # each answer stated once, in a rule


def test_crossed_orders_put_the_matching_answer_in_the_other_place():
    family = FAMILIES[0]
    same, crossed = (
        next(p for p in minimal_pairs(2) if p.family == family.name and p.order == o)
        for o in ("ab/ab", "ab/ba")
    )
    first_answer = lambda text: min(text.index(" " + x + ".") for x in family.answers)
    assert same.texts[0][first_answer(same.texts[0]) :].startswith(same.answers[0])
    assert crossed.texts[0][first_answer(crossed.texts[0]) :].startswith(crossed.answers[1])


@pytest.mark.real_model
def test_pairs_are_position_matched_on_the_model_or_skipped_with_a_reason(model):
    for hops in (2, 1):
        kept, skipped = tokenize_pairs(model, minimal_pairs(hops), pair_name)
        assert len({p.name.split("/")[0] for p in kept}) >= 16
        for reason in skipped.values():
            assert "choose fact words of equal token length" in reason
        for p in kept:
            a, b = p.tokens
            assert torch.equal(a[: min(p.fact_pos)], b[: min(p.fact_pos)])
            assert max(p.answer_pos) < min(p.fact_pos) and len(p.fact_pos) >= 1
            assert a[p.answer_pos[0]] == b[p.answer_pos[0]] == p.ids[0]


@pytest.mark.real_model
@pytest.mark.parametrize(
    "text_b, answer_a, message",
    [
        (
            "If it is wet, I wear boots. If it is tam, I wear shoes. Today it is quill, so I wear",
            " boots",
            "equal token length",
        ),
        (
            "If it is wet, I wear boots. If it is tam, I wear shoes. Today it is dry, so I wear",
            " sneakers",
            "is 2 tokens",
        ),
        (
            "If it is dry, I wear boots. If it is tam, I wear shoes. Today it is tam, so I wear",
            " boots",
            "before an answer",
        ),
    ],
)
def test_bad_pairs_are_named(model, text_b, answer_a, message):
    text_a = "If it is wet, I wear boots. If it is tam, I wear shoes. Today it is wet, so I wear"
    with pytest.raises(ValueError, match=message):
        tokenize_pair(model, text_a, answer_a, text_b, " shoes")


@pytest.mark.real_model
def test_sensitivity_is_the_difference_of_the_two_logit_differences(model):
    pair = minimal_pairs(2)[0]
    (text_a, text_b), (a, b) = pair.texts, pair.answers
    ids = [model.to_single_token(a), model.to_single_token(b)]
    lds = [float(logits[0, -1, ids[0]] - logits[0, -1, ids[1]]) for logits in (model(text_a), model(text_b))]
    assert entailment_sensitivity(model, text_a, a, text_b, b) == pytest.approx(lds[0] - lds[1], abs=1e-4)
    # Swapping the roles of the texts flips the sign; a text against itself scores 0.
    assert entailment_sensitivity(model, text_b, b, text_a, a) == pytest.approx(lds[0] - lds[1], abs=1e-4)
    assert entailment_sensitivity(model, text_a, a, text_a, b) == pytest.approx(0.0, abs=1e-5)
