"""Speed ratios: each benchmark times its baseline in the same process and records the ratio here;
the end of the run prints them as one table (`make bench`)."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass

import pytest
import torch


@dataclass(frozen=True)
class Ratio:
    name: str
    ours_s: float
    baseline: str
    baseline_s: float
    max_rel_diff: float  # largest |ours - baseline| / scale over the results both computed

    @property
    def speedup(self) -> float:
        return self.baseline_s / self.ours_s


RATIOS: list[Ratio] = []


def seconds(fn) -> tuple[float, object]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def rel_diff(ours: torch.Tensor, baseline: torch.Tensor) -> float:
    scale = max(1.0, float(baseline.abs().nan_to_num().max()))
    return float((ours - baseline).abs().nan_to_num().max()) / scale


@pytest.fixture
def record_ratio(benchmark):
    def record(name: str, ours_s: float, baseline: str, baseline_s: float, max_rel_diff: float) -> Ratio:
        ratio = Ratio(name, ours_s, baseline, baseline_s, max_rel_diff)
        RATIOS.append(ratio)
        benchmark.extra_info.update(
            {"baseline": baseline, "baseline_s": baseline_s, "speedup": ratio.speedup}
        )
        return ratio

    return record


def pytest_terminal_summary(terminalreporter):
    if not RATIOS:
        return
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    terminalreporter.section(f"speed ratios ({machine})")
    terminalreporter.write_line(
        f"{'sweep':<48} {'ours (s)':>9} {'baseline':<40} {'base (s)':>9} {'ratio':>7} {'max rel diff':>12}"
    )
    for r in RATIOS:
        terminalreporter.write_line(
            f"{r.name:<48} {r.ours_s:>9.2f} {r.baseline:<40} {r.baseline_s:>9.2f} "
            f"{r.speedup:>6.1f}x {r.max_rel_diff:>12.1e}"
        )
