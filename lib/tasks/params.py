"""The parameters a toy task reads: the part of a `ToyConfig` (lib/toy.py) that is the task's.

params = config.task_params  # TaskParams(n_content=64, seq_len=16)
TASKS[config.task].vocab(params)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskParams:
    n_content: int  # content words in the vocabulary (per kind, for the entailment tasks)
    seq_len: int  # length S of the repeated random sequence (`repeat`; the entailment tasks ignore it)
