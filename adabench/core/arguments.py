"""Typed keyword arguments of the registries' classes: the config's types and ranges come from here.

An optimizer's hyperparameters and a problem's options are its constructor's keyword arguments. Their types
come from the annotations (``lr: float``, ``eps_inside_sqrt: bool``, ``train_subset: int | None``,
``betas: tuple[float, float]``) and their ranges from the class's ``bounds`` (and the shared tables below), so
that a new optimizer or problem needs no schema edit and a string where a number belongs is refused with the
field's name.
"""
from __future__ import annotations

import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

import torch

# the largest seed torch's generators take without wrapping around; also the bound of other integer seeds
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Bound:
    """A closed or open interval; ``None`` is unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value) -> bool:
        """Whether ``value`` (a number, or each number of a tuple such as Adam's betas) lies in the interval."""
        if isinstance(value, (tuple, list)):
            return all(self.admits(item) for item in value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}{')' if self.high_open or self.high is None else ']'}"

    def schema(self) -> dict:
        schema = {}
        if self.low is not None:
            schema["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            schema["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        return schema


POSITIVE = Bound(0, low_open=True)
NON_NEGATIVE = Bound(0)
UNIT_OPEN = Bound(0, 1, high_open=True)  # a decay or momentum coefficient: 0 <= beta < 1
SEED_RANGE = Bound(0, MAX_SEED)


def type_schema(annotation, default) -> dict:
    """JSON schema of one annotated argument; unannotated ones are typed by their default value."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        if default is None or default is inspect.Parameter.empty:
            return {}
        annotation = type(default)
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return {"enum": list(arguments)}
    if origin in (typing.Union, types.UnionType):
        members = [a for a in arguments if a is not type(None)]
        # torch's optimizers take ``float | Tensor``: a config can only give the float
        members = [a for a in members if a is not torch.Tensor] or members
        schemas = [type_schema(member, inspect.Parameter.empty) for member in members]
        if type(None) in arguments:
            schemas.append({"type": "null"})
        return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    if origin in (tuple, list):
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            items = [type_schema(a, inspect.Parameter.empty) for a in arguments]
            return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
        item = type_schema(arguments[0], inspect.Parameter.empty) if arguments else {}
        return {"type": "array", "items": item}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if annotation in simple:
        return {"type": simple[annotation]}
    return {}


def with_bound(schema: dict, bound: Bound | None) -> dict:
    """Apply a numeric bound to a schema: to numbers, to the numbers inside a union, to an array's items."""
    if bound is None:
        return schema
    if schema.get("type") in ("number", "integer"):
        return {**schema, **bound.schema()}
    if "anyOf" in schema:
        return {"anyOf": [with_bound(part, bound) for part in schema["anyOf"]]}
    if schema.get("type") == "array":
        if "prefixItems" in schema:
            return {**schema, "prefixItems": [with_bound(item, bound) for item in schema["prefixItems"]]}
        return {**schema, "items": with_bound(schema.get("items", {}), bound)}
    return schema


def refuse_unknown(kind: str, name: str, what: str, given, accepted) -> None:
    """Refuse the names in ``given`` that ``accepted`` lacks: a problem's options, an optimizer's
    hyperparameters."""
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ValueError(f"{kind} {name!r} has no {what}(s) {unknown}; accepted: {sorted(accepted)}")


@dataclass(frozen=True)
class Argument:
    name: str
    default: Any
    schema: dict
    # where its type came from: "annotation", "default" (no annotation: its default's type), "untyped" (neither)
    source: str = "annotation"


def constructor_arguments(cls: type, skip: tuple[str, ...], bounds: dict[str, Bound]) -> dict[str, Argument]:
    """The keyword arguments the first ``__init__`` in ``cls``'s MRO accepts, typed and bounded."""
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            init = vars(klass)["__init__"]
            break
    else:  # pragma: no cover - object always has __init__
        return {}
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # annotations that cannot be evaluated here: fall back to the defaults' types
        hints = {}
    found = {}
    for param in inspect.signature(init).parameters.values():
        if param.name in ("self", *skip) or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, inspect.Parameter.empty)
        schema = with_bound(type_schema(annotation, param.default), bounds.get(param.name))
        if annotation is not inspect.Parameter.empty and annotation is not Any:
            source = "annotation"
        else:
            source = "untyped" if param.default is None or param.default is inspect.Parameter.empty else "default"
        found[param.name] = Argument(param.name, param.default, schema, source)
    return found


def canonical_value(value, schema: dict):
    """A config value as the class will see it: a float argument given as an int becomes a float, so that
    ``lr: 1`` and ``lr: 1.0`` are the same run."""
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if schema.get("type") == "array" and isinstance(value, (list, tuple)):
        items = schema.get("prefixItems") or [schema.get("items", {})] * len(value)
        return [canonical_value(v, s) for v, s in zip(value, items)]
    if "anyOf" in schema and isinstance(value, int) and not isinstance(value, bool):
        if any(part.get("type") == "number" for part in schema["anyOf"]) and not any(
                part.get("type") == "integer" for part in schema["anyOf"]):
            return float(value)
    return value


def same_value(a, b) -> bool:
    """Config equality that treats 1 and 1.0, and a list and a tuple with equal items, as the same."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b
