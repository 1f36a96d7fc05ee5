"""Does the model entail, or copy? And do the heads whose attention switches its answer carry either?

Question. Given "If it is wet, I take an umbrella. If it is dry, I leave the umbrella at home. When I
take an umbrella, I wear boots. When I leave the umbrella at home, I wear shoes. Today it is wet, so
I wear", does the answer follow the fact ("wet" -> boots, "dry" -> shoes), and which heads carry it?

What counts as entailment: the answer moves with the fact when nothing else changes. Each minimal
pair (prompts/entailment.py) is two texts that differ in the fact's word alone; rules, answer words
and answer positions are the same. Sensitivity = LD(text a) - LD(text b), LD = logit(answer a) -
logit(answer b) at the final position (lib.protocols.entailment_sensitivity): recency, a favourite
word or copying what followed an earlier "I wear" are the same in both texts and cancel. Rule
orders are crossed in half the pairs (conditions a-first, answers b-first), where "the answer in
the same place as the matching condition" is wrong: sensitivity there is more than order matching.

What counts as copying: a head at the final "I wear" that attends to the tokens after earlier
"I wear"s (an induction head, or a head fed by one) and writes them out. Moving its weight from one
answer to the other moves LD whether or not anything follows the fact; it does not make its
attention depend on the fact.

Which claims tell them apart: (a) sensitivity, two-hop, crossed orders, one-hop control; (b) heads
whose final-row attention follows the fact, selected on discovery families and confirmed on the
others, and whether giving them the other fact's pattern removes the sensitivity; (c) the copy
account: switch effect vs induction score over all heads, mean-ablating the top induction heads
(switch heads' attention on the answers, their recency bias), the same ablation reaching the switch
heads through their queries only (path patching), and what is left of the sensitivity without
them; (d) the seed's switch, rebuilt: top heads by discovery switch effect, held-out families,
matched controls, dose-response, additivity, the seed's one-hot redirect, flips of the top-1 token;
(e) where vs what, and the switch's direct vs total effect.

Protocol (lib.protocols, lib.sweep.run_variants; every stacked forward goes through run_variants)
1. Pairs whose texts tokenize to equal length with single-token answers on the model; families are
   split once into discovery (1/3) and confirmation (2/3) (lib.stats.discovery_confirmation_split).
2. Clean run of every prompt: LD, final-row attention of every head, and the activations the later
   steps freeze or use as the mean-ablation reference.
3. Discovery: fact-following score of every head, F = mean over a pair's two texts of
   attention(entailed) - attention(alternative) at the final row (a head whose looking ignores the
   fact scores 0); switch effect of every head alone = change of LD(entailed - alternative) when its
   final-row weight on the entailed answer moves to the alternative (one order per family).
4. Confirmation families: the interventions of (b)-(e) against their controls.
Each family is used in two rule orders, one same and one crossed (ORDER_SETS, alternating between
families so that both condition orders occur); the discovery sweep uses one of them per family.
5. Toy positive control (lib/tasks/entailment.py "rule-recall", 2-layer attention-only): its heads
   must route the queried rule's answer, so sensitivity and the fact heads' pattern swap must work.

Measures, in nats unless said: delta = LD(intervention) - LD(clean) per prompt, averaged over a
family's prompts; flip = the top-1 token changes; every CI is a 95% bootstrap over families.
Controls: K random heads of the top heads' layers (never a top head), or K heads drawn from the top
decile of final-row attention to the entailed answer (never a top head); their own effects are in
each claim's note.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from transformer_lens.utilities import get_act_name

from lib import hooks as H
from lib.metrics import logit_diff, reads, target_prob
from lib.patching import split_qkv_input
from lib.protocols import (
    PairTokens,
    freeze_after,
    move_fraction,
    partner_row,
    path_to_queries,
    tokenize_pairs,
    watch,
)
from lib.scores import induction_scores
from lib.stats import bootstrap_ci, discovery_confirmation_split
from lib.sweep import run_variants
from lib.tasks import TASKS, ordinary_token_ids, random_repeats
from lib.toy import ToyConfig
from prompts.entailment import minimal_pairs

K = 3  # heads switched together (the seed's choice)
DOSE_K = (1, 3, 5, 10)
DOSE_ALPHA = (0.0, 0.25, 0.5, 0.75, 1.0)
CONTROL_DRAWS = 3
N_INDUCTION = 5  # top induction heads mean-ablated
DISCOVERY_FRACTION = 1 / 3
ORDER_SETS = (("ab/ab", "ab/ba"), ("ba/ba", "ba/ab"))  # per family, alternating: one same, one crossed
TOY = ToyConfig(task="rule-recall", n_layers=2, n_content=16, steps=600, log_every=50)
TOY_OFFSET = 1  # the toy's layer-1 heads read each answer from the token after it (log, 2026-11-24)
TOY_PROMPTS = 48
# Claims the data refuted (see the log); each runs as a strict xfail, so a change in the science fails CI.
REFUTED = {
    "test_answer_follows_the_fact[one-hop]@smollm2-135m": "sensitivity 0.15 [-0.11, 0.40], 23 families",
    "test_answer_follows_the_fact_when_rule_orders_are_crossed@smollm2-135m": "-0.10 [-0.27, 0.05]",
    "test_fact_heads_follow_the_fact_on_heldout_families@smollm2-135m": "0.008 [-0.009, 0.023] over control",
    "test_fact_heads_pattern_carries_the_sensitivity@smollm2-135m": "share removed -0.55 [-5.4, 1.7]",
    "test_switch_effect_tracks_induction_score@smollm2-135m": "Spearman 0.31 [0.21, 0.33]",
    "test_ablating_induction_heads_removes_switch_heads_attention_on_answers@smollm2-135m": "-0.003",
    "test_sensitivity_survives_induction_ablation@smollm2-135m": "0.01 [-0.13, 0.15] after ablation",
    "test_intervention_flips_the_top1_token_beyond_its_control[switch]@smollm2-135m": "0.28 [0.19, 0.36]",
    "test_intervention_flips_the_top1_token_beyond_its_control[seed_redirect]@smollm2-135m": "-0.27",
    "test_fact_changes_where_switch_heads_look_more_than_what_they_read@smollm2-135m": "-0.12 [-0.26, 0.03]",
}


# ---------------------------------------------------------------------------------------------
# Prompts as position-matched buckets


@dataclass(frozen=True)
class Bucket:
    """Pairs of one token length, stacked: row 2i is pair i's text a, row 2i+1 its text b."""

    tokens: torch.Tensor  # [2n, pos]
    entailed_id: torch.Tensor  # [2n]
    alternative_id: torch.Tensor  # [2n]
    entailed_pos: torch.Tensor  # [2n]
    alternative_pos: torch.Tensor  # [2n]
    rows: pd.DataFrame  # one row per prompt: pair, family, words, order, crossed, text ("a"/"b")


