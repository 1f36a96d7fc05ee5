"""Per-head attention scores: induction, previous-token, prefix matching, entropy, attention to a token.

Each score exists in two forms: `*_from_pattern(pattern, ...)` on an attention pattern
[batch, head, query, key] (usable on any model's patterns, HF's `output_attentions` included),
and a model-level function that runs a `TransformerBridge` and returns [n_layers, n_heads].

Definitions, for tokens [batch, 1 + 2S] = BOS, a random sequence x_1..x_S, the same again:
- induction score: mean attention from each query q in the second copy (q = S+1 .. 2S) to the
  key q - S + 1, the token that followed the query's token the first time (Olsson et al. 2022).
- offset induction score (d): the same with key q - S + 1 + d, i.e. d tokens after the induction
  target; a head that reads the next token from a later position (a shifted copying circuit) scores
  high at some d != 0 and low at d = 0.
- previous-token score: mean attention from each query q >= 1 to key q - 1.
- entropy: -sum_k p_k log p_k of a query's attention row, in nats.
"""

from __future__ import annotations

import torch


def pattern_names(model) -> list[str]:
    return [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]


@torch.no_grad()
def attention_patterns(model, tokens: torch.Tensor) -> torch.Tensor:
    """[n_layers, batch, n_heads, query, key] attention patterns of `model` on `tokens`."""
    names = pattern_names(model)
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    return torch.stack([cache[name] for name in names])


def _check_repeated(tokens: torch.Tensor) -> int:
    if tokens.ndim != 2 or tokens.shape[1] % 2 != 1 or tokens.shape[1] < 3:
        raise ValueError(
            f"tokens must be [batch, 1 + 2*S] (BOS, a sequence, the same again); got shape {tuple(tokens.shape)}"
        )
    S = (tokens.shape[1] - 1) // 2
    if not torch.equal(tokens[:, 1 : S + 1], tokens[:, S + 1 :]):
        raise ValueError("tokens[:, 1:S+1] and tokens[:, S+1:] differ: the sequence is not repeated")
    return S


def induction_score_from_pattern(pattern: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[batch, head]: mean attention from q in S+1..2S to key q-S+1 (S = seq_len), per sequence."""
    S = seq_len
    q = torch.arange(S + 1, 2 * S + 1)
    return pattern[:, :, q, q - S + 1].mean(dim=2)


def offset_induction_score_from_pattern(pattern: torch.Tensor, seq_len: int, offsets=range(0, 8)) -> torch.Tensor:
    """[batch, head, len(offsets)]: mean attention from q in S+1..2S to key q-S+1+d, per offset d
    (only queries whose key q-S+1+d < q count)."""
    S = seq_len
    if max(offsets) > S - 2:
        raise ValueError(f"offset {max(offsets)} leaves no query whose key is visible for S={S}; use offsets up to S-2")
    q = torch.arange(S + 1, 2 * S + 1)
    out = []
    for d in offsets:
        keep = q[q - S + 1 + d < q] if d > 0 else q
        out.append(pattern[:, :, keep, keep - S + 1 + d].mean(dim=2))
    return torch.stack(out, dim=-1)


def previous_token_score_from_pattern(pattern: torch.Tensor) -> torch.Tensor:
    """[batch, head]: mean attention from each query q >= 1 to key q-1, per sequence."""
    q = torch.arange(1, pattern.shape[-2])
    return pattern[:, :, q, q - 1].mean(dim=2)


def entropy_from_pattern(pattern: torch.Tensor) -> torch.Tensor:
    """[batch, head, query]: entropy in nats of each attention row (0 log 0 = 0)."""
    return -torch.special.xlogy(pattern, pattern).sum(-1)


def induction_scores(model, tokens: torch.Tensor) -> torch.Tensor:
    """[n_layers, n_heads] induction scores on repeated random tokens [batch, 1 + 2S]."""
    S = _check_repeated(tokens)
    return torch.stack([induction_score_from_pattern(p, S).mean(0) for p in attention_patterns(model, tokens)])


def previous_token_scores(model, tokens: torch.Tensor) -> torch.Tensor:
    """[n_layers, n_heads] previous-token scores on any tokens [batch, pos]."""
    return torch.stack([previous_token_score_from_pattern(p).mean(0) for p in attention_patterns(model, tokens)])


def attention_entropy(model, tokens: torch.Tensor) -> torch.Tensor:
    """[n_layers, batch, n_heads, query] entropy in nats of every head's attention row."""
    return entropy_from_pattern(attention_patterns(model, tokens))


def attention_to_position(model, tokens: torch.Tensor, key_pos: int, query_pos: int = -1) -> torch.Tensor:
    """[n_layers, batch, n_heads] attention paid from `query_pos` to `key_pos`."""
    patterns = attention_patterns(model, tokens)
    n = tokens.shape[1]
    for name, pos in (("key_pos", key_pos), ("query_pos", query_pos)):
        if not -n <= pos < n:
            raise ValueError(f"{name}={pos} is outside the sequence of length {n}")
    return patterns[:, :, :, query_pos, key_pos]
