"""The real-model part of the induction-heads study, computed once: hypotheses/test_induction_heads.py
claims.

    study = run_induction_real(model, "smollm2-135m", RealDesign(seq_len=16, top_k=5, ...), figure_path)
    study.top, study.confirm.mean(), study.random.top["mean"] - study.random.clean

Steps, in the order they run:
1. Discovery: induction scores of every head on a batch of repeated random tokens drawn from the
   tokenizer's ordinary vocabulary (attnclaims.tasks.random_repeats, seed 11); the top `top_k` heads.
2. Confirmation on a disjoint batch (seed 12) and on repeated natural text (prompts/text.py): the
   top heads' induction score per sequence, and the entropy of the top heads and of their controls
   on the first and on the repeated half; each top head's control is the head whose first-half
   entropy on the discovery batch is nearest its own (attnclaims.heads.nearest_controls).
3. Controls: `control_draws` draws of one random head of each top head's layer, never a top head
   (attnclaims.heads.same_layer_controls, random.Random(0); the nearest layer with one left fills in
   where a layer has too few other heads).
4. Ablations, one call of the sweep engine (attnclaims.sweep.run_variants) per text: the top heads and each
   draw ablated by every kind (reference: another batch, seed 13), and whole layers mean-ablated but
   for the top heads or a draw. On natural text, mean ablation only, the reference the mean over
   the windows of the other half of the paragraphs (cross_paragraph_ablations). Each
   run is read three ways (AblationMeasures): loss on the repeated half, loss on the first half (no
   repeat to use there), and top-1 accuracy on the repeated half (bounded, where a loss can pass
   ln(vocabulary) and measure a broken model).
Then the figure (discovery map, loss rises with 95% CIs) goes to the path the hypothesis gives.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import matplotlib.pyplot as plt
import torch

from attnclaims.arms import CLEAN, Arm, build_all
from attnclaims.heads import nearest_controls, same_layer_controls, top_heads
from attnclaims.interventions import AblateHeads, source_cache
from attnclaims.metrics import mean_loss
from attnclaims.prompts.text import PARAGRAPHS
from attnclaims.scores import attention_patterns, entropy_from_pattern, induction_score_from_pattern
from attnclaims.stats import bootstrap_ci
from attnclaims.sweep import run_variants
from attnclaims.tasks import bos_id, ordinary_token_ids, random_repeats
from attnclaims.tasks.repeat import halves


@dataclass(frozen=True)
class RealDesign:
    """What the real-model study measures; the hypothesis file states the values."""

    seq_len: int  # S, length of the repeated sequence
    batch: int  # sequences per batch of repeated random tokens
    top_k: int  # heads selected on the discovery batch
    control_draws: int  # draws of random same-layer heads
    ablations: tuple[str, ...]  # ablation kinds on repeated random tokens ("zero", "mean", "resample")

    @property
    def arms(self) -> tuple[Arm, ...]:
        """What the study does to the model on repeated random tokens (`ablation_arms`); on natural
        text, the mean ablations among them."""
        return ablation_arms(self.ablations, self.control_draws)


def natural_repeats(model, seq_len: int, windows_per_paragraph: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """([n, 1 + 2S], [n]): BOS, S consecutive tokens of a paragraph of prompts/text.py, the same S
    again; and each window's paragraph (the unit: windows of one paragraph are not independent)."""
    S = seq_len
    rows, paragraph_of = [], []
    for index, paragraph in enumerate(PARAGRAPHS):
        ids = model.to_tokens(paragraph, prepend_bos=False)[0]
        windows = [ids[i * S : (i + 1) * S] for i in range(min(windows_per_paragraph, len(ids) // S))]
        rows += windows
        paragraph_of += [index] * len(windows)
    half = torch.stack(rows)
    tokens = torch.cat([torch.full((len(rows), 1), bos_id(model)), half, half], dim=1)
    return tokens, torch.tensor(paragraph_of)


@dataclass(frozen=True)
class Entropy:
    """Mean attention entropy per held-out sequence (nats, [batch] each): the top heads, and their
    entropy-matched controls, over the queries of the first half and of the repeated half."""

    top_first: torch.Tensor
    top_repeated: torch.Tensor
    control_first: torch.Tensor
    control_repeated: torch.Tensor
    controls: tuple  # per top head, the head nearest its first-half entropy on the discovery batch
    baseline: torch.Tensor  # [layer, head] first-half entropy on the discovery batch


@dataclass(frozen=True)
class Ablations:
    """Loss on the repeated half [batch] per prompt, under each intervention."""

    clean: torch.Tensor
    top: dict  # {how: [batch]} the top heads ablated
    random: dict  # {how: [draws, batch]} random same-layer heads ablated
    layers_ablated: torch.Tensor | None = None  # every head of the top heads' layers mean-ablated
    top_kept: torch.Tensor | None = None  # only the top heads kept, the rest of their layers mean-ablated
    random_kept: torch.Tensor | None = None  # [draws, batch] random same-layer heads kept instead


class AblationMeasures(NamedTuple):
    """The same runs read three ways, each per prompt ([batch])."""

    repeated: Ablations  # loss on the repeated half: what the repeat's benefit is measured by
    first: Ablations  # loss on the first half: what the ablation costs where there is no repeat
    accuracy: Ablations  # top-1 accuracy on the repeated half


def repeat_measures(tokens: torch.Tensor, seq_len: int):
    """Metric: [batch, 3] loss on the repeated half, loss on the first half, top-1 accuracy on the
    repeated half (attnclaims.tasks.repeat.halves)."""
    first, repeated = halves(seq_len)
    loss = mean_loss(tokens, (repeated, first), per_prompt=True)  # [batch, 2]

    def metric(logits: torch.Tensor) -> torch.Tensor:
        correct = (logits[:, :-1].argmax(-1) == tokens[:, 1:].to(logits.device)).float()
        return torch.cat([loss(logits), correct[:, repeated].mean(1, keepdim=True)], 1)

    return metric


@dataclass(frozen=True)
class Ablate(Arm):
    """The top heads (`draw` None) or draw `draw` of random same-layer heads knocked out (`how`: zero,
    mean or resample over the reference); `keep`: those heads kept instead, every other head of the
    top heads' layers mean-ablated. Built for an `AblationContext`."""

    how: str
    draw: int | None = None
    keep: bool = False

    @property
    def name(self) -> str:
        which = "the top heads" if self.draw is None else f"random draw {self.draw}"
        return (
            f"{which} kept, the rest of their layers mean-ablated"
            if self.keep
            else f"{which} {self.how}-ablated"
        )

    def build(self, context: AblationContext):
        heads = context.top if self.draw is None else context.draws[self.draw]
        if self.keep:
            return AblateHeads([h for h in context.every if h not in heads], "mean", context.reference)
        return AblateHeads(list(heads), self.how, context.reference)


@dataclass(frozen=True)
class AblateLayers(Arm):
    """Every head of the top heads' layers mean-ablated."""

    @property
    def name(self) -> str:
        return "every head of the top heads' layers mean-ablated"

    def build(self, context: AblationContext):
        return AblateHeads(context.every, "mean", context.reference)


class AblationContext(NamedTuple):
    """What the arms are built for: the reference cache, the top heads, the draws of random
    same-layer heads, and every head of the top heads' layers."""

    reference: dict
    top: tuple
    draws: tuple
    every: tuple


def ablation_arms(hows: tuple[str, ...], draws: int, sufficiency: bool = True) -> tuple[Arm, ...]:
    """The arms `ablations` runs, in order: the clean run; for each kind in `hows`, the top heads and
    each of `draws` draws of random same-layer heads ablated; with `sufficiency`, the top heads'
    layers mean-ablated, and those layers kept to the top heads or to each draw.

        ablation_arms(("zero", "mean"), draws=5)  # what RealDesign(...).arms gives
    """
    arms = [CLEAN]
    for how in hows:
        arms += [Ablate(how), *(Ablate(how, i) for i in range(draws))]
    if sufficiency:
        arms += [
            AblateLayers(),
            Ablate("mean", keep=True),
            *(Ablate("mean", i, keep=True) for i in range(draws)),
        ]
    return tuple(arms)


def ablations(
    model, tokens, reference, top, draws, seq_len: int, hows: tuple[str, ...], sufficiency: bool = True
) -> AblationMeasures:
    """Every arm of `ablation_arms(hows, len(draws), sufficiency)` in one call of the sweep engine:
    the top heads and each draw of random same-layer heads ablated (`hows`), and (`sufficiency`)
    whole layers mean-ablated but for the top heads or a draw of random heads."""
    heads = [*top, *(head for draw in draws for head in draw)]
    ref_cache = source_cache(model, reference, "z", [layer for layer, _ in heads])
    layers = sorted({layer for layer, _ in top})
    every = tuple((layer, h) for layer in layers for h in range(model.cfg.n_heads))
    context = AblationContext(ref_cache, tuple(top), tuple(tuple(draw) for draw in draws), every)
    values = run_variants(
        model,
        tokens,
        build_all(ablation_arms(hows, len(draws), sufficiency), context),
        repeat_measures(tokens, seq_len),
        desc="induction ablations",
    )
    return AblationMeasures(
        *(
            _read(values, column, len(draws), hows, sufficiency)
            for column in range(len(AblationMeasures._fields))
        )
    )


def _read(values: dict, column: int, draws: int, hows, sufficiency: bool) -> Ablations:
    """One measure of every arm's [batch, 3] values, as Ablations."""
    v = {arm: value[:, column] for arm, value in values.items()}
    randoms = lambda how, keep=False: torch.stack([v[Ablate(how, i, keep)] for i in range(draws)])
    kept = (
        {
            "layers_ablated": v[AblateLayers()],
            "top_kept": v[Ablate("mean", keep=True)],
            "random_kept": randoms("mean", keep=True),
        }
        if sufficiency
        else {}
    )
    return Ablations(
        clean=v[CLEAN],
        top={how: v[Ablate(how)] for how in hows},
        random={how: randoms(how) for how in hows},
        **kept,
    )


def cross_paragraph_ablations(model, tokens, paragraph, top, draws, seq_len: int) -> AblationMeasures:
    """Mean ablation of natural-text windows with a reference drawn from other paragraphs: the
    windows of even-numbered paragraphs take the mean over the odd ones' windows, and the other way
    round (never the windows ablated); results in the windows' order."""
    even = paragraph % 2 == 0
    folds = [
        (rows, ablations(model, tokens[rows], tokens[~rows], top, draws, seq_len, ("mean",), False))
        for rows in (even, ~even)
    ]

    def merged(part: int) -> Ablations:
        def join(pick) -> torch.Tensor:  # [..., windows] in the windows' order
            out = torch.empty(*pick(folds[0][1][part]).shape[:-1], len(tokens))
            for rows, measures in folds:
                out[..., rows] = pick(measures[part])
            return out

        return Ablations(
            clean=join(lambda a: a.clean),
            top={"mean": join(lambda a: a.top["mean"])},
            random={"mean": join(lambda a: a.random["mean"])},
        )

    return AblationMeasures(*(merged(part) for part in range(len(AblationMeasures._fields))))


def recovered(a: Ablations, kept: torch.Tensor) -> torch.Tensor:
    """[batch] share of the loss rise from mean-ablating the whole layers that keeping `kept` heads undoes."""
    return (a.layers_ablated - kept) / (a.layers_ablated - a.clean)


@dataclass(frozen=True)
class RealStudy:
    discovery: torch.Tensor  # [layer, head] induction scores on the discovery batch
    top: tuple[tuple[int, int], ...]
    confirm: torch.Tensor  # [batch] held-out induction score of the top heads (mean over them), per sequence
    natural_confirm: torch.Tensor  # [n] the same on repeated natural text, per window
    natural_paragraph: torch.Tensor  # [n] each natural window's paragraph (the unit of its CIs)
    entropy: Entropy
    random: AblationMeasures  # repeated random tokens
    natural: AblationMeasures  # repeated natural text (mean ablation only)


def top_head_score(patterns: torch.Tensor, top, seq_len: int) -> torch.Tensor:
    """[batch] induction score of the `top` heads, mean over them; patterns [layer, batch, head, q, k]."""
    return torch.stack(
        [induction_score_from_pattern(patterns[layer], seq_len)[:, head] for layer, head in top]
    ).mean(0)


def run_induction_real(model, model_name: str, design: RealDesign, figure: Path) -> RealStudy:
    """The steps of the module docstring on `model`; writes the figure to `figure` (a .png path)."""
    S = design.seq_len
    pool = ordinary_token_ids(model)
    patterns = attention_patterns(model, random_repeats(model, pool, 11, design.batch, S))  # discovery batch
    discovery = torch.stack([induction_score_from_pattern(p, S).mean(0) for p in patterns])
    top = top_heads(discovery, design.top_k)
    first, repeated = slice(1, S + 1), slice(S + 1, None)  # the queries of each copy
    baseline = torch.stack([entropy_from_pattern(p)[:, :, first].mean((0, 2)) for p in patterns])
    controls = nearest_controls(baseline, top)
    tokens, reference, natural, paragraph = (
        random_repeats(model, pool, 12, design.batch, S),
        random_repeats(model, pool, 13, design.batch, S),
        *natural_repeats(model, S),
    )
    confirm = attention_patterns(model, tokens)  # [layer, batch, head, q, k]
    rows = {layer: entropy_from_pattern(confirm[layer]) for layer, _ in [*top, *controls]}  # [batch, head, q]
    entropy = {}
    for half, queries in (("first", first), ("repeated", repeated)):
        for kind, heads in (("top", top), ("control", controls)):
            entropy[f"{kind}_{half}"] = torch.stack([rows[l][:, h, queries].mean(-1) for l, h in heads]).mean(
                0
            )
    rng = random.Random(0)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    draws = [same_layer_controls(rng, top, n_layers, n_heads) for _ in range(design.control_draws)]
    study = RealStudy(
        discovery=discovery,
        top=tuple(top),
        confirm=top_head_score(confirm, top, S),
        natural_confirm=top_head_score(attention_patterns(model, natural), top, S),
        natural_paragraph=paragraph,
        entropy=Entropy(**entropy, controls=tuple(controls), baseline=baseline),
        random=ablations(model, tokens, reference, top, draws, S, design.ablations),
        natural=cross_paragraph_ablations(model, natural, paragraph, top, draws, S),
    )
    plot_real(study, model_name, design, figure)
    return study


def plot_real(study: RealStudy, model_name: str, design: RealDesign, path: Path) -> None:
    fig, (ax_map, ax_bar) = plt.subplots(1, 2, figsize=(10, 6), gridspec_kw={"width_ratios": [1, 2]})
    image = ax_map.imshow(study.discovery.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax_map.set(xlabel="head", ylabel="layer", title=f"induction score, {model_name}")
    fig.colorbar(image, ax=ax_map)
    a = study.random.repeated
    labels, values = [], []
    for how in design.ablations:
        labels += [f"top {how}", f"random {how}"]
        values += [a.top[how] - a.clean, a.random[how].mean(0) - a.clean]
    labels += ["whole layers", "top kept", "random kept"]
    values += [a.layers_ablated - a.clean, a.top_kept - a.clean, a.random_kept.mean(0) - a.clean]
    cis = [bootstrap_ci(v) for v in values]
    ax_bar.bar(
        range(len(cis)),
        [c.estimate for c in cis],
        yerr=[[c.estimate - c.low for c in cis], [c.high - c.estimate for c in cis]],
        capsize=3,
    )
    ax_bar.set_xticks(range(len(cis)), labels, rotation=45, ha="right", fontsize=8)
    ax_bar.set(
        ylabel="loss rise on the repeated half (nats, 95% CI)",
        title=f"ablations of the top {design.top_k} heads, {model_name}",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
