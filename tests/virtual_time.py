"""A fast-forwarding asyncio event loop for scheduling tests.

``loop.time()`` is virtual. When the loop would sleep until its next timer, the clock jumps to
that timer instead, so ``await anyio.sleep(3600)`` takes no real time and durations are exact.
I/O and thread wake-ups still work: ready file descriptors are polled first, and a loop with no
timer at all blocks on the real selector. Do not use it with worker threads that run while
timers are pending: virtual time would run ahead of them.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _FastForwardSelector(selectors.DefaultSelector):
    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            return super().select(None)
        self.loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _FastForwardSelector()
        selector.loop = self
        self._virtual_now = 0.0
        super().__init__(selector)

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += seconds


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a fresh virtual-time loop, then close the loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())  # type: ignore[arg-type,unused-ignore]
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def vnow() -> Any:
    return asyncio.get_running_loop().time()
