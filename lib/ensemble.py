"""Train many toys of one architecture at once, each to a matched loss, into the toy cache.

    grid = [BASE.replace(seed=s, attn_dropout=p) for s in range(8) for p in (0.0, 0.1)]
    members = train_to_loss(grid, target=0.5)
    model = train_toy(members[0].config)  # loads from the cache: members[0].config.steps is where it stopped

The members' parameters are stacked along a leading ensemble dimension E and one forward pass runs
every member on its own batch ([E, batch, pos]): the GPT-NeoX forward of attnclaims.toy (pre-LayerNorm,
rotary, eager attention, attention-probability dropout, residual dropout after the embedding and
after each attention and MLP output) written once with that extra dimension (`forward`). One AdamW
steps all members; AdamW is elementwise, so a stacked step is each member's own step.

Each member is what its own `ToyConfig` describes: it starts from `attnclaims.toy.build_hf_model(config)`
(its seed), draws its batches from its own generator (`torch.Generator().manual_seed(seed)`, as
attnclaims.toy does) and its dropout masks at its own rates, so members may differ in `seed`,
`attn_dropout` and `resid_dropout`; every other field must be equal. Dropout masks come from a
generator seeded by the members' config hashes; like weights trained on another device, a dropout
model trained here is not bitwise the one `attnclaims.toy` would train (its masks differ), while a p=0
member equals it up to float rounding (tests/test_ensemble.py).

Matched loss: every `log_every` steps each member is evaluated on its task's evaluation batch (the
one attnclaims.toy logs); the first time its `metric` is <= `target` it is snapshotted and stops there.
A member that never reaches the target stops at `config.steps` (the cap). A member that stopped at
step k is saved in attnclaims.toy's verified cache as `config.replace(steps=k)`, with its history (the
same rows attnclaims.toy logs up to step k), so `train_toy(member.config)` loads it; a small record per
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
import torch.nn.functional as F

from attnclaims import tasks, toy
from attnclaims.cache import cache_root, verified_folder, verify_folder
from attnclaims.models import check_device
from attnclaims.progress import progress as report
from attnclaims.toy import ToyConfig

VARIES = ("seed", "attn_dropout", "resid_dropout")  # the fields members may differ in
RECORD = "record.json"


@dataclass(frozen=True)
class Member:
    """One trained member: `config` as saved (steps = the step it stopped at)."""

    config: ToyConfig
    reached: bool  # its metric reached the target before the cap
    steps: int  # the step it stopped at (= config.steps)
    loss: float  # its metric at that step


def train_to_loss(
    configs: Sequence[ToyConfig],
    target: float,
    metric: str = "loss_repeated_half",
    root: Path | None = None,
    device: str = "cpu",
    progress: str | None = None,
) -> list[Member]:
    """Each config trained until its eval `metric` first reaches `target` (checked every
    `log_every` steps) or `config.steps` steps (the cap), in one ensemble; members already cached
    are loaded, not trained. Returns the members in the order of `configs`."""
    configs = _check_members(configs)
    if not math.isfinite(target):
        raise ValueError(f"target={target!r} must be a finite value of {metric!r}")
    device = check_device(device)
    records = [_record_folder(config, target, metric, root, device) for config in configs]
    todo = [i for i, folder in enumerate(records) if not _cached(folder, root, device)]
    if todo:
        with toy.one_thread():  # as lib/toy.py: the same weights on any machine, whatever its cores
            trained = _train([configs[i] for i in todo], target, metric, device, progress)
        for i, (member, params, history) in zip(todo, trained):
            _save_member(member, params, history, root, device, n_members=len(todo))
            verified_folder(
                records[i], lambda staging, m=member: _write_record(staging, m), what="matched-loss record"
            )
    return [_read_record(folder) for folder in records]


# ---------------------------------------------------------------------------------------------
# The batched GPT-NeoX forward


def stack_members(configs: Sequence[ToyConfig]) -> tuple[dict[str, torch.Tensor], set[str], dict]:
    """({name: [E, ...] parameter}, names of the trainable ones, the HF config as a dict) for the
    members' freshly initialised models (attnclaims.toy.build_hf_model)."""
    models = [toy.build_hf_model(config) for config in configs]
    names = [name for name, _ in models[0].named_parameters()]
    params = {
        name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]) for name in names
    }
    trainable = {name for name, p in models[0].named_parameters() if p.requires_grad}
    return params, trainable, models[0].config.to_dict()


