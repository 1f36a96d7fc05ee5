"""Multi-step experiments built from the primitives: minimal pairs and the attention switch.

- `tokenize_pair` / `tokenize_pairs`: a position-matched minimal pair (two texts that differ in a
  fact alone, each entailing one of two single-token answers) as tokens [2, pos], with the answers'
  ids and positions and the positions where the texts differ; a pair that does not tokenize to
  equal length on a model raises (or is skipped, with its reason, by `tokenize_pairs`).
- `entailment_sensitivity(model, text_a, answer_a, text_b, answer_b)`: LD(text a) - LD(text b) with
  LD = logit(answer a) - logit(answer b) at the final position. Any preference that does not depend
  on the fact (recency, a favourite word, copying) is the same in both texts and cancels; a model
  that follows the fact scores > 0.
Hooks for stacked minimal pairs (`watch`, `freeze_after`, `path_to_queries`) are in attnclaims.pair_hooks.
- `attention_switch` (the original question's protocol): run the clean prompt; for every head alone, move its
  final-row attention weight from the answer token to the alternative's token (and the reverse);
  measure the logit difference answer - alternative each time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from attnclaims.hooks import move_row
from attnclaims.metrics import logit_diff
from attnclaims.patching import attention_row_sweep
from attnclaims.scores import attention_patterns


def single_token_id(model, word: str) -> int:
    """The id of `word` (with its leading space) if it is one token for this model, else ValueError."""
    ids = model.to_tokens(word, prepend_bos=False)[0]
    if len(ids) != 1:
        pieces = model.to_str_tokens(word, prepend_bos=False)
        raise ValueError(
            f"answer {word!r} is {len(ids)} tokens for this model ({pieces}); choose a word that is one "
            "token (check with model.to_str_tokens) or compare the first tokens explicitly"
        )
    return int(ids[0])


def last_position(tokens: torch.Tensor, token_id: int, word: str, model) -> int:
    """Position of the last occurrence of `token_id` in tokens [1, pos], else ValueError naming the tokens."""
    hits = (tokens[0] == token_id).nonzero().flatten()
    if len(hits) == 0:
        raise ValueError(
            f"answer {word!r} does not occur in the prompt as the token {token_id}; the prompt's tokens are "
            f"{model.to_str_tokens(tokens)}. Put the answer word in the text (with the same leading space)"
        )
    return int(hits[-1])


@dataclass(frozen=True)
class Answers:
    """A prompt's tokens and where its two answer words are."""

    tokens: torch.Tensor  # [1, pos]
    answer_id: int
    alternative_id: int
    answer_pos: int  # last occurrence of the answer token in the prompt
    alternative_pos: int


def locate_answers(model, text: str, answer: str, alternative: str) -> Answers:
    """Tokens [1, pos] of `text` and the ids and last positions of both answer words."""
    tokens = model.to_tokens(text)
    answer_id, alternative_id = single_token_id(model, answer), single_token_id(model, alternative)
    if answer_id == alternative_id:
        raise ValueError(f"answer and alternative are the same token ({answer!r}, {alternative!r})")
    return Answers(
        tokens,
        answer_id,
        alternative_id,
        last_position(tokens, answer_id, answer, model),
        last_position(tokens, alternative_id, alternative, model),
    )


@dataclass(frozen=True)
class PairTokens:
    """A minimal pair tokenized for one model; positions are the same in both texts."""

    label: str  # names the pair in errors and tables
    tokens: torch.Tensor  # [2, pos]: text a, text b
    ids: tuple[int, int]  # answer a, answer b
    answer_pos: tuple[int, int]  # last occurrence of answer a, answer b (the same in both texts)
    fact_pos: tuple[int, ...]  # positions where the two texts differ

    @property
    def length(self) -> int:
        return int(self.tokens.shape[1])


def tokenize_pair(
    model, text_a: str, answer_a: str, text_b: str, answer_b: str, label: str = ""
) -> PairTokens:
    """The pair as tokens [2, pos] with answer ids and positions, or a ValueError naming the problem:
    an answer that is not one token, texts of different token lengths, texts that differ after an
    answer, or an answer missing from a text or at different positions in the two texts."""
    label = label or text_a
    ids = (single_token_id(model, answer_a), single_token_id(model, answer_b))
    if ids[0] == ids[1]:
        raise ValueError(f"{label}: answers {answer_a!r} and {answer_b!r} are the same token")
    a, b = model.to_tokens(text_a), model.to_tokens(text_b)
    if a.shape != b.shape:
        raise ValueError(
            f"{label}: the texts are {a.shape[1]} and {b.shape[1]} tokens long on this model "
            f"({model.to_str_tokens(a)} vs {model.to_str_tokens(b)}); choose fact words of equal token length"
        )
    tokens = torch.cat([a, b])
    differ = tuple(int(i) for i in (a[0] != b[0]).nonzero().flatten())
    if not differ:
        raise ValueError(f"{label}: the two texts are the same tokens; they must differ in the fact")
    positions = []
    for answer, token_id in zip((answer_a, answer_b), ids):
        where = [last_position(tokens[i : i + 1], token_id, answer, model) for i in range(2)]
        if where[0] != where[1]:
            raise ValueError(
                f"{label}: {answer!r} is at position {where[0]} in text a but {where[1]} in text b"
            )
        positions.append(where[0])
    if max(positions) > min(differ):
        raise ValueError(
            f"{label}: the texts differ at positions {differ}, before an answer (positions {positions}); "
            "state the rules first and the fact after them"
        )
    return PairTokens(label, tokens, ids, tuple(positions), differ)


