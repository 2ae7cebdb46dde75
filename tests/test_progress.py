"""The live status line: on a terminal only, rewritten in place, gone before the last line.

The terminal is a real pseudo-terminal (`pty.openpty`) and the order goes to the fake
gateway on 127.0.0.1 with a 1 s TTL, so the line counts down on the wall clock.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from runner.progress import ERASE, Status, apply

NS = 1_000_000_000
T0 = 1_767_623_401 * NS
ONE_SHOT = ["one-shot", "--qty", "1", "--limit", "10.00", "--ttl_sec", "1", "--out_dir", "exec"]
FINAL = re.compile(r"\[one-shot\] tag=(\S+) state=CANCEL fill_qty=0 avg_px=— arrival=—")


def env_for(port: int) -> dict[str, str]:
    return dict(os.environ, IB_GATEWAY_PORT=str(port), IB_CONNECT_TIMEOUT="5")


def run_on_pty(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run `runner ARGS` with stdout on a pseudo-terminal; (exit code, what it showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
        proc.wait(10)
    assert proc.stderr is not None
    assert proc.stderr.read() == b""
    return proc.returncode, shown.decode()


# ----------------------------------------------------------------------------- the line


def test_status_text_counts_down_from_the_intent() -> None:
    s = apply(Status("one-shot", "t1"), {"event": "INTENT", "ts": T0, "qty": 100.0,
                                         "fill_qty": 0.0, "tag": "t1"}, ttl_sec=3)
    assert s.deadline_ns == T0 + 3 * NS
    assert s.text(T0 + NS // 4) == "[one-shot] t1 INTENT 0/100 2.8 s left"
    s = apply(s, {"event": "PARTIAL", "ts": T0 + NS, "fill_qty": 40.0}, ttl_sec=3)
    assert s.text(T0 + 2 * NS) == "[one-shot] t1 PARTIAL 40/100 1.0 s left"
    assert s.text(T0 + 3 * NS) == "[one-shot] t1 PARTIAL 40/100 cancelling"
    s = apply(s, {"event": "CANCEL", "ts": T0 + 3 * NS, "fill_qty": 40.0}, ttl_sec=3)
    assert s.text(T0 + 4 * NS) == "[one-shot] t1 CANCEL 40/100"
    assert apply(s, {"event": "PNL_SNAPSHOT", "ts": T0 + 3 * NS}, ttl_sec=3) == s


def test_sanity_cancel_has_no_time_left() -> None:
    s = apply(Status("sanity-cancel", "s"), {"event": "ACK", "ts": T0, "qty": 1.0}, None)
    assert s.text(T0) == "[sanity-cancel] s ACK 0/1"


# ----------------------------------------------------------------------------- terminal


def test_a_live_line_on_a_terminal_then_only_the_status_line(gateway, tmp_path) -> None:
    code, shown = run_on_pty(ONE_SHOT, tmp_path, env_for(gateway.port))

    assert code == 0
    *frames, last = shown.split(ERASE)
    final = FINAL.fullmatch(last.removesuffix("\r\n"))
    assert final and last.endswith("\r\n"), repr(shown)
    assert shown.count("\n") == 1  # one line on the screen, rewritten in place
    tag = re.escape(final.group(1))
    # after the deadline, until the cancel is confirmed, the line says "cancelling"
    line = re.compile(
        rf"\[one-shot\] {tag} (INTENT|ACK|CANCEL) 0/1(?: (\d+\.\d) s left| cancelling)?")
    parsed = [line.fullmatch(f) for f in frames if f]
    assert all(parsed), frames
    states = [m.group(1) for m in parsed if m]
    assert states[0] == "INTENT" and "ACK" in states and states[-1] == "CANCEL"
    left = [float(m.group(2)) for m in parsed if m and m.group(2)]
    assert len(set(left)) >= 2, frames  # it counted down between events
    assert left == sorted(left, reverse=True) and left[0] <= 1.0


def test_nothing_extra_when_stdout_is_not_a_terminal(gateway, tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "runner", *ONE_SHOT], cwd=tmp_path,
                          env=env_for(gateway.port), capture_output=True, text=True, timeout=60)

    assert proc.returncode == 0, proc.stderr
    assert FINAL.fullmatch(proc.stdout.removesuffix("\n")), repr(proc.stdout)
    assert proc.stdout.count("\n") == 1 and "\r" not in proc.stdout and "\x1b" not in proc.stdout


def test_json_on_a_terminal_is_only_the_json(tmp_path) -> None:
    args = ["one-shot", "--qty", "1", "--limit", "10.00", "--ttl_sec", "1", "--dry-run",
            "--out_dir", "exec", "--json"]
    code, shown = run_on_pty(args, tmp_path, dict(os.environ))

    assert code == 0
    assert "\x1b" not in shown and shown.count("\r\n") == 1
    doc = json.loads(shown)
    [result] = doc["results"]
    assert (doc["version"], doc["command"], result["state"]) == (2, "one-shot", "CANCEL")
    assert result["events"] == ["INTENT", "ACK", "CANCEL"]
