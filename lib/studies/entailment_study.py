"""The entailment study of one model, computed once: hypotheses/test_entailment_head_switching.py claims.

    study = run_study(model, "smollm2-135m", EntailmentDesign(k=3, dose_k=(1, 3, 5, 10), ...))
    study.switch_heads[:3], study.confirm.query("variant == 'clean'").ld

Steps, in the order they run, one function each that run_study calls in turn (every stacked forward
goes through attnclaims.sweep.run_variants):
1. design_pairs: minimal pairs (prompts/entailment.py) that tokenize position-matched on the model;
   families grouped into units by shared verb or answer word (twin_groups) and the groups split once
   into discovery and confirmation (attnclaims.stats.discovery_confirmation_split), each family used
   in one same and one crossed rule order (design.order_sets, alternating between families).
2. clean_run: induction scores of every head on repeated random tokens; the clean run of every
   prompt: LD, every head's final-row attention, and the activations later steps freeze (the direct
   effect) or use as the mean-ablation reference.
3. discover: fact-following score and single-head switch effect of every head; from them the fact,
   switch, redirect and induction heads. draw_controls: the control draws (random.Random(0)).
4. confirm_final_row, on the confirmation groups: every final-row intervention of the claims against
   its controls (one per compared head, moving as much attention: ShiftAttention), as LD, whether the
   top-1 token is the alternative and p(alternative) per prompt x variant.
5. copy_account: the induction heads mean-ablated, whole and along the switch heads' queries, with a
   reference from other groups' prompts (entailment_sweep.other_groups_mean); the switch heads'
   attention under each.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from transformer_lens.utilities import get_act_name

from attnclaims.heads import same_layer_controls, top_heads
from attnclaims.hooks import partner_row
from attnclaims.interventions import (
    AblateHeads,
    EditAttention,
    MoveAttention,
    RedirectAttention,
    ShiftAttention,
)
from attnclaims.pair_hooks import freeze_after, path_to_queries, watch
from attnclaims.prompts.entailment import FAMILIES, minimal_pairs
from attnclaims.protocols import tokenize_pairs
from attnclaims.scores import induction_scores
from attnclaims.stats import discovery_confirmation_split
from attnclaims.studies.entailment_sweep import (
    alternative_metric,
    attention_frame,
    buckets,
    other_groups_mean,
    output_change,
    sensitivity_by_pair,
    sweep,
)
from attnclaims.tasks import ordinary_token_ids, random_repeats


@dataclass(frozen=True)
class EntailmentDesign:
    """What the study varies and how many of each; the hypothesis file states the values."""

    k: int  # heads switched together
    dose_k: tuple[int, ...]  # numbers of top switch heads in the dose-response (max: switch heads kept)
    dose_alpha: tuple[float, ...]  # fractions of the entailed answer's weight moved (0 first)
    control_draws: int  # draws of K control heads, per kind of control
    n_induction: int  # top induction heads mean-ablated
    discovery_fraction: float  # share of groups (of twin families) in the discovery split
    order_sets: tuple[tuple[str, str], ...]  # rule orders per family, alternating between families


@dataclass(frozen=True)
class EntailmentStudy:
    name: str  # the model, as the ledger records it
    design: EntailmentDesign  # the design it was computed under
    skipped: dict  # pairs this model cannot use, with the reason
    behaviour: pd.DataFrame  # per pair: family, words, hops, order, crossed, split, sensitivity
    attention: pd.DataFrame  # per prompt x head: entailed / alternative / later-answer attention
    induction: np.ndarray  # [layer, head] induction scores
    switch_by_family: pd.DataFrame  # discovery: per family x head, mean delta LD of the single-head switch
    fact_heads: list  # top K by discovery fact-following score
    fact_controls: list  # for each fact head, another head of its layer
    switch_heads: list  # top max(dose_k) by discovery switch effect (most negative first)
    redirect_heads: list  # top K by discovery attention to the entailed answer (the one-hot redirect's)
    induction_heads: list  # top n_induction by induction score, outside the switch heads
    same_layer: list  # control_draws draws: for each top switch head, another head of its layer
    decile: list  # control_draws draws of K heads from the top attention decile
    confirm: pd.DataFrame  # confirmation: per prompt x variant, LD / top-1 / p(alternative)
    captures: pd.DataFrame  # confirmation: switch heads' attention per prompt x variant
    ablation_change: float  # how far the mean ablation moves the induction heads' final-row output (relative)


def label(p) -> str:
    return f"{p.family}/{p.hops}/{p.order}"


def twin_groups(families) -> dict[str, str]:
    """family name -> its unit: families that share a verb or an answer word (a real family and its
    made-up twin, or two families that "drink" something) are one group, named by its members."""
    parent = {f.name: f.name for f in families}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    seen: dict[str, str] = {}
    for f in families:
        for word in (f"verb:{f.verb}", *(f"answer:{a}" for a in f.answers)):
            if word in seen:
                parent[root(f.name)] = root(seen[word])
            seen.setdefault(word, f.name)
    members: dict[str, list[str]] = {}
    for f in families:
        members.setdefault(root(f.name), []).append(f.name)
    return {name: "+".join(sorted(members[root(name)])) for name in parent}


def meta_of(p, split: dict, swept: dict, group: dict) -> dict:
    """A pair's table columns; `swept`: a two-hop pair in one of its family's swept rule orders."""
    return {
        "family": p.family,
        "group": group[p.family],
        "words": p.words,
        "hops": p.hops,
        "order": p.order,
        "crossed": p.crossed,
        "split": split.get(group[p.family], "confirmation"),
        "swept": p.hops == 2 and p.order in swept[p.family],
    }


@dataclass(frozen=True)
class DesignPairs:
    """Step 1: the pairs a model can use, tokenized, with their table columns."""

    two_hop: list  # PairTokens of the two rule orders each family is used in
    one_hop: list
    meta: dict  # pair label -> its table columns (meta_of)
    skipped: dict  # pairs this model cannot use, with the reason


def design_pairs(model, design: EntailmentDesign) -> DesignPairs:
    """Step 1 of the module docstring: pairs, groups, the split and each family's rule orders."""
    families = sorted({p.family for p in minimal_pairs(2)})
    group = twin_groups(FAMILIES)
    discovery, _ = discovery_confirmation_split(
        sorted(set(group.values())), confirm_fraction=1 - design.discovery_fraction, seed=0
    )
    split = {g: "discovery" for g in discovery}
    orders = {f: design.order_sets[i % 2] for i, f in enumerate(families)}
    two_hop, skipped = tokenize_pairs(
        model, [p for p in minimal_pairs(2) if p.order in orders[p.family]], label
    )
    one_hop, skipped_1 = tokenize_pairs(model, minimal_pairs(1), label)
    swept = {f: orders[f] if group[f] not in split else (orders[f][i % 2],) for i, f in enumerate(families)}
    meta = {label(p): meta_of(p, split, swept, group) for p in minimal_pairs(2) + minimal_pairs(1)}
    return DesignPairs(two_hop, one_hop, meta, {**skipped, **skipped_1})


