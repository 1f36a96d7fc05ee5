"""Interventions as data: frozen dataclasses that say what is done to the model, read by the sweep engine.

    switch = MoveAttention(heads=[(23, 7)], src=12, dst=17)        # final-row weight on 12 moves to 17
    values = run_variants(model, tokens, [switch, AblateHeads([(5, 0)], "mean", reference)], metric)
    values[switch]                                                  # results are keyed by the spec itself
    repr(switch)  # "MoveAttention(heads=(L23H7,), src=12, dst=17, alpha=1.0, query_pos=-1, swap=False)"

Each spec builds its TransformerLens hooks with `.hooks(model)` (attnclaims.hooks) and says what the
engine needs to know without reading hook names: `.layer(model)`, the lowest block it acts in
(n_layers when it acts after the blocks only, None when it may act before them), and `.final_row`,
whether it edits the final query row only (the engine then runs the last token against the
prefix's KV cache). `a + b` applies both. `Hooks(...)` wraps hooks built by hand with what they
declare; a plain list of hooks still works, run in full from the embeddings (the safe assumption).
A spec's repr names what it did, for a ledger note: caches are left out of it, functions appear by
their name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable

import torch
from transformer_lens.utilities import get_act_name

from attnclaims import hooks as H
from attnclaims.heads import Head, as_heads
from attnclaims.hooks import Hook, RowEdit


def _heads(heads) -> tuple[Head, ...]:
    return tuple(as_heads(heads))


def _position(pos):
    """An int stays an int; per-prompt positions (a tensor or a sequence) become a tuple of ints."""
    if isinstance(pos, int):
        return pos
    tensor = torch.as_tensor(pos)
    return int(tensor) if tensor.ndim == 0 else tuple(int(v) for v in tensor.reshape(-1).tolist())


def _tensor(pos):
    return pos if isinstance(pos, int) else torch.tensor(pos, dtype=torch.long)


def _name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


class Intervention:
    """What every spec offers: its hooks, the lowest block they act in, and whether it edits the
    final query row only."""

    final_row: bool = False

    def hooks(self, model) -> list[Hook]:
        raise NotImplementedError

    def layer(self, model) -> int | None:
        raise NotImplementedError

    def __add__(self, other: Intervention) -> Compose:
        return Compose((*_parts(self), *_parts(other)))


def _parts(spec: Intervention) -> tuple[Intervention, ...]:
    if not isinstance(spec, Intervention):
        raise TypeError(f"only interventions add up, got {type(spec).__name__}; wrap hooks in Hooks(...)")
    return spec.parts if isinstance(spec, Compose) else (spec,)


@dataclass(frozen=True)
class Compose(Intervention):
    """Several interventions in one run, applied in order (`a + b`)."""

    parts: tuple[Intervention, ...]

    def hooks(self, model) -> list[Hook]:
        return [hook for part in self.parts for hook in part.hooks(model)]

    def layer(self, model) -> int | None:
        layers = [part.layer(model) for part in self.parts]
        return None if None in layers else min(layers, default=model.cfg.n_layers)

    @property
    def final_row(self) -> bool:
        return all(part.final_row for part in self.parts)


@dataclass(frozen=True)
class _OnHeads(Intervention):
    """A head-level spec: `heads` become Head tuples, positions (`src`, `dst`) ints or tuples, and
    it edits the final row only when it acts at query_pos -1."""

    heads: tuple[Head, ...]

    def __post_init__(self):
        object.__setattr__(self, "heads", _heads(self.heads))
        for name in ("src", "dst", "query_pos", "positions"):
            if getattr(self, name, None) is not None:
                object.__setattr__(self, name, _position(getattr(self, name)))

    def layer(self, model) -> int:
        return min((head.layer for head in self.heads), default=model.cfg.n_layers)

    @property
    def final_row(self) -> bool:
        """True only for the int query_pos -1: per-prompt query positions may be any rows."""
        query_pos = getattr(self, "query_pos", None)
        return isinstance(query_pos, int) and query_pos == -1

    def __repr__(self) -> str:
        shown = (f"{f.name}={_shown(getattr(self, f.name))}" for f in fields(self) if f.repr)
        return f"{type(self).__name__}({', '.join(shown)})"


def _shown(value) -> str:
    """A field as a spec's repr shows it: a function by its name, anything else by its repr."""
    return _name(value) if callable(value) else repr(value)


