"""Toy GPT-style transformers trained from scratch by the suite, cached by config hash.

A `ToyConfig` fully determines a model: same config (seed included) -> same weights. Training
uses HuggingFace `GPTNeoXForCausalLM`: pre-LayerNorm blocks, rotary positions (learned absolute
positions let a toy copy by position instead of by content), attention dropout and residual
("hidden") dropout after each attention and MLP output and on the embedding; with
`positions="learned"`, `GPT2LMHeadModel` instead (learned absolute positions, the same dropouts), for
tasks whose layout is fixed (lib/tasks/two_hop.py); both are built in attnclaims.toy_models. An attention-only
model keeps the blocks but fixes every MLP's weights at zero, so each MLP adds exactly 0 to the
residual stream. The task (lib/tasks/) supplies vocabulary, batches and logged metrics from the
config's `task_params`. The trained model comes back as a `TransformerBridge`. One loop trains
every toy (`_train`); attnclaims.matched_loss stops it where a metric reaches a target, and
`in_processes` runs several trainings at once.

Cache (lib/cache.py): `$XDG_CACHE_HOME/attnclaims/toy/<task>-<hash>/` holds config.json (the
ToyConfig and the HF config), model.safetensors, the tokenizer, history.json (metrics logged
during training) and a manifest of sizes and sha256s written last; a folder that fails
verification is retrained. Training runs on `device`; weights trained on another device than the
CPU are not bitwise the CPU's, so they are cached apart (`<task>-<hash>-cuda/`).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import numbers
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd
import torch

from attnclaims import cluster, tasks
from attnclaims.cache import cache_root, verified_folder, verify_folder
from attnclaims.models import check_device, refuse_truncation
from attnclaims.progress import progress
from attnclaims.toy_models import build_hf_model

# Bump when training code changes what a config produces (3: offset induction in history; 4: one thread;
# 5: a model trained to a matched loss is the toy loop's, stopped: attnclaims.matched_loss).
FORMAT_VERSION = 5


@dataclass(frozen=True)
class ToyConfig:
    # the task, and the parameters it reads (`task_params`)
    task: str = "repeat"
    n_content: int = 64  # content tokens in the vocabulary
    seq_len: int = 16  # length S of the repeated random sequence
    # the architecture
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    d_mlp: int = 256
    attn_only: bool = True
    # the training
    attn_dropout: float = 0.0
    resid_dropout: float = 0.0  # residual-stream dropout: after each attn/MLP output and the embedding
    seed: int = 0
    steps: int = 1000
    lr: float = 1e-3
    batch: int = 64
    weight_decay: float = 0.01
    log_every: int = 20
    # the learning-rate schedule: linear warm-up over `warmup` steps, then a cosine from lr down to
    # lr * lr_final at `steps` (lr_final 1.0: constant after the warm-up; a decay ties every step's
    # weights to `steps`, so such a toy is not stopped early by attnclaims.matched_loss)
    warmup: int = 0
    lr_final: float = 1.0
    positions: str = "rotary"  # "rotary" (GPT-NeoX) or "learned" (GPT-2's absolute position embeddings)
    tied: bool = False  # the unembedding is the embedding's transpose (a head writes what one reads)

    def __post_init__(self):
        if self.task not in tasks.TASKS:
            raise ValueError(f"unknown toy task {self.task!r}; known tasks: {sorted(tasks.TASKS)}")
        for name in ("n_layers", "n_heads", "d_model", "d_mlp", "n_content", "seq_len", "batch", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ToyConfig {name}={value!r}: must be a whole number >= 1")
        if not isinstance(self.steps, numbers.Integral) or self.steps < 0:
            raise ValueError(f"ToyConfig steps={self.steps!r}: must be a whole number >= 0 (0 = untrained)")
        if not isinstance(self.warmup, numbers.Integral) or self.warmup < 0 or not 0 < self.lr_final <= 1:
            raise ValueError(
                f"ToyConfig warmup={self.warmup!r} must be a whole number >= 0 and "
                f"lr_final={self.lr_final!r} in (0, 1]"
            )
        if self.positions not in ("rotary", "learned"):
            raise ValueError(f"ToyConfig positions={self.positions!r}: 'rotary' or 'learned'")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ValueError(f"ToyConfig lr={self.lr!r} must be > 0, weight_decay={self.weight_decay!r} >= 0")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")
        for name in ("attn_dropout", "resid_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1)")

    def key(self) -> str:
        """A short hash of every field, the training-code version and the task's `version` (where it
        has one): the cache key. Fields added after a toy was first cached (LATER_FIELDS) count only
        where they differ from their default, so the toys trained before them keep their keys (and
        their weights: a default changes nothing)."""
        hashed = asdict(self)
        for name, default in LATER_FIELDS.items():
            if hashed[name] == default:
                del hashed[name]
        task_version = getattr(tasks.TASKS[self.task], "version", None)  # a task that changed says so
        if task_version is not None:
            hashed["task_version"] = task_version
        payload = json.dumps({"format": FORMAT_VERSION, **hashed}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def learning_rate(self, step: int) -> float:
        """The learning rate of optimiser step `step` (0-based): the warm-up, then the cosine."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        span = max(1, self.steps - self.warmup)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.warmup) / span)))
        return self.lr * (self.lr_final + (1 - self.lr_final) * cosine)

    def replace(self, **changes) -> ToyConfig:
        return ToyConfig(**{**asdict(self), **changes})

    @classmethod
    def from_record(cls, stored: dict) -> ToyConfig:
        """A config as a cache record stores it. A record written by newer code may hold fields this code
        lacks: they are dropped, since its folder's key says they were at their defaults (a field added
        later counts in the key only where it differs from its default, see `key`)."""
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in stored.items() if name in known})

    @property
    def task_params(self) -> tasks.TaskParams:
        """What the task reads of this config (lib/tasks)."""
        return tasks.TaskParams(n_content=self.n_content, seq_len=self.seq_len)

    @property
    def n_ctx(self) -> int:
        return tasks.TASKS[self.task].n_ctx(self.task_params)


