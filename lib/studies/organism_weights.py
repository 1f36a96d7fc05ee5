"""Weights set by hand: a GPT-2 whose heads and MLP neurons each do one named thing.

    circuit = Circuit(n_layers=4, n_heads=4, slots=("bridge",))      # the two-hop task's vocabulary
    circuit.head(Head(0, 1), q=circuit.read("pos", shift), k=circuit.read("pos", eye),
                 v=circuit.read("tok", eye), out="prev")           # a previous-token head
    model = circuit.model()                                         # a HF GPT2LMHeadModel, float32, eval
    bridge = boot(model)                                            # the same as a TransformerBridge

The residual stream is a set of named slots (SLOTS: tok, pos, prev, answer, ...), each a one-hot
feature per word of the vocabulary (or per position, per pair of words, or a single number), and each
feature has a twin of opposite sign, so every vector has mean 0; a constant BALLAST pair dominates the
variance, so every LayerNorm only rescales, by about 1% at most, and a fixed gain undoes it. A head is
what its query reads and what its key reads (its attention score is their product: a query feature
of strength s meeting the same key feature scores s), what its value reads and the slot its output
writes; an MLP neuron is the features it adds up, a threshold and the feature it writes (GELU is 0
below the threshold and linear above it at the scale used here). The unembedding reads the answer
slot: LOGIT_SCALE nats per unit. What is built and why: attnclaims.studies.organisms.
"""

from __future__ import annotations

import torch

from attnclaims.heads import Head
from attnclaims.studies.entailment_pairs import CHAINS as TASK  # the vocabulary and context organisms read
from attnclaims.tasks import TASKS
from attnclaims.toy import vocabulary
from attnclaims.toy_models import gpt2

BALLAST = 20.0  # the constant twin pair: LayerNorm's variance moves by < 1.5% across positions
FILLED = 4.0  # about how many unit features a residual holds: the LayerNorm gain is set for it
LOGIT_SCALE = 10.0  # logit per unit of the answer slot
NEURON_SCALE = 20.0  # an MLP neuron's pre-activation per unit past its threshold (GELU ~ linear there)
SLOTS = {  # slot -> its size: "vocab" (one feature per word), "pos", "pairs" (per condition x bridge), 1
    "tok": "vocab",
    "pos": "pos",
    "prev": "vocab",  # the previous token (written by the previous-token head)
    "answer": "vocab",  # read by the unembedding
    "spare": "vocab",  # written by heads that nothing reads
    "bridge": "vocab",  # the bridge word hop 1 found
    "chain": "vocab",  # the early hop: at each answer word, its chain's condition
    "chain2": "vocab",  # the early hop: at each condition rule's bridge, its chain's answer
    "flag2": 1,  # the early hop: 1 where chain2 holds an answer
    "pairs": "pairs",  # the MLP hop: at each condition rule's bridge, (condition, bridge) as one feature
    "pairsum": "pairs",  # the MLP hop: the pairs of every condition rule, gathered at the query
    "flag": 1,  # the MLP hop: 1 where a pair was formed
    "ordc": 1,  # the position cheat: which condition rule this is (+1/7 first, -1/7 second)
    "orda": 1,  # the position cheat: which answer rule this is
    "qord": 1,  # the position cheat: which condition rule the query names
}
ALWAYS = ("tok", "pos", "prev", "answer", "spare")


