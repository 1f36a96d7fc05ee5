"""The exact primitives on Gemma-3-270m, checked against oracles.

Gemma's attention differs from SmolLM2's in every way a primitive could get wrong: 4 query heads
share ONE key/value head, five of every six layers use sliding-window attention, queries and keys
are normalised, and the unembedding has 262,144 rows. Each test runs one primitive against an
independent computation: TransformerLens's patching and head detector, full forwards without the
KV cache, and a hand computation of a head's output. Prompts are short (10-15 tokens) to keep CI
fast; every check is at float32 tolerance.
"""

from __future__ import annotations

import random

import pandas as pd
import pytest
import torch
from transformer_lens.patching import get_act_patch_attn_head_out_all_pos
from transformer_lens.utilities import get_act_name

from attnclaims import hooks as H
from attnclaims.interventions import RedirectAttention
from attnclaims.metrics import logit_diff
from attnclaims.patching import attention_row_sweep, head_out_patch_sweep
from tests.oracles import assert_scores_equal_head_detector

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

GEMMA = "gemma3-270m"
REL_TOL = 1e-4  # of the largest |value|, at least 1
CLEAN = "It rains, therefore I wear boots and a"
CORRUPTED = "It shines, therefore I wear boots and a"
IOI = "When Mary and John went to the store, John gave a drink to"
WORDS = ["cat", "dog", "house", "river", "green", "table", "music", "window", "paper", "horse"]  # 1 token
S = 7  # repeated words: BOS + 2S tokens


@pytest.fixture(scope="session")
def gemma(get_model, dtype):
    if dtype != "float32":
        pytest.skip(
            f"the Gemma oracle tests compare exact computations at float32 tolerance (--dtype {dtype})"
        )
    return get_model(GEMMA)


def scale(values: torch.Tensor) -> float:
    return max(1.0, float(values[~values.isnan()].abs().max()))


def layers_of_each_kind(model) -> tuple[int, int]:
    """The first sliding-window layer and the first full-attention layer."""
    kinds = model.original_model.config.layer_types
    return kinds.index("sliding_attention"), kinds.index("full_attention")


def test_gemma_is_the_checkpoint_described_and_the_bridge_equals_hf(gemma):
    assert (gemma.cfg.n_layers, gemma.cfg.n_heads, gemma.cfg.n_key_value_heads) == (18, 4, 1)
    assert (gemma.cfg.d_head, gemma.cfg.d_model, gemma.cfg.d_vocab) == (256, 640, 262_144)
    assert [
        i for i, kind in enumerate(gemma.original_model.config.layer_types) if kind == "full_attention"
    ] == [5, 11, 17]
    tokens = gemma.to_tokens("The capital of France is")
    logits = gemma(tokens)
    assert torch.equal(logits, gemma.original_model(tokens).logits)
    assert gemma.to_single_token(" Paris") in logits[0, -1].topk(5).indices


def test_head_out_sweep_equals_transformer_lens(gemma):
    """Our sweep of all 72 heads against TransformerLens's, which takes one forward per head: it
    runs on the heads of the first layer, a full-attention layer and the last layer (12 heads)."""
    clean, corrupted = gemma.to_tokens(CLEAN), gemma.to_tokens(CORRUPTED)
    assert clean.shape == corrupted.shape == (1, 10)
    metric = logit_diff(gemma.to_single_token(" coat"), gemma.to_single_token(" hat"))
    _, cache = gemma.run_with_cache(clean, names_filter=lambda name: name.endswith("hook_z"))
    layers = [0, layers_of_each_kind(gemma)[1], gemma.cfg.n_layers - 1]
    index = pd.DataFrame(
        [(layer, head) for layer in layers for head in range(gemma.cfg.n_heads)], columns=["layer", "head"]
    )
    oracle = get_act_patch_attn_head_out_all_pos(
        gemma, corrupted, cache, metric, index_axis_names=None, index_df=index
    )
    ours = head_out_patch_sweep(
        gemma, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric, show_progress=False
    )
    ours = ours[index["layer"].tolist(), index["head"].tolist()]
    assert (ours - oracle).abs().max() <= REL_TOL * scale(oracle)
    assert (oracle - float(metric(gemma(corrupted)))).abs().max() > 1e-2, (
        "no head moved the metric: a vacuous check"
    )


def test_kv_cache_redirect_equals_full_forwards_on_sliding_and_full_layers(gemma):
    tokens = gemma.to_tokens(IOI)
    mary = gemma.to_str_tokens(tokens).index(" Mary")
    metric = logit_diff(gemma.to_single_token(" Mary"), gemma.to_single_token(" John"))
    layers = layers_of_each_kind(gemma)
    heads = [(layer, head) for layer in layers for head in range(gemma.cfg.n_heads)]
    edit = H.one_hot_row(mary)
    cached = attention_row_sweep(
        gemma, tokens, edit, -1, metric=metric, heads=heads, kv_cache=True, show_progress=False
    )
    full = attention_row_sweep(
        gemma, tokens, edit, -1, metric=metric, heads=heads, kv_cache=False, show_progress=False
    )
    chosen = torch.zeros_like(full, dtype=torch.bool)
    chosen[[layer for layer, _ in heads], [head for _, head in heads]] = True
    assert full[~chosen].isnan().all() and not full[chosen].isnan().any()
    assert (cached[chosen] - full[chosen]).abs().max() <= REL_TOL * scale(full)
    for layer in layers:  # and a plain forward per head, outside the sweep engine
        plain = float(
            metric(gemma.run_with_hooks(tokens, fwd_hooks=RedirectAttention([(layer, 1)], mary).hooks(gemma)))
        )
        assert abs(cached[layer, 1] - plain) <= REL_TOL * scale(full)


