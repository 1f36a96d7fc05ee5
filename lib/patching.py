"""Sweeps: one intervention per cell (a head, a layer and position, ...), through the sweep engine
(attnclaims.sweep).

Each sweep builds one variant per cell and hands them to `attnclaims.sweep.run_variants`, which stacks
them along the batch, starts each chunk at its lowest patched layer and, for final-row edits,
reuses the prefix's KV cache. Each copy is scored by the metric on its own, exactly as a separate
run would be. Clean and corrupted tokens are keyword-only, as a silent swap would invert every result.
Every sweep shows its progress (attnclaims.progress) unless `show_progress=False`; `desc` names it.

- `activation_patch_sweep`: TransformerLens's activation-patching family (get_act_patch_*) in one
  function: a site (resid_pre, attn_out, z, pattern, ...) patched from the clean run, cell by cell
  of an index (("layer", "pos"), ("layer", "pos", "head"), ...).
- `head_out_patch_sweep`: its site z by layer and head (each head's output, all positions); equals
  `transformer_lens.patching.get_act_patch_attn_head_out_all_pos`.
- `attention_row_sweep`: each head alone has its attention row at `query_pos` edited (one-hot at
  a position: `attention_redirect_sweep`; weight moved between positions: attnclaims.hooks.move_row).
- `attribution_patch_sweep`: the gradient approximation of an activation patch sweep (Nanda 2023;
  Syed et al. 2023): (a_clean - a_corrupted) . d metric / d a at the corrupted run.
- `path_patch_sweep`: a sender head's clean-minus-corrupted output added to each later head's own
  query/key/value input alone (direct path patching, Wang et al. 2022: attnclaims.paths.PatchPath);
  equals `transformer_lens.patching.get_act_patch_direct_path`. `split_qkv_input` (attnclaims.paths)
  gives every head its own input.
"""

from __future__ import annotations

import itertools

import torch
from transformer_lens.utilities import get_act_name

from attnclaims import lengths
from attnclaims.heads import every_head
from attnclaims.hooks import RowEdit, check_heads, one_hot_row
from attnclaims.interventions import SITES, EditAttention, PatchActivation, source_cache
from attnclaims.metrics import Metric, check_scalar
from attnclaims.paths import PatchPath, split_qkv_input
from attnclaims.sweep import check_tokens, per_head, run_variants


def z_names(model) -> list[str]:
    """Every layer's head-output hook (hook_z [batch, pos, head, d_head])."""
    return [get_act_name("z", layer) for layer in range(model.cfg.n_layers)]


def _pair(model, clean_tokens, corrupted_tokens) -> tuple[torch.Tensor, torch.Tensor]:
    clean, corrupted = check_tokens(model, clean_tokens), check_tokens(model, corrupted_tokens)
    if clean.shape != corrupted.shape:
        raise ValueError(
            f"clean {tuple(clean.shape)} and corrupted {tuple(corrupted.shape)} tokens differ in shape; "
            "patching "
            "needs prompts of equal length (pad or choose same-length prompt pairs)"
        )
    return clean, corrupted


def _require_metric(metric, what: str) -> Metric:
    if metric is None:
        raise ValueError(
            f"{what} needs a metric (logits -> scalar), "
            "e.g. attnclaims.metrics.logit_diff(answer, alternative)"
        )
    return metric


INDEX_NAMES = {"head_index": "head"}  # TransformerLens's name for the head axis


def _checked_index(site: str, index) -> tuple[str, ...]:
    """`index` with TransformerLens's axis names mapped to ours; an unknown site or axis, or an index
    that does not start at "layer", is named."""
    index = tuple(INDEX_NAMES.get(axis, axis) for axis in index)
    if not index or index[0] != "layer" or len(set(index)) != len(index):
        raise ValueError(f"index names the axes swept, 'layer' first and each once, got {index!r}")
    PatchActivation(site, 0, tuple((axis, 0) for axis in index[1:]), None)  # names a bad site or axis
    return index


