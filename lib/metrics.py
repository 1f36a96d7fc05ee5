"""Metrics: callables from logits [batch, pos, d_vocab] to a scalar tensor (as in transformer_lens.patching).

Each factory takes the token ids or clean logits it needs and returns the metric. `per_prompt=True`
versions return [batch] instead of the batch mean, for confidence intervals over prompts. A metric
that reads one position declares it (`metric.positions = (pos,)`), and a metric that reads a few logits
declares their ids (`metric.vocab`); attnclaims.sweep then unembeds only the final position, and only
those ids, when that is all a metric reads (every other logit is NaN, so a metric that reads one fails
loudly).
"""

from __future__ import annotations

from typing import Callable

import torch

from attnclaims.hooks import rows_of

Metric = Callable[[torch.Tensor], torch.Tensor]


def _ids(ids, batch: int, device) -> torch.Tensor:
    """One vocabulary id per prompt: an int (every prompt) or [batch] ids; anything else is refused."""
    ids = torch.as_tensor(ids, dtype=torch.long, device=device)
    if ids.ndim > 1 or ids.numel() not in (1, batch):
        raise ValueError(
            f"answer ids must be one id, or one per prompt ({batch} here), got shape {tuple(ids.shape)}: "
            "a word that is several tokens has no single logit; pick one that is one token "
            "(model.to_single_token)"
        )
    ids = ids.reshape(-1)
    return ids.expand(batch) if ids.numel() == 1 else ids


def narrows(metric: Metric, select: Callable[[list[int]], Metric]) -> Metric:
    """Say how `metric` is narrowed to some prompts (`metric.select(rows)`): a sweep over prompts of
    several lengths runs each length on its own (attnclaims.lengths)."""
    metric.select = select
    return metric


def reads(pos: int, metric: Metric, vocab=None) -> Metric:
    """Declare the one logit position `metric` reads, and the vocabulary ids it reads there when it
    reads only a few (see the module docstring)."""
    metric.positions = (pos,)
    if vocab is not None:
        metric.vocab = torch.unique(torch.cat([torch.as_tensor(v).reshape(-1).long().cpu() for v in vocab]))
    return metric


def logit_diff(answer, alternative, pos: int = -1, per_prompt: bool = False) -> Metric:
    """logit[answer] - logit[alternative] at `pos`; ids are ints or [batch] tensors."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        row = logits[:, pos]  # [batch, d_vocab]
        batch = torch.arange(row.shape[0], device=row.device)
        diff = (
            row[batch, _ids(answer, len(batch), row.device)]
            - row[batch, _ids(alternative, len(batch), row.device)]
        )
        return diff if per_prompt else diff.mean()

    metric = narrows(
        metric, lambda rows: logit_diff(rows_of(answer, rows), rows_of(alternative, rows), pos, per_prompt)
    )
    return reads(pos, metric, vocab=(answer, alternative))


def target_prob(target, pos: int = -1, per_prompt: bool = False) -> Metric:
    """Softmax probability of `target` at `pos`."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        probs = logits[:, pos].float().softmax(-1)
        batch = torch.arange(probs.shape[0], device=probs.device)
        p = probs[batch, _ids(target, len(batch), probs.device)]
        return p if per_prompt else p.mean()

    return reads(pos, narrows(metric, lambda rows: target_prob(rows_of(target, rows), pos, per_prompt)))


def top1_is(ids, pos: int = -1) -> Metric:
    """Per prompt: 1.0 where the top-1 token at `pos` is ids[i] (an int: the same id for every prompt)."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        row = logits[:, pos]
        return (row.argmax(-1) == _ids(ids, row.shape[0], row.device)).float()

    return reads(pos, narrows(metric, lambda rows: top1_is(rows_of(ids, rows), pos)))


def kl_to_clean(clean_logits: torch.Tensor, pos: int = -1, per_prompt: bool = False) -> Metric:
    """KL(clean || patched) of the next-token distributions at `pos`, in nats."""
    clean_logprobs = clean_logits[:, pos].float().log_softmax(-1)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        logprobs = logits[:, pos].float().log_softmax(-1)
        kl = (clean_logprobs.exp() * (clean_logprobs - logprobs)).sum(-1)
        return kl if per_prompt else kl.mean()

    narrowed = lambda rows: kl_to_clean(
        clean_logits[torch.as_tensor(rows, dtype=torch.long)], pos, per_prompt
    )
    return reads(pos, narrows(metric, narrowed))


def per_position_loss(tokens: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Not a scalar metric: [batch, pos-1] next-token loss of `tokens` under the logits (what
    `mean_loss` averages)."""

    def losses(logits: torch.Tensor) -> torch.Tensor:
        logprobs = logits[:, :-1].float().log_softmax(-1)
        return -logprobs.gather(-1, tokens[:, 1:, None].to(logprobs.device))[..., 0]

    return losses


def mean_loss(
    tokens: torch.Tensor, positions: slice | torch.Tensor | tuple = slice(None), per_prompt: bool = False
) -> Metric:
    """Mean next-token loss of `tokens` over the predicted positions `positions` (they index the
    [pos-1] predictions: attnclaims.tasks.repeat.halves gives a repeated sequence's two copies), over
    the batch, or per prompt ([batch]). The one helper for a loss on part of a sequence: a tuple of
    spans gives one value per span from one softmax ([spans], or [batch, spans] per prompt).

        mean_loss(tokens, halves(S)[1])(logits)                  # the loss on the repeated half
        mean_loss(tokens, halves(S), per_prompt=True)(logits)    # [batch, 2]: each half, per prompt
    """
    losses = per_position_loss(tokens)
    spans = positions if isinstance(positions, tuple) else (positions,)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        loss = losses(logits)
        means = [loss[:, span].mean(1) if per_prompt else loss[:, span].mean() for span in spans]
        return torch.stack(means, -1) if isinstance(positions, tuple) else means[0]

    return metric


def normalised_score(value, clean_value, corrupted_value):
    """(value - corrupted) / (clean - corrupted): 0 = corrupted run, 1 = clean run."""
    denominator = clean_value - corrupted_value
    if bool((torch.as_tensor(denominator) == 0).any()):
        raise ValueError("clean and corrupted metrics are equal: the normalised score is undefined")
    return (value - corrupted_value) / denominator


def check_scalar(metric: Metric, logits: torch.Tensor) -> torch.Tensor:
    """Evaluate `metric` and insist on a scalar, naming the shape it returned instead."""
    out = torch.as_tensor(metric(logits))
    if out.ndim != 0:
        raise ValueError(
            f"the metric must return a scalar tensor, got shape {tuple(out.shape)}; "
            "reduce it (e.g. .mean()) or use per_prompt=False"
        )
    return out
