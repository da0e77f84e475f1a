"""The service's request bodies as JSON Schema, a validator for the subset they use, and the
conversion of a validated body into the library's own objects.

The schemas are the single source of truth: the OpenAPI document (``_openapi.py``) publishes
exactly the dicts that requests are checked against, so the document cannot drift from the
behaviour. The study configuration uses the format ``create_study`` stores
(``SearchSpace.to_dict``, ``ASHA.to_dict``, ``Sampler.to_dict``, a direction string), with
defaults for fields left out; the library's own checks then reject bad values with messages that
name them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from aio_ashb import (
    ASHA,
    Categorical,
    ConfigError,
    Constant,
    Direction,
    Float,
    Int,
    RandomSampler,
    Sampler,
    SearchSpace,
    TPESampler,
    TrialState,
)

Schema: TypeAlias = dict[str, Any]

NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME_RE = re.compile(NAME_PATTERN, re.ASCII)
NAME_RULE = "1-128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"


class RequestError(Exception):
    """A request the service refuses: an HTTP status, a short error code and a detail that
    names the bad value. Converted to a JSON response where it is raised."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def invalid(detail: str) -> RequestError:
    return RequestError(422, "invalid_request", detail)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may ask of the service; beyond these it answers 4xx.

    The defaults bound what one request can make the server hold in memory: a study's trials,
    the trials running at once in one run, the runs at once, the jobs handed out per study, the
    steps of a trial (``max_resource``), the request body and a page of trials.
    """

    max_studies: int = 1000
    max_trials: int = 100_000
    max_concurrency: int = 1000
    max_runs: int = 16
    max_open_jobs: int = 10_000
    max_resource: int = 1_000_000
    max_params: int = 100
    max_body_bytes: int = 1 << 20
    max_page: int = 1000

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Limits.{name} must be a positive integer, got {value!r}")


# ------------------------------------------------------------------ the schemas
_SCALAR: Schema = {"type": ["string", "number", "boolean", "null"]}
NAME: Schema = {"type": "string", "pattern": NAME_PATTERN, "description": NAME_RULE}
_POSITIVE: Schema = {"type": "number", "exclusiveMinimum": 0}


def schemas(limits: Limits) -> dict[str, Schema]:
    """Every request body (and query) schema, by name, for these limits."""
    dimension: Schema = {
        "type": "object",
        "description": "as SearchSpace.to_dict writes it; 'log' defaults to false",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": {"enum": ["float", "int", "categorical", "constant"]},
            "low": {"type": "number"},
            "high": {"type": "number"},
            "log": {"type": "boolean"},
            "choices": {"type": "array", "minItems": 1, "maxItems": 1000, "items": _SCALAR},
            "value": _SCALAR,
        },
    }
    scheduler: Schema = {
        "type": "object",
        "description": "ASHA.to_dict; fields left out take ASHA()'s defaults",
        "additionalProperties": False,
        "properties": {
            "type": {"enum": ["asha"]},
            "min_resource": {"type": "integer", "minimum": 1},
            "max_resource": {"type": "integer", "minimum": 2, "maximum": limits.max_resource},
            "reduction_factor": {"type": "integer", "minimum": 2},
            "brackets": {"anyOf": [{"type": "integer", "minimum": 1}, {"enum": ["all"]}]},
            "mode": {"enum": ["promotion", "stopping"]},
        },
    }
    sampler: Schema = {
        "type": "object",
        "description": "Sampler.to_dict: random takes a seed, tpe its options too (default: tpe, new seed)",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": {"enum": ["random", "tpe"]},
            "seed": {"type": ["integer", "null"], "minimum": 0},
            "n_candidates": {"type": "integer"},
            "gamma": {"type": "number"},
            "random_fraction": {"type": "number"},
            "constant_liar": {"type": "boolean"},
            "bandwidth_factor": {"type": "number"},
            "min_bandwidth": {"type": "number"},
            "max_points": {"type": "integer"},
        },
    }
    trials: Schema = {"type": "integer", "minimum": 1, "maximum": limits.max_trials}
    return {
        "CreateStudy": {
            "type": "object",
            "required": ["name", "space"],
            "additionalProperties": False,
            "properties": {
                "name": NAME,
                "space": {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": limits.max_params,
                    "propertyNames": {"type": "string", "minLength": 1, "maxLength": 128},
                    "additionalProperties": dimension,
                },
                "direction": {"enum": ["minimize", "maximize"]},
                "scheduler": scheduler,
                "sampler": sampler,
            },
        },
        "StartRun": {
            "type": "object",
            "required": ["objective", "max_trials"],
            "additionalProperties": False,
            "properties": {
                "objective": {"type": "string", "maxLength": 200},
                "max_trials": {**trials, "description": "trials in the study, earlier runs included"},
                "concurrency": {"type": "integer", "minimum": 1, "maximum": limits.max_concurrency},
                "timeout": _POSITIVE,
                "trial_timeout": _POSITIVE,
                "max_failures": {"type": "integer", "minimum": 0},
                "max_paused": {"type": "integer", "minimum": 1},
            },
        },
        "AskJob": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"max_trials": {**trials, "description": f"default {limits.max_trials}"}},
        },
        "Report": {
            "type": "object",
            "required": ["value"],
            "additionalProperties": False,
            "properties": {
                "value": {"anyOf": [{"type": "number"}, {"enum": ["nan", "inf", "-inf"]}]},
                "step": {"type": "integer", "minimum": 1, "description": "default: the job's target"},
                "checkpoint": {"description": "any JSON value, handed to the worker that resumes"},
            },
        },
        "Fail": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {"error": {"type": "string", "maxLength": 100_000}},
        },
        "Empty": {"type": "object", "additionalProperties": False, "properties": {}},
        "TrialsQuery": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "offset": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer", "minimum": 1, "maximum": limits.max_page},
                "state": {"enum": [s.value for s in TrialState]},
            },
        },
    }


# ------------------------------------------------------------------ the validator
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is(value: object, kind: str) -> bool:
    if isinstance(value, bool) and kind != "boolean":
        return False  # JSON's true is not a number
    return isinstance(value, _TYPES[kind])


def _fails(value: Any, schema: Schema, where: str) -> str | None:
    """Why ``value`` does not match ``schema`` (the first reason), or None."""
    if "anyOf" in schema:
        reasons = [_fails(value, s, where) for s in schema["anyOf"]]
        if all(reasons):
            return reasons[0]
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            return f"{where} must be {' or '.join(kinds)}, got {value!r}"
    if "enum" in schema and value not in schema["enum"]:
        options = ", ".join(repr(v) for v in schema["enum"])
        return f"{where} must be one of {options}, got {value!r}"
    if _is(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where} must be >= {schema['minimum']}, got {value!r}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where} must be at most {schema['maximum']} (this service's limit), got {value!r}"
        if "exclusiveMinimum" in schema and not value > schema["exclusiveMinimum"]:
            return f"{where} must be > {schema['exclusiveMinimum']}, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where} must be a finite number, got {value!r}"
    if isinstance(value, str):
        if len(value) > schema.get("maxLength", math.inf):
            return f"{where} must be at most {schema['maxLength']} characters, got {len(value)}"
        if len(value) < schema.get("minLength", 0):
            return f"{where} must be at least {schema['minLength']} characters, got {value!r}"
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value, re.ASCII):
            return f"{where} must be {schema.get('description', schema['pattern'])}, got {value!r}"
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", math.inf):
            return f"{where} must have at most {schema['maxItems']} items, got {len(value)}"
        if len(value) < schema.get("minItems", 0):
            return f"{where} must have at least {schema['minItems']} item(s), got {value!r}"
        if "items" in schema:
            for i, item in enumerate(value):
                if (why := _fails(item, schema["items"], f"{where}[{i}]")) is not None:
                    return why
    if isinstance(value, dict):
        return _object_fails(value, schema, where)
    return None


def _object_fails(value: dict[str, Any], schema: Schema, where: str) -> str | None:
    props: dict[str, Schema] = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in value:
            return f"{where} is missing the required field {key!r}"
    if len(value) > schema.get("maxProperties", math.inf):
        return f"{where} must have at most {schema['maxProperties']} fields, got {len(value)}"
    if len(value) < schema.get("minProperties", 0):
        return f"{where} must have at least {schema['minProperties']} field(s), got none"
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        inner = key if where.startswith("the ") else f"{where}.{key}"  # "the body" is the root
        if "propertyNames" in schema and (why := _fails(key, schema["propertyNames"], f"a name in {where}")):
            return why
        if key in props:
            why = _fails(item, props[key], inner)
        elif extra is False:
            known = ", ".join(sorted(props)) or "none"
            return f"unknown field {key!r} in {where} (known fields: {known})"
        elif isinstance(extra, dict):
            why = _fails(item, extra, inner)
        else:
            why = None
        if why is not None:
            return why
    return None


def check(value: Any, schema: Schema, where: str = "the body") -> dict[str, Any]:
    """``value`` if it matches the object ``schema``, else a 422 :class:`RequestError`."""
    why = _fails(value, schema, where)
    if why is not None:
        raise invalid(why)
    return dict(value)


#: How deep a request body's arrays and objects may nest (a study's body needs about 5 levels).
#: Python's own parser gives up at a depth that depends on its version (about 1,000 levels on
#: CPython 3.11, 5,000 on 3.12, 100,000 on 3.13): the limit makes the answer the same on all.
MAX_DEPTH = 64


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` has arrays or objects nested more than ``limit`` deep (iteratively:
    the body got this far because the parser managed its depth, a recursive walk might not)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((inner, depth + 1) for inner in item)
    return False


def _too_deep() -> RequestError:
    return RequestError(
        400, "malformed_json", f"the body's JSON nests arrays or objects more than {MAX_DEPTH} levels deep"
    )


def parse_json(raw: bytes) -> Any:
    """The JSON text of a request body, strictly: UTF-8, no NaN or Infinity literals, no lone
    surrogates (they would be stored, then break every response that shows them), arrays and
    objects nested at most MAX_DEPTH deep."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=refuse)
    except UnicodeDecodeError as exc:
        raise RequestError(400, "malformed_json", f"the body is not UTF-8 text: {exc}") from None
    except ValueError as exc:  # json.JSONDecodeError is one
        raise RequestError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # deeper than the parser goes, so deeper than MAX_DEPTH
        raise _too_deep() from None
    if _nests_deeper(value, MAX_DEPTH):
        raise _too_deep()
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise invalid(
            f"the body contains {bad!r}, a lone surrogate, which is not valid Unicode text"
        ) from None
    return value


