"""Sweep speed, as ratios against a baseline timed in the same process (never wall-clock bounds).

- head-out patch sweep: ours (heads stacked along the batch) vs transformer_lens.patching's
  get_act_patch_attn_head_out_all_pos (one forward per head), same inputs, same results.
- attention redirect sweep at the final position: the KV-cache path (prefix run once) vs the same
  sweep with full forwards.
"""

from __future__ import annotations

import time

import pytest
import torch
from transformer_lens.patching import get_act_patch_attn_head_out_all_pos

from lib import patching
from lib.metrics import logit_diff

PROMPT = (
    "When it rains I carry an umbrella. When I carry an umbrella, I wear boots. "
    "When I don't carry an umbrella I wear shoes. It rains, therefore I wear"
)


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@pytest.mark.real_model
def test_redirect_sweep_kv_path_vs_full_forwards(benchmark, model):
    tokens = model.to_tokens(PROMPT)
    boots = max(i for i, s in enumerate(model.to_str_tokens(tokens)) if s == " boots")
    metric = logit_diff(model.to_single_token(" boots"), model.to_single_token(" shoes"))
    full = []
    baseline = seconds(
        lambda: full.append(patching.attention_redirect_sweep(model, tokens, boots, -1, metric, progress=False, kv_cache=False))
    )
    result = benchmark.pedantic(
        lambda: patching.attention_redirect_sweep(model, tokens, boots, -1, metric, progress=False), rounds=1, iterations=1
    )
    ratio = baseline / benchmark.stats["mean"]
    benchmark.extra_info.update({"tokens": tokens.shape[1], "full_forward_s": baseline, "speedup": ratio})
    print(f"redirect sweep, {tokens.shape[1]} tokens: KV path {benchmark.stats['mean']:.2f} s, full forwards {baseline:.2f} s, x{ratio:.1f}")
    torch.testing.assert_close(result, full[0], atol=1e-3, rtol=0)
    assert ratio > 1.5


def test_head_out_sweep_vs_transformer_lens(benchmark, toy_model):
    from lib.presets import WITH_MLP

    toy = toy_model(WITH_MLP)
    g = torch.Generator().manual_seed(0)
    clean = torch.cat([torch.zeros(4, 1, dtype=torch.long), torch.randint(2, toy.cfg.d_vocab, (4, 15), generator=g)], 1)
    corrupted = clean.clone()
    corrupted[:, 5] = 2
    metric = logit_diff(5, 7)
    _, cache = toy.run_with_cache(clean)
    oracle = []
    baseline = seconds(lambda: oracle.append(get_act_patch_attn_head_out_all_pos(toy, corrupted, cache, metric)))
    ours = benchmark.pedantic(lambda: patching.head_out_patch_sweep(toy, clean, corrupted, metric, progress=False), rounds=3, iterations=1)
    ratio = baseline / benchmark.stats["mean"]
    benchmark.extra_info.update({"transformer_lens_s": baseline, "speedup": ratio})
    torch.testing.assert_close(ours, oracle[0], atol=1e-4, rtol=0)
    assert ratio > 1.0