@dataclass(frozen=True, repr=False)  # _OnHeads.__repr__
class EditAttention(_OnHeads):
    """Each head's attention row at `query_pos` replaced by `edit(row)` (rows [batch, key] -> rows of the
    same shape): attnclaims.hooks builds the usual edits, `one_hot_row(pos)`, `move_row(src, dst)`,
    `move_fraction(src, dst, alpha)`, `shift_mass(dst, mass)` (positions an int or one per prompt)."""

    edit: RowEdit
    query_pos: int = -1

    def hooks(self, model) -> list[Hook]:
        return H.edit_attention_rows(model, self.heads, _tensor(self.query_pos), self.edit)


@dataclass(frozen=True, repr=False)  # _OnHeads.__repr__
class MoveAttention(_OnHeads):
    """A fraction `alpha` of each head's weight on `src` at `query_pos` moves to `dst` (`swap`:
    the two weights trade places). Positions are ints or one per prompt."""

    src: Any
    dst: Any
    alpha: float = 1.0
    query_pos: int = -1
    swap: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.swap and self.alpha != 1.0:
            raise ValueError("a swap trades the two weights whole; give alpha=1")

    def hooks(self, model) -> list[Hook]:
        src, dst = _tensor(self.src), _tensor(self.dst)
        edit = H.move_row(src, dst, self.swap) if self.alpha == 1.0 else H.move_fraction(src, dst, self.alpha)
        return H.edit_attention_rows(model, self.heads, _tensor(self.query_pos), edit)


@dataclass(frozen=True, repr=False)  # _OnHeads.__repr__
class ShiftAttention(_OnHeads):
    """`mass` of each head's weight at `query_pos` (a number, or one per prompt) moves onto `dst`,
    from the other positions in proportion to their weight: a control that moves as much attention
    as a MoveAttention of another head."""

    dst: Any
    mass: Any = field(repr=False)  # per-prompt masses make a long repr; they count toward identity
    query_pos: int = -1

    def __post_init__(self):
        super().__post_init__()
        mass = torch.as_tensor(self.mass, dtype=torch.float)
        object.__setattr__(self, "mass", float(mass) if mass.ndim == 0 else tuple(mass.reshape(-1).tolist()))

    def hooks(self, model) -> list[Hook]:
        return H.edit_attention_rows(
            model,
            self.heads,
            _tensor(self.query_pos),
            H.shift_mass(_tensor(self.dst), torch.tensor(self.mass)),
        )


@dataclass(frozen=True, repr=False)  # _OnHeads.__repr__
class RedirectAttention(_OnHeads):
    """Each head attends, from `query_pos`, only to `dst` (a one-hot row)."""

    dst: Any
    query_pos: int = -1

    def hooks(self, model) -> list[Hook]:
        return H.edit_attention_rows(
            model, self.heads, _tensor(self.query_pos), H.one_hot_row(_tensor(self.dst))
        )


def source_cache(model, tokens, component: str = "z", layers=None) -> dict[str, torch.Tensor]:
    """{hook name: activation} of `component` ("z", "q", "rot_q", ...) at `layers` (default: all) from a
    run on `tokens`: the `source` of PatchHeads, the `reference` of AblateHeads (component "z")."""
    layers = range(model.cfg.n_layers) if layers is None else sorted(set(layers))
    names = {get_act_name(component, layer) for layer in layers}
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    return {name: cache[name] for name in names}


@dataclass(frozen=True, repr=False)  # _OnHeads.__repr__
class PatchHeads(_OnHeads):
    """Query heads' `component` ("z", "q", "rot_q") copied from `source`, a cache of another run on
    prompts of the same shape: `PatchHeads.from_run(model, clean_tokens, [(5, 1)])` patches L5H1's
    output from the clean run into the run it is applied to (e.g. `run_variants(model, corrupted_tokens,
    [spec], metric)`); `source` is then `source_cache(model, clean_tokens, "z", [5])`. `positions`
    (None = all) restricts the patch to some sequence positions."""

    source: Any = field(repr=False, compare=False)
    component: str = "z"
    positions: Any = None

    @classmethod
    def from_run(cls, model, tokens, heads, component: str = "z", positions=None) -> PatchHeads:
        """The spec with its source built from a run on `tokens` (the layers of `heads` only)."""
        heads = _heads(heads)
        source = source_cache(model, tokens, component, [head.layer for head in heads])
        return cls(heads, source, component, positions)

    def hooks(self, model) -> list[Hook]:
        positions = None if self.positions is None else _tensor(self.positions)
        return H.patch_heads(model, self.heads, self.source, self.component, positions)


