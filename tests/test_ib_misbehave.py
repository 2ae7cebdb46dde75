"""Order truth when the gateway misbehaves (TWS_PROTOCOL.md §7): `runner` over 127.0.0.1,
the unmodified ib_async client, the project's fake gateway scripted to behave like real IB.

Each test asserts the ledger rows, the printed line, the exit code, and what the gateway
holds afterwards: no working order that runner does not know of.
"""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runner.gateway import (
    Ack,
    Correct,
    DropBeforeAck,
    Error,
    Fill,
    Inactive,
    Outage,
    Reject,
    Restart,
)
from runner.ledger import read_ledger

PLACE, CANCEL = 3, 4
NS = 1_000_000_000
CANCEL_SEC = 0.9  # IB_CANCEL_TIMEOUT here: the fake answers (or not) within milliseconds


def rows(tmp_path: Path, tag: str) -> list[dict[str, Any]]:
    root = tmp_path / "data" / "exec"
    if not root.exists():
        return []
    return [r for r in read_ledger(root).to_pylist() if r["tag"] == tag]


def events(tmp_path: Path, tag: str) -> list[str]:
    return [r["event"] for r in rows(tmp_path, tag)]


def sent(gw: Any, msg_id: int) -> list[tuple[str, ...]]:
    return [fields for _, fields in gw.received if fields[0] == str(msg_id)]


def working(gw: Any, tag: str) -> list[Any]:
    return [o for o in gw.orders_by_ref(tag) if not o.done]


def one_shot(cli: Any, gw: Any, tag: str, qty: int = 10, ttl: float = 5,
             *extra: str) -> tuple[int, str, str]:
    return cli(gw.port, "one-shot", "--qty", str(qty), "--limit", "100.00", "--ttl_sec",
               str(ttl), "--tag", tag, *extra)


def after(gw: Any, msg_id: int, action: Any) -> threading.Thread:
    """Run `action` once the gateway has received a frame with `msg_id` (in a thread,
    since the run under test holds the test's thread)."""
    def go() -> None:
        gw.wait_for(msg_id, timeout=10)
        action()
    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


@pytest.fixture(autouse=True)
def quick_cancels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IB_CANCEL_TIMEOUT", str(CANCEL_SEC))  # 3 attempts of 0.3 s


@pytest.fixture(autouse=True)
def no_working_order_runner_does_not_know_of(request: pytest.FixtureRequest,
                                             make_gateway: Any, tmp_path: Path) -> Any:
    """After every test: each order still working at a gateway of the test is one the
    ledger leaves open (UNSETTLED / UNKNOWN), never one it says ended."""
    yield
    from runner.gateway import GatewayThread

    for gw in [v for v in request.node.funcargs.values() if isinstance(v, GatewayThread)]:
        for o in gw.live_orders():
            last = [r["event"] for r in rows(tmp_path, o.order_ref)
                    if r["event"] != "PNL_SNAPSHOT" and r["order_id"] == o.order_id]
            assert last and last[-1] in ("UNSETTLED", "UNKNOWN"), \
                f"{o.order_ref} works at the gateway, the ledger says {last}"


# --- information never ends an order ----------------------------------------------------


def test_10349_after_the_ack_then_a_fill_is_tracked_to_the_fill(gateway, cli, tmp_path):
    gateway.script("i-10349", [Ack(), Error(10349, "Order TIF was set to DAY based on order "
                                            "preset."), Fill(10, 99.5, delay=0.3)])
    code, out, err = one_shot(cli, gateway, "i-10349")
    assert code == 0, err
    assert out == "[one-shot] tag=i-10349 state=FILL fill_qty=10 avg_px=99.50 arrival=—\n"
    assert "10349 Order TIF was set to DAY" in err and "GTD backstop is gone" in err
    assert events(tmp_path, "i-10349") == ["INTENT", "ACK", "FILL"]
    assert working(gateway, "i-10349") == [] and sent(gateway, CANCEL) == []


# --- the kill switch is watched while the order works -----------------------------------


def test_touching_the_kill_switch_mid_order_cancels_within_2_s(gateway, cli, tmp_path):
    (tmp_path / "runner-policy.yaml").write_text("version: 1\nkill_switch: KILL\n")
    touched: list[int] = []

    def touch() -> None:
        gateway.wait_for(PLACE, timeout=10)
        (tmp_path / "KILL").touch()
        touched.append(time.time_ns())

    after(gateway, PLACE, touch)
    code, out, err = one_shot(cli, gateway, "k-1", 10, 30)
    assert code == 1
    assert err.startswith("runner: kill switch KILL turned on while the order worked; order "
                          "k-1 ended CANCEL and was recorded")
    r = rows(tmp_path, "k-1")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "CANCEL"]
    assert (r[-1]["ts"].value - touched[0]) / NS <= 2.0
    assert working(gateway, "k-1") == []


# --- rejections -------------------------------------------------------------------------


def test_partial_then_201_ends_rej_with_the_filled_quantity(gateway, cli, tmp_path):
    gateway.script("p-201", [Ack(), Fill(3, 100.0, commission=1.0), Reject("exchange closed",
                                                                           delay=0.2)])
    start = time.monotonic()
    code, out, err = one_shot(cli, gateway, "p-201")
    assert code == 4 and time.monotonic() - start < 4
    assert out.startswith("[one-shot] tag=p-201 state=REJ fill_qty=3 avg_px=100.00")
    assert "201 Order rejected - reason:exchange closed" in err
    r = rows(tmp_path, "p-201")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "PARTIAL", "REJ"]
    assert r[-1]["fill_qty"] == 3 and r[-1]["commission"] == 1.0
    assert working(gateway, "p-201") == []


