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
- previous-token score: mean attention from each query q >= 1 to key q - 1; the lag score (d) is
  the same to key q - d (lag 1 = previous token), on any tokens.
- entropy: -sum_k p_k log p_k of a query's attention row, in nats.
- circuit type (`induction_circuit_type`): from the last layer's offset induction scores [head, d],
  "canonical" when the best head's best offset is 0, "offset-d" when it is d > 0, "none" when no
  head reaches the threshold.

Weight-based OV measures (`ov_circuit`, `copying_score`, `eigenvalue_positivity`): the map from a
token's embedding through one or more heads' OV circuits to the unembedding, [d_vocab, d_vocab],
row = input token, column = output logit; LayerNorm scales are folded in and each LayerNorm's
centring is applied (its per-token division is a positive scale per row, which changes no row's
ranking); biases are left out. The copying score is the share of tokens whose own logit is the
largest in their row (Elhage et al. 2021: a copying head maps each token to itself).
"""

from __future__ import annotations

import itertools

import torch
from transformer_lens.utilities import get_act_name


def pattern_names(model) -> list[str]:
    return [get_act_name("pattern", layer) for layer in range(model.cfg.n_layers)]


@torch.no_grad()
def attention_patterns(model, tokens: torch.Tensor) -> torch.Tensor:
    """[n_layers, batch, n_heads, query, key] attention patterns of `model` on `tokens`."""
    names = pattern_names(model)
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    return torch.stack([cache[name] for name in names])


def _check_repeated(tokens: torch.Tensor) -> int:
    if tokens.ndim != 2 or tokens.shape[1] % 2 != 1 or tokens.shape[1] < 3:
        raise ValueError(
            "tokens must be [batch, 1 + 2*S] (BOS, a sequence, the same again); "
            f"got shape {tuple(tokens.shape)}"
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


def offset_induction_score_from_pattern(
    pattern: torch.Tensor, seq_len: int, offsets=range(8)
) -> torch.Tensor:
    """[batch, head, len(offsets)]: mean attention from q in S+1..2S to key q-S+1+d, per offset d
    (only queries whose key q-S+1+d < q count)."""
    S = seq_len
    if max(offsets) > S - 2:
        raise ValueError(
            f"offset {max(offsets)} leaves no query whose key is visible for S={S}; use offsets up to S-2"
        )
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


def lag_scores_from_pattern(pattern: torch.Tensor, lags=range(9)) -> torch.Tensor:
    """[batch, head, len(lags)]: mean attention from each query q >= d to key q - d, per lag d."""
    n = pattern.shape[-2]
    if max(lags) >= n or min(lags) < 0:
        raise ValueError(f"lags {list(lags)} must lie in 0..{n - 1} for a sequence of {n} tokens")
    out = []
    for d in lags:
        q = torch.arange(d, n)
        out.append(pattern[:, :, q, q - d].mean(dim=2))
    return torch.stack(out, dim=-1)


def induction_circuit_type(
    offset_scores: torch.Tensor, threshold: float = 0.5
) -> tuple[str, int | None, int | None]:
    """(type, offset, head) from one layer's offset induction scores [head, offset] (offsets 0, 1, ...):
    "canonical" (offset 0), "offset-d" or "none", with the best offset and head (None for "none")."""
    if offset_scores.ndim != 2:
        raise ValueError(f"offset_scores must be [head, offset], got shape {tuple(offset_scores.shape)}")
    best = int(offset_scores.argmax())
    head, offset = divmod(best, offset_scores.shape[1])
    if float(offset_scores[head, offset]) < threshold:
        return "none", None, None
    return ("canonical" if offset == 0 else f"offset-{offset}"), offset, head


def entropy_from_pattern(pattern: torch.Tensor) -> torch.Tensor:
    """[batch, head, query]: entropy in nats of each attention row (0 log 0 = 0)."""
    return -torch.special.xlogy(pattern, pattern).sum(-1)


def induction_scores(model, tokens: torch.Tensor) -> torch.Tensor:
    """[n_layers, n_heads] induction scores on repeated random tokens [batch, 1 + 2S]."""
    S = _check_repeated(tokens)
    return torch.stack(
        [induction_score_from_pattern(p, S).mean(0) for p in attention_patterns(model, tokens)]
    )


def previous_token_scores(model, tokens: torch.Tensor) -> torch.Tensor:
    """[n_layers, n_heads] previous-token scores on any tokens [batch, pos]."""
    return torch.stack(
        [previous_token_score_from_pattern(p).mean(0) for p in attention_patterns(model, tokens)]
    )


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


# ---------------------------------------------------------------------------------------------
# OV circuits from the weights


def _centre(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm's centring of each row (over d_model)."""
    return x - x.mean(-1, keepdim=True)


def _ln_weight(norm) -> torch.Tensor:
    return norm.w.detach().float()


@torch.no_grad()
def ov_circuit(model, heads, replace: dict | None = None) -> torch.Tensor:
    """[d_vocab, d_vocab]: embedding -> OV of each head in `heads` in turn (layers ascending) -> unembedding.

    `heads` is a sequence of (layer, head) pairs of query heads, e.g. [(0, 2)] for one head's direct
    OV circuit, [(0, 2), (1, 3)] for layer 0 head 2's output read as a value by layer 1 head 3
    (V-composition). On grouped-query models a query head reads its key/value head's W_V.
    `replace`: {(layer, head): [d_model, d_model] map used instead of that head's W_V W_O} (a null
    control: a random map in a head's place, read through the same heads).
    """
    replace = {(int(layer), int(head)): m for (layer, head), m in (replace or {}).items()}
    heads = [(int(layer), int(head)) for layer, head in heads]
    if not heads or any(b[0] <= a[0] for a, b in itertools.pairwise(heads)):
        raise ValueError(f"heads {heads} must be a non-empty path with strictly ascending layers")
    group = model.cfg.n_heads // (getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads)
    x = _centre(model.W_E.detach().float())  # [d_vocab, d_model]
    for layer, head in heads:
        block = model.blocks[layer]
        W_V = block.attn.W_V.detach().float()
        W_V = W_V[head // group] if W_V.shape[0] != model.cfg.n_heads else W_V[head]  # [d_model, d_head]
        x = _centre(x * _ln_weight(block.ln1))
        if (layer, head) in replace:
            x = x @ replace[(layer, head)].float()
        else:
            x = x @ W_V @ block.attn.W_O[head].detach().float()
    return _centre(x) * _ln_weight(model.ln_final) @ model.W_U.detach().float()


def copying_score(matrix: torch.Tensor, tokens=None) -> torch.Tensor:
    """[len(tokens)] bool: whether each token's own entry is the largest of its row, among the
    columns `tokens` (default: all). Its mean is the copying score."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square [d_vocab, d_vocab], got shape {tuple(matrix.shape)}")
    tokens = torch.arange(matrix.shape[0]) if tokens is None else torch.as_tensor(tokens, dtype=torch.long)
    sub = matrix[tokens][:, tokens]
    return sub.argmax(-1) == torch.arange(len(tokens))


def eigenvalue_positivity(matrix: torch.Tensor, tokens=None) -> float:
    """sum(lambda) / sum(|lambda|) over the eigenvalues of the matrix restricted to `tokens`:
    1 for a map that copies every direction, -1 for one that inverts them (Elhage et al. 2021)."""
    tokens = torch.arange(matrix.shape[0]) if tokens is None else torch.as_tensor(tokens, dtype=torch.long)
    eig = torch.linalg.eigvals(matrix[tokens][:, tokens].double())
    return float(eig.sum().real / eig.abs().sum())
