"""Bad input, as a new user would give it: each case gets a clear error naming the problem and the
fix (raised where the input enters, not from inside a forward pass), or a result that is right."""

from __future__ import annotations

import pytest
import torch

from attnclaims import hooks as H
from attnclaims.interventions import RedirectAttention
from attnclaims.metrics import logit_diff, normalised_score
from attnclaims.models import load_model
from attnclaims.patching import attention_redirect_sweep
from attnclaims.sweep import run_variants
from attnclaims.toy import ToyConfig


def tokens(model, length: int = 10) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.cat(
        [
            torch.zeros(2, 1, dtype=torch.long),
            torch.randint(2, model.cfg.d_vocab, (2, length - 1), generator=g),
        ],
        1,
    )


def nan_metric(logits):
    return logits[:, -1, 0].mean() * float("nan")


CASES = {
    "redirect to a later key position (acausal)": (
        lambda toy: run_variants(
            toy,
            tokens(toy),
            {"x": RedirectAttention([(1, 0)], dst=-1, query_pos=4)},
            logit_diff(2, 3),
        ),
        "acausal",
    ),
    "a metric that returns NaN": (
        lambda toy: run_variants(toy, tokens(toy), {"clean": []}, nan_metric),
        "NaN",
    ),
    "float tokens": (
        lambda toy: run_variants(toy, tokens(toy).float(), {"clean": []}, logit_diff(2, 3)),
        "integer ids",
    ),
    "a token id >= the vocabulary": (
        lambda toy: run_variants(toy, tokens(toy) + toy.cfg.d_vocab, {"clean": []}, logit_diff(2, 3)),
        "vocabulary",
    ),
    "text where tokens are expected": (
        lambda toy: run_variants(toy, "the capital of France", {"clean": []}, logit_diff(2, 3)),
        "got text: tokenize it first",
    ),
    "tokens of shape [1, 0]": (
        lambda toy: run_variants(toy, torch.zeros(1, 0, dtype=torch.long), {"clean": []}, logit_diff(2, 3)),
        "tokens are empty",
    ),
    "tokens of rank 3": (
        lambda toy: run_variants(toy, tokens(toy)[None], {"clean": []}, logit_diff(2, 3)),
        r"must be \[batch, pos\]",
    ),
    "a prompt past the model's context": (
        lambda toy: run_variants(toy, tokens(toy, 4 * toy.cfg.n_ctx), {"clean": []}, logit_diff(2, 3)),
        "longer than the model's context",
    ),
    "a multi-token answer's ids for one prompt": (
        lambda toy: run_variants(toy, tokens(toy)[:1], {"clean": []}, logit_diff([2, 5], 3)),
        "one id, or one per prompt",
    ),
    "a multi-token answer's ids for two prompts": (
        lambda toy: run_variants(toy, tokens(toy), {"clean": []}, logit_diff([[2, 5], [2, 5]], 3)),
        "one id, or one per prompt",
    ),
    "a patch from a cache without the activation": (lambda toy: H.patch_heads(toy, [(1, 0)], {}), "cache it"),
    "a mean ablation whose reference lacks the layer": (
        lambda toy: H.ablate_heads(toy, [(1, 0)], "mean", {}),
        "cache it",
    ),
    "a sweep without a metric": (
        lambda toy: attention_redirect_sweep(toy, tokens(toy), 2, metric=None),
        "needs a metric",
    ),
    "k measures per prompt in a per-head sweep": (
        lambda toy: attention_redirect_sweep(
            toy, tokens(toy), 2, metric=lambda logits: logits[:, -1, :3], show_progress=False
        ),
        "returns one number per call",
    ),
    "a toy with no layers": (lambda toy: ToyConfig(n_layers=0), "n_layers"),
    "clean and corrupted prompts of different lengths": (
        lambda toy: __import__("attnclaims.patching").patching.head_out_patch_sweep(
            toy, clean_tokens=tokens(toy, 10), corrupted_tokens=tokens(toy, 11), metric=logit_diff(2, 3)
        ),
        "differ in shape.*equal length",
    ),
    "clean and corrupted tokens passed by position": (
        lambda toy: __import__("attnclaims.patching").patching.head_out_patch_sweep(
            toy, tokens(toy), tokens(toy), logit_diff(2, 3)
        ),
        "positional argument",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_gets_a_named_error(toy, case):
    call, message = CASES[case]
    with pytest.raises((ValueError, TypeError), match=message):
        call(toy)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_device_on_a_machine_without_one_is_refused():
    with pytest.raises(ValueError, match="CUDA"):
        load_model("smollm2-135m", device="cuda")


def test_normalised_score_takes_tensors_and_refuses_equal_runs():
    value = normalised_score(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]), torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(value, torch.tensor([0.5, 0.5]))
    assert normalised_score(1.0, 2.0, 0.0) == 0.5
    with pytest.raises(ValueError, match="undefined"):
        normalised_score(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([2.0]))
