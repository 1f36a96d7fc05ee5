"""Where are the induction heads: in attention-only toys trained from scratch, and in smollm2-135m?

From the session planner: "try to find the induction heads in a toy model from scratch". Anchor:
Olsson et al. 2022, "In-context learning and induction heads": a layer-1 head attends from each token
of a repeated sequence to the token that followed its first occurrence (prefix matching) and copies
it, composing with a layer-0 previous-token head (K-composition).

Protocol
1. Toys (lib/toy.py, GPT-NeoX blocks with rotary positions, MLPs fixed at zero): 2-layer and 1-layer
   attention-only models, 4 heads, d_model 64, 5 and 3 seeds, trained 1000 steps on in-context copying
   (lib/tasks.py `repeat`). Evaluated on BOS + S=16 random tokens + the same 16 again. CIs over seeds.
2. K-composition: mean-ablate all layer-0 heads (reference: other random sequences) and re-measure
   the layer-1 heads' attention pattern.
3. Phase change: from the training log, the steps over which the loss on the repeated half falls
   from 10% to 90% of its total drop, and the step where the layer-1 attention score crosses half
   its final value.
4. smollm2-135m: induction scores of all 270 heads on a discovery batch of repeated random tokens;
   the top 5 are confirmed on a disjoint batch; ablate them (mean over other sequences) and compare
   the loss on the repeated half with ablating 5 random heads from the same layers (20 draws).
5. Attention entropy of the top heads vs the other heads of their layers, on the repeated half.

Measures (lib/scores.py): induction score = mean attention from q in the second copy to q-S+1;
offset induction score = the same to q-S+1+d, best d in 0..7 (a head that reads the next token
from d tokens later); previous-token score = mean attention from q to q-1; loss on the repeated half
= mean next-token loss on the 2nd..last token of the second copy; entropy in nats.
"""

from __future__ import annotations

import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from transformer_lens.head_detector import detect_head  # noqa: E402

from lib import hooks as H  # noqa: E402
from lib.metrics import per_position_loss  # noqa: E402
from lib.scores import (  # noqa: E402
    attention_patterns,
    entropy_from_pattern,
    induction_score_from_pattern,
    offset_induction_score_from_pattern,
    previous_token_score_from_pattern,
)
from lib.stats import bootstrap_ci, bootstrap_ci_two_sample  # noqa: E402
from lib.tasks import repeat_batch, repeated_tokens  # noqa: E402
from lib.toy import ToyConfig, training_history  # noqa: E402

TWO_LAYER_SEEDS = (0, 1, 2, 3, 4)
ONE_LAYER_SEEDS = (0, 1, 2)
TWO_LAYER = ToyConfig(n_layers=2, n_heads=4, d_model=64, steps=1000, log_every=20)
ONE_LAYER = TWO_LAYER.replace(n_layers=1)
S = 16
TOP_K = 5


def toy_eval_tokens(seed: int = 123, batch: int = 64) -> torch.Tensor:
    return repeat_batch(torch.Generator().manual_seed(seed), batch, S, TWO_LAYER.n_content)