@pytest.mark.parametrize("code", [399, 2109, 2104])
def test_other_information_after_the_ack_keeps_the_order_tracked(gateway, cli, tmp_path, code):
    tag = f"i-{code}"
    gateway.script(tag, [Ack(), Error(code), Fill(4, 100.0), Fill(6, 100.0, delay=0.1)])
    code_, out, err = one_shot(cli, gateway, tag)
    assert code_ == 0, err
    assert events(tmp_path, tag) == ["INTENT", "ACK", "PARTIAL", "FILL"]
    assert f"IB {code} " in err and "the order works on" in err
    assert working(gateway, tag) == []


def test_201_right_after_the_ack_is_a_rej_exit_4(gateway, cli, tmp_path):
    gateway.script("r-201", [Ack(), Reject("not allowed")])
    code, out, err = one_shot(cli, gateway, "r-201")
    assert code == 4 and "state=REJ fill_qty=0" in out
    assert events(tmp_path, "r-201") == ["INTENT", "ACK", "REJ"]
    assert "201 Order rejected - reason:not allowed" in rows(tmp_path, "r-201")[-1]["message"]


@pytest.mark.parametrize("with_error", [True, False])
def test_partial_then_inactive_ends_within_2_s_with_the_filled_quantity(gateway, cli, tmp_path,
                                                                        with_error):
    tag = f"in-{with_error}"
    end = Inactive(201, "Order rejected - reason:halted", delay=0.2) if with_error else \
        Inactive(delay=0.2)
    gateway.script(tag, [Ack(), Fill(2, 100.0, commission=0.5), end])
    code, out, err = one_shot(cli, gateway, tag, 10, 30)
    assert code == 4
    r = rows(tmp_path, tag)
    assert [x["event"] for x in r] == ["INTENT", "ACK", "PARTIAL", "REJ"]
    assert r[-1]["fill_qty"] == 2 and r[-1]["commission"] == 0.5
    # the Inactive status went out 0.2 s after the fill: the end follows it within 2 s
    assert any(f[1][2] == "Inactive" for f in gateway.sent_frames(3))
    assert (r[-1]["ts"].value - r[2]["ts"].value) / NS <= 0.2 + 2.0
    reason = "201 Order rejected - reason:halted" if with_error else "Inactive at the broker"
    assert reason in r[-1]["message"] and reason in err
    assert working(gateway, tag) == []


# --- cancels that do not finish -----------------------------------------------------------


@pytest.mark.parametrize("code,state", [(161, ""), (10147, ""), (10148, "PendingCancel"),
                                        (10148, "Inactive")])
def test_a_refused_cancel_leaves_the_order_unsettled(gateway, cli, tmp_path, code, state):
    tag = f"rc-{code}-{state}"
    gateway.script(tag, [Ack()], on_cancel="refuse", refuse_code=code,
                   refuse_state=state or "PendingCancel")
    start = time.monotonic()
    code_, out, err = one_shot(cli, gateway, tag, 1, 0.3)
    waited = time.monotonic() - start
    assert code_ == 1
    assert out.startswith(f"[one-shot] tag={tag} state=UNSETTLED fill_qty=0")
    line = err.strip().splitlines()[-1]
    order_id = rows(tmp_path, tag)[-1]["order_id"]
    assert line.startswith(f"runner: cancel of {tag} (order id {order_id}) refused (IB {code} ")
    assert "after 3 attempts in 0.9 s" in line and "the broker shows it still working" in line
    assert "runner recover" in line and "--allow-unsettled" in line
    assert events(tmp_path, tag) == ["INTENT", "ACK", "UNSETTLED"]  # no CANCEL, no REJ
    assert len(sent(gateway, CANCEL)) == 3 and waited < 0.3 + CANCEL_SEC + 2
    assert len(working(gateway, tag)) == 1  # what runner says: still working


def test_an_unanswered_cancel_says_the_time_it_waited(gateway, cli, tmp_path):
    gateway.script("ign", [Ack()], on_cancel="ignore")
    start = time.monotonic()
    code, out, err = one_shot(cli, gateway, "ign", 1, 0.3)
    waited = time.monotonic() - start - 0.3
    assert code == 1 and "state=UNSETTLED" in out
    said = float(err.split("not confirmed after 3 attempts in ")[1].split(" s")[0])
    assert CANCEL_SEC <= said <= waited + 0.05  # the figure printed is the time waited
    assert events(tmp_path, "ign") == ["INTENT", "ACK", "UNSETTLED"]


def test_unsettled_blocks_the_next_run_until_recover_settles_it(make_gateway, cli, tmp_path):
    gateway = make_gateway()
    gateway.script("u-1", [Ack()], on_cancel="refuse", refuse_code=161)
    assert one_shot(cli, gateway, "u-1", 1, 0.3)[0] == 1
    # the next run refuses to place while u-1 may still work
    code, out, err = one_shot(cli, gateway, "u-2", 1, 0.3)
    assert code == 2 and "not placing: 1 earlier order(s) under data/exec are not settled" in err
    assert "u-1" in err and [p.order_ref for p in gateway.place_orders()] == ["u-1"]
    # recover pointed at another account's gateway changes nothing and exits non-zero
    other = make_gateway(accounts=("DU7654321",))
    before = rows(tmp_path, "u-1")
    code, out, err = cli(other.port, "recover", "--cancel-all")
    assert code == 3 and "manages DU****321, not DU****567" in out and "nothing changed" in out
    assert rows(tmp_path, "u-1") == before and sent(other, CANCEL) == []
    # the right gateway, still refusing: reported, not settled
    code, out, err = cli(gateway.port, "recover", "--cancel-all")
    assert code == 3 and "u-1: cancel not confirmed" in out
    assert len(working(gateway, "u-1")) == 1
    # once IB lets it be cancelled, recover settles it, and the next run may place
    gateway.set_cancel("u-1", on_cancel="ok")
    code, out, err = cli(gateway.port, "recover", "--cancel-all")
    assert code == 0 and "u-1: cancelled (filled 0)" in out, out + err
    assert events(tmp_path, "u-1") == ["INTENT", "ACK", "UNSETTLED", "CANCEL"]
    assert working(gateway, "u-1") == []
    code, out, err = one_shot(cli, gateway, "u-2", 1, 0.3)
    assert code == 0 and "state=CANCEL" in out, err
    assert gateway.live_orders() == []


