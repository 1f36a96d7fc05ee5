"""The entailment protocol on toys whose truth is known, several at once.

    studies = run_ground_truth([*organisms, *CHEATS.values(), *trained], design, n_pairs=240, seed=11)

Each model (an organism or cheat spec, attnclaims.studies.organisms, or the ToyConfig of a trained toy,
loaded from the toy cache) gets attnclaims.studies.entailment_study.run_entailment_study on the same
chain pairs (attnclaims.studies.entailment_pairs.chain_pairs): the protocol the real models get. The
models run in separate processes, one per core (attnclaims.toy.in_processes, one torch thread each),
and their studies come back in the order given; each is recorded under the model's ledger name (`name_of`).
"""

from __future__ import annotations

from attnclaims.studies.entailment_pairs import chain_pairs
from attnclaims.studies.entailment_study import EntailmentDesign, run_entailment_study
from attnclaims.studies.organisms import Cheat, Organism, load
from attnclaims.toy import ToyConfig, in_processes, load_toy, one_thread, toy_folder


def name_of(model) -> str:
    """The ledger name of an organism, a cheat or a trained toy ("toy:two-hop-3L-r2": replicate 2)."""
    if isinstance(model, (Organism, Cheat)):
        return model.name
    if isinstance(model, ToyConfig):
        return f"toy:{model.task}-{model.n_layers}L-r{model.seed}"
    raise TypeError(f"a toy study runs on an organism, a cheat or a ToyConfig, got {type(model).__name__}")


def run_ground_truth(models, design: EntailmentDesign, n_pairs: int, seed: int, workers: int | None = None):
    """[EntailmentStudy] of each model, in order (a trained toy must be trained already: its cache)."""
    jobs = [(model, design, n_pairs, seed) for model in models]
    return in_processes(toy_study, jobs, f"the entailment protocol on {len(jobs)} toys", workers)


def toy_study(model, design: EntailmentDesign, n_pairs: int, seed: int):
    """One model's study, on one torch thread (a worker process's job)."""
    with one_thread():
        bridge = load_toy(toy_folder(model)) if isinstance(model, ToyConfig) else load(model)
        return run_entailment_study(bridge, name_of(model), design, chain_pairs(n_pairs, seed))


def plot_recovery(specs, studies, path) -> None:
    """One row per organism: the heads built to carry a hop (hollow circles, an MLP hop as a square at
    its layer's first head), the hop heads the protocol named (crosses), over layer x head."""
    import matplotlib.pyplot as plt

    from attnclaims.heads import Head
    from attnclaims.studies.organisms import carriers

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(specs) + 1.2))
    for row, (spec, study) in enumerate(zip(specs, studies)):
        column = lambda head, spec=spec: head.layer * spec.n_heads + head.head
        for part in (p for parts in carriers(spec).values() for p in parts):
            if isinstance(part, Head):
                ax.scatter(column(part), row, s=90, facecolors="none", edgecolors="k")
            else:
                layer = int(part.removeprefix("MLP"))
                ax.scatter(
                    layer * spec.n_heads, row, s=90, marker="s", facecolors="none", edgecolors="tab:red"
                )
        named = [column(Head(*h)) for h in study.heads.hop]
        ax.scatter(named, [row] * len(named), marker="x", color="tab:blue")
    ax.set_yticks(
        range(len(specs)), [f"{s.name.removeprefix('toy:')} ({s.hop1_by})" for s in specs], fontsize=7
    )
    ax.set_xticks(range(0, 16, 4), [f"L{layer}H0" for layer in range(4)], fontsize=7)
    ax.set(
        xlabel="head (layer x 4 + head)",
        title="organisms: built hop carriers (o, MLP []) and heads named (x)",
    )
    ax.title.set_fontsize(9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