@dataclass(frozen=True, repr=False)  # _OnHeads.__repr__
class AblateHeads(_OnHeads):
    """Query heads' outputs knocked out: "zero", "mean" or "resample" over `reference` (a cache of
    reference prompts' hook_z, drawn from other prompts than the ones ablated):
    `AblateHeads.from_reference(model, other_tokens, [(5, 1)], "mean")`, or `reference=source_cache(model,
    other_tokens)`."""

    how: str = "zero"
    reference: Any = field(default=None, repr=False, compare=False)
    seed: int = 0

    @classmethod
    def from_reference(cls, model, reference_tokens, heads, how: str = "mean", seed: int = 0) -> AblateHeads:
        """The spec with its reference built from a run on `reference_tokens` (the layers of `heads`)."""
        heads = _heads(heads)
        return cls(heads, how, source_cache(model, reference_tokens, "z", [h.layer for h in heads]), seed)

    def hooks(self, model) -> list[Hook]:
        return H.ablate_heads(model, self.heads, self.how, self.reference, self.seed)


@dataclass(frozen=True, repr=False)  # _OnHeads.__repr__
class EditValues(_OnHeads):
    """Each head's output recomputed from edited values, z_h = pattern_h @ edit(v), `edit` mapping one
    head's values [batch, key_pos, d_head] to new values of that shape (e.g. `lambda v: v.flip(1)`):
    full forwards always (under a KV cache hook_v sees only the new token), whatever `query_pos`."""

    edit: Callable[[torch.Tensor], torch.Tensor]
    query_pos: int | None = None

    @property
    def final_row(self) -> bool:
        return False

    def hooks(self, model) -> list[Hook]:
        query_pos = None if self.query_pos is None else _tensor(self.query_pos)
        return H.edit_head_values(model, self.heads, self.edit, query_pos)


@dataclass(frozen=True)
class PatchOutput(Intervention):
    """Block `block`'s attention output ("attn_out", every head together) or MLP output ("mlp_out")
    at the final position replaced by `source` ([batch, d_model]: another run's, e.g. the pair's
    other text, attnclaims.studies.layer_account): `source = model.run_with_cache(other_tokens,
    names_filter=f"blocks.{block}.hook_{component}")[1][f"blocks.{block}.hook_{component}"][:, -1]`."""

    block: int
    component: str
    source: Any = field(repr=False, compare=False)

    COMPONENTS = ("attn_out", "mlp_out")
    final_row = True  # it edits the final position only

    def __post_init__(self):
        if self.component not in self.COMPONENTS:
            raise ValueError(f"PatchOutput patches one of {self.COMPONENTS}, got {self.component!r}")

    def layer(self, model) -> int:
        return self.block

    def hooks(self, model) -> list[Hook]:
        name, source = f"blocks.{self.block}.hook_{self.component}", self.source

        def patch(act: torch.Tensor, hook) -> torch.Tensor:
            if act.shape[0] != source.shape[0] or act.shape[-1] != source.shape[-1]:
                raise ValueError(
                    f"{name}: source {tuple(source.shape)} is not one [batch, d_model] row per prompt "
                    f"of {tuple(act.shape)}"
                )
            act = act.clone()
            act[:, -1] = source.to(act.device, act.dtype)
            return act

        return [(name, patch)]


