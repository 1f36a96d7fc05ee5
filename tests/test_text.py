"""The English paragraphs (prompts/text.py): enough of them to be a unit, and no repeats of their own."""

from __future__ import annotations

import re

from attnclaims.prompts.text import PARAGRAPHS


def test_there_are_enough_paragraphs_for_a_ci_over_them():
    assert len(PARAGRAPHS) >= 20 and len(set(PARAGRAPHS)) == len(PARAGRAPHS)
    assert all(p.isascii() and 40 <= len(p.split()) <= 70 for p in PARAGRAPHS)


def test_no_four_word_sequence_occurs_twice():
    seen: set[tuple[str, ...]] = set()
    for paragraph in PARAGRAPHS:
        words = re.sub(r"[^a-z' ]", " ", paragraph.lower()).split()
        grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
        assert not seen & set(grams) and len(set(grams)) == len(grams), paragraph[:40]
        seen |= set(grams)
