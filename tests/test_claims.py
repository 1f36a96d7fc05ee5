"""The claims ledger: verdicts, preconditions, a diffable file, atomic writes, parallel workers,
interrupted runs, and `python -m lib.claims diff`."""

from __future__ import annotations

import math
import multiprocessing
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lib.claims import (
    COLUMNS,
    Claim,
    Ledger,
    Precondition,
    diff_ledgers,
    git_commit,
    load_ledger,
    main,
    read_ledger,
)

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[1]


def make(claim_id="c", value=1.0, threshold=0.5, direction=">=", ci=(math.nan, math.nan), model="m", **extra):
    return Claim(
        hypothesis="h",
        claim_id=claim_id,
        model=model,
        metric="x",
        value=value,
        threshold=threshold,
        direction=direction,
        ci_low=ci[0],
        ci_high=ci[1],
        **extra,
    )


def test_a_claim_with_a_ci_needs_the_whole_ci_past_the_threshold():
    assert make(value=1.0, threshold=0.5).holds
    assert not make(value=1.0, threshold=0.5, ci=(0.4, 1.6)).holds
    assert make(value=1.0, threshold=0.5, ci=(0.6, 1.6)).holds
    assert make(value=0.1, threshold=0.2, direction="<=", ci=(0.0, 0.15)).holds
    assert not make(value=0.1, threshold=0.2, direction="<=", ci=(0.0, 0.25)).holds


def test_a_claim_is_truthy_iff_it_is_supported_and_its_repr_gives_the_figures():
    refuted = make(value=1.0, threshold=0.5, ci=(0.4, 1.6))
    assert not refuted and make(value=1.0, threshold=0.5, ci=(0.6, 1.6))
    assert repr(refuted) == "c on m: x = 1 [95% CI 0.4, 1.6], n=1; claimed >= 0.5: does not hold"
    assert "n=8 seeds" in repr(make(n=8, unit="seeds"))


def test_bad_claims_are_named():
    with pytest.raises(ValueError, match="direction"):
        make(direction=">")
    with pytest.raises(ValueError, match="nan"):
        make(value=math.nan)
    with pytest.raises(TypeError, match=r"\(ok: bool, reason: str\) pair"):
        make(precondition=True)
    with pytest.raises(ValueError, match="needs a reason"):
        make(precondition=(True, ""))


@given(
    value=st.floats(-1e6, 1e6),
    threshold=st.floats(-1e6, 1e6),
    spread=st.one_of(st.just(math.nan), st.floats(0, 1e6)),
    direction=st.sampled_from([">=", "<="]),
    as_pair=st.booleans(),
)
def test_no_claim_is_supported_when_its_precondition_failed(value, threshold, spread, direction, as_pair):
    failed = (False, "the model did not learn the task") if as_pair else Precondition(False, "no circuit")
    ci = (value - spread, value + spread)
    claim = make(value=value, threshold=threshold, direction=direction, ci=ci, precondition=failed)
    assert claim.status == "inconclusive" and not claim and claim.row()["status"] == "inconclusive"
    assert claim.row()["precondition"].startswith("failed: ")
    met = make(value=value, threshold=threshold, direction=direction, precondition=(True, "learned"))
    assert met.status == ("supported" if met.holds else "refuted") and bool(met) == met.holds


def test_the_tracked_ledger_has_stable_columns_rounded_numbers_and_sorted_rows(tmp_path):
    ledger = Ledger(tmp_path, run_id="r1", commit="abc")
    ledger.record(
        make("b", value=2.123456789, ci=(1.0000001, 3.333333333), n=16, unit="families", adjusted_p=0.0123456)
    )
    ledger.record(make("a", value=1 / 3, precondition=(False, "loss 3.6 nats > 1")))
    text = (tmp_path / "claims.csv").read_text()
    lines = text.splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert "abc" not in text and "r1" not in text  # run id and commit go to history.jsonl only
    assert lines[1].startswith("h,a,m,x,0.3333,,,0.5,>=,inconclusive,1,,,failed: loss 3.6 nats > 1,")
    assert lines[2].startswith("h,b,m,x,2.123,1,3.333,0.5,>=,supported,16,families,0.01235,,")
    before = text
    ledger.record(make("b", value=2.1234999))  # same figure at 4 significant digits: the file is unchanged
    ledger.record(
        make("b", value=2.123456789, ci=(1.0000001, 3.333333333), n=16, unit="families", adjusted_p=0.0123456)
    )
    assert (tmp_path / "claims.csv").read_text() == before
    history = ledger.run_rows()
    assert len(history) == 4 and set(history.commit) == {"abc"} and history.value.iloc[0] == 2.123456789


def test_the_ledger_file_is_readable_by_the_group_and_others(tmp_path):
    old = os.umask(0o022)
    try:
        Ledger(tmp_path, run_id="r", commit="abc").record(make())
    finally:
        os.umask(old)
    assert (tmp_path / "claims.csv").stat().st_mode & 0o777 == 0o644


