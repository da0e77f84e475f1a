"""Making studies: ``create_study``, ``load_study``, ``delete_study``, and the checks that a
stored study is continued only with the configuration it was made with."""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeAlias

import anyio

from aio_ashb._core import (
    ASHA,
    Core,
    Direction,
    Event,
    Sampler,
    SearchSpace,
    TPESampler,
    sampler_from_dict,
)
from aio_ashb._exceptions import (
    ConfigError,
    CorruptDatabaseError,
    DuplicateStudyError,
    StudyNotFoundError,
)
from aio_ashb._journal import read_state
from aio_ashb._study import Durability, Study
from aio_ashb.storage import MemoryStorage, SQLiteStorage, Storage, StudyInfo, open_storage


def _parse_storage(storage: Storage | str | None, *, create: bool = True) -> tuple[Storage, bool]:
    """The storage to use, and whether the study owns it (and closes it)."""
    if storage is None:
        return MemoryStorage(), True
    if isinstance(storage, Storage):
        return storage, False
    if isinstance(storage, str):
        return open_storage(storage, create=create), True
    raise ConfigError(f"storage must be a Storage, a URL string or None, got {storage!r}")


def _existing(storage: Storage | str, name: str) -> tuple[Storage, bool]:
    """The storage of a study that must exist already: a URL naming a missing SQLite file is
    refused here, before anything could create it."""
    store, owns = _parse_storage(storage, create=False)
    if owns and isinstance(store, SQLiteStorage) and not store.path.exists():
        raise StudyNotFoundError(
            f"no study named {name!r}: {store.path} does not exist (create_study makes new studies)"
        )
    return store, owns


_Options: TypeAlias = tuple[Durability, float]


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be a non-empty string, got {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"name must be valid Unicode text (no lone surrogates), got {name!r}") from None
    if len(name) > 1000:
        raise ConfigError(f"name must be at most 1000 characters, got {len(name)}")
    return name


def _direction(direction: str | Direction) -> Direction:
    try:
        return Direction(direction)
    except ValueError:
        raise ConfigError(f"direction must be 'minimize' or 'maximize', got {direction!r}") from None


def _config(space: SearchSpace, scheduler: ASHA, sampler: Sampler, direction: Direction) -> dict[str, Any]:
    return {
        "format": 1,
        "space": space.to_dict(),
        "scheduler": scheduler.to_dict(),
        "sampler": sampler.to_dict(),
        "direction": direction.value,
    }


def _canonical(value: Any) -> str:
    # JSON text compares NaN constants equal (NaN != NaN as floats) and ignores key order.
    return json.dumps(value, sort_keys=True)


def _check_same_config(
    name: str, storage: Storage, stored: Mapping[str, Any], wanted: Mapping[str, Any]
) -> None:
    """A stored study is continued only with the configuration it was created with."""
    diffs: list[str] = []
    for key in ("space", "scheduler", "sampler", "direction"):
        a, b = stored.get(key), wanted[key]
        if _canonical(a) == _canonical(b):
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                if _canonical(a.get(k)) != _canonical(b.get(k)):
                    diffs.append(f"  {key}.{k}: stored {_canonical(a.get(k))}, given {_canonical(b.get(k))}")
        else:
            diffs.append(f"  {key}: stored {_canonical(a)}, given {_canonical(b)}")
    if diffs:
        raise ConfigError(
            f"study {name!r} in {storage!r} was created with a different configuration:\n"
            + "\n".join(diffs)
            + "\nPass the stored configuration, choose another name, or delete the study first "
            "(aio_ashb.delete_study, or `aio-ashb delete FILE NAME`)."
        )


@contextlib.asynccontextmanager
async def _opened(storage: Storage, owns: bool, *, keep: bool) -> AsyncIterator[None]:
    """Open ``storage`` for the block. A storage this call made (``owns``) is closed again if
    opening or the block fails, and when the block ends unless ``keep`` (a study now holds it)."""
    try:
        await storage.open()
        yield
    except BaseException:
        if owns:
            with anyio.CancelScope(shield=True):
                await storage.close()
        raise
    if owns and not keep:
        with anyio.CancelScope(shield=True):
            await storage.close()


