"""Prompts of several lengths (lib/lengths.py): a sweep over them equals the per-length sweeps put back
in the order given, and what cannot be split by length is refused with the fix."""

from __future__ import annotations

import pytest
import torch

from attnclaims.hooks import move_fraction, move_row, one_hot_row, shift_mass
from attnclaims.interventions import AblateHeads, EditAttention, MoveAttention, PatchHeads, RedirectAttention
from attnclaims.lengths import length_groups
from attnclaims.metrics import logit_diff
from attnclaims.patching import attention_row_sweep, head_out_patch_sweep
from attnclaims.sweep import run_variants

LENGTHS = [9, 6, 12, 6, 9, 12, 12]  # three lengths, interleaved


def prompts(toy, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.cat(
            [torch.zeros(1, dtype=torch.long), torch.randint(2, toy.cfg.d_vocab, (n - 1,), generator=g)]
        )
        for n in LENGTHS
    ]


def answers(n: int, seed: int) -> torch.Tensor:
    return torch.randint(2, 20, (n,), generator=torch.Generator().manual_seed(seed))


def test_length_groups_keep_each_prompt_at_its_row(toy):
    groups = length_groups(prompts(toy))
    assert [rows for rows, _ in groups] == [[0, 4], [1, 3], [2, 5, 6]]
    assert [tuple(t.shape) for _, t in groups] == [(2, 9), (2, 6), (3, 12)]
    assert length_groups(torch.zeros(2, 5, dtype=torch.long)) is None


def test_run_variants_over_three_lengths_equals_each_length_on_its_own(toy):
    texts = prompts(toy)
    a, b = answers(len(texts), 2), answers(len(texts), 3)
    src = tuple(1 + i % 3 for i in range(len(texts)))  # per-prompt positions, inside every prompt
    variants = {
        "move": MoveAttention([(1, 0), (0, 2)], src=src, dst=tuple(s + 1 for s in src)),
        "redirect": RedirectAttention([(1, 1)], dst=src),
        "zero": AblateHeads([(0, 1)], "zero"),
        "clean": [],
    }
    metric = logit_diff(a, b, per_prompt=True)
    mixed = run_variants(toy, texts, variants, metric)
    for rows, tokens in length_groups(texts):
        pick = torch.tensor(rows)
        alone = run_variants(
            toy,
            tokens,
            {
                "move": MoveAttention(
                    [(1, 0), (0, 2)], src=[src[r] for r in rows], dst=[src[r] + 1 for r in rows]
                ),
                "redirect": RedirectAttention([(1, 1)], dst=[src[r] for r in rows]),
                "zero": AblateHeads([(0, 1)], "zero"),
                "clean": [],
            },
            logit_diff(a[pick], b[pick], per_prompt=True),
        )
        for key in variants:
            assert torch.equal(mixed[key][pick], alone[key]), key
    assert not torch.equal(mixed["move"], mixed["clean"])  # the edit acts


def test_a_head_out_sweep_over_three_lengths_equals_the_per_length_sweeps(toy):
    clean, corrupted = prompts(toy, 1), prompts(toy, 2)
    a, b = answers(len(clean), 4), answers(len(clean), 5)
    mixed = head_out_patch_sweep(
        toy, clean_tokens=clean, corrupted_tokens=corrupted, metric=logit_diff(a, b, per_prompt=True)
    )
    assert mixed.shape == (toy.cfg.n_layers, toy.cfg.n_heads, len(clean)) and not mixed.isnan().any()
    for rows, tokens in length_groups(clean):
        pick = torch.tensor(rows)
        alone = head_out_patch_sweep(
            toy,
            clean_tokens=tokens,
            corrupted_tokens=torch.stack([corrupted[r] for r in rows]),
            metric=logit_diff(a[pick], b[pick], per_prompt=True),
        )
        assert torch.equal(mixed[..., pick], alone)
    for i in (1, 2):  # and each prompt run alone, a batch of one (float rounding may differ with the batch)
        one = logit_diff(a[i : i + 1], b[i : i + 1], per_prompt=True)
        single = head_out_patch_sweep(
            toy, clean_tokens=clean[i][None], corrupted_tokens=corrupted[i][None], metric=one
        )
        torch.testing.assert_close(mixed[..., i], single[..., 0], rtol=1e-4, atol=1e-5)
    scalar = head_out_patch_sweep(  # one length, a scalar metric: the table TransformerLens gives
        toy,
        clean_tokens=clean[1::2][:1] * 2,
        corrupted_tokens=corrupted[1::2][:1] * 2,
        metric=logit_diff(a[0], b[0]),
    )
    assert scalar.shape == (toy.cfg.n_layers, toy.cfg.n_heads)


