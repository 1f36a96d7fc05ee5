"""Does the entailment protocol find entailment where it is known to be, and refuse it where it is not?

Question. test_entailment_head_switching.py runs the protocol on the real models, where nobody knows
the mechanism. Here the same code (entailment_study.run_entailment_study: the same pairs'
design, selection, measures and controls) runs on toys whose truth is known: models trained by the
suite to chain two rules, organisms whose mechanism is built by code with a placement nobody chose,
and cheats that answer without chaining. A protocol worth running on a real model names the built
mechanism and supports no entailment claim on a cheat.

Models (each reads the two-hop task, lib/tasks/two_hop.py: "<bos> c3 b5 . b0 a7 . c1 b0 . b5 a2 .
?2 c3" -> a2; prompts ask about chains held out of training):
- toy:two-hop-3L: TRAINED (lib/studies/two_hop_training.py: 3 attention-only layers, rotary
  positions, one query per sequence, half of them two-hop, a quarter of the sequences repeated runs;
  the configuration its logged search found learning most often) over REPLICATES fresh replicates
  (seeds 5-9, none of those the search chose it on); the ones that learned (held-out accuracy
  >= 0.95 in each of the 12 rule orders) are the subject of the protocol's claims, one figure per
  replicate.
- toy:organisms: N_ORGANISMS organisms generated from ORGANISM_SEED (lib/studies/organisms.py): hop 1
  carried by a head, split over two heads, computed by an MLP from operands a head gathers, or made
  at earlier positions; sharp or soft hops; distractor heads that attend as sharply as a hop head;
  recency and candidate heads. One figure per organism.
- toy:cheat-position (answers the answer stated in the same place as the query's condition, right on
  same-order prompts only) and toy:cheat-recency (answers the answer stated last). One figure per pair.

Protocol (run_entailment_study with DESIGN, on PAIRS chain pairs drawn with PAIR_SEED, every third a
discovery pair; a pair is its own group, the unit on a single model)
1. The clean run: LD, whether the top-1 token is the entailed answer, final-row attention.
2. Discovery pairs: every head's pattern swap; the hop heads are those that remove at least a quarter
   of the discovery sensitivity (at most 4), each labelled hop 1 or 2 by where its attention follows
   the fact; the switch heads by their single switch.
3. Confirmation pairs: the claims below, and the recovery of what was built.
Measures on one side only: the one-hop control and the token-before-answer copy test are the real
models' (on a toy the token before an answer is its bridge, the chain itself); recovery against the
built carriers is the organisms'; learning is the trained toys'.

Entailment claims (ENTAILMENT): accuracy in crossed rule orders, the crossed-order sensitivity, the
hop heads' fact-following and their pattern carrying the sensitivity. The switch claim is about
attention deciding the answer, which a model that copies by recency has too. Every row here is a
check of the protocol (role check): outside the real models' families and verdict tallies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from attnclaims.arms import CLEAN
from attnclaims.claims import Premise
from attnclaims.declaration import Hypothesis
from attnclaims.effects import mean_ci, share_ci
from attnclaims.heads import Head, label
from attnclaims.stats import binomial_ci, bootstrap_ci, t_ci
from attnclaims.studies.entailment_arms import HOP_SWAP, HOP_SWAP_CONTROL, SameLayer, Switch
from attnclaims.studies.entailment_results import EntailmentStudy
from attnclaims.studies.entailment_study import EntailmentDesign
from attnclaims.studies.ground_truth import plot_recovery, run_ground_truth
from attnclaims.studies.organisms import CHEATS, carriers, generate
from attnclaims.studies.two_hop_training import (
    FRESH,
    LEARNED,
    TARGET,
    TRAINED,
    accuracy_by_order,
    replicates,
    train,
)
from attnclaims.studies.two_hop_training import plot as plot_training
from attnclaims.toy import ToyConfig, training_history

pytestmark = pytest.mark.check  # the protocol on models whose truth is known: checks, not real-model claims

DESIGN = EntailmentDesign(
    k=3,  # switch heads moved together, as on the real models
    dose_k=(1, 3),
    dose_alpha=(0.0, 1.0),
    control_draws=3,
    n_induction=2,
    discovery_fraction=1 / 3,  # every third pair (entailment_pairs.chain_pairs)
    order_sets=(),
    copy_test=False,  # the token before an answer is its bridge here: the real models' test only
)
PAIRS, PAIR_SEED = 240, 11  # 160 confirmation pairs: a 0/1 rate's CI is about +-0.08 wide
REPLICATES = 5  # seeds FRESH.. (5-9): the recipe was chosen on seeds 0-4 (two_hop_training.SEARCH)
N_ORGANISMS, ORGANISM_SEED = 12, 0  # three of each way to make hop 1
SUBJECTS = ["toy:two-hop-3L", "toy:organisms", *(cheat.name for cheat in CHEATS.values())]
ENTAILMENT = (  # the claims that say a model entails (same-order accuracy does not: order matching passes it)
    "test_answers_heldout_prompts[crossed-order]",
    "test_answer_follows_the_fact_when_rule_orders_are_crossed",
    "test_hop_heads_follow_the_fact",
    "test_hop_heads_pattern_carries_the_sensitivity",
)
SWITCH, SAME_LAYER = Switch(k=DESIGN.k), tuple(SameLayer(draw) for draw in range(DESIGN.control_draws))
HELD_OUT = {"split": "confirmation"}
TRAINING, RECOVERY = "entailment_ground_truth_training.png", "entailment_ground_truth_recovery.png"
HYPOTHESIS = Hypothesis(
    "Does the entailment protocol find entailment where it is known to be, and refuse it where it is not?",
    figures=(TRAINING, RECOVERY, "two_hop_training.png"),  # the last: the logged search (two_hop_training)
    arms=(CLEAN, SWITCH, *SAME_LAYER, HOP_SWAP, HOP_SWAP_CONTROL),
)


@dataclass(frozen=True)
class Subject:
    """One model, or a population of them (replicates, organisms), and the unit of its figures."""

    name: str
    unit: str  # what a figure's n counts
    studies: list  # EntailmentStudy per model
    note: str = ""

    @property
    def measured(self) -> tuple[bool, str]:
        return bool(self.studies), f"a model to measure ({self.note or 'none'})"

    def mean(self, figure):
        """The CI of `figure(study)`'s mean: over pairs on one model (bootstrap-t), over models in a
        population (Student t: a handful of units; a point where every model gives the same figure)."""
        if len(self.studies) == 1:
            return mean_ci(figure(self.studies[0]))
        return _over_models([float(figure(study).mean()) for study in self.studies])

    def share(self, numerator, denominator):
        """A share on one model (Fieller, its denominator a premise); on a population, the mean of the
        models' shares."""
        if len(self.studies) == 1:
            return share_ci(numerator(self.studies[0]), denominator(self.studies[0]))
        return _over_models([numerator(s).sum() / denominator(s).sum() for s in self.studies])


