"""Can the suite's own training loop teach a toy two-hop rule chains? A logged search.

    python -m attnclaims.studies.two_hop_search [--results DIR]

Trains each configuration in `SEARCH` (lib/toy.py, the "entailment" task of lib/tasks/entailment.py,
one CPU thread, cached by config hash like every toy) and writes every logged step's held-out answer
loss and accuracy to two_hop_search.csv, with the loss curves in two_hop_search.png. The entailment
hypothesis reads no figure from it: it records why the two-hop model organism is built by
construction (lib/studies/entailment_organism.py) instead of trained. Chance on this task is ln 2
on the answer (the model can tell the two answers from every other word without following a chain).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from attnclaims.toy import ToyConfig, training_history

BASE = ToyConfig(task="entailment", n_content=16, log_every=200, batch=128)
SEARCH = {  # name -> config; each row says what it varies from the short trials that sat at ln 2
    "3L attn-only d128, 8000 steps": BASE.replace(n_layers=3, d_model=128, steps=8000),
    "4L MLP d128, lr 5e-4, 3000 steps": BASE.replace(
        n_layers=4, d_model=128, attn_only=False, d_mlp=512, lr=5e-4, steps=3000
    ),
    "3L attn-only d128, 4 content words, 4000 steps": BASE.replace(
        n_layers=3, d_model=128, n_content=4, steps=4000
    ),
}


def run(results: Path) -> pd.DataFrame:
    frames = []
    for name, config in SEARCH.items():
        history = training_history(config)
        frames.append(history[["step", "answer_loss", "answer_accuracy"]].assign(run=name, key=config.key()))
    table = pd.concat(frames, ignore_index=True)
    results.mkdir(parents=True, exist_ok=True)
    table.to_csv(results / "two_hop_search.csv", index=False)
    plot(table, results / "two_hop_search.png")
    return table


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, rows in table.groupby("run", sort=False):
        ax.plot(rows.step, rows.answer_loss, label=name)
    ax.axhline(math.log(2), color="grey", linestyle=":", label="ln 2 (either answer)")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out answer loss (nats)")
    ax.set_title("Two-hop rule chains: toys trained by lib/toy.py")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    table = run(parser.parse_args(argv).results)
    last = table.groupby("run", sort=False).tail(1)
    print(last.to_string(index=False))


if __name__ == "__main__":
    main()
