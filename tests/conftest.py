"""Fixtures shared by the tests of lib/: small trained toy models (cached like any toy)."""

import pytest

from attnclaims.presets import ATTN_ONLY, WITH_MLP


@pytest.fixture(scope="session")
def toy(toy_model):
    """A 2-layer attention-only toy, briefly trained on the repeat task."""
    return toy_model(ATTN_ONLY)


@pytest.fixture(scope="session")
def toy_mlp(toy_model):
    """The same with MLPs."""
    return toy_model(WITH_MLP)
