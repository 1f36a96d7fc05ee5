"""Attention heads: the `Head` type, its label, and the selections every study makes.

Head(3, 4)                      # == (3, 4); str() is "L3H4"
label([Head(3, 4), Head(5, 0)])  # "L3H4, L5H0"
top_heads(scores, 3)            # the 3 highest of a [layer, head] tensor or a (layer, head) series
versus_layer(per_unit, 4)       # head 4 minus the mean of its layer's other heads ([units, heads] -> [units])
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import torch
from scipy.optimize import linear_sum_assignment


class Head(NamedTuple):
    """A query head. A plain (layer, head) tuple compares and hashes equal to it."""

    layer: int
    head: int

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}"

    __repr__ = __str__  # a spec's repr, in a ledger note, names its heads as the report does


def as_heads(heads: Iterable) -> list[Head]:
    """(layer, head) pairs as Heads, in order."""
    return [Head(int(layer), int(head)) for layer, head in heads]


def label(heads: Iterable) -> str:
    """ "L3H4, L5H0": how a ledger note or a figure names a set of heads."""
    return ", ".join(str(head) for head in as_heads(heads))


def every_head(model) -> list[Head]:
    return [Head(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]


def top_heads(scores, k: int, largest: bool = True) -> list[Head]:
    """The k heads with the highest (or, largest=False, lowest) score, best first: `scores` is a
    [n_layers, n_heads] tensor or array, or a series indexed by (layer, head). NaN scores never count."""
    if hasattr(scores, "index") and hasattr(scores, "dropna"):  # a pandas series
        ordered = scores.dropna().sort_values(ascending=not largest, kind="stable")
        return as_heads(ordered.index[:k])
    values = torch.as_tensor(scores, dtype=torch.float64)
    n_heads = values.shape[1]
    flat = values.flatten()
    finite = torch.nonzero(~torch.isnan(flat)).flatten()
    order = finite[torch.argsort(flat[finite], descending=largest, stable=True)]
    return [Head(int(i) // n_heads, int(i) % n_heads) for i in order[:k]]


def nearest_controls(scores, heads: Iterable) -> list[Head]:
    """One control head per head, paired in order, matched on a baseline: of the heads of any layer
    that are not among `heads`, the one-to-one assignment whose scores ([n_layers, n_heads]) differ
    least from theirs in total (scipy.optimize.linear_sum_assignment)."""
    heads = as_heads(heads)
    values = torch.as_tensor(scores, dtype=torch.float64)
    pool = [Head(layer, h) for layer in range(values.shape[0]) for h in range(values.shape[1])]
    pool = [h for h in pool if h not in set(heads)]
    if len(pool) < len(heads):
        raise ValueError(f"{len(heads)} heads need as many controls; the model has {len(pool)} others")
    cost = torch.stack([(values[head] - torch.stack([values[p] for p in pool])).abs() for head in heads])
    rows, columns = linear_sum_assignment(cost.numpy())
    return [pool[c] for _, c in sorted(zip(rows, columns))]


def same_layer_controls(rng, heads: Iterable, n_layers: int, n_heads: int) -> list[Head]:
    """One control head per head, paired in order: another head of its layer while the layer has one
    left, else one of the nearest layer with one left; never one of `heads`, none twice. Every head
    draws from its own layer first (in order), and only then do the rest spill over, so a spill never
    takes a head that another compared head's own layer still had. `rng` is a random.Random: draws are
    reproducible from its seed."""
    heads = as_heads(heads)
    taken = set(heads)
    out: list[Head | None] = []

    def free(layer: int) -> list[Head]:
        return [Head(layer, h) for h in range(n_heads) if Head(layer, h) not in taken]

    def pick(pool: list[Head]) -> Head:
        choice = rng.choice(pool)
        taken.add(choice)
        return choice

    for head in heads:  # own layers first
        pool = free(head.layer)
        out.append(pick(pool) if pool else None)
    for i, head in enumerate(heads):
        if out[i] is not None:
            continue
        for near in sorted(range(n_layers), key=lambda other: (abs(other - head.layer), other)):
            if pool := free(near):
                out[i] = pick(pool)
                break
        else:
            raise ValueError(f"no head is left to serve as a control for {head}: the model has too few heads")
    return out


def versus_layer(values, head: int):
    """A head against the rest of its layer: values[..., head] minus the mean of values[..., h] over
    the layer's other heads h. The last axis indexes the layer's heads ([units, heads] gives one
    figure per unit; [heads] one figure); a torch tensor or a numpy array."""
    n_heads = values.shape[-1]
    if n_heads < 2 or not 0 <= head < n_heads:
        raise ValueError(
            f"head {head} against the rest of a layer of {n_heads} heads: the last axis must index "
            "the layer's heads (at least 2), and the head one of them"
        )
    others = [h for h in range(n_heads) if h != head]
    return values[..., head] - values[..., others].mean(-1)
