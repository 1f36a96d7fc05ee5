"""Redundancy measures: hand-made effects, batched ablations vs one run per set, and the direct
effect vs a hand computation through the final LayerNorm and the unembedding."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnclaims import hooks as H
from attnclaims import redundancy as R
from attnclaims.heads import Head
from attnclaims.interventions import source_cache
from attnclaims.metrics import mean_loss
from attnclaims.presets import ATTN_ONLY
from attnclaims.tasks import repeat_batch


def repeat_tokens(seed: int, batch: int = 6) -> torch.Tensor:
    return repeat_batch(torch.Generator().manual_seed(seed), batch, ATTN_ONLY.seq_len, ATTN_ONLY.n_content)


@pytest.fixture(scope="module")
def setup(toy):
    tokens, reference = repeat_tokens(0), repeat_tokens(1)
    return tokens, mean_loss(tokens), source_cache(toy, reference)


# ---------------------------------------------------------------------------------------------
# Measures on hand-made numbers


def test_effective_heads_is_n_for_equal_effects_and_1_for_one_head():
    assert R.effective_heads([0.5, 0.5, 0.5, 0.5]) == pytest.approx(4.0)
    assert R.effective_heads([2.0, 0.0, -0.3, 0.0]) == pytest.approx(1.0)
    assert R.effective_heads([1.0, 1.0, 0.0]) == pytest.approx(2.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1, 5, allow_nan=False), min_size=1, max_size=12).filter(lambda e: max(e) > 1e-3))
def test_effective_heads_lies_between_1_and_the_number_of_positive_effects(effects):
    n = R.effective_heads(effects)
    assert 1 - 1e-9 <= n <= sum(e > 0 for e in effects) + 1e-9


def test_carrying_share_and_threshold_on_hand_made_numbers():
    effects = torch.tensor([[0.9, 0.05], [0.3, -0.1]])
    assert R.heads_carrying(effects, whole=2.0, fraction=0.1) == 2  # 0.9 and 0.3 are >= 0.2
    assert R.top_head_share(effects, whole=2.0) == pytest.approx(0.45)
    assert R.heads_to_threshold([1.0, 1.2, 1.8, 2.5], threshold=1.8) == 2
    assert R.self_repair(total=0.4, direct=1.0) == pytest.approx(0.6)
    assert R.self_repair_fraction(total=0.4, direct=1.0) == pytest.approx(0.6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: R.heads_carrying([1.0], whole=0.0, fraction=0.1), "whole effect"),
        (lambda: R.heads_carrying([1.0], whole=1.0, fraction=0.0), "fraction"),
        (lambda: R.effective_heads([-1.0, 0.0]), "no head has a positive effect"),
        (lambda: R.effective_heads([math.nan]), "NaN"),
        (lambda: R.heads_to_threshold([1.0, 1.1], threshold=5.0), "never reach"),
        (lambda: R.self_repair_fraction(total=0.1, direct=0.0), "direct effect"),
    ],
)
def test_measures_reject_what_they_cannot_define(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# Ablations on a toy


def test_batched_ablation_losses_equal_one_run_per_head_set(toy, setup):
    tokens, metric, reference = setup
    sets = [[], [(0, 1)], [(1, 0), (1, 3)], R.every_head(toy)]
    batched = R.ablation_losses(toy, tokens, metric, sets, "mean", reference, chunk=3)
    for value, heads in zip(batched, sets):
        logits = toy.run_with_hooks(
            tokens, fwd_hooks=H.ablate_heads(toy, heads, "mean", reference) if heads else []
        )
        assert float(value) == pytest.approx(float(metric(logits)), abs=1e-5)


def test_head_effects_and_greedy_order_are_consistent(toy, setup):
    tokens, metric, reference = setup
    effects = R.head_effects(toy, tokens, metric, "mean", reference)
    assert effects.single.shape == (toy.cfg.n_layers, toy.cfg.n_heads)
    assert effects.clean == pytest.approx(float(metric(toy(tokens))), abs=1e-5)
    order, losses = R.greedy_ablation(toy, tokens, metric, "mean", reference)
    assert sorted(order) == R.every_head(toy) and len(losses) == len(order) + 1
    assert losses[0] == pytest.approx(effects.clean, abs=1e-5)
    assert losses[-1] == pytest.approx(effects.whole_loss, abs=1e-5)  # every head ablated, in any order
    assert losses[1] == pytest.approx(float(effects.single_loss.max()), abs=1e-5)  # greedy's first pick
    torch.testing.assert_close(
        R.losses_along(toy, tokens, metric, order, "mean", reference), losses, atol=1e-5, rtol=0
    )


def test_direct_effect_equals_a_hand_computation_through_ln_final_and_unembed(toy, setup):
    """Remove head h's output change from the final residual, normalise with the clean LayerNorm
    scale, unembed: the loss change must equal direct_effects."""
    tokens, metric, reference = setup
    heads = [(0, 2), (1, 1)]
    ours = R.direct_effects(toy, tokens, metric, "mean", reference, heads=heads)
    names = {"ln_final.hook_in", "ln_final.hook_scale", "blocks.0.attn.hook_z", "blocks.1.attn.hook_z"}
    logits, cache = toy.run_with_cache(tokens, names_filter=lambda n: n in names)
    ln = toy.ln_final._original_component
    for layer, head in heads:
        z = cache[f"blocks.{layer}.attn.hook_z"][:, :, head]
        z_mean = reference[f"blocks.{layer}.attn.hook_z"][:, :, head].mean(0, keepdim=True)
        resid = cache["ln_final.hook_in"] - (z - z_mean) @ toy.W_O[layer, head]
        centred = resid - resid.mean(-1, keepdim=True)
        edited = (centred / cache["ln_final.hook_scale"] * ln.weight + ln.bias) @ toy.W_U + toy.b_U
        expected = float(metric(edited) - metric(logits))
        assert float(ours[layer, head]) == pytest.approx(expected, abs=1e-4)
    assert torch.isnan(ours[0, 0])  # not asked for


@pytest.mark.filterwarnings("ignore:A forward hook edited hook_scale")
def test_direct_effect_of_a_last_layer_head_is_its_total_effect_with_ln_final_frozen(toy, setup):
    """In the last layer nothing but ln_final sits between a head and the logits: its ablation with
    the final LayerNorm's scale frozen must equal its direct effect exactly."""
    tokens, metric, reference = setup
    last = toy.cfg.n_layers - 1
    heads = [(last, h) for h in range(toy.cfg.n_heads)]
    direct = R.direct_effects(toy, tokens, metric, "mean", reference, heads=heads)
    _, cache = toy.run_with_cache(tokens, names_filter=lambda n: n == "ln_final.hook_scale")
    freeze = ("ln_final.hook_scale", lambda scale, hook: cache["ln_final.hook_scale"])
    clean = float(metric(toy(tokens)))
    for head in heads:
        total = float(
            metric(
                toy.run_with_hooks(
                    tokens, fwd_hooks=H.ablate_heads(toy, [head], "mean", reference) + [freeze]
                )
            )
        )
        assert float(direct[head]) == pytest.approx(total - clean, abs=1e-5)


