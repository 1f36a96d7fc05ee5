"""Head scores, checked exactly against transformer_lens.head_detector (the oracle).

Our induction score averages attention over the S queries of the second copy; head_detector's
"mul" measure divides the same attention mass by all 2S+1 rows. So ours = TL * (2S+1) / S exactly,
and likewise previous-token: ours = TL * L / (L-1) for a sequence of L tokens.
"""

from __future__ import annotations

import random

import pytest
import torch
from scipy.stats import spearmanr
from transformer_lens.head_detector import detect_head
from transformer_lens.utilities import get_act_name

from attnclaims import scores
from attnclaims.interventions import RedirectAttention
from attnclaims.prompts.text import PARAGRAPHS
from attnclaims.tasks import repeat_batch
from tests.oracles import assert_scores_equal_head_detector

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
        half = (
            2 + torch.randperm(24, generator=torch.Generator().manual_seed(0))[:S]
        )  # no repeats within a half
        tokens = torch.cat([torch.zeros(1, dtype=torch.long), half, half])[None]
        text = toy_text(tokens[0])
        assert torch.equal(model.to_tokens(text), tokens)
    else:
        text, tokens = repeated_text(model, seed=0)
    assert_scores_equal_head_detector(model, text, tokens)


@pytest.mark.real_model
def test_induction_ranking_agrees_with_head_detector(model):
    """Every head of the real model, ranked by our induction score and by head_detector's, on
    repeated text: the same top 10 and Spearman rho >= 0.99 (was a claim; it checks the code)."""
    texts = [repeated_text(model, seed) for seed in range(4)]
    ours = torch.stack([scores.induction_scores(model, t) for _, t in texts]).mean(0)
    oracle = detect_head(model, [text for text, _ in texts], "induction_head")
    assert torch.equal(ours.flatten().topk(10).indices, oracle.flatten().topk(10).indices)
    assert spearmanr(ours.flatten().numpy(), oracle.flatten().numpy()).statistic >= 0.99


def test_entropy_bounds_and_extremes(toy):
    tokens = repeat_batch(torch.Generator().manual_seed(1), 2, S, 24)
    entropy = scores.attention_entropy(toy, tokens)  # [layer, batch, head, query]
    n_keys = torch.arange(1, tokens.shape[1] + 1, dtype=torch.float32)
    assert (entropy >= -1e-6).all() and (entropy <= n_keys.log() + 1e-5).all()
    assert entropy[..., 0].abs().max() <= 1e-6  # the first query sees one key
    uniform = torch.full((1, 1, 4, 4), 0.25)
    torch.testing.assert_close(
        scores.entropy_from_pattern(uniform), torch.full((1, 1, 4), float(torch.log(torch.tensor(4.0))))
    )


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


def test_lag_scores_read_attention_d_tokens_back():
    """Lag 1 is the previous-token score; a head attending d back scores 1 at lag d only."""
    L, d = 10, 3
    pattern = torch.zeros(1, 2, L, L)
    pattern[0, 0, :, 0] = 1.0  # head 0: BOS only
    for q in range(L):
        pattern[0, 1, q, q - d if q >= d else 0] = 1.0  # head 1: d back (BOS before that)
    lags = scores.lag_scores_from_pattern(pattern, range(6))
    assert lags[0, 1, d] == 1.0 and lags[0, 1, torch.arange(6) != d].max() < 1.0
    torch.testing.assert_close(lags[..., 1], scores.previous_token_score_from_pattern(pattern))
    with pytest.raises(ValueError, match="lags"):
        scores.lag_scores_from_pattern(pattern, range(L + 1))


@pytest.mark.parametrize(
    "best, expected",
    [
        ((1, 0, 0.9), ("canonical", 0, 1)),
        ((2, 4, 0.8), ("offset-4", 4, 2)),
        ((0, 3, 0.3), ("none", None, None)),
    ],
    ids=["canonical", "offset", "none"],
)
def test_induction_circuit_type_from_offset_scores(best, expected):
    head, offset, value = best
    offsets = torch.full((4, 8), 0.05)
    offsets[head, offset] = value
    assert scores.induction_circuit_type(offsets, threshold=0.5) == expected
    with pytest.raises(ValueError, match="head, offset"):
        scores.induction_circuit_type(offsets[0])