def _core_of(config: Mapping[str, Any]) -> Core:
    return Core(
        SearchSpace.from_dict(config["space"]),
        ASHA.from_dict(config["scheduler"]),
        sampler_from_dict(config["sampler"]),
        Direction(config["direction"]),
    )


def core_from_config(name: str, storage: Storage, config: Mapping[str, Any]) -> Core:
    """The scheduler a stored configuration describes (a malformed one means a damaged file)."""
    try:
        return _core_of(config)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise CorruptDatabaseError(
            f"study {name!r} in {storage!r} has a malformed stored configuration ({type(exc).__name__}: "
            f"{exc}); it cannot be loaded"
        ) from None


async def read_core(name: str, storage: Storage) -> tuple[StudyInfo, Core, list[Event]]:
    """A reader's view of a study: its core from the latest snapshot plus the events after it,
    or from the whole log (``_journal.read_state``), and the events replayed."""
    return await read_state(storage, name, lambda info: core_from_config(name, storage, info.config))


async def _build(name: str, storage: Storage, owns: bool, options: _Options) -> Study:
    _, core, _ = await read_core(name, storage)  # one read: configuration and log agree
    return Study(name, storage, core, owns_storage=owns, durability=options[0], lease_ttl=options[1])


def study_from_snapshot(
    name: str,
    storage: Storage,
    info: StudyInfo,
    events: Sequence[Event],
    *,
    owns: bool = False,
    options: _Options = ("durable", 30.0),
) -> Study:
    """The study as of a snapshot read with ``storage.read_study`` (the CLI shows exactly it)."""
    core = core_from_config(name, storage, info.config)
    core.replay(events)
    return Study(name, storage, core, owns_storage=owns, durability=options[0], lease_ttl=options[1])


def _options(durability: object, lease_ttl: object) -> _Options:
    if durability not in ("durable", "buffered"):
        raise ConfigError(f"durability must be 'durable' or 'buffered', got {durability!r}")
    if (
        not isinstance(lease_ttl, (int, float))
        or isinstance(lease_ttl, bool)
        or math.isnan(lease_ttl)
        or lease_ttl < 0.001
    ):
        raise ConfigError(f"lease_ttl must be a number >= 0.001, got {lease_ttl!r}")
    return durability, float(lease_ttl)


def _checked(
    space: Mapping[str, Any] | SearchSpace,
    direction: str | Direction,
    scheduler: ASHA | None,
    sampler: Sampler | None,
) -> tuple[SearchSpace, Direction, ASHA]:
    """create_study's checks of the study's configuration (the scheduler defaulted)."""
    space_ = SearchSpace(space)
    dir_ = _direction(direction)
    if scheduler is None:
        scheduler = ASHA()
    if not isinstance(scheduler, ASHA):
        raise ConfigError(f"scheduler must be an ASHA instance, got {scheduler!r}")
    if sampler is not None and not isinstance(sampler, Sampler):
        raise ConfigError(f"sampler must be a Sampler (e.g. RandomSampler), got {sampler!r}")
    return space_, dir_, scheduler


def new_core(
    *,
    space: Mapping[str, Any] | SearchSpace,
    scheduler: ASHA | None,
    sampler: Sampler | None,
    direction: str | Direction,
) -> Core:
    """The core ``create_study`` would give a new study of this configuration (the same checks,
    built from the configuration's stored form, as a study's is), for a caller with no storage:
    ``simulate()``'s event engine."""
    space_, dir_, scheduler = _checked(space, direction, scheduler, sampler)
    return _core_of(_config(space_, scheduler, sampler if sampler is not None else TPESampler(), dir_))


