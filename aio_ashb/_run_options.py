"""What one ``run()`` was asked to do (:class:`RunOptions`, checked once) and how a trial's
``trial_timeout`` is kept (:class:`Deadline`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import anyio

from aio_ashb._exceptions import ConfigError


def check_limit(name: str, value: object, *, minimum: float, integer: bool = False) -> None:
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or value < minimum:
        raise ConfigError(f"{name} must be a number >= {minimum}, got {value!r}")
    if integer and not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The arguments of one ``run()``, checked (see ``Study.run`` for their meaning)."""

    max_trials: int | None = None
    concurrency: int = 1
    timeout: float | None = None
    max_paused: int | None = None
    trial_timeout: float | None = None
    max_failures: int | None = None
    retries: int = 0
    durable: bool = True
    freeze_gc: bool = False

    def __post_init__(self) -> None:
        check_limit("max_trials", self.max_trials, minimum=0, integer=True)
        check_limit("concurrency", self.concurrency, minimum=1, integer=True)
        check_limit("timeout", self.timeout, minimum=0)
        check_limit("max_paused", self.max_paused, minimum=0)
        check_limit("trial_timeout", self.trial_timeout, minimum=0)
        check_limit("max_failures", self.max_failures, minimum=1)
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ConfigError(f"retries must be an integer >= 0, got {self.retries!r}")
        if not isinstance(self.freeze_gc, bool):
            raise ConfigError(f"freeze_gc must be True or False, got {self.freeze_gc!r}")


class Deadline:
    """``trial_timeout`` for one trial: only running time counts, across its calls in a run."""

    __slots__ = ("left", "scope")

    def __init__(self, seconds: float) -> None:
        self.left = seconds
        self.scope: anyio.CancelScope | None = None

    def start(self) -> anyio.CancelScope:
        self.scope = anyio.CancelScope(deadline=anyio.current_time() + self.left)
        return self.scope

    def pause(self) -> None:
        if self.scope is not None:
            self.left = self.scope.deadline - anyio.current_time()
            self.scope.deadline = math.inf

    def resume(self) -> None:
        if self.scope is not None:
            self.scope.deadline = anyio.current_time() + self.left

    def passed(self) -> bool:
        scope = self.scope
        return scope is not None and (scope.cancelled_caught or anyio.current_time() >= scope.deadline)
