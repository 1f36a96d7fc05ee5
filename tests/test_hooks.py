"""Interventions: identities, invariants and errors, on toy models and (GQA) smollm2-135m."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnclaims import hooks as H
from attnclaims.interventions import MoveAttention, RedirectAttention

SETTINGS = settings(max_examples=15, deadline=None)


def toks(model, seed=0, batch=3, length=12):
    g = torch.Generator().manual_seed(seed)
    body = torch.randint(2, model.cfg.d_vocab, (batch, length - 1), generator=g)
    return torch.cat([torch.zeros(batch, 1, dtype=torch.long), body], 1)


def heads_strategy(n_layers=2, n_heads=4):
    return st.lists(
        st.tuples(st.integers(0, n_layers - 1), st.integers(0, n_heads - 1)),
        min_size=0,
        max_size=4,
        unique=True,
    )


@pytest.fixture(params=["toy", "toy_mlp"])
def any_toy(request):
    return request.getfixturevalue(request.param)


@SETTINGS
@given(heads=heads_strategy(), seed=st.integers(0, 50))
def test_patching_clean_into_clean_is_identity(toy, heads, seed):
    tokens = toks(toy, seed)
    logits, cache = toy.run_with_cache(tokens)
    patched = toy.run_with_hooks(tokens, fwd_hooks=H.patch_heads(toy, heads, cache))
    torch.testing.assert_close(patched, logits, atol=1e-5, rtol=0)


@SETTINGS
@given(heads=heads_strategy(), q=st.integers(1, 11), seed=st.integers(0, 50))
def test_identity_row_edit_and_self_move_are_identities(toy, heads, q, seed):
    tokens = toks(toy, seed)
    clean = toy(tokens)
    same = toy.run_with_hooks(tokens, fwd_hooks=H.edit_attention_rows(toy, heads, q, lambda row: row))
    moved = toy.run_with_hooks(
        tokens, fwd_hooks=MoveAttention(heads, src=q // 2, dst=q // 2, query_pos=q).hooks(toy)
    )
    torch.testing.assert_close(same, clean, atol=1e-5, rtol=0)
    torch.testing.assert_close(moved, clean, atol=1e-5, rtol=0)


@SETTINGS
@given(
    heads=heads_strategy(),
    q=st.integers(1, 11),
    a=st.integers(0, 11),
    b=st.integers(0, 11),
    swap=st.booleans(),
)
def test_edited_rows_still_sum_to_one_and_respect_causality(toy, heads, q, a, b, swap):
    a, b = min(a, q), min(b, q)
    tokens = toks(toy)
    edits = MoveAttention(heads, src=a, dst=b, query_pos=q, swap=swap).hooks(toy)
    seen = {}
    watch = [
        (f"blocks.{l}.attn.hook_pattern", lambda p, hook: seen.__setitem__(hook.name, p)) for l in range(2)
    ]
    toy.run_with_hooks(tokens, fwd_hooks=edits + watch)
    for pattern in seen.values():
        torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]), atol=1e-5, rtol=0)
        assert pattern.triu(1).abs().max() <= 1e-6


def test_redirect_puts_all_weight_on_the_target(toy):
    tokens = toks(toy)
    seen = {}
    hooks = RedirectAttention([(1, 2)], dst=torch.tensor([3, 4, 5]), query_pos=-1).hooks(toy)
    hooks.append(("blocks.1.attn.hook_pattern", lambda p, hook: seen.setdefault("p", p)))
    toy.run_with_hooks(tokens, fwd_hooks=hooks)
    row = seen["p"][:, 2, -1]
    assert row[torch.arange(3), torch.tensor([3, 4, 5])].tolist() == [1.0, 1.0, 1.0]
    assert seen["p"][:, 1, -1].max() < 1.0  # other heads untouched


def test_pattern_overwrite_changes_the_output(toy):
    tokens = toks(toy)
    clean = toy(tokens)
    redirected = toy.run_with_hooks(
        tokens, fwd_hooks=RedirectAttention([(1, h) for h in range(4)], dst=0).hooks(toy)
    )
    assert (redirected[:, -1] - clean[:, -1]).abs().max() > 1e-3


def test_ablating_no_head_changes_nothing(any_toy):
    tokens = toks(any_toy)
    _, cache = any_toy.run_with_cache(tokens)
    for how in ("zero", "mean", "resample"):
        torch.testing.assert_close(
            any_toy.run_with_hooks(tokens, fwd_hooks=H.ablate_heads(any_toy, [], how, cache)), any_toy(tokens)
        )


def test_ablations_set_the_head_output(toy):
    tokens = toks(toy, batch=4)
    _, ref = toy.run_with_cache(toks(toy, seed=9, batch=4))
    for how, expected in [
        ("zero", lambda r: torch.zeros_like(r[:, :, 1])),
        ("mean", lambda r: r[:, :, 1].mean(0, keepdim=True).expand_as(r[:, :, 1])),
    ]:
        seen = {}
        hooks = H.ablate_heads(toy, [(0, 1)], how, ref) + [
            ("blocks.0.attn.hook_z", lambda z, hook, seen=seen: seen.setdefault("z", z))
        ]
        toy.run_with_hooks(tokens, fwd_hooks=hooks)
        torch.testing.assert_close(seen["z"][:, :, 1], expected(ref["blocks.0.attn.hook_z"]))
    seen = {}
    hooks = H.ablate_heads(toy, [(0, 1)], "resample", ref, seed=3) + [
        ("blocks.0.attn.hook_z", lambda z, hook: seen.setdefault("z", z))
    ]
    toy.run_with_hooks(tokens, fwd_hooks=hooks)
    source = ref["blocks.0.attn.hook_z"][:, :, 1]
    for i in range(4):  # every prompt got another prompt's output
        matches = [j for j in range(4) if torch.equal(seen["z"][i, :, 1], source[j])]
        assert matches and i not in matches


@pytest.mark.real_model
def test_value_edit_identity_and_sibling_isolation_on_gqa(model):
    tokens = model.to_tokens("When it rains I carry an umbrella, so I wear boots")
    layer, head = 5, 4
    sibling = 3  # shares key/value head 1 with query head 4
    assert H.kv_head_of(model, head) == H.kv_head_of(model, sibling) == 1
    clean_logits, cache = model.run_with_cache(tokens)
    same = model.run_with_hooks(tokens, fwd_hooks=H.edit_head_values(model, [(layer, head)], lambda v: v))
    torch.testing.assert_close(same, clean_logits, atol=1e-4, rtol=0)
    seen = {}
    hooks = H.swap_head_values(model, [(layer, head)], 2, 5) + [
        (f"blocks.{layer}.attn.hook_z", lambda z, hook: seen.setdefault("z", z))
    ]
    model.run_with_hooks(tokens, fwd_hooks=hooks)
    z0 = cache[f"blocks.{layer}.attn.hook_z"]
    assert (seen["z"][:, :, head] - z0[:, :, head]).abs().max() > 1e-3
    for other in range(model.cfg.n_heads):
        if other != head:
            torch.testing.assert_close(seen["z"][:, :, other], z0[:, :, other])


def test_value_edit_identity_on_toy(toy):
    tokens = toks(toy)
    torch.testing.assert_close(
        toy.run_with_hooks(tokens, fwd_hooks=H.edit_head_values(toy, [(0, 0), (1, 3)], lambda v: v)),
        toy(tokens),
        atol=1e-5,
        rtol=0,
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda m: RedirectAttention([(2, 0)], dst=1).hooks(m), r"layer 2 is out of range.*0\.\.1"),
        (lambda m: RedirectAttention([(0, 4)], dst=1).hooks(m), r"head 4 \(layer 0\) is out of range"),
        (lambda m: H.ablate_heads(m, [(0, 0)], "mean"), "needs reference_cache"),
        (lambda m: H.ablate_heads(m, [(0, 0)], "noise"), "unknown ablation"),
        (lambda m: H.patch_heads(m, [(0, 0)], {}, component="v"), "patch_kv_heads"),
    ],
)
def test_bad_arguments_are_named(toy, make, message):
    with pytest.raises(ValueError, match=message):
        make(toy)


def test_positions_outside_the_sequence_are_named(toy):
    with pytest.raises(ValueError, match=r"dst=\[40\] is outside the sequence of length 12"):
        toy.run_with_hooks(toks(toy, batch=1), fwd_hooks=RedirectAttention([(0, 0)], dst=40).hooks(toy))


@pytest.mark.real_model
def test_final_row_value_swap_equals_final_row_weight_swap(model):
    """z = sum_k p_k v_k: swapping v_a and v_b at one query row is swapping p_a and p_b there."""
    tokens = model.to_tokens("When it rains I carry an umbrella, so I wear boots and not shoes")
    heads = [(3, 4), (23, 2), (23, 1)]
    by_values = model.run_with_hooks(tokens, fwd_hooks=H.swap_head_values(model, heads, 9, 12, query_pos=-1))
    by_pattern = model.run_with_hooks(tokens, fwd_hooks=MoveAttention(heads, 9, 12, swap=True).hooks(model))
    assert (by_values - model(tokens)).abs().max() > 1e-3
    torch.testing.assert_close(by_values, by_pattern, atol=1e-4, rtol=0)


@given(
    batch=st.integers(2, 9),
    data=st.data(),
    kind=st.sampled_from(["one_hot_row", "move_row", "move_fraction", "shift_mass"]),
)
@settings(max_examples=60, deadline=None)
def test_a_narrowed_row_edit_edits_its_prompts_as_the_whole_batch_does(batch, data, kind):
    """`edit.select(rows)` on the rows of a batch gives those rows of the edit on the whole batch, for
    per-prompt positions and masses and for one shared by every prompt."""
    length = 7
    rows = sorted(data.draw(st.sets(st.integers(0, batch - 1), min_size=1)))
    pos = data.draw(
        st.one_of(
            st.integers(-length, length - 1),
            st.lists(st.integers(0, length - 1), min_size=batch, max_size=batch),
        )
    )
    other = torch.tensor(data.draw(st.lists(st.integers(0, length - 1), min_size=batch, max_size=batch)))
    mass = torch.rand(batch, generator=torch.Generator().manual_seed(batch))
    edit = {
        "one_hot_row": lambda: H.one_hot_row(pos),
        "move_row": lambda: H.move_row(pos, other),
        "move_fraction": lambda: H.move_fraction(torch.as_tensor(pos), other, 0.3),
        "shift_mass": lambda: H.shift_mass(pos, mass),
    }[kind]()
    row = torch.rand(batch, length, generator=torch.Generator().manual_seed(length)).softmax(-1)
    assert torch.equal(edit.select(rows)(row[rows]), edit(row)[rows])
    assert H.rows_of(3, rows) == 3
