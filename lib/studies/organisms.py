"""Model organisms for the entailment protocol: two-hop models whose mechanism is known, and cheats.

    specs = generate(12, seed=0)          # organisms with a placement drawn from the seed
    model = load(specs[0])                # a TransformerBridge over the two-hop task's vocabulary
    carriers(specs[0])                    # what carries each hop: {"hop 1": (L1H3,), "hop 2": (L3H0,)}
    load(CHEATS["position"])              # a cheat: right on same-order prompts without chaining

Every model reads the `two-hop` task's prompts (lib/tasks/two_hop.py), "<bos> c3 b5 . b0 a7 . c1 b0 .
b5 a2 . ?2 c3" -> a2, and matches words by identity, so it answers every pairing of words.

An organism chains in two hops, each carried by what its spec names (built by
attnclaims.studies.organism_weights; the protocol is never told):
- a previous-token head writes each position's preceding word;
- hop 1 (condition -> bridge word), one of: a head at the final position that attends to the word
  whose previous word is the query ("b5" in "c3 b5") and writes it as the bridge ("attention"; or two
  heads writing half each, "split"); an MLP that looks the bridge up in pairs (condition, bridge)
  that a head gathers from every condition rule with the same attention in both texts of a pair
  ("mlp": attention retrieves the operands, the MLP computes); or two heads that make it earlier, at
  whichever of a chain's two rules comes later ("early"): at the answer word, writing the chain's
  condition there, or at the condition rule's bridge word, writing the chain's answer there, so the
  final position needs one lookup;
- hop 2 (bridge -> answer): a head at the final position that attends to the answer word whose
  previous word is the bridge, and writes it (or two heads, half each); after an early hop, a head
  that attends to the answer word carrying the query's condition;
- each hop head has a sharpness, the attention score of a match (SHARP, or a soft one);
- distractor heads attend exactly as a hop head does, as sharply, and write into a slot nothing
  reads; a recency head writes the latest answer a little (the real models' bias), a candidates head
  writes both answers alike.
A cheat answers without chaining: `position` answers the answer stated in the same place (first or
second answer rule) as the query's condition rule, `recency` the answer stated last.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from attnclaims.heads import Head
from attnclaims.studies.organism_weights import TASK, Circuit, boot

SHARP = 40.0  # the attention score of a match: weight ~1 - e^-20 on the matched word
SOFT = (3.0, 5.0)  # a soft hop's score: about 0.5-0.9 of its weight on the match
RECENCY = 0.3  # the recency head's share of an answer's logit
HOP1_KINDS = ("attention", "split", "mlp", "early")


@dataclass(frozen=True)
class HopHead:
    head: Head
    sharp: float = SHARP  # attention score of a match
    weight: float = 1.0  # the share of the hop it writes: two heads of 0.5 split a hop


@dataclass(frozen=True)
class Organism:
    """A two-hop organism: where each part of the mechanism is (module docstring)."""

    name: str  # as the ledger records it: "toy:organism-3"
    n_layers: int
    previous: Head
    hop1: tuple[HopHead, ...]  # the hop-1 heads (hop1_by "attention"/"split"), or the two early heads
    hop2: tuple[HopHead, ...]
    hop1_by: str = "attention"  # HOP1_KINDS
    mlp: tuple[int, int] = ()  # hop1_by "mlp": the layers of the MLP that forms the pairs and of the lookup
    operands: Head | None = None  # hop1_by "mlp": the head that gathers the pairs
    distractors: tuple[tuple[Head, int], ...] = ()  # (head, the hop whose attention it copies)
    recency: Head | None = None
    candidates: Head | None = None
    n_heads: int = 4

    def __post_init__(self):
        if self.hop1_by not in HOP1_KINDS:
            raise ValueError(f"hop1_by={self.hop1_by!r}: one of {HOP1_KINDS}")
        if (self.hop1_by == "mlp") != bool(self.mlp) or (self.hop1_by == "mlp") != (
            self.operands is not None
        ):
            raise ValueError(
                f"{self.name}: an MLP hop names its two MLP layers and its operand head, and only it"
            )


@dataclass(frozen=True)
class Cheat:
    """A model that answers two-hop prompts without chaining: `how` is "position" or "recency"."""

    how: str
    name: str = field(init=False)

    def __post_init__(self):
        if self.how not in ("position", "recency"):
            raise ValueError(f"a cheat answers by 'position' or 'recency', got {self.how!r}")
        object.__setattr__(self, "name", f"toy:cheat-{self.how}")


CHEATS = {how: Cheat(how) for how in ("position", "recency")}


def carriers(spec: Organism) -> dict[str, tuple]:
    """What carries each hop: heads (Head), or the lookup MLP's layer as "MLP<layer>"."""
    hop1 = (f"MLP{spec.mlp[1]}",) if spec.hop1_by == "mlp" else tuple(h.head for h in spec.hop1)
    return {"hop 1": hop1, "hop 2": tuple(h.head for h in spec.hop2)}


