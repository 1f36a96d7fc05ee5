"""The entailment protocol on a toy that reads two-hop rule chains: where each hop happens, and the switch.

    pairs = two_hop_pairs(n=240, seed=11)        # minimal pairs of the toy "entailment" task
    study = run_two_hop(model, "toy:two-hop-organism", pairs, k=3)
    study.behaviour, study.hop_heads, study.swaps, study.switch

A pair is one prompt of lib/tasks/entailment.py ("<bos> c3 b5 . b0 a7 . c1 b0 . b5 a2 . c3") and the
same rules queried with the other chain's condition (c1): only the query differs, so the entailed
answer of one text is the other's alternative. Every third pair is a discovery pair (selection);
the others confirm. Pairs are drawn independently, so a pair is the unit of every CI.

Rule order: the four rules come in a random order. Chains are numbered by where their condition
rule comes ("C1" first); a pair is `crossed` when chain 2's answer rule comes before chain 1's, so
"the answer in the same place as the queried condition" is the wrong one.

Steps, each one batched forward through attnclaims.sweep.run_variants:
1. Clean: LD = logit(entailed) - logit(alternative) and the top-1 token per prompt, and every
   head's final-row attention.
2. Fact-following per head and hop, averaged over a pair's two texts: hop 2, attention on the
   entailed answer word minus the alternative; hop 1, on the entailed bridge word (in its
   condition rule) minus the other. The top head per hop on the discovery pairs is that hop's head.
3. Pattern swap: each head in turn gets the other text's final-row pattern (EditAttention with
   partner_row); per pair, the share of the sensitivity LD(a) - LD(b) it removes.
4. The switch: the k heads with most final-row attention on the entailed answer (discovery) move
   it all to the alternative (MoveAttention); controls are other heads of the same layers
   (attnclaims.heads.same_layer_controls), each moving as much attention onto the alternative as
   the head it stands for (ShiftAttention), in CONTROL_DRAWS draws.
   `switched` = the top-1 token becomes the alternative answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from transformer_lens.utilities import get_act_name

from attnclaims.arms import CLEAN, Arm, build_all
from attnclaims.heads import Head, every_head, label, same_layer_controls, top_heads
from attnclaims.interventions import NOTHING, MoveAttention, ShiftAttention
from attnclaims.metrics import logit_diff, top1_is
from attnclaims.pair_hooks import watch
from attnclaims.studies.entailment_arms import PatternSwap
from attnclaims.sweep import run_variants
from attnclaims.tasks import TASKS
from attnclaims.toy import ToyConfig

TASK = ToyConfig(task="entailment", n_content=16)  # the prompts' vocabulary: every model here reads it
RULES = 4
CONTROL_DRAWS = 3


@dataclass(frozen=True)
class TwoHopPairs:
    """Minimal pairs stacked: row 2i is pair i's text a, row 2i+1 its text b (same rules, other query)."""

    tokens: torch.Tensor  # [2n, 14]
    entailed: torch.Tensor  # [2n] answer ids
    alternative: torch.Tensor
    entailed_pos: torch.Tensor  # [2n] positions of the answer words
    alternative_pos: torch.Tensor
    bridge_pos: torch.Tensor  # [2n] the entailed chain's bridge word, in its condition rule
    other_bridge_pos: torch.Tensor
    rows: pd.DataFrame  # per prompt: pair, text, order, crossed, split


def two_hop_pairs(n: int, seed: int) -> TwoHopPairs:
    """`n` pairs drawn with `seed` (a generator of its own: no training batch shares it)."""
    tokens, _ = TASKS[TASK.task].sample(TASK.task_params, torch.Generator().manual_seed(seed), n)
    first_c = 3  # ids: two specials, ".", then c-words, b-words, a-words (lib/tasks/entailment.py)
    texts, meta, columns = (
        [],
        [],
        {k: [] for k in ("entailed", "alternative", "e_pos", "a_pos", "b_pos", "o_pos")},
    )
    for i, row in enumerate(tokens.tolist()):
        rules = [(row[1 + 3 * r], row[2 + 3 * r], 2 + 3 * r) for r in range(RULES)]  # (x, y, position of y)
        conditions = [r for r in rules if first_c <= r[0] < first_c + TASK.n_content]
        answers = {x: (y, at) for x, y, at in rules if (x, y, at) not in conditions}
        chain_of = {x: c for c, (x, _, _) in enumerate(conditions)}  # chains numbered by condition rule
        order = " ".join(
            f"C{chain_of[x] + 1}"
            if (x, y, at) in conditions
            else f"A{chain_of[_condition(conditions, x)] + 1}"
            for x, y, at in rules
        )
        crossed = order.index("A2") < order.index("A1")
        prefix = row[:-2]
        for text, (c, b, b_at) in zip("ab", [_chain(conditions, row[-2]), _other(conditions, row[-2])]):
            other = _other(conditions, c)
            texts.append(prefix + [c])
            columns["entailed"].append(answers[b][0])
            columns["alternative"].append(answers[other[1]][0])
            columns["e_pos"].append(answers[b][1])
            columns["a_pos"].append(answers[other[1]][1])
            columns["b_pos"].append(b_at)
            columns["o_pos"].append(other[2])
            split = "discovery" if i % 3 == 0 else "confirmation"
            meta.append({"pair": i, "text": text, "order": order, "crossed": crossed, "split": split})
    as_tensor = {k: torch.tensor(v) for k, v in columns.items()}
    return TwoHopPairs(
        torch.tensor(texts),
        as_tensor["entailed"],
        as_tensor["alternative"],
        as_tensor["e_pos"],
        as_tensor["a_pos"],
        as_tensor["b_pos"],
        as_tensor["o_pos"],
        pd.DataFrame(meta),
    )


