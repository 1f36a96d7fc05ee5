"""The sweep engine: many interventions on the same prompts, stacked along the batch, exactly.

    variants = {"clean": [], (23, 7): MoveAttention([(23, 7)], src=a, dst=b)}
    values = run_variants(model, tokens, variants, metric)  # {"clean": tensor, (23, 7): tensor}

Every sweep in lib/ and every hypothesis goes through `run_variants`: it is the one place that
loops over chunks of variants. A variant is an intervention (attnclaims.interventions), which builds
its hooks and says the lowest block it acts in and whether it edits the final query row only; the
engine reads those, never hook names. Variant i of a chunk acts on copy i of the batch (rows
i*batch .. (i+1)*batch, attnclaims.hooks.stack_variants), and the metric scores each copy on its own,
exactly as a separate run would.

Three things make it fast, none of which changes a result:
- **Start at the patched layer.** When every hook of a chunk acts at layer >= l, the prompts run
  through layers 0..l-1 once, as one copy; the residual stream entering block l is then repeated
  to one copy per variant (a forward pre-hook on block l, which also repeats the block inputs that
  carry a batch dimension, such as the attention mask). Layers below l cost 1/n of a chunk.
- **Reuse the prefix's KV cache.** When every variant edits the final query row only (its
  `final_row`), the prefix tokens[:, :-1] run once and each chunk runs the last token alone against
  the cache, repeated per copy. A final-row edit cannot change earlier positions.
- **Unembed only what the metric reads.** A metric that declares `positions == (-1,)` (attnclaims.metrics
  sets it) gets logits [batch, 1, d_vocab] of the final position only; one that also declares the
  ids it reads (`metric.vocab`, e.g. logit_diff's two answers) gets only those logits computed, from
  the residual entering the unembedding (W_U[:, ids] + b_U[ids]), and NaN everywhere else: the
  final-row redirect sweep of smollm2-135m (49k-token vocabulary) takes 0.56 s instead of 0.67 s.
A plain list of hooks declares nothing, so it gets none of the three: it runs in full, from the
embeddings, with every logit computed.

Variants are ordered by the layer they start at before chunking (a chunk of at least MIN_ROWS
rows, variants x prompts, closes where the start layer changes), and results come back in the order
given.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Hashable, Mapping, Sequence

import torch

from attnclaims import lengths
from attnclaims.hooks import Hook, stack_variants
from attnclaims.interventions import Intervention, as_intervention
from attnclaims.metrics import Metric
from attnclaims.progress import progress as show_progress

LOGIT_BUDGET_BYTES = 1 << 30  # largest logits tensor one chunk may build
# Rows (variants x prompts) a chunk gathers before it closes at a change of start layer, and the most
# it holds. Measured on smollm2-135m, 2 cores. One 24-token prompt: head-out sweep 7.6 s at 8 rows,
# 6.2 s at 27; final-row redirect sweep against the KV cache (one-token forwards, where each
# forward's overhead weighs more) 1.5 s at 16, 0.7 s at 128. 60 final-row patches of 44 prompts
# (60 tokens): 33.0 s at 2640 rows per chunk, 11.4 s at 176 (12 prompts: 6.7 s -> 3.0 s at 96-192).
MIN_ROWS = 24
MIN_ROWS_CACHED = 128
MAX_ROWS = 64  # full forwards
MAX_ROWS_CACHED = 256  # one-token forwards


def check_tokens(model, tokens) -> torch.Tensor:
    """tokens as a [batch, pos] long tensor on the model's device, or a ValueError naming the fix."""
    if isinstance(tokens, str) or (
        isinstance(tokens, (list, tuple)) and any(isinstance(t, str) for t in tokens)
    ):
        raise ValueError("tokens must be token ids, got text: tokenize it first with model.to_tokens(text)")
    tokens = torch.as_tensor(tokens)
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, pos], got shape {tuple(tokens.shape)}")
    if tokens.numel() == 0:
        raise ValueError(
            f"tokens are empty (shape {tuple(tokens.shape)}): give at least one prompt of one token"
        )
    if tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise ValueError(f"tokens must be integer ids, got dtype {tokens.dtype}; use model.to_tokens(text)")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx and tokens.shape[1] > n_ctx:
        raise ValueError(
            f"prompts of {tokens.shape[1]} tokens are longer than the model's context ({n_ctx} positions): "
            "shorten them, or use a model with a longer context"
        )
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= model.cfg.d_vocab):
        raise ValueError(
            f"token ids must lie in 0..{model.cfg.d_vocab - 1} (the model's vocabulary), got "
            f"{int(tokens.min())}..{int(tokens.max())}; tokenize with this model's tokenizer"
        )
    return tokens.long().to(model.cfg.device)


