"""Spec -> Plan: every value resolved, nothing left to chance, no I/O.

A plan is immutable and is exactly what the engine runs; `runner plan --json`
prints it. The same spec, `at` and environment always give the same plan.

A generated tag (IB's orderRef) is `<kind>_<SYMBOL>_<epoch milliseconds>`, with `-N` for
the Nth document of a file from the second on: `oneshot_SPY_1767623400000`,
`sanity_SPY_1767623400000-2`. So three untagged documents of one file get three tags,
and `plan` and `run` give the same ones for the same `--at`. orderRef travels as an
ASCII field of the API's messages; a tag stays in the spec's tag alphabet
(letters, digits, `_.:-`, at most 64 characters): a symbol's space or `/` becomes `.`.
Numbers are printed as they are sent (runner.output): `BUY 1000000 ... LMT 1.08505`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from runner.broker import OrderRequest
from runner.cashqty import size_text
from runner.contract import ib_contract
from runner.errors import SpecError, UsageError
from runner.ordertypes import AT_THE_CLOSE, PEGS, describe_prices, ib_fields, simulated_as
from runner.output import json_text, number_text
from runner.spec import Expect, Limits, Spec

PLAN_FORMAT = 1
EXCHANGE_TZ = ZoneInfo("America/New_York")  # US stocks: the ledger day is New York's
BACKSTOP_MARGIN_SEC = 10  # GTD expiry = INTENT + TTL (+ this), so IB kills it if we die
CONNECT_TIMEOUT_SEC = 10.0
RECONNECT_SEC = 30.0
ACK_TIMEOUT_SEC = 10.0  # sanity-cancel: how long to wait for the ACK before cancelling
CANCEL_TIMEOUT_SEC = 10.0  # how long, in all, a cancel is retried and waited for
CANCEL_ATTEMPTS = 3  # a refused or unanswered cancel is sent this many times in all
TAG_PREFIX = {"one-shot": "oneshot", "sanity-cancel": "sanity"}
DEFAULTS = {"IB_GATEWAY_HOST": "127.0.0.1", "IB_GATEWAY_PORT": "7497", "IB_CLIENT_ID": "7"}


@dataclass(frozen=True, slots=True)
class Connection:
    host: str
    port: int
    client_id: int
    timeout_sec: float = CONNECT_TIMEOUT_SEC
    reconnect_sec: float = RECONNECT_SEC  # how long a lost connection is retried mid-order
    cancel_timeout_sec: float = CANCEL_TIMEOUT_SEC  # all attempts of one cancel, in all


@dataclass(frozen=True, slots=True)
class Step:
    op: str  # connect | check | qualify | place | wait | cancel | snapshot | record
    detail: str


@dataclass(frozen=True, slots=True)
class Plan:
    spec: str  # "specs/x.yaml" or "specs/x.yaml#2" for later documents
    name: str
    kind: str
    mode: str  # paper | live
    at_ns: int  # when the plan was made (--at): the simulator's start; a live INTENT is later
    connection: Connection
    order: OrderRequest | None
    ttl_sec: float | None
    bars_path: str | None
    out_dir: str
    day: str  # the ledger's day folder, YYYY-MM-DD (New York)
    limits: Limits
    sim: tuple[tuple[str, Any], ...]
    expect: Expect | None
    steps: tuple[Step, ...]
    format: int = PLAN_FORMAT

    @property
    def ledger_path(self) -> str:
        return f"{self.out_dir}/{self.day}/ledger.parquet"

    def to_dict(self) -> dict[str, Any]:
        """The plan for machines: times as ISO 8601 UTC text, numbers as they are sent."""
        d = dataclasses.asdict(self)
        d["at"] = iso(d.pop("at_ns"))
        d["sim"] = dict(self.sim)
        d["ledger"] = self.ledger_path
        if self.order is not None:
            d["order"] = _order_dict(self.order, d["order"])
        return d

    def to_json(self) -> str:
        return json_text(self.to_dict())


def _order_dict(o: OrderRequest, d: dict[str, Any]) -> dict[str, Any]:
    """The order for machines: its fields (those of the newer order types only when set),
    `good_till` for people, and `sent`: the ib_async Order fields as they will be sent."""
    del d["good_till_ns"]  # an instant of the run, never planned (§4)
    for key in ("stop", "trail_amount", "trail_percent", "offset", "algo", "expiry_ns",
                "cash_qty"):
        if d[key] is None:
            del d[key]
    if not o.algo_params:
        del d["algo_params"]
    else:
        d["algo_params"] = [list(p) for p in o.algo_params]
    if o.expiry_ns is not None:
        d["expiry"] = iso(d.pop("expiry_ns"))
    good_till = _good_till_text(o)
    sent = dict(ib_fields(o))
    if good_till is not None:
        d["good_till"] = good_till
        sent.setdefault("goodTillDate", good_till)  # the backstop: stamped at the INTENT
    if o.algo:
        sent["algoParams"] = d["algo_params"]
        d["simulated_as"] = simulated_as(o)
    d["sent"] = sent
    d["contract"] = dict(ib_contract(o.symbol, o.sec_type, o.exchange, o.currency, o.contract))
    d["multiplier"] = o.multiplier
    return d


def compile_plan(spec: Spec, environ: Mapping[str, str], at_ns: int,
                 out_dir: str | None = None) -> Plan:
    """The one way a Spec becomes a Plan; `out_dir` (`run --out-dir`) in place of the
    spec's, so the plan's steps name the ledger the run writes."""
    connection = connection_from_env(environ)
    order = _order(spec, at_ns) if spec.order is not None else None
    one_shot = spec.kind == "one-shot"
    ttl = spec.ttl_sec if one_shot else None
    plan = Plan(
        spec=spec.source if spec.index == 0 else f"{spec.source}#{spec.index + 1}",
        name=spec.name, kind=spec.kind, mode=spec.mode, at_ns=at_ns, connection=connection,
        order=order, ttl_sec=ttl, bars_path=spec.bars_path,
        out_dir=out_dir or spec.out_dir, day=trading_day(at_ns), limits=spec.limits, sim=spec.sim,
        expect=spec.expect, steps=(),
    )
    return dataclasses.replace(plan, steps=_steps(plan))


def connection_from_env(environ: Mapping[str, str]) -> Connection:
    def get(name: str) -> str:
        return environ.get(name) or DEFAULTS[name]

    timeout_sec = _env_seconds(environ, "IB_CONNECT_TIMEOUT", CONNECT_TIMEOUT_SEC)
    reconnect_sec = _env_seconds(environ, "IB_RECONNECT_SEC", RECONNECT_SEC)
    cancel_sec = _env_seconds(environ, "IB_CANCEL_TIMEOUT", CANCEL_TIMEOUT_SEC)
    host = get("IB_GATEWAY_HOST")
    port, client_id = _env_int("IB_GATEWAY_PORT", get("IB_GATEWAY_PORT"), 1, 65535), \
        _env_int("IB_CLIENT_ID", get("IB_CLIENT_ID"), 0, 2**31 - 1)
    return Connection(host=host, port=port, client_id=client_id, timeout_sec=timeout_sec,
                      reconnect_sec=reconnect_sec, cancel_timeout_sec=cancel_sec)


def _env_seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name) or str(default)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise UsageError(f"{name}={text!r} is not a number of seconds in (0, 3600]",
                         f"fix or unset {name}")
    return value


def _env_int(name: str, value: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        n = lo - 1
    if not lo <= n <= hi:
        raise UsageError(f"{name}={value!r} is not a whole number in {lo}..{hi}",
                         f"fix or unset {name}")
    return n


def _order(spec: Spec, at_ns: int) -> OrderRequest:
    o = spec.order
    assert o is not None
    tag = o.tag or generated_tag(spec, at_ns)
    tif, backstop = o.tif, None
    wait = spec.ttl_sec if spec.kind == "one-shot" else ACK_TIMEOUT_SEC
    if o.tif in ("DAY", "GTC", "GTD") and spec.ttl_backstop and o.order_type not in AT_THE_CLOSE:
        # the order dies at IB even if runner and its host die: GTD = INTENT + this
        tif = "GTD"
        # in decimal: 0.274 + 10 is 10.274, where floats give 10.274000000000001
        backstop = float(Decimal(repr(wait)) + BACKSTOP_MARGIN_SEC)
    if o.good_till_ns is not None and o.good_till_ns <= at_ns + int(wait * 1e9):
        m = spec.mark(("order", "good_till"))
        raise SpecError([f"{spec.source}:{m.line}:{m.col}: order.good_till {iso(o.good_till_ns)}"
                         f" is not later than the plan's start {iso(at_ns)} + "
                         f"{number_text(wait)} s (the order would expire before runner "
                         "cancels it); give a later good_till, or a shorter ttl_sec"])
    return OrderRequest(
        tag=tag, symbol=o.symbol, sec_type=o.sec_type, exchange=o.exchange, currency=o.currency,
        side=o.side, qty=o.qty, order_type=o.order_type,
        limit=o.cap if o.order_type in PEGS else o.limit, tif=tif, backstop_sec=backstop,
        outside_rth=o.outside_rth, stop=o.stop, trail_amount=o.trail_amount,
        trail_percent=o.trail_percent, offset=o.offset, algo=o.algo, algo_params=o.algo_params,
        expiry_ns=o.good_till_ns, contract=o.contract, account=o.account or "",
        cash_qty=o.cash_qty,
    )


def generated_tag(spec: Spec, at_ns: int) -> str:
    """The tag of an order whose spec names none (see the module docstring)."""
    assert spec.order is not None
    symbol = _NOT_TAG.sub(".", spec.order.symbol)
    tag = f"{TAG_PREFIX[spec.kind]}_{symbol}_{at_ns // 1_000_000}"
    return tag if spec.index == 0 else f"{tag}-{spec.index + 1}"


_NOT_TAG = re.compile(r"[^A-Za-z0-9_.:-]")


def _steps(p: Plan) -> tuple[Step, ...]:
    c = p.connection
    guard = "live: needs --live" if p.mode == "live" else "paper: refuses a non-paper account"
    steps = [Step("connect", f"{c.host}:{c.port} client_id={c.client_id} ({guard})")]
    if p.order is None:
        steps.append(Step("check", "report server version, accounts and gateway time"))
        return tuple(steps)
    o = p.order
    terms = o.contract.describe()
    steps.append(Step("qualify", f"{o.symbol} {o.sec_type} {o.exchange} {o.currency}"
                                 + (f" {terms}" if terms else "") + " (exactly one match)"))
    steps.append(Step("place", _describe_order(o)))
    if p.kind == "sanity-cancel":
        steps.append(Step("wait", f"for the ACK (at most {number_text(ACK_TIMEOUT_SEC)} s)"))
        steps.append(Step("cancel", "right after the ACK; wait for the confirmation"))
    else:
        steps.append(Step("wait", f"ACK and fills until the TTL: INTENT + "
                                  f"{number_text(p.ttl_sec)} s (the broker's clock)"))
        steps.append(Step("cancel", "whatever is still working at the deadline; "
                                    "wait for the confirmation"))
    if p.bars_path:
        steps.append(Step("snapshot", f"TCA vs arrival price from {p.bars_path}"))
    steps.append(Step("record", p.ledger_path))
    return tuple(steps)


def _describe_order(o: OrderRequest) -> str:
    """The order as sent: `BUY 1 SPY LMT 10.00 GTD ... orderRef=t`; the other types with
    the IB fields that carry their prices (runner.ordertypes.describe_prices)."""
    decimals = price_decimals(o.sec_type, o.currency, o.limit or o.stop)
    text = f"{o.side} {size_text(o)} {o.symbol} {describe_prices(o, decimals)} " \
           f"{_tif_text(o)} orderRef={o.tag}" + (f" account={o.account}" if o.account else "")
    parent = simulated_as(o)
    if parent is not None:
        text += f" (a dry run simulates it as a plain {parent}: bars cannot run IB's {o.algo})"
    return text


def _tif_text(o: OrderRequest) -> str:
    good_till = _good_till_text(o)
    if good_till is None:
        return o.tif
    return f"GTD {good_till} (TTL backstop)" if o.backstop_sec is not None else f"GTD {good_till}"


def _good_till_text(o: OrderRequest) -> str | None:
    """When a GTD order expires, as planned: the backstop from the INTENT, the spec's
    good_till, or the earlier of the two; None for another tif."""
    backstop = None if o.backstop_sec is None else f"INTENT + {number_text(o.backstop_sec)} s"
    if o.expiry_ns is None:
        return backstop
    return iso(o.expiry_ns) if backstop is None else f"{iso(o.expiry_ns)}, or {backstop} if earlier"


def price_decimals(sec_type: str, currency: str, price: float | None) -> int:
    """The decimals a price of this instrument is shown with at least (its tick grid):
    US stocks 2 from $1 up, 4 below (runner.spec.TICK); FX (CASH) 5, 3 for a yen quote
    (IDEALPRO's half pip); crypto 2. A price recorded with more keeps them all."""
    if sec_type == "CASH":
        return 3 if currency == "JPY" else 5
    return 4 if sec_type == "STK" and price is not None and price < 1 else 2


def trading_day(t_ns: int) -> str:
    # whole seconds, floored: t_ns / 1e9 rounds the last instants of a day into the next
    return datetime.fromtimestamp(t_ns // 1_000_000_000, EXCHANGE_TZ).strftime("%Y-%m-%d")


def day_span_ns(day: str) -> tuple[int, int]:
    """[first ns, first ns of the next day) of an exchange-local YYYY-MM-DD: the instants
    whose trading_day is `day` (wall-clock midnights, so DST days are 23 or 25 h)."""
    start = datetime.fromisoformat(day).replace(tzinfo=EXCHANGE_TZ)
    end = start + timedelta(days=1)
    return int(start.timestamp()) * 1_000_000_000, int(end.timestamp()) * 1_000_000_000


def iso(t_ns: int) -> str:
    dt = datetime.fromtimestamp(t_ns // 1_000_000_000, UTC)
    frac = t_ns % 1_000_000_000
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += f".{frac:09d}".rstrip("0")
    return text + "Z"


def parse_at(text: str, flag: str = "--at") -> int:
    """`--at` (or a spec's `at:`, named by `flag` in errors): ISO 8601 with a UTC offset
    (or Z), or epoch seconds."""
    parse = _epoch_ns if text.replace(".", "", 1).isdigit() else _iso_ns
    try:
        return parse(text, flag)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: not a time",
                         "use ISO 8601 with an offset, e.g. 2026-01-05T09:30:00-05:00, "
                         "or epoch seconds") from None


def parse_day(text: str | None, flag: str) -> str | None:
    """A YYYY-MM-DD flag (--date, --from, --to), a real date, else UsageError (exit 2)."""
    if text is None:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text).isoformat()
        raise ValueError("not YYYY-MM-DD")
    except ValueError as e:
        raise UsageError(f"{flag} {text}: not a date ({e})", "give YYYY-MM-DD, e.g. 2026-01-05"
                         ) from None


_EPOCH_SECONDS = (631_152_000, 4_102_444_800)  # 1990-01-01 .. 2100-01-01 UTC


def _epoch_ns(text: str, flag: str) -> int:
    """Epoch seconds, exactly (decimal, not float: nanoseconds survive), within 1990-2100."""
    seconds = Decimal(text)
    if not _EPOCH_SECONDS[0] <= seconds < _EPOCH_SECONDS[1]:
        raise UsageError(f"{flag} {text}: not epoch seconds between 1990 and 2100 "
                         f"({len(text.split('.')[0])} digits; milliseconds?)",
                         "give epoch seconds (e.g. 1767623400), or ISO 8601 with an offset")
    return int(seconds * 1_000_000_000)


def _iso_ns(text: str, flag: str) -> int:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise UsageError(f"{flag} {text!r} has no time zone",
                         "add one, e.g. 2026-01-05T09:30:00-05:00 or ...Z")
    whole = int(dt.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + dt.microsecond * 1000


def render(p: Plan) -> str:
    """The plan for people: what will happen, in order."""
    lines = [f"plan {p.name} ({p.kind}, {p.mode}) from {p.spec}", f"  at      {iso(p.at_ns)}"]
    if p.order is not None:
        lines.append(f"  tag     {p.order.tag}")
    if p.limits.max_qty is not None or p.limits.max_notional is not None:
        lines.append(f"  limits  max_qty={_opt(p.limits.max_qty)} "
                     f"max_notional={_opt(p.limits.max_notional)}")
    lines += [f"  {i}. {s.op:<9}{s.detail}" for i, s in enumerate(p.steps, 1)]
    return "\n".join(lines)


def _opt(x: float | None) -> str:
    return number_text(x, "-")