def _over_models(values):
    values = np.asarray(values, dtype=float)
    return bootstrap_ci(values) if np.ptp(values) == 0 else t_ci(values)


@pytest.fixture(scope="module")
def trained(toy_model, results_dir) -> dict[ToyConfig, float]:
    """Every replicate of TRAINED, trained in parallel processes (one per torch thread of the run) until
    it learns or reaches the cap, then cached: its worst rule order's held-out two-hop accuracy. Writes
    their held-out loss curves (TRAINING)."""
    configs = train(replicates(TRAINED, REPLICATES, first=FRESH), workers=torch.get_num_threads())
    histories = [training_history(c).assign(run="recipe", replicate=c.seed) for c in configs]
    plot_training(pd.concat(histories, ignore_index=True), results_dir / TRAINING)
    return {config: float(accuracy_by_order(toy_model(config), config).min()) for config in configs}


@pytest.fixture(scope="module")
def organisms():
    return generate(N_ORGANISMS, ORGANISM_SEED)


@pytest.fixture(scope="module")
def studies(trained, organisms) -> dict[str, list[EntailmentStudy]]:
    """The protocol on every toy, several at once: {subject: its models' studies}."""
    learned = [config for config, worst in trained.items() if worst >= LEARNED]
    cheats = list(CHEATS.values())
    done = iter(run_ground_truth([*learned, *organisms, *cheats], DESIGN, PAIRS, PAIR_SEED))
    out = {"toy:two-hop-3L": [next(done) for _ in learned], "toy:organisms": [next(done) for _ in organisms]}
    return out | {cheat.name: [next(done)] for cheat in cheats}


