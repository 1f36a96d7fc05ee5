"""Head scores, checked exactly against transformer_lens.head_detector (the oracle).

Our induction score averages attention over the S queries of the second copy; head_detector's
"mul" measure divides the same attention mass by all 2S+1 rows. So ours = TL * (2S+1) / S exactly,
and likewise previous-token: ours = TL * L / (L-1) for a sequence of L tokens.
"""

from __future__ import annotations

import random

import pytest
import torch
from transformer_lens.head_detector import detect_head

from prompts.text import PARAGRAPHS
from lib import scores
from lib.tasks import repeat_batch

S = 7  # head_detector needs 1 + 2S < the toy's context of 17


def single_token_words(model) -> list[str]:
    words = sorted({w.strip(".,'") for p in PARAGRAPHS for w in p.split()} - {""})
    return [w for w in words if len(model.to_tokens(" " + w, prepend_bos=False)[0]) == 1]


def repeated_text(model, seed: int) -> tuple[str, torch.Tensor]:
    words = random.Random(seed).sample(single_token_words(model), S)
    text = "".join(" " + w for w in words * 2)
    tokens = model.to_tokens(text)
    assert tokens.shape[1] == 1 + 2 * S, "the text must round-trip to BOS + 2S tokens"
    return text, tokens


def toy_text(tokens: torch.Tensor) -> str:
    return " ".join(f"t{int(t) - 2}" for t in tokens[1:])


@pytest.mark.parametrize("which", ["toy", "model"])
def test_induction_and_previous_token_scores_equal_head_detector(request, which):
    model = request.getfixturevalue(which)
    if which == "toy":
        half = 2 + torch.randperm(24, generator=torch.Generator().manual_seed(0))[:S]  # no repeats within a half
        tokens = torch.cat([torch.zeros(1, dtype=torch.long), half, half])[None]
        text = toy_text(tokens[0])
        assert torch.equal(model.to_tokens(text), tokens)
    else:
        text, tokens = repeated_text(model, seed=0)
    ours = scores.induction_scores(model, tokens)
    oracle = detect_head(model, text, "induction_head") * (2 * S + 1) / S
    assert (ours - oracle).abs().max() <= 1e-4
    length = tokens.shape[1]
    ours_prev = scores.previous_token_scores(model, tokens)
    oracle_prev = detect_head(model, text, "previous_token_head") * length / (length - 1)
    assert (ours_prev - oracle_prev).abs().max() <= 1e-4


@pytest.mark.real_model
def test_smollm2_induction_ranking_agrees_with_head_detector(model):
    texts = [repeated_text(model, seed) for seed in range(4)]
    ours = torch.stack([scores.induction_scores(model, t) for _, t in texts]).mean(0)
    oracle = detect_head(model, [text for text, _ in texts], "induction_head")
    assert torch.equal(ours.flatten().topk(10).indices, oracle.flatten().topk(10).indices)


def test_entropy_bounds_and_extremes(toy):
    tokens = repeat_batch(torch.Generator().manual_seed(1), 2, S, 24)
    entropy = scores.attention_entropy(toy, tokens)  # [layer, batch, head, query]
    n_keys = torch.arange(1, tokens.shape[1] + 1, dtype=torch.float32)
    assert (entropy >= -1e-6).all() and (entropy <= n_keys.log() + 1e-5).all()
    assert entropy[..., 0].abs().max() <= 1e-6  # the first query sees one key
    uniform = torch.full((1, 1, 4, 4), 0.25)
    torch.testing.assert_close(scores.entropy_from_pattern(uniform), torch.full((1, 1, 4), float(torch.log(torch.tensor(4.0)))))


def test_attention_to_position_reads_the_pattern(toy):
    tokens = repeat_batch(torch.Generator().manual_seed(2), 2, S, 24)
    patterns = scores.attention_patterns(toy, tokens)
    torch.testing.assert_close(scores.attention_to_position(toy, tokens, key_pos=3), patterns[:, :, :, -1, 3])
    with pytest.raises(ValueError, match="key_pos=50 is outside"):
        scores.attention_to_position(toy, tokens, key_pos=50)


def test_induction_scores_reject_tokens_that_do_not_repeat(toy):
    tokens = repeat_batch(torch.Generator().manual_seed(3), 2, S, 24)
    tokens[:, -1] = (tokens[:, -1] + 1 - 2) % 24 + 2
    with pytest.raises(ValueError, match="not repeated"):
        scores.induction_scores(toy, tokens)
    with pytest.raises(ValueError, match=r"1 \+ 2\*S"):
        scores.induction_scores(toy, tokens[:, :-1])


def test_offset_induction_score_reads_the_offset_of_a_hand_made_pattern():
    """A pattern that attends from each query of the second copy to d tokens after the induction
    target scores 1 at offset d and 0 at every other offset; offset 0 is the induction score."""
    S, d = 6, 2
    L = 1 + 2 * S
    pattern = torch.zeros(1, 1, L, L)
    pattern[..., 0] = 1.0  # every row on BOS ...
    for q in range(S + 1, 2 * S + 1):
        if q - S + 1 + d < q:  # ... except second-copy rows whose offset key is visible
            pattern[0, 0, q] = 0
            pattern[0, 0, q, q - S + 1 + d] = 1.0
    offsets = scores.offset_induction_score_from_pattern(pattern, S, offsets=range(S - 1))[0, 0]
    assert offsets[d] == 1.0
    assert offsets[torch.arange(len(offsets)) != d].abs().max() < 1e-6
    torch.testing.assert_close(offsets[0], scores.induction_score_from_pattern(pattern, S)[0, 0])
    with pytest.raises(ValueError, match="S-2"):
        scores.offset_induction_score_from_pattern(pattern, S, offsets=range(S))