def test_copying_score_and_eigenvalue_positivity_on_hand_made_maps():
    n = 6
    identity, shift = torch.eye(n), torch.roll(torch.eye(n), 1, dims=1)
    assert scores.copying_score(identity).all() and not scores.copying_score(shift).any()
    assert scores.copying_score(-identity + 0.01 * shift).float().mean() == 0.0
    assert scores.eigenvalue_positivity(identity) == pytest.approx(1.0)
    assert scores.eigenvalue_positivity(-identity) == pytest.approx(-1.0)
    keep = torch.tensor([0, 2, 4])
    assert scores.copying_score(identity, keep).shape == (3,)
    with pytest.raises(ValueError, match="square"):
        scores.copying_score(identity[:3])


def test_ov_circuit_shape_and_path_checks(toy):
    d_vocab = toy.cfg.d_vocab
    assert scores.ov_circuit(toy, [(0, 1)]).shape == (d_vocab, d_vocab)
    assert scores.ov_circuit(toy, [(0, 1), (1, 2)]).shape == (d_vocab, d_vocab)
    with pytest.raises(ValueError, match="ascending"):
        scores.ov_circuit(toy, [(1, 0), (0, 1)])


def test_ov_circuit_replace_puts_a_map_in_a_heads_place(toy):
    """A head's own W_V W_O given as the replacement changes nothing; another head's map gives that
    head's circuit."""
    attn = toy.blocks[0].attn
    own = {(0, 1): attn.W_V[1].detach() @ attn.W_O[1].detach()}
    other = {(0, 1): attn.W_V[3].detach() @ attn.W_O[3].detach()}
    path = [(0, 1), (1, 2)]
    torch.testing.assert_close(scores.ov_circuit(toy, path, replace=own), scores.ov_circuit(toy, path))
    torch.testing.assert_close(
        scores.ov_circuit(toy, path, replace=other), scores.ov_circuit(toy, [(0, 3), (1, 2)])
    )


def test_ov_circuit_matches_a_forward_pass(toy):
    """A layer-0 head made to attend from the last position to position 1 only outputs, for token t
    at position 1, z_t @ W_O = (LN(e_t) @ W_V + b_V) @ W_O. Differences between tokens, rescaled by
    the LayerNorm scale, cancel the biases; centred, LN-scaled and unembedded they must equal the
    differences of ov_circuit's rows."""
    layer, head, n = 0, 2, 5
    tokens = torch.zeros(n, 4, dtype=torch.long)
    tokens[:, 1] = torch.arange(2, 2 + n)
    tokens[:, 2:] = 7
    hooks = RedirectAttention([(layer, head)], dst=1).hooks(toy)
    names = (get_act_name("z", layer), f"blocks.{layer}.ln1.hook_scale")
    with toy.hooks(fwd_hooks=hooks):
        _, cache = toy.run_with_cache(tokens, names_filter=lambda name: name in names)
    out = cache[names[0]][:, -1, head] @ toy.blocks[layer].attn.W_O[head]  # [n, d_model]
    scale = cache[names[1]][:, 1].reshape(n, 1)  # LN's divisor at position 1
    bias = (
        toy.blocks[layer].ln1.b.detach() @ toy.blocks[layer].attn.W_V[head] + toy.blocks[layer].attn.b_V[head]
    )
    direct = (out - bias @ toy.blocks[layer].attn.W_O[head]) * scale  # centre(e_t) * w @ W_V @ W_O
    direct = direct - direct.mean(-1, keepdim=True)
    expected = direct * toy.ln_final.w.detach() @ toy.W_U
    torch.testing.assert_close(
        expected, scores.ov_circuit(toy, [(layer, head)])[2 : 2 + n], rtol=1e-3, atol=1e-3
    )