@torch.no_grad()
def activation_patch_sweep(
    model,
    *,
    clean_tokens,
    corrupted_tokens,
    metric: Metric,
    site: str,
    index: tuple[str, ...] = ("layer", "pos"),
    chunk: int | None = None,
    show_progress: bool = True,
    desc: str | None = None,
) -> torch.Tensor:
    """TransformerLens's activation-patching family in one call: the metric on the corrupted run with one
    slice of `site` patched from the clean run, for every cell of `index`, the axes swept, "layer"
    first. ("layer", "pos") is get_act_patch_resid_pre (site "resid_pre"; "resid_mid", "attn_out",
    "mlp_out" likewise), ("layer", "pos", "head") get_act_patch_attn_head_out_by_pos (site "z"; "q",
    "k", "v" likewise; for "k" and "v" the heads are the model's key/value heads), ("layer", "head")
    the *_all_pos versions, ("layer", "head", "dest_pos") get_act_patch_attn_head_pattern_by_pos (site
    "pattern"). The result has one axis per index name, shaped like TransformerLens's, and a last axis
    of prompts for a per-prompt metric. Every cell is a PatchActivation through run_variants (each
    chunk starts at its layer; cells are stacked along the batch). Prompts of several lengths: as
    head_out_patch_sweep (attnclaims.lengths)."""
    _require_metric(metric, "an activation patch sweep")
    index = _checked_index(site, index)
    groups = lengths.length_groups(clean_tokens)
    if groups is not None:
        others = [lengths.one_prompt(prompt) for prompt in corrupted_tokens]
    if groups is not None and len(groups) > 1:
        if len(others) != sum(len(rows) for rows, _ in groups):
            raise ValueError(
                f"{sum(len(r) for r, _ in groups)} clean prompts but {len(others)} corrupted ones"
            )
        if "pos" in index or "dest_pos" in index or "src_pos" in index:
            raise ValueError(
                "a sweep over positions has one axis of positions per prompt length: sweep each length on "
                "its own (attnclaims.lengths.length_groups)"
            )

        def one_length(rows, clean):
            corrupted = lengths.stack([others[i] for i in rows], clean.shape[1], rows, "corrupted")
            narrowed = lengths.narrowed(metric, rows)
            values = activation_patch_sweep(
                model,
                clean_tokens=clean,
                corrupted_tokens=corrupted,
                metric=narrowed,
                site=site,
                index=index,
                chunk=chunk,
                show_progress=show_progress,
                desc=desc,
            )
            return {"values": values}

        return lengths.run_by_length(groups, one_length, axis=len(index))["values"]
    if groups is not None:
        rows, clean_tokens = groups[0]
        corrupted_tokens = lengths.stack(others, clean_tokens.shape[1], rows, "corrupted")
    clean, corrupted = _pair(model, clean_tokens, corrupted_tokens)
    cache = source_cache(model, clean, site)
    sample = cache[get_act_name(site, 0)]
    axes = SITES[site]
    sizes = [model.cfg.n_layers, *(sample.shape[axes[axis]] for axis in index[1:])]
    cells = list(itertools.product(*(range(size) for size in sizes)))
    variants = {
        cell: PatchActivation(site, cell[0], tuple(zip(index[1:], cell[1:])), cache) for cell in cells
    }
    desc = (desc or f"{site} patch sweep over {' x '.join(index)}") if show_progress else None
    values = run_variants(model, corrupted, variants, metric, chunk=chunk, desc=desc)
    shapes = {tuple(value.shape) for value in values.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) > 1:
        raise ValueError(
            f"a patch sweep's metric returns one number per call (a 0-d tensor: one cell of the table) "
            f"or one per prompt ([batch]), got shapes {sorted(shapes)}"
        )
    out = torch.stack([values[cell] for cell in cells])
    return out.reshape(*sizes, *out.shape[1:])


def head_out_patch_sweep(
    model,
    *,
    clean_tokens,
    corrupted_tokens,
    metric: Metric,
    chunk: int | None = None,
    show_progress: bool = True,
) -> torch.Tensor:
    """[n_layers, n_heads]: metric on the corrupted run with one head's output patched from clean
    (get_act_patch_attn_head_out_all_pos): `activation_patch_sweep` at site "z", index ("layer",
    "head"). `metric` returns one number per call (logits -> 0-d tensor, e.g.
    attnclaims.metrics.logit_diff), or one per prompt (per_prompt=True: [n_layers, n_heads, batch]).
    Clean and corrupted tokens may be lists of 1-D prompts of several lengths (pair i of one length):
    each length is swept on its own, with its own clean cache, and the per-prompt values come back in
    the order given (attnclaims.lengths)."""
    _require_metric(metric, "a head-out patch sweep")
    return activation_patch_sweep(
        model,
        clean_tokens=clean_tokens,
        corrupted_tokens=corrupted_tokens,
        metric=metric,
        site="z",
        index=("layer", "head"),
        chunk=chunk,
        show_progress=show_progress,
        desc="head-out patch sweep",
    )