def test_bad_ablation_requests_name_the_fix(toy, setup):
    tokens, metric, reference = setup
    with pytest.raises(ValueError, match="source_cache"):
        R.ablation_losses(toy, tokens, metric, [[(0, 0)]], "mean", None)
    with pytest.raises(ValueError, match="unknown ablation"):
        R.ablation_losses(toy, tokens, metric, [[(0, 0)]], "median", reference)
    with pytest.raises(ValueError, match="out of range"):
        R.direct_effects(toy, tokens, metric, "mean", reference, heads=[(0, 9)])


# ---------------------------------------------------------------------------------------------
# Self-repair split into LayerNorm rescaling and downstream heads


@pytest.fixture(scope="module")
def toy_1l(toy_model):
    return toy_model(ATTN_ONLY.replace(n_layers=1))


@pytest.mark.filterwarnings("ignore:A forward hook edited hook_scale")
def test_self_repair_of_a_layer_0_head_splits_into_layernorm_and_downstream_heads(toy, setup):
    """Ablating the head with every later component frozen at clean and the final LayerNorm's scale
    frozen leaves only the direct path: it must equal direct_effects (computed another way, by
    subtracting the head's output change at ln_final). The parts sum to the whole."""
    tokens, metric, reference = setup
    heads = [(0, h) for h in range(toy.cfg.n_heads)]
    split = R.self_repair_split(toy, tokens, metric, heads, "mean", reference)
    names = set(R.downstream_names(toy, 0)) | {"ln_final.hook_scale"}
    _, cache = toy.run_with_cache(tokens, names_filter=lambda n: n in names)
    clean = float(metric(toy(tokens)))
    freeze = [(name, lambda act, hook, name=name: cache[name]) for name in sorted(names)]
    for repair in split:
        ablated = H.ablate_heads(toy, [repair.head], "mean", reference)
        everything_frozen = float(metric(toy.run_with_hooks(tokens, fwd_hooks=ablated + freeze))) - clean
        assert repair.direct == pytest.approx(everything_frozen, abs=1e-4)
        total = float(metric(toy.run_with_hooks(tokens, fwd_hooks=ablated))) - clean
        assert repair.total == pytest.approx(total, abs=1e-5)
        assert repair.layernorm + repair.heads == pytest.approx(repair.repair, abs=1e-9)
        assert repair.downstream_frozen != pytest.approx(repair.total, abs=1e-6)  # layer 1 does respond


