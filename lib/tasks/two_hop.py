"""The `two-hop` task: rule chains in context, one query per sequence, so no answer can be copied.

    <bos> c3 b5 . b0 a7 . c1 b0 . b5 a2 . ?2 c3 -> a2        two hops asked (condition -> answer)
    <bos> c3 b5 . b0 a7 . c1 b0 . b5 a2 . ?1 c3 -> b5        one hop (condition -> bridge)
    <bos> c3 b5 . b0 a7 . c1 b0 . b5 a2 . ?1 b5 -> a2        one hop (bridge -> answer)

Two chains, each stated as two rules ("c b ." and "b a ."), the four rules in a random order; then
a marker (`?1`: one hop asked, `?2`: two), the query word and the answer, with the loss on the answer
alone. Training draws a third of each query kind (KINDS): with two-hop queries alone a small model
sits at chance (ln 2 on the answer), with the one-hop queries beside them it learns the chain.
Pairings of words are drawn afresh for every sequence, so no pairing can be memorised; moreover a
fixed eighth of the chains (condition, bridge, answer), drawn from the seed HELD_OUT_SEED, never occur
in training, and every evaluation batch and prompt asks about those only: the model is tested on chains
it has never seen. (Held-out pairings (c, b) would not do: a model learns that they never occur and
answers against them; a chain of three words held out at random is no rule a model can learn.)

Vocabulary: BOS, PAD, ".", the markers "?1" and "?2", then n_content words of each kind: c*
(conditions), b* (bridges), a* (answers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from attnclaims.metrics import mean_loss
from attnclaims.tasks.params import TaskParams
from attnclaims.tasks.vocab import SPECIAL

DOT_WORD, MARKERS = ".", ("?1", "?2")  # the rule separator; one hop asked, two hops asked
DOT = len(SPECIAL)
ONE_HOP, TWO_HOPS = DOT + 1, DOT + 2  # the markers' ids
KINDS = ("c->b", "b->a", "c->a")  # the query kinds, in a third each of the training sequences
HELD_OUT_SEED, HELD_OUT_SHARE = 1234, 1 / 8  # the chains (c_i, b_j, a_k) never trained on, held_out(k)
RULES = 4
LENGTH = 1 + 3 * RULES + 3  # BOS, the rules, marker, query, answer


@dataclass(frozen=True)
class Chains:
    """A batch of sequences and what each asks: row r asks chain `chain[r]` a query of KINDS[kind[r]]."""

    tokens: torch.Tensor  # [batch, LENGTH]: the last token is the answer
    kind: torch.Tensor  # [batch] index into KINDS
    chain: torch.Tensor  # [batch] 0 or 1: the chain the query names
    words: dict  # "c", "b", "a" -> [batch, 2] ids of each chain's words
    order: (
        torch.Tensor
    )  # [batch, RULES]: the rules as stated, 0/1 = chain 0/1's condition rule, 2/3 = answer rule

    @property
    def alternative(self) -> torch.Tensor:
        """[batch] the other chain's answer to the same kind of query."""
        asked = {0: "b", 1: "a", 2: "a"}
        other = 1 - self.chain
        rows = torch.arange(len(other))
        return torch.stack([self.words[asked[k]][rows, other] for k in range(3)], 1)[rows, self.kind]


