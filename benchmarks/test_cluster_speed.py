"""A head-out sweep on smollm2-135m (25-token pair, 270 heads) on a pool of 2 local Ray actors of one
torch thread each, against one process of 1 thread and of 2 threads, timed in the same process: the
pool's overhead (shipping the prompts, variants and metric once per sweep, the values back per chunk)
and what it gains. Results equal one process exactly. The pool's replicas are loaded before timing
(a session loads them once); its start (about 5 s) and the loads are not timed. Measured on an idle
2-core machine (2026-12-04): the pool 5.86 s, one process 10.38 s at 1 thread (1.8x) and 6.19 s at 2
threads (1.06x), results identical to both.
"""

from __future__ import annotations

import pytest
import torch

from attnclaims import cluster
from attnclaims.patching import head_out_patch_sweep
from benchmarks.conftest import seconds
from benchmarks.test_sweep_speed import CLEAN, CORRUPTED, ROUNDS, boots_metric


@pytest.fixture(scope="module")
def pool(smollm2):
    pool = cluster.Pool.start("local:2", threads=1)
    pool.warm([smollm2.attnclaims_replica])
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def smollm2(get_model):
    return get_model("smollm2-135m")


@pytest.mark.real_model
def test_head_out_sweep_on_two_actors_vs_one_process(benchmark, record_ratio, smollm2, pool):
    model = smollm2
    clean, corrupted = model.to_tokens(CLEAN), model.to_tokens(CORRUPTED)

    def sweep():
        return head_out_patch_sweep(
            model,
            clean_tokens=clean,
            corrupted_tokens=corrupted,
            metric=boots_metric(model),
            show_progress=False,
        )

    threads = torch.get_num_threads()
    alone = {}
    try:
        sweep()  # warm-up
        for n in (2, 1):
            torch.set_num_threads(n)
            alone[n] = seconds(sweep)
    finally:
        torch.set_num_threads(threads)
    with cluster.use(pool):
        ours = benchmark.pedantic(sweep, rounds=ROUNDS - 1, iterations=1, warmup_rounds=1)
    ratios = {}
    for n, (baseline_s, result) in alone.items():
        assert torch.equal(ours, result), f"the pool's sweep differs from one process of {n} thread(s)"
        ratios[n] = record_ratio(
            "head-out patch sweep, 2 Ray actors x 1 thread",
            benchmark.stats["mean"],
            f"one process, {n} thread{'s' if n > 1 else ''}",
            baseline_s,
            0.0,
        )
    # Two actors on two cores against one process on one: 1.8x measured, 2x at best; the floor guards
    # against chunks that stop running side by side, loose enough for a busy machine.
    assert ratios[1].speedup >= 1.3, ratios[1]
