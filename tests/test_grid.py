"""Instrument grids: IB's market-rule price ladders and the size rules (runner.grid), and
the check at qualification (runner.ib.grid) against the fake gateway (127.0.0.1, the
unmodified ib_async client): an off-grid price or size is refused with the nearest valid
values before the INTENT (exit 2, no placeOrder, no ledger), an on-grid one is placed,
and each market rule is asked once per run.

Every expected price is worked out by hand from the ladder the test names (the fake's
ladders are in docs/gateway-instruments.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from runner import grid
from runner.gateway import Ack, Fill, rules
from runner.grid import Band, ladder, price_problem, size_problem
from runner.ledger import read_ledger

TSE = ladder([(0, 0.1), (1000, 0.5), (3000, 1), (10000, 5)])  # a TOPIX 100 ladder's start
ES_OPT = ladder([(0, 0.05), (5, 0.25)])
ODD = ladder([(0, 0.05), (3.02, 0.1)])  # an edge that is not a multiple of 0.05


def d(x: str) -> Decimal:
    return Decimal(x)


# ----------------------------------------------------------------------------- ladders


@pytest.mark.parametrize("rule, price, below, above", [
    (TSE, "3000.5", "3000", "3001"),  # from 3000 the step is 1
    (TSE, "2501.25", "2501", "2501.5"),  # 1000 up to 3000: 0.5
    (TSE, "999.95", "999.9", "1000"),  # under the edge: 0.1; the edge itself is a price
    (TSE, "1000.3", "1000", "1000.5"),  # the edge is in the upper band (lowEdge inclusive)
    (TSE, "2999.8", "2999.5", "3000"),
    (TSE, "10002", "10000", "10005"),
    (TSE, "0.05", None, "0.1"),  # no price above 0 under it
    (ES_OPT, "4.98", "4.95", "5"),
    (ES_OPT, "5.1", "5", "5.25"),
    # 3.01 is in the 0.05 band: 3 under it; over it 3.05 is past the edge 3.02, so the
    # next band's first price, 0.1 x ceil(3.02 / 0.1) = 3.1
    (ODD, "3.01", "3", "3.1"),
    # 3.03 is in the 0.1 band: over it 3.1; under it 3.0 is below the edge, so the 0.05
    # band's last price under 3.02: 3
    (ODD, "3.03", "3", "3.1"),
])
def test_the_nearest_prices_either_side(rule: Any, price: str, below: str | None,
                                        above: str) -> None:
    p = d(price)
    assert not grid.on_grid(rule, p)
    assert grid.below(rule, p) == (None if below is None else d(below))
    assert grid.above(rule, p) == d(above)


@pytest.mark.parametrize("price", ["1000", "3000", "2501.5", "999.9", "10005", "0.1"])
def test_edges_and_band_multiples_are_on_the_grid(price: str) -> None:
    assert grid.on_grid(TSE, d(price))
    assert price_problem(TSE, float(price), "of 7203", "market rule 9005") == ""


def test_the_problem_names_the_band_and_both_neighbours() -> None:
    assert price_problem(TSE, 3000.5, "of 7203 on TSEJ", "market rule 9005") == (
        "3000.5 is not on the price grid of 7203 on TSEJ (increment 1 from 3000, market "
        "rule 9005): use 3000 or 3001")
    one_band = ladder([(0, 0.00005)])
    assert price_problem(one_band, 1.08502, "of EUR.USD", "market rule 239") == (
        "1.08502 is not on the price grid of EUR.USD (increment 0.00005, market rule 239): "
        "use 1.085 or 1.08505")
    # a negative price (a spread) by its size: -3000.5 lies between -3001 and -3000
    assert price_problem(TSE, -3000.5, "of X", "r").endswith("use -3001 or -3000")
    assert price_problem(TSE, 0.05, "of X", "r").endswith("(increment 0.1 from 0, r): use 0.1")


def test_decimal_exactness_float_noise_is_not_off_grid() -> None:
    price = 0.1 + 0.2  # 0.30000000000000004: not what anyone wrote, and off 0.05
    assert price_problem(ES_OPT, price, "of X", "r") != ""
    assert price_problem(ES_OPT, 0.3, "of X", "r") == ""
    assert price_problem(ladder([(0, 0.00005)]), 1.0851, "of X", "r") == ""


def test_huge_and_tiny_numbers_are_judged_exactly() -> None:
    # 1e30 / 0.3 = 3333...3.33 (31 threes before the point): 0.3 x 3333...3 = 30 nines
    # and .9, and 0.3 more is 10^30 + 0.2 (the default 28-digit context cannot divide it)
    assert price_problem(ladder([(0, 0.3)]), 1e30, "of X", "r").endswith(
        f"use {'9' * 30}.9 or 1{'0' * 30}.2")
    assert price_problem(ladder([(0, 0.01)]), 1e30, "of X", "r") == ""
    assert price_problem(ladder([(0, 0.01)]), 5e-324, "of X", "r").endswith("use 0.01")
    assert size_problem(3e30, 1, 3, "X") == ""
    # 10^30 = 3 x 333...3 + 1: 10^30 - 1 (30 nines) and 10^30 + 2 either side
    assert size_problem(1e30, 1, 3, "X").endswith(f"use {'9' * 30} or 1{'0' * 29}2")


def test_a_ladder_from_ibs_numbers() -> None:
    # unsorted bands are sorted; floats are read by their shortest text
    assert ladder([(1000, 0.5), (0, 0.1)]) == (Band(d("0"), d("0.1")),
                                               Band(d("1000"), d("0.5")))
    assert ladder([(0, 5e-05)]) == (Band(d("0"), d("0.00005")),)
    assert ladder([]) is None
    assert ladder([(0, 0)]) is None  # no increment: not a ladder
    assert ladder(None) is None


def test_the_module_agrees_with_the_fake_gateways_rules() -> None:
    """For every ladder the fake serves and prices around each edge, runner.grid and the
    gateway's own check (the one that answers 110) say the same."""
    for rule_id, bands in rules.MARKET_RULES.items():
        mine = ladder(bands)
        assert mine is not None
        for low, inc in bands:
            for p in (d(low), d(low) + d(inc), d(low) + d(inc) / 2, d(low) - d(inc) / 2,
                      d(low) + d(inc) * 7 + d(inc) / 10):
                if p <= 0:
                    continue
                assert grid.on_grid(mine, p) == rules.on_grid(rule_id, float(p)), (rule_id, p)


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("qty, min_size, inc, said", [
    (150, 100, 100, "qty 150 is not a multiple of 100, the size increment of X: use 100 or 200"),
    (50, 100, 100, "qty 50 is below 100, the minimum size of X: use 100"),
    (0.000000015, 0.0001, 0.00000001,
     "qty 0.000000015 is below 0.0001, the minimum size of X: use 0.0001"),
    (0.000123455, 0.0001, 0.00000001, "qty 0.000123455 is not a multiple of 0.00000001, the "
     "size increment of X: use 0.00012345 or 0.00012346"),
    # just over minSize but off the increment: the size under it is under minSize
    (105, 100, 10, "qty 105 is not a multiple of 10, the size increment of X: use 100 or 110"),
    (1000.005, 0.01, 0.01, "qty 1000.005 is not a multiple of 0.01, the size increment of X: "
     "use 1000 or 1000.01"),
    (0.00012345, 0.0001, 0.00000001, ""),
    (20000.5, 0.01, 0.01, ""),
    # IB's unset double, 0 and NaN say nothing: not checked
    (0.5, 1.7976931348623157e308, 0.0, ""),
    (0.5, float("nan"), None, ""),
])
def test_sizes(qty: float, min_size: Any, inc: Any, said: str) -> None:
    assert size_problem(qty, min_size, inc, "X") == said


