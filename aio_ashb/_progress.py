"""Live progress of ``study.run(..., progress=True)``: a table redrawn in place on a terminal
(with ``rich``, if installed), plain periodic lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any

import anyio

from aio_ashb._core import TrialState
from aio_ashb._report import StudyStatus

__all__ = ["Progress", "status_line"]

_STATES = (
    TrialState.RUNNING,
    TrialState.PAUSED,
    TrialState.STOPPED,
    TrialState.COMPLETE,
    TrialState.FAILED,
    TrialState.INTERRUPTED,
)


def _best_text(st: StudyStatus) -> str:
    if st.best is None:
        return "-"
    b = st.best
    return f"{b.rung_values[b.resource]:.5g} (trial {b.number} at {b.resource})"


def _rungs_text(st: StudyStatus) -> str:
    parts: dict[int, list[str]] = {}
    for r in st.rungs:
        parts.setdefault(r.bracket, []).append(f"{r.milestone}:{r.results}")
    many = len(parts) > 1
    return "  ".join(f"b{b}[{' '.join(p)}]" if many else " ".join(p) for b, p in parts.items())


def status_line(st: StudyStatus, max_trials: int | None = None) -> str:
    """One line: what the plain display prints, and the CLI's ``status --format line``."""
    elapsed = st.elapsed
    total = f"/{max_trials}" if max_trials is not None else ""
    states = ", ".join(f"{s.value} {st.states.get(s, 0)}" for s in _STATES if st.states.get(s, 0))
    clock = f"[{elapsed:7.1f}s] " if elapsed is not None else ""
    rate = f" | {st.reports / elapsed:,.0f} reports/s" if elapsed else ""
    return (
        f"{clock}trials {st.trials}{total}: {states or 'none yet'} | rungs {_rungs_text(st)} "
        f"| best {_best_text(st)}{rate}"
    )


class Progress:
    """Renders a running study's status (``status()``, called for each frame) until cancelled.
    ``live`` (default: the stream is a terminal and rich is installed) redraws a table;
    otherwise a line every ``interval`` seconds."""

    def __init__(
        self,
        status: Callable[[], StudyStatus],
        *,
        max_trials: int | None = None,
        stream: IO[str] | None = None,
        live: bool | None = None,
        interval: float | None = None,
    ) -> None:
        self.status = status  # a study's status() (or anything giving one)
        self.max_trials = max_trials
        self.stream = stream if stream is not None else sys.stderr
        if live is None:
            live = self.stream.isatty() and _has_rich()
        self.live = live
        self.interval = interval if interval is not None else (0.5 if live else 5.0)

    def table(self, st: StudyStatus) -> Any:
        from rich.table import Table

        t = Table(title=f"aio_ashb study {st.name!r}", title_justify="left", show_header=False)
        t.add_column(style="bold")
        t.add_column()
        total = f" of {self.max_trials}" if self.max_trials is not None else ""
        t.add_row("trials", f"{st.trials}{total}")
        t.add_row("states", "  ".join(f"{s.value} {st.states.get(s, 0)}" for s in _STATES))
        brackets: dict[int, list[str]] = {}
        for r in st.rungs:
            brackets.setdefault(r.bracket, []).append(
                f"{r.milestone}: {r.results}" + (f" ({r.waiting} waiting)" if r.waiting else "")
            )
        for b, rungs in brackets.items():
            t.add_row(f"rungs (bracket {b})", "  ".join(rungs))
        t.add_row("best", _best_text(st))
        elapsed = st.elapsed or 0.0
        t.add_row("elapsed", f"{elapsed:.1f} s")
        t.add_row("throughput", f"{st.reports / elapsed:,.0f} reports/s" if elapsed > 0 else "-")
        return t

    def open(self) -> None:
        """Show the first frame (call before the run starts)."""
        self._live: Any = None
        if self.live:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream)
            self._live = Live(self.table(self.status()), console=console, auto_refresh=False)
            self._live.start()
        else:
            self._print_line()

    async def run(self) -> None:
        """Redraw every ``interval`` seconds until cancelled."""
        next_frame = anyio.current_time()
        while True:
            next_frame += self.interval
            await anyio.sleep(max(0.0, next_frame - anyio.current_time()))
            self._draw()

    def close(self) -> None:
        """Draw the final frame, once the run has settled its trials (stopped, interrupted)."""
        self._draw()
        if self._live is not None:
            self._live.stop()

    def _draw(self) -> None:
        if self._live is not None:
            self._live.update(self.table(self.status()), refresh=True)
        else:
            self._print_line()

    def _print_line(self) -> None:
        print(status_line(self.status(), self.max_trials), file=self.stream, flush=True)


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True