@dataclass(frozen=True)
class CleanRun:
    """Step 2: induction scores, and the clean run of every prompt with what later steps read."""

    buckets: list  # every pair's texts in position-matched buckets (entailment_sweep.buckets)
    stores: list  # per bucket: the clean activations captured (final rows, and full z of induction layers)
    behaviour: pd.DataFrame  # per pair: table columns and sensitivity
    attention: pd.DataFrame  # per prompt x head: final-row attention (entailment_sweep.attention_frame)
    induction: np.ndarray  # [layer, head] induction scores
    top_induction: list  # the top 3 * n_induction heads by induction score
    full_z: list  # (hook name, layer) of the z captured at every position: the induction heads' layers


def clean_run(model, pairs: DesignPairs, design: EntailmentDesign) -> CleanRun:
    n_layers = model.cfg.n_layers
    rep = random_repeats(model, ordinary_token_ids(model), seed=0, batch=8, seq_len=24)
    induction = induction_scores(model, rep).numpy()
    patterns = [(get_act_name("pattern", layer), layer) for layer in range(n_layers)]
    finals = [(get_act_name(kind, layer), layer) for layer in range(n_layers) for kind in ("z", "mlp_out")]
    finals.append(("ln_final.hook_scale", n_layers))
    top_induction = top_heads(induction, 3 * design.n_induction)
    full_z = sorted({(get_act_name("z", layer), layer) for layer, _ in top_induction})

    def clean_variant(bucket, index, store):
        hooks = [watch(store, "clean", name, layer=layer) for name, layer in patterns + finals]
        return {"clean": hooks + [watch(store, "clean_full", n, layer=lyr, final=False) for n, lyr in full_z]}

    all_buckets = buckets(pairs.two_hop, pairs.meta) + buckets(pairs.one_hop, pairs.meta)
    clean, stores = sweep(model, all_buckets, clean_variant)
    return CleanRun(
        buckets=all_buckets,
        stores=stores,
        behaviour=sensitivity_by_pair(clean).rename(columns={"value": "sensitivity"}),
        attention=attention_frame(all_buckets, stores, "clean", range(n_layers)),
        induction=induction,
        top_induction=top_induction,
        full_z=full_z,
    )


