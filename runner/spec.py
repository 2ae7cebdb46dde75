"""Spec files: YAML (multi-document) -> JSON Schema -> semantic checks -> frozen Specs.

Every error names `file:line:col`, the key path and the fix, and all errors of a
file are reported together. YAML is read with the safe loader only, and files that
are too big, too deep, binary or alias bombs are refused before anything else.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from runner.errors import SpecError

SCHEMA_PATH = Path(__file__).parent / "schemas" / "spec.schema.json"
MAX_BYTES = 1 << 20  # a spec is a few hundred bytes; 1 MiB is a mistake or an attack
MAX_DEPTH = 16  # a spec nests 3 levels deep
MAX_NODES = 20_000  # counted with aliases expanded: stops "billion laughs" early

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Mark:
    line: int  # 1-based
    col: int  # 1-based


@dataclass(frozen=True, slots=True)
class OrderSpec:
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    side: str
    qty: float
    limit: float | None
    tif: str
    tag: str | None
    allow_market: bool
    outside_rth: bool


@dataclass(frozen=True, slots=True)
class Limits:
    max_qty: float | None = None
    max_notional: float | None = None


@dataclass(frozen=True, slots=True)
class Expect:
    state: str | None = None
    fill_qty: float | None = None
    avg_px: float | None = None
    events: tuple[str, ...] | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Spec:
    source: str  # the file as the user named it, or "<command line>"
    index: int  # document number in the file, 0-based
    name: str
    kind: str
    mode: str
    order: OrderSpec | None
    ttl_sec: float
    ttl_backstop: bool
    bars_path: str | None
    out_dir: str
    limits: Limits
    sim: tuple[tuple[str, Any], ...]  # the spec's sim: knobs, defaults filled
    expect: Expect | None
    line: int = 1  # where the document starts


@dataclass
class _Doc:
    """One YAML document while it is being checked."""

    source: str
    index: int
    data: Any
    marks: dict[Path_, Mark] = field(default_factory=dict)  # value positions
    key_marks: dict[Path_, Mark] = field(default_factory=dict)  # key positions
    errors: list[tuple[Mark, str]] = field(default_factory=list)

    def mark(self, path: Path_, key: bool = False) -> Mark:
        table = self.key_marks if key else self.marks
        while path not in table and path:
            path = path[:-1]
        return table.get(path) or self.marks.get((), Mark(1, 1))

    def error(self, path: Path_, message: str, key: bool = False) -> None:
        where = _dotted(path)
        self.errors.append((self.mark(path, key), f"{where}: {message}" if where else message))


@cache
def load_schema(path: Path) -> dict[str, Any]:
    """One of runner's JSON Schemas (the spec's, the policy's), read once."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


@cache
def validator_for(path: Path) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(path))


def schema() -> dict[str, Any]:
    return load_schema(SCHEMA_PATH)


# --- reading files -----------------------------------------------------------------


def spec_files(paths: Sequence[str]) -> list[str]:
    """Files named, and *.yaml / *.yml under the folders named, in a stable order."""
    found: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found += sorted(
                str(f)
                for f in path.rglob("*")
                if f.suffix in (".yaml", ".yml") and f.is_file() and not _hidden(f, path)
            )
        else:
            found.append(p)
    return found


def _hidden(f: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in f.relative_to(root).parts)


def load(path: str, root: Path | None = None, allow_outside: bool = False) -> list[Spec]:
    """All specs in one file, or SpecError listing every problem in it."""
    text = _read_text(path)
    return load_text(text, path, root, allow_outside)


def load_text(
    text: str, source: str, root: Path | None = None, allow_outside: bool = False
) -> list[Spec]:
    docs, errors = _parse(text, source)
    specs: list[Spec] = []
    invalid = 1 if errors else 0  # a syntax error spoils the rest of the file
    for doc in docs:
        spec = _check(doc, root or Path.cwd(), allow_outside)
        errors += [(m, msg) for m, msg in doc.errors]
        if spec is not None:
            specs.append(spec)
        else:
            invalid += 1
    if errors:
        errors.sort(key=lambda e: (e[0].line, e[0].col))
        lines = [f"{source}:{m.line}:{m.col}: {msg}" for m, msg in _unique(errors)]
        raise SpecError(lines, specs=len(specs) + invalid, invalid=invalid)
    return specs


def from_mapping(
    data: Mapping[str, Any], source: str = "<command line>", root: Path | None = None,
    allow_outside: bool = False,
) -> Spec:
    """A spec built in memory (the classic commands): the same checks, no file marks."""
    doc = _Doc(source, 0, _plain(data))
    spec = _check(doc, root or Path.cwd(), allow_outside)
    if doc.errors or spec is None:
        raise SpecError([f"{source}: {msg}" for _, msg in doc.errors])
    return spec


