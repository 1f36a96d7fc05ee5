"""The layer account (lib/studies/layer_account.py): PatchOutput against TransformerLens's own
activation patching (the oracle), its KV-cache path against full forwards on a real model, and the
account on the two-hop organism, whose mechanism is known."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.patching import get_act_patch_attn_out, get_act_patch_mlp_out

from attnclaims.interventions import PatchOutput
from attnclaims.metrics import logit_diff, top1_is
from attnclaims.studies.entailment_organism import organism
from attnclaims.studies.layer_account import best_layers, layer_account, removed_shares
from attnclaims.studies.two_hop import two_hop_pairs
from attnclaims.sweep import run_variants

ORACLE = {"attn_out": get_act_patch_attn_out, "mlp_out": get_act_patch_mlp_out}


@pytest.mark.parametrize("component", ["attn_out", "mlp_out"])
def test_patch_output_equals_transformer_lens_at_the_final_position(toy_mlp, component):
    g = torch.Generator().manual_seed(3)
    clean = torch.randint(2, toy_mlp.cfg.d_vocab, (3, 12), generator=g)
    corrupted = clean.clone()
    corrupted[:, 4] = torch.randint(2, toy_mlp.cfg.d_vocab, (3,), generator=g)
    metric = logit_diff(5, 7)
    _, cache = toy_mlp.run_with_cache(clean)
    oracle = ORACLE[component](toy_mlp, corrupted, cache, metric)[:, -1]  # [layer] at the final position
    variants = {
        layer: PatchOutput(layer, component, cache[f"blocks.{layer}.hook_{component}"][:, -1])
        for layer in range(toy_mlp.cfg.n_layers)
    }
    ours = run_variants(toy_mlp, corrupted, variants, metric)
    assert torch.allclose(torch.stack([ours[layer] for layer in variants]), oracle, atol=1e-4)


def test_patch_output_on_the_kv_cache_equals_full_forwards_on_smollm2(model):
    tokens = model.to_tokens(["It rains, so I wear", "It snows, so I wear"])
    metric = logit_diff(model.to_single_token(" boots"), model.to_single_token(" shoes"), per_prompt=True)
    source = torch.randn(2, model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    variants = {
        (layer, c): PatchOutput(layer, c, source) for layer in (0, 11, 29) for c in PatchOutput.COMPONENTS
    }
    cached = run_variants(model, tokens, variants, metric)
    full = run_variants(model, tokens, variants, metric, kv_cache=False)
    for key in variants:
        assert torch.allclose(cached[key], full[key], atol=1e-4), key
    assert all(not torch.allclose(cached[k], cached[(0, "attn_out")]) for k in variants if k[0] > 0)


def test_patch_output_names_what_is_wrong(toy_mlp):
    with pytest.raises(ValueError, match="attn_out"):
        PatchOutput(0, "resid_post", torch.zeros(1, toy_mlp.cfg.d_model))
    tokens = torch.randint(2, toy_mlp.cfg.d_vocab, (2, 6))
    wrong = PatchOutput(0, "mlp_out", torch.zeros(3, toy_mlp.cfg.d_model))  # 3 rows for 2 prompts
    with pytest.raises(ValueError, match="one \\[batch, d_model\\] row per prompt"):
        run_variants(toy_mlp, tokens, [wrong], logit_diff(5, 7))


def test_the_account_finds_the_organism_hop_layers_and_nothing_in_its_mlps():
    """The organism: L1H0 (hop 1) and L2H0 (hop 2) write into the final position; its MLPs add 0.
    Each hop layer's attention output, patched from the other text, makes the answer follow the
    other fact (a share of 2); layer 0 and every MLP carry nothing."""
    pairs = two_hop_pairs(40, seed=5)
    account = layer_account(organism(), [(pairs.tokens, pairs.entailed, pairs.alternative, pairs.rows)])
    shares = removed_shares(account)
    assert torch.allclose(
        torch.tensor(shares.loc["attention"].to_numpy()), torch.tensor([0.0, 2.0, 2.0]), atol=1e-3
    )
    assert shares.loc["mlp"].abs().max() < 1e-6
    assert best_layers(account)["attention"] in (1, 2)


def test_top1_is_reads_the_argmax_against_one_id_per_prompt():
    logits = torch.tensor([[[0.0, 2.0, 1.0]], [[3.0, 0.0, 1.0]]])
    assert top1_is(torch.tensor([1, 1]))(logits).tolist() == [1.0, 0.0]
    assert top1_is(0)(logits).tolist() == [0.0, 1.0]
    assert top1_is(0).positions == (-1,)