@dataclass(frozen=True)
class PatchActivation(Intervention):
    """One slice of activation `site` at block `layer` copied from `source` (a cache of another run on
    prompts of the same shape, `source_cache(model, clean_tokens, site)`): `index` names the slice,
    e.g. (("pos", 3),) for the residual stream at position 3, (("pos", 3), ("head", 1)) for one head
    there, (("head", 1),) for one head at every position, (("head", 1), ("dest_pos", 5)) for one row of
    a pattern. What TransformerLens's patch setters do, as a spec the sweep engine reads."""

    site: str
    layer_index: int
    index: tuple[tuple[str, int], ...]
    source: Any = field(repr=False, compare=False)

    def __post_init__(self):
        if self.site not in SITES:
            raise ValueError(f"no activation site {self.site!r}; use one of {', '.join(SITES)}")
        object.__setattr__(self, "index", tuple((axis, int(value)) for axis, value in self.index))
        allowed = set(SITES[self.site])
        for axis, _ in self.index:
            if axis not in allowed:
                raise ValueError(
                    f"{self.site} activations have no {axis!r} axis to patch along; use {sorted(allowed)}"
                )

    def layer(self, model) -> int:
        return self.layer_index

    def hooks(self, model) -> list[Hook]:
        name = get_act_name(self.site, self.layer_index)
        source = H.require(self.source, name, "the source cache")
        axes = SITES[self.site]
        where = [slice(None)] * (1 + max(axes.values(), default=0))
        for axis, value in self.index:
            where[axes[axis]] = value
        where = tuple(where)

        def patch(act: torch.Tensor, hook) -> torch.Tensor:
            if act.shape != source.shape:
                raise ValueError(
                    f"{name}: the source's {tuple(source.shape)} is not this run's {tuple(act.shape)}; "
                    "build the source from prompts of the same shape"
                )
            # in place, as TransformerLens's patch setters do: the bridge hands some hook outputs to only
            # one of their readers (a returned copy of hook_resid_mid reaches the MLP, not the residual
            # sum), while an in-place edit reaches every reader
            act[where] = source[where].to(act.device, act.dtype)

        return [(name, patch)]


# The sites PatchActivation patches, with the axis each index name refers to ([batch, pos, ...]; a
# pattern is [batch, head, dest_pos, src_pos]).
_VECTOR = {"pos": 1}
_HEADS = {"pos": 1, "head": 2}
_PATTERN = {"head": 1, "dest_pos": 2, "src_pos": 3}
SITES = {
    "resid_pre": _VECTOR,
    "resid_mid": _VECTOR,
    "resid_post": _VECTOR,
    "attn_out": _VECTOR,
    "mlp_out": _VECTOR,
    "z": _HEADS,
    "q": _HEADS,
    "k": _HEADS,
    "v": _HEADS,
    "pattern": _PATTERN,
}


@dataclass(frozen=True)
class Hooks(Intervention):
    """Hooks built by hand, with what they declare: the lowest block they act in (`first_layer`;
    None: they may act before the blocks, or on the logits themselves, so the engine computes every
    logit) and whether they edit the final query row only."""

    hook_list: tuple[Hook, ...] = field(repr=False, compare=False)
    first_layer: int | None = None
    edits_final_row: bool = False
    what: str = "hooks"  # what they do, in words (errors and reprs name them by it)

    def __post_init__(self):
        object.__setattr__(self, "hook_list", tuple(self.hook_list))
        if self.first_layer is not None:
            for name, _ in self.hook_list:
                _check_declared(name, self.first_layer, self.what)

    def hooks(self, model) -> list[Hook]:
        return list(self.hook_list)

    def layer(self, model) -> int | None:
        return self.first_layer

    @property
    def final_row(self) -> bool:
        return self.edits_final_row


def _check_declared(name: str, first_layer: int, what: str) -> None:
    """Refuse a declaration its hooks break (checked once, where the spec is built: the engine itself
    reads only the declaration): a hook in a block below `first_layer`, before the blocks, or on the
    logits (whose partial unembedding would skip it)."""
    parts = name.split(".")
    if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
        if int(parts[1]) < first_layer:
            raise ValueError(
                f"Hooks({what!r}): {name} acts in block {parts[1]}, below first_layer={first_layer}; "
                "declare the lowest block any hook acts in"
            )
        return
    if not name.startswith("ln_final."):
        raise ValueError(
            f"Hooks({what!r}): {name} acts before the blocks or on the logits; declare first_layer=None"
        )


NOTHING = Compose(())  # the clean run: no hooks, nothing below the unembedding repeated


def as_intervention(variant) -> Intervention:
    """A spec as it is; a list of specs as their sum; a plain list of (name, fn) hooks as Hooks
    that declare nothing (they may act anywhere, on any row)."""
    if isinstance(variant, Intervention):
        return variant
    items = list(variant)
    if all(isinstance(item, Intervention) for item in items):
        return Compose(tuple(part for item in items for part in _parts(item)))
    if any(isinstance(item, Intervention) for item in items):
        return Compose(tuple(item if isinstance(item, Intervention) else Hooks((item,)) for item in items))
    return Hooks(tuple(items), what="plain hooks")