def test_an_old_format_ledger_still_reads_and_is_rewritten_in_the_new_one(tmp_path):
    (tmp_path / "claims.csv").write_text(
        "hypothesis,claim_id,model,metric,value,ci_low,ci_high,threshold,direction,n,status,commit,timestamp,run_id,note\n"  # noqa: E501 (a ledger line / a test file as written)
        "h,old,m,x,0.5555555,0.1,0.9,0.2,>=,6,supported,76082ccd4e98-dirty,2026-11-25T02:56:09+00:00,ec0a,a note\n"  # noqa: E501 (a ledger line / a test file as written)
    )
    ledger = Ledger(tmp_path, run_id="r", commit="abc")
    row = ledger.table().iloc[0]
    assert (row.claim, row.value, row.status, row.n, row.note) == ("old", 0.5555555, "supported", 6, "a note")
    ledger.record(make("new"))
    table = pd.read_csv(tmp_path / "claims.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == COLUMNS and list(table.claim) == ["new", "old"]
    assert table.set_index("claim").loc["old", "value"] == "0.5556"


def test_latest_row_per_claim_and_model(tmp_path):
    ledger = Ledger(tmp_path, run_id="r1", commit="abc")
    ledger.record(make("a", value=1.0))
    ledger.record(make("a", value=0.1))
    ledger.record(make("a", value=2.0, model="other"))
    table = ledger.table()
    assert len(table) == 2
    row = table[(table.claim == "a") & (table.model == "m")].iloc[0]
    assert (row.value, row.status) == (0.1, "refuted")
    assert len(ledger.run_rows()) == 3


def _writer(folder, worker, count):
    ledger = Ledger(folder, run_id="parallel", commit="abc")
    for i in range(count):
        ledger.record(make(f"w{worker}-{i}", value=float(i)))


def test_two_processes_lose_no_rows(tmp_path):
    ctx = multiprocessing.get_context("fork")  # fork: the children need not import pandas again
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, 25)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    table = Ledger(tmp_path, run_id="parallel").table()
    assert sorted(table.claim) == sorted(f"w{w}-{i}" for w in range(2) for i in range(25))
    assert len(Ledger(tmp_path, run_id="parallel").run_rows()) == 50
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_interrupted_writes_leave_a_readable_ledger(tmp_path):
    ledger = Ledger(tmp_path, run_id="r", commit="abc")
    ledger.record(make("a"))
    with open(ledger.history, "a") as handle:
        handle.write('{"run_id": "r", "claim": "cut sh')  # a writer killed mid-line
    (tmp_path / "claims.csv.123.tmp").write_text("half a ta")  # a writer killed before its rename
    ledger.record(make("b"))
    assert sorted(ledger.table().claim) == ["a", "b"]
    assert sorted(ledger.run_rows().claim) == ["a", "b"]


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A git checkout with a tracked results/claims.csv holding one supported claim."""
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@t")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "code.py").write_text("x = 1\n")
    Ledger(tmp_path / "results", run_id="r", commit="abc").record(make("a", value=1.0, ci=(0.8, 1.2)))
    _git(tmp_path, "add", "code.py", "results/claims.csv")
    _git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_a_run_does_not_mark_its_commit_dirty_by_writing_results(repo):
    results = repo / "results"
    Ledger(results, run_id="r", commit="abc").record(make("a", value=0.1))
    assert not git_commit(repo, exclude=results).endswith("-dirty")
    assert git_commit(repo).endswith("-dirty")  # without the exclusion the ledger dirties it
    assert not Ledger(results, run_id="r").commit.endswith("-dirty")
    (repo / "code.py").write_text("x = 2\n")
    assert git_commit(repo, exclude=results).endswith("-dirty")


def test_diff_fails_on_a_flipped_claim_and_reports_it(repo, capsys):
    old, new = repo / "old.csv", repo / "new.csv"
    (old).write_text((repo / "results" / "claims.csv").read_text())
    ledger = Ledger(repo / "results", run_id="r", commit="abc")
    ledger.record(make("a", value=0.3, ci=(0.1, 0.6)))  # refuted now
    ledger.record(make("added", value=1.0))
    new.write_text((repo / "results" / "claims.csv").read_text())
    assert main(["diff", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert (
        "h::a on m: supported -> refuted" in out and "added (1):" in out and "h::added on m: supported" in out
    )
    assert main(["diff", str(new), str(old)]) == 1
    assert "removed (1):" in capsys.readouterr().out


def test_diff_passes_a_shift_within_the_old_ci_and_lists_one_beyond_it(repo, capsys):
    old = repo / "old.csv"
    old.write_text((repo / "results" / "claims.csv").read_text())
    ledger = Ledger(repo / "results", run_id="r", commit="abc")
    ledger.record(make("a", value=1.1, ci=(0.9, 1.3)))  # within the old CI [0.8, 1.2]
    assert main(["diff", str(old), str(ledger.csv)]) == 0
    assert capsys.readouterr().out.strip() == "no claim moved"
    ledger.record(make("a", value=1.5, ci=(1.3, 1.7)))  # beyond it, still supported
    assert main(["diff", str(old), str(ledger.csv)]) == 0
    assert "h::a on m: 1 -> 1.5, outside the old CI [0.8, 1.2]" in capsys.readouterr().out


def test_diff_reads_git_revisions(repo):
    Ledger(repo / "results", run_id="r", commit="abc").record(make("a", value=0.0))
    _git(repo, "commit", "-q", "-am", "second")
    changes = diff_ledgers(load_ledger("HEAD~1", repo=repo), load_ledger("HEAD", repo=repo))
    assert changes.flips == ["h::a on m: supported -> refuted (x: 1 -> 0)"]
    assert list(load_ledger("HEAD~1:results/claims.csv", repo=repo).value) == [1.0]
    with pytest.raises(SystemExit, match="neither a ledger file nor a git revision"):
        load_ledger("no-such-rev", repo=repo)


CONFTEST = (
    'pytest_plugins = ["fixtures.ledger"]\n'
    "def pytest_addoption(parser):\n"
    "    parser.addoption('--model', default='toy')\n"
    "    parser.addoption('--device', default='cpu')\n"
    "    parser.addoption('--results-dir', default=None)\n"
)


@pytest.fixture
def suite(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.delenv("ATTNCLAIMS_RUN_ID", raising=False)
    pytester.makeconftest(CONFTEST)
    return pytester


def test_a_failed_precondition_is_recorded_inconclusive_and_the_test_cannot_pass(suite):
    suite.makepyfile(
        test_pre=(
            "import pytest\n"
            "from lib.claims import Precondition\n"
            "def test_unlearned(claim):\n"
            "    try:\n"  # a test that swallows errors still cannot pass: the skip is not an Exception
            "        assert claim(model='toy:a', metric='m', value=5, threshold=0, precondition=(False, 'loss 3.6 > 1'))\n"  # noqa: E501 (a ledger line / a test file as written)
            "    except Exception:\n"
            "        pass\n"
            "@pytest.mark.xfail(strict=True, reason='refuted: -1 < 0')\n"
            "def test_refuted_unlearned(claim):\n"
            "    assert claim(model='toy:a', metric='m', value=-1, threshold=0, precondition=Precondition(False, 'no circuit'))\n"  # noqa: E501 (a ledger line / a test file as written)
            "def test_learned(claim):\n"
            "    assert claim(model='toy:a', metric='m', value=5, threshold=0, precondition=(True, 'loss 0.1 < 1'))\n"  # noqa: E501 (a ledger line / a test file as written)
            "def test_no_model(claim):\n"
            "    claim(metric='m', value=5, threshold=0)\n"
            "@pytest.mark.parametrize('model_name', ['tiny-lm'])\n"
            "def test_model_from_parameter(claim, model_name):\n"
            "    assert claim(metric='m', value=5, threshold=0)\n"
            "@pytest.mark.parametrize('model_name', ['tiny-lm'])\n"
            "@pytest.mark.parametrize('p', [0.1])\n"
            "def test_two_parameters(claim, p, model_name):\n"
            "    assert claim(metric='m', value=5, threshold=0)\n"
        )
    )
    results = suite.path / "out"
    run = suite.runpytest(f"--results-dir={results}", "-p", "no:cacheprovider", "-rs")
    run.assert_outcomes(passed=3, skipped=2, failed=1)
    run.stdout.fnmatch_lines(["*SKIPPED*inconclusive: loss 3.6 > 1*", "*SKIPPED*inconclusive: no circuit*"])
    run.stdout.fnmatch_lines(["*test_no_model*pass model=*"])
    table = read_ledger(results / "claims.csv").set_index("claim")
    assert table.status.to_dict() == {
        "test_unlearned": "inconclusive",
        "test_refuted_unlearned": "inconclusive",
        "test_learned": "supported",
        "test_model_from_parameter": "supported",  # the model has a column of its own, not part of the name
        "test_two_parameters[0.1]": "supported",
    }
    assert table.loc["test_model_from_parameter", "model"] == "tiny-lm"


def test_claim_fixture_under_two_xdist_workers(suite, monkeypatch):
    suite.makepyfile(
        test_many=(
            "import pytest\n"
            "@pytest.mark.parametrize('i', range(12))\n"
            "def test_holds(claim, i):\n"
            "    assert claim(model='toy', metric='m', value=i, threshold=0)\n"
            "@pytest.mark.xfail(strict=True, reason='refuted: -1 < 0')\n"
            "def test_refuted(claim):\n"
            "    assert claim(model='toy', metric='m', value=-1, threshold=0)\n"
        )
    )
    results = suite.path / "out"
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # xdist only: the workers start faster
    run = suite.runpytest_subprocess(
        "-n", "2", "-p", "xdist", f"--results-dir={results}", "-p", "no:cacheprovider"
    )
    run.assert_outcomes(passed=12, xfailed=1)
    table = read_ledger(results / "claims.csv")
    assert len(table) == 13
    assert (table.status == "supported").sum() == 12
    assert table.set_index("claim").loc["test_refuted", "status"] == "refuted"
    run.stdout.fnmatch_lines(["*claims ledger*", "*refuted*many::test_refuted*"])
