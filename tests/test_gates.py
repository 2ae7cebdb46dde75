"""The pre-trade gates: one case per reason (exact text), every reason at once, the
facts a stage does not know skipped; then over the wire against the fake gateway
(port/account disagreement, kill switch, day caps from the ledger, market hours,
the tag lock, `run --json` on a refusal) and in dry runs (the exchange's calendar as
market hours, the sanity distance of the built-in policy)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.gates import Context, check
from runner.ledger import read_ledger
from runner.plan import Plan, compile_plan, trading_day
from runner.policy import DEFAULT, Policy
from runner.preflight import calendar_open, day_totals, run_lock
from runner.spec import from_mapping

NS = 1_000_000_000
T0 = 1_767_623_400 * NS  # 2026-01-05 09:30:00 New York = 14:30:00Z
PLACE = 3  # TWS API message id of placeOrder
REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "live" / "2026-01-05" / "bars1s_SPY.parquet"

POLICY = Policy(
    source="p.yaml", symbols=("SPY", "QQQ"), sec_types=("STK",), max_qty=100,
    max_notional=10_000, max_day_notional=50_000, max_day_orders=5, max_slippage_bps=50,
    max_reference_age_sec=60, min_sanity_distance_bps=500, allow_market=False,
    allow_live=False, kill_switch="KILL",
)
# Everything known and fine: paper port, paper account, a fresh reference at 100.00.
CTX = Context(now_ns=T0, port=7497, accounts=("DU1234567",), priced=True, reference_px=100.0,
              reference_ns=T0 - NS, day_orders=0, day_notional=0.0, kill_switch=False,
              market_open=True)


def plan_of(kind: str = "one-shot", mode: str = "paper", port: int = 7497,
            limits: dict[str, Any] | None = None, top: dict[str, Any] | None = None,
            **order: Any) -> Plan:
    """BUY 10 SPY LMT 100.00 by default: notional 1,000."""
    o = {"symbol": "SPY", "side": "BUY", "qty": 10, "limit": 100.0, **order}
    o = {k: v for k, v in o.items() if v is not None}
    data: dict[str, Any] = {"version": 1, "kind": kind, "mode": mode, "order": o, **(top or {})}
    if limits:
        data["limits"] = limits
    return compile_plan(from_mapping(data), {"IB_GATEWAY_PORT": str(port)}, T0)


LIVE = {"mode": "live"}
ALLOW_LIVE = {"allow_live": True}
ALLOW_MARKET = {"allow_market": True}
MARKET = {"limit": None, "allow_market": True}
NO_NOTIONAL_CAPS = {"max_notional": None, "max_day_notional": None}

# (id, plan kwargs, policy changes, context changes, the exact reasons)
CASES = [
    ("all-fine", {}, {}, {}, []),
    ("kill-switch", {}, {}, {"kill_switch": True},
     ["kill switch KILL is present: every order is refused (remove the file to trade again)"]),
    ("live-not-allowed", {"mode": "live", "port": 7496}, {},
     {"port": 7496, "accounts": ("U7654321",)},
     ["mode: live is not allowed by the policy (allow_live: false)"]),
    ("live-port-paper-spec", {"port": 7496}, {}, {"port": 7496, "accounts": ()},
     ["port 7496 is a live port but the spec says mode: paper"]),
    ("paper-port-live-spec", LIVE, ALLOW_LIVE, {"accounts": ()},
     ["port 7497 is a paper port but the spec says mode: live"]),
    ("paper-account-on-live-port", {"mode": "live", "port": 7496}, ALLOW_LIVE,
     {"port": 7496},
     ["account DU1234567 is a paper account but port 7496 is a live port",
      "account DU1234567 is a paper account but the spec says mode: live"]),
    ("live-account-on-paper-port", {}, {}, {"accounts": ("U7654321",)},
     ["account U7654321 is a live account but port 7497 is a paper port",
      "account U7654321 is a live account but the spec says mode: paper"]),
    ("live-account-unknown-port", {"port": 4003}, {}, {"port": 4003, "accounts": ("U7654321",)},
     ["account U7654321 is a live account but the spec says mode: paper"]),
    # every account of the session counts, not only the one the order is for
    ("a-live-account-after-a-paper-one", {"account": "DU1234567"}, {},
     {"accounts": ("DU1234567", "U7654321")},
     ["account U7654321 is a live account but port 7497 is a paper port",
      "account U7654321 is a live account but the spec says mode: paper"]),
    ("two-live-accounts-unknown-port", {"port": 4003, "account": "DU1234567"}, {},
     {"port": 4003, "accounts": ("DU1234567", "U7654321", "U1111111")},
     ["accounts U7654321 and U1111111 are live accounts but the spec says mode: paper"]),
    ("paper-accounts-in-a-live-run", {"mode": "live", "port": 7496, "account": "U7654321"},
     ALLOW_LIVE, {"port": 7496, "accounts": ("U7654321", "DU1234567")},
     ["account DU1234567 is a paper account but port 7496 is a live port",
      "account DU1234567 is a paper account but the spec says mode: live"]),
    # order.account (issue 16): named when the session manages several, one of them, and
    # of the spec's mode; before connecting (no accounts known) only the mode is judged
    ("two-accounts-none-named", {}, {}, {"accounts": ("DU1234567", "DU7654321")},
     ["the gateway manages 2 accounts (DU1234567, DU7654321): say which with "
      "order.account"]),
    ("named-one-of-two", {"account": "DU7654321"}, {},
     {"accounts": ("DU1234567", "DU7654321")}, []),
    ("named-not-managed", {"account": "DU5555555"}, {},
     {"accounts": ("DU1234567", "DU7654321")},
     ["order.account DU5555555 is not an account the gateway manages (DU1234567, "
      "DU7654321); name one of those, or connect to the gateway that manages it"]),
    ("named-before-connecting", {"account": "DU5555555"}, {}, {"accounts": ()}, []),
    ("paper-spec-names-a-live-account", {"account": "U7654321"}, {}, {"accounts": ()},
     ["order.account U7654321 is a live account (paper ids start with D) but the spec "
      "says mode: paper"]),
    ("paper-spec-names-a-live-account-not-managed", {"account": "U7654321"}, {}, {},
     ["order.account U7654321 is a live account (paper ids start with D) but the spec "
      "says mode: paper",
      "order.account U7654321 is not an account the gateway manages (DU1234567); name one "
      "of those, or connect to the gateway that manages it"]),
    # managed: the session's rule says it (once), the named account's would repeat it
    ("paper-spec-names-a-managed-live-account", {"account": "U7654321"}, {},
     {"accounts": ("DU1234567", "U7654321")},
     ["account U7654321 is a live account but port 7497 is a paper port",
      "account U7654321 is a live account but the spec says mode: paper"]),
    ("live-spec-names-a-paper-account", {"mode": "live", "port": 7496, "account": "DU1234567"},
     ALLOW_LIVE, {"port": 7496, "accounts": ()},
     ["order.account DU1234567 is a paper account (paper ids start with D) but the spec "
      "says mode: live"]),
    ("symbol", {"symbol": "TSLA"}, {}, {},
     ["symbol TSLA is not in the policy's symbols (SPY, QQQ)"]),
    ("sec-type", {}, {"sec_types": ("CASH",)}, {},
     ["sec_type STK is not in the policy's sec_types (CASH)"]),
    ("qty", {"qty": 150, "limit": 10.0}, {}, {"reference_px": 10.0},
     ["qty 150 exceeds the policy's max_qty 100"]),
    ("notional-limit", {"qty": 100, "limit": 150.0}, {}, {"reference_px": 150.0},
     ["notional 15,000 (qty x limit 150.00) exceeds the policy's max_notional 10,000"]),
    ("market-not-allowed", MARKET, {}, {},
     ["market orders are not allowed by the policy (allow_market: false)"]),
    ("market-notional", {**MARKET, "qty": 100}, ALLOW_MARKET, {"reference_px": 120.0},
     ["notional 12,000 (qty x reference 120.00) exceeds the policy's max_notional 10,000"]),
    ("market-notional-spec-limit", {**MARKET, "limits": {"max_notional": 500}}, ALLOW_MARKET,
     {}, ["notional 1,000 (qty x reference 100.00) exceeds limits.max_notional 500"]),
    ("market-without-price", MARKET, ALLOW_MARKET, {"reference_px": None},
     ["cannot check the notional of a market order without a reference price (add "
      "bars_path, or use a limit order)"]),
    ("reference-required", {}, {"require_reference": True}, {"reference_px": None},
     ["no reference price, and the policy requires one (require_reference: true); "
      "add bars_path"]),
    ("reference-stale", {}, {}, {"reference_ns": T0 - 75 * NS},
     ["reference price 100.00 is 75 s old; the policy allows 60 s (max_reference_age_sec)"]),
    ("slippage-buy", {"limit": 101.0}, {}, {},
     ["BUY limit 101.00 is 100.0 bps above the reference 100.00; the policy allows 50 bps "
      "(max_slippage_bps)"]),
    ("slippage-sell", {"side": "SELL", "limit": 99.0}, {}, {},
     ["SELL limit 99.00 is 100.0 bps below the reference 100.00; the policy allows 50 bps "
      "(max_slippage_bps)"]),
    ("sanity-too-close", {"kind": "sanity-cancel", "limit": 97.0}, {}, {},
     ["sanity-cancel BUY limit 97.00 is 300.0 bps below the reference 100.00; it must be at "
      "least 500 bps below so it cannot fill (min_sanity_distance_bps)"]),
    ("sanity-wrong-side", {"kind": "sanity-cancel", "side": "SELL", "limit": 99.0}, {}, {},
     ["sanity-cancel SELL limit 99.00 is 100.0 bps below the reference 100.00, on the side "
      "that fills; it must be at least 500 bps above so it cannot fill "
      "(min_sanity_distance_bps)"]),
    ("day-orders", {}, {}, {"day_orders": 5},
     ["5 orders placed today + this one exceeds the policy's max_day_orders 5"]),
    ("day-notional", {}, {}, {"day_notional": 49_500.0},
     ["notional placed today 49,500 + this order 1,000 = 50,500 exceeds the policy's "
      "max_day_notional 50,000"]),
    ("market-closed", {}, {}, {"market_open": False},
     ["the market is closed at 2026-01-05T14:30:00Z (outside regular trading hours); set "
      "order.outside_rth: true to send the order anyway"]),
    ("closed-but-outside-rth", {"outside_rth": True}, {}, {"market_open": False}, []),
    ("closed-but-gtc", {"tif": "GTC", "top": {"ttl_backstop": False}}, {},
     {"market_open": False}, []),
    ("sanity-far-enough", {"kind": "sanity-cancel", "limit": 95.0}, {}, {}, []),
    # --- reference prices: a collar or a SELL sanity-cancel with none is refused --------
    # 99,999 with no reference: the collar (50 bps) cannot judge it. No notional caps here,
    # so the collar is the only thing that could have stopped it.
    ("collar-no-reference", {"qty": 1, "limit": 99_999.0}, NO_NOTIONAL_CAPS,
     {"reference_px": None},
     ["BUY limit 99,999.00 cannot be checked against the policy's price collar "
      "(max_slippage_bps 50): there is no reference price; add bars_path with bars that "
      "cover the order"]),
    ("collar-no-reference-sell", {"side": "SELL", "limit": 0.01}, {}, {"reference_px": None},
     ["SELL limit 0.01 cannot be checked against the policy's price collar "
      "(max_slippage_bps 50): there is no reference price; add bars_path with bars that "
      "cover the order"]),
    ("collar-ib-no-price", {"qty": 1, "limit": 99_999.0}, NO_NOTIONAL_CAPS,
     {"reference_px": -1.0, "reference_source": "broker"},  # IB's "no price"
     ["BUY limit 99,999.00 cannot be checked against the policy's price collar "
      "(max_slippage_bps 50): there is no reference price; add bars_path with bars that "
      "cover the order"]),
    ("collar-nan-reference", {}, {}, {"reference_px": float("nan")},
     ["BUY limit 100.00 cannot be checked against the policy's price collar "
      "(max_slippage_bps 50): there is no reference price; add bars_path with bars that "
      "cover the order"]),
    ("no-collar-no-reference", {}, {"max_slippage_bps": None}, {"reference_px": None}, []),
    ("collar-no-reference-required", {}, {"require_reference": True}, {"reference_px": None},
     ["no reference price, and the policy requires one (require_reference: true); "
      "add bars_path"]),  # one line for one cause
    ("collar-market-no-reference", {**MARKET, "qty": 1}, {**ALLOW_MARKET, **NO_NOTIONAL_CAPS},
     {"reference_px": None}, []),  # a collar bounds limits; allow_market is the market's gate
    ("collar-broker-reference", {"limit": 101.0}, {},
     {"reference_source": "broker"},
     ["BUY limit 101.00 is 100.0 bps above the reference 100.00 (from the broker); the "
      "policy allows 50 bps (max_slippage_bps)"]),
    ("collar-within", {"limit": 100.5}, {}, {}, []),  # 50.0 bps: at the cap, allowed
    ("sanity-sell-no-reference", {"kind": "sanity-cancel", "side": "SELL", "limit": 0.01}, {},
     {"reference_px": None},
     ["sanity-cancel SELL limit 0.01 cannot be shown to be above the market: there is no "
      "reference price, and a SELL below the market fills; add bars_path with bars that "
      "cover the order, or use side BUY (a BUY far below the market cannot fill)"]),
    ("sanity-sell-no-reference-no-collar", {"kind": "sanity-cancel", "side": "SELL",
                                            "limit": 1000.0},
     {"max_slippage_bps": None}, {"reference_px": None},
     ["sanity-cancel SELL limit 1,000.00 cannot be shown to be above the market: there is no "
      "reference price, and a SELL below the market fills; add bars_path with bars that "
      "cover the order, or use side BUY (a BUY far below the market cannot fill)"]),
    ("sanity-buy-no-reference", {"kind": "sanity-cancel", "limit": 0.01}, {},
     {"reference_px": None}, []),  # as before: 0.01 is far below any market
    # SELL 0.01 against 100.00: (100 - 0.01) / 100 x 1e4 = 9,999.0 bps on the side that fills
    ("sanity-sell-at-a-cent", {"kind": "sanity-cancel", "side": "SELL", "limit": 0.01}, {}, {},
     ["sanity-cancel SELL limit 0.01 is 9,999.0 bps below the reference 100.00, on the side "
      "that fills; it must be at least 500 bps above so it cannot fill "
      "(min_sanity_distance_bps)"]),
    # BUY 101.00 against 100.00: 100.0 bps above, the side that fills
    ("sanity-buy-above", {"kind": "sanity-cancel", "limit": 101.0}, {}, {},
     ["sanity-cancel BUY limit 101.00 is 100.0 bps above the reference 100.00, on the side "
      "that fills; it must be at least 500 bps below so it cannot fill "
      "(min_sanity_distance_bps)"]),
    # SELL 104.99: (104.99 - 100) / 100 x 1e4 = 499.0 bps above, 1 bps short of 500
    ("sanity-sell-too-close", {"kind": "sanity-cancel", "side": "SELL", "limit": 104.99}, {},
     {}, ["sanity-cancel SELL limit 104.99 is 499.0 bps above the reference 100.00; it must "
          "be at least 500 bps above so it cannot fill (min_sanity_distance_bps)"]),
    ("sanity-sell-far-enough", {"kind": "sanity-cancel", "side": "SELL", "limit": 105.0}, {},
     {}, []),  # exactly 500 bps above
    ("sanity-sell-broker-reference", {"kind": "sanity-cancel", "side": "SELL", "limit": 99.0},
     {}, {"reference_source": "broker"},
     ["sanity-cancel SELL limit 99.00 is 100.0 bps below the reference 100.00 (from the "
      "broker), on the side that fills; it must be at least 500 bps above so it cannot fill "
      "(min_sanity_distance_bps)"]),
]


@pytest.mark.parametrize(("plan_kw", "policy_kw", "ctx_kw", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_gate_reason(plan_kw, policy_kw, ctx_kw, expected):
    plan = plan_of(**plan_kw)
    policy = dataclasses.replace(POLICY, **policy_kw)
    ctx = dataclasses.replace(CTX, **ctx_kw)
    assert check(plan, policy, ctx) == expected


def test_distinct_reasons_number_at_least_fifteen():
    texts = {r for c in CASES for r in c[4]}
    assert len(texts) >= 15


def test_several_failing_gates_are_all_listed_in_order():
    plan = plan_of(symbol="TSLA", qty=150, limit=10.0)
    ctx = dataclasses.replace(CTX, kill_switch=True, day_orders=5, market_open=False,
                              reference_px=10.0)
    assert check(plan, POLICY, ctx) == [
        "kill switch KILL is present: every order is refused (remove the file to trade again)",
        "symbol TSLA is not in the policy's symbols (SPY, QQQ)",
        "qty 150 exceeds the policy's max_qty 100",
        "5 orders placed today + this one exceeds the policy's max_day_orders 5",
        "the market is closed at 2026-01-05T14:30:00Z (outside regular trading hours); set "
        "order.outside_rth: true to send the order anyway",
    ]


def test_unknown_facts_are_skipped_not_refused():
    # What `validate` knows: the spec and the policy only.
    plan = plan_of(kind="sanity-cancel", limit=99.0, mode="live", port=7496)
    assert check(plan, dataclasses.replace(POLICY, allow_live=True), Context(now_ns=T0)) == []
    assert check(plan_of(**MARKET), dataclasses.replace(POLICY, allow_market=True),
                 Context(now_ns=T0)) == []


def test_a_stale_reference_is_not_used_to_judge_prices():
    ctx = dataclasses.replace(CTX, reference_ns=T0 - 600 * NS)
    assert check(plan_of(limit=101.0), POLICY, ctx) == [
        "reference price 100.00 is 10 min old; the policy allows 60 s (max_reference_age_sec)"]


def test_handshake_is_never_gated():
    plan = compile_plan(from_mapping({"version": 1, "kind": "handshake"}), {}, T0)
    assert check(plan, POLICY, dataclasses.replace(CTX, kill_switch=True)) == []


def test_built_in_policy_keeps_the_5_percent_sanity_rule_and_nothing_else():
    ctx = Context(now_ns=T0, priced=True, reference_px=100.0, reference_ns=T0)
    assert check(plan_of(kind="sanity-cancel", limit=96.0), DEFAULT, ctx) == [
        "sanity-cancel BUY limit 96.00 is 400.0 bps below the reference 100.00; it must be at "
        "least 500 bps below so it cannot fill (min_sanity_distance_bps)"]
    assert check(plan_of(kind="sanity-cancel", limit=95.0), DEFAULT, ctx) == []
    assert check(plan_of(symbol="TSLA", qty=100_000, limit=500.0), DEFAULT, ctx) == []


# --- over the wire ---------------------------------------------------------------------


def placed(gw: Any) -> list[tuple[str, ...]]:
    return [fields for _, fields in gw.received if fields[0] == str(PLACE)]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_account_port_disagreement_blocks_after_connect_with_no_place(make_gateway, cli,
                                                                      tmp_path):
    gw = make_gateway()  # paper account DU1234567
    write(tmp_path / "runner-policy.yaml", f"version: 1\nallow_live: true\n"
                                           f"live_ports: [{gw.port}]\n")
    write(tmp_path / "live.yaml", "version: 1\nkind: sanity-cancel\nmode: live\n"
                                  "order: {symbol: SPY, side: BUY, qty: 1, limit: 0.01, "
                                  "tag: lp-1}\n")
    code, out, err = cli(gw.port, "run", "live.yaml", "--live")
    assert (code, out) == (2, "")
    assert err == ("runner: live.yaml: refused by runner-policy.yaml; nothing was sent:\n"
                   f"  - account DU****567 is a paper account but port {gw.port} is a live "
                   "port (from runner-policy.yaml:3:13)\n"
                   "  - account DU****567 is a paper account but the spec says mode: live\n")
    assert gw.received and placed(gw) == []  # it connected, asked, and placed nothing
    assert not (tmp_path / "data").exists()  # no ledger row


def test_a_paper_run_sees_every_account_of_the_session(make_gateway, cli, tmp_path):
    """The order's account (named) is paper, but the login also manages a live one:
    refused by the gates (exit 2) after connecting, nothing placed, no ledger."""
    gw = make_gateway(accounts=("DU1234567", "U7654321"))
    code, out, err = cli(gw.port, "sanity-cancel", "--tag", "mixed-1", "--account", "DU1234567")
    assert (code, out) == (2, "")
    assert err == ("runner: <command line>: refused by the built-in policy; nothing was sent:\n"
                   "  - account U****321 is a live account but the spec says mode: paper\n")
    assert gw.received and placed(gw) == []
    assert not (tmp_path / "data").exists()


def test_live_port_and_paper_spec_refused_before_connecting(gateway, cli, tmp_path):
    write(tmp_path / "runner-policy.yaml", f"version: 1\nlive_ports: [{gateway.port}]\n")
    code, _, err = cli(gateway.port, "sanity-cancel")
    assert code == 2
    assert err == ("runner: <command line>: refused by runner-policy.yaml; nothing was sent:\n"
                   f"  - port {gateway.port} is a live port but the spec says mode: paper "
                   "(from runner-policy.yaml:2:13)\n")
    assert gateway.received == []


def test_kill_switch_blocks_until_removed(gateway, cli, tmp_path):
    write(tmp_path / "runner-policy.yaml", "version: 1\nkill_switch: KILL\n")
    (tmp_path / "KILL").touch()
    code, _, err = cli(gateway.port, "sanity-cancel", "--tag", "k-1")
    assert code == 2 and "  - kill switch KILL is present: every order is refused" in err
    assert gateway.received == [] and not (tmp_path / "data").exists()
    (tmp_path / "KILL").unlink()
    assert cli(gateway.port, "sanity-cancel", "--tag", "k-1")[0] == 0
    assert len(placed(gateway)) == 1


def test_day_caps_count_earlier_runs_in_the_ledger(gateway, cli, tmp_path):
    write(tmp_path / "runner-policy.yaml",
          "version: 1\nmax_day_orders: 3\nmax_day_notional: 25\n")
    for tag in ("d-1", "d-2"):  # 1 x 10.00 each: 20 placed
        code, _, err = cli(gateway.port, "one-shot", "--limit", "10.00", "--ttl_sec", "0.2",
                           "--tag", tag)
        assert code == 0, err
    assert day_totals("data/exec", trading_day(time.time_ns())) == (2, 20.0)
    code, _, err = cli(gateway.port, "one-shot", "--limit", "10.00", "--ttl_sec", "0.2",
                       "--tag", "d-3")
    assert code == 2
    assert err.endswith("  - notional placed today 20 + this order 10 = 30 exceeds the "
                        "policy's max_day_notional 25 (from runner-policy.yaml:3:19)\n")
    code, _, err = cli(gateway.port, "sanity-cancel", "--tag", "d-4")  # 0.01: fits
    assert code == 0, err
    code, _, err = cli(gateway.port, "sanity-cancel", "--tag", "d-5")
    assert code == 2 and err.endswith("  - 3 orders placed today + this one exceeds the "
                                      "policy's max_day_orders 3 "
                                      "(from runner-policy.yaml:2:17)\n")
    assert len(placed(gateway)) == 3


def test_market_closed_by_ib_liquid_hours_unless_outside_rth(make_gateway, cli, tmp_path):
    gw = make_gateway(hours="closed")
    write(tmp_path / "day.yaml", "version: 1\nkind: one-shot\nttl_sec: 0.2\n"
                                 "order: {symbol: SPY, side: BUY, qty: 1, limit: 10.00, "
                                 "tag: h-1}\n")
    code, _, err = cli(gw.port, "run", "day.yaml")
    assert code == 2 and "(outside regular trading hours); set order.outside_rth: true" in err
    assert placed(gw) == [] and not (tmp_path / "data").exists()
    write(tmp_path / "rth.yaml", "version: 1\nkind: one-shot\nttl_sec: 0.2\n"
                                 "order: {symbol: SPY, side: BUY, qty: 1, limit: 10.00, "
                                 "tag: h-2, outside_rth: true}\n")
    assert cli(gw.port, "run", "rth.yaml")[0] == 0
    assert len(placed(gw)) == 1


def test_run_json_prints_one_refusal_object(gateway, cli, tmp_path):
    write(tmp_path / "runner-policy.yaml", "version: 1\nsymbols: [QQQ]\nmax_qty: 5\n")
    write(tmp_path / "s.yaml", "version: 1\nkind: sanity-cancel\n"
                               "order: {symbol: SPY, side: BUY, qty: 10, limit: 0.01, tag: j-1}\n")
    code, out, _ = cli(gateway.port, "run", "s.yaml", "--json")
    assert code == 2
    assert out.count("\n") == 1 and json.loads(out) == {
        "version": 2, "command": "run", "ok": False, "spec": "s.yaml", "tag": "j-1",
        "error": {"exit_code": 2, "hint": None,
                  "message": "s.yaml: refused by runner-policy.yaml; nothing was sent:\n"
                             "  - symbol SPY is not in the policy's symbols (QQQ) "
                             "(from runner-policy.yaml:2:10)\n"
                             "  - qty 10 exceeds the policy's max_qty 5 "
                             "(from runner-policy.yaml:3:10)"},
        "reasons": ["symbol SPY is not in the policy's symbols (QQQ) "
                    "(from runner-policy.yaml:2:10)",
                    "qty 10 exceeds the policy's max_qty 5 (from runner-policy.yaml:3:10)"],
        "results": [{"spec": "s.yaml", "kind": "sanity-cancel", "tag": "j-1",
                     "state": "REFUSED"}],
    }
    assert gateway.received == []


def test_a_running_tag_locks_out_a_second_run(gateway, cli, tmp_path):
    spec = write(tmp_path / "s.yaml", "version: 1\nkind: sanity-cancel\n"
                                      "order: {symbol: SPY, side: BUY, qty: 1, limit: 0.01, "
                                      "tag: lock-1}\n")
    plan = compile_plan(from_mapping({"version": 1, "kind": "sanity-cancel", "order": {
        "symbol": "SPY", "side": "BUY", "qty": 1, "limit": 0.01, "tag": "lock-1"}}), {}, T0)
    with run_lock(plan):  # as if another run of lock-1 were placing it right now
        code, _, err = cli(gateway.port, "run", spec.name)
    assert code == 2
    assert err.startswith("runner: another run of tag lock-1 is in progress for data/exec (lock ")
    assert "; nothing was sent (wait for it to finish" in err and gateway.received == []
    assert cli(gateway.port, "run", "s.yaml")[0] == 0  # released with the other run


# --- dry runs: the exchange's calendar is the market -----------------------------------


def test_dry_run_market_hours_are_the_exchange_calendar():
    from runner.bars import load_bars

    order = plan_of().order  # SPY STK SMART USD: the NYSE's regular session
    bars = load_bars(SAMPLE)  # 09:30-16:00: the calendar, not their coverage, decides
    assert calendar_open(order, bars, T0) is True  # 09:30:00
    assert calendar_open(order, bars, T0 - NS) is False  # 09:29:59, pre-market
    assert calendar_open(order, bars, T0 + (6 * 3600 + 30 * 60 - 1) * NS) is True  # 15:59:59
    assert calendar_open(order, bars, T0 + (6 * 3600 + 30 * 60) * NS) is False  # 16:00:00
    assert calendar_open(order, bars, T0 + 5 * 86_400 * NS) is False  # Saturday 09:30
    assert calendar_open(dataclasses.replace(order, exchange="TSE", currency="CAD"), bars,
                         T0) is None  # a calendar runner does not know: unknown, not closed
    assert calendar_open(None, bars, T0) is None  # a handshake has no order
    assert calendar_open(order, None, T0 - NS) is None  # no bars: not judged


def write_pre_market_bars(path: Path) -> None:
    """1 s bars from 08:59:59 to 09:30:04 New York, each trading down to 99.50."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 30 * 60 + 6
    ts = T0 - 30 * 60 * NS - NS + np.arange(n, dtype=np.int64) * NS
    pq.write_table(pa.table({"ts": pa.array(ts, pa.timestamp("ns", tz="UTC")),
                             "open": [100.0] * n, "high": [100.5] * n, "low": [99.5] * n,
                             "close": [100.0] * n, "volume": [1000.0] * n}), path)


