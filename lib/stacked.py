"""Forwards of a chunk of variants stacked along the batch (attnclaims.sweep says what each path
saves): from the embeddings or from the lowest patched layer (SkipRunner), against the prefix's KV
cache (PrefixRunner), and with only the unembedding columns a metric reads (PartialUnembed)."""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager

import torch

from attnclaims.hooks import Hook, stack_variants


def _last_position_hook() -> Hook:
    return ("unembed.hook_in", lambda x, hook: x[:, -1:])


class _Unembedding(Exception):
    """Raised by a hook on unembed.hook_in to end a forward there, carrying the residual stream."""

    def __init__(self, resid: torch.Tensor):
        super().__init__("forward stopped before the unembedding")
        self.resid = resid


class PartialUnembed:
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
    def of(cls, model, metric) -> PartialUnembed | None:
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


def split_layer(model, layers: list[int | None]) -> int | None:
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


class SkipRunner:
    """Forwards of stacked copies, the copies split from one shared copy at the chunk's lowest
    patched layer."""

    def __init__(self, model, tokens: torch.Tensor, last_only: bool, unembed: PartialUnembed | None):
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


class PrefixRunner:
    """The prefix tokens[:, :-1] once; each chunk runs the last token against its KV cache, the
    copies split at the chunk's lowest patched layer (the cache's layers from there on repeated)."""

    def __init__(self, model, tokens: torch.Tensor, last_only: bool, unembed: PartialUnembed | None):
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
