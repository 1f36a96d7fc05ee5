"""Models larger than one device: a device map, checked, estimated before loading, and applied.

    model = load_model("smollm2-135m", device_map="auto")         # accelerate chooses
    model = load_model(folder, device_map={"model.layers.0": 0, "": 1})  # module name -> device

A device map is one of accelerate's strategies (`STRATEGIES`: "auto" fills the GPUs in order, then
the CPU, then the disk), or a dict from module names (`model.layers.12`; "" is the whole model) to
devices: a CUDA index or "cuda:N", "cpu", "mps" or "disk". The plugin's `--device-map` takes the
same as text: a strategy, a JSON object, or the path of a .json file holding one.

Before anything is loaded, `plan` builds the model empty (on torch's meta device, from its config),
places it by the same accelerate code `from_pretrained` uses, and adds up the parameter bytes each
device gets at the run's dtype: that is the figure `load_model` reports (`note`). Activations, the
KV cache and a sweep's clean cache are not in it; they live on the device of the layer that makes
them. TransformerLens's bridge runs the placed model with accelerate's hooks moving activations
between devices, so every sweep is the same computation as on one device (tests/test_placement.py:
equal to the last bit on a map that splits a model between the CPU and the disk). The bridge refuses
a map that mixes a GPU with CPU or disk offload.
"""

from __future__ import annotations

import difflib
import json
import tempfile
from pathlib import Path

import torch

from attnclaims.progress import note

STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def check_device_map(device_map) -> str | dict | None:
    """None, a strategy or a {module name: device} dict, from any form the suite accepts (a dict, a
    strategy, a JSON object or the path of a .json file); a clear ValueError for anything else."""
    if device_map is None or isinstance(device_map, dict):
        return None if device_map is None else {str(k): _check_device(k, v) for k, v in device_map.items()}
    if not isinstance(device_map, str):
        raise ValueError(
            f"device_map={device_map!r}: give a strategy, a dict or JSON text, "
            f"not a {type(device_map).__name__}"
        )
    text = device_map.strip()
    if text in STRATEGIES:
        return text
    if text.endswith(".json"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ValueError(
                f"device_map {text}: no such file. Fix: the path of a JSON object of module names to devices"
            )
        text = path.read_text()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"device_map {device_map!r} is neither a strategy ({', '.join(STRATEGIES)}) nor a JSON object "
            f'({error.msg}). Fix: e.g. --device-map auto, or --device-map \'{{"model.layers.0": 0, "": 1}}\''
        ) from None
    if not isinstance(parsed, dict) or not parsed:
        raise ValueError(
            f"device_map {device_map!r}: a JSON object of module names to devices is needed, not {parsed!r}"
        )
    return check_device_map(parsed)


def check_placement(device, device_map) -> str | dict | None:
    """`check_device_map(device_map)`, refused beside a `device` other than the CPU: both would place
    the model."""
    device_map = check_device_map(device_map)
    if device_map is not None and str(device) != "cpu":
        raise ValueError(
            f"device={str(device)!r} and a device_map both place the model. Fix: give the map alone; it "
            "names the devices (--device-map without --device; toys then run on the CPU)"
        )
    return device_map


def _check_device(module: str, device) -> int | str:
    if isinstance(device, bool) or not isinstance(device, (int, str)):
        raise ValueError(
            f"device_map[{module!r}] = {device!r}: a device is a CUDA index or a name such as "
            "'cpu', 'cuda:1', 'disk'"
        )
    if device == "disk" or isinstance(device, int) and device >= 0:
        return device
    if device == "meta":
        raise ValueError(
            f"device_map[{module!r}] = 'meta': meta holds no weights. Fix: 'disk' to keep them off memory"
        )
    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device_map[{module!r}] = {device!r} is not a device. "
            "Fix: a CUDA index, 'cpu', 'cuda:N', 'mps' or 'disk'"
        ) from None
    return device


def encode(device_map) -> str | None:
    """The map as text that `check_device_map` reads back: a hashable part of a model's recipe."""
    device_map = check_device_map(device_map)
    return (
        device_map
        if device_map is None or isinstance(device_map, str)
        else json.dumps(device_map, sort_keys=True)
    )


def empty_model(config, dtype: torch.dtype):
    """The architecture with no weights (torch's meta device): what a placement is computed on."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.tie_weights()  # from_config leaves tied weights apart on the meta device
    return model


def placement(model, device_map) -> dict:
    """{module name: device} as `from_pretrained` will apply it: a strategy is resolved by the
    function transformers calls for it; a dict is checked against the model's modules."""
    from transformers.integrations.accelerate import _get_device_map  # what from_pretrained runs

    device_map = check_device_map(device_map)
    if isinstance(device_map, str):
        return dict(_get_device_map(model, device_map, max_memory=None, hf_quantizer=None))
    names = {name for name, _ in model.named_modules()}
    for key in device_map:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            raise ValueError(
                f"device_map names {key!r}, which is not a module of {type(model).__name__}"
                + (f" (did you mean {', '.join(close)}?)" if close else "")
                + ". Fix: names from model.named_modules(), e.g. model.layers.0, or '' for the whole model"
            )
    uncovered = [
        name
        for name, parameter in model.named_parameters()
        if not any(key == "" or name == key or name.startswith(key + ".") for key in device_map)
    ]
    if uncovered:
        raise ValueError(
            f"device_map places no device for {len(uncovered)} parameters, such as {uncovered[0]!r}. "
            "Fix: name their modules, or add '' (the whole model) for whatever the map leaves out"
        )
    return device_map


def plan(config, device_map, dtype: torch.dtype) -> dict[str, int]:
    """Bytes of parameters and buffers per device, in placement order, that `device_map` gives a model
    of `config` at `dtype`, computed on an empty model before anything is loaded. A tensor goes to the
    longest module name in the map that holds it; tied weights count once."""
    model = empty_model(config, dtype)
    placed = placement(model, device_map)
    keys = sorted(placed, key=len, reverse=True)
    totals: dict[str, int] = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        key = next(key for key in keys if key == "" or name == key or name.startswith(key + "."))
        device = f"cuda:{placed[key]}" if isinstance(placed[key], int) else str(placed[key])
        totals[device] = totals.get(device, 0) + tensor.numel() * tensor.element_size()
    return totals


def describe(totals: dict[str, int]) -> str:
    return ", ".join(f"{device} {size / 2**20:.0f} MiB" for device, size in totals.items())


def announce(source: str, device_map, dtype: torch.dtype) -> tuple[dict, object]:
    """For a model's folder or hub id: its `plan` shown as a progress note, then `from_pretrained`
    keywords for the map, and the temporary folder a map with "disk" offloads to (removed when the
    returned object is collected: keep it with the model). Nothing for no map."""
    from transformers import AutoConfig

    device_map = check_device_map(device_map)
    if device_map is None:
        return {}, None
    totals = plan(AutoConfig.from_pretrained(source), device_map, dtype)
    what = device_map if isinstance(device_map, str) else f"of {len(device_map)} modules"
    note(
        f"device map {what}: {describe(totals)} of {str(dtype).removeprefix('torch.')} weights "
        "(estimated before loading)"
    )
    kwargs: dict = {"device_map": device_map}
    folder = None
    if isinstance(device_map, str) or "disk" in device_map.values():  # a strategy may spill to the disk
        folder = tempfile.TemporaryDirectory(prefix="attnclaims-offload-")
        kwargs["offload_folder"] = folder.name
    return kwargs, folder
