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
  order (BUY 1 LMT 0.01, GTD at the next whole second after now + runner's backstop),
  clock read again when the first PreSubmitted/Submitted orderStatus message is decoded
  (a tap on ib_async's wrapper, the point where runner's own tap reads it).
- floor, DAY order: the same with the order's terms as a DAY order (what this bench
  placed before, while runner placed its GTD backstop). The difference between the two
  floors is the gateway's work on a goodTillDate (the fake gateway parses it and arms a
  timer before it acknowledges), which every client placing runner's order pays.
- runner encodes the order's message and drafts the INTENT's row before the INTENT's
  clock (runner/ib/prepared.py, runner/events.py); the floor's bare placeOrder encodes
  inside its span. All three are cut at the same point: the placeOrder frame handed to
  the socket (a tap on ib_async's Connection.sendMsg).

Each connects, qualifies, places, gets the ack, cancels and disconnects once per rep, with
a fresh client id each time, round-robin runner / floor / floor DAY, so they see the same
gateway state.
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

from _common import (  # noqa: E402
    PY,
    Results,
    Row,
    Table,
    cleanup,
    fmt_s,
    median,
    pct,
    ratio,
    workdir,
)

TARGET_RATIO = 1.1
NS = 1_000_000_000
ACKED = ("PreSubmitted", "Submitted")
CANCELLED = ("Cancelled", "ApiCancelled")
TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Phases:
    """One rep's INTENT→ACK cut into its phases (seconds), runner's or the floor's: the
    write-ahead append, the rest of the work from the INTENT's clock until the order's
    frame is handed to the socket, and from then until the ack's clock."""

    append: float
    before_send: float
    to_ack: float

    @property
    def total(self) -> float:
        return self.append + self.before_send + self.to_ack


def tap_send(ib: Any) -> list[int]:
    """When the placeOrder frame is handed to the socket (ib_async's Connection.sendMsg,
    the last Python before transport.write): filled with one clock reading."""
    stamps: list[int] = []
    conn = ib.client.conn
    send = conn.sendMsg

    def timed(msg: bytes) -> None:
        if not stamps and msg[4:6] == b"3\0":  # after the 4-byte length: placeOrder (3)
            stamps.append(time.time_ns())
        send(msg)

    conn.sendMsg = timed
    return stamps


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

    def append(self, event: Any) -> None:
        t0 = time.perf_counter()
        self.ledger.append(event)
        kind = event.kind if hasattr(event, "kind") else event.event  # a Stamped INTENT
        self.append_s.setdefault(kind, time.perf_counter() - t0)


def _timed_ib(connection: Any) -> Any:
    """IBBroker, stamping when its order's frame is handed to the socket."""
    from runner.ib import IBBroker

    class TimedIB(IBBroker):
        sent_ns: list[int]

        async def connect(self) -> Any:
            info = await super().connect()
            self.sent_ns = tap_send(self.session.ib)
            return info

    return TimedIB(connection)


def runner_once(port: int, client_id: int, tag: str) -> tuple[Phases, bytes, float | None]:
    """One sanity-cancel run by the engine, IBBroker and a real Ledger: its phases, the
    INTENT line it journaled, and its order's GTD backstop (seconds after the INTENT)."""
    from runner.engine import Engine
    from runner.ledger import Ledger
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
        broker = _timed_ib(plan.connection)
        engine = Engine(plan, broker, journal, None,
                        on_event=lambda e: rows.setdefault(e.event, e.ts))
        outcome = asyncio.run(_run_and_close(engine))
        intent_line = ledger.events[0].line(ledger.run_id, 1)
    if "ACK" not in rows or outcome.state != "CANCEL":
        raise RuntimeError(f"runner run {tag}: {outcome.events} {outcome.message}")
    append = journal.append_s["INTENT"]
    [sent], intent, ack = broker.sent_ns, rows["INTENT"], rows["ACK"]
    assert plan.order is not None
    return (Phases(append, (sent - intent) / 1e9 - append, (ack - sent) / 1e9), intent_line,
            plan.order.backstop_sec)


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


def floor_order(tag: str, backstop_sec: float | None) -> Any:
    """runner's sanity-cancel as ib_async's Order: BUY 1 LMT 0.01, GTD at the next whole
    second after now + backstop (as runner's INTENT stamps it); a DAY order without one."""
    from ib_async import Order

    order = Order(action="BUY", totalQuantity=1.0, orderType="LMT", tif="DAY", orderRef=tag,
                  outsideRth=False, lmtPrice=0.01)
    if backstop_sec is not None:
        good_till = -(-(time.time_ns() + int(backstop_sec * NS)) // NS)
        order.tif, order.goodTillDate = "GTD", time.strftime("%Y%m%d-%H:%M:%S",
                                                             time.gmtime(good_till))
    return order


async def _bare(port: int, client_id: int, tag: str, line: bytes, path: Path,
                backstop_sec: float | None) -> Phases:
    from ib_async import IB, Stock

    fd = _fresh_file(path)
    ib = IB()
    try:
        await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=TIMEOUT_S)
        [contract] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[int] = loop.create_future()
        done: asyncio.Future[None] = loop.create_future()

        decoded = ib.wrapper.orderStatus

        def tap(order_id: int, status: str, *rest: Any) -> None:
            """The ack's clock where runner's tap reads it: the message just decoded."""
            if status in ACKED and not acked.done():
                acked.set_result(time.time_ns())
            decoded(order_id, status, *rest)

        def on_status(trade: Any) -> None:
            if trade.orderStatus.status in CANCELLED and not done.done():
                done.set_result(None)

        ib.wrapper.orderStatus = tap
        sent = tap_send(ib)

        order = floor_order(tag, backstop_sec)
        t0 = time.time_ns()
        os.write(fd, line)
        os.fsync(fd)
        t1 = time.time_ns()
        trade = ib.placeOrder(contract, order)
        trade.statusEvent += on_status
        t3 = await asyncio.wait_for(acked, TIMEOUT_S)
        ib.cancelOrder(trade.order)
        await asyncio.wait_for(done, TIMEOUT_S)
        [t2] = sent
        return Phases((t1 - t0) / 1e9, (t2 - t1) / 1e9, (t3 - t2) / 1e9)
    finally:
        ib.disconnect()
        os.close(fd)


def bare_once(port: int, client_id: int, tag: str, line: bytes, path: Path,
              backstop_sec: float | None) -> Phases:
    return asyncio.run(_bare(port, client_id, tag, line, path, backstop_sec))


def collect(args: argparse.Namespace) -> Results:
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    reps = args.reps or (7 if args.quick else 41)
    root = workdir("ib")
    here = Path.cwd()
    proc, port = start_gateway()
    try:
        os.chdir(root)  # the plan's out_dir is relative, like a project's
        ours: list[Phases] = []
        floor: list[Phases] = []
        day: list[Phases] = []
        for i in range(reps + 1):  # rep 0 warms all three up and is thrown away
            r, line, backstop = runner_once(port, 1000 + 3 * i, f"runner-{i}")
            f = bare_once(port, 1001 + 3 * i, f"bare-{i}", line, root / f"bare-{i}", backstop)
            d = bare_once(port, 1002 + 3 * i, f"day-{i}", line, root / f"day-{i}", None)
            if i:
                ours.append(r)
                floor.append(f)
                day.append(d)
    finally:
        os.chdir(here)
        proc.terminate()
        proc.wait(TIMEOUT_S)
        cleanup(root)
    return _results(ours, floor, day, reps)


PHASES = (
    ("append", "the INTENT's write + fsync",
     "Ledger.append (the drafted line completed, write, fsync)", "os.write + os.fsync"),
    ("before_send", "the rest from the INTENT's clock to the order's frame on the socket",
     "Engine: day check, deadline, backstop, arrival, the drafted INTENT stamped; "
     "IBBroker.place: Tracker, goodTillDate into the pre-encoded message",
     "ib_async placeOrder: encoding the order"),
    ("to_ack", "from the frame on the socket to the ack's clock",
     "gateway → socket → decode → orderStatus tap (meanwhile: ib_async's Trade, the "
     "INTENT's bookkeeping, the wait)",
     "gateway → socket → decode → orderStatus tap (meanwhile: ib_async's Trade and log "
     "line, the wait)"),
)


def _results(ours: list[Phases], floor: list[Phases], day: list[Phases], reps: int) -> Results:
    lat, fl, dl = ([p.total for p in x] for x in (ours, floor, day))
    m, fm, dm = median(lat), median(fl), median(dl)
    res = Results("ib_latency")
    rows, gaps = [], []
    for name, phase, what, bare_what in PHASES:
        ours_s, floor_s, day_s = (median([getattr(p, name) for p in x])
                                  for x in (ours, floor, day))
        rows.append([phase, what, fmt_s(ours_s), bare_what, fmt_s(floor_s),
                     fmt_s(ours_s - floor_s), fmt_s(day_s)])
        gaps.append(f"{phase} {fmt_s(ours_s - floor_s)}")
    res.rows.append(Row(
        "ib", "INTENT→ACK vs its floor: bare write+fsync + bare ib_async placeOrder→ack "
        "of the same order (fake gateway, loopback)",
        f"≤ {TARGET_RATIO}× floor", f"{fmt_s(m)} median, {fmt_s(pct(lat, 90))} p90",
        f"{fmt_s(fm)} median, {fmt_s(pct(fl, 90))} p90 (floor)", ratio(m, fm),
        m <= TARGET_RATIO * fm,
        f"{fmt_s(m - fm)} over the floor (runner − floor, medians): " + "; ".join(gaps)
        + f". Against a floor that places a DAY order instead (no goodTillDate for the "
        f"gateway to handle): {ratio(m, dm)} ({fmt_s(dm)})",
    ))
    res.tables.append(Table(
        "INTENT→ACK by phase (medians of each phase; they need not add up to the median "
        "total)", ["phase", "runner", "runner time", "floor", "floor time", "runner − floor",
                   "floor, DAY order"], rows))
    res.notes.append(
        f"{reps} reps each after 1 warm-up, round-robin runner / floor / floor with a DAY "
        f"order; medians (runner − floor = {fmt_s(m - fm)}; floor − its DAY twin = "
        f"{fmt_s(fm - dm)}, the gateway's work on a GTD order). The floors' bytes are the "
        "runner rep's own INTENT line.")
    return res


if __name__ == "__main__":
    from _common import main_for

    def _options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--reps", type=int, default=0,
                            help="timed reps of each (default 41; 7 with --quick)")

    raise SystemExit(main_for("ib_latency", collect, _options))