def test_allow_unsettled_overrides(gateway, cli, tmp_path):
    gateway.script("au-1", [Ack()], on_cancel="ignore")
    assert one_shot(cli, gateway, "au-1", 1, 0.3)[0] == 1
    code, out, err = one_shot(cli, gateway, "au-2", 1, 0.3, "--allow-unsettled")
    assert code == 0 and "state=CANCEL" in out, err
    assert "runner: recovered au-1 from an earlier run: cancel not confirmed" in err


# --- executions and commissions ---------------------------------------------------------


def fill_rows(r: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for x in r if x["event"] in ("PARTIAL", "FILL")]


@pytest.mark.parametrize("mode,delay", [("after", 0.8), ("before", 0.0), ("never", 0.0)])
def test_a_commission_late_early_or_not_sent_live_is_in_the_ledger(gateway, cli, tmp_path,
                                                                   mode, delay):
    tag = f"c-{mode}"
    gateway.script(tag, [Ack(), Fill(4, 100.0, commission=0.75),
                         Fill(6, 101.0, commission=1.25, commission_mode=mode,
                              commission_delay=delay)])
    code, out, err = one_shot(cli, gateway, tag)
    assert code == 0, err
    r = rows(tmp_path, tag)
    assert r[-1]["commission"] == pytest.approx(0.75 + 1.25)  # the order's last row
    assert sum(x["last_qty"] for x in fill_rows(r)) == 10
    assert [x["event"] for x in r][:4] == ["INTENT", "ACK", "PARTIAL", "FILL"]
    assert set(x["event"] for x in r[4:]) <= {"CORRECTION"}


def test_a_commission_that_never_comes_is_said(gateway, cli, tmp_path):
    gateway.script("c-absent", [Ack(), Fill(10, 100.0, commission_mode="absent")])
    code, out, err = one_shot(cli, gateway, "c-absent")
    assert code == 0 and "state=FILL" in out
    assert "a commission was not reported" in err
    r = rows(tmp_path, "c-absent")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "FILL"] and r[-1]["commission"] is None


@pytest.mark.parametrize("when", ["before-the-end", "after-the-end"])
def test_a_correction_replaces_the_execution(gateway, cli, tmp_path, when):
    tag = f"x-{when}"
    if when == "before-the-end":
        steps = [Ack(), Fill(4, 100.0), Correct(px=99.0, delay=0.05), Fill(6, 101.0, delay=0.1)]
    else:
        steps = [Ack(), Fill(4, 100.0), Fill(6, 101.0), Correct(px=99.0, index=0, delay=0.1)]
    gateway.script(tag, steps)
    code, out, err = one_shot(cli, gateway, tag)
    assert code == 0, err
    r = rows(tmp_path, tag)
    corrections = [x for x in r if x["event"] == "CORRECTION"]
    assert len(corrections) == 1
    first = fill_rows(r)[0]["exec_id"]
    assert corrections[0]["corrects"] == first and corrections[0]["exec_id"] != first
    assert corrections[0]["exec_id"].rsplit(".", 1)[0] == first.rsplit(".", 1)[0]
    assert sum(x["last_qty"] for x in fill_rows(r)) == 10  # not 14: no second fill
    by_hand = (4 * 99.0 + 6 * 101.0) / 10
    last = [x for x in r if x["event"] != "PNL_SNAPSHOT"][-1]
    assert last["fill_qty"] == 10 and last["avg_px"] == pytest.approx(by_hand, abs=1e-12)


def test_status_before_the_executions(gateway, cli, tmp_path):
    gateway.script("sf", [Ack(), Fill(10, 100.5, status_first=True)])
    code, out, err = one_shot(cli, gateway, "sf")
    assert code == 0 and "state=FILL fill_qty=10 avg_px=100.50" in out, err
    r = rows(tmp_path, "sf")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "FILL"]
    assert (r[-1]["last_qty"], r[-1]["last_px"], r[-1]["commission"]) == (10, 100.5, 1.0)


def test_every_message_three_times_counts_once(gateway, cli, tmp_path):
    gateway.script("dup", [Ack(), Fill(4, 100.0), Fill(6, 100.0)], duplicate=3)
    code, out, err = one_shot(cli, gateway, "dup")
    assert code == 0, err
    r = rows(tmp_path, "dup")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "PARTIAL", "FILL"]
    assert r[-1]["commission"] == 2.0 and sum(x["last_qty"] for x in fill_rows(r)) == 10


def test_an_over_fill_is_recorded_as_reported_and_exits_non_zero(gateway, cli, tmp_path):
    gateway.script("of", [Ack(), Fill(4, 100.0), Fill(9, 100.0, over=True)])
    code, out, err = one_shot(cli, gateway, "of")
    assert code == 1
    assert "OVERFILL: executions for of add up to 13, more than the order's 10" in err
    r = rows(tmp_path, "of")
    assert sum(x["last_qty"] or 0 for x in r if x["event"] != "PNL_SNAPSHOT") == 13
    assert max(x["fill_qty"] or 0 for x in r) == 13


# --- connectivity, restarts, slow gateways ------------------------------------------------


@pytest.mark.parametrize("restored", [1102, 1101])
def test_a_fill_held_during_1100_is_recorded_after_the_restore(gateway, cli, tmp_path,
                                                               restored):
    tag = f"o-{restored}"
    gateway.script(tag, [Ack(), Outage(0.6, restored=restored), Fill(10, 100.0, delay=0.1)])
    code, out, err = one_shot(cli, gateway, tag)
    assert code == 0 and "state=FILL fill_qty=10" in out, err
    assert "IB 1100" in err and f"IB {restored}" in err
    assert events(tmp_path, tag) == ["INTENT", "ACK", "FILL"]
    assert rows(tmp_path, tag)[-1]["commission"] == 1.0


