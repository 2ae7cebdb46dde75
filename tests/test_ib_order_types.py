"""Each new order type and tif over the wire: `runner run SPEC` and `runner one-shot`
through the unmodified ib_async client to the fake gateway (127.0.0.1, a free port); the
placeOrder fields ib_async sent (named by the gateway's own table) and the ledger rows."""

from __future__ import annotations

import calendar
import time
from pathlib import Path
from typing import Any

import pytest

from runner.gateway import Ack, Fill
from runner.ledger import read_ledger

NS = 1_000_000_000
UNSET = ("lmt_price", "aux_price", "trailing_percent", "trail_stop_price", "lmt_price_offset",
         "algo_strategy")


def rows(tmp_path: Path, tag: str) -> list[dict[str, Any]]:
    return [r for r in read_ledger(tmp_path / "out").to_pylist() if r["tag"] == tag]


def run_spec(cli: Any, gateway: Any, tmp_path: Path, tag: str, order: str,
             top: str = "") -> tuple[Any, list[dict[str, Any]]]:
    """Run a one-shot of `order` (flow YAML, without braces) with a 0.3 s TTL; the one
    placeOrder the gateway got, named, and the ledger rows of the tag."""
    path = tmp_path / f"{tag}.yaml"
    path.write_text("version: 1\nkind: one-shot\n"
                    f"order: {{symbol: SPY, side: BUY, qty: 10, tag: {tag}, {order}}}\n"
                    f"ttl_sec: 0.3\nout_dir: out\n{top}")
    code, out, err = cli(gateway.port, "run", str(path))
    assert code == 0, out + err
    [placed] = [p for p in gateway.place_orders() if p.order_ref == tag]
    return placed, rows(tmp_path, tag)


def named(placed: Any, *keys: str) -> dict[str, str]:
    return {k: getattr(placed, k) for k in keys}


def gtd_ns(text: str) -> int:
    return calendar.timegm(time.strptime(text, "%Y%m%d-%H:%M:%S")) * NS


def check_backstop(placed: Any, intent: dict[str, Any]) -> None:
    """GTD = INTENT + 0.3 s TTL + 10 s margin, up to IB's whole second, in both places."""
    assert placed.tif == "GTD" and gtd_ns(placed.good_till_date) == intent["good_till"].value
    assert 0 <= gtd_ns(placed.good_till_date) - (intent["ts"].value + int(10.3 * NS)) < NS


# (tag, order, the placeOrder fields as ib_async sends them; every other price unset)
CASES = [
    ("stp", "type: STP, stop: 99.5, allow_market: true",
     {"order_type": "STP", "aux_price": "99.5"}),
    ("stp-lmt", "type: STP LMT, stop: 100.1, limit: 100.15",
     {"order_type": "STP LMT", "aux_price": "100.1", "lmt_price": "100.15"}),
    ("trail", "type: TRAIL, trail_amount: 0.5, allow_market: true",
     {"order_type": "TRAIL", "aux_price": "0.5"}),
    ("trail-pct", "type: TRAIL, trail_percent: 1.5, stop: 98, allow_market: true",
     {"order_type": "TRAIL", "trailing_percent": "1.5", "trail_stop_price": "98.0"}),
    ("trail-lmt", "type: TRAIL LIMIT, trail_amount: 0.25, offset: 0.1",
     {"order_type": "TRAIL LIMIT", "aux_price": "0.25", "lmt_price_offset": "0.1"}),
    ("midprice", "type: MIDPRICE, cap: 100.25",
     {"order_type": "MIDPRICE", "lmt_price": "100.25"}),
    ("rel", "type: REL, offset: 0.01, cap: 100.25",
     {"order_type": "REL", "aux_price": "0.01", "lmt_price": "100.25"}),
    ("peg-mid", "type: PEG MID, cap: 100.25",
     {"order_type": "PEG MID", "aux_price": "0.0", "lmt_price": "100.25"}),
    ("adaptive", "limit: 100, algo: {adaptive: {priority: Urgent}}",
     {"order_type": "LMT", "lmt_price": "100.0", "algo_strategy": "Adaptive"}),
    ("twap", "limit: 100, algo: {twap: {strategy: Matching Midpoint, end: '15:55'}}",
     {"order_type": "LMT", "lmt_price": "100.0", "algo_strategy": "Twap"}),
    ("vwap", "allow_market: true, algo: {vwap: {max_pct_vol: 0.2, speed_up: true}}",
     {"order_type": "MKT", "algo_strategy": "Vwap"}),
]
ALGO_PARAMS = {
    "adaptive": (("adaptivePriority", "Urgent"),),
    "twap": (("strategyType", "Matching Midpoint"), ("endTime", "15:55:00 US/Eastern"),
             ("allowPastEndTime", "0")),
    "vwap": (("maxPctVol", "0.2"), ("allowPastEndTime", "0"), ("noTakeLiq", "0"),
             ("speedUp", "1")),
}


