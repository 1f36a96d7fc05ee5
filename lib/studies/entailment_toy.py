"""The entailment protocol's positive control (claimed in hypotheses/test_two_hop_organism.py): a toy
that must route the queried rule's answer.

    toy = run_toy_study(toy_model(config), config, n_prompts=48, offset=1, k=3)
    toy.behaviour.sensitivity, toy.fact_heads, toy.crossed.delta

The toy (lib/tasks/entailment.py "rule-recall") reads prompts such as "c1 a7 . c3 a2 . c3": rules
"condition answer" and a query condition; the answer is the queried rule's. Each prompt becomes a
minimal pair with the other rule's condition as the query, so sensitivity is measured as on the real
models (attnclaims.studies.entailment_sweep). Fact heads are the top `k` by fact-following score on the
discovery prompts (every third), reading each answer `offset` tokens after it; on the others, each
text gets its partner's final-row pattern in those heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from transformer_lens.utilities import get_act_name

from attnclaims.arms import CLEAN
from attnclaims.heads import top_heads
from attnclaims.pair_hooks import watch
from attnclaims.protocols import tokenize_pairs
from attnclaims.studies.entailment_arms import PatternSwap
from attnclaims.studies.entailment_sweep import (
    attention_frame,
    buckets,
    sensitivity_by_pair,
    sweep,
)
from attnclaims.tasks import TASKS
from attnclaims.toy import ToyConfig


@dataclass(frozen=True)
class RuleRecallStudy:
    name: str  # the toy, as the ledger records it
    behaviour: pd.DataFrame  # per pair: family (one per pair), split, sensitivity
    fact_heads: list  # top k by discovery fact-following score
    crossed: pd.DataFrame  # per prompt: delta LD with the fact heads' pattern from the other query


@dataclass(frozen=True)
class ToyPair:
    texts: tuple[str, str]
    answers: tuple[str, str]


def run_toy_study(
    model, config: ToyConfig, n_prompts: int, offset: int, k: int, seed: int = 7
) -> RuleRecallStudy:
    """The toy's study on `n_prompts` rule-recall prompts (drawn with `seed`) of `config`'s task."""
    pairs = []
    for p in TASKS[config.task].prompts(config.task_params, torch.Generator().manual_seed(seed), n_prompts):
        # "c1 a7 . c3 a2 . c3": the other query is the condition before the alternative
        words = p.text.split()
        other = words[words.index(p.alternative.strip()) - 1]
        pairs.append(ToyPair((p.text, " ".join(words[:-1] + [other])), (p.answer, p.alternative)))
    labels = {id(p): f"toy{i}" for i, p in enumerate(pairs)}
    kept, skipped = tokenize_pairs(model, pairs, lambda p: labels[id(p)])
    if skipped:
        raise RuntimeError(f"toy pairs failed to tokenize: {skipped}")
    meta = {
        f"toy{i}": {
            "family": f"toy{i}",
            "group": f"toy{i}",
            "split": "discovery" if i % 3 == 0 else "confirmation",
        }
        for i in range(len(pairs))
    }
    bucket_list = buckets(kept, meta)
    layers = range(model.cfg.n_layers)
    patterns = [(get_act_name("pattern", layer), layer) for layer in layers]
    capture = lambda arm, store: [watch(store, arm, name, layer=layer) for name, layer in patterns]
    clean, stores = sweep(model, bucket_list, [CLEAN], lambda b, i, s: None, capture=capture)
    attention = attention_frame(bucket_list, stores, CLEAN, layers, offset=offset)
    fact_heads = top_heads(
        attention.query("split == 'discovery'").groupby(["layer", "head"]).follows.mean(), k
    )
    crossed, _ = sweep(model, bucket_list, [PatternSwap(tuple(fact_heads))], lambda b, i, s: None)
    crossed["delta"] = crossed.value.to_numpy() - clean.value.to_numpy()
    behaviour = sensitivity_by_pair(clean).rename(columns={"value": "sensitivity"})
    return RuleRecallStudy(
        f"toy:{config.task}-{config.n_layers}L",
        behaviour,
        fact_heads,
        crossed.query("split == 'confirmation'"),
    )
