"""The two-hop task (lib/tasks/two_hop.py): what each sequence asks, what the loss is taken on, and
the chains held out of training."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnclaims.tasks import TASKS, TaskParams
from attnclaims.tasks.two_hop import DOT, LENGTH, ONE_HOP, TWO_HOPS, held_out_chains

PARAMS = TaskParams(n_content=8, seq_len=16)
TASK = TASKS["two-hop"]


def index(ids: torch.Tensor) -> torch.Tensor:
    """A word's index within its kind."""
    return (ids - TWO_HOPS - 1) % PARAMS.n_content


def follow(tokens: torch.Tensor, word: int) -> int:
    """The word after `word` where a rule states it first ("x y ." -> y)."""
    for start in range(1, 1 + 3 * 4, 3):
        if int(tokens[start]) == word:
            return int(tokens[start + 1])
    raise AssertionError(f"{word} starts no rule")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), held_out=st.booleans())
def test_every_sequence_answers_its_query_by_its_rules(seed, held_out):
    chains = TASK.sample(PARAMS, torch.Generator().manual_seed(seed), 64, held_out=held_out)
    assert chains.tokens.shape == (64, LENGTH)
    for row, kind in zip(chains.tokens, chains.kind.tolist()):
        assert (row[3:13:3] == DOT).all() and int(row[13]) == (TWO_HOPS if kind == 2 else ONE_HOP)
        hops = 2 if kind == 2 else 1
        word = int(row[14])
        for _ in range(hops):
            word = follow(row, word)
        assert word == int(row[15])
    answered = (chains.tokens[:, -1] != chains.alternative).all()
    assert bool(answered)


def test_training_never_asks_about_a_held_out_chain_and_evaluation_only_does():
    held = held_out_chains(PARAMS.n_content)
    assert 0.15 < held.float().mean() < 0.35  # about 2/k of the chains with 8 words a kind
    for held_out in (False, True):
        chains = TASK.sample(PARAMS, torch.Generator().manual_seed(3), 2000, held_out=held_out)
        c, b, a = (index(chains.words[kind]) for kind in "cba")
        assert bool((held[c, b, a] == held_out).all())


def test_the_loss_is_on_the_answer_alone_and_on_the_repeat_of_a_run():
    tokens, labels = TASKS["two-hop+repeats-2x"].train_batch(PARAMS, torch.Generator().manual_seed(0), 64)
    queries, runs = slice(0, 48), slice(48, 64)  # a quarter repeated runs
    assert bool((labels[queries, :-1] == -100).all()) and torch.equal(
        labels[queries, -1], tokens[queries, -1]
    )
    kinds = tokens[queries, 13]
    assert 0.3 < (kinds == TWO_HOPS).float().mean() < 0.7  # half of the queries two-hop
    for row, label in zip(tokens[runs], labels[runs]):
        copied = (label != -100).nonzero().flatten()
        span = len(copied)
        assert span == (LENGTH - 1) // 2
        assert torch.equal(row[copied], row[copied - span])  # the repeat copies the stretch before it


@pytest.mark.parametrize("name", ["two-hop", "two-hop-2x", "two-hop+repeats-2x"])
def test_task_variants_have_one_vocabulary_and_keys_of_their_own(name):
    from attnclaims.toy import ToyConfig

    assert TASKS[name].vocab(PARAMS) == TASK.vocab(PARAMS)
    keys = {ToyConfig(task=t, n_content=8).key() for t in ("two-hop", "two-hop-2x", "two-hop+repeats-2x")}
    assert len(keys) == 3


def test_too_few_words_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="needs >= 4 words"):
        TASK.sample(TaskParams(n_content=3, seq_len=16), torch.Generator().manual_seed(0), 4)
