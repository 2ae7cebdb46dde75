"""Spec files: YAML (multi-document) -> JSON Schema -> semantic checks -> frozen Specs.

Every error names `file:line:col`, the key path and the fix, and all errors of a
file are reported together. YAML is read with the safe loader only, and files that
are too big, too deep, binary or alias bombs are refused before anything else.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import stat
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from runner.errors import RunnerError, SpecError
from runner.paths import PathRules, rules_for

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
    arrival: str | None = None  # bars | broker; None: bars when bars_path is set
    at: str | None = None  # `at:` as written: pins a dry run's (and a plan's) start, like --at


@dataclass
class _Doc:
    """One YAML document while it is being checked."""

    source: str
    index: int
    data: Any
    marks: dict[Path_, Mark] = field(default_factory=dict)  # value positions
    key_marks: dict[Path_, Mark] = field(default_factory=dict)  # key positions
    errors: list[tuple[Mark, str]] = field(default_factory=list)
    bad: set[Path_] = field(default_factory=set)  # values already reported (numbers, text)
    constructed: bool = False  # the YAML became Python data (no syntax-level errors)

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
                # not only regular files: a FIFO or a dangling link named *.yaml is
                # reported (and refused unread), never silently left out
                if f.suffix in (".yaml", ".yml") and not f.is_dir() and not _hidden(f, path)
            )
        else:
            found.append(p)
    return found


def _hidden(f: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in f.relative_to(root).parts)


def load(path: str, root: Path | None = None, allow_outside: bool = False) -> list[Spec]:
    """All specs in one file, or SpecError listing every problem in it. Paths in the file
    resolve against its project root (runner.paths), or `root` when given."""
    text = _read_text(path)
    return load_text(text, path, root, allow_outside)


def load_text(
    text: str, source: str, root: Path | None = None, allow_outside: bool = False
) -> list[Spec]:
    docs, errors = _parse(text, source)
    specs: list[Spec] = []
    invalid = 1 if errors else 0  # a syntax error spoils the rest of the file
    rules = rules_for(source, root, allow_outside)
    for doc in docs:
        spec = _check(doc, rules)
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
    allow_outside: bool = False, typed: bool = False,
) -> Spec:
    """A spec built in memory (the classic commands): the same checks, no file marks.
    `typed`: its paths were typed on the command line, used as typed (`~` expanded)."""
    doc = _Doc(source, 0, _plain(data), constructed=True)
    spec = _check(doc, rules_for(source, root, allow_outside, typed))
    if doc.errors or spec is None:
        raise SpecError([f"{source}: {msg}" for _, msg in doc.errors])
    return spec


def _plain(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {str(k): _plain(v) for k, v in data.items()}
    return data


def _read_text(path: str) -> str:
    try:
        raw = read_bounded(path, MAX_BYTES)
    except NotRegular as e:
        raise SpecError([f"{path}: {e.cause}; runner reads a spec only from a regular file "
                         "(name the .yaml file itself)"]) from None
    except TooBig as e:
        raise _file_error(path, f"file is {e.size:,} bytes; specs are limited to 1 MiB") from None
    except OSError as e:
        raise _file_error(path, f"cannot read file: {e.strerror or e}") from None
    return decode(raw, path)


class NotRegular(Exception):
    """The path exists but is not a regular file (a folder, a FIFO, a device, a dangling
    link): it is refused without being read."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class TooBig(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO (named pipe)"); "" for a regular file."""
    if stat.S_ISREG(mode):
        return ""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_bounded(path: str, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. The path is examined before it
    is opened, and opened non-blocking, so a FIFO, a device or a folder is never read (and
    never blocks): NotRegular. Larger than `limit`: TooBig. Anything else: OSError."""
    try:
        info = os.stat(path)  # follows symlinks: a link to a regular file is fine
    except FileNotFoundError:
        if os.path.islink(path):
            raise NotRegular(f"is a dangling symbolic link (to {os.readlink(path)})") from None
        raise
    _check_regular(info, limit)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        _check_regular(os.fstat(fd), limit)  # what was opened, not what was examined
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > limit:  # it grew while being read
        raise TooBig(len(raw))
    return raw


def _check_regular(info: os.stat_result, limit: int) -> None:
    kind = file_kind(info.st_mode)
    if kind:
        raise NotRegular(f"is {kind}, not a regular file")
    if info.st_size > limit:
        raise TooBig(info.st_size)


