"""`runner orders`, `runner cancel TAG`, `runner positions` (issue 16, acceptance 4): the CLI
over 127.0.0.1 against the fake gateway, through the unmodified ib_async client.

Orders runner did not place are put at the gateway by another API client (ib_async, client
id 3), as TWS or another program would. An order of runner's stays working when the
gateway refuses its run's cancels: the run leaves it UNSETTLED, which is what
`runner cancel TAG` is for. Each test checks the printed lines, the exit code, the ledger
rows, the --json document against its schema, and what reached the gateway.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ib_async import IB, Future, LimitOrder, Stock
from test_json_output import VALIDATORS, assert_no_noise

from runner.gateway import Ack, Fill
from runner.ledger import read_ledger

CANCEL = "4"  # cancelOrder's message id
FOREIGN = 3  # the other API client's id; runner's is 7 (IB_CLIENT_ID's default)


@pytest.fixture(autouse=True)
def quick_cancels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IB_CANCEL_TIMEOUT", "0.3")  # a run's 3 attempts of 0.1 s


def rows(tmp_path: Path, tag: str) -> list[dict[str, Any]]:
    root = tmp_path / "data" / "exec"
    return [r for r in read_ledger(root).to_pylist() if r["tag"] == tag] if root.exists() else []


def events(tmp_path: Path, tag: str) -> list[str]:
    return [r["event"] for r in rows(tmp_path, tag)]


def cancels(gw: Any) -> list[tuple[int, tuple[str, ...]]]:
    return [(client, fields) for client, fields in gw.received if fields[0] == CANCEL]


def working(gw: Any, tag: str) -> list[Any]:
    return [o for o in gw.orders_by_ref(tag) if not o.done]


def left_working(cli: Any, gw: Any, tag: str, qty: int = 10) -> None:
    """A one-shot of runner's whose cancels the gateway refuses: UNSETTLED, still working."""
    code, out, err = cli(gw.port, "one-shot", "--qty", str(qty), "--limit", "100.00",
                         "--ttl_sec", "0.2", "--tag", tag)
    assert code == 1 and f"tag={tag} state=UNSETTLED" in out, out + err
    assert len(working(gw, tag)) == 1


def place_foreign(gw: Any, *orders: tuple[Any, Any]) -> None:
    """Orders (contract, order) placed by another API client, which then disconnects."""
    async def go() -> None:
        ib = IB()
        await ib.connectAsync("127.0.0.1", gw.port, clientId=FOREIGN, timeout=5)
        try:
            for contract, order in orders:
                [qualified] = await ib.qualifyContractsAsync(contract)
                trade = ib.placeOrder(qualified, order)
                while trade.orderStatus.status not in ("Submitted", "Filled"):
                    await asyncio.wait_for(trade.statusEvent, 5)
        finally:
            ib.disconnect()
    asyncio.run(asyncio.wait_for(go(), 20))


def spy(ref: str, qty: float = 5, limit: float = 99.5) -> tuple[Any, Any]:
    return Stock("SPY", "SMART", "USD"), LimitOrder("BUY", qty, limit, orderRef=ref, tif="GTC")


def checked(out: str, schema: str) -> dict[str, Any]:
    """The one JSON document on stdout, valid against its schema (a failure against the
    shared failure schema too)."""
    import json

    assert out.count("\n") == 1, out
    doc = json.loads(out)
    VALIDATORS[schema].validate(doc)
    if not doc["ok"]:
        VALIDATORS["failure"].validate({k: v for k, v in doc.items()
                                        if k in ("version", "command", "ok", "error", "spec",
                                                 "tag")})
    assert_no_noise(doc)
    return doc


def snapshot(gw: Any, tag: str) -> Any:
    [order] = working(gw, tag)
    return order


# --- orders ------------------------------------------------------------------------------


