"""Progress lines: rate-limited under a sink, through tqdm without one, and visible under pytest's capture."""

from __future__ import annotations

from pathlib import Path

from attnclaims.progress import RATE_S, Progress, note, progress, using_sink

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_start_line_at_most_one_line_per_interval_and_an_end_line():
    lines, clock = [], Clock()
    with using_sink(lines.append):
        bar = Progress(range(100), "training toy", clock=clock)
        for step in bar:
            clock.now += RATE_S / 10  # 10 steps per interval
            bar.set_postfix(loss=f"{1 / (step + 1):.2f}")
    assert lines[0] == "training toy: started (100 steps)"
    assert len(lines) == 2 + 10
    assert lines[1] == "training toy: 10/100 (10%), 5 s elapsed, ~45 s left, loss=0.10"
    assert lines[-1] == "training toy: done after 100 steps in 50.0 s, loss=0.01"


def test_a_loop_left_early_says_so_and_a_disabled_one_says_nothing():
    lines = []
    with using_sink(lines.append):
        for step in progress(iter(range(10)), "sweep"):
            if step == 3:
                break
        assert list(progress(range(3), "quiet", disable=True)) == [0, 1, 2]
    assert lines[0] == "sweep: started" and lines[-1].startswith("sweep: stopped after 3 steps")
    assert len(lines) == 2


def test_a_quiet_task_speaks_only_when_it_lasts():
    lines, clock = [], Clock()
    with using_sink(lines.append):
        for _ in Progress(range(3), "short sweep", quiet=True, clock=clock):
            clock.now += RATE_S / 10
        for _ in Progress(range(20), "long sweep", quiet=True, clock=clock):
            clock.now += RATE_S / 4
    assert lines[0] == "long sweep: 4/20 (20%), 5 s elapsed, ~20 s left"
    assert lines[-1] == "long sweep: done after 20 steps in 25.0 s"
    assert not any(line.startswith("short sweep") for line in lines)


def test_without_a_sink_it_is_tqdm(capsys):
    with using_sink(None):
        assert list(progress(range(5), "plain")) == list(range(5))
        note("a note")
    assert "a note" in capsys.readouterr().err


def test_under_pytest_the_lines_reach_the_terminal_through_capture(pytester, monkeypatch):
    pytester.makepyfile(
        test_loud=(
            "from attnclaims.progress import note, progress\n"
            "def test_counts():\n"
            "    note('de-quantising the model')\n"
            "    assert sum(progress(range(4), 'counting')) == 6\n"
        )
    )
    run = pytester.runpytest("-p", "no:cacheprovider")  # output captured (the default)
    run.assert_outcomes(passed=1)
    out = run.stdout.str()
    assert "[progress] de-quantising the model\n[progress] counting: started (4 steps)\n" in out
    assert "[progress] counting: done after 4 steps in " in out
    assert "Captured" not in run.stdout.str()
