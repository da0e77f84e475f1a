"""A run with max_trials lets go at once of a paused trial it can never promote (Core.limit_results):
its objective's steps() end then, not at the study's end, and no decision changes."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import aio_ashb as aa
from aio_ashb._core import Core
from tests.helpers import loss, new_study
from tests.virtual_time import run_virtual


def worse_each_time(log: list[str]) -> Any:
    """An objective whose trials each do worse than the ones before, a step a second, logging
    when each call starts and ends."""

    async def objective(trial: aa.Trial) -> None:
        log.append(f"start {trial.number}")
        try:
            async for step in trial.steps():
                await anyio.sleep(1.0)
                await trial.report(trial.number + 1 / step)
        finally:
            log.append(f"end {trial.number}")

    return objective


def run_logged(log: list[str], **run: Any) -> aa.Study:
    """A new study running worse_each_time(log) on virtual time, with ``run``'s options."""

    async def main() -> aa.Study:
        study = await new_study()
        await study.run(worse_each_time(log), **run)
        return study

    return run_virtual(main)


def test_a_trial_the_run_can_never_promote_ends_at_its_pause() -> None:
    """Nine trials, eta 3, each worse than the ones before: at most floor(9 / 3) = 3 of the first
    rung are ever promoted, so trials 3 to 8, each with three better results when it pauses,
    are let go there (before the next trial starts), and trials 0 to 2 wait to be promoted."""
    log: list[str] = []
    study = run_logged(log, max_trials=9, concurrency=1)
    for n in range(3, 8):
        assert log.index(f"end {n}") < log.index(f"start {n + 1}"), log
    assert log.index("end 8") < log.index("end 0")
    # Trials 0 to 2 waited (promoted, then paused again) until the study ended.
    assert log.index("end 1") > log.index("end 8")
    assert log.index("end 2") > log.index("end 8")
    states = {t.number: (t.state, t.step) for t in study.trials}
    assert all(states[n] == (aa.TrialState.STOPPED, 1) for n in range(3, 9)), states
    assert states[0] == (aa.TrialState.STOPPED, 9)  # alone in the rung of 9: never promoted


def test_without_max_trials_no_paused_trial_is_let_go_before_the_end() -> None:
    """With a timeout alone, the run cannot know how full a rung will get: every paused trial
    keeps its call until the study's end."""
    log: list[str] = []
    study = run_logged(log, timeout=30.0, concurrency=1)
    assert len(study.trials) > 9
    stopped = [t.number for t in study.trials if t.state is aa.TrialState.STOPPED]
    # The paused ones' calls all ended at the end of the run, after every other call.
    ends = [entry for entry in log if entry.startswith("end")]
    assert sorted(ends[-len(stopped) :]) == sorted(f"end {n}" for n in stopped), log


def _table(study: aa.Study) -> list[tuple[Any, ...]]:
    return [(t.number, t.state, t.step, t.value, t.rung_values, t.params) for t in study.trials]


@pytest.mark.parametrize("brackets", [1, 3])
def test_letting_go_changes_no_decision(monkeypatch: pytest.MonkeyPatch, brackets: int) -> None:
    """The same study, with and without the run's limit on rungs: the same trials, states,
    steps, values and rungs (each sleeps its own time, so the order does not hinge on ties)."""

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(0.5 + trial.params["x"] + trial.number * 1e-6)
            await trial.report(loss(trial.params, step))

    async def main() -> aa.Study:
        study = await new_study(scheduler=aa.ASHA(1, 27, 3, brackets=brackets))
        await study.run(objective, max_trials=300, concurrency=6)
        return study

    let_go = run_virtual(main)
    monkeypatch.setattr(Core, "limit_results", lambda self, at_most: None)
    kept = run_virtual(main)
    assert _table(let_go) == _table(kept)
    assert len(let_go.trials) == 300


@pytest.mark.parametrize("second", [5, 40, 120])  # below, near and above the first run's trials
@pytest.mark.parametrize("seed", range(4))
def test_a_resumed_study_calls_each_trial_at_most_once_per_run(seed: int, second: int) -> None:
    """A first run cancelled midway leaves trials paused; the second run's limit counts them
    (max_trials below the study's trials too). Without max_paused a run calls a trial again only
    if it let its call go and then promoted it, which a trial let go must never be."""
    calls: list[list[int]] = [[], []]

    def objective(run: int) -> Any:
        async def call(trial: aa.Trial) -> None:
            calls[run].append(trial.number)
            async for step in trial.steps():
                await anyio.sleep(0.2 + trial.params["x"])
                await trial.report(loss(trial.params, step))

        return call

    async def main() -> aa.Study:
        study = await new_study(
            scheduler=aa.ASHA(1, 9, 3, brackets=1 + seed % 2), sampler=aa.RandomSampler(seed)
        )
        with anyio.move_on_after(6.0 + seed):
            await study.run(objective(0), max_trials=60, concurrency=5)
        await study.run(objective(1), max_trials=second, concurrency=5)
        return study

    study = run_virtual(main)
    again = [n for n in set(calls[1]) if calls[1].count(n) > 1]
    assert not again, again
    assert len(calls[0]) > 5 and calls[1]  # (both runs did something)
    assert len(study.trials) == max(second, len(set(calls[0])))


def test_a_trial_pushed_out_by_one_that_jumps_to_the_end_is_let_go_then() -> None:
    """max_trials 6, eta 3: two of the first rung can ever be promoted. Trial 2 reports once, at
    the last milestone, better than trials 0 and 1: trial 1 is let go when trial 2 completes,
    not at the next pause (the other trials report only after 100 s)."""
    ended: dict[int, float] = {}

    async def objective(trial: aa.Trial) -> None:
        n = trial.number
        try:
            if n == 2:
                await anyio.sleep(3.0)
                await trial.report(1.0, step=27)
                return
            await anyio.sleep(n + 1.0 if n < 2 else 100.0)
            async for step in trial.steps():
                await trial.report(5.0 + n + 1 / step)
        finally:
            ended[n] = anyio.current_time()

    async def main() -> aa.Study:
        study = await new_study()
        await study.run(objective, max_trials=6, concurrency=3)
        return study

    study = run_virtual(main)
    assert study.trials[2].state is aa.TrialState.COMPLETE
    assert ended[1] < 50.0 < min(ended[n] for n in (0, 3, 4, 5)), ended
