"""Suite-wide options and plugins: which models the hypotheses run on, and the claims ledger."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # figures go to files; set once, before anything imports pyplot

pytest_plugins = [
    "fixtures.ledger",
    "fixtures.models",
    "fixtures.progress",
    "pytester",
]


def pytest_addoption(parser):
    from lib.models import DEFAULT_MODEL, DTYPES, EMBEDDED_MODELS

    group = parser.getgroup("attnclaims", "claims about transformer internals")
    group.addoption(
        "--model",
        default=DEFAULT_MODEL,
        help=f"models the hypotheses run on: one name, a comma-separated list, or `all` (the embedded "
        f"models, offline: {', '.join(EMBEDDED_MODELS)}); other names are HuggingFace hub ids",
    )
    group.addoption(
        "--dtype", default="float32", choices=tuple(DTYPES), help="dtype of real models (default: float32)"
    )
    group.addoption("--device", default="cpu", help="torch device for models (default: cpu)")
    group.addoption(
        "--results-dir", default=None, help="folder of the claims ledger (default: <repo>/results)"
    )
