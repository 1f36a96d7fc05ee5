"""Identities behind the entailment hypothesis's interventions (lib/protocols.py), on smollm2-135m
and on hand-made rows: what each edit must leave unchanged, and where two edits must agree."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.utilities import get_act_name

from attnclaims import hooks as H
from attnclaims.hooks import move_fraction, partner_row
from attnclaims.interventions import AblateHeads, MoveAttention
from attnclaims.metrics import logit_diff
from attnclaims.patching import split_qkv_input
from attnclaims.protocols import freeze_after, path_to_queries, watch
from attnclaims.sweep import run_variants

TEXT = (
    "If it is wet, I take an umbrella. When I take an umbrella, I wear boots, not shoes. "
    "Today it is wet, so I wear"
)


def test_partner_row_swaps_the_texts_of_each_pair():
    rows = torch.arange(12.0).reshape(4, 3)  # pairs (0, 1) and (2, 3)
    assert torch.equal(partner_row(rows), rows[[1, 0, 3, 2]])
    assert torch.equal(partner_row(partner_row(rows)), rows)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_move_fraction_keeps_rows_normalised_and_matches_move_row_at_one(alpha):
    row = torch.softmax(torch.randn(3, 7, generator=torch.Generator().manual_seed(0)), -1)
    src, dst = torch.tensor([1, 2, 3]), torch.tensor([4, 0, 6])
    out = move_fraction(src, dst, alpha)(row)
    torch.testing.assert_close(out.sum(-1), torch.ones(3))
    torch.testing.assert_close(out[torch.arange(3), src], row[torch.arange(3), src] * (1 - alpha))
    if alpha == 1.0:
        torch.testing.assert_close(out, H.move_row(src, dst)(row))
    if alpha == 0.0:
        torch.testing.assert_close(out, row)


def _positions(model):
    tokens = model.to_tokens(TEXT)
    pieces = model.to_str_tokens(tokens)
    return tokens, pieces.index(" boots"), pieces.index(" shoes")


def _late(model) -> tuple[int, int]:
    """A late head (where the entailment switch heads sit on smollm2-135m: L23 of 30)."""
    return (model.cfg.n_layers * 3) // 4, model.cfg.n_heads - 1


@pytest.mark.real_model
def test_final_row_value_move_equals_the_pattern_move(model):
    """z = sum_k p_k v_k: at the final row, reading v_alternative where the head reads v_entailed
    (v_entailed := v_alternative) moves exactly the weight p_entailed to the alternative, so "what"
    and "where" cannot be told apart there at equal weight; the hypothesis compares patterns and
    values taken from the other fact instead."""
    tokens, boots, shoes = _positions(model)
    heads = [(1, 0), _late(model), (_late(model)[0], 0)]

    def value_move(values):
        values = values.clone()
        values[:, boots] = values[:, shoes]
        return values

    by_values = model.run_with_hooks(
        tokens, fwd_hooks=H.edit_head_values(model, heads, value_move, query_pos=-1)
    )
    by_pattern = model.run_with_hooks(tokens, fwd_hooks=H.move_attention(model, heads, boots, shoes))
    assert (by_values - model(tokens)).abs().max() > 1e-3
    torch.testing.assert_close(by_values, by_pattern, atol=1e-4, rtol=0)


def _clean_finals(model, tokens) -> dict:
    names = [(get_act_name(k, layer), layer) for layer in range(model.cfg.n_layers) for k in ("z", "mlp_out")]
    names.append(("ln_final.hook_scale", model.cfg.n_layers))
    store: dict = {}
    watches = [
        hook for name, layer in names for hook in watch(store, "clean", name, layer=layer).hooks(model)
    ]
    model.run_with_hooks(tokens, fwd_hooks=watches)
    return store


@pytest.mark.real_model
def test_freezing_later_layers_hides_them_and_leaves_the_clean_run(model):
    tokens, boots, shoes = _positions(model)
    metric = logit_diff(model.to_single_token(" boots"), model.to_single_token(" shoes"))
    clean = _clean_finals(model, tokens)
    head = _late(model)
    later = (model.cfg.n_layers - 3, 0)
    switch = MoveAttention([head], boots, shoes)
    values = run_variants(
        model,
        tokens,
        {
            "clean": [],
            "frozen": freeze_after(model, [head], clean, "clean"),
            "later_ablated": AblateHeads([later]),
            "later_ablated_frozen": AblateHeads([later]) + freeze_after(model, [head], clean, "clean"),
            "switch": switch,
            "switch_frozen": switch + freeze_after(model, [head], clean, "clean"),
        },
        metric,
    )
    torch.testing.assert_close(values["frozen"], values["clean"], atol=1e-4, rtol=0)
    assert abs(values["later_ablated"] - values["clean"]) > 1e-3
    torch.testing.assert_close(values["later_ablated_frozen"], values["clean"], atol=1e-4, rtol=0)
    assert abs(values["switch_frozen"] - values["clean"]) > 1e-3
    # The direct effect by hand: the head's change of output, through ln_final's clean scale, unembedded.
    seen: dict = {}
    z = get_act_name("z", head[0])
    model.run_with_hooks(tokens, fwd_hooks=(switch + watch(seen, "switch", z, layer=head[0])).hooks(model))
    dz = seen[("switch", z)][0, head[1]] - clean[("clean", z)][0, head[1]]
    d_resid = dz @ model.blocks[head[0]].attn.W_O[head[1]]
    scale = clean[("clean", "ln_final.hook_scale")][0]
    direction = model.W_U[:, model.to_single_token(" boots")] - model.W_U[:, model.to_single_token(" shoes")]
    by_hand = (d_resid / scale * model.ln_final.original_component.weight) @ direction
    torch.testing.assert_close(values["switch_frozen"] - values["clean"], by_hand, atol=1e-3, rtol=1e-3)


@pytest.mark.real_model
def test_path_to_queries_is_an_identity_when_the_mean_is_the_prompt_itself(model):
    """With one prompt the mean-ablation reference is the prompt's own activation: nothing moves."""
    tokens, _, _ = _positions(model)
    reference = {}
    sender = (model.cfg.n_layers // 2, 0)
    z = get_act_name("z", sender[0])
    model.run_with_hooks(
        tokens, fwd_hooks=watch(reference, "clean", z, layer=sender[0], final=False).hooks(model)
    )
    reference = {z: reference[("clean", z)]}
    metric = logit_diff(model.to_single_token(" boots"), model.to_single_token(" shoes"))
    with split_qkv_input(model):
        values = run_variants(
            model,
            tokens,
            {"clean": [], "path": path_to_queries(model, [sender], [_late(model)], reference)},
            metric,
        )
    torch.testing.assert_close(values["path"], values["clean"], atol=1e-4, rtol=0)
