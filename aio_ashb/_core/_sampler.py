"""Samplers propose configurations for new trials from the study's seeded generator."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from aio_ashb._core._space import Params, SearchSpace
from aio_ashb._exceptions import ConfigError

if TYPE_CHECKING:
    from aio_ashb._core._history import History


def study_seed(seed: int | None) -> int:
    """A sampler's seed, checked; ``None`` draws one from the OS (recorded with the study)."""
    if seed is None:
        return secrets.randbits(63)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer or None, got {seed!r}")
    return int(seed)


@runtime_checkable
class Sampler(Protocol):
    """Proposes the params of a new trial.

    Contract: ``sample`` draws only from ``rng`` (the study's generator, whose state is stored
    with every new trial so a resumed study continues the same stream) and returns params that
    ``space.validate`` accepts. ``seed`` seeds the study's generator.
    """

    @property
    def seed(self) -> int: ...

    def sample(self, space: SearchSpace, rng: np.random.Generator) -> Params: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class LearningSampler(Sampler, Protocol):
    """A sampler that learns from the study: the core calls ``propose`` instead of ``sample``.

    ``history`` is the study as the core knows it (points, results per milestone, trials in
    flight); ``propose`` may fit models from it but must draw only from ``rng``, and may cache
    fits in ``history.cache``, so that the same log and generator state give the same params.
    """

    def propose(self, space: SearchSpace, rng: np.random.Generator, history: History) -> Params: ...


class RandomSampler:
    """Uniform random search over the unit cube of the space.

    ``seed=None`` draws a seed from the OS; it is recorded with the study, so a resumed study
    continues with the same generator either way.
    """

    __slots__ = ("_seed",)

    def __init__(self, seed: int | None = None) -> None:
        self._seed = study_seed(seed)

    @property
    def seed(self) -> int:
        return self._seed

    def sample(self, space: SearchSpace, rng: np.random.Generator) -> Params:
        return space.sample(rng)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "random", "seed": self._seed}

    def __repr__(self) -> str:
        return f"RandomSampler(seed={self._seed})"


def sampler_from_dict(data: dict[str, Any]) -> Sampler:
    if data.get("type") == "random":
        return RandomSampler(seed=data["seed"])
    if data.get("type") == "tpe":
        from aio_ashb._core._tpe import TPESampler  # it imports this module

        return TPESampler.from_dict(data)
    raise ConfigError(f"unknown sampler type {data.get('type')!r}")
