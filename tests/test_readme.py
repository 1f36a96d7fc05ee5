"""The README's library examples run as written: every ```python block that follows the marker
comment is executed, in order, in one namespace (each block asserts what it shows)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- executed by tests/test_readme.py -->"

pytestmark = [pytest.mark.real_model, pytest.mark.slow]  # the blocks load smollm2-135m themselves: ~25 s


def executed_blocks(text: str) -> list[str]:
    return re.findall(re.escape(MARKER) + r"\s*```python\n(.*?)```", text, flags=re.S)


def test_the_readme_examples_run():
    blocks = executed_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 4, (
        "the README shows the head-out and redirect sweeps, run_variants and a resid sweep"
    )
    namespace: dict = {}
    for i, block in enumerate(blocks, 1):
        exec(compile(block, f"README.md, executed block {i}", "exec"), namespace)
    assert set(namespace) >= {"effects", "redirected", "values", "resid"}
