"""Suite-wide options and plugins: which model the hypotheses run on, and the claims ledger."""

pytest_plugins = ["fixtures.ledger", "fixtures.models", "fixtures.progress"]


def pytest_addoption(parser):
    group = parser.getgroup("attnclaims", "claims about transformer internals")
    group.addoption("--model", default="smollm2-135m", help="model the hypotheses run on: smollm2-135m (embedded, offline) or a HuggingFace hub id")
    group.addoption("--device", default="cpu", help="torch device for models (default: cpu)")
    group.addoption("--results-dir", default=None, help="folder of the claims ledger (default: <repo>/results)")