def _chain(conditions, c):
    return next(r for r in conditions if r[0] == c)


def _other(conditions, c):
    return next(r for r in conditions if r[0] != c)


def _condition(conditions, bridge):
    return next(x for x, y, _ in conditions if y == bridge)


@dataclass(frozen=True)
class TwoHopStudy:
    name: str  # the model, as the ledger records it
    prompts: pd.DataFrame  # per prompt: rows' columns, ld, correct (top-1 = entailed answer)
    behaviour: pd.DataFrame  # per pair: pair, split, crossed, order, sensitivity LD(a) - LD(b)
    follows: pd.DataFrame  # per pair x head: split, layer, head, hop1, hop2 (fact-following scores)
    hop_heads: dict[str, Head]  # "hop 1", "hop 2": top head by discovery fact-following
    swaps: pd.DataFrame  # per pair x head: sensitivity clean and with the other text's pattern
    switch_heads: list[Head]
    switch: pd.DataFrame  # per prompt: switched, control_switched (mean of draws; NaN where the clean
    # answer is already the alternative), delta, control_delta


def run_two_hop(model, name: str, pairs: TwoHopPairs, k: int = 3) -> TwoHopStudy:
    n_layers = model.cfg.n_layers
    ld = logit_diff(pairs.entailed, pairs.alternative, per_prompt=True)
    store: dict = {}
    names = [get_act_name("pattern", layer) for layer in range(n_layers)]
    watched = [watch(store, CLEAN, n, layer=layer) for layer, n in enumerate(names)]
    clean_ld = run_variants(model, pairs.tokens, {CLEAN: watched}, ld)[CLEAN]
    correct = run_variants(model, pairs.tokens, {CLEAN: NOTHING}, top1_is(pairs.entailed))[CLEAN]
    prompts = pairs.rows.assign(ld=clean_ld.numpy(), correct=correct.bool().numpy())

    pattern = torch.stack([store[(CLEAN, n)] for n in names], 1)  # [2n, layer, head, key]
    rows = torch.arange(len(pairs.rows))

    def weight(pos):  # [2n, layer, head]
        return pattern[rows, :, :, pos]

    hop2 = weight(pairs.entailed_pos) - weight(pairs.alternative_pos)
    hop1 = weight(pairs.bridge_pos) - weight(pairs.other_bridge_pos)
    heads = every_head(model)
    follows = _per_pair_head(pairs, heads, hop1=hop1, hop2=hop2, on_answer=weight(pairs.entailed_pos))
    discovery = follows.query("split == 'discovery'").groupby(["layer", "head"])
    hop_heads = {
        "hop 1": top_heads(discovery.hop1.mean(), 1)[0],
        "hop 2": top_heads(discovery.hop2.mean(), 1)[0],
    }

    swap_arms = {PatternSwap((h,)): h for h in heads}
    swapped = {
        swap_arms[arm]: v
        for arm, v in run_variants(model, pairs.tokens, build_all(swap_arms, pairs), ld).items()
    }
    sensitivity = _sensitivity(clean_ld)
    firsts = pairs.rows.query("text == 'a'")[["pair", "split", "crossed", "order"]].reset_index(drop=True)
    behaviour = firsts.assign(sensitivity=sensitivity)
    swaps = pd.concat(
        [
            pd.DataFrame(
                {"pair": np.arange(len(sensitivity)), "layer": h.layer, "head": h.head}
                | {"clean": sensitivity, "swapped": _sensitivity(swapped[h])}
            )
            for h in heads
        ],
        ignore_index=True,
    ).merge(firsts, on="pair")

    switch_heads = top_heads(discovery.on_answer.mean(), k)
    switch = _switch(model, pairs, pattern, switch_heads, ld, clean_ld)
    return TwoHopStudy(name, prompts, behaviour, follows, hop_heads, swaps, switch_heads, switch)


