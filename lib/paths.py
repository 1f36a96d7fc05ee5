"""Path patching: a change to some heads' outputs that reaches other heads' query, key or value inputs
only (direct path patching, Wang et al. 2022), as one spec the sweep engine reads.

    spec = PatchPath(senders=[(0, 1)], receivers=[(1, 2)], source=source_cache(model, clean, "z", [0]),
                     component="k")
    with split_qkv_input(model):  # every head reads its own copy of the residual: one path can differ
        values = run_variants(model, corrupted, [spec], metric)

Each receiver's own `component` input gets the sum over senders of (source z_s - z_s) @ W_O^s, where
z_s is the sender's output in the run the spec is applied to (read as that run goes); every other
reader, the residual stream included, sees that run unchanged. `attnclaims.patching.path_patch_sweep`
runs one PatchPath per receiver with the clean run as the source (it equals TransformerLens's
get_act_patch_direct_path); `attnclaims.pair_hooks.path_to_queries` is one with the mean over
reference prompts as the source, at the final position only.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from transformer_lens.utilities import get_act_name

from attnclaims import hooks as H
from attnclaims.heads import Head, as_heads
from attnclaims.interventions import Intervention

COMPONENTS = ("q", "k", "v")


@contextmanager
def split_qkv_input(model):
    """Give every head its own copy of the residual entering its query/key/value (hook_{q,k,v}_input)."""
    saved_split, saved_attn_in = (
        bool(model.cfg.use_split_qkv_input),
        bool(getattr(model.cfg, "use_attn_in", False)),
    )
    try:
        if saved_attn_in:
            model.set_use_attn_in(False)
        model.set_use_split_qkv_input(True)
        yield
    finally:
        model.set_use_split_qkv_input(saved_split)
        if saved_attn_in:
            model.set_use_attn_in(True)


@dataclass(frozen=True)
class PatchPath(Intervention):
    """`senders`' outputs replaced by their values in `source` along the paths into `receivers`'
    `component` ("q", "k" or "v") inputs alone. `source` holds hook_z [batch, pos, head, d_head] of
    the senders' layers (`attnclaims.interventions.source_cache` of another run on prompts of the same
    shape; a batch of 1, e.g. a mean over reference prompts, stands for every prompt). `final`: the
    final position only (the source's final position against the run's), else every position.
    Senders at or after the first receiver's layer have no path and are left out (none left: the spec
    changes nothing). Run it inside `split_qkv_input(model)`; it runs full forwards. On grouped-query
    models only "q" is one query head's own input: "k" and "v" are refused."""

    senders: tuple[Head, ...]
    receivers: tuple[Head, ...]
    source: Any = field(repr=False, compare=False)
    component: str = "q"
    final: bool = False

    def __post_init__(self):
        object.__setattr__(self, "senders", tuple(as_heads(self.senders)))
        object.__setattr__(self, "receivers", tuple(as_heads(self.receivers)))
        if not self.receivers:
            raise ValueError("a path needs at least one receiver head")
        if self.component not in COMPONENTS:
            raise ValueError(f"component must be 'q', 'k' or 'v', got {self.component!r}")

    def _sending_layers(self) -> list[int]:
        first = min(layer for layer, _ in self.receivers)
        return sorted({layer for layer, _ in self.senders if layer < first})

    def layer(self, model) -> int:
        return min([*self._sending_layers(), *(layer for layer, _ in self.receivers)])

    def check(self, model) -> None:
        """Raise where the spec cannot run on `model`: a head out of range, or "k"/"v" of one query head
        on a grouped-query model."""
        H.check_heads(model, [*self.senders, *self.receivers])
        n_kv = model.cfg.n_key_value_heads or model.cfg.n_heads
        if self.component != "q" and n_kv != model.cfg.n_heads:
            raise ValueError(
                f"path patching into '{self.component}' of one query head is undefined on a grouped-query "
                f"model ({model.cfg.n_heads} query heads share {n_kv} key/value heads); use 'q'"
            )

    def hooks(self, model) -> list[H.Hook]:
        self.check(model)
        sending = self._sending_layers()
        if not sending:
            return []
        where = slice(-1, None) if self.final else slice(None)
        change: dict[int, torch.Tensor] = {}  # sender layer -> [batch, pos, d_model], filled as the run goes
        hooks = []
        for layer in sending:
            heads = [h for lyr, h in self.senders if lyr == layer]
            name = get_act_name("z", layer)
            source = H.require(self.source, name, "the path's source")
            W_O = model.blocks[layer].attn.W_O[heads]  # [heads, d_head, d_model]

            def keep(z, hook, heads=heads, source=source, W_O=W_O, layer=layer, name=name):
                if not self.final and source.shape[1] != z.shape[1]:
                    raise ValueError(
                        f"{name}: the path's source has {source.shape[1]} positions, this run {z.shape[1]}; "
                        "build it from prompts of the same length (or patch the final position only)"
                    )
                moved = source[:, where][:, :, heads].to(z.dtype) - z[:, where][:, :, heads]
                change[layer] = torch.einsum("bphd,hdm->bpm", moved, W_O)

            hooks.append((name, keep))
        for layer in sorted({layer for layer, _ in self.receivers}):
            heads = [h for lyr, h in self.receivers if lyr == layer]

            def add(fork, hook, heads=heads):  # [batch, pos, n_heads, d_model]
                fork = fork.clone()
                fork[:, where, heads] += sum(change.values())[:, :, None].to(fork.dtype)
                return fork

            hooks.append((get_act_name(f"{self.component}_input", layer), add))
        return hooks


