"""One run's ledger: its journal, created and locked at open, every event appended and
fsynced before `append` returns (write-ahead), merged into the day at commit."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa

from runner.errors import LedgerError
from runner.ledger.compact import compact
from runner.ledger.event import LedgerEvent, Stamped
from runner.ledger.files import flocked, fsync_dir, write_all
from runner.ledger.schema import LEDGER_FILE, LOCK_FILE, RUN_ID_RE, check_day, journal_path

_KEPT = "the events are kept in the journal; `runner recover` merges them later"


class Ledger:
    """One run's ledger. `open`, `append` each event, then `commit` (or leave the block:
    `__exit__` commits). Events hold ts as int ns; `run_id` and `seq` are filled here."""

    def __init__(self, out_dir: Path, day: str, run_id: str) -> None:
        if not RUN_ID_RE.match(run_id):
            raise ValueError(f"run_id must be [A-Za-z0-9_.-] and not start with '.': {run_id!r}")
        self.day_dir = Path(out_dir) / check_day(day)
        self.run_id = run_id
        self.journal_path = journal_path(self.day_dir, run_id)
        self._fd: int | None = None
        self._size = 0
        self._events: list[LedgerEvent | Stamped] = []  # a Stamped one: built when read
        self._committed = False

    @property
    def events(self) -> list[LedgerEvent]:
        """What was journaled, in order (event n has seq n)."""
        return [e if isinstance(e, LedgerEvent) else e.as_event() for e in self._events]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The journaled events as rows, every column (as `table_to_rows` reads them)."""
        return [e.row(self.run_id, seq) for seq, e in enumerate(self.events, 1)]

    @property
    def ledger_path(self) -> Path:
        return self.day_dir / LEDGER_FILE

    def open(self) -> Ledger:
        """Create the journal and lock it; LedgerError if the folder is not writable."""
        if self._fd is not None or self._committed:
            raise LedgerError(f"ledger {self.journal_path} was opened before", "open it once")
        try:
            if not self.day_dir.is_dir():
                self.day_dir.mkdir(parents=True, exist_ok=True)
                fsync_dir(self.day_dir.parent)  # the new day folder survives a power cut
            self._fd = self._create_locked_journal()
        except OSError as exc:
            raise LedgerError(
                f"cannot create the ledger journal {self.journal_path}: {exc.strerror or exc}",
                "out_dir must be a writable folder with free space; nothing was sent",
            ) from exc
        return self

    def _create_locked_journal(self) -> int:
        # Created under a dot name and renamed once locked, so no other run's commit can see
        # it unlocked, take it for a crashed run's journal and delete it under us.
        tmp = self.day_dir / f".{self.journal_path.name}.new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if self.journal_path.exists():
                raise OSError(errno.EEXIST, "run_id already has a journal")
            os.rename(tmp, self.journal_path)
            fsync_dir(self.day_dir)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd

    def append(self, event: LedgerEvent | Stamped | Mapping[str, Any]) -> None:
        """Journal one event; returns once it is fsynced (write-ahead). A mapping is made
        a LedgerEvent first (ValueError if it cannot be one: nothing is written); a
        Stamped one (an event drafted ahead, the INTENT) brings its line pre-encoded."""
        if self._fd is None:
            raise LedgerError(f"ledger {self.journal_path} is not open", "call open() first")
        if not isinstance(event, (LedgerEvent, Stamped)):
            event = LedgerEvent.of(event)
        line = event.line(self.run_id, len(self._events) + 1)
        try:
            write_all(self._fd, line)
            os.fsync(self._fd)
        except OSError as exc:
            self._truncate_torn_line()
            raise LedgerError(
                f"cannot write the ledger journal {self.journal_path}: {exc.strerror or exc}",
                "free disk space; the events before this one are safe",
            ) from exc
        self._size += len(line)
        self._events.append(event)

    def _truncate_torn_line(self) -> None:
        # A half-written line in the middle of a journal would make it unreadable once later
        # events (the cleanup's CANCEL) follow it, so cut back to the last whole line.
        with contextlib.suppress(OSError):
            assert self._fd is not None
            os.ftruncate(self._fd, self._size)

    def commit(self) -> Path:
        """Merge this run's journal and every crashed run's into ledger.parquet atomically."""
        if self._fd is None or self._committed:
            raise LedgerError(f"ledger {self.journal_path} is not open", "commit once, after open")
        self._committed = True
        try:
            with flocked(self.day_dir / LOCK_FILE, f"; {_KEPT}"):
                compact(self.day_dir, self.journal_path, self.run_id)
        except (OSError, pa.ArrowException) as exc:
            raise LedgerError(
                f"cannot write {self.ledger_path}: {getattr(exc, 'strerror', None) or exc}",
                _KEPT,
            ) from exc
        finally:
            self.close()
        return self.ledger_path

    def close(self) -> None:
        """Release the journal lock; an uncommitted journal stays for the next merge."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Ledger:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is None or self._committed:
            return
        if exc is None:
            self.commit()
            return
        # Already failing: try to merge, but never hide the first error; the journal keeps
        # the rows if this fails too.
        with contextlib.suppress(LedgerError):
            self.commit()



class RunJournal:
    """The journal of one `runner run`: the day's Ledger, opened at the first event (the
    INTENT), so that a run refused before it places anything leaves no file behind, and
    merged into the day at `finish` if anything was journaled.

    `failpoint` (RUNNER_FAILPOINT, tests only): "after-intent", "after-ack", ... kills the
    process with SIGKILL right after that event is durable, as a crash would, to prove
    that recovery finds what it left."""

    def __init__(self, out_dir: Path, day: str, run_id: str, failpoint: str = "") -> None:
        self.ledger = Ledger(out_dir, day, run_id)
        self.opened = False
        prefix = "after-"
        self._die_after = failpoint[len(prefix):].upper() if failpoint.startswith(prefix) \
            else None

    def open(self) -> None:
        """Create the journal (idempotent): the engine calls it before the INTENT, so that
        creating the file is not part of the INTENT's latency."""
        if not self.opened:
            self.ledger.open()
            self.opened = True

    def append(self, event: LedgerEvent | Stamped) -> None:
        self.open()
        self.ledger.append(event)
        if (event.kind if isinstance(event, Stamped) else event.event) == self._die_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def retry(self, events: list[LedgerEvent]) -> list[LedgerEvent]:
        """Journal the events the ledger refused mid-run once more, in order; the ones it
        still refuses (nothing is dropped: the caller prints them)."""
        left = list(events)
        with contextlib.suppress(LedgerError):
            while left:
                self.ledger.append(left[0])
                left.pop(0)
        return left

    def finish(self) -> Path:
        """Merge what was journaled into the day's ledger; the ledger file's path."""
        return self.ledger.commit() if self.opened else self.ledger.ledger_path
