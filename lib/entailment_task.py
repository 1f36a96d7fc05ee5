"""A synthetic two-hop entailment task for toy models: the answer is set by the rules in context.

    <bos> c3 b5 . b0 a7 . c1 b0 . b5 a2 . c3 so a2
Two chains, each stated as two rules ("c -> b", "b -> a"), in a random order; the query names one
chain's condition and the model must answer that chain's consequent (a2), not the other (a7).
Both answers are in the context, so a model that solves it must route the right one to the final
position: the positive control for the attention-switch protocol, where the mechanism exists by
construction. Loss is taken on the answer token only.

Vocabulary: BOS, PAD, ".", "so", then n_content condition words c*, bridge words b*, answer words a*.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SPECIAL = ["<bos>", "<pad>", ".", "so"]
DOT, SO = 2, 3
RULES = 4  # two chains x two rules
N_CTX = 1 + 3 * RULES + 3  # BOS, rules, query condition, "so", answer


@dataclass(frozen=True)
class ToyEntailmentPrompt:
    text: str  # without the answer; the toy tokenizer adds BOS
    answer: str
    alternative: str
    entailed_first: bool  # the entailed answer is stated before the alternative


class EntailmentTask:
    def vocab(self, config) -> list[str]:
        k = config.n_content
        return SPECIAL + [f"{kind}{i}" for kind in "cba" for i in range(k)]

    def n_ctx(self, config) -> int:
        return N_CTX

    def _ids(self, config, kind: str, index: torch.Tensor) -> torch.Tensor:
        return len(SPECIAL) + "cba".index(kind) * config.n_content + index

    def sample(self, config, generator: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [batch, N_CTX] ending with the answer, and the alternative's id [batch]."""
        k = config.n_content
        picks = {kind: torch.stack([torch.randperm(k, generator=generator)[:2] for _ in range(batch)]) for kind in "cba"}
        c, b, a = (self._ids(config, kind, picks[kind]) for kind in "cba")  # [batch, 2] each: chain 0, chain 1
        dot = torch.full((batch,), DOT)
        rules = [  # [batch, 3] each
            torch.stack([c[:, 0], b[:, 0], dot], 1), torch.stack([c[:, 1], b[:, 1], dot], 1),
            torch.stack([b[:, 0], a[:, 0], dot], 1), torch.stack([b[:, 1], a[:, 1], dot], 1),
        ]  # fmt: skip
        order = torch.stack([torch.randperm(RULES, generator=generator) for _ in range(batch)])
        body = torch.stack(rules, 1)[torch.arange(batch)[:, None], order].reshape(batch, -1)  # [batch, 12]
        chain = torch.randint(0, 2, (batch,), generator=generator)
        rows = torch.arange(batch)
        query = torch.stack([c[rows, chain], torch.full((batch,), SO), a[rows, chain]], 1)
        tokens = torch.cat([torch.zeros(batch, 1, dtype=torch.long), body, query], 1)
        return tokens, a[rows, 1 - chain]

    def train_batch(self, config, generator):
        tokens, _ = self.sample(config, generator, config.batch)
        labels = torch.full_like(tokens, -100)
        labels[:, -1] = tokens[:, -1]
        return tokens, labels

    def eval_batch(self, config, generator, batch):
        return self.sample(config, generator, batch)[0]

    def evaluate(self, config, tokens, logits, attentions):
        final = logits[:, -2]  # the prediction made at "so"
        loss = torch.nn.functional.cross_entropy(final, tokens[:, -1]).item()
        return {"answer_loss": loss, "answer_accuracy": (final.argmax(-1) == tokens[:, -1]).float().mean().item()}

    def prompts(self, config, generator: torch.Generator, n: int) -> list[ToyEntailmentPrompt]:
        """`n` prompts as text (without the answer), with the entailed answer and the alternative."""
        vocab = self.vocab(config)
        tokens, alternative = self.sample(config, generator, n)
        out = []
        for row, alt in zip(tokens, alternative):
            words = [vocab[i] for i in row[1:].tolist()]
            answer_at = words.index(words[-1])
            out.append(
                ToyEntailmentPrompt(" ".join(words[:-1]), " " + words[-1], " " + vocab[int(alt)], answer_at < words.index(vocab[int(alt)]))
            )
        return out
