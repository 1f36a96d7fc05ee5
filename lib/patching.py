"""Sweeps: one intervention per head, every head of the model, batched.

A sweep stacks the per-head runs along the batch dimension (`chunk` heads per forward), so a
270-head model needs ~270/chunk forwards instead of 270. Each head's slice of the batch is scored
by the metric on its own, exactly as a separate run would be.

- `head_out_patch_sweep`: patch each head's output (hook_z, all positions) from the clean run into
  the corrupted run; equals `transformer_lens.patching.get_act_patch_attn_head_out_all_pos`.
- `attention_row_sweep`: each head alone has its attention row at `query_pos` edited (one-hot at
  a position: `attention_redirect_sweep`; weight moved between positions: lib.hooks.move_row). For
  the final query position the prompt's prefix is run once and its KV cache reused (a redirect at the
  last row cannot change earlier positions, so this is exact); the metric still sees the full
  [batch, pos, d_vocab] logits (the prefix's clean logits plus the new final row).
- `attribution_patch_sweep`: the gradient approximation of the head-out sweep (Nanda 2023;
  Syed et al. 2023): (z_clean - z_corrupted) . d metric / d z at the corrupted run.
- `path_patch_sweep`: a sender head's clean output into each later head's query/key/value input
  alone (TransformerLens's direct-path patching).
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from tqdm.auto import tqdm

from lib.hooks import Hook, RowEdit, check_heads, edit_attention_rows, one_hot_row, patch_heads, stack_variants
from lib.metrics import Metric, check_scalar


def all_heads(model) -> list[tuple[int, int]]:
    return [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]


def _as_batch(tokens: torch.Tensor) -> torch.Tensor:
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
    return tokens


def _chunked_heads(heads, chunk):
    for start in range(0, len(heads), chunk):
        yield heads[start : start + chunk]


def metric_per_copy(logits: torch.Tensor, n: int, batch: int, metric: Metric) -> list[float]:
    """The metric on each of the n stacked copies (each `batch` rows) of a stacked forward."""
    return [float(check_scalar(metric, logits[i * batch : (i + 1) * batch])) for i in range(n)]


@torch.no_grad()
def head_out_patch_sweep(model, clean_tokens, corrupted_tokens, metric: Metric, chunk: int = 16, progress: bool = True) -> torch.Tensor:
    """[n_layers, n_heads]: metric on the corrupted run with one head's output patched from clean."""
    clean_tokens, corrupted_tokens = _as_batch(clean_tokens), _as_batch(corrupted_tokens)
    if clean_tokens.shape != corrupted_tokens.shape:
        raise ValueError(
            f"clean {tuple(clean_tokens.shape)} and corrupted {tuple(corrupted_tokens.shape)} tokens differ in "
            "shape; patching needs prompts of equal length (pad or choose same-length prompt pairs)"
        )
    check_scalar(metric, model(corrupted_tokens))
    names = {f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)}
    _, clean_cache = model.run_with_cache(clean_tokens, names_filter=lambda name: name in names)
    batch = corrupted_tokens.shape[0]
    heads = all_heads(model)
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for group in tqdm(list(_chunked_heads(heads, chunk)), desc="head-out patch sweep", disable=not progress, leave=False):
        hooks = stack_variants([patch_heads(model, [head], clean_cache) for head in group], batch)
        logits = model.run_with_hooks(corrupted_tokens.repeat(len(group), 1), fwd_hooks=hooks)
        for (layer, head), value in zip(group, metric_per_copy(logits, len(group), batch, metric)):
            out[layer, head] = value
    return out


@torch.no_grad()
def attention_row_sweep(
    model, tokens, edit: RowEdit, query_pos: int = -1, metric: Metric | None = None, chunk: int = 64,
    progress: bool = True, heads: list[tuple[int, int]] | None = None, kv_cache: bool = True,
) -> torch.Tensor:
    """[n_layers, n_heads]: metric with one head's attention row at `query_pos` replaced by `edit(row)`.

    `edit` maps a [batch, key] row to a new row (lib.hooks.one_hot_row, lib.hooks.move_row). Heads
    not in `heads` (default: all) are NaN. `kv_cache=False` runs full forwards even for the last row
    (for models without a KV cache, and as the baseline the cached path is checked against).
    """
    if metric is None:
        raise ValueError("an attention sweep needs a metric (logits -> scalar), e.g. lib.metrics.logit_diff")
    tokens = _as_batch(tokens)
    batch, length = tokens.shape
    heads = check_heads(model, heads) if heads is not None else all_heads(model)
    last = kv_cache and query_pos in (-1, length - 1)
    run = _last_row_runner(model, tokens) if last else None
    out = torch.full((model.cfg.n_layers, model.cfg.n_heads), float("nan"))
    for group in tqdm(list(_chunked_heads(heads, chunk)), desc="attention row sweep", disable=not progress, leave=False):
        hooks = _stacked_row_edits(model, group, batch, edit, query_pos)
        logits = run(len(group), hooks) if last else model.run_with_hooks(tokens.repeat(len(group), 1), fwd_hooks=hooks)
        for (layer, head), value in zip(group, metric_per_copy(logits, len(group), batch, metric)):
            out[layer, head] = value
    return out