@pytest.mark.parametrize("tag, order, fields", CASES, ids=[c[0] for c in CASES])
def test_each_type_reaches_the_gateway_with_its_fields_and_the_backstop(
        gateway, cli, tmp_path, tag, order, fields) -> None:
    placed, r = run_spec(cli, gateway, tmp_path, tag, order)
    assert named(placed, *fields) == fields
    assert named(placed, *(set(UNSET) - set(fields))) == {k: "" for k in set(UNSET) - set(fields)}
    assert placed.algo_params == ALGO_PARAMS.get(tag, ())
    assert (placed.action, placed.total_quantity) == ("BUY", "10.0")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "CANCEL"]  # cancelled at the TTL
    intent = r[0]
    assert (intent["order_type"], intent["tif"]) == (fields["order_type"], "GTD")
    assert intent["limit"] == (float(fields["lmt_price"]) if "lmt_price" in fields else None)
    check_backstop(placed, intent)


def test_a_stop_that_fills_is_recorded_with_its_fill(gateway, cli, tmp_path) -> None:
    gateway.script("stp-fill", [Ack(), Fill(4, 99.52, commission=1.0),
                                Fill(6, 99.55, commission=1.0)])
    placed, r = run_spec(cli, gateway, tmp_path, "stp-fill",
                         "type: STP, stop: 99.5, allow_market: true")
    assert (placed.order_type, placed.aux_price) == ("STP", "99.5")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "PARTIAL", "FILL"]
    assert [(x["last_qty"], x["last_px"]) for x in r[2:]] == [(4, 99.52), (6, 99.55)]
    assert r[3]["avg_px"] == pytest.approx((4 * 99.52 + 6 * 99.55) / 10, abs=1e-9)
    assert r[3]["order_type"] == "STP"


@pytest.mark.parametrize("tag, order", [
    ("moc", "type: MOC, allow_market: true"),
    ("loc", "type: LOC, limit: 100.2"),
    ("opg", "limit: 100.2, tif: OPG"),
])
def test_auction_orders_go_without_the_backstop_as_the_spec_says(gateway, cli, tmp_path,
                                                                  tag, order) -> None:
    placed, r = run_spec(cli, gateway, tmp_path, tag, order, "ttl_backstop: false\n")
    tif = "OPG" if tag == "opg" else "DAY"
    assert (placed.order_type, placed.tif, placed.good_till_date) == (
        "LMT" if tag == "opg" else tag.upper(), tif, "")
    assert placed.lmt_price == ("" if tag == "moc" else "100.2")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "CANCEL"]
    assert (r[0]["tif"], r[0]["good_till"]) == (tif, None)


def test_opg_with_the_backstop_is_refused_before_anything_is_sent(gateway, cli, tmp_path):
    path = tmp_path / "opg.yaml"
    path.write_text("version: 1\nkind: one-shot\norder: {symbol: SPY, side: BUY, qty: 1, "
                    "limit: 100, tif: OPG}\nout_dir: out\n")
    code, out, err = cli(gateway.port, "run", str(path))
    assert (code, out) == (2, "")
    assert "tif OPG cannot carry the TTL backstop" in err
    assert gateway.received == [] and not (tmp_path / "out").exists()


def test_fok_is_sent_as_fok(gateway, cli, tmp_path) -> None:
    placed, r = run_spec(cli, gateway, tmp_path, "fok", "limit: 100.2, tif: FOK")
    assert (placed.order_type, placed.tif, placed.good_till_date) == ("LMT", "FOK", "")
    assert r[0]["tif"] == "FOK"


def test_an_explicit_good_till_is_sent_as_is_without_the_backstop(gateway, cli, tmp_path):
    until = (time.time_ns() // NS + 3600) * NS  # an hour from now, whole seconds
    placed, r = run_spec(cli, gateway, tmp_path, "gtd", f"limit: 100, tif: GTD, good_till: "
                         f"{until // NS}", "ttl_backstop: false\n")
    assert placed.tif == "GTD" and gtd_ns(placed.good_till_date) == until
    assert r[0]["good_till"].value == until and r[0]["tif"] == "GTD"


def test_an_explicit_good_till_later_than_the_backstop_yields_to_it(gateway, cli, tmp_path):
    until = (time.time_ns() // NS + 3600) * NS
    placed, r = run_spec(cli, gateway, tmp_path, "gtd-b", f"limit: 100, tif: GTD, good_till: "
                         f"{until // NS}")
    check_backstop(placed, r[0])  # INTENT + 10.3 s, well before the hour
