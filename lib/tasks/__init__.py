"""Synthetic tasks that toy models are trained on, and the prompts that probe them.

A task owns its vocabulary (a list of word strings; token id = index; the special tokens of
lib/tasks/vocab.py come first, BOS = 0), draws training and evaluation batches from a seeded
`torch.Generator`, and names the metrics logged while training. `TASKS` maps the name a
`ToyConfig.task` uses to the task.

- `repeat` (lib/tasks/repeat.py): in-context copying of repeated random tokens.
- `entailment`, `rule-recall` (lib/tasks/entailment.py): two-hop and one-hop rule following.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

from attnclaims.tasks.entailment import EntailmentTask, ToyEntailmentPrompt
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
from attnclaims.tasks.vocab import BOS, N_SPECIAL, PAD, SPECIAL

if TYPE_CHECKING:
    from attnclaims.toy import ToyConfig


class Task(Protocol):
    def vocab(self, config: "ToyConfig") -> list[str]: ...

    def n_ctx(self, config: "ToyConfig") -> int: ...

    def train_batch(
        self, config: "ToyConfig", generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, labels) [batch, n_ctx]; labels are -100 where no loss is taken."""

    def eval_batch(self, config: "ToyConfig", generator: torch.Generator, batch: int) -> torch.Tensor: ...

    def evaluate(
        self, config: "ToyConfig", tokens: torch.Tensor, logits: torch.Tensor, attentions
    ) -> dict[str, float]:
        """Metrics logged during training, from the eval batch's logits and attention patterns."""


TASKS: dict[str, Task] = {
    "repeat": RepeatTask(),
    "entailment": EntailmentTask(hops=2),
    "rule-recall": EntailmentTask(hops=1),
}

__all__ = [
    "BOS",
    "PAD",
    "SPECIAL",
    "N_SPECIAL",
    "TASKS",
    "Task",
    "EntailmentTask",
    "RepeatTask",
    "ToyEntailmentPrompt",
    "repeat_batch",
    "repeat_training_batch",
    "repeat_vocab",
    "repeated_tokens",
    "ordinary_token_ids",
    "bos_id",
    "random_repeats",
]
