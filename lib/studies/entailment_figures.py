"""Figures of the entailment study, one set per model: write_figures(study, results_dir).

Four PNGs named entailment_head_switching_<what>_<model>.png (the hypothesis's whole name: the
report files an image under the hypothesis it starts with): switch effect per head (discovery, with
the top, control and hop heads marked), dose-response (held-out families), final-row attention on answer a
by fact (hop and switch heads, held out), and induction score vs switch effect (every head).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from attnclaims.heads import Head
from attnclaims.studies.entailment_arms import Switch
from attnclaims.studies.entailment_results import EntailmentStudy


def write_figures(study: EntailmentStudy, folder: Path) -> None:
    name, heads = study.name, study.heads
    n_layers = int(study.attention.layer.max()) + 1
    effect = (
        study.switch_by_family.groupby(["layer", "head"])
        .delta.mean()
        .unstack()
        .reindex(range(n_layers))
        .to_numpy()
    )
    fig, ax = plt.subplots(figsize=(6, 8))
    image = ax.imshow(
        effect, cmap="RdBu", vmin=-np.abs(effect).max(), vmax=np.abs(effect).max(), aspect="auto"
    )
    marks = [
        (heads.top, "x", "top heads"),
        (heads.same_layer[0], "o", "same-layer control"),
        (heads.decile[0], "s", "attention-decile control"),
        (heads.hop, "^", "hop heads"),
    ]
    for marked, marker, text in marks:
        style = {"color": "k"} if marker == "x" else {"facecolors": "none", "edgecolors": "k"}
        ax.scatter([h for _, h in marked], [lyr for lyr, _ in marked], marker=marker, label=text, **style)
    ax.set(xlabel="head", ylabel="layer", title=f"{name}: switch effect per head (discovery, nats)")
    ax.legend(fontsize=7, loc="lower left")
    fig.colorbar(image)
    fig.savefig(
        folder / f"entailment_head_switching_switch_per_head_{name}.png", dpi=120, bbox_inches="tight"
    )
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    for k in study.design.dose_k:
        alphas = study.design.dose_alpha[1:]
        means = [0.0] + [study.rows(Switch(k, alpha), change=True).value.mean() for alpha in alphas]
        ax.plot(study.design.dose_alpha, means, marker="o", label=f"K={k}")
    ax.set(
        xlabel="fraction of the entailed answer's weight moved",
        ylabel="delta LD (nats)",
        title=f"{name}: dose-response, held-out families",
    )
    ax.legend()
    fig.savefig(folder / f"entailment_head_switching_dose_response_{name}.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    two = study.attention.query("hops == 2 and split == 'confirmation'")
    fig, ax = plt.subplots(figsize=(7, 4))
    shown = list(dict.fromkeys(heads.hop + heads.top))
    for i, (layer, head) in enumerate(shown):
        rows = two[(two.layer == layer) & (two["head"] == head)]
        on_a = np.where(rows.text == "a", rows.entailed, rows.alternative)  # attention on answer a
        ax.bar(i - 0.2, on_a[rows.text == "a"].mean(), 0.4, color="C0", label="fact a" if i == 0 else None)
        ax.bar(i + 0.2, on_a[rows.text == "b"].mean(), 0.4, color="C1", label="fact b" if i == 0 else None)
    ax.set_xticks(range(len(shown)), [str(Head(lyr, h)) for lyr, h in shown])
    ax.set(
        ylabel="final-row attention on answer a", title=f"{name}: attention on answer a by fact (held out)"
    )
    ax.legend()
    fig.savefig(
        folder / f"entailment_head_switching_attention_by_fact_{name}.png", dpi=120, bbox_inches="tight"
    )
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(study.induction.flatten(), effect.flatten(), s=8)
    ax.set(
        xlabel="induction score",
        ylabel="discovery switch effect (nats)",
        title=f"{name}: copy score vs switch effect",
    )
    fig.savefig(
        folder / f"entailment_head_switching_induction_vs_switch_{name}.png", dpi=120, bbox_inches="tight"
    )
    plt.close(fig)
