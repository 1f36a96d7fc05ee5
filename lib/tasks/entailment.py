"""Synthetic entailment tasks for toy models: the answer is set by the rules in context.

    two-hop ("entailment"):  <bos> c3 b5 . b0 a7 . c1 b0 . b5 a2 . c3 -> a2
    one-hop ("rule-recall"): <bos> c1 a7 . c3 a2 . c3 -> a2
Two chains, each stated as rules ("c -> b", "b -> a"; or "c -> a"), in a random order; the query
names one chain's condition and the model must answer that chain's consequent (a2), not the other
(a7).
Both answers are in the context, so a model that solves it must route the right one to the final
position: the positive control for the attention-switch protocol, where the mechanism exists by
construction. Loss is taken on the answer token only.

Training sequences ask TRAIN_QUERIES queries in a row ("... c3 a2 c1 a7 c3 a2 ..."), with loss on
every answer; a prompt asks one. Vocabulary: BOS, PAD, ".", then n_content condition words c*,
bridge words b*, answer words a*.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attnclaims.tasks.params import TaskParams
from attnclaims.tasks.vocab import SPECIAL

DOT_WORD = "."
DOT = len(SPECIAL)  # the rule separator's id: the first word after the special tokens
TRAIN_QUERIES = 6  # (condition, answer) pairs after the rules in a training sequence


@dataclass(frozen=True)
class ToyEntailmentPrompt:
    text: str  # without the answer; the toy tokenizer adds BOS
    answer: str
    alternative: str
    entailed_first: bool  # the entailed answer is stated before the alternative


class EntailmentTask:
    def __init__(self, hops: int):
        if hops not in (1, 2):
            raise ValueError(f"hops must be 1 or 2, got {hops}")
        self.hops = hops
        self.rules = 2 * hops  # two chains

    def vocab(self, params: TaskParams) -> list[str]:
        k = params.n_content
        return SPECIAL + [DOT_WORD] + [f"{kind}{i}" for kind in "cba" for i in range(k)]

    def n_ctx(self, params: TaskParams) -> int:
        return 1 + 3 * self.rules + 2 * TRAIN_QUERIES  # BOS, rules, (query condition, answer) pairs

    def _ids(self, params: TaskParams, kind: str, index: torch.Tensor) -> torch.Tensor:
        return DOT + 1 + "cba".index(kind) * params.n_content + index

    def sample(
        self, params: TaskParams, generator: torch.Generator, batch: int, queries: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [batch, 1 + 3*rules + 2*queries]: BOS, the rules, then `queries` (condition,
        answer) pairs; and the alternative's id for the first query [batch]."""
        k = params.n_content
        picks = {
            kind: torch.stack([torch.randperm(k, generator=generator)[:2] for _ in range(batch)])
            for kind in "cba"
        }
        c, b, a = (
            self._ids(params, kind, picks[kind]) for kind in "cba"
        )  # [batch, 2] each: chain 0, chain 1
        dot = torch.full((batch,), DOT)
        if self.hops == 2:
            rules = [  # [batch, 3] each
                torch.stack([c[:, 0], b[:, 0], dot], 1),
                torch.stack([c[:, 1], b[:, 1], dot], 1),
                torch.stack([b[:, 0], a[:, 0], dot], 1),
                torch.stack([b[:, 1], a[:, 1], dot], 1),
            ]
        else:
            rules = [torch.stack([c[:, 0], a[:, 0], dot], 1), torch.stack([c[:, 1], a[:, 1], dot], 1)]
        order = torch.stack([torch.randperm(self.rules, generator=generator) for _ in range(batch)])
        body = torch.stack(rules, 1)[torch.arange(batch)[:, None], order].reshape(
            batch, -1
        )  # [batch, 3*rules]
        chain = torch.randint(0, 2, (batch, queries), generator=generator)
        rows = torch.arange(batch)[:, None]
        query = torch.stack([c[rows, chain], a[rows, chain]], 2).reshape(batch, -1)  # [batch, 2*queries]
        tokens = torch.cat([torch.zeros(batch, 1, dtype=torch.long), body, query], 1)
        return tokens, a[rows[:, 0], 1 - chain[:, 0]]

    def train_batch(self, params: TaskParams, generator, batch: int):
        """Several queries per sequence, loss on every answer: denser signal than one query."""
        tokens, _ = self.sample(params, generator, batch, TRAIN_QUERIES)
        labels = torch.full_like(tokens, -100)
        answers = torch.arange(1 + 3 * self.rules + 1, tokens.shape[1], 2)
        labels[:, answers] = tokens[:, answers]
        return tokens, labels

    def eval_batch(self, params: TaskParams, generator, batch: int):
        return self.sample(params, generator, batch)[0]  # one query: the prompt's shape

    def evaluate(self, params: TaskParams, tokens, logits, attentions):
        final = logits[:, -2]  # the prediction made at the query condition
        loss = torch.nn.functional.cross_entropy(final, tokens[:, -1]).item()
        return {
            "answer_loss": loss,
            "answer_accuracy": (final.argmax(-1) == tokens[:, -1]).float().mean().item(),
        }

    def prompts(self, params: TaskParams, generator: torch.Generator, n: int) -> list[ToyEntailmentPrompt]:
        """`n` prompts as text (without the answer), with the entailed answer and the alternative."""
        vocab = self.vocab(params)
        tokens, alternative = self.sample(params, generator, n)
        out = []
        for row, alt in zip(tokens, alternative):
            words = [vocab[i] for i in row[1:].tolist()]
            answer_at = words.index(words[-1])
            out.append(
                ToyEntailmentPrompt(
                    " ".join(words[:-1]),
                    " " + words[-1],
                    " " + vocab[int(alt)],
                    answer_at < words.index(vocab[int(alt)]),
                )
            )
        return out
