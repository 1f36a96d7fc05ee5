"""A two-hop model organism: a GPT-2 whose weights are set by hand to entail, so its mechanism is known.

    model = organism()          # a TransformerBridge over the toy "entailment" vocabulary (16 words a kind)
    MECHANISM                   # {"hop 1": L1H0, "hop 2": L2H0}: the heads that carry each hop

It answers the toy task of lib/tasks/entailment.py, "<bos> c3 b5 . b0 a7 . c1 b0 . b5 a2 . c3" -> a2,
in every rule order, for every pairing of words (nothing is memorised: each head matches tokens by
identity). Three attention-only layers of four heads, no MLP (each MLP's weights are 0):
- L0H0, previous token: writes each position's preceding token into a PREV slot.
- L1H0, hop 1: from a condition word, attends to the position whose previous token it is ("b5" in
  "c3 b5") and writes that bridge word into a BRIDGE slot.
- L1H1, recency: attends to the latest answer word and writes it weakly (RECENCY of the answer's
  logit), the real models' bias; L1H2, candidates: attends to both answer words equally and writes
  both (an equal share, so it moves no logit difference, though it looks at the answer).
- L2H0, hop 2: from the bridge word, attends to the answer word whose previous token it is ("a2" in
  "b5 a2") and writes it into an ANSWER slot, which the unembedding reads (LOGIT_SCALE per unit).
- L2H1, bridge reader: attends to the bridge word too (softly) and writes into a slot nothing reads:
  a head that looks at the fact without carrying it.
The other heads attend uniformly and write nothing. Each residual feature has a twin of opposite
sign, so every vector has mean 0, and a constant BALLAST pair dominates the variance, so each
LayerNorm only rescales (by a gain set per layer): the construction stays a plain GPT-2 checkpoint
that TransformerLens boots like any other ("gpt2" adapter), saved under the suite's cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from attnclaims.cache import cache_root, verified_folder
from attnclaims.heads import Head
from attnclaims.models import refuse_truncation
from attnclaims.toy import ToyConfig, save_tokenizer, vocabulary

TASK = ToyConfig(task="entailment", n_content=16)  # the vocabulary and context the organism reads
MECHANISM = {"hop 1": Head(1, 0), "hop 2": Head(2, 0)}
SHARP = 40.0  # attention score of a match: softmax weight ~1 - e^-20 on the matched position
RECENCY = 0.3  # the recency head's share of an answer's logit
LOGIT_SCALE = 10.0  # logit per unit of the ANSWER slot
BALLAST = 12.0  # the constant twin pair's size: LayerNorm's variance varies by < 3% across positions
FORMAT = 1  # bump when the construction changes


class _Layout:
    """Where each feature lives in the residual stream: slots of one-hot features, each with a twin."""

    def __init__(self, n_vocab: int, n_ctx: int):
        self.n_vocab, self.n_ctx = n_vocab, n_ctx
        sizes = {
            "tok": n_vocab,
            "pos": n_ctx,
            "prev": n_vocab,
            "bridge": n_vocab,
            "answer": n_vocab,
            "spare": n_vocab,
        }
        self.start, at = {}, 0
        for name, size in sizes.items():
            self.start[name], at = at, at + size
        self.features = at
        self.d_model = 2 * at + 2  # twins, then the ballast pair
        self.d_model += -self.d_model % 4  # a multiple of the four heads

    def dim(self, slot: str, index) -> torch.Tensor:
        return self.start[slot] + torch.as_tensor(index)

    def write(self, slot: str) -> torch.Tensor:
        """[n, d_model]: feature i of `slot` as +1 on its dim and -1 on its twin."""
        size = {"pos": self.n_ctx}.get(slot, self.n_vocab)
        out = torch.zeros(size, self.d_model)
        dims = self.dim(slot, torch.arange(size))
        out[torch.arange(size), dims] = 1.0
        out[torch.arange(size), dims + self.features] = -1.0
        return out


def _weights(vocab: list[str], n_ctx: int) -> tuple[_Layout, dict]:
    """Every parameter the construction sets, as {name: tensor} on GPT-2's layout (Conv1D: x @ W)."""
    lay = _Layout(len(vocab), n_ctx)
    d, n_heads = lay.d_model, 4
    d_head = d // n_heads
    kind = {k: torch.tensor([w.startswith(k) and w[1:].isdigit() for w in vocab]) for k in "cba"}
    eye = torch.eye(len(vocab))
    tok, pos = lay.write("tok"), lay.write("pos")
    ballast = torch.zeros(d)
    ballast[2 * lay.features], ballast[2 * lay.features + 1] = BALLAST, -BALLAST
    p = {"wte": tok, "wpe": pos + ballast}

    def reads(slot: str, rows: torch.Tensor) -> torch.Tensor:
        """[d, cols]: the residual's `slot` feature i maps to row i of `rows`."""
        out = torch.zeros(d, rows.shape[1])
        out[lay.dim(slot, torch.arange(rows.shape[0]))] = rows
        return out

    ones_pos = reads("pos", torch.ones(n_ctx, 1))  # a constant 1 at every position (one-hot positions)
    heads = {}  # (layer, head) -> (W_Q [d, d_head], W_K, W_V, W_O [d_head, d])
    blank = torch.zeros(d, d_head)

    def head(q, k, v=None, out_slot=None, weight=1.0):
        q, k = _pad(q, d_head) * d_head**0.5, _pad(k, d_head)  # the 1/sqrt(d_head) of GPT-2's scores undone
        if v is None:
            return q, k, blank, torch.zeros(d_head, d)
        w_o = torch.zeros(d_head, d)
        w_o[: len(vocab)] = weight * lay.write(out_slot)
        return q, k, _pad(v, d_head), w_o

    shift = torch.zeros(n_ctx, n_ctx)  # query position i matches key position i - 1
    shift[torch.arange(1, n_ctx), torch.arange(n_ctx - 1)] = 1.0
    heads[0, 0] = head(SHARP * reads("pos", shift), reads("pos", torch.eye(n_ctx)), reads("tok", eye), "prev")
    c_only = eye * kind["c"][:, None]
    bos_default = torch.cat([torch.zeros(len(vocab), len(vocab)), torch.zeros(len(vocab), 1)], 1)
    bos_default[0, -1] = 1.0  # key side: BOS carries the default score
    heads[1, 0] = head(  # hop 1: condition word -> the position whose previous token it is
        torch.cat([SHARP * reads("tok", c_only), SHARP / 2 * ones_pos], 1),
        torch.cat([reads("prev", eye), torch.zeros(d, 1)], 1) + reads("tok", bos_default),
        reads("tok", eye),
        "bridge",
    )
    is_a = kind["a"].float()[:, None]
    late = torch.arange(n_ctx, dtype=torch.float)[:, None] * 3.0  # 3 per position: the latest answer wins
    heads[1, 1] = head(
        torch.cat([SHARP * ones_pos, ones_pos], 1),
        torch.cat([reads("tok", is_a), reads("pos", late)], 1),
        reads("tok", eye * is_a),
        "answer",
        RECENCY,
    )
    heads[1, 2] = head(SHARP * ones_pos, reads("tok", is_a), reads("tok", eye * is_a), "answer", 0.5)
    b_only = eye * kind["b"][:, None]
    heads[2, 0] = head(  # hop 2: bridge word -> the answer word whose previous token it is
        torch.cat([SHARP * reads("bridge", b_only), SHARP / 2 * ones_pos], 1),
        torch.cat([reads("prev", eye), reads("tok", is_a)], 1),
        reads("tok", eye * is_a),
        "answer",
    )
    heads[2, 1] = head(4.0 * reads("tok", c_only), reads("prev", eye), reads("tok", eye), "spare")
    for layer in range(3):
        q, k, v, o = zip(*(heads.get((layer, h), head(blank, blank)) for h in range(n_heads)))
        p[f"{layer}.c_attn"] = torch.cat([torch.cat(q, 1), torch.cat(k, 1), torch.cat(v, 1)], 1)
        p[f"{layer}.c_proj"] = torch.cat(o, 0)
    unembed = torch.zeros(d, len(vocab))
    unembed[lay.dim("answer", torch.arange(len(vocab)))] = LOGIT_SCALE * eye * is_a.T
    p["lm_head"] = unembed.T
    return lay, p


