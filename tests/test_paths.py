"""Path patching and the direct effect are one spec each (attnclaims.paths.PatchPath, DirectPath): the
sweeps and the minimal-pair hooks are uses of them, and they agree where they should."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.patching import get_act_patch_direct_path

from attnclaims.interventions import AblateHeads, source_cache
from attnclaims.metrics import logit_diff
from attnclaims.pair_hooks import freeze_after, path_to_queries, watch
from attnclaims.patching import path_patch_sweep
from attnclaims.paths import PatchPath, split_qkv_input
from attnclaims.presets import WITH_MLP
from attnclaims.redundancy import direct_effects
from attnclaims.sweep import run_variants
from attnclaims.tasks import repeat_batch

from .test_patching import toy_pair


@pytest.mark.parametrize("sender", [(0, 0), (0, 3)])
def test_the_sweep_and_the_mean_path_agree_where_they_should(toy, sender):
    """One clean prompt is its own mean, and a receiver in the last layer changes the final position's
    logits through its final query row alone: there the final-position path (path_to_queries) and the
    every-position sweep (path_patch_sweep) are one measurement, and both equal TransformerLens."""
    clean, corrupted = toy_pair(toy, batch=1)
    metric = logit_diff(5, 7)
    sweep = path_patch_sweep(
        toy, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric, sender=sender, component="q"
    )
    last = toy.cfg.n_layers - 1
    reference = source_cache(toy, clean)
    variants = {h: path_to_queries(toy, [sender], [(last, h)], reference) for h in range(toy.cfg.n_heads)}
    with split_qkv_input(toy):
        paths = run_variants(toy, corrupted, variants, metric)
    torch.testing.assert_close(torch.stack([paths[h] for h in range(toy.cfg.n_heads)]), sweep[last])
    _, clean_cache = toy.run_with_cache(clean)
    _, corrupted_cache = toy.run_with_cache(corrupted)
    oracle = get_act_patch_direct_path(
        toy, corrupted, clean_cache, corrupted_cache, metric, *sender, "q", verbose=False
    )
    torch.testing.assert_close(sweep[last], oracle[last])


def test_a_sender_without_a_path_changes_nothing_and_a_bad_source_is_named(toy):
    clean, corrupted = toy_pair(toy)
    source = source_cache(toy, clean)
    late = PatchPath([(1, 0)], [(1, 2)], source)  # a sender in the receiver's own layer: no path
    assert late.hooks(toy) == [] and late.layer(toy) == 1
    assert PatchPath([(0, 1), (1, 0)], [(1, 2)], source).layer(toy) == 0
    metric = logit_diff(5, 7)
    with split_qkv_input(toy):
        values = run_variants(toy, corrupted, {"clean": [], "late": late}, metric)
    torch.testing.assert_close(values["late"], values["clean"])
    with pytest.raises(ValueError, match="component must be 'q', 'k' or 'v'"):
        PatchPath([(0, 1)], [(1, 2)], source, "z")
    short = PatchPath([(0, 1)], [(1, 2)], source_cache(toy, clean[:, :-2]), "k")
    with pytest.raises(ValueError, match="positions, this run"), split_qkv_input(toy):
        run_variants(toy, corrupted, [short], metric)


@pytest.mark.filterwarnings("ignore:A forward hook edited hook_scale")
@pytest.mark.parametrize("how", ["mean", "zero"])
def test_both_direct_effects_agree_where_they_should(toy_mlp, how):
    """A metric of the final position alone: holding the later components at every position
    (redundancy.direct_effects) and at the final one (pair_hooks.freeze_after, the entailment arms')
    leave the same final logits, so the two callers give one number per head."""
    model = toy_mlp
    tokens = repeat_batch(torch.Generator().manual_seed(1), 8, 8, WITH_MLP.n_content)
    reference = source_cache(model, repeat_batch(torch.Generator().manual_seed(2), 8, 8, WITH_MLP.n_content))
    metric = logit_diff(5, 7)
    heads = [(0, 1), (1, 2)]
    direct = direct_effects(model, tokens, metric, how, reference, heads=heads)
    clean = {}
    names = [f"blocks.{layer}.{kind}" for layer in range(2) for kind in ("attn.hook_z", "hook_mlp_out")]
    for name in [*names, "ln_final.hook_scale"]:
        model.run_with_hooks(tokens, fwd_hooks=watch(clean, "clean", name, layer=0).hooks(model))
    variants = {
        head: AblateHeads([head], how, reference) + freeze_after(model, [head], clean, "clean")
        for head in heads
    }
    values = run_variants(model, tokens, {"clean": [], **variants}, metric)
    for head in heads:
        assert float(direct[head]) != 0.0
        torch.testing.assert_close(values[head] - values["clean"], direct[head], atol=2e-6, rtol=1e-5)
