"""Dropout and redundancy (the question: HYPOTHESIS, below).

The published record disagrees on its size: self-repair appears in models trained without dropout
(McGrath et al. 2023, the Hydra effect; Rushing & Nanda 2024), while backup name movers were found
in GPT-2, trained with dropout (Wang et al. 2022). A fair test needs models that learned the task
equally well, room for more than one route, and enough replicates to tell levels apart.

Protocol (lib/studies/dropout.py)
1. Models: 3-layer attention-only toys (GPT-NeoX blocks, rotary, 4 heads per layer, d_model 32;
   lib/toy.py) on in-context copying of repeated random tokens (`repeat`). Three layers leave room
   for heads downstream of the induction circuit, and for a second route. Dropout p in
   {0, 0.05, 0.1, 0.2}, on the attention probabilities alone or on the residual stream alone
   (after the embedding and every attention output), 8 replicates per level and kind; the 8 p=0
   models are shared by both kinds. Replicate s is trained with RNG seed s (SEEDS) at every level,
   which fixes its initialisation and data order, so replicate s's models are a matched set.
   Evaluated with dropout off.
2. Matched loss: each of the 56 models trains by the toy loop (lib/matched_loss.py: one CPU thread
   per model, so the same weights on any machine, one process per core; AdamW, lr 1e-3, batch 64)
   and stops the first time its loss on the repeated half of the held-out batch (every `log_every`
   steps) is <= TARGET nats, or at CAP steps. Precondition of every claim: each model in it reached
   TARGET (it learned the task, to the same loss).
3. Probe: BOS + 8 random tokens + the same 8 (64 sequences); task loss = mean next-token loss on the
   2nd..last token of the copy. Ablation: a head's output (hook_z) replaced by its mean over 64
   other sequences. Effect = ablated loss - clean loss (nats). Heads are chosen (the top head in b
   and d, the order in c) on a third batch of 64, the selection batch, and measured on the probe.
4. Per model (attnclaims.redundancy): circuit type (`canonical` when the head with the highest
   induction score at any offset d = 0..3 peaks at d = 0, `offset-d` when it peaks at d > 0,
   `none` below CIRCUIT_MIN = 0.5; d stops at S/2 - 1: beyond it fewer than half the repeated
   half's queries find x_(i+1+d) in the first copy, and at d = 6 = S-2 the key is the previous
   token), the steps it trained, its loss, and
   a. effective heads: exp(entropy) of the shares of positive single-head effects (1 = one head
      carries it all, 12 = all heads equal);
   b. top-head share: the top head's single-head effect / the whole effect (every head ablated);
   c. heads to threshold: heads ablated together, in the order of their single-head effects,
      until the loss is >= clean + THRESHOLD_FRACTION of the whole effect (0.9, not 0.5: at 0.5
      one head sufficed in every earlier 2-layer model, leaving the measure no room to move);
   d. compensation (the Hydra effect, McGrath et al. 2023) for the head with the largest direct
      effect among layers 0-1: the sum over the heads of later layers of their direct effect
      (Rushing & Nanda 2024: its direct path to the logits removed, the final LayerNorm's scale
      frozen) in the run with that head ablated minus in the clean run, leaving out the heads that
      read it (their direct effect falls when it is ablated, on the selection batch: dependence, not
      compensation). Beside it, in each note,
      the self-repair split (direct - total effect): final-LayerNorm rescaling (direct - the effect
      with every later component frozen at its clean output), never counted as redundancy, and
      what the later components' response adds (frozen - total).
   Redundancy rises with a, c, d and falls with b.
5. Claims. The confirmatory family (4, simultaneous CIs at 98.75%): per measure (b, d) x dropout
   kind, the dose trend, the least-squares slope of the signed measure over p in each replicate, CI
   over the 8 replicates, against the measure's minimal effect reached by p = 0.2 (effect / 0.2 per
   unit p). Exploratory (95%): per measure (a, b, d) x kind x p > 0, the paired difference p - p=0
   per replicate, CI over replicates, against the minimal effect. Measure c, and a's trend, are not
   claimed: 8 replicates cannot detect their minimal effects (step 6); they stay in the table and
   the figure. The minimal effects are those of the first design (one head, a fifth of the effect,
   0.05 nats), restored: commit 166bfaf halved two of them with no reason given.
6. Power: each claim's note gives the smallest mean its 8 replicates can detect at its own level
   with 80% power, from the spread of its per-replicate values
   (attnclaims.stats.minimal_detectable_effect): a claim whose minimal effect lies below that cannot
   be supported by this design.
7. Cost: 56 models, each trained to TARGET (440-1500 steps) and measured (about 110 ablation runs
   each): about 7 min cold on 2 cores; warm, it loads the 56 cached models and measures them.
"""

