"""`--model PATH`: a HuggingFace folder written by save_pretrained loads offline and runs a sweep; a
folder TransformerLens cannot bridge, a path with no folder and a misspelt embedded name are named."""

from __future__ import annotations

import json

import pytest
import torch

from attnclaims.fixtures.models import selected_models
from attnclaims.metrics import logit_diff
from attnclaims.models import (
    CHECKPOINTS,
    ModelUnavailableError,
    check_model_name,
    checkpoint_folder,
    load_model,
    supported_architectures,
)
from attnclaims.patching import head_out_patch_sweep


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A 2-layer Llama with SmolLM2's tokenizer, as a fine-tune would be saved."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_folder(CHECKPOINTS["smollm2-135m"])))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("my-finetune")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_saved_folder_loads_offline_and_runs_a_sweep(saved, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert check_model_name(str(saved)) == "folder"
    model = load_model(str(saved))
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.n_ctx) == (2, 4, 64)
    clean = model.to_tokens(["When it rains I wear boots", "When it snows I wear boots"])
    corrupted = model.to_tokens(["When it is dry I wear boots", "When it is hot I wear boots"])
    if clean.shape != corrupted.shape:
        pytest.fail(f"the prompts must tokenize to one length: {clean.shape} vs {corrupted.shape}")
    boots, shoes = (model.to_single_token(word) for word in (" boots", " shoes"))
    metric = logit_diff(torch.tensor([boots, boots]), torch.tensor([shoes, shoes]))
    effects = head_out_patch_sweep(model, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric)
    assert effects.shape == (2, 4) and torch.isfinite(effects).all()


def test_the_plugin_takes_a_folder_and_names_a_missing_one(saved, tmp_path):
    class Config:
        def __init__(self, option):
            self.option = option

        def getoption(self, name):
            return self.option

    assert selected_models(Config(f"smollm2-135m,{saved}")) == ["smollm2-135m", str(saved)]
    with pytest.raises(pytest.UsageError, match="no folder at .*save_pretrained"):
        selected_models(Config(str(tmp_path / "nowhere")))
    with pytest.raises(pytest.UsageError, match="did you mean 'smollm2-135m'"):
        selected_models(Config("smolm2-135m"))


def test_a_folder_the_bridge_cannot_read_is_named(saved, tmp_path):
    unsupported = tmp_path / "unsupported"
    unsupported.mkdir()
    config = json.loads((saved / "config.json").read_text())
    (unsupported / "config.json").write_text(json.dumps({**config, "architectures": ["AcmeForCausalLM"]}))
    (unsupported / "tokenizer.json").write_text((saved / "tokenizer.json").read_text())
    assert "LlamaForCausalLM" in supported_architectures()
    with pytest.raises(
        ModelUnavailableError, match="no adapter for AcmeForCausalLM. Supported: .*LlamaForCausalLM"
    ):
        load_model(str(unsupported))
    (unsupported / "config.json").write_text(json.dumps({**config, "architectures": []}))
    with pytest.raises(ModelUnavailableError, match="names no architecture"):
        load_model(str(unsupported))
    (unsupported / "tokenizer.json").unlink()
    with pytest.raises(ModelUnavailableError, match="no tokenizer"):
        load_model(str(unsupported))
    with pytest.raises(ModelUnavailableError, match="no config.json"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("name, near", [("smolm2-135m", "smollm2-135m"), ("gemma3-207m", "gemma3-270m")])
def test_a_misspelt_embedded_name_gets_did_you_mean_and_is_never_sent(name, near, monkeypatch):
    monkeypatch.setattr("attnclaims.models._check_hub_reachable", lambda name: pytest.fail("sent to the hub"))
    with pytest.raises(ModelUnavailableError, match=f"did you mean '{near}'"):
        load_model(name)
    assert check_model_name("acme/some-model") == "hub"


def test_model_path_with_a_space_runs_the_project_it_is_started_in(saved, tmp_path):
    """pytest picks its rootdir before the suite's options are known, so in `--model PATH` it reads PATH
    as a test path. A folder inside the project, or outside any project, gives the run `--model=PATH`
    gives; one inside another project whose configuration has already added options is refused."""
    import shutil
    import subprocess
    import sys

    project = tmp_path / "project"
    (project / "hypotheses").mkdir(parents=True)
    ini = '[tool.pytest.ini_options]\ntestpaths = ["hypotheses"]\naddopts = "-p no:cacheprovider"\n'
    (project / "pyproject.toml").write_text(ini)
    where = [
        "def test_where(model_name, request):",
        "    print('ROOT', request.config.rootpath, 'INI', request.config.inipath, 'MODEL', model_name,",
        "          'CACHE', request.config.pluginmanager.has_plugin('cacheprovider'))",
    ]
    (project / "hypotheses" / "test_where.py").write_text("\n".join(where) + "\n")
    inside = project / "models" / "mine"
    shutil.copytree(saved, inside)
    other = tmp_path / "other"
    shutil.copytree(saved, other / "mine")
    (other / "pytest.ini").write_text("[pytest]\naddopts = -q\n")

    def run(*args):
        command = [sys.executable, "-m", "pytest", "-q", "-s", *args]
        return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300)

    for folder in (inside, saved):
        for form in (["--model", str(folder)], [f"--model={folder}"]):
            result = run(*form)
            assert result.returncode == 0, result.stdout + result.stderr
            expected = f"ROOT {project} INI {project / 'pyproject.toml'} MODEL {folder} CACHE False"
            assert expected in result.stdout, result.stdout
    refused = run("--model", str(other / "mine"))
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert f"Fix: write --model={other / 'mine'}" in refused.stderr
