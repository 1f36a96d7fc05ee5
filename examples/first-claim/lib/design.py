"""The study's design, kept apart from the hypothesis that uses it."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Design:
    seq_len: int = 12  # tokens in each half of a repeated sequence
    per_half: int = 32  # sequences that select, and as many again that confirm
    seed: int = 0


def split(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(selection, confirmation): the first and second halves of a batch, disjoint sequences."""
    half = len(tokens) // 2
    return tokens[:half], tokens[half:]