def test_an_attention_row_sweep_over_three_lengths_equals_the_per_length_sweeps(toy):
    """The row edits of attnclaims.hooks narrow their per-prompt positions to each length's prompts,
    through the KV-cached final-row path and the full forwards alike."""
    texts = prompts(toy)
    a, b = answers(len(texts), 6), answers(len(texts), 7)
    src = torch.tensor([1 + i % 3 for i in range(len(texts))])  # per-prompt positions and masses
    mass = torch.linspace(0.1, 0.7, len(texts))
    edits = {  # each edit built for the prompts `rows`
        "one_hot_row": lambda rows: one_hot_row(src[rows]),
        "move_row": lambda rows: move_row(src[rows].tolist(), (src[rows] + 1).tolist(), swap=True),
        "move_fraction": lambda rows: move_fraction(src[rows], 0, 0.5),
        "shift_mass": lambda rows: shift_mass(src[rows], mass[rows]),
    }
    everyone = list(range(len(texts)))
    for name, edit in edits.items():
        for kv_cache in (True, False):
            mixed = attention_row_sweep(
                toy, texts, edit(everyone), metric=logit_diff(a, b, per_prompt=True), kv_cache=kv_cache
            )
            assert mixed.shape == (toy.cfg.n_layers, toy.cfg.n_heads, len(texts)) and not mixed.isnan().any()
            for rows, tokens in length_groups(texts):
                pick = torch.tensor(rows)
                alone = attention_row_sweep(
                    toy,
                    tokens,
                    edit(rows),
                    metric=logit_diff(a[pick], b[pick], per_prompt=True),
                    kv_cache=kv_cache,
                )
                assert torch.equal(mixed[..., pick], alone), (name, kv_cache)
    clean = run_variants(toy, texts, {"c": []}, logit_diff(a, b, per_prompt=True))["c"]
    assert not torch.equal(mixed, clean.expand_as(mixed))  # the edit acts


@pytest.mark.parametrize(
    "case, message",
    [
        ("a spec holding a cache", "PatchHeads is tied to the prompts it was built for"),
        ("a metric with no select", r"metric.select\(rows\)"),
        ("a mean over prompts", "one value per prompt"),
        ("a pair of two lengths", "prompt 1: its corrupted text has 9 tokens and its pair 6"),
        ("a batch inside the list", "one prompt per entry"),
        ("a repeated variant", "distinct interventions"),
        ("a row edit of your own", r"give your row edit `edit.select\(rows\)`"),
    ],
)
def test_what_cannot_be_split_by_length_is_refused_with_the_fix(toy, case, message):
    texts = prompts(toy)
    a, b = answers(len(texts), 2), answers(len(texts), 3)
    with pytest.raises(ValueError, match=message):
        if case == "a spec holding a cache":
            _, cache = toy.run_with_cache(texts[0][None])
            run_variants(toy, texts, {"p": PatchHeads([(0, 0)], cache)}, logit_diff(a, b, per_prompt=True))
        elif case == "a metric with no select":
            run_variants(toy, texts, {"c": []}, lambda logits: logits[:, -1, 0])
        elif case == "a mean over prompts":
            run_variants(toy, texts, {"c": []}, logit_diff(a, b))
        elif case == "a batch inside the list":
            run_variants(
                toy, [torch.stack(texts[1::2][:2]), *texts], {"c": []}, logit_diff(2, 3, per_prompt=True)
            )
        elif case == "a row edit of your own":
            spec = EditAttention([(0, 1)], lambda row: row.flip(-1))
            run_variants(toy, texts, {"e": spec}, logit_diff(a, b, per_prompt=True))
        elif case == "a repeated variant":
            spec = AblateHeads([(0, 1)], "zero")
            run_variants(toy, texts, [spec, spec], logit_diff(a, b, per_prompt=True))
        else:
            swapped = [texts[0], texts[0], *texts[2:]]  # prompt 1 (6 tokens) paired with a 9-token text
            head_out_patch_sweep(
                toy, clean_tokens=texts, corrupted_tokens=swapped, metric=logit_diff(a, b, per_prompt=True)
            )
