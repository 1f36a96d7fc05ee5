"""Interventions for the minimal-pair studies, each declaring where it acts, for
attnclaims.sweep.run_variants on stacked pairs (rows a, b, a, b, ...):

- `watch`: keep an activation (a pattern's final row, or the final position) of each variant.
- `freeze_after`: hold every later component at its clean value at the final position (the direct
  effect of an edit: attnclaims.paths.DirectPath).
- `path_to_queries`: a mean ablation that reaches some heads' queries only (path patching:
  attnclaims.paths.PatchPath).
The row edits they pair with (`partner_row`, `move_fraction`) are in attnclaims.hooks.
"""

from __future__ import annotations

from transformer_lens.utilities import get_act_name

from attnclaims.interventions import Hooks
from attnclaims.paths import DirectPath, PatchPath


def watch(store: dict, key, name: str, *, layer: int, final: bool = True) -> Hooks:
    """Keep activation `name` (of block `layer`; n_layers for ln_final) in store[(key, name)]: a
    pattern's final query row [batch, head, key], else the final position (or, with final=False,
    every position). Under run_variants it sees its own variant's rows only."""

    def hook(act, hook):
        if "pattern" in name:
            store[(key, name)] = act[:, :, -1].detach()  # [batch, head, key]
        else:
            store[(key, name)] = (act[:, -1] if final else act).detach()

    return Hooks(((name, hook),), first_layer=layer, what=f"watch {name}")


def freeze_after(model, heads, clean: dict, key) -> DirectPath:
    """Hold every head output (but `heads`), MLP output and ln_final scale at or after the first
    switched layer at their clean values at the final position: what is left is the direct effect
    (attnclaims.paths.DirectPath, the one definition; attnclaims.redundancy.direct_effects is the other
    use of it).

    `clean[(key, name)]` holds the clean final-position activations (`watch`) of every layer's
    hook_z and hook_mlp_out and of ln_final.hook_scale. Final-row, so a final-row edit with it still
    runs on the prefix's KV cache (it edits the final row only)."""
    first = min(layer for layer, _ in heads)
    names = [
        get_act_name(kind, layer) for layer in range(first, model.cfg.n_layers) for kind in ("z", "mlp_out")
    ]
    held = {name: clean[(key, name)] for name in [*names, "ln_final.hook_scale"] if (key, name) in clean}
    return DirectPath(heads, held, final=True)


def path_to_queries(model, senders, receivers, reference: dict) -> PatchPath:
    """Mean-ablate `senders` on the path into `receivers`' queries at the final position only: each
    receiver's query input gets sum_s (mean z_s - z_s) W_O^s; every other reader sees the clean run.
    An attnclaims.paths.PatchPath (as attnclaims.patching.path_patch_sweep runs, with a mean as the
    source).

    `reference[hook_z name]` [batch, pos, head, d_head] gives the mean (over its prompts, per
    position); senders at or after the first receiver's layer are ignored. Run the forward inside
    `attnclaims.patching.split_qkv_input(model)`, which gives every head its own query input."""
    first_receiver = min(layer for layer, _ in receivers)
    names = {get_act_name("z", layer) for layer, _ in senders if layer < first_receiver}
    mean = {name: reference[name].mean(0, keepdim=True) for name in names}  # [1, pos, head, d_head]
    return PatchPath(senders, receivers, mean, "q", final=True)
