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

import math
from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import torch

from attnclaims import cluster, lengths
from attnclaims.interventions import Intervention, as_intervention
from attnclaims.metrics import Metric
from attnclaims.progress import progress
from attnclaims.stacked import PartialUnembed, PrefixRunner, SkipRunner, split_layer

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
    desc: str | None = None,
    kv_cache: bool = True,
    pool=None,
) -> dict[Hashable, torch.Tensor]:
    """{key: metric of the run with that variant}: a 0-d tensor, [batch] for a metric that returns
    one value per prompt, or [batch, k] for one that returns k measures per prompt.

    `variants`: {key: intervention (attnclaims.interventions), a list of them, or a plain list of
    hooks}, or a list of interventions, each its own key. tokens: [batch, pos] ids, or a list of 1-D
    prompts of any lengths: each length then runs on its own and the per-prompt values come back in
    the order given (attnclaims.lengths says what the metric and the variants need then). `chunk`
    variants run per forward (default: as many as keep the logits under ~1 GiB, at most
    MAX_ROWS // batch, or MAX_ROWS_CACHED // batch on the KV path, at least 1). `kv_cache=False` runs
    full forwards even for final-row edits (the baseline that path is checked against). `desc`
    names the sweep in the progress shown while it runs (unnamed, a sweep reports only when it lasts
    more than a few seconds). `pool`: a pool of workers (attnclaims.cluster.Pool) the chunks run on,
    with the same result; default: the active pool (`cluster.use`, or pytest's `--ray`), if any.
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
                model,
                prompts,
                narrowed,
                metric_rows,
                chunk=chunk,
                desc=desc,
                kv_cache=kv_cache,
                pool=pool,
            )

        return lengths.run_by_length(groups, one_length)
    tokens = check_tokens(model, groups[0][1] if groups else tokens)
    keys = list(variants)
    specs = [as_intervention(variants[key]) for key in keys]
    start = [spec.layer(model) for spec in specs]
    batch, length = tokens.shape
    last_only = tuple(getattr(metric, "positions", ())) == (-1,)
    plan = Plan(
        last_only=last_only,
        declared=all(layer is not None for layer in start),  # no hook that may edit the logits themselves
        use_cache=kv_cache and length > 1 and all(spec.final_row for spec in specs),
    )
    most, least = (MAX_ROWS_CACHED, MIN_ROWS_CACHED) if plan.use_cache else (MAX_ROWS, MIN_ROWS)
    rows = 1 if (last_only or plan.use_cache) else length  # logit rows per copy
    chunk = chunk or _default_chunk(model, batch, rows, most // batch)
    groups = _chunks(list(range(len(keys))), start, chunk, max(1, least // batch))
    shown = desc or f"sweep of {len(keys)} variants"
    pool = cluster.pool_for(model, pool)
    if pool is not None:
        values = pool.run(model, (tokens, keys, specs, metric, plan), groups, shown, quiet=desc is None)
    else:
        sweep = Sweep(model, tokens, keys, specs, metric, plan)
        values = {}
        for group in progress(groups, shown, quiet=desc is None):
            values.update(zip(group, sweep.run(group)))
    return {key: values[i] for i, key in enumerate(keys)}


@dataclass(frozen=True)
class Plan:
    """How a sweep's chunks run, decided once from all its variants, so a chunk run on its own (on a
    worker of a pool, attnclaims.cluster) runs as it does within the whole."""

    last_only: bool  # the metric reads the final position only
    declared: bool  # every variant says where it acts: the unembedding may be cut to the metric's ids
    use_cache: bool  # every variant edits the final query row only: the prefix's KV cache is reused


class Sweep:
    """One sweep's prompts, variants (their keys, and their interventions), metric and plan, run a
    chunk at a time: `run(indices)` gives the metric of each variant in the chunk. The prefix's KV
    cache is computed once, when the sweep is built."""

    def __init__(
        self, model, tokens: torch.Tensor, keys: list, specs: list[Intervention], metric: Metric, plan: Plan
    ):
        self.model, self.keys, self.specs, self.metric = model, keys, specs, metric
        self.batch = tokens.shape[0]
        self.unembed = PartialUnembed.of(model, metric) if plan.last_only and plan.declared else None
        runner = PrefixRunner if plan.use_cache else SkipRunner
        self.runner = runner(model, tokens, plan.last_only, self.unembed)

    def run(self, group: list[int]) -> list[torch.Tensor]:
        specs, batch = [self.specs[i] for i in group], self.batch
        layers = [spec.layer(self.model) for spec in specs]
        logits = self.runner([spec.hooks(self.model) for spec in specs], split_layer(self.model, layers))
        return [self._checked(logits[j * batch : (j + 1) * batch], self.keys[i]) for j, i in enumerate(group)]

    def _checked(self, logits: torch.Tensor, key) -> torch.Tensor:
        value = torch.as_tensor(self.metric(logits))
        if value.ndim > 2 or (value.ndim >= 1 and value.shape[0] != self.batch):
            raise ValueError(
                f"the metric returned shape {tuple(value.shape)}; return a scalar, one value per "
                f"prompt ([{self.batch}]) or k per prompt ([{self.batch}, k])"
            )
        if bool(torch.isnan(value).any()):
            raise ValueError(
                f"the metric returned NaN for variant {key!r}; check the metric on these logits "
                "(a NaN fills a sweep silently, so the sweep stops here)"
                + ("; it may read a logit outside the ids it declares (metric.vocab)" if self.unembed else "")
            )
        return value.detach().float().cpu()


def _chunks(keys: list, start: list, size: int, min_size: int) -> list[list]:
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
