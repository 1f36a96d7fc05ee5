"""Sweeps on a pool of 2 local Ray actors (one torch thread each) equal one process exactly; a worker
killed mid-sweep has its chunks re-run; a worker that cannot load the model is named."""

from __future__ import annotations

import os

import pytest
import torch

from attnclaims import cluster
from attnclaims.cluster import Pool, PoolError, Replica
from attnclaims.interventions import AblateHeads, Hooks, RedirectAttention
from attnclaims.metrics import logit_diff
from attnclaims.patching import attention_redirect_sweep, head_out_patch_sweep
from attnclaims.sweep import run_variants
from tests.test_patching import toy_pair


@pytest.fixture(scope="module")
def pool():
    pool = Pool.start("local:2", threads=1)
    yield pool
    pool.close()


def variants(model) -> dict:
    """Every path of the engine: full forwards from the lowest patched layer and against the KV cache."""
    heads = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
    return {
        **{("redirect", h): RedirectAttention([h], 2) for h in heads},
        **{("zero", h): AblateHeads([h]) for h in heads},
    }


def sweeps(model) -> dict:
    """Per-head sweeps (full forwards, the KV path) and a mix of variants, each in several chunks."""
    clean, corrupted = toy_pair(model)
    metric = logit_diff(5, 7)
    return {
        "head-out": lambda: head_out_patch_sweep(
            model, clean_tokens=clean, corrupted_tokens=corrupted, metric=metric, chunk=2
        ),
        "redirect": lambda: attention_redirect_sweep(model, clean, 2, metric=metric, chunk=2),
        "mixed": lambda: torch.stack(
            list(run_variants(model, clean, variants(model), metric, chunk=3).values())
        ),
    }


def test_sweeps_on_two_workers_equal_one_process(pool, toy, toy_mlp):
    for model in (toy, toy_mlp):
        for name, sweep in sweeps(model).items():
            alone = sweep()
            ran = dict(pool.chunks_run)
            with cluster.use(pool):
                sharded = sweep()
            assert torch.equal(alone, sharded), name
            assert all(pool.chunks_run[i] > ran.get(i, 0) for i in range(2)), (
                f"{name}: both workers ran chunks"
            )


def test_a_worker_killed_mid_sweep_has_its_chunks_rerun_on_the_other(pool, toy, tmp_path):
    marker = tmp_path / "killed"

    def die_once(x, hook):  # the first worker to run it dies; the re-run finds the marker
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return x

    tokens, _ = toy_pair(toy)
    sweep = {**variants(toy), "dies": Hooks([("blocks.1.hook_resid_pre", die_once)], first_layer=1)}
    marker.write_text("driver")
    alone = run_variants(toy, tokens, sweep, logit_diff(5, 7), chunk=2)
    marker.unlink()
    sharded = run_variants(toy, tokens, sweep, logit_diff(5, 7), chunk=2, pool=pool)
    assert int(marker.read_text()) != os.getpid()  # a worker died
    assert all(torch.equal(alone[key], sharded[key]) for key in sweep)
    again = run_variants(toy, tokens, variants(toy), logit_diff(5, 7), chunk=2, pool=pool)  # replaced
    assert all(torch.equal(alone[key], again[key]) for key in again)


def test_a_worker_that_cannot_load_the_model_names_itself_and_the_model(pool, toy, tmp_path):
    missing = Replica("attnclaims.toy:load_toy", (tmp_path / "gone", "cpu"), "the toy in gone", 0)
    with pytest.raises(PoolError, match=r"worker \d \(pid \d+ on .*\) could not load the toy in gone"):
        pool.warm([missing])
    other = Replica(*[getattr(toy.attnclaims_replica, f) for f in ("loader", "args", "name")], weights=1)
    with pytest.raises(PoolError, match="could not load the toy in .*: .* other weights"):
        pool.warm([other])


def test_an_error_of_the_sweep_is_raised_as_in_one_process(pool, toy):
    tokens, _ = toy_pair(toy)
    with pytest.raises(ValueError, match="the metric returned NaN for variant"):
        run_variants(toy, tokens, variants(toy), lambda logits: logits[0, -1, 0] * torch.nan, pool=pool)


def test_a_model_the_workers_cannot_replicate_runs_here_with_a_warning(pool, toy):
    tokens, _ = toy_pair(toy)
    alone = run_variants(toy, tokens, variants(toy), logit_diff(5, 7))
    recipe = toy.attnclaims_replica
    with torch.no_grad():
        toy.blocks[0].attn.W_O.data.mul_(2.0)  # weights changed since loading
    try:
        with pytest.warns(UserWarning, match="weights changed since"):
            changed = run_variants(toy, tokens, variants(toy), logit_diff(5, 7), pool=pool)
    finally:
        with torch.no_grad():
            toy.blocks[0].attn.W_O.data.div_(2.0)
    assert toy.attnclaims_replica == recipe and cluster.fingerprint(toy) == recipe.weights
    assert not all(torch.equal(alone[key], changed[key]) for key in alone)  # it ran on the changed model


def test_the_ray_option_starts_the_session_pool_and_records_it(pytester):
    pytester.makepyfile(
        test_pool="""
        from attnclaims import cluster

        def test_pool(claim):
            pool = cluster.active()
            assert pool is not None and len(pool.actors) == 2 and pool.threads == 1
            claim(0.9, ">=", 0.5, exact=True, why="a row to record", model="toy:a", metric="m")
        """
    )
    result = pytester.runpytest_subprocess("--ray", "local:2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    environments = (pytester.path / "results" / "environments.json").read_text()
    assert '"cluster": "local:2"' in environments
    refused = pytester.runpytest_subprocess("--ray", "local:0")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*--ray*local:N with N >= 1*"])
