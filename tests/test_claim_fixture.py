"""The `claim` fixture (fixtures/claim.py): the committed ledger decides each test's outcome, a changed
verdict fails until it is committed, confirmatory claims are decided on simultaneous CIs with Holm's
adjusted p, and non-default run settings get rows of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import scipy.stats  # noqa: F401 (imported once here: an in-process inner run must not import numpy's parts again)

from attnclaims.ledger import Ledger, diff_ledgers, read_ledger
from attnclaims.report import write_report

REPO = Path(__file__).resolve().parents[1]

# One claim of each verdict, and a confirmatory family of three.
CLAIMS = """
import pytest
from attnclaims.stats import bootstrap_ci, binomial_ci

UNIT = "replicates"
WHY = "a reason"


def test_supported(claim):
    assert claim(binomial_ci(9, 10), ">=", 0.5, why=WHY, model="toy:a", metric="share")


def test_refuted(claim):
    assert claim(binomial_ci(0, 10), ">=", 0.5, why=WHY, model="toy:a", metric="share")


def test_undecided(claim):
    assert claim(binomial_ci(6, 10), ">=", 0.5, why=WHY, model="toy:a", metric="share")


def test_inconclusive(claim):
    premise = (False, "no circuit")
    assert claim(0.9, ">=", 0.5, exact=True, why=WHY, model="toy:a", metric="m", precondition=premise)


@pytest.mark.confirmatory
@pytest.mark.parametrize("shift", [1.0, 0.1, 5.0])
def test_family(claim, shift):
    values = [shift + 0.1 * (i % 5) for i in range(12)]
    assert claim(bootstrap_ci(values), ">=", 0.5, why=WHY, model="toy:a", metric="m")
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(pytester, monkeypatch):
    """A git checkout with one hypothesis file and no conftest: the installed plugin is the suite."""
    monkeypatch.delenv("ATTNCLAIMS_RUN_ID", raising=False)
    pytester.makepyfile(test_claims=CLAIMS)
    _git(pytester.path, "init", "-q")
    _git(pytester.path, "config", "user.email", "t@t")
    _git(pytester.path, "config", "user.name", "t")
    _git(pytester.path, "add", ".")
    _git(pytester.path, "commit", "-q", "-m", "suite")
    return pytester


def run(project, *args):
    return project.runpytest_inprocess("-p", "no:cacheprovider", "-rsxX", *args)


def commit(project, message="ledger"):
    _git(project.path, "add", "results/claims.csv")
    _git(project.path, "commit", "-q", "-m", message)


def set_status(project, claim: str, status: str) -> None:
    path = project.path / "results" / "claims.csv"
    table = read_ledger(path)
    table.loc[table.claim == claim, "status"] = status
    path.write_text(table.to_csv(index=False, lineterminator="\n"))


def test_new_claims_show_their_verdicts_and_are_reported_as_new(project):
    result = run(project)
    result.assert_outcomes(passed=3, xfailed=3, skipped=1)
    result.stdout.fnmatch_lines_random(
        [
            "*XFAIL*test_refuted*new claim (no committed row), refuted: share = 0*",
            "*XFAIL*test_undecided*undecided (the CI reaches*past the threshold)*",
            "*SKIPPED*new claim (no committed row), inconclusive: no circuit*",
            "*new claims (7; no committed row):*",
        ]
    )
    table = read_ledger(project.path / "results" / "claims.csv").set_index("claim")
    assert table.status.to_dict() == {
        "test_supported": "supported",
        "test_refuted": "refuted",
        "test_undecided": "undecided",
        "test_inconclusive": "inconclusive",
        "test_family[1.0]": "supported",
        "test_family[0.1]": "refuted",
        "test_family[5.0]": "supported",
    }
    assert table.loc["test_undecided", "past_threshold"] > 0
    inconclusive = table.loc["test_inconclusive"]  # measured anyway: the figure is in the note only
    assert inconclusive.value != inconclusive.value and inconclusive.ci_level == ""
    assert inconclusive.note == "no figure: measured anyway 0.9; "