# ---------------------------------------------------------------------------------------------
# Generation


def generate(n: int, seed: int) -> list[Organism]:
    """`n` organisms drawn from `seed`: organism i's hop 1 is HOP1_KINDS[i % 4]; every third
    attention-hop organism is soft (both hop scores drawn from SOFT); every organism but the MLP and
    early ones with an odd index splits hop 2 over two heads; placement, sharpness (log-uniform
    6-40 elsewhere), 1-2 distractors and the recency and candidates heads (each with probability
    1/2) are drawn."""
    rng = random.Random(seed)
    return [_draw(rng, i, HOP1_KINDS[i % len(HOP1_KINDS)]) for i in range(n)]


def _draw(rng: random.Random, index: int, hop1_by: str) -> Organism:
    n_layers, n_heads = 4, 4
    free = {Head(layer, h) for layer in range(n_layers) for h in range(n_heads)}

    def take(layers) -> Head:
        pool = sorted(h for h in free if h.layer in layers)
        head = rng.choice(pool)
        free.discard(head)
        return head

    soft = hop1_by in ("attention", "split") and index % 3 == 2
    sharp = lambda: rng.uniform(*SOFT) if soft else round(6.0 * (40 / 6) ** rng.random(), 2)
    split2 = hop1_by in ("attention", "split") and index % 2 == 1
    previous = take([0])
    mlp, operands = (), None
    if hop1_by == "mlp":  # pairs formed in MLP 0, gathered by a layer-1 head, looked up in MLP 1 or 2
        operands = take([1])
        mlp = (0, rng.choice([1, 2]))
        hop1, after = (), mlp[1] + 1
    elif hop1_by == "early":
        s = sharp()
        hop1 = (HopHead(take([1, 2]), s), HopHead(take([1, 2]), s))
        after = max(h.head.layer for h in hop1) + 1
    elif hop1_by == "split":
        layers = rng.choice([[1], [2], [1, 2]])
        first = take(layers[:1])
        second = take(layers[-1:])
        s = sharp()
        hop1 = (HopHead(first, s, 0.5), HopHead(second, s, 0.5))
        after = max(first.layer, second.layer) + 1
    else:
        hop1 = (HopHead(take([1, 2]), sharp()),)
        after = hop1[0].head.layer + 1
    later = range(after, n_layers)
    s2 = sharp()
    hop2 = (
        (HopHead(take(later), s2, 0.5), HopHead(take(later), s2, 0.5))
        if split2
        else (HopHead(take(later), s2),)
    )
    distractors = []
    for _ in range(rng.choice([1, 2])):
        hop = rng.choice([1, 2]) if hop1_by in ("attention", "split") else 2
        lowest = 1 if hop == 1 else after
        if any(h.layer >= lowest for h in free):
            distractors.append((take(range(lowest, n_layers)), hop))
    extra = {
        name: take(range(n_layers)) if rng.random() < 0.5 else None for name in ("recency", "candidates")
    }
    return Organism(
        f"toy:organism-{index}",
        n_layers,
        previous,
        hop1,
        hop2,
        hop1_by,
        mlp,
        operands,
        tuple(distractors),
        n_heads=n_heads,
        **extra,
    )


# ---------------------------------------------------------------------------------------------
# Building


def load(spec: Organism | Cheat):
    """The organism or cheat as a TransformerBridge (its weights built in memory: milliseconds)."""
    return boot(build(spec), spec.name)


def build(spec: Organism | Cheat):
    """The HuggingFace GPT2LMHeadModel of `spec`."""
    return (_cheat if isinstance(spec, Cheat) else _organism)(spec).model()


