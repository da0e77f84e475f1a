"""The hot events' hand-written ``__init__`` keeps the dataclass contract."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle

import pytest

from aio_ashb._core import Reported, TrialCreated, TrialPromoted, TrialResumed

FAST = [
    Reported(3, 7, 0.25, 1.5),
    TrialCreated(2, 1, {"x": 0.5}, {"state": 1}, 2.0),
    TrialPromoted(4, 2, 3.0),
    TrialResumed(5, 4.0),
]


@pytest.mark.parametrize("ev", FAST, ids=lambda ev: type(ev).__name__)
def test_fast_init_is_the_dataclass_init(ev: object) -> None:
    cls = type(ev)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params] == [f.name for f in fields]
    assert [p.default for p in params] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields
    ]
    values = [getattr(ev, f.name) for f in fields]
    assert cls(*values) == ev and cls(**{f.name: v for f, v in zip(fields, values, strict=True)}) == ev
    if not isinstance(ev, TrialCreated):  # its params and state are dicts: unhashable
        assert hash(cls(*values)) == hash(ev)
    assert pickle.loads(pickle.dumps(ev)) == ev and copy.copy(ev) == ev
    assert dataclasses.replace(ev) == ev  # type: ignore[type-var]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.number = 9  # type: ignore[attr-defined]
    assert not hasattr(ev, "__dict__")


def test_defaults_and_repr() -> None:
    assert Reported(1, 2, 0.5) == Reported(1, 2, 0.5, 0.0)
    assert repr(Reported(1, 2, 0.5)) == "Reported(number=1, step=2, value=0.5, time=0.0)"
    assert TrialPromoted(1, 2).time == 0.0 and TrialResumed(1).time == 0.0
    assert Reported(1, 2, 0.5) != TrialPromoted(1, 2, 0.5)  # type: ignore[comparison-overlap]