@torch.no_grad()
def attention_row_sweep(
    model,
    tokens,
    edit: RowEdit,
    query_pos: int = -1,
    *,
    metric: Metric,
    chunk: int | None = None,
    show_progress: bool = True,
    heads: list[tuple[int, int]] | None = None,
    kv_cache: bool = True,
) -> torch.Tensor:
    """[n_layers, n_heads] ([n_layers, n_heads, batch] for a per-prompt metric): metric with one head's
    attention row at `query_pos` replaced by `edit(row)`.

    `edit` maps a [batch, key] row to a new row (attnclaims.hooks.one_hot_row,
    attnclaims.hooks.move_row). Heads not in `heads` (default: all) are NaN. `kv_cache=False` runs full
    forwards even for the last row (the baseline the cached path is checked against). `tokens` may be a
    list of prompts of several lengths (attnclaims.lengths): the metric is then per prompt, and the
    edit one of attnclaims.hooks' (it narrows its per-prompt positions to each length's prompts).
    """
    heads = check_heads(model, heads) if heads is not None else every_head(model)
    variants = {head: EditAttention((head,), edit, query_pos) for head in heads}
    desc = "attention row sweep" if show_progress else None
    values = run_variants(
        model,
        tokens,
        variants,
        _require_metric(metric, "an attention sweep"),
        chunk=chunk,
        desc=desc,
        kv_cache=kv_cache,
    )
    return per_head(model, values)


def attention_redirect_sweep(
    model, tokens, dst, query_pos: int = -1, *, metric: Metric, **kwargs
) -> torch.Tensor:
    """[n_layers, n_heads]: metric with one head's attention row at `query_pos` made one-hot at `dst`
    (`attention_row_sweep` of `attnclaims.hooks.one_hot_row(dst)`)."""
    return attention_row_sweep(model, tokens, one_hot_row(dst), query_pos, metric=metric, **kwargs)


def attribution_patch_sweep(
    model, *, clean_tokens, corrupted_tokens, metric: Metric, site: str = "z", index=("layer", "head")
) -> torch.Tensor:
    """First-order estimate of activation_patch_sweep(..., site, index) - metric(corrupted), shaped
    like it (default: the head-out sweep, [n_layers, n_heads]): (a_clean - a_corrupted) . d metric /
    d a at the corrupted run, summed over the axes `index` does not sweep (Nanda 2023; Syed et al.
    2023). One forward and one backward pass, not a sweep of variants; the metric returns one number
    (the gradient is of it)."""
    clean, corrupted = _pair(model, clean_tokens, corrupted_tokens)
    _require_metric(metric, "attribution patching")
    index = _checked_index(site, index)
    names = [get_act_name(site, layer) for layer in range(model.cfg.n_layers)]
    clean_cache = source_cache(model, clean, site)
    saved: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(act, hook):
            # Keep the activation in the graph (detaching would cut the paths from earlier layers); the
            # embeddings' leaf puts every one there, so this branch is for a model without hook_embed.
            if not act.requires_grad:
                act = act.detach().requires_grad_(True)
            saved[name] = act
            return act

        return hook

    def start_graph(act, hook):  # the embeddings as a leaf: every later activation is then in the graph,
        return act.detach().requires_grad_(True)  # so a hook returns its own tensor, which every reader sees

    with torch.enable_grad():
        hooks = [("hook_embed", start_graph), *((name, keep(name)) for name in names)]
        logits = model.run_with_hooks(corrupted, fwd_hooks=hooks)
        value = check_scalar(metric, logits)
        grads = torch.autograd.grad(value, [saved[name] for name in names])
    axes = SITES[site]
    kept = [axes[axis] for axis in index[1:]]  # the swept axes, in the order index names them
    out = []
    for name, grad in zip(names, grads):
        product = (clean_cache[name] - saved[name].detach()) * grad
        summed = product.sum(dim=[d for d in range(product.ndim) if d not in kept])
        order = sorted(kept)  # sum() keeps the kept axes in ascending order
        out.append(summed.permute(*[order.index(axis) for axis in kept]) if len(kept) > 1 else summed)
    return torch.stack(out).cpu()


@torch.no_grad()
def path_patch_sweep(
    model,
    *,
    clean_tokens,
    corrupted_tokens,
    metric: Metric,
    sender: tuple[int, int],
    component: str = "q",
    chunk: int | None = None,
) -> torch.Tensor:
    """[n_layers, n_heads]: the sender's clean-minus-corrupted output, (z_clean - z_corrupted) @ W_O,
    added at every position to one later head's own `component` input alone; every other reader
    sees the corrupted run: one attnclaims.paths.PatchPath per receiver, its source the clean run.
    Rows at or before the sender's layer are NaN (no path). On grouped-query models only "q" is
    defined per query head, and "k"/"v" raise ValueError.
    """
    clean, corrupted = _pair(model, clean_tokens, corrupted_tokens)
    ((layer, head),) = check_heads(model, [sender])
    source = source_cache(model, clean, "z", [layer])
    receivers = [(dl, dh) for dl in range(layer + 1, model.cfg.n_layers) for dh in range(model.cfg.n_heads)]
    variants = {receiver: PatchPath([(layer, head)], [receiver], source, component) for receiver in receivers}
    for spec in variants.values():  # named before any forward
        spec.check(model)
    with split_qkv_input(model):
        return per_head(model, run_variants(model, corrupted, variants, metric, chunk=chunk))
