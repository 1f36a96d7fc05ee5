"""Redundancy measures: how many attention heads carry a function, from head-ablation effects on a loss.

Everything here is measured on one scalar metric that an ablation raises (a loss, in nats): the
effect of an ablation is metric(ablated run) - metric(clean run). Ablations act on heads' outputs
(`hook_z`, lib.hooks.ablate_heads: "mean" over a reference batch per position, "zero" or
"resample"); several ablations run in one forward, stacked along the batch (lib.hooks.stack_variants).

From the model (each returns losses or effects):
- `ablation_losses`: the metric with each of several head sets ablated together.
- `head_effects`: clean loss, whole-model loss (every head ablated) and each head's single-ablation
  loss, as an `Effects`.
- `direct_effects`: each head's direct effect (Rushing & Nanda 2024): the head's ablation applied
  only to its direct path to the logits, i.e. its output change subtracted from the final residual
  stream with the final LayerNorm's scale frozen at its clean value.
- `greedy_ablation`: heads ablated one at a time, each step the head that raises the loss most.
- `losses_along`: the metric with the first k heads of an order ablated, k = 0..len(order).

From effects (pure functions, unit-tested on hand-made numbers):
- `heads_carrying(effects, whole, fraction)`: heads whose single ablation costs >= fraction*whole.
- `effective_heads(effects)`: exp of the entropy of the shares max(e_h, 0) / sum max(e, 0)
  (Hill number of order 1): n when n heads share the effect equally, 1 when one head has it all.
- `top_head_share(effects, whole)`: max_h e_h / whole.
- `self_repair(total, direct)`: direct - total; `self_repair_fraction`: (direct - total) / direct.
- `heads_to_threshold(losses, threshold)`: the first k with losses[k] >= threshold.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch

from lib import hooks as H
from lib.metrics import Metric, check_scalar
from lib.patching import all_heads, metric_per_copy

Head = tuple[int, int]


def z_names(model) -> list[str]:
    return [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]


@torch.no_grad()
def reference_cache(model, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """hook_z [batch, pos, head, d_head] of every layer on `tokens`: the reference for mean and
    resample ablations."""
    names = set(z_names(model))
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    return {name: cache[name] for name in names}


def _check_ablation(how: str, reference) -> None:
    if how not in ("zero", "mean", "resample"):
        raise ValueError(f"unknown ablation {how!r}; use 'zero', 'mean' or 'resample'")
    if how != "zero" and reference is None:
        raise ValueError(f"a {how!r} ablation needs reference=reference_cache(model, reference_tokens)")


@torch.no_grad()
def ablation_losses(
    model, tokens: torch.Tensor, metric: Metric, head_sets: Sequence[Sequence[Head]], how: str = "mean",
    reference=None, chunk: int = 16,
) -> torch.Tensor:
    """[len(head_sets)]: the metric with every head of each set ablated together (an empty set is
    the clean run). `chunk` sets run per forward, each on its own copy of the batch."""
    _check_ablation(how, reference)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
    batch = tokens.shape[0]
    out: list[float] = []
    for start in range(0, len(head_sets), chunk):
        group = head_sets[start : start + chunk]
        variants = [H.ablate_heads(model, list(heads), how, reference) if heads else [] for heads in group]
        logits = model.run_with_hooks(tokens.repeat(len(group), 1), fwd_hooks=H.stack_variants(variants, batch))
        out += metric_per_copy(logits, len(group), batch, metric)
    return torch.tensor(out)


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


def head_effects(model, tokens, metric: Metric, how: str = "mean", reference=None, chunk: int = 16) -> Effects:
    """Clean, whole-model and single-head ablation losses, in one batched sweep."""
    heads = all_heads(model)
    losses = ablation_losses(model, tokens, metric, [[], heads, *[[h] for h in heads]], how, reference, chunk)
    return Effects(float(losses[0]), float(losses[1]), losses[2:].reshape(model.cfg.n_layers, model.cfg.n_heads))


@torch.no_grad()
def direct_effects(
    model, tokens: torch.Tensor, metric: Metric, how: str = "mean", reference=None, heads: Sequence[Head] | None = None,
    chunk: int = 16,
) -> torch.Tensor:
    """[n_layers, n_heads]: metric(head's direct path ablated) - metric(clean); heads not in
    `heads` (default: all) are NaN.

    The head's output change d_h = (z_h - z_h_ablated) @ W_O[h] is subtracted from the residual
    stream entering the final LayerNorm only (no later component sees it), and that LayerNorm's
    scale is held at its clean value, so the change reaches the logits linearly: Rushing & Nanda's
    (2024) direct effect. z_h_ablated is what `lib.hooks.ablate_heads(how)` writes.
    """
    _check_ablation(how, reference)
    heads = H.check_heads(model, heads) if heads is not None else all_heads(model)
    names = set(z_names(model)) | {"ln_final.hook_scale"}
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    clean_scale = cache["ln_final.hook_scale"]  # [batch, pos, 1]
    batch = tokens.shape[0]
    clean = float(check_scalar(metric, model(tokens)))
    ablated_z = {}
    for layer in range(model.cfg.n_layers):  # what the ablation writes into each layer's z
        (name, fn), = H.ablate_heads(model, [(layer, h) for h in range(model.cfg.n_heads)], how, reference)
        ablated_z[name] = fn(cache[name], None)
    out = torch.full((model.cfg.n_layers, model.cfg.n_heads), float("nan"))
    for start in range(0, len(heads), chunk):
        group = heads[start : start + chunk]
        variants = []
        for layer, head in group:
            name = f"blocks.{layer}.attn.hook_z"
            delta = (cache[name][:, :, head] - ablated_z[name][:, :, head]) @ model.W_O[layer, head]  # [batch, pos, d_model]

            def remove(resid, hook, delta=delta):
                return resid - delta.to(resid.dtype)

            def freeze(scale, hook):
                return clean_scale.to(scale.dtype).clone()

            variants.append([("ln_final.hook_in", remove), ("ln_final.hook_scale", freeze)])
        with warnings.catch_warnings():  # the bridge warns that an edited LayerNorm scale leaves HF's fused path
            warnings.simplefilter("ignore")
            logits = model.run_with_hooks(tokens.repeat(len(group), 1), fwd_hooks=H.stack_variants(variants, batch))
        for (layer, head), value in zip(group, metric_per_copy(logits, len(group), batch, metric)):
            out[layer, head] = value - clean
    return out


def greedy_ablation(
    model, tokens, metric: Metric, how: str = "mean", reference=None, chunk: int = 16
) -> tuple[list[Head], torch.Tensor]:
    """(order, losses): each step ablates, on top of the heads already ablated, the head that
    raises the metric most; losses[k] is the metric with order[:k] ablated (k = 0..n_heads)."""
    remaining, order = all_heads(model), []
    losses = [float(ablation_losses(model, tokens, metric, [[]], how, reference)[0])]
    while remaining:
        trial = ablation_losses(model, tokens, metric, [order + [h] for h in remaining], how, reference, chunk)
        best = int(trial.argmax())
        order.append(remaining.pop(best))
        losses.append(float(trial[best]))
    return order, torch.tensor(losses)


def losses_along(model, tokens, metric: Metric, order: Sequence[Head], how: str = "mean", reference=None, chunk: int = 16) -> torch.Tensor:
    """[len(order) + 1]: the metric with order[:k] ablated, k = 0..len(order)."""
    order = list(order)
    return ablation_losses(model, tokens, metric, [order[:k] for k in range(len(order) + 1)], how, reference, chunk)


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
        raise ValueError(f"the whole effect is {whole}; the measures need an ablation that raises the loss (> 0)")
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


def top_head_share(effects, whole: float) -> float:
    """The largest single-head effect as a share of the whole effect."""
    return float(_effects(effects).max()) / _whole(whole)


def self_repair(total: float, direct: float) -> float:
    """direct effect - total effect (effects are metric increases): how much of the head's direct
    effect the rest of the model (later heads, the final LayerNorm) makes up when it is ablated."""
    return float(direct) - float(total)


def self_repair_fraction(total: float, direct: float) -> float:
    """(direct - total) / direct: 0 = no self-repair, 1 = fully repaired, < 0 = amplified."""
    if not direct > 0:
        raise ValueError(f"the direct effect is {direct}; self-repair as a fraction needs a positive direct effect")
    return self_repair(total, direct) / float(direct)


def heads_to_threshold(losses, threshold: float) -> int:
    """The first k with losses[k] >= threshold (losses[k]: the metric with k heads ablated).
    Raises if the losses never reach the threshold."""
    x = torch.as_tensor(losses, dtype=torch.float64).reshape(-1)
    hits = (x >= threshold).nonzero()
    if hits.numel() == 0:
        raise ValueError(f"the losses never reach the threshold {threshold:g} (max {float(x.max()):.4g})")
    return int(hits[0, 0])