@dataclass(frozen=True)
class Discovery:
    """Step 3: the heads chosen on discovery groups."""

    fact_heads: list
    redirect_heads: list
    switch_by_family: pd.DataFrame
    switch_heads: list
    induction_heads: list


def discovery_attention(clean: CleanRun):
    """The clean final-row attention of the discovery groups' two-hop prompts, grouped by head."""
    return clean.attention.query("hops == 2 and split == 'discovery'").groupby(["layer", "head"])


def discover(model, pairs: DesignPairs, clean: CleanRun, design: EntailmentDesign) -> Discovery:
    """Fact-following and attention on the answer from the clean run; every head's single switch,
    one rule order per family; the induction heads below the top switch heads."""
    disc_attention = discovery_attention(clean)
    every_head = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
    meta = pairs.meta
    disc_pairs = [
        p for p in pairs.two_hop if meta[p.label]["split"] == "discovery" and meta[p.label]["swept"]
    ]

    def single_switches(bucket, index, store):
        e, a = bucket.entailed_pos, bucket.alternative_pos
        return {"clean": [], **{head: MoveAttention([head], e, a) for head in every_head}}

    disc, _ = sweep(model, buckets(disc_pairs, meta), single_switches)
    disc["prompt"] = disc.pair + ":" + disc.text
    clean_disc = disc[disc.variant == "clean"].set_index("prompt").value
    disc = disc[disc.variant != "clean"].copy()
    disc["delta"] = disc.value - disc.prompt.map(clean_disc)
    disc["layer"], disc["head"] = disc.variant.str[0], disc.variant.str[1]
    switch_by_family = disc.groupby(["group", "family", "layer", "head"], as_index=False).delta.mean()
    per_head = switch_by_family.groupby(["layer", "head"]).delta.mean()
    switch_heads = top_heads(per_head, max(design.dose_k), largest=False)
    lowest = min(lyr for lyr, _ in switch_heads[: design.k])
    return Discovery(
        fact_heads=top_heads(disc_attention.follows.mean(), design.k),
        redirect_heads=top_heads(disc_attention.entailed.mean(), design.k),
        switch_by_family=switch_by_family,
        switch_heads=switch_heads,
        induction_heads=[h for h in clean.top_induction if h not in switch_heads and h[0] < lowest][
            : design.n_induction
        ],
    )


@dataclass(frozen=True)
class Controls:
    """Controls, never a compared head: for each compared head another of its layer, or one of the
    top attention decile (each later moves as much attention as the head it stands for)."""

    same_layer: list  # control_draws draws, one per top switch head
    decile: list  # control_draws draws of k heads
    fact: list  # one per fact head
    redirect: list  # one per redirect head