def test_dry_run_refuses_a_day_order_pre_market_unless_outside_rth(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.chdir(tmp_path)
    write_pre_market_bars(tmp_path / "bars.parquet")
    order = "order: {symbol: SPY, side: BUY, qty: 10, limit: 99.90, tag: pre-1%s}\n"
    head = "version: 1\nkind: one-shot\nttl_sec: 2\nbars_path: bars.parquet\nout_dir: out\n"
    write(tmp_path / "day.yaml", head + order % "")
    at = ["--dry-run", "--at", "2026-01-05T09:00:00-05:00"]
    assert main(["run", "day.yaml", *at]) == 2
    assert capsys.readouterr().err == (
        "runner: day.yaml: refused by the built-in policy; nothing was sent:\n"
        "  - the market is closed at 2026-01-05T14:00:00Z (outside regular trading hours); "
        "set order.outside_rth: true to send the order anyway\n")
    assert not (tmp_path / "out").exists()
    write(tmp_path / "rth.yaml", head + order % ", outside_rth: true")
    assert main(["run", "rth.yaml", *at]) == 0
    # pre-market bars trade for it: 10% of 1,000 a bar, 10 fill on the 09:00:00 bar
    rows = read_ledger(tmp_path / "out").to_pylist()
    assert [(r["event"], r["fill_qty"]) for r in rows][:3] == [
        ("INTENT", 0.0), ("ACK", 0.0), ("FILL", 10.0)]


def test_dry_run_sanity_cancel_too_close_to_the_market(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # the first bar closes at 472.92; 460.00 is 273.4 bps below it, inside the 5% rule
    write(tmp_path / "s.yaml", f"version: 1\nkind: sanity-cancel\nbars_path: {SAMPLE}\n"
                               "order: {symbol: SPY, side: BUY, qty: 1, limit: 460.00}\n")
    assert main(["run", "s.yaml", "--dry-run", "--allow-outside"]) == 2
    through = (472.92 - 460.00) / 472.92 * 1e4
    assert capsys.readouterr().err.endswith(
        f"  - sanity-cancel BUY limit 460.00 is {through:.1f} bps below the reference 472.92 "
        "(from the bars); "
        "it must be at least 500 bps below so it cannot fill (min_sanity_distance_bps)\n")
    assert not (tmp_path / "data").exists()


# --- reference prices end to end: no bars, no broker quote ------------------------------
# (classic commands: the reasons name their flags, --bars_path and --side)

SELL_NO_REFERENCE = ("  - sanity-cancel SELL limit 0.01 cannot be shown to be above the market: "
                     "there is no reference price, and a SELL below the market fills; add "
                     "--bars_path with bars that cover the order, or use --side BUY (a BUY far "
                     "below the market cannot fill)\n")
COLLAR_NO_REFERENCE = ("  - BUY limit 99,999.00 cannot be checked against the policy's price "
                       "collar (max_slippage_bps 50): there is no reference price; add "
                       "--bars_path with bars that cover the order\n")


def test_dry_run_sell_sanity_cancel_at_a_cent_without_reference_is_refused(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["sanity-cancel", "--side", "SELL", "--limit", "0.01", "--dry-run"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == ("runner: <command line>: refused by the built-in policy; nothing was "
                   "sent:\n" + SELL_NO_REFERENCE)
    assert not (tmp_path / "data").exists()  # no INTENT: nothing reached the simulator
    code = main(["sanity-cancel", "--side", "SELL", "--limit", "0.01", "--dry-run", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 2 and (result["results"][0]["state"], result["error"]["exit_code"]) == (
        "REFUSED", 2)
    assert result["reasons"] == [SELL_NO_REFERENCE[4:-1]]
    # a BUY sanity-cancel without a reference goes as before: 0.01 is below any market
    assert main(["sanity-cancel", "--dry-run", "--tag", "b-1"]) == 0
    assert "ACK+Cancel recorded" in capsys.readouterr().out


def test_sell_sanity_cancel_without_reference_never_reaches_the_gateway(gateway, cli,
                                                                        tmp_path):
    code, out, err = cli(gateway.port, "sanity-cancel", "--side", "SELL", "--tag", "s-1")
    assert (code, out) == (2, "")
    assert err.endswith(SELL_NO_REFERENCE)
    # it connected to ask the broker for a price (the fake has none): no order, no row
    assert placed(gateway) == [] and not (tmp_path / "data").exists()


def test_collar_without_bars_refuses_a_buy_at_99999(gateway, cli, tmp_path):
    write(tmp_path / "runner-policy.yaml", "version: 1\nmax_slippage_bps: 50\n")
    args = ("one-shot", "--limit", "99999", "--ttl_sec", "0.2", "--tag", "c-1")
    for flags in (("--dry-run",), ()):
        code, out, err = cli(gateway.port, *args, *flags)
        assert (code, out) == (2, ""), err
        assert err == ("runner: <command line>: refused by runner-policy.yaml; nothing was "
                       "sent:\n" + COLLAR_NO_REFERENCE[:-1] + " (from runner-policy.yaml:2:19)\n")
    assert placed(gateway) == [] and not (tmp_path / "data").exists()


def test_collar_and_sanity_side_judged_on_the_bars(tmp_path, monkeypatch, capsys):
    """At 09:30:01 the first bar (09:30:00) has ended: the reference is its close, 472.92."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "runner-policy.yaml", "version: 1\nmax_slippage_bps: 50\n")
    at = ["--dry-run", "--allow-outside", "--at", str(T0 // NS + 1)]

    def spec(name: str, kind: str, side: str, limit: str) -> str:
        ttl = "ttl_sec: 1\n" if kind == "one-shot" else ""
        write(tmp_path / name, f"version: 1\nkind: {kind}\nbars_path: {SAMPLE}\n{ttl}"
                               f"order: {{symbol: SPY, side: {side}, qty: 1, limit: {limit}, "
                               f"tag: {name[:-5]}}}\n")
        return name

    assert main(["run", spec("hi.yaml", "one-shot", "BUY", "99999"), *at]) == 2
    through = (99_999 - 472.92) / 472.92 * 1e4  # 2,104,501.4 bps
    assert capsys.readouterr().err.endswith(
        f"  - BUY limit 99,999.00 is {through:,.1f} bps above the reference 472.92 "
        "(from the bars); the policy "
        "allows 50 bps (max_slippage_bps) (from runner-policy.yaml:2:19)\n")
    assert main(["run", spec("ok.yaml", "one-shot", "BUY", "473.00"), *at]) == 0  # 1.7 bps
    capsys.readouterr()
    assert main(["run", spec("cent.yaml", "sanity-cancel", "SELL", "0.01"), *at]) == 2
    through = (472.92 - 0.01) / 472.92 * 1e4  # 9,999.8 bps below: a SELL there fills
    assert capsys.readouterr().err.endswith(
        f"  - sanity-cancel SELL limit 0.01 is {through:,.1f} bps below the reference 472.92 "
        "(from the bars), "
        "on the side that fills; it must be at least 500 bps above so it cannot fill "
        "(min_sanity_distance_bps) (from runner-policy.yaml, by default)\n")
    assert main(["run", spec("near.yaml", "sanity-cancel", "SELL", "480.00"), *at]) == 2
    assert "SELL limit 480.00 is 149.7 bps above the reference 472.92 (from the bars); " \
        "it must be at least " \
           "500 bps above" in capsys.readouterr().err  # (480 - 472.92) / 472.92 x 1e4
    assert main(["run", spec("far.yaml", "sanity-cancel", "SELL", "500.00"), *at]) == 0
    assert "ACK+Cancel recorded" in capsys.readouterr().out  # 572.6 bps above
    rows = read_ledger(tmp_path / "data" / "exec", ["event", "tag"]).to_pylist()
    tags = {r["tag"] for r in rows if r["event"] == "INTENT"}
    assert tags == {"ok", "far"}  # the refused ones never got an INTENT
