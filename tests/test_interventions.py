"""Intervention specs (lib/interventions.py): what they say about themselves, that the engine reads
those declarations and not hook names, and that every path gives the plain hooks' results."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnclaims import hooks as H
from attnclaims.heads import Head, label, top_heads
from attnclaims.interventions import (
    AblateHeads,
    Compose,
    EditAttention,
    EditValues,
    Hooks,
    MoveAttention,
    PatchHeads,
    RedirectAttention,
    as_intervention,
)
from attnclaims.metrics import logit_diff
from attnclaims.sweep import run_variants


def tokens(toy, batch: int = 2, length: int = 10) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.cat(
        [
            torch.zeros(batch, 1, dtype=torch.long),
            torch.randint(2, toy.cfg.d_vocab, (batch, length - 1), generator=g),
        ],
        1,
    )


def test_a_head_is_a_tuple_with_a_label():
    assert Head(3, 4) == (3, 4) and hash(Head(3, 4)) == hash((3, 4)) and str(Head(3, 4)) == "L3H4"
    assert label([(3, 4), Head(5, 0)]) == "L3H4, L5H0"
    scores = torch.tensor([[0.1, 0.9], [float("nan"), 0.5]])
    assert top_heads(scores, 2) == [Head(0, 1), Head(1, 1)] and top_heads(scores, 1, largest=False) == [
        Head(0, 0)
    ]


def test_specs_say_what_they_did_and_key_results(toy):
    move = MoveAttention([(1, 2)], src=torch.tensor([3, 4]), dst=5)
    assert (
        repr(move) == "MoveAttention(heads=(L1H2,), src=(3, 4), dst=5, alpha=1.0, query_pos=-1, swap=False)"
    )
    assert move == MoveAttention([Head(1, 2)], (3, 4), 5) and hash(move) == hash(
        MoveAttention([(1, 2)], (3, 4), 5)
    )
    assert "source" not in repr(PatchHeads([(0, 1)], {"big": torch.zeros(9)}))
    assert (
        repr(EditValues([(0, 1)], H.partner_row))
        == "EditValues(heads=(L0H1,), edit=partner_row, query_pos=None)"
    )
    assert not EditValues([(0, 1)], H.partner_row, query_pos=-1).final_row  # values need full forwards
    assert (
        repr(EditAttention([(0, 1)], H.partner_row))
        == "EditAttention(heads=(L0H1,), edit=partner_row, query_pos=-1)"
    )
    both = move + AblateHeads([(0, 3)])
    assert isinstance(both, Compose) and both.layer(toy) == 0 and not both.final_row
    assert (
        move.final_row and move.layer(toy) == 1 and not MoveAttention([(1, 2)], 3, 5, query_pos=6).final_row
    )
    values = run_variants(toy, tokens(toy), [move, RedirectAttention([(0, 0)], 2)], logit_diff(2, 3))
    assert list(values) == [move, RedirectAttention([(0, 0)], 2)]
    with pytest.raises(ValueError, match="distinct interventions"):
        run_variants(toy, tokens(toy), [move, move], logit_diff(2, 3))
    with pytest.raises(TypeError, match="wrap hooks in Hooks"):
        move + [("blocks.0.hook_resid_pre", lambda x, hook: x)]


def test_plain_hooks_declare_nothing_and_declared_hooks_say_where_they_act(toy):
    plain = RedirectAttention([(1, 0)], 2).hooks(toy)
    assert as_intervention(plain).layer(toy) is None and not as_intervention(plain).final_row
    declared = Hooks(plain, first_layer=1, edits_final_row=True)
    assert declared.layer(toy) == 1 and declared.final_row
    assert as_intervention([]).layer(toy) == toy.cfg.n_layers and as_intervention([]).final_row


@settings(max_examples=10, deadline=None)
@given(
    layer=st.integers(0, 1), head=st.integers(0, 3), dst=st.integers(0, 9), alpha=st.sampled_from([0.3, 1.0])
)
def test_every_path_of_the_engine_gives_the_plain_hooks_results(toy, layer, head, dst, alpha):
    """A spec runs on the KV path from its layer; the same hooks as a plain list run in full from the
    embeddings; both equal one run_with_hooks per variant."""
    batch = tokens(toy)
    metric = logit_diff(2, 3, per_prompt=True)
    specs = {
        "move": MoveAttention([(layer, head)], src=0, dst=dst, alpha=alpha),
        "redirect": RedirectAttention([(layer, head)], dst),
        "both": MoveAttention([(1, head)], 0, dst) + EditAttention([(0, head)], H.partner_row),
        "ablate": AblateHeads([(layer, head)]),
    }
    fast = run_variants(toy, batch, specs, metric)
    plain = run_variants(toy, batch, {key: spec.hooks(toy) for key, spec in specs.items()}, metric)
    for key, spec in specs.items():
        alone = metric(toy.run_with_hooks(batch, fwd_hooks=spec.hooks(toy)))
        torch.testing.assert_close(fast[key], alone, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(plain[key], alone, atol=1e-5, rtol=1e-5)


def test_a_declaration_its_hooks_break_is_refused_where_it_is_built(toy):
    ablate_layer0 = H.ablate_heads(toy, [(0, 1)])
    with pytest.raises(ValueError, match="below first_layer=1"):
        Hooks(ablate_layer0, first_layer=1)
    with pytest.raises(ValueError, match="on the logits; declare first_layer=None"):
        Hooks((("unembed.hook_out", lambda x, hook: x * 0),), first_layer=toy.cfg.n_layers)
    assert Hooks((("ln_final.hook_scale", lambda x, hook: x),), first_layer=toy.cfg.n_layers).layer(toy) == 2
    assert Hooks((("unembed.hook_out", lambda x, hook: x * 0),)).layer(toy) is None  # undeclared: run in full


def test_per_prompt_query_positions_are_data_and_never_final_row(toy):
    batch = tokens(toy)
    spec = MoveAttention([(1, 0)], src=0, dst=torch.tensor([2, 3]), query_pos=torch.tensor([6, 9]))
    assert spec.query_pos == (6, 9) and not spec.final_row and hash(spec) == hash(spec)
    assert not MoveAttention([(1, 0)], 0, 2, query_pos=torch.tensor([-1, -1])).final_row
    metric = logit_diff(2, 3, per_prompt=True)
    values = run_variants(toy, batch, [spec], metric)
    torch.testing.assert_close(values[spec], metric(toy.run_with_hooks(batch, fwd_hooks=spec.hooks(toy))))


def test_specs_that_need_another_run_build_it_themselves(toy):
    """PatchHeads.from_run and AblateHeads.from_reference equal the specs built from a cache by hand,
    and keep only the layers their heads are in."""
    clean, corrupted, other = tokens(toy), tokens(toy).flip(1), tokens(toy, batch=3)
    metric = logit_diff(3, 4)
    heads = [(1, 0), (0, 2)]
    _, cache = toy.run_with_cache(clean)
    _, reference = toy.run_with_cache(other)
    built = {
        "patch": PatchHeads.from_run(toy, clean, heads),
        "ablate": AblateHeads.from_reference(toy, other, heads, "mean"),
    }
    by_hand = {"patch": PatchHeads(heads, cache), "ablate": AblateHeads(heads, "mean", reference)}
    ours, theirs = run_variants(toy, corrupted, built, metric), run_variants(toy, corrupted, by_hand, metric)
    assert all(torch.equal(ours[key], theirs[key]) for key in built)
    assert sorted(built["patch"].source) == ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]
    assert not torch.equal(ours["patch"], run_variants(toy, corrupted, {"c": []}, metric)["c"])  # it acts
