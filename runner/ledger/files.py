"""The ledger's files on disk: durable small writes, the journals (one JSON line per event)
and the locks that serialise a day's compaction and keep a live run's journal its own."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.errors import LedgerError
from runner.ledger.access import whose
from runner.ledger.schema import COLUMNS, JOURNAL_PREFIX, JOURNAL_SUFFIX

_COLUMN_SET = frozenset(COLUMNS)


def write_durable(path: Path, text: str) -> None:
    """`text` at `path`, whole or not at all, and still there after a crash: a temp file
    fsynced, renamed over `path`, then the folder fsynced (the folder's own parent too
    when the folder is new). For the small files that say what is left to do."""
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        fsync_dir(folder.parent)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(folder)


def remove_durable(path: Path) -> None:
    """Remove `path` (if there) so that a crash cannot bring it back."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """All of `data`, in one write unless the kernel takes less (then the rest, in turn)."""
    written = os.write(fd, data)
    while written < len(data):
        written += os.write(fd, memoryview(data)[written:])


def journals(day_dir: Path) -> list[Path]:
    return sorted(day_dir.glob(f"{JOURNAL_PREFIX}*{JOURNAL_SUFFIX}"))


def parse_journal(path: Path) -> list[dict[str, Any]]:
    """The complete rows of one journal. A torn tail (a crash mid-write leaves a line
    without its newline, or garbage) is ignored; a bad line followed by good ones is not."""
    lines = path.read_bytes().split(b"\n")[:-1]  # the piece after the last newline is torn
    rows: list[dict[str, Any]] = []
    bad_at: int | None = None
    for number, line in enumerate(lines, 1):
        row = _parse_line(line)
        if row is None:
            bad_at = bad_at or number
        elif bad_at is not None:
            raise LedgerError(f"{path}:{bad_at}: unreadable journal line", "fix or move it")
        else:
            rows.append(row)
    return rows


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if not isinstance(row, dict) or not row.keys() <= _COLUMN_SET:
        return None
    if not isinstance(row.get("ts"), int) or not isinstance(row.get("seq"), int):
        return None
    return row


@contextlib.contextmanager
def flocked(path: Path, then: str = "") -> Iterator[None]:
    """Hold LOCK_EX on `path` (created if need be); LedgerError, naming the file, its
    owner and the cause, if this user cannot open it (`then`: what that leaves behind)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LedgerError(f"cannot open the ledger lock {path}: {exc.strerror or exc}"
                          f"{whose(path if path.exists() else path.parent)}",
                          f"make {path.name} and its folder writable for this user, or use "
                          f"another --out-dir{then}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def claim(path: Path) -> int | None:
    """An fd holding LOCK_EX on a journal no live run holds, or None if one does."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def remove_stale_temps(day_dir: Path) -> None:
    # Only the holder of the day lock writes temps, so any found under it are from a crash.
    for tmp in day_dir.glob(".ledger.*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
    # (A `._journal-*.new` left by a run that died between creating and naming its journal
    # is empty; it is not removed here, as it cannot be told from one being created now.)
