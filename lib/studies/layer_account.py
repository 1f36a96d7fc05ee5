"""Heads or MLPs: which layer's attention output, and which layer's MLP output, carries the fact to
the answer. Activation patching at the final position, one component at a time.

    account = layer_account(model, [(tokens, entailed, alternative, rows)])  # rows 2i, 2i+1: a pair
    shares = removed_shares(account)  # per component x layer: share of the sensitivity removed
    study = run_layer_account(model, "smollm2-135m", stacks)  # select on discovery, confirm on the rest
    study.best, removed_shares(study.confirmation)  # {"attention": 23, "mlp": 29}, their held-out shares

A pair's two texts differ in the fact alone (attnclaims.studies.entailment_pairs). For every layer L,
block L's attention output (all heads) or its MLP output at the final position is replaced by the
other text's (PatchOutput); everything else is recomputed. The pair's sensitivity LD(a) - LD(b)
is measured with and without the patch: the share it removes says how much of the fact's effect on
the answer passes through that component at that layer (2 = the answer follows the other fact).
The final position only: at the fact's own position an early MLP would carry the word's identity
itself. Patching every layer's attention output at once would remove all of it by construction (the
final position's residual is then the other text's), so components are patched one at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import torch

from attnclaims.arms import CLEAN, Arm, build_all
from attnclaims.interventions import PatchOutput
from attnclaims.metrics import logit_diff
from attnclaims.pair_hooks import watch
from attnclaims.protocols import pair_sensitivity
from attnclaims.sweep import run_variants

COMPONENTS = {"attention": "attn_out", "mlp": "mlp_out"}  # what a figure calls it: the hook it patches


@dataclass(frozen=True)
class PatchPartner(Arm):
    """Block `layer`'s `kind` output ("attention" or "mlp") at the final position replaced by the
    other text's of each pair (rows 2i and 2i+1), from the clean run's captures (`build(store)`)."""

    layer: int
    kind: str

    @property
    def name(self) -> str:
        return f"L{self.layer} {self.kind} output from the other text"

    @property
    def hook(self) -> str:
        return f"blocks.{self.layer}.hook_{COMPONENTS[self.kind]}"

    def build(self, store: dict):
        clean = store[(CLEAN, self.hook)]
        partner = torch.arange(len(clean)) ^ 1  # each text's other text
        return PatchOutput(self.layer, COMPONENTS[self.kind], clean[partner])


def layer_account(
    model, stacks: Iterable[tuple], parts: Iterable[tuple[int, str]] | None = None
) -> pd.DataFrame:
    """Per pair x layer x component: `clean` and `patched` sensitivity, with the pair's columns.

    Each stack is (tokens [2n, pos], entailed [2n], alternative [2n], rows): rows 2i and 2i+1 are the
    two texts of one pair, `rows` one table row per prompt with at least `pair` and `text`. `parts`:
    the (layer, component) patches to run (default: every layer, both components)."""
    every = [(layer, kind) for layer in range(model.cfg.n_layers) for kind in COMPONENTS]
    parts = every if parts is None else list(parts)
    frames = []
    for tokens, entailed, alternative, rows in stacks:
        if len(rows) % 2 or len(rows) != len(tokens):
            raise ValueError(
                f"a stack holds pairs: 2n rows and 2n prompts, got {len(rows)} and {len(tokens)}"
            )
        store: dict = {}
        metric = logit_diff(entailed, alternative, per_prompt=True)
        patches = [PatchPartner(layer, kind) for layer, kind in parts]
        watched = [watch(store, CLEAN, patch.hook, layer=patch.layer) for patch in patches]
        clean = run_variants(model, tokens, {CLEAN: watched}, metric)[CLEAN]
        patched = run_variants(model, tokens, build_all(patches, store), metric)
        firsts = rows.iloc[::2].drop(columns="text").reset_index(drop=True)
        for patch, ld in patched.items():
            frames.append(
                firsts.assign(
                    layer=patch.layer,
                    component=patch.kind,
                    clean=pair_sensitivity(clean).numpy(),
                    patched=pair_sensitivity(ld).numpy(),
                )
            )
    return pd.concat(frames, ignore_index=True)


def removed_shares(account: pd.DataFrame) -> pd.Series:
    """Per (component, layer): sum of (clean - patched) over pairs / sum of clean."""
    grouped = account.assign(removed=account.clean - account.patched).groupby(["component", "layer"])
    return grouped.removed.sum() / grouped.clean.sum()


def best_layers(account: pd.DataFrame) -> dict[str, int]:
    """Per component: the layer whose patch removes the largest share (on the rows given: discovery)."""
    shares = removed_shares(account)
    return {kind: int(shares.loc[kind].idxmax()) for kind in COMPONENTS}


@dataclass(frozen=True)
class LayerAccount:
    name: str  # the model, as the ledger records it
    discovery: pd.DataFrame  # layer_account of the discovery pairs, every layer and component
    best: dict[str, int]  # per component: its layer (largest share removed on discovery)
    confirmation: pd.DataFrame  # layer_account of the confirmation pairs, the best layers only


def run_layer_account(model, name: str, stacks: list[tuple]) -> LayerAccount:
    """Every layer on the discovery pairs, the selected layers on the confirmation pairs (`rows`
    carry `split`; a pair's two texts share it)."""
    discovery = layer_account(model, _split(stacks, "discovery"))
    best = best_layers(discovery)
    confirmation = layer_account(model, _split(stacks, "confirmation"), [(best[k], k) for k in COMPONENTS])
    return LayerAccount(name, discovery, best, confirmation)


def _split(stacks: list[tuple], split: str) -> list[tuple]:
    out = []
    for tokens, entailed, alternative, rows in stacks:
        keep = torch.tensor((rows.split == split).to_numpy())
        if bool(keep.any()):
            out.append((tokens[keep], entailed[keep], alternative[keep], rows[keep.numpy()]))
    return out


def plot_account(accounts: list[LayerAccount], path) -> None:
    """One panel per model: share of the sensitivity removed per layer on the discovery pairs,
    attention vs MLP output, and each component's layer as confirmed on the other pairs."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(accounts), figsize=(4.4 * len(accounts), 3.1), squeeze=False)
    for ax, account in zip(axes[0], accounts):
        shares, held_out = removed_shares(account.discovery), removed_shares(account.confirmation)
        for (kind, marker), color in zip((("attention", "o"), ("mlp", "s")), ("C0", "C1")):
            ax.plot(
                shares.loc[kind].index,
                shares.loc[kind].to_numpy(),
                marker=marker,
                ms=3,
                color=color,
                label=f"{kind} (discovery)",
            )
            layer = account.best[kind]
            ax.scatter(
                [layer],
                [held_out.loc[(kind, layer)]],
                marker="*",
                s=90,
                color=color,
                edgecolor="k",
                zorder=3,
                label=f"{kind} L{layer}, held out",
            )
        ax.axhline(0, color="grey", lw=0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(
            title=account.name,
            xlabel="layer patched at the final position",
            ylabel="share of sensitivity removed",
        )
        ax.title.set_fontsize(9)
        ax.legend(fontsize=6)
    fig.suptitle(
        "Attention vs MLP output at the final position, patched from the other text\n"
        "(share of the sensitivity removed; 2 = the answer follows the other fact)",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
