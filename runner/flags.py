"""Flags as people type them, and messages in the words they typed.

- `Parser`: argparse, but a usage error is one line naming the flag ("--qty: 'abc' is
  not a number") with the help to read (`runner one-shot --help`), exit 2; help text
  that shows defaults and does not break `--dry-run` at its hyphen.
- Value types: an enum flag takes any case where IB does (`--side sell`, `--tif gtc`)
  and names the nearest choice when the value is none of them; a symbol is upper-cased,
  as IB reads it; a number must be finite.
- `run` and the classic commands become plain values (`run_request`): the spec (its
  path, or for a classic command the spec its flags build) and the `RunOptions`.
- The classic commands build their spec from flags (`classic_spec`), so a spec check's
  message about `order.qty` is shown as one about `--qty` (`in_flag_terms`); the gates
  say it the same way (`for_source`).
Cheap to import: the gates use it.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from runner.run import RunOptions
    from runner.spec import Spec

COMMAND_LINE = "<command line>"  # the source of a spec built from the classic flags

# The spec key each classic flag sets (classic_spec), as messages name it.
FLAG_OF_KEY = {
    "order.symbol": "--symbol", "order.side": "--side", "order.qty": "--qty",
    "order.limit": "--limit", "order.tif": "--tif", "order.tag": "--tag",
    "order.outside_rth": "--outside-rth", "ttl_sec": "--ttl_sec", "bars_path": "--bars_path",
    "out_dir": "--out_dir", "arrival": "--arrival", "order.type": "--type",
    "order.stop": "--stop", "order.trail_amount": "--trail-amount",
    "order.trail_percent": "--trail-percent", "order.offset": "--offset", "order.cap": "--cap",
    "order.good_till": "--good-till", "order.account": "--account",
    "order.cash_qty": "--cash-qty",
    "contract.symbol": "--symbol",
    **{f"contract.{key}": "--" + key.replace("_", "-") for key in (
        "sec_type", "exchange", "currency", "expiry", "strike", "right", "multiplier",
        "con_id", "local_symbol", "trading_class", "primary_exchange")},  # instrumentflags
}
# one-shot's flags of the newer order types: (flag, spec key, metavar, help)
TYPE_FLAGS = (
    ("--stop", "stop", "PRICE", "STP, STP LMT: the trigger price; TRAIL, TRAIL LIMIT: the "
     "first stop (IB's auxPrice / trailStopPrice)"),
    ("--trail-amount", "trail_amount", "AMOUNT", "TRAIL, TRAIL LIMIT: how far the stop trails "
     "the best price, in price units"),
    ("--trail-percent", "trail_percent", "PCT", "TRAIL, TRAIL LIMIT: the trail in percent "
     "(1.5 is 1.5%%)"),
    ("--offset", "offset", "AMOUNT", "TRAIL LIMIT: the limit's distance from the stop; REL, "
     "PEG MID: the offset from the quote"),
    ("--cap", "cap", "PRICE", "MIDPRICE, REL, PEG MID: the price cap (IB's lmtPrice)"),
    ("--cash-qty", "cash_qty", "AMOUNT", "the order's size in money instead of --qty (IB's "
     "cashQty): CASH BUY or SELL, CRYPTO BUY; LMT or MKT"),
)
_BOOLEAN_KEY = re.compile(r"\bset (order\.outside_rth): true\b")  # -> "pass --outside-rth"
_KEY_VALUE = re.compile(r"(?<![\w.-])(arrival): (bars|broker)\b")  # -> "--arrival broker"
_SIDE = re.compile(r"\buse side (BUY|SELL)\b")  # -> "use --side BUY"
_KEY = re.compile(r"(?<![\w.-])((?:order|contract)\.[a-z_]+|ttl_sec|bars_path|out_dir"
                  r"|arrival(?=: ))(?![\w.])")


class UsageExit(SystemExit):
    """A usage error argparse found (exit 2); `_main` prints it as one line."""

    def __init__(self, prog: str, message: str, hint: str) -> None:
        super().__init__(2)
        self.prog, self.message, self.hint = prog, message, hint


class _Help(argparse.HelpFormatter):
    """argparse's layout, without breaking `--dry-run` or `runner-policy.yaml` at a hyphen."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent,
                             subsequent_indent=indent, break_on_hyphens=False)


