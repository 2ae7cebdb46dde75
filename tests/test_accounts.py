"""Which account an order is for (issue 16): `order.account` in a spec, `--account` on
sanity-cancel and one-shot. End to end against the fake gateway over 127.0.0.1 with the
unmodified ib_async client: the placeOrder carries the account named and the ledger rows
say it; a login managing several accounts with none named, an account it does not
manage, a paper spec naming a live account: refused (exit 2), nothing placed, no ledger.
And the fake gateway answers an account it does not manage as IB does (321)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ib_async import LimitOrder, Stock
from ibclient import connected, error_log, run, until
from test_json_output import checked

from runner.cli import main
from runner.gateway import Ack, FakeGateway, place_order_fields
from runner.gateway.requests import is_what_if
from runner.ledger import read_ledger
from runner.redact import redact

PLACE = 3  # TWS API message id of placeOrder
FIRST, SECOND, OTHER = "DU1111001", "DU1111002", "DU1111003"  # paper ids (D...)
LIVE = "U2222001"
AT = "2026-01-05T09:30:01-05:00"
PAPER_PORT = 7497  # plan and dry runs connect to nothing; the port only names the mode


def spec(tmp_path: Path, tag: str, account: str | None = None, kind: str = "sanity-cancel",
         mode: str = "paper") -> str:
    named = f", account: {account}" if account else ""
    (tmp_path / "a.yaml").write_text(
        f"version: 1\nkind: {kind}\nmode: {mode}\n"
        f"order: {{symbol: SPY, side: BUY, qty: 1, limit: 0.01, tag: {tag}{named}}}\n")
    return "a.yaml"


def placed(gw: Any) -> list[tuple[str, ...]]:
    return [fields for _, fields in gw.received if fields[0] == str(PLACE)]


def accounts_of(tmp_path: Path, tag: str) -> list[tuple[str, str]]:
    table = read_ledger(tmp_path / "data" / "exec")
    return [(r["event"], r["account"]) for r in table.to_pylist() if r["tag"] == tag]


def refused(*reasons: str, source: str = "<command line>") -> str:
    lines = "".join(f"  - {redact(r)}\n" for r in reasons)
    return f"runner: {source}: refused by the built-in policy; nothing was sent:\n{lines}"


def test_the_order_goes_to_the_account_the_spec_names(make_gateway, cli, tmp_path):
    gw = make_gateway(accounts=(FIRST, SECOND))
    code, out, err = cli(gw.port, "run", spec(tmp_path, "acct-1", SECOND))
    assert (code, err) == (0, ""), err
    assert out == "[sanity-cancel] tag=acct-1 ACK+Cancel recorded\n"
    [frame] = placed(gw)
    assert place_order_fields(frame).account == SECOND  # as ib_async put it on the wire
    [order] = gw.orders_by_ref("acct-1")
    assert order.order.account == SECOND  # and as the gateway recorded it
    assert accounts_of(tmp_path, "acct-1") == [("INTENT", SECOND), ("ACK", SECOND),
                                               ("CANCEL", SECOND)]


def test_account_flag_on_one_shot_is_the_spec_key(make_gateway, cli, tmp_path):
    gw = make_gateway(accounts=(FIRST, SECOND))
    code, out, err = cli(gw.port, "one-shot", "--limit", "10.00", "--ttl_sec", "0.3",
                         "--tag", "acct-2", "--account", SECOND)
    assert (code, err) == (0, ""), err
    assert out == "[one-shot] tag=acct-2 state=CANCEL fill_qty=0 avg_px=— arrival=—\n"
    assert [place_order_fields(f).account for f in placed(gw)] == [SECOND]
    assert {a for _, a in accounts_of(tmp_path, "acct-2")} == {SECOND}


def test_one_account_and_none_named_goes_to_that_one(make_gateway, cli, tmp_path):
    gw = make_gateway(accounts=(FIRST,))
    assert cli(gw.port, "sanity-cancel", "--tag", "acct-3")[0] == 0
    assert [place_order_fields(f).account for f in placed(gw)] == [""]  # IB's default...
    assert {a for _, a in accounts_of(tmp_path, "acct-3")} == {FIRST}  # ...the one there is


def test_several_accounts_and_none_named_is_refused(make_gateway, cli, tmp_path):
    gw = make_gateway(accounts=(FIRST, SECOND))
    code, out, err = cli(gw.port, "sanity-cancel", "--tag", "acct-4")
    assert (code, out) == (2, "")
    assert err == refused(f"the gateway manages 2 accounts ({FIRST}, {SECOND}): say which "
                          "with --account")
    code, out, err = cli(gw.port, "run", spec(tmp_path, "acct-4"))
    assert (code, out) == (2, "")
    assert err == refused(f"the gateway manages 2 accounts ({FIRST}, {SECOND}): say which "
                          "with order.account", source="a.yaml")
    assert gw.received and placed(gw) == []  # it connected, and sent no order
    assert not (tmp_path / "data").exists()  # no ledger


def test_an_account_the_gateway_does_not_manage_is_refused(make_gateway, cli, tmp_path):
    gw = make_gateway(accounts=(FIRST, SECOND))
    code, out, err = cli(gw.port, "run", spec(tmp_path, "acct-5", OTHER))
    assert (code, out) == (2, "")
    assert err == refused(f"order.account {OTHER} is not an account the gateway manages "
                          f"({FIRST}, {SECOND}); name one of those, or connect to the "
                          "gateway that manages it", source="a.yaml")
    assert "DU****003" in err and OTHER not in err  # masked as every output
    assert placed(gw) == [] and not (tmp_path / "data").exists()


def test_the_json_failure_keeps_the_contract(make_gateway, cli, tmp_path):
    gw = make_gateway(accounts=(FIRST, SECOND))
    code, out, _ = cli(gw.port, "sanity-cancel", "--account", OTHER, "--json")
    assert code == 2
    doc = checked(out)  # the run schema and the shared failure schema
    assert doc["ok"] is False and doc["error"]["exit_code"] == 2
    assert doc["reasons"] == [redact(f"--account {OTHER} is not an account the gateway "
                                     f"manages ({FIRST}, {SECOND}); name one of those, or "
                                     "connect to the gateway that manages it")]
    assert placed(gw) == []


def test_a_paper_spec_naming_a_live_account_is_refused_before_connecting(gateway, cli,
                                                                        tmp_path):
    code, out, err = cli(gateway.port, "run", spec(tmp_path, "acct-6", LIVE))
    assert (code, out) == (2, "")
    assert err == refused(f"order.account {LIVE} is a live account (paper ids start with D) "
                          "but the spec says mode: paper", source="a.yaml")
    assert gateway.received == []  # known from the spec alone: not even a connection
    code, out, err = cli(gateway.port, "validate", "a.yaml")
    line = (tmp_path / "a.yaml").read_text().splitlines()[3]  # the order, on line 4
    assert code == 2
    assert err.startswith(f"a.yaml:4:{line.index(LIVE) + 1}: refused by the built-in policy: "
                          f"order.account {redact(LIVE)} is a live account")


def test_a_live_spec_naming_a_paper_account_is_refused(gateway, cli, tmp_path):
    code, _, err = cli(gateway.port, "run", spec(tmp_path, "acct-7", FIRST, mode="live"),
                       "--live")
    assert code == 2
    assert redact(f"order.account {FIRST} is a paper account (paper ids start with D) but the "
                  "spec says mode: live") in err
    assert placed(gateway) == []


def test_plan_shows_the_account_masked_unless_asked(cli, tmp_path):
    name = spec(tmp_path, "acct-8", SECOND)
    code, out, _ = cli(PAPER_PORT, "plan", name, "--at", AT)
    assert code == 0
    place = next(line for line in out.splitlines() if ". place" in line)
    assert place.endswith(f" orderRef=acct-8 account={redact(SECOND)}")
    code, out, _ = cli(PAPER_PORT, "plan", name, "--at", AT, "--json")
    [plan] = json.loads(out)["plans"]
    assert plan["order"]["account"] == redact(SECOND)
    assert plan["order"]["sent"]["account"] == redact(SECOND)  # IB's Order.account


def test_plan_show_account_prints_it_in_full(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    name = spec(tmp_path, "acct-9", SECOND)
    assert main(["plan", name, "--at", AT, "--show-account"]) == 0
    assert f" orderRef=acct-9 account={SECOND}\n" in capsys.readouterr().out


def test_a_dry_run_records_the_account_named(cli, tmp_path):
    code, _, err = cli(PAPER_PORT, "run", spec(tmp_path, "acct-10", SECOND), "--dry-run",
                       "--at", AT)
    assert (code, err) == (0, "")
    assert accounts_of(tmp_path, "acct-10") == [("INTENT", SECOND), ("ACK", SECOND),
                                                ("CANCEL", SECOND)]


def test_plan_broker_refuses_and_sends_no_what_if(make_gateway, cli, tmp_path):
    gw = make_gateway(accounts=(FIRST, SECOND))
    code, out, err = cli(gw.port, "plan", spec(tmp_path, "acct-11", OTHER), "--broker")
    assert code == 2
    assert f"  broker (IB, account {redact(OTHER)}; no order was created)\n" \
           "    not asked: the gates refuse the order's account" in out
    assert err == refused(f"order.account {OTHER} is not an account the gateway manages "
                          f"({FIRST}, {SECOND}); name one of those, or connect to the "
                          "gateway that manages it", source="a.yaml")
    assert placed(gw) == []  # not even the what-if
    code, out, _ = cli(gw.port, "plan", spec(tmp_path, "acct-12", SECOND), "--broker")
    assert code == 0 and f"what-if (IB, account {redact(SECOND)}; no order" in out
    [frame] = placed(gw)
    assert is_what_if(frame) and place_order_fields(frame).account == SECOND


# --- the fake gateway, driven by ib_async itself ---------------------------------------


def test_the_fake_gateway_answers_accounts_as_ib_does() -> None:
    async def body() -> None:
        async with FakeGateway(accounts=(FIRST, SECOND)) as gw, connected(gw) as ib:
            errors = error_log(ib)
            [spy] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
            bad = ib.placeOrder(spy, LimitOrder("BUY", 1, 1.0, orderRef="x", account=OTHER))
            none = ib.placeOrder(spy, LimitOrder("BUY", 1, 1.0, orderRef="y"))
            good = ib.placeOrder(spy, LimitOrder("BUY", 2, 1.0, orderRef="z", account=SECOND))
            def refusals() -> list[tuple[int, int, str]]:
                return [e for e in errors if e[1] < 2100]  # not the farm notices

            await until(ib, lambda: len(refusals()) >= 2
                        and good.orderStatus.status == "Submitted")
            first, second = refusals()
            assert (first[:2], second[:2]) == ((bad.order.orderId, 321), (none.order.orderId, 321))
            assert first[2].endswith("cause - Invalid account code")
            assert second[2].endswith("cause - You must specify an account.")
            assert gw.orders_by_ref("x") == [] and gw.orders_by_ref("y") == []  # no order
            await gw.fill("z", 2, 1.0)
            positions = await ib.reqPositionsAsync()
            assert [(p.account, p.position) for p in positions] == [(SECOND, 2.0)]

    run(body())


def test_cancel_and_recover_match_the_order_on_its_account(make_gateway, cli, tmp_path,
                                                           monkeypatch):
    """An order left working on the second account (its cancel refused): `runner recover`
    at a gateway that does not manage that account changes nothing; `runner cancel` at
    the right one finds it (permId and account) and records the CANCEL on that account."""
    monkeypatch.setenv("IB_CANCEL_TIMEOUT", "1")  # the refused cancel: retried for 1 s
    gw = make_gateway(accounts=(FIRST, SECOND))
    gw.script("acct-r", [Ack()], on_cancel="refuse", refuse_code=161)
    code, _, err = cli(gw.port, "one-shot", "--limit", "10.00", "--ttl_sec", "0.2", "--tag",
                       "acct-r", "--account", SECOND)
    assert code == 1, err  # left UNSETTLED
    other = make_gateway(accounts=(FIRST,))
    code, out, _ = cli(other.port, "recover", "--cancel-all")
    assert code == 3 and f"manages {redact(FIRST)}, not {redact(SECOND)}" in out
    gw.set_cancel("acct-r", on_cancel="ok")
    code, out, err = cli(gw.port, "cancel", "acct-r")
    assert code == 0, out + err
    assert accounts_of(tmp_path, "acct-r") == [("INTENT", SECOND), ("ACK", SECOND),
                                               ("UNSETTLED", SECOND), ("CANCEL", SECOND)]


def test_a_file_is_refused_whole_when_a_later_document_names_no_account(make_gateway, cli,
                                                                         tmp_path):
    """The accounts are known at the first document's session: a later document that
    names none (with two managed) refuses the file before the first is sent."""
    gw = make_gateway(accounts=(FIRST, SECOND))
    (tmp_path / "m.yaml").write_text(
        "version: 1\nkind: sanity-cancel\norder: {symbol: SPY, side: BUY, qty: 1, "
        f"limit: 0.01, tag: md1, account: {SECOND}}}\n---\nversion: 1\nkind: sanity-cancel\n"
        "order: {symbol: SPY, side: BUY, qty: 1, limit: 0.01, tag: md2}\n")
    code, out, err = cli(gw.port, "run", "m.yaml")
    assert (code, out) == (2, ""), err
    assert refused("the gateway manages 2 accounts (DU1111001, DU1111002): say which with "
                   "order.account", source="m.yaml#2") in err
    assert placed(gw) == []
    assert not (tmp_path / "data").exists()


def test_plan_broker_sends_no_what_if_of_a_paper_spec_to_a_live_login(make_gateway, cli,
                                                                       tmp_path):
    gw = make_gateway(accounts=(LIVE,))
    code, out, err = cli(gw.port, "plan", spec(tmp_path, "acct-13"), "--broker")
    assert code == 2, out + err
    assert f"account {redact(LIVE)} is a live account but the spec says mode: paper" in err
    assert "not asked: the gates refuse the order's account" in out
    assert placed(gw) == []  # not even a what-if reached the live account


def test_plan_broker_names_no_account_when_none_is_chosen(make_gateway, cli, tmp_path):
    gw = make_gateway(accounts=(FIRST, SECOND))
    code, out, err = cli(gw.port, "plan", spec(tmp_path, "acct-14"), "--broker")
    assert code == 2, out + err
    assert "  broker (IB, no account chosen; no order was created)\n" in out
    assert placed(gw) == []


def test_an_account_id_is_written_as_ib_writes_it(tmp_path, capsys):
    """Lower case would neither be masked as an id nor read as paper (D...): refused."""
    (tmp_path / "a.yaml").write_text("version: 1\nkind: sanity-cancel\norder: {symbol: SPY, "
                                     "side: BUY, qty: 1, limit: 0.01, account: du1111002}\n")
    assert main(["validate", str(tmp_path / "a.yaml")]) == 2
    assert "order.account: 'du1111002' does not match ^[A-Z0-9]{1,32}$" in \
        capsys.readouterr().err
    assert main(["sanity-cancel", "--account", "", "--dry-run"]) == 2  # never dropped
    assert "--account: '' does not match" in capsys.readouterr().err


def test_ibs_321_is_answered_by_its_cause():
    from runner.ib.session import READ_ONLY_HINT, hint_321

    assert hint_321("Error validating request:-'bN' : cause - The API interface is "
                    "currently in Read-Only mode.") == READ_ONLY_HINT
    assert hint_321("Error validating request.-'bW' : cause - Invalid account code "
                    "DU9").startswith("name an account this gateway's login manages")
    assert hint_321("Error validating request.-'cB' : cause - You must specify an "
                    "account.").startswith("name an account")
    assert hint_321("Error validating request: something else") == (
        "IB found the request invalid: check the order's fields and the account")