def test_orders_lists_every_clients_working_orders_and_marks_runners(gateway, cli, tmp_path):
    gateway.script("mine-1", [Ack()], on_cancel="refuse", refuse_code=161)
    left_working(cli, gateway, "mine-1")
    place_foreign(gateway, spy("theirs-1"))
    mine, theirs = snapshot(gateway, "mine-1"), snapshot(gateway, "theirs-1")
    code, out, err = cli(gateway.port, "orders")
    assert code == 0, err
    head, *lines, summary = out.splitlines()
    assert head.split() == ["tag", "by", "order", "perm", "client", "account", "side",
                            "filled/qty", "symbol", "sec", "type", "limit", "tif", "status"]
    assert [line.split() for line in lines] == [
        ["mine-1", "runner", str(mine.order_id), str(mine.perm_id), "7", "DU****567", "BUY",
         "0/10", "SPY", "STK", "LMT", "100.00", "GTD", "Submitted"],
        ["theirs-1", "other", str(theirs.order_id), str(theirs.perm_id), "3", "DU****567",
         "BUY", "0/5", "SPY", "STK", "LMT", "99.50", "GTC", "Submitted"]]
    assert summary == f"2 working orders at 127.0.0.1:{gateway.port}, 1 placed by runner " \
                      "(data/exec)"
    code, out, err = cli(gateway.port, "orders", "--json")
    doc = checked(out, "orders")
    assert code == 0 and [(o["tag"], o["runner"], o["client_id"]) for o in doc["orders"]] == \
        [("mine-1", True, 7), ("theirs-1", False, 3)]
    first = doc["orders"][0]
    assert (first["perm_id"], first["qty"], first["limit"], first["tif"]) == \
        (mine.perm_id, 10.0, 100.0, "GTD")
    intent = rows(tmp_path, "mine-1")[0]
    assert first["good_till"] is not None and intent["good_till"] is not None
    assert cancels(gateway)[3:] == []  # only the run's 3 attempts: listing sends none


def test_orders_marks_a_tag_only_for_a_run_against_ib(gateway, cli, tmp_path):
    """A dry run's tag in the ledger root does not make an IB order with that orderRef
    runner's; another --out-dir has other tags."""
    code, out, err = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "100.00",
                         "--ttl_sec", "0.2", "--tag", "same-1", "--dry-run")
    assert code == 0, err
    place_foreign(gateway, spy("same-1"))
    code, out, err = cli(gateway.port, "orders", "--json")
    assert [o["runner"] for o in checked(out, "orders")["orders"]] == [False]
    code, out, err = cli(gateway.port, "orders", "--out-dir", "nowhere")
    assert code == 0 and out.splitlines()[-1].endswith("0 placed by runner (nowhere)")


def test_orders_and_positions_with_nothing_there(gateway, cli):
    code, out, err = cli(gateway.port, "orders")
    assert (code, out) == (0, f"no working orders at 127.0.0.1:{gateway.port}\n")
    code, out, err = cli(gateway.port, "positions")
    assert (code, out) == (0, f"no positions at 127.0.0.1:{gateway.port}\n")
    code, out, err = cli(gateway.port, "positions", "--json")
    assert checked(out, "positions")["positions"] == []


@pytest.mark.parametrize("command", ["orders", "positions", "cancel"])
def test_an_unreachable_gateway_is_one_line_and_exit_3(cli, command):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    argv = [command, *(["x-1", "--any"] if command == "cancel" else [])]
    code, out, err = cli(port, *argv)
    assert code == 3 and out == ""
    assert err == (f"runner: cannot connect to 127.0.0.1:{port}: connection refused (is "
                   "TWS/IB Gateway running with the API enabled on that port? paper TWS 7497, "
                   "live 7496, Gateway 4002/4001; set IB_GATEWAY_HOST/IB_GATEWAY_PORT)\n")
    code, out, err = cli(port, *argv, "--json")
    doc = checked(out, command)
    assert code == 3 and doc["error"]["exit_code"] == 3
    assert doc["tag"] == ("x-1" if command == "cancel" else None)


