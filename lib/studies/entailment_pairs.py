"""The minimal pairs the entailment protocol runs on: real-model families, and toy rule chains.

    pairs = design_pairs(model, design)     # prompts/entailment.py's families, on a real model
    pairs = chain_pairs(240, seed=11)       # the two-hop task's chains, on a toy (held-out chains)
    study = run_entailment_study(model, name, design, pairs)   # one protocol for both (entailment_study)

A pair is two texts that differ in the fact alone (real models: the fact's word; toys: the query's
condition word), so each text's entailed answer is the other's alternative and nothing else moves.
Both kinds come as `DesignPairs`: tokenized pairs (attnclaims.protocols.PairTokens, with the answers'
and the bridges' positions) and each pair's table columns: family, group (the unit of every CI),
words, hops, order, crossed, split (discovery / confirmation, disjoint by group), swept.

Real models: each family is used in two rule orders, one same and one crossed (design.order_sets,
alternating between families); families that share a verb or an answer word are one group
(twin_groups), and groups are split once into discovery and confirmation. Toys: every pair is drawn
independently, so a pair is its own family and group; every third pair is a discovery pair; each
pair has one rule order of the 12, "C1 A2 C2 A1" (chains numbered by their condition rule), crossed
when chain 2's answer rule comes before chain 1's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attnclaims.prompts.entailment import FAMILIES, minimal_pairs
from attnclaims.protocols import PairTokens, tokenize_pairs
from attnclaims.stats import discovery_confirmation_split
from attnclaims.tasks import TASKS
from attnclaims.toy import ToyConfig

CHAINS = ToyConfig(task="two-hop", n_content=8)  # the toys' task and vocabulary: every toy here reads it


@dataclass(frozen=True)
class DesignPairs:
    """Step 1 of the protocol: the pairs a model can use, tokenized, with their table columns."""

    two_hop: list  # PairTokens (real models: the two rule orders each family is used in)
    one_hop: list  # PairTokens of the one-hop control (real models only)
    meta: dict  # pair name -> its table columns (meta_of)
    skipped: dict  # pairs this model cannot use, with the reason


def pair_name(p) -> str:
    return f"{p.family}/{p.hops}/{p.order}"


def twin_groups(families) -> dict[str, str]:
    """family name -> its unit: families that share a verb or an answer word (a real family and its
    made-up twin, or two families that "drink" something) are one group, named by its members."""
    parent = {f.name: f.name for f in families}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    seen: dict[str, str] = {}
    for f in families:
        for word in (f"verb:{f.verb}", *(f"answer:{a}" for a in f.answers)):
            if word in seen:
                parent[root(f.name)] = root(seen[word])
            seen.setdefault(word, f.name)
    members: dict[str, list[str]] = {}
    for f in families:
        members.setdefault(root(f.name), []).append(f.name)
    return {name: "+".join(sorted(members[root(name)])) for name in parent}


def meta_of(p, split: dict, swept: dict, group: dict) -> dict:
    """A pair's table columns; `swept`: a two-hop pair in one of its family's swept rule orders."""
    return {
        "family": p.family,
        "group": group[p.family],
        "words": p.words,
        "hops": p.hops,
        "order": p.order,
        "crossed": p.crossed,
        "split": split.get(group[p.family], "confirmation"),
        "swept": p.hops == 2 and p.order in swept[p.family],
    }


def design_pairs(model, design) -> DesignPairs:
    """The real-model pairs: families, groups, the split and each family's rule orders (module
    docstring); `design` is an attnclaims.studies.entailment_study.EntailmentDesign."""
    families = sorted({p.family for p in minimal_pairs(2)})
    group = twin_groups(FAMILIES)
    discovery, _ = discovery_confirmation_split(
        sorted(set(group.values())), confirm_fraction=1 - design.discovery_fraction, seed=0
    )
    split = {g: "discovery" for g in discovery}
    orders = {f: design.order_sets[i % 2] for i, f in enumerate(families)}
    two_hop, skipped = tokenize_pairs(
        model, [p for p in minimal_pairs(2) if p.order in orders[p.family]], pair_name
    )
    one_hop, skipped_1 = tokenize_pairs(model, minimal_pairs(1), pair_name)
    swept = {f: orders[f] if group[f] not in split else (orders[f][i % 2],) for i, f in enumerate(families)}
    meta = {pair_name(p): meta_of(p, split, swept, group) for p in minimal_pairs(2) + minimal_pairs(1)}
    return DesignPairs(two_hop, one_hop, meta, {**skipped, **skipped_1})


def chain_pairs(n: int, seed: int, n_content: int = CHAINS.n_content) -> DesignPairs:
    """`n` toy pairs of two-hop queries on pairings held out of training, drawn with `seed` (a
    generator of its own: no training batch shares it), in the vocabulary of `n_content` words a kind
    (a toy trained with another count reads other pairs). Pair i is the rules of sequence i queried
    with chain 0's condition (text a) and chain 1's (text b); every third pair is a discovery pair."""
    task, params = TASKS[CHAINS.task], CHAINS.replace(n_content=n_content).task_params
    chains = task.sample(params, torch.Generator().manual_seed(seed), n, kinds=(2,), held_out=True)
    pairs, meta = [], {}
    for i in range(n):
        tokens = chains.tokens[i, :-1]
        slot = {int(rule): s for s, rule in enumerate(chains.order[i])}  # rule -> where it is stated
        word = lambda rule, at, slot=slot: 1 + 3 * slot[rule] + at  # a rule's word (at 0: first, 1: second)
        texts = torch.stack([tokens, tokens.clone()])
        texts[:, -1] = chains.words["c"][i]  # text a asks chain 0's condition, text b chain 1's
        name = f"chain{i}"
        pairs.append(
            PairTokens(
                name,
                texts,
                (int(chains.words["a"][i, 0]), int(chains.words["a"][i, 1])),
                (word(2, 1), word(3, 1)),  # answer rules: chain 0's is rule 2, chain 1's rule 3
                (len(tokens) - 1,),
                (word(0, 1), word(1, 1)),  # condition rules' bridges
            )
        )
        first = 0 if slot[0] < slot[1] else 1  # "C1": the chain whose condition rule is stated first
        names = {first: "C1", 1 - first: "C2", 2 + first: "A1", 3 - first: "A2"}
        order = " ".join(names[int(rule)] for rule in chains.order[i])
        meta[name] = {
            "family": name,
            "group": name,
            "words": "toy",
            "hops": 2,
            "order": order,
            "crossed": order.index("A2") < order.index("A1"),
            "split": "discovery" if i % 3 == 0 else "confirmation",
            "swept": True,
        }
    return DesignPairs(pairs, [], meta, {})