async def create_study(
    *,
    space: Mapping[str, Any] | SearchSpace,
    direction: str | Direction = "minimize",
    scheduler: ASHA | None = None,
    sampler: Sampler | None = None,
    storage: Storage | str | None = None,
    name: str | None = None,
    load_if_exists: bool = False,
    durability: Durability = "durable",
    lease_ttl: float = 30.0,
) -> Study:
    """Create a study (or, with ``load_if_exists=True``, continue the stored one of that name).

    ``space`` maps parameter names to :class:`Float`, :class:`Int`, :class:`Categorical` or plain
    constants. ``scheduler`` defaults to ``ASHA()``, ``sampler`` to ``TPESampler()`` (a random
    seed, recorded; ``RandomSampler()`` for plain random search), ``storage`` to a new
    :class:`MemoryStorage`; ``"sqlite:///path.db"`` selects a SQLite file. Loading checks that
    the given space, scheduler, direction and sampler match the stored ones; without
    ``sampler``, a stored study keeps the one it was created with.

    ``durability="durable"`` (default): ``trial.report()`` returns once its event is committed.
    ``"buffered"``: it returns at once and a background task commits (a crash may lose the last
    moments of reports, never a consistent state). ``lease_ttl``: seconds after which the study's
    lease, renewed by a running ``run()``, is considered abandoned by a dead runner.
    """
    options = _options(durability, lease_ttl)
    space_, dir_, scheduler = _checked(space, direction, scheduler, sampler)
    name = f"study-{uuid.uuid4().hex[:8]}" if name is None else _check_name(name)
    store, owns = _parse_storage(storage)
    async with _opened(store, owns, keep=True):
        if load_if_exists:
            with contextlib.suppress(StudyNotFoundError):
                return await _load_matching(name, store, owns, options, space_, scheduler, sampler, dir_)
        config = _config(space_, scheduler, sampler if sampler is not None else TPESampler(), dir_)
        try:
            await store.create_study(name, config)
        except DuplicateStudyError:
            if not load_if_exists:
                raise
            # Created by someone else since we looked: continue theirs.
            return await _load_matching(name, store, owns, options, space_, scheduler, sampler, dir_)
        return await _build(name, store, owns, options)


async def _load_matching(
    name: str,
    store: Storage,
    owns: bool,
    options: _Options,
    space: SearchSpace,
    scheduler: ASHA,
    sampler: Sampler | None,
    direction: Direction,
) -> Study:
    """The stored study ``name``, if it was created with this configuration (the sampler's
    seed may be left out: the stored one continues)."""
    stored = (await store.get_study(name)).config
    if sampler is None:
        try:
            sampler = sampler_from_dict(stored["sampler"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDatabaseError(
                f"study {name!r} in {store!r} has a malformed stored sampler ({exc}); it cannot be loaded"
            ) from None
    _check_same_config(name, store, stored, _config(space, scheduler, sampler, direction))
    return await _build(name, store, owns, options)


async def load_study(
    *,
    name: str,
    storage: Storage | str,
    durability: Durability = "durable",
    lease_ttl: float = 30.0,
) -> Study:
    """Open the stored study ``name``; its state is rebuilt by replaying its events.

    Never creates anything: a ``sqlite:///`` URL naming a missing file raises
    :class:`StudyNotFoundError` and leaves no file behind."""
    options = _options(durability, lease_ttl)
    name = _check_name(name)
    store, owns = _existing(storage, name)
    async with _opened(store, owns, keep=True):
        return await _build(name, store, owns, options)


async def delete_study(*, name: str, storage: Storage | str) -> None:
    """Delete the stored study ``name``: its configuration, every event and checkpoint.

    Refused with :class:`StudyLockedError` while a runner holds the study (its lease has not
    expired and its process lives); raises :class:`StudyNotFoundError` if there is no such study.
    A ``sqlite:///`` URL naming a missing file is never created."""
    name = _check_name(name)
    store, owns = _existing(storage, name)
    async with _opened(store, owns, keep=False):
        await store.delete_study(name)