def test_heads_compensate_nothing_where_no_head_lies_downstream(toy, toy_1l):
    """In a 1-layer model, and for the last layer of any model, the downstream-heads part is exactly 0."""
    for model, layer in ((toy_1l, 0), (toy, toy.cfg.n_layers - 1)):
        tokens = repeat_tokens(0)
        reference = source_cache(model, repeat_tokens(1))
        split = R.self_repair_split(
            model, tokens, mean_loss(tokens), [(layer, h) for h in range(4)], "mean", reference
        )
        assert R.downstream_names(model, layer) == []
        for repair in split:
            assert repair.heads == 0.0 and repair.downstream_frozen == repair.total
            assert repair.layernorm == pytest.approx(repair.repair)


# ---------------------------------------------------------------------------------------------
# The Hydra effect: downstream heads' direct effects with and without an upstream ablation


def test_hydra_direct_effects_are_those_of_the_ablated_run(toy, setup):
    """With head (0, 1) mean-ablated, a layer-1 head's direct effect must equal the hand computation
    on the ablated run's own activations and final-LayerNorm scale; without the ablation, what
    direct_effects gives."""
    tokens, metric, reference = setup
    hydra = R.hydra_effect(toy, tokens, metric, (0, 1), "mean", reference)
    downstream = [(1, h) for h in range(toy.cfg.n_heads)]
    torch.testing.assert_close(
        hydra.clean,
        R.direct_effects(toy, tokens, metric, "mean", reference, heads=downstream),
        equal_nan=True,
    )
    assert torch.isnan(hydra.ablated[0]).all() and not torch.isnan(hydra.ablated[1]).any()
    names = {"ln_final.hook_in", "ln_final.hook_scale", "blocks.1.attn.hook_z"}
    ablate = H.ablate_heads(toy, [(0, 1)], "mean", reference)
    cache = {}
    keep = [(n, lambda act, hook, n=n: cache.__setitem__(n, act.clone())) for n in sorted(names)]
    logits = toy.run_with_hooks(tokens, fwd_hooks=ablate + keep)
    ln = toy.ln_final._original_component
    z_mean = reference["blocks.1.attn.hook_z"].mean(0, keepdim=True)
    for _, head in downstream:
        change = (cache["blocks.1.attn.hook_z"][:, :, head] - z_mean[:, :, head]) @ toy.W_O[1, head]
        resid = cache["ln_final.hook_in"] - change
        centred = resid - resid.mean(-1, keepdim=True)
        edited = (centred / cache["ln_final.hook_scale"] * ln.weight + ln.bias) @ toy.W_U + toy.b_U
        assert float(hydra.ablated[1, head]) == pytest.approx(
            float(metric(edited) - metric(logits)), abs=1e-4
        )
    assert hydra.compensation == pytest.approx(float((hydra.ablated[1] - hydra.clean[1]).sum()), abs=1e-6)
    assert hydra.compensation != pytest.approx(0.0, abs=1e-4)  # layer 1 does respond to layer 0


def test_hydra_compensation_is_zero_where_no_head_lies_downstream(toy, setup):
    tokens, metric, reference = setup
    hydra = R.hydra_effect(toy, tokens, metric, (toy.cfg.n_layers - 1, 0), "mean", reference)
    assert hydra.compensation == 0.0 and torch.isnan(hydra.clean).all()


def test_hydra_readers_are_the_heads_whose_direct_effect_falls_and_are_left_out():
    nan = math.nan
    clean = torch.tensor([[nan, nan], [0.5, 0.2], [0.1, 0.3]])
    ablated = torch.tensor([[nan, nan], [0.4, 0.6], [0.1, 0.1]])
    hydra = R.Hydra(Head(0, 0), clean, ablated)
    assert hydra.readers() == [Head(1, 0), Head(2, 1)]  # (2, 0) unchanged: not a reader
    assert hydra.compensation == pytest.approx(-0.1 + 0.4 + 0.0 - 0.2)
    assert hydra.compensation_without(hydra.readers()) == pytest.approx(0.4)
    assert hydra.compensation_without([]) == pytest.approx(hydra.compensation)
    assert torch.isnan(hydra.ablated[0]).all() and hydra.ablated[1, 0] == pytest.approx(0.4)  # not edited
