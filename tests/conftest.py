"""Fixtures shared by the tests of lib/: small trained toy models (cached like any toy)."""

import pytest

from lib.toy import ToyConfig

ATTN_ONLY = ToyConfig(n_layers=2, n_heads=4, d_model=32, n_content=24, seq_len=8, steps=150, batch=32)
WITH_MLP = ATTN_ONLY.replace(attn_only=False, d_mlp=64)


@pytest.fixture(scope="session")
def toy(toy_model):
    """A 2-layer attention-only toy, briefly trained on the repeat task."""
    return toy_model(ATTN_ONLY)


@pytest.fixture(scope="session")
def toy_mlp(toy_model):
    """The same with MLPs."""
    return toy_model(WITH_MLP)
