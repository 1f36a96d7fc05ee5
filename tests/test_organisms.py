"""The organisms and cheats (lib/studies/organisms.py) and the pieces the ground-truth hypothesis stands
on: each organism entails by the parts its spec names, TransformerLens runs it as HF does, the sweep
engine is exact on its GPT-2 blocks, toy minimal pairs are minimal, the cheats cheat as named, and a
matched control moves as much attention as it claims."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnclaims.heads import Head, every_head
from attnclaims.hooks import partner_row, shift_mass
from attnclaims.interventions import AblateHeads, EditAttention, MoveAttention, PatchOutput, ShiftAttention
from attnclaims.metrics import logit_diff
from attnclaims.studies.entailment_pairs import CHAINS, chain_pairs
from attnclaims.studies.entailment_sweep import buckets
from attnclaims.studies.organisms import CHEATS, HOP1_KINDS, build, carriers, generate, load
from attnclaims.sweep import run_variants

SPECS = generate(8, seed=0)


@pytest.fixture(scope="module")
def chains():
    """120 toy pairs as one bucket (every text is 15 tokens)."""
    pairs = chain_pairs(120, seed=5)
    (bucket,) = buckets(pairs.two_hop, {name: {**m, "split": "any"} for name, m in pairs.meta.items()})
    return bucket


def answers(model, bucket) -> torch.Tensor:
    with torch.no_grad():
        return model(bucket.tokens).logits[:, -1].argmax(-1)


def test_generation_is_fixed_by_the_seed_and_varies_the_placement():
    assert generate(8, seed=0) == SPECS and generate(8, seed=1) != SPECS
    assert {s.hop1_by for s in SPECS} == set(HOP1_KINDS)
    placements = {(carriers(s)["hop 1"], carriers(s)["hop 2"]) for s in SPECS}
    assert len(placements) == len(SPECS)  # no two organisms carry their hops in the same places
    assert any(len(s.hop2) == 2 for s in SPECS) and any(s.distractors for s in SPECS)
    assert any(max(h.sharp for h in s.hop1 + s.hop2) < 6 for s in generate(12, seed=0))  # soft ones


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.name}-{s.hop1_by}")
def test_every_organism_entails_in_every_rule_order_on_unseen_pairings(spec, chains):
    correct = answers(build(spec), chains) == chains.entailed_id
    by_order = chains.rows.assign(correct=correct.numpy()).groupby("order").correct.mean()
    assert len(by_order) == 12  # 4 rules, chains numbered by their condition rule: 4! / 2 orders
    assert by_order.min() == 1.0


@pytest.mark.parametrize("spec", SPECS[:4], ids=lambda s: f"{s.name}-{s.hop1_by}")
def test_each_hop_needs_its_carriers(spec, chains):
    """Without the parts that carry a hop (both halves of a split one), the answer no longer follows
    the query: the sensitivity LD(a) - LD(b) of each pair falls to about 0 (what is left is recency)."""
    model = load(spec)
    ld = logit_diff(chains.entailed_id, chains.alternative_id, per_prompt=True)
    variants = {"clean": []}
    for hop, parts in carriers(spec).items():
        heads = [part for part in parts if isinstance(part, Head)]
        mlps = [int(part.removeprefix("MLP")) for part in parts if not isinstance(part, Head)]
        zero = [(f"blocks.{layer}.hook_mlp_out", lambda act, hook: act * 0) for layer in mlps]
        variants[hop] = [*AblateHeads(heads, "zero").hooks(model), *zero] if heads else zero
    values = run_variants(model, chains.tokens, variants, ld)
    sensitivity = {key: value.reshape(-1, 2).sum(1) for key, value in values.items()}  # per pair
    assert sensitivity["clean"].min() > 10
    for hop in carriers(spec):
        assert sensitivity[hop].abs().max() < 0.05 * sensitivity["clean"].mean(), hop


def test_the_bridge_runs_an_organism_as_huggingface_does(chains):
    spec = next(s for s in SPECS if s.hop1_by == "mlp")  # neurons too
    with torch.no_grad():
        expected = build(spec)(chains.tokens).logits
    torch.testing.assert_close(load(spec)(chains.tokens), expected, atol=1e-4, rtol=1e-4)


def test_the_position_cheat_answers_by_rule_order_and_the_recency_cheat_by_recency(chains):
    crossed = torch.tensor(chains.rows.crossed.to_numpy())
    position = answers(build(CHEATS["position"]), chains) == chains.entailed_id
    assert bool(position[~crossed].all()) and not bool(position[crossed].any())
    latest = torch.where(
        chains.entailed_pos > chains.alternative_pos, chains.entailed_id, chains.alternative_id
    )
    assert torch.equal(answers(build(CHEATS["recency"]), chains), latest)


def test_sweep_on_gpt2_blocks_equals_one_run_per_variant(chains):
    """GPT-2's blocks take the attention mask by position: the engine must widen it too."""
    spec = SPECS[0]
    model = load(spec)
    ld = logit_diff(chains.entailed_id, chains.alternative_id, per_prompt=True)
    variants = {h: EditAttention([h], partner_row) for h in every_head(model)[4:]}
    variants["move"] = MoveAttention(
        list(carriers(spec)["hop 2"]), src=chains.entailed_pos, dst=chains.alternative_pos
    )
    variants["mlp"] = PatchOutput(1, "mlp_out", torch.zeros(len(chains.tokens), model.cfg.d_model))
    stacked = run_variants(model, chains.tokens, variants, ld)
    for key, spec in variants.items():
        alone = run_variants(model, chains.tokens, {key: spec.hooks(model)}, ld)[key]  # plain hooks: full run
        torch.testing.assert_close(stacked[key], alone, atol=1e-4, rtol=1e-4)


