"""The induction study of toys trained from scratch, computed once: hypotheses/test_induction_toys.py claims.

    study = run_induction_toys(toy_model, ToyDesign(two_layer=TWO_LAYER, seeds=range(30), ...), png, csv)
    study.replicate(3).circuit, study.of_type("offset"), replicate_table(study, paths=("k", "q", "v"))

A replicate is one toy trained from the design's config with its own RNG seed (`config.seed`), which
names it: replicate 3 is the toy of seed 3. Steps, in the order they run, per replicate (the 2-layer
ones, then the 1-layer ones):
1. Evaluation batch: BOS + S random content tokens + the same S again (attnclaims.tasks.repeat_batch,
   generator seed 123); a second batch (seed 321) is the resample source of the path patching.
2. Offset induction scores of every head (attnclaims.scores), the circuit type of the last layer
   (attnclaims.scores.induction_circuit_type), the layer-0 lag scores per sequence, and the loss on the
   repeated half (the 2nd..last token of the second copy).
3. 2-layer toys: path patching of every layer-0 head into every layer-1 head's keys, queries and
   values (attnclaims.patching.path_patch_sweep); the largest loss rise per path.
4. On a held-out batch (seed 456; resample source seed 654), for what step 2 selected: the layer-0
   lag scores, and each layer-0 head's key path into the circuit head (`layer0_paths`).
5. The training log (attnclaims.toy.training_history).
Then the figure (training curves, K/Q/V path effects) and the per-replicate table go where the
hypothesis says.
The offset circuit's copying against a null (`offset_copying`) and the phase change (`phase_change`)
are read off a `ToyReplicate` by the claims that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from attnclaims.heads import versus_layer
from attnclaims.metrics import mean_loss
from attnclaims.patching import path_patch_sweep
from attnclaims.scores import (
    attention_patterns,
    copying_score,
    induction_circuit_type,
    lag_scores_from_pattern,
    offset_induction_score_from_pattern,
    ov_circuit,
)
from attnclaims.tasks import N_SPECIAL, repeat_batch
from attnclaims.tasks.repeat import halves
from attnclaims.toy import ToyConfig, training_history


@dataclass(frozen=True)
class ToyDesign:
    """What the toy study trains and measures; the hypothesis file states the values."""

    two_layer: ToyConfig  # the 2-layer config; each replicate replaces its `seed`
    one_layer: ToyConfig  # the 1-layer control's config
    seeds: tuple[int, ...]  # the RNG seeds of the 2-layer replicates, one replicate each
    one_layer_seeds: tuple[int, ...]  # the 1-layer replicates'
    seq_len: int  # S, length of the repeated sequence
    circuit: float  # a layer-1 head "forms a circuit" when its best offset induction score reaches this
    lags: range  # layer-0 lags searched for the offset circuit's head
    paths: tuple[str, ...]  # path-patched components of the layer-1 heads ("k", "q", "v")


def toy_eval_tokens(config: ToyConfig, seq_len: int, seed: int, batch: int = 64) -> torch.Tensor:
    """[batch, 1 + 2S]: BOS, S random content tokens of `config`'s vocabulary, the same S again."""
    return repeat_batch(torch.Generator().manual_seed(seed), batch, seq_len, config.n_content)