LATER_FIELDS = {
    "warmup": 0,
    "lr_final": 1.0,
    "positions": "rotary",
    "tied": False,
}  # field -> default: hashed only where set (ToyConfig.key)


def toy_folder(config: ToyConfig, root: Path | None = None, device: str = "cpu") -> Path:
    trained_on = torch.device(device).type
    suffix = "" if trained_on == "cpu" else f"-{trained_on}"
    return (root or cache_root()) / "toy" / f"{config.task}-{config.key()}{suffix}"


def train_toy(config: ToyConfig, root: Path | None = None, device: str = "cpu"):
    """The model for `config`, trained on `device` once and then cached, as a `TransformerBridge`
    in eval mode on `device`."""
    folder = ensure_trained(config, root, device)
    return load_toy(folder, device=device)


def ensure_trained(config: ToyConfig, root: Path | None = None, device: str = "cpu") -> Path:
    """Train `config` on `device` unless a verified checkpoint is cached; return its folder."""
    device = check_device(device)
    return store(config, lambda: _train(config, device), root, device)


def store(config: ToyConfig, train, root: Path | None = None, device: str = "cpu") -> Path:
    """The cached folder of `config`, built from `train()` -> (model, history) unless it is cached."""

    def build(staging: Path) -> dict:
        model, history = train()
        _save(config, model.cpu(), history, staging)
        return {"toy_config": asdict(config), "format": FORMAT_VERSION, "trained_on": device}

    return verified_folder(toy_folder(config, root, device), build, what=f"toy checkpoint {config.task}")


def ensure_all_trained(configs, root: Path | None = None, workers: int | None = None) -> list[Path]:
    """Every config trained on the CPU unless cached, several at once (one process per core, each
    on one thread as always: the weights are those of training them one by one); their folders.

    `workers` defaults to the cores this process may use. Progress is one line per model done.
    """
    configs = list(configs)
    missing = list(dict.fromkeys(c for c in configs if not verify_folder(toy_folder(c, root))))
    in_processes(ensure_trained, [(c, root) for c in missing], f"training {len(missing)} toys", workers)
    return [toy_folder(c, root) for c in configs]  # each verified above, or built and verified since