def repeated_words(model, seed: int) -> tuple[str, torch.Tensor]:
    words = random.Random(seed).sample(WORDS, S)
    text = "".join(" " + word for word in words * 2)
    tokens = model.to_tokens(text)
    assert tokens.shape[1] == 1 + 2 * S, "every word must be one Gemma token"
    return text, tokens


def test_induction_and_previous_token_scores_equal_head_detector(gemma):
    """head_detector's "mul" measure divides by all rows: ours = TL * (2S+1)/S (induction) and
    TL * L/(L-1) (previous token), as in tests/test_scores.py."""
    text, tokens = repeated_words(gemma, seed=0)
    ours = assert_scores_equal_head_detector(gemma, text, tokens)
    assert ours.max() > 0.5, (
        "Gemma has induction heads (L5H1 scores 0.83 on random tokens): a vacuous check otherwise"
    )


def test_value_edit_of_one_query_head_leaves_its_kv_siblings_alone(gemma):
    """Four query heads read one key/value head. Editing the values that one of them reads must
    change that head's output to pattern @ edit(v) and leave the three siblings' outputs exact."""
    tokens = gemma.to_tokens(IOI)
    layer, head = layers_of_each_kind(gemma)[1], 2
    z_name, v_name, pattern_name = (get_act_name(kind, layer) for kind in ("z", "v", "pattern"))
    _, clean = gemma.run_with_cache(
        tokens, names_filter=[z_name, v_name, pattern_name], stop_at_layer=layer + 1
    )

    def edit(
        values: torch.Tensor,
    ) -> torch.Tensor:  # [batch, key_pos, d_head]: each key gets its neighbour's value
        return values.roll(1, dims=1)

    seen = {}

    def keep(z, hook):
        seen["z"] = z.detach().clone()

    hooks = H.edit_head_values(gemma, [(layer, head)], edit) + [(z_name, keep)]
    gemma.run_with_hooks(
        tokens, fwd_hooks=hooks, stop_at_layer=layer + 1
    )  # the layers after it cannot matter
    edited, before = seen["z"], clean[z_name]  # [batch, pos, head, d_head]
    siblings = [h for h in range(gemma.cfg.n_heads) if h != head]
    assert torch.equal(edited[:, :, siblings], before[:, :, siblings])
    by_hand = torch.einsum("bqk,bkd->bqd", clean[pattern_name][:, head], edit(clean[v_name][:, :, 0]))
    torch.testing.assert_close(edited[:, :, head], by_hand, rtol=1e-5, atol=1e-5)
    assert (edited[:, :, head] - before[:, :, head]).abs().max() > 1e-2, (
        "the edit changed nothing: a vacuous check"
    )


@pytest.mark.parametrize(
    "site, index, setter",
    [
        ("resid_pre", ("layer", "pos"), "layer_pos_patch_setter"),
        ("mlp_out", ("layer", "pos"), "layer_pos_patch_setter"),
        ("z", ("layer", "pos", "head"), "layer_pos_head_vector_patch_setter"),
        ("q", ("layer", "pos", "head"), "layer_pos_head_vector_patch_setter"),
        ("k", ("layer", "pos", "head"), "layer_pos_head_vector_patch_setter"),  # the one key/value head
    ],
)
def test_activation_patching_equals_transformer_lens(gemma, site, index, setter):
    """activation_patch_sweep's cells against TransformerLens's own loop on one cell per layer: the whole
    layer x position sweep, or (heads by position) the same cells as PatchActivation variants; q per
    query head, k per key/value head (Gemma's 4 query heads share 1)."""
    from transformer_lens import patching as tl

    from attnclaims.interventions import PatchActivation
    from attnclaims.patching import activation_patch_sweep
    from attnclaims.sweep import run_variants

    clean, corrupted = gemma.to_tokens(CLEAN), gemma.to_tokens(CORRUPTED)
    metric = logit_diff(gemma.to_single_token(" coat"), gemma.to_single_token(" hat"))
    _, cache = gemma.run_with_cache(clean)
    sizes = {
        "pos": clean.shape[1],
        "head": cache[get_act_name(site, 0)].shape[2] if site != "resid_pre" else 1,
    }
    rng = random.Random(0)
    cells = [
        (layer, *(rng.randrange(sizes[axis]) for axis in index[1:])) for layer in range(gemma.cfg.n_layers)
    ]
    sample = pd.DataFrame(cells, columns=["layer", *("head_index" if a == "head" else a for a in index[1:])])
    oracle = tl.generic_activation_patch(
        gemma, corrupted, cache, metric, getattr(tl, setter), site, index_df=sample
    )
    if len(index) == 2:
        ours = activation_patch_sweep(
            gemma, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric, site=site
        )
        ours = ours[tuple(torch.tensor(sample[c].to_numpy()) for c in sample.columns)]
    else:
        variants = {
            cell: PatchActivation(site, cell[0], tuple(zip(index[1:], cell[1:])), cache) for cell in cells
        }
        values = run_variants(gemma, corrupted, variants, metric)
        ours = torch.stack([values[cell] for cell in cells])
    assert (ours - oracle.cpu()).abs().max() <= REL_TOL * scale(oracle)
    assert float(oracle.std()) > 1e-3, "the cells do not differ: a vacuous check"
