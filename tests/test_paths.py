"""Path patching is one spec (attnclaims.paths.PatchPath): the sweep and the minimal-pair hook are two
uses of it, and they agree where they should."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.patching import get_act_patch_direct_path

from attnclaims.interventions import source_cache
from attnclaims.metrics import logit_diff
from attnclaims.pair_hooks import path_to_queries
from attnclaims.patching import path_patch_sweep
from attnclaims.paths import PatchPath, split_qkv_input
from attnclaims.sweep import run_variants

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
