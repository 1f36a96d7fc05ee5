"""Progress a person sees: long steps (de-quantising, toy training, sweeps) say what they are doing.

    for step in (bar := progress(range(steps), "training toy repeat")):
        ...
        bar.set_postfix(loss=f"{loss:.3f}")
    note("de-quantising smollm2-135m to float32 (first use only)")

Outside pytest both go through tqdm (a live bar; `tqdm.write` for notes). Under pytest, output is
captured, so fixtures/progress.py installs a sink that writes whole lines through pytest's terminal
reporter instead: a start line, at most one line per RATE_S seconds per task, and an end line, e.g.
    training toy repeat: 400/1001 (40%), 12 s elapsed, ~18 s left, loss=0.512
so a cold run is never silent for long and never floods the terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

RATE_S = 5.0  # at most one progress line per task this often, under a sink

Sink = Callable[[str], None]
_sink: Sink | None = None


def set_sink(sink: Sink | None) -> Sink | None:
    """Send progress lines to `sink` (None: back to tqdm); returns the sink it replaces."""
    global _sink
    previous, _sink = _sink, sink
    return previous


@contextmanager
def using_sink(sink: Sink | None):
    previous = set_sink(sink)
    try:
        yield
    finally:
        set_sink(previous)


def note(message: str) -> None:
    """Tell the person running this something worth knowing now (one line, not rate-limited)."""
    if _sink is None:
        tqdm.write(message, file=sys.stderr)
    else:
        _sink(message)


def progress(
    iterable: Iterable, desc: str, total: int | None = None, *, disable: bool = False, quiet: bool = False
) -> Progress:
    """Iterate over `iterable`, reporting progress as `desc` (see the module docstring).
    `total` defaults to len(iterable); `disable=True` iterates silently; `quiet=True` reports only
    a task that lasts longer than RATE_S (for steps that are usually short, such as one sweep)."""
    return Progress(iterable, desc, total, disable=disable, quiet=quiet)


class Progress:
    """An iterable reporting its progress; `set_postfix(loss=...)` adds figures to its lines."""

    def __init__(
        self,
        iterable: Iterable,
        desc: str,
        total: int | None = None,
        *,
        disable: bool = False,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.desc, self.total, self.disable, self.clock = iterable, desc, total, disable, clock
        self.quiet = quiet
        self.postfix = ""
        self._bar = None

    def set_postfix(self, **values) -> None:
        """Figures to show beside the count, e.g. set_postfix(loss="0.512")."""
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError(f"progress {self.desc!r} has no total")
        return self.total

    def __iter__(self) -> Iterator:
        sink = _sink
        if self.disable or (self.quiet and sink is None):
            yield from self.iterable
        elif sink is None:
            self._bar = tqdm(self.iterable, desc=self.desc, total=self.total, leave=False, mininterval=2.0)
            try:
                yield from self._bar
            finally:
                self._bar.close()
                self._bar = None
        else:
            yield from self._report(sink)

    def _report(self, sink: Sink) -> Iterator:
        start = last = self.clock()
        spoken = not self.quiet
        if spoken:
            sink(f"{self.desc}: started" + (f" ({self.total} steps)" if self.total is not None else ""))
        done, finished = 0, False
        try:
            for item in self.iterable:
                yield item
                done += 1
                now = self.clock()
                if now - last >= RATE_S:
                    last, spoken = now, True
                    sink(self._line(done, now - start))
            finished = True
        finally:
            if spoken:
                elapsed = self.clock() - start
                ending = "done" if finished else "stopped"
                extra = f", {self.postfix}" if self.postfix else ""
                sink(f"{self.desc}: {ending} after {done} steps in {elapsed:.1f} s{extra}")

    def _line(self, done: int, elapsed: float) -> str:
        line = f"{self.desc}: {done}"
        if self.total:
            line += f"/{self.total} ({100 * done / self.total:.0f}%)"
        line += f", {elapsed:.0f} s elapsed"
        if self.total and done:
            line += f", ~{elapsed * (self.total - done) / done:.0f} s left"
        return line + (f", {self.postfix}" if self.postfix else "")