def test_a_fill_whose_messages_the_outage_lost_is_found_by_the_resync(gateway, cli, tmp_path):
    """1101 and none of the messages sent meanwhile: runner must ask the gateway again
    (open orders, executions) to learn of the fill, and does so well before the TTL."""
    gateway.script("o-lost", [Ack(), Outage(0.6, restored=1101, lose_held=True),
                              Fill(10, 100.0, delay=0.1)])
    code, out, err = one_shot(cli, gateway, "o-lost")
    assert code == 0 and "state=FILL fill_qty=10" in out, err
    assert "IB 1100" in err and "IB 1101" in err
    r = rows(tmp_path, "o-lost")
    got = [x["event"] for x in r]
    # the execution is journaled once, the end is IB's Filled (no CANCEL, no second fill);
    # the execution is found again at once, IB's Filled status only by the TTL's lookup
    assert got[:2] == ["INTENT", "ACK"] and got[-1] == "FILL" and "CANCEL" not in got, got
    assert sum(x["last_qty"] or 0 for x in r) == 10 and r[-1]["fill_qty"] == 10
    assert r[-1]["commission"] == 1.0
    # found again soon after the restore, not only by the TTL's cancel 5 s after the INTENT
    [filled] = [x for x in r if x["last_qty"]]
    assert (filled["ts"] - r[0]["ts"]).total_seconds() < 3.0, filled


def test_a_restart_that_loses_the_order_is_unknown_never_an_end(gateway, cli, tmp_path):
    gateway.script("rs-1", [Ack(), Restart(down=0.3, lose_orders=True, delay=0.2)])
    code, out, err = one_shot(cli, gateway, "rs-1", 1, 5)
    assert code == 1 and "state=UNKNOWN" in out
    assert "acknowledged order not shown by" in err and "runner recover" in err
    assert events(tmp_path, "rs-1") == ["INTENT", "ACK", "UNKNOWN"]  # no CANCEL, no REJ
    # a cancel by its id was still sent, best effort (this gateway cannot see it, so it
    # stays working here until the right gateway is back)
    assert len(sent(gateway, CANCEL)) == 1
    assert len([o for o in gateway.live_orders() if o.order_ref == "rs-1"]) == 1
    # the gateway still does not show it: recover leaves it UNKNOWN, exit non-zero
    code, out, _ = cli(gateway.port, "recover", "--cancel-all")
    assert code == 3 and "rs-1: acknowledged, but the gateway" in out
    assert events(tmp_path, "rs-1") == ["INTENT", "ACK", "UNKNOWN"]
    gateway.restore_orders()  # the right gateway again: recover settles it
    code, out, _ = cli(gateway.port, "recover", "--cancel-all")
    assert code == 0 and "rs-1: cancelled (filled 0)" in out
    assert events(tmp_path, "rs-1") == ["INTENT", "ACK", "UNKNOWN", "CANCEL"]
    assert gateway.live_orders() == []


def test_a_restart_that_keeps_the_order_is_followed_to_its_cancel(gateway, cli, tmp_path):
    gateway.script("rs-2", [Ack(), Restart(down=0.3, delay=0.1), Fill(2, 100.0, delay=0.8)])
    code, out, err = one_shot(cli, gateway, "rs-2", 5, 2)
    assert code == 0, err
    assert out == "[one-shot] tag=rs-2 state=CANCEL fill_qty=2 avg_px=100.00 arrival=—\n"
    assert events(tmp_path, "rs-2") == ["INTENT", "ACK", "PARTIAL", "CANCEL"]
    assert gateway.live_orders() == []


def test_order_ids_rolled_back_by_a_restart_get_103_and_nothing_works(gateway, cli, tmp_path):
    assert one_shot(cli, gateway, "id-1", 1, 0.2)[0] == 0
    gateway.restart(down=0.1, rollback_ids=True)
    gateway.wait_up()
    code, out, err = one_shot(cli, gateway, "id-2", 1, 0.2)
    assert code == 4 and "103 Duplicate order id" in err
    assert events(tmp_path, "id-2") == ["INTENT", "REJ"]
    assert gateway.live_orders() == []
    # the refused id is id-1's: runner never sends a cancel by it
    cancels = [f for f in sent(gateway, CANCEL)]
    assert [f[2] for f in cancels] == [str(rows(tmp_path, "id-1")[0]["order_id"])]


def test_a_slow_sync_does_not_shift_the_gtd(gateway, cli, tmp_path):
    gateway.set_sync_delay(open_orders=1.0, completed_orders=1.0, executions=1.0)
    start = time.time_ns()
    code, out, err = one_shot(cli, gateway, "slow", 1, 0.5)
    assert code == 0, err
    intent = rows(tmp_path, "slow")[0]
    assert (intent["ts"].value - start) / NS >= 2.0  # connect took the slow syncs
    placed = gateway.place_orders()[0]
    gtd_ns = calendar.timegm(time.strptime(placed.good_till_date, "%Y%m%d-%H:%M:%S")) * NS
    assert 0 <= gtd_ns - (intent["ts"].value + int(10.5 * NS)) < NS  # INTENT + TTL + margin


def test_the_gtd_backstop_kills_the_order_at_ib_when_cancels_go_unanswered(
        gateway, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("IB_CANCEL_TIMEOUT", "12")
    gateway.script("gtd", [Ack()], on_cancel="ignore")
    code, out, err = one_shot(cli, gateway, "gtd", 1, 0.2)
    assert code == 0 and "state=CANCEL" in out, err
    r = rows(tmp_path, "gtd")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "CANCEL"]
    assert r[-1]["ts"].value >= r[0]["good_till"].value  # it died at its goodTillDate
    assert gateway.live_orders() == []