from __future__ import annotations

import pytest

from attnclaims.declaration import Hypothesis
from attnclaims.stats import bootstrap_ci, minimal_detectable_effect
from attnclaims.studies.dropout import (
    DropoutDesign,
    Measure,
    configs,
    group,
    paired,
    reached,
    run_dropout,
    slopes,
)
from attnclaims.toy import ToyConfig

CAP = 1500  # steps: a model that has not reached TARGET by then has not learned the task
# lr 1e-3 and batch 64, not 3e-3 and 32: at those, 1/8 p=0 replicates reached TARGET within 1200 steps (log)
BASE = ToyConfig(
    n_layers=3, n_heads=4, d_model=32, n_content=24, seq_len=8, batch=64, lr=1e-3, steps=CAP, log_every=10
)
MODEL = "toy:repeat 3L attn-only d32"
TARGET = 1.0  # nats on the repeated half; chance is log(24) = 3.18
LEVELS = (0.0, 0.05, 0.1, 0.2)
KINDS = {"attention": "attn_dropout", "residual": "resid_dropout"}
SEEDS = tuple(range(8))  # the replicates' RNG seeds: replicate s is trained with seed s at every level
DESIGN = DropoutDesign(
    base=BASE,
    target=TARGET,
    levels=LEVELS,
    kinds=KINDS,
    seeds=SEEDS,
    threshold_fraction=0.9,
    circuit_min=0.5,  # as test_induction_toys
    model=MODEL,
)
POWER = 0.8
FIGURE = "dropout_redundancy_toy-repeat-3L.png"  # every measure against p, per kind, each replicate's value
TABLE = "dropout_redundancy.csv"  # one row per model: its training and Measured's fields

HYPOTHESIS = Hypothesis("Does training with dropout make a circuit more redundant?", figures=(FIGURE,))

pytestmark = pytest.mark.slow

MEASURES = {
    m.column: m
    for m in (
        Measure(
            "effective_heads",
            "effective number of heads (exp entropy)",
            +1,
            1.0,
            "one more head sharing the effect",
        ),
        Measure("top_head_share", "top head's share of the whole effect", -1, 0.2, "a fifth of the effect"),
        Measure(
            "heads_to_threshold",
            "heads ablated (by single effect) to lose 90% of the whole effect",
            +1,
            1.0,
            "one more head to ablate before the task is lost",
        ),
        Measure(
            "hydra",
            "compensation: rise of direct effects of later heads that do not read the head (Hydra, nats)",
            +1,
            0.09,
            "a tenth of the ablated head's own direct effect at p=0 (0.89 nats, mean of 8 replicates, set "
            "2026-12-03 before this measure ran): backup worth calling redundancy",
        ),
    )
}
# Claimed only where 8 replicates can detect the minimal effect (each note's power figure, first run
# 2026-12-02): heads to 90% nowhere (the trend detects 10.4 per unit p against 5, the pairwise
# 1.07-2.65 heads against 1), effective heads not as a trend (8.7 against 5). Both stay in the
# table and the figure.
TRENDS = [(name, kind) for name in ("top_head_share", "hydra") for kind in KINDS]
COMPARISONS = [
    (name, kind, p)
    for name in ("effective_heads", "top_head_share", "hydra")
    for kind in KINDS
    for p in LEVELS[1:]
]
TREND_LEVEL = 1 - 0.05 / len(TRENDS)  # the confirmatory family's simultaneous level


@pytest.fixture(scope="module")
def study(toy_model, device, results_dir):
    """Every model trained (cached) and measured once; writes the table and the figure."""
    return run_dropout(DESIGN, toy_model, device, results_dir / FIGURE, results_dir / TABLE)


def learned(study, kind: str, levels) -> tuple[bool, str]:
    k, n = reached(study.table, kind, levels)
    shown = ", ".join(f"p={p}" for p in levels)
    return k == n, f"every model reached {TARGET} nats ({k}/{n} of {shown} replicates)"


