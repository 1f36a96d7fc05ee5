"""The TransformerLens forward hooks behind the intervention specs (attnclaims.interventions): lists of
(hook_name, fn), composable by `+`. Studies and tests use the specs, which build these:

    hooks = RedirectAttention([(3, 4)], dst=12).hooks(model) + AblateHeads([(5, 0)]).hooks(model)
    logits = model.run_with_hooks(tokens, fwd_hooks=hooks)

The row edits (`one_hot_row`, `move_row`, `move_fraction`, `shift_mass`, `partner_row`) are the
`edit` of `EditAttention`; `swap_head_values` and `patch_kv_heads` have no spec of their own.

Heads are (layer, head) pairs of *query* heads. On a grouped-query model (smollm2-135m: 9 query
heads share 3 key/value heads, query head h reads key/value head h // 3), the head-level
interventions here act on one query head alone:
- pattern edits and `hook_z` patches/ablations touch only that query head;
- `edit_head_values` recomputes that query head's output z_h = pattern_h @ f(v_kv(h)) from its own
  pattern and the edited values, leaving the siblings that share v_kv(h) untouched;
- `patch_kv_heads` patches a key/value head itself, which by construction changes every query head
  in its group; it takes key/value head indices, never query heads, so the blast radius is explicit.

Positions: `query_pos` (the attention row edited), `src` and `dst` (the key positions weight moves
from and to) are ints (negative counts from the end) or [batch] long tensors (one position per prompt).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from transformer_lens.utilities import get_act_name

from attnclaims.heads import Head

Hook = tuple[str, Callable]
Heads = Sequence[tuple[int, int]]  # Head objects, or (layer, head) pairs
RowEdit = Callable[[torch.Tensor], torch.Tensor]  # attention rows [batch, key] -> new rows


# ---------------------------------------------------------------------------------------------
# Validation


def check_heads(model, heads: Heads, n_heads: int | None = None) -> list[Head]:
    n_layers, n_heads = model.cfg.n_layers, n_heads or model.cfg.n_heads
    heads = [Head(int(layer), int(head)) for layer, head in heads]
    for layer, head in heads:
        if not 0 <= layer < n_layers:
            raise ValueError(f"layer {layer} is out of range: the model has layers 0..{n_layers - 1}")
        if not 0 <= head < n_heads:
            raise ValueError(
                f"head {head} (layer {layer}) is out of range: the model has heads 0..{n_heads - 1}"
            )
    return heads


def kv_group_size(model) -> int:
    n_kv = model.cfg.n_key_value_heads or model.cfg.n_heads
    return model.cfg.n_heads // n_kv


def kv_head_of(model, head: int) -> int:
    """The key/value head that query head `head` reads (HF `repeat_kv` order)."""
    return head // kv_group_size(model)


def _positions(pos, batch: int, length: int, name: str) -> torch.Tensor:
    """[batch] non-negative positions from an int or a [batch] tensor, checked against `length`."""
    pos = torch.as_tensor(pos, dtype=torch.long).reshape(-1)
    if pos.numel() == 1:
        pos = pos.expand(batch)
    if pos.numel() != batch:
        raise ValueError(f"{name} has {pos.numel()} positions for a batch of {batch} prompts")
    if bool(((pos < -length) | (pos >= length)).any()):
        raise ValueError(f"{name}={pos.tolist()} is outside the sequence of length {length}")
    return pos % length


def rows_of(values, rows: list[int]):
    """Per-prompt `values` (positions, masses, ids: a [batch] tensor or list) narrowed to prompts `rows`;
    one value for every prompt stays as it is."""
    tensor = torch.as_tensor(values)
    if tensor.ndim == 0 or tensor.numel() == 1:
        return values
    return tensor.reshape(-1)[torch.as_tensor(rows, dtype=torch.long, device=tensor.device)]


def _narrows(edit: RowEdit, select) -> RowEdit:
    """Say how a row edit built for a batch is narrowed to some of its prompts (`edit.select(rows)`): a
    sweep over prompts of several lengths runs each length on its own (attnclaims.lengths)."""
    edit.select = select
    return edit


def _by_layer(heads: list[tuple[int, int]]) -> dict[int, list[int]]:
    layers: dict[int, list[int]] = {}
    for layer, head in heads:
        layers.setdefault(layer, []).append(head)
    return layers


def require(cache, name: str, what: str):
    """cache[name], or a ValueError naming the missing activation (raised when the hook is built,
    not as a bare KeyError from inside a forward pass)."""
    if name not in cache:
        raise ValueError(
            f"{what} has no {name!r}; cache it, e.g. model.run_with_cache(tokens, names_filter=lambda n: "
            f"n.endswith('hook_{name.rsplit('hook_', 1)[-1]}'))"
        )
    return cache[name]


def stack_variants(variants: Sequence[list[Hook]], batch: int) -> list[Hook]:
    """Run several interventions in one forward: variant i acts on copy i of a batch stacked
    `len(variants)` times (`tokens.repeat(len(variants), 1)`), rows i*batch .. (i+1)*batch."""
    hooks: list[Hook] = []
    for slot, variant in enumerate(variants):
        rows = slice(slot * batch, (slot + 1) * batch)
        for name, fn in variant:

            def on_slice(act: torch.Tensor, hook, fn=fn, rows=rows) -> torch.Tensor:
                out = fn(act[rows], hook)
                if out is None:
                    return act
                act = act.clone()
                act[rows] = out
                return act

            hooks.append((name, on_slice))
    return hooks


# ---------------------------------------------------------------------------------------------
# Attention pattern edits


def edit_attention_rows(model, heads: Heads, query_pos, edit: RowEdit) -> list[Hook]:
    """Replace each chosen head's attention row at `query_pos` by `edit(row)`; row is [batch, key].

    With a KV cache (a forward over the last token only) the pattern has one query row, so
    `query_pos` must then be -1 (or the last position).
    """
    heads = check_heads(model, heads)

    def make(layer: int, layer_heads: list[int]):
        def hook(pattern: torch.Tensor, hook) -> torch.Tensor:  # [batch, head, query, key]
            batch, _, n_query, n_key = pattern.shape
            q = _positions(query_pos, batch, n_key, "query_pos")
            q = q - (n_key - n_query)  # a cached forward sees only the last n_query queries
            if bool((q < 0).any()):
                raise ValueError(f"query_pos {query_pos} is not among this forward's query positions")
            pattern = pattern.clone()
            rows = torch.arange(batch)
            future = torch.arange(n_key, device=pattern.device)[None] > (q + n_key - n_query)[:, None].to(
                pattern.device
            )
            for head in layer_heads:
                new = edit(pattern[rows, head, q])
                if bool((new.masked_fill(~future, 0) != 0).any()):
                    raise ValueError(
                        f"the edit puts attention of L{layer}H{head} at query position {query_pos} on a "
                        "later "
                        "key position (acausal); redirect only to positions at or before the query"
                    )
                pattern[rows, head, q] = new
            return pattern

        return hook

    return [(get_act_name("pattern", layer), make(layer, hs)) for layer, hs in _by_layer(heads).items()]


def one_hot_row(dst) -> RowEdit:
    """A row edit: all attention on `dst`."""

    def edit(row: torch.Tensor) -> torch.Tensor:
        to = _positions(dst, row.shape[0], row.shape[1], "dst")
        return torch.nn.functional.one_hot(to, row.shape[1]).to(row.dtype)

    return _narrows(edit, lambda rows: one_hot_row(rows_of(dst, rows)))


def move_row(src, dst, swap: bool = False) -> RowEdit:
    """A row edit: the weight on `src` moves to `dst` (the row still sums to 1).

    `swap=True` exchanges the two weights instead of emptying `src` onto `dst`.
    """

    def edit(row: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(row.shape[0])
        source = _positions(src, row.shape[0], row.shape[1], "src")
        target = _positions(dst, row.shape[0], row.shape[1], "dst")
        out = row.clone()
        w_src, w_dst = row[rows, source], row[rows, target]
        if swap:
            out[rows, source], out[rows, target] = w_dst, w_src
        else:  # src == dst moves nothing
            out[rows, source] = torch.where(source == target, w_src, torch.zeros_like(w_src))
            out[rows, target] = torch.where(source == target, w_src, w_src + w_dst)
        return out

    return _narrows(edit, lambda rows: move_row(rows_of(src, rows), rows_of(dst, rows), swap))


def move_fraction(src, dst, alpha: float) -> RowEdit:
    """A row edit: a fraction `alpha` of the weight on `src` moves to `dst` (alpha=1: `move_row`)."""

    def edit(row: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(row.shape[0])
        out = row.clone()
        moved = row[rows, src] * alpha
        out[rows, src] -= moved
        out[rows, dst] += moved
        return out

    return _narrows(edit, lambda rows: move_fraction(rows_of(src, rows), rows_of(dst, rows), alpha))


def shift_mass(dst, mass) -> RowEdit:
    """A row edit: `mass` of the row's weight (one value per prompt, or one for all) moves onto `dst`,
    taken from the other positions in proportion to their weight, and never more than they hold. A
    move's matched control: another head moves as much attention as the edited head did."""

    def edit(row: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(row.shape[0])
        to = _positions(dst, row.shape[0], row.shape[1], "dst").to(row.device)
        amount = torch.as_tensor(mass, dtype=row.dtype, device=row.device).expand(row.shape[0])
        held = row[rows, to]
        rest = (1 - held).clamp_min(0)
        moved = torch.minimum(amount.clamp_min(0), rest)
        out = (
            row
            * torch.where(rest > 0, (rest - moved) / rest.clamp_min(1e-12), torch.zeros_like(rest))[:, None]
        )
        out[rows, to] = held + moved
        return out

    return _narrows(edit, lambda rows: shift_mass(rows_of(dst, rows), rows_of(mass, rows)))


def partner_row(row: torch.Tensor) -> torch.Tensor:
    """A row edit: each prompt gets the row of the other text of its pair (rows a, b, a, b, ...)."""
    return row.reshape(-1, 2, *row.shape[1:]).flip(1).reshape(row.shape)


# ---------------------------------------------------------------------------------------------
# Patching from a source run


def patch_heads(model, heads: Heads, source_cache, component: str = "z", positions=None) -> list[Hook]:
    """Copy query heads' `component` ("z" = head output, "q", "rot_q") from `source_cache`.

    `positions` (None = all) restricts the patch to some sequence positions.
    """
    if component not in ("z", "q", "rot_q"):
        raise ValueError(
            f"component {component!r} is not per query head; use 'z', 'q' or 'rot_q' "
            "(and patch_kv_heads for k/v)"
        )
    heads = check_heads(model, heads)
    return _patch_per_head(heads, source_cache, component, positions)


def patch_kv_heads(model, kv_heads: Heads, source_cache, component: str = "v", positions=None) -> list[Hook]:
    """Copy key/value heads ("k", "v", "rot_k") from `source_cache`: all query heads of the group change."""
    if component not in ("k", "v", "rot_k"):
        raise ValueError(f"component {component!r} is not a key/value activation; use 'k', 'v' or 'rot_k'")
    n_kv = model.cfg.n_key_value_heads or model.cfg.n_heads
    kv_heads = check_heads(model, kv_heads, n_heads=n_kv)
    return _patch_per_head(kv_heads, source_cache, component, positions)


def _patch_per_head(heads, source_cache, component, positions) -> list[Hook]:
    def make(layer: int, layer_heads: list[int]):
        name = get_act_name(component, layer)
        source = require(source_cache, name, "the source cache")  # [batch, pos, head, d_head]

        def hook(act: torch.Tensor, hook) -> torch.Tensor:
            if act.shape != source.shape:
                raise ValueError(
                    f"{name}: source activation {tuple(source.shape)} does not match {tuple(act.shape)}"
                )
            act = act.clone()
            pos = slice(None) if positions is None else torch.as_tensor(positions)
            act[:, pos, layer_heads] = source[:, pos][:, :, layer_heads].to(act.dtype)
            return act

        return (name, hook)

    return [make(layer, hs) for layer, hs in _by_layer(heads).items()]


def patch_activation(model, name: str, source_cache, positions=None) -> list[Hook]:
    """Copy a whole activation (e.g. "blocks.3.hook_resid_pre", "blocks.3.hook_attn_out",
    "blocks.3.hook_mlp_out") from `source_cache`, at `positions` (None = all)."""
    source = require(source_cache, name, "the source cache")

    def hook(act: torch.Tensor, hook) -> torch.Tensor:
        if act.shape != source.shape:
            raise ValueError(
                f"{name}: source activation {tuple(source.shape)} does not match {tuple(act.shape)}"
            )
        if positions is None:
            return source.to(act.dtype).clone()
        act = act.clone()
        act[:, positions] = source[:, positions].to(act.dtype)
        return act

    return [(name, hook)]


def edit_head_values(
    model, heads: Heads, edit: Callable[[torch.Tensor], torch.Tensor], query_pos=None
) -> list[Hook]:
    """Recompute each query head's output from edited values: z_h = pattern_h @ edit(v_kv(h)).

    `edit` maps one head's values [batch, key_pos, d_head] to new values of the same shape. The
    pattern is the head's own (after any pattern hooks that ran before), and sibling query heads
    that share the key/value head keep the unedited values. `query_pos` (None = every position)
    limits the change to one query row, as a final-row pattern edit is limited. Needs a full
    forward: under a KV cache `hook_v` sees only the new token's values.
    """
    heads = check_heads(model, heads)
    return [
        hook
        for layer, hs in _by_layer(heads).items()
        for hook in _value_rewrite(model, layer, hs, edit, query_pos)
    ]


def _value_rewrite(model, layer: int, layer_heads: list[int], edit, query_pos) -> list[Hook]:
    seen: dict[str, torch.Tensor] = {}

    def keep(key: str):
        def hook(act: torch.Tensor, hook) -> torch.Tensor:
            seen[key] = act
            return act

        return hook

    def rewrite(z: torch.Tensor, hook) -> torch.Tensor:  # [batch, q, head, d_head]
        v, pattern = seen["v"], seen["pattern"]  # [batch, key, kv_head, d_head], [batch, head, q, key]
        if v.shape[1] != pattern.shape[-1]:
            raise ValueError("value edits need a full forward (no KV cache): hook_v saw only the new tokens")
        rows = torch.arange(z.shape[0])
        q = None if query_pos is None else _positions(query_pos, z.shape[0], z.shape[1], "query_pos")
        z = z.clone()
        for head in layer_heads:
            values = edit(v[:, :, kv_head_of(model, head)])
            new = torch.einsum("bqk,bkd->bqd", pattern[:, head], values).to(z.dtype)
            if q is None:
                z[:, :, head] = new
            else:
                z[rows, q, head] = new[rows, q]
        return z

    return [
        (get_act_name("v", layer), keep("v")),
        (get_act_name("pattern", layer), keep("pattern")),
        (get_act_name("z", layer), rewrite),
    ]


def swap_head_values(model, heads: Heads, pos_a, pos_b, query_pos=None) -> list[Hook]:
    """Each chosen head reads the value vector of `pos_b` where it attends to `pos_a`, and vice
    versa (at `query_pos` only, or at every query position when None)."""

    def swap(values: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(values.shape[0])
        a = _positions(pos_a, values.shape[0], values.shape[1], "pos_a")
        b = _positions(pos_b, values.shape[0], values.shape[1], "pos_b")
        out = values.clone()
        out[rows, a], out[rows, b] = values[rows, b], values[rows, a]
        return out

    return edit_head_values(model, heads, swap, query_pos)


# ---------------------------------------------------------------------------------------------
# Ablation


def ablate_heads(model, heads: Heads, how: str = "zero", reference_cache=None, seed: int = 0) -> list[Hook]:
    """Knock out query heads' outputs (`hook_z`).

    - "zero": z_h = 0.
    - "mean": z_h = its mean over the reference batch, per position (same length as the input),
      or over batch and positions when the lengths differ.
    - "resample": z_h from another prompt of the reference batch (a seeded derangement when the
      reference is the input batch itself; needs >= 2 reference prompts).
    """
    heads = check_heads(model, heads)
    if how not in ("zero", "mean", "resample"):
        raise ValueError(f"unknown ablation {how!r}; use 'zero', 'mean' or 'resample'")
    if how != "zero" and reference_cache is None:
        raise ValueError(f"a {how!r} ablation needs reference_cache (a cache of reference prompts' hook_z)")

    def make(layer: int, layer_heads: list[int]):
        name = get_act_name("z", layer)
        reference = (
            None if how == "zero" else require(reference_cache, name, f"the {how} ablation's reference cache")
        )

        def hook(z: torch.Tensor, hook) -> torch.Tensor:  # [batch, pos, head, d_head]
            z = z.clone()
            if how == "zero":
                z[:, :, layer_heads] = 0.0
                return z
            ref = reference[:, :, layer_heads].to(z.dtype)
            if how == "mean":
                same_length = ref.shape[1] == z.shape[1]
                z[:, :, layer_heads] = (
                    ref.mean(0, keepdim=True) if same_length else ref.mean((0, 1), keepdim=True)
                )
                return z
            if ref.shape[0] < 2 or ref.shape[1] != z.shape[1]:
                raise ValueError("resample ablation needs >= 2 reference prompts of the input's length")
            generator = torch.Generator().manual_seed(seed)
            pick = (
                torch.arange(z.shape[0]) + torch.randint(1, ref.shape[0], (z.shape[0],), generator=generator)
            ) % ref.shape[0]
            z[:, :, layer_heads] = ref[pick]
            return z

        return (name, hook)

    return [make(layer, hs) for layer, hs in _by_layer(heads).items()]
