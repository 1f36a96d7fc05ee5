"""The copy account of the entailment protocol: do the switch heads copy what they look at?

    table, change = copy_account(model, clean, heads, design, confirmation_buckets(clean))

Two tests, on the confirmation prompts (attnclaims.studies.entailment_study, step 5):
- upstream: the top induction heads below the switch heads mean-ablated, over the whole run
  (ABLATE_INDUCTION) and along the switch heads' queries only (INDUCTION_QUERIES), with a reference
  from other groups' prompts, never the ablated ones (entailment_sweep.other_groups_mean); there is
  nothing to ablate where no induction head lies below the switch heads;
- the switch heads themselves (design.copy_test): the token before each answer word in the rules
  replaced ("I wear boots" -> "I indeed boots"), which an induction-style head keys on, against the
  token two before each answer replaced (ReplaceBefore): their attention on the answers, and the
  switch's effect on the changed text. On the toys the token before an answer is its bridge word, the
  chain itself, so this test is the real models' only.
Each arm's LD and the top switch heads' attention (ON_ANSWERS, RECENCY) go into the study's table.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from transformer_lens.utilities import get_act_name

from attnclaims.arms import CLEAN
from attnclaims.effects import tidy
from attnclaims.pair_hooks import watch
from attnclaims.studies.entailment_arms import (
    ABLATE_INDUCTION,
    INDUCTION_QUERIES,
    Heads,
    Prompts,
    ReplaceBefore,
    Switch,
)
from attnclaims.studies.entailment_results import COLUMNS, LD, ON_ANSWERS, RECENCY
from attnclaims.studies.entailment_sweep import (
    EVERY_POSITION,
    attention_frame,
    other_groups_mean,
    output_change,
    sweep,
)


@dataclass(frozen=True)
class CopyAccount:
    table: pd.DataFrame  # tidy: LD under each arm; ON_ANSWERS and RECENCY under them and clean
    ablation_change: float  # how far the reference moves the induction heads' final-row output (NaN: none)


def copying_arms(heads: Heads, design) -> list:
    """The copy account's arms: the ablations (where there are induction heads to ablate), and the
    token replacements alone and under the switch (design.copy_test)."""
    ablations = [ABLATE_INDUCTION, INDUCTION_QUERIES] if heads.induction else []
    switch = Switch(design.k)
    replaced = [ReplaceBefore(offset, then) for then in (None, switch) for offset in (1, 2)]
    return ablations + (replaced if design.copy_test else [])


def copy_account(model, clean, heads: Heads, design, confirmation: tuple[list, list]) -> CopyAccount:
    """Full forwards from the lowest edited layer (from the embeddings for a replaced token).
    `clean`: the study's CleanRun; `confirmation`: its confirmation buckets and their clean stores."""
    conf_buckets, conf_stores = confirmation
    top = heads.top
    watched = sorted({(get_act_name("pattern", layer), layer) for layer, _ in top})
    references = [
        {
            name: other_groups_mean(clean.buckets, clean.stores, b, (EVERY_POSITION, name))
            for name, _ in clean.full_z
        }
        for b in conf_buckets
    ]
    prompts_of = lambda b, index, store: Prompts(model, b, conf_stores[index], heads, references[index])
    capture = lambda arm, store: [watch(store, arm, name, layer=layer) for name, layer in watched]
    arms = copying_arms(heads, design)
    lds, stores = [], [dict(store) for store in conf_stores]
    for split_q in (False, True):  # the query path runs inside split_qkv_input; the rest stack together
        group = [arm for arm in arms if (arm == INDUCTION_QUERIES) == split_q]
        if not group:
            continue
        frame, group_stores = sweep(model, conf_buckets, group, prompts_of, split_q=split_q, capture=capture)
        lds.append(frame)
        for store, more in zip(stores, group_stores):
            store.update(more)
    looked = [answer_attention(conf_buckets, stores, arm, top) for arm in [CLEAN, *arms]]
    tables = [tidy(pd.concat(looked, ignore_index=True), [ON_ANSWERS, RECENCY], COLUMNS)]
    if lds:
        tables.append(tidy(pd.concat(lds, ignore_index=True).rename(columns={"value": LD}), [LD], COLUMNS))
    change = output_change(conf_stores, references, heads.induction) if heads.induction else float("nan")
    return CopyAccount(pd.concat(tables, ignore_index=True), change)


def answer_attention(bucket_list, stores, arm, heads) -> pd.DataFrame:
    """Per prompt under `arm`: `heads`' mean final-row attention on both answers (ON_ANSWERS) and on
    the later answer minus the earlier one (RECENCY)."""
    frame = attention_frame(bucket_list, stores, arm, sorted({layer for layer, _ in heads}))
    frame = frame[[(layer, h) in heads for layer, h in zip(frame.layer, frame["head"])]]
    frame = frame.assign(
        **{ON_ANSWERS: frame.entailed + frame.alternative, RECENCY: frame.later - frame.earlier}
    )
    return (
        frame.groupby(list(COLUMNS), as_index=False, sort=False, dropna=False)[[ON_ANSWERS, RECENCY]]
        .mean()
        .assign(arm=arm.name)
    )
