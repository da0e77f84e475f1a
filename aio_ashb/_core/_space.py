"""The search space: typed dimensions, sampling, the unit cube, validation, serialization.

Every dimension maps a coordinate ``u`` in ``[0, 1)`` to a value and back, so a sampler works
on the unit cube (uniform draws for random search; a model's continuous space for the samplers
that come later) and the space turns points into parameters. Constants take no coordinate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from aio_ashb._exceptions import ConfigError

Scalar: TypeAlias = str | int | float | bool | None
Params: TypeAlias = dict[str, Any]

_SCALARS = (str, int, float, bool, type(None))


def _same(a: Any, b: Any) -> bool:
    """One scalar value: the same type and equal, NaN being the same as NaN (a NaN constant
    or choice must match itself when params are checked, e.g. mapped to the unit cube)."""
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)))


_MAX_INT = 2**53

# A dimension's map from a unit coordinate to a value, with its constants computed once
# (``unit_mapper``): sampling a trial maps every coordinate, and recomputing logs and spans
# for each was most of a new trial's cost. ``from_unit`` is the same function, so there is
# one formula per dimension. The clamps are written out as builtin min/max evaluate them
# (``max(a, b)`` is ``b if b > a else a``), so results are identical, signed zeros included.
UnitMapper: TypeAlias = Callable[[float], Any]


def shown(value: object) -> str:
    """``repr(value)`` for an error message, shortened when it is a huge number."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}... (a number of {len(text)} digits)"


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


@dataclass(frozen=True, slots=True)
class Float:
    """A real number in ``[low, high]``, uniform on a linear or (``log=True``) log scale."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not _is_real(self.low) or not _is_real(self.high):
            raise ConfigError(f"Float bounds must be numbers, got low={self.low!r}, high={self.high!r}")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ConfigError(f"Float bounds must be finite, got low={self.low!r}, high={self.high!r}")
        if self.low >= self.high:
            raise ConfigError(f"Float needs low < high, got low={self.low!r}, high={self.high!r}")
        if self.log and self.low <= 0:
            raise ConfigError(f"Float(log=True) needs low > 0, got low={self.low!r}")
        if not math.isfinite(float(self.high) - float(self.low)):
            raise ConfigError(
                "Float range too wide: high - low overflows a float, "
                f"got low={self.low!r}, high={self.high!r}"
            )
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))

    def from_unit(self, u: float) -> float:
        return float(self.unit_mapper()(u))

    def unit_mapper(self) -> UnitMapper:
        low, high = self.low, self.high
        if self.log:
            lo, hi = math.log(low), math.log(high)
            span, exp = hi - lo, math.exp

            def log_float(u: float) -> float:
                x = exp(lo + u * span)
                x = x if x > low else low
                return x if x < high else high

            return log_float
        width = high - low

        def linear_float(u: float) -> float:
            x = low + u * width
            x = x if x > low else low
            return x if x < high else high

        return linear_float

    def to_unit(self, value: Any) -> float:
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return (math.log(value) - lo) / (hi - lo)
        return (float(value) - self.low) / (self.high - self.low)

    def check(self, name: str, value: Any) -> Any:
        if not _is_real(value) or not (self.low <= value <= self.high):
            raise ConfigError(f"parameter {name!r}={value!r} is outside Float({self.low}, {self.high})")
        return float(value)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True, slots=True)
class Int:
    """An integer in ``[low, high]`` (both included), uniform on a linear or log scale."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.low) or not _is_int(self.high):
            raise ConfigError(f"Int bounds must be integers, got low={self.low!r}, high={self.high!r}")
        if max(abs(self.low), abs(self.high)) > _MAX_INT:  # sampled in floating point: kept exact
            raise ConfigError(
                f"Int bounds must be within +-2**53, got low={shown(self.low)}, high={shown(self.high)}"
            )
        if self.low >= self.high:
            raise ConfigError(f"Int needs low < high, got low={self.low!r}, high={self.high!r}")
        if self.log and self.low <= 0:
            raise ConfigError(f"Int(log=True) needs low > 0, got low={self.low!r}")
        object.__setattr__(self, "low", int(self.low))
        object.__setattr__(self, "high", int(self.high))

    # Each integer owns an equal slice of the unit interval (on the chosen scale): the slice of
    # v is [v - 0.5, v + 0.5] mapped through the scale, so uniform u gives uniform integers.
    def _edges(self) -> tuple[float, float]:
        lo, hi = self.low - 0.5, self.high + 0.5
        return (math.log(lo), math.log(hi)) if self.log else (lo, hi)

    def from_unit(self, u: float) -> int:
        return int(self.unit_mapper()(u))

    def unit_mapper(self) -> UnitMapper:
        low, high = self.low, self.high
        lo, hi = self._edges()
        span, exp, floor = hi - lo, math.exp, math.floor
        if self.log:

            def log_int(u: float) -> int:
                v = floor(exp(lo + u * span) + 0.5)
                v = v if v > low else low
                return v if v < high else high

            return log_int

        def linear_int(u: float) -> int:
            v = floor(lo + u * span + 0.5)
            v = v if v > low else low
            return v if v < high else high

        return linear_int

    def to_unit(self, value: Any) -> float:
        lo, hi = self._edges()
        x = math.log(value) if self.log else float(value)
        return (x - lo) / (hi - lo)

    def check(self, name: str, value: Any) -> Any:
        if not _is_int(value) or not (self.low <= value <= self.high):
            raise ConfigError(f"parameter {name!r}={value!r} is outside Int({self.low}, {self.high})")
        return int(value)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True, slots=True)
