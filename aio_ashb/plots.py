"""Plots of a study: learning curves coloured by the highest rung reached, best value so far
against wall-clock time, and rung occupancy.

Data and drawing are separate: :func:`collect` reads what a plot needs from a study, the
``*_series`` functions turn it into plain lists (tested without matplotlib), and :func:`draw`
renders a PNG with matplotlib, the optional ``plot`` extra (``pip install "aio_ashb[plot]"``),
imported only when drawing::

    data = await aio_ashb.plots.collect(study)
    aio_ashb.plots.draw(data, "study.png")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aio_ashb._core import Direction, Event
from aio_ashb._exceptions import ConfigError, MissingDependencyError
from aio_ashb._report import StudyStatus, TrialCurve, curves_from_events

if TYPE_CHECKING:
    from aio_ashb._study import Study

__all__ = [
    "CurveSeries",
    "PlotData",
    "best_so_far_series",
    "collect",
    "curve_series",
    "draw",
    "rung_series",
]


@dataclass(frozen=True, slots=True)
class PlotData:
    """What the plots need: the study's status, every trial's reports, its milestones."""

    status: StudyStatus
    curves: dict[int, TrialCurve]
    milestones: list[list[int]]  # per bracket


@dataclass(frozen=True, slots=True)
class CurveSeries:
    """One trial's learning curve and the highest milestone it reached (0 when none), with that
    milestone's index in the study's list of milestones (-1 when none): the same resource has
    the same level in every bracket."""

    number: int
    bracket: int
    steps: list[int]
    values: list[float]
    top_milestone: int
    level: int


async def collect(study: Study, events: Sequence[Event] | None = None) -> PlotData:
    """The study's current status and its learning curves, from ``events`` (its event log as
    read with the study's state, as the CLI does) or read now (one query)."""
    if events is None:
        events = await study.storage.read_events(study.name)
    scheduler = study.scheduler
    milestones = [list(scheduler.bracket_milestones(b)) for b in range(scheduler.n_brackets)]
    return PlotData(study.status(), curves_from_events(events), milestones)


def curve_series(data: PlotData) -> list[CurveSeries]:
    everything = sorted({m for ms in data.milestones for m in ms})
    out = []
    for c in data.curves.values():
        reached = max(c.steps, default=0)
        top = max((m for m in data.milestones[c.bracket] if m <= reached), default=0)
        level = everything.index(top) if top else -1
        out.append(CurveSeries(c.number, c.bracket, list(c.steps), list(c.values), top, level))
    return out


def best_so_far_series(data: PlotData) -> tuple[list[float], list[float]]:
    """(seconds since the first report, best value reported so far) at each improvement, and at
    the last report (so the line spans the whole run). NaN and infinite values never count."""
    sign = 1.0 if data.status.direction is Direction.MINIMIZE else -1.0
    reports = sorted((t, v) for c in data.curves.values() for t, v in zip(c.times, c.values, strict=True))
    times: list[float] = []
    best: list[float] = []
    if not reports:
        return times, best
    t0 = reports[0][0]
    current = math.inf
    for t, v in reports:
        if math.isfinite(v) and sign * v < current:
            current = sign * v
            times.append(t - t0)
            best.append(v)
    last = reports[-1][0] - t0
    if best and times[-1] < last:
        times.append(last)
        best.append(best[-1])
    return times, best


def rung_series(data: PlotData) -> list[tuple[str, int, int]]:
    """Per rung: (label, results recorded, paused trials waiting there)."""
    many = len(data.milestones) > 1
    return [
        (f"b{r.bracket} r={r.milestone}" if many else f"r={r.milestone}", r.results, r.waiting)
        for r in data.status.rungs
    ]


def draw(data: PlotData, path: str | Path) -> Path:
    """Render the three plots side by side into an image at ``path`` (PNG, or another type
    matplotlib writes, by suffix; no suffix: ``.png``); returns the path written."""
    try:
        from matplotlib import colormaps
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError('plots need matplotlib: pip install "aio_ashb[plot]"') from exc
    fig = Figure(figsize=(16, 4.8), layout="constrained")
    ax_curves, ax_best, ax_rungs = fig.subplots(1, 3)
    series = curve_series(data)
    everything = sorted({m for ms in data.milestones for m in ms})
    n_levels = max(len(everything), 1)
    cmap = colormaps["viridis"]
    # Lower milestones first, so the few trials that went far are drawn on top.
    for s in sorted(series, key=lambda s: s.level):
        level = (s.level + 1) / n_levels
        colour: Any = cmap(level)
        marker = "." if len(s.steps) == 1 else None  # stopped at the first rung: one point
        ax_curves.plot(
            s.steps, s.values, color=colour, marker=marker, linewidth=0.8, alpha=0.35 + 0.65 * level
        )
    for m in sorted({m for ms in data.milestones for m in ms}):
        ax_curves.axvline(m, color="grey", linestyle=":", linewidth=0.8)
    for k, m in enumerate(everything):
        ax_curves.plot([], [], color=cmap((k + 1) / n_levels), label=f"reached {m}")
    ax_curves.legend(fontsize="small")
    ax_curves.set_xscale("log")
    ax_curves.set_xlabel("resource (log scale; dotted: rung milestones)")
    ax_curves.set_ylabel("reported value")
    ax_curves.set_title("Learning curves, coloured by the highest milestone reached")
    times, best = best_so_far_series(data)
    if times:
        ax_best.step(times, best, where="post")
    ax_best.set_xlabel("wall-clock seconds since the first report")
    ax_best.set_ylabel(f"best value so far ({data.status.direction.value})")
    ax_best.set_title("Best value reported so far (any step)")
    rungs = rung_series(data)
    labels = [r[0] for r in rungs]
    ax_rungs.bar(labels, [r[1] for r in rungs], label="results recorded")
    ax_rungs.bar(labels, [r[2] for r in rungs], label="paused, waiting", alpha=0.8)
    if any(r[1] > 0 for r in rungs):
        ax_rungs.set_yscale("log")
    ax_rungs.set_title("Rung occupancy")
    ax_rungs.legend()
    ax_rungs.tick_params(axis="x", labelrotation=45)
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{out} is a directory; give a file name such as {out / 'study.png'}")
    if not out.suffix:
        out = out.with_suffix(".png")
    kinds = fig.canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in kinds:
        raise ConfigError(f"cannot write {out}: supported image types are {', '.join(sorted(kinds))}")
    fig.savefig(out, dpi=100)
    return out