def repeated_half_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[batch] mean next-token loss on the 2nd..last token of the second copy."""
    return per_position_loss(tokens)(logits)[:, S + 1 :].mean(1)


@pytest.fixture(scope="module")
def toys(toy_model) -> dict:
    tokens, reference = toy_eval_tokens(), toy_eval_tokens(seed=321)
    out = {"two": [], "one": []}
    for kind, base, seeds in (("two", TWO_LAYER, TWO_LAYER_SEEDS), ("one", ONE_LAYER, ONE_LAYER_SEEDS)):
        for seed in seeds:
            config = base.replace(seed=seed)
            model = toy_model(config)
            patterns = attention_patterns(model, tokens)  # [layer, batch, head, q, k]
            with torch.no_grad():
                loss = repeated_half_loss(model(tokens), tokens).mean().item()
            entry = {
                "config": config,
                "induction": torch.stack([induction_score_from_pattern(p, S).mean(0) for p in patterns]),
                "offset": torch.stack([offset_induction_score_from_pattern(p, S).mean(0) for p in patterns]),
                "previous": torch.stack([previous_token_score_from_pattern(p).mean(0) for p in patterns]),
                "loss": loss,
                "history": training_history(config),
            }
            if kind == "two":
                _, ref_cache = model.run_with_cache(reference)
                ablate = H.ablate_heads(model, [(0, h) for h in range(model.cfg.n_heads)], "mean", ref_cache)
                seen = {}
                model.run_with_hooks(tokens, fwd_hooks=ablate + [("blocks.1.attn.hook_pattern", lambda p, hook: seen.setdefault("p", p))])
                entry["offset_ablated"] = offset_induction_score_from_pattern(seen["p"], S).mean(0)
            out[kind].append(entry)
    return out


def best_layer1(entry) -> float:
    """The best layer-1 head's offset induction score (best offset)."""
    return float(entry["offset"][1].max())


# ---------------------------------------------------------------------------------------------
# 1. From scratch


@pytest.mark.xfail(strict=True, reason="refuted: mean 0.55 [0.18, 0.92] over 5 seeds; 3 seeds 0.92-0.93, 2 seeds 0.00 (offset-4 circuit)")
def test_two_layer_toy_forms_a_canonical_induction_head(toys, claim):
    ci = bootstrap_ci([float(t["induction"][1].max()) for t in toys["two"]])
    assert claim(model="toy:repeat 2L attn-only", metric="best layer-1 induction score (offset 0), per seed",
                 value=ci.estimate, ci=ci, n=ci.n, threshold=0.5)  # fmt: skip


def test_two_layer_toy_forms_an_offset_induction_head(toys, claim):
    scores = [best_layer1(t) for t in toys["two"]]
    heads = [int(t["offset"][1].max(-1).values.argmax()) for t in toys["two"]]  # [head, offset] -> best head
    best_d = [int(t["offset"][1][h].argmax()) for t, h in zip(toys["two"], heads)]
    ci = bootstrap_ci(scores)
    assert claim(model="toy:repeat 2L attn-only", metric="best layer-1 offset induction score, per seed", value=ci.estimate,
                 ci=ci, n=ci.n, threshold=0.5, note=f"best heads L1H{heads}, offsets d={best_d}")  # fmt: skip


@pytest.mark.xfail(strict=True, reason="refuted: mean 0.54 [0.19, 0.88] over 5 seeds; 0.83-0.91 where layer 1 is canonical, 0.03 elsewhere")
def test_layer0_has_a_previous_token_head(toys, claim):
    ci = bootstrap_ci([float(t["previous"][0].max()) for t in toys["two"]])
    assert claim(model="toy:repeat 2L attn-only", metric="best layer-0 previous-token score, per seed", value=ci.estimate,
                 ci=ci, n=ci.n, threshold=0.5)  # fmt: skip


def test_canonical_induction_comes_with_a_previous_token_head(toys, claim):
    """Olsson's pairing: in the seeds whose best layer-1 head has induction score >= 0.5, layer 0 has a
    previous-token head (the head layer 1 K-composes with)."""
    canonical = [t for t in toys["two"] if float(t["induction"][1].max()) >= 0.5]
    if len(canonical) < 2:
        pytest.skip(f"only {len(canonical)} seed(s) formed a canonical induction head")
    ci = bootstrap_ci([float(t["previous"][0].max()) for t in canonical])
    assert claim(model="toy:repeat 2L attn-only", metric="best layer-0 previous-token score, seeds with a canonical induction head",
                 value=ci.estimate, ci=ci, n=ci.n, threshold=0.5, note=f"{len(canonical)}/{len(toys['two'])} seeds")  # fmt: skip


