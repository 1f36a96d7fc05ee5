"""The `repeat` task (in-context copying) and the repeated-token batches that probe induction heads.

- `repeat`: in-context copying. Training sequences hold one randomly placed segment of random
  length copied right after itself; evaluation is BOS, S random tokens, the same S again
  (Olsson et al. 2022). Only an in-context copy can predict the second copy.
"""

from __future__ import annotations

import torch

from attnclaims.metrics import mean_loss
from attnclaims.scores import induction_score_from_pattern, offset_induction_score_from_pattern
from attnclaims.tasks.params import TaskParams
from attnclaims.tasks.vocab import N_SPECIAL, SPECIAL


def halves(seq_len: int) -> tuple[slice, slice]:
    """Where next-token losses ([batch, pos-1]) predict the 2nd..last token of the first copy and of
    the second (repeated) copy of BOS + S tokens + the same S: as many predictions in each."""
    return slice(1, seq_len), slice(seq_len + 1, None)


def repeat_vocab(n_content: int) -> list[str]:
    """[BOS, PAD, t0, ..., t{n-1}]"""
    return [*SPECIAL, *(f"t{i}" for i in range(n_content))]


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


class RepeatTask:
    def vocab(self, params: TaskParams):
        return repeat_vocab(params.n_content)

    def n_ctx(self, params: TaskParams):
        return 1 + 2 * params.seq_len

    def train_batch(self, params: TaskParams, generator, batch: int):
        tokens = repeat_training_batch(generator, batch, self.n_ctx(params), params.n_content)
        return tokens, tokens

    def eval_batch(self, params: TaskParams, generator, batch: int):
        return repeat_batch(generator, batch, params.seq_len, params.n_content)

    def evaluate(self, params: TaskParams, tokens, logits, attentions):
        S = params.seq_len
        first_half, repeated_half = mean_loss(tokens, halves(S))(logits).tolist()
        row = {"loss_first_half": first_half, "loss_repeated_half": repeated_half}
        for layer, pattern in enumerate(attentions):  # [batch, head, q, k]
            best_offset = (
                offset_induction_score_from_pattern(pattern, S, range(min(8, S - 1))).mean(0).max(-1).values
            )
            for head, score in enumerate(induction_score_from_pattern(pattern, S).mean(0).tolist()):
                row[f"induction_L{layer}H{head}"] = score
                row[f"offset_induction_L{layer}H{head}"] = float(best_offset[head])
        return row


def ordinary_token_ids(model, n: int = 2000, seed: int = 0) -> torch.Tensor:
    """[n] ids of ordinary tokens of a real model's tokenizer, drawn at random from the vocabulary:
    not special, printable text with a letter, that re-encodes to itself alone (no fixed id range,
    so any tokenizer works)."""
    tokenizer = model.tokenizer
    special = set(tokenizer.all_special_ids)
    out = []
    for i in torch.randperm(model.cfg.d_vocab, generator=torch.Generator().manual_seed(seed)).tolist():
        text = tokenizer.decode([i])
        if i in special or not text.isprintable() or not any(c.isalpha() for c in text):
            continue
        if tokenizer.encode(text, add_special_tokens=False) == [i]:
            out.append(i)
            if len(out) == n:
                return torch.tensor(out)
    raise ValueError(f"{model.cfg.model_name}'s tokenizer has only {len(out)} ordinary tokens; lower n={n}")


def bos_id(model) -> int:
    """The BOS id of a real model's tokenizer, or a ValueError (repeated prompts start with BOS)."""
    bos = model.tokenizer.bos_token_id
    if bos is None:
        raise ValueError(
            f"{model.cfg.model_name}'s tokenizer has no BOS token; the repeated prompts start with one"
        )
    return int(bos)


def random_repeats(
    model, pool: torch.Tensor, seed: int, batch: int, seq_len: int, repeat: bool = True
) -> torch.Tensor:
    """[batch, 1 + 2*seq_len]: BOS, seq_len tokens drawn from `pool` (ordinary_token_ids), the same
    again (or, with repeat=False, seq_len fresh tokens), on the model's device."""
    generator = torch.Generator().manual_seed(seed)
    first = pool[torch.randint(len(pool), (batch, seq_len), generator=generator)]
    second = first if repeat else pool[torch.randint(len(pool), (batch, seq_len), generator=generator)]
    bos = torch.full((batch, 1), bos_id(model), dtype=torch.long)
    return torch.cat([bos, first, second], dim=1).to(model.cfg.device)