@pytest.mark.parametrize(("argv", "env", "tag", "message"), [
    (["cancel", "--json"], {}, None, "the following arguments are required: TAG"),
    (["positions", "--out-dir", "x", "--json"], {}, None, "unrecognized arguments: --out-dir x"),
    (["cancel", "t-1", "--json"], {"IB_CLIENT_ID": "x"}, "t-1",
     "IB_CLIENT_ID='x' is not a whole number in 0..2147483647"),
    (["orders", "--json"], {"IB_CANCEL_TIMEOUT": "0"}, None,
     "IB_CANCEL_TIMEOUT='0' is not a number of seconds in (0, 3600]"),
])
def test_bad_usage_or_environment_is_exit_2_and_the_failure_document(
        cli, monkeypatch, argv, env, tag, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = cli(1, *argv)
    doc = checked(out, argv[0])
    assert code == 2 and (doc["error"]["message"], doc["tag"]) == (message, tag)
    assert err.startswith(f"runner: {message} (")


# --- cancel ------------------------------------------------------------------------------


def test_cancel_of_a_tag_runner_did_not_place_is_refused_and_sends_nothing(gateway, cli,
                                                                            tmp_path):
    place_foreign(gateway, spy("theirs-2"))
    before = len(gateway.received)
    code, out, err = cli(gateway.port, "cancel", "theirs-2")
    assert (code, out) == (2, "")
    assert err == ("runner: theirs-2: not placed by runner: no INTENT with this tag under "
                   "data/exec; nothing was sent (--any cancels an order runner did not "
                   "place; --out-dir names another ledger root)\n")
    code, out, err = cli(gateway.port, "cancel", "theirs-2", "--json")
    doc = checked(out, "cancel")
    assert code == 2 and doc["tag"] == "theirs-2" and doc["error"]["exit_code"] == 2
    assert len(gateway.received) == before  # not even a connection
    assert len(working(gateway, "theirs-2")) == 1
    # --any: cancelled from a session with the client id that placed it; nothing recorded
    theirs = snapshot(gateway, "theirs-2")
    code, out, err = cli(gateway.port, "cancel", "theirs-2", "--any")
    assert code == 0, err
    assert out == (f"theirs-2: cancelled (order {theirs.order_id}, perm {theirs.perm_id}, "
                   "client 3); not runner's: nothing recorded\n")
    assert [client for client, _ in cancels(gateway)] == [FOREIGN]
    assert working(gateway, "theirs-2") == [] and not (tmp_path / "data").exists()


def test_cancel_tag_cancels_runners_order_and_records_the_cancel(make_gateway, cli, tmp_path):
    gateway = make_gateway()
    # the run's 3 cancel attempts are refused, and runner cancel's first one too
    gateway.script("mine-2", [Ack()], on_cancel="refuse", refuse_code=161, refusals=4)
    left_working(cli, gateway, "mine-2")
    mine = snapshot(gateway, "mine-2")
    before = rows(tmp_path, "mine-2")
    code, out, err = cli(gateway.port, "cancel", "mine-2")
    assert (code, out) == (3, "")
    assert err == ("runner: mine-2: IB refused the cancel (161 Cancel attempted when order is "
                   f"not in a cancellable state.  Order permId ={mine.perm_id}); order "
                   f"{mine.order_id}, perm {mine.perm_id}, client 7 is still working (try "
                   "again, or cancel it in TWS; `runner orders` lists what is working)\n")
    assert len(working(gateway, "mine-2")) == 1 and rows(tmp_path, "mine-2") == before
    # the next one goes through: cancelled, and the CANCEL row is the order's
    code, out, err = cli(gateway.port, "cancel", "mine-2", "--json")
    doc = checked(out, "cancel")
    assert code == 0 and working(gateway, "mine-2") == []
    [result] = doc["cancels"]
    assert (result["outcome"], result["code"], result["order"]["runner"]) == \
        ("cancelled", None, True)
    assert events(tmp_path, "mine-2") == ["INTENT", "ACK", "UNSETTLED", "CANCEL"]
    intent, *_, end = rows(tmp_path, "mine-2")
    assert end["message"] == "cancelled by runner cancel" and end["run_id"].startswith("cancel-")
    carried = ("spec", "account", "symbol", "sec_type", "side", "qty", "order_type", "limit",
               "tif", "order_id", "client_id", "broker")
    assert {k: end[k] for k in carried} == {k: intent[k] for k in carried}
    assert (end["perm_id"], end["fill_qty"]) == (mine.perm_id, 0.0)
    assert result["ledger"] == str(Path("data/exec") / intent_day(tmp_path) / "ledger.parquet")
    # no longer left for recover: the next run places without --allow-unsettled
    code, out, err = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "100.00",
                         "--ttl_sec", "0.2", "--tag", "next-1")
    assert code == 0 and "state=CANCEL" in out, err
    assert "recovered" not in err and events(tmp_path, "mine-2")[-1] == "CANCEL"


