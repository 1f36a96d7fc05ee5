"""Redundancy measures: how many attention heads carry a function, from head-ablation effects on a loss.

Everything here is measured on one scalar metric that an ablation raises (a loss, in nats): the
effect of an ablation is metric(ablated run) - metric(clean run). Ablations act on heads' outputs
(`hook_z`, attnclaims.hooks.ablate_heads: "mean" over a reference batch per position, "zero" or
"resample"; the reference is `attnclaims.interventions.source_cache(model, reference_tokens)`, every
layer's hook_z on other prompts); every set of ablations runs through the sweep engine
(attnclaims.sweep.run_variants).

From the model (each returns losses or effects):
- `ablation_losses`: the metric with each of several head sets ablated together.
- `head_effects`: clean loss, whole-model loss (every head ablated) and each head's single-ablation
  loss, as an `Effects`.
- `direct_effects`: each head's direct effect (Rushing & Nanda 2024): the head's ablation applied
  only to its direct path to the logits: every later component and the final LayerNorm's scale held
  at their clean values (attnclaims.paths.DirectPath).
- `self_repair_split`: for chosen heads, the total effect, the direct effect, and the effect with
  every downstream component's output frozen at its clean value, as `SelfRepair`: self-repair
  (direct - total) split into LayerNorm rescaling and the response of later components.
- `hydra_effect`: for one head, the change in every downstream head's direct effect when it is
  ablated, as `Hydra` (McGrath et al. 2023): compensation by later heads, summed; `Hydra.readers`
  (heads whose direct effect falls: they read the head) and `compensation_without` them.
- `greedy_ablation`: heads ablated one at a time, each step the head that raises the loss most.
- `losses_along`: the metric with the first k heads of an order ablated, k = 0..len(order).

From effects (pure functions, unit-tested on hand-made numbers):
- `heads_carrying(effects, whole, fraction)`: heads whose single ablation costs >= fraction*whole.
- `effective_heads(effects)`: exp of the entropy of the shares max(e_h, 0) / sum max(e, 0)
  (Hill number of order 1): n when n heads share the effect equally, 1 when one head has it all.
- `top_head_share(effects, whole, selection)`: e_top / whole, top chosen on `selection` (or `effects`).
- `self_repair(total, direct)`: direct - total; `self_repair_fraction`: (direct - total) / direct.
- `heads_to_threshold(losses, threshold)`: the first k with losses[k] >= threshold.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from transformer_lens.utilities import get_act_name

from attnclaims import hooks as H
from attnclaims.heads import Head, every_head
from attnclaims.interventions import AblateHeads, Hooks, Intervention
from attnclaims.metrics import Metric
from attnclaims.paths import DirectPath
from attnclaims.sweep import check_tokens, per_head, run_variants

Ablation = Literal["zero", "mean", "resample"]
ABLATIONS: tuple[Ablation, ...] = ("zero", "mean", "resample")


def _check_ablation(how: Ablation, reference) -> None:
    if how not in ABLATIONS:
        raise ValueError(f"unknown ablation {how!r}; use 'zero', 'mean' or 'resample'")
    if how != "zero" and reference is None:
        raise ValueError(
            f"a {how!r} ablation needs reference=source_cache(model, reference_tokens) "
            "(attnclaims.interventions)"
        )


@torch.no_grad()
def ablation_losses(
    model,
    tokens: torch.Tensor,
    metric: Metric,
    head_sets: Sequence[Sequence[Head]],
    how: Ablation = "mean",
    reference=None,
    chunk: int | None = None,
) -> torch.Tensor:
    """[len(head_sets)]: the metric with every head of each set ablated together (an empty set is
    the clean run)."""
    _check_ablation(how, reference)
    variants = {i: AblateHeads(heads, how, reference) if heads else [] for i, heads in enumerate(head_sets)}
    values = run_variants(model, tokens, variants, metric, chunk=chunk)
    out = torch.stack([values[i] for i in range(len(head_sets))])
    if out.ndim != 1:
        raise ValueError("ablation losses need a scalar metric; reduce it over prompts (per_prompt=False)")
    return out


@dataclass(frozen=True)
class Effects:
    """Losses under ablation: the clean run, every head at once, and each head alone."""

    clean: float
    whole_loss: float  # every head ablated
    single_loss: torch.Tensor  # [n_layers, n_heads]: that head alone ablated

    @property
    def whole(self) -> float:
        """The whole-model (whole-circuit) effect: loss with every head ablated - clean loss."""
        return self.whole_loss - self.clean

    @property
    def single(self) -> torch.Tensor:
        """[n_layers, n_heads] single-head effects: loss with the head ablated - clean loss."""
        return self.single_loss - self.clean


def head_effects(
    model, tokens, metric: Metric, how: Ablation = "mean", reference=None, chunk: int | None = None
) -> Effects:
    """Clean, whole-model and single-head ablation losses, in one batched sweep."""
    heads = every_head(model)
    losses = ablation_losses(model, tokens, metric, [[], heads, *[[h] for h in heads]], how, reference, chunk)
    return Effects(
        float(losses[0]), float(losses[1]), losses[2:].reshape(model.cfg.n_layers, model.cfg.n_heads)
    )


@torch.no_grad()
def direct_effects(
    model,
    tokens: torch.Tensor,
    metric: Metric,
    how: Ablation = "mean",
    reference=None,
    heads: Sequence[Head] | None = None,
    chunk: int | None = None,
    under: Intervention | None = None,
) -> torch.Tensor:
    """[n_layers, n_heads]: metric(head's direct path ablated) - metric(clean); heads not in
    `heads` (default: all) are NaN.

    The head is ablated (`attnclaims.hooks.ablate_heads(how)`) with every later component, the
    other heads and the MLP of its layer, and the final LayerNorm's scale held at their clean values
    at every position (attnclaims.paths.DirectPath, the one definition of a direct effect): its
    output change reaches the logits through the residual stream alone, linearly (Rushing & Nanda
    2024). `under`: an intervention (e.g. another head's ablation) in force in every run, so that the
    direct effects are those of the intervened run, held to its own activations and scale.
    """
    _check_ablation(how, reference)
    tokens = check_tokens(model, tokens)
    heads = H.check_heads(model, heads) if heads is not None else every_head(model)
    kinds = ("z", "mlp_out")
    names = {get_act_name(kind, layer) for layer in range(model.cfg.n_layers) for kind in kinds}
    held = _activations(model, tokens, (names & set(model.hook_dict)) | {"ln_final.hook_scale"}, under)
    base = [] if under is None else [under]
    variants: dict = {"clean": base}
    for head in heads:
        variants[head] = base + [AblateHeads([head], how, reference) + DirectPath([head], held)]
    with warnings.catch_warnings():  # the bridge warns that an edited LayerNorm scale leaves HF's fused path
        warnings.simplefilter("ignore")
        values = run_variants(model, tokens, variants, metric, chunk=chunk)
    clean = values.pop("clean")
    return per_head(model, {head: value - clean for head, value in values.items()})


def _activations(model, tokens, names: set[str], under: Intervention | None) -> dict[str, torch.Tensor]:
    """{name: activation} of the run with `under` in force (the clean run without it)."""
    if under is None:
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
        return dict(cache.items())
    cache = {}

    def keep(name: str):  # by the name asked for: the bridge may report an alias's canonical name
        def store(act, hook):
            cache[name] = act.detach().clone()

        return store

    model.run_with_hooks(
        tokens, fwd_hooks=under.hooks(model) + [(name, keep(name)) for name in sorted(names)]
    )
    return cache


@dataclass(frozen=True)
class Hydra:
    """The Hydra effect (McGrath et al. 2023) of ablating one head: how the direct effects of the
    heads downstream of it change. Direct effects as in `direct_effects` (nats the loss rises when a
    head's direct path is removed), in the clean run and in the run with `head` ablated."""

    head: Head
    clean: torch.Tensor  # [n_layers, n_heads]: downstream heads' direct effects, clean run (NaN elsewhere)
    ablated: torch.Tensor  # the same in the run with `head` ablated

    @property
    def compensation(self) -> float:
        """Sum over downstream heads of (direct effect with `head` ablated - clean): nats by which
        the later heads' direct paths lower the loss more once the head is gone (0 where no head
        lies downstream)."""
        return float(torch.nansum(self.ablated - self.clean))

    def readers(self) -> list[Head]:
        """Downstream heads whose direct effect falls when `head` is ablated: they read it (composition),
        so their change is dependence, not compensation."""
        fell = (self.ablated - self.clean) < 0  # NaN (not downstream) compares False
        return [Head(int(layer), int(h)) for layer, h in fell.nonzero().tolist()]

    def compensation_without(self, heads) -> float:
        """`compensation` summed over the downstream heads not in `heads` (e.g. the readers found on
        another batch: selecting them on the batch measured here would bias the sum upward)."""
        change = self.ablated - self.clean
        for layer, h in heads:
            change[layer, h] = math.nan
        return float(torch.nansum(change))


@torch.no_grad()
def hydra_effect(
    model,
    tokens,
    metric: Metric,
    head: Head,
    how: Ablation = "mean",
    reference=None,
    chunk: int | None = None,
) -> Hydra:
    """`Hydra` of ablating `head`: every head of a later layer, its direct effect in both runs."""
    (head,) = H.check_heads(model, [head])
    downstream = [
        (layer, h) for layer in range(head[0] + 1, model.cfg.n_layers) for h in range(model.cfg.n_heads)
    ]
    if not downstream:
        nan = torch.full((model.cfg.n_layers, model.cfg.n_heads), math.nan)
        return Hydra(Head(*head), nan, nan)
    measured = [
        direct_effects(model, tokens, metric, how, reference, heads=downstream, chunk=chunk, under=under)
        for under in (None, AblateHeads([head], how, reference))
    ]
    return Hydra(Head(*head), *measured)


@dataclass(frozen=True)
class SelfRepair:
    """Effects (metric increases, nats) of ablating one head, three ways (Rushing & Nanda 2024;
    McGrath et al. 2023):

    - total: the head ablated; everything downstream responds.
    - downstream_frozen: the head ablated, every head (and MLP) in later layers held at its clean
      output; only the final LayerNorm's scale still responds.
    - direct: only the head's direct path to the logits, the final LayerNorm's scale frozen too.

    self-repair = direct - total = layernorm + heads, with
    layernorm = direct - downstream_frozen (the final LayerNorm rescaling the residual) and
    heads = downstream_frozen - total (later components changing their outputs). A last-layer head
    has no downstream heads, so its `heads` is exactly 0.
    """

    head: Head
    total: float
    downstream_frozen: float
    direct: float

    @property
    def repair(self) -> float:
        return self.direct - self.total

    @property
    def layernorm(self) -> float:
        return self.direct - self.downstream_frozen

    @property
    def heads(self) -> float:
        return self.downstream_frozen - self.total


def downstream_names(model, layer: int) -> list[str]:
    """Hook names of every component output after `layer`: each later layer's hook_z and hook_mlp_out."""
    return [
        get_act_name(kind, later)
        for later in range(layer + 1, model.cfg.n_layers)
        for kind in ("z", "mlp_out")
    ]


@torch.no_grad()
def self_repair_split(
    model,
    tokens: torch.Tensor,
    metric: Metric,
    heads: Sequence[Head],
    how: Ablation = "mean",
    reference=None,
    chunk: int | None = None,
) -> list[SelfRepair]:
    """`SelfRepair` of each head in `heads`: total and downstream-frozen effects in one sweep
    (attnclaims.sweep.run_variants), the direct effect from `direct_effects`."""
    _check_ablation(how, reference)
    tokens = check_tokens(model, tokens)
    heads = H.check_heads(model, heads)
    names = {name for layer, _ in heads for name in downstream_names(model, layer)}
    _, clean_cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    variants: dict = {"clean": []}
    for layer, head in heads:
        ablate = AblateHeads([(layer, head)], how, reference)
        frozen = Hooks(
            tuple(
                hook
                for name in downstream_names(model, layer)
                for hook in H.patch_activation(model, name, clean_cache)
            ),
            first_layer=layer + 1,
            what=f"every component after layer {layer} at its clean value",
        )
        variants[("total", layer, head)] = ablate
        variants[("frozen", layer, head)] = ablate + frozen
    values = run_variants(model, tokens, variants, metric, chunk=chunk)
    clean = float(values["clean"])
    direct = direct_effects(model, tokens, metric, how, reference, heads=heads, chunk=chunk)
    return [
        SelfRepair(
            head=(layer, head),
            total=float(values[("total", layer, head)]) - clean,
            downstream_frozen=float(values[("frozen", layer, head)]) - clean,
            direct=float(direct[layer, head]),
        )
        for layer, head in heads
    ]


def greedy_ablation(
    model, tokens, metric: Metric, how: Ablation = "mean", reference=None, chunk: int | None = None
) -> tuple[list[Head], torch.Tensor]:
    """(order, losses): each step ablates, on top of the heads already ablated, the head that
    raises the metric most; losses[k] is the metric with order[:k] ablated (k = 0..n_heads)."""
    remaining, order = every_head(model), []
    losses = [float(ablation_losses(model, tokens, metric, [[]], how, reference)[0])]
    while remaining:
        trial = ablation_losses(
            model, tokens, metric, [order + [h] for h in remaining], how, reference, chunk
        )
        best = int(trial.argmax())
        order.append(remaining.pop(best))
        losses.append(float(trial[best]))
    return order, torch.tensor(losses)


def losses_along(
    model,
    tokens,
    metric: Metric,
    order: Sequence[Head],
    how: Ablation = "mean",
    reference=None,
    chunk: int | None = None,
) -> torch.Tensor:
    """[len(order) + 1]: the metric with order[:k] ablated, k = 0..len(order)."""
    order = list(order)
    return ablation_losses(
        model, tokens, metric, [order[:k] for k in range(len(order) + 1)], how, reference, chunk
    )


# ---------------------------------------------------------------------------------------------
# Measures from effects


def _effects(effects) -> torch.Tensor:
    e = torch.as_tensor(effects, dtype=torch.float64).reshape(-1)
    if e.numel() == 0:
        raise ValueError("effects is empty: measure at least one head")
    if bool(torch.isnan(e).any()):
        raise ValueError("effects contains NaN: measure every head first")
    return e


def _whole(whole: float) -> float:
    if not whole > 0:
        raise ValueError(
            f"the whole effect is {whole}; the measures need an ablation that raises the loss (> 0)"
        )
    return float(whole)


def heads_carrying(effects, whole: float, fraction: float) -> int:
    """The number of heads whose single-ablation effect is >= fraction * whole."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    return int((_effects(effects) >= fraction * _whole(whole)).sum())


def effective_heads(effects) -> float:
    """exp(entropy) of the shares p_h = max(e_h, 0) / sum max(e, 0): between 1 (one head carries
    every positive effect) and the number of heads (all equal). Negative effects count as 0."""
    e = _effects(effects).clamp(min=0)
    total = float(e.sum())
    if total <= 0:
        raise ValueError("no head has a positive effect: the effective number of heads is undefined")
    p = e / total
    return float(math.exp(-float(torch.special.xlogy(p, p).sum())))


def top_head_share(effects, whole: float, selection=None) -> float:
    """The top head's single effect as a share of the whole effect. The top head is the one with
    the largest effect in `selection` (the same heads' effects on other prompts, so that choosing
    the head and measuring it do not share their noise), else in `effects` itself."""
    e = _effects(effects)
    pick = _effects(selection) if selection is not None else e
    if pick.shape != e.shape:
        raise ValueError(f"selection has {pick.numel()} effects, effects {e.numel()}: give the same heads")
    return float(e[pick.argmax()]) / _whole(whole)


def self_repair(total: float, direct: float) -> float:
    """direct effect - total effect (effects are metric increases): how much of the head's direct
    effect the rest of the model (later heads, the final LayerNorm) makes up when it is ablated."""
    return float(direct) - float(total)


def self_repair_fraction(total: float, direct: float) -> float:
    """(direct - total) / direct: 0 = no self-repair, 1 = fully repaired, < 0 = amplified."""
    if not direct > 0:
        raise ValueError(
            f"the direct effect is {direct}; self-repair as a fraction needs a positive direct effect"
        )
    return self_repair(total, direct) / float(direct)


def heads_to_threshold(losses, threshold: float) -> int:
    """The first k with losses[k] >= threshold (losses[k]: the metric with k heads ablated).
    Raises if the losses never reach the threshold."""
    x = torch.as_tensor(losses, dtype=torch.float64).reshape(-1)
    hits = (x >= threshold).nonzero()
    if hits.numel() == 0:
        raise ValueError(f"the losses never reach the threshold {threshold:g} (max {float(x.max()):.4g})")
    return int(hits[0, 0])
