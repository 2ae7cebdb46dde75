"""Positioned YAML documents: read a file safely, parse it into documents that know where
each value stands (`Mark`), and refuse values that do not fit runner's numbers and text.

Spec files and policy files are both read this way (runner.spec, runner.policy); their
schemas are checked with runner.schemacheck. The reader never opens a FIFO, a device or
a folder, and refuses files over a limit; the parser uses the safe loader only and stops
alias bombs and deep nesting before anything is built. Problems are (mark, message)
pairs on the document; the caller words them as `file:line:col: message`.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import unicodedata
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from runner.errors import NotRegular, SpecError, TooBig

MAX_DEPTH = 16  # a spec nests 3 levels deep
MAX_NODES = 20_000  # counted with aliases expanded: stops "billion laughs" early
MAX_INT = 2**53  # every whole number up to this is exact as a 64-bit float
MAX_NUMBER_CHARS = 64  # the text of any number a spec needs is far shorter

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Mark:
    line: int  # 1-based
    col: int  # 1-based


@dataclass
class Doc:
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
        return nearest(self.key_marks if key else self.marks, path,
                       self.marks.get((), Mark(1, 1)))

    def error(self, path: Path_, message: str, key: bool = False) -> None:
        where = dotted(path)
        self.errors.append((self.mark(path, key), f"{where}: {message}" if where else message))


def nearest(marks: Mapping[Path_, Mark], path: Path_, default: Mark) -> Mark:
    """The mark of `path`, else of the nearest enclosing path that has one, else `default`."""
    while path not in marks and path:
        path = path[:-1]
    return marks.get(path) or default


# --- reading files -----------------------------------------------------------------


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
        raise file_error(path, "binary file, not YAML (contains NUL bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        message = f"not UTF-8 text (byte {e.start}); save the spec as UTF-8"
        raise file_error(path, message) from None


def file_error(path: str, message: str) -> SpecError:
    """A problem with the file as a whole, at its first line."""
    return SpecError([f"{path}:1:1: {message}"])


# --- parsing -------------------------------------------------------------------------


def parse(text: str, source: str,
          as_text: Collection[Path_] = ()) -> tuple[list[Doc], list[tuple[Mark, str]]]:
    """YAML text -> documents with marks; syntax errors as (mark, message). A timestamp at
    a path in `as_text` stays the text it was written as (YAML 1.2 and editors read it so)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs: list[Doc] = []
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=loader)):
            docs.append(_document(node, source, index, as_text))
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

    def __init__(self, doc: Doc, as_text: Collection[Path_]) -> None:
        self.doc = doc
        self.as_text = as_text
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
            if path in self.as_text and node.tag == _TIMESTAMP:  # YAML 1.1 builds a datetime:
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
            node.tag = _STR

    def mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> bool:
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and _number_problem(key_node):
                key_node.tag = _STR  # an unknown key all the same
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            if key in seen:
                self.doc.errors.append(
                    (_mark(key_node), f"{dotted(path + (key,))}: duplicate key")
                )
            seen.add(key)
            self.doc.key_marks.setdefault(path + (key,), _mark(key_node))
            if not self.node(value_node, path + (key,), depth + 1):
                return False
        return True


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _document(node: yaml.Node | None, source: str, index: int,
              as_text: Collection[Path_]) -> Doc:
    doc = Doc(source, index, None)
    if node is None:
        doc.error((), f"document {index + 1} is empty")
        return doc
    doc.marks[()] = _mark(node)
    walk = _Walk(doc, as_text)
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
                return f"{short(text)} is too large a number (whole numbers up to " \
                       f"{MAX_INT:,})"
            return ""
        if len(text) > MAX_NUMBER_CHARS:
            return f"{short(text)} is too long a number (at most {MAX_NUMBER_CHARS} characters)"
        number = build.construct_yaml_float(node)
    except (ValueError, OverflowError, yaml.YAMLError):
        return f"{short(text)} is not a number runner can read"
    if math.isinf(number) and "inf" not in text.lower():
        return f"{short(text)} is too large a number: it does not fit a 64-bit float"
    if number == 0 and nonzero(text):
        return f"{short(text)} is too small a number: it does not fit a 64-bit float " \
               "(it would be 0)"
    return ""


def nonzero(text: str) -> bool:
    """Does a number's text have a non-zero digit before its exponent?"""
    mantissa = re.split("[eE]", text.replace("_", ""), maxsplit=1)[0]
    return any(c in "123456789" for c in mantissa)


def short(text: str) -> str:
    """A value's text for a message, cut when long."""
    return text if len(text) <= 24 else f"{text[:20]}... ({len(text):,} characters)"


def check_values(doc: Doc, value: Any, path: Path_) -> None:
    """Every value that does not fit, anywhere in a document (also one built in memory):
    non-finite or too large numbers, and text with a control character or a line break."""
    if path in doc.bad:
        return
    problem = ""
    if isinstance(value, float) and not math.isfinite(value):
        problem = f"{value} is not a finite number"
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        problem = f"{short(str(value))} is too large a number (whole numbers up to " \
                  f"{MAX_INT:,})"
    elif isinstance(value, str):
        problem = _text_problem(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            check_values(doc, v, path + (str(k),))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_values(doc, v, path + (i,))
    if problem:
        doc.error(path, problem)
        doc.bad.add(path)


def _text_problem(value: str) -> str:
    bad = next((c for c in value if unicodedata.category(c) in _BAD_TEXT), None)
    if bad is None:
        return ""
    what = "a line break" if bad in "\n\r\x85\u2028\u2029" else "a control character"
    trailing = " at the end" if value.endswith(bad) else ""
    return f"{show(value)} contains {what} ({ascii(bad)}){trailing}; text must be one line " \
           "without control characters"


def show(value: Any) -> str:
    """A value as a message quotes it: 'text', 12.5, {...}, [...]; cut when long."""
    if isinstance(value, (dict, list)):
        return "{...}" if isinstance(value, dict) else "[...]"
    text = json.dumps(value) if isinstance(value, str) else repr(value)
    if isinstance(value, str):
        text = "'" + text[1:-1] + "'"
    return text if len(text) <= 40 else text[:37] + "..."


# --- messages ----------------------------------------------------------------------


def dotted(path: Path_) -> str:
    """`order.qty`, `symbols[2]`: a key path as a message names it."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
            continue
        name = p if _PLAIN_KEY.match(p) else json.dumps(p)  # odd keys shown quoted
        out += f".{name}" if out else name
    return out


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*\Z")  # not "$": it matches before a final \n


def error_lines(source: str, errors: list[tuple[Mark, str]]) -> list[str]:
    """`file:line:col: message` for each problem, in file order, each once."""
    errors.sort(key=lambda e: (e[0].line, e[0].col))
    return [f"{source}:{m.line}:{m.col}: {msg}" for m, msg in _unique(errors)]


def _unique(items: list[tuple[Mark, str]]) -> Iterator[tuple[Mark, str]]:
    seen: set[tuple[Mark, str]] = set()
    for item in items:
        if item not in seen:
            seen.add(item)
            yield item
