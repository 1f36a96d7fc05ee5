"""Training to a matched loss: a model stopped at step k is the toy loop's model of steps = k, bitwise
(dropout included), in parallel as one by one; records make a second call train nothing."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from attnclaims import toy
from attnclaims.matched_loss import train_to_loss
from attnclaims.toy import ToyConfig

CAP = ToyConfig(
    n_layers=1, n_heads=2, d_model=16, n_content=12, seq_len=5, steps=16, batch=8, log_every=4,
    attn_dropout=0.2, resid_dropout=0.1,
)  # fmt: skip


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def first_reaching(config, target, root) -> int:
    history = toy.training_history(config, root=root)
    return int(history.step[history.loss_repeated_half <= target].min())


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> float:
    """A loss both replicates reach before the cap (at a logged step between 4 and 12)."""
    root = tmp_path_factory.mktemp("full")
    losses = [toy.training_history(CAP.replace(seed=s), root=root).loss_repeated_half for s in (0, 1)]
    assert all(loss.iloc[3] < loss.iloc[0] for loss in losses)  # the premise: the loss falls by step 12
    return max(float(loss.iloc[3]) for loss in losses) + 1e-4


def test_a_trained_toy_is_the_model_of_the_step_it_stopped_at(tmp_path, target):
    configs = [CAP.replace(seed=s) for s in (0, 1)]
    trained = train_to_loss(configs, target, root=tmp_path / "matched", workers=2)  # in 2 processes
    for config, one in zip(configs, trained):
        k = first_reaching(config, target, tmp_path / "full")
        assert (
            one.reached and one.steps == k and 4 <= k < CAP.steps and one.config == config.replace(steps=k)
        )  # trained, dropout acting
        assert one.loss <= target
        ours = weights(toy.toy_folder(one.config, tmp_path / "matched"))
        fresh = weights(toy.ensure_trained(one.config, tmp_path / "fresh"))  # trained for k steps, here
        assert ours.keys() == fresh.keys() and all(torch.equal(ours[n], fresh[n]) for n in ours)
        matched = toy.training_history(one.config, root=tmp_path / "matched")
        assert matched.equals(toy.training_history(one.config, root=tmp_path / "fresh"))


def test_records_make_a_second_call_train_nothing(tmp_path, target, monkeypatch):
    trained = train_to_loss([CAP], target, root=tmp_path, workers=1)
    before = weights(toy.toy_folder(trained[0].config, tmp_path))
    with monkeypatch.context() as patched:
        patched.setattr(toy, "_train", lambda *args, **kw: pytest.fail("a cached one was trained again"))
        assert train_to_loss([CAP], target, root=tmp_path) == trained
    shutil.rmtree(toy.toy_folder(trained[0].config, tmp_path))  # the record stays; the model is gone
    assert train_to_loss([CAP], target, root=tmp_path) == trained
    after = weights(toy.toy_folder(trained[0].config, tmp_path))
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_a_toy_that_never_reaches_the_target_stops_at_the_cap(tmp_path):
    (one,) = train_to_loss([CAP], -1.0, root=tmp_path)
    assert not one.reached and one.steps == CAP.steps and one.config == CAP
    assert math.isfinite(one.loss) and one.loss > -1.0


@pytest.mark.parametrize(
    "configs, target, metric, message",
    [
        ([{"seed": 0}], 1.0, "loss_repeated_half", "takes ToyConfig"),
        ([CAP], float("nan"), "loss_repeated_half", "must be a finite"),
        ([CAP], 1.0, "accuracy", "logs no metric 'accuracy'"),
    ],
)
def test_bad_input_is_named(tmp_path, configs, target, metric, message):
    with pytest.raises(ValueError, match=message):
        train_to_loss(configs, target, metric, root=tmp_path)
