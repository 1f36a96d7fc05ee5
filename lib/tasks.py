"""Synthetic tasks that toy models are trained on, and the prompts that probe them.

A task owns its vocabulary (a list of word strings; token id = index) and draws batches of token
ids from a seeded `torch.Generator`. Token 0 is always the BOS token.

- `repeat`: BOS, then S uniformly random content tokens, then the same S again
  (Olsson et al. 2022). Only an in-context copy can predict the second half.
"""

from __future__ import annotations

import torch

BOS = "<bos>"
PAD = "<pad>"
N_SPECIAL = 2  # BOS, PAD


def repeat_vocab(n_content: int) -> list[str]:
    """[BOS, PAD, t0, ..., t{n-1}]"""
    return [BOS, PAD, *(f"t{i}" for i in range(n_content))]


def repeated_tokens(
    generator: torch.Generator, batch: int, seq_len: int, low: int, high: int, bos_id: int
) -> torch.Tensor:
    """[batch, 1 + 2*seq_len]: BOS, `seq_len` tokens drawn uniformly from [low, high), the same again."""
    half = torch.randint(low, high, (batch, seq_len), generator=generator)
    bos = torch.full((batch, 1), bos_id, dtype=torch.long)
    return torch.cat([bos, half, half], dim=1)


def repeat_training_batch(
    generator: torch.Generator, batch: int, length: int, n_content: int, min_len: int = 4
) -> torch.Tensor:
    """[batch, length]: BOS, random content tokens, with one segment of random length L in
    [min_len, (length-1)//2] and random start a copied right after itself (positions a+L..a+2L-1).

    The copy's offset and place vary per sequence, so no fixed positional offset can stand in for
    an induction head (with BOS + x + x alone, a 1-layer model learns to copy by position).
    """
    tokens = torch.randint(N_SPECIAL, N_SPECIAL + n_content, (batch, length), generator=generator)
    tokens[:, 0] = 0
    max_len = (length - 1) // 2
    seg = torch.randint(min_len, max_len + 1, (batch, 1), generator=generator)
    start = 1 + (torch.rand(batch, 1, generator=generator) * (length - 2 * seg)).long()  # a in [1, length-2L]
    pos = torch.arange(length)[None]
    in_copy = (pos >= start + seg) & (pos < start + 2 * seg)
    return tokens.gather(1, torch.where(in_copy, pos - seg, pos))


def repeat_batch(generator: torch.Generator, batch: int, seq_len: int, n_content: int) -> torch.Tensor:
    """A `repeat` task batch in the toy vocabulary of `repeat_vocab(n_content)`."""
    return repeated_tokens(generator, batch, seq_len, N_SPECIAL, N_SPECIAL + n_content, bos_id=0)
