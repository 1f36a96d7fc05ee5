"""The entailment protocol, one for every model: real models, trained toys, organisms and cheats.

    pairs = design_pairs(model, design)              # or chain_pairs(240, seed=11) on a toy
    study = run_entailment_study(model, "smollm2-135m", design, pairs)
    study.heads.hop, study.effect(Switch(3)), study.sensitivity(CLEAN, hops=2, crossed=True)

Steps, in the order they run, one function each that run_entailment_study calls in turn (every
stacked forward goes through attnclaims.sweep.run_variants):
1. the pairs (attnclaims.studies.entailment_pairs): minimal pairs as position-matched buckets, each
   prompt with its group (the unit), split (discovery / confirmation, disjoint by group), rule order.
2. clean_run: induction scores of every head on repeated random tokens; the clean run of every
   prompt: LD, whether the top-1 token is the entailed answer, every head's final-row attention, and
   the activations later steps freeze (the direct effect) or use as the mean-ablation reference.
3. discover, on the discovery prompts: every head's single switch (its final-row weight on the
   entailed answer moved to the alternative) and its pattern swap (its final-row pattern replaced by
   the other text's). The hop heads are the heads whose pattern swap removes at least
   design.select_share of the discovery sensitivity (at most design.max_hop_heads, best first; none
   where that sensitivity is not above 0), each labelled hop 1 or hop 2 by where its attention
   follows the fact more, on the bridge or on the answer; the switch heads are ranked by switch
   effect, the redirect heads by attention on the entailed answer, the induction heads by score.
   draw_controls: the control draws (random.Random(0)).
4. confirm_final_row, on the confirmation prompts: every final-row arm of the claims
   (lib/studies/entailment_arms.py) against its controls, as LD, and for the switch arms whether the
   top-1 token is the alternative and p(alternative).
5. the copy account (attnclaims.studies.entailment_copying): the induction heads mean-ablated, and
   the token before each answer replaced (design.copy_test).
The study's `table` is tidy (attnclaims.effects): one row per prompt x arm x measure, every claim a
selection from it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pandas as pd
from transformer_lens.utilities import get_act_name

from attnclaims.arms import CLEAN, check_arms
from attnclaims.effects import per_unit, tidy
from attnclaims.heads import every_head, same_layer_controls, top_heads
from attnclaims.pair_hooks import watch
from attnclaims.scores import induction_scores
from attnclaims.studies.entailment_arms import (
    HOP_SWAP,
    HOP_SWAP_CONTROL,
    REDIRECT,
    REDIRECT_CONTROL,
    Decile,
    Heads,
    PatternSwap,
    Prompts,
    SameLayer,
    SingleSwitch,
    Switch,
    SwitchDirect,
)
from attnclaims.studies.entailment_copying import copy_account, copying_arms
from attnclaims.studies.entailment_pairs import DesignPairs
from attnclaims.studies.entailment_results import COLUMNS, CORRECT, LD, P_ALTERNATIVE, TOP1, EntailmentStudy
from attnclaims.studies.entailment_sweep import (
    EVERY_POSITION,
    alternative_metric,
    answer_metric,
    attention_frame,
    buckets,
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
    discovery_fraction: float  # real models: share of groups in the discovery split
    order_sets: tuple[tuple[str, str], ...]  # real models: rule orders per family, alternating
    select_share: float = 0.25  # a hop head's pattern swap removes at least this share of the sensitivity
    max_hop_heads: int = 4  # at most this many hop heads, best first
    copy_test: bool = True  # replace the token before each answer (real models: it is not the bridge)


@dataclass(frozen=True)
class CleanRun:
    """Step 2: induction scores, and the clean run of every prompt with what later steps read."""

    buckets: list  # every pair's texts in position-matched buckets (entailment_sweep.buckets)
    stores: list  # per bucket: the clean activations captured (final rows, and full z of induction layers)
    table: pd.DataFrame  # tidy: LD and CORRECT of every prompt under CLEAN
    attention: pd.DataFrame  # per prompt x head: final-row attention (entailment_sweep.attention_frame)
    induction: np.ndarray  # [layer, head] induction scores
    top_induction: list  # the top 3 * n_induction heads by induction score
    full_z: list  # (hook name, layer) of the z captured at every position: the induction heads' layers


def clean_run(model, pairs: DesignPairs, design: EntailmentDesign) -> CleanRun:
    n_layers = model.cfg.n_layers
    pool = ordinary_token_ids(model, n=min(2000, model.cfg.d_vocab // 2))
    rep = random_repeats(model, pool, seed=0, batch=8, seq_len=min(24, (model.cfg.n_ctx - 1) // 2))
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
    nothing = lambda b, i, s: None
    clean, stores = sweep(
        model, all_buckets, [CLEAN], nothing, metric=answer_metric, names=(LD, CORRECT), capture=capture
    )
    return CleanRun(
        buckets=all_buckets,
        stores=stores,
        table=tidy(clean, [LD, CORRECT], COLUMNS),
        attention=attention_frame(all_buckets, stores, CLEAN, range(n_layers)),
        induction=induction,
        top_induction=top_induction,
        full_z=full_z,
    )


@dataclass(frozen=True)
class Discovery:
    """Step 3: the heads chosen on discovery groups, and what they were chosen on."""

    hop_heads: list
    hop_of: dict
    redirect_heads: list
    switch_by_family: pd.DataFrame  # per family x head: mean delta LD of the single-head switch
    swap_by_family: pd.DataFrame  # per family x head: sensitivity removed by the head's pattern swap
    swap_shares: pd.Series  # per head: share of the discovery sensitivity its pattern swap removes
    switch_heads: list
    induction_heads: list


def discovery_attention(clean: CleanRun):
    """The clean final-row attention of the discovery groups' two-hop prompts, grouped by head."""
    return clean.attention.query("hops == 2 and split == 'discovery'").groupby(["layer", "head"])


