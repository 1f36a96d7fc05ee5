"""Prompts of several lengths: a sweep runs each length's prompts as a batch of their own, exactly.

    prompts = [model.to_tokens(text)[0] for text in texts]            # 1-D token tensors, any lengths
    metric = logit_diff(answers, alternatives, per_prompt=True)       # one value per prompt
    values = run_variants(model, prompts, variants, metric)          # {key: [n_prompts]}, in order
    effects = head_out_patch_sweep(model, clean_tokens=prompts, corrupted_tokens=others, metric=metric)

One forward needs one length, and padding is not exact for what the suite measures at the final
position (a final-row edit or a metric at position -1 would read a pad), so the prompts of each
length run together and their values go back in the order given: the result equals the per-length
sweeps put side by side. What that needs:
- a metric that returns one value per prompt (per_prompt=True; the mean over every prompt is the mean
  of the result) and can be narrowed to some prompts, `metric.select(rows)` (attnclaims.metrics'
  logit_diff, target_prob, top1_is and kl_to_clean have it; `metrics.narrows` gives one to yours);
- variants that can be narrowed likewise (`select`): specs whose per-prompt data are positions or
  masses (MoveAttention, ShiftAttention, RedirectAttention, AblateHeads "zero", sums of them), and
  EditAttention with a row edit from attnclaims.hooks (one_hot_row, move_row, move_fraction,
  shift_mass: each says how it is narrowed, `edit.select(rows)`). A spec that holds another run's
  activations (PatchHeads, AblateHeads "mean"/"resample", PatchOutput) or a function of your own
  (EditAttention with your edit, EditValues, Hooks) is tied to the prompts it was built for: build one
  per length, with `length_groups`. The head-out and activation-patching sweeps do that themselves.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Hashable, Mapping, Sequence

import torch

from attnclaims.interventions import (
    AblateHeads,
    Compose,
    EditAttention,
    MoveAttention,
    RedirectAttention,
    ShiftAttention,
)

POSITIONAL = (MoveAttention, ShiftAttention, RedirectAttention)  # specs whose per-prompt data are numbers
PER_PROMPT_FIELDS = ("src", "dst", "query_pos", "mass")


def length_groups(tokens) -> list[tuple[list[int], torch.Tensor]] | None:
    """[(rows, tokens [len(rows), length])] for a list of 1-D prompts (token tensors or lists of ids),
    one entry per length in order of first appearance; None for a [batch, pos] tensor (one length)."""
    if isinstance(tokens, torch.Tensor) or not isinstance(tokens, (list, tuple)) or not tokens:
        return None
    if isinstance(tokens[0], (int, str)) or (isinstance(tokens[0], torch.Tensor) and tokens[0].ndim == 0):
        return None  # one prompt's ids, or text: check_tokens says what to do
    prompts = [one_prompt(prompt) for prompt in tokens]
    rows: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        rows.setdefault(prompt.numel(), []).append(i)
    return [(members, torch.stack([prompts[i] for i in members])) for members in rows.values()]


def one_prompt(prompt) -> torch.Tensor:
    """One prompt's ids as a 1-D tensor ([n] or [1, n]); a batch inside the list is refused."""
    prompt = torch.as_tensor(prompt)
    if prompt.ndim > 2 or (prompt.ndim == 2 and prompt.shape[0] != 1):
        raise ValueError(
            f"a list of prompts holds one prompt per entry ([n] or [1, n] ids), got shape "
            f"{tuple(prompt.shape)}: give a [batch, pos] tensor for prompts of one length, or one entry "
            "per prompt"
        )
    return prompt.reshape(-1)


def stack(prompts: list[torch.Tensor], length: int, rows: list[int], what: str) -> torch.Tensor:
    """The 1-D `prompts` (of the prompts `rows`) as one batch, each `length` tokens long like its pair's."""
    for row, prompt in zip(rows, prompts):
        if prompt.numel() != length:
            raise ValueError(
                f"prompt {row}: its {what} text has {prompt.numel()} tokens and its pair {length}; patching "
                "needs the two texts of a pair to tokenize to one length"
            )
    return torch.stack(prompts)


def select(spec, rows: list[int]):
    """The variant for prompts `rows` of the batch it was built for (see the module docstring)."""
    if isinstance(spec, Compose):
        return Compose(tuple(select(part, rows) for part in spec.parts))
    if isinstance(spec, AblateHeads) and spec.how == "zero":
        return spec
    if isinstance(spec, EditAttention) and hasattr(spec.edit, "select"):
        spec = dataclasses.replace(spec, edit=spec.edit.select(rows))
    elif not isinstance(spec, POSITIONAL):
        raise ValueError(
            f"{type(spec).__name__} is tied to the prompts it was built for (it holds another run's "
            "activations, or a function of your own), so it cannot run on prompts of several lengths: "
            "build one per length (attnclaims.lengths.length_groups) and run each length on its own, or "
            "give your row edit `edit.select(rows)`"
        )
    changes = {
        name: tuple(value[r] for r in rows)
        for name in PER_PROMPT_FIELDS
        if isinstance(value := getattr(spec, name, None), tuple)
    }
    return dataclasses.replace(spec, **changes) if changes else spec


def narrowed(metric, rows: list[int]):
    narrow = getattr(metric, "select", None)
    if narrow is None:
        raise ValueError(
            "prompts of several lengths run one length at a time, so the metric must say how it is "
            "narrowed to some prompts (metric.select(rows)): use attnclaims.metrics' logit_diff, "
            "target_prob, top1_is or kl_to_clean with per_prompt=True, or give yours one with "
            "attnclaims.metrics.narrows"
        )
    return narrow(rows)


def merge(groups, parts: Sequence[Mapping[Hashable, torch.Tensor]], axis: int = 0) -> dict:
    """One result per key with each group's values put back at its rows along `axis` (the prompts').
    A value that is not one per prompt is refused: a mean over one length is not a mean over all."""
    batch = sum(len(rows) for rows, _ in groups)
    out: dict[Hashable, torch.Tensor] = {}
    for (rows, _), part in zip(groups, parts):
        for key, value in part.items():
            if value.ndim <= axis or value.shape[axis] != len(rows):
                raise ValueError(
                    f"over prompts of several lengths the metric must return one value per prompt "
                    f"(per_prompt=True), got shape {tuple(value.shape)} for {len(rows)} prompts of one "
                    "length; the mean over every prompt is the mean of the per-prompt result"
                )
            if key not in out:
                shape = (*value.shape[:axis], batch, *value.shape[axis + 1 :])
                out[key] = torch.full(shape, math.nan, dtype=value.dtype)
            out[key].index_copy_(axis, torch.as_tensor(rows), value)
    return out


def run_by_length(groups, run: Callable[[list[int], torch.Tensor], Mapping], axis: int = 0) -> dict:
    """`run(rows, tokens)` for each length's prompts, merged (see `merge`)."""
    return merge(groups, [run(rows, tokens) for rows, tokens in groups], axis)