def test_a_changed_committed_verdict_fails_until_the_ledger_says_so_again(project):
    run(project)
    commit(project)
    run(project).assert_outcomes(passed=3, xfailed=3, skipped=1)  # every verdict as committed

    set_status(project, "test_supported", "refuted")  # an edit, not yet committed
    edited = run(project)
    edited.assert_outcomes(passed=2, failed=1, xfailed=3, skipped=1)
    edited.stdout.fnmatch_lines(["*verdict changed: *claims.csv as the run found it says refuted, this run*"])

    set_status(project, "test_supported", "refuted")
    commit(project, "a verdict the data do not show")
    failed = run(project)  # the run rewrote the file; the committed row still disagrees
    failed.assert_outcomes(passed=2, failed=1, xfailed=3, skipped=1)
    failed.stdout.fnmatch_lines(["*verdict changed: the committed results/claims.csv says refuted*"])
    assert run(project).ret == 1  # and again: only a commit settles it

    commit(project, "restore the measured verdict")
    run(project).assert_outcomes(passed=3, xfailed=3, skipped=1)


def test_a_confirmatory_family_is_decided_on_simultaneous_cis_with_holm_p(project):
    run(project, "-k", "family and 1.0")  # one member selected: the family still has three
    table = read_ledger(project.path / "results" / "claims.csv").set_index("claim")
    one = table.loc["test_family[1.0]"]
    assert (one.role, one.family, one.family_size, one.ci_level) == ("confirmatory", "toys", 3, "98.33%")
    assert one.adjusted_p == pytest.approx(
        min(1.0, 3 * one.p), rel=1e-3
    )  # 4 digits each  # the others count as p = 1
    run(project)
    table = read_ledger(project.path / "results" / "claims.csv").set_index("claim")
    family = table.loc[[f"test_family[{s}]" for s in ("1.0", "0.1", "5.0")]]
    assert (family.family_size == 3).all() and (family.p <= family.adjusted_p).all()
    supported = table.loc["test_supported"]
    assert (supported.role, supported.family, supported.ci_level) == ("exploratory", "", "95%")
    assert table.loc["test_supported", "adjusted_p"] != table.loc["test_supported", "adjusted_p"]  # NaN


def test_a_bfloat16_run_adds_rows_beside_the_float32_ones(project):
    run(project)
    commit(project)
    before = read_ledger(project.path / "results" / "claims.csv")
    run(project, "--dtype", "bfloat16", "-k", "supported")
    after = read_ledger(project.path / "results" / "claims.csv")
    assert len(after) == len(before) + 1
    assert after.query("claim == 'test_supported'").settings.tolist() == ["", "dtype=bfloat16"]
    assert diff_ledgers(before, after).added == [
        "claims::test_supported on toy:a (dtype=bfloat16): supported"
    ]
    environments = (project.path / "results" / "environments.json").read_text()
    assert (
        '"dtype": "bfloat16"' in environments and '"torch":' in environments and '"threads":' in environments
    )


def test_bad_claims_are_refused_with_the_fix(project):
    project.makepyfile(
        test_bad=(
            "import pytest\n"
            "from attnclaims.stats import CI, bootstrap_ci\n"
            "def test_bare_number(claim):\n"
            "    claim(0.7, '>=', 0.5, why='w', model='toy:a', metric='m')\n"
            "def test_no_reason(claim):\n"
            "    claim(bootstrap_ci([1, 2]), '>=', 0.5, why='', model='toy:a', metric='m')\n"
            "@pytest.mark.confirmatory\n"
            "def test_hand_built(claim):\n"
            "    claim(CI(1.0, 0.8, 1.2, 8), '>=', 0.5, why='w', model='toy:a', metric='m')\n"
        )
    )
    result = run(project, "test_bad.py")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines_random(
        [
            "*bare number: pass its CI (attnclaims.stats), or exact=True*",
            "*say why the threshold is where it is*",
            "*a confirmatory claim needs a CI that can be recomputed*",
        ]
    )