def test_recover_cancels_with_the_client_id_that_placed_the_order(gateway, cli, tmp_path,
                                                                  monkeypatch):
    gateway.script("cid", [Ack()], on_cancel="refuse", refuse_code=10147)
    assert one_shot(cli, gateway, "cid", 1, 0.2)[0] == 1
    assert rows(tmp_path, "cid")[0]["client_id"] == 7
    gateway.set_cancel("cid", on_cancel="ok")
    monkeypatch.setenv("IB_CLIENT_ID", "9")
    code, out, err = cli(gateway.port, "recover", "--cancel-all")
    assert code == 0 and "cid: cancelled (filled 0)" in out, out + err
    last_cancel = [(cid, f) for cid, f in gateway.received if f[0] == str(CANCEL)][-1]
    assert last_cancel[0] == 7  # only the client that placed it can cancel it
    assert gateway.live_orders() == []


# --- day caps hold under concurrency and cannot be escaped --------------------------------


def test_ten_concurrent_runs_under_max_day_orders_3_place_exactly_three(gateway, tmp_path):
    (tmp_path / "runner-policy.yaml").write_text("version: 1\nmax_day_orders: 3\n")
    env = dict(os.environ, IB_GATEWAY_PORT=str(gateway.port), IB_CONNECT_TIMEOUT="5")
    tmps = [tmp_path / f"tmp{i}" for i in range(10)]  # a TMPDIR of its own cannot help
    for t in tmps:
        t.mkdir()
    procs = [subprocess.Popen([sys.executable, "-m", "runner", "one-shot", "--qty", "1",
                               "--limit", "10.00", "--ttl_sec", "0.3", "--tag", f"cap-{i}"],
                              cwd=tmp_path, env=dict(env, IB_CLIENT_ID=str(20 + i),
                                                     TMPDIR=str(tmps[i])),
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(10)]
    results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()
    placed = [p.order_ref for p in gateway.place_orders()]
    assert len(placed) == 3 and len(set(placed)) == 3
    assert sorted(code for code, _ in results) == [0, 0, 0] + [2] * 7
    refused = [err for code, err in results if code == 2]
    assert all("max_day_orders 3" in err for err in refused), refused
    # a fourth cannot get out through another ledger root, or the same tag again
    cli_env = dict(env)
    for extra in (["--tag", "cap-x", "--out_dir", "exec2"], ["--tag", placed[0]]):
        run = subprocess.run([sys.executable, "-m", "runner", "one-shot", "--qty", "1",
                              "--limit", "10.00", "--ttl_sec", "0.3", *extra], cwd=tmp_path,
                             env=cli_env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, run.stderr
    assert len(sent(gateway, PLACE)) == 3 and not (tmp_path / "exec2").exists()


# --- a file of several specs is all or nothing ------------------------------------------

TWO_DOCS = """version: 1
kind: one-shot
order: {{symbol: SPY, side: BUY, qty: 1, limit: 10.00, tag: doc-1}}
ttl_sec: 0.2
---
version: 1
kind: one-shot
order: {{symbol: {symbol}, side: BUY, qty: {qty}, limit: 10.00, tag: doc-2}}
ttl_sec: 0.2
"""


def test_a_two_document_file_whose_second_is_refused_sends_nothing(gateway, cli, tmp_path):
    (tmp_path / "runner-policy.yaml").write_text("version: 1\nmax_qty: 5\n")
    (tmp_path / "two.yaml").write_text(TWO_DOCS.format(symbol="SPY", qty=50))
    code, out, err = cli(gateway.port, "run", "two.yaml")
    assert code == 2 and out == ""
    assert "two.yaml: document #2 of 2 refused; none of them was run" in err
    assert "qty 50 exceeds the policy's max_qty 5" in err
    assert gateway.received == [] and not (tmp_path / "data").exists()


MARKET_POLICY = "version: 1\nmax_day_notional: 500000\nallow_market: true\n"
MARKET_DOCS = "---\n".join(
    "version: 1\nkind: one-shot\norder: {{symbol: SPY, side: BUY, qty: 2000, "
    f"allow_market: true, tag: mkt-{i}}}}}\nttl_sec: 0.2\n{{bars}}" for i in (1, 2, 3))


def test_market_orders_of_one_file_count_against_the_day_cap_before_any_is_sent(
        gateway, cli, tmp_path):
    """Three market orders of 2,000 at the bars' 100.00: 200,000 each. Under a 500,000 day
    cap the third would break it: the file is refused whole, before connecting."""
    (tmp_path / "runner-policy.yaml").write_text(MARKET_POLICY)
    _bars_at(tmp_path / "bars.parquet", close=100.0)
    (tmp_path / "three.yaml").write_text(MARKET_DOCS.format(bars="bars_path: bars.parquet\n"))
    code, out, err = cli(gateway.port, "run", "three.yaml")
    assert code == 2 and out == "", err
    assert "three.yaml: document #3 of 3 refused; none of them was run" in err
    assert "400,000" in err and "500,000" in err, err
    assert gateway.received == [] and not (tmp_path / "data").exists()


def test_market_orders_without_a_price_cannot_be_counted_so_the_file_is_refused(
        gateway, cli, tmp_path):
    (tmp_path / "runner-policy.yaml").write_text(MARKET_POLICY)
    (tmp_path / "three.yaml").write_text(MARKET_DOCS.format(bars=""))
    code, out, err = cli(gateway.port, "run", "three.yaml")
    assert code == 2 and out == "", err
    assert ("the earlier document's order mkt-1 is a market order with no price before "
            "connecting, so max_day_notional cannot be checked for the whole file; nothing "
            "was sent") in err, err
    assert gateway.received == [] and not (tmp_path / "data").exists()


def test_a_later_document_failing_at_the_broker_says_which_ran(gateway, cli, tmp_path):
    (tmp_path / "two.yaml").write_text(TWO_DOCS.format(symbol="ZZZZ", qty=1))
    code, out, err = cli(gateway.port, "run", "two.yaml")
    assert code == 3 and "tag=doc-1 state=CANCEL" in out
    assert "two.yaml: documents run: #1; #2 did not succeed; not run: none" in err
    assert "unknown contract ZZZZ" in err
    assert [p.order_ref for p in gateway.place_orders()] == ["doc-1"]


def test_the_executions_in_force_view_folds_corrections(gateway, cli, tmp_path):
    gateway.script("xv", [Ack(), Fill(4, 100.0), Fill(6, 101.0),
                          Correct(qty=3, px=99.5, index=0, delay=0.1)])
    code, out, err = one_shot(cli, gateway, "xv")
    assert code == 0, err
    r = rows(tmp_path, "xv")
    assert [x["fill_qty"] for x in r if x["event"] == "CORRECTION"] == [9]
    assert sum(x["last_qty"] or 0 for x in r if x["event"] != "PNL_SNAPSHOT") == 9
    code, out, err = cli(gateway.port, "ledger", "query", "SELECT exec_id, shares, price, "
                         "corrections FROM executions WHERE tag = 'xv' ORDER BY first_ts",
                         "--json")
    assert code == 0, err
    got = json.loads(out)["rows"]
    ex = sorted(gateway.executions, key=lambda e: e.time_ns)  # as IB has them, both revisions
    first, second, corrected = ex[0], ex[1], ex[2]
    assert corrected.exec_id.rsplit(".", 1)[0] == first.exec_id.rsplit(".", 1)[0]
    assert got == [[corrected.exec_id, 3.0, 99.5, 1], [second.exec_id, 6.0, 101.0, 0]]


def test_recover_completes_a_commission_the_run_ended_without(gateway, cli, tmp_path):
    gateway.script("cm", [Ack(), Fill(10, 100.0, commission=1.4, commission_mode="never")])
    # the run's own look at the executions comes too late for its settle window
    after(gateway, PLACE, lambda: gateway.set_sync_delay(executions=3.0))
    code, out, err = one_shot(cli, gateway, "cm")
    assert code == 0 and "state=FILL" in out
    assert "a commission was not reported" in err and "runner recover" in err
    assert rows(tmp_path, "cm")[-1]["commission"] is None
    gateway.set_sync_delay(executions=0.0)
    code, out, err = cli(gateway.port, "recover")
    assert code == 0 and "cm: commission of 1 execution(s) recorded" in out, out + err
    r = rows(tmp_path, "cm")
    fill_exec = [x for x in r if x["event"] == "FILL"][0]["exec_id"]
    assert r[-1]["event"] == "CORRECTION" and r[-1]["corrects"] == fill_exec
    assert r[-1]["commission"] == 1.4 and r[-1]["fill_qty"] == 10
    code, out, _ = cli(gateway.port, "recover")  # twice: nothing new
    assert code == 0 and out.startswith("recover: nothing to recover") and rows(tmp_path, "cm") == r



# --- what the review found (each reproduced first) -----------------------------------------


def test_a_placed_order_the_gateway_lost_before_its_ack_is_never_called_cancelled(
        gateway, cli, tmp_path):
    gateway.script("pu", [DropBeforeAck()])
    after(gateway, PLACE, lambda: gateway.restart(down=0.3, lose_orders=True))
    code, out, err = one_shot(cli, gateway, "pu", 1, 5)
    assert code == 1 and events(tmp_path, "pu") == ["INTENT", "UNKNOWN"]
    code, out, _ = cli(gateway.port, "recover", "--cancel-all")
    assert code == 3 and "pu: acknowledged, but the gateway" in out  # no end written
    assert events(tmp_path, "pu") == ["INTENT", "UNKNOWN"]
    code, _, err = one_shot(cli, gateway, "pu-next", 1, 0.2)
    assert code == 2 and "not placing" in err  # the next run refuses while it may work
    gateway.restore_orders()
    code, out, _ = cli(gateway.port, "recover", "--cancel-all")
    assert code == 0 and "pu: cancelled (filled 0)" in out
    assert gateway.live_orders() == []


def test_a_tag_placed_twice_does_not_hide_the_unsettled_first(gateway, cli, tmp_path):
    gateway.script("tw", [Ack()], on_cancel="refuse", refuse_code=161)
    assert one_shot(cli, gateway, "tw", 1, 0.2)[0] == 1
    gateway.script("tw", [Ack(), Fill(1, 100.0)])
    assert one_shot(cli, gateway, "tw", 1, 0.5, "--allow-duplicate",
                    "--allow-unsettled")[0] == 0
    code, _, err = one_shot(cli, gateway, "tw-2", 1, 0.2)
    assert code == 2 and "tw" in err and "not placing" in err
    code, out, _ = cli(gateway.port, "recover", "--cancel-all")
    assert code == 3 and "tw: cancel not confirmed" in out
    assert len(working(gateway, "tw")) == 1


def test_leaving_early_with_a_refused_cancel_still_blocks_later_runs(gateway, cli, tmp_path):
    (tmp_path / "runner-policy.yaml").write_text("version: 1\nkill_switch: KILL\n")
    gateway.script("ks", [Ack()], on_cancel="refuse", refuse_code=161)
    after(gateway, PLACE, lambda: (tmp_path / "KILL").touch())
    code, out, err = one_shot(cli, gateway, "ks", 1, 30)
    assert code == 1 and events(tmp_path, "ks") == ["INTENT", "ACK", "UNSETTLED"]
    (tmp_path / "KILL").unlink()
    marker = list((tmp_path / "data" / "exec" / ".unsettled").glob("*.json"))
    assert len(marker) == 1 and json.loads(marker[0].read_text())["tag"] == "ks"
    # a later day: the run still refuses (the marker names the day to look at)
    code, _, err = one_shot(cli, gateway, "ks-2", 1, 0.2)
    assert code == 2 and "ks" in err


def test_recover_records_the_end_ib_reports_after_its_cancel(gateway, cli, tmp_path):
    gateway.script("re", [Ack(), Fill(1, 100.0, commission=0.7)], on_cancel="ignore")
    assert one_shot(cli, gateway, "re", 5, 0.2)[0] == 1
    # while recover waits on its (ignored) cancel, the rest fills at IB

    def fill_rest() -> None:
        gateway.wait_for(CANCEL, count=4, timeout=10)  # the run's three, then recover's
        gateway.fill("re", 4, 101.0, commission=0.3)

    helper = threading.Thread(target=fill_rest, daemon=True)
    helper.start()
    code, out, _ = cli(gateway.port, "recover", "--cancel-all")
    helper.join(timeout=10)
    r = rows(tmp_path, "re")
    assert code == 0 and "re: filled 5 while runner was away" in out, out
    assert [x["event"] for x in r] == ["INTENT", "ACK", "PARTIAL", "UNSETTLED", "FILL"]
    last = r[-1]  # the order's identity and its totals on the row recover wrote
    assert (last["order_id"], last["client_id"]) == (r[1]["order_id"], 7) and last["perm_id"]
    assert last["commission"] == pytest.approx(1.0) and last["fill_qty"] == 5
    assert last["avg_px"] == pytest.approx((1 * 100.0 + 4 * 101.0) / 5)

@pytest.mark.parametrize("nth, cancels_before", [(2, 3), (3, 4)],
                         ids=["its-first-look", "its-look-after-its-cancel"])
def test_an_order_that_fills_between_recovers_answers_is_recorded_filled(
        gateway, cli, tmp_path, nth, cancels_before):
    """The open orders show it working; it fills just after the gateway made its
    completed-orders answer, which so lacks it, while its status says Filled: a torn look
    (asked again), never "not shown by the gateway" (UNKNOWN)."""
    gateway.script("torn", [Ack(), Fill(1, 100.0, commission=0.7)], on_cancel="ignore")
    assert one_shot(cli, gateway, "torn", 5, 0.2)[0] == 1
    cancels: list[int] = []

    def fill_rest(gw: Any) -> None:  # on the gateway's loop, right after that answer
        cancels.append(sum(1 for _, f in gw.received if f[0] == str(CANCEL)))
        gw.engine.fill("torn", 4, 101.0, 0.3)

    # recover's reqCompletedOrders: 1 as it connects, 2 its first look, 3 after its cancel
    gateway.after_answer(99, nth, fill_rest)
    code, out, _ = cli(gateway.port, "recover", "--cancel-all")
    assert cancels == [cancels_before]  # the fill landed where the case says
    r = rows(tmp_path, "torn")
    assert code == 0 and "torn: filled 5 while runner was away" in out, out
    assert [x["event"] for x in r] == ["INTENT", "ACK", "PARTIAL", "UNSETTLED", "FILL"]
    assert r[-1]["fill_qty"] == 5 and r[-1]["commission"] == pytest.approx(1.0)
    assert r[-1]["avg_px"] == pytest.approx((1 * 100.0 + 4 * 101.0) / 5)


# --- the broker's reference price for the gates ---------------------------------------------


def test_without_bars_the_collar_is_judged_on_the_brokers_quote(gateway, cli, tmp_path):
    (tmp_path / "runner-policy.yaml").write_text("version: 1\nmax_slippage_bps: 50\n")
    gateway.set_quote("SPY", 100.0)
    code, out, err = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "110.00",
                         "--ttl_sec", "0.2", "--tag", "br-hi")
    through = (110.0 - 100.0) / 100.0 * 1e4  # 1,000 bps, by hand
    assert code == 2 and f"is {through:,.1f} bps above the reference 100.00 (from the " \
                         "broker); the policy allows 50 bps" in err
    assert sent(gateway, PLACE) == [] and events(tmp_path, "br-hi") == []
    code, out, err = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "100.20",
                         "--ttl_sec", "0.2", "--tag", "br-ok")  # 20 bps: inside the collar
    assert code == 0 and "state=CANCEL" in out, err
    assert [p.order_ref for p in gateway.place_orders()] == ["br-ok"]


