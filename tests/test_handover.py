"""The per-loop GIL handover's bookkeeping (aio_ashb/_handover.py): no loop kept alive by it,
and a thread job cancelled by asyncio itself still counted until it ends."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest

from aio_ashb import _handover
from aio_ashb._handover import handover, to_thread


def test_a_loop_that_used_the_handover_is_not_kept_alive() -> None:
    seen: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def use() -> int:
        seen.append(weakref.ref(asyncio.get_running_loop()))
        return await to_thread(sum, [1, 2, 3])

    assert asyncio.run(use()) == 6
    gc.collect()
    assert seen[0]() is None


@pytest.mark.asyncio
async def test_a_job_cancelled_by_asyncio_is_handed_over_to_until_it_ends() -> None:
    h = handover()
    call = asyncio.create_task(to_thread(time.sleep, 0.2))
    await asyncio.sleep(0.02)  # the thread has it
    call.cancel()  # asyncio's own cancellation: it does not wait for the thread
    with pytest.raises(asyncio.CancelledError):
        await call
    assert h._out == 1 and h._running == 1 and h._timer is not None  # still out, still handed over to
    await asyncio.sleep(0.35)
    assert h._out == 0 and h._running == 0 and h._timer is None and h._idle.is_set()


@pytest.mark.asyncio
async def test_a_job_cancelled_before_a_thread_took_it_never_runs_and_is_not_counted() -> None:
    h = handover()
    ran: list[int] = []
    blockers = [asyncio.create_task(to_thread(time.sleep, 0.2)) for _ in range(40)]  # anyio's 40 threads
    await asyncio.sleep(0.02)
    queued = asyncio.create_task(to_thread(ran.append, 1))
    await asyncio.sleep(0.02)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    await asyncio.gather(*blockers)
    await asyncio.sleep(0.05)
    assert ran == []
    assert h._out == 0 and h._running == 0 and h._timer is None and h._idle.is_set()
    assert _handover.HAND_OVER