def decode(raw: bytes, path: str) -> str:
    """A file's bytes as text, or SpecError: binary (NUL bytes) or not UTF-8."""
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
        self.soft = 0  # errors that still let the document be built (numbers)

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
        if isinstance(node, yaml.ScalarNode):
            self.number(node, path)
            if path == ("at",) and node.tag == _TIMESTAMP:  # YAML 1.1 builds a datetime:
                node.tag = _STR  # keep the text, as YAML 1.2 and the editor read it
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return all(self.node(n, path + (i,), depth + 1) for i, n in enumerate(node.value))
        return True

    def number(self, node: yaml.ScalarNode, path: Path_) -> None:
        """A number that does not fit is an error at its own mark, and the node becomes a
        string so that the rest of the document can still be built and checked."""
        problem = _number_problem(node)
        if problem:
            self.doc.error(path, problem)
            self.doc.bad.add(path)
            self.soft += 1
            node.tag = "tag:yaml.org,2002:str"

    def mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> bool:
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and _number_problem(key_node):
                key_node.tag = "tag:yaml.org,2002:str"  # an unknown key all the same
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
    walk = _Walk(doc)
    if not walk.node(node, (), 0) or len(doc.errors) > walk.soft:
        return doc
    try:
        doc.data = yaml.constructor.SafeConstructor().construct_document(node)
    except yaml.MarkedYAMLError as e:
        doc.errors.append(_yaml_error(e))
    except (ValueError, OverflowError) as e:  # a scalar no check above foresaw
        doc.errors.append((Mark(1, 1), f"a value cannot be read: {e}"))
    else:
        doc.constructed = True
    return doc


# --- numbers and text that do not fit ------------------------------------------------

MAX_INT = 2**53  # every whole number up to this is exact as a 64-bit float
MAX_NUMBER_CHARS = 64  # the text of any number a spec needs is far shorter
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_STR, _TIMESTAMP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"
_SCALARS = yaml.constructor.SafeConstructor()  # builds one scalar at a time; keeps no state
_BAD_TEXT = {"Cc", "Cf", "Cs", "Zl", "Zp"}  # control, format (bidi), surrogates, separators


def _number_problem(node: yaml.ScalarNode) -> str:
    """Why a YAML number does not fit runner's numbers (64-bit floats; whole numbers
    exact up to 2**53), judged from its text before it is built; "" when it fits."""
    if node.tag not in (_INT, _FLOAT):
        return ""
    text = str(node.value)
    build = _SCALARS
    try:
        if node.tag == _INT:  # not built when long: int() of 4,300+ digits raises
            if len(text) > MAX_NUMBER_CHARS or abs(build.construct_yaml_int(node)) > MAX_INT:
                return f"{_short(text)} is too large a number (whole numbers up to " \
                       f"{MAX_INT:,})"
            return ""
        if len(text) > MAX_NUMBER_CHARS:
            return f"{_short(text)} is too long a number (at most {MAX_NUMBER_CHARS} characters)"
        number = build.construct_yaml_float(node)
    except (ValueError, OverflowError, yaml.YAMLError):
        return f"{_short(text)} is not a number runner can read"
    if math.isinf(number) and "inf" not in text.lower():
        return f"{_short(text)} is too large a number: it does not fit a 64-bit float"
    if number == 0 and _nonzero(text):
        return f"{_short(text)} is too small a number: it does not fit a 64-bit float " \
               "(it would be 0)"
    return ""


def _nonzero(text: str) -> bool:
    mantissa = re.split("[eE]", text.replace("_", ""), maxsplit=1)[0]
    return any(c in "123456789" for c in mantissa)


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:20]}... ({len(text):,} characters)"


