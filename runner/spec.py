"""Spec files: YAML (multi-document) -> JSON Schema -> semantic checks -> frozen Specs.

Every error names `file:line:col`, the key path and the fix, and all errors of a
file are reported together. YAML is read with the safe loader only, and files that
are too big, too deep, binary or alias bombs are refused before anything else
(runner.yamldoc reads and parses, runner.schemacheck checks the schema). A Spec keeps
the positions it was loaded with, so a later message (a gate's reason) can name the
line without reading the file again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from runner import cashqty, contract
from runner.contract import NO_TERMS, WHOLE_UNITS, ContractTerms
from runner.defaults import SPEC_SCHEMA, subschema, with_defaults
from runner.errors import NotRegular, RunnerError, SpecError, TooBig
from runner.ordercheck import check_type, good_till_ns, order_type
from runner.ordertypes import algo_request
from runner.output import message_number as fmt
from runner.paths import PathRules, rules_for
from runner.schemacheck import schema_checked, type_name
from runner.yamldoc import (
    Doc,
    Mark,
    Path_,
    decode,
    error_lines,
    file_error,
    nearest,
    parse,
    read_bounded,
)

SCHEMA_PATH = SPEC_SCHEMA
MAX_BYTES = 1 << 20  # a spec is a few hundred bytes; 1 MiB is a mistake or an attack


@dataclass(frozen=True, slots=True)
class OrderSpec:
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    side: str
    qty: float  # 0 for a cash order
    limit: float | None
    tif: str
    tag: str | None
    allow_market: bool
    outside_rth: bool
    order_type: str = "LMT"  # order.type, else LMT with a limit and MKT without
    stop: float | None = None
    trail_amount: float | None = None
    trail_percent: float | None = None
    offset: float | None = None
    cap: float | None = None
    good_till_ns: int | None = None  # tif GTD: order.good_till
    algo: str | None = None  # IB's algoStrategy (runner.ordertypes.algo_request)
    algo_params: tuple[tuple[str, str], ...] = ()
    account: str | None = None  # order.account: the IB account it is for (gates: managed)
    contract: ContractTerms = NO_TERMS  # the rest of IB's Contract (runner.contract)
    cash_qty: float | None = None  # order.cash_qty: its size in money (runner.cashqty)


@dataclass(frozen=True, slots=True)
class Limits:
    max_qty: float | None = None
    max_notional: float | None = None


@dataclass(frozen=True, slots=True)
class Expect:
    state: str | None = None
    fill_qty: float | None = None
    avg_px: float | None = None
    events: tuple[str, ...] | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Spec:
    source: str  # the file as the user named it, or "<command line>"
    index: int  # document number in the file, 0-based
    name: str
    kind: str
    mode: str
    order: OrderSpec | None
    ttl_sec: float
    ttl_backstop: bool
    bars_path: str | None
    out_dir: str
    limits: Limits
    sim: tuple[tuple[str, Any], ...]  # the spec's sim: knobs, defaults filled
    expect: Expect | None
    line: int = 1  # where the document starts
    arrival: str | None = None  # bars | broker; None: bars when bars_path is set
    at: str | None = None  # `at:` as written: pins a dry run's (and a plan's) start, like --at
    marks: Mapping[Path_, Mark] = field(default_factory=dict, compare=False, repr=False)

    def mark(self, path: Path_) -> Mark:
        """Where the value at `path` (or the nearest value around it) was written, from the
        positions the spec was loaded with; the document's start for a spec without them."""
        return nearest(self.marks, path, Mark(self.line, 1))


# --- reading files -----------------------------------------------------------------


def spec_files(paths: Sequence[str]) -> list[str]:
    """Files named, and *.yaml / *.yml under the folders named, in a stable order."""
    found: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found += sorted(
                str(f)
                for f in path.rglob("*")
                # not only regular files: a FIFO or a dangling link named *.yaml is
                # reported (and refused unread), never silently left out
                if f.suffix in (".yaml", ".yml") and not f.is_dir() and not _hidden(f, path)
            )
        else:
            found.append(p)
    return found


def _hidden(f: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in f.relative_to(root).parts)


def load(path: str, root: Path | None = None, allow_outside: bool = False) -> list[Spec]:
    """All specs in one file, or SpecError listing every problem in it. Paths in the file
    resolve against its project root (runner.paths), or `root` when given."""
    text = _read_text(path)
    return load_text(text, path, root, allow_outside)


def load_text(
    text: str, source: str, root: Path | None = None, allow_outside: bool = False
) -> list[Spec]:
    docs, errors = parse(text, source, as_text=_AS_TEXT)
    specs: list[Spec] = []
    invalid = 1 if errors else 0  # a syntax error spoils the rest of the file
    rules = rules_for(source, root, allow_outside)
    for doc in docs:
        spec = _check(doc, rules)
        errors += [(m, msg) for m, msg in doc.errors]
        if spec is not None:
            specs.append(spec)
        else:
            invalid += 1
    if errors:
        raise SpecError(error_lines(source, errors), specs=len(specs) + invalid,
                        invalid=invalid)
    return specs