def test_claims_under_two_xdist_workers_lose_no_rows(project, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # xdist and the suite only: quick workers
    result = project.runpytest_subprocess(
        "-n", "2", "-p", "xdist", "-p", "attnclaims.fixtures.plugin", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3, xfailed=3, skipped=1)
    result.stdout.fnmatch_lines(["*claims ledger*", "*refuted*claims::test_refuted*"])
    table = read_ledger(project.path / "results" / "claims.csv")
    assert len(table) == 7 and table.adjusted_p.notna().sum() == 3  # Holm, once the workers are done
    assert len(Ledger(project.path / "results", run_id="x").table()) == 7


UNMEASURED = """
import pytest
from attnclaims.declaration import Hypothesis
from attnclaims.stats import bootstrap_ci

HYPOTHESIS = Hypothesis("Is anything measured?")
UNIT = "replicates"


@pytest.mark.confirmatory
def test_no_circuit_no_figure(claim):
    assert claim(None, ">=", 0.5, why="w", model="toy:a", metric="m", precondition=(False, "no circuit"))


@pytest.mark.confirmatory
def test_measured(claim):
    assert claim(bootstrap_ci([1.0, 1.1, 0.9, 1.2]), ">=", 0.5, why="w", model="toy:a", metric="m")


def test_measured_anyway(claim):
    ci = bootstrap_ci([1.0, 1.1, 0.9, 1.2])
    premise = (False, "not learned")
    assert claim(ci, ">=", 0.5, why="w", model="toy:a", metric="m", precondition=premise, note="n")


def test_no_figure_without_a_failed_premise(claim):
    with pytest.raises(TypeError, match="only for a claim whose precondition failed"):
        claim(None, ">=", 0.5, why="w", model="toy:a", metric="m")
"""


def test_a_claim_whose_premise_failed_records_no_figure(pytester, monkeypatch):
    """No placeholder: the row has no value, CI or level, the test is skipped, and the report and
    the diff read it without inventing one."""
    monkeypatch.delenv("ATTNCLAIMS_RUN_ID", raising=False)
    pytester.makepyfile(test_unmeasured=UNMEASURED)
    result = run(pytester)
    result.assert_outcomes(passed=2, skipped=2)
    table = read_ledger(pytester.path / "results" / "claims.csv").set_index("claim")
    for name in ("test_no_circuit_no_figure", "test_measured_anyway"):
        row = table.loc[name]
        assert row.status == "inconclusive" and row.value != row.value and row.ci_level == "" and row.n == 0
    assert table.loc["test_measured_anyway", "note"] == "no figure: measured anyway 1.05 [0.727, 1.27]; n"
    assert table.loc["test_measured", "status"] == "supported"  # Holm counts the unmeasured one as p = 1
    assert diff_ledgers(table.reset_index(), table.reset_index()).lines() == ["no claim moved"]
    text = write_report(pytester.path / "results", pytester.path).read_text()
    assert "inconclusive (no figure)" in text and "nan" not in text


TOY_FAMILIES = """
import pytest
from attnclaims.stats import bootstrap_ci

UNIT = "pairs"


@pytest.fixture(params=["toy:a", "toy:b"])
def toy_name(request):
    return request.param


@pytest.mark.confirmatory
@pytest.mark.parametrize("arm", ["x", "y"])
def test_arm(claim, toy_name, arm):
    assert claim(bootstrap_ci([1.0, 1.1, 1.2, 0.9]), ">=", 0.5, why="a reason", metric="m")
"""


def test_each_toy_name_is_a_family_and_a_column_of_its_own(pytester, monkeypatch):
    """A test parametrized by `toy_name` records that toy as its model, and its confirmatory claims
    form one family per toy (m = 2 here, not 4), as real models' do."""
    monkeypatch.delenv("ATTNCLAIMS_RUN_ID", raising=False)
    pytester.makepyfile(test_toys=TOY_FAMILIES)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=4)
    table = read_ledger(pytester.path / "results" / "claims.csv")
    assert sorted(table.claim.unique()) == ["test_arm[x]", "test_arm[y]"]
    assert sorted(table.model) == ["toy:a", "toy:a", "toy:b", "toy:b"]
    assert (table.family == table.model).all() and (table.family_size == 2).all()


STOPPED = """
import os
import signal

import pytest
from attnclaims.stats import bootstrap_ci

WHY = "a reason"


@pytest.mark.confirmatory
@pytest.mark.parametrize("shift", [1.0, 2.0])
def test_a_family(claim, shift):
    values = [shift + 0.1 * (i % 5) for i in range(12)]
    assert claim(bootstrap_ci(values), ">=", 0.5, why=WHY, model="toy:a", metric="m")


def test_z_the_run_is_killed(claim):
    if os.environ.get("STOP_HERE"):
        os.kill(os.getpid(), signal.SIGKILL)  # no session end, no teardown: as a stopped `make research`
"""


