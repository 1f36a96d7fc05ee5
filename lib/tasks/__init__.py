"""Synthetic tasks that toy models are trained on, and the prompts that probe them.

A task owns its vocabulary (a list of word strings; token id = index; the special tokens of
lib/tasks/vocab.py come first, BOS = 0), draws training and evaluation batches from a seeded
`torch.Generator`, and names the metrics logged while training. It reads its own parameters
(`TaskParams`: a toy's `config.task_params`), never the toy's config. `TASKS` maps the name a
`ToyConfig.task` uses to the task.

- `repeat` (lib/tasks/repeat.py): in-context copying of repeated random tokens.
- `two-hop` (lib/tasks/two_hop.py): rule chains, one query per sequence (one hop or two, marked), a
  third of each query kind; `two-hop-2x`: half of the queries two-hop; `two-hop+repeats-2x`: that,
  with a quarter of the sequences repeated runs of the task's words.
"""

from __future__ import annotations

from typing import Protocol

import torch

from attnclaims.tasks.params import TaskParams
from attnclaims.tasks.repeat import (
    RepeatTask,
    bos_id,
    ordinary_token_ids,
    random_repeats,
    repeat_batch,
    repeat_training_batch,
    repeat_vocab,
    repeated_tokens,
)
from attnclaims.tasks.two_hop import TwoHopTask
from attnclaims.tasks.vocab import BOS, N_SPECIAL, PAD, SPECIAL


class Task(Protocol):
    """A toy task: it reads only its own parameters (a `TaskParams`), never the toy's config."""

    def vocab(self, params: TaskParams) -> list[str]: ...

    def n_ctx(self, params: TaskParams) -> int: ...

    def train_batch(
        self, params: TaskParams, generator: torch.Generator, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, labels) [batch, n_ctx]; labels are -100 where no loss is taken."""

    def eval_batch(self, params: TaskParams, generator: torch.Generator, batch: int) -> torch.Tensor: ...

    def evaluate(
        self, params: TaskParams, tokens: torch.Tensor, logits: torch.Tensor, attentions
    ) -> dict[str, float]:
        """Metrics logged during training, from the eval batch's logits and attention patterns."""


TASKS: dict[str, Task] = {
    "repeat": RepeatTask(),
    "two-hop": TwoHopTask(),
    "two-hop-2x": TwoHopTask(kinds=(0, 1, 2, 2)),
    "two-hop+repeats-2x": TwoHopTask(repeats=0.25, kinds=(0, 1, 2, 2)),
}

__all__ = [
    "BOS",
    "PAD",
    "SPECIAL",
    "N_SPECIAL",
    "TASKS",
    "Task",
    "TaskParams",
    "RepeatTask",
    "TwoHopTask",
    "repeat_batch",
    "repeat_training_batch",
    "repeat_vocab",
    "repeated_tokens",
    "ordinary_token_ids",
    "bos_id",
    "random_repeats",
]