def _sensitivity(ld: torch.Tensor) -> np.ndarray:
    """Per pair: LD(text a) - LD(text b), each LD read as entailed - alternative of text a."""
    pair = ld.reshape(-1, 2)
    return (pair[:, 0] + pair[:, 1]).numpy()  # text b's LD is oriented to its own entailed answer


def _per_pair_head(pairs: TwoHopPairs, heads: list[Head], **scores: torch.Tensor) -> pd.DataFrame:
    """Per pair x head: each [2n, layer, head] score averaged over the pair's two texts."""
    frame = pairs.rows.query("text == 'a'")[["pair", "split", "crossed"]].reset_index(drop=True)
    out = []
    for h in heads:
        values = {name: s[:, h.layer, h.head].reshape(-1, 2).mean(1).numpy() for name, s in scores.items()}
        out.append(frame.assign(layer=h.layer, head=h.head, **values))
    return pd.concat(out, ignore_index=True)


@dataclass(frozen=True)
class Switch(Arm):
    """`heads`' final-row weight on the entailed answer moved to the alternative."""

    heads: tuple

    @property
    def name(self) -> str:
        return f"switch {label(self.heads)}"

    def build(self, pairs: TwoHopPairs):
        return MoveAttention(list(self.heads), src=pairs.entailed_pos, dst=pairs.alternative_pos)


@dataclass(frozen=True)
class MatchedControl(Arm):
    """`controls` (one per head of `compared`), each moving onto the alternative as much attention as
    its compared head has on the entailed answer in the clean run (`pattern`, [2n, layer, head, key])."""

    controls: tuple
    compared: tuple
    draw: int

    @property
    def name(self) -> str:
        return f"same-layer control {self.draw} ({label(self.controls)})"

    def build(self, prompts):
        pairs, pattern = prompts
        rows = torch.arange(len(pairs.rows))
        parts = [
            ShiftAttention(
                [c], dst=pairs.alternative_pos, mass=pattern[rows, h.layer, h.head, pairs.entailed_pos]
            )
            for c, h in zip(self.controls, self.compared)
        ]
        return sum(parts[1:], parts[0])


def _switch(model, pairs, pattern, switch_heads, ld, clean_ld) -> pd.DataFrame:
    """The switch of `switch_heads` and CONTROL_DRAWS same-layer controls moving as much attention.
    A switch counts on prompts whose clean top-1 token is not already the alternative (NaN elsewhere)."""
    rng = random.Random(0)
    switch = Switch(tuple(switch_heads))
    controls = [
        MatchedControl(
            tuple(same_layer_controls(rng, switch_heads, model.cfg.n_layers, model.cfg.n_heads)),
            tuple(switch_heads),
            draw,
        )
        for draw in range(CONTROL_DRAWS)
    ]
    variants = {switch: switch.build(pairs)} | {c: c.build((pairs, pattern)) for c in controls}
    lds = run_variants(model, pairs.tokens, variants, ld)
    switched = run_variants(model, pairs.tokens, {CLEAN: NOTHING, **variants}, top1_is(pairs.alternative))
    eligible = torch.where(switched[CLEAN] == 1, torch.nan, 1.0)
    return pairs.rows.assign(
        switched=(eligible * switched[switch]).numpy(),
        control_switched=(eligible * torch.stack([switched[c] for c in controls]).mean(0)).numpy(),
        delta=(lds[switch] - clean_ld).numpy(),
        control_delta=torch.stack([lds[c] - clean_ld for c in controls]).mean(0).numpy(),
    )


def plot_mechanism(study: TwoHopStudy, path) -> None:
    """Per head: hop-1 and hop-2 fact-following (confirmation pairs) and the share of the sensitivity
    its pattern swap removes: which layer and head carries each hop."""
    import matplotlib.pyplot as plt

    held_out = (
        study.follows.query("split == 'confirmation'").groupby(["layer", "head"])[["hop1", "hop2"]].mean()
    )
    swaps = study.swaps.query("split == 'confirmation'").groupby(["layer", "head"])
    share = swaps.apply(lambda g: 1 - g.swapped.sum() / g.clean.sum() if g.clean.sum() else np.nan)
    panels = {
        "hop 1: attention on the entailed bridge - other": held_out.hop1,
        "hop 2: attention on the entailed answer - other": held_out.hop2,
        "share of sensitivity removed by its pattern swap": share,
    }
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, (title, values) in zip(axes, panels.items()):
        grid = values.unstack("head").to_numpy(dtype=float)
        bound = max(1.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1.0
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-bound, vmax=bound)
        for (layer, head), value in np.ndenumerate(grid):
            dark = abs(value) > 0.6 * bound
            ax.text(
                head, layer, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w" if dark else "k"
            )
        ax.set(
            title=title,
            xlabel="head",
            ylabel="layer",
            xticks=range(grid.shape[1]),
            yticks=range(grid.shape[0]),
        )
        ax.title.set_fontsize(8)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"{study.name}: where each hop happens (held-out pairs)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
