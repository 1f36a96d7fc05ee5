"""The architectures the toy loop trains, built from a ToyConfig (attnclaims.toy), and the GPT-2 the
organisms are set in by hand (attnclaims.studies.organism_weights).

    model = build_hf_model(ToyConfig(n_layers=2))            # GPT-NeoX, rotary positions, seeded
    model = gpt2(n_vocab=53, n_ctx=16, d_model=64, n_layers=3, n_heads=4, n_inner=4)
"""

from __future__ import annotations

import torch


def build_hf_model(config):
    """A randomly initialised (seeded) causal LM: GPT-NeoX (pre-LayerNorm, rotary positions, no bias
    tricks), or GPT-2 with learned absolute positions (`positions="learned"`). An attention-only
    model's MLP weights are 0 and frozen.

    Rotary positions matter: with learned absolute positions a toy model can copy by position.
    """
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from attnclaims.toy import vocabulary as config_vocabulary

    width = 4 if config.attn_only else config.d_mlp
    common = dict(bos_token_id=0, eos_token_id=0, pad_token_id=1, tie_word_embeddings=config.tied)
    torch.manual_seed(config.seed)
    if config.positions == "learned":
        model = gpt2(
            len(config_vocabulary(config)),
            config.n_ctx,
            config.d_model,
            config.n_layers,
            config.n_heads,
            width,
            dropout=(config.attn_dropout, config.resid_dropout),
            tied=config.tied,
        )
        blocks = [(block.mlp.c_fc, block.mlp.c_proj) for block in model.transformer.h]
    else:
        hf_config = GPTNeoXConfig(
            vocab_size=len(config_vocabulary(config)),
            max_position_embeddings=config.n_ctx,
            hidden_size=config.d_model,
            num_hidden_layers=config.n_layers,
            num_attention_heads=config.n_heads,
            intermediate_size=width,
            rotary_pct=1.0,
            use_parallel_residual=False,
            attention_dropout=config.attn_dropout,
            hidden_dropout=config.resid_dropout,
            attn_implementation="eager",
            **common,
        )
        model = GPTNeoXForCausalLM(hf_config)
        blocks = [(layer.mlp,) for layer in model.gpt_neox.layers]
    if config.attn_only:
        for parts in blocks:
            for part in parts:
                for param in part.parameters():
                    param.data.zero_()
                    param.requires_grad_(False)
    return model


def gpt2(n_vocab, n_ctx, d_model, n_layers, n_heads, n_inner, dropout=(0.0, 0.0), tied=False):
    """A GPT2LMHeadModel as the suite builds it (torch's current seed): learned absolute positions,
    eager attention, BOS = EOS = id 0, PAD = 1; `dropout` = (attention, residual and embedding)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=n_vocab,
        n_positions=n_ctx,
        n_embd=d_model,
        n_layer=n_layers,
        n_head=n_heads,
        n_inner=n_inner,
        attn_pdrop=dropout[0],
        resid_pdrop=dropout[1],
        embd_pdrop=dropout[1],
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
        tie_word_embeddings=tied,
    )
    config._attn_implementation = "eager"
    return GPT2LMHeadModel(config)
