"""The plugin path, as a researcher uses it: examples/first-claim copied to a folder outside the
checkout, run with the installed suite, gets its own ledger row, report and diff; its own `lib` is
the one it imports; the suite's own results/ are left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attnclaims.ledger import read_ledger

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "first-claim"
CLAIM = "test_an_induction_head_beats_its_layer_on_heldout_sequences"

pytestmark = pytest.mark.slow  # a subprocess loads torch and smollm2-135m: ~20 s


def _run(args: list[str], where: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ATTNCLAIMS_RUN"))}
    return subprocess.run(
        args, cwd=where, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def project(tmp_path) -> Path:
    where = tmp_path / "my-project"
    ignore = shutil.ignore_patterns(
        "history.jsonl", "REPORT.md", "figures", "*.tmp", ".ledger.lock", "__pycache__"
    )
    shutil.copytree(EXAMPLE, where, ignore=ignore)
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "mine"],
    ):
        subprocess.run(["git", *args], cwd=where, check=True, capture_output=True)
    return where


def test_a_project_of_its_own_gets_its_ledger_row_report_and_diff(project):
    own = {name: (REPO / "results" / name).read_bytes() for name in ("claims.csv", "REPORT.md")}
    imported = _run([sys.executable, "-c", "import lib, attnclaims; print(lib.__file__)"], project)
    assert Path(imported.stdout.strip()).resolve() == (project / "lib" / "__init__.py").resolve()

    run = _run([sys.executable, "-m", "pytest", "--model", "smollm2-135m", "-p", "no:cacheprovider"], project)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout and f"claims ledger ({project / 'results' / 'claims.csv'})" in run.stdout
    row = read_ledger(project / "results" / "claims.csv").set_index("claim").loc[CLAIM]
    assert (row.model, row.status) == ("smollm2-135m", "supported")  # as the example's committed ledger says

    report = _run([sys.executable, "-m", "attnclaims", "report"], project)
    assert report.returncode == 0, report.stderr
    assert CLAIM in (project / "results" / "REPORT.md").read_text()
    diff = _run([sys.executable, "-m", "attnclaims", "diff", "HEAD", "results/claims.csv"], project)
    assert (diff.returncode, diff.stdout.strip()) == (0, "no claim moved"), diff.stdout + diff.stderr
    assert own == {name: (REPO / "results" / name).read_bytes() for name in own}


def test_a_project_option_that_clashes_names_the_suite_and_the_fix(tmp_path):
    (tmp_path / "conftest.py").write_text('def pytest_addoption(parser):\n    parser.addoption("--model")\n')
    (tmp_path / "test_a.py").write_text("def test_a():\n    pass\n")
    run = _run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], tmp_path)
    assert run.returncode == 4 and len(run.stderr.splitlines()) <= 3, run.stdout + run.stderr
    assert "the attnclaims plugin already has" in run.stderr and "pytest -p no:attnclaims" in run.stderr
    alone = _run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:attnclaims"], tmp_path)
    assert alone.returncode == 0 and "1 passed" in alone.stdout
