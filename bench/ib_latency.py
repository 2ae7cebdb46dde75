"""INTENT→ACK over loopback: runner's `ib` broker vs bare ib_async, against the fake gateway.

DESIGN §9: runner's INTENT→ACK within 1.2× of a bare ib_async placeOrder→ack measured in
the same run. The fake gateway (`runner gateway --port 0`) runs in its own process, as a
real gateway would, and acknowledges every order (its default script).

- runner: a sanity-cancel plan run by the engine with IBBroker and a real Ledger (so the
  INTENT's fsync before placeOrder is in the figure): ACK row ts − INTENT row ts.
- bare: ib_async `placeOrder` of the same order, clock read just before the call, and
  again in the statusEvent callback that first sees PreSubmitted/Submitted.

Both connect, qualify, place, get the ack, cancel and disconnect once per rep, with a
fresh client id each time, alternating runner / bare, so they see the same gateway state.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import PY, Results, Row, cleanup, fmt_s, median, pct, ratio, workdir  # noqa: E402

TARGET_RATIO = 1.2
ACKED = ("PreSubmitted", "Submitted")
CANCELLED = ("Cancelled", "ApiCancelled")
TIMEOUT_S = 10.0


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


def runner_once(port: int, client_id: int, tag: str) -> tuple[float, float]:
    """Seconds from the INTENT row to the ACK row of one sanity-cancel run, and the
    seconds of that path spent journaling the INTENT (write + fsync)."""
    from runner.engine import Engine
    from runner.ib import IBBroker
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
        engine = Engine(plan, IBBroker(plan.connection), journal, None,
                        on_event=lambda row: rows.setdefault(row["event"], row["ts"]))
        outcome = asyncio.run(_run_and_close(engine))
    if "ACK" not in rows or outcome.state != "CANCEL":
        raise RuntimeError(f"runner run {tag}: {outcome.events} {outcome.message}")
    return (rows["ACK"] - rows["INTENT"]) / 1e9, journal.append_s["INTENT"]


async def _run_and_close(engine: Any) -> Any:
    try:
        return await engine.run()
    finally:
        await engine.broker.close()


async def _bare(port: int, client_id: int, tag: str) -> float:
    from ib_async import IB, Order, Stock

    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=TIMEOUT_S)
    try:
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
        trade = ib.placeOrder(contract, order)
        trade.statusEvent += on_status
        t1 = await asyncio.wait_for(acked, TIMEOUT_S)
        ib.cancelOrder(trade.order)
        await asyncio.wait_for(done, TIMEOUT_S)
        return (t1 - t0) / 1e9
    finally:
        ib.disconnect()


def bare_once(port: int, client_id: int, tag: str) -> float:
    return asyncio.run(_bare(port, client_id, tag))


def collect(args: argparse.Namespace) -> Results:
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    reps = 5 if args.quick else 25
    root = workdir("ib")
    here = Path.cwd()
    proc, port = start_gateway()
    try:
        os.chdir(root)  # the plan's out_dir is relative, like a project's
        ours, bare, fsync = [], [], []
        for i in range(reps + 1):  # rep 0 warms both paths up and is thrown away
            b = bare_once(port, 1000 + 2 * i, f"bare-{i}")
            r, f = runner_once(port, 1001 + 2 * i, f"runner-{i}")
            if i:
                bare.append(b)
                ours.append(r)
                fsync.append(f)
    finally:
        os.chdir(here)
        proc.terminate()
        proc.wait(TIMEOUT_S)
        cleanup(root)
    m, bm = median(ours), median(bare)
    res = Results("ib_latency")
    res.rows.append(Row(
        "ib", "INTENT→ACK vs bare ib_async placeOrder→ack (fake gateway, loopback)",
        f"≤ {TARGET_RATIO}× bare ib_async", f"{fmt_s(m)} median, {fmt_s(pct(ours, 90))} p90",
        f"{fmt_s(bm)} median, {fmt_s(pct(bare, 90))} p90 (bare ib_async)", ratio(m, bm),
        m <= TARGET_RATIO * bm,
    ))
    without = median([r - f for r, f in zip(ours, fsync, strict=True)])
    res.rows.append(Row(
        "ib", "… the same, less the INTENT's journal write + fsync (write-ahead)",
        "info", f"{fmt_s(without)} median (INTENT append {fmt_s(median(fsync))} median)",
        fmt_s(bm), ratio(without, bm),
    ))
    res.notes.append(f"{reps} reps each after 1 warm-up, alternating; medians. Runner's figure "
                     "includes the INTENT's journal write + fsync, which DESIGN §6 requires "
                     f"before placeOrder (runner − bare = {fmt_s(m - bm)}).")
    res.notes.append("Why the 1.2× target is missed, and what would close it: 1.2× of a "
                     f"{fmt_s(bm)} ack leaves {fmt_s(0.2 * bm)} for everything runner adds, "
                     "and one fsync on this disk alone costs more (see the ledger bench's "
                     "bare write+fsync). Without the write-ahead fsync runner is within "
                     "~1.1-1.2× of bare ib_async. Closing it needs a device whose flush is "
                     "~20 µs (NVMe with power-loss protection) or a target that leaves the "
                     "DESIGN §6 write-ahead fsync out; weakening durability is not an option.")
    return res


if __name__ == "__main__":
    from _common import main_for

    raise SystemExit(main_for("ib_latency", collect))