def attention_redirect_sweep(model, tokens, to_pos, query_pos: int = -1, metric: Metric | None = None, **kwargs) -> torch.Tensor:
    """[n_layers, n_heads]: metric with one head's attention row at `query_pos` made one-hot at `to_pos`."""
    return attention_row_sweep(model, tokens, one_hot_row(to_pos), query_pos, metric, **kwargs)


def _stacked_row_edits(model, group, batch, edit, query_pos) -> list[Hook]:
    """Copy i of the stacked batch has head group[i]'s row edited, and nothing else."""
    return stack_variants([edit_attention_rows(model, [head], query_pos, edit) for head in group], batch)


def _last_row_runner(model, tokens: torch.Tensor) -> Callable[[int, list[Hook]], "_PrefixedLogits"]:
    """Run the prefix once; return run(copies, hooks), which recomputes only the last position
    (with hooks) from the prefix's KV cache for `copies` stacked copies of the batch."""
    prefix_logits, prefix_cache = model(tokens[:, :-1], return_type="logits_and_cache")
    if prefix_cache is None:
        raise RuntimeError("this model returned no KV cache; run the sweep with query_pos other than the last")

    def run(copies: int, hooks: list[Hook]) -> _PrefixedLogits:
        cache = copy.deepcopy(prefix_cache)
        for layer in cache.layers:
            layer.keys = layer.keys.repeat(copies, 1, 1, 1)
            layer.values = layer.values.repeat(copies, 1, 1, 1)
        last = model.run_with_hooks(tokens[:, -1:].repeat(copies, 1), fwd_hooks=hooks, past_key_values=cache)
        return _PrefixedLogits(prefix_logits, last)

    return run


class _PrefixedLogits:
    """Stacked copies of [prefix logits ; new last row], each copy built only when sliced."""

    def __init__(self, prefix: torch.Tensor, last: torch.Tensor):
        self.prefix, self.last = prefix, last  # [batch, pos-1, vocab], [copies*batch, 1, vocab]

    def __getitem__(self, rows: slice) -> torch.Tensor:
        return torch.cat([self.prefix, self.last[rows]], dim=1)


def attribution_patch_sweep(model, clean_tokens, corrupted_tokens, metric: Metric) -> torch.Tensor:
    """[n_layers, n_heads]: first-order estimate of head_out_patch_sweep(...) - metric(corrupted)."""
    clean_tokens, corrupted_tokens = _as_batch(clean_tokens), _as_batch(corrupted_tokens)
    if clean_tokens.shape != corrupted_tokens.shape:
        raise ValueError("clean and corrupted tokens must have the same shape")
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean_tokens, names_filter=lambda name: name in names)
    saved: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(z, hook):
            # Keep z in the graph (detaching would cut the paths from earlier heads through later
            # attention); only a z with no grad upstream (frozen weights) becomes a leaf.
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            saved[name] = z
            return z

        return hook

    with torch.enable_grad():
        logits = model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, keep(name)) for name in names])
        value = check_scalar(metric, logits)
        grads = torch.autograd.grad(value, [saved[name] for name in names])
    return torch.stack(
        [((clean_cache[name] - saved[name].detach()) * grad).sum(dim=(0, 1, 3)) for name, grad in zip(names, grads)]
    )


@torch.no_grad()
def path_patch_sweep(model, clean_tokens, corrupted_tokens, metric: Metric, sender: tuple[int, int], component: str = "q") -> torch.Tensor:
    """[n_layers, n_heads]: sender's clean output into each later head's `component` input alone.

    Rows at or before the sender's layer are NaN (no path). Wraps
    `transformer_lens.patching.get_act_patch_direct_path`; on grouped-query models only "q" is
    defined per query head, and "k"/"v" raise ValueError.
    """
    from transformer_lens.patching import get_act_patch_direct_path

    (layer, head), = check_heads(model, [sender])
    if component not in ("q", "k", "v"):
        raise ValueError(f"component must be 'q', 'k' or 'v', got {component!r}")
    if component != "q" and (model.cfg.n_key_value_heads or model.cfg.n_heads) != model.cfg.n_heads:
        raise ValueError(
            f"path patching into '{component}' of one query head is undefined on a grouped-query model "
            f"({model.cfg.n_heads} query heads share {model.cfg.n_key_value_heads} key/value heads); use 'q'"
        )
    name = f"blocks.{layer}.attn.hook_z"
    _, clean_cache = model.run_with_cache(_as_batch(clean_tokens), names_filter=lambda n: n == name)
    _, corrupted_cache = model.run_with_cache(_as_batch(corrupted_tokens), names_filter=lambda n: n == name)
    out = get_act_patch_direct_path(
        model, _as_batch(corrupted_tokens), clean_cache, corrupted_cache, metric, layer, head, component, verbose=False
    )
    out[: layer + 1] = float("nan")
    return out