def _check_values(doc: _Doc, value: Any, path: Path_) -> None:
    """Every value that does not fit, anywhere in a document (also one built in memory):
    non-finite or too large numbers, and text with a control character or a line break."""
    if path in doc.bad:
        return
    problem = ""
    if isinstance(value, float) and not math.isfinite(value):
        problem = f"{value} is not a finite number"
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        problem = f"{_short(str(value))} is too large a number (whole numbers up to " \
                  f"{MAX_INT:,})"
    elif isinstance(value, str):
        problem = _text_problem(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_values(doc, v, path + (str(k),))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_values(doc, v, path + (i,))
    if problem:
        doc.error(path, problem)
        doc.bad.add(path)


def _text_problem(value: str) -> str:
    bad = next((c for c in value if unicodedata.category(c) in _BAD_TEXT), None)
    if bad is None:
        return ""
    what = "a line break" if bad in "\n\r\x85\u2028\u2029" else "a control character"
    trailing = " at the end" if value.endswith(bad) else ""
    return f"{_show(value)} contains {what} ({ascii(bad)}){trailing}; text must be one line " \
           "without control characters"


# --- checking ----------------------------------------------------------------------


def _check(doc: _Doc, rules: PathRules) -> Spec | None:
    if not doc.constructed:
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
    _semantic(doc, data, rules)
    if doc.errors:
        return None
    return _build(doc, {**data, **{k: rules.resolve(data[k]) for k in _PATHS if k in data}})


def schema_checked(doc: _Doc, schema_path: Path) -> dict[str, Any] | None:
    """A document (a mapping) checked against one of runner's schemas: non-finite numbers
    and every schema error recorded on `doc`; the data with its defaults, or None."""
    _check_values(doc, doc.data, ())
    for error in validator_for(schema_path).iter_errors(doc.data):
        path = tuple(error.absolute_path)
        if not any(path[:n] in doc.bad for n in range(len(path) + 1)):  # said already
            _schema_error(doc, error)
    return None if doc.errors else _with_defaults(doc.data, load_schema(schema_path))


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
        doc.error(path, f"expected {_a(expected)}, got {_type_name(value)}{shown}"
                        f"{_yaml11_hint(value, expected)}")
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


def _yaml11_hint(value: Any, expected: Any) -> str:
    """YAML 1.1 reads 1e-5 (no dot, or no exponent sign) as text; say how to write it."""
    if not isinstance(value, str) or "number" not in str(expected):
        return ""
    m = _EXPONENT.match(value)
    if not m:
        return ""
    number = float(value.replace("_", ""))
    if math.isinf(number) or (number == 0 and _nonzero(value)):
        return f" (YAML reads {value} as text; as a number it would not fit a 64-bit float)"
    mantissa = m[1] if "." in m[1] else f"{m[1]}.0"
    sign = m[2] if m[2][:1] in "+-" else f"+{m[2]}"
    return f" (YAML reads {value} as text; write {mantissa}e{sign})"


_EXPONENT = re.compile(r"^([-+]?[0-9][0-9_]*(?:\.[0-9_]*)?)[eE]([-+]?[0-9]+)\Z")


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


def _semantic(doc: _Doc, data: dict[str, Any], rules: PathRules) -> None:
    kind = data["kind"]
    given = doc.data
    if kind == "handshake":
        for key in ("order", "ttl_sec", "limits", "expect", "bars_path", "arrival", "at"):
            if key in given:
                doc.error((key,), "not used by kind handshake; remove it", key=True)
    else:
        _check_order(doc, data)
    if kind == "sanity-cancel" and "ttl_sec" in given:
        doc.error(("ttl_sec",), "only one-shot uses ttl_sec (sanity-cancel cancels right after "
                                "the ACK); remove it", key=True)
    if given.get("arrival") == "bars" and "bars_path" not in given:
        doc.error(("arrival",), "'bars' needs bars_path (add bars_path, or use "
                                "arrival: broker)")
    for key in _PATHS:
        problem = rules.problem(data[key]) if key in data else ""
        if problem:
            doc.error((key,), problem)
    if "at" in given and kind != "handshake":
        from runner.plan import parse_at  # the grammar of --at (plan imports this module)
        try:
            parse_at(str(given["at"]), "at:")
        except RunnerError as e:
            doc.errors.append((doc.mark(("at",)), str(e)))


_PATHS = ("bars_path", "out_dir")


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
    elif order["sec_type"] == "STK":
        problem = tick_problem(limit)
        if problem:
            doc.error(("order", "limit"), problem)
    if data["kind"] == "sanity-cancel" and order["tif"] == "IOC":
        doc.error(("order", "tif"), "sanity-cancel needs a resting order: use DAY or GTC")
    _check_limits(doc, data, qty, limit)


def tick_problem(price: float) -> str:
    """Why a stock limit price is not on IB's tick grid ($0.01 at $1 and above, $0.0001
    below); "" when it is. Judged in decimal on the shortest text that gives the same
    float (what the user wrote), so neither rounding nor underflow can fool it: 1e-300
    is below one tick, 10.005 is between two."""
    value = Decimal(repr(float(price)))
    tick = TICK if value >= 1 else SUB_DOLLAR_TICK
    if value < tick:
        return f"{price} is below one tick ({tick}); the smallest limit is {tick}"
    exponent = value.normalize().as_tuple().exponent  # an int: the value is finite
    if isinstance(exponent, int) and exponent >= _places(tick):
        return ""
    nearest = value.quantize(tick, rounding=ROUND_HALF_UP)
    return f"{price} is not on the tick grid ({tick}); use {nearest}"


def _places(tick: Decimal) -> int:
    exponent = tick.as_tuple().exponent
    assert isinstance(exponent, int)
    return exponent


TICK, SUB_DOLLAR_TICK = Decimal("0.01"), Decimal("0.0001")


def _check_limits(doc: _Doc, data: dict[str, Any], qty: float, limit: float | None) -> None:
    limits = data.get("limits") or {}
    if "max_qty" in limits and qty > limits["max_qty"]:
        doc.error(("order", "qty"), f"{_num(qty)} exceeds limits.max_qty {_num(limits['max_qty'])}")
    if "max_notional" in limits and limit is not None and qty * limit > limits["max_notional"]:
        doc.error(("order",), f"notional {_num(qty * limit)} (qty x limit) exceeds "
                              f"limits.max_notional {_num(limits['max_notional'])}")


def _num(x: float) -> str:
    return f"{x:,.2f}".rstrip("0").rstrip(".") if x != int(x) else f"{int(x):,}"


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
        arrival=data.get("arrival"), at=str(data["at"]) if "at" in data else None,
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


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*\Z")  # not "$": it matches before a final \n


def _unique(items: list[tuple[Mark, str]]) -> Iterator[tuple[Mark, str]]:
    seen: set[tuple[Mark, str]] = set()
    for item in items:
        if item not in seen:
            seen.add(item)
            yield item