def discover(model, pairs: DesignPairs, clean: CleanRun, design: EntailmentDesign) -> Discovery:
    """Every head's single switch and pattern swap on the discovery prompts (one rule order per real
    family), and the heads chosen from them and from the clean run (module docstring, step 3)."""
    disc_attention = discovery_attention(clean)
    heads = every_head(model)
    singles = {SingleSwitch(head): head for head in heads}
    swaps = {PatternSwap((head,)): head for head in heads}
    meta = pairs.meta
    disc_pairs = [p for p in pairs.two_hop if meta[p.name]["split"] == "discovery" and meta[p.name]["swept"]]
    prompts_of = lambda bucket, index, store: Prompts(model, bucket, store)
    disc, _ = sweep(model, buckets(disc_pairs, meta), [CLEAN, *singles, *swaps], prompts_of)
    disc["prompt"] = disc.pair + ":" + disc.text
    clean_rows = disc[disc.arm == CLEAN.name]
    clean_ld = clean_rows.set_index("prompt").value
    head_of = {arm.name: head for arm, head in {**singles, **swaps}.items()}

    def per_head(rows: pd.DataFrame, column: str) -> pd.DataFrame:
        rows = rows.assign(
            layer=rows.arm.map(lambda n: head_of[n][0]), head=rows.arm.map(lambda n: head_of[n][1])
        )
        return rows.groupby(["group", "family", "layer", "head"], as_index=False)[column].mean()

    moved = disc[disc.arm.isin([a.name for a in singles])].copy()
    moved["delta"] = moved.value - moved.prompt.map(clean_ld)
    switch_by_family = per_head(moved, "delta")
    sensitivity = sensitivity_by_pair(clean_rows.drop(columns=["arm"]))
    swapped = sensitivity_by_pair(disc[disc.arm.isin([a.name for a in swaps])])
    swapped = swapped.merge(sensitivity[["pair", "value"]].rename(columns={"value": "clean"}), on="pair")
    swapped["removed"] = swapped.clean - swapped.value
    swap_by_family = per_head(swapped, "removed")
    total = float(per_unit(sensitivity).mean())  # the discovery sensitivity, its groups weighted alike
    removed = (
        swap_by_family.groupby(["group", "layer", "head"]).removed.mean().groupby(["layer", "head"]).mean()
    )
    shares = removed / total if total > 0 else removed * float("nan")
    hop_heads = top_heads(shares[shares >= design.select_share], design.max_hop_heads)
    bridge, answer = disc_attention.follows_bridge.mean(), disc_attention.follows.mean()
    hop_of = {h: "hop 1" if bridge.get(h, float("-inf")) > answer[h] else "hop 2" for h in hop_heads}
    per_head_switch = switch_by_family.groupby(["layer", "head"]).delta.mean()
    switch_heads = top_heads(per_head_switch, max(design.dose_k), largest=False)
    lowest = min(lyr for lyr, _ in switch_heads[: design.k])
    return Discovery(
        hop_heads=hop_heads,
        hop_of=hop_of,
        redirect_heads=top_heads(disc_attention.entailed.mean(), design.k),
        switch_by_family=switch_by_family,
        swap_by_family=swap_by_family,
        swap_shares=shares,
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
    hop = same_layer_controls(rng, found.hop_heads, n_layers, n_heads)
    redirect = same_layer_controls(rng, found.redirect_heads, n_layers, n_heads)
    return Heads(
        k=design.k,
        switch=found.switch_heads,
        hop=found.hop_heads,
        hop_of=found.hop_of,
        redirect=found.redirect_heads,
        induction=found.induction_heads,
        same_layer=same_layer,
        decile=decile,
        hop_controls=hop,
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
    switch's controls, the original question's redirect and its control, the hop heads' pattern swap
    and its control (where there are hop heads), and the switch's direct effect."""
    return [
        *(Switch(k, alpha) for k in design.dose_k for alpha in design.dose_alpha[1:]),
        *(SingleSwitch(head) for head in heads.switch),
        *(SameLayer(draw) for draw in range(design.control_draws)),
        *(Decile(draw) for draw in range(design.control_draws)),
        REDIRECT,
        REDIRECT_CONTROL,
        *((HOP_SWAP, HOP_SWAP_CONTROL) if heads.hop else ()),
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


def run_entailment_study(
    model, model_name: str, design: EntailmentDesign, pairs: DesignPairs
) -> EntailmentStudy:
    """The study of `model` (recorded as `model_name`) on `pairs`: steps 1-5 of the module docstring."""
    clean = clean_run(model, pairs, design)
    found = discover(model, pairs, clean, design)
    heads = draw_controls(model, clean, found, design)
    copying = copying_arms(heads, design)
    check_arms(dict.fromkeys([CLEAN, *final_row_arms(heads, design), *switch_arms(design), *copying]))
    final_row = confirm_final_row(model, clean, heads, design)
    copied = copy_account(model, clean, heads, design, confirmation_buckets(clean))
    return EntailmentStudy(
        name=model_name,
        design=design,
        skipped=pairs.skipped,
        table=pd.concat([clean.table, final_row, copied.table], ignore_index=True),
        attention=clean.attention,
        induction=clean.induction,
        switch_by_family=found.switch_by_family,
        swap_by_family=found.swap_by_family,
        swap_shares=found.swap_shares,
        heads=heads,
        ablation_change=copied.ablation_change,
    )