class Categorical:
    """One of a fixed, non-empty list of distinct choices (str, int, float, bool or None)."""

    choices: tuple[Scalar, ...]

    def __init__(self, choices: Sequence[Scalar]) -> None:
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence):
            raise ConfigError(f"Categorical needs a list of choices, got {choices!r}")
        items = tuple(choices)
        if not items:
            raise ConfigError("Categorical needs at least one choice, got an empty list")
        for c in items:
            if not isinstance(c, _SCALARS):
                raise ConfigError(f"Categorical choices must be str, int, float, bool or None, got {c!r}")
        # (type, value), NaN as one value: two NaN choices are one choice twice (see _same).
        keys = [(type(c), "nan" if isinstance(c, float) and math.isnan(c) else c) for c in items]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"Categorical choices must be distinct, got {list(items)!r}")
        object.__setattr__(self, "choices", items)

    def from_unit(self, u: float) -> Scalar:
        return self.unit_mapper()(u)  # type: ignore[no-any-return]

    def unit_mapper(self) -> UnitMapper:
        choices, n = self.choices, len(self.choices)
        last = n - 1

        def categorical(u: float) -> Scalar:
            i = int(u * n)
            i = i if i > 0 else 0
            return choices[i if i < last else last]

        return categorical

    def to_unit(self, value: Any) -> float:
        return (self._index(value) + 0.5) / len(self.choices)

    def _index(self, value: Any) -> int:
        for i, c in enumerate(self.choices):
            if _same(c, value):
                return i
        raise ValueError(value)

    def check(self, name: str, value: Any) -> Any:
        try:
            self._index(value)
        except ValueError:
            raise ConfigError(f"parameter {name!r}={value!r} is not one of {list(self.choices)!r}") from None
        return value

    def to_dict(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": list(self.choices)}


@dataclass(frozen=True, slots=True)
class Constant:
    """A fixed value, passed to every trial; it takes no coordinate in the unit cube."""

    value: Scalar

    def __post_init__(self) -> None:
        if not isinstance(self.value, _SCALARS):
            raise ConfigError(f"a constant must be str, int, float, bool or None, got {self.value!r}")

    def check(self, name: str, value: Any) -> Any:
        if not _same(value, self.value):
            raise ConfigError(f"parameter {name!r}={value!r} must be the constant {self.value!r}")
        return value

    def to_dict(self) -> dict[str, Any]:
        return {"type": "constant", "value": self.value}


Dimension: TypeAlias = Float | Int | Categorical
_DIMENSIONS = (Float, Int, Categorical)


def _params_builder(items: Mapping[str, Dimension | Constant]) -> Callable[[list[float]], Params]:
    """A function from unit coordinates to params, for these items, as one dict display:
    ``{'lr': m0(c[0]), 'x': m1(c[1]), 'batch': v2}``, with each dimension's unit mapper (``m``)
    and each constant's value (``v``) bound by name. Sampling runs it once per new trial; a
    loop over the items cost twice as much (namedtuple and dataclasses build code the same
    way). Names enter the source only as ``repr`` literals."""
    env: dict[str, Any] = {}
    entries = []
    coord = 0
    for j, (name, dim) in enumerate(items.items()):
        if isinstance(dim, Constant):
            env[f"v{j}"] = dim.value
            entries.append(f"{name!r}: v{j}")
        else:
            env[f"m{j}"] = dim.unit_mapper()
            entries.append(f"{name!r}: m{j}(c[{coord}])")
            coord += 1
    exec(f"def params_of(c):\n    return {{{', '.join(entries)}}}\n", env)
    builder: Callable[[list[float]], Params] = env["params_of"]
    return builder


class SearchSpace(Mapping[str, Dimension | Constant]):
    """An ordered mapping from parameter names to dimensions or constants.

    Built from a plain dict: ``{"lr": Float(1e-4, 1, log=True), "layers": Int(1, 4),
    "act": Categorical(["relu", "tanh"]), "batch": 64}`` (plain scalars become constants).
    """

    __slots__ = ("_items", "_dims", "_ndim", "_map")

    def __init__(self, items: Mapping[str, Any]) -> None:
        if isinstance(items, SearchSpace):
            self._items: dict[str, Dimension | Constant] = dict(items._items)
        else:
            if not isinstance(items, Mapping):
                raise ConfigError(f"a search space is a mapping of names to dimensions, got {items!r}")
            self._items = {}
            for name, dim in items.items():
                if not isinstance(name, str) or not name:
                    raise ConfigError(f"parameter names must be non-empty strings, got {name!r}")
                if isinstance(dim, (*_DIMENSIONS, Constant)):
                    self._items[name] = dim
                elif isinstance(dim, _SCALARS):
                    self._items[name] = Constant(dim)
                else:
                    raise ConfigError(
                        f"parameter {name!r} must be Float, Int, Categorical or a constant, got {dim!r}"
                    )
            if not self._items:
                raise ConfigError("the search space is empty")
        self._dims = [(n, d) for n, d in self._items.items() if isinstance(d, _DIMENSIONS)]
        self._ndim = len(self._dims)
        self._map = _params_builder(self._items)

    def __getitem__(self, key: str) -> Dimension | Constant:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"SearchSpace({self._items!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self._items == other._items

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[type[SearchSpace], tuple[dict[str, Dimension | Constant]]]:
        # Pickled (and copied) by its items: the params builder is code made in __init__.
        return (SearchSpace, (self._items,))

    @property
    def dimensions(self) -> tuple[tuple[str, Dimension], ...]:
        """The (name, dimension) pairs that take a unit-cube coordinate, in coordinate order."""
        return tuple(self._dims)

    @property
    def ndim(self) -> int:
        """Number of unit-cube coordinates (dimensions that are not constants)."""
        return len(self._dims)

    def from_unit(self, u: Sequence[float] | np.ndarray) -> Params:
        """Map a point of the unit cube (one coordinate per non-constant dimension) to params."""
        if len(u) != len(self._dims):
            raise ConfigError(f"expected {len(self._dims)} coordinates, got {len(u)}")
        return self._map([float(x) for x in u])

    def to_unit(self, params: Mapping[str, Any]) -> np.ndarray:
        """Map params (validated) to their point in the unit cube."""
        params = self.validate(params)
        return np.array([d.to_unit(params[n]) for n, d in self._dims], dtype=float)

    def sample(self, rng: np.random.Generator) -> Params:
        """One uniform draw: a uniform point of the unit cube mapped to params."""
        return self._map(rng.random(self._ndim).tolist())

    def validate(self, params: Mapping[str, Any]) -> Params:
        """Check that ``params`` names every parameter once, with a value inside its dimension.

        Returns a normalized copy (ints as int, floats as float).
        """
        if not isinstance(params, Mapping):
            raise ConfigError(f"params must be a mapping of names to values, got {params!r}")
        extra = [k for k in params if k not in self._items]
        if extra:
            raise ConfigError(f"unknown parameter(s) {extra!r}; the space has {list(self._items)!r}")
        missing = [k for k in self._items if k not in params]
        if missing:
            raise ConfigError(f"missing parameter(s) {missing!r}")
        return {n: d.check(n, params[n]) for n, d in self._items.items()}

    def to_dict(self) -> dict[str, Any]:
        return {n: d.to_dict() for n, d in self._items.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> SearchSpace:
        items: dict[str, Any] = {}
        for name, spec in data.items():
            kind = spec.get("type")
            if kind == "float":
                items[name] = Float(spec["low"], spec["high"], log=spec["log"])
            elif kind == "int":
                items[name] = Int(spec["low"], spec["high"], log=spec["log"])
            elif kind == "categorical":
                items[name] = Categorical(spec["choices"])
            elif kind == "constant":
                items[name] = Constant(spec["value"])
            else:
                raise ConfigError(f"unknown dimension type {kind!r} for parameter {name!r}")
        return cls(items)
