"""IB's other order types and tifs in a spec: what `validate` refuses (exact text, at the
key's line), what the plan shows and sends field by field, the classic flags, the gates'
price, and the GTD rules (the TTL backstop never weakened by a good_till)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from runner.cli import main
from runner.errors import SpecError, UsageError
from runner.gates import Context, check
from runner.plan import compile_plan
from runner.policy import Policy
from runner.spec import from_mapping, load_text

NS = 1_000_000_000
T0 = 1_767_623_400 * NS  # 2026-01-05T14:30:00Z, 09:30 New York
REPO = Path(__file__).resolve().parent.parent
HEAD = "version: 1\nkind: one-shot\norder:\n  symbol: SPY\n  side: BUY\n  qty: 10\n"


def problems(body: str, head: str = HEAD) -> list[str]:
    """The lines `validate` prints for a spec whose order continues with `body`."""
    with pytest.raises(SpecError) as e:
        load_text(head + body, "x.yaml")
    return e.value.lines


def plan_of(order: dict[str, Any], kind: str = "one-shot", **top: Any) -> Any:
    data = {"version": 1, "kind": kind, "order": {"symbol": "SPY", "side": "BUY", "qty": 10,
                                                  **order}, **top}
    return compile_plan(from_mapping(data), {}, T0)


def place_step(plan: Any) -> str:
    [step] = [s.detail for s in plan.steps if s.op == "place"]
    return str(step)


# --- validate: each wrong combination, at its line, with the fix ----------------------

@pytest.mark.parametrize("body, lines", [
    ("  type: STP\n  allow_market: true\n",
     ["x.yaml:4:3: order: type STP needs order.stop (the trigger price)"]),
    ("  type: TRAIL\n  trail_amount: 0.5\n  trail_percent: 1\n  allow_market: true\n",
     ["x.yaml:9:18: order.trail_percent: give order.trail_amount or order.trail_percent, "
      "not both"]),
    ("  type: TRAIL LIMIT\n  offset: 0.1\n",
     ["x.yaml:4:3: order: type TRAIL LIMIT needs order.trail_amount or order.trail_percent"]),
    ("  type: MKT\n  limit: 10\n  allow_market: true\n",
     ["x.yaml:8:3: order.limit: not used by type MKT; remove it"]),
    ("  type: STP\n  stop: 99.5\n",
     ["x.yaml:7:9: order.type: type STP is a stop that becomes a market order when "
      "triggered: it needs `allow_market: true`"]),
    ("  type: REL\n  offset: 0.01\n",
     ["x.yaml:7:9: order.type: type REL without a cap has no price bound: add order.cap, or "
      "`allow_market: true`"]),
    ("  stop: 99.5\n",
     ["x.yaml:7:9: order.stop: needs order.type: STP, STP LMT, TRAIL or TRAIL LIMIT "
      "(e.g. type: STP)"]),
    ("  type: STP LMT\n  stop: 99.505\n  limit: 99.6\n",
     ["x.yaml:8:9: order.stop: 99.505 is not on the tick grid (0.01); use 99.51"]),
    ("  limit: 10\n  tif: GTD\n",
     ["x.yaml:8:8: order.tif: tif GTD needs order.good_till (when it expires: ISO 8601 with "
      "an offset, e.g. 2026-01-05T16:00:00-05:00)"]),
    ("  limit: 10\n  good_till: 2026-01-05T16:00:00-05:00\n",
     ["x.yaml:8:3: order.good_till: only tif GTD uses good_till; set tif: GTD, or remove it"]),
    ("  limit: 10\n  tif: GTD\n  good_till: 2026-01-05T16:00:00.5-05:00\n",
     ["x.yaml:9:14: order.good_till: IB's goodTillDate is in whole seconds; drop the "
      "fraction"]),
    ("  limit: 10\n  tif: GTD\n  good_till: tomorrow\n",
     ["x.yaml:9:14: order.good_till 'tomorrow': not a time (use ISO 8601 with an offset, "
      "e.g. 2026-01-05T09:30:00-05:00, or epoch seconds)"]),
    ("  type: STP\n  stop: 99.5\n  allow_market: true\n  tif: OPG\n",
     ["x.yaml:10:8: order.tif: tif OPG is for LMT and MKT orders, not type STP",
      "x.yaml:10:8: order.tif: tif OPG cannot carry the TTL backstop (IB takes an opening "
      "order only as OPG): the order works at IB until the open even if runner stops; set "
      "ttl_backstop: false to accept that"]),
    ("  type: LOC\n  limit: 10\n  tif: IOC\nttl_backstop: false\n",
     ["x.yaml:9:8: order.tif: type LOC works until the close: tif must be DAY"]),
    ("  type: MOC\n  allow_market: true\n",
     ["x.yaml:7:9: order.type: type MOC goes to IB as a DAY order (IB takes no GTD for it), "
      "so the TTL backstop cannot be sent: the order works at IB until the close even if "
      "runner stops; set ttl_backstop: false to accept that"]),
    ("  type: STP\n  stop: 99.5\n  allow_market: true\n  algo: {adaptive: {priority: Urgent}}\n",
     ["x.yaml:10:9: order.algo: an algo rides on an LMT or MKT order, not type STP"]),
    ("  limit: 10\n  tif: GTC\n  algo: {adaptive: {priority: Normal}}\n",
     ["x.yaml:8:8: order.tif: an algo order works within the day: tif must be DAY"]),
    ("  limit: 10\n  algo: {twap: {start: \"10:00\", end: 15:30}}\n",
     ["x.yaml:8:38: order.algo.twap.end: YAML 1.1 reads an unquoted time such as 15:30 as a "
      "number (got 930); quote it, e.g. \"15:30\""]),
    ("  limit: 10\n  algo: {vwap: {max_pct_vol: 0.1, start: \"15:00\", end: \"10:00\"}}\n",
     ["x.yaml:8:56: order.algo.vwap.end: 10:00 is not after start 15:00"]),
    ("  limit: 10\n  algo: {adaptive: {priority: Urgent}, twap: {}}\n",
     ["x.yaml:8:9: order.algo: give exactly one of adaptive, twap or vwap"]),
])
def test_a_wrong_combination_is_one_line_at_its_key(body: str, lines: list[str]) -> None:
    assert problems(body) == lines


def test_sanity_cancel_is_a_limit_order():
    head = "version: 1\nkind: sanity-cancel\norder:\n  symbol: SPY\n  side: BUY\n  qty: 1\n"
    assert problems("  type: STP LMT\n  stop: 0.02\n  limit: 0.01\n", head) == [
        "x.yaml:7:9: order.type: sanity-cancel places a limit order far from the market: use "
        "type LMT (or leave type out)"]
    assert problems("  limit: 0.01\n  tif: FOK\n", head) == [
        "x.yaml:8:8: order.tif: sanity-cancel needs a resting order: use DAY or GTC"]


def test_the_spec_limits_judge_a_stop_at_its_stop():
    assert problems("  type: STP\n  stop: 120\n  allow_market: true\nlimits: {max_notional: 1000}\n"
                    ) == ["x.yaml:4:3: order: notional 1,200 (qty x stop) exceeds "
                          "limits.max_notional 1,000"]


def test_every_shipped_spec_still_validates(capsys) -> None:
    assert main(["validate", str(REPO / "specs")]) == 0
    assert capsys.readouterr().out == "13 specs valid\n"


# --- the plan: what is sent, field by field -------------------------------------------

@pytest.mark.parametrize("order, text, sent", [
    ({"type": "STP", "stop": 99.5, "allow_market": True},
     "BUY 10 SPY STP auxPrice=99.50", {"auxPrice": 99.5}),
    ({"type": "STP LMT", "stop": 100.1, "limit": 100.15},
     "BUY 10 SPY STP LMT lmtPrice=100.15 auxPrice=100.10", {"lmtPrice": 100.15, "auxPrice": 100.1}),
    ({"type": "TRAIL", "trail_percent": 1.5, "stop": 101, "allow_market": True},
     "BUY 10 SPY TRAIL trailingPercent=1.5 trailStopPrice=101.00",
     {"trailingPercent": 1.5, "trailStopPrice": 101}),
    ({"type": "TRAIL LIMIT", "trail_amount": 0.5, "offset": 0.1},
     "BUY 10 SPY TRAIL LIMIT auxPrice=0.50 lmtPriceOffset=0.10",
     {"auxPrice": 0.5, "lmtPriceOffset": 0.1}),
    ({"type": "MIDPRICE", "cap": 100.25}, "BUY 10 SPY MIDPRICE lmtPrice=100.25",
     {"lmtPrice": 100.25}),
    ({"type": "REL", "offset": 0.01, "cap": 100.25},
     "BUY 10 SPY REL lmtPrice=100.25 auxPrice=0.01", {"lmtPrice": 100.25, "auxPrice": 0.01}),
    ({"type": "PEG MID", "cap": 100.25}, "BUY 10 SPY PEG MID lmtPrice=100.25 auxPrice=0.00",
     {"lmtPrice": 100.25, "auxPrice": 0.0}),
])
def test_the_place_step_and_sent_show_each_types_ib_fields(order, text, sent) -> None:
    plan = plan_of(order)
    assert place_step(plan) == (f"{text} GTD INTENT + 13 s (TTL backstop) "
                                f"orderRef=oneshot_SPY_1767623400000")
    got = plan.to_dict()["order"]["sent"]
    assert {k: got[k] for k in sent} == sent
    assert got["orderType"] == order["type"] and got["goodTillDate"] == "INTENT + 13 s"
    unset = {"lmtPrice", "auxPrice", "trailingPercent", "trailStopPrice", "lmtPriceOffset"}
    assert not (unset - set(sent)) & set(got)  # nothing else priced: ib_async's unset


def test_moc_and_loc_are_sent_as_day_without_a_backstop_when_the_spec_says_so() -> None:
    plan = plan_of({"type": "MOC", "allow_market": True}, ttl_backstop=False, ttl_sec=60)
    assert place_step(plan) == "BUY 10 SPY MOC DAY orderRef=oneshot_SPY_1767623400000"
    assert plan.order.tif == "DAY" and plan.order.backstop_sec is None
    loc = plan_of({"type": "LOC", "limit": 100.2}, ttl_backstop=False)
    assert place_step(loc) == ("BUY 10 SPY LOC lmtPrice=100.20 DAY "
                               "orderRef=oneshot_SPY_1767623400000")
    assert loc.to_dict()["order"]["sent"]["lmtPrice"] == 100.2


def test_an_algo_is_sent_with_its_params_and_the_plan_says_how_it_is_simulated() -> None:
    plan = plan_of({"limit": 100, "algo": {"twap": {"start": "10:00", "end": "15:30:30"}}})
    assert place_step(plan) == (
        "BUY 10 SPY LMT 100.00 algoStrategy=Twap strategyType=Marketable "
        "startTime='10:00:00 US/Eastern' endTime='15:30:30 US/Eastern' allowPastEndTime=0 "
        "GTD INTENT + 13 s (TTL backstop) orderRef=oneshot_SPY_1767623400000 (a dry run "
        "simulates it as a plain LMT: bars cannot run IB's Twap)")
    d = plan.to_dict()["order"]
    assert d["sent"]["algoStrategy"] == d["algo"] == "Twap" and d["simulated_as"] == "LMT"
    assert d["sent"]["algoParams"] == d["algo_params"] == [
        ["strategyType", "Marketable"], ["startTime", "10:00:00 US/Eastern"],
        ["endTime", "15:30:30 US/Eastern"], ["allowPastEndTime", "0"]]
    vwap = plan_of({"allow_market": True, "algo": {"vwap": {"max_pct_vol": 0.25,
                                                             "no_take_liq": True}}})
    assert vwap.order.algo_params == (("maxPctVol", "0.25"), ("allowPastEndTime", "0"),
                                      ("noTakeLiq", "1"), ("speedUp", "0"))
    adaptive = plan_of({"limit": 100, "algo": {"adaptive": {"priority": "Patient"}}})
    assert adaptive.order.algo_params == (("adaptivePriority", "Patient"),)


def test_a_good_till_is_sent_as_is_without_a_backstop_and_as_the_earlier_with_one() -> None:
    gtd = {"limit": 100, "tif": "GTD", "good_till": "2026-01-05T16:00:00-05:00"}
    alone = plan_of(gtd, ttl_backstop=False)
    assert place_step(alone) == ("BUY 10 SPY LMT 100.00 GTD 2026-01-05T21:00:00Z "
                                 "orderRef=oneshot_SPY_1767623400000")
    d = alone.to_dict()["order"]
    assert d["sent"]["goodTillDate"] == "20260105-21:00:00" and d["expiry"] == \
        d["good_till"] == "2026-01-05T21:00:00Z"
    both = plan_of(gtd)
    assert "GTD 2026-01-05T21:00:00Z, or INTENT + 13 s if earlier (TTL backstop)" in \
        place_step(both)
    assert both.to_dict()["order"]["sent"]["goodTillDate"] == \
        "2026-01-05T21:00:00Z, or INTENT + 13 s if earlier"


def test_a_good_till_before_the_ttl_is_refused_at_plan_time_at_its_line() -> None:
    text = HEAD + "  limit: 10\n  tif: GTD\n  good_till: 2026-01-05T09:30:02-05:00\n"
    [spec] = load_text(text, "x.yaml")
    with pytest.raises(SpecError) as e:
        compile_plan(spec, {}, T0)
    assert str(e.value) == (
        "x.yaml:9:14: order.good_till 2026-01-05T14:30:02Z is not later than the plan's start "
        "2026-01-05T14:30:00Z + 3 s (the order would expire before runner cancels it); give "
        "a later good_till, or a shorter ttl_sec")


def test_at_the_intent_the_backstop_wins_when_earlier_and_a_late_intent_is_refused() -> None:
    order = plan_of({"limit": 100, "tif": "GTD", "good_till": "2026-01-05T09:31:00-05:00"}).order
    intent = T0 + NS // 2  # 14:30:00.5: the backstop INTENT + 13 s, up to a whole second
    assert order.at_intent(intent, 3).good_till_ns == T0 + 14 * NS
    later = T0 + 50 * NS  # 14:30:50 + 13 s is after the good_till 14:31:00: that is sent
    assert order.at_intent(later, 3).good_till_ns == T0 + 60 * NS
    with pytest.raises(UsageError) as e:
        order.at_intent(T0 + 58 * NS, 3)  # INTENT + TTL 14:31:01 is after 14:31:00
    assert str(e.value) == ("order.good_till 2026-01-05T14:31:00Z is not later than the INTENT "
                            "at 2026-01-05T14:30:58Z + 3 s; nothing was sent (give a later "
                            "good_till, or a shorter ttl_sec)")


def test_plan_json_of_every_type_matches_the_schema(tmp_path, monkeypatch, capsys) -> None:
    schemas = REPO / "schemas" / "output"
    registry = Registry().with_resources(
        (p.name, Resource.from_contents(json.loads(p.read_text()))) for p in schemas.glob("*.json"))
    validator = Draft202012Validator(json.loads((schemas / "plan.schema.json").read_text()),
                                     registry=registry)
    monkeypatch.chdir(tmp_path)
    docs = [
        "{type: STP, stop: 99.5, allow_market: true}",
        "{type: TRAIL LIMIT, trail_percent: 1, stop: 99, offset: 0.05}",
        "{type: PEG MID, offset: 0.01, cap: 100}",
        "{limit: 100, tif: GTD, good_till: 2026-01-05T16:00:00-05:00}",
        "{limit: 100, algo: {vwap: {max_pct_vol: 0.1}}}",
    ]
    Path("s.yaml").write_text("---\n".join(
        f"version: 1\nkind: one-shot\norder: {{symbol: SPY, side: BUY, qty: 1, {d[1:-1]}}}\n"
        for d in docs))
    assert main(["plan", "s.yaml", "--json", "--at", "2026-01-05T09:30:00-05:00"]) == 0
    doc = json.loads(capsys.readouterr().out)
    validator.validate(doc)
    assert [p["order"]["order_type"] for p in doc["plans"]] == [
        "STP", "TRAIL LIMIT", "PEG MID", "LMT", "LMT"]


# --- the gates: the price an order is judged by -----------------------------------------

POLICY = Policy(source="p.yaml", max_slippage_bps=50, allow_market=True)
CTX = Context(now_ns=T0, port=7497, accounts=("DU1234567",), priced=True, reference_px=100.0,
              reference_ns=T0 - NS, market_open=True)


def test_the_collar_judges_a_stop_at_its_stop_and_a_trailing_limit_at_its_first_limit():
    stop = plan_of({"type": "STP", "stop": 100.6, "allow_market": True})
    assert check(stop, POLICY, CTX) == [
        "BUY stop 100.60 is 60.0 bps above the reference 100.00; the policy allows 50 bps "
        "(max_slippage_bps)"]
    # no first stop: the reference 100.00 + the trail 0.40 + the offset 0.15 = 100.55
    trail = plan_of({"type": "TRAIL LIMIT", "trail_amount": 0.4, "offset": 0.15})
    assert check(trail, POLICY, CTX) == [
        "BUY first limit 100.55 is 55.0 bps above the reference 100.00; the policy allows 50 "
        "bps (max_slippage_bps)"]
    assert check(plan_of({"type": "STP", "stop": 100.4, "allow_market": True}), POLICY, CTX) == []


def test_orders_without_a_price_bound_are_market_orders_to_the_policy():
    no_market = dataclasses.replace(POLICY, allow_market=False)
    trail = plan_of({"type": "TRAIL", "trail_amount": 0.4, "allow_market": True})
    assert check(trail, no_market, CTX) == [
        "market orders are not allowed by the policy (allow_market: false); a TRAIL order has "
        "no price bound"]
    capped = plan_of({"type": "MIDPRICE", "cap": 100.0})
    assert check(capped, no_market, CTX) == []


def test_the_engines_intent_draft_stamps_and_refuses_by_the_same_rule() -> None:
    from runner.events import IntentDraft

    plan = plan_of({"limit": 100, "tif": "GTD", "good_till": "2026-01-05T09:31:00-05:00"})
    draft = IntentDraft(plan, "sim", "DU1234567", 7, 1, None, T0)
    order, req = draft.at(T0 + NS // 2)  # the backstop, 14:30:14, is earlier: it is sent
    assert req.good_till_ns == T0 + 14 * NS and order.req is req
    assert draft.at(T0 + 50 * NS)[1].good_till_ns == T0 + 60 * NS  # the good_till, earlier
    with pytest.raises(UsageError, match="is not later than the INTENT at "
                                         "2026-01-05T14:30:58Z"):
        draft.at(T0 + 58 * NS)