def test_ablating_layer0_destroys_the_layer1_pattern(toys, claim):
    """K-composition: without layer 0's outputs, layer 1 cannot find the matching position."""
    drops = [best_layer1(t) - float(t["offset_ablated"].max()) for t in toys["two"]]
    ci = bootstrap_ci(drops)
    assert claim(model="toy:repeat 2L attn-only", metric="drop of best layer-1 offset induction score, layer 0 mean-ablated",
                 value=ci.estimate, ci=ci, n=ci.n, threshold=0.3)  # fmt: skip


def test_one_layer_toy_has_no_induction_head(toys, claim):
    ci = bootstrap_ci([float(t["offset"][0].max()) for t in toys["one"]])
    assert claim(model="toy:repeat 1L attn-only", metric="best offset induction score, per seed", value=ci.estimate, ci=ci,
                 n=ci.n, threshold=0.2, direction="<=")  # fmt: skip


def test_one_layer_loss_on_repeats_stays_far_above_two_layer(toys, claim):
    ci = bootstrap_ci_two_sample([t["loss"] for t in toys["one"]], [t["loss"] for t in toys["two"]])
    assert claim(model="toy:repeat 1L vs 2L", metric="loss on repeated half, 1-layer minus 2-layer (nats)", value=ci.estimate,
                 ci=ci, n=ci.n, threshold=1.0)  # fmt: skip


def phase_change(history) -> dict:
    """Loss 10%->90% drop window, and the step where the best layer-1 offset score reaches half its final value."""
    loss = history.loss_repeated_half.to_numpy()
    steps = history.step.to_numpy()
    drop = loss[0] - loss[-1]
    start = steps[np.argmax(loss <= loss[0] - 0.1 * drop)]
    end = steps[np.argmax(loss <= loss[0] - 0.9 * drop)]
    score = history.filter(like="offset_induction_L1").max(axis=1).to_numpy()
    half = steps[np.argmax(score >= score[0] + 0.5 * (score[-1] - score[0]))]
    return {"start": start, "end": end, "width": end - start, "score_step": half}


def test_phase_change_is_narrow_and_coincides_with_the_score(toys, claim, results_dir):
    changes = [phase_change(t["history"]) for t in toys["two"]]
    widths = [c["width"] / TWO_LAYER.steps for c in changes]
    ci = bootstrap_ci(widths)
    plot_training(toys, results_dir)
    inside = all(c["start"] - 2 * TWO_LAYER.log_every <= c["score_step"] <= c["end"] + 2 * TWO_LAYER.log_every for c in changes)
    assert claim(model="toy:repeat 2L attn-only", metric="loss-drop window (10%->90%) as a share of training", value=ci.estimate,
                 ci=ci, n=ci.n, threshold=0.3, direction="<=",
                 note=f"windows {[(int(c['start']), int(c['end'])) for c in changes]}; score half-way at "
                      f"{[int(c['score_step']) for c in changes]}; inside the window: {inside}")  # fmt: skip
    assert inside, "the layer-1 score's rise lies outside the loss drop"