def power_note(values, confidence: float) -> str:
    mde = minimal_detectable_effect(values, confidence, POWER)
    return f"detectable at {confidence:.2%} with {POWER:.0%} power: {mde:.3g}"


def repair_note(study, kind: str, levels) -> str:
    """Beside the Hydra measure, at the same levels: final-LayerNorm rescaling (reported, never
    counted as redundancy) and the effect of freezing every later component (frozen - total)."""

    def means(column: str) -> str:
        return ", ".join(f"p={p}: {group(study.table, kind, p)[column].mean():.3g}" for p in levels)

    return (
        f"Hydra mean {means('hydra')} (readers left out, mean count {means('hydra_readers')}); "
        f"LayerNorm rescaling (not redundancy) {means('repair_layernorm')}; later components frozen "
        f"(frozen - total effect) {means('repair_heads')}"
    )


# ---------------------------------------------------------------------------------------------
# Claims


def test_every_model_is_trained_and_measured(study):
    """An implementation check, not a claim: every configuration was trained and every measure is
    defined for it. Whether a level learned the task is each claim's precondition."""
    assert len(study.table) == len(configs(DESIGN))
    assert study.table[list(MEASURES)].notna().all().all(), "a measure is undefined for some model"
    assert set(study.table.kind) == {"none", *KINDS}


@pytest.mark.confirmatory
@pytest.mark.parametrize("name, kind", TRENDS, ids=[f"{name}-{kind}" for name, kind in TRENDS])
def test_redundancy_rises_with_dropout(study, claim, name, kind):
    """The dose trend: per replicate, the slope of the signed measure over p in {0, 0.05, 0.1, 0.2}."""
    m = MEASURES[name]
    values = slopes(study.table, m, kind, LEVELS)
    note = power_note(values, TREND_LEVEL)
    if name == "hydra":
        note += "; " + repair_note(study, kind, LEVELS)
    premise = learned(study, kind, LEVELS)
    ci = bootstrap_ci(values, n_resamples=20_000)
    assert claim(
        ci,
        ">=",
        m.effect / LEVELS[-1],
        why=f"{m.why} by p = {LEVELS[-1]}, growing linearly",
        model=MODEL,
        metric=f"{m.what}: slope over {kind} dropout p per replicate, redundant direction (per unit p)",
        unit="replicates",
        precondition=premise,
        note=note,
    )


@pytest.mark.parametrize(
    "name, kind, p", COMPARISONS, ids=[f"{name}-{kind}-p={p}" for name, kind, p in COMPARISONS]
)
def test_dropout_increases_redundancy(study, claim, name, kind, p):
    """Paired by replicate: the measure at p minus at p=0 in the same replicate, redundant direction."""
    m = MEASURES[name]
    values = paired(study.table, m, kind, p)
    note = power_note(values, 0.95)
    if name == "hydra":
        note += "; " + repair_note(study, kind, (0.0, p))
    premise = learned(study, kind, (0.0, p))
    ci = bootstrap_ci(values, n_resamples=20_000)
    assert claim(
        ci,
        ">=",
        m.effect,
        why=m.why,
        model=MODEL,
        metric=f"{m.what}: {kind} dropout p={p} - p=0 paired by replicate, redundant direction",
        unit="replicates",
        precondition=premise,
        note=note,
    )