@pytest.fixture(scope="module", params=SUBJECTS)
def toy_name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def subject(toy_name, studies, trained) -> Subject:
    if toy_name == "toy:two-hop-3L":  # one figure per replicate that learned (one alone: per pair)
        learned = studies[toy_name]
        note = f"{len(learned)} of {len(trained)} replicates learned, the subject here"
        return Subject(toy_name, "replicates" if len(learned) > 1 else "pairs", learned, note)
    return Subject(toy_name, "organisms" if toy_name == "toy:organisms" else "pairs", studies[toy_name])


def entails(subject: Subject):
    """The premise of the claims that presume entailment: the crossed-order sensitivity is above 0."""
    if not subject.studies:
        return subject.measured
    return Premise(
        subject.mean(lambda s: s.sensitivity(CLEAN, crossed=True, **HELD_OUT)),
        ">",
        0.0,
        "the answer follows the query when rule orders are crossed",
    )


# ---------------------------------------------------------------------------------------------
# Training: does the suite's own loop teach a toy two hops?


def test_training_learns_two_hops(trained, claim):
    worst = list(trained.values())
    k = sum(w >= LEARNED for w in worst)
    assert claim(
        binomial_ci(k, len(worst)),
        ">=",
        0.5,
        why="most replicates: the recipe, not a lucky seed",
        metric="share of replicates whose held-out two-hop accuracy is >= 0.95 in all 12 rule orders",
        model="toy:two-hop-3L",
        unit="replicates",
        note=f"worst rule order per replicate (seeds {[c.seed for c in trained]}) "
        f"{np.round(worst, 3).tolist()}; stopped at steps {[config.steps for config in trained]} "
        f"(the cap {TRAINED.steps}, or where held-out two-hop loss <= {TARGET[1]})",
    )


# ---------------------------------------------------------------------------------------------
# Entailment claims, on every subject


@pytest.mark.parametrize("crossed", [False, True], ids=["same-order", "crossed-order"])
def test_answers_heldout_prompts(subject, crossed, claim):
    assert claim(
        subject.mean(lambda s: s.accuracy(crossed=crossed, **HELD_OUT)) if subject.studies else None,
        ">=",
        0.95,
        why="a model that entails: at most 1 prompt in 20 wrong",
        metric="held-out accuracy (top-1 = entailed answer), two-hop",
        unit=subject.unit,
        precondition=subject.measured,
        note=subject.note,
    )


def test_answer_follows_the_fact_when_rule_orders_are_crossed(subject, claim):
    sensitivity = lambda crossed: subject.mean(lambda s: s.sensitivity(CLEAN, crossed=crossed, **HELD_OUT))
    assert claim(
        sensitivity(True) if subject.studies else None,
        ">=",
        1.0,
        why="the entailed answer's odds move by a factor e or more between the pair's texts",
        metric="sensitivity LD(text a) - LD(text b), two-hop, crossed rule orders",
        unit=subject.unit,
        precondition=subject.measured,
        note=f"same-order pairs {sensitivity(False)}" if subject.studies else "",
    )


def hop_following(study: EntailmentStudy) -> pd.Series:
    """Per pair (crossed orders): the hop heads' fact-following on their own hop, minus their controls'."""
    heads = study.heads
    controls = dict(zip(heads.hop_controls, (heads.hop_of[h] for h in heads.hop)))
    own = study.following(heads.hop, heads.hop_of, crossed=True, **HELD_OUT)
    return own - study.following(heads.hop_controls, controls, crossed=True, **HELD_OUT)