def _organism(spec: Organism) -> Circuit:
    slots = {"attention": ("bridge",), "split": ("bridge",), "early": ("chain", "chain2", "flag2")}.get(
        spec.hop1_by, ("bridge", "pairs", "pairsum", "flag")
    )
    c = Circuit(spec.n_layers, spec.n_heads, slots)
    previous_token(c, spec.previous)
    if spec.hop1_by == "mlp":
        mlp_hop(c, spec.mlp, spec.operands)
    elif spec.hop1_by == "early":
        early_hop(c, *spec.hop1)
    else:
        for hop in spec.hop1:
            c.head(
                hop.head,
                *hop1_head(c, hop.sharp),
                c.read("tok", torch.eye(len(c.vocab))),
                hop.weight * c.write("bridge"),
            )
    for hop in spec.hop2:
        q, k = (readout_head if spec.hop1_by == "early" else hop2_head)(c, hop.sharp)
        answers = torch.diag(c.kind("a"))
        v = c.read("tok", answers) + (c.read("chain2", answers) if spec.hop1_by == "early" else 0)
        c.head(hop.head, q, k, v, hop.weight * c.write("answer"))
    for head, hop in spec.distractors:
        like = {1: hop1_head, 2: readout_head if spec.hop1_by == "early" else hop2_head}[hop]
        sharp = (spec.hop1 or spec.hop2)[0].sharp if hop == 1 else spec.hop2[0].sharp
        c.head(head, *like(c, sharp), c.read("tok", torch.eye(len(c.vocab))), c.write("spare"))
    if spec.recency is not None:
        recency_head(c, spec.recency, RECENCY)
    if spec.candidates is not None:
        is_a = c.kind("a")
        c.head(
            spec.candidates,
            SHARP * c.ones(),
            c.read("tok", is_a),
            c.read("tok", torch.diag(is_a)),
            0.5 * c.write("answer"),
        )
    return c


def previous_token(c: Circuit, at: Head) -> None:
    """Query position i meets key position i - 1; writes that word into `prev`."""
    shift = torch.zeros(c.n_ctx, c.n_ctx)
    shift[torch.arange(1, c.n_ctx), torch.arange(c.n_ctx - 1)] = 1.0
    eye = torch.eye(len(c.vocab))
    c.head(
        at,
        SHARP * c.read("pos", shift),
        c.read("pos", torch.eye(c.n_ctx)),
        c.read("tok", eye),
        c.write("prev"),
    )


def hop1_head(c: Circuit, sharp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, k) of hop 1: a condition word meets the word whose previous word it is (sharp); any
    query meets BOS at sharp / 2 (where there is no match)."""
    q = torch.cat([sharp * c.read("tok", torch.diag(c.kind("c"))), sharp / 2 * c.ones()], 1)
    k = torch.cat([c.read("prev", torch.eye(len(c.vocab))), c.read("tok", c.token("<bos>"))], 1)
    return q, k


def hop2_head(c: Circuit, sharp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, k) of hop 2: the bridge word meets the answer word whose previous word it is (sharp, plus
    sharp / 2 on every answer word)."""
    q = torch.cat([sharp * c.read("bridge", torch.diag(c.kind("b"))), sharp / 2 * c.ones()], 1)
    k = torch.cat([c.read("prev", torch.eye(len(c.vocab))), c.read("tok", c.kind("a"))], 1)
    return q, k


