"""The run engine on its own: a Runner built from a journal over a fake storage, a caller over a
fake executor, a clock and RunOptions, with no Study around it (virtual time)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
import pytest

import aio_ashb as aa
from aio_ashb._core import Core, Event, Reported, TrialCreated
from aio_ashb._journal import Journal
from aio_ashb._objective import Caller, classify
from aio_ashb._run_options import RunOptions
from aio_ashb._runner import Runner
from tests.helpers import SPACE, loss
from tests.virtual_time import run_virtual, vnow


class SlowStorage(aa.MemoryStorage):
    """A storage whose appends become durable only when flushed, each flush taking 1 s."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[int, Event]] = []
        self.report_seq: dict[tuple[int, int], int] = {}  # (trial, step) -> its event's seq
        self.committed = 0
        self.flushes = 0

    def append(self, name: str, events: Sequence[Event]) -> int:
        seq = super().append(name, events)
        first = seq - len(events) + 1
        self.log.extend(zip(range(first, seq + 1), events, strict=True))
        for n, ev in zip(range(first, seq + 1), events, strict=True):
            if isinstance(ev, Reported):
                self.report_seq[(ev.number, ev.step)] = n
        return seq

    @property
    def durable_seq(self) -> int:
        return self.committed

    async def flush(self, seq: int | None = None) -> None:
        self.flushes += 1
        target = self._seq if seq is None else seq
        await anyio.sleep(1)
        self.committed = max(self.committed, target)


class CountingExecutor(aa.Executor):
    """Runs calls on this loop, and counts them."""

    runs_trials = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        self.calls.append((getattr(fn, "__name__", "?"), args[1:]))
        result = fn(*args)
        return await result if hasattr(result, "__await__") else result


def _runner(
    storage: aa.Storage, objective: Callable[..., Any], executor: aa.Executor, **options: Any
) -> Runner:
    core = Core(aa.SearchSpace(SPACE), aa.ASHA(1, 9, 3), aa.RandomSampler(0))
    journal = Journal(core, storage, "s")
    caller = Caller(objective, classify(objective), executor, core, retries=0, retried={})
    return Runner(journal, caller, RunOptions(**options), clock=vnow)


def _run(storage: aa.Storage, objective: Callable[..., Any], executor: aa.Executor, **options: Any) -> Runner:
    """Create study "s" in ``storage`` and run a runner on it, on the virtual clock."""

    async def main() -> Runner:
        await storage.create_study("s", {})
        runner = _runner(storage, objective, executor, **options)
        await runner.run()
        return runner

    return run_virtual(main)


def test_a_report_returns_once_its_event_is_durable() -> None:
    acknowledged: list[tuple[int, int]] = []  # (sequence number of the report, durable then)

    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))
            acknowledged.append((storage.report_seq[(trial.number, step)], storage.durable_seq))

    storage = SlowStorage()
    runner = _run(storage, objective, aa.LoopExecutor(), max_trials=6, concurrency=3)
    assert runner.reports == len(acknowledged) > 6
    assert all(durable >= seq for seq, durable in acknowledged)
    assert storage.flushes >= 1
    states = {t.state for t in runner.core.trials()}
    assert states <= {aa.TrialState.COMPLETE, aa.TrialState.STOPPED}


def test_every_budget_style_call_crosses_the_executor() -> None:
    def train(params: dict[str, Any], budget: int, checkpoint: bytes | None) -> tuple[float, bytes]:
        return loss(params, budget), str(budget).encode()

    executor = CountingExecutor()
    runner = _run(aa.MemoryStorage(), train, executor, max_trials=9, concurrency=2)
    segments = [args for name, args in executor.calls if name == "train"]
    assert len(segments) == runner.reports  # one call per segment, each reported once
    budgets = [budget for budget, _ in segments]
    assert set(budgets) <= {1, 3, 9}
    # Each segment after the first of a trial starts from the checkpoint of the one before.
    assert all(ckpt is None or ckpt.decode() in ("1", "3") for _, ckpt in segments)


def test_options_are_checked_before_anything_runs() -> None:
    with pytest.raises(aa.ConfigError, match="concurrency must be a number >= 1, got 0"):
        RunOptions(concurrency=0)
    with pytest.raises(aa.ConfigError, match=r"max_trials must be an integer, got 1\.5"):
        RunOptions(max_trials=1.5)  # type: ignore[arg-type]
    with pytest.raises(aa.ConfigError, match="retries must be an integer >= 0, got -1"):
        RunOptions(retries=-1)


def test_the_runner_logs_every_decision_through_the_journal() -> None:
    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await anyio.sleep(1)
            await trial.report(loss(trial.params, step))

    storage = SlowStorage()
    runner = _run(storage, objective, aa.LoopExecutor(), max_trials=12, concurrency=4)
    replayed = Core(aa.SearchSpace(SPACE), aa.ASHA(1, 9, 3), aa.RandomSampler(0))
    replayed.replay([ev for _, ev in storage.log])
    assert replayed.trials() == runner.core.trials()  # the log alone rebuilds the same study
    times = [ev.time for _, ev in storage.log if isinstance(ev, (Reported, TrialCreated))]
    assert times == sorted(times) and times[-1] > 0  # the run's clock: virtual seconds
