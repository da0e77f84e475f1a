"""SQLiteStorage.read_events_after: a reader tails a study's log, each event read once."""

from __future__ import annotations

from pathlib import Path

import pytest

import aio_ashb as aa
from aio_ashb._core import Checkpointed, Reported, TrialCreated

CONFIG = {"format": 1}


def _created(n: int) -> TrialCreated:
    return TrialCreated(n, 0, {"x": n}, {}, 1.0)


@pytest.mark.asyncio
async def test_events_after_a_sequence_number(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with aa.SQLiteStorage(path) as writer, aa.SQLiteStorage(path, readonly=True) as reader:
        await writer.create_study("s", CONFIG)
        await writer.create_study("other", CONFIG)
        writer.append("s", [_created(0), Reported(0, 1, 0.5, 2.0)])
        writer.append("other", [_created(0)])
        await writer.flush()
        info, last, events = await reader.read_events_after("s", 0)
        assert (info.name, info.config, last) == ("s", CONFIG, 2)
        assert events == [_created(0), Reported(0, 1, 0.5, 2.0)]
        assert await reader.read_events_after("s", last) == (info, 2, [])
        writer.append("s", [Checkpointed(0, 1, b"payload", 3.0), Reported(0, 2, 0.25, 4.0)])
        await writer.flush()
        _, last, events = await reader.read_events_after("s", 2)
        # Payloads never come back from a read: only load_checkpoint fetches them.
        assert (last, events) == (4, [Checkpointed(0, 1, None, 3.0), Reported(0, 2, 0.25, 4.0)])
        assert (await reader.read_events_after("s", 3))[2] == [Reported(0, 2, 0.25, 4.0)]


@pytest.mark.asyncio
async def test_a_missing_study_or_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.touch()
    async with aa.SQLiteStorage(path, readonly=True) as reader:
        with pytest.raises(aa.StudyNotFoundError, match="the file is empty"):
            await reader.read_events_after("s", 0)
    async with aa.SQLiteStorage(path) as writer:
        await writer.create_study("s", CONFIG)
    async with aa.SQLiteStorage(path, readonly=True) as reader:
        with pytest.raises(aa.StudyNotFoundError, match="no study named 'nope'"):
            await reader.read_events_after("nope", 0)
