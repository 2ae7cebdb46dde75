"""A positioned document (runner.yamldoc) against one of runner's JSON Schemas.

Each schema error becomes one message at the mark of the value (or, for an unknown
key, of the key) with the fix: the nearest known key ("did you mean max_qty?"), the
choices, the bound. The data comes back with the schema's defaults filled in
(runner.defaults: the schemas are the one place a default is written).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from runner.defaults import load_schema, with_defaults
from runner.yamldoc import Doc, Path_, check_values, nonzero, show


@cache
def validator_for(path: Path) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(path))


def schema_checked(doc: Doc, schema_path: Path,
                   hints: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """A document (a mapping) checked against one of runner's schemas: non-finite numbers
    and every schema error recorded on `doc`; the data with its defaults, or None.
    `hints`: words added to a pattern error, by the key's name."""
    check_values(doc, doc.data, ())
    for error in validator_for(schema_path).iter_errors(doc.data):
        path = tuple(error.absolute_path)
        if not any(path[:n] in doc.bad for n in range(len(path) + 1)):  # said already
            _schema_error(doc, error, hints or {})
    return None if doc.errors else with_defaults(doc.data, load_schema(schema_path))


def _schema_error(doc: Doc, error: Any, hints: Mapping[str, str]) -> None:
    path: Path_ = tuple(error.absolute_path)
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        for key in sorted(set(value) - set(allowed), key=str):
            doc.error(path + (str(key),), f"unknown key{suggest(str(key), allowed)}", key=True)
    elif kind == "required":
        for key in expected:
            if key not in value:
                doc.error(path, f"missing required key '{key}'")
    elif kind == "type":
        shown = "" if isinstance(value, (dict, list)) else f" {show(value)}"
        doc.error(path, f"expected {_a(expected)}, got {type_name(value)}{shown}"
                        f"{_yaml11_hint(value, expected)}")
    elif kind == "enum":
        choices = [str(c) for c in expected]
        close = suggest(str(value), choices)
        doc.error(path, f"{show(value)} is not one of {', '.join(choices)}"
                        f"{close if 'did you mean' in close else ''}")
    elif kind == "const":
        doc.error(path, f"must be {show(expected)}, got {show(value)}")
    elif kind in _BOUNDS:
        doc.error(path, f"must be {_BOUNDS[kind]} {expected}, got {show(value)}")
    elif kind == "pattern":
        hint = hints.get(str(path[-1]) if path else "", "")
        doc.error(path, f"{show(value)} does not match {expected}{hint}")
    elif kind == "minLength":
        doc.error(path, "must not be empty")
    else:
        doc.error(path, error.message)


def _yaml11_hint(value: Any, expected: Any) -> str:
    """YAML 1.1 reads 1e-5 (no dot, or no exponent sign) as text; say how to write it."""
    if not isinstance(value, str) or "number" not in str(expected):
        return ""
    m = _EXPONENT.match(value)
    if not m:
        return ""
    number = float(value.replace("_", ""))
    if math.isinf(number) or (number == 0 and nonzero(value)):
        return f" (YAML reads {value} as text; as a number it would not fit a 64-bit float)"
    mantissa = m[1] if "." in m[1] else f"{m[1]}.0"
    sign = m[2] if m[2][:1] in "+-" else f"+{m[2]}"
    return f" (YAML reads {value} as text; write {mantissa}e{sign})"


_EXPONENT = re.compile(r"^([-+]?[0-9][0-9_]*(?:\.[0-9_]*)?)[eE]([-+]?[0-9]+)\Z")


_BOUNDS = {"exclusiveMinimum": ">", "minimum": ">=", "maximum": "<=", "exclusiveMaximum": "<"}


def suggest(word: str, choices: Sequence[str]) -> str:
    """` (did you mean max_qty?)`, else the choices; "" when there are none."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        close = [c for c in choices if c.lower() == word.lower()]
    if close:
        return f" (did you mean {close[0]}?)"
    return f" (expected one of: {', '.join(choices)})" if choices else ""


def _a(expected: Any) -> str:
    names = {"object": "a mapping", "array": "a list", "number": "a number", "string": "a string",
             "boolean": "true or false", "integer": "a whole number"}
    if isinstance(expected, list):
        return " or ".join(names.get(e, str(e)) for e in expected)
    return names.get(expected, str(expected))


def type_name(value: Any) -> str:
    """What a YAML value is, in a message's words ("a mapping", "string", "null")."""
    if isinstance(value, bool):
        return "boolean"
    return {dict: "a mapping", list: "a list", str: "string", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)