def check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise invalid(f"a study name must be {NAME_RULE}, got {name!r}")
    return name


# ------------------------------------------------------------------ into library objects
_DIMENSION_FIELDS = {
    "float": ({"low", "high"}, {"log"}),
    "int": ({"low", "high"}, {"log"}),
    "categorical": ({"choices"}, set()),
    "constant": ({"value"}, set()),
}


def space_from_json(data: Mapping[str, Mapping[str, Any]]) -> SearchSpace:
    items: dict[str, Any] = {}
    for name, spec in data.items():
        kind = spec["type"]
        a_kind = f"an {kind}" if kind == "int" else f"a {kind}"
        required, optional = _DIMENSION_FIELDS[kind]
        for key in spec:
            if key != "type" and key not in required | optional:
                raise invalid(f"space.{name}: field {key!r} does not apply to {a_kind} dimension")
        missing = sorted(required - set(spec))
        if missing:
            raise invalid(f"space.{name}: {a_kind} dimension needs {missing[0]!r}")
        if kind == "float":
            items[name] = Float(spec["low"], spec["high"], log=spec.get("log", False))
        elif kind == "int":
            items[name] = Int(spec["low"], spec["high"], log=spec.get("log", False))
        elif kind == "categorical":
            items[name] = Categorical(spec["choices"])
        else:
            items[name] = Constant(spec["value"])
    return SearchSpace(items)


def scheduler_from_json(data: Mapping[str, Any] | None) -> ASHA:
    options = {k: v for k, v in (data or {}).items() if k != "type"}
    return ASHA(**options)


_TPE_ONLY = set(TPESampler(0).to_dict()) - {"type", "seed"}


def sampler_from_json(data: Mapping[str, Any] | None) -> Sampler:
    if data is None:  # the library's default
        return TPESampler()
    options = {k: v for k, v in data.items() if k not in ("type", "seed")}
    if data["type"] == "random":
        if options:
            raise invalid(f"sampler: field {sorted(options)[0]!r} does not apply to the random sampler")
        return RandomSampler(data.get("seed"))
    unknown = set(options) - _TPE_ONLY
    if unknown:  # the schema lists exactly the TPE options; kept in step with TPESampler here
        raise invalid(f"sampler: unknown TPE option {sorted(unknown)[0]!r}")
    return TPESampler(data.get("seed"), **options)


def direction_from_json(value: str | None) -> Direction:
    return Direction(value or "minimize")


def value_from_json(value: float | int | str) -> float:
    """A reported value: a JSON number, or "nan", "inf", "-inf" (JSON has no literal for them)."""
    return float(value)
