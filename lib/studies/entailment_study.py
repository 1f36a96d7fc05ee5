"""The entailment study of one model, computed once: hypotheses/test_entailment_head_switching.py claims.

    study = run_study(model, "smollm2-135m", EntailmentDesign(k=3, dose_k=(1, 3, 5, 10), ...))
    study.heads.top, study.effect(Switch(3)), study.sensitivity(CLEAN, hops=2)

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
4. confirm_final_row, on the confirmation groups: every final-row arm of the claims
   (lib/studies/entailment_arms.py) against its controls, as LD, and for the switch arms whether the
   top-1 token is the alternative and p(alternative).
5. copy_account: the induction heads mean-ablated, whole and along the switch heads' queries, with a
   reference from other groups' prompts (entailment_sweep.other_groups_mean); the switch heads'
   attention under each.
The study's `table` is tidy (attnclaims.effects): one row per prompt x arm x measure, the clean run's
LD for every prompt and each arm's measures on the confirmation prompts; every claim selects from it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pandas as pd
from transformer_lens.utilities import get_act_name

from attnclaims.arms import CLEAN, check_arms
from attnclaims.effects import tidy
from attnclaims.heads import every_head, same_layer_controls, top_heads
from attnclaims.pair_hooks import watch
from attnclaims.prompts.entailment import FAMILIES, minimal_pairs
from attnclaims.protocols import tokenize_pairs
from attnclaims.scores import induction_scores
from attnclaims.stats import discovery_confirmation_split
from attnclaims.studies.entailment_arms import (
    ABLATE_INDUCTION,
    FACT_SWAP,
    FACT_SWAP_CONTROL,
    INDUCTION_QUERIES,
    REDIRECT,
    REDIRECT_CONTROL,
    Decile,
    Heads,
    Prompts,
    SameLayer,
    SingleSwitch,
    Switch,
    SwitchDirect,
)
from attnclaims.studies.entailment_results import (
    COLUMNS,
    LD,
    ON_ANSWERS,
    P_ALTERNATIVE,
    RECENCY,
    TOP1,
    EntailmentStudy,
)
from attnclaims.studies.entailment_sweep import (
    EVERY_POSITION,
    alternative_metric,
    attention_frame,
    buckets,
    other_groups_mean,
    output_change,
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
    ld: pd.DataFrame  # per prompt: table columns and LD
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

    def capture(arm, store):
        hooks = [watch(store, arm, name, layer=layer) for name, layer in patterns + finals]
        return hooks + [watch(store, EVERY_POSITION, n, layer=lyr, final=False) for n, lyr in full_z]

    all_buckets = buckets(pairs.two_hop, pairs.meta) + buckets(pairs.one_hop, pairs.meta)
    clean, stores = sweep(model, all_buckets, [CLEAN], lambda b, i, s: None, capture=capture)
    return CleanRun(
        buckets=all_buckets,
        stores=stores,
        ld=clean.rename(columns={"value": LD}),
        attention=attention_frame(all_buckets, stores, CLEAN, range(n_layers)),
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
    singles = [SingleSwitch(head) for head in every_head(model)]
    meta = pairs.meta
    disc_pairs = [
        p for p in pairs.two_hop if meta[p.label]["split"] == "discovery" and meta[p.label]["swept"]
    ]
    prompts_of = lambda bucket, index, store: Prompts(model, bucket, store)
    disc, _ = sweep(model, buckets(disc_pairs, meta), [CLEAN, *singles], prompts_of)
    disc["prompt"] = disc.pair + ":" + disc.text
    clean_disc = disc[disc.arm == CLEAN.name].set_index("prompt").value
    disc = disc[disc.arm != CLEAN.name].copy()
    disc["delta"] = disc.value - disc.prompt.map(clean_disc)
    head_of = {arm.name: arm.head for arm in singles}
    disc["layer"], disc["head"] = (disc.arm.map(lambda name, i=i: head_of[name][i]) for i in (0, 1))
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


def draw_controls(model, clean: CleanRun, found: Discovery, design: EntailmentDesign) -> Heads:
    """The chosen heads with their controls, never a compared head: for each compared head another
    of its layer, or k of the top attention decile (each arm's control moves as much attention as the
    head it stands for: entailment_arms)."""
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
    return Heads(
        k=design.k,
        switch=found.switch_heads,
        fact=found.fact_heads,
        redirect=found.redirect_heads,
        induction=found.induction_heads,
        same_layer=same_layer,
        decile=decile,
        fact_controls=fact,
        redirect_controls=redirect,
    )


def confirmation_buckets(clean: CleanRun) -> tuple[list, list]:
    """(buckets, clean stores) of the two-hop pairs of held-out groups, every rule order."""
    keep = [
        i
        for i, b in enumerate(clean.buckets)
        if b.rows.split.iloc[0] == "confirmation" and b.rows.hops.iloc[0] == 2 and b.rows.swept.iloc[0]
    ]
    return [clean.buckets[i] for i in keep], [clean.stores[i] for i in keep]


def final_row_arms(heads: Heads, design: EntailmentDesign) -> list:
    """Step 4's arms, in the order they run: the dose grid of switches, each switch head alone, the
    switch's controls, the original question's redirect and its control, the fact heads' pattern swap
    and its control, and the switch's direct effect."""
    return [
        *(Switch(k, alpha) for k in design.dose_k for alpha in design.dose_alpha[1:]),
        *(SingleSwitch(head) for head in heads.switch),
        *(SameLayer(draw) for draw in range(design.control_draws)),
        *(Decile(draw) for draw in range(design.control_draws)),
        REDIRECT,
        REDIRECT_CONTROL,
        FACT_SWAP,
        FACT_SWAP_CONTROL,
        SwitchDirect(design.k),
    ]