@torch.no_grad()
def run_variants(
    model,
    tokens,
    variants: Mapping[Hashable, Intervention | Sequence] | Sequence[Intervention],
    metric: Metric,
    *,
    chunk: int | None = None,
    progress: str | None = None,
    kv_cache: bool = True,
) -> dict[Hashable, torch.Tensor]:
    """{key: metric of the run with that variant}: a 0-d tensor, [batch] for a metric that returns
    one value per prompt, or [batch, k] for one that returns k measures per prompt.

    `variants`: {key: intervention (attnclaims.interventions), a list of them, or a plain list of
    hooks}, or a list of interventions, each its own key. tokens: [batch, pos] ids, or a list of 1-D
    prompts of any lengths: each length then runs on its own and the per-prompt values come back in
    the order given (attnclaims.lengths says what the metric and the variants need then). `chunk`
    variants run per forward (default: as many as keep the logits under ~1 GiB, at most
    MAX_ROWS // batch, or MAX_ROWS_CACHED // batch on the KV path, at least 1). `kv_cache=False` runs
    full forwards even for final-row edits (the baseline that path is checked against). `progress`
    names the sweep in the progress shown while it runs (unnamed, a sweep reports only when it lasts
    more than a few seconds).
    """
    if metric is None or not callable(metric):
        raise ValueError(
            "run_variants needs a metric: a callable from logits [batch, pos, d_vocab] to a tensor"
        )
    if not isinstance(variants, Mapping):
        variants = list(variants)
        if not all(isinstance(v, Intervention) for v in variants) or len(set(variants)) != len(variants):
            raise ValueError(
                "a list of variants must hold distinct interventions (attnclaims.interventions), each its "
                "own key (caches and hook lists do not count toward a spec's identity); give a dict "
                "{key: variant} otherwise"
            )
        variants = {spec: spec for spec in variants}
    groups = lengths.length_groups(tokens)
    if groups is not None and len(groups) > 1:
        specs = {key: as_intervention(variant) for key, variant in variants.items()}

        def one_length(rows, prompts):
            narrowed = {key: lengths.select(spec, rows) for key, spec in specs.items()}
            metric_rows = lengths.narrowed(metric, rows)
            return run_variants(
                model, prompts, narrowed, metric_rows, chunk=chunk, progress=progress, kv_cache=kv_cache
            )

        return lengths.run_by_length(groups, one_length)
    tokens = check_tokens(model, groups[0][1] if groups else tokens)
    keys = list(variants)
    specs = {key: as_intervention(variants[key]) for key in keys}
    hooks = {key: specs[key].hooks(model) for key in keys}
    start = {key: specs[key].layer(model) for key in keys}
    batch, length = tokens.shape
    last_only = tuple(getattr(metric, "positions", ())) == (-1,)
    declared = all(start[key] is not None for key in keys)  # no hook that may edit the logits themselves
    unembed = _PartialUnembed.of(model, metric) if last_only and declared else None
    use_cache = kv_cache and length > 1 and all(specs[key].final_row for key in keys)
    most, least = (MAX_ROWS_CACHED, MIN_ROWS_CACHED) if use_cache else (MAX_ROWS, MIN_ROWS)
    chunk = chunk or _default_chunk(model, batch, 1 if (last_only or use_cache) else length, most // batch)
    groups = _chunks(keys, start, chunk, max(1, least // batch))
    runner = _PrefixRunner if use_cache else _SkipRunner
    run = runner(model, tokens, last_only, unembed)
    out: dict[Hashable, torch.Tensor] = {}
    for group in show_progress(groups, progress or f"sweep of {len(keys)} variants", quiet=progress is None):
        logits = run([hooks[key] for key in group], _split_layer(model, [start[key] for key in group]))
        for i, key in enumerate(group):
            value = torch.as_tensor(metric(logits[i * batch : (i + 1) * batch]))
            if value.ndim > 2 or (value.ndim >= 1 and value.shape[0] != batch):
                raise ValueError(
                    f"the metric returned shape {tuple(value.shape)}; return a scalar, one value per "
                    f"prompt ([{batch}]) or k per prompt ([{batch}, k])"
                )
            if bool(torch.isnan(value).any()):
                raise ValueError(
                    f"the metric returned NaN for variant {key!r}; check the metric on these logits "
                    "(a NaN fills a sweep silently, so the sweep stops here)"
                    + ("; it may read a logit outside the ids it declares (metric.vocab)" if unembed else "")
                )
            out[key] = value.detach().float().cpu()
    return {key: out[key] for key in keys}


def _chunks(keys: list, start: dict, size: int, min_size: int) -> list[list]:
    """Variants in order of the layer they start at, cut into chunks of at most `size`. A chunk
    that already holds `min_size` variants closes when the start layer changes: starting every
    copy near its own layer saves more than a wider batch gains."""
    groups: list[list] = []
    for key in sorted(keys, key=lambda key: -1 if start[key] is None else start[key]):
        last = groups[-1] if groups else None
        if last is not None and len(last) < size and (start[last[0]] == start[key] or len(last) < min_size):
            last.append(key)
        else:
            groups.append([key])
    return groups


def _default_chunk(model, batch: int, positions: int, most: int) -> int:
    per_copy = batch * positions * model.cfg.d_vocab * 4
    return max(1, min(most, LOGIT_BUDGET_BYTES // max(per_copy, 1)))


def _last_position_hook() -> Hook:
    return ("unembed.hook_in", lambda x, hook: x[:, -1:])


class _Unembedding(Exception):
    """Raised by a hook on unembed.hook_in to end a forward there, carrying the residual stream."""

    def __init__(self, resid: torch.Tensor):
        super().__init__("forward stopped before the unembedding")
        self.resid = resid


class _PartialUnembed:
    """Logits of a few vocabulary ids at the final position, NaN elsewhere: the forward stops at the
    unembedding's input, and resid @ W_U[:, ids] + b_U[ids] replaces the full product."""

    def __init__(self, model, vocab: torch.Tensor):
        W_U = model.W_U
        self.vocab = vocab.to(W_U.device)
        self.d_vocab = model.cfg.d_vocab
        self.weight = W_U[:, self.vocab].detach().clone()
        bias = getattr(model, "b_U", None)
        self.bias = None if bias is None else bias[self.vocab].detach().clone()

    @classmethod
    def of(cls, model, metric) -> _PartialUnembed | None:
        """The partial unembedding a metric allows, or None: the metric declares no ids, or the model
        transforms logits after it (soft-capping). Only variants that declare where they act get it
        (run_variants): a plain hook may edit the logits themselves."""
        vocab = getattr(metric, "vocab", None)
        if vocab is None or _caps_logits(model):
            return None
        if int(vocab.min()) < 0 or int(vocab.max()) >= model.cfg.d_vocab:
            raise ValueError(f"the metric reads ids outside the vocabulary (0..{model.cfg.d_vocab - 1})")
        return cls(model, vocab)

    def hook(self) -> Hook:
        def stop(x, hook):
            raise _Unembedding(x[:, -1:])

        return ("unembed.hook_in", stop)

    def logits(self, resid: torch.Tensor) -> torch.Tensor:
        out = resid.new_full((*resid.shape[:2], self.d_vocab), math.nan)
        picked = resid @ self.weight
        out[..., self.vocab] = picked if self.bias is None else picked + self.bias
        return out

    def run(self, model, tokens: torch.Tensor, fwd_hooks: list[Hook], **kwargs) -> torch.Tensor:
        try:
            model.run_with_hooks(tokens, fwd_hooks=[*fwd_hooks, self.hook()], **kwargs)
        except _Unembedding as stopped:
            return self.logits(stopped.resid)
        raise RuntimeError(
            "the forward never reached unembed.hook_in; this model cannot skip its unembedding"
        )


def _caps_logits(model) -> bool:
    config = getattr(model, "original_model", None)
    config = getattr(config, "config", None)
    caps = [
        getattr(model.cfg, "output_logits_soft_cap", None),
        getattr(config, "final_logit_softcapping", None),
    ]
    return any(cap is not None and cap > 0 for cap in caps)


def _split_layer(model, layers: list[int | None]) -> int | None:
    """The block where a chunk's copies split from the one shared copy, from the lowest block each
    variant acts in (None: no shared part, when there is one copy or a variant may act before the
    blocks). Variants that act after the blocks only (ln_final, unembed) split at the last block."""
    if len(layers) == 1 or None in layers:
        return None
    return min(model.cfg.n_layers - 1, *layers)


@contextmanager
def _widened(model, layer: int | None, copies: int, batch: int):
    """Blocks >= `layer` run on `copies` copies of the batch; blocks below it on one (see `_widen`)."""
    handles = (
        []
        if layer is None
        else [
            model.blocks[i].register_forward_pre_hook(_widen(copies, batch, i == layer), with_kwargs=True)
            for i in range(layer, model.cfg.n_layers)
        ]
    )
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _widen(copies: int, batch: int, first: bool):
    """A block pre-hook: the first widened block repeats its input residual to `copies` copies;
    every widened block repeats its batch-shaped inputs (attention mask, position ids, ...), given by
    keyword or by position (GPT-2's blocks take the mask by position), to match. A KV cache is left
    alone: its layers were repeated beforehand; so is a 1-d input (cache_position, one per token,
    which a prompt as long as the batch would otherwise repeat)."""

    def repeat(value):
        if torch.is_tensor(value) and value.ndim > 1 and value.shape[0] == batch and batch > 1:
            return value.repeat(copies, *([1] * (value.ndim - 1)))
        if isinstance(value, tuple):
            return tuple(repeat(v) for v in value)
        return value

    def hook(module, args, kwargs):
        if first:
            if args:
                args = (args[0].repeat(copies, 1, 1), *args[1:])
            else:
                kwargs["hidden_states"] = kwargs["hidden_states"].repeat(copies, 1, 1)
        args = (*args[:1], *(repeat(value) for value in args[1:]))
        kwargs = {
            name: value if name in ("hidden_states", "past_key_values") else repeat(value)
            for name, value in kwargs.items()
        }
        return args, kwargs

    return hook


class _SkipRunner:
    """Forwards of stacked copies, the copies split from one shared copy at the chunk's lowest
    patched layer."""

    def __init__(self, model, tokens: torch.Tensor, last_only: bool, unembed: _PartialUnembed | None):
        self.model, self.tokens, self.last_only, self.unembed = model, tokens, last_only, unembed

    def __call__(self, variants: list[list[Hook]], layer: int | None):
        model, tokens, copies = self.model, self.tokens, len(variants)
        fwd_hooks = stack_variants(variants, tokens.shape[0])
        if self.last_only and self.unembed is None:
            fwd_hooks.append(_last_position_hook())
        tokens = tokens.repeat(1 if layer is not None else copies, 1)
        with _widened(model, layer, copies, self.tokens.shape[0]):
            if self.unembed is not None:
                return self.unembed.run(model, tokens, fwd_hooks)
            return model.run_with_hooks(tokens, fwd_hooks=fwd_hooks)


class _PrefixRunner:
    """The prefix tokens[:, :-1] once; each chunk runs the last token against its KV cache, the
    copies split at the chunk's lowest patched layer (the cache's layers from there on repeated)."""

    def __init__(self, model, tokens: torch.Tensor, last_only: bool, unembed: _PartialUnembed | None):
        self.model, self.tokens, self.last_only, self.unembed = model, tokens, last_only, unembed
        prefix_logits, self.cache = model(tokens[:, :-1], return_type="logits_and_cache")
        if self.cache is None:
            raise RuntimeError("this model returned no KV cache; run the sweep with kv_cache=False")
        self.prefix = None if last_only else prefix_logits

    def __call__(self, variants: list[list[Hook]], layer: int | None):
        model, copies, batch = self.model, len(variants), self.tokens.shape[0]
        first_repeated = 0 if layer is None else layer
        cache = copy.deepcopy(self.cache)
        for i, cached in enumerate(cache.layers):
            if i >= first_repeated:
                cached.keys = cached.keys.repeat(copies, 1, 1, 1)
                cached.values = cached.values.repeat(copies, 1, 1, 1)
        last_token = self.tokens[:, -1:].repeat(1 if layer is not None else copies, 1)
        fwd_hooks = stack_variants(variants, batch)
        with _widened(model, layer, copies, batch):
            if self.unembed is not None:
                return self.unembed.run(model, last_token, fwd_hooks, past_key_values=cache)
            last = model.run_with_hooks(last_token, fwd_hooks=fwd_hooks, past_key_values=cache)
        return last if self.prefix is None else _PrefixedLogits(self.prefix, last)


class _PrefixedLogits:
    """Stacked copies of [prefix logits ; new last row], each copy built only when sliced."""

    def __init__(self, prefix: torch.Tensor, last: torch.Tensor):
        self.prefix, self.last = prefix, last  # [batch, pos-1, vocab], [copies*batch, 1, vocab]

    def __getitem__(self, rows: slice) -> torch.Tensor:
        return torch.cat([self.prefix, self.last[rows]], dim=1)


def per_head(model, values: Mapping[tuple[int, int], torch.Tensor]) -> torch.Tensor:
    """[n_layers, n_heads] from {(layer, head): 0-d value}, or [n_layers, n_heads, batch] from values of
    one per prompt ([batch]); heads not in `values` are NaN."""
    shapes = {tuple(torch.as_tensor(value).shape) for value in values.values()}
    if len(shapes) > 1 or any(len(shape) > 1 for shape in shapes):
        raise ValueError(
            f"a per-head sweep's metric returns one number per call (a 0-d tensor: one cell of the "
            f"[n_layers, n_heads] table) or one per prompt ([batch]), got shapes {sorted(shapes)}; reduce "
            "it (.mean()) or return one value per prompt"
        )
    out = torch.full((model.cfg.n_layers, model.cfg.n_heads, *(shapes.pop() if shapes else ())), math.nan)
    for (layer, head), value in values.items():
        out[layer, head] = torch.as_tensor(value, dtype=out.dtype)
    return out
