"""The claims ledger: the decision rule, preconditions, a diffable file, atomic writes, parallel workers,
interrupted runs, and `attnclaims diff`. (The claim fixture's outcomes against the committed
ledger, families and run settings: tests/test_claim_fixture.py.)"""

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

from attnclaims.claims import COLUMNS, Claim, Precondition, decide, threshold_text
from attnclaims.cli import main
from attnclaims.ledger import Ledger, diff_ledgers, git_commit, load_ledger, replication, round_sig

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
        **{"exact": math.isnan(ci[0]), **extra},
    )


def test_the_decision_rule_has_four_outcomes():
    assert make(value=1.0, threshold=0.5, ci=(0.6, 1.6)).status == "supported"
    assert make(value=1.0, threshold=0.5, ci=(0.4, 1.6)).status == "undecided"
    assert make(value=0.2, threshold=0.5, ci=(0.1, 0.4)).status == "refuted"
    assert make(value=0.1, threshold=0.2, direction="<=", ci=(0.0, 0.15)).status == "supported"
    assert make(value=0.1, threshold=0.2, direction="<=", ci=(0.0, 0.25)).status == "undecided"
    assert make(value=0.3, threshold=0.2, direction="<=", ci=(0.25, 0.35)).status == "refuted"
    assert make(value=5.0, threshold=0.5, ci=(1.0, 9.0), precondition=(False, "no circuit")).status == (
        "inconclusive"
    )
    assert make(value=1.0, threshold=0.5).status == "supported"  # exact: the figure alone decides
    assert make(value=0.4, threshold=0.5).status == "refuted"


def test_a_claim_of_no_effect_is_supported_only_inside_its_margin():
    assert make(value=0.0, threshold=0.1, direction="within", ci=(-0.05, 0.08)).status == "supported"
    assert make(value=0.0, threshold=0.1, direction="within", ci=(-0.05, 0.12)).status == "undecided"
    assert make(value=0.3, threshold=0.1, direction="within", ci=(0.2, 0.4)).status == "refuted"
    assert make(value=-0.3, threshold=0.1, direction="within", ci=(-0.4, -0.2)).status == "refuted"
    with pytest.raises(ValueError, match="margin must be >= 0"):
        make(threshold=-0.1, direction="within", ci=(0, 0))


@given(
    low=st.floats(-1e3, 1e3),
    width=st.floats(0, 1e3),
    threshold=st.floats(-1e3, 1e3),
    direction=st.sampled_from([">=", "<="]),
)
def test_refuted_means_the_ci_excludes_the_claim_and_undecided_means_it_straddles(
    low, width, threshold, direction
):
    high = low + width
    status = decide(direction, threshold, low, high)
    claimed = (lambda x: x >= threshold) if direction == ">=" else (lambda x: x <= threshold)
    if status == "supported":
        assert claimed(low) and claimed(high)
    elif status == "refuted":
        assert not claimed(low) and not claimed(high)
    else:
        assert status == "undecided" and claimed(low) != claimed(high)


def test_an_undecided_row_says_how_far_its_ci_reaches_past_the_threshold():
    undecided = make(value=0.88, threshold=0.5, ci=(0.02, 1.76))
    assert undecided.past_threshold == pytest.approx(0.48) and undecided.row()["past_threshold"] == 0.48
    assert "undecided (the CI reaches 0.48 past the threshold)" in repr(undecided)
    assert math.isnan(make(value=1.0, threshold=0.5, ci=(0.6, 1.6)).past_threshold)


def test_a_claim_is_truthy_iff_it_is_supported_and_its_repr_gives_the_figures():
    refuted = make(value=0.2, threshold=0.5, ci=(0.1, 0.4))
    assert not refuted and make(value=1.0, threshold=0.5, ci=(0.6, 1.6))
    assert not make(value=1.0, threshold=0.5, ci=(0.4, 1.6))
    assert repr(refuted) == "c on m: x = 0.2 [95% CI 0.1, 0.4], n=1; claimed >= 0.5: refuted"
    assert "n=8 replicates" in repr(make(n=8, unit="replicates"))
    assert "x = 1 (exact)" in repr(make())


def test_the_claimed_side_is_written_one_way_for_the_terminal_and_the_report():
    assert threshold_text(">=", 0.5) == ">= 0.5" and threshold_text("within", 0.1) == "within +-0.1"
    assert threshold_text("<=", 1 / 3) == "<= 0.333333"
    assert threshold_text("<=", 1 / 3, round_sig) == "<= 0.3333"  # the report's 4 significant digits