class Parser(argparse.ArgumentParser):
    """One line per usage error, in flag terms, with the help to read; exit 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str, hint: str = "") -> NoReturn:
        named = re.match(r"argument ([^:/ ]+)[^:]*: (.*)", message, re.DOTALL)
        if named:  # "argument --ttl_sec/--ttl-sec: ..." -> "--ttl_sec: ..."
            message = f"{named.group(1)}: {named.group(2)}"
        raise UsageExit(self.prog, message, hint or f"see `{self.prog} --help`")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            close = nearest(str(value), list(action.choices))
            what = " ".join(self.prog.split()[1:] + ["command"])  # "command", "ledger command"
            raise argparse.ArgumentError(None, f"unknown {what} {value!r}"
                                         + (f"; did you mean {close}?" if close else ""))
        super()._check_value(action, value)


def number(text: str) -> float:
    """A finite number (argparse type): 1e400, inf and nan are usage errors, exit 2."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def in_flag_terms(text: str) -> str:
    """`text` with every spec key a classic flag sets named as that flag:
    "order.qty: must be > 0" -> "--qty: must be > 0", "set order.outside_rth: true to
    send it" -> "pass --outside-rth to send it". Other keys stay as they are."""
    text = _BOOLEAN_KEY.sub(lambda m: f"pass {FLAG_OF_KEY[m.group(1)]}", text)
    text = _KEY_VALUE.sub(lambda m: f"{FLAG_OF_KEY[m.group(1)]} {m.group(2)}", text)
    text = _SIDE.sub(r"use --side \1", text)
    return _KEY.sub(lambda m: FLAG_OF_KEY.get(m.group(1), m.group(1)), text)


def for_source(source: str, text: str) -> str:
    """A message about a spec, in flag terms when the spec came from the classic flags."""
    return in_flag_terms(text) if source == COMMAND_LINE else text


def either(choices: Sequence[str]) -> str:
    """"BUY or SELL", "IOC, DAY or GTC"."""
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def nearest(word: str, choices: Sequence[str]) -> str | None:
    """The choice `word` was most likely meant to be, or None."""
    folded = {c.upper(): c for c in choices}
    close = difflib.get_close_matches(word.upper(), list(folded), n=1, cutoff=0.5)
    return folded[close[0]] if close else None


def choice(choices: Sequence[str], fold: Callable[[str], str] = str.upper) -> Callable[[str], str]:
    """An argparse type: `fold(text)` if it is one of `choices`, else a usage error that
    names them and the nearest: "'BYU' is not BUY or SELL; did you mean BUY?"."""

    def parse(text: str) -> str:
        value = fold(text)
        if value in choices:
            return value
        close = nearest(text, choices)
        raise argparse.ArgumentTypeError(f"{text!r} is not {either(choices)}"
                                         + (f"; did you mean {close}?" if close else ""))

    parse.__name__ = "|".join(choices)  # what argparse would call the type
    return parse


def symbol(text: str) -> str:
    """An argparse type: the symbol as IB reads it (upper case); the spec checks the rest."""
    return text.upper()


def run_request(args: argparse.Namespace, environ: Mapping[str, str]
                ) -> tuple[str | Spec, RunOptions]:
    """`run` and the classic commands as plain values for runner.run: what to run (the
    spec file's path, or the spec the classic flags make) and how."""
    from runner.errors import UsageError
    from runner.run import RunOptions

    opts = RunOptions(
        dry_run=args.dry_run, live=args.live, at=args.at, out_dir=getattr(args, "out_dir", None),
        allow_duplicate=args.allow_duplicate, allow_outside=args.allow_outside,
        allow_unsettled=args.allow_unsettled, as_json=args.json, verbose=args.verbose,
        failpoint=environ.get("RUNNER_FAILPOINT", ""), policy=getattr(args, "policy", None))
    if args.command == "run":
        return str(args.spec), opts
    if args.live:
        raise UsageError("the classic commands are paper-only",
                         "write a spec with mode: live and use `runner run SPEC --live`")
    return classic_spec(args), opts


