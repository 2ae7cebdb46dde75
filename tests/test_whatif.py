"""What-if: the fake gateway answers a whatIf placeOrder the way IB does (one openOrder
with whatIf=1 and the margin/commission fields, no order created), and
`runner plan SPEC --broker` shows it. Expected figures by hand from the fake's
documented model: initial margin 50% and maintenance 25% of qty x price, equity with
loan = net liquidation 100,000, commission max(1.00, 0.005/share) capped at 1%."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from runner.gateway import FakeGateway, place_order_fields
from runner.gateway.requests import is_what_if
from runner.gateway.whatif import fixed_rate_commission
from runner.ib import parse_hours

PLACE = 3
NS = 1_000_000_000


def spec(tmp_path: Path, qty: int, limit: float, tag: str, extra: str = "") -> str:
    (tmp_path / "w.yaml").write_text(
        "version: 1\nkind: one-shot\n"
        f"order: {{symbol: SPY, side: BUY, qty: {qty}, limit: {limit:.2f}, tag: {tag}}}\n"
        + extra)
    return "w.yaml"


def placed(gw: Any) -> list[tuple[str, ...]]:
    return [fields for _, fields in gw.received if fields[0] == str(PLACE)]


def test_plan_broker_shows_margin_and_commission_and_creates_no_order(gateway, cli, tmp_path):
    code, out, err = cli(gateway.port, "plan", spec(tmp_path, 10, 100.00, "wi-1"), "--broker")
    assert (code, err) == (0, "")
    value = 10 * 100.00
    init, maint = value * 0.50, value * 0.25
    commission = max(1.00, 10 * 0.005)
    assert out.endswith(
        "  what-if (IB, account DU****567; no order was created)\n"
        f"    initial margin      0.00 +{init:,.2f} -> {init:,.2f} USD\n"
        f"    maintenance margin  0.00 +{maint:,.2f} -> {maint:,.2f} USD\n"
        "    equity with loan    100,000.00 +0.00 -> 100,000.00 USD\n"
        f"    commission          {commission:.2f} USD (min {commission:.2f}, "
        f"max {commission:.2f})\n"
        "    reference price     none (the gateway sent no price)\n")  # no bars, no quote
    assert out.startswith("plan w (one-shot, paper) from w.yaml\n")
    [frame] = placed(gateway)  # the one placeOrder on the wire asked for a preview...
    assert is_what_if(frame) and place_order_fields(frame).order_ref == "wi-1"
    assert gateway.orders_by_ref("wi-1") == []  # ...and the gateway made no order of it
    assert [w.order_ref for w in gateway.what_ifs] == ["wi-1"]
    assert not (tmp_path / "data").exists()


def test_plan_broker_json_and_a_warning(gateway, cli, tmp_path):
    code, out, _ = cli(gateway.port, "plan", spec(tmp_path, 1000, 300.00, "wi-2"), "--broker",
                       "--json")
    assert code == 0
    [d] = json.loads(out)["plans"]
    init = 1000 * 300.00 * 0.50  # 150,000: more than the account's 100,000
    assert d["broker"]["account"] == "DU****567"
    assert d["broker"]["what_if"] == {
        "init_margin_before": 0.0, "init_margin_change": init, "init_margin_after": init,
        "maint_margin_before": 0.0, "maint_margin_change": 1000 * 300.00 * 0.25,
        "maint_margin_after": 1000 * 300.00 * 0.25, "equity_with_loan_before": 100_000.0,
        "equity_with_loan_change": 0.0, "equity_with_loan_after": 100_000.0,
        "commission": 5.0, "min_commission": 5.0, "max_commission": 5.0, "currency": "USD",
        "warning": "Insufficient equity: initial margin 150,000.00 would exceed equity with "
                   "loan value 100,000.00"}
    assert d["order"]["tag"] == "wi-2" and gateway.orders_by_ref("wi-2") == []


def test_plan_broker_runs_the_gates_with_the_broker_facts(make_gateway, cli, tmp_path):
    gw = make_gateway(accounts=("U7654321",), hours="closed")
    code, out, err = cli(gw.port, "plan", spec(tmp_path, 10, 100.00, "wi-3"), "--broker")
    assert code == 2
    # a paper spec's what-if is not sent to a live login: the gates refuse it anyway
    assert "  broker (IB, account U****321; no order was created)\n    not asked: the " \
           "gates refuse the order's account\n" in out
    assert [f for _, f in gw.received if f[0] == "3"] == []  # no placeOrder, not a what-if
    assert err.startswith("runner: w.yaml: refused by the built-in policy; nothing was sent:\n"
                          "  - account U****321 is a live account but the spec says mode: "
                          "paper\n"
                          "  - the market is closed at ")
    assert gw.orders_by_ref("wi-3") == []


def test_ib_async_what_if_against_the_fake_gateway():
    from ib_async import IB, LimitOrder, Stock

    async def body() -> None:
        async with FakeGateway() as gw:
            ib = IB()
            await ib.connectAsync("127.0.0.1", gw.port, clientId=3, timeout=5)
            try:
                [spy] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
                state = await asyncio.wait_for(
                    ib.whatIfOrderAsync(spy, LimitOrder("SELL", 20, 50.0)), 5)
                assert (state.status, state.initMarginChange, state.maintMarginChange) == (
                    "PreSubmitted", "500.00", "250.00")  # 20 x 50 x 50% / 25%
                assert (state.commission, state.commissionCurrency) == (1.0, "USD")
                assert ib.trades() == [] and gw.book.orders == {}
            finally:
                ib.disconnect()

    asyncio.run(body())


@pytest.mark.parametrize(("qty", "px", "expected"), [
    (100, 473.10, 1.00),  # 0.50 -> the 1.00 minimum
    (1000, 473.10, 5.00),  # 0.005 x 1000
    (1, 0.50, 0.005),  # the 1% of value cap is below the minimum
])
def test_fixed_rate_commission(qty, px, expected):
    assert fixed_rate_commission(qty, px) == pytest.approx(expected)


def test_is_what_if_reads_past_algo_params():
    frame = ["x"] * 120
    frame[82], frame[84] = "", "1"
    assert is_what_if(frame)
    frame[82], frame[83], frame[84], frame[87] = "Adaptive", "1", "0", "1"  # 1 param: +3
    assert is_what_if(frame)
    frame[87] = "0"
    assert not is_what_if(frame)


def test_parse_liquid_hours():
    # 2026-01-05 09:30 New York = 14:30Z (EST, UTC-5); 16:00 = 21:00Z
    sessions = parse_hours("20260105:0930-20260105:1600;20260110:CLOSED", "US/Eastern")
    assert sessions == ((1_767_623_400 * NS, 1_767_646_800 * NS),)
    assert parse_hours("20260110:CLOSED", "US/Eastern") == ()
    assert parse_hours("", "US/Eastern") is None
    assert parse_hours("garbage", "US/Eastern") is None
    assert parse_hours("20260105:0930-20260105:1600", "Mars/Olympus") is None


def test_gateway_hours_modes():
    from runner.gateway.contracts import trading_hours

    monday = 1_767_600_000 * NS  # 2026-01-05 08:00Z, a Monday
    trading, liquid = trading_hours(monday, days=2, mode="regular")
    assert liquid == "20260105:0930-20260105:1600;20260106:0930-20260106:1600"
    assert trading_hours(monday, days=1, mode="open")[1] == "20260105:0000-20260106:0000"
    assert trading_hours(monday, days=1, mode="closed") == ("20260105:CLOSED",) * 2
    assert re.fullmatch(r"(\d{8}:0400-\d{8}:2000;?){2}", trading)


def test_plan_broker_prices_the_collar_with_the_brokers_reference(gateway, cli, tmp_path):
    """No bars: the collar's reference is IB's snapshot, asked as a run asks it. The
    midpoint of 99.99 / 100.01 is 100.00; 50 bps through it is 100.50, so a BUY at 100.40
    passes and one at 100.60 is refused, naming that reference."""
    (tmp_path / "runner-policy.yaml").write_text("version: 1\nmax_slippage_bps: 50\n")
    gateway.call(gateway.gateway.set_quote, "SPY", 100.00, bid=99.99, ask=100.01)
    code, out, err = cli(gateway.port, "plan", spec(tmp_path, 1, 100.40, "wi-5"), "--broker")
    assert (code, err) == (0, "")
    assert out.endswith("    reference price     100.00\n")
    code, out, err = cli(gateway.port, "plan", spec(tmp_path, 1, 100.60, "wi-6"), "--broker")
    assert code == 2
    assert err == ("runner: w.yaml: refused by runner-policy.yaml; nothing was sent:\n"
                   f"  - BUY limit 100.60 is {(100.60 / 100.00 - 1) * 1e4:.1f} bps above the "
                   "reference 100.00 (from the broker); the policy allows 50 bps "
                   "(max_slippage_bps) (from runner-policy.yaml:2:19)\n")