# `at: 2026-01-05T14:30:00Z` is text (the grammar of --at), not a date; good_till too
_AS_TEXT = (("at",), ("order", "good_till"), ("contract", "expiry"))


def from_mapping(
    data: Mapping[str, Any], source: str = "<command line>", root: Path | None = None,
    allow_outside: bool = False, typed: bool = False,
) -> Spec:
    """A spec built in memory (the classic commands): the same checks, no file marks.
    `typed`: its paths were typed on the command line, used as typed (`~` expanded)."""
    doc = Doc(source, 0, _plain(data), constructed=True)
    spec = _check(doc, rules_for(source, root, allow_outside, typed))
    if doc.errors or spec is None:
        raise SpecError([f"{source}: {msg}" for _, msg in doc.errors])
    return spec


def _plain(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {str(k): _plain(v) for k, v in data.items()}
    return data


def _read_text(path: str) -> str:
    try:
        raw = read_bounded(path, MAX_BYTES)
    except NotRegular as e:
        raise SpecError([f"{path}: {e.cause}; runner reads a spec only from a regular file "
                         "(name the .yaml file itself)"]) from None
    except TooBig as e:
        raise file_error(path, f"file is {e.size:,} bytes; specs are limited to 1 MiB") from None
    except OSError as e:
        raise file_error(path, f"cannot read file: {e.strerror or e}") from None
    return decode(raw, path)


# --- checking ----------------------------------------------------------------------


def _check(doc: Doc, rules: PathRules) -> Spec | None:
    if not doc.constructed:
        return None
    if not isinstance(doc.data, dict):
        if doc.data is None:
            doc.error((), f"document {doc.index + 1} is empty (remove the extra '---' "
                          "or write a spec in it)")
        else:
            doc.error((), "a spec must be a mapping of keys (`version: 1`, `kind: ...`), "
                          f"got {type_name(doc.data)}")
        return None
    data = schema_checked(doc, SCHEMA_PATH, _PATTERN_HINTS)
    if data is None:
        return None
    contract.merge(doc, data)
    _semantic(doc, data, rules)
    if doc.errors:
        return None
    return _build(doc, {**data, **{k: rules.resolve(data[k]) for k in _PATHS if k in data}})


_PATTERN_HINTS = {
    "symbol": " (upper-case letters, digits, '.', '/', '-', space; e.g. SPY or BRK B)",
    "currency": " (a three-letter ISO code in capitals, e.g. USD)",
    "exchange": " (an IB exchange code in capitals, e.g. SMART)",
    "expiry": " (YYYYMM, the contract month, or YYYYMMDD, the last trade date: 202603)",
    "tag": " (letters, digits, '_', '.', ':', '-'; no spaces)",
    "name": " (letters, digits, '_', '.', ':', '-'; no spaces)",
    "account": " (an IB account id as the gateway lists it: letters, digits, '_', '.', '-')",
}

def _semantic(doc: Doc, data: dict[str, Any], rules: PathRules) -> None:
    kind = data["kind"]
    given = doc.data
    if kind == "handshake":
        for key in ("order", "contract", "ttl_sec", "limits", "expect", "bars_path", "arrival",
                    "at"):
            if key in given:
                doc.error((key,), "not used by kind handshake; remove it", key=True)
    else:
        contract.check(doc, data)
        _check_order(doc, data)
    if kind == "sanity-cancel" and "ttl_sec" in given:
        doc.error(("ttl_sec",), "only one-shot uses ttl_sec (sanity-cancel cancels right after "
                                "the ACK); remove it", key=True)
    if given.get("arrival") == "bars" and "bars_path" not in given:
        doc.error(("arrival",), "'bars' needs bars_path (add bars_path, or use "
                                "arrival: broker)")
    for key in _PATHS:
        problem = rules.problem(data[key]) if key in data else ""
        if problem:
            doc.error((key,), problem)
    if "at" in given and kind != "handshake":
        from runner.plan import parse_at  # the grammar of --at (plan imports this module)
        try:
            parse_at(str(given["at"]), "at:")
        except RunnerError as e:
            doc.errors.append((doc.mark(("at",)), str(e)))


_PATHS = ("bars_path", "out_dir")


def _check_order(doc: Doc, data: dict[str, Any]) -> None:
    order = data["order"]
    cashqty.check(doc, order, order_type(order))
    if "cash_qty" in order and "qty" not in order:
        _check_cash_limits(doc, data, check_type(doc, data)[0])
        return
    qty = order.get("qty", 1)
    sec_type = order["sec_type"]
    if sec_type in WHOLE_UNITS and qty != int(qty):
        unit = "shares" if sec_type == "STK" else "contracts"
        doc.error(("order", "qty"), f"must be a whole number of {unit} for {sec_type}, got {qty}")
    price, basis = check_type(doc, data)  # type, prices, tif, algo (runner.ordercheck)
    multiplier = contract.terms(data).multiplier or 1.0
    _check_limits(doc, data, qty * multiplier, price,
                  basis if multiplier == 1 else f"multiplier {fmt(multiplier)} x {basis}")


def tick_problem(price: float) -> str:
    """Why a stock limit price is not on IB's tick grid ($0.01 at $1 and above, $0.0001
    below); "" when it is. Judged in decimal on the shortest text that gives the same
    float (what the user wrote), so neither rounding nor underflow can fool it: 1e-300
    is below one tick, 10.005 is between two."""
    value = Decimal(repr(float(price)))
    tick = TICK if value >= 1 else SUB_DOLLAR_TICK
    if value < tick:
        return f"{price} is below one tick ({tick}); the smallest limit is {tick}"
    exponent = value.normalize().as_tuple().exponent  # an int: the value is finite
    if isinstance(exponent, int) and exponent >= _places(tick):
        return ""
    nearest = value.quantize(tick, rounding=ROUND_HALF_UP)
    return f"{price} is not on the tick grid ({tick}); use {nearest}"


def _places(tick: Decimal) -> int:
    exponent = tick.as_tuple().exponent
    assert isinstance(exponent, int)
    return exponent


TICK, SUB_DOLLAR_TICK = Decimal("0.01"), Decimal("0.0001")


def _check_limits(doc: Doc, data: dict[str, Any], units: float, price: float | None,
                  basis: str = "limit") -> None:
    """limits: against the order's price bound (its limit, stop or cap) and its units (qty
    x the contract's multiplier); an order whose price only the market knows is judged
    against the reference by the gates."""
    limits, qty = data.get("limits") or {}, data["order"].get("qty", 1)
    if "max_qty" in limits and qty > limits["max_qty"]:
        doc.error(("order", "qty"), f"{fmt(qty)} exceeds limits.max_qty {fmt(limits['max_qty'])}")
    if "max_notional" in limits and price is not None and units * price > limits["max_notional"]:
        doc.error(("order",), f"notional {fmt(units * price)} (qty x {basis}) exceeds "
                              f"limits.max_notional {fmt(limits['max_notional'])}")


def _check_cash_limits(doc: Doc, data: dict[str, Any], price: float | None) -> None:
    """limits: of a cash order: its notional is its cash_qty; its units, cash_qty / its
    limit (a market order's are judged at the reference by the gates)."""
    limits, cash = data.get("limits") or {}, data["order"]["cash_qty"]
    if "max_notional" in limits and cash > limits["max_notional"]:
        doc.error(("order", "cash_qty"), f"{fmt(cash)} exceeds limits.max_notional "
                                         f"{fmt(limits['max_notional'])}")
    if "max_qty" in limits and price is not None \
            and cashqty.units(cash, price) > limits["max_qty"]:
        doc.error(("order", "cash_qty"), f"{fmt(cash)} buys {fmt(cashqty.units(cash, price))}"
                  f" at the limit {fmt(price)}, more than limits.max_qty "
                  f"{fmt(limits['max_qty'])}")


def _build(doc: Doc, data: dict[str, Any]) -> Spec:
    o = data.get("order")
    order = None
    if o is not None:
        algo, params = algo_request(o["algo"]) if "algo" in o else (None, ())
        order = OrderSpec(
            symbol=o["symbol"], sec_type=o["sec_type"], exchange=o["exchange"],
            currency=o["currency"], side=o["side"], qty=float(o.get("qty", 0)),
            limit=_f(o.get("limit")), tif=o["tif"],
            tag=o.get("tag"), allow_market=o["allow_market"], outside_rth=o["outside_rth"],
            order_type=order_type(o), stop=_f(o.get("stop")),
            trail_amount=_f(o.get("trail_amount")), trail_percent=_f(o.get("trail_percent")),
            offset=_f(o.get("offset")), cap=_f(o.get("cap")),
            good_till_ns=good_till_ns(o["good_till"]) if "good_till" in o else None,
            algo=algo, algo_params=params, account=o.get("account"),
            contract=contract.terms(data), cash_qty=_f(o.get("cash_qty")),
        )
    e = data.get("expect")
    expect = None
    if e is not None:
        events = tuple(e["events"]) if "events" in e else None
        expect = Expect(e.get("state"), _f(e.get("fill_qty")), _f(e.get("avg_px")), events,
                        e.get("message"))
    sim = with_defaults(data.get("sim", {}), subschema(SCHEMA_PATH, "sim"))
    return Spec(
        source=doc.source, index=doc.index, name=data.get("name") or _default_name(doc),
        kind=data["kind"], mode=data["mode"], order=order, ttl_sec=float(data["ttl_sec"]),
        ttl_backstop=data["ttl_backstop"], bars_path=data.get("bars_path"),
        out_dir=data["out_dir"], limits=Limits(**{k: float(v) for k, v in
                                                 data.get("limits", {}).items()}),
        sim=tuple(sorted(sim.items())), expect=expect, line=doc.mark(()).line,
        arrival=data.get("arrival"), at=str(data["at"]) if "at" in data else None,
        marks=dict(doc.marks),
    )


def _f(x: Any) -> float | None:
    return None if x is None else float(x)


def _default_name(doc: Doc) -> str:
    stem = Path(doc.source).stem if not doc.source.startswith("<") else "cli"
    return stem if doc.index == 0 else f"{stem}#{doc.index + 1}"