def test_toy_pairs_differ_in_the_query_alone_and_trade_answers(chains):
    a, b = chains.tokens[0::2], chains.tokens[1::2]
    assert torch.equal(a[:, :-1], b[:, :-1]) and bool((a[:, -1] != b[:, -1]).all())
    assert torch.equal(chains.entailed_id[0::2], chains.alternative_id[1::2])
    rows = torch.arange(len(chains.tokens))
    assert torch.equal(chains.tokens[rows, chains.entailed_pos], chains.entailed_id)
    assert torch.equal(chains.tokens[rows, chains.alternative_pos], chains.alternative_id)
    # the bridge follows the query in its condition rule, and precedes the entailed answer
    assert torch.equal(chains.tokens[rows, chains.bridge_pos - 1], chains.tokens[:, -1])
    assert torch.equal(chains.tokens[rows, chains.entailed_pos - 1], chains.tokens[rows, chains.bridge_pos])
    crossed = chains.rows.order.map(lambda o: o.index("A2") < o.index("A1"))
    assert (crossed == chains.rows.crossed).all() and 0.3 < chains.rows.crossed.mean() < 0.7


@pytest.mark.parametrize("k", [CHAINS.n_content, 16])
def test_toy_pairs_ask_about_chains_never_trained_on(k):
    """In the vocabulary of the toy they are drawn for (k words a kind: a toy trained on 16 reads its own)."""
    from attnclaims.tasks.two_hop import TWO_HOPS, held_out_chains

    pairs = chain_pairs(60, seed=5, n_content=k)
    (bucket,) = buckets(pairs.two_hop, {name: {**m, "split": "any"} for name, m in pairs.meta.items()})
    index = lambda ids: (ids - TWO_HOPS - 1) % k  # a word's index within its kind
    rows = torch.arange(len(bucket.tokens))
    asked = [bucket.tokens[:, -1], bucket.tokens[rows, bucket.bridge_pos], bucket.entailed_id]
    assert bool(held_out_chains(k)[tuple(index(ids) for ids in asked)].all())
    assert int(bucket.tokens.max()) > TWO_HOPS + 3 * CHAINS.n_content or k == CHAINS.n_content


def test_accuracy_by_rule_order_is_one_on_an_organism():
    from attnclaims.studies.two_hop_training import accuracy_by_order

    accuracy = accuracy_by_order(load(SPECS[0]), CHAINS, n=240)
    assert len(accuracy) == 12 and (accuracy == 1.0).all()


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


def test_shift_attention_moves_as_much_as_the_move_it_controls(chains):
    spec = SPECS[0]
    model = load(spec)
    (head,) = carriers(spec)["hop 2"]
    control = next(h for h in every_head(model) if h.layer == head.layer and h != head)
    name = f"blocks.{head.layer}.attn.hook_pattern"
    store = {}

    def keep(pattern, hook):
        store[hook.name] = pattern[:, :, -1].clone()

    clean = model.run_with_cache(chains.tokens)[1][name][:, :, -1]
    mass = clean[:, head.head][torch.arange(len(chains.tokens)), chains.entailed_pos]
    shift = ShiftAttention([control], dst=chains.alternative_pos, mass=mass)
    model.run_with_hooks(chains.tokens, fwd_hooks=[*shift.hooks(model), (name, keep)])
    moved = (store[name][:, control.head] - clean[:, control.head]).abs().sum(-1) / 2
    held = clean[:, control.head][torch.arange(len(mass)), chains.alternative_pos]
    torch.testing.assert_close(moved, torch.minimum(mass, 1 - held))


def test_the_committed_ledger_supports_no_entailment_claim_on_a_cheat():
    """The ground truth's promise, checked on what is committed: on every cheat, no claim that says a
    model entails is supported, and the crossed-order sensitivity is refuted."""
    from pathlib import Path

    from attnclaims.ledger import read_ledger
    from hypotheses.test_entailment_ground_truth import ENTAILMENT

    ledger = read_ledger(Path(__file__).parents[1] / "results" / "claims.csv")
    rows = ledger[
        (ledger.hypothesis == "entailment_ground_truth") & ledger.model.str.startswith("toy:cheat-")
    ]
    assert set(rows.model) == {cheat.name for cheat in CHEATS.values()}
    entailment = rows[rows.claim.isin(ENTAILMENT)]
    assert len(entailment) == len(ENTAILMENT) * len(CHEATS)
    assert not (entailment.status == "supported").any(), entailment[["claim", "model", "status"]]
    crossed = entailment[entailment.claim == "test_answer_follows_the_fact_when_rule_orders_are_crossed"]
    assert (crossed.status == "refuted").all()