def intent_day(tmp_path: Path) -> str:
    [day] = [p.name for p in (tmp_path / "data" / "exec").iterdir() if p.name[0].isdigit()]
    return day


def test_a_cancel_that_loses_to_a_fill_records_the_fill_and_exits_4(gateway, cli, tmp_path):
    gateway.script("mine-3", [Ack(), Fill(10, 100.0, commission=1.25, delay=60)],
                   on_cancel="refuse", refuse_code=10148)
    left_working(cli, gateway, "mine-3")
    gateway.set_cancel("mine-3", on_cancel="reject_filled")  # the fill lands first
    mine = snapshot(gateway, "mine-3")
    code, out, err = cli(gateway.port, "cancel", "mine-3")
    assert (code, out) == (4, "")
    assert err.startswith(f"runner: mine-3: the cancel came too late: order {mine.order_id}, "
                          f"perm {mine.perm_id}, client 7 filled, 10 of 10 filled; recorded in ")
    assert events(tmp_path, "mine-3") == ["INTENT", "ACK", "UNSETTLED", "FILL"]
    fill = rows(tmp_path, "mine-3")[-1]
    assert (fill["fill_qty"], fill["last_px"], fill["commission"]) == (10.0, 100.0, 1.25)
    assert working(gateway, "mine-3") == []


def test_a_fill_while_runner_was_away_is_recorded_before_the_cancel(gateway, cli, tmp_path):
    gateway.script("mine-4", [Ack()], on_cancel="refuse", refuse_code=10148, refusals=3)
    left_working(cli, gateway, "mine-4")
    gateway.fill("mine-4", 4, 99.75, commission=1.0)  # nobody watching: only the gateway knows
    mine = snapshot(gateway, "mine-4")
    code, out, err = cli(gateway.port, "cancel", "mine-4")
    assert code == 0, err
    assert out == (f"mine-4: cancelled (order {mine.order_id}, perm {mine.perm_id}, client 7, "
                   f"4 of 10 filled); recorded in "
                   f"{Path('data/exec') / intent_day(tmp_path) / 'ledger.parquet'}\n")
    assert events(tmp_path, "mine-4") == ["INTENT", "ACK", "UNSETTLED", "PARTIAL", "CANCEL"]
    partial, end = rows(tmp_path, "mine-4")[-2:]
    assert (partial["last_qty"], partial["last_px"], partial["commission"]) == (4.0, 99.75, 1.0)
    assert (end["fill_qty"], end["avg_px"], end["commission"]) == (4.0, 99.75, 1.0)
    assert end["ts"] > partial["ts"]


def test_an_unanswered_cancel_says_how_long_it_waited_and_exits_3(gateway, cli, tmp_path):
    gateway.script("mine-5", [Ack()], on_cancel="ignore")
    left_working(cli, gateway, "mine-5")
    mine = snapshot(gateway, "mine-5")
    before = rows(tmp_path, "mine-5")
    code, out, err = cli(gateway.port, "cancel", "mine-5", "--json")
    doc = checked(out, "cancel")
    assert code == 3 and doc["error"]["message"] == (
        f"mine-5: no answer to the cancel within 0.3 s (IB_CANCEL_TIMEOUT); order "
        f"{mine.order_id}, perm {mine.perm_id}, client 7 is still working")
    assert [c["outcome"] for c in doc["cancels"]] == ["unconfirmed"]
    assert rows(tmp_path, "mine-5") == before and len(working(gateway, "mine-5")) == 1


