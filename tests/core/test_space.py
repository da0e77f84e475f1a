from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from aio_ashb import Categorical, ConfigError, Constant, Float, Int, RandomSampler, SearchSpace


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Float(1.0, 1.0), "low < high"),
        (lambda: Float(2.0, 1.0), "low=2.0"),
        (lambda: Float(0.0, 1.0, log=True), "low > 0"),
        (lambda: Float(-1.0, 1.0, log=True), "low=-1.0"),
        (lambda: Float("a", 1.0), "must be numbers"),  # type: ignore[arg-type]
        (lambda: Float(0.0, math.inf), "finite"),
        (lambda: Float(math.nan, 1.0), "finite"),
        (lambda: Float(-1e308, 1e308), r"range too wide: high - low overflows"),
        (
            lambda: Int(-(10**400), 5),
            r"within \+-2\*\*53, got low=-10000000000\.\.\. \(a number of 402 digits\)",
        ),
        (lambda: Int(3, 3), "low < high"),
        (lambda: Int(1.5, 3), "integers"),  # type: ignore[arg-type]
        (lambda: Int(True, 3), "integers"),
        (lambda: Int(0, 3, log=True), "low > 0"),
        (lambda: Categorical([]), "at least one"),
        (lambda: Categorical("abc"), "a list of choices"),
        (lambda: Categorical(["a", "a"]), "distinct"),
        (lambda: Categorical([[1], [2]]), "must be str"),  # type: ignore[list-item]
        (lambda: Constant([1]), "constant"),  # type: ignore[arg-type]
        (lambda: SearchSpace({}), "empty"),
        (lambda: SearchSpace({"x": object()}), "'x' must be"),
        (lambda: SearchSpace({"": Float(0, 1)}), "non-empty strings"),
        (lambda: SearchSpace([("x", 1)]), "mapping"),  # type: ignore[arg-type]
    ],
)
def test_invalid_dimensions_name_the_bad_value(make: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="low < high"):
        Float(1, 0)


SPACE = SearchSpace(
    {
        "lr": Float(1e-4, 1.0, log=True),
        "x": Float(-1.0, 1.0),
        "layers": Int(1, 4),
        "width": Int(8, 512, log=True),
        "act": Categorical(["relu", "tanh", None, 3]),
        "batch": 64,
    }
)


def test_sampling_is_seeded_valid_and_covers_the_space() -> None:
    a = [SPACE.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(0)
    draws = [SPACE.sample(rng) for _ in range(4000)]
    for d in draws:
        assert SPACE.validate(d) == d
        assert d["batch"] == 64
    assert {d["layers"] for d in draws} == {1, 2, 3, 4}
    assert {d["act"] for d in draws} == {"relu", "tanh", None, 3}
    # Uniform ints: each of 4 values near 1000 draws.
    counts = np.bincount([d["layers"] for d in draws])[1:]
    assert counts.min() > 850
    # Log scale: about half the draws of lr fall below the geometric middle 1e-2.
    below = sum(d["lr"] < 1e-2 for d in draws) / len(draws)
    assert 0.45 < below < 0.55
    widths = [d["width"] for d in draws]
    assert min(widths) == 8 and max(widths) == 512


def test_unit_cube_round_trip() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        params = SPACE.sample(rng)
        u = SPACE.to_unit(params)
        assert u.shape == (SPACE.ndim,) == (5,)
        assert np.all((u >= 0) & (u <= 1))
        back = SPACE.from_unit(u)
        assert back["layers"] == params["layers"] and back["act"] == params["act"]
        assert back["width"] == params["width"]
        assert math.isclose(back["lr"], params["lr"], rel_tol=1e-9)
        assert math.isclose(back["x"], params["x"], rel_tol=1e-9, abs_tol=1e-12)
    assert SPACE.from_unit([0.0] * 5)["lr"] == pytest.approx(1e-4)
    assert SPACE.from_unit([0.999999999] * 5)["layers"] == 4
    with pytest.raises(ConfigError, match="expected 5 coordinates"):
        SPACE.from_unit([0.5])


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"lr": 2.0}, "missing"),
        ({"lr": 0.1, "x": 0.0, "layers": 2, "width": 8, "act": "relu", "batch": 64, "z": 1}, "unknown"),
        ({"lr": 2.0, "x": 0.0, "layers": 2, "width": 8, "act": "relu", "batch": 64}, "'lr'=2.0"),
        ({"lr": 0.1, "x": 0.0, "layers": 2.0, "width": 8, "act": "relu", "batch": 64}, "'layers'=2.0"),
        ({"lr": 0.1, "x": 0.0, "layers": 9, "width": 8, "act": "relu", "batch": 64}, "'layers'=9"),
        ({"lr": 0.1, "x": 0.0, "layers": 2, "width": 8, "act": "gelu", "batch": 64}, "'act'='gelu'"),
        ({"lr": 0.1, "x": 0.0, "layers": 2, "width": 8, "act": True, "batch": 64}, "'act'=True"),
        ({"lr": 0.1, "x": 0.0, "layers": 2, "width": 8, "act": "relu", "batch": 32}, "'batch'=32"),
        ({"lr": "0.1", "x": 0.0, "layers": 2, "width": 8, "act": "relu", "batch": 64}, "'lr'='0.1'"),
    ],
)
def test_validate_rejects_params_outside_the_space(params: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SPACE.validate(params)


def test_a_nan_constant_or_choice_matches_itself() -> None:
    # NaN != NaN, but a NaN constant (or choice) is still the value the space gave: checking
    # the params a trial was given (to enqueue them, or to map them to the unit cube for a
    # learning sampler) must accept it, and only it.
    space = SearchSpace({"eps": math.nan, "c": Categorical([math.nan, 1.0]), "x": Float(0.0, 1.0)})
    params = space.sample(np.random.default_rng(0))
    assert math.isnan(params["eps"])
    assert space.validate({"eps": math.nan, "c": math.nan, "x": 0.5})["c"] != 1.0
    assert space.to_unit({"eps": math.nan, "c": math.nan, "x": 0.5}).tolist() == [0.25, 0.5]
    with pytest.raises(ConfigError, match=r"'eps'=0\.0"):
        space.validate({"eps": 0.0, "c": 1.0, "x": 0.5})
    with pytest.raises(ConfigError, match=r"'c'=2\.0"):
        space.validate({"eps": math.nan, "c": 2.0, "x": 0.5})
    with pytest.raises(ConfigError, match="must be distinct"):
        Categorical([math.nan, float("nan"), 1.0])  # one choice twice


def test_serialization_round_trip() -> None:
    assert SearchSpace.from_dict(SPACE.to_dict()) == SPACE
    with pytest.raises(ConfigError, match="unknown dimension type 'weird'"):
        SearchSpace.from_dict({"a": {"type": "weird"}})


def test_random_sampler_seed() -> None:
    assert RandomSampler(5).seed == 5
    assert isinstance(RandomSampler().seed, int)
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ConfigError, match="seed"):
            RandomSampler(bad)  # type: ignore[arg-type]


