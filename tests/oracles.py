"""Oracle checks shared by the tests of several models: ours against TransformerLens."""

from __future__ import annotations

import torch
from transformer_lens.head_detector import detect_head

from attnclaims import scores


def assert_scores_equal_head_detector(model, text: str, tokens: torch.Tensor) -> torch.Tensor:
    """Our induction and previous-token scores on `tokens` (BOS + a sequence repeated) equal
    head_detector's on `text` after its normalisation: its "mul" measure divides the attention
    mass by all rows, so ours = TL * (2S+1)/S (induction) and TL * L/(L-1) (previous token); returns ours."""
    seq_len = (tokens.shape[1] - 1) // 2
    ours = scores.induction_scores(model, tokens)
    oracle = detect_head(model, text, "induction_head") * (2 * seq_len + 1) / seq_len
    assert (ours - oracle).abs().max() <= 1e-4
    length = tokens.shape[1]
    ours_prev = scores.previous_token_scores(model, tokens)
    oracle_prev = detect_head(model, text, "previous_token_head") * length / (length - 1)
    assert (ours_prev - oracle_prev).abs().max() <= 1e-4
    return ours