def _dropout(x: torch.Tensor, p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout at each member's own rate p [E] (x: [E, ...]); the identity when generator is None."""
    if generator is None or not bool((p > 0).any()):
        return x
    keep = (1 - p).reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    mask = torch.rand(x.shape, generator=generator, device=x.device) < keep
    return x * mask / keep


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    x = F.layer_norm(x, x.shape[-1:], eps=eps)  # [E, B, T, d]
    return x * weight[:, None, None] + bias[:, None, None]


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = torch.einsum("ebti,eoi->ebto", x, weight)  # weight [E, out, in], as nn.Linear stores it
    return out if bias is None else out + bias[:, None, None]


def forward(
    params: dict[str, torch.Tensor],
    hf_config: dict,
    tokens: torch.Tensor,
    attn_p: torch.Tensor | None = None,
    resid_p: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    attentions: bool = False,
):
    """logits [E, B, T, vocab] of every member on its own tokens [E, B, T] (and, with
    `attentions`, the patterns [E, B, head, T, T] per layer). Dropout at rates attn_p, resid_p [E]
    acts only when a `generator` is given (training); without one this is the eval forward."""
    E, B, T = tokens.shape
    d, n_heads = hf_config["hidden_size"], hf_config["num_attention_heads"]
    d_head, eps = d // n_heads, hf_config["layer_norm_eps"]
    zeros = torch.zeros(E, device=tokens.device)
    attn_p = zeros if attn_p is None else attn_p
    resid_p = zeros if resid_p is None else resid_p
    members = torch.arange(E, device=tokens.device)[:, None, None]
    x = params["gpt_neox.embed_in.weight"][members, tokens]  # [E, B, T, d]
    x = _dropout(x, resid_p, generator)
    theta = hf_config.get("rope_parameters", {}).get("rope_theta", hf_config.get("rotary_emb_base", 10000))
    inv_freq = 1.0 / (theta ** (torch.arange(0, d_head, 2, dtype=torch.float, device=tokens.device) / d_head))
    freqs = torch.arange(T, device=tokens.device, dtype=torch.float)[:, None] * inv_freq
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()  # [T, d_head]
    causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
    patterns = []
    for layer in range(hf_config["num_hidden_layers"]):
        pre = f"gpt_neox.layers.{layer}."
        h = _layer_norm(x, params[pre + "input_layernorm.weight"], params[pre + "input_layernorm.bias"], eps)
        qkv = _linear(
            h,
            params[pre + "attention.query_key_value.weight"],
            params.get(pre + "attention.query_key_value.bias"),
        )
        qkv = qkv.view(E, B, T, n_heads, 3 * d_head).transpose(2, 3)  # [E, B, head, T, 3*d_head]
        q, k, v = qkv.chunk(3, dim=-1)
        q, k = (t * cos + _rotate_half(t) * sin for t in (q, k))
        scores = q @ k.transpose(-1, -2) * d_head**-0.5  # [E, B, head, T, T]
        pattern = scores.masked_fill(~causal, torch.finfo(scores.dtype).min).softmax(-1)
        patterns.append(pattern)
        z = _dropout(pattern, attn_p, generator) @ v  # [E, B, head, T, d_head]
        out = _linear(
            z.transpose(2, 3).reshape(E, B, T, d),
            params[pre + "attention.dense.weight"],
            params.get(pre + "attention.dense.bias"),
        )
        x = x + _dropout(out, resid_p, generator)
        h = _layer_norm(
            x,
            params[pre + "post_attention_layernorm.weight"],
            params[pre + "post_attention_layernorm.bias"],
            eps,
        )
        h = F.gelu(
            _linear(h, params[pre + "mlp.dense_h_to_4h.weight"], params[pre + "mlp.dense_h_to_4h.bias"])
        )
        h = _linear(h, params[pre + "mlp.dense_4h_to_h.weight"], params[pre + "mlp.dense_4h_to_h.bias"])
        x = x + _dropout(h, resid_p, generator)
    x = _layer_norm(
        x, params["gpt_neox.final_layer_norm.weight"], params["gpt_neox.final_layer_norm.bias"], eps
    )
    logits = _linear(x, params["lm_head.weight"], None)
    return (logits, patterns) if attentions else logits


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def member_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[E]: each member's mean next-token loss over its labels != -100 (HF's causal-LM loss)."""
    E, B, T, V = logits.shape
    per_token = F.cross_entropy(
        logits[:, :, :-1].reshape(-1, V).float(),
        labels[:, :, 1:].reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view(E, -1)
    counted = (labels[:, :, 1:] != -100).reshape(E, -1).sum(-1)
    return per_token.sum(-1) / counted


# ---------------------------------------------------------------------------------------------
# Training


def _check_members(configs: Sequence[ToyConfig]) -> list[ToyConfig]:
    configs = list(configs)
    if not configs:
        raise ValueError("train_to_loss needs at least one ToyConfig")
    if not all(isinstance(c, ToyConfig) for c in configs):
        raise ValueError(
            "train_to_loss takes ToyConfig objects; build them with attnclaims.toy.ToyConfig(...)"
        )
    shared = {name: value for name, value in asdict(configs[0]).items() if name not in VARIES}
    for config in configs[1:]:
        for name, value in shared.items():
            if getattr(config, name) != value:
                raise ValueError(
                    f"ensemble members may differ only in {VARIES}; {name} is {value!r} and "
                    f"{getattr(config, name)!r}. Train each architecture as its own ensemble."
                )
    if len({c.key() for c in configs}) != len(configs):
        raise ValueError("two ensemble members have the same config; give each its own seed")
    return configs


def _train(configs: list[ToyConfig], target: float, metric: str, device: str, progress: str | None):
    """[(Member, {name: parameter} at its stop, history up to its stop)] in the order of configs."""
    first, E = configs[0], len(configs)
    task = tasks.TASKS[first.task]
    params, trainable, hf_config = stack_members(configs)
    params = {name: p.to(device).requires_grad_(name in trainable) for name, p in params.items()}
    optimiser = torch.optim.AdamW(
        [params[n] for n in trainable], lr=first.lr, weight_decay=first.weight_decay
    )
    attn_p = torch.tensor([c.attn_dropout for c in configs], device=device)
    resid_p = torch.tensor([c.resid_dropout for c in configs], device=device)
    seed = int(hashlib.sha256("".join(c.key() for c in configs).encode()).hexdigest()[:15], 16)
    masks = torch.Generator(device=device).manual_seed(seed)
    data = [torch.Generator().manual_seed(c.seed) for c in configs]
    eval_tokens = torch.stack(
        [task.eval_batch(c, torch.Generator().manual_seed(10_000 + c.seed), 128) for c in configs]
    ).to(device)
    histories: list[list[dict]] = [[] for _ in configs]
    done: list[tuple[Member, dict, list] | None] = [None] * E
    bar = report(range(first.steps + 1), progress or f"ensemble of {E} toys")  # lines under pytest too
    live = list(range(E))  # members still training; a stopped member leaves the forward (and costs nothing)
    for step in bar:
        if step % first.log_every == 0 or step == first.steps:
            index = torch.tensor(live, device=device)
            with torch.no_grad():
                rows = _evaluate(
                    task, [configs[i] for i in live], _take(params, index), hf_config, eval_tokens[index]
                )
            for i, row in zip(live, rows):
                histories[i].append({"step": step, **row})
                if row[metric] <= target or step == first.steps:
                    member = Member(configs[i].replace(steps=step), row[metric] <= target, step, row[metric])
                    snapshot = {name: p[i].detach().cpu().clone() for name, p in params.items()}
                    done[i] = (member, snapshot, histories[i])
            live = [i for i in live if done[i] is None]
            bar.set_postfix(stopped=f"{E - len(live)}/{E}")
        if not live:
            break
        index = torch.tensor(live, device=device)
        batches = [task.train_batch(configs[i], data[i]) for i in live]
        tokens = torch.stack([t for t, _ in batches]).to(device)
        labels = torch.stack([lab for _, lab in batches]).to(device)
        logits = forward(_take(params, index), hf_config, tokens, attn_p[index], resid_p[index], masks)
        losses = member_losses(logits, labels)
        optimiser.zero_grad(set_to_none=False)
        losses.sum().backward()  # members share no parameter: each gets its own loss's gradient
        optimiser.step()  # stopped members get zero gradients: their snapshots are already taken
        for i, loss in zip(live, losses.tolist()):
            histories[i][-1].setdefault("train_loss", loss)
    return done


def _take(params: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    """The members `index` of every stacked parameter (differentiable: gradients flow back)."""
    return {name: p[index] for name, p in params.items()}


@torch.no_grad()
def _evaluate(task, configs, params, hf_config, tokens) -> list[dict]:
    logits, patterns = forward(params, hf_config, tokens, attentions=True)
    return [
        task.evaluate(config, tokens[i], logits[i], [p[i] for p in patterns])
        for i, config in enumerate(configs)
    ]


# ---------------------------------------------------------------------------------------------
# The cache


def _record_folder(config: ToyConfig, target: float, metric: str, root: Path | None, device: str) -> Path:
    payload = json.dumps({"config": config.key(), "target": float(target), "metric": metric}, sort_keys=True)
    key = hashlib.sha256(payload.encode()).hexdigest()[:16]
    trained_on = torch.device(device).type
    suffix = "" if trained_on == "cpu" else f"-{trained_on}"
    return (root or cache_root()) / "toy" / "matched" / f"{config.task}-{key}{suffix}"


def _write_record(staging: Path, member: Member) -> dict:
    record = {
        "config": asdict(member.config),
        "reached": member.reached,
        "steps": member.steps,
        "loss": member.loss,
    }
    (staging / RECORD).write_text(json.dumps(record, indent=1))
    return {}


def _read_record(folder: Path) -> Member:
    record = json.loads((folder / RECORD).read_text())
    return Member(
        ToyConfig(**record["config"]), bool(record["reached"]), int(record["steps"]), float(record["loss"])
    )


def _cached(record: Path, root: Path | None, device: str) -> bool:
    return verify_folder(record) and verify_folder(toy.toy_folder(_read_record(record).config, root, device))


def _save_member(
    member: Member, params: dict, history: list[dict], root, device: str, n_members: int
) -> None:
    """Save a member's snapshot as attnclaims.toy saves a trained toy, in the folder of its config."""

    def build(staging: Path) -> dict:
        model = toy.build_hf_model(member.config)
        model.load_state_dict(params, strict=False)  # every parameter; rotary buffers are rebuilt
        model.eval()
        toy._save(member.config, model, history, staging)
        return {
            "toy_config": asdict(member.config),
            "format": toy.FORMAT_VERSION,
            "trained_on": device,
            "trained_by": f"attnclaims.ensemble, {n_members} members",
        }

    verified_folder(
        toy.toy_folder(member.config, root, device), build, what=f"toy checkpoint {member.config.task}"
    )
