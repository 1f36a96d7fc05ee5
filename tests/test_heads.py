"""Control selections (attnclaims.heads): what each promises, for any scores and heads."""

from __future__ import annotations

import random
from itertools import permutations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnclaims.heads import Head, nearest_controls, same_layer_controls, top_heads, versus_layer


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 3))
def test_nearest_controls_differ_least_in_total_none_twice(seed, k):
    scores = torch.rand(3, 3, generator=torch.Generator().manual_seed(seed))
    heads = top_heads(scores, k)
    controls = nearest_controls(scores, heads)
    assert len(set(controls)) == k and not set(controls) & set(heads)
    pool = [Head(layer, h) for layer in range(3) for h in range(3) if Head(layer, h) not in heads]
    total = lambda picks: sum(abs(float(scores[p] - scores[h])) for p, h in zip(picks, heads))
    assert total(controls) <= min(total(picks) for picks in permutations(pool, k)) + 1e-12


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 5))
def test_same_layer_controls_stay_in_the_layer_while_it_has_heads_left(seed, k):
    heads = top_heads(torch.rand(3, 4, generator=torch.Generator().manual_seed(seed)), k)
    controls = same_layer_controls(random.Random(seed), heads, 3, 4)
    assert len(set(controls)) == k and not set(controls) & set(heads)
    for head, control in zip(heads, controls):
        in_layer = sum(h.layer == head.layer for h in heads)
        if in_layer <= 2:  # 4 heads a layer: at least two left for the compared ones
            assert control.layer == head.layer


def test_a_head_against_the_rest_of_its_layer():
    scores = torch.tensor([[0.9, 0.1, 0.2, 0.3], [0.5, 0.5, 0.5, 0.5]])  # [units, heads]
    assert torch.allclose(versus_layer(scores, 0), torch.tensor([0.9 - 0.2, 0.0]))
    np.testing.assert_allclose(versus_layer(scores.numpy()[0], 3), 0.3 - 0.4)  # one unit, numpy
    with pytest.raises(ValueError, match="head 4 against the rest of a layer of 4 heads"):
        versus_layer(scores, 4)
    with pytest.raises(ValueError, match="at least 2"):
        versus_layer(scores[:, :1], 0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=12), st.data())
def test_a_head_that_scores_as_its_layer_is_zero_beyond_it(values, data):
    head = data.draw(st.integers(0, len(values) - 1))
    row = torch.tensor(values, dtype=torch.float64)
    mean_of_others = (row.sum() - row[head]) / (len(values) - 1)
    assert float(versus_layer(row, head)) == pytest.approx(float(row[head] - mean_of_others), abs=1e-9)
    assert float(versus_layer(torch.full((len(values),), 2.5), head)) == 0.0
