"""Replication claims (fixtures/replication.py): supported exactly when the claim is supported on every
model, carrying the figure of the model furthest from the claim; inconclusive when a premise failed on a
model; skipped, with no ledger row, when one model runs or the per-model claim did not."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.claims import read_ledger

REPO = Path(__file__).resolve().parents[1]

# The replication test comes first in the file: the plugin must run it after the per-model claims.
MODULE = """
import pytest
from lib.claims import Precondition

REPLICATION = ["test_both", "test_one[x]", "test_premise"]
REFUTED = {"test_replicates_in_every_model[test_one[x]]": "m2: 0.1 [-0.2, 0.4]"}
FIGURES = {"m1": (0.9, 0.7, 1.1), "m2": (0.6, 0.55, 0.65)}

@pytest.mark.parametrize("of", REPLICATION)
def test_replicates_in_every_model(of, replicate):
    assert replicate(of)

def test_both(claim, model_name):
    value, low, high = FIGURES[model_name]
    assert claim(metric="score", value=value, ci=(low, high), threshold=0.5, n=6, unit="paragraphs")

@pytest.mark.parametrize("p", ["x"])
def test_one(claim, model_name, p):
    figure = (0.8, 0.6, 1.0) if model_name == "m1" else (0.1, -0.2, 0.4)
    claim(metric="effect", value=figure[0], ci=figure[1:], threshold=0.5)

def test_premise(claim, model_name):
    premise = Precondition(model_name == "m1", f"learned on {model_name}")
    claim(metric="m", value=1.0, threshold=0.5, precondition=premise)
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.delenv("ATTNCLAIMS_RUN_ID", raising=False)
    pytester.makeconftest((REPO / "conftest.py").read_text())
    pytester.makepyfile(test_study=MODULE)
    return pytester


def run(suite, tmp_path, *args):
    return suite.runpytest_inprocess(f"--results-dir={tmp_path}", "-p", "no:cacheprovider", "-rsx", *args)


def test_a_replication_claim_holds_only_where_every_model_supports_it(suite, tmp_path):
    result = run(suite, tmp_path, "--model", "m1,m2")
    result.assert_outcomes(passed=6, skipped=2, xfailed=1)  # test_premise on m2 and its replication skip
    result.stdout.fnmatch_lines(["*inconclusive: m2: failed: learned on m2*"])
    table = read_ledger(tmp_path / "claims.csv").set_index(["claim", "model"])
    both = table.loc[("test_replicates_in_every_model[test_both]", "m1+m2")]
    assert (both.status, both.value, both.ci_low, both.ci_high) == ("supported", 0.6, 0.55, 0.65)
    assert both.n == 6 and both.unit == "paragraphs" and "(m2)" in both.metric
    assert "m1 0.9 [0.7, 1.1] supported" in both.note and "m2 0.6 [0.55, 0.65] supported" in both.note
    one = table.loc[("test_replicates_in_every_model[test_one[x]]", "m1+m2")]
    assert (one.status, one.value) == ("refuted", 0.1)
    premise = table.loc[("test_replicates_in_every_model[test_premise]", "m1+m2")]
    assert premise.status == "inconclusive"


def test_with_one_model_or_a_deselected_claim_it_is_skipped_and_writes_no_row(suite, tmp_path):
    alone = run(suite, tmp_path / "alone", "--model", "m1")
    alone.assert_outcomes(passed=3, skipped=3)
    alone.stdout.fnmatch_lines(["*--model selects m1 alone: use --model all*"])
    assert not read_ledger(tmp_path / "alone" / "claims.csv").claim.str.startswith("test_replicates").any()
    deselected = run(suite, tmp_path / "some", "--model", "m1,m2", "-k", "replicates or test_one")
    deselected.assert_outcomes(passed=2, skipped=2, xfailed=1)
    deselected.stdout.fnmatch_lines(["*test_both was not measured on m1, m2 in this run*"])