def tokenize_pairs(model, pairs: Sequence, label=str) -> tuple[list[PairTokens], dict[str, str]]:
    """(usable pairs, {label: reason} for the pairs this model cannot use). `pairs` have `.texts`
    (a, b) and `.answers` (a, b) (prompts.entailment.MinimalPair); `label(pair)` names each."""
    kept, skipped = [], {}
    for item in pairs:
        name = label(item)
        try:
            kept.append(
                tokenize_pair(model, item.texts[0], item.answers[0], item.texts[1], item.answers[1], name)
            )
        except ValueError as error:
            skipped[name] = str(error)
    return kept, skipped


@torch.no_grad()
def entailment_sensitivity(model, text_a: str, answer_a: str, text_b: str, answer_b: str) -> float:
    """LD(text_a) - LD(text_b), LD = logit(answer_a) - logit(answer_b) at the final position, in nats.

    text_a entails answer_a and text_b entails answer_b; > 0 means the answer follows the texts'
    difference. The texts need not be of equal length here (tokenize_pair checks a minimal pair).
    """
    ids = (single_token_id(model, answer_a), single_token_id(model, answer_b))
    if ids[0] == ids[1]:
        raise ValueError(f"answers {answer_a!r} and {answer_b!r} are the same token")
    lds = []
    for text in (text_a, text_b):
        last = model(model.to_tokens(text))[0, -1]
        lds.append(float(last[ids[0]] - last[ids[1]]))
    return lds[0] - lds[1]


def attention_switch(
    model, text: str, answer: str, alternative: str, heads=None, offset: int = 0, show_progress: bool = False
) -> pd.DataFrame:
    """One row per (layer, head): the clean logit difference answer - alternative at the final
    position, the logit difference with the head's final-row weight moved from the answer's token
    to the alternative's token (`ld_to_alternative`) and back the other way (`ld_to_answer`), the
    deltas from clean, and the head's clean attention to both tokens.

    `offset` moves attention between the tokens `offset` places after each answer instead (for a
    model that reads an answer from the token after it, as a toy with a shifted copying circuit does).
    """
    where = locate_answers(model, text, answer, alternative)
    tokens = where.tokens
    a, b = where.answer_pos + offset, where.alternative_pos + offset
    if not 0 <= max(a, b) < tokens.shape[1] - 1:
        raise ValueError(
            f"offset {offset} puts an answer position outside the prompt's context (positions {a}, {b})"
        )
    metric = logit_diff(where.answer_id, where.alternative_id)
    with torch.no_grad():
        clean = float(metric(model(tokens)))
        attention = attention_patterns(model, tokens)[:, 0, :, -1]  # [layer, head, key]
    to_alt = attention_row_sweep(
        model, tokens, move_row(a, b), -1, metric=metric, heads=heads, show_progress=show_progress
    )
    to_ans = attention_row_sweep(
        model, tokens, move_row(b, a), -1, metric=metric, heads=heads, show_progress=show_progress
    )
    n_layers, n_heads = to_alt.shape
    layer, head = torch.meshgrid(torch.arange(n_layers), torch.arange(n_heads), indexing="ij")
    frame = pd.DataFrame(
        {
            "layer": layer.flatten().numpy(),
            "head": head.flatten().numpy(),
            "clean_ld": clean,
            "ld_to_alternative": to_alt.flatten().numpy(),
            "ld_to_answer": to_ans.flatten().numpy(),
            "attn_answer": attention[:, :, a].flatten().numpy(),
            "attn_alternative": attention[:, :, b].flatten().numpy(),
        }
    )
    frame["delta_to_alternative"] = frame.ld_to_alternative - clean
    frame["delta_to_answer"] = frame.ld_to_answer - clean
    return frame.dropna(subset=["ld_to_alternative"]).reset_index(drop=True)
