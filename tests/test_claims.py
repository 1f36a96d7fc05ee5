"""The claims ledger: verdicts, atomic writes, parallel workers, interrupted runs."""

from __future__ import annotations

import math
import multiprocessing
import os
from pathlib import Path

import pandas as pd
import pytest

from lib.claims import Claim, Ledger

pytest_plugins = ["pytester"]


def make(claim_id="c", value=1.0, threshold=0.5, direction=">=", ci=(math.nan, math.nan), model="m"):
    return Claim(hypothesis="h", claim_id=claim_id, model=model, metric="x", value=value, threshold=threshold,
                 direction=direction, ci_low=ci[0], ci_high=ci[1])  # fmt: skip


def test_a_claim_with_a_ci_needs_the_whole_ci_past_the_threshold():
    assert make(value=1.0, threshold=0.5).holds
    assert not make(value=1.0, threshold=0.5, ci=(0.4, 1.6)).holds
    assert make(value=1.0, threshold=0.5, ci=(0.6, 1.6)).holds
    assert make(value=0.1, threshold=0.2, direction="<=", ci=(0.0, 0.15)).holds
    assert not make(value=0.1, threshold=0.2, direction="<=", ci=(0.0, 0.25)).holds


def test_a_claim_is_truthy_iff_it_holds_and_its_repr_gives_the_figures():
    refuted = make(value=1.0, threshold=0.5, ci=(0.4, 1.6))
    assert not refuted and make(value=1.0, threshold=0.5, ci=(0.6, 1.6))
    assert repr(refuted) == "c on m: x = 1 [95% CI 0.4, 1.6], n=1; claimed >= 0.5: does not hold"


def test_bad_claims_are_named():
    with pytest.raises(ValueError, match="direction"):
        make(direction=">")
    with pytest.raises(ValueError, match="nan"):
        make(value=math.nan)


def test_latest_row_per_claim_and_model(tmp_path):
    ledger = Ledger(tmp_path, run_id="r1", commit="abc")
    ledger.record(make("a", value=1.0))
    ledger.record(make("a", value=0.1))
    ledger.record(make("a", value=2.0, model="other"))
    table = ledger.table()
    assert len(table) == 2
    row = table[(table.claim_id == "a") & (table.model == "m")].iloc[0]
    assert (row.value, row.status, row.commit) == (0.1, "refuted", "abc")
    assert len(ledger.run_rows()) == 3


def _writer(folder, worker, count):
    ledger = Ledger(folder, run_id="parallel", commit="abc")
    for i in range(count):
        ledger.record(make(f"w{worker}-{i}", value=float(i)))


def test_two_processes_lose_no_rows(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, 40)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    table = Ledger(tmp_path, run_id="parallel").table()
    assert sorted(table.claim_id) == sorted(f"w{w}-{i}" for w in range(2) for i in range(40))
    assert len(Ledger(tmp_path, run_id="parallel").run_rows()) == 80
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_interrupted_writes_leave_a_readable_ledger(tmp_path):
    ledger = Ledger(tmp_path, run_id="r", commit="abc")
    ledger.record(make("a"))
    with open(ledger.history, "a") as handle:
        handle.write('{"run_id": "r", "claim_id": "cut sh')  # a writer killed mid-line
    (tmp_path / "claims.csv.123.tmp").write_text("half a ta")  # a writer killed before its rename
    ledger.record(make("b"))
    assert sorted(ledger.table().claim_id) == ["a", "b"]
    assert sorted(ledger.run_rows().claim_id) == ["a", "b"]


def test_claim_fixture_under_two_xdist_workers(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    monkeypatch.delenv("ATTNCLAIMS_RUN_ID", raising=False)
    pytester.makeconftest(
        'pytest_plugins = ["fixtures.ledger", "fixtures.models"]\n'
        "def pytest_addoption(parser):\n"
        "    parser.addoption('--model', default='toy')\n"
        "    parser.addoption('--device', default='cpu')\n"
        "    parser.addoption('--results-dir', default=None)\n"
    )
    pytester.makepyfile(
        test_many=(
            "import pytest\n"
            "@pytest.mark.parametrize('i', range(12))\n"
            "def test_holds(claim, i):\n"
            "    assert claim(metric='m', value=i, threshold=0)\n"
            "@pytest.mark.xfail(strict=True, reason='refuted: -1 < 0')\n"
            "def test_refuted(claim):\n"
            "    assert claim(metric='m', value=-1, threshold=0)\n"
        )
    )
    results = pytester.path / "out"
    run = pytester.runpytest_subprocess("-n", "2", "-p", "xdist", f"--results-dir={results}", "-p", "no:cacheprovider")
    run.assert_outcomes(passed=12, xfailed=1)
    table = pd.read_csv(results / "claims.csv")
    assert len(table) == 13
    assert (table.status == "supported").sum() == 12
    assert table.set_index("claim_id").loc["test_refuted", "status"] == "refuted"
    run.stdout.fnmatch_lines(["*claims ledger*", "*refuted*many::test_refuted*"])