def buckets(pairs: list[PairTokens], meta: dict[str, dict]) -> list[Bucket]:
    """Stack pairs of equal length (and equal split, hops and `swept`, when `meta` has them);
    `meta[pair.label]` gives each pair's table columns."""
    by_length: dict[tuple, list[PairTokens]] = {}
    for p in pairs:
        key = (meta[p.label].get("split"), meta[p.label].get("hops"), meta[p.label].get("swept"), p.length)
        by_length.setdefault(key, []).append(p)
    out = []
    for group in by_length.values():
        ids = [(p.ids[0], p.ids[1]) for p in group]
        pos = [(p.answer_pos[0], p.answer_pos[1]) for p in group]

        def rows_of(values, entailed: bool) -> torch.Tensor:  # text a entails a, text b entails b
            flat = [(a, b) if entailed else (b, a) for a, b in values]
            return torch.tensor([x for pair in flat for x in pair])

        rows = pd.DataFrame(
            [{"pair": p.label, **meta[p.label], "text": text} for p in group for text in ("a", "b")]
        )
        out.append(
            Bucket(
                torch.cat([p.tokens for p in group]),
                rows_of(ids, True),
                rows_of(ids, False),
                rows_of(pos, True),
                rows_of(pos, False),
                rows,
            )
        )
    return out


def ld_metric(bucket: Bucket):
    return logit_diff(bucket.entailed_id, bucket.alternative_id, per_prompt=True)


def top1_metric(bucket: Bucket):
    return reads(-1, lambda logits: logits[:, -1].argmax(-1).float())


def p_alternative_metric(bucket: Bucket):
    return target_prob(bucket.alternative_id, per_prompt=True)


def sweep(model, bucket_list, variants: Callable, metric=ld_metric, split_q: bool = False):
    """(one row per prompt and variant with its `value`, one capture store per bucket).

    `variants(bucket, index, store)` returns {key: hooks}; hooks may write captures to `store`."""
    frames, stores = [], []
    for index, bucket in enumerate(bucket_list):
        store: dict = {}
        hooks = variants(bucket, index, store)
        if split_q:
            with split_qkv_input(model):
                values = run_variants(model, bucket.tokens, hooks, metric(bucket))
        else:
            values = run_variants(model, bucket.tokens, hooks, metric(bucket))
        for key, value in values.items():
            frames.append(bucket.rows.assign(variant=[key] * len(bucket.rows), value=value.numpy()))
        stores.append(store)
    return pd.concat(frames, ignore_index=True), stores


# ---------------------------------------------------------------------------------------------
# The study, computed once per model


@dataclass(frozen=True)
class Study:
    name: str  # the model, as the ledger records it
    skipped: dict  # pairs this model cannot use, with the reason
    behaviour: pd.DataFrame  # per pair: family, words, hops, order, crossed, split, sensitivity
    attention: pd.DataFrame  # per prompt x head: entailed / alternative / later-answer attention
    induction: np.ndarray  # [layer, head] induction scores
    switch_by_family: pd.DataFrame  # discovery: per family x head, mean delta LD of the single-head switch
    fact_heads: list  # top K by discovery fact-following score
    switch_heads: list  # top 10 by discovery switch effect (most negative first)
    seed_heads: list  # top K by discovery attention to the entailed answer (the seed's selection)
    induction_heads: list  # top N_INDUCTION by induction score, outside the switch heads
    same_layer: list  # CONTROL_DRAWS draws of K heads in the switch heads' layers
    decile: list  # CONTROL_DRAWS draws of K heads from the top attention decile
    confirm: pd.DataFrame  # confirmation: per prompt x variant, LD / top-1 / p(alternative)
    captures: pd.DataFrame  # confirmation: switch heads' attention per prompt x variant


def label(p) -> str:
    return f"{p.family}/{p.hops}/{p.order}"


def meta_of(p, split: dict, swept: dict) -> dict:
    return {
        "family": p.family,
        "words": p.words,
        "hops": p.hops,
        "order": p.order,
        "crossed": p.crossed,
        "split": split.get(p.family, "confirmation"),
        "swept": p.hops == 2 and p.order in swept[p.family],
    }


def attention_frame(bucket_list, stores, key, layers, offset: int = 0) -> pd.DataFrame:
    """Per prompt x head: final-row attention on the entailed and alternative answers (+offset)."""
    frames = []
    for bucket, store in zip(bucket_list, stores):
        rows = torch.arange(len(bucket.rows))
        e, a = bucket.entailed_pos + offset, bucket.alternative_pos + offset
        later = torch.maximum(bucket.entailed_pos, bucket.alternative_pos) + offset
        earlier = torch.minimum(bucket.entailed_pos, bucket.alternative_pos) + offset
        for layer in layers:
            pattern = store[(key, get_act_name("pattern", layer))]  # [batch, head, key]
            for head in range(pattern.shape[1]):
                frames.append(
                    bucket.rows.assign(
                        layer=layer,
                        head=head,
                        entailed=pattern[rows, head, e].numpy(),
                        alternative=pattern[rows, head, a].numpy(),
                        later=pattern[rows, head, later].numpy(),
                        earlier=pattern[rows, head, earlier].numpy(),
                    )
                )
    frame = pd.concat(frames, ignore_index=True)
    frame["follows"] = frame.entailed - frame.alternative
    return frame