def classic_spec(args: argparse.Namespace) -> Spec:
    """The classic flags as a spec built in memory; the same checks as a file, their
    messages naming the flags (`--qty`, not `order.qty`). Paths typed here are the user's
    own, used as typed (DESIGN §2): the inside-the-project rule is for spec files."""
    from runner.errors import SpecError
    from runner.spec import from_mapping

    if args.command == "handshake":
        return from_mapping({"version": 1, "kind": "handshake"})
    qty = 1 if args.qty is None else args.qty  # --qty typed is kept, beside --cash-qty too
    order: dict[str, Any] = {"symbol": args.symbol, "side": args.side, "qty": _num(qty)}
    data: dict[str, Any] = {"version": 1, "kind": args.command, "order": order,
                            "out_dir": args.out_dir}  # typed_path: ~ expanded
    if args.tag:
        order["tag"] = args.tag
    if args.account is not None:  # "" too: refused by the spec's pattern, never dropped
        order["account"] = args.account
    if args.limit is not None:
        order["limit"] = _num(args.limit)
    if args.outside_rth:
        order["outside_rth"] = True
    if args.bars_path:
        data["bars_path"] = args.bars_path  # typed_path: ~ expanded
    if args.command == "one-shot":
        order["tif"] = args.tif
        _order_type(args, order)
        if args.limit is None:
            order["allow_market"] = True  # the classic tool: no --limit means a market order
        data["ttl_sec"] = _num(args.ttl_sec)
        if args.arrival:
            data["arrival"] = args.arrival
    from runner.instrumentflags import with_contract

    with_contract(args, data)
    try:
        return from_mapping(data, allow_outside=True, typed=True)
    except SpecError as e:
        raise SpecError([in_flag_terms(line) for line in e.lines]) from None


def account_flag(p: argparse.ArgumentParser) -> None:
    """sanity-cancel's and one-shot's --account (the spec's order.account)."""
    p.add_argument("--account", metavar="ACCT",
                   help="the IB account the order is for, e.g. DU1234567; needed when the "
                   "gateway manages several (default: the gateway's one account)")


def order_type_flags(p: argparse.ArgumentParser, types: Sequence[str]) -> None:
    """one-shot's flags for IB's other order types (runner.ordertypes) and GTD."""
    p.add_argument("--type", type=choice(types, _type_name), metavar="TYPE",
                   help=f"IB's order type, any case, '-' for a space: {either(types)} "
                   "(default: LMT with --limit, MKT without)")
    for flag, key, metavar, text in TYPE_FLAGS:
        spelled = "--" + flag[2:].replace("-", "_")  # --trail_amount too
        p.add_argument(*dict.fromkeys((flag, spelled)), dest=key, type=number,
                       metavar=metavar, help=text)
    p.add_argument("--good-till", "--good_till", dest="good_till", metavar="TIME",
                   help="GTD: when the order expires at IB, ISO 8601 with an offset or epoch "
                   "seconds; makes a DAY order GTD (the TTL backstop still ends it earlier)")


def _type_name(text: str) -> str:
    return " ".join(text.upper().replace("-", " ").replace("_", " ").split())


def _order_type(args: argparse.Namespace, order: dict[str, Any]) -> None:
    """The newer order types' flags into the spec's order (one-shot)."""
    if getattr(args, "type", None):
        order["type"] = args.type
    for _, key, _, _ in TYPE_FLAGS:
        if getattr(args, key, None) is not None:
            order[key] = _num(getattr(args, key))
    if "cash_qty" in order and args.qty is None:  # no --qty typed: the cash is the size
        del order["qty"]
    if getattr(args, "good_till", None):
        order["good_till"] = args.good_till
        if order["tif"] == "DAY":
            order["tif"] = "GTD"


def _num(x: Any) -> Any:
    """A whole float as an int (qty 1, not 1.0: as typed); anything else as it is."""
    return int(x) if isinstance(x, float) and x == int(x) else x