def draw_controls(model, clean: CleanRun, found: Discovery, design: EntailmentDesign) -> Controls:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    top = found.switch_heads[: design.k]
    rng = random.Random(0)
    same_layer = [same_layer_controls(rng, top, n_layers, n_heads) for _ in range(design.control_draws)]
    attention_rank = discovery_attention(clean).entailed.mean()
    decile_pool = [
        h for h in top_heads(attention_rank, max(n_layers * n_heads // 10, 2 * design.k)) if h not in top
    ]
    decile = [rng.sample(decile_pool, design.k) for _ in range(design.control_draws)]
    fact = same_layer_controls(rng, found.fact_heads, n_layers, n_heads)
    redirect = same_layer_controls(rng, found.redirect_heads, n_layers, n_heads)
    return Controls(same_layer, decile, fact, redirect)


def confirmation_buckets(clean: CleanRun) -> tuple[list, list]:
    """(buckets, clean stores) of the two-hop pairs of held-out groups, every rule order."""
    keep = [
        i
        for i, b in enumerate(clean.buckets)
        if b.rows.split.iloc[0] == "confirmation" and b.rows.hops.iloc[0] == 2 and b.rows.swept.iloc[0]
    ]
    return [clean.buckets[i] for i in keep], [clean.stores[i] for i in keep]


def confirm_final_row(
    model, clean: CleanRun, found: Discovery, controls: Controls, design: EntailmentDesign
) -> pd.DataFrame:
    """Step 4, the final-row edits: per confirmation prompt x variant, LD, and for the switch
    claims' variants whether the top-1 token is the alternative and p(alternative)."""
    conf_buckets, conf_stores = confirmation_buckets(clean)
    top, switch_heads = found.switch_heads[: design.k], found.switch_heads

    def switch(heads, bucket, alpha=1.0):
        return MoveAttention(heads, bucket.entailed_pos, bucket.alternative_pos, alpha)

    def weight_on(index, head, pos):  # [batch]: a head's clean final-row weight on `pos`
        pattern = conf_stores[index][("clean", get_act_name("pattern", head[0]))]
        return pattern[torch.arange(len(pos)), head[1], pos]

    def matched(heads, masses, dst):
        """Control i moves masses[i] of its attention onto dst: as much as compared head i moves."""
        parts = [ShiftAttention([c], dst=dst, mass=m) for c, m in zip(heads, masses)]
        return sum(parts[1:], parts[0])

    def final_row_variants(bucket, index, store):
        e, a = bucket.entailed_pos, bucket.alternative_pos
        moved = [weight_on(index, h, e) for h in top]  # a switch moves each head's weight on e to a
        redirected = [1 - weight_on(index, h, a) for h in found.redirect_heads]  # all but a's
        variants = {"clean": []}
        for k in design.dose_k:
            for alpha in design.dose_alpha[1:]:
                variants[("switch", k, alpha)] = switch(switch_heads[:k], bucket, alpha)
        variants.update({("single", head): switch([head], bucket) for head in switch_heads})
        variants.update({("same_layer", i): matched(h, moved, a) for i, h in enumerate(controls.same_layer)})
        variants.update({("decile", i): matched(h, moved, a) for i, h in enumerate(controls.decile)})
        variants["original_redirect"] = RedirectAttention(found.redirect_heads, a)
        variants["original_redirect_control"] = matched(controls.redirect, redirected, a)
        variants["fact_cross"] = EditAttention(found.fact_heads, partner_row)
        variants["fact_cross_control"] = EditAttention(controls.fact, partner_row)
        variants["switch_direct"] = switch(top, bucket) + freeze_after(
            model, top, conf_stores[index], "clean"
        )
        return variants

    confirm, _ = sweep(model, conf_buckets, final_row_variants)
    flip_keys = [
        "clean",
        ("switch", design.k, 1.0),
        *[("same_layer", i) for i in range(design.control_draws)],
        "original_redirect",
        "original_redirect_control",
    ]

    def flip_variants(bucket, index, store):
        every = final_row_variants(bucket, index, store)
        return {key: every[key] for key in flip_keys}

    columns = ("alternative_top1", "p_alternative")
    alternative, _ = sweep(model, conf_buckets, flip_variants, metric=alternative_metric, names=columns)
    return confirm.rename(columns={"value": "ld"}).merge(
        alternative[["pair", "text", "variant", *columns]], on=["pair", "text", "variant"], how="left"
    )


@dataclass(frozen=True)
class CopyAccount:
    """Step 5, the copy account: the top induction heads mean-ablated (whole run, and along the
    switch heads' queries only), with a reference from other groups' prompts."""

    confirm: pd.DataFrame  # per confirmation prompt x variant ("ablate_induction", "path_q"): LD
    captures: pd.DataFrame  # the top switch heads' attention per prompt x variant (clean included)
    ablation_change: float  # how far the reference moves the induction heads' final-row output


def copy_account(model, clean: CleanRun, found: Discovery, design: EntailmentDesign) -> CopyAccount:
    """Full forwards from the lowest edited layer. A bucket's mean-ablation reference is the mean of
    other groups' two-hop prompts (never its own), position-matched (other_groups_mean)."""
    conf_buckets, conf_stores = confirmation_buckets(clean)
    top = found.switch_heads[: design.k]
    layers = sorted({layer for layer, _ in top})
    watched = sorted({(get_act_name("pattern", layer), layer) for layer in layers})
    references = [
        {
            name: other_groups_mean(clean.buckets, clean.stores, b, ("clean_full", name))
            for name, _ in clean.full_z
        }
        for b in conf_buckets
    ]

    def full_variants(bucket, index, store):
        look = lambda key: [watch(store, key, name, layer=layer) for name, layer in watched]
        ablate = AblateHeads(found.induction_heads, "mean", references[index])
        return {"ablate_induction": [ablate, *look("ablate_induction")]}

    def path_variant(bucket, index, store):
        hooks = path_to_queries(model, found.induction_heads, top, references[index])
        return {"path_q": [hooks, *(watch(store, "path_q", name, layer=layer) for name, layer in watched)]}

    full, full_stores = sweep(model, conf_buckets, full_variants)
    path, path_stores = sweep(model, conf_buckets, path_variant, split_q=True)
    full_stores = [{**a, **b} for a, b in zip(full_stores, path_stores)]
    captures = pd.concat(
        [attention_frame(conf_buckets, conf_stores, "clean", layers).assign(variant="clean")]
        + [
            attention_frame(conf_buckets, full_stores, key, layers).assign(variant=key)
            for key in ("ablate_induction", "path_q")
        ],
        ignore_index=True,
    )
    return CopyAccount(
        confirm=pd.concat([full.rename(columns={"value": "ld"}), path.rename(columns={"value": "ld"})]),
        captures=captures[[(lyr, h) in top for lyr, h in zip(captures.layer, captures["head"])]],
        ablation_change=output_change(conf_stores, references, found.induction_heads),
    )


def run_study(model, model_name: str, design: EntailmentDesign) -> EntailmentStudy:
    """The study of `model` (recorded as `model_name`): steps 1-5 of the module docstring."""
    pairs = design_pairs(model, design)
    clean = clean_run(model, pairs, design)
    found = discover(model, pairs, clean, design)
    controls = draw_controls(model, clean, found, design)
    final_row = confirm_final_row(model, clean, found, controls, design)
    copying = copy_account(model, clean, found, design)
    return EntailmentStudy(
        name=model_name,
        design=design,
        skipped=pairs.skipped,
        behaviour=clean.behaviour,
        attention=clean.attention,
        induction=clean.induction,
        switch_by_family=found.switch_by_family,
        fact_heads=found.fact_heads,
        fact_controls=controls.fact,
        switch_heads=found.switch_heads,
        redirect_heads=found.redirect_heads,
        induction_heads=found.induction_heads,
        same_layer=controls.same_layer,
        decile=controls.decile,
        confirm=pd.concat([final_row, copying.confirm]).reset_index(drop=True),
        captures=copying.captures,
        ablation_change=copying.ablation_change,
    )