# ----------------------------------------------------------------------------- validate


def test_validate_judges_only_us_stocks_on_the_us_grid(tmp_path: Path, capsys: Any) -> None:
    """A euro stock at 123.455 (European tick tables go below a cent) and a Tokyo stock
    pass validate: their grids are IB's market rules, judged at qualification. A US stock
    off the cent is still an error at its key."""
    from runner.cli import main

    for name, order in (("sap", "symbol: SAP, currency: EUR, limit: 123.455"),
                        ("toy", "symbol: '7203', currency: JPY, limit: 2501"),
                        ("us", "symbol: AAPL, limit: 10.005")):
        (tmp_path / f"{name}.yaml").write_text(
            f"version: 1\nkind: one-shot\norder: {{{order}, side: BUY, qty: 100}}\n")
    assert main(["validate", str(tmp_path / "sap.yaml"), str(tmp_path / "toy.yaml")]) == 0
    assert main(["validate", str(tmp_path / "us.yaml")]) == 2
    assert "order.limit: 10.005 is not on the tick grid (0.01); use 10.01" in \
        capsys.readouterr().err


# ----------------------------------------------------------------------------- the gateway

NS = 1_000_000_000
T0 = 1_767_625_200 * NS  # 2026-01-05 15:00:00Z: the ES listing is ESH6, ESM6, ESU6
TOYOTA = "symbol: '7203', sec_type: STK, exchange: SMART, currency: JPY"
BTC = "symbol: BTC, sec_type: CRYPTO, exchange: PAXOS"
EUR = "symbol: EUR, sec_type: CASH"
ES = "contract: {sec_type: FUT, symbol: ES, exchange: CME, expiry: 202603, multiplier: 50}\n"
MARKET_RULE = 91  # reqMarketRule's message id
HINT = ("(fix the spec's order (the grids are IB's: its market rule, minSize and "
        "sizeIncrement))")