def _clamped_reference(space: SearchSpace, u: list[float]) -> dict[str, object]:
    """The mapping as first written (min/max clamps, constants recomputed per call)."""
    out: dict[str, object] = {}
    coords = iter(u)
    for name, dim in space.items():
        if isinstance(dim, Constant):
            out[name] = dim.value
            continue
        x = next(coords)
        if isinstance(dim, Float):
            if dim.log:
                lo, hi = math.log(dim.low), math.log(dim.high)
                out[name] = min(dim.high, max(dim.low, math.exp(lo + x * (hi - lo))))
            else:
                out[name] = min(dim.high, max(dim.low, dim.low + x * (dim.high - dim.low)))
        elif isinstance(dim, Int):
            lo_e, hi_e = dim.low - 0.5, dim.high + 0.5
            if dim.log:
                lo_e, hi_e = math.log(lo_e), math.log(hi_e)
            v = lo_e + x * (hi_e - lo_e)
            v = math.exp(v) if dim.log else v
            out[name] = min(dim.high, max(dim.low, math.floor(v + 0.5)))
        else:
            n = len(dim.choices)
            out[name] = dim.choices[min(n - 1, max(0, int(x * n)))]
    return out


def test_sampling_matches_the_plain_formulas_bit_for_bit() -> None:
    # The unit mappers precompute their constants and spell out the clamps: same values,
    # same types, same signed zeros as min/max over the formulas.
    space = SearchSpace(
        {
            "a": Float(1e-4, 1.0, log=True),
            "b": Float(-0.0, 3.0),
            "c": Float(-2.0, 0.0),
            "k": 7,
            "i": Int(1, 100),
            "j": Int(1, 1000, log=True),
            "z": Categorical(["p", "q", "r"]),
        }
    )
    edges = [0.0, -0.0, 1.0, 0.999999999, 1e-300, 0.5, 1 - 2**-53]
    points = [[e] * 6 for e in edges] + np.random.default_rng(3).random((2000, 6)).tolist()
    for u in points:
        got, want = space.from_unit(u), _clamped_reference(space, u)
        assert repr(got) == repr(want) and [type(v) for v in got.values()] == [type(v) for v in want.values()]
    rng, ref = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(500):
        assert repr(space.sample(rng)) == repr(_clamped_reference(space, ref.random(6).tolist()))


def test_a_space_pickles_and_copies_and_samples_the_same_after() -> None:
    import copy
    import pickle

    space = SearchSpace({"a": Float(1e-3, 1.0, log=True), "k": 7, "z": Categorical(["p", "q"])})
    for twin in (pickle.loads(pickle.dumps(space)), copy.deepcopy(space), copy.copy(space)):
        assert twin == space and list(twin) == list(space)
        assert twin.sample(np.random.default_rng(5)) == space.sample(np.random.default_rng(5))
