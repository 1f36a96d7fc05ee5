"""Multi-step experiments built from the primitives: the attention switch of the session planner.

attention_switch (the seed's protocol): run the clean prompt; for every head alone, move its
final-row attention weight from the answer token to the alternative's token (and the reverse);
measure the logit difference answer - alternative each time.
"""

from __future__ import annotations

import pandas as pd
import torch

from lib.hooks import move_row
from lib.metrics import logit_diff
from lib.patching import attention_row_sweep
from lib.scores import attention_patterns


def single_token_id(model, word: str) -> int:
    """The id of `word` (with its leading space) if it is one token for this model, else ValueError."""
    ids = model.to_tokens(word, prepend_bos=False)[0]
    if len(ids) != 1:
        pieces = model.to_str_tokens(word, prepend_bos=False)
        raise ValueError(
            f"answer {word!r} is {len(ids)} tokens for this model ({pieces}); choose a word that is one "
            "token (check with model.to_str_tokens) or compare the first tokens explicitly"
        )
    return int(ids[0])


def last_position(tokens: torch.Tensor, token_id: int, word: str, model) -> int:
    """Position of the last occurrence of `token_id` in tokens [1, pos], else ValueError naming the tokens."""
    hits = (tokens[0] == token_id).nonzero().flatten()
    if len(hits) == 0:
        raise ValueError(
            f"answer {word!r} does not occur in the prompt as the token {token_id}; the prompt's tokens are "
            f"{model.to_str_tokens(tokens)}. Put the answer word in the text (with the same leading space)"
        )
    return int(hits[-1])


def locate_answers(model, text: str, answer: str, alternative: str) -> tuple[torch.Tensor, dict]:
    """Tokens [1, pos] of `text` and the ids and last positions of both answer words."""
    tokens = model.to_tokens(text)
    ids = {"answer": single_token_id(model, answer), "alternative": single_token_id(model, alternative)}
    if ids["answer"] == ids["alternative"]:
        raise ValueError(f"answer and alternative are the same token ({answer!r}, {alternative!r})")
    pos = {name: last_position(tokens, i, word, model) for (name, i), word in zip(ids.items(), (answer, alternative))}
    return tokens, {"ids": ids, "pos": pos}


def attention_switch(
    model, text: str, answer: str, alternative: str, heads=None, offset: int = 0, progress: bool = False
) -> pd.DataFrame:
    """One row per (layer, head): the clean logit difference answer - alternative at the final
    position, the logit difference with the head's final-row weight moved from the answer's token
    to the alternative's token (`ld_to_alternative`) and back the other way (`ld_to_answer`), the
    deltas from clean, and the head's clean attention to both tokens.

    `offset` moves attention between the tokens `offset` places after each answer instead (for a
    model that reads an answer from the token after it, as a toy with a shifted copying circuit does).
    """
    tokens, where = locate_answers(model, text, answer, alternative)
    a, b = where["pos"]["answer"] + offset, where["pos"]["alternative"] + offset
    if not 0 <= max(a, b) < tokens.shape[1] - 1:
        raise ValueError(f"offset {offset} puts an answer position outside the prompt's context (positions {a}, {b})")
    metric = logit_diff(where["ids"]["answer"], where["ids"]["alternative"])
    with torch.no_grad():
        clean = float(metric(model(tokens)))
        attention = attention_patterns(model, tokens)[:, 0, :, -1]  # [layer, head, key]
    to_alt = attention_row_sweep(model, tokens, move_row(a, b), -1, metric, heads=heads, progress=progress)
    to_ans = attention_row_sweep(model, tokens, move_row(b, a), -1, metric, heads=heads, progress=progress)
    n_layers, n_heads = to_alt.shape
    layer, head = torch.meshgrid(torch.arange(n_layers), torch.arange(n_heads), indexing="ij")
    frame = pd.DataFrame(
        {
            "layer": layer.flatten().numpy(),
            "head": head.flatten().numpy(),
            "clean_ld": clean,
            "ld_to_alternative": to_alt.flatten().numpy(),
            "ld_to_answer": to_ans.flatten().numpy(),
            "attn_answer": attention[:, :, a].flatten().numpy(),
            "attn_alternative": attention[:, :, b].flatten().numpy(),
        }
    )
    frame["delta_to_alternative"] = frame.ld_to_alternative - clean
    frame["delta_to_answer"] = frame.ld_to_answer - clean
    return frame.dropna(subset=["ld_to_alternative"]).reset_index(drop=True)