def top_heads(series: pd.Series, k: int, largest: bool = True) -> list[tuple[int, int]]:
    picked = series.nlargest(k) if largest else series.nsmallest(k)
    return [tuple(map(int, index)) for index in picked.index]


def sensitivity_by_pair(frame: pd.DataFrame, column: str = "value") -> pd.DataFrame:
    """Per pair: LD_entailed(a) + LD_entailed(b) = LD(text a) - LD(text b), the sensitivity."""
    keys = [
        c for c in ("variant", "pair", "family", "words", "hops", "order", "crossed", "split") if c in frame
    ]
    return frame.groupby(keys, as_index=False)[column].sum()


@pytest.fixture(scope="module")
def study(model, model_name) -> Study:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    every_head = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    families = sorted({p.family for p in minimal_pairs(2)})
    discovery, _ = discovery_confirmation_split(families, confirm_fraction=1 - DISCOVERY_FRACTION, seed=0)
    split = {f: "discovery" for f in discovery}
    orders = {f: ORDER_SETS[i % 2] for i, f in enumerate(families)}
    two_hop_pairs = [p for p in minimal_pairs(2) if p.order in orders[p.family]]
    two_hop, skipped = tokenize_pairs(model, two_hop_pairs, label)
    one_hop, skipped_1 = tokenize_pairs(model, minimal_pairs(1), label)
    swept = {f: orders[f] if f not in split else (orders[f][i % 2],) for i, f in enumerate(families)}
    meta = {label(p): meta_of(p, split, swept) for p in minimal_pairs(2) + minimal_pairs(1)}

    # Induction (copy) scores on repeated random tokens.
    rep = random_repeats(model, ordinary_token_ids(model), seed=0, batch=8, seq_len=24)
    induction = induction_scores(model, rep).numpy()

    # Clean run: LD, every head's final row, and what later steps freeze or use as a reference.
    patterns = [get_act_name("pattern", layer) for layer in range(n_layers)]
    finals = [get_act_name(kind, layer) for layer in range(n_layers) for kind in ("z", "mlp_out")] + [
        "ln_final.hook_scale"
    ]
    top_induction = top_heads(
        pd.Series(induction.flatten(), index=pd.MultiIndex.from_tuples(every_head)), 3 * N_INDUCTION
    )
    full_z = sorted({get_act_name("z", layer) for layer, _ in top_induction})

    def clean_variant(bucket, index, store):
        hooks = [watch(store, "clean", name) for name in patterns + finals]
        return {"clean": hooks + [watch(store, "clean_full", name, final=False) for name in full_z]}

    all_buckets = buckets(two_hop, meta) + buckets(one_hop, meta)
    clean, clean_stores = sweep(model, all_buckets, clean_variant)
    behaviour = sensitivity_by_pair(clean).rename(columns={"value": "sensitivity"})
    attention = attention_frame(all_buckets, clean_stores, "clean", range(n_layers))
    two = attention.query("hops == 2")
    disc_attention = two.query("split == 'discovery'").groupby(["layer", "head"])
    fact_heads = top_heads(disc_attention.follows.mean(), K)
    seed_heads = top_heads(disc_attention.entailed.mean(), K)

    # Discovery: every head's single switch, one rule order per family.
    disc_pairs = [p for p in two_hop if meta[p.label]["split"] == "discovery" and meta[p.label]["swept"]]

    def single_switches(bucket, index, store):
        e, a = bucket.entailed_pos, bucket.alternative_pos
        return {"clean": [], **{head: H.move_attention(model, [head], e, a) for head in every_head}}

    disc, _ = sweep(model, buckets(disc_pairs, meta), single_switches)
    disc["prompt"] = disc.pair + ":" + disc.text
    clean_disc = disc[disc.variant == "clean"].set_index("prompt").value
    disc = disc[disc.variant != "clean"].copy()
    disc["delta"] = disc.value - disc.prompt.map(clean_disc)
    disc["layer"], disc["head"] = disc.variant.str[0], disc.variant.str[1]
    switch_by_family = disc.groupby(["family", "layer", "head"], as_index=False).delta.mean()
    per_head = switch_by_family.groupby(["layer", "head"]).delta.mean()
    switch_heads = top_heads(per_head, max(DOSE_K), largest=False)
    top = switch_heads[:K]
    induction_heads = [
        h for h in top_induction if h not in switch_heads and h[0] < min(lyr for lyr, _ in top)
    ][:N_INDUCTION]

    rng = random.Random(0)
    layers = sorted({layer for layer, _ in top})
    pool = [
        (layer, head) for layer in layers for head in range(n_heads) if (layer, head) not in switch_heads[:K]
    ]
    same_layer = [rng.sample(pool, K) for _ in range(CONTROL_DRAWS)]
    attention_rank = disc_attention.entailed.mean()
    decile_pool = [h for h in top_heads(attention_rank, max(len(every_head) // 10, 2 * K)) if h not in top]
    decile = [rng.sample(decile_pool, K) for _ in range(CONTROL_DRAWS)]
    fact_control = rng.sample(
        [h for h in every_head if h[0] in {lyr for lyr, _ in fact_heads} and h not in fact_heads], K
    )
    seed_control = rng.sample(
        [h for h in every_head if h[0] in {lyr for lyr, _ in seed_heads} and h not in seed_heads], K
    )

    # Confirmation: two-hop pairs of held-out families, all rule orders.
    confirmation = [
        i
        for i, b in enumerate(all_buckets)
        if b.rows.split.iloc[0] == "confirmation" and b.rows.hops.iloc[0] == 2 and b.rows.swept.iloc[0]
    ]
    conf_buckets, conf_stores = (
        [all_buckets[i] for i in confirmation],
        [clean_stores[i] for i in confirmation],
    )

    def switch(heads, bucket, alpha=1.0):
        return H.edit_attention_rows(
            model, heads, -1, move_fraction(bucket.entailed_pos, bucket.alternative_pos, alpha)
        )

    def final_row_variants(bucket, index, store):
        variants = {"clean": []}
        for k in DOSE_K:
            for alpha in DOSE_ALPHA[1:]:
                variants[("switch", k, alpha)] = switch(switch_heads[:k], bucket, alpha)
        variants.update({("single", head): switch([head], bucket) for head in switch_heads})
        variants.update({("same_layer", i): switch(heads, bucket) for i, heads in enumerate(same_layer)})
        variants.update({("decile", i): switch(heads, bucket) for i, heads in enumerate(decile)})
        variants["seed_redirect"] = H.redirect_attention(model, seed_heads, bucket.alternative_pos)
        variants["seed_redirect_control"] = H.redirect_attention(model, seed_control, bucket.alternative_pos)
        variants["fact_cross"] = H.edit_attention_rows(model, fact_heads, -1, partner_row)
        variants["fact_cross_control"] = H.edit_attention_rows(model, fact_control, -1, partner_row)
        variants["switch_cross"] = H.edit_attention_rows(model, top, -1, partner_row)
        variants["switch_direct"] = switch(top, bucket) + freeze_after(
            model, top, conf_stores[index], "clean"
        )
        return variants

    confirm, _ = sweep(model, conf_buckets, final_row_variants)
    flip_keys = [
        "clean",
        ("switch", K, 1.0),
        *[("same_layer", i) for i in range(CONTROL_DRAWS)],
        "seed_redirect",
        "seed_redirect_control",
    ]

    def flip_variants(bucket, index, store):
        every = final_row_variants(bucket, index, store)
        return {key: every[key] for key in flip_keys}

    top1, _ = sweep(model, conf_buckets, flip_variants, metric=top1_metric)
    p_alt, _ = sweep(model, conf_buckets, flip_variants, metric=p_alternative_metric)
    confirm = confirm.rename(columns={"value": "ld"})
    for frame, column in ((top1, "top1"), (p_alt, "p_alternative")):
        confirm = confirm.merge(
            frame.rename(columns={"value": column})[["pair", "text", "variant", column]],
            on=["pair", "text", "variant"],
            how="left",
        )

    # Copy account and "what": full forwards from the lowest edited layer.
    watched = sorted({get_act_name("pattern", layer) for layer, _ in top})

    def full_variants(bucket, index, store):
        reference = {name: conf_stores[index][("clean_full", name)] for name in full_z}
        look = lambda key: [watch(store, key, name) for name in watched]
        values = lambda v: v.reshape(-1, 2, *v.shape[1:]).flip(1).reshape(v.shape)
        return {
            "ablate_induction": H.ablate_heads(model, induction_heads, "mean", reference_cache=reference)
            + look("ablate_induction"),
            "switch_value_cross": H.edit_head_values(model, top, values, query_pos=-1),
        }

    def path_variant(bucket, index, store):
        reference = {name: conf_stores[index][("clean_full", name)] for name in full_z}
        hooks = path_to_queries(model, induction_heads, top, reference)
        return {"path_q": hooks + [watch(store, "path_q", name) for name in watched]}

    full, full_stores = sweep(model, conf_buckets, full_variants)
    path, path_stores = sweep(model, conf_buckets, path_variant, split_q=True)
    full_stores = [{**a, **b} for a, b in zip(full_stores, path_stores)]
    confirm = pd.concat([confirm, full.rename(columns={"value": "ld"}), path.rename(columns={"value": "ld"})])
    confirm = confirm.reset_index(drop=True)
    captures = pd.concat(
        [attention_frame(conf_buckets, conf_stores, "clean", layers).assign(variant="clean")]
        + [
            attention_frame(conf_buckets, full_stores, key, layers).assign(variant=key)
            for key in ("ablate_induction", "path_q")
        ],
        ignore_index=True,
    )
    captures = captures[[(lyr, h) in top for lyr, h in zip(captures.layer, captures["head"])]]
    return Study(
        model_name,
        {**skipped, **skipped_1},
        behaviour,
        attention,
        induction,
        switch_by_family,
        fact_heads,
        switch_heads,
        seed_heads,
        induction_heads,
        same_layer,
        decile,
        confirm,
        captures,
    )


# ---------------------------------------------------------------------------------------------
# Family-level statistics


def by_family(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame.groupby("family")[column].mean()


def family_ci(frame: pd.DataFrame, column: str):
    return bootstrap_ci(by_family(frame, column).to_numpy())


def ratio_ci(numerator: pd.Series, denominator: pd.Series):
    """CI of sum(numerator) / sum(denominator) over families, resampling families."""
    num, den = numerator.to_numpy(), denominator.loc[numerator.index].to_numpy()
    return bootstrap_ci(
        np.arange(len(num)), statistic=lambda i: num[i.astype(int)].sum() / den[i.astype(int)].sum()
    )


def deltas(study: Study, variant) -> pd.DataFrame:
    """Per confirmation prompt: LD under `variant` minus clean."""
    c = study.confirm
    clean = c[c.variant.map(lambda v: v == "clean")].set_index(["pair", "text"]).ld
    v = c[c.variant.map(lambda x: x == variant)].copy()
    v["delta"] = v.ld.to_numpy() - clean.loc[list(zip(v.pair, v.text))].to_numpy()
    return v


def mean_of_draws(study: Study, kind: str) -> pd.DataFrame:
    frames = [deltas(study, (kind, i)) for i in range(CONTROL_DRAWS)]
    out = frames[0].copy()
    out["delta"] = np.mean([f.delta.to_numpy() for f in frames], axis=0)
    return out


def entails(study: Study, hops: int = 2, split: str | None = "confirmation") -> tuple[bool, str]:
    """The premise of claims about entailment: two-hop sensitivity > 0 on these families."""
    rows = study.behaviour.query(f"hops == {hops}" + (f" and split == '{split}'" if split else ""))
    ci = family_ci(rows, "sensitivity")
    return (
        ci.low > 0,
        f"the model does not follow the fact here: sensitivity {fmt(ci)}",
    )


def heads_label(heads) -> str:
    return ",".join(f"L{lyr}H{h}" for lyr, h in heads)


def fmt(ci) -> str:
    return f"{ci.estimate:.3g} [{ci.low:.3g}, {ci.high:.3g}]"


# ---------------------------------------------------------------------------------------------
# Figures (written once per model)


@pytest.fixture(scope="module")
def figures(study, results_dir):
    name = study.name
    n_layers = int(study.attention.layer.max()) + 1
    effect = (
        study.switch_by_family.groupby(["layer", "head"])
        .delta.mean()
        .unstack()
        .reindex(range(n_layers))
        .to_numpy()
    )
    fig, ax = plt.subplots(figsize=(6, 8))
    image = ax.imshow(
        effect, cmap="RdBu", vmin=-np.abs(effect).max(), vmax=np.abs(effect).max(), aspect="auto"
    )
    marks = [
        (study.switch_heads[:K], "x", "top heads"),
        (study.same_layer[0], "o", "same-layer control"),
        (study.decile[0], "s", "attention-decile control"),
        (study.fact_heads, "^", "fact heads"),
    ]
    for heads, marker, text in marks:
        style = {"color": "k"} if marker == "x" else {"facecolors": "none", "edgecolors": "k"}
        ax.scatter([h for _, h in heads], [lyr for lyr, _ in heads], marker=marker, label=text, **style)
    ax.set(xlabel="head", ylabel="layer", title=f"{name}: switch effect per head (discovery, nats)")
    ax.legend(fontsize=7, loc="lower left")
    fig.colorbar(image)
    fig.savefig(results_dir / f"entailment_switch_per_head_{name}.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    for k in DOSE_K:
        means = [0.0] + [deltas(study, ("switch", k, a)).delta.mean() for a in DOSE_ALPHA[1:]]
        ax.plot(DOSE_ALPHA, means, marker="o", label=f"K={k}")
    ax.set(
        xlabel="fraction of the entailed answer's weight moved",
        ylabel="delta LD (nats)",
        title=f"{name}: dose-response, held-out families",
    )
    ax.legend()
    fig.savefig(results_dir / f"entailment_dose_response_{name}.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    two = study.attention.query("hops == 2 and split == 'confirmation'")
    fig, ax = plt.subplots(figsize=(7, 4))
    heads = list(dict.fromkeys(study.fact_heads + study.switch_heads[:K]))
    for i, (layer, head) in enumerate(heads):
        rows = two[(two.layer == layer) & (two["head"] == head)]
        on_a = np.where(rows.text == "a", rows.entailed, rows.alternative)  # attention on answer a
        ax.bar(i - 0.2, on_a[rows.text == "a"].mean(), 0.4, color="C0", label="fact a" if i == 0 else None)
        ax.bar(i + 0.2, on_a[rows.text == "b"].mean(), 0.4, color="C1", label="fact b" if i == 0 else None)
    ax.set_xticks(range(len(heads)), [f"L{lyr}H{h}" for lyr, h in heads])
    ax.set(
        ylabel="final-row attention on answer a", title=f"{name}: attention on answer a by fact (held out)"
    )
    ax.legend()
    fig.savefig(results_dir / f"entailment_attention_by_fact_{name}.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(study.induction.flatten(), effect.flatten(), s=8)
    ax.set(
        xlabel="induction score",
        ylabel="discovery switch effect (nats)",
        title=f"{name}: copy score vs switch effect",
    )
    fig.savefig(results_dir / f"entailment_induction_vs_switch_{name}.png", dpi=120, bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# a. Does the answer follow the fact?


@pytest.mark.real_model
@pytest.mark.parametrize("hops", [2, 1], ids=["two-hop", "one-hop"])
def test_answer_follows_the_fact(study, figures, hops, claim):
    ci = family_ci(study.behaviour.query(f"hops == {hops}"), "sensitivity")
    assert claim(
        metric=f"sensitivity LD(fact a) - LD(fact b), {hops}-hop",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=0.0,
        note=f"{len(study.skipped)} pairs skipped (tokenization)",
    )


@pytest.mark.real_model
def test_answer_follows_the_fact_when_rule_orders_are_crossed(study, claim):
    """Crossed orders: the answer rules are in the opposite order to the condition rules, so
    "the answer in the matching place" is the wrong one."""
    crossed = family_ci(study.behaviour.query("hops == 2 and crossed"), "sensitivity")
    same = family_ci(study.behaviour.query("hops == 2 and not crossed"), "sensitivity")
    assert claim(
        metric="sensitivity, two-hop, crossed rule orders",
        value=crossed.estimate,
        ci=crossed,
        n=crossed.n,
        unit="families",
        threshold=0.0,
        note=f"same-order pairs: {fmt(same)}",
    )


# ---------------------------------------------------------------------------------------------
# b. Heads that follow the fact


@pytest.mark.real_model
def test_fact_heads_follow_the_fact_on_heldout_families(study, claim):
    two = study.attention.query("hops == 2 and split == 'confirmation'")
    pick = lambda heads: two[[(lyr, h) in heads for lyr, h in zip(two.layer, two["head"])]]
    top, control = (
        by_family(pick(study.fact_heads), "follows"),
        by_family(pick(study.same_layer[0]), "follows"),
    )
    ci = bootstrap_ci((top - control).to_numpy())
    assert claim(
        metric=f"attention(entailed - alternative), {heads_label(study.fact_heads)} - same-layer heads",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=0.05,
        note=f"fact heads {fmt(bootstrap_ci(top.to_numpy()))}; "
        f"control {fmt(bootstrap_ci(control.to_numpy()))}",
    )


@pytest.mark.real_model
def test_fact_heads_pattern_carries_the_sensitivity(study, claim):
    """Give the fact heads the other text's final-row pattern: the share of the sensitivity lost."""
    clean = sensitivity_by_pair(deltas(study, "fact_cross").assign(value=lambda f: f.ld - f.delta))
    moved = sensitivity_by_pair(deltas(study, "fact_cross"), "delta")
    control = sensitivity_by_pair(deltas(study, "fact_cross_control"), "delta")
    ci = ratio_ci(-by_family(moved, "delta"), by_family(clean, "value"))
    ctrl = ratio_ci(-by_family(control, "delta"), by_family(clean, "value"))
    assert claim(
        metric=f"share of held-out sensitivity removed by swapping {heads_label(study.fact_heads)}'s pattern",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=0.5,
        precondition=entails(study),
        note=f"same-layer control heads remove {fmt(ctrl)}",
    )


# ---------------------------------------------------------------------------------------------
# c. The copy account


@pytest.mark.real_model
def test_switch_effect_tracks_induction_score(study, figures, claim):
    table = study.switch_by_family.pivot_table(index="family", columns=["layer", "head"], values="delta")
    induction = np.array([study.induction[lyr, h] for lyr, h in table.columns])
    matrix = table.to_numpy()
    rho = lambda i: spearmanr(induction, -matrix[i.astype(int)].mean(0)).statistic
    ci = bootstrap_ci(np.arange(len(matrix)), statistic=rho, n_resamples=500)
    assert claim(
        metric="Spearman rho, induction score vs -switch effect over all heads",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="discovery families",
        threshold=0.3,
    )


def _answers_attention(study: Study, variant: str) -> pd.Series:
    c = study.captures[study.captures.variant == variant]
    return (
        c.assign(both=c.entailed + c.alternative, recency=c.later - c.earlier)
        .groupby("family")[["both", "recency"]]
        .mean()
    )


@pytest.mark.real_model
def test_ablating_induction_heads_removes_switch_heads_attention_on_answers(study, claim):
    clean, ablated = _answers_attention(study, "clean"), _answers_attention(study, "ablate_induction")
    ci = ratio_ci(clean.both - ablated.both, clean.both)
    assert claim(
        metric="share of switch heads' attention on both answers removed by mean-ablating "
        + heads_label(study.induction_heads),
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=0.25,
        note=f"clean {fmt(bootstrap_ci(clean.both.to_numpy()))}, "
        f"ablated {fmt(bootstrap_ci(ablated.both.to_numpy()))}",
    )


@pytest.mark.real_model
def test_ablating_induction_heads_removes_switch_heads_recency_bias(study, claim):
    clean, ablated = _answers_attention(study, "clean"), _answers_attention(study, "ablate_induction")
    """Premise: the switch heads' attention favours the later-mentioned answer at all."""
    ci = ratio_ci(clean.recency - ablated.recency, clean.recency)
    bias = bootstrap_ci(clean.recency.to_numpy())
    later = deltas(study, "ablate_induction")
    assert claim(
        metric="share of switch heads' attention(later answer) - attention(earlier) removed by the ablation",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=0.5,
        precondition=(bias.low > 0, f"the switch heads show no recency bias to remove: {fmt(bias)}"),
        note=f"clean recency bias {fmt(bootstrap_ci(clean.recency.to_numpy()))}; ablation moves LD "
        f"{fmt(family_ci(later, 'delta'))}",
    )


@pytest.mark.real_model
def test_induction_heads_reach_switch_heads_through_queries(study, claim):
    """Premise: the full ablation lowers the switch heads' attention on the answers at all."""
    clean, ablated, path = (_answers_attention(study, v) for v in ("clean", "ablate_induction", "path_q"))
    drop = bootstrap_ci((clean.both - ablated.both).to_numpy())
    ci = ratio_ci(clean.both - path.both, clean.both - ablated.both)
    premise = (
        drop.low > 0,
        f"the ablation does not lower the switch heads' attention on the answers: {fmt(drop)}",
    )
    assert claim(
        metric="query path alone / full ablation, drop of switch heads' attention on both answers",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=0.5,
        precondition=premise,
        note=f"path drop {fmt(bootstrap_ci((clean.both - path.both).to_numpy()))}, full drop {fmt(drop)}",
    )


@pytest.mark.real_model
def test_sensitivity_survives_induction_ablation(study, claim):
    """What copying leaves to entailment: the sensitivity without the top induction heads."""
    ablated = sensitivity_by_pair(deltas(study, "ablate_induction"), "ld")
    ci = family_ci(ablated, "ld")
    assert claim(
        metric=f"held-out sensitivity with {heads_label(study.induction_heads)} mean-ablated",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=0.0,
        precondition=entails(study),
    )


# ---------------------------------------------------------------------------------------------
# d. The seed's switch, rebuilt


@pytest.mark.real_model
def test_switching_top3_heads_moves_heldout_ld(study, claim):
    ci = family_ci(deltas(study, ("switch", K, 1.0)), "delta")
    assert claim(
        metric=f"held-out delta LD, switch {heads_label(study.switch_heads[:K])}",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=-1.0,
        direction="<=",
    )


@pytest.mark.real_model
@pytest.mark.parametrize("control", ["same_layer", "decile"])
def test_top3_switch_beats_matched_control(study, control, claim):
    top = by_family(deltas(study, ("switch", K, 1.0)), "delta")
    other = by_family(mean_of_draws(study, control), "delta")
    ci = bootstrap_ci((top - other).to_numpy())
    heads = study.same_layer if control == "same_layer" else study.decile
    assert claim(
        metric=f"delta(top heads) - delta({control} heads), paired",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=-0.5,
        direction="<=",
        note=f"top {fmt(bootstrap_ci(top.to_numpy()))}; control {fmt(bootstrap_ci(other.to_numpy()))} "
        f"({'; '.join(heads_label(h) for h in heads)})",
    )


@pytest.mark.real_model
def test_switch_effect_grows_gradually_with_moved_weight(study, figures, claim):
    half, full = (
        by_family(deltas(study, ("switch", K, 0.5)), "delta"),
        by_family(deltas(study, ("switch", K, 1.0)), "delta"),
    )
    ci = ratio_ci(half, full)
    curve = {
        k: [round(float(deltas(study, ("switch", k, a)).delta.mean()), 2) for a in DOSE_ALPHA[1:]]
        for k in DOSE_K
    }
    assert claim(
        metric=f"delta(alpha=0.5) / delta(alpha=1), K={K}",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=0.3,
        note=f"mean delta at alpha .25..1 by K: {curve}",
    )


@pytest.mark.real_model
def test_single_head_effects_add_up_to_the_joint_switch(study, claim):
    k = max(DOSE_K)
    joint = by_family(deltas(study, ("switch", k, 1.0)), "delta")
    singles = sum(by_family(deltas(study, ("single", head)), "delta") for head in study.switch_heads[:k])
    ci = ratio_ci(joint, singles)
    assert claim(
        metric=f"joint / sum of single-head deltas, top {k} heads",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=0.8,
    )


def flip_rate(study: Study, variant) -> pd.Series:
    c = study.confirm
    clean = c[c.variant.map(lambda v: v == "clean")].set_index(["pair", "text"]).top1
    v = c[c.variant.map(lambda x: x == variant)].copy()
    v["flip"] = (v.top1.to_numpy() != clean.loc[list(zip(v.pair, v.text))].to_numpy()).astype(float)
    return v


@pytest.mark.real_model
@pytest.mark.parametrize("intervention", ["switch", "seed_redirect"])
def test_intervention_flips_the_top1_token_beyond_its_control(study, intervention, claim):
    """The seed's own intervention is the one-hot redirect of the heads that attend most to the answer."""
    if intervention == "switch":
        top = flip_rate(study, ("switch", K, 1.0))
        controls = [flip_rate(study, ("same_layer", i)) for i in range(CONTROL_DRAWS)]
        control = controls[0].assign(flip=np.mean([c.flip.to_numpy() for c in controls], axis=0))
        heads = study.switch_heads[:K]
    else:
        top, control, heads = (
            flip_rate(study, "seed_redirect"),
            flip_rate(study, "seed_redirect_control"),
            study.seed_heads,
        )
    a, b = by_family(top, "flip"), by_family(control, "flip")
    ci = bootstrap_ci((a - b).to_numpy())
    assert claim(
        metric=f"top-1 flip rate, {intervention} {heads_label(heads)} - same-layer control",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=0.3,
        note=f"flips {fmt(bootstrap_ci(a.to_numpy()))}, control {fmt(bootstrap_ci(b.to_numpy()))}; "
        f"p(alternative) {top.p_alternative.mean():.3f} vs control {control.p_alternative.mean():.3f}",
    )


# ---------------------------------------------------------------------------------------------
# e. Where vs what, direct vs total


@pytest.mark.real_model
def test_fact_changes_where_switch_heads_look_more_than_what_they_read(study, claim):
    """Each switch head gets the other text's final-row pattern (where) or its values (what)."""
    where = by_family(sensitivity_by_pair(deltas(study, "switch_cross"), "delta"), "delta")
    what = by_family(sensitivity_by_pair(deltas(study, "switch_value_cross"), "delta"), "delta")
    ci = bootstrap_ci((where - what).to_numpy())
    assert claim(
        metric="delta sensitivity, pattern from the other fact - values from the other fact",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=0.0,
        direction="<=",
        precondition=entails(study),
        note=f"pattern {fmt(bootstrap_ci(where.to_numpy()))}; values {fmt(bootstrap_ci(what.to_numpy()))}",
    )


@pytest.mark.real_model
def test_switch_effect_is_mostly_direct(study, claim):
    """Direct effect: later heads, MLPs and ln_final's scale held at their clean values."""
    direct, total = (
        by_family(deltas(study, "switch_direct"), "delta"),
        by_family(deltas(study, ("switch", K, 1.0)), "delta"),
    )
    ci = ratio_ci(direct, total)
    assert claim(
        metric="direct / total delta LD of the top-3 switch",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="families",
        threshold=0.5,
        note=f"direct {fmt(bootstrap_ci(direct.to_numpy()))}",
    )


# ---------------------------------------------------------------------------------------------
# Toy positive control: a model that must route the queried rule's answer


@dataclass(frozen=True)
class ToyStudy:
    name: str
    behaviour: pd.DataFrame
    fact_heads: list
    crossed: pd.DataFrame  # per prompt: delta LD with the fact heads' pattern from the other query


@dataclass(frozen=True)
class ToyPair:
    texts: tuple[str, str]
    answers: tuple[str, str]


@pytest.fixture(scope="module")
def toy_study(toy_model) -> ToyStudy:
    model = toy_model(TOY)
    pairs = []
    for p in TASKS[TOY.task].prompts(TOY, torch.Generator().manual_seed(7), TOY_PROMPTS):
        words = (
            p.text.split()
        )  # "c1 a7 . c3 a2 . c3": the other query is the condition before the alternative
        other = words[words.index(p.alternative.strip()) - 1]
        pairs.append(ToyPair((p.text, " ".join(words[:-1] + [other])), (p.answer, p.alternative)))
    labels = {id(p): f"toy{i}" for i, p in enumerate(pairs)}
    kept, skipped = tokenize_pairs(model, pairs, lambda p: labels[id(p)])
    if skipped:
        raise RuntimeError(f"toy pairs failed to tokenize: {skipped}")
    meta = {
        f"toy{i}": {"family": f"toy{i}", "split": "discovery" if i % 3 == 0 else "confirmation"}
        for i in range(len(pairs))
    }
    bucket_list = buckets(kept, meta)
    layers = range(model.cfg.n_layers)
    clean, stores = sweep(
        model,
        bucket_list,
        lambda b, i, s: {"clean": [watch(s, "clean", get_act_name("pattern", lyr)) for lyr in layers]},
    )
    attention = attention_frame(bucket_list, stores, "clean", layers, offset=TOY_OFFSET)
    fact_heads = top_heads(
        attention.query("split == 'discovery'").groupby(["layer", "head"]).follows.mean(), K
    )
    crossed, _ = sweep(
        model,
        bucket_list,
        lambda b, i, s: {"cross": H.edit_attention_rows(model, fact_heads, -1, partner_row)},
    )
    crossed["delta"] = crossed.value.to_numpy() - clean.value.to_numpy()
    behaviour = sensitivity_by_pair(clean).rename(columns={"value": "sensitivity"})
    return ToyStudy(
        f"toy:{TOY.task}-{TOY.key()}", behaviour, fact_heads, crossed.query("split == 'confirmation'")
    )


def test_toy_answer_follows_the_query(toy_study, claim):
    ci = family_ci(toy_study.behaviour, "sensitivity")
    assert claim(
        model=toy_study.name,
        metric="sensitivity LD(query a) - LD(query b)",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="prompt pairs",
        threshold=2.0,
    )


def test_toy_fact_head_pattern_carries_the_sensitivity(toy_study, claim):
    clean = toy_study.behaviour.query("split == 'confirmation'").set_index("family").sensitivity
    moved = sensitivity_by_pair(toy_study.crossed, "delta").set_index("family").delta
    ci = ratio_ci(-moved, clean)
    assert claim(
        model=toy_study.name,
        metric=f"share of sensitivity removed by swapping {heads_label(toy_study.fact_heads)}'s pattern",
        value=ci.estimate,
        ci=ci,
        n=ci.n,
        unit="prompt pairs",
        threshold=0.5,
    )


# Log
# 2026-11-24  (earlier protocol: prompts differing in labels and order, split by prompt; superseded below)
#   smollm2-135m (4-bit Q4_1 GGUF checkpoint de-quantised to float32): mean LD entailed - alternative
#   -0.17 [-0.43, 0.08]; accuracy 0.36 [0.25, 0.48] when recency favoured the alternative; switching the
#   final-row attention of L23H7, L23H2, L23H0 moved held-out LD by -2.03 [-2.19, -1.88], flipped 0.84 of
#   the prompts answered correctly, 2.00 more than random heads. Toy rule-recall: the switch with offset 1
#   moved LD by -13.8 [-14.2, -13.5]; the toy's layer-1 heads read each answer from the token after it.
# 2026-11-25  Minimal pairs. smollm2-135m (4-bit Q4_1 GGUF checkpoint de-quantised to float32); 23 of 24
#   families usable ("tam"/"quill" tokenize to different lengths: skipped with the reason); 8 discovery,
#   15 confirmation families; CIs over families.
#   a. Sensitivity, two-hop 0.18 [0.06, 0.31] (supported) but all of it from rule-order matching: same-order
#      pairs 0.47 [0.31, 0.63], crossed -0.10 [-0.27, 0.05] (refuted). One-hop 0.15 [-0.11, 0.40] (refuted).
#      Verdict: the model does not entail; it matches the fact's condition to the answer in the same place.
#   b. No head's final-row attention follows the fact: top fact heads L21H8, L24H4, L22H4 on held-out
#      families 0.008 [-0.009, 0.023] over same-layer heads (refuted, >= 0.05). Giving them the other
#      fact's pattern removes -0.55 [-5.4, 1.7] of the held-out sensitivity (refuted).
#   c. Copy account: induction score vs switch effect, Spearman 0.31 [0.21, 0.33] over 270 heads (refuted
#      at >= 0.3: weak). Mean-ablating the top induction heads L18H6, L17H4, L17H5, L17H3, L18H7 leaves
#      the switch heads' attention on both answers unchanged (0.530 -> 0.532; share removed -0.003
#      [-0.025, 0.012], refuted); the switch heads show no recency bias to remove (0.024 [-0.020, 0.069]:
#      inconclusive), so the path-patching ratio is inconclusive too (the query path alone lowers their
#      attention on the answers by 0.043 [0.008, 0.077]; the full ablation by -0.002). The same ablation
#      removes the sensitivity (0.16 -> 0.01 [-0.13, 0.15], refuted "survives"): what sensitivity there is
#      (order matching) runs through the induction heads, not through the switch heads.
#   d. Switch, rebuilt: top heads by discovery effect L23H7, L24H7, L23H0; held-out delta LD -1.68
#      [-1.91, -1.46] (supported, <= -1); 1.09 [0.90, 1.28] more than same-layer heads (their own effect
#      -0.58 [-0.68, -0.48]) and 2.01 [1.76, 2.25] more than heads of the top attention decile (their own
#      effect +0.33 [0.23, 0.43]) (both supported). Linear in the moved weight: delta(0.5)/delta(1)
#      0.498 [0.492, 0.502]; K=1,3,5,10 at alpha=1: -0.80, -1.68, -2.54, -4.18. Additive: joint / sum of
#      single-head deltas (top 10) 1.08 [1.02, 1.15] (supported). Top-1 flips 0.50 [0.38, 0.62] vs 0.22
#      [0.13, 0.32] for same-layer heads (difference 0.28 [0.19, 0.36], refuted at >= 0.3); p(alternative)
#      0.32 vs 0.23. The seed's intervention (one-hot redirect of the heads with most attention on the
#      answer, L17H5, L17H4, L21H7: induction heads) flips 0.12 [0.05, 0.20], fewer than its same-layer
#      control 0.38 [0.22, 0.57] (refuted).
#   e. Where vs what: the switch heads carry a little of the sensitivity through where they look (the
#      other fact's pattern: -0.16 [-0.27, -0.05]; its values: -0.04 [-0.16, 0.07]; difference -0.12
#      [-0.26, 0.03], refuted). Direct / total effect of the switch 0.75 [0.66, 0.86] (supported): mostly a
#      direct write of the answer read from where the head looks.
#   Toy rule-recall (48 pairs): sensitivity 16.6 [16.3, 16.9] (supported); giving its top-3 fact heads
#   (L1H3, L1H0, L1H2) the other query's pattern removes 1.67 [1.62, 1.72] of it (supported; with the top
#   head alone 0.54 [0.49, 0.59]): the protocol finds routing by the fact where it exists.
#   Verdict: copying with a positional shortcut, not entailment. The switch heads move LD because they
#   write whatever answer they look at; where they look does not depend on the fact.
#   Runtime: 13 min 16 s wall, 684 s user CPU on 2 cores shared with five other jobs (load ~10).
# 2026-11-25  Cold run on a fresh clone, idle 2 cores: the smollm2-135m study's setup took 74 s (the sweep
#   engine now starts each chunk at its patched layer); every figure above reproduced to 3 digits.
#   gemma3-270m: 22 of 24 families tokenize position-matched ("zorp", "blick" split differently); the
#   study has not been run on it yet, so no gemma figures or REFUTED keys exist.
