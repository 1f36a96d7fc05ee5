"""Metrics on hand-made logits."""

import pytest
import torch

from attnclaims import metrics


def logits():
    out = torch.zeros(2, 3, 5)
    out[0, -1] = torch.tensor([0.0, 2.0, 1.0, 0.0, 0.0])
    out[1, -1] = torch.tensor([0.0, 0.0, 3.0, 1.0, 0.0])
    return out


def test_logit_diff_per_prompt_and_mean():
    assert metrics.logit_diff(1, 2, per_prompt=True)(logits()).tolist() == [1.0, -3.0]
    assert metrics.logit_diff(1, 2)(logits()).item() == -1.0
    assert metrics.logit_diff(torch.tensor([1, 2]), torch.tensor([2, 3]), per_prompt=True)(
        logits()
    ).tolist() == [1.0, 2.0]


def test_target_prob_and_kl():
    p = metrics.target_prob(1, per_prompt=True)(logits())
    torch.testing.assert_close(p[0], torch.softmax(logits()[0, -1], -1)[1])
    assert metrics.kl_to_clean(logits())(logits()).abs() < 1e-7
    assert metrics.kl_to_clean(logits())(torch.zeros(2, 3, 5)) > 0


def test_per_position_loss_and_mean_loss():
    tokens = torch.tensor([[0, 1, 2], [0, 3, 2]])
    flat = torch.zeros(2, 3, 5)
    losses = metrics.per_position_loss(tokens)(flat)
    torch.testing.assert_close(losses, torch.full((2, 2), float(torch.log(torch.tensor(5.0)))))
    assert metrics.mean_loss(tokens, slice(1, None))(flat).ndim == 0


def test_loss_on_part_of_a_sequence_is_one_helper():
    """mean_loss over the batch, per prompt, and for several spans at once from one softmax."""
    tokens = torch.tensor([[0, 1, 2, 3, 1], [0, 3, 2, 2, 4]])
    logits = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(0))
    losses = metrics.per_position_loss(tokens)(logits)  # [2, 4]
    first, second = slice(0, 2), slice(2, None)
    assert metrics.mean_loss(tokens, second)(logits) == losses[:, second].mean()
    torch.testing.assert_close(
        metrics.mean_loss(tokens, second, per_prompt=True)(logits), losses[:, 2:].mean(1)
    )
    both = metrics.mean_loss(tokens, (first, second), per_prompt=True)(logits)
    assert both.shape == (2, 2) and torch.equal(both[:, 1], losses[:, 2:].mean(1))
    torch.testing.assert_close(
        metrics.mean_loss(tokens, (first, second))(logits), losses.reshape(2, 2, 2).mean((0, 2))
    )


def test_normalised_score():
    assert metrics.normalised_score(3.0, 5.0, 1.0) == 0.5
    with pytest.raises(ValueError, match="undefined"):
        metrics.normalised_score(1.0, 2.0, 2.0)


def test_non_scalar_metric_is_named():
    with pytest.raises(ValueError, match=r"scalar tensor, got shape \(2,\)"):
        metrics.check_scalar(metrics.logit_diff(1, 2, per_prompt=True), logits())