def plot_training(toys, results_dir: Path) -> None:
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 3.5))
    for t in toys["two"] + toys["one"]:
        h = t["history"]
        label = f"{t['config'].n_layers}L seed {t['config'].seed}"
        ax_loss.plot(h.step, h.loss_repeated_half, label=label)
        ax_score.plot(h.step, h.filter(like=f"offset_induction_L{t['config'].n_layers - 1}").max(axis=1), label=label)
    ax_loss.set(xlabel="training step", ylabel="loss on repeated half (nats)")
    ax_score.set(xlabel="training step", ylabel="best last-layer offset induction score")
    ax_loss.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(results_dir / "induction_toy_training.png", dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# 2. smollm2-135m (or --model)


def random_repeats(model, seed: int, batch: int = 16) -> torch.Tensor:
    return repeated_tokens(torch.Generator().manual_seed(seed), batch, S, 1000, min(model.cfg.d_vocab, 20000), model.tokenizer.bos_token_id)


@pytest.fixture(scope="module")
def real(model) -> dict:
    discovery = attention_patterns(model, random_repeats(model, 11))
    scores = torch.stack([induction_score_from_pattern(p, S).mean(0) for p in discovery])  # [layer, head]
    top = [divmod(int(i), model.cfg.n_heads) for i in scores.flatten().topk(TOP_K).indices]
    tokens = random_repeats(model, 12)
    reference = random_repeats(model, 13)
    _, ref_cache = model.run_with_cache(reference, names_filter=lambda n: n.endswith("hook_z"))
    with torch.no_grad():
        clean = repeated_half_loss(model(tokens), tokens)
        ablated = repeated_half_loss(model.run_with_hooks(tokens, fwd_hooks=H.ablate_heads(model, top, "mean", ref_cache)), tokens)
        rng = random.Random(0)
        layers = [l for l, _ in top]
        controls = []
        for _ in range(20):
            heads = []
            while len(heads) < TOP_K:  # one head per top head's layer, distinct, none of the top heads
                heads = sorted({(l, rng.randrange(model.cfg.n_heads)) for l in layers} - set(top))
            controls.append(repeated_half_loss(model.run_with_hooks(tokens, fwd_hooks=H.ablate_heads(model, heads[:TOP_K], "mean", ref_cache)), tokens))
    confirm = attention_patterns(model, tokens)
    return {"scores": scores, "top": top, "tokens": tokens, "clean": clean, "ablated": ablated,
            "controls": torch.stack(controls), "confirm": confirm}  # fmt: skip


@pytest.mark.real_model
def test_top_induction_heads_confirm_on_heldout_sequences(real, claim, model_name, results_dir):
    per_sequence = torch.stack([induction_score_from_pattern(real["confirm"][l], S)[:, h] for l, h in real["top"]]).mean(0)
    ci = bootstrap_ci(per_sequence.numpy())
    plot_heatmap(real["scores"], model_name, results_dir)
    assert claim(metric=f"held-out prefix-matching (induction) score of top {TOP_K} heads", value=ci.estimate, ci=ci, n=ci.n,
                 threshold=0.5, note=",".join(f"L{l}H{h}" for l, h in real["top"]))  # fmt: skip


@pytest.mark.real_model
def test_induction_ranking_agrees_with_head_detector(model, real, claim):
    words = sorted({w for w in "the a of to and in on at for with by from as it is was be this that we you they he she".split()})
    rng = random.Random(5)
    texts = ["".join(" " + w for w in rng.sample(words, S) * 2) for _ in range(4)]
    tokens = [model.to_tokens(t) for t in texts]
    if any(t.shape[1] != 1 + 2 * S for t in tokens):
        pytest.skip(f"{model.cfg.model_name}'s tokenizer splits some of these words; the texts are not BOS + 2x{S} tokens")
    ours = torch.stack([
        torch.stack([induction_score_from_pattern(p, S).mean(0) for p in attention_patterns(model, t)]) for t in tokens
    ]).mean(0)  # fmt: skip
    oracle = detect_head(model, texts, "induction_head")
    rho = spearmanr(ours.flatten().numpy(), oracle.flatten().numpy()).statistic
    assert claim(metric="Spearman rho, our induction scores vs head_detector, all heads", value=rho, n=ours.numel(), threshold=0.9)


@pytest.mark.real_model
def test_ablating_top_induction_heads_raises_repeat_loss(real, claim):
    ci = bootstrap_ci((real["ablated"] - real["clean"]).numpy())
    assert claim(metric=f"loss rise on repeated half, top {TOP_K} induction heads mean-ablated (nats)", value=ci.estimate, ci=ci,
                 n=ci.n, threshold=1.0)  # fmt: skip


@pytest.mark.real_model
def test_top_heads_matter_far_more_than_random_heads_of_the_same_layers(real, claim):
    control = real["controls"].mean(0)  # [batch], mean over 20 draws
    ci = bootstrap_ci((real["ablated"] - control).numpy())
    assert claim(metric="loss rise, top heads minus random same-layer heads, paired (nats)", value=ci.estimate, ci=ci, n=ci.n,
                 threshold=0.5)  # fmt: skip


@pytest.mark.real_model
def test_induction_heads_have_lower_entropy_on_the_repeated_half(real, claim):
    top = set(real["top"])
    layers = sorted({l for l, _ in top})
    entropy = {l: entropy_from_pattern(real["confirm"][l])[:, :, S + 1 :].mean(-1) for l in layers}  # [batch, head]
    ours = torch.stack([entropy[l][:, h] for l, h in top]).mean(0)
    others = torch.stack([entropy[l][:, h] for l in layers for h in range(entropy[l].shape[1]) if (l, h) not in top]).mean(0)
    ci = bootstrap_ci((ours - others).numpy())
    assert claim(metric="entropy on repeated half, top heads minus other heads of their layers (nats)", value=ci.estimate, ci=ci,
                 n=ci.n, threshold=0.0, direction="<=")  # fmt: skip


def plot_heatmap(scores: torch.Tensor, model_name: str, results_dir: Path) -> None:
    fig, ax = plt.subplots(figsize=(4, 7))
    image = ax.imshow(scores.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set(xlabel="head", ylabel="layer", title=f"induction score, {model_name}")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(results_dir / "induction_scores_heatmap.png", dpi=120)
    plt.close(fig)


# Log (smollm2-135m is the Q4_1 GGUF checkpoint de-quantised to float32, not the original weights)
# 2026-11-25  Toys, 2-layer x 5 seeds, 1-layer x 3 seeds, 1000 steps (~16 s each to train on 2 cores).
#   Two circuits, chosen by the seed. Seeds 1, 2, 4: canonical induction heads in layer 1 (best
#   score 0.93/0.92/0.92) with a layer-0 previous-token head (0.89/0.83/0.91); final loss on the
#   repeated half 0.23-0.25 nats. Seeds 0, 3: every layer-1 head attends 4 tokens *after* the
#   induction target (offset score 0.85/0.85, canonical 0.00, no previous-token head: 0.03), loss
#   0.52. So "a 2-layer model forms a canonical induction head" is refuted as a per-seed claim
#   (0.55 [0.18, 0.92]), and so is the layer-0 previous-token head (0.54 [0.19, 0.88]); every seed
#   forms an (offset) induction head, 0.89 [0.86, 0.92]; where it is canonical it comes with a
#   previous-token head, 0.88 [0.83, 0.91], n=3. Mean-ablating layer 0 drops the best layer-1 offset
#   score by 0.76 [0.67, 0.84] (K-composition, both circuits). 1-layer: best offset score 0.136
#   [0.131, 0.140]; its loss on the repeated half is 2.92 [2.78, 3.05] nats above the 2-layer's.
#   Phase change: the loss falls 10%->90% in 0.23 [0.20, 0.26] of training (windows 260-500,
#   260-460, 300-480, 260-520, 280-540), and the layer-1 score is half-way at 340-440, inside each
#   window. Figure: results/induction_toy_training.png.
# 2026-11-25  smollm2-135m: top induction heads on the discovery batch L18H6, L17H4, L17H5, L17H3,
#   L18H7; held-out score 0.73 [0.71, 0.76]; our scores rank all 270 heads exactly as head_detector
#   (rho 1.00). Mean-ablating the 5 raises the loss on the repeated half by 4.68 [4.33, 5.03] nats,
#   4.58 [4.23, 4.91] more than 5 random other heads of the same layers (20 draws; a first version
#   of this control could draw top heads and gave 4.09 [3.78, 4.38]). Their entropy on the
#   repeated half is 1.23 [1.18, 1.29] nats below the other heads of their layers. Heatmap:
#   results/induction_scores_heatmap.png.