def _pad(matrix: torch.Tensor, cols: int) -> torch.Tensor:
    return torch.nn.functional.pad(matrix, (0, cols - matrix.shape[1]))


def _layer_norm_gains(lay: _Layout) -> list[float]:
    """The gain that makes LayerNorm(x) = x for a residual with `slots` one-hot slots filled: the
    twins give mean 0, the variance is (2 * slots + 2 * BALLAST^2) / d_model."""
    filled = [
        2,
        3,
        5,
        6,
    ]  # entering blocks 0, 1, 2 and the final LayerNorm (tok, pos, prev, bridge, answer...)
    return [((2 * s + 2 * BALLAST**2) / lay.d_model) ** 0.5 for s in filled]


def build_organism():
    """The organism as a HuggingFace GPT2LMHeadModel (float32, eval mode)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    vocab = vocabulary(TASK)
    lay, weights = _weights(vocab, TASK.n_ctx)
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=TASK.n_ctx,
        n_embd=lay.d_model,
        n_layer=3,
        n_head=4,
        n_inner=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    model = GPT2LMHeadModel(config)
    gains = _layer_norm_gains(lay)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model.transformer.wte.weight.copy_(weights["wte"])
        model.transformer.wpe.weight.copy_(weights["wpe"])
        for layer, block in enumerate(model.transformer.h):
            block.ln_1.weight.fill_(gains[layer])
            block.ln_2.weight.fill_(1.0)
            block.attn.c_attn.weight.copy_(weights[f"{layer}.c_attn"])
            block.attn.c_proj.weight.copy_(weights[f"{layer}.c_proj"])
        model.transformer.ln_f.weight.fill_(gains[3])
        model.lm_head.weight.copy_(weights["lm_head"])
    return model.eval()


def organism_folder(root: Path | None = None) -> Path:
    key = hashlib.sha256(json.dumps({"format": FORMAT, "task": TASK.key()}).encode()).hexdigest()[:16]
    return (root or cache_root()) / "organism" / f"two-hop-{key}"


def organism(root: Path | None = None, device: str = "cpu"):
    """The organism as a TransformerBridge in eval mode (built once into the cache, then loaded)."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    def build(staging: Path) -> dict:
        build_organism().save_pretrained(staging)
        save_tokenizer(vocabulary(TASK), staging)
        return {"format": FORMAT}

    folder = verified_folder(organism_folder(root), build, what="two-hop organism")
    model = GPT2LMHeadModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    bridge = TransformerBridge.boot_transformers("gpt2", hf_model=model, tokenizer=tokenizer, device=device)
    bridge.cfg.default_prepend_bos = True
    bridge.eval()
    bridge.requires_grad_(False)
    return refuse_truncation(bridge, "the two-hop organism")
