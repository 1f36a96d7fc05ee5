"""The real-model induction study's pieces (lib/studies/induction_real.py) on a toy: the natural-text
ablation takes its reference from other paragraphs, and keeps the windows' order."""

from __future__ import annotations

import torch

from attnclaims.studies.induction_real import ablations, cross_paragraph_ablations
from attnclaims.tasks import repeat_batch

S = 6


def test_cross_paragraph_ablation_references_the_other_paragraphs(toy):
    tokens = repeat_batch(torch.Generator().manual_seed(0), 8, S, toy.cfg.d_vocab - 2)
    paragraph = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5])
    top, draws = [(1, 0)], [[(1, 1)], [(0, 2)]]
    merged = cross_paragraph_ablations(toy, tokens, paragraph, top, draws, S)
    even = paragraph % 2 == 0
    for rows in (even, ~even):
        alone = ablations(toy, tokens[rows], tokens[~rows], top, draws, S, ("mean",), sufficiency=False)
        for part, expected in zip(merged, alone):
            assert torch.allclose(part.top["mean"][rows], expected.top["mean"])
            assert torch.allclose(part.random["mean"][:, rows], expected.random["mean"])
            assert torch.allclose(part.clean[rows], expected.clean)
    own = ablations(toy, tokens, tokens, top, draws, S, ("mean",), sufficiency=False)
    assert not torch.allclose(own.repeated.top["mean"], merged.repeated.top["mean"])  # the reference matters
