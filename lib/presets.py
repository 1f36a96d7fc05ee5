"""Named toy configurations shared by tests/ and benchmarks/ (the hypotheses name their own)."""

from attnclaims.toy import ToyConfig

# A 2-layer attention-only toy trained briefly on `repeat`: small enough for unit and oracle tests.
ATTN_ONLY = ToyConfig(n_layers=2, n_heads=4, d_model=32, n_content=24, seq_len=8, steps=150, batch=32)
# The same with MLPs.
WITH_MLP = ATTN_ONLY.replace(attn_only=False, d_mlp=64)
