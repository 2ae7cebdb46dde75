"""A ledger this user cannot write (issue 14): a read-only day folder, or a day lock or a
lock folder that belongs to another user, is one line naming it, its owner and mode, the
cause and the fix; exit 2; and nothing is sent, connected or written before it.

Each command runs in a child process that the permission bits stop. Tests often run as
root, whom chmod does not stop: then the child drops the three capabilities that let
root ignore modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER) from its bounding
set, so that after exec it is root by uid but bound by the mode bits like any user, and
"another user" is uid 65534 (chown). Not setuid(65534): the interpreter may live where
that uid cannot reach (here under /root, mode 0700). As any other user: plain chmod.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.ledger import Ledger
from runner.plan import trading_day

REPO = Path(__file__).resolve().parent.parent
BARS = REPO / "data" / "live" / "2026-01-05" / "bars1s_SPY.parquet"
DAY = "2026-01-05"
AT = "2026-01-05T14:31:00Z"
AS_ROOT = os.geteuid() == 0
OTHER_UID = 65534
PR_CAPBSET_DROP = 24
MODE_CAPS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
SPEC = """\
version: 1
kind: one-shot
order: {symbol: SPY, side: BUY, qty: 1, limit: 10.00, tif: DAY, tag: ro-1}
ttl_sec: 2
out_dir: exec
"""
MAIN = "import sys; from runner.cli import main; raise SystemExit(main(sys.argv[1:]))"


def _bound_by_modes() -> None:
    """preexec_fn of a root child: the capabilities that bypass modes, gone after exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in MODE_CAPS:
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def runner(cwd: Path, *args: str, prelude: str = "", **env: str
           ) -> subprocess.CompletedProcess[str]:
    """`runner ARGS` in `cwd`, in a child the permission bits stop."""
    return subprocess.run([sys.executable, "-c", prelude + MAIN, *args], cwd=cwd,
                          env=dict(os.environ, IB_CONNECT_TIMEOUT="3", **env),
                          preexec_fn=_bound_by_modes if AS_ROOT else None,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A project with a one-shot spec; its ledger root `exec/` is made by the tests. Every
    mode is given back afterwards, so the folder can be removed."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "spec.yaml").write_text(SPEC + "bars_path: bars.parquet\n")
    (tmp_path / "broker.yaml").write_text(SPEC)
    shutil.copy(BARS, tmp_path / "bars.parquet")
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o555)
    tried = subprocess.run([sys.executable, "-c", "open('probe/x', 'w')"], cwd=tmp_path,
                           preexec_fn=_bound_by_modes if AS_ROOT else None,
                           capture_output=True, text=True)
    probe.chmod(0o755)
    if tried.returncode == 0:
        pytest.skip("a child process here can write a read-only folder; nothing to test")
    yield tmp_path
    for path in tmp_path.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def another_users(path: Path) -> None:
    """`path` as if another user owned it: theirs, with their write bit only (root
    chowns it; anyone else takes away their own write bit)."""
    if AS_ROOT:
        os.chown(path, OTHER_UID, OTHER_UID)
    path.chmod(0o755 if path.is_dir() else 0o644)
    if not AS_ROOT:
        path.chmod(0o555 if path.is_dir() else 0o444)


def owner(path: Path) -> str:
    st = path.stat()
    return f"owner {pwd.getpwuid(st.st_uid).pw_name}, uid {st.st_uid}, " \
        f"mode {stat.filemode(st.st_mode)}"


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and "unexpected error" not in done.stderr
    return done.stderr


def test_a_read_only_day_folder_is_refused_before_anything_is_written(project: Path) -> None:
    day = project / "exec" / DAY
    day.mkdir(parents=True)
    day.chmod(0o555)
    before = tree(project / "exec")
    line = one_line(runner(project, "run", "spec.yaml", "--dry-run", "--at", AT))
    assert line.startswith("runner: cannot write the ledger: the day folder ")
    assert line.endswith(f"{Path('exec') / DAY} is not writable by this user ({owner(day)}); "
                         "nothing was sent (make it writable for this user, or use another "
                         "--out-dir)\n")
    assert tree(project / "exec") == before  # no journal, no lock, nothing


def test_a_day_lock_of_another_user_is_refused_before_anything_is_written(
        project: Path) -> None:
    day = project / "exec" / DAY
    day.mkdir(parents=True)
    lock = day / ".ledger.lock"
    lock.touch()
    another_users(lock)
    line = one_line(runner(project, "run", "spec.yaml", "--dry-run", "--at", AT))
    assert line == (f"runner: cannot write the ledger in {Path('exec') / DAY}: its lock file "
                    f".ledger.lock is not writable by this user ({owner(lock)}); nothing was "
                    "sent (make it writable for this user, e.g. by a group both users share "
                    "and g+w, or use another --out-dir)\n")
    assert tree(day) == [".ledger.lock"]


def test_a_broker_run_into_a_read_only_day_folder_reaches_no_gateway(
        project: Path, gateway: Any) -> None:
    now = time.time_ns()
    days = {trading_day(now), trading_day(now + 120 * 1_000_000_000)}  # midnight in NY
    for day in days:
        (project / "exec" / day).mkdir(parents=True)
        (project / "exec" / day).chmod(0o555)
    line = one_line(runner(project, "run", "broker.yaml", IB_GATEWAY_PORT=str(gateway.port)))
    assert " is not writable by this user (" in line and "; nothing was sent (" in line
    assert gateway.received == []  # not even a connection's first message
    assert tree(project / "exec") == sorted(days)


def test_a_lock_folder_of_another_user_is_refused_before_anything_is_written(
        project: Path) -> None:
    locks = project / "locks"  # the folder run locks go to (/tmp/runner-locks), here
    locks.mkdir()
    another_users(locks)
    prelude = ("import runner.preflight, pathlib; "
               f"runner.preflight.LOCK_FOLDER = pathlib.Path({str(locks)!r}); ")
    line = one_line(runner(project, "run", "spec.yaml", "--dry-run", "--at", AT,
                           prelude=prelude))
    assert line.startswith(f"runner: cannot use the lock folder {locks} ({owner(locks)}): "
                           "cannot open tag-")
    assert line.endswith(".lock in it (Permission denied); nothing was sent (make "
                         f"{locks} shared like /tmp: chmod 1777, as its owner or root)\n")
    assert not (project / "exec").exists() and list(locks.iterdir()) == []


def test_recover_names_a_day_lock_it_cannot_open_and_keeps_the_journal(
        project: Path) -> None:
    crashed = Ledger(project / "exec", DAY, "crashed").open()  # a run that died
    crashed.append({"ts": 1_767_623_400_000_000_000, "tag": "t1", "event": "INTENT",
                    "broker": "sim", "qty": 1.0})
    crashed.close()
    lock = project / "exec" / DAY / ".ledger.lock"
    lock.touch()
    another_users(lock)
    done = runner(project, "recover", "--out-dir", "exec", "--date", DAY)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (f"runner: cannot open the ledger lock {Path('exec') / DAY / lock.name}"
                           f": Permission denied ({owner(lock)}) (make .ledger.lock and its "
                           "folder writable for this user, or use another --out-dir)\n")
    assert crashed.journal_path.exists()  # nothing merged, nothing lost
