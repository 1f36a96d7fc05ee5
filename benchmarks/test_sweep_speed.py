"""Sweep speed on smollm2-135m, as ratios against a baseline timed in the same process (never a
wall-clock bound), each with equal results (<= 1e-4 of the result's scale).

- head-out patch sweep (attnclaims.patching, through attnclaims.sweep) vs transformer_lens.patching's
  get_act_patch_attn_head_out_all_pos, on a 25-token prompt pair. Target 5x; measured 5.5x on an idle
  2-core machine (2026-11-25: 5.3 s against 29.2 s); the floor asserted is 3x, a guard against
  regressions that machine noise does not trip.
- final-row redirect sweep (every head, one-hot on an earlier token) vs a per-head
  `run_with_hooks` loop on a 25-token prompt. Target 40x; measured 48x on an idle 2-core machine
  (2026-11-25: 0.63 s against 30.5 s; the metric reads two logits, so only they are unembedded);
  the floor asserted is 20x. The loop is timed on every 5th head (54 of 270: each head's run is the
  same full forward, so its time per head does not depend on the head) and scaled to all heads;
  results are compared on those heads.
- the same head-out sweep vs nnsight 0.8 in its batched form (54 heads per trace, each batch row
  patched at `self_attn.o_proj.input`, the heads' concatenated outputs), on the same checkpoint
  folder loaded by nnsight's LanguageModel: faster, with equal results. Measured by hand on an
  idle 2-core machine (2026-12-02, 2 threads): ours 8.5 s, nnsight 32.6 s, max abs diff 2.3e-5.
- one call over a batch of 8 equal-length prompts vs 8 calls of one prompt each: faster.
- the residual stream by layer and position (activation_patch_sweep at resid_pre) vs
  transformer_lens.patching's loop (generic_activation_patch, as get_act_patch_resid_pre runs it: one
  forward per cell), on a 12-token pair; TL is timed on every 5th layer and scaled to all cells.
  Target 3x; measured 11.0x on an idle 2-core machine timing TL on every cell (2026-12-04: 6.5 s
  against 70.7 s, max rel diff 1.1e-5); the floor asserted is 2x. Heads by position (site z, 3,240
  cells on the same pair) measured by hand, not run here (ours alone takes 40 s): 39.1 s against TL's
  565 s scaled from 216 timed cells, 14.5x, max abs diff 1.8e-5 (2026-12-04, 2 threads).
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformer_lens.patching import (
    generic_activation_patch,
    get_act_patch_attn_head_out_all_pos,
    layer_pos_patch_setter,
)

from attnclaims.heads import every_head
from attnclaims.interventions import PatchHeads, RedirectAttention
from attnclaims.metrics import logit_diff
from attnclaims.patching import activation_patch_sweep, attention_redirect_sweep, head_out_patch_sweep
from attnclaims.sweep import run_variants
from benchmarks.conftest import rel_diff, seconds

CLEAN = "When it rains I carry an umbrella, and when I carry an umbrella I always wear my boots. So I wear"
CORRUPTED = (
    "When it storms I carry an umbrella, and when I carry an umbrella I always wear my boots. So I wear"
)
LOOP_SAMPLE = 5  # the per-head loop is timed on every 5th head
ROUNDS = 3  # our sweeps: the mean of 3 rounds after one warm-up round (the baselines' many forwards warm up)
BATCH = [
    "When it rains I carry an umbrella, and when I carry an umbrella I always wear my boots. So I wear",
    "When it storms I carry an umbrella, and when I carry an umbrella I always wear my boots. So I wear",
    "When it rains I carry an umbrella, and when I carry an umbrella I always wear my shoes. So I wear",
    "When it storms I carry an umbrella, and when I carry an umbrella I always wear my shoes. So I wear",
    "When it rains I take an umbrella, and when I take an umbrella I always wear my boots. So I wear",
    "When it storms I take an umbrella, and when I take an umbrella I always wear my boots. So I wear",
    "When it rains I take an umbrella, and when I take an umbrella I always wear my shoes. So I wear",
    "When it storms I take an umbrella, and when I take an umbrella I always wear my shoes. So I wear",
]


@pytest.fixture(scope="module")
def smollm2(get_model):
    return get_model("smollm2-135m")


def boots_metric(model):
    return logit_diff(model.to_single_token(" boots"), model.to_single_token(" shoes"))


def timed_head_out_sweep(benchmark, model, clean, corrupted) -> torch.Tensor:
    """Our head-out sweep, timed by pytest-benchmark: the mean of ROUNDS rounds after a warm-up."""
    return benchmark.pedantic(
        lambda: head_out_patch_sweep(
            model,
            clean_tokens=clean,
            corrupted_tokens=corrupted,
            metric=boots_metric(model),
            show_progress=False,
        ),
        rounds=ROUNDS,
        iterations=1,
        warmup_rounds=1,
    )


@pytest.mark.real_model
def test_head_out_sweep_vs_transformer_lens(benchmark, record_ratio, smollm2):
    model = smollm2
    clean, corrupted = model.to_tokens(CLEAN), model.to_tokens(CORRUPTED)
    assert clean.shape == corrupted.shape, "the benchmark pair must tokenize to equal lengths"
    metric = boots_metric(model)
    _, cache = model.run_with_cache(clean)
    baseline_s, oracle = seconds(lambda: get_act_patch_attn_head_out_all_pos(model, corrupted, cache, metric))
    ours = timed_head_out_sweep(benchmark, model, clean, corrupted)
    ratio = record_ratio(
        f"head-out patch sweep, {clean.shape[1]} tokens",
        benchmark.stats["mean"],
        "transformer_lens get_act_patch_attn_head_out_all_pos",
        baseline_s,
        rel_diff(ours, oracle.cpu()),
    )
    assert ratio.max_rel_diff <= 1e-4
    assert ratio.speedup >= 3.0, ratio  # target 5x: see the module docstring


def per_head_redirect_loop(model, tokens, dst, metric, heads) -> torch.Tensor:
    out = torch.full((model.cfg.n_layers, model.cfg.n_heads), float("nan"))
    with torch.no_grad():
        for layer, head in heads:
            logits = model.run_with_hooks(
                tokens, fwd_hooks=RedirectAttention([(layer, head)], dst).hooks(model)
            )
            out[layer, head] = float(metric(logits))
    return out


def nnsight_head_out_sweep(lm, clean, corrupted, answer: int, alternative: int, per_trace: int = 54):
    """[n_layers, n_heads] LD with one head's output patched from the clean run, in nnsight's batched
    form: each trace runs `per_trace` copies of the corrupted prompt, copy i with head i patched."""
    config = lm.config
    n_layers, n_heads = config.num_hidden_layers, config.num_attention_heads
    d_head = config.hidden_size // n_heads
    clean_in: list = []  # nnsight 0.8: proxies are kept in a list made before the trace
    with lm.trace({"input_ids": clean, "attention_mask": torch.ones_like(clean)}):
        for layer in range(n_layers):
            clean_in.append(lm.model.layers[layer].self_attn.o_proj.input.save())
    heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    out: list[float] = []
    for start in range(0, len(heads), per_trace):
        chunk = heads[start : start + per_trace]
        ids = corrupted.repeat(len(chunk), 1)
        saved: list = []
        with lm.trace({"input_ids": ids, "attention_mask": torch.ones_like(ids)}):
            for i, (layer, head) in enumerate(chunk):
                cut = slice(head * d_head, (head + 1) * d_head)
                lm.model.layers[layer].self_attn.o_proj.input[i, :, cut] = clean_in[layer][0, :, cut]
            saved.append(lm.lm_head.output[:, -1].save())
        logits = saved[0]
        out += (logits[:, answer] - logits[:, alternative]).tolist()
    return torch.tensor(out).reshape(n_layers, n_heads)


@pytest.mark.real_model
def test_head_out_sweep_vs_nnsight(benchmark, record_ratio, smollm2):
    from nnsight import LanguageModel

    from attnclaims.models import CHECKPOINTS, checkpoint_folder

    model = smollm2
    clean, corrupted = model.to_tokens(CLEAN), model.to_tokens(CORRUPTED)
    boots, shoes = model.to_single_token(" boots"), model.to_single_token(" shoes")
    folder = checkpoint_folder(CHECKPOINTS["smollm2-135m"])
    lm = LanguageModel(str(folder), dispatch=True, attn_implementation="eager", dtype=torch.float32)
    baseline_s, peer = seconds(lambda: nnsight_head_out_sweep(lm, clean, corrupted, boots, shoes))
    ours = timed_head_out_sweep(benchmark, model, clean, corrupted)
    ratio = record_ratio(
        f"head-out patch sweep, {clean.shape[1]} tokens",
        benchmark.stats["mean"],
        "nnsight 0.8, 54 heads per trace",
        baseline_s,
        rel_diff(ours, peer),
    )
    assert ratio.max_rel_diff <= 1e-4
    assert ratio.speedup > 1.0, f"slower than nnsight's batched sweep: {ratio}"


@pytest.mark.real_model
def test_final_row_redirect_sweep_vs_per_head_loop(benchmark, record_ratio, smollm2):
    model = smollm2
    tokens = model.to_tokens(CLEAN)
    boots = max(i for i, s in enumerate(model.to_str_tokens(tokens)) if s == " boots")
    metric = boots_metric(model)
    heads = every_head(model)
    sample = heads[::LOOP_SAMPLE]
    sample_s, loop = seconds(lambda: per_head_redirect_loop(model, tokens, boots, metric, sample))
    ours = benchmark.pedantic(
        lambda: attention_redirect_sweep(model, tokens, boots, metric=metric, show_progress=False),
        rounds=ROUNDS,
        iterations=1,
        warmup_rounds=1,
    )
    rows, cols = zip(*sample)
    ratio = record_ratio(
        f"final-row redirect sweep, {tokens.shape[1]} tokens",
        benchmark.stats["mean"],
        f"per-head run_with_hooks loop ({len(sample)} heads timed)",
        sample_s * len(heads) / len(sample),
        rel_diff(ours[rows, cols], loop[rows, cols]),
    )
    assert ratio.max_rel_diff <= 1e-4
    assert ratio.speedup >= 20.0, ratio  # target 40x: see the module docstring


@pytest.mark.real_model
def test_prompt_batched_sweep_vs_one_prompt_at_a_time(benchmark, record_ratio, smollm2):
    model = smollm2
    tokens = model.to_tokens(BATCH)
    assert len({model.to_tokens(text).shape[1] for text in BATCH}) == 1, (
        "the batch must tokenize to equal lengths"
    )
    metric = logit_diff(model.to_single_token(" boots"), model.to_single_token(" shoes"), per_prompt=True)
    _, cache = model.run_with_cache(tokens.flip(0), names_filter=lambda name: name.endswith("hook_z"))
    heads = [(layer, layer % model.cfg.n_heads) for layer in range(0, model.cfg.n_layers, 3)]
    variants = {head: PatchHeads([head], cache) for head in heads}

    def one_at_a_time():
        out = {head: [] for head in heads}
        for i in range(len(BATCH)):
            one = {head: PatchHeads([head], {k: v[i : i + 1] for k, v in cache.items()}) for head in heads}
            for head, value in run_variants(model, tokens[i : i + 1], one, metric).items():
                out[head].append(value)
        return torch.stack([torch.cat(out[head]) for head in heads])

    baseline_s, single = seconds(one_at_a_time)
    batched = benchmark.pedantic(
        lambda: run_variants(model, tokens, variants, metric), rounds=ROUNDS, iterations=1, warmup_rounds=1
    )
    ours = torch.stack([batched[head] for head in heads])
    ratio = record_ratio(
        f"{len(heads)} head patches x {len(BATCH)} prompts, {tokens.shape[1]} tokens",
        benchmark.stats["mean"],
        f"{len(BATCH)} calls of one prompt",
        baseline_s,
        rel_diff(ours, single),
    )
    assert ratio.max_rel_diff <= 1e-4
    assert ratio.speedup > 1.0, ratio


RESID_CLEAN, RESID_CORRUPTED = (
    "When it rains I wear my boots. So I wear",
    "When it storms I wear my boots. So I wear",
)


@pytest.mark.real_model
def test_residual_stream_sweep_vs_transformer_lens(benchmark, record_ratio, smollm2):
    """The residual stream by layer and position (get_act_patch_resid_pre: one forward per cell) against
    activation_patch_sweep (cells stacked, each chunk started at its layer). Target 3x."""
    model = smollm2
    clean, corrupted = model.to_tokens(RESID_CLEAN), model.to_tokens(RESID_CORRUPTED)
    assert clean.shape == corrupted.shape, "the benchmark pair must tokenize to equal lengths"
    metric = boots_metric(model)
    _, cache = model.run_with_cache(clean)
    n_layers, n_pos = model.cfg.n_layers, clean.shape[1]
    sample = pd.DataFrame(  # every LOOP_SAMPLE-th layer, every position: each cell is one full forward
        [(layer, pos) for layer in range(0, n_layers, LOOP_SAMPLE) for pos in range(n_pos)],
        columns=["layer", "pos"],
    )
    sampled_s, oracle = seconds(
        lambda: generic_activation_patch(
            model, corrupted, cache, metric, layer_pos_patch_setter, "resid_pre", index_df=sample
        )
    )
    baseline_s = sampled_s * n_layers * n_pos / len(sample)  # scaled to every cell
    ours = benchmark.pedantic(
        lambda: activation_patch_sweep(
            model,
            clean_tokens=clean,
            corrupted_tokens=corrupted,
            metric=metric,
            site="resid_pre",
            index=("layer", "pos"),
            show_progress=False,
        ),
        rounds=1,
        iterations=1,
        warmup_rounds=1,
    )
    ratio = record_ratio(
        f"residual stream by layer x position, {clean.shape[1]} tokens",
        benchmark.stats["mean"],
        f"transformer_lens get_act_patch_resid_pre ({len(sample)} cells timed)",
        baseline_s,
        rel_diff(
            ours[torch.tensor(sample.layer.to_numpy()), torch.tensor(sample.pos.to_numpy())], oracle.cpu()
        ),
    )
    assert ratio.max_rel_diff <= 1e-4
    assert ratio.speedup >= 2.0, ratio  # target 3x: see the module docstring