class Circuit:
    """A GPT-2 under construction: its slots, and the heads and MLP neurons set so far."""

    def __init__(self, n_layers: int, n_heads: int = 4, slots=()):
        self.vocab = vocabulary(TASK)
        self.n_ctx, self.n_layers, self.n_heads = TASK.n_ctx, n_layers, n_heads
        self.k = TASK.n_content
        sizes = {"vocab": len(self.vocab), "pos": self.n_ctx, "pairs": self.k * self.k}
        self.start, at = {}, 0
        for name in dict.fromkeys([*ALWAYS, *slots]):
            if name not in SLOTS:
                raise ValueError(f"unknown slot {name!r}; the slots are {sorted(SLOTS)}")
            self.start[name] = at
            at += sizes.get(SLOTS[name], SLOTS[name])
        self.features = at
        self.d_model = 2 * at + 2  # twins, then the ballast pair
        self.d_model += -self.d_model % n_heads
        self.d_head = self.d_model // n_heads
        self.sizes = {name: sizes.get(SLOTS[name], SLOTS[name]) for name in self.start}
        self.heads: dict[Head, tuple] = {}
        self.neurons: dict[int, list[tuple]] = {layer: [] for layer in range(n_layers)}
        task = TASKS[TASK.task]
        self.ids = {kind: task.ids(TASK.task_params, kind, torch.arange(self.k)) for kind in "cba"}

    # -- features --------------------------------------------------------------------------

    def kind(self, kinds: str) -> torch.Tensor:
        """[vocab] 1.0 for the words of `kinds` ("c", "ba", ...)."""
        out = torch.zeros(len(self.vocab))
        for kind in kinds:
            out[self.ids[kind]] = 1.0
        return out

    def token(self, word: str) -> torch.Tensor:
        """[vocab] one-hot of `word`."""
        out = torch.zeros(len(self.vocab))
        out[self.vocab.index(word)] = 1.0
        return out

    def dims(self, slot: str) -> torch.Tensor:
        if slot not in self.start:
            raise ValueError(f"slot {slot!r} is not in this circuit; build it with slots=({slot!r}, ...)")
        return self.start[slot] + torch.arange(self.sizes[slot])

    def read(self, slot: str, rows: torch.Tensor) -> torch.Tensor:
        """[d_model, cols]: feature i of `slot` maps to row i of `rows` ([slot size] reads as one column)."""
        rows = rows[:, None] if rows.ndim == 1 else rows
        out = torch.zeros(self.d_model, rows.shape[1])
        out[self.dims(slot)] = rows
        return out

    def ones(self) -> torch.Tensor:
        """[d_model, 1]: 1 at every position (the position slot is one-hot)."""
        return self.read("pos", torch.ones(self.n_ctx))

    def write(self, slot: str, rows: torch.Tensor | None = None) -> torch.Tensor:
        """[inputs, d_model]: input i writes row i of `rows` into `slot` (default: feature i), with twins."""
        rows = torch.eye(self.sizes[slot]) if rows is None else rows
        out = torch.zeros(rows.shape[0], self.d_model)
        out[:, self.dims(slot)] = rows
        out[:, self.dims(slot) + self.features] = -rows
        return out

    # -- components ------------------------------------------------------------------------

    def head(self, at: Head, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> None:
        """Head `at`: scores q(query)·k(key) ([d_model, r] each), output v(key) @ out ([d_model, r_v],
        [r_v, d_model]: `write`)."""
        at = Head(*at)
        if at in self.heads:
            raise ValueError(f"{at} is set twice: each head does one thing")
        if not (0 <= at.layer < self.n_layers and 0 <= at.head < self.n_heads):
            raise ValueError(f"{at} is not a head of a {self.n_layers}-layer, {self.n_heads}-head circuit")
        if max(q.shape[1], v.shape[1]) > self.d_head:
            raise ValueError(f"{at} reads more features than a head holds ({self.d_head})")
        self.heads[at] = (q * self.d_head**0.5, k, v, out)  # GPT-2 divides scores by sqrt(d_head): undone

    def neuron(self, layer: int, reads: torch.Tensor, threshold: float, full: float, writes: torch.Tensor):
        """An MLP neuron of block `layer` ([d_model] `reads` and `writes`): 0 while reads·x is below
        `threshold`, `writes` when it reaches `full` (GELU(NEURON_SCALE (reads·x - threshold)), rescaled)."""
        scale = 1 / (NEURON_SCALE * (full - threshold))
        self.neurons[layer].append((reads * NEURON_SCALE, -threshold * NEURON_SCALE, writes * scale))

    def unembed(self) -> torch.Tensor:
        """[vocab, d_model]: each answer word's logit is LOGIT_SCALE x its answer feature."""
        out = torch.zeros(len(self.vocab), self.d_model)
        rows = self.ids["a"]
        out[rows, self.start["answer"] + rows] = LOGIT_SCALE
        return out

    # -- the model ---------------------------------------------------------------------------

    def model(self):
        """The circuit as a HuggingFace GPT2LMHeadModel (float32, eval mode)."""
        width = max([4, *(len(n) for n in self.neurons.values())])
        model = gpt2(len(self.vocab), self.n_ctx, self.d_model, self.n_layers, self.n_heads, width)
        d, n = self.d_model, self.features
        ballast = torch.zeros(d)
        ballast[2 * n], ballast[2 * n + 1] = BALLAST, -BALLAST
        gain = ((2 * FILLED + 2 * BALLAST**2) / d) ** 0.5  # LayerNorm(x) ~ x: its std is about `gain`
        with torch.no_grad():
            for param in model.parameters():
                param.zero_()
            model.transformer.wte.weight.copy_(self.write("tok"))
            model.transformer.wpe.weight.copy_(self.write("pos") + ballast)
            for layer, block in enumerate(model.transformer.h):
                block.ln_1.weight.fill_(gain)
                block.ln_2.weight.fill_(gain)
                block.attn.c_attn.weight.copy_(self._attention(layer))
                block.attn.c_proj.weight.copy_(self._output(layer))
                for i, (reads, bias, writes) in enumerate(self.neurons[layer]):
                    block.mlp.c_fc.weight[:, i] = reads
                    block.mlp.c_fc.bias[i] = bias
                    block.mlp.c_proj.weight[i] = writes
            model.transformer.ln_f.weight.fill_(gain)
            model.lm_head.weight.copy_(self.unembed())
        return model.eval()

    def _blocks(self, layer: int, part: int) -> list[torch.Tensor]:
        """Per head of `layer`: its q (0), k (1) or v (2) columns padded to d_head."""
        blank = torch.zeros(self.d_model, self.d_head)
        out = []
        for h in range(self.n_heads):
            weights = self.heads.get(Head(layer, h))
            if weights is None:
                out.append(blank)
            else:
                matrix = weights[part]
                out.append(torch.nn.functional.pad(matrix, (0, self.d_head - matrix.shape[1])))
        return out

    def _attention(self, layer: int) -> torch.Tensor:
        """[d_model, 3 d_model]: GPT-2's c_attn (Conv1D: x @ W), queries, keys, values."""
        return torch.cat([torch.cat(self._blocks(layer, part), 1) for part in range(3)], 1)

    def _output(self, layer: int) -> torch.Tensor:
        """[d_model, d_model]: GPT-2's c_proj, each head's rows its output map."""
        out = torch.zeros(self.d_model, self.d_model)
        for h in range(self.n_heads):
            weights = self.heads.get(Head(layer, h))
            if weights is not None:
                rows = weights[3]
                out[h * self.d_head : h * self.d_head + rows.shape[0]] = rows
        return out


def boot(model, name: str):
    """A hand-set GPT-2 as a TransformerBridge in eval mode (the tokenizer from the suite's cache)."""
    from transformer_lens.model_bridge import TransformerBridge

    from attnclaims.models import refuse_truncation

    bridge = TransformerBridge.boot_transformers("gpt2", hf_model=model, tokenizer=tokenizer(), device="cpu")
    bridge.cfg.default_prepend_bos = True
    bridge.eval()
    bridge.requires_grad_(False)
    return refuse_truncation(bridge, name)


def tokenizer():
    """The two-hop task's word-level tokenizer, saved once under the suite's cache (TransformerLens
    boots a bridge only with a tokenizer loaded back from disk)."""
    from transformers import PreTrainedTokenizerFast

    from attnclaims.cache import cache_root, verified_folder
    from attnclaims.toy import save_tokenizer

    def build(staging):
        save_tokenizer(vocabulary(TASK), staging)
        return {"task": TASK.task, "n_content": TASK.n_content}

    folder = verified_folder(
        cache_root() / "organism" / f"tokenizer-{TASK.key()}", build, what="the organisms' tokenizer"
    )
    return PreTrainedTokenizerFast.from_pretrained(str(folder))
