"""The dropout study's comparisons (lib/studies/dropout.py) on a table built by hand: paired by seed,
slopes per replicate, and the detectable effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnclaims.stats import minimal_detectable_effect
from attnclaims.studies.dropout import Measure, paired, reached, slopes

LEVELS = (0.0, 0.1, 0.2)
SHARE = Measure("top_head_share", "top head's share", -1, 0.2, "a fifth")


def table() -> pd.DataFrame:
    rows = [
        {"kind": "none", "p": 0.0, "seed": s, "reached": True, "top_head_share": 0.5 + 0.1 * s}
        for s in (2, 0, 1)
    ]
    for p in LEVELS[1:]:
        rows += [
            {
                "kind": "attention",
                "p": p,
                "seed": s,
                "reached": s != 1 or p < 0.2,
                "top_head_share": 0.5 + 0.1 * s - p,
            }
            for s in (1, 2, 0)
        ]
    return pd.DataFrame(rows)


def test_paired_subtracts_the_same_seed_whatever_the_row_order():
    assert paired(table(), SHARE, "attention", 0.2) == pytest.approx([0.2, 0.2, 0.2])  # sign: a lower share


def test_slopes_are_per_seed_least_squares_over_p():
    assert slopes(table(), SHARE, "attention", LEVELS) == pytest.approx([1.0, 1.0, 1.0])
    assert reached(table(), "attention", LEVELS) == (8, 9)


def test_minimal_detectable_effect_shrinks_with_units_and_grows_with_level():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0, 1, 8), rng.normal(0, 1, 32)
    assert minimal_detectable_effect(large) < minimal_detectable_effect(small)
    assert minimal_detectable_effect(small, 0.99) > minimal_detectable_effect(small, 0.95)
    sd, n = small.std(ddof=1), 8
    assert minimal_detectable_effect(small) == pytest.approx((2.3646 + 0.8960) * sd / np.sqrt(n), rel=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        minimal_detectable_effect([1.0])
