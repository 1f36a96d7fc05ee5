"""A worked example of a hypothesis file in a project of your own. Installing attnclaims gives pytest
its plugin: `--model` (an embedded name, a hub id or a local folder), the `model` and `claim`
fixtures, and the claims ledger in this project's results/.

Protocol
1. Sequences: 64 of BOS + 12 random ordinary tokens + the same 12 again (attnclaims.tasks), seed 0;
   the first 32 select, the other 32 confirm (lib/design.py, this project's own package).
2. Select the head with the highest induction score on the selection sequences: its mean attention
   from each token of the repeat to the token after that token's first occurrence.
3. Confirm on the held-out sequences: per sequence, that head's induction score minus the mean score
   of the other heads of its layer (the matched control: same layer, same sequences). The claim is
   the 95% bootstrap CI of that difference's mean over the 32 held-out sequences.

Log
- 2026-12-02: smollm2-135m (a 4-bit checkpoint de-quantised to float32): L18H6 selected; 0.702
  [0.648, 0.747] above its layer's mean on the 32 held-out sequences: supported.
"""

from __future__ import annotations

from attnclaims.declaration import Hypothesis
from attnclaims.heads import versus_layer
from attnclaims.scores import attention_patterns, induction_score_from_pattern, induction_scores
from attnclaims.stats import bootstrap_ci
from attnclaims.tasks import ordinary_token_ids, random_repeats

from lib.design import Design, split

HYPOTHESIS = Hypothesis("Does an induction head selected on some sequences confirm on others?")
UNIT = "held-out sequences"
DESIGN = Design()


def test_an_induction_head_beats_its_layer_on_heldout_sequences(model, claim):
    pool = ordinary_token_ids(model, seed=DESIGN.seed)
    tokens = random_repeats(model, pool, DESIGN.seed, 2 * DESIGN.per_half, DESIGN.seq_len)
    select, confirm = split(tokens)
    scores = induction_scores(model, select)  # [layer, head], selection sequences only
    layer, head = divmod(int(scores.argmax()), model.cfg.n_heads)
    held_out = induction_score_from_pattern(attention_patterns(model, confirm)[layer], DESIGN.seq_len)
    assert claim(
        bootstrap_ci(versus_layer(held_out, head)),
        ">=",
        0.3,
        why="a third of the attention more than its layer's other heads give the induction target; a "
        "head attending uniformly gives it 1/13 to 1/24",
        metric=f"induction score of L{layer}H{head} minus its layer's mean",
    )
