"""The report renders from a ledger alone: table, sections with question and protocol, forest plots."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from attnclaims import declaration
from attnclaims.claims import Claim
from attnclaims.cli import main
from attnclaims.declaration import NAME, Hypothesis
from attnclaims.ledger import Ledger
from attnclaims.report import _wrapped_name, section, slug, study_figures, write_report

HYPOTHESIS = '''"""Toy heads that copy.

Some background that is not the question.

Protocol (lib/toy.py)
1. Models (2 layers, 4 heads): trained on copying, 8 replicates.
2. Ablation: every head mean-ablated.

Measures
- loss in nats.
"""

import pytest

from attnclaims.declaration import Hypothesis

HYPOTHESIS = Hypothesis("Do toy heads copy?", figures=("copying_heatmap{model}.png",))
'''


def record(ledger, claim_id, model, value, ci=(math.nan, math.nan), **extra):
    ledger.record(
        Claim(
            hypothesis="copying",
            claim_id=claim_id,
            model=model,
            metric="loss rise (nats)",
            value=value,
            threshold=1.0,
            ci_low=ci[0],
            ci_high=ci[1],
            why="a nat",
            **{"exact": not math.isfinite(ci[0]), **extra},
        )
    )


@pytest.fixture
def results(tmp_path):
    ledger = Ledger(tmp_path / "results", run_id="r", commit="abc")
    record(ledger, "test_heads_copy[a]", "tiny-lm", 2.5, ci=(2.0, 3.0), n=8, unit="replicates")
    record(ledger, "test_heads_copy[a]", "other-lm", 0.5, ci=(0.1, 0.9), n=8, unit="replicates")
    record(ledger, "test_unlearned", "toy:copy 2L", 3.0, precondition=(False, "loss 3.6 nats > 1"))
    record(ledger, "test_wide", "tiny-lm", 1.5, ci=(0.5, 2.5), family="tiny-lm", family_size=2, p=0.2)
    (tmp_path / "hypotheses").mkdir()
    (tmp_path / "hypotheses" / "test_copying.py").write_text(HYPOTHESIS)
    (tmp_path / "results" / "copying_heatmap.png").write_bytes(b"png")
    (tmp_path / "results" / "someone_elses.png").write_bytes(b"png")  # declared by no hypothesis
    (tmp_path / "results" / "figures").mkdir()
    (tmp_path / "results" / "figures" / "gone__tiny-lm.png").write_bytes(b"stale")
    return tmp_path / "results"


def test_the_report_renders_from_the_ledger_alone(results):
    out = write_report(results, results.parent / "hypotheses")
    text = out.read_text()
    assert text.index("## Claims x models") < text.index("## copying")
    assert "| hypothesis | claim | other-lm | tiny-lm | toy model | every model |" in text
    assert (
        "| [copying](#copying) | test_heads_copy[a] | refuted 0.5 [0.1, 0.9] | supported 2.5 [2, 3] |  "
        "| does not replicate |" in text
    )
    assert "| [copying](#copying) | test_wide |  | undecided 1.5 [0.5, 2.5] |  |  |" in text  # one model
    assert "1 supported, 1 refuted, 1 undecided, 1 inconclusive (4 claims on 3 models)" in text
    assert "inconclusive 3 (exact) (toy:copy 2L)" in text
    assert (
        "**Question.** Do toy heads copy?" in text
        and "background" not in text.split("**Protocol**")[0][-200:]
    )
    assert "**Protocol** (hypotheses/test_copying.py): 1. Models; 2. Ablation." in text
    assert (
        "| test_heads_copy[a] | tiny-lm | loss rise (nats) | 2.5 | [2, 3] 95% | >= 1 (a nat) | **supported** "
        "| 8 replicates | exploratory |" in text
    )
    assert "| **undecided** (CI 0.5 past) | 1 | confirmatory, 1 of 2 |" in text
    assert "failed: loss 3.6 nats > 1" in text
    figures = sorted(p.name for p in (results / "figures").iterdir())
    assert figures == [
        "copying__other-lm.png",
        "copying__tiny-lm.png",
        "copying__toy-copy-2L.png",
    ]  # stale one gone
    assert "![copying on tiny-lm: value, CI and threshold per claim](figures/copying__tiny-lm.png)" in text
    assert "![copying_heatmap](copying_heatmap.png)" in text and "someone_elses" not in text
    write_report(results, results.parent / "hypotheses")
    assert out.read_text() == text  # no timestamp: the page changes only with the ledger


def test_bad_inputs_are_named(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path)]) == 2
    assert "no ledger at" in capsys.readouterr().err
    assert "not in the suite" in section(tmp_path / "test_missing.py").hypothesis.question
    assert slug("toy:repeat 2L attn-only") == "toy-repeat-2L-attn-only"


def test_a_hypothesis_is_read_by_import_and_one_without_a_declaration_is_named(results):
    hypotheses = results.parent / "hypotheses"
    (hypotheses / "test_copying.py").write_text(
        HYPOTHESIS.replace("HYPOTHESIS = Hypothesis", "OTHER = Hypothesis")
    )
    with pytest.raises(
        ValueError, match=r"test_copying\.py declares no HYPOTHESIS: add `HYPOTHESIS = Hypothesis"
    ):
        write_report(results, hypotheses)
    (hypotheses / "test_copying.py").write_text(HYPOTHESIS + "HYPOTHESIS = 'a question'\n")
    with pytest.raises(TypeError, match=r"test_copying\.py: HYPOTHESIS is a str"):
        write_report(results, hypotheses)
    arms = "from attnclaims.arms import CLEAN\nHYPOTHESIS = Hypothesis('Do they?', arms=(CLEAN,))\n"
    (hypotheses / "test_copying.py").write_text(HYPOTHESIS + arms)  # read afresh: the new declaration
    assert "**Arms** (1): clean." in write_report(results, hypotheses).read_text()
    with pytest.raises(TypeError, match="Arm objects"):
        Hypothesis("Do they?", arms=("clean",))


def test_study_figures_go_to_the_hypothesis_that_declares_them(tmp_path):
    for image in ("entailment_dose_smollm2.png", "induction_heads_toy.png", "induction_smollm2.png", "x.png"):
        (tmp_path / image).write_bytes(b"png")
    declared = {
        "entailment_head_switching": Hypothesis("?", figures=("entailment_dose_{model}.png",)),
        "induction_heads": Hypothesis("?", figures=("induction_heads_{model}.png",)),
        "induction_other": Hypothesis("?"),
    }
    owners = {h: [p.name for p in images] for h, images in study_figures(tmp_path, declared).items()}
    assert owners == {
        "entailment_head_switching": ["entailment_dose_smollm2.png"],
        "induction_heads": ["induction_heads_toy.png"],
        "induction_other": [],  # induction_smollm2.png and x.png: declared by none, shown by none
    }
    declared["induction_other"] = Hypothesis("?", figures=("induction_{model}.png",))
    with pytest.raises(
        ValueError, match="induction_heads_toy.png is declared by induction_heads and induction_other"
    ):
        study_figures(tmp_path, declared)


@pytest.mark.parametrize(
    "claim",
    [
        "test_repeated_half_raises_entropy_less_in_induction_heads_than_in_their_layers",
        "test_intervention_flips_the_top1_token_beyond_its_control[seed_redirect]",
        "test_x",
    ],
)
def test_plot_labels_break_between_words(claim):
    wrapped = _wrapped_name(claim)
    assert wrapped.replace("\n", "") == claim.removeprefix("test_") and wrapped.count("\n") <= 1
    assert all(
        line.endswith("_") or next_line.startswith("[")
        for line, next_line in zip(wrapped.split("\n"), wrapped.split("\n")[1:])
    )


def _suite_hypotheses() -> list[Path]:
    root = Path(__file__).parents[1]
    return [
        *sorted((root / "hypotheses").glob("test_*.py")),
        root / "examples/first-claim/hypotheses/test_induction_head.py",
    ]


def test_every_hypothesis_declares_itself_and_importing_it_loads_no_model(monkeypatch):
    """The report imports each hypothesis file for its HYPOTHESIS: that import must load no model (the
    fixtures do), and a file without one fails here."""
    from transformer_lens.model_bridge import TransformerBridge

    from attnclaims import models, toy

    def loads(*args, **kwargs):
        raise AssertionError("importing a hypothesis file loaded a model")

    for owner, name in ((models, "load_model"), (toy, "train_toy"), (toy, "ensure_trained")):
        monkeypatch.setattr(owner, name, loads)
    monkeypatch.setattr(TransformerBridge, "boot_transformers", loads)
    for path in _suite_hypotheses():
        module = declaration.load(path)
        assert isinstance(getattr(module, NAME, None), Hypothesis), f"{path} declares no {NAME}"
        assert declaration.declared(path).doc.strip(), f"{path} has no module docstring (its protocol)"


def test_every_image_the_suite_writes_is_filed_under_one_hypothesis():
    """Each image in results/ is declared by exactly one hypothesis (Hypothesis.figures)."""
    root = Path(__file__).parents[1]
    declared = {
        p.stem.removeprefix("test_"): declaration.declared(p).hypothesis
        for p in sorted((root / "hypotheses").glob("test_*.py"))
    }
    images = {p for p in (root / "results").iterdir() if p.suffix == ".png"}
    filed = {p for owned in study_figures(root / "results", declared).values() for p in owned}
    assert images - filed == set()