class TwoHopTask:
    """`repeats`: the share of training sequences that are instead a random run of the task's words
    with a stretch of it repeated right after itself (loss on the repeat: in-context lookup, the step
    each hop makes, learned densely), as lib/tasks/repeat.py's sequences are."""

    version = 2  # part of every two-hop toy's cache key (lib/toy.py): 2, chains held out at random

    def __init__(self, repeats: float = 0.0, kinds: tuple[int, ...] = (0, 1, 2)):
        self.repeats, self.kinds = repeats, kinds
        if repeats or kinds != (0, 1, 2):
            self.version = (2, repeats, kinds)

    def vocab(self, params: TaskParams) -> list[str]:
        k = params.n_content
        return SPECIAL + [DOT_WORD, *MARKERS] + [f"{kind}{i}" for kind in "cba" for i in range(k)]

    def n_ctx(self, params: TaskParams) -> int:
        return LENGTH

    def ids(self, params: TaskParams, kind: str, index: torch.Tensor) -> torch.Tensor:
        return TWO_HOPS + 1 + "cba".index(kind) * params.n_content + index

    def sample(
        self, params: TaskParams, generator: torch.Generator, batch: int, kinds=(0, 1, 2), held_out=False
    ) -> Chains:
        """`batch` sequences, query kinds drawn evenly from `kinds`; every pairing trained on
        (held_out=False) or every pairing held out of training (True)."""
        k = params.n_content
        if k < 4:
            raise ValueError(f"n_content={k}: the two-hop task needs >= 4 words of each kind")
        c = _distinct(torch.rand(batch, k, generator=generator))
        b, a = _chains(c, torch.rand(batch, 2, k * k, generator=generator), held_out_chains(k) == held_out)
        words = {name: self.ids(params, name, index) for name, index in zip("cba", (c, b, a))}
        dot = torch.full((batch, 2), DOT)
        rules = torch.stack(  # [batch, RULES, 3]: chain 0's and chain 1's condition rules, then answer rules
            [
                torch.stack([words["c"], words["b"], dot], 2),
                torch.stack([words["b"], words["a"], dot], 2),
            ],
            1,
        ).reshape(batch, RULES, 3)
        order = torch.rand(batch, RULES, generator=generator).argsort(1)
        body = rules[torch.arange(batch)[:, None], order].reshape(batch, -1)
        kind = torch.as_tensor(kinds)[torch.randint(len(kinds), (batch,), generator=generator)]
        chain = torch.randint(0, 2, (batch,), generator=generator)
        rows = torch.arange(batch)
        query = torch.where(kind == 1, words["b"][rows, chain], words["c"][rows, chain])
        answer = torch.where(kind == 0, words["b"][rows, chain], words["a"][rows, chain])
        marker = torch.where(kind == 2, TWO_HOPS, ONE_HOP)
        tokens = torch.cat(
            [torch.zeros(batch, 1, dtype=torch.long), body, marker[:, None], query[:, None], answer[:, None]],
            1,
        )
        return Chains(tokens, kind, chain, words, order)

    def train_batch(self, params: TaskParams, generator, batch: int):
        """One query per sequence, a third of each kind, loss on the answer alone (and a share
        `repeats` of repeated runs, loss on the repeated stretch)."""
        n = round(batch * self.repeats)
        tokens = self.sample(params, generator, batch - n, kinds=self.kinds).tokens
        labels = torch.full_like(tokens, -100)
        labels[:, -1] = tokens[:, -1]
        if not n:
            return tokens, labels
        words = torch.randint(
            TWO_HOPS + 1, TWO_HOPS + 1 + 3 * params.n_content, (n, LENGTH), generator=generator
        )
        words[:, 0] = 0
        half = (LENGTH - 1) // 2
        start = 1 + torch.randint(0, LENGTH - 2 * half, (n, 1), generator=generator)
        pos = torch.arange(LENGTH)[None]
        copied = (pos >= start + half) & (pos < start + 2 * half)
        runs = words.gather(1, torch.where(copied, pos - half, pos))
        run_labels = torch.where(copied, runs, torch.full_like(runs, -100))
        return torch.cat([tokens, runs]), torch.cat([labels, run_labels])

    def eval_batch(self, params: TaskParams, generator, batch: int):
        """Held-out pairings, `batch` sequences of each query kind (kinds in KINDS order)."""
        return torch.cat(
            [self.sample(params, generator, batch, kinds=(k,), held_out=True).tokens for k in range(3)]
        )

    def evaluate(self, params: TaskParams, tokens, logits, attentions):
        """Answer loss and accuracy per query kind, on held-out chains (the eval batch's thirds)."""
        losses = mean_loss(tokens, slice(-1, None), per_prompt=True)(
            logits
        )  # the answer, predicted at the query
        correct = (logits[:, -2].argmax(-1) == tokens[:, -1]).float()
        out = {}
        for kind, part in zip(KINDS, torch.arange(len(tokens)).chunk(3)):
            name = kind.replace("->", "_")
            out[f"loss_{name}"] = losses[part].mean().item()
            out[f"accuracy_{name}"] = correct[part].mean().item()
        out["answer_loss"] = out["loss_c_a"]  # the two-hop answer: what the task is about
        return out


def _distinct(scores: torch.Tensor) -> torch.Tensor:
    """[batch, 2]: two distinct indices per row, uniformly (the two lowest of random scores)."""
    return scores.argsort(1)[:, :2]


def held_out_chains(k: int) -> torch.Tensor:
    """[k, k, k] bool: the chains (condition i, bridge j, answer k) held out of training (an eighth, or
    2/k of them with fewer than 16 words of a kind, so that every condition keeps some of each)."""
    share = max(HELD_OUT_SHARE, 2 / k)
    return torch.rand(k, k, k, generator=torch.Generator().manual_seed(HELD_OUT_SEED)) < share


def _chains(
    c: torch.Tensor, scores: torch.Tensor, allowed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """([batch, 2] bridges, [batch, 2] answers): for each chain's condition c[:, i], a bridge and an
    answer drawn uniformly among the `allowed` chains ([k, k, k]), the two chains' bridges distinct and
    their answers distinct."""
    k = allowed.shape[0]
    scores = scores.masked_fill(~allowed[c].reshape(len(c), 2, k * k), math.inf)  # [batch, 2, k*k]
    first = scores[:, 0].argmin(1)
    j, a = first // k, first % k
    taken = (torch.arange(k * k) // k == j[:, None]) | (torch.arange(k * k) % k == a[:, None])
    second = scores[:, 1].masked_fill(taken, math.inf)
    if not bool(
        torch.isfinite(scores[:, 0].min(1).values).all() and torch.isfinite(second.min(1).values).all()
    ):
        raise ValueError(
            "no chain is left to draw for some condition: lower HELD_OUT_SHARE or raise n_content"
        )
    second = second.argmin(1)
    return torch.stack([j, second // k], 1), torch.stack([a, second % k], 1)