# Log
# 2026-11-25  Redesigned. The previous study (2-layer toys, p in {0, 0.1, 0.3}, 3 seeds, a fixed 1000 steps)
#   is gone with its claims: its p=0.3 models never learned the task (3.63 nats), so its comparisons were
#   confounded, heads-to-threshold (at 50%) was 1 in every p=0 seed, and 3 seeds gave min-max "CIs".
#   First full run of the new design (56 models, cold, on the shared 2-core machine with other jobs: 10 min
#   51 s wall, 817 s CPU; training 8 min 10 s, measuring 2.5 min; earlier attempts under heavier load ran
#   at 2.5-5.8 s per ensemble step and were stopped). Premise failed: within CAP = 1200 steps, TARGET = 1.0
#   nats was reached by 1/8 seeds at p=0 [0.003, 0.53], attention 4/8, 7/8, 4/8 at p = 0.05, 0.1, 0.2,
#   residual 0/8, 4/8, 0/8 (exact 95% CIs in the ledger). Mean probe loss 1.69 (p=0) to 2.23 (residual 0.2)
#   nats. So all 30 redundancy comparisons are INCONCLUSIVE (skipped, recorded as such), whatever their
#   figures; the figure and results/dropout_redundancy.csv show them for what they are (unmatched loss).
#   Circuit types at the cap: p=0 offset-2 in 5/8, offset-4 in 3/8, canonical in 0/8; canonical in 4, 2,
#   3 of 8 with attention dropout 0.05, 0.1, 0.2; 1, 1, 2 of 8 with residual dropout.
#   Not claims (premise failed; 8 v 8, family-wise CI): downstream-head repair is lower by 0.02-0.30 nats
#   with every dropout than at p=0 (0.30), LayerNorm repair higher (attention p=0.1 +0.14 [0.06, 0.21],
#   Holm p=0.014); heads to 90% of the whole effect average 4.4-7.4 per group (room to move). To be read
#   only once the models learn. Next: CAP >= 3000 steps (or a lower lr schedule
#   that reaches TARGET) so that every model learns; that raises the cold cost to ~25 min here.
#   Learning speed (6 of the models, seeds 0-1, same settings): loss on the repeated half at step 420 was
#   2.20, 2.32 (p=0), 2.50, 2.54 (attention p=0.2), 2.47, 2.66 (residual p=0.2) nats.
#   Pipeline checked end to end (training, cache, measures, comparisons, figure) on 3 seeds x 7 groups
#   trained only 30 steps (target 3.21 nats, not learned): every measure is defined there; that says
#   nothing yet about the room heads-to-threshold has in trained models. A 3-model try at lr 1e-2 was
#   no faster (3.10-3.16 nats at step 60).
#   Training cost: 2.4 ms per model-step in the ensemble vs 5.1 ms one model at a time (best of 3, quiet
#   machine; 2.1x). Measuring one model cost ~6 s under load (loading its bridge 2.3 s).
# 2026-11-25  Cold run on a fresh clone, idle 2 cores (the dropout module: 208 s of setup). Seeds reaching
#   TARGET within CAP: p=0 1/8 [0.003, 0.53]; attention 5/8, 6/8, 5/8; residual 4/8, 2/8, 0/8 at p = 0.05,
#   0.1, 0.2 (the ledger carries these). The ensemble trains on torch's default threads, so these counts
#   differ from the shared-machine run above (4/8, 7/8, 4/8; 0/8, 4/8, 0/8): the premise fails either way
#   and all 30 comparisons stay inconclusive. Training the ensemble on one thread, as lib/toy.py does,
#   would make the counts reproducible across machines.
# 2026-11-25  Redesigned training so that the models learn: lr 1e-3 and batch 64 (were 3e-3 and 32), CAP
#   1500, the ensemble on one CPU thread. A trial on 8 of the configs (seeds 0-3 at p=0, 0-1 at attention
#   and residual p=0.2; it measured learning only, no redundancy measure) reached TARGET in 440-840 steps,
#   where lr 3e-3 at d_model 64 stayed at 1.56-1.82 nats after 1500. Full run (6 min 3 s wall, 360 s CPU,
#   2 cores): seeds reaching TARGET 8/8 [0.63, 1] at p=0 and at every attention level and residual 0.05,
#   0.1; 7/8 [0.47, 1] at residual 0.2 (one seed stopped at the cap: refuted, so its 5 comparisons are
#   inconclusive). Steps to target, median: p=0 510; attention 530, 545, 600; residual 600, 720, 955.
#   Circuit types: p=0 canonical 8/8; with dropout also offset-6 (1-3 of 8) and offset-3 (1).
#   Comparisons at matched loss (8 v 8 seeds, family-wise CI, Holm over 30): 1 of 25 supported: attention
#   dropout 0.2 lowers the top head's share of the whole effect by 0.21 [0.11, 0.32] (Holm p 0.002; 0.05
#   and 0.1: 0.11, 0.15, CIs reaching below the 0.1 effect). Every other comparison refuted: effective
#   heads +0.31, +0.63, +0.88 with attention dropout (needs +0.5; lower bounds -0.40, -0.26, 0.02), ~0
#   with residual dropout; heads to 90% of the whole effect within +-0.75 of p=0's 4.9. Self-repair by
#   downstream heads falls with every dropout (attention -0.02, -0.06, -0.08; residual -0.07, -0.09 nats,
#   from 0.10 at p=0), while LayerNorm rescaling rises with attention dropout (+0.03, +0.05, +0.07 nats,
#   Holm p 0.28, 0.05, 0.03), short of the 0.05 effect by its CI. Verdict: at matched loss, attention
#   dropout spreads the effect over more heads a little (top-head share), but does not buy redundancy
#   that ablation can see, and neither kind makes downstream heads compensate more; residual dropout
#   changes nothing measurable. Figure: results/dropout_redundancy_toy-repeat-3L.png (every measure at
#   matched loss, 55/56 models at TARGET).
#   Training cost at these settings (one thread): 8.4 ms per model-step in an 8-member ensemble vs 9.1 ms
#   one model at a time (300 steps each; 1.09x, where batch 32 gave 2.1x above): at batch 64 stacking the
#   seeds buys little; the ensemble stays for its per-member stop at the matched loss. Cold CI: the
#   module's setup (training and measuring the 56 models) took 342 s.
#   Caveat on the one supported comparison: 3 of the 8 attention-0.2 seeds formed an offset-6 circuit
#   (0 of 8 at p=0), so the lower top-head share may come with that circuit type, not with backup heads.
# 2026-12-01  One decision rule (lib/claims.py). The 30 comparisons are the confirmatory family: simultaneous
#   CIs at 99.83%, redrawn with 60,000 resamples (were 20,000), and adjusted_p is Holm's over their
#   bootstrap p-values (the permutation p is gone). Of the 24 "refuted" before, 5 are refuted: self-repair
#   by downstream heads falls with attention dropout 0.05, 0.1, 0.2 and residual 0.05, 0.1 (-0.023 [-0.089,
#   0.040] to -0.090 [-0.170, -0.019] nats, all below the +0.05 effect); 19 are undecided: effective heads
#   (+0.31, +0.63, +0.88 with attention dropout; the CI at p=0.2, [0.031, 1.77], reaches 0.47 below the
#   0.5 effect), heads to 90% (CIs of about +-2.2 heads against a 1-head effect: 8 v 8 seeds cannot
#   decide it), LayerNorm repair, and the top-head share at p = 0.05, 0.1. Supported: attention dropout
#   0.2 lowers the top head's share by 0.205 [0.108, 0.320] (Holm p 0.010). Residual 0.2: 7/8 seeds
#   reached TARGET, so its 5 comparisons stay inconclusive and its learning claim, 0.875 [0.473, 0.997],
#   is undecided, not refuted. Verdict: compensation by downstream heads falls with dropout; whether
#   dropout spreads the effect over more heads is undecided at 8 v 8 seeds.
# 2026-12-01  Holm now counts a comparison whose premise failed (the 5 at residual p=0.2) as untested,
#   p = 1, and gives it no adjusted p; before, their own p-values let the others step down. No verdict
#   moved; the supported top-head share's Holm p is 0.011 (was 0.010).
# 2026-12-02  The seven "models learn the task" claims are gone (7 rows: 6 supported, and residual p=0.2
#   undecided at 7/8 seeds): each repeated the premise its level's comparisons already state and record
#   (every model of both groups reached the target; residual p=0.2 reached it in 7 of 8 seeds, so its 5
#   comparisons stay inconclusive). An implementation check (every model trained and measured) replaces
#   them.
# 2026-12-02  Paired by seed, a dose trend, the first minimal effects, power. The measurement moved to
#   lib/studies/dropout.py (Measured, a typed row per model). Seed s's models share initialisation and data
#   order at every level, so every comparison is now per seed (paired), CI over the 8 seeds (was an unpaired
#   8 v 8 bootstrap). The confirmatory family is the dose trend, 8 claims (4 measures x 2 kinds, 99.375%):
#   per seed the least-squares slope of the signed measure over p in {0, 0.05, 0.1, 0.2}, against the
#   minimal effect reached by p = 0.2. The 24 pairwise comparisons become exploratory (95%). Minimal effects
#   restored to the first design's: effective heads +1 (was 0.5), top-head share 0.2 (was 0.1); 166bfaf
#   had halved them without a reason. LayerNorm rescaling is no longer a redundancy claim (its 6 rows
#   removed); it is in the notes of the repair claims (0.18 nats at p=0, 0.21-0.26 with attention dropout).
#   Run on the cached 56 models (33 s): trends, attention dropout: top-head share 0.957 [0.553, 1.42] per
#   unit p (needs 1.0: undecided), effective heads 4.37 [-0.28, 8.73] (needs 5: undecided), heads to 90%
#   3.07 [-2.93, 7.79] (undecided), repair by downstream heads -0.412 [-0.600, -0.215] (refuted: it falls);
#   residual trends inconclusive (one p=0.2 seed never reached the target). Power, at each claim's own
#   level with 80% power, from the spread of its per-seed values: the trends can detect 0.83 (top-head
#   share, against 1.0), 0.38 (repair, against 0.25), 8.7 (effective heads, against 5) and 10.4 (heads to
#   90%, against 5) per unit p: with 8 seeds the last two cannot reach their minimal effects (about 24 and
#   35 seeds would), and the pairwise ones detect 0.70-2.65 heads against 1. Verdicts moved (exploratory
#   now, paired, restored thresholds): top-head share at attention p=0.2 0.205 [0.133, 0.281] supported ->
#   undecided (against 0.2, was 0.1); refuted where the whole CI lies below the restored effect: top-head
#   share at attention 0.05 (0.106 [0.039, 0.169]) and residual 0.05, 0.1; effective heads at attention 0.05
#   (0.314 [-0.095, 0.690]) and residual 0.05, 0.1; heads to 90% at residual 0.05. Not done here: the Hydra
#   measure (downstream heads' direct effects), and restricting circuit_type's offsets to the task's.
# 2026-12-03  Compensation is the Hydra effect; circuit offsets are the task's; measures that cannot decide
#   are no longer claimed. Run on the cached 56 models (2 threads). (1) The repair claims took the effect of
#   freezing every later component (frozen - total); they now take the change in the later heads' direct
#   effects when the top head is ablated (attnclaims.redundancy.hydra_effect; a hand computation in
#   tests/test_redundancy.py), 8 rows renamed repair_heads -> hydra. Mean at p=0 -0.043 nats (< 0: the later
#   heads lose direct effect, the induction head reads the ablated head), attention dropout -0.039, -0.015,
#   -0.012, residual -0.042, 0.003, 0.039. Trend with attention dropout 0.164 [0.044, 0.289] per unit p
#   (needs 0.25: undecided; the frozen measure fell, -0.41, refuted); pairwise attention 0.05 and 0.2 and
#   residual 0.05 refuted (0.004, 0.030 [0.014, 0.047], 0.001 against 0.05), attention and residual 0.1
#   undecided. LayerNorm rescaling (0.18 -> 0.21-0.26 nats with attention dropout) and the frozen split are
#   in each note. (2) circuit_type searched offsets d = 0..6 with S = 8, where d = 6 is the previous token;
#   it now searches d = 0..3 (S/2 - 1): every model is canonical but one residual-0.05 seed (offset-3). The
#   caveat of 2026-11-25 (offset-6 circuits in 3 of 8 attention-0.2 seeds) falls: those heads peak at d = 0
#   among the task's offsets. (3) Heads to 90% (its 2 trend and 6 pairwise rows) and the effective-heads
#   trend (2 rows) are removed: 8 seeds cannot detect their minimal effects (10.4 and 8.7 per unit p
#   against 5; 1.07-2.65 heads against 1 pairwise). The family is 4 trends at 98.75%: top-head share with
#   attention dropout 0.957 [0.573, 1.37] (needs 1.0, undecided), residual trends inconclusive (7/8 seeds at
#   p=0.2 reached the target). No other verdict moved.
# 2026-12-03  Heads chosen on other sequences than they are measured on: the top head (top-head share), the
#   head whose compensation is measured, and the ablation order of heads to 90% are chosen on a selection
#   batch (seed 456) and measured on the probe (seed 123), where one batch did both. The choice changed in
#   a few models only: e.g. trend of the top-head share with attention dropout 0.957 -> 0.953 [0.569, 1.37],
#   Hydra 0.164 -> 0.165 [0.045, 0.291]; no verdict moved.
# 2026-12-03  A claim whose premise failed records no figure: the residual-dropout claims that include p=0.2
#   (one of its 8 seeds never reached the target; 2 trends and 3 comparisons) keep the figure measured anyway
#   in their notes only. Their verdict stays inconclusive.
# 2026-12-03  One training loop. The ensemble (lib/ensemble.py: its own forward, and one mask generator
#   shared by all members) is gone: each model trains by the toy loop (lib/matched_loss.py), its dropout
#   masks drawn from its own seed's generator, 2 processes at once: 389 s cold for the 56 (the ensemble took
#   10.5 min on one thread on the same machine). A model stopped at step k is now bitwise the toy of
#   steps = k (tests/test_matched_loss.py). The p=0 models are unchanged (same stopping steps, measures
#   within 1.4e-5); every dropout model has other masks, so every dropout figure moved. All 56 reached
#   TARGET (residual p=0.2 8/8, median 960 steps; was 7/8), so the residual p=0.2 claims are decided now.
#   Trends: attention, top-head share 0.958 [0.477, 1.49] undecided (was 0.953); Hydra 0.124 [0.003, 0.238]
#   refuted (was 0.165 [0.045, 0.291], undecided); residual, top-head share -0.282 [-1.18, 0.582] refuted,
#   Hydra 0.271 [0.026, 0.532] undecided (both were inconclusive). Pairwise: Hydra at attention 0.1, 0.027 ->
#   0.011 [-0.010, 0.032], undecided -> refuted; at residual 0.05, 0.001 -> 0.030 [0.010, 0.052], refuted ->
#   undecided; at residual 0.2, effective heads 0.410 [-0.854, 1.86] undecided, Hydra 0.057 [0.019, 0.098]
#   undecided, top-head share -0.061 [-0.182, 0.053] refuted. 8 of 22 verdicts moved with the masks alone.
#   One model (residual 0.2, seed 5, 1330 steps) now has no circuit by circuit_type (best score < 0.5).
# 2026-12-03  CIs that hold their level (bootstrap_ci of a mean is now a studentized bootstrap, shares
#   Fieller's interval, an end may be infinite where the data cannot bound it; README coverage table),
#   rerun on both models (2 threads): 4 verdicts moved:
#   test_dropout_increases_redundancy[effective_heads-residual-p=0.1] on toy:repeat 3L attn-only d32:
#   refuted 0.1031 [-0.5679, 0.8777] -> undecided 0.1031 [-0.6702, 1.222];
#   test_dropout_increases_redundancy[hydra-residual-p=0.05] on toy:repeat 3L attn-only d32: undecided
#   0.02983 [0.009884, 0.05155] -> refuted 0.016 [0.001578, 0.0784];
#   test_redundancy_rises_with_dropout[hydra-attention] on toy:repeat 3L attn-only d32: refuted 0.1238
#   [0.003489, 0.2385] -> undecided 0.05493 [-0.01556, 0.5815];
#   test_redundancy_rises_with_dropout[top_head_share-residual] on toy:repeat 3L attn-only d32: refuted
#   -0.282 [-1.176, 0.5819] -> undecided -0.282 [-1.854, 1.124].
# 2026-12-03  Hydra leaves out the later heads that read the ablated head (their direct effect falls on
#   the selection batch: dependence, not compensation), and its threshold is 0.09 nats, a tenth of the
#   ablated head's own direct effect at p=0 (0.89, mean of 8 seeds; set before this run; was 0.05, the
#   old repair measure's). Mean at p=0 is now 0.0025 nats (3.5 later heads left out as readers), where
#   it was -0.043 with them in (the moves above include this change); trends: attention 0.055 [-0.016,
#   0.58], residual 0.23 [-0.038, 1.29].
# 2026-12-06  One meaning per word: a trained model is one of 8 replicates per level, and "seed" means
#   its RNG seed only (replicate s is trained with seed s at every level; the entries above say "seed"
#   for both). The claims' metrics say "per replicate" and their unit is "replicates" (were "per seed",
#   "seeds"); no claim is renamed, figures and verdicts unchanged.
#   The direct effects (and so Hydra) are now computed by holding every later component at its clean
#   value (attnclaims.paths.DirectPath, the one definition, shared with the entailment file's), where the
#   head's change was removed at the final LayerNorm's input: the same quantity by linearity, equal
#   within 5e-7 nats per model. Rerun on the 56 toys retrained from scratch (1 thread; the ledger's
#   figures were measured with 2): no verdict moved; 9 figures move in their 4th significant digit,
#   of which 2 from this change alone (measured with 1 thread both ways): hydra-attention-p=0.05's CI
#   end -0.3303 -> -0.3302, hydra-residual-p=0.05's 0.001578 -> 0.001577; the rest from the thread count
#   (e.g. effective_heads-attention-p=0.05 0.4161 -> 0.4162, which uses no direct effect).