@pytest.fixture
def gw(make_gateway: Callable[..., Any]) -> Any:
    start = time.time_ns()
    return make_gateway(clock=lambda: T0 + time.time_ns() - start)


def spec(tmp_path: Path, tag: str, order: str, contract: str = "") -> Path:
    path = tmp_path / f"{tag}.yaml"
    path.write_text(f"version: 1\nkind: one-shot\n{contract}order: {{tag: {tag}, "
                    f"outside_rth: true, {order}}}\nttl_sec: 0.5\nout_dir: out\n")
    return path


def refused(cli: Any, gw: Any, tmp_path: Path, path: Path) -> str:
    """Run `path`: exit 2, nothing placed, no ledger; the one line on stderr."""
    code, out, err = cli(gw.port, "run", str(path))
    assert code == 2, out + err
    assert gw.place_orders() == []
    assert not (tmp_path / "out").exists()
    return err


def placed(cli: Any, gw: Any, tmp_path: Path, path: Path, tag: str, qty: float,
           px: float) -> Any:
    gw.script(tag, [Ack(), Fill(qty, px, commission=1.0)])
    code, out, err = cli(gw.port, "run", str(path))
    assert code == 0, out + err
    [order] = [p for p in gw.place_orders() if p.order_ref == tag]
    rows = [r for r in read_ledger(tmp_path / "out").to_pylist() if r["tag"] == tag]
    assert [r["event"] for r in rows][:1] == ["INTENT"]
    return order


def test_a_tokyo_price_off_its_ladder_validates_but_is_refused_at_qualify(
        gw: Any, cli: Any, tmp_path: Path) -> None:
    path = spec(tmp_path, "toy", f"{TOYOTA}, side: BUY, qty: 100, limit: 3000.5")
    code, out, err = cli(gw.port, "validate", str(path))  # the grid is IB's: not known here
    assert code == 0, out + err
    err = refused(cli, gw, tmp_path, path)
    assert err == ("runner: toy: order.limit 3000.5 is not on the price grid of 7203 on "
                   "SMART (increment 1 from 3000, market rule 9005): use 3000 or 3001; "
                   f"nothing was sent {HINT}\n")
    assert len(gw.frames(MARKET_RULE)) == 1
    code, out, err = cli(gw.port, "plan", str(path), "--broker")  # the what-if qualifies too
    assert code == 2, out + err
    assert "toy: order.limit 3000.5 is not on the price grid of 7203 on SMART" in err
    assert gw.place_orders() == []  # not even a what-if


def test_a_tokyo_price_on_its_ladder_is_placed(gw: Any, cli: Any, tmp_path: Path) -> None:
    # 2800.5: the 0.5 band (1000 up to 3000); the US grid would take it too
    path = spec(tmp_path, "toy", f"{TOYOTA}, side: BUY, qty: 100, limit: 2800.5")
    order = placed(cli, gw, tmp_path, path, "toy", 100, 2800.5)
    assert (float(order.lmt_price), float(order.total_quantity)) == (2800.5, 100)