def test_a_stopped_run_keeps_every_adjusted_p(project):
    """A family complete before the stop has its Holm written; a family stopped part-way keeps the adjusted
    p its rows had until it is measured again."""
    (project.path / "test_claims.py").unlink()
    project.makepyfile(test_stopped=STOPPED)

    def stopped(*args, stop=True):
        env = {**os.environ, "STOP_HERE": "1" if stop else ""}
        env.pop("ATTNCLAIMS_RUN_ID", None)
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
        return subprocess.run(command, cwd=project.path, env=env, capture_output=True, text=True)

    assert stopped().returncode == -signal.SIGKILL
    table = read_ledger(project.path / "results" / "claims.csv").set_index("claim")
    assert (
        table.adjusted_p.notna().sum() == 2 and (table.adjusted_p >= table.p).all()
    )  # written before the stop
    before = table.adjusted_p.copy()
    # one member of two, then the stop: the family is incomplete
    assert stopped("-k", "1.0 or killed").returncode == -signal.SIGKILL
    after = read_ledger(project.path / "results" / "claims.csv").set_index("claim")
    assert after.adjusted_p.to_dict() == before.to_dict()


PREMISES = """
import pytest
from attnclaims.claims import Premise
from attnclaims.stats import bootstrap_ci, bootstrap_ratio_ci

UNIT = "groups"
SENSITIVITY = [0.3, 0.5, 0.1, 0.4, 0.2, -0.1, 0.35, 0.05]  # > 0 at 95% ([0.03, 0.38]), not at 98.3%
EFFECT = [1.0, 1.1, 0.9, 1.2]


def premise():
    return Premise(bootstrap_ci(SENSITIVITY), ">", 0.0, "the sensitivity is there")


@pytest.mark.confirmatory
@pytest.mark.parametrize("arm", ["a", "b"])
def test_guarded(claim, arm):
    assert claim(bootstrap_ci(EFFECT), ">=", 0.5, why="w", model="toy:a", metric="m", precondition=premise())


def share():  # its denominator: a sensitivity whose t interval is > 0 at 95%, not at 98.3%
    den = [v - 0.02 for v in SENSITIVITY]
    return bootstrap_ratio_ci([0.5 * v + 0.01 * (i % 3) for i, v in enumerate(den)], den)


@pytest.mark.confirmatory
def test_share(claim):
    assert claim(share(), ">=", 0.25, why="w", model="toy:a", metric="m")


def test_share_exploratory(claim):
    assert claim(share(), ">=", 0.25, why="w", model="toy:a", metric="m")


def test_guarded_exploratory(claim):
    assert claim(bootstrap_ci(EFFECT), ">=", 0.5, why="w", model="toy:a", metric="m", precondition=premise())
"""


def test_a_premise_is_decided_at_the_level_of_the_claim_it_guards(pytester, monkeypatch):
    """The same premise is met for an exploratory claim (95%) and fails for a family of three (98.33%):
    a claim never stands on a premise shown at a lower level than its own; a share's denominator is
    such a premise, carried by its CI."""
    monkeypatch.delenv("ATTNCLAIMS_RUN_ID", raising=False)
    pytester.makepyfile(test_premises=PREMISES)
    run(pytester).assert_outcomes(passed=2, skipped=3)
    table = read_ledger(pytester.path / "results" / "claims.csv").set_index("claim")
    assert table.loc["test_guarded_exploratory", "status"] == "supported"
    met = table.loc["test_guarded_exploratory", "precondition"]
    assert met == "met: the sensitivity is there: 0.225 [0.0306, 0.375] at 95% lies above 0"
    for arm in "ab":
        row = table.loc[f"test_guarded[{arm}]"]
        assert row.status == "inconclusive" and "at 98.33% does not lie above 0" in row.precondition
    share = table.loc["test_share"]
    assert share.status == "inconclusive" and share.precondition.startswith("failed: the share's denominator")
    share = table.loc["test_share_exploratory"]
    assert share.status == "supported" and share.precondition.startswith("met: the share's denominator")


def test_a_premise_refuses_what_it_cannot_decide():
    from attnclaims.claims import Premise

    with pytest.raises(ValueError, match="'>', '<' or '!='"):
        Premise(object(), ">=", 0.0, "x")
    with pytest.raises(TypeError, match="recomputed at a level"):
        Premise(0.3, ">", 0.0, "x")
