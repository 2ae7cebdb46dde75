"""The simulator's rules for IB's other order types and tifs (runner.simrules), each on
bars written out below with the expected fills worked out by hand in the comments."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runner.bars import BAR_NS, Bars
from runner.broker import BrokerEvent, OrderRequest
from runner.cli import main
from runner.errors import UsageError
from runner.ledger import read_ledger
from runner.sim import SimBroker, SimConfig
from runner.simrules import problem, refuse_unsimulable

S = BAR_NS
T0 = 1_767_623_400 * S  # 2026-01-05T14:30:00Z, 09:30 New York: the open
END = T0 + 86_400 * S

# Six 1 s bars from T0. With participation 10% the caps are 100, 50, 200, 30, 500, 99.
#             bar0    bar1    bar2    bar3    bar4    bar5
OPEN = [100.00, 100.02, 100.20, 100.25, 100.05, 99.60]
HIGH = [100.04, 100.10, 100.30, 100.28, 100.06, 99.70]
LOW = [99.98, 100.01, 100.15, 100.00, 99.50, 99.40]
CLOSE = [100.02, 100.08, 100.25, 100.05, 99.60, 99.65]
VOLUME = [1000, 500, 2000, 300, 5000, 990]
BARS = Bars(ts=[T0 + i * S for i in range(6)], open=OPEN, high=HIGH, low=LOW, close=CLOSE,
            volume=VOLUME)


def order(order_type: str, side: str = "BUY", qty: float = 100, tif: str = "DAY",
          **fields: Any) -> OrderRequest:
    return OrderRequest(tag="t1", symbol="SPY", sec_type="STK", exchange="SMART",
                        currency="USD", side=side, qty=qty, order_type=order_type,
                        limit=fields.pop("limit", None), tif=tif, **fields)


def fills(req: OrderRequest, bars: Bars = BARS, start_ns: int = T0) -> list[tuple[Any, ...]]:
    """(event, seconds after the start, last_qty, last_px, message) of every event after
    the ACK."""
    sim = SimBroker(bars, SimConfig(), start_ns)

    async def go() -> list[BrokerEvent]:
        await sim.place(req)
        out = []
        while (e := await sim.next_event(END)) is not None:
            out.append(e)
        return out

    events = asyncio.run(go())
    assert events[0].kind.value == "ACK"
    return [(e.kind.value, (e.ts_ns - start_ns) / S, e.last_qty, e.last_px, e.message)
            for e in events[1:]]


# --- STP, STP LMT ------------------------------------------------------------------


def test_a_buy_stop_triggers_on_the_bar_that_reaches_it_at_the_stop_then_at_the_opens():
    # stop 100.10: bar0's high 100.04 is below; bar1's high 100.10 reaches it (a touch
    # triggers: IB triggers on a trade at the stop). bar1 opened at 100.02, below the
    # stop: 50 (its cap) at the stop 100.10. Then a market order: bar2's open 100.20.
    assert fills(order("STP", stop=100.10)) == [
        ("PARTIAL", 2, 50, 100.10, ""), ("FILL", 3, 50, 100.20, "")]


def test_a_buy_stop_gapped_through_fills_at_the_open():
    # stop 100.15: bars 0, 1 stay below (highs 100.04, 100.10); bar2 opens at 100.20,
    # above the stop: the gapped open, not the stop.
    assert fills(order("STP", qty=10, stop=100.15)) == [("FILL", 3, 10, 100.20, "")]


def test_a_sell_stop_triggers_on_a_low_at_or_below_it():
    # stop 99.90: the first low at or below it is bar4's 99.50; bar4 opened at 100.05,
    # above: 500 (its cap) at 99.90; the last 50 at bar5's open 99.60.
    assert fills(order("STP", side="SELL", qty=550, stop=99.90)) == [
        ("PARTIAL", 5, 500, 99.90, ""), ("FILL", 6, 50, 99.60, "")]


def test_a_stop_limit_fills_at_the_trigger_then_as_a_limit():
    # stop 100.10, limit 100.15. Triggers on bar1 at 100.10, strictly below the limit:
    # 50 at 100.10. bar2: opens 100.20 (not below the limit), low 100.15 only touches
    # it: nothing. bar3: opens 100.25, low 100.00 crosses: 30 (its cap) at the limit.
    # bar4 opens at 100.05, below the limit (marketable): the last 20 at the open.
    assert fills(order("STP LMT", stop=100.10, limit=100.15)) == [
        ("PARTIAL", 2, 50, 100.10, ""), ("PARTIAL", 4, 30, 100.15, ""),
        ("FILL", 5, 20, 100.05, "")]


def test_a_stop_limit_gapped_beyond_its_limit_waits_for_the_limit():
    # stop 100.15, limit 100.18: triggers on bar2, which opened at 100.20, beyond the
    # limit: nothing there. bar3's low 100.00 crosses 100.18: 10 at the limit.
    assert fills(order("STP LMT", qty=10, stop=100.15, limit=100.18)) == [
        ("FILL", 4, 10, 100.18, "")]


# --- TRAIL, TRAIL LIMIT -------------------------------------------------------------


def test_a_sell_trailing_stop_follows_the_highs():
    # trail 0.10 below the highest of the earlier highs and the bar's own open:
    # bar0 100.00 - 0.10 = 99.90 (low 99.98: no); bar1 max(100.02, 100.04) -> 99.94
    # (low 100.01: no); bar2 max(100.20, 100.10) -> 100.10 (low 100.15: no); bar3
    # max(100.25, 100.30) -> 100.20, low 100.00 reaches it; bar3 opened at 100.25,
    # above the stop: 30 (its cap) at 100.20.
    assert fills(order("TRAIL", side="SELL", qty=30, trail_amount=0.10)) == [
        ("FILL", 4, 30, 100.20, "")]


def test_a_buy_trailing_stop_in_percent():
    # 0.1% above the lowest price: bar0 100.00 x 1.001 = 100.10 (high 100.04: no);
    # bar1 min(100.02, bar0's low 99.98) = 99.98 x 1.001 = 100.07998, high 100.10
    # reaches it: 10 at 100.07998.
    assert fills(order("TRAIL", qty=10, trail_percent=0.1)) == [
        ("FILL", 2, 10, 100.07998, "")]


def test_a_first_stop_holds_until_the_trail_beats_it():
    # first stop 100.05; the trail (0.50 above 100.00, then 99.98) gives 100.50, 100.48:
    # worse, so 100.05 holds. bar0's high 100.04 does not reach it; bar1's 100.10 does.
    assert fills(order("TRAIL", qty=10, trail_amount=0.50, stop=100.05)) == [
        ("FILL", 2, 10, 100.05, "")]


def test_a_trailing_limit_becomes_a_limit_offset_from_its_stop():
    # SELL, trail 0.10: triggers on bar3 at 100.20 (as above); its limit is 100.20 - 0.05
    # = 100.15. The trigger price 100.20 is better than that: 30 at 100.20. Then bar4
    # (open 100.05, high 100.06) and bar5 never reach 100.15: 20 left, cancelled at the
    # TTL by the engine (here: never).
    assert fills(order("TRAIL LIMIT", side="SELL", qty=50, trail_amount=0.10, offset=0.05)) == [
        ("PARTIAL", 4, 30, 100.20, "")]


# --- MOC, LOC, OPG (US stock sessions) ---------------------------------------------

CLOSE_NS = 1_767_646_800 * S  # 2026-01-05T21:00:00Z, 16:00 New York: the close
#                  15:59:58  15:59:59 (the last regular bar)  16:00:00 (after hours)
AT_CLOSE = Bars(ts=[CLOSE_NS - 2 * S, CLOSE_NS - S, CLOSE_NS], open=[100.30, 100.35, 100.50],
                high=[100.40, 100.45, 100.60], low=[100.25, 100.30, 100.45],
                close=[100.35, 100.40, 100.55], volume=[800, 1000, 700])


def test_moc_fills_at_the_last_regular_bars_close_and_cancels_the_rest():
    # placed 15:59:57; the last bar that starts inside the session is 15:59:59, close
    # 100.40, cap 100 (10% of 1000): 100 of 150, reported at its end 16:00:00, the rest
    # cancelled then.
    assert fills(order("MOC", qty=150), AT_CLOSE, CLOSE_NS - 3 * S) == [
        ("PARTIAL", 3, 100, 100.40, ""),
        ("CANCEL", 3, None, None, "MOC: rest cancelled at the close")]


@pytest.mark.parametrize("limit, got", [
    (100.45, [("FILL", 3, 50, 100.40, "")]),  # the close 100.40 is below 100.45
    (100.40, [("CANCEL", 3, None, None, "LOC: rest cancelled at the close")]),  # a touch
])
def test_loc_fills_only_when_the_close_is_strictly_better(limit, got):
    assert fills(order("LOC", qty=50, limit=limit), AT_CLOSE, CLOSE_NS - 3 * S) == got


def test_moc_on_bars_that_stop_before_the_close_never_fills():
    early = Bars(ts=[CLOSE_NS - 10 * S], open=[100.0], high=[100.0], low=[100.0],
                 close=[100.0], volume=[1000])
    assert fills(order("MOC", qty=10), early, CLOSE_NS - 20 * S) == []


#                     09:29:58  09:29:59  09:30:00 (the open)  09:30:01
AT_OPEN = Bars(ts=[T0 - 2 * S, T0 - S, T0, T0 + S], open=[99.90, 99.95, 100.10, 100.00],
               high=[99.95, 100.00, 100.20, 100.05], low=[99.85, 99.90, 100.00, 99.90],
               close=[99.95, 99.98, 100.05, 100.02], volume=[300, 400, 3000, 900])


def test_opg_fills_at_the_first_regular_bars_open_and_cancels_the_rest():
    # placed 09:29:57: pre-market bars do not count; 09:30:00 opens at 100.10, cap 300:
    # 300 of 400 at its end, the rest cancelled then.
    assert fills(order("MKT", qty=400, tif="OPG"), AT_OPEN, T0 - 3 * S) == [
        ("PARTIAL", 4, 300, 100.10, ""),
        ("CANCEL", 4, None, None, "OPG: rest cancelled after the open")]


def test_a_limit_on_open_above_the_open_fills_at_it_one_below_does_not():
    assert fills(order("LMT", qty=5, tif="OPG", limit=100.15), AT_OPEN, T0 - 3 * S) == [
        ("FILL", 4, 5, 100.10, "")]
    assert fills(order("LMT", qty=5, tif="OPG", limit=100.05), AT_OPEN, T0 - 3 * S) == [
        ("CANCEL", 4, None, None, "OPG: rest cancelled after the open")]


def test_auctions_of_an_instrument_without_known_sessions_are_refused():
    fx = OrderRequest(tag="t1", symbol="EUR", sec_type="CASH", exchange="IDEALPRO",
                      currency="USD", side="BUY", qty=1000, order_type="MOC", limit=None,
                      tif="DAY")
    assert problem(fx) == ("the simulator cannot run type MOC: it finds the closing auction "
                           "from the exchange's sessions, and knows those of US stocks only, "
                           "not of CASH EUR on IDEALPRO")
    with pytest.raises(UsageError, match=r"^x\.yaml: the simulator cannot run type MOC"):
        refuse_unsimulable(fx, "x.yaml")
    assert problem(order("MOC")) == "" and problem(order("STP", stop=1.0)) == ""


# --- FOK ------------------------------------------------------------------------------


def test_fok_fills_in_full_on_the_first_bar_or_not_at_all():
    # bar0: a BUY 100.05 is marketable (open 100.00), cap 100: 100 fill at once...
    assert fills(order("LMT", qty=100, tif="FOK", limit=100.05)) == [("FILL", 1, 100, 100.00, "")]
    # ...101 do not: nothing, cancelled at bar0's end (bar1 would have given more).
    assert fills(order("LMT", qty=101, tif="FOK", limit=100.05)) == [
        ("CANCEL", 1, None, None, "FOK: not filled in full at once")]


# --- MIDPRICE, REL, PEG MID ---------------------------------------------------------


def test_midprice_pegs_at_each_open_and_fills_when_the_bar_trades_below():
    # p = the open: bar0 low 99.98 < 100.00: 100 (cap) at 100.00; bar1 low 100.01 <
    # 100.02: the last 20 at 100.02.
    assert fills(order("MIDPRICE", qty=120)) == [
        ("PARTIAL", 1, 100, 100.00, ""), ("FILL", 2, 20, 100.02, "")]


def test_a_peg_never_goes_beyond_its_cap():
    # cap 100.01: bar0 p 100.00 (100 filled); bar1 p min(100.02, 100.01) = 100.01, low
    # 100.01 only touches; bar2 low 100.15 is above; bar3 low 100.00 < 100.01: 20 at 100.01.
    assert fills(order("MIDPRICE", qty=120, limit=100.01)) == [
        ("PARTIAL", 1, 100, 100.00, ""), ("FILL", 4, 20, 100.01, "")]


def test_peg_mid_sells_an_offset_above_the_open():
    # SELL p = open + 0.01 = 100.01; bar0's high 100.04 is above: 100 at 100.01.
    assert fills(order("PEG MID", side="SELL", offset=0.01)) == [("FILL", 1, 100, 100.01, "")]


def test_rel_buys_an_offset_above_the_open_so_at_the_open_within_its_cap():
    # BUY p = open + 0.02, capped at 100.21: above each open, so marketable at the open:
    # bar0 100 at 100.00, bar1 50 at 100.02, bar2 (p = min(100.22, 100.21), still above
    # its open 100.20) the last 150 at 100.20.
    assert fills(order("REL", qty=300, offset=0.02, limit=100.21)) == [
        ("PARTIAL", 1, 100, 100.00, ""), ("PARTIAL", 2, 50, 100.02, ""),
        ("FILL", 3, 150, 100.20, "")]


# --- algos ------------------------------------------------------------------------------


def test_an_algo_order_runs_as_its_parent_limit():
    plain = fills(order("LMT", limit=100.05))
    algo = fills(order("LMT", limit=100.05, algo="Adaptive",
                       algo_params=(("adaptivePriority", "Urgent"),)))
    # bar0 marketable (open 100.00 < 100.05): 100 at the open, as a plain LMT does
    assert algo == plain == [("FILL", 1, 100, 100.00, "")]


# --- through `runner run --dry-run`: spec -> plan -> engine -> simulator -> ledger -----


def write_bars(path: Path, bars: Bars) -> None:
    pq.write_table(pa.table({
        "ts": pa.array(bars.ts, pa.timestamp("ns", tz="UTC")), "open": bars.open,
        "high": bars.high, "low": bars.low, "close": bars.close, "volume": bars.volume}), path)


def dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bars: Bars, order: str,
            at_ns: int, top: str = "") -> tuple[int, list[dict[str, Any]]]:
    monkeypatch.chdir(tmp_path)
    write_bars(tmp_path / "bars.parquet", bars)
    (tmp_path / "s.yaml").write_text(
        "version: 1\nkind: one-shot\n"
        f"order: {{symbol: SPY, side: BUY, tag: d1, {order}}}\n"
        f"ttl_sec: 10\nbars_path: bars.parquet\nout_dir: out\nat: {at_ns // S}\n{top}")
    code = main(["run", "s.yaml", "--dry-run"])
    table = read_ledger(tmp_path / "out").to_pylist() if (tmp_path / "out").exists() else []
    return code, table


def test_a_dry_run_stop_fills_by_the_rule(tmp_path, monkeypatch, capsys) -> None:
    code, r = dry_run(tmp_path, monkeypatch, BARS,
                         "qty: 100, type: STP, stop: 100.10, allow_market: true", T0)
    assert code == 0, capsys.readouterr()
    # as in the rule's test above: 50 at the stop on bar1, 50 at bar2's open
    assert [(x["event"], x["last_qty"], x["last_px"]) for x in r] == [
        ("INTENT", None, None), ("ACK", None, None), ("PARTIAL", 50, 100.10),
        ("FILL", 50, 100.20)]  # no PNL_SNAPSHOT: no bar ended before the INTENT (no arrival)
    assert r[0]["order_type"] == "STP" and r[3]["avg_px"] == pytest.approx(100.15, abs=1e-9)
    # the backstop from the INTENT: 14:30:00 + 10 s + 10 s
    assert r[0]["good_till"].value == T0 + 20 * S


def test_a_dry_run_moc_fills_at_the_close_and_cancels_the_rest(tmp_path, monkeypatch,
                                                                capsys) -> None:
    code, r = dry_run(tmp_path, monkeypatch, AT_CLOSE, "qty: 150, type: MOC, "
                         "allow_market: true", CLOSE_NS - 2 * S, "ttl_backstop: false\n")
    assert code == 0, capsys.readouterr()
    assert [(x["event"], x["last_qty"], x["last_px"], x["message"]) for x in r[:4]] == [
        ("INTENT", None, None, None), ("ACK", None, None, None),
        ("PARTIAL", 100, 100.40, None), ("CANCEL", None, None, "MOC: rest cancelled at the close")]
    assert (r[0]["tif"], r[0]["good_till"]) == ("DAY", None)


def test_a_dry_run_of_what_bars_cannot_simulate_is_refused(tmp_path, monkeypatch,
                                                           capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fx.yaml").write_text(
        "version: 1\nkind: one-shot\norder: {symbol: EUR, sec_type: CASH, exchange: IDEALPRO, "
        "side: BUY, qty: 1000, type: MOC, allow_market: true}\nttl_backstop: false\n"
        "out_dir: out\n")
    assert main(["run", "fx.yaml", "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and not (tmp_path / "out").exists()
    assert err == ("runner: fx.yaml: the simulator cannot run type MOC: it finds the closing "
                   "auction from the exchange's sessions, and knows those of US stocks only, "
                   "not of CASH EUR on IDEALPRO; nothing was run (rehearse it against the fake "
                   "gateway, or use another order type)\n")
