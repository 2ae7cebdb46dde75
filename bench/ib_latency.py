"""INTENT→ACK over loopback: runner's `ib` broker vs its physical floor, against the fake gateway.

DESIGN §9: runner's INTENT→ACK ≤ 1.1× the physical floor, a bare ib_async placeOrder→ack
plus one bare write + fsync of the same bytes, measured in the same run. The fake gateway
(`runner gateway --port 0`) runs in its own process, as a real gateway would, and
acknowledges every order (its default script).

- runner: a sanity-cancel plan run by the engine with IBBroker and a real Ledger opened
  before the run (as `runner run` opens it before the INTENT): ACK row ts − INTENT row ts,
  which holds the INTENT's journal write + fsync (DESIGN §6 write-ahead).
- floor: what any write-ahead client must do, with no runner code. A fresh file is created
  (and its folder fsynced) before connecting, like runner's journal; then, clock read,
  `os.write` of runner's INTENT line + `os.fsync`, ib_async `placeOrder` of the same
  order, clock read again in the statusEvent callback that first sees
  PreSubmitted/Submitted.

Both connect, qualify, place, get the ack, cancel and disconnect once per rep, with a
fresh client id each time, alternating runner / floor, so they see the same gateway state.
Runner reads its ACK clock in its orderStatus tap, before ib_async's own bookkeeping of the
message; the floor reads it in statusEvent, after it: the floor's figure holds that
bookkeeping (tens of µs), runner's does not.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import PY, Results, Row, cleanup, fmt_s, median, pct, ratio, workdir  # noqa: E402

TARGET_RATIO = 1.1
ACKED = ("PreSubmitted", "Submitted")
CANCELLED = ("Cancelled", "ApiCancelled")
TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class RunnerRep:
    """One runner rep: INTENT→ACK, the INTENT's `Ledger.append`, and the line it wrote."""

    intent_to_ack: float
    intent_append: float
    intent_line: bytes


@dataclass(frozen=True, slots=True)
class FloorRep:
    """One floor rep: the bare write + fsync, then the bare placeOrder→ack after it."""

    write_fsync: float
    place_to_ack: float

    @property
    def total(self) -> float:
        return self.write_fsync + self.place_to_ack


def start_gateway() -> tuple[subprocess.Popen[str], int]:
    """`runner gateway --port 0` in a subprocess; its port, read from its banner line."""
    proc = subprocess.Popen([PY, "-m", "runner", "gateway", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"fake gateway did not start: {line!r} {proc.stderr.read()[-500:]}")
    return proc, int(line.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])


class _TimedJournal:
    """The run's real Ledger behind the engine's Journal protocol, timing each append,
    so the INTENT's durable write can be told apart from the rest of the path."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        self.append_s: dict[str, float] = {}

    def open(self) -> None:
        """Opened already (the `with Ledger(...)` below)."""

    def append(self, row: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        self.ledger.append(row)
        self.append_s.setdefault(row["event"], time.perf_counter() - t0)


def runner_once(port: int, client_id: int, tag: str) -> RunnerRep:
    """One sanity-cancel run by the engine, IBBroker and a real Ledger."""
    from runner.engine import Engine
    from runner.ib import IBBroker
    from runner.ledger import Ledger, _encode
    from runner.plan import compile_plan
    from runner.spec import from_mapping

    spec = from_mapping({"version": 1, "kind": "sanity-cancel", "out_dir": "data/exec",
                         "order": {"symbol": "SPY", "side": "BUY", "qty": 1, "limit": 0.01,
                                   "tag": tag}})
    env = {"IB_GATEWAY_HOST": "127.0.0.1", "IB_GATEWAY_PORT": str(port),
           "IB_CLIENT_ID": str(client_id)}
    plan = compile_plan(spec, env, time.time_ns())
    rows: dict[str, int] = {}
    with Ledger(Path(plan.out_dir), plan.day, tag) as ledger:
        journal = _TimedJournal(ledger)
        engine = Engine(plan, IBBroker(plan.connection), journal, None,
                        on_event=lambda row: rows.setdefault(row["event"], row["ts"]))
        outcome = asyncio.run(_run_and_close(engine))
        intent_line = _encode(ledger.rows[0])
    if "ACK" not in rows or outcome.state != "CANCEL":
        raise RuntimeError(f"runner run {tag}: {outcome.events} {outcome.message}")
    return RunnerRep((rows["ACK"] - rows["INTENT"]) / 1e9, journal.append_s["INTENT"],
                     intent_line)


async def _run_and_close(engine: Any) -> Any:
    try:
        return await engine.run()
    finally:
        await engine.broker.close()


def _fresh_file(path: Path) -> int:
    """A new append-only file whose directory entry is durable: what a journal opened
    before the INTENT is."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return fd


