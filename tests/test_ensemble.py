"""Ensemble training: the batched forward equals HF GPT-NeoX, a p=0 member trains as attnclaims.toy
trains it, members stop at the matched loss and land in the toy cache, dropout per member."""

from __future__ import annotations

import pytest
import torch

from attnclaims import ensemble as EN
from attnclaims import tasks, toy
from attnclaims.presets import ATTN_ONLY, WITH_MLP

SHORT = ATTN_ONLY.replace(n_layers=3, steps=20, log_every=10)


def eval_tokens(configs, batch: int = 8) -> torch.Tensor:
    task = tasks.TASKS[configs[0].task]
    return torch.stack([task.eval_batch(c, torch.Generator().manual_seed(c.seed), batch) for c in configs])


@pytest.mark.parametrize("base", [SHORT, WITH_MLP], ids=["attn-only-3L", "with-mlp-2L"])
def test_batched_forward_equals_each_members_hf_forward(base):
    configs = [base.replace(seed=s) for s in range(3)]
    params, _, hf_config = EN.stack_members(configs)
    tokens = eval_tokens(configs)
    logits, patterns = EN.forward(params, hf_config, tokens, attentions=True)
    for i, config in enumerate(configs):
        out = toy.build_hf_model(config).eval()(tokens[i], output_attentions=True)
        torch.testing.assert_close(logits[i], out.logits, atol=1e-5, rtol=0)
        for ours, theirs in zip(patterns, out.attentions):
            torch.testing.assert_close(ours[i], theirs, atol=1e-6, rtol=0)


def test_a_dropout_free_member_trains_as_lib_toy_trains_it():
    """Same init, same batches, same AdamW steps: the weights agree to float rounding and the
    logged history has the same rows and columns."""
    configs = [
        SHORT.replace(seed=0),
        SHORT.replace(seed=1, attn_dropout=0.2),
    ]  # a dropout neighbour changes nothing
    (member, params, history), _ = EN._train(configs, -1.0, "loss_repeated_half", "cpu", None)
    model, expected = toy._train(configs[0])
    assert member.steps == SHORT.steps and not member.reached
    for name, value in model.named_parameters():
        torch.testing.assert_close(params[name], value.detach(), atol=1e-5, rtol=0)
    assert [row["step"] for row in history] == [row["step"] for row in expected]
    assert [set(row) for row in history] == [set(row) for row in expected]
    for ours, theirs in zip(history, expected):
        assert ours["loss_repeated_half"] == pytest.approx(theirs["loss_repeated_half"], abs=1e-4)


def test_dropout_acts_per_member_at_its_own_rate():
    x = torch.ones(3, 4000)
    out = EN._dropout(x, torch.tensor([0.0, 0.5, 0.2]), torch.Generator().manual_seed(0))
    assert torch.equal(out[0], x[0])  # p = 0: the identity
    assert (out[1] == 0).float().mean() == pytest.approx(0.5, abs=0.03) and out[1].max() == 2.0
    assert (out[2] == 0).float().mean() == pytest.approx(0.2, abs=0.03) and out[2].max() == pytest.approx(
        1.25
    )
    assert torch.equal(EN._dropout(x, torch.tensor([0.5, 0.5, 0.5]), None), x)  # eval: no dropout


def test_members_stop_at_the_matched_loss_and_load_from_the_cache(tmp_path, monkeypatch):
    configs = [SHORT.replace(seed=s) for s in range(2)]
    first = [EN._train([c], -1.0, "loss_repeated_half", "cpu", None)[0][2] for c in configs]
    target = max(h[1]["loss_repeated_half"] for h in first) + 1e-4  # every member reaches it by step 10
    members = EN.train_to_loss(configs, target, root=tmp_path)
    for member, history, config in zip(members, first, configs):
        expected = next(row["step"] for row in history if row["loss_repeated_half"] <= target)
        assert member.reached and member.steps == expected == member.config.steps
        assert member.config == config.replace(steps=expected) and member.loss <= target
        assert toy.training_history(member.config, root=tmp_path).step.max() == expected
        folder = toy.toy_folder(member.config, tmp_path)
        bridge = toy.load_toy(folder)
        assert bridge.cfg.n_layers == 3
    with monkeypatch.context() as patched:
        patched.setattr(EN, "_train", lambda *args: pytest.fail("cached members were trained again"))
        assert EN.train_to_loss(configs, target, root=tmp_path) == members
    unreachable = EN.train_to_loss(configs[:1], -1.0, root=tmp_path)[0]
    assert not unreachable.reached and unreachable.steps == SHORT.steps  # stopped at the cap


@pytest.mark.parametrize(
    "configs, message",
    [
        ([SHORT, SHORT.replace(seed=1, d_model=64)], "may differ only in"),
        ([SHORT, SHORT], "same config"),
        ([], "at least one"),
    ],
)
def test_bad_ensembles_are_named(configs, message):
    with pytest.raises(ValueError, match=message):
        EN.train_to_loss(configs, 1.0)
