"""Toys trained to a matched loss: each stops the first time its task metric reaches a target.

    grid = [BASE.replace(seed=s, attn_dropout=p) for s in range(8) for p in (0.0, 0.1)]
    trained = train_to_loss(grid, target=0.5)  # several at once: one process per core
    model = train_toy(trained[0].config)  # from the cache: trained[0].config.steps is where it stopped

Each config trains by attnclaims.toy's own loop (one thread; its seed's initialisation, batches and
dropout masks), evaluated every `log_every` steps on its task's evaluation batch. The first time
its `metric` is <= `target` it stops there; one that never reaches it stops at `config.steps` (the
cap). Up to step k a capped run does exactly the work of a run of k steps (nothing before the last
step depends on `config.steps`), so a model that stopped at step k is bitwise the model of
`config.replace(steps=k)` on the CPU: it is saved in the toy cache under that config, with its history, where
`train_toy` finds it (and would train the same weights, were it deleted). A small record per
(config, target, metric) says where it stopped, so a second call trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from attnclaims import toy
from attnclaims.cache import cache_root, verified_folder, verify_folder
from attnclaims.models import check_device
from attnclaims.toy import ToyConfig

RECORD = "record.json"


@dataclass(frozen=True)
class Trained:
    """One trained model: `config` as saved (steps = the step it stopped at)."""

    config: ToyConfig
    reached: bool  # its metric reached the target (at the cap at the latest)
    steps: int  # the step it stopped at (= config.steps)
    loss: float  # its metric at that step


def train_to_loss(
    configs: Sequence[ToyConfig],
    target: float,
    metric: str = "loss_repeated_half",
    root: Path | None = None,
    device: str = "cpu",
    workers: int | None = None,
) -> list[Trained]:
    """Each config trained until its eval `metric` first reaches `target` (checked every
    `log_every` steps) or for `config.steps` steps (the cap); those already cached are loaded, not
    trained. On the CPU, up to `workers` train at once (attnclaims.toy.in_processes; default: one
    per core). Returns one Trained per config, in the order of `configs`."""
    configs = list(configs)
    if not all(isinstance(c, ToyConfig) for c in configs):
        raise ValueError(
            "train_to_loss takes ToyConfig objects; build them with attnclaims.toy.ToyConfig(...)"
        )
    if not isinstance(target, (int, float)) or not math.isfinite(target):
        raise ValueError(f"target={target!r} must be a finite value of {metric!r}")
    device = check_device(device)
    records = [record_folder(c, target, metric, root, device) for c in configs]
    missing = list(dict.fromkeys(c for c, r in zip(configs, records) if not _cached(r, root, device)))
    toy.in_processes(
        train_to_target,
        [(c, target, metric, root, device) for c in missing],
        f"training {len(missing)} toys to {metric} <= {target}",
        workers if device == "cpu" else 1,
    )
    return [read_record(folder) for folder in records]


def train_to_target(config: ToyConfig, target: float, metric: str, root: Path | None, device: str) -> Trained:
    """One config trained to the target (or the cap) unless its record is cached; its Trained record."""

    def build(staging: Path) -> dict:
        model, history = toy._train(config, device, stop=(metric, target))
        last = history[-1]
        trained = Trained(
            config.replace(steps=last["step"]), last[metric] <= target, last["step"], last[metric]
        )
        toy.store(trained.config, lambda: (model, history), root, device)
        record = {
            "config": asdict(trained.config),
            **{k: getattr(trained, k) for k in ("reached", "steps", "loss")},
        }
        (staging / RECORD).write_text(json.dumps(record, indent=1))
        return {"capped": asdict(config), "target": float(target), "metric": metric}

    folder = verified_folder(
        record_folder(config, target, metric, root, device), build, "matched-loss record"
    )
    trained = read_record(folder)
    toy.ensure_trained(trained.config, root, device)  # cached; if deleted, trained again: the same weights
    return trained


def record_folder(config: ToyConfig, target: float, metric: str, root: Path | None, device: str) -> Path:
    payload = json.dumps({"config": config.key(), "target": float(target), "metric": metric}, sort_keys=True)
    key = hashlib.sha256(payload.encode()).hexdigest()[:16]
    trained_on = torch.device(device).type
    suffix = "" if trained_on == "cpu" else f"-{trained_on}"
    return (root or cache_root()) / "toy" / "matched" / f"{config.task}-{key}{suffix}"


def read_record(folder: Path) -> Trained:
    record = json.loads((folder / RECORD).read_text())
    return Trained(
        ToyConfig.from_record(record["config"]),
        bool(record["reached"]),
        int(record["steps"]),
        float(record["loss"]),
    )


def _cached(record: Path, root: Path | None, device: str) -> bool:
    return verify_folder(record) and verify_folder(toy.toy_folder(read_record(record).config, root, device))
