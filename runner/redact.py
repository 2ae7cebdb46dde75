"""Account ids never reach a terminal or a log unless the user asks (`--show-account`).

`DU1234567` prints as `DU****567`: enough to tell accounts apart, not enough to
name one. `cli.main` runs every command inside `redacted_output()`, which filters
what is written to stdout and stderr and every log record created meanwhile,
ib_async's included (its message, and the traceback and stack it carries). The
`-v` traceback of an unexpected error is printed inside it too. The ledger keeps the
real id: it is data, not output.

What counts as an account id (the rule `redact` applies):
- `U`, `F` or `I` and 4 to 10 ASCII digits, with an optional `D` before it (paper);
- not followed by an ASCII letter, digit or `_` (`DU1234567x`, `U12345678901`: not ids);
- not glued, in front, to an ASCII letter, digit or `_` that is literal text
  (`ABCU12345`, `DUX1234567`, `sanity_SPY_1767623400`: not ids). A letter or digit
  that ends a backslash escape is not literal text: it stands for another character,
  so `x\\nDU1234567` (JSON's and repr()'s way of writing a newline before the id),
  `\\tU7654321`, `\\u00e9DU1234567`, `\\x41U1234`, `\\101U1234` are masked. This fails
  closed: `\\\\nDU1234567` (an escaped backslash, then a literal `n`) is masked too.
- A terminal control sequence in front (`ESC[0mU7654321`, raw or escaped as `\x1b`,
  `\u001b`, `\033`) is a boundary: its final letter is invisible on a terminal.
- Anything else in front is a boundary, non-ASCII letters included (`éDU1234567`
  is masked): a reader sees an id there.
Masking a string that only looks like an id costs nothing; printing one does.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import IO, Any

# IB account ids: U (individual), F (advisor), I (introducing broker); D before them for
# paper. The pattern starts with a character class so the regex engine can skip ahead fast
# (a leading \b or a look-behind made `runner tca` on a million rows 0.6 s slower); _mask
# checks what stands before the match, which is rare work: only candidates get there.
ACCOUNT = re.compile(r"([UFI])([0-9]{4,10})(?![A-Za-z0-9_])")
SHOWN_DIGITS = 3
WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
HEX = frozenset("0123456789abcdefABCDEF")
# Escapes whose tail is several letters/digits: \xHH, \uHHHH, \UHHHHHHHH, \ooo (octal).
LONG_ESCAPES = (("x", 2, HEX), ("u", 4, HEX), ("U", 8, HEX), ("", 3, frozenset("01234567")))


# A terminal control sequence (ESC [ params letter) before an id: its letter is not text
# a reader sees. ESC raw, or written as an escape (\x1b, \u001b, \033, \e).
ANSI_TAIL = re.compile(r"(?:\x1b|\\x1b|\\u001b|\\033|\\e)\[[0-9;?]*[A-Za-z]\Z")


def _glued(text: str, end: int) -> bool:
    """Does literal word text end at `end` (so an id starting there is inside a word)?"""
    if not end or text[end - 1] not in WORD:
        return False
    if ANSI_TAIL.search(text, max(0, end - 24), end):
        return False  # the letter ends a terminal control sequence: invisible
    if "\\" not in text[max(0, end - 10):end]:
        return True  # the common case: no escape near
    if end >= 2 and text[end - 2] == "\\" and text[end - 1] != "_":
        return False  # \n, \t, \r, \0, ...: one escaped character (never \_)
    for letter, n, digits in LONG_ESCAPES:
        start = end - n - len(letter) - 1
        if start >= 0 and text[start] == "\\" and text[start + 1:start + 1 + len(letter)] \
                == letter and all(c in digits for c in text[end - n:end]):
            return False
    return True


def _mask(match: re.Match[str]) -> str:
    text, start = match.string, match.start()
    before = text[start - 1] if start else " "
    if before in WORD:  # DU... standing alone is a paper account; else, maybe in a word
        paper = before == "D" and not _glued(text, start - 1)
        if not paper and _glued(text, start):
            return match.group(0)  # inside a longer word: not an account id
    letter, digits = match.group(1), match.group(2)
    return letter + "*" * (len(digits) - SHOWN_DIGITS) + digits[-SHOWN_DIGITS:]


def redact(text: str) -> str:
    """Every account id in `text` masked but for its last three digits."""
    return ACCOUNT.sub(_mask, text)


class RedactingStream:
    """A text stream that masks account ids on the way to the stream it wraps."""

    def __init__(self, inner: IO[str]) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        self.inner.write(redact(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        self.write("".join(lines))  # one regex pass over the lot: 200k lines in ~0.1 s

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ...
        return getattr(self.inner, name)


def print_traceback(error: BaseException) -> None:
    """`-v`: the error's traceback (causes, context and notes included) on stderr in one
    write, so the redacting stream sees every id whole."""
    sys.stderr.write("".join(traceback.format_exception(error)))


def _redacting_factory(make: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's to report
            return record
        if ACCOUNT.search(message):
            record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:  # formatted once, here,
            text = "".join(traceback.format_exception(record.exc_info[1])).rstrip("\n")
            record.exc_text = redact(text)  # so no handler formats it unmasked
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    return factory


_on = [False]  # inside redacted_output(enabled=True): files runner writes for people mask too


def masked(text: str) -> str:
    """`text` as outputs show it now: masked unless --show-account (a report file, such as
    `runner test --junit`, holds what stderr said)."""
    return redact(text) if _on[0] else text


@contextlib.contextmanager
def redacted_output(enabled: bool = True) -> Iterator[None]:
    """Mask account ids in stdout, stderr and log records for the duration."""
    if not enabled:
        yield
        return
    out, err = sys.stdout, sys.stderr
    make = logging.getLogRecordFactory()
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)
    logging.setLogRecordFactory(_redacting_factory(make))
    was, _on[0] = _on[0], True
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
        logging.setLogRecordFactory(make)
        _on[0] = was
