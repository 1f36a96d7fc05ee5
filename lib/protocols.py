"""Multi-step experiments built from the primitives: minimal pairs and the attention switch.

- `tokenize_pair` / `tokenize_pairs`: a position-matched minimal pair (two texts that differ in a
  fact alone, each entailing one of two single-token answers) as tokens [2, pos], with the answers'
  ids and positions and the positions where the texts differ; a pair that does not tokenize to
  equal length on a model raises (or is skipped, with its reason, by `tokenize_pairs`).
- `pair_sensitivity(ld)`: the sensitivity of stacked minimal pairs, LD(text a) - LD(text b) per pair,
  from each text's LD toward its own entailed answer; `entailment_sensitivity(model, text_a,
  answer_a, text_b, answer_b)`: the same for one pair of texts, in one call. LD = logit(answer a) -
  logit(answer b) at the final position. Any preference that does not depend on the fact (recency, a
  favourite word, copying) is the same in both texts and cancels; a model that follows the fact
  scores > 0.
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

    name: str  # names the pair in errors and tables
    tokens: torch.Tensor  # [2, pos]: text a, text b
    ids: tuple[int, int]  # answer a, answer b
    answer_pos: tuple[int, int]  # last occurrence of answer a, answer b (the same in both texts)
    fact_pos: tuple[int, ...]  # positions where the two texts differ
    bridge_pos: tuple[int, int] | None = None  # two hops: the last token of bridge a, of bridge b, where
    # each is first stated (its condition rule); None for one hop

    @property
    def length(self) -> int:
        return int(self.tokens.shape[1])


def tokenize_pair(
    model, text_a: str, answer_a: str, text_b: str, answer_b: str, name: str = "", bridges=None
) -> PairTokens:
    """The pair as tokens [2, pos] with answer ids and positions, or a ValueError naming the problem:
    an answer that is not one token, texts of different token lengths, texts that differ after an
    answer, or an answer missing from a text or at different positions in the two texts. `bridges`
    (two phrases, two hops): where each is first stated, by its last token (`phrase_end`)."""
    name = name or text_a
    ids = (single_token_id(model, answer_a), single_token_id(model, answer_b))
    if ids[0] == ids[1]:
        raise ValueError(f"{name}: answers {answer_a!r} and {answer_b!r} are the same token")
    a, b = model.to_tokens(text_a), model.to_tokens(text_b)
    if a.shape != b.shape:
        raise ValueError(
            f"{name}: the texts are {a.shape[1]} and {b.shape[1]} tokens long on this model "
            f"({model.to_str_tokens(a)} vs {model.to_str_tokens(b)}); choose fact words of equal token length"
        )
    tokens = torch.cat([a, b])
    differ = tuple(int(i) for i in (a[0] != b[0]).nonzero().flatten())
    if not differ:
        raise ValueError(f"{name}: the two texts are the same tokens; they must differ in the fact")
    positions = []
    for answer, token_id in zip((answer_a, answer_b), ids):
        where = [last_position(tokens[i : i + 1], token_id, answer, model) for i in range(2)]
        if where[0] != where[1]:
            raise ValueError(
                f"{name}: {answer!r} is at position {where[0]} in text a but {where[1]} in text b"
            )
        positions.append(where[0])
    if max(positions) > min(differ):
        raise ValueError(
            f"{name}: the texts differ at positions {differ}, before an answer (positions {positions}); "
            "state the rules first and the fact after them"
        )
    bridge_pos = None if bridges is None else tuple(phrase_end(model, text_a, phrase) for phrase in bridges)
    return PairTokens(name, tokens, ids, tuple(positions), differ, bridge_pos)


def phrase_end(model, text: str, phrase: str) -> int:
    """The position in model.to_tokens(text) of the last token of `phrase`'s first occurrence (as a
    whole word: the character before it is a space), or a ValueError naming the text."""
    at = text.find(" " + phrase)
    if at < 0:
        raise ValueError(f"{phrase!r} does not occur in the text {text!r} after a space")
    end = at + 1 + len(phrase)
    encoded = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens = model.to_tokens(text)[0].tolist()
    shift = len(tokens) - len(encoded["input_ids"])  # BOS, where to_tokens prepends it
    if shift < 0 or tokens[shift:] != list(encoded["input_ids"]):
        raise ValueError(f"the tokenizer's offsets do not match model.to_tokens for {text!r}")
    last = [i for i, (start, stop) in enumerate(encoded["offset_mapping"]) if start < end and stop > at + 1]
    if not last:
        raise ValueError(f"no token of {text!r} covers {phrase!r}")
    return shift + last[-1]


def tokenize_pairs(model, pairs: Sequence, name=str) -> tuple[list[PairTokens], dict[str, str]]:
    """(usable pairs, {name: reason} for the pairs this model cannot use). `pairs` have `.texts`
    (a, b) and `.answers` (a, b) (prompts.entailment.MinimalPair); `name(pair)` names each."""
    kept, skipped = [], {}
    for item in pairs:
        pair_name = name(item)
        try:
            texts, answers, bridges = item.texts, item.answers, getattr(item, "bridges", None)
            kept.append(tokenize_pair(model, texts[0], answers[0], texts[1], answers[1], pair_name, bridges))
        except ValueError as error:
            skipped[pair_name] = str(error)
    return kept, skipped


def pair_sensitivity(ld: torch.Tensor) -> torch.Tensor:
    """[n] LD(text a) - LD(text b) of each pair, from [2n] per-prompt LDs of stacked pairs (rows a, b,
    a, b, ...), each text's LD taken toward its own entailed answer (text b's LD is then -LD(text b)
    toward answer a, so the pair's sum is the sensitivity)."""
    if ld.ndim != 1 or len(ld) % 2:
        raise ValueError(f"per-prompt LDs of stacked pairs are [2n], got shape {tuple(ld.shape)}")
    return ld.reshape(-1, 2).sum(1)


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
    for text, (own, other) in zip((text_a, text_b), (ids, ids[::-1])):
        last = model(model.to_tokens(text))[0, -1]
        lds.append(last[own] - last[other])  # toward the text's own entailed answer
    return float(pair_sensitivity(torch.stack(lds)))


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
