"""Toy training: determinism, the config-hash cache, and the bridge it returns."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from attnclaims import toy
from attnclaims.tasks.repeat import halves
from attnclaims.toy import ToyConfig, ensure_trained, load_toy, train_toy, training_history

TINY = ToyConfig(n_layers=1, n_heads=2, d_model=16, n_content=12, seq_len=5, steps=12, batch=8, log_every=4)


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_same_seed_gives_identical_weights(tmp_path):
    a = weights(ensure_trained(TINY, tmp_path / "a"))
    b = weights(ensure_trained(TINY, tmp_path / "b"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_in_parallel_processes_gives_the_weights_of_training_one_by_one(tmp_path):
    configs = [TINY.replace(seed=s) for s in (0, 1, 2)]
    parallel = toy.ensure_all_trained(configs, tmp_path / "parallel", workers=2)
    for config, folder in zip(configs, parallel):
        a, b = weights(folder), weights(ensure_trained(config, tmp_path / "serial"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert parallel == toy.ensure_all_trained(configs, tmp_path / "parallel", workers=2)  # cached now
    (one,) = toy.ensure_all_trained([TINY.replace(seed=3)], tmp_path / "one", workers=2)  # 1 missing: here
    assert toy.verify_folder(one)


def test_other_seed_gives_other_weights(tmp_path):
    a = weights(ensure_trained(TINY, tmp_path))
    b = weights(ensure_trained(TINY.replace(seed=1), tmp_path))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_cache_is_reused_and_keyed_by_every_field(tmp_path, monkeypatch):
    folder = ensure_trained(TINY, tmp_path)
    monkeypatch.setattr(toy, "_train", lambda *a: pytest.fail("retrained a cached config"))
    assert ensure_trained(TINY, tmp_path) == folder
    assert TINY.replace(attn_dropout=0.1).key() != TINY.key()
    assert TINY.replace(lr=TINY.lr * 2).key() != TINY.key()


def test_fields_added_later_leave_the_keys_of_toys_trained_before_them():
    """A key written before warmup, lr_final and positions existed (2026-12-04) is the key still, so
    every cached toy stays valid; setting one of them makes another toy."""
    assert TINY.key() == "5fcafdf76bbde0f7"  # its key at 2026-12-04 (commit bee86e5)
    for change in ({"warmup": 10}, {"lr_final": 0.5}, {"positions": "learned"}):
        assert TINY.replace(**change).key() != TINY.key()


def test_a_record_from_newer_code_reads_as_the_config_it_keys():
    """The cache is shared between checkouts: a record holding a field this code lacks (at its default,
    or its key would differ) reads as the same config; a field it has still counts."""
    stored = {**asdict(TINY), "a_field_added_later": 0}
    assert ToyConfig.from_record(stored) == TINY
    assert ToyConfig.from_record({**stored, "seed": 3}) == TINY.replace(seed=3)


def test_the_schedule_warms_up_then_decays_on_a_cosine():
    config = TINY.replace(steps=110, warmup=10, lr=1e-3, lr_final=0.1)
    rates = [config.learning_rate(step) for step in range(110)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)  # linear warm-up
    assert rates[10] == pytest.approx(1e-3) and rates[60] == pytest.approx(0.55e-3)  # half-way: the mean
    assert rates[-1] == pytest.approx(1e-4, rel=1e-2) and all(a >= b for a, b in zip(rates[10:], rates[11:]))
    with pytest.raises(ValueError, match="cannot be stopped at a target"):
        toy._train(config, stop=("loss_repeated_half", 1.0))
    warm = TINY.replace(warmup=5)  # a warm-up alone depends on the step, not on steps: it may stop early
    stopped, _ = toy._train(warm.replace(steps=40), stop=("loss_repeated_half", 100.0))
    assert all(
        torch.equal(a, b)
        for a, b in zip(stopped.parameters(), toy._train(warm.replace(steps=0))[0].parameters())
    )


def test_learned_positions_train_a_gpt2_that_the_bridge_runs_as_hf_does(tmp_path):
    bridge = train_toy(TINY.replace(positions="learned"), tmp_path)
    assert type(bridge.original_model).__name__ == "GPT2LMHeadModel"
    tokens = bridge.to_tokens("t1 t2 t3 t1 t2")
    torch.testing.assert_close(bridge(tokens), bridge.original_model(tokens).logits, atol=1e-5, rtol=1e-5)
    _, cache = bridge.run_with_cache(tokens)
    assert cache["blocks.0.hook_mlp_out"].abs().max() == 0  # attention only, as the GPT-NeoX toys


def test_bridge_matches_the_trained_hf_model(tmp_path):
    folder = ensure_trained(TINY, tmp_path)
    bridge = load_toy(folder)
    tokens = bridge.to_tokens("t1 t2 t3 t1 t2")
    assert tokens[0].tolist() == [0, 3, 4, 5, 3, 4]  # BOS, then the words' ids
    hf = bridge.original_model
    torch.testing.assert_close(bridge(tokens), hf(tokens).logits, atol=1e-5, rtol=1e-5)


def test_attention_only_models_have_silent_mlps(tmp_path):
    bridge = train_toy(TINY, tmp_path)
    _, cache = bridge.run_with_cache(bridge.to_tokens("t1 t2 t3"))
    assert cache["blocks.0.hook_mlp_out"].abs().max() == 0


def test_history_logs_every_head(tmp_path):
    history = training_history(TINY, tmp_path)
    assert history["step"].tolist() == [0, 4, 8, 12]
    assert {"loss_first_half", "loss_repeated_half", "induction_L0H0", "induction_L0H1"} <= set(
        history.columns
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"task": "sorting"}, "unknown toy task"),
        ({"n_heads": 3}, "multiple of n_heads"),
        ({"attn_dropout": 1.0}, "attn_dropout"),
        ({"n_layers": 0}, r"n_layers=0: must be a whole number >= 1"),
        ({"n_heads": 0}, r"n_heads=0: must be a whole number >= 1"),
        ({"d_model": -16}, r"d_model=-16"),
        ({"n_content": 0}, r"n_content=0"),
        ({"seq_len": 2.5}, r"seq_len=2.5: must be a whole number"),
        ({"batch": 0}, r"batch=0"),
        ({"steps": -1}, r"steps=-1: must be a whole number >= 0"),
        ({"lr": 0.0}, r"lr=0.0 must be > 0"),
        ({"warmup": -1}, r"warmup=-1 must be a whole number >= 0"),
        ({"lr_final": 0.0}, r"lr_final=0.0 in \(0, 1\]"),
        ({"positions": "sinusoidal"}, r"positions='sinusoidal': 'rotary' or 'learned'"),
    ],
    ids=lambda value: "-".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else None,
)
def test_bad_configs_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**change)


def test_training_on_an_absent_device_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available.*--device cpu"):
        train_toy(TINY, tmp_path, device="cuda")
    assert not (tmp_path / "toy").exists() or not any((tmp_path / "toy").iterdir())


def test_training_follows_the_device(tmp_path, monkeypatch):
    """Batches and the model reach `_train` on the requested device, and non-CPU weights are cached apart."""
    seen = []
    real_train = toy._train

    def spy(config, device):
        seen.append(device)
        return real_train(config, device)

    monkeypatch.setattr(toy, "_train", spy)
    assert ensure_trained(TINY, tmp_path, device="cpu") == toy.toy_folder(TINY, tmp_path)
    assert seen == ["cpu"]
    assert toy.toy_folder(TINY, tmp_path, "cuda").name == toy.toy_folder(TINY, tmp_path).name + "-cuda"


def test_halves_hold_as_many_predictions_of_each_copy():
    S = 5
    tokens = torch.tensor([[0, 11, 12, 13, 14, 15, 11, 12, 13, 14, 15]])  # BOS, S tokens, the same S
    predicted = tokens[0, 1:]  # what next-token loss position i predicts
    first, repeated = halves(S)
    assert predicted[first].tolist() == [12, 13, 14, 15]
    assert predicted[repeated].tolist() == [12, 13, 14, 15]