def in_processes(function, jobs: list[tuple], desc: str, workers: int | None = None) -> list:
    """[function(*job) for job in jobs], run in up to `workers` fresh processes (default: the cores
    this process may use) when there is more than one job and worker, else here, one by one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(workers or cores, len(jobs))
    if workers <= 1:
        return [function(*job) for job in jobs]
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch threads
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        futures = {pool.submit(function, *job): i for i, job in enumerate(jobs)}
        results = [None] * len(jobs)
        for future in progress(as_completed(futures), f"{desc} on {workers} processes", len(jobs)):
            results[futures[future]] = future.result()  # a worker's error is raised here
    return results


def training_history(config: ToyConfig, root: Path | None = None, device: str = "cpu") -> pd.DataFrame:
    """Metrics logged while training `config`, one row per logged step (trains if not cached).

    Columns: step, train_loss (the next step's batch), and the task's metrics on a fixed held-out
    batch; for `repeat`: loss_first_half, loss_repeated_half, induction_L{l}H{h} and
    offset_induction_L{l}H{h} (best offset 0..7, attnclaims.scores) per head.
    """
    folder = ensure_trained(config, root, device)
    return pd.DataFrame(json.loads((folder / "history.json").read_text()))


def load_toy(folder: Path, device: str = "cpu"):
    from safetensors.torch import load_model
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    device = check_device(device)
    hf_config = AutoConfig.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager")
    load_model(model, str(folder / "model.safetensors"))
    model.eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    # The architecture name only selects TransformerLens's adapter; nothing is downloaded.
    adapter = {"gpt2": "gpt2"}.get(hf_config.model_type, "EleutherAI/pythia-14m")
    bridge = TransformerBridge.boot_transformers(adapter, hf_model=model, tokenizer=tokenizer, device=device)
    bridge.cfg.default_prepend_bos = True  # toy tasks always start with BOS
    bridge.eval()
    bridge.requires_grad_(False)  # analysis only: no autograd (attribution patching builds its own)
    cluster.remember(bridge, "attnclaims.toy:load_toy", (Path(folder), device), f"the toy in {folder.name}")
    return refuse_truncation(bridge, f"the toy in {folder.name}")


# ---------------------------------------------------------------------------------------------
# Training


def vocabulary(config: ToyConfig) -> list[str]:
    return tasks.TASKS[config.task].vocab(config.task_params)


@contextmanager
def one_thread():
    """Train on one CPU thread: float sums then run in one fixed order, so the same config gives the
    same weights on any machine (2 threads differ from 1 by ~5e-7 after 30 steps, enough to change
    which circuit a seed forms). The toys are small enough that one thread costs little."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train(config: ToyConfig, device: str = "cpu", stop: tuple[str, float] | None = None):
    """(model, history) after `config.steps` steps; with `stop` = (metric, target), after the
    first logged step whose `metric` is <= `target` if that comes earlier."""
    with one_thread():
        return _train_steps(config, device, stop)


def _train_steps(config: ToyConfig, device: str, stop: tuple[str, float] | None):
    if stop is not None and config.lr_final != 1.0:
        raise ValueError(
            f"toy {config.key()}: a decaying learning rate ties every step to steps={config.steps}, so "
            "it cannot be stopped at a target; train it to its steps, or keep lr_final=1.0"
        )
    task, params = tasks.TASKS[config.task], config.task_params
    model = build_hf_model(config).to(device)
    # Batches are drawn on the CPU, so they are the same on every device.
    data = torch.Generator().manual_seed(config.seed)
    eval_tokens = task.eval_batch(params, torch.Generator().manual_seed(10_000 + config.seed), 128).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduled = config.warmup > 0 or config.lr_final != 1.0  # else the constant lr, exactly as before
    history = []
    bar = progress(range(config.steps + 1), f"training toy {config.task} {config.key()}")
    for step in bar:
        if step % config.log_every == 0 or step == config.steps:
            # Nothing so far depended on config.steps: stopping here leaves the weights of steps = step.
            history.append({"step": step, **_evaluate(task, model, params, eval_tokens)})
            if stop is not None and _reached(history[-1], *stop, config.task):
                break
            model.train()
        if step == config.steps:
            continue  # the last step only evaluates; the loop ends here (progress reads "done")
        tokens, labels = (t.to(device) for t in task.train_batch(params, data, config.batch))
        loss = model(tokens, labels=labels).loss
        if scheduled:
            for group in optimiser.param_groups:
                group["lr"] = config.learning_rate(step)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        history[-1].setdefault("train_loss", loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model, history


def _reached(row: dict, metric: str, target: float, task: str) -> bool:
    if metric not in row:
        logged = sorted(k for k in row if k != "step")
        raise ValueError(f"task {task!r} logs no metric {metric!r}; it logs {logged}")
    return row[metric] <= target


@torch.no_grad()
def _evaluate(task, model, params: tasks.TaskParams, tokens: torch.Tensor) -> dict:
    model.eval()
    out = model(tokens, output_attentions=True)
    return task.evaluate(params, tokens, out.logits, out.attentions)


def _save(config: ToyConfig, model, history: list[dict], folder: Path) -> None:
    from safetensors.torch import save_model

    model.config.save_pretrained(folder)
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**meta, "toy_config": asdict(config)}, indent=1))
    save_model(model, str(folder / "model.safetensors"))
    save_tokenizer(vocabulary(config), folder)
    (folder / "history.json").write_text(json.dumps(history))


def save_tokenizer(words: list[str], folder: Path) -> None:
    """A whitespace word-level tokenizer over `words` (id = index), saved into `folder`: TransformerLens
    boots a bridge only with a tokenizer loaded back from disk."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=tasks.PAD))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=tasks.BOS,
        eos_token=tasks.BOS,
        pad_token=tasks.PAD,
        unk_token=tasks.PAD,
    )
    tokenizer.save_pretrained(folder)
