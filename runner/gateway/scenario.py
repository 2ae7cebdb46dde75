"""Scenario files for `runner gateway --script FILE.yaml`: scripted misbehaviour.

    sync_delay: {executions: 3}          # optional
    orders:
      probe-1:                           # an orderRef; "*" = any other order
        on_cancel: refuse                # optional: refuse_code / refuse_state / refusals
        duplicate: 2                     # optional
        steps:                           # optional (default: [ack])
          - ack: {}
          - fill: {qty: 5, px: 100.0, commission_delay: 2}
          - inactive                     # a bare name: a step with its defaults

Read with yaml.safe_load and checked whole before the gateway starts: anything
wrong is one `UsageError` line naming the file and the key (exit 2).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import ScenarioError as ScenarioError  # re-exported for importers
from runner.gateway.server import SYNC_KINDS
from runner.gateway.steps import STEPS_BY_NAME, Script, Step

ANY_ORDER = "*"
_SCRIPT_OPTIONS = ("on_cancel", "refuse_code", "refuse_state", "refusals", "duplicate")
_TOP_KEYS = ("sync_delay", "orders")


@dataclass(frozen=True, slots=True)
class Scenario:
    """What a scenario file asks for: sync delays and one script per orderRef
    (None: the default script, for any other order)."""

    sync_delay: dict[str, float] = field(default_factory=dict)
    scripts: dict[str | None, Script] = field(default_factory=dict)


def load_scenario(path: str | Path) -> Scenario:
    import yaml

    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(name, "", f"cannot read: {e.strerror or e}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError(name, where, f"not valid YAML ({getattr(e, 'problem', e)})") \
            from None
    return parse_scenario(doc, name)


def parse_scenario(doc: Any, name: str = "<scenario>") -> Scenario:
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ScenarioError(name, "", f"must be a mapping with {' / '.join(_TOP_KEYS)}")
    for key in doc:
        if key not in _TOP_KEYS:
            raise ScenarioError(name, str(key), f"unknown key (known: {', '.join(_TOP_KEYS)})")
    sync = _sync_delay(doc.get("sync_delay") or {}, name)
    orders = doc.get("orders") or {}
    if not isinstance(orders, dict):
        raise ScenarioError(name, "orders", "must be a mapping of orderRef to its script")
    scripts: dict[str | None, Script] = {}
    for ref, body in orders.items():
        key = f"orders.{ref}"
        if not isinstance(ref, str) or not ref:
            raise ScenarioError(name, key, "an orderRef must be a non-empty string")
        scripts[None if ref == ANY_ORDER else ref] = _script(body, name, key)
    return Scenario(sync, scripts)


def _sync_delay(raw: Any, name: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ScenarioError(name, "sync_delay", f"must be a mapping of {', '.join(SYNC_KINDS)}"
                            " to seconds")
    out: dict[str, float] = {}
    for kind, seconds in raw.items():
        key = f"sync_delay.{kind}"
        if kind not in SYNC_KINDS:
            raise ScenarioError(name, key, f"unknown (known: {', '.join(SYNC_KINDS)})")
        if not _is_number(seconds) or seconds < 0:
            raise ScenarioError(name, key, f"must be a number of seconds >= 0, got {seconds!r}")
        out[kind] = float(seconds)
    return out


def _script(body: Any, name: str, key: str) -> Script:
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ScenarioError(name, key, "must be a mapping (steps, on_cancel, ...)")
    for option in body:
        if option != "steps" and option not in _SCRIPT_OPTIONS:
            raise ScenarioError(name, f"{key}.{option}", "unknown option (known: steps, "
                                f"{', '.join(_SCRIPT_OPTIONS)})")
    raw_steps = body.get("steps", ["ack"])
    if not isinstance(raw_steps, list):
        raise ScenarioError(name, f"{key}.steps", "must be a list of steps")
    steps = tuple(_step(raw, name, f"{key}.steps[{i}]") for i, raw in enumerate(raw_steps))
    options = {k: body[k] for k in _SCRIPT_OPTIONS if k in body}
    for option, value in options.items():
        problem = _type_problem(value, _hints(Script)[option])
        if problem:
            raise ScenarioError(name, f"{key}.{option}", problem)
    try:
        return Script(steps, **options)
    except ValueError as e:
        raise ScenarioError(name, key, str(e)) from None


def _step(raw: Any, name: str, key: str) -> Step:
    args: Any
    if isinstance(raw, str):
        step_name, args = raw, {}
    elif isinstance(raw, dict) and len(raw) == 1:
        [(step_name, args)] = raw.items()
        args = {} if args is None else args
    else:
        raise ScenarioError(name, key, "a step is a name, or a one-key mapping "
                            "`name: {field: value, ...}`")
    cls = STEPS_BY_NAME.get(str(step_name))
    if cls is None:
        raise ScenarioError(name, key, f"unknown step {step_name!r} (known: "
                            f"{', '.join(STEPS_BY_NAME)})")
    key = f"{key}.{step_name}"
    if not isinstance(args, dict):
        raise ScenarioError(name, key, "its fields must be a mapping, e.g. {qty: 5, px: 100}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _hints(cls)
    for arg, value in args.items():
        if arg not in fields:
            raise ScenarioError(name, f"{key}.{arg}",
                                f"unknown field (known: {', '.join(fields)})")
        problem = _type_problem(value, hints[arg])
        if problem:
            raise ScenarioError(name, f"{key}.{arg}", problem)
    missing = [f.name for f in fields.values() if f.name not in args
               and f.default is dataclasses.MISSING]
    if missing:
        raise ScenarioError(name, key, f"missing field(s): {', '.join(missing)}")
    try:
        made: Step = cls(**args)
    except ValueError as e:
        raise ScenarioError(name, key, str(e)) from None
    return made


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _type_problem(value: Any, hint: Any) -> str:
    """'' if `value` fits the type `hint`, else what is wrong."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        options = typing.get_args(hint)
        if any(not _type_problem(value, h) for h in options):
            return ""
        names = [("null" if h is type(None) else getattr(h, "__name__", str(h)))
                 for h in options]
        return f"must be {' or '.join(names)}, got {value!r}"
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        return "" if value in allowed else (
            f"must be one of {', '.join(map(str, allowed))}, got {value!r}")
    if hint is type(None):
        return "" if value is None else "must be null"
    if hint is float:
        return "" if _is_number(value) else f"must be a number, got {value!r}"
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return "" if ok else f"must be an integer, got {value!r}"
    if hint is bool:
        return "" if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if hint is str:
        return "" if isinstance(value, str) else f"must be a string, got {value!r}"
    return ""
