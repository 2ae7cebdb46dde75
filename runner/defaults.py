"""runner's JSON Schemas, each read once, and the defaults they declare.

A default of a spec or a policy key is written in its schema and nowhere else: the
loaders fill them in (`with_defaults`), and code that needs one names it by its key
path (`spec_default("order", "tif")` is "DAY"). Cheap to import: json only, no YAML, no
jsonschema, so the CLI can show defaults in its help.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).parent / "schemas"
SPEC_SCHEMA = SCHEMAS / "spec.schema.json"
POLICY_SCHEMA = SCHEMAS / "policy.schema.json"


@cache
def load_schema(path: Path) -> dict[str, Any]:
    """One of runner's JSON Schemas (the spec's, the policy's), read once."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def subschema(schema_path: Path, *keys: str) -> Mapping[str, Any]:
    """The schema of the value at `keys` (through object properties)."""
    sub: Mapping[str, Any] = load_schema(schema_path)
    for key in keys:
        sub = sub["properties"][key]
    return sub


def schema_default(schema_path: Path, *keys: str) -> Any:
    """The default the schema declares for the value at `keys`; KeyError when it has none.
    A list comes back as a tuple: the schema read once is shared, so it must not change."""
    value = subschema(schema_path, *keys)["default"]
    return tuple(value) if isinstance(value, list) else value


def spec_default(*keys: str) -> Any:
    """A spec key's default, e.g. spec_default("out_dir") is "data/exec"."""
    return schema_default(SPEC_SCHEMA, *keys)


def policy_default(*keys: str) -> Any:
    """A policy key's default, e.g. policy_default("paper_ports") is (7497, 4002)."""
    return schema_default(POLICY_SCHEMA, *keys)


def with_defaults(data: dict[str, Any], sub: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with the defaults of the (sub)schema `sub` filled in, also in the mappings
    that are there (a mapping that is absent stays absent)."""
    out = dict(data)
    for key, prop in sub.get("properties", {}).items():
        if key not in out and "default" in prop:
            out[key] = prop["default"]
        elif isinstance(out.get(key), dict):
            out[key] = with_defaults(out[key], prop)
    return out