def readout_head(c: Circuit, sharp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, k) of hop 2 after an early hop: the query's condition meets the answer word whose `chain`
    holds it, or the condition rule's bridge whose previous word it is and whose `chain2` holds an
    answer (2 sharp); every answer word and every filled chain2 scores sharp."""
    eye = torch.eye(len(c.vocab))
    q = torch.cat([sharp * c.read("tok", torch.diag(c.kind("c"))), sharp * c.ones()], 1)
    k = torch.cat(
        [
            c.read("chain", eye) + c.read("prev", eye),
            c.read("tok", c.kind("a")) + c.read("flag2", torch.ones(1)),
        ],
        1,
    )
    return q, k


def early_hop(c: Circuit, at_answer: HopHead, at_condition: HopHead) -> None:
    """Hop 1 made before the final position, where a chain's later rule can see its earlier one:
    at each answer word (previous word: its bridge b), `at_answer` attends to the condition rule's b
    (the b whose previous word is a condition) and writes that condition into `chain`; at each
    condition rule's bridge b, `at_condition` attends to the answer word whose previous word is b and
    writes that answer into `chain2` (and 1 into flag2). Where nothing matches, BOS (which writes 0)."""
    eye, bos = torch.eye(len(c.vocab)), c.token("<bos>")
    s = at_answer.sharp
    q = torch.cat([s * c.read("prev", torch.diag(c.kind("b"))), s / 2 * c.ones(), s / 4 * c.ones()], 1)
    k = torch.cat([c.read("tok", eye), c.read("prev", c.kind("c")), c.read("tok", bos)], 1)
    c.head(at_answer.head, q, k, c.read("prev", torch.diag(c.kind("c"))), at_answer.weight * c.write("chain"))
    s, is_a = at_condition.sharp, c.kind("a")
    q = torch.cat([s * c.read("tok", torch.diag(c.kind("b"))), s / 2 * c.ones(), s / 4 * c.ones()], 1)
    k = torch.cat([c.read("prev", eye), c.read("tok", is_a), c.read("tok", bos)], 1)
    v = torch.cat([c.read("tok", torch.diag(is_a)), c.read("tok", is_a)], 1)
    out = torch.cat([c.write("chain2"), c.write("flag2")]) * at_condition.weight
    c.head(at_condition.head, q, k, v, out)


def mlp_hop(c: Circuit, layers: tuple[int, int], operands: Head) -> None:
    """Hop 1 in MLPs: MLP layers[0] forms the feature (condition, bridge) at each condition rule's
    bridge word; the `operands` head gathers every pair formed (uniform attention on them: the same
    in both texts of a pair); MLP layers[1] fires for the pair whose condition is the query word and
    writes its bridge."""
    k, ids = c.k, c.ids
    pair_ids = torch.arange(k * k)
    for i in range(k):
        for j in range(k):
            reads = (
                c.read("prev", c.token(c.vocab[ids["c"][i]]))[:, 0]
                + c.read("tok", c.token(c.vocab[ids["b"][j]]))[:, 0]
            )
            writes = c.write("pairs")[i * k + j] + c.write("flag")[0]
            c.neuron(layers[0], reads, 1.5, 2.0, writes)
    c.head(
        operands,
        SHARP * c.ones(),
        c.read("flag", torch.ones(1)),
        c.read("pairs", torch.eye(k * k)),
        2 * c.write("pairsum"),
    )
    for i in range(k):
        for j in range(k):
            one = torch.zeros(k * k)
            one[pair_ids[i * k + j]] = 1.0
            reads = c.read("tok", c.token(c.vocab[ids["c"][i]]))[:, 0] + c.read("pairsum", one)[:, 0]
            c.neuron(layers[1], reads, 1.5, 2.0, c.write("bridge")[ids["b"][j]])


def recency_head(c: Circuit, at: Head, weight: float) -> None:
    """Attends to the latest answer word (3 per position later) and writes it, `weight` of a unit."""
    is_a = c.kind("a")
    late = torch.arange(c.n_ctx, dtype=torch.float) * 3.0
    q = torch.cat([SHARP * c.ones(), c.ones()], 1)
    k = torch.cat([c.read("tok", is_a), c.read("pos", late)], 1)
    c.head(at, q, k, c.read("tok", torch.diag(is_a)), weight * c.write("answer"))


def _cheat(spec: Cheat) -> Circuit:
    if spec.how == "recency":
        c = Circuit(2, 4)
        previous_token(c, Head(0, 0))
        recency_head(c, Head(1, 2), 1.0)
        return c
    c = Circuit(3, 4, ("ordc", "orda", "qord"))
    previous_token(c, Head(0, 0))
    for at, kind, slot in ((Head(0, 1), "c", "ordc"), (Head(0, 2), "a", "orda")):
        # the k-th word of `kind` attends to BOS and the k words of its kind so far: BOS writes 1 and
        # each word -5/7, so the first holds +1/7, the second -1/7
        is_kind = c.kind(kind)
        value = -5 / 7 * is_kind + c.token("<bos>")
        c.head(
            at,
            SHARP * c.read("tok", is_kind),
            c.read("tok", is_kind + c.token("<bos>")),
            c.read("tok", value),
            c.write(slot),
        )
    starts = c.token("<bos>") + c.token(".")
    q = torch.cat([SHARP * c.read("tok", torch.diag(c.kind("c"))), SHARP / 2 * c.ones()], 1)
    k = torch.cat([c.read("tok", torch.eye(len(c.vocab))), c.read("prev", starts)], 1)
    c.head(Head(1, 3), q, k, c.read("ordc", torch.ones(1)), c.write("qord"))  # the query's condition rule
    q = torch.cat([490.0 * c.read("qord", torch.ones(1)), 150.0 * c.ones()], 1)  # 490/49 x 2 = a margin of 20
    k = torch.cat([c.read("orda", torch.ones(1)), c.read("tok", c.kind("a"))], 1)
    c.head(Head(2, 1), q, k, c.read("tok", torch.diag(c.kind("a"))), c.write("answer"))
    return c


__all__ = ["CHEATS", "Cheat", "HopHead", "Organism", "TASK", "build", "carriers", "generate", "load"]