def test_hop_heads_follow_the_fact(subject, claim):
    found = [s for s in subject.studies if s.heads.hop]
    every = bool(subject.studies) and len(found) == len(subject.studies)
    assert claim(
        subject.mean(hop_following) if every else None,
        ">=",
        0.5,
        why="half of the head's final-row weight moves with the fact, beyond a head of its layer",
        metric="hop heads' attention(entailed - other) on their hop's word, minus same-layer heads, crossed",
        unit=subject.unit,
        precondition=(
            every,
            f"the protocol named hop heads in every model ({len(found)} of {len(subject.studies)})",
        ),
        note="; ".join(f"{label(s.heads.hop)} ({', '.join(s.heads.hop_of.values())})" for s in found[:4]),
    )


def test_hop_heads_pattern_carries_the_sensitivity(subject, claim):
    clean = lambda s: s.sensitivity(CLEAN, crossed=True, **HELD_OUT)
    removed = lambda s: -s.sensitivity(HOP_SWAP, change=True, crossed=True)
    named = bool(subject.studies) and all(s.heads.hop for s in subject.studies)
    assert claim(
        subject.share(removed, clean) if named else None,
        ">=",
        0.5,
        why="half: the hop heads' pattern carries most of the sensitivity (2 = it follows the other text)",
        metric="share of crossed-order sensitivity removed by swapping the hop heads' final-row pattern",
        unit=subject.unit,
        precondition=entails(subject) if named else (False, "the protocol named no hop head in some model"),
    )


# ---------------------------------------------------------------------------------------------
# The switch: attention decides the answer (not an entailment claim)


def test_switch_moves_the_answer_beyond_its_control(subject, claim):
    """The original question's switch, on every subject: the top 3 switch heads' weight on the entailed
    answer moved to the alternative, against same-layer heads moving as much attention."""
    beyond = lambda s: s.switch_rate(SWITCH) - s.switch_rate(SAME_LAYER)
    assert claim(
        subject.mean(beyond) if subject.studies else None,
        ">=",
        0.5,
        why="the switch makes the alternative the answer in half the prompts its control does not",
        metric="switch rate to the alternative, top 3 switch heads minus same-layer controls",
        unit=subject.unit,
        precondition=subject.measured,
        note=f"switch heads {label(subject.studies[0].heads.top)}" if subject.studies else "",
    )


# ---------------------------------------------------------------------------------------------
# Recovery: does the protocol name what was built?


@dataclass(frozen=True)
class Recovery:
    organism: str
    hop1_by: str
    built: frozenset  # the heads and MLPs that carry a hop
    named: frozenset  # the hop heads the protocol named

    @property
    def recall(self) -> float:
        return len(self.built & self.named) / len(self.built)

    @property
    def precision(self) -> float:
        return len(self.built & self.named) / len(self.named) if self.named else float("nan")


@pytest.fixture(scope="module")
def recovery(organisms, studies, results_dir) -> list[Recovery]:
    plot_recovery(organisms, studies["toy:organisms"], results_dir / RECOVERY)
    out = []
    for spec, study in zip(organisms, studies["toy:organisms"]):
        built = frozenset(part for parts in carriers(spec).values() for part in parts)
        out.append(Recovery(spec.name, spec.hop1_by, built, frozenset(Head(*h) for h in study.heads.hop)))
    return out


