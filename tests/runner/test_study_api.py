from __future__ import annotations

import math
from typing import Any

import anyio
import pytest

import aio_ashb as aa
from aio_ashb._core import TrialCreated
from tests.helpers import SPACE, loss


async def _noop(trial: aa.Trial) -> None:
    async for step in trial.steps():
        await trial.report(loss(trial.params, step))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"direction": "down"}, "direction must be 'minimize' or 'maximize', got 'down'"),
        ({"scheduler": "asha"}, "scheduler must be an ASHA instance, got 'asha'"),
        ({"sampler": 3}, "sampler must be a Sampler"),
        ({"storage": "postgres://x"}, "unsupported storage 'postgres://x'"),
        ({"storage": "sqlite://relative.db"}, "looks like 'sqlite:///path/to/file.db'"),
        ({"storage": "sqlite:///x.db?synchronous=maybe"}, "synchronous must be 'normal' or 'full'"),
        ({"storage": "sqlite:///x.db?fast=1"}, r"unknown option\(s\) \['fast'\]"),
        ({"durability": "eventually"}, "durability must be 'durable' or 'buffered'"),
        ({"lease_ttl": 0}, "lease_ttl must be a number"),
        ({"storage": 5}, "storage must be a Storage"),
        ({"name": ""}, "name must be a non-empty string"),
        ({"space": {}}, "the search space is empty"),
    ],
)
@pytest.mark.asyncio
async def test_create_study_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"space": SPACE, **kwargs}
    with pytest.raises(aa.ConfigError, match=match):
        await aa.create_study(**args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"concurrency": 0}, "concurrency must be a number >= 1, got 0"),
        ({"concurrency": 2.5}, "concurrency must be an integer, got 2.5"),
        ({"max_trials": -1}, "max_trials must be a number >= 0, got -1"),
        ({"max_trials": 1.5}, "max_trials must be an integer"),
        ({"timeout": -1}, "timeout must be a number >= 0, got -1"),
        ({"trial_timeout": math.nan}, "trial_timeout must be a number"),
        ({"max_paused": -2}, "max_paused must be a number >= 0"),
        ({"max_failures": 0}, "max_failures must be a number >= 1, got 0"),
        ({"callbacks": [1]}, "callbacks must be callable, got 1"),
    ],
)
@pytest.mark.asyncio
async def test_run_rejects_bad_arguments(study: aa.Study, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(aa.ConfigError, match=match):
        await study.run(_noop, **kwargs)
    with pytest.raises(aa.ConfigError, match="objective must be callable"):
        await study.run(42)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_bad_reports_fail_the_trial_with_a_clear_error() -> None:
    async def objective(trial: aa.Trial) -> None:
        if trial.number == 0:
            await trial.report("nan")  # type: ignore[arg-type]
        elif trial.number == 1:
            await trial.report(1.0, step=3)
            await trial.report(1.0, step=2)
        else:
            await trial.report(1.0, step=0)

    study = await aa.create_study(space=SPACE, scheduler=aa.ASHA(1, 9, 3, mode="stopping"))
    await study.run(objective, max_trials=3)
    errors = [t.error or "" for t in study.trials]
    assert "got 'nan'" in errors[0]
    assert "reported step 2 after step 3" in errors[1]
    assert "step must be an integer >= 1, got 0" in errors[2]


@pytest.mark.asyncio
async def test_enqueued_configurations_run_first(study: aa.Study) -> None:
    fixed = {"lr": 0.01, "x": 0.3, "c": "a"}
    await study.enqueue(fixed)
    with pytest.raises(aa.ConfigError, match="'c'='z' is not one of"):
        await study.enqueue({"lr": 0.01, "x": 0.3, "c": "z"})
    await study.run(_noop, max_trials=4)
    assert study.trials[0].params == fixed


@pytest.mark.asyncio
async def test_load_study_replays_and_checks_the_configuration() -> None:
    storage = aa.MemoryStorage()
    study = await aa.create_study(
        space=SPACE, storage=storage, name="s", sampler=aa.RandomSampler(4), scheduler=aa.ASHA(1, 9, 3)
    )
    await study.run(_noop, max_trials=12, concurrency=3)
    again = await aa.load_study(name="s", storage=storage)
    assert again.trials == study.trials
    assert again.n_trials == len(study.trials) == 12
    assert [again.trial(n) for n in range(12)] == study.trials  # one trial without all of them
    for missing in (-1, 12, True, "0"):
        with pytest.raises(aa.StateError, match="there is no trial"):
            again.trial(missing)  # type: ignore[arg-type]
    assert again.best_trial == study.best_trial
    assert again.rung_sizes == study.rung_sizes == study.rungs  # `rungs`: the first name, kept
    assert again.states == study.states == study.counts == study.status().states
    with pytest.raises(aa.DuplicateStudyError, match="'s' already exists"):
        await aa.create_study(space=SPACE, storage=storage, name="s")
    with pytest.raises(
        aa.ConfigError, match=r"different configuration:\n  scheduler\.max_resource: stored 9, given 81\n"
    ):
        await aa.create_study(space=SPACE, storage=storage, name="s", load_if_exists=True)
    same = await aa.create_study(
        space=SPACE, storage=storage, name="s", scheduler=aa.ASHA(1, 9, 3), load_if_exists=True
    )
    assert same.sampler.seed == 4
    # Without a sampler, a stored study keeps its own (RandomSampler here), while a new study
    # gets the default, TPESampler.
    assert isinstance(same.sampler, aa.RandomSampler)
    fresh = await aa.create_study(space=SPACE, storage=storage, name="t")
    assert isinstance(fresh.sampler, aa.TPESampler)
    await same.run(_noop, max_trials=20, concurrency=3)  # continues: same generator stream
    assert len(same.trials) == 20
    with pytest.raises(aa.StudyNotFoundError, match="no study named 'zzz'"):
        await aa.load_study(name="zzz", storage=storage)


@pytest.mark.asyncio
async def test_lifecycle_closed_study_and_concurrent_run() -> None:
    async with await aa.create_study(space=SPACE) as study:
        await study.run(_noop, max_trials=2)
    with pytest.raises(aa.StateError, match="is closed"):
        await study.run(_noop, max_trials=3)
    with pytest.raises(aa.StateError, match="is closed"):
        await study.ask()


@pytest.mark.asyncio
async def test_a_broken_callback_ends_the_run_with_its_error(study: aa.Study) -> None:
    def broken(study: aa.Study, trial: aa.FrozenTrial) -> None:
        raise KeyError("callback bug")

    with pytest.raises(KeyError, match="callback bug"):
        await study.run(_noop, max_trials=10, concurrency=2, callbacks=[broken])
    assert all(t.state.is_finished for t in study.trials)


@pytest.mark.asyncio
async def test_learning_curves_and_maximize() -> None:
    async def objective(trial: aa.Trial) -> None:
        async for step in trial.steps():
            await trial.report(trial.params["x"] * step)

    study = await aa.create_study(space=SPACE, direction="maximize", scheduler=aa.ASHA(1, 9, 3))
    await study.run(objective, max_trials=27, concurrency=4)
    best = study.best_trial
    assert best is not None and best.resource == 9
    top = max((t for t in study.trials if t.resource == 9), key=lambda t: t.rung_values[9])
    assert best.number == top.number
    curve = await study.learning_curve(best.number)
    assert sorted(curve) == list(range(1, 10))
    assert curve[9] == pytest.approx(best.params["x"] * 9)
    with pytest.raises(aa.StateError, match="no trial 999"):
        await study.learning_curve(999)


def test_public_names_are_curated() -> None:
    expected = [
        "ASHA",
        "AioAshbError",
        "AskedJob",
        "Categorical",
        "ConfigError",
        "Constant",
        "CorruptDatabaseError",
        "Decision",
        "Direction",
        "DaskExecutor",
        "DuplicateStudyError",
        "Executor",
        "Float",
        "FrozenTrial",
        "Int",
        "LoopExecutor",
        "MemoryStorage",
        "MissingDependencyError",
        "NotADatabaseError",
        "ObjectiveMisuseError",
        "ProcessExecutor",
        "RandomSampler",
        "RemoteError",
        "ReportError",
        "RungStatus",
        "SQLiteStorage",
        "Sampler",
        "SchemaVersionError",
        "SearchSpace",
        "StateError",
        "Storage",
        "StorageError",
        "StorageLocationError",
        "Study",
        "StudyLockedError",
        "StudyNotFoundError",
        "StudyStatus",
        "TPESampler",
        "ThreadExecutor",
        "ThreadTrial",
        "TooManyFailuresError",
        "Trial",
        "TrialState",
        "TrialStopped",
        "WorkerLostError",
        "__version__",
        "create_study",
        "delete_study",
        "load_study",
    ]
    assert sorted(aa.__all__) == sorted(expected)
    for name in aa.__all__:
        assert hasattr(aa, name)
    for exc in (
        aa.ConfigError,
        aa.ReportError,
        aa.StateError,
        aa.StorageError,
        aa.TrialStopped,
        aa.WorkerLostError,
        aa.RemoteError,
    ):
        assert issubclass(exc, aa.AioAshbError)
    for exc in (
        aa.StudyLockedError,
        aa.StorageLocationError,
        aa.NotADatabaseError,
        aa.CorruptDatabaseError,
        aa.SchemaVersionError,
        aa.StudyNotFoundError,
    ):
        assert issubclass(exc, aa.StorageError)


class _SlowCommits(aa.MemoryStorage):
    """Appends become durable only when flushed, each flush taking 0.05 s."""

    def __init__(self) -> None:
        super().__init__()
        self.committed = 0

    @property
    def durable_seq(self) -> int:
        return self.committed

    async def flush(self, seq: int | None = None) -> None:
        target = self._seq if seq is None else seq
        await anyio.sleep(0.05)
        self.committed = max(self.committed, target)


@pytest.mark.asyncio
async def test_enqueue_during_a_durable_run_returns_once_committed() -> None:
    storage = _SlowCommits()
    study = await aa.create_study(space=SPACE, storage=storage, scheduler=aa.ASHA(1, 3, 3))
    settled: list[bool] = []

    async def objective(trial: aa.Trial) -> None:
        if trial.number == 0:
            await study.enqueue({"lr": 0.01, "x": 0.5, "c": "b"})
            settled.append(storage.durable_seq >= storage._seq)
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))

    await study.run(objective, max_trials=4)
    assert settled == [True]
    assert study.trials[1].params == {"lr": 0.01, "x": 0.5, "c": "b"}


@pytest.mark.asyncio
async def test_a_trials_params_are_its_own(study: aa.Study) -> None:
    async def objective(trial: aa.Trial) -> None:
        trial.params["x"] = 123.0  # changes the trial's copy, nothing recorded
        async for step in trial.steps():
            await trial.report(loss(trial.params, step))

    await study.run(objective, max_trials=3)
    events = await study.storage.read_events(study.name)
    created = [e for e in events if isinstance(e, TrialCreated)]
    assert all(0.0 <= t.params["x"] <= 1.0 for t in study.trials)
    assert all(0.0 <= e.params["x"] <= 1.0 for e in created)


def test_the_sqlite_storage_documents_itself() -> None:
    assert aa.SQLiteStorage.__doc__ is not None and "Studies in one SQLite file" in aa.SQLiteStorage.__doc__
