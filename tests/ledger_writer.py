"""A separate process that writes a ledger, for the crash and concurrency tests.

    python tests/ledger_writer.py MODE OUT_DIR DAY RUN_ID N

MODE:
  kill     append N rows, then SIGKILL itself (no commit, no cleanup)
  commit   print "ready" after open, wait for a line on stdin (a start gun shared by
           several writers), append N rows, commit
  fsize    limit this process's file size to N bytes (a full disk), append rows until the
           ledger refuses one; print how many were appended
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.errors import LedgerError  # noqa: E402
from runner.ledger import Ledger  # noqa: E402

BASE_NS = 1_767_623_400_000_000_000  # 2026-01-05 14:30:00 UTC


def row(run_id: str, i: int) -> dict[str, Any]:
    """Row i of a writer; the tests rebuild the same rows to compare."""
    return {
        "ts": BASE_NS + i * 1_000_000 + len(run_id),
        "tag": f"{run_id}-t{i}",
        "event": "FILL" if i % 2 else "INTENT",
        "qty": i + 0.1,
        "last_px": 1 / 3 + i,
        "order_id": i,
        "message": f"row {i} of {run_id}",
    }


def main(mode: str, out_dir: str, day: str, run_id: str, n: int) -> int:
    if mode == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of dying
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    ledger = Ledger(Path(out_dir), day, run_id).open()
    if mode == "commit":
        print("ready", flush=True)
        sys.stdin.readline()
    count = n if mode != "fsize" else 10**6
    for i in range(count):
        try:
            ledger.append(row(run_id, i))
        except LedgerError as exc:
            print(f"appended {i}: {exc}", flush=True)
            return 0
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    ledger.commit()
    return 0


if __name__ == "__main__":
    mode, out_dir, day, run_id, n = sys.argv[1:6]
    raise SystemExit(main(mode, out_dir, day, run_id, int(n)))
