"""The two-hop organism (lib/studies/entailment_organism.py) and the pieces its hypothesis stands on:
the construction entails by the mechanism it names, TransformerLens runs it as HF does, the sweep
engine is exact on its GPT-2 blocks, minimal pairs are minimal, and a matched control moves as much
attention as it claims."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnclaims.heads import every_head
from attnclaims.hooks import partner_row, shift_mass
from attnclaims.interventions import AblateHeads, EditAttention, MoveAttention, ShiftAttention
from attnclaims.metrics import logit_diff
from attnclaims.studies.entailment_organism import MECHANISM, build_organism, organism
from attnclaims.studies.two_hop import two_hop_pairs
from attnclaims.sweep import run_variants


@pytest.fixture(scope="module")
def bridge():
    return organism()


@pytest.fixture(scope="module")
def pairs():
    return two_hop_pairs(60, seed=5)


def test_bridge_runs_the_organism_as_huggingface_does(bridge, pairs):
    hf = build_organism()
    with torch.no_grad():
        expected = hf(pairs.tokens).logits
    torch.testing.assert_close(bridge(pairs.tokens), expected, atol=1e-4, rtol=1e-4)


def test_the_organism_entails_in_every_rule_order(bridge):
    many = two_hop_pairs(400, seed=6)
    logits = bridge(many.tokens)[:, -1]
    correct = logits.argmax(-1) == many.entailed
    by_order = many.rows.assign(correct=correct.numpy()).groupby("order").correct.mean()
    assert len(by_order) == 12  # 4 rules, chains numbered by their condition rule: 4! / 2 orders
    assert by_order.min() == 1.0


@pytest.mark.parametrize("hop", sorted(MECHANISM))
def test_each_hop_head_is_needed(bridge, pairs, hop):
    ld = logit_diff(pairs.entailed, pairs.alternative, per_prompt=True)
    values = run_variants(bridge, pairs.tokens, {"clean": [], hop: AblateHeads([MECHANISM[hop]], "zero")}, ld)
    assert values["clean"].min() > 5
    assert values[hop].abs().mean() < 0.5 * values["clean"].mean()  # without it the answer is a guess


def test_sweep_on_gpt2_blocks_equals_one_run_per_variant(bridge, pairs):
    """GPT-2's blocks take the attention mask by position: the engine must widen it too."""
    ld = logit_diff(pairs.entailed, pairs.alternative, per_prompt=True)
    variants = {h: EditAttention([h], partner_row) for h in every_head(bridge)[4:]}
    variants["move"] = MoveAttention([MECHANISM["hop 2"]], src=pairs.entailed_pos, dst=pairs.alternative_pos)
    stacked = run_variants(bridge, pairs.tokens, variants, ld)
    for key, spec in variants.items():
        alone = run_variants(bridge, pairs.tokens, {key: spec.hooks(bridge)}, ld)[
            key
        ]  # plain hooks: full run
        torch.testing.assert_close(stacked[key], alone, atol=1e-4, rtol=1e-4)


def test_pairs_differ_in_the_query_alone_and_trade_answers(pairs):
    a, b = pairs.tokens[0::2], pairs.tokens[1::2]
    assert torch.equal(a[:, :-1], b[:, :-1]) and bool((a[:, -1] != b[:, -1]).all())
    assert torch.equal(pairs.entailed[0::2], pairs.alternative[1::2])
    rows = torch.arange(len(pairs.tokens))
    assert torch.equal(pairs.tokens[rows, pairs.entailed_pos], pairs.entailed)
    assert torch.equal(pairs.tokens[rows, pairs.alternative_pos], pairs.alternative)
    # the bridge follows the query in its condition rule
    assert torch.equal(pairs.tokens[rows, pairs.bridge_pos - 1], pairs.tokens[:, -1])
    crossed = pairs.rows.order.map(lambda o: o.index("A2") < o.index("A1"))
    assert (crossed == pairs.rows.crossed).all() and 0.3 < pairs.rows.crossed.mean() < 0.7


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), dst=st.integers(0, 6), mass=st.floats(0.0, 1.5))
def test_shift_mass_moves_exactly_what_it_says(seed, dst, mass):
    row = torch.softmax(3 * torch.randn(4, 7, generator=torch.Generator().manual_seed(seed)), -1)
    out = shift_mass(dst, mass)(row)
    held = row[:, dst]
    moved = torch.minimum(torch.tensor(mass), 1 - held)
    torch.testing.assert_close(out.sum(-1), torch.ones(4))
    assert bool((out >= 0).all())
    torch.testing.assert_close(out[:, dst], held + moved)
    others = [j for j in range(7) if j != dst]  # taken in proportion to what they held
    scale = out[:, others] / row[:, others]
    torch.testing.assert_close(scale, scale[:, :1].expand_as(scale))


def test_shift_attention_moves_as_much_as_the_move_it_controls(bridge, pairs):
    store = {}

    def keep(pattern, hook):
        store[hook.name] = pattern[:, :, -1].clone()

    name = "blocks.2.attn.hook_pattern"
    head = MECHANISM["hop 2"]
    mass = bridge.run_with_cache(pairs.tokens)[1][name][:, head.head, -1][
        torch.arange(len(pairs.tokens)), pairs.entailed_pos
    ]
    control = ShiftAttention([(2, 2)], dst=pairs.alternative_pos, mass=mass)
    bridge.run_with_hooks(pairs.tokens, fwd_hooks=[*control.hooks(bridge), (name, keep)])
    clean = bridge.run_with_cache(pairs.tokens)[1][name][:, 2, -1]
    moved = (store[name][:, 2] - clean).abs().sum(-1) / 2
    torch.testing.assert_close(
        moved, torch.minimum(mass, 1 - clean[torch.arange(len(mass)), pairs.alternative_pos])
    )