def test_several_working_orders_with_the_tag_are_listed_unless_all(gateway, cli):
    place_foreign(gateway, spy("dup-1", 5), spy("dup-1", 7, 98.0))
    first, second = sorted(working(gateway, "dup-1"), key=lambda o: o.order_id)
    code, out, err = cli(gateway.port, "cancel", "dup-1", "--any")
    assert (code, out) == (2, "")
    assert err == (f"runner: dup-1: 2 working orders have this orderRef at 127.0.0.1:"
                   f"{gateway.port}: order {first.order_id} (perm {first.perm_id}, client 3, "
                   f"BUY 0/5 SPY LMT 99.50, Submitted); order {second.order_id} (perm "
                   f"{second.perm_id}, client 3, BUY 0/7 SPY LMT 98.00, Submitted); nothing "
                   "was sent (--all cancels every one of them)\n")
    code, out, err = cli(gateway.port, "cancel", "dup-1", "--any", "--json")
    assert [o["order_id"] for o in checked(out, "cancel")["orders"]] == \
        [first.order_id, second.order_id]
    assert cancels(gateway) == []
    code, out, err = cli(gateway.port, "cancel", "dup-1", "--any", "--all", "--json")
    doc = checked(out, "cancel")
    assert code == 0 and [c["outcome"] for c in doc["cancels"]] == ["cancelled", "cancelled"]
    assert working(gateway, "dup-1") == [] and len(cancels(gateway)) == 2


def test_a_foreign_order_reusing_a_tag_of_runners_is_not_runners(gateway, cli, tmp_path):
    code, out, err = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "100.00",
                         "--ttl_sec", "0.2", "--tag", "reused-1")
    assert code == 0 and events(tmp_path, "reused-1")[-1] == "CANCEL", err
    place_foreign(gateway, spy("reused-1"))
    theirs = snapshot(gateway, "reused-1")
    code, out, err = cli(gateway.port, "cancel", "reused-1")
    assert code == 2 and err.startswith(f"runner: reused-1: order {theirs.order_id} (perm "
                                        f"{theirs.perm_id}, client 3, BUY 0/5 SPY LMT 99.50, "
                                        "Submitted) is not the order runner placed")
    assert cancels(gateway)[-1][0] == 7  # the run's own TTL cancel, nothing since
    code, out, err = cli(gateway.port, "cancel", "reused-1", "--any")
    assert code == 0 and out.endswith("; not runner's: nothing recorded\n"), err
    assert events(tmp_path, "reused-1")[-1] == "CANCEL" and len(rows(tmp_path, "reused-1")) == 3


