"""A model across devices (lib/placement.py): smollm2-135m split between the CPU and the disk by a
device map gives every sweep to the last bit; the memory estimate made before loading is what loads;
a bad map is refused with its fix."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoConfig

from attnclaims import cluster, placement
from attnclaims.metrics import logit_diff
from attnclaims.models import CHECKPOINTS, checkpoint_folder, load_model
from attnclaims.patching import attention_redirect_sweep, head_out_patch_sweep

SMOLLM2 = "smollm2-135m"
N_LAYERS = 30
ON_DISK = range(15, N_LAYERS)  # the second half of the layers are offloaded to the disk
SPLIT = {
    "model.embed_tokens": "cpu",
    "model.rotary_emb": "cpu",
    "model.norm": "cpu",
    "lm_head": "cpu",
    **{f"model.layers.{i}": "disk" if i in ON_DISK else "cpu" for i in range(N_LAYERS)},
}
pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def split():
    return load_model(SMOLLM2, device_map=SPLIT)


@pytest.fixture(scope="module")
def config():
    return AutoConfig.from_pretrained(str(checkpoint_folder(CHECKPOINTS[SMOLLM2])))


def test_sweeps_on_a_model_split_over_two_devices_equal_one_device(split, get_model):
    plain = get_model(SMOLLM2)
    assert split.cfg.n_devices == 2 and plain.cfg.n_devices == 1
    assert split.blocks[N_LAYERS - 1].attn.o.original_component.weight.device.type == "meta"  # on the disk
    clean = plain.to_tokens("When it rains I carry an umbrella, so I wear my boots. So I wear")
    corrupted = plain.to_tokens("When it storms I carry an umbrella, so I wear my boots. So I wear")
    metric = logit_diff(plain.to_single_token(" boots"), plain.to_single_token(" shoes"))
    for sweep in (
        lambda model: head_out_patch_sweep(
            model, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric
        ),
        lambda model: attention_redirect_sweep(model, clean, 3, metric=metric),
    ):
        on_one, on_two = sweep(plain), sweep(split)
        assert on_one.abs().max() > 0.01  # the sweep moves the answer
        assert torch.equal(on_one, on_two)


def test_the_estimate_before_loading_is_what_loads(config):
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(str(checkpoint_folder(CHECKPOINTS[SMOLLM2])))
    tensors = {id(t): t for t in [*plain.parameters(), *plain.buffers()]}.values()  # tied weights once
    loaded = sum(t.numel() * t.element_size() for t in tensors)
    on_disk = sum(
        t.numel() * t.element_size()
        for i in ON_DISK
        for t in [*plain.model.layers[i].parameters(), *plain.model.layers[i].buffers()]
    )
    totals = placement.plan(config, SPLIT, torch.float32)
    assert totals == {"cpu": loaded - on_disk, "disk": on_disk}
    assert placement.plan(config, "auto", torch.float32) == {"cpu": loaded}  # this machine: no GPU
    assert placement.plan(config, "auto", torch.bfloat16)["cpu"] < loaded * 0.51


def test_the_recipe_of_a_split_model_carries_its_map(split):
    loader, args = getattr(split, cluster.REPLICA).loader, getattr(split, cluster.REPLICA).args
    assert loader == "attnclaims.models:load_model"
    assert placement.check_device_map(args[3]) == SPLIT


@pytest.mark.parametrize(
    ("device_map", "message"),
    [
        ("autox", "neither a strategy (auto, balanced"),
        ('{"model.layer.0": 0, "": "cpu"}', "not a module of LlamaForCausalLM (did you mean model.layers.0"),
        ('{"model.layers.0": "cpu"}', "places no device for"),
        ('{"": "meta"}', "meta holds no weights"),
        ('{"": "gpu"}', "is not a device"),
        ("[1]", "a JSON object of module names to devices is needed"),
        ("missing.json", "no such file"),
    ],
)
def test_a_bad_map_is_refused_with_its_fix(device_map, message, config):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        placement.plan(config, placement.check_device_map(device_map), torch.float32)


def test_a_map_and_a_device_together_are_refused():
    with pytest.raises(ValueError, match="both place the model"):
        load_model(SMOLLM2, device="cuda", device_map="auto")


def test_the_option_is_checked_before_anything_loads(pytester, tmp_path):
    pytester.makepyfile(
        test_one="""
        def test_one(claim):
            claim(0.9, ">=", 0.5, exact=True, why="a row to record", model="toy:a", metric="m")
        """
    )
    bad = pytester.runpytest_inprocess("--device-map", "autox", "-p", "no:cacheprovider")
    assert "--device-map: device_map 'autox' is neither a strategy" in bad.stderr.str()
    file = tmp_path / "map.json"
    file.write_text(json.dumps({"": "cpu"}))
    good = pytester.runpytest_inprocess(
        "--device-map", str(file), f"--results-dir={tmp_path}", "-p", "no:cacheprovider"
    )
    good.assert_outcomes(passed=1)
    settings = json.loads((tmp_path / "environments.json").read_text())
    assert [s["device_map"] for s in settings.values()] == [str(file)]


devices = st.one_of(st.integers(0, 7), st.sampled_from(["cpu", "disk", "cuda", "cuda:1", "mps"]))
maps = st.dictionaries(
    st.from_regex(r"model\.layers\.[0-9]{1,2}", fullmatch=True) | st.just(""), devices, min_size=1
)


@given(maps)
def test_a_map_reads_back_from_its_text(device_map):
    text = placement.encode(device_map)
    assert placement.check_device_map(text) == device_map
    assert placement.encode(json.loads(text)) == text