async def _bare(port: int, client_id: int, tag: str, line: bytes, path: Path) -> FloorRep:
    from ib_async import IB, Order, Stock

    fd = _fresh_file(path)
    ib = IB()
    try:
        await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=TIMEOUT_S)
        [contract] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[int] = loop.create_future()
        done: asyncio.Future[None] = loop.create_future()

        def on_status(trade: Any) -> None:
            status = trade.orderStatus.status
            if status in ACKED and not acked.done():
                acked.set_result(time.time_ns())
            elif status in CANCELLED and not done.done():
                done.set_result(None)

        order = Order(action="BUY", totalQuantity=1, orderType="LMT", tif="DAY",
                      orderRef=tag, outsideRth=False, lmtPrice=0.01)
        t0 = time.time_ns()
        os.write(fd, line)
        os.fsync(fd)
        t1 = time.time_ns()
        trade = ib.placeOrder(contract, order)
        trade.statusEvent += on_status
        t2 = await asyncio.wait_for(acked, TIMEOUT_S)
        ib.cancelOrder(trade.order)
        await asyncio.wait_for(done, TIMEOUT_S)
        return FloorRep((t1 - t0) / 1e9, (t2 - t1) / 1e9)
    finally:
        ib.disconnect()
        os.close(fd)


def bare_once(port: int, client_id: int, tag: str, line: bytes, path: Path) -> FloorRep:
    return asyncio.run(_bare(port, client_id, tag, line, path))


def collect(args: argparse.Namespace) -> Results:
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    reps = 7 if args.quick else 41
    root = workdir("ib")
    here = Path.cwd()
    proc, port = start_gateway()
    try:
        os.chdir(root)  # the plan's out_dir is relative, like a project's
        ours: list[RunnerRep] = []
        floor: list[FloorRep] = []
        for i in range(reps + 1):  # rep 0 warms both paths up and is thrown away
            r = runner_once(port, 1000 + 2 * i, f"runner-{i}")
            f = bare_once(port, 1001 + 2 * i, f"bare-{i}", r.intent_line, root / f"bare-{i}")
            if i:
                ours.append(r)
                floor.append(f)
    finally:
        os.chdir(here)
        proc.terminate()
        proc.wait(TIMEOUT_S)
        cleanup(root)
    return _results(ours, floor, reps)


def _results(ours: list[RunnerRep], floor: list[FloorRep], reps: int) -> Results:
    lat = [r.intent_to_ack for r in ours]
    fl = [f.total for f in floor]
    m, fm = median(lat), median(fl)
    append_m, wf_m = median([r.intent_append for r in ours]), median([f.write_fsync for f in floor])
    rest_m = median([r.intent_to_ack - r.intent_append for r in ours])
    ack_m = median([f.place_to_ack for f in floor])
    res = Results("ib_latency")
    res.rows.append(Row(
        "ib", "INTENT→ACK vs its floor: bare write+fsync + bare ib_async placeOrder→ack "
        "(fake gateway, loopback)",
        f"≤ {TARGET_RATIO}× floor", f"{fmt_s(m)} median, {fmt_s(pct(lat, 90))} p90",
        f"{fmt_s(fm)} median, {fmt_s(pct(fl, 90))} p90 (floor)", ratio(m, fm),
        m <= TARGET_RATIO * fm,
    ))
    res.rows.append(Row(
        "ib", "… its INTENT append (Ledger.append) vs the floor's bare write+fsync",
        "info", f"{fmt_s(append_m)} median", f"{fmt_s(wf_m)} median", ratio(append_m, wf_m)))
    res.rows.append(Row(
        "ib", "… the rest (INTENT→ACK less the INTENT append) vs bare placeOrder→ack",
        "info", f"{fmt_s(rest_m)} median", f"{fmt_s(ack_m)} median", ratio(rest_m, ack_m)))
    res.notes.append(f"{reps} reps each after 1 warm-up, alternating runner / floor; medians "
                     f"(runner − floor = {fmt_s(m - fm)}). The floor's bytes are the runner "
                     "rep's own INTENT line.")
    return res

if __name__ == "__main__":
    from _common import main_for

    raise SystemExit(main_for("ib_latency", collect))
