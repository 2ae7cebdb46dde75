"""`runner gateway`: serve a fake TWS gateway until Ctrl-C or SIGTERM.

`runner.cli` hands this its arguments before its own error boundary, so this
command prints its own errors and returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from runner.errors import DataError, RunnerError
from runner.flags import choice
from runner.gateway.contracts import HOURS_MODES
from runner.gateway.scenario import Scenario, load_scenario
from runner.gateway.server import DEFAULT_ACCOUNT, FakeGateway
from runner.gateway.wire import SERVER_VERSION
from runner.redact import redact

HELP = "see `runner gateway --help`"


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, in flag terms, with the help to read; exit 2."""

    def error(self, message: str) -> NoReturn:
        named = re.match(r"argument ([^:/ ]+)[^:]*: (.*)", message, re.DOTALL)
        if named:  # "argument --port: ..." -> "--port: ..."
            message = f"{named.group(1)}: {named.group(2)}"
        print(f"runner gateway: {message} ({HELP})", file=sys.stderr)
        raise SystemExit(2)


def _port(text: str) -> int:
    """A TCP port, 0-65535 (0: any free one)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return port


def _speed(text: str) -> float:
    """Bar seconds per wall second: a finite number > 0."""
    value = _float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a speed (a number > 0)")
    return value


def _share(text: str) -> float:
    """A share of a bar's volume, in (0, 1] as the simulator takes it."""
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share in (0, 1]")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="runner gateway",
        description="A fake IB gateway (TWS API, server version 178) for offline rehearsal. "
        "It serves until Ctrl-C or SIGTERM.",
        epilog="exit codes: 0 stopped, 2 usage or unusable --bars/--script, "
        "3 cannot listen (e.g. the port is taken)")
    p.add_argument("--port", type=_port, default=7497,
                   help="TCP port to listen on; 0 picks a free one (default: %(default)s, "
                   "where runner connects by default)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on, a loopback one unless --allow-remote "
                   "(default: %(default)s)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host; nothing here is authenticated "
                   "(default: off)")
    p.add_argument("--bars", metavar="FILE",
                   help="1 s bars Parquet: fill orders against them and serve market data "
                   "(snapshots, 1 s historical bars) from them (default: none; orders "
                   "rest unfilled unless scripted, market data requests get 354 / 162)")
    p.add_argument("--symbol", metavar="SYM",
                   help="with --bars: the symbol whose rows to serve, when the file has a "
                   "symbol column of several symbols (default: none, the file's one symbol)")
    p.add_argument("--account", action="append", metavar="ACCT",
                   help="managed account, repeatable; U... is a live one; an order naming "
                   "another, or none where there are several, gets IB's 321 "
                   f"(default: {DEFAULT_ACCOUNT}, a paper one)")
    p.add_argument("--speed", type=_speed, default=1.0,
                   help="with --bars: bar seconds per wall second (default: %(default)s)")
    p.add_argument("--participation", type=_share, default=0.10,
                   help="with --bars: share of a bar's volume an order may take, in (0, 1] "
                   "(default: %(default)s)")
    p.add_argument("--read-only", action="store_true",
                   help="answer as a Read-Only API would: placeOrder and reqOpenOrders get 321 "
                   "(default: off)")
    p.add_argument("--script", metavar="FILE",
                   help="a YAML scenario: how the gateway treats each order (by orderRef), "
                   "misbehaving like a real one; see docs/gateway-scripts.md (default: none; "
                   "every order is acknowledged, then rests or fills from --bars)")
    p.add_argument("--hours", type=choice(HOURS_MODES, str.lower), default="open",
                   metavar="|".join(HOURS_MODES),
                   help="contracts' liquid hours: open (always), regular (09:30-16:00 New "
                   "York, weekdays) or closed (default: %(default)s)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.symbol is not None and args.bars is None:
        parser.error("--symbol: only with --bars (it picks the rows of the bars file)")
    try:
        gateway = _gateway(args)
        return asyncio.run(_serve(gateway))
    except RunnerError as e:
        print(f"runner gateway: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # e.g. the port is taken
        print(f"runner gateway: cannot listen on {args.host}:{args.port}: {e.strerror or e}",
              file=sys.stderr)
        return 3


def _gateway(args: argparse.Namespace) -> FakeGateway:
    scenario = load_scenario(args.script) if args.script else Scenario()  # checked first
    bars = None
    if args.bars:
        from runner.bars import load_bars

        try:
            bars = load_bars(args.bars, args.symbol)
        except DataError as e:  # its hints name the spec key; here it is the flag
            raise DataError(e.message, e.hint.replace("bars_path", "--bars")) from None
    gateway = FakeGateway(
        args.host, args.port, tuple(args.account or (DEFAULT_ACCOUNT,)), bars,
        read_only=args.read_only, speed=args.speed, participation=args.participation,
        allow_remote=args.allow_remote, hours=args.hours, sync_delay=scenario.sync_delay,
    )
    gateway.engine.scripts.update(scenario.scripts)
    return gateway


async def _serve(gateway: FakeGateway) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with gateway:
        accounts = redact(",".join(gateway.accounts))  # fake ids, masked like every output
        print(f"fake TWS gateway listening on {gateway.host}:{gateway.port} "
              f"(server version {SERVER_VERSION}, account {accounts})", flush=True)
        if gateway.engine.scripts:
            refs = ", ".join("*" if r is None else r for r in gateway.engine.scripts)
            print(f"scripted orders: {refs}", flush=True)
        await stop.wait()
    return 0