def switch_arms(design: EntailmentDesign) -> list:
    """The arms whose switches (the alternative becoming the top-1 token) the claims count."""
    draws = [SameLayer(draw) for draw in range(design.control_draws)]
    return [CLEAN, Switch(design.k), *draws, REDIRECT, REDIRECT_CONTROL]


def confirm_final_row(model, clean: CleanRun, heads: Heads, design: EntailmentDesign) -> pd.DataFrame:
    """Step 4, the final-row arms on the confirmation prompts: tidy rows of LD for every arm, and of
    TOP1 and P_ALTERNATIVE for `switch_arms` (clean included: what a switch is counted against)."""
    conf_buckets, conf_stores = confirmation_buckets(clean)
    prompts_of = lambda bucket, index, store: Prompts(model, bucket, conf_stores[index], heads)
    ld, _ = sweep(model, conf_buckets, final_row_arms(heads, design), prompts_of)
    columns = (TOP1, P_ALTERNATIVE)
    switched, _ = sweep(
        model, conf_buckets, switch_arms(design), prompts_of, metric=alternative_metric, names=columns
    )
    return pd.concat(
        [tidy(ld.rename(columns={"value": LD}), [LD], COLUMNS), tidy(switched, columns, COLUMNS)],
        ignore_index=True,
    )


@dataclass(frozen=True)
class CopyAccount:
    """Step 5, the copy account: the top induction heads mean-ablated (whole run, and along the
    switch heads' queries only), with a reference from other groups' prompts."""

    table: pd.DataFrame  # tidy: LD under both arms; ON_ANSWERS and RECENCY under them and clean
    ablation_change: float  # how far the reference moves the induction heads' final-row output


COPY_ARMS = (ABLATE_INDUCTION, INDUCTION_QUERIES)


def copy_account(model, clean: CleanRun, heads: Heads) -> CopyAccount:
    """Full forwards from the lowest edited layer. A bucket's mean-ablation reference is the mean of
    other groups' two-hop prompts (never its own), position-matched (other_groups_mean)."""
    conf_buckets, conf_stores = confirmation_buckets(clean)
    top = heads.top
    layers = sorted({layer for layer, _ in top})
    watched = sorted({(get_act_name("pattern", layer), layer) for layer in layers})
    references = [
        {
            name: other_groups_mean(clean.buckets, clean.stores, b, (EVERY_POSITION, name))
            for name, _ in clean.full_z
        }
        for b in conf_buckets
    ]
    prompts_of = lambda b, index, store: Prompts(model, b, conf_stores[index], heads, references[index])
    capture = lambda arm, store: [watch(store, arm, name, layer=layer) for name, layer in watched]
    full, full_stores = sweep(model, conf_buckets, [ABLATE_INDUCTION], prompts_of, capture=capture)
    path, path_stores = sweep(
        model, conf_buckets, [INDUCTION_QUERIES], prompts_of, split_q=True, capture=capture
    )
    stores = [{**c, **a, **b} for c, a, b in zip(conf_stores, full_stores, path_stores)]
    looked = pd.concat(
        [
            answer_attention(conf_buckets, stores, arm, top)
            for arm in (CLEAN, ABLATE_INDUCTION, INDUCTION_QUERIES)
        ],
        ignore_index=True,
    )
    lds = pd.concat([full, path], ignore_index=True).rename(columns={"value": LD})
    return CopyAccount(
        table=pd.concat(
            [tidy(lds, [LD], COLUMNS), tidy(looked, [ON_ANSWERS, RECENCY], COLUMNS)], ignore_index=True
        ),
        ablation_change=output_change(conf_stores, references, heads.induction),
    )


def answer_attention(bucket_list, stores, arm, heads) -> pd.DataFrame:
    """Per prompt under `arm`: `heads`' mean final-row attention on both answers (ON_ANSWERS) and on
    the later answer minus the earlier one (RECENCY)."""
    frame = attention_frame(bucket_list, stores, arm, sorted({layer for layer, _ in heads}))
    frame = frame[[(layer, h) in heads for layer, h in zip(frame.layer, frame["head"])]]
    frame = frame.assign(
        **{ON_ANSWERS: frame.entailed + frame.alternative, RECENCY: frame.later - frame.earlier}
    )
    return (
        frame.groupby(list(COLUMNS), as_index=False, sort=False, dropna=False)[[ON_ANSWERS, RECENCY]]
        .mean()
        .assign(arm=arm.name)
    )


def run_study(model, model_name: str, design: EntailmentDesign) -> EntailmentStudy:
    """The study of `model` (recorded as `model_name`): steps 1-5 of the module docstring."""
    pairs = design_pairs(model, design)
    clean = clean_run(model, pairs, design)
    found = discover(model, pairs, clean, design)
    heads = draw_controls(model, clean, found, design)
    check_arms(dict.fromkeys([CLEAN, *final_row_arms(heads, design), *switch_arms(design), *COPY_ARMS]))
    final_row = confirm_final_row(model, clean, heads, design)
    copying = copy_account(model, clean, heads)
    return EntailmentStudy(
        name=model_name,
        design=design,
        skipped=pairs.skipped,
        table=pd.concat([tidy(clean.ld, [LD], COLUMNS), final_row, copying.table], ignore_index=True),
        attention=clean.attention,
        induction=clean.induction,
        switch_by_family=found.switch_by_family,
        heads=heads,
        ablation_change=copying.ablation_change,
    )
