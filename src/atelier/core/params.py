"""Reading parameter values into typed dataclass fields, with errors that name the key.

Shared by the validated configs (``TrainingConfig``, ``EvaluationConfig``): YAML and
``kedro run --params`` hand values over as ints, floats, bools or strings, and a value of
the wrong kind must stop the run with ``<namespace>.<key> must be ...``, not fail deep
inside torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any


def as_int(key: str, value: Any) -> int:
    """``value`` as a whole number (``3``, ``3.0``, ``"3"``); ``key`` names it in errors."""
    try:
        whole = not isinstance(value, bool) and float(value).is_integer()
    except (TypeError, ValueError):
        whole = False
    if not whole:
        raise ValueError(f"{key} must be a whole number, got {value!r}.")
    return int(float(value))


def as_float(key: str, value: Any) -> float:
    """``value`` as a number; ``key`` names it in errors."""
    if isinstance(value, bool):
        raise ValueError(f"{key} must be a number, got {value!r}.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, got {value!r}.") from None


def as_bool(key: str, value: Any) -> bool:
    """``value`` as true or false (also the strings ``"true"``/``"false"``)."""
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ValueError(f"{key} must be true or false, got {value!r}.")


def check_keys(namespace: str, params: Mapping[str, Any], cls: type, source: str) -> None:
    """Refuse unknown and missing keys of dataclass ``cls`` in ``params`` (``source``: the
    file that defines them, named in the message)."""
    names = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(names))
    missing = sorted(set(names) - set(params))
    if unknown:
        raise ValueError(f"Unknown {namespace} parameter(s) {unknown}. Known parameters: {names} "
                         f"(see {source}).")
    if missing:
        raise ValueError(f"Missing {namespace} parameter(s) {missing}; {source} defines them all.")


def typed_fields(namespace: str, params: Mapping[str, Any], cls: type, source: str,
                 special: Mapping[str, Callable[[str, Any], Any]] | None = None) -> dict[str, Any]:
    """``params`` checked against dataclass ``cls`` (:func:`check_keys`) and read into its
    fields' types (``int``, ``float``, ``bool``, ``str | bool`` = ``"auto"`` or a bool, else
    ``str``); ``special`` reads named fields its own way (``reader(key, value)``)."""
    check_keys(namespace, params, cls, source)
    readers = {"int": as_int, "float": as_float, "bool": as_bool,
               "str | bool": lambda key, value: value if value == "auto" else as_bool(key, value)}
    values = {}
    for field in dataclasses.fields(cls):
        reader = (special or {}).get(field.name) or readers.get(field.type)
        value = params[field.name]
        values[field.name] = reader(f"{namespace}.{field.name}", value) if reader else str(value)
    return values
