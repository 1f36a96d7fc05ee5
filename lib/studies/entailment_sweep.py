"""Minimal pairs as position-matched buckets, the metrics read from them, and the sweep over them.

    bucket_list = buckets(pairs, meta)  # pairs: attnclaims.protocols.tokenize_pairs; meta: columns per pair
    patterns = [(get_act_name("pattern", layer), layer) for layer in range(model.cfg.n_layers)]
    watched = lambda arm, store: [watch(store, arm, name, layer=layer) for name, layer in patterns]
    frame, stores = sweep(model, bucket_list, [CLEAN], lambda b, i, s: None, capture=watched)
    attention = attention_frame(bucket_list, stores, CLEAN, range(model.cfg.n_layers))
    behaviour = sensitivity_by_pair(frame)  # per pair: LD(text a) - LD(text b)

A bucket stacks pairs of one token length, row 2i text a and row 2i+1 text b, so that an arm's
hooks act on every pair at once (attnclaims.sweep.run_variants). Every frame here has one row per prompt
(per prompt x head for attention), carrying the pair's table columns: pair, family, group, words,
hops, order, crossed, split, swept, text ("a"/"b").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from transformer_lens.utilities import get_act_name

from attnclaims.arms import check_arms
from attnclaims.metrics import logit_diff, reads, target_prob, top1_is
from attnclaims.patching import split_qkv_input
from attnclaims.protocols import PairTokens, pair_sensitivity
from attnclaims.sweep import run_variants


@dataclass(frozen=True)
class Bucket:
    """Pairs of one token length, stacked: row 2i is pair i's text a, row 2i+1 its text b."""

    tokens: torch.Tensor  # [2n, pos]
    entailed_id: torch.Tensor  # [2n]
    alternative_id: torch.Tensor  # [2n]
    entailed_pos: torch.Tensor  # [2n]
    alternative_pos: torch.Tensor  # [2n]
    rows: pd.DataFrame  # one row per prompt: pair, family, words, order, crossed, text ("a"/"b")
    bridge_pos: torch.Tensor | None = None  # [2n] two hops: the entailed chain's bridge, where first stated
    other_bridge_pos: torch.Tensor | None = None  # [2n] the other chain's


def buckets(pairs: list[PairTokens], meta: dict[str, dict]) -> list[Bucket]:
    """Stack pairs of equal length (and equal split, hops and `swept`, when `meta` has them);
    `meta[pair.name]` gives each pair's table columns."""
    by_length: dict[tuple, list[PairTokens]] = {}
    for p in pairs:
        key = (meta[p.name].get("split"), meta[p.name].get("hops"), meta[p.name].get("swept"), p.length)
        by_length.setdefault(key, []).append(p)
    out = []
    for group in by_length.values():
        ids = [(p.ids[0], p.ids[1]) for p in group]
        pos = [(p.answer_pos[0], p.answer_pos[1]) for p in group]

        def rows_of(values, entailed: bool) -> torch.Tensor:  # text a entails a, text b entails b
            flat = [(a, b) if entailed else (b, a) for a, b in values]
            return torch.tensor([x for pair in flat for x in pair])

        rows = pd.DataFrame(
            [{"pair": p.name, **meta[p.name], "text": text} for p in group for text in ("a", "b")]
        )
        bridges = [p.bridge_pos for p in group]
        two_hops = all(b is not None for b in bridges)
        out.append(
            Bucket(
                torch.cat([p.tokens for p in group]),
                rows_of(ids, True),
                rows_of(ids, False),
                rows_of(pos, True),
                rows_of(pos, False),
                rows,
                rows_of(bridges, True) if two_hops else None,
                rows_of(bridges, False) if two_hops else None,
            )
        )
    return out


def ld_metric(bucket: Bucket):
    """Per prompt: logit(entailed answer) - logit(alternative) at the final position."""
    return logit_diff(bucket.entailed_id, bucket.alternative_id, per_prompt=True)


def answer_metric(bucket: Bucket):
    """Per prompt: [LD, 1.0 where the top-1 token at the final position is the entailed answer]."""
    ld, top1 = (
        logit_diff(bucket.entailed_id, bucket.alternative_id, per_prompt=True),
        top1_is(bucket.entailed_id),
    )
    return reads(-1, lambda logits: torch.stack([ld(logits), top1(logits)], 1))


def alternative_metric(bucket: Bucket):
    """Per prompt: [1.0 where the top-1 token at the final position is the alternative answer, the
    probability of the alternative there] (one run read both ways: each needs every logit)."""
    top1, prob = top1_is(bucket.alternative_id), target_prob(bucket.alternative_id, per_prompt=True)
    return reads(-1, lambda logits: torch.stack([top1(logits), prob(logits)], 1))


def other_groups_mean(bucket_list, stores, bucket: Bucket, key) -> torch.Tensor:
    """[1, pos, ...]: the mean of store[key] ([batch, pos, ...], every position) over the two-hop
    prompts of every other group than `bucket`'s (never the prompts it is the reference of), matched
    by position: BOS to BOS, then counted from the end (the shared ", so I wear" ending), each
    position averaged over the prompts long enough to have it."""
    own = set(bucket.rows.group)
    length = bucket.tokens.shape[1]
    total, count = None, torch.zeros(length)
    for other, store in zip(bucket_list, stores):
        keep = torch.tensor(((~other.rows.group.isin(own)) & (other.rows.hops == 2)).to_numpy())
        if not bool(keep.any()):
            continue
        acts = store[key][keep]  # [n, pos_other, ...]
        aligned = torch.zeros(acts.shape[0], length, *acts.shape[2:], dtype=acts.dtype)
        have = torch.zeros(length)
        tail = min(length - 1, acts.shape[1] - 1)
        aligned[:, 0] = acts[:, 0]
        aligned[:, length - tail :] = acts[:, acts.shape[1] - tail :]
        have[0], have[length - tail :] = 1, 1
        summed = aligned.sum(0)
        total = summed if total is None else total + summed
        count += have * acts.shape[0]
    if total is None or bool((count == 0).any()):
        raise ValueError(f"no other group's prompts cover every position of a {length}-token bucket")
    return (total / count.view(-1, *([1] * (total.ndim - 1))))[None]


