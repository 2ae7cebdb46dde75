"""`runner gateway`: serve a fake TWS gateway until Ctrl-C or SIGTERM.

`runner.cli` hands this its arguments before its own error boundary, so this
command prints its own errors and returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from runner.errors import RunnerError
from runner.gateway.contracts import HOURS_MODES
from runner.gateway.scenario import Scenario, load_scenario
from runner.gateway.server import FakeGateway
from runner.gateway.wire import SERVER_VERSION
from runner.redact import redact


def _port(text: str) -> int:
    """A TCP port, 0-65535 (0: any free one)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535)")
    return port


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="runner gateway",
        description="A fake IB gateway (TWS API, server version 178) for offline rehearsal.")
    p.add_argument("--port", type=_port, default=7497,
                   help="0 picks a free port (default 7497, where runner connects by default)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (nothing here is authenticated)")
    p.add_argument("--bars", metavar="FILE",
                   help="1 s bars Parquet: fill orders against them and serve market data "
                   "(snapshots, 1 s historical bars) from them")
    p.add_argument("--symbol", metavar="SYM",
                   help="with --bars: the symbol whose rows to serve, when the file has a "
                   "symbol column of several symbols")
    p.add_argument("--account", action="append", metavar="ACCT",
                   help="managed account, repeatable (default DU1234567; U… is a live one)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="bar seconds per wall second in bars mode (default 1)")
    p.add_argument("--participation", type=float, default=0.10,
                   help="share of a bar's volume an order may take (default 0.10)")
    p.add_argument("--read-only", action="store_true", help="answer as a Read-Only API would")
    p.add_argument("--script", metavar="FILE",
                   help="a YAML scenario: how the gateway treats each order (by orderRef), "
                   "misbehaving like a real one; see docs/gateway-scripts.md")
    p.add_argument("--hours", choices=HOURS_MODES, default="open",
                   help="contracts' liquid hours: open (always, the default), regular "
                   "(09:30-16:00 New York, weekdays) or closed")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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

        bars = load_bars(args.bars, args.symbol)
    gateway = FakeGateway(
        args.host, args.port, tuple(args.account or ("DU1234567",)), bars,
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