def test_a_live_runs_order_is_refused_and_a_crashed_runs_is_cancelled(gateway, cli, tmp_path):
    env = dict(os.environ, IB_GATEWAY_PORT=str(gateway.port), IB_CLIENT_ID="21")
    proc = subprocess.Popen([sys.executable, "-m", "runner", "one-shot", "--qty", "1",
                             "--limit", "100.00", "--ttl_sec", "60", "--tag", "live-1"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        gateway.wait_for(3, timeout=20)  # placeOrder: its INTENT is journaled before it
        code, out, err = cli(gateway.port, "cancel", "live-1")
        [intent] = rows(tmp_path, "live-1")[:1]
        assert (code, out) == (2, "")
        assert err.startswith("runner: live-1: order ") and err.endswith(
            f" is worked by a live run ({intent['run_id']}); nothing was sent (that run "
            "cancels it at its TTL; Ctrl-C or SIGTERM to it cancels it now)\n"), err
        assert cancels(gateway) == []
    finally:
        proc.kill()  # as a crash would: the order works on, its journal stays
        proc.wait(10)
    code, out, err = cli(gateway.port, "cancel", "live-1")
    assert code == 0 and out.startswith("live-1: cancelled (order "), err
    assert [client for client, _ in cancels(gateway)] == [21]  # the client that placed it
    seen = events(tmp_path, "live-1")
    assert (seen[0], seen[-1], seen.count("CANCEL")) == ("INTENT", "CANCEL", 1)
    assert working(gateway, "live-1") == []


# --- positions ---------------------------------------------------------------------------


def test_positions_after_fills_with_the_multiplier_where_not_1(gateway, cli):
    gateway.script("buy-1", [Ack(), Fill(10, 100.25)])
    code, out, err = cli(gateway.port, "one-shot", "--qty", "10", "--limit", "100.50",
                         "--ttl_sec", "1", "--tag", "buy-1")
    assert code == 0 and "state=FILL" in out, err
    place_foreign(gateway, (Future("ES", exchange="CME", localSymbol=front_es()),
                            LimitOrder("BUY", 2, 6000.25, orderRef="es-1")))
    gateway.fill("es-1", 2, 6000.25)
    code, out, err = cli(gateway.port, "positions")
    assert code == 0, err
    assert out.splitlines() == [
        "account    symbol  sec  currency  position   avg_cost  multiplier",
        "DU****567  SPY     STK  USD             10     100.25",
        f"DU****567  {front_es()}    FUT  USD              2  300012.50          50",
    ]
    code, out, err = cli(gateway.port, "positions", "--json")
    doc = checked(out, "positions")
    assert [(p["symbol"], p["sec_type"], p["position"], p["avg_cost"], p["multiplier"])
            for p in doc["positions"]] == [("SPY", "STK", 10.0, 100.25, None),
                                           ("ES", "FUT", 2.0, 300012.5, 50.0)]


def front_es() -> str:
    """The front ES future's local symbol on the gateway's date, New York (ESH7, ...)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from runner.gateway.instruments import listing

    today = datetime.now(ZoneInfo("America/New_York")).date()
    return next(i.local_symbol for i in listing(today) if i.symbol == "ES")


def test_all_cancels_runners_order_and_a_foreign_one_only_with_any(gateway, cli, tmp_path):
    gateway.script("mixed-1", [Ack()], on_cancel="refuse", refuse_code=161, refusals=3)
    left_working(cli, gateway, "mixed-1")
    place_foreign(gateway, spy("mixed-1"))
    gateway.set_cancel("mixed-1", on_cancel="ok")  # from now on, for both orders
    mine, theirs = sorted(working(gateway, "mixed-1"), key=lambda o: o.client_id, reverse=True)
    sent = len(cancels(gateway))
    code, out, err = cli(gateway.port, "cancel", "mixed-1", "--all")
    assert code == 2 and err.startswith(f"runner: mixed-1: order {theirs.order_id} (perm "
                                        f"{theirs.perm_id}, client 3, BUY 0/5 SPY LMT 99.50, "
                                        "Submitted) is not the order runner placed"), err
    assert len(cancels(gateway)) == sent  # all or nothing: runner's was not cancelled either
    code, out, err = cli(gateway.port, "cancel", "mixed-1", "--all", "--any")
    assert code == 0, err
    day = intent_day(tmp_path)
    assert out.splitlines() == [
        f"mixed-1: cancelled (order {mine.order_id}, perm {mine.perm_id}, client 7); recorded "
        f"in {Path('data/exec') / day / 'ledger.parquet'}",
        f"mixed-1: cancelled (order {theirs.order_id}, perm {theirs.perm_id}, client 3); not "
        "runner's: nothing recorded"]
    assert events(tmp_path, "mixed-1") == ["INTENT", "ACK", "UNSETTLED", "CANCEL"]
    assert [client for client, _ in cancels(gateway)[sent:]] == [7, FOREIGN]
