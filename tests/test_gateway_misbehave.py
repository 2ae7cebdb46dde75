"""The fake gateway misbehaving on demand, as real IB gateways do (TWS_PROTOCOL.md §7).

Each test runs the gateway in its own thread (the `gateway` / `make_gateway`
fixtures), connects the unmodified ib_async client over 127.0.0.1 from the
test's own event loop, and asserts what ib_async observed and, where the order
of messages is the point, the frames the gateway wrote (`gw.sent`). Waits are on
client updates or on frames, each with a timeout; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ib_async import IB
from ibclient import connected, error_log, place, run, until

from runner.gateway import (
    Ack,
    Correct,
    Error,
    Fill,
    GatewayThread,
    Inactive,
    Outage,
    Reject,
    Restart,
    load_scenario,
)
from runner.gateway.scenario import ScenarioError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "gateway-misbehave.yaml"
ORDER_STATUS, OPEN_ORDER, EXEC, COMMISSION, ERROR = "3", "5", "11", "59", "4"


def kinds(gw: GatewayThread, client_id: int = 7, order_id: int | None = None) -> list[str]:
    """The gateway's order messages to a client, in order: `11`, `59`, `3:Filled`,
    `4:202`... (only those about one order id when given)."""
    sent = [f for cid, f in gw.sent if cid == client_id]
    order_of_exec = {f[14]: f[2] for f in sent if f[0] == EXEC}  # execId -> orderId
    out = []
    for f in sent:
        if f[0] not in (ORDER_STATUS, OPEN_ORDER, EXEC, COMMISSION, ERROR):
            continue
        if order_id is not None:
            about = {ORDER_STATUS: f[1], OPEN_ORDER: f[1], EXEC: f[2], ERROR: f[2],
                     COMMISSION: order_of_exec.get(f[2], "")}[f[0]]
            if about != str(order_id):
                continue
        if f[0] == ORDER_STATUS:
            out.append(f"3:{f[2]}")
        elif f[0] == ERROR:
            out.append(f"4:{f[3]}")
        else:
            out.append(f[0])
    return out


# --------------------------------------------------------------- cancels


def test_refused_cancel_161_keeps_the_order_working_until_let_through(gateway: Any) -> None:
    async def body() -> None:
        gateway.script("r1", [Ack()], on_cancel="refuse")
        async with connected(gateway) as ib:
            errors = error_log(ib)
            trade = await place(ib, "r1")
            await until(ib, lambda: trade.orderStatus.status == "Submitted")
            perm = trade.order.permId
            ib.cancelOrder(trade.order)
            await until(ib, lambda: bool(errors))
            oid = trade.order.orderId
            assert errors == [(oid, 161, "Cancel attempted when order is not in a cancellable "
                               f"state.  Order permId ={perm}")]
            # ib_async takes the refusal for an end; the order is still working.
            assert trade.orderStatus.status == "Cancelled"
            [snap] = gateway.live_orders()
            assert (snap.order_ref, snap.status) == ("r1", "Submitted")
            ib.client.cancelOrder(oid, "")  # refused again: every cancel is
            await until(ib, lambda: len(errors) == 2)
            gateway.fill("r1", 4, 99.5)  # and it trades
            await until(ib, lambda: len(trade.fills) == 1)
            assert trade.orderStatus.status == "Submitted"  # the status is back
            gateway.set_cancel("r1", "ok")
            ib.client.cancelOrder(oid, "")
            await until(ib, lambda: trade.orderStatus.status == "Cancelled" and len(errors) == 3)
            assert [e[1] for e in errors] == [161, 161, 202]
            assert gateway.live_orders() == []
            assert [(o.status, o.filled) for o in gateway.orders_by_ref("r1")] == [
                ("Cancelled", 4)]

    run(body())


def test_first_n_refusals_with_10148_and_10147_texts(gateway: Any) -> None:
    async def body() -> None:
        gateway.script("r2", [Ack()], on_cancel="refuse", refuse_code=10148,
                       refuse_state="PendingCancel", refusals=1)
        gateway.script("r3", [Ack()], on_cancel="refuse", refuse_code=10147)
        async with connected(gateway) as ib:
            errors = error_log(ib)
            a, b = await place(ib, "r2"), await place(ib, "r3")
            await until(ib, lambda: a.orderStatus.status == b.orderStatus.status == "Submitted")
            ib.client.cancelOrder(a.order.orderId, "")
            ib.client.cancelOrder(b.order.orderId, "")
            await until(ib, lambda: len(errors) == 2)
            ia, ib_ = a.order.orderId, b.order.orderId
            assert errors == [
                (ia, 10148, f"OrderId {ia} that needs to be cancelled cannot be cancelled, "
                 "state: PendingCancel."),
                (ib_, 10147, f"OrderId {ib_} that needs to be cancelled is not found."),
            ]
            ib.client.cancelOrder(a.order.orderId, "")  # the second cancel goes through
            await until(ib, lambda: len(errors) == 3)
            assert errors[2][:2] == (ia, 202)
            assert a.orderStatus.status == "Cancelled"
            assert [o.order_ref for o in gateway.live_orders()] == ["r3"]

    run(body())


def test_only_the_placing_client_cancels_but_a_global_cancel_reaches_all(
        gateway: Any) -> None:
    async def body() -> None:
        async with connected(gateway, client_id=1) as owner, \
                connected(gateway, client_id=2) as other:
            trade = await place(owner, "mine")
            await until(owner, lambda: trade.orderStatus.status == "Submitted")
            errors = error_log(other)
            other.client.cancelOrder(trade.order.orderId, "")
            await until(other, lambda: bool(errors))
            oid = trade.order.orderId
            assert errors == [(oid, 10147, f"OrderId {oid} that needs to be cancelled is "
                               "not found.")]
            assert [o.status for o in gateway.live_orders()] == ["Submitted"]
            other.reqGlobalCancel()
            await until(owner, lambda: trade.orderStatus.status == "Cancelled")
            assert gateway.live_orders() == []

    run(body())


# --------------------------------------------------------------- duplicates, errors


def test_every_message_twice_and_what_ib_async_makes_of_it(gateway: Any) -> None:
    async def body() -> None:
        gateway.script("dup", [Ack(), Fill(10, 100.0, commission=1.25)], duplicate=2)
        async with connected(gateway) as ib:
            reports: list[float] = []
            ib.commissionReportEvent += lambda t, f, r: reports.append(r.commission)
            trade = await place(ib, "dup")
            await until(ib, lambda: len(reports) == 2)
            oid = trade.order.orderId
            assert kinds(gateway, order_id=oid) == [
                "5", "5", "3:Submitted", "3:Submitted", "11", "11", "5", "5",
                "3:Filled", "3:Filled", "59", "59"]
            # One fill (by execId), one log line per status; but the commission event
            # fires for each copy.
            assert len(trade.fills) == 1
            assert [e.status for e in trade.log] == ["PendingSubmit", "Submitted", "Submitted",
                                                     "Filled"]
            assert trade.log[2].message.startswith("Fill 10")
            assert reports == [1.25, 1.25]

    run(body())


def test_informational_errors_keep_the_order_and_10349_makes_it_day(gateway: Any) -> None:
    async def body() -> None:
        gateway.script("info", [Ack(), Error(10349), Error(2109), Error(399),
                                Fill(10, 100.0, delay=0.05)])
        async with connected(gateway) as ib:
            errors = error_log(ib)
            gtd = time.strftime("%Y%m%d %H:%M:%S UTC", time.gmtime(time.time() + 3600))
            trade = await place(ib, "info", tif="GTD", goodTillDate=gtd)
            await until(ib, lambda: trade.orderStatus.status == "Filled")
            oid = trade.order.orderId
            assert [e[:2] for e in errors] == [(oid, 10349), (oid, 2109), (oid, 399)]
            assert errors[0][2] == "Order TIF was set to DAY based on order preset."
            assert errors[1][2].startswith("Order Event Warning:Attribute 'Outside Regular")
            assert errors[2][2].startswith("Order Message:\nBUY 10 SPY ")
            # ib_async shows the 10349 as a cancellation, then the order fills.
            assert [e.status for e in trade.log[:3]] == ["PendingSubmit", "Submitted",
                                                         "Cancelled"]
            assert "Error 10349" in trade.log[2].message
            opens = [f for _, f in gateway.sent_frames(5, client_id=7)]
            assert (opens[0][18], opens[0][35]) == ("GTD", gtd)
            assert (opens[-1][18], opens[-1][35]) == ("DAY", "")
            [snap] = gateway.orders_by_ref("info")
            assert (snap.status, snap.order.tif) == ("Filled", "DAY")

    run(body())


def test_gtd_expires_at_its_date_unless_a_10349_made_it_day(gateway: Any) -> None:
    async def body() -> None:
        gtd_s = int(time.time()) + 2  # one to two seconds from now (IB has whole seconds)
        gtd = time.strftime("%Y%m%d %H:%M:%S UTC", time.gmtime(gtd_s))
        wake = gtd_s - time.time() + 0.3  # a fill that comes after the date
        gateway.script("gtd", [Ack()])
        gateway.script("gtd-day", [Ack(), Error(10349), Fill(10, 99.0, delay=wake)])
        async with connected(gateway) as ib:
            errors = error_log(ib)
            dies = await place(ib, "gtd", tif="GTD", goodTillDate=gtd)
            lives = await place(ib, "gtd-day", tif="GTD", goodTillDate=gtd)
            await until(ib, lambda: dies.orderStatus.status == "Cancelled"
                        and lives.orderStatus.status == "Filled", timeout=5)
            assert time.time() >= gtd_s
            assert (dies.order.orderId, 202, "Order Canceled - reason:") in errors
            assert kinds(gateway, order_id=dies.order.orderId)[-2:] == ["3:Cancelled", "4:202"]
            assert [o.status for o in gateway.orders_by_ref("gtd-day")] == ["Filled"]

    run(body())


# --------------------------------------------------------------- fills and commissions


def test_late_commission_does_not_hold_the_script_up(gateway: Any) -> None:
    async def body() -> None:
        gateway.script("late", [Ack(), Fill(4, 100.0, commission=0.4, commission_delay=0.3),
                                Fill(6, 101.0, commission=0.6)])
        async with connected(gateway) as ib:
            trade = await place(ib, "late")
            await until(ib, lambda: len(trade.fills) == 2 and all(
                f.commissionReport.execId for f in trade.fills))
            first, second = (f.execution.execId for f in trade.fills)
            reports = [f[2] for _, f in gateway.sent_frames(59)]
            assert reports == [second, first]  # the second fill's commission came first
            assert [f.commissionReport.commission for f in trade.fills] == [0.4, 0.6]

    run(body())


def test_commission_before_its_execution_is_dropped_by_ib_async(gateway: Any) -> None:
    async def body() -> None:
        gateway.script("early", [Ack(), Fill(10, 100.0, commission=2.0,
                                             commission_mode="before")])
        async with connected(gateway) as ib:
            trade = await place(ib, "early")
            await until(ib, lambda: trade.orderStatus.status == "Filled")
            assert kinds(gateway, order_id=trade.order.orderId)[2:] == [
                "59", "11", "5", "3:Filled"]
            [fill] = trade.fills
            assert fill.commissionReport.execId == ""  # dropped: its execId was unknown
            # reqExecutions answers the execution with its commission; ib_async puts the
            # commission on the fill it already has.
            [again] = await ib.reqExecutionsAsync()
            assert again.execution.execId == fill.execution.execId
            assert fill.commissionReport.commission == 2.0

    run(body())


def test_commission_never_live_or_absent_everywhere(gateway: Any) -> None:
    async def body() -> None:
        gateway.script("never", [Ack(), Fill(10, 100.0, commission_mode="never")])
        gateway.script("absent", [Ack(), Fill(10, 100.0, commission_mode="absent")])
        async with connected(gateway) as ib:
            a, b = await place(ib, "never"), await place(ib, "absent")
            await until(ib, lambda: a.orderStatus.status == b.orderStatus.status == "Filled")
            assert gateway.sent_frames(59) == []
            await ib.reqExecutionsAsync()
            [(_, report)] = gateway.sent_frames(59)
            assert report[2] == a.fills[0].execution.execId
            assert a.fills[0].commissionReport.commission == 1.0
            assert b.fills[0].commissionReport.execId == ""
            assert [e.commission_reported for e in gateway.executions] == [True, False]

    run(body())


def test_status_first_and_an_over_fill(gateway: Any) -> None:
    async def body() -> None:
        gateway.script("sf", [Ack(), Fill(10, 100.0, status_first=True)])
        gateway.script("over", [Ack(), Fill(8, 100.0), Fill(4, 100.5, over=True)])
        async with connected(gateway) as ib:
            sf, over = await place(ib, "sf"), await place(ib, "over")
            # the over-fill's orderStatus follows its execDetails, maybe in a later read
            await until(ib, lambda: len(sf.fills) == 1 and len(over.fills) == 2
                        and over.orderStatus.status == "Filled")
            assert kinds(gateway, order_id=sf.order.orderId)[2:] == ["5", "3:Filled", "11", "59"]
            assert [e.status for e in sf.log] == ["PendingSubmit", "Submitted", "Filled",
                                                  "Filled"]
            assert (over.orderStatus.status, over.orderStatus.filled,
                    over.orderStatus.remaining) == ("Filled", 12, 0)
            assert [f.execution.cumQty for f in over.fills] == [8, 12]
            [snap] = gateway.orders_by_ref("over")
            assert snap.filled == 12 > snap.order.qty

    run(body())


def test_execution_correction_after_and_before_the_order_is_done(gateway: Any) -> None:
    async def body() -> None:
        gateway.script("corr", [Ack(), Fill(10, 100.0, commission=1.0),
                                Correct(px=99.5, commission=0.9)])
        gateway.script("corr-live", [Ack(), Fill(4, 100.0), Correct(qty=3)])
        async with connected(gateway) as ib:
            done, live = await place(ib, "corr"), await place(ib, "corr-live")
            await until(ib, lambda: len(done.fills) == 2 and len(live.fills) == 2
                        and done.fills[1].commissionReport.execId != "")
            old, new = (f.execution for f in done.fills)
            assert new.execId == old.execId[:-2] + "02" and old.execId.endswith(".01")
            assert (new.shares, new.price, new.cumQty, new.avgPrice) == (10, 99.5, 10, 99.5)
            # ib_async keeps both as fills: 20 shares if one adds them up.
            assert sum(f.execution.shares for f in done.fills) == 20
            assert (done.orderStatus.status, done.orderStatus.filled,
                    done.orderStatus.avgFillPrice) == ("Filled", 10, 99.5)
            assert done.fills[1].commissionReport.commission == 0.9
            assert kinds(gateway, order_id=done.order.orderId)[-4:] == [
                "11", "5", "3:Filled", "59"]
            assert (live.orderStatus.status, live.orderStatus.filled,
                    live.orderStatus.remaining) == ("Submitted", 3, 7)
            # reqExecutions: the original and the correction, in time order, each
            # with its commission.
            fills = await ib.reqExecutionsAsync()
            ids = [f.execution.execId for f in fills]
            assert len(ids) == 4
            assert [i for i in ids if i in (old.execId, new.execId)] == [old.execId, new.execId]
            reports = {f[2]: f[3] for _, f in gateway.sent_frames(59)}
            assert (reports[old.execId], reports[new.execId]) == ("1", "0.9")
            [snap] = gateway.orders_by_ref("corr")
            assert (snap.filled, snap.avg_px, snap.commission) == (10, 99.5, 0.9)

    run(body())


def test_inactive_and_reject_after_partial_fills_keep_the_filled_qty(gateway: Any) -> None:
    async def body() -> None:
        gateway.script("in0", [Ack(), Fill(3, 100.0), Inactive()])
        gateway.script("in1", [Ack(), Inactive(201, "Order rejected - reason:Exchange closed")])
        gateway.script("rej", [Ack(), Fill(2, 100.0), Reject("Short sale not allowed")])
        async with connected(gateway) as ib:
            errors = error_log(ib)
            a, b, c = [await place(ib, r) for r in ("in0", "in1", "rej")]
            await until(ib, lambda: all(t.orderStatus.status == "Inactive" for t in (a, b, c)))
            assert (a.orderStatus.filled, c.orderStatus.filled) == (3, 2)
            assert kinds(gateway, order_id=a.order.orderId)[-1] == "3:Inactive"
            assert not [e for e in errors if e[0] == a.order.orderId]
            assert kinds(gateway, order_id=b.order.orderId)[-2:] == ["4:201", "3:Inactive"]
            assert (c.order.orderId, 201, "Order rejected - reason:Short sale not allowed") \
                in errors
            assert [(o.status, o.filled) for o in gateway.orders_by_ref("rej")] == [
                ("Inactive", 2)]

    run(body())


# --------------------------------------------------------------- outages, restarts


def test_outage_holds_every_message_until_1102(gateway: Any) -> None:
    async def body() -> None:
        gateway.script("out", [Ack(), Outage(0.4), Fill(10, 100.0, delay=0.05)])
        async with connected(gateway) as ib:
            errors = error_log(ib)
            restored_at: list[int] = []
            ib.errorEvent += lambda r, code, t, c: code == 1102 and restored_at.append(
                time.time_ns())
            trade = await place(ib, "out")
            # 1100 seen (on a loaded machine the 0.4 s outage may already be over: the
            # order of 1100, 1102 and the fill is checked below, from what was sent)
            await until(ib, lambda: 1100 in [e[1] for e in errors])
            asked = ib.reqCurrentTimeAsync()  # held too while the outage lasts
            await until(ib, lambda: trade.orderStatus.status == "Filled")
            await asked
            assert [e[:2] for e in errors] == [(-1, 1100), (-1, 1102)]
            seq = [(f[0], f[3] if f[0] == ERROR else "") for cid, f in gateway.sent
                   if cid == 7 and f[0] in (ERROR, EXEC, "49")]
            at_1100, at_1102 = seq.index(("4", "1100")), seq.index(("4", "1102"))
            assert at_1100 < at_1102 < seq.index(("11", "")) and seq.index(("49", "")) > at_1102
            # The fill happened during the outage (the script went on), only held.
            assert gateway.executions[0].time_ns < restored_at[0]

    run(body())


def test_gateway_wide_outage_with_1101_reaches_every_client(gateway: Any) -> None:
    async def body() -> None:
        async with connected(gateway, client_id=1) as a, connected(gateway, client_id=2) as b:
            ea, eb = error_log(a), error_log(b)
            gateway.outage(0.2, restored=1101)
            await until(a, lambda: len(ea) == 2)
            await until(b, lambda: len(eb) == 2)
            lost = "Connectivity between IB and Trader Workstation has been lost."
            back = "Connectivity between IB and Trader Workstation has been restored - data lost."
            assert ea == eb == [(-1, 1100, lost), (-1, 1101, back)]

    run(body())


def test_restart_refuses_connections_then_rolls_ids_back_to_103(
        make_gateway: Callable[..., GatewayThread]) -> None:
    gw = make_gateway(first_order_id=1)

    async def body() -> None:
        gw.script("once", [Ack(), Fill(10, 100.0)])
        ib = IB()
        await ib.connectAsync("127.0.0.1", gw.port, clientId=7, timeout=3)
        gone = asyncio.get_running_loop().create_future()
        ib.disconnectedEvent += lambda: gone.done() or gone.set_result(None)
        trade = await place(ib, "once")
        await until(ib, lambda: trade.orderStatus.status == "Filled")
        used = trade.order.orderId
        gw.restart(down=0.5)
        await asyncio.wait_for(gone, 2)
        assert gw.is_down
        with pytest.raises((ConnectionError, TimeoutError)):
            await IB().connectAsync("127.0.0.1", gw.port, clientId=7, timeout=0.2)
        gw.wait_up()
        ib2 = IB()
        await ib2.connectAsync("127.0.0.1", gw.port, clientId=7, timeout=3)
        try:
            errors = error_log(ib2)
            again = await place(ib2, "twice")
            assert again.order.orderId == used  # nextValidId went back: the id is reused
            await until(ib2, lambda: bool(errors))
            assert errors == [(used, 103, "Duplicate order id")]
            assert again.orderStatus.status == "Cancelled"  # as ib_async shows a 103
            assert [o.status for o in gw.orders_by_ref("once")] == ["Filled"]
            assert gw.orders_by_ref("twice") == []
        finally:
            ib2.disconnect()

    run(body())


def test_restart_losing_orders_hides_them_until_restored(gateway: Any) -> None:
    async def body() -> None:
        gateway.script("lost", [Ack(), Fill(3, 100.0), Restart(down=0.0, lose_orders=True)])
        ib = IB()
        await ib.connectAsync("127.0.0.1", gateway.port, clientId=7, timeout=3)
        gone = asyncio.get_running_loop().create_future()
        ib.disconnectedEvent += lambda: gone.done() or gone.set_result(None)
        trade = await place(ib, "lost")
        await asyncio.wait_for(gone, 2)
        assert trade.orderStatus.filled == 3
        async with connected(gateway) as ib2:
            assert ib2.openTrades() == [] and ib2.fills() == []
            assert await ib2.reqCompletedOrdersAsync(apiOnly=True) == []
            [hidden] = gateway.live_orders()  # alive at IB, and trading, but not shown
            assert (hidden.order_ref, hidden.hidden) == ("lost", True)
            gateway.fill("lost", 2, 101.0)  # lands in the book, unseen
            assert [o.filled for o in gateway.orders_by_ref("lost")] == [5]
            errors = error_log(ib2)
            ib2.client.cancelOrder(trade.order.orderId, "")  # the gateway does not know it
            await until(ib2, lambda: bool(errors))
            assert errors[0][1] == 10147
            gateway.restore_orders()
            assert len(gateway.sent_frames(11)) == 1  # only the fill before the restart
            [found] = await ib2.reqOpenOrdersAsync()
            assert (found.order.orderRef, found.orderStatus.filled) == ("lost", 5)
            assert len(await ib2.reqExecutionsAsync()) == 2

    run(body())


def test_slow_sync_answers_do_not_block_other_requests(
        make_gateway: Callable[..., GatewayThread]) -> None:
    gw = make_gateway(sync_delay={"executions": 0.3})

    async def body() -> None:
        async with connected(gw) as ib:
            gw.set_sync_delay(open_orders=0.3, executions=0.3)
            executions = asyncio.ensure_future(ib.reqExecutionsAsync())
            orders = asyncio.ensure_future(ib.reqOpenOrdersAsync())
            await ib.reqCurrentTimeAsync()  # answered while the two wait
            assert not executions.done() and not orders.done()
            assert await executions == [] and await orders == []
            order = [f[0] for cid, f in gw.sent if f[0] in ("49", "55", "53")]
            assert order[-3:] == ["49", "55", "53"]

    run(body())


# --------------------------------------------------------------- the script surface


def test_tuple_steps_and_clear_errors(gateway: Any) -> None:
    gateway.script("t", [("ack",), ("fill", 5, 101.0), ("correct", 4, 101.5), ("inactive",),
                         ("outage", 0.1), ("restart", 0.1, False, False)])
    with pytest.raises(ValueError, match="unknown step"):
        gateway.script("bad", [("explode",)])
    with pytest.raises(ValueError, match="commission_mode"):
        Fill(1, 1.0, commission_mode="late")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no IB text known for code 4242"):
        Error(4242)
    with pytest.raises(ValueError, match="duplicate"):
        gateway.script("bad", [], duplicate=0)
    with pytest.raises(ValueError, match="refuse_code"):
        gateway.script("bad", [], on_cancel="refuse", refuse_code=202)
    with pytest.raises(LookupError):
        gateway.set_cancel("nobody", "ok")


# --------------------------------------------------------------- command line


def test_shipped_example_scenario_loads() -> None:
    scenario = load_scenario(EXAMPLE)
    assert scenario.scripts and scenario.sync_delay


def test_gateway_command_runs_a_scenario_file(tmp_path: Path) -> None:
    script = tmp_path / "s.yaml"
    script.write_text("sync_delay: {executions: 0.1}\n"
                      "orders:\n"
                      "  cli-1:\n"
                      "    duplicate: 2\n"
                      "    on_cancel: refuse\n"
                      "    steps:\n"
                      "      - ack: {}\n"
                      "      - error: {code: 10349}\n"
                      "      - fill: {qty: 5, px: 100.0, commission_delay: 0.1}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "runner", "gateway", "--script", str(script),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        prefix = "fake TWS gateway listening on 127.0.0.1:"
        assert line.startswith(prefix), (line, proc.stderr.read() if proc.stderr else "")
        port = int(line[len(prefix):].split(" ")[0])

        async def body() -> None:
            ib = IB()
            await ib.connectAsync("127.0.0.1", port, clientId=7, timeout=3)
            try:
                errors = error_log(ib)
                reports: list[float] = []
                ib.commissionReportEvent += lambda t, f, r: reports.append(r.commission)
                trade = await place(ib, "cli-1", qty=5)
                await until(ib, lambda: len(reports) == 2)
                assert trade.orderStatus.status == "Filled"
                assert [e[1] for e in errors] == [10349, 10349]
                assert len(trade.fills) == 1
            finally:
                ib.disconnect()

        run(body())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_bad_scenario_file_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("orders:\n  p:\n    steps:\n      - fill: {qty: five, px: 1}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "runner", "gateway", "--script", str(bad),
                           "--port", "0"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=20)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines == [f"runner gateway: {bad}: orders.p.steps[0].fill.qty: "
                     "must be a number, got 'five'"]


@pytest.mark.parametrize(("text", "key", "problem"), [
    ("orders: {p: {steps: [{explode: {}}]}}", "orders.p.steps[0]", "unknown step 'explode'"),
    ("orders: {p: {steps: [{fill: {qty: 1, px: 1, speed: 2}}]}}",
     "orders.p.steps[0].fill.speed", "unknown field"),
    ("orders: {p: {steps: [{fill: {qty: 1}}]}}", "orders.p.steps[0].fill",
     "missing field(s): px"),
    ("orders: {p: {on_cancel: maybe}}", "orders.p.on_cancel", "must be one of"),
    ("orders: {p: {refusals: many}}", "orders.p.refusals", "must be int or null"),
    ("orders: {p: {duplicate: 0}}", "orders.p", "duplicate must be an integer >= 1"),
    ("sync_delay: {trades: 1}", "sync_delay.trades", "unknown"),
    ("speed: 2", "speed", "unknown key"),
    ("orders: [a, b]", "orders", "must be a mapping"),
    ("orders: {p: {steps: [{outage: {seconds: 1, restored: 1100}}]}}",
     "orders.p.steps[0].outage", "restored must be 1101 or 1102"),
])
def test_scenario_errors_name_the_key(tmp_path: Path, text: str, key: str,
                                      problem: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message and "\n" not in message