def test_two_prices_one_market_rule_request(gw: Any, cli: Any, tmp_path: Path) -> None:
    """A stop limit has two prices on the one rule: asked once, both judged."""
    path = spec(tmp_path, "two", f"{TOYOTA}, type: STP LMT, side: BUY, qty: 100, "
                "stop: 3000.5, limit: 999.95")
    err = refused(cli, gw, tmp_path, path)
    assert ("order.limit 999.95 is not on the price grid of 7203 on SMART (increment 0.1 "
            "from 0, market rule 9005): use 999.9 or 1000; order.stop 3000.5 is not on the "
            "price grid of 7203 on SMART (increment 1 from 3000, market rule 9005): use "
            "3000 or 3001; nothing was sent") in err
    assert [fields[1] for _, fields in gw.frames(MARKET_RULE)] == ["9005"]
    ok = spec(tmp_path, "ok", f"{TOYOTA}, type: STP LMT, side: BUY, qty: 100, "
              "stop: 3001, limit: 3002")
    order = placed(cli, gw, tmp_path, ok, "ok", 100, 3002)
    assert (float(order.aux_price), float(order.lmt_price)) == (3001, 3002)
    assert len(gw.frames(MARKET_RULE)) == 2  # one per run


def test_a_tokyo_lot_is_100_shares(gw: Any, cli: Any, tmp_path: Path) -> None:
    err = refused(cli, gw, tmp_path, spec(tmp_path, "lot", f"{TOYOTA}, side: BUY, qty: 150, "
                                          "limit: 2800"))
    assert "toy" not in err and ("lot: qty 150 is not a multiple of 100, the size increment "
                                 "of 7203: use 100 or 200; nothing was sent") in err


def test_crypto_sizes_off_the_increment_or_under_the_minimum(gw: Any, cli: Any,
                                                             tmp_path: Path) -> None:
    err = refused(cli, gw, tmp_path, spec(tmp_path, "tiny", f"{BTC}, side: BUY, "
                                          "qty: 0.000000015, limit: 97000"))
    assert "tiny: qty 0.000000015 is below 0.0001, the minimum size of BTC.USD: use 0.0001" \
        in err
    err = refused(cli, gw, tmp_path, spec(tmp_path, "odd", f"{BTC}, side: BUY, "
                                          "qty: 0.000123455, limit: 97000.3"))
    # both: the size and the price (0.25 steps: 97000.25 and 97000.5 either side)
    assert ("odd: qty 0.000123455 is not a multiple of 0.00000001, the size increment of "
            "BTC.USD: use 0.00012345 or 0.00012346; order.limit 97000.3 is not on the price "
            "grid of BTC.USD on PAXOS (increment 0.25, market rule 9006): use 97000.25 or "
            "97000.5; nothing was sent") in err


def test_a_fractional_crypto_size_is_placed(gw: Any, cli: Any, tmp_path: Path) -> None:
    path = spec(tmp_path, "btc", f"{BTC}, side: BUY, qty: 0.00012345, limit: 97000.25")
    order = placed(cli, gw, tmp_path, path, "btc", 0.00012345, 97000.25)
    assert float(order.total_quantity) == 0.00012345


def test_fx_and_futures_prices(gw: Any, cli: Any, tmp_path: Path) -> None:
    err = refused(cli, gw, tmp_path, spec(tmp_path, "fx", f"{EUR}, side: SELL, "
                                          "qty: 20000, limit: 1.08502"))
    assert ("order.limit 1.08502 is not on the price grid of EUR.USD on IDEALPRO "
            "(increment 0.00005, market rule 239): use 1.085 or 1.08505") in err
    (tmp_path / "runner-policy.yaml").write_text("version: 1\nsec_types: [CASH, FUT]\n")
    err = refused(cli, gw, tmp_path, spec(tmp_path, "es", "side: BUY, qty: 1, limit: 6000.3",
                                          ES))
    assert ("order.limit 6000.3 is not on the price grid of ESH6 on CME (increment 0.25, "
            "market rule 67): use 6000.25 or 6000.5") in err


def test_an_unanswered_market_rule_falls_back_to_min_tick_and_says_so(
        gw: Any, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway that does not answer reqMarketRule (as for a rule it does not know):
    prices are judged on minTick (0.1 for 7203), and stderr says that is all."""
    from runner.gateway import wire

    monkeypatch.setattr(wire, "market_rule", lambda rule_id: None)
    err = refused(cli, gw, tmp_path, spec(tmp_path, "toy", f"{TOYOTA}, side: BUY, qty: 100, "
                                          "limit: 3000.05"))
    assert err.splitlines() == [
        "runner: 7203: market rule 9005 not answered by the gateway; prices checked against "
        "minTick 0.1 only",
        "runner: toy: order.limit 3000.05 is not on the price grid of 7203 (increment 0.1, "
        f"minTick 0.1): use 3000 or 3000.1; nothing was sent {HINT}"]
    assert len(gw.frames(MARKET_RULE)) == 1