@pytest.mark.parametrize("measure", ["recall", "precision"])
def test_protocol_recovers_the_hop_heads(recovery, measure, claim):
    """Recall: an organism counts when the protocol names every part built to carry a hop (an MLP hop
    has no head to name; an early hop's heads act before the final position). Precision: when every
    head it names was built to carry a hop (distractors as sharp as a hop head included)."""
    whole = [getattr(r, measure) == 1.0 for r in recovery]
    by_kind = (
        pd.DataFrame(
            {"kind": [r.hop1_by for r in recovery], "recall": [r.recall for r in recovery]}
            | {"precision": [r.precision for r in recovery]}
        )
        .groupby("kind")[measure]
        .mean()
    )
    assert claim(
        binomial_ci(sum(whole), len(whole)),
        ">=",
        {"recall": 0.75, "precision": 0.7}[measure],
        why={
            "recall": "three organisms in four: it names what was built wherever a head carries a hop",
            "precision": "distractors as sharp as the hop heads fool it in under 3 organisms in 10",
        }[measure],
        metric=f"share of organisms with {measure} 1 (hop heads named vs built)",
        model="toy:organisms",
        unit="organisms",
        note=f"mean {measure} by hop 1's making: "
        + ", ".join(f"{kind} {value:.2f}" for kind, value in by_kind.items()),
    )


# Log
# 2026-12-06  First run (1 thread; 240 pairs, 160 confirmation; trained toys loaded from the cache).
#   Training: the logged search (two_hop_training.SEARCH, 6 configurations x replicates 0-4, cap 8000
#   steps; results/two_hop_training*.csv and .png) learned (>= 0.95 in all 12 rule orders) in base 2/5
#   [0.05, 0.85], 16 words a kind 0/5 [0, 0.52] (worst order 0.45-0.47), no repeated runs 3/5, rotary
#   positions 4/5 [0.28, 0.99], with MLPs 2/5, 4 layers 2/5; a replicate that has not learned sits at
#   ln 2 (it picks one of the two answers by pairings it saw). Rotary positions became the recipe; on
#   fresh seeds 5-9 it learned 4/5, 0.8 [0.28, 0.99]: undecided against 0.5 (5 replicates cannot
#   decide it); training the 5 took 7 min on 2 processes. The 4 that learned answer every held-out
#   prompt (1.0 in both orders, supported) with crossed sensitivity 16.0 [10.2, 21.9] (supported); their
#   hop heads sit in layers 1 (hop 1) and 2 (hop 2) and follow the fact by 0.52 [0.22, 0.81] beyond
#   same-layer heads, their pattern swap removes 0.73 [-0.05, 1.51] of the sensitivity, the switch
#   moves the answer in 0.34 [-0.38, 1.05] more prompts than its control: undecided at 4 replicates.
#   Organisms (12): accuracy 1.0, crossed sensitivity 18.4 [17.1, 19.7], switch 0.87 [0.72, 1.02]:
#   supported; hop heads follow 0.69 [0.50, 0.87] and pattern 1.0 [0.34, 1.66]: undecided. Recovery:
#   precision 12/12 [0.74, 1], supported (no distractor named, though 1-2 per organism attend as sharply
#   as a hop head); recall 6/12 [0.21, 0.79], undecided against 0.75: every attention and split
#   organism recovered whole (soft hops at sharpness 3.2-4.7 included); on MLP organisms it names the
#   hop 2 head and cannot name the MLP (recall 0.5); on early organisms it names the final-position
#   head only and labels it hop 1 (recall 0.33). Cheats: toy:cheat-position same-order accuracy 1.0
#   (supported), crossed 0 and crossed sensitivity -20.0 (refuted), its hop heads follow -0.5
#   (refuted); toy:cheat-recency accuracy 0.5 and sensitivity 0 (refuted), no hop heads named
#   (inconclusive); no entailment claim supported on either, and the switch claim is supported on both
#   (1.0): switching shows attention deciding the answer, in a model that entails or not. What it means
#   for the real models: their negative or null crossed sensitivity is the position cheat's signature,
#   and their hop heads follow the fact by -0.02 / -0.003 where organisms' follow by 0.69 and trained
#   toys' by 0.52.
#   Rerun from an empty cache (2 threads): the 5 replicates retrained in 445 s on 2 processes, the file
#   took 8 min 13 s, and every ledger figure came back to 4 significant digits.