EVERY_POSITION = "clean, every position"  # the store key of a clean activation kept at every position


def output_change(stores, references, heads) -> float:
    """How far a mean ablation moves `heads`' final-position output: |reference - clean| / |clean| of
    hook_z (the clean z kept at every position, store[(EVERY_POSITION, name)]), averaged over prompts
    and heads (0 would make the ablation a no-op)."""
    ratios = []
    for store, reference in zip(stores, references):
        for layer, head in heads:
            name = get_act_name("z", layer)
            clean = store[(EVERY_POSITION, name)][:, -1, head]  # [batch, d_head]
            ref = reference[name][:, -1, head]
            ratios.append(((ref - clean).norm(dim=-1) / clean.norm(dim=-1).clamp_min(1e-12)).mean())
    return float(torch.stack(ratios).mean())


def sweep(
    model,
    bucket_list,
    arms,
    prompts_of: Callable,
    metric=ld_metric,
    split_q: bool = False,
    names=("value",),
    capture: Callable | None = None,
):
    """(one row per prompt and arm, with the arm's name in `arm` and its measures in `names`, one
    capture store per bucket).

    `prompts_of(bucket, index, store)` is what each arm builds its intervention from
    (entailment_arms.Prompts); `capture(arm, store)` gives hooks that keep activations of that arm's
    run in `store` (pair_hooks.watch). A metric of k values per prompt fills k columns, `names`."""
    arms = check_arms(arms)
    frames, stores = [], []
    for index, bucket in enumerate(bucket_list):
        store: dict = {}
        prompts = prompts_of(bucket, index, store)
        hooks = {}
        for arm in arms:
            built, watched = arm.build(prompts), capture(arm, store) if capture is not None else []
            hooks[arm] = [*(built if isinstance(built, list) else [built]), *watched] if watched else built
        if split_q:
            with split_qkv_input(model):
                values = run_variants(model, bucket.tokens, hooks, metric(bucket))
        else:
            values = run_variants(model, bucket.tokens, hooks, metric(bucket))
        for arm, value in values.items():
            columns = value.reshape(len(bucket.rows), -1).numpy()
            if columns.shape[1] != len(names):
                raise ValueError(
                    f"the metric gives {columns.shape[1]} values per prompt for {len(names)} names"
                )
            figures = {name: columns[:, i] for i, name in enumerate(names)}
            frames.append(bucket.rows.assign(arm=arm.name, **figures))
        stores.append(store)
    return pd.concat(frames, ignore_index=True), stores


def attention_frame(bucket_list, stores, key, layers, offset: int = 0) -> pd.DataFrame:
    """Per prompt x head: final-row attention on the entailed and alternative answers (+offset), on
    the later and earlier of them, and (two hops) on the entailed chain's bridge and the other's;
    `follows` = entailed - alternative (hop 2), `follows_bridge` = bridge - other bridge (hop 1)."""
    frames = []
    for bucket, store in zip(bucket_list, stores):
        rows = torch.arange(len(bucket.rows))
        e, a = bucket.entailed_pos + offset, bucket.alternative_pos + offset
        later = torch.maximum(bucket.entailed_pos, bucket.alternative_pos) + offset
        earlier = torch.minimum(bucket.entailed_pos, bucket.alternative_pos) + offset
        for layer in layers:
            pattern = store[(key, get_act_name("pattern", layer))]  # [batch, head, key]
            for head in range(pattern.shape[1]):
                weights = pattern[:, head]
                bridges = {"bridge": math.nan, "other_bridge": math.nan}
                if bucket.bridge_pos is not None:
                    bridges = {
                        "bridge": weights[rows, bucket.bridge_pos].numpy(),
                        "other_bridge": weights[rows, bucket.other_bridge_pos].numpy(),
                    }
                frames.append(
                    bucket.rows.assign(
                        layer=layer,
                        head=head,
                        entailed=weights[rows, e].numpy(),
                        alternative=weights[rows, a].numpy(),
                        later=weights[rows, later].numpy(),
                        earlier=weights[rows, earlier].numpy(),
                        **bridges,
                    )
                )
    frame = pd.concat(frames, ignore_index=True)
    frame["follows"] = frame.entailed - frame.alternative
    frame["follows_bridge"] = frame.bridge - frame.other_bridge
    return frame


def sensitivity_by_pair(frame: pd.DataFrame, column: str = "value") -> pd.DataFrame:
    """Per pair (and arm): the sensitivity LD(text a) - LD(text b) of `column`, a per-prompt LD toward
    each text's own entailed answer (attnclaims.protocols.pair_sensitivity, on a table)."""
    keys = [
        c
        for c in ("arm", "pair", "family", "group", "words", "hops", "order", "crossed", "split")
        if c in frame
    ]
    ordered = frame.sort_values([*keys, "text"], kind="stable")
    if not (ordered.text.to_numpy()[0::2] == "a").all() or not (ordered.text.to_numpy()[1::2] == "b").all():
        raise ValueError("each pair needs its two texts, a and b, to give a sensitivity")
    pairs = ordered.iloc[0::2][keys].reset_index(drop=True)
    return pairs.assign(**{column: pair_sensitivity(torch.tensor(ordered[column].to_numpy())).numpy()})