@dataclass(frozen=True)
class DirectPath(Intervention):
    """What is left of an edit of `heads` is its direct effect (Rushing & Nanda 2024): every component
    from the heads' first layer on (each other head's output, hook_z; each MLP's output) and the final
    LayerNorm's scale held at their values in `clean`, so the heads' changed outputs reach the logits
    through the residual stream alone (a later edited head still reads an earlier one). Add it to the
    edit: `AblateHeads([h], "mean", reference) + DirectPath([h], clean)`.

    `clean`: {hook name: activation} of those hook_z and hook_mlp_out and of ln_final.hook_scale, from
    the run the edit is measured against: [batch, pos, ...] at every position, or with `final=True`
    the final position's alone ([batch, ...], attnclaims.pair_hooks.watch), held there only (the
    spec then edits the final row only). `attnclaims.redundancy.direct_effects` and
    `attnclaims.pair_hooks.freeze_after` are its two uses."""

    heads: tuple[Head, ...]
    clean: Any = field(repr=False, compare=False)
    final: bool = False

    def __post_init__(self):
        object.__setattr__(self, "heads", tuple(as_heads(self.heads)))
        if not self.heads:
            raise ValueError("a direct path needs the heads whose edit it keeps")

    def layer(self, model) -> int:
        return min(layer for layer, _ in self.heads)

    @property
    def final_row(self) -> bool:
        return self.final

    def hooks(self, model) -> list[H.Hook]:
        H.check_heads(model, self.heads)
        where = -1 if self.final else slice(None)

        def freeze_z(z, hook, keep, value):
            z = z.clone()
            z[:, where, keep] = value[..., keep, :]
            return z

        def freeze(x, hook, value):
            x = x.clone()
            x[:, where] = value
            return x

        hooks = []
        for layer in range(self.layer(model), model.cfg.n_layers):
            keep = [h for h in range(model.cfg.n_heads) if (layer, h) not in self.heads]
            z, mlp = get_act_name("z", layer), get_act_name("mlp_out", layer)
            value = H.require(self.clean, z, "the clean run the direct path holds to")
            hooks.append((z, lambda x, hook, keep=keep, value=value: freeze_z(x, hook, keep, value)))
            if mlp in model.hook_dict:
                value = H.require(self.clean, mlp, "the clean run the direct path holds to")
                hooks.append((mlp, lambda x, hook, value=value: freeze(x, hook, value)))
        scale = H.require(self.clean, "ln_final.hook_scale", "the clean run the direct path holds to")
        hooks.append(("ln_final.hook_scale", lambda x, hook: freeze(x, hook, scale)))
        return hooks