def _plain(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {str(k): _plain(v) for k, v in data.items()}
    return data


def _read_text(path: str) -> str:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise _file_error(path, f"file is {size:,} bytes; specs are limited to 1 MiB")
        raw = p.read_bytes()
    except OSError as e:
        raise _file_error(path, f"cannot read file: {e.strerror or e}") from None
    if b"\0" in raw:
        raise _file_error(path, "binary file, not YAML (contains NUL bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        message = f"not UTF-8 text (byte {e.start}); save the spec as UTF-8"
        raise _file_error(path, message) from None


def _file_error(path: str, message: str) -> SpecError:
    return SpecError([f"{path}:1:1: {message}"])


def _parse(text: str, source: str) -> tuple[list[_Doc], list[tuple[Mark, str]]]:
    """YAML text -> documents with marks; syntax errors as (mark, message)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs: list[_Doc] = []
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=loader)):
            docs.append(_document(node, source, index))
    except yaml.MarkedYAMLError as e:
        return docs, [_yaml_error(e, text)]
    except yaml.reader.ReaderError as e:  # a character YAML does not allow anywhere
        before = text[:e.position]
        where = Mark(before.count("\n") + 1, len(before) - before.rfind("\n"))
        return docs, [(where, f"YAML syntax error: character {e.character!r} is not allowed "
                              "in YAML (control characters); remove it")]
    except RecursionError:
        return docs, [(Mark(1, 1), f"nesting deeper than {MAX_DEPTH} levels")]
    if not docs:
        return docs, [(Mark(1, 1), "empty file: no spec in it (start with `version: 1`)")]
    return docs, []


def _yaml_error(e: yaml.MarkedYAMLError, text: str = "") -> tuple[Mark, str]:
    mark = e.problem_mark or e.context_mark
    where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
    problem = (e.problem or "invalid YAML").strip()
    if "constructor for the tag" in problem:
        tag = problem.split("tag", 1)[1].strip(" '").replace("tag:yaml.org,2002:", "!!")
        return where, f"unsupported YAML tag {tag}: specs are plain YAML (safe loader only)"
    if mark and _char_at(text, mark.line, mark.column) == "\t":
        return where, "YAML syntax error: tab character; YAML indents with spaces only"
    context = f"{e.context.strip()}: " if e.context else ""
    return where, f"YAML syntax error: {context}{problem}"


def _char_at(text: str, line: int, col: int) -> str:
    lines = text.splitlines()
    return lines[line][col] if line < len(lines) and col < len(lines[line]) else ""


class _Walk:
    """Checks node limits, duplicate keys and records marks before construction."""

    def __init__(self, doc: _Doc) -> None:
        self.doc = doc
        self.nodes = 0

    def node(self, node: yaml.Node, path: Path_, depth: int) -> bool:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.doc.error((), f"document too large: more than {MAX_NODES:,} nodes "
                               "(aliases expanded); is it an alias bomb?")
            return False
        if depth > MAX_DEPTH:
            self.doc.error(path, f"nesting deeper than {MAX_DEPTH} levels")
            return False
        self.doc.marks.setdefault(path, _mark(node))
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return all(self.node(n, path + (i,), depth + 1) for i, n in enumerate(node.value))
        return True

    def mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> bool:
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            if key in seen:
                self.doc.errors.append(
                    (_mark(key_node), f"{_dotted(path + (key,))}: duplicate key")
                )
            seen.add(key)
            self.doc.key_marks.setdefault(path + (key,), _mark(key_node))
            if not self.node(value_node, path + (key,), depth + 1):
                return False
        return True


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _document(node: yaml.Node | None, source: str, index: int) -> _Doc:
    doc = _Doc(source, index, None)
    if node is None:
        doc.error((), f"document {index + 1} is empty")
        return doc
    doc.marks[()] = _mark(node)
    if not _Walk(doc).node(node, (), 0) or doc.errors:
        return doc
    try:
        doc.data = yaml.constructor.SafeConstructor().construct_document(node)
    except yaml.MarkedYAMLError as e:
        doc.errors.append(_yaml_error(e))
    return doc


# --- checking ----------------------------------------------------------------------


def _check(doc: _Doc, root: Path, allow_outside: bool) -> Spec | None:
    if doc.errors:
        return None
    if not isinstance(doc.data, dict):
        if doc.data is None:
            doc.error((), f"document {doc.index + 1} is empty (remove the extra '---' "
                          "or write a spec in it)")
        else:
            doc.error((), "a spec must be a mapping of keys (`version: 1`, `kind: ...`), "
                          f"got {_type_name(doc.data)}")
        return None
    data = schema_checked(doc, SCHEMA_PATH)
    if data is None:
        return None
    _semantic(doc, data, root, allow_outside)
    if doc.errors:
        return None
    return _build(doc, data)


def schema_checked(doc: _Doc, schema_path: Path) -> dict[str, Any] | None:
    """A document (a mapping) checked against one of runner's schemas: non-finite numbers
    and every schema error recorded on `doc`; the data with its defaults, or None."""
    _check_finite(doc, doc.data, ())
    for error in validator_for(schema_path).iter_errors(doc.data):
        _schema_error(doc, error)
    return None if doc.errors else _with_defaults(doc.data, load_schema(schema_path))


def _check_finite(doc: _Doc, value: Any, path: Path_) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        doc.error(path, f"{value} is not a finite number")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_finite(doc, v, path + (str(k),))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(doc, v, path + (i,))


def _schema_error(doc: _Doc, error: Any) -> None:
    path: Path_ = tuple(error.absolute_path)
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        for key in sorted(set(value) - set(allowed), key=str):
            doc.error(path + (str(key),), f"unknown key{_suggest(str(key), allowed)}", key=True)
    elif kind == "required":
        for key in expected:
            if key not in value:
                doc.error(path, f"missing required key '{key}'")
    elif kind == "type":
        shown = "" if isinstance(value, (dict, list)) else f" {_show(value)}"
        doc.error(path, f"expected {_a(expected)}, got {_type_name(value)}{shown}")
    elif kind == "enum":
        choices = [str(c) for c in expected]
        close = _suggest(str(value), choices)
        doc.error(path, f"{_show(value)} is not one of {', '.join(choices)}"
                        f"{close if 'did you mean' in close else ''}")
    elif kind == "const":
        doc.error(path, f"must be {_show(expected)}, got {_show(value)}")
    elif kind in _BOUNDS:
        doc.error(path, f"must be {_BOUNDS[kind]} {expected}, got {_show(value)}")
    elif kind == "pattern":
        hint = _PATTERN_HINTS.get(str(path[-1]) if path else "", "")
        doc.error(path, f"{_show(value)} does not match {expected}{hint}")
    elif kind == "minLength":
        doc.error(path, "must not be empty")
    else:
        doc.error(path, error.message)


_BOUNDS = {"exclusiveMinimum": ">", "minimum": ">=", "maximum": "<=", "exclusiveMaximum": "<"}


_PATTERN_HINTS = {
    "symbol": " (upper-case letters, digits, '.', '/', '-', space; e.g. SPY or BRK B)",
    "currency": " (a three-letter ISO code in capitals, e.g. USD)",
    "exchange": " (an IB exchange code in capitals, e.g. SMART)",
    "tag": " (letters, digits, '_', '.', ':', '-'; no spaces)",
    "name": " (letters, digits, '_', '.', ':', '-'; no spaces)",
}


def _suggest(word: str, choices: Sequence[str]) -> str:
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


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {dict: "a mapping", list: "a list", str: "string", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "{...}" if isinstance(value, dict) else "[...]"
    text = json.dumps(value) if isinstance(value, str) else repr(value)
    if isinstance(value, str):
        text = "'" + text[1:-1] + "'"
    return text if len(text) <= 40 else text[:37] + "..."


def _with_defaults(data: dict[str, Any], sub: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key, prop in sub.get("properties", {}).items():
        if key not in out and "default" in prop:
            out[key] = prop["default"]
        elif isinstance(out.get(key), dict):
            out[key] = _with_defaults(out[key], prop)
    return out


def _semantic(doc: _Doc, data: dict[str, Any], root: Path, allow_outside: bool) -> None:
    kind = data["kind"]
    given = doc.data
    if kind == "handshake":
        for key in ("order", "ttl_sec", "limits", "expect", "bars_path"):
            if key in given:
                doc.error((key,), "not used by kind handshake; remove it", key=True)
    else:
        _check_order(doc, data)
    if kind == "sanity-cancel" and "ttl_sec" in given:
        doc.error(("ttl_sec",), "only one-shot uses ttl_sec (sanity-cancel cancels right after "
                                "the ACK); remove it", key=True)
    for key in ("bars_path", "out_dir"):
        if key in data and not allow_outside:
            _check_inside(doc, key, data[key], root)


def _check_order(doc: _Doc, data: dict[str, Any]) -> None:
    order = data["order"]
    qty, limit = order["qty"], order.get("limit")
    if order["sec_type"] == "STK" and qty != int(qty):
        doc.error(("order", "qty"), f"must be a whole number of shares for STK, got {qty}")
    if limit is None:
        if data["kind"] == "sanity-cancel":
            doc.error(("order",), "sanity-cancel needs a limit far from the market "
                                  "(add order.limit, e.g. 0.01 for a BUY)")
        elif not order["allow_market"]:
            doc.error(("order",), "no limit: a market order needs `allow_market: true` "
                                  "(or add order.limit)")
    elif order["sec_type"] == "STK" and not _on_tick(limit):
        tick, places = (0.01, 2) if limit >= 1 else (0.0001, 4)
        doc.error(("order", "limit"), f"{limit} is not on the tick grid ({tick}); "
                                      f"use {round(limit / tick) * tick:.{places}f}")
    if data["kind"] == "sanity-cancel" and order["tif"] == "IOC":
        doc.error(("order", "tif"), "sanity-cancel needs a resting order: use DAY or GTC")
    _check_limits(doc, data, qty, limit)


def _on_tick(price: float) -> bool:
    tick = 0.01 if price >= 1 else 0.0001
    return abs(round(price / tick) * tick - price) < 1e-9


def _check_limits(doc: _Doc, data: dict[str, Any], qty: float, limit: float | None) -> None:
    limits = data.get("limits") or {}
    if "max_qty" in limits and qty > limits["max_qty"]:
        doc.error(("order", "qty"), f"{_num(qty)} exceeds limits.max_qty {_num(limits['max_qty'])}")
    if "max_notional" in limits and limit is not None and qty * limit > limits["max_notional"]:
        doc.error(("order",), f"notional {_num(qty * limit)} (qty x limit) exceeds "
                              f"limits.max_notional {_num(limits['max_notional'])}")


def _num(x: float) -> str:
    return f"{x:,.2f}".rstrip("0").rstrip(".") if x != int(x) else f"{int(x):,}"


def _check_inside(doc: _Doc, key: str, value: str, root: Path) -> None:
    p = Path(value)
    inside = not p.is_absolute() and (root / p).resolve().is_relative_to(root.resolve())
    if not inside:
        doc.error((key,), f"'{value}' is outside the working tree; use a relative path inside "
                          "it, or pass --allow-outside")


def _build(doc: _Doc, data: dict[str, Any]) -> Spec:
    o = data.get("order")
    order = None
    if o is not None:
        order = OrderSpec(
            symbol=o["symbol"], sec_type=o["sec_type"], exchange=o["exchange"],
            currency=o["currency"], side=o["side"], qty=float(o["qty"]),
            limit=None if o.get("limit") is None else float(o["limit"]), tif=o["tif"],
            tag=o.get("tag"), allow_market=o["allow_market"], outside_rth=o["outside_rth"],
        )
    e = data.get("expect")
    expect = None
    if e is not None:
        events = tuple(e["events"]) if "events" in e else None
        expect = Expect(e.get("state"), _f(e.get("fill_qty")), _f(e.get("avg_px")), events,
                        e.get("message"))
    sim = _with_defaults(data.get("sim", {}), schema()["properties"]["sim"])
    return Spec(
        source=doc.source, index=doc.index, name=data.get("name") or _default_name(doc),
        kind=data["kind"], mode=data["mode"], order=order, ttl_sec=float(data["ttl_sec"]),
        ttl_backstop=data["ttl_backstop"], bars_path=data.get("bars_path"),
        out_dir=data["out_dir"], limits=Limits(**{k: float(v) for k, v in
                                                 data.get("limits", {}).items()}),
        sim=tuple(sorted(sim.items())), expect=expect, line=doc.mark(()).line,
    )


def _f(x: Any) -> float | None:
    return None if x is None else float(x)


def _default_name(doc: _Doc) -> str:
    stem = Path(doc.source).stem if not doc.source.startswith("<") else "cli"
    return stem if doc.index == 0 else f"{stem}#{doc.index + 1}"


def _dotted(path: Path_) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
            continue
        name = p if _PLAIN_KEY.match(p) else json.dumps(p)  # odd keys shown quoted
        out += f".{name}" if out else name
    return out


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _unique(items: list[tuple[Mark, str]]) -> Iterator[tuple[Mark, str]]:
    seen: set[tuple[Mark, str]] = set()
    for item in items:
        if item not in seen:
            seen.add(item)
            yield item