def repeated_half_loss(logits: torch.Tensor, tokens: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[batch] mean next-token loss on the 2nd..last token of the second copy."""
    return mean_loss(tokens, halves(seq_len)[1], per_prompt=True)(logits)


@dataclass(frozen=True)
class ToyReplicate:
    """One trained toy (a replicate, named by its config's RNG seed) and what the study measured."""

    config: ToyConfig
    circuit: str  # "canonical", "offset-d" or "none"
    offset: int | None  # the circuit's offset d (0 for canonical)
    head: int | None  # the layer-1 head with the best offset induction score
    offset_scores: torch.Tensor  # [layer, head, offset] offset induction scores, mean over sequences
    lag_scores: torch.Tensor  # [batch, head, lag] layer-0 attention from q to q-d, per sequence
    heldout_lag_scores: torch.Tensor  # the same on the held-out batch
    loss: float  # loss on the repeated half (nats)
    path_effect: dict[str, float]  # {"k"|"q"|"v": loss rise of the strongest layer-0 -> layer-1 path (nats)}
    key_paths: (
        tuple[float, ...] | None
    )  # offset circuits: per layer-0 head, loss rise of its key path into `head` (held out)
    history: pd.DataFrame  # training log

    @property
    def previous_token(self) -> float:
        """The previous-token score (lag 1) of the layer-0 head with the highest one on the
        selection batch, measured on the held-out batch."""
        return float(self.heldout_lag_scores[:, self.lag_head(1), 1].mean())

    @property
    def has_circuit(self) -> bool:
        return self.circuit != "none"

    @property
    def offset_precondition(self) -> tuple[bool, str]:
        """(premise, reason) of the offset-circuit claims: this replicate formed an offset-d circuit."""
        return self.circuit.startswith(
            "offset"
        ), f"replicate {self.config.seed} formed circuit '{self.circuit}'"

    def lag_head(self, lag: int) -> int:
        """The layer-0 head with the most attention `lag` tokens back (mean over sequences)."""
        return int(self.lag_scores[:, :, lag].mean(0).argmax())

    @property
    def d_back_head(self) -> int:
        """The layer-0 head reading d (the circuit's offset) tokens back (selection batch)."""
        return self.lag_head(self.offset)

    @property
    def key_head(self) -> int:
        """The layer-0 head reading d + 1 tokens back (selection batch): it writes x_i into position
        i + 1 + d, where the layer-1 head's key must match the query x_i."""
        return self.lag_head(self.offset + 1)

    @property
    def heldout_d_back(self) -> float:
        """The d-back head's attention d tokens back on the held-out batch."""
        return float(self.heldout_lag_scores[:, self.d_back_head, self.offset].mean())

    @property
    def key_path_beyond_layer(self) -> float:
        """The (d+1)-back head's key-path loss rise minus the mean of the other layer-0 heads' (nats)."""
        return float(versus_layer(torch.tensor(self.key_paths), self.key_head))


@dataclass(frozen=True)
class InductionToyStudy:
    two_layer: tuple[ToyReplicate, ...]
    one_layer: tuple[ToyReplicate, ...]

    def replicate(self, seed: int) -> ToyReplicate:
        """The 2-layer replicate trained with RNG seed `seed`."""
        return next(t for t in self.two_layer if t.config.seed == seed)

    @property
    def formed(self) -> list[ToyReplicate]:
        """The 2-layer replicates whose layer 1 forms a circuit (any offset)."""
        return [t for t in self.two_layer if t.has_circuit]

    @property
    def circuit_table(self) -> str:
        """The 2-layer replicates' circuit types, for notes: "s0:offset-4, s1:canonical, ..." (sN: the
        replicate of seed N)."""
        return ", ".join(f"s{t.config.seed}:{t.circuit}" for t in self.two_layer)

    def of_type(self, kind: str) -> list[ToyReplicate]:
        return [
            t
            for t in self.two_layer
            if t.circuit == kind or (kind == "offset" and t.circuit.startswith("offset"))
        ]


def layer0_paths(
    model, tokens: torch.Tensor, source: torch.Tensor, seq_len: int, component: str
) -> torch.Tensor:
    """[layer-0 sender, layer-1 receiver]: the rise in loss on the repeated half when the sender's
    output on `source` replaces its output on `tokens` along the path into the receiver's
    `component` ("k", "q" or "v") alone (attnclaims.patching.path_patch_sweep)."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return repeated_half_loss(logits, tokens, seq_len).mean()

    with torch.no_grad():
        base = float(metric(model(tokens)))
    sweeps = [
        path_patch_sweep(
            model,
            clean_tokens=source,
            corrupted_tokens=tokens,
            metric=metric,
            sender=(0, h),
            component=component,
        )[1]
        for h in range(model.cfg.n_heads)
    ]
    return torch.stack(sweeps) - base


def path_effects(
    model, tokens: torch.Tensor, source: torch.Tensor, seq_len: int, paths: tuple[str, ...]
) -> dict[str, float]:
    """{component: largest loss rise over (layer-0 sender, layer-1 receiver) of `layer0_paths`}."""
    return {c: float(layer0_paths(model, tokens, source, seq_len, c).max()) for c in paths}


def measure_toy(model, config: ToyConfig, design: ToyDesign) -> ToyReplicate:
    """Steps 1-4 of the module docstring for one toy."""
    S = design.seq_len
    tokens, source = toy_eval_tokens(config, S, seed=123), toy_eval_tokens(config, S, seed=321)
    heldout, heldout_source = toy_eval_tokens(config, S, seed=456), toy_eval_tokens(config, S, seed=654)
    patterns = attention_patterns(model, tokens)  # [layer, batch, head, q, k]
    offsets = torch.stack([offset_induction_score_from_pattern(p, S).mean(0) for p in patterns])
    circuit, offset, head = induction_circuit_type(offsets[-1], design.circuit)
    with torch.no_grad():
        loss = float(repeated_half_loss(model(tokens), tokens, S).mean())
    two_layer = config.n_layers == 2
    return ToyReplicate(
        config=config,
        circuit=circuit,
        offset=offset,
        head=head,
        offset_scores=offsets,
        lag_scores=lag_scores_from_pattern(patterns[0], design.lags),
        heldout_lag_scores=lag_scores_from_pattern(attention_patterns(model, heldout)[0], design.lags),
        loss=loss,
        path_effect=path_effects(model, tokens, source, S, design.paths) if two_layer else {},
        key_paths=tuple(layer0_paths(model, heldout, heldout_source, S, "k")[:, head].tolist())
        if circuit.startswith("offset")  # only the offset circuit's key claim reads them
        else None,
        history=training_history(config),
    )


def run_induction_toys(toy_model, design: ToyDesign, figure: Path, table: Path) -> InductionToyStudy:
    """Every toy of `design` trained (or loaded) by `toy_model(config)` and measured; writes the
    figure (training curves, K/Q/V path effects) to `figure` and the per-replicate table to `table`."""

    def configs(config: ToyConfig, seeds: tuple[int, ...]) -> list[ToyConfig]:
        return [config.replace(seed=s) for s in seeds]  # one replicate per RNG seed

    def measured(config: ToyConfig, seeds: tuple[int, ...]) -> tuple[ToyReplicate, ...]:
        return tuple(measure_toy(toy_model(c), c, design) for c in configs(config, seeds))

    if train_all := getattr(toy_model, "train_all", None):  # the fixture's factory trains them in parallel
        train_all(configs(design.two_layer, design.seeds) + configs(design.one_layer, design.one_layer_seeds))

    study = InductionToyStudy(
        two_layer=measured(design.two_layer, design.seeds),
        one_layer=measured(design.one_layer, design.one_layer_seeds),
    )
    plot_toys(study, design.paths, figure)
    replicate_table(study, design.paths).to_csv(table, index=False, float_format="%.4g")
    return study


def replicate_table(study: InductionToyStudy, paths: tuple[str, ...]) -> pd.DataFrame:
    """One row per replicate (its RNG seed in column `seed`): its circuit type and the figures behind it."""
    return pd.DataFrame(
        {
            "layers": t.config.n_layers,
            "seed": t.config.seed,
            "circuit": t.circuit,
            "last_layer_head": t.head,
            "best_offset_score": float(t.offset_scores[-1].max()),
            "previous_token_score": t.previous_token,
            "loss_repeated_half": t.loss,
            **{f"{c}_path_effect": t.path_effect.get(c, float("nan")) for c in paths},
        }
        for t in study.two_layer + study.one_layer
    )


# The offset circuit, per replicate


@dataclass(frozen=True)
class OffsetCopying:
    head: int  # the layer-0 head reading d back
    receiver: int  # the layer-1 circuit head
    through: float  # copying score of `head`'s OV circuit read through the receiver's
    null: float  # the same with random maps of `head`'s rank and norm in its place (mean over draws)
    direct: float  # copying score of `head`'s own OV circuit


def offset_copying(model, t: ToyReplicate, draws: int = 20) -> OffsetCopying:
    """Copying scores over the content tokens (embedding -> L0 OV -> L1 OV -> unembedding) of the
    d-back head read through the layer-1 circuit head, and the null: `draws` random maps
    W_V' W_O' (Gaussian, the head's rank, scaled to its W_V W_O's Frobenius norm; generator seed 0)
    in the d-back head's place, through the same layer-1 head."""
    head, receiver = t.d_back_head, t.head
    content = torch.arange(N_SPECIAL, N_SPECIAL + t.config.n_content)
    attn = model.blocks[0].attn
    ov = attn.W_V[head].detach().float() @ attn.W_O[head].detach().float()
    d_model, d_head = attn.W_V.shape[1:]
    generator = torch.Generator().manual_seed(0)

    def score(path, replace=None) -> float:
        return float(copying_score(ov_circuit(model, path, replace), content).float().mean())

    nulls = []
    for _ in range(draws):
        random = torch.randn(d_model, d_head, generator=generator) @ torch.randn(
            d_head, d_model, generator=generator
        )
        nulls.append(score([(0, head), (1, receiver)], {(0, head): random * ov.norm() / random.norm()}))
    return OffsetCopying(
        head=head,
        receiver=receiver,
        through=score([(0, head), (1, receiver)]),
        null=float(np.mean(nulls)),
        direct=score([(0, head)]),
    )


@dataclass(frozen=True)
class PhaseChange:
    """Where a replicate's loss drop happens, in training steps."""

    start: int  # the loss has fallen 10% of the way from its first to its last value
    end: int  # ... and 90%
    score_step: int  # the best layer-1 offset induction score is half-way to its final value

    @property
    def abrupt(self) -> bool:
        """The drop takes no more steps than the plateau before it."""
        return self.end - self.start <= self.start


def phase_change(history: pd.DataFrame) -> PhaseChange:
    """Loss 10%->90% drop window, and the step where the best layer-1 offset score is half-way to its
    final value."""
    loss = history.loss_repeated_half.to_numpy()
    steps = history.step.to_numpy()
    drop = loss[0] - loss[-1]
    start = steps[np.argmax(loss <= loss[0] - 0.1 * drop)]
    end = steps[np.argmax(loss <= loss[0] - 0.9 * drop)]
    score = history.filter(like="offset_induction_L1").max(axis=1).to_numpy()
    half = steps[np.argmax(score >= score[0] + 0.5 * (score[-1] - score[0]))]
    return PhaseChange(int(start), int(end), int(half))


COLOURS = {"canonical": "tab:blue", "none": "tab:grey"}


def plot_toys(study: InductionToyStudy, paths: tuple[str, ...], path: Path) -> None:

    def colour(t: ToyReplicate) -> str:
        return COLOURS.get(t.circuit, "tab:orange")  # offset circuits in orange

    fig, (ax_loss, ax_score, ax_path) = plt.subplots(1, 3, figsize=(15, 4))
    kinds = {t.circuit.split("-")[0] for t in study.two_layer}
    counts = {k: sum(t.circuit.split("-")[0] == k for t in study.two_layer) for k in kinds}
    in_legend = set()
    for t in study.two_layer:
        kind = t.circuit.split("-")[0]  # one legend entry per kind: canonical, offset, none
        entry = None if kind in in_legend else f"2L {kind} ({counts[kind]} replicates)"
        in_legend.add(kind)
        ax_loss.plot(t.history.step, t.history.loss_repeated_half, color=colour(t), label=entry)
        ax_score.plot(
            t.history.step, t.history.filter(like="offset_induction_L1").max(axis=1), color=colour(t)
        )
    for i, t in enumerate(study.one_layer):
        ax_loss.plot(
            t.history.step,
            t.history.loss_repeated_half,
            color="black",
            ls=":",
            label=None if i else f"1L ({len(study.one_layer)} replicates)",
        )
    ax_loss.set(
        xlabel="training step",
        ylabel="loss on repeated half (nats)",
        title="toy:repeat 2L attn-only: training",
    )
    ax_score.set(xlabel="training step", ylabel="best layer-1 offset induction score")
    ax_loss.legend(fontsize=6)
    x = np.arange(len(study.two_layer))
    for i, component in enumerate(paths):
        ax_path.bar(
            x + (i - 1) * 0.27,
            [t.path_effect[component] for t in study.two_layer],
            0.27,
            label=f"{component} path",
        )
    ax_path.set_xticks(x, [f"s{t.config.seed} {t.circuit}" for t in study.two_layer], fontsize=7, rotation=90)
    ax_path.set(
        ylabel="loss rise, strongest L0->L1 path resampled (nats)",
        title="toy:repeat 2L: K vs Q vs V composition",
    )
    ax_path.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