def test_a_policy_can_demand_the_brokers_price_over_a_bars_file(gateway, cli, tmp_path):
    (tmp_path / "runner-policy.yaml").write_text(
        "version: 1\nmax_slippage_bps: 50\nbroker_reference: true\n")
    _bars_at(tmp_path / "bars.parquet", close=100.0)  # the bars say 100, the broker 90
    gateway.set_quote("SPY", 90.0)
    code, out, err = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "100.00",
                         "--ttl_sec", "0.2", "--tag", "bro", "--bars_path", "bars.parquet")
    assert code == 2 and "above the reference 90.00 (from the broker)" in err
    assert sent(gateway, PLACE) == []
    gateway.set_quote("SPY", None)  # no broker price: refused, never judged on the bars
    code, out, err = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "100.00",
                         "--ttl_sec", "0.2", "--tag", "bro", "--bars_path", "bars.parquet")
    assert code == 2 and "no reference price" in err and sent(gateway, PLACE) == []


def _bars_at(path: Path, close: float) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = (time.time_ns() // NS - 60) * NS  # to the bar after the current one: a live
    ts = first + np.arange(62, dtype=np.int64) * NS  # capture runs at most a bar ahead
    c = np.full(62, close)
    pq.write_table(pa.table({"ts": pa.array(ts, pa.timestamp("ns", tz="UTC")), "open": c,
                             "high": c + 0.05, "low": c - 0.05, "close": c,
                             "volume": np.full(62, 1000.0)}), path)



def test_a_failing_resync_after_a_reconnect_surfaces_as_one_line(gateway, cli, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("IB_CONNECT_TIMEOUT", "1")
    gateway.script("rsy", [Ack()], on_cancel="ok")

    def cut() -> None:
        gateway.set_sync_delay(open_orders=3.0)  # the gateway is slow once it is back
        gateway.drop_all()

    after(gateway, PLACE, cut)
    code, out, err = one_shot(cli, gateway, "rsy", 1, 10)
    assert code == 3, err
    assert err.startswith("runner: no answer to reqAllOpenOrders from 127.0.0.1:")
    assert "Task exception was never retrieved" not in err and "Traceback" not in err
    gateway.set_sync_delay(open_orders=0.0)
    r = [e for e in events(tmp_path, "rsy")]
    assert r[0] == "INTENT" and r[-1] in ("CANCEL", "UNSETTLED")



def test_market_orders_count_in_the_day_notional_at_the_brokers_price(gateway, cli, tmp_path):
    (tmp_path / "runner-policy.yaml").write_text(
        "version: 1\nallow_market: true\nmax_day_notional: 1000\n")
    gateway.set_quote("SPY", 400.0)
    codes = [cli(gateway.port, "one-shot", "--qty", "1", "--ttl_sec", "0.2", "--tag",
                 f"m{i}")[0] for i in range(3)]
    assert codes == [0, 0, 2]  # 400 + 400 placed; a third would make 1,200 > 1,000
    assert [p.order_ref for p in gateway.place_orders()] == ["m0", "m1"]
    assert rows(tmp_path, "m0")[0]["arrival_px"] == 400.0  # the INTENT carries the price


def test_10349_notes_the_order_for_recover_until_its_end(gateway, cli, tmp_path):
    gateway.script("g10", [Ack(), Error(10349), Fill(1, 100.0, delay=0.6)])
    folder = tmp_path / "data" / "exec" / ".unsettled"
    seen: list[bool] = []

    def watch() -> None:
        give_up = time.monotonic() + 5
        while not list(folder.glob("*.json")) and time.monotonic() < give_up:
            time.sleep(0.01)  # polling an observable condition, bounded
        seen.append(bool(list(folder.glob("*.json"))))

    after(gateway, PLACE, watch)
    code, out, err = one_shot(cli, gateway, "g10", 1, 5)
    assert code == 0 and "state=FILL" in out, err
    assert seen == [True] and list(folder.glob("*.json")) == []  # noted, then cleared


def test_a_tag_in_the_policys_ledger_is_not_placed_again_elsewhere(gateway, cli, tmp_path):
    (tmp_path / "runner-policy.yaml").write_text("version: 1\n")
    assert one_shot(cli, gateway, "dup1", 1, 0.2)[0] == 0
    code, out, err = one_shot(cli, gateway, "dup1", 1, 0.2, "--out_dir", "elsewhere")
    assert code == 2 and "tag dup1 is already in" in err
    assert [p.order_ref for p in gateway.place_orders()] == ["dup1"]


def test_one_ledger_spelled_two_ways_is_one_ledger_for_a_file(gateway, cli, tmp_path):
    (tmp_path / "two.yaml").write_text(
        "version: 1\nkind: one-shot\nout_dir: data/exec\nttl_sec: 0.2\n"
        "order: {symbol: SPY, side: BUY, qty: 1, limit: 10.00, tag: same}\n---\n"
        "version: 1\nkind: one-shot\nout_dir: ./data/./exec\nttl_sec: 0.2\n"
        "order: {symbol: SPY, side: BUY, qty: 1, limit: 10.00, tag: same}\n")
    code, out, err = cli(gateway.port, "run", "two.yaml")
    assert code == 2 and "tag same is also an earlier document's tag" in err
    assert sent(gateway, PLACE) == []


def test_broker_reference_without_a_broker_price_refuses(gateway, cli, tmp_path):
    (tmp_path / "runner-policy.yaml").write_text("version: 1\nbroker_reference: true\n")
    for args in (("sanity-cancel", "--limit", "0.01"),
                 ("one-shot", "--limit", "99999.00", "--ttl_sec", "0.2")):
        code, out, err = cli(gateway.port, *args)
        assert code == 2 and "the broker gave no reference price" in err, err
    assert sent(gateway, PLACE) == []


def test_bars_that_disagree_with_the_broker_are_not_judged_by(gateway, cli, tmp_path):
    (tmp_path / "runner-policy.yaml").write_text("version: 1\nmax_slippage_bps: 50\n")
    _bars_at(tmp_path / "bars.parquet", close=100.0)  # a file that says 100
    gateway.set_quote("SPY", 90.0)  # the market says 90: 1,111.1 bps apart, by hand
    code, out, err = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "100.00",
                         "--ttl_sec", "0.2", "--tag", "dis", "--bars_path", "bars.parquet")
    apart = (100.0 - 90.0) / 90.0 * 1e4
    assert code == 2 and f"the bars' price 100.00 is {apart:,.1f} bps from the broker's " \
                         "90.00" in err
    assert sent(gateway, PLACE) == []
    gateway.set_quote("SPY", 100.3)  # 29.9 bps apart: the bars stand
    code, out, err = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "100.00",
                         "--ttl_sec", "0.2", "--tag", "dis", "--bars_path", "bars.parquet")
    assert code == 0, err
    assert [p.order_ref for p in gateway.place_orders()] == ["dis"]


def test_an_account_id_behind_a_terminal_colour_code_is_masked(gateway, cli, tmp_path):
    # the cli fixture fails the test if any output shows an id in the clear
    gateway.script("ansi", [Ack(), Reject("see \x1b[0mU7654321 and \x1b[31mDU1234567\x1b[0m")])
    code, out, err = one_shot(cli, gateway, "ansi")
    assert code == 4 and "U****321" in err and "DU****567" in err
    for args in (("ledger", "show"), ("ledger", "show", "--json")):
        code, out, _ = cli(gateway.port, *args)
        assert code == 0 and "U****321" in out