def test_bad_claims_are_named():
    with pytest.raises(ValueError, match="direction"):
        make(direction=">")
    with pytest.raises(ValueError, match="nan"):
        make(value=math.nan)
    with pytest.raises(TypeError, match=r"\(ok: bool, reason: str\) pair"):
        make(precondition=True)
    with pytest.raises(ValueError, match="needs a reason"):
        make(precondition=(True, ""))
    with pytest.raises(ValueError, match="give a CI, or exact=True"):
        make(exact=False)
    with pytest.raises(ValueError, match="an exact figure has no CI"):
        Claim("h", "c", "m", "x", 1.0, 0.5, ci_low=0.0, ci_high=2.0, exact=True)


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
    assert met.status == decide(direction, threshold, value, value) and bool(met) == (
        met.status == "supported"
    )


def test_the_tracked_ledger_has_stable_columns_rounded_numbers_and_sorted_rows(tmp_path):
    ledger = Ledger(tmp_path, run_id="r1", commit="abc")
    ledger.record(
        make("b", value=2.123456789, ci=(1.0000001, 3.333333333), n=16, unit="families", adjusted_p=0.0123456)
    )
    ledger.record(make("a", value=1 / 3, precondition=(False, "loss 3.6 nats > 1"), why="a reason"))
    text = (tmp_path / "claims.csv").read_text()
    lines = text.splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert "abc" not in text and "r1" not in text  # run id and commit go to history.jsonl only
    assert lines[1].startswith(
        "h,a,m,,x,0.3333,,,exact,0.5,>=,a reason,inconclusive,,1,,exploratory,,0,,,failed: loss"
    )
    assert lines[2].startswith(
        "h,b,m,,x,2.123,1,3.333,95%,0.5,>=,,supported,,16,families,exploratory,,0,,0.01235,,"
    )
    before = text
    ledger.record(make("b", value=2.1234999))  # another figure: the row changes ...
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
    ledger.record(make("a", value=0.3, ci=(0.1, 0.6)))  # undecided now
    ledger.record(make("added", value=1.0))
    new.write_text((repo / "results" / "claims.csv").read_text())
    assert main(["diff", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert (
        "h::a on m: supported -> undecided" in out
        and "added (1):" in out
        and "h::added on m: supported" in out
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
    csv = repo / "results" / "claims.csv"
    changes = diff_ledgers(load_ledger("HEAD~1", csv), load_ledger("HEAD", csv))
    assert changes.flips == ["h::a on m: supported -> refuted (x: 1 -> 0)"]
    assert list(load_ledger("HEAD~1:results/claims.csv", csv).value) == [1.0]
    with pytest.raises(FileNotFoundError, match="neither a ledger file nor a git revision"):
        load_ledger("no-such-rev", csv)


def test_a_run_keeps_its_lock_and_history_out_of_git(repo):
    """The results folder ignores the files a run keeps to itself: `git add -A` commits the ledger only."""
    results = repo / "results"
    (results / ".gitignore").unlink()  # the fixture's first record wrote it
    Ledger(results, run_id="r2", commit="abc").record(make("b", value=1.0))
    assert (results / "history.jsonl").exists() and (results / ".ledger.lock").exists()
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    assert sorted(line for line in status if line) == [" M results/claims.csv", "?? results/.gitignore"]
    (results / ".gitignore").write_text("mine\n")
    Ledger(results, run_id="r3", commit="abc").record(make("c", value=1.0))
    assert (results / ".gitignore").read_text() == "mine\n"  # a project's own file is left as it is


def test_a_commit_with_no_ledger_yet_reads_as_empty(tmp_path, capsys):
    """A new project's first run: `attnclaims diff HEAD results/claims.csv` lists every row as added."""
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@t")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "add", "code.py")
    _git(tmp_path, "commit", "-q", "-m", "code only")
    ledger = Ledger(tmp_path / "results", run_id="r", commit="abc")
    ledger.record(make("a", value=1.0, ci=(0.8, 1.2)))
    assert load_ledger("HEAD", ledger.csv).empty
    assert main(["diff", "HEAD", str(ledger.csv), "--results", str(tmp_path / "results")]) == 0
    assert capsys.readouterr().out.splitlines() == ["added (1):", "  h::a on m: supported"]
    with pytest.raises(FileNotFoundError, match="neither a ledger file nor a git revision"):
        load_ledger("no-such-rev", ledger.csv)  # a revision that is not there is still an error
    with pytest.raises(FileNotFoundError, match="neither a ledger file nor a git revision"):
        load_ledger("HEAD:results/claim.csv", ledger.csv)  # and so is a path that is not there


def test_replication_is_derived_from_the_rows_and_a_refutation_is_never_hidden():
    rows = [
        make("both", value=0.9, ci=(0.7, 1.1), model="m1"),
        make("both", value=0.6, ci=(0.55, 0.65), model="m2"),
        make("one", value=0.8, ci=(0.6, 1.0), model="m1"),
        make("one", value=0.1, ci=(-0.2, 0.4), model="m2"),  # refuted on m2
        make("masked", value=0.1, ci=(-0.2, 0.4), model="m1"),  # refuted on m1 ...
        make("masked", value=2.0, ci=(1, 3), model="m2", precondition=(False, "no premise")),  # ... premise
        make("wide", value=0.6, ci=(0.2, 1.0), model="m1"),
        make("wide", value=0.9, ci=(0.7, 1.1), model="m2"),
        make("premise", value=0.9, ci=(0.7, 1.1), model="m1", precondition=(False, "no premise")),
        make("premise", value=0.9, ci=(0.7, 1.1), model="m2"),
        make("alone", value=0.9, ci=(0.7, 1.1), model="m1"),
        make("nowhere", value=0.1, ci=(-0.2, 0.4), model="m1"),
        make("nowhere", value=0.2, ci=(0.1, 0.3), model="m2"),  # refuted on both: the refutation replicates
        make("toy", value=0.9, ci=(0.7, 1.1), model="toy:a"),
        make("toy", value=0.9, ci=(0.7, 1.1), model="toy:b"),
    ]
    table = replication(pd.DataFrame([r.row() for r in rows])).set_index("claim")
    assert table.verdict.to_dict() == {
        "both": "replicates",
        "one": "does not replicate",
        "masked": "does not replicate",
        "wide": "undecided",
        "premise": "inconclusive",
        "nowhere": "refuted on every model",
    }
    assert table.loc["both", "figures"] == "m1 0.9 [0.7, 1.1] supported; m2 0.6 [0.55, 0.65] supported"


def test_holm_counts_a_member_whose_premise_failed_as_untested(tmp_path):
    """A premise that failed tests nothing: its small p must not give the family's others a step down."""
    ledger = Ledger(tmp_path, run_id="r", commit="abc")
    family = {"family": "m", "family_size": 3}
    ledger.record(make("a", value=1.0, ci=(0.6, 1.4), p=0.01, **family))
    ledger.record(make("b", value=1.0, ci=(0.6, 1.4), p=0.02, **family))
    ledger.record(make("c", value=1.0, ci=(0.6, 1.4), p=0.0001, precondition=(False, "no premise"), **family))
    assert ledger.adjust_families() == 3
    adjusted = ledger.table().set_index("claim").adjusted_p
    assert adjusted["a"] == pytest.approx(0.03) and adjusted["b"] == pytest.approx(
        0.04
    )  # Holm of (0.01, 0.02, 1)
    assert math.isnan(adjusted["c"])


def test_only_a_claim_whose_premise_failed_may_record_no_figure():
    unmeasured = make(value=math.nan, exact=False, precondition=(False, "no circuit"))
    assert unmeasured.status == "inconclusive" and not unmeasured.measured
    assert unmeasured.row()["ci_level"] == "" and unmeasured.figure() == "x: not measured"
    with pytest.raises(ValueError, match="only a claim whose precondition failed"):
        make(value=math.nan, exact=False)
    old, new = make("a", value=0.2, ci=(0.1, 0.3), precondition=(False, "p")), unmeasured
    changes = diff_ledgers(pd.DataFrame([old.row()]), pd.DataFrame([{**new.row(), "claim": "a"}]))
    assert changes.shifts == ["h::a on m: 0.2 -> no figure"] and not changes.flips


def test_an_interval_the_data_cannot_bound_decides_only_on_its_bounded_side():
    """A CI end may be infinite (attnclaims.stats says where): never supported past it, still refutable."""
    open_above = make("open", value=0.1, ci=(-math.inf, 0.3))
    assert open_above.status == "refuted"  # the whole interval lies below 0.5
    unbounded = make("open", value=0.1, ci=(-math.inf, math.inf))
    assert unbounded.status == "undecided" and unbounded.has_ci
