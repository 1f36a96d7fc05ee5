"""The layer account (lib/studies/layer_account.py): PatchOutput against TransformerLens's own
activation patching (the oracle), its KV-cache path against full forwards on a real model, and the
account on organisms whose mechanism is known: it names the layer of an MLP hop that no head carries."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.patching import get_act_patch_attn_out, get_act_patch_mlp_out

from attnclaims.heads import Head
from attnclaims.interventions import PatchOutput
from attnclaims.metrics import logit_diff, top1_is
from attnclaims.studies.entailment_pairs import chain_pairs
from attnclaims.studies.entailment_sweep import buckets
from attnclaims.studies.layer_account import layer_account, removed_shares
from attnclaims.studies.organisms import carriers, generate, load
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


@pytest.mark.parametrize("hop1_by", ["attention", "mlp"])
def test_the_account_finds_the_layers_that_carry_each_hop(hop1_by):
    """An organism's hop carriers (lib/studies/organisms.py) write into the final position: the
    attention output of a hop head's layer, or the output of the MLP that looks hop 1 up, patched from
    the other text makes the answer follow the other text (a share of 2); every other layer's
    attention and MLP output at the final position is the same in both texts (share 0), among them
    the head that gathers the MLP's operands with the same attention in both."""
    spec = next(s for s in generate(8, seed=0) if s.hop1_by == hop1_by and len(s.hop2) == 1)
    pairs = chain_pairs(40, seed=5)
    stacks = [(b.tokens, b.entailed_id, b.alternative_id, b.rows) for b in buckets(pairs.two_hop, pairs.meta)]
    shares = removed_shares(layer_account(load(spec), stacks))
    expected = {("attention", layer): 0.0 for layer in range(spec.n_layers)}
    expected |= {("mlp", layer): 0.0 for layer in range(spec.n_layers)}
    for part in (p for parts in carriers(spec).values() for p in parts):
        key = ("attention", part.layer) if isinstance(part, Head) else ("mlp", int(part.removeprefix("MLP")))
        expected[key] = 2.0
    for key, value in expected.items():
        assert abs(shares.loc[key] - value) < 1e-3, (key, float(shares.loc[key]))


def test_top1_is_reads_the_argmax_against_one_id_per_prompt():
    logits = torch.tensor([[[0.0, 2.0, 1.0]], [[3.0, 0.0, 1.0]]])
    assert top1_is(torch.tensor([1, 1]))(logits).tolist() == [1.0, 0.0]
    assert top1_is(0)(logits).tolist() == [0.0, 1.0]
    assert top1_is(0).positions == (-1,)
