"""Sweeps, checked against TransformerLens (the oracle) and against per-head loops."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformer_lens.patching import (
    generic_activation_patch,
    get_act_patch_attn_head_out_all_pos,
    get_act_patch_direct_path,
    layer_head_vector_patch_setter,
)

from attnclaims.interventions import RedirectAttention
from attnclaims.metrics import logit_diff, reads
from attnclaims.patching import (
    attention_redirect_sweep,
    attribution_patch_sweep,
    head_out_patch_sweep,
    path_patch_sweep,
)
from attnclaims.sweep import run_variants

SEED_PROMPT = (
    "When it rains I carry an umbrella. When I carry an umbrella, I wear boots. "
    "When I don't carry an umbrella I wear sneakers. It rains, therefore I wear"
)


def toy_pair(model, batch=2, length=14, seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.cat(
        [
            torch.zeros(batch, 1, dtype=torch.long),
            torch.randint(2, model.cfg.d_vocab, (batch, length - 1), generator=g),
        ],
        1,
    )
    corrupted = clean.clone()
    corrupted[:, 3:6] = torch.randint(2, model.cfg.d_vocab, (batch, 3), generator=g)
    return clean, corrupted


def scale(values: torch.Tensor) -> float:
    return max(1.0, float(values.abs().max()))


def test_head_out_sweep_equals_transformer_lens_on_toys(toy, toy_mlp):
    for model in (toy, toy_mlp):
        clean, corrupted = toy_pair(model)
        metric = logit_diff(clean[:, -1] * 0 + 5, 7)
        _, cache = model.run_with_cache(clean)
        oracle = get_act_patch_attn_head_out_all_pos(model, corrupted, cache, metric)
        ours = head_out_patch_sweep(
            model, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric, chunk=3, show_progress=False
        )
        assert (ours - oracle).abs().max() <= 1e-4 * scale(oracle)


@pytest.mark.slow
@pytest.mark.real_model
def test_head_out_sweep_equals_transformer_lens_on_smollm2(model):
    """TransformerLens's own patching loop (generic_activation_patch, as get_act_patch_attn_head_out_all_pos
    runs it) on one head of every layer, each in another position: the whole grid against TL is the
    head-out benchmark's check (benchmarks/test_sweep_speed.py), which runs TL's full sweep anyway."""
    clean = model.to_tokens("It rains, therefore I wear boots and a coat")
    corrupted = model.to_tokens("It shines, therefore I wear boots and a coat")
    assert clean.shape == corrupted.shape
    metric = logit_diff(model.to_single_token(" hat"), model.to_single_token(" gloves"))
    _, cache = model.run_with_cache(clean)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    sample = pd.DataFrame(
        {"layer": range(n_layers), "head": [(5 * layer) % n_heads for layer in range(n_layers)]}
    )
    start = time.perf_counter()
    oracle = generic_activation_patch(
        model, corrupted, cache, metric, layer_head_vector_patch_setter, "z", index_df=sample
    )
    oracle_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = head_out_patch_sweep(
        model, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric, show_progress=False
    )
    ours_s = time.perf_counter() - start
    ours = ours[torch.tensor(sample.layer.to_numpy()), torch.tensor(sample["head"].to_numpy())]
    diff = float((ours - oracle).abs().max())
    print(
        f"head-out sweep on smollm2 ({clean.shape[1]} tokens, {len(sample)} heads): max |ours - TL| = "
        f"{diff:.2e}; TL {oracle_s:.1f} s, ours (every head) {ours_s:.1f} s"
    )
    assert diff <= 1e-4 * scale(oracle)


def per_head_redirect_loop(model, tokens, dst, query_pos, metric, heads):
    return {
        (l, h): float(
            metric(
                model.run_with_hooks(
                    tokens, fwd_hooks=RedirectAttention([(l, h)], dst, query_pos).hooks(model)
                )
            )
        )
        for l, h in heads
    }


@settings(max_examples=8, deadline=None)
@given(dst=st.integers(0, 13), query_pos=st.sampled_from([-1, 13, 9, 5]), chunk=st.integers(1, 9))
def test_redirect_sweep_equals_the_per_head_loop_on_toy(toy, dst, query_pos, chunk):
    tokens, _ = toy_pair(toy)
    q = query_pos % tokens.shape[1]
    dst = min(dst, q)
    metric = logit_diff(4, 9)
    sweep = attention_redirect_sweep(
        toy, tokens, dst, query_pos, metric=metric, chunk=chunk, show_progress=False
    )
    loop = per_head_redirect_loop(
        toy, tokens, dst, query_pos, metric, [(l, h) for l in range(2) for h in range(4)]
    )
    for (l, h), value in loop.items():
        assert abs(sweep[l, h] - value) <= 1e-4 * max(1.0, abs(value))


@pytest.mark.real_model
def test_redirect_sweep_kv_cache_path_is_exact_on_smollm2(model):
    tokens = model.to_tokens(SEED_PROMPT)
    strs = model.to_str_tokens(tokens)
    boots = max(i for i, s in enumerate(strs) if s == " boots")
    metric = logit_diff(model.to_single_token(" boots"), model.to_single_token(" sne"))
    sweep = attention_redirect_sweep(model, tokens, boots, -1, metric=metric, show_progress=False)
    heads = [(0, 8), (3, 4), (23, 3), (24, 4), (29, 0), (12, 7)]
    loop = per_head_redirect_loop(model, tokens, boots, -1, metric, heads)
    for (l, h), value in loop.items():
        assert abs(sweep[l, h] - value) <= 1e-4 * scale(sweep)


@pytest.mark.parametrize("kv_cache", [True, False], ids=["kv-path", "full-forwards"])
def test_a_metric_that_declares_its_ids_gets_only_those_logits_and_the_same_values(toy_mlp, kv_cache):
    tokens, _ = toy_pair(toy_mlp)
    variants = {
        "clean": [],
        **{(l, h): RedirectAttention([(l, h)], 2) for l in (0, 1) for h in (0, 3)},
    }
    declared = logit_diff(4, 9, per_prompt=True)  # declares ids 4 and 9: only they are unembedded
    undeclared = reads(-1, lambda logits: logits[:, -1, 4] - logits[:, -1, 9])  # the full unembedding
    partial = run_variants(toy_mlp, tokens, variants, declared, kv_cache=kv_cache)
    full = run_variants(toy_mlp, tokens, variants, undeclared, kv_cache=kv_cache)
    for key in variants:
        assert torch.allclose(partial[key], full[key], atol=1e-5, rtol=1e-5), key
    liar = reads(-1, lambda logits: logits[:, -1, 7].mean(), vocab=[4])
    with pytest.raises(ValueError, match="outside the ids it declares"):
        run_variants(toy_mlp, tokens, variants, liar, kv_cache=kv_cache)


def test_attribution_equals_the_directional_derivative(toy_mlp):
    """attribution[l, h] must equal d/de metric(z_corr + e (z_clean - z_corr) in head (l, h)) at e = 0."""
    clean, corrupted = toy_pair(toy_mlp)
    metric = logit_diff(5, 7)
    attribution = attribution_patch_sweep(
        toy_mlp, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric
    )
    _, clean_cache = toy_mlp.run_with_cache(clean)
    _, corr_cache = toy_mlp.run_with_cache(corrupted)
    eps = 1e-3
    for layer, head in [(0, 0), (0, 3), (1, 1), (1, 2)]:
        name = f"blocks.{layer}.attn.hook_z"
        delta = clean_cache[name][:, :, head] - corr_cache[name][:, :, head]

        def nudge(sign, name=name, head=head, delta=delta):
            def hook(z, hook):
                z = z.clone()
                z[:, :, head] += sign * eps * delta
                return z

            return float(metric(toy_mlp.run_with_hooks(corrupted, fwd_hooks=[(name, hook)])))

        derivative = (nudge(+1) - nudge(-1)) / (2 * eps)
        assert abs(attribution[layer, head] - derivative) <= 1e-2 * max(1.0, abs(derivative))


def test_attribution_tracks_the_real_sweep(toy_mlp):
    clean, corrupted = toy_pair(toy_mlp, batch=4)
    metric = logit_diff(5, 7)
    base = float(metric(toy_mlp(corrupted)))
    real = (
        head_out_patch_sweep(
            toy_mlp, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric, show_progress=False
        )
        - base
    )
    approx = attribution_patch_sweep(toy_mlp, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric)
    corr = torch.corrcoef(torch.stack([real.flatten(), approx.flatten()]))[0, 1]
    assert corr > 0.5, f"attribution vs real patching: r = {corr:.2f}"


def test_path_patch_matches_transformer_lens_and_marks_earlier_layers(toy):
    clean, corrupted = toy_pair(toy)
    metric = logit_diff(5, 7)
    ours = path_patch_sweep(
        toy, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric, sender=(0, 1), component="k"
    )
    _, clean_cache = toy.run_with_cache(clean)
    _, corr_cache = toy.run_with_cache(corrupted)
    oracle = get_act_patch_direct_path(
        toy, corrupted, clean_cache, corr_cache, metric, 0, 1, "k", verbose=False
    )
    assert torch.isnan(ours[0]).all()
    torch.testing.assert_close(ours[1], oracle[1])


@pytest.mark.real_model
def test_gqa_key_path_patch_is_refused(model):
    tokens = model.to_tokens("a b c")
    with pytest.raises(ValueError, match="grouped-query"):
        path_patch_sweep(
            model,
            clean_tokens=tokens,
            corrupted_tokens=tokens,
            metric=logit_diff(1, 2),
            sender=(0, 0),
            component="k",
        )


def test_bad_inputs_are_named(toy):
    clean, corrupted = toy_pair(toy)
    with pytest.raises(ValueError, match="differ in shape"):
        head_out_patch_sweep(
            toy,
            clean_tokens=clean,
            corrupted_tokens=corrupted[:, :-1],
            metric=logit_diff(1, 2),
            show_progress=False,
        )
    with pytest.raises(ValueError, match="returns one number per call .* or one per prompt"):
        head_out_patch_sweep(  # k measures per prompt: no cell of a per-head table
            toy,
            clean_tokens=clean,
            corrupted_tokens=corrupted,
            metric=lambda logits: logits[:, -1, :3],
            show_progress=False,
        )
    per_prompt = head_out_patch_sweep(
        toy,
        clean_tokens=clean,
        corrupted_tokens=corrupted,
        metric=logit_diff(1, 2, per_prompt=True),
        show_progress=False,
    )
    mean = head_out_patch_sweep(
        toy, clean_tokens=clean, corrupted_tokens=corrupted, metric=logit_diff(1, 2), show_progress=False
    )
    assert per_prompt.shape == (*mean.shape, clean.shape[0])
    torch.testing.assert_close(per_prompt.mean(-1), mean)
    with pytest.raises(ValueError, match="needs a metric"):
        attention_redirect_sweep(toy, clean, 2, metric=None)
    with pytest.raises(ValueError, match="outside the sequence"):
        attention_redirect_sweep(toy, clean, 99, metric=logit_diff(1, 2), show_progress=False)


@pytest.mark.parametrize("kv_cache", [True, False])
def test_a_metric_may_return_several_measures_per_prompt(toy_mlp, kv_cache):
    """[batch, k] values: each column equals the run with that column's metric alone."""
    tokens = torch.randint(2, toy_mlp.cfg.d_vocab, (3, 10), generator=torch.Generator().manual_seed(4))
    first, second = logit_diff(5, 7, per_prompt=True), logit_diff(2, 9, per_prompt=True)
    both = reads(-1, lambda logits: torch.stack([first(logits), second(logits)], 1))
    variants = {head: RedirectAttention([(1, head)], dst=2) for head in range(toy_mlp.cfg.n_heads)}
    joint = run_variants(toy_mlp, tokens, variants, both, kv_cache=kv_cache)
    for metric, column in ((first, 0), (second, 1)):
        alone = run_variants(toy_mlp, tokens, variants, metric, kv_cache=kv_cache)
        assert all(torch.allclose(joint[key][:, column], alone[key], atol=1e-5) for key in variants)
    with pytest.raises(ValueError, match="k per prompt"):
        run_variants(toy_mlp, tokens, variants, lambda logits: logits[:, -1, :4].reshape(1, -1))
