"""Command line: parse, dispatch, and the one error boundary.

Exit codes (DESIGN §2): 0 ok; 2 invalid spec or usage, or a pre-trade gate refused
(nothing sent, no ledger row); 3 gateway unreachable or
refused; 4 order rejected or an `expect:` failed; 1 anything unexpected;
130/143 interrupted by Ctrl-C/SIGTERM after the live order was cancelled.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from collections.abc import Sequence

from runner import __version__
from runner.errors import RunnerError, SpecError

EPILOG = ("exit codes: 0 ok, 2 invalid spec/usage or refused by a gate (nothing sent), "
          "3 gateway, 4 rejected/expect failed, 1 other")
TEST_EPILOG = ("exit codes: 0 every case passed (skips allowed), 4 any failed, else 2 any "
               "errored (1 if an error was unexpected), 2 nothing to test or bad usage")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"runner: {message} (see `runner {self.prog.split()[-1]} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="more detail; tracebacks on unexpected errors")
    p.add_argument("--show-account", action="store_true", default=argparse.SUPPRESS,
                   help="print account ids in full (they are masked, DU****567, by default)")


def _policy_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", metavar="FILE", help="one more pre-trade policy to apply, on "
                   "top of every runner-policy.yaml from the spec's folder up to /")


def _run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", "--dry_run", action="store_true",
                   help="run against the built-in simulator; nothing reaches IB")
    p.add_argument("--live", action="store_true",
                   help="second key for live trading (the spec must say mode: live too)")
    p.add_argument("--at", metavar="TIME",
                   help="start time (ISO 8601 with offset, or epoch s); fixes generated tags")
    p.add_argument("--allow-duplicate", action="store_true",
                   help="place even if the tag is already in today's ledger")
    p.add_argument("--allow-unsettled", action="store_true",
                   help="place even while an earlier order in the ledger root is UNSETTLED "
                   "or UNKNOWN (may still work at IB)")
    p.add_argument("--allow-outside", action="store_true",
                   help="allow a spec's bars_path/out_dir outside its project root "
                   "(the folder with .git above the spec)")
    p.add_argument("--json", action="store_true", help="print one JSON result object")
    _policy_flag(p)


@functools.cache  # building it costs ~10 ms; one process may call main() many times
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="runner", description="Declarative order runner for Interactive "
                     "Brokers: validate, plan and run YAML specs.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"runner {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more detail; tracebacks on unexpected errors")
    parser.add_argument("--show-account", action="store_true",
                        help="print account ids in full (they are masked, DU****567, by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("validate", help="check specs (schema + semantics); no side effects",
                       description="Check spec files and folders (*.yaml, *.yml, recursively). "
                       "Exit 0 if all are valid, 2 otherwise.", epilog=EPILOG)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--allow-outside", action="store_true",
                   help="allow a spec's bars_path/out_dir outside its project root "
                   "(the folder with .git above the spec)")
    p.add_argument("--json", action="store_true", help="print one JSON result object")
    _policy_flag(p)
    _verbose(p)

    p = sub.add_parser("plan", help="compile a spec and print the plan; nothing is sent",
                       description="Compile SPEC into its plan: every value resolved "
                       "(connection from IB_GATEWAY_HOST/PORT, IB_CLIENT_ID; tag; TTL).",
                       epilog=EPILOG)
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--json", action="store_true", help="machine-readable plan (stable)")
    p.add_argument("--at", metavar="TIME",
                   help="plan start (ISO 8601 with offset, or epoch s); fixes generated tags")
    p.add_argument("--allow-outside", action="store_true",
                   help="allow a spec's bars_path/out_dir outside its project root "
                   "(the folder with .git above the spec)")
    p.add_argument("--broker", action="store_true",
                   help="connect and add IB's what-if preview (margin, commission, warnings) "
                   "and the gates that need the broker; no order is created")
    _policy_flag(p)
    _verbose(p)

    p = sub.add_parser("run", help="execute a spec (IB, or the simulator with --dry-run)",
                       description="Compile SPEC and execute its plan. Paper by default.",
                       epilog=EPILOG)
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--out-dir", "--out_dir", dest="out_dir", help="ledger root (overrides spec)")
    _run_flags(p)
    _verbose(p)

    p = sub.add_parser("test", help="run specs' expect: blocks on the simulator",
                       description="Run every spec document with an expect: block on the "
                       "simulator and report like a test suite: passed, failed (an expect: "
                       "not met), errored (invalid spec or bars, refused by a gate, "
                       "unexpected error) and skipped (no expect: block).", epilog=TEST_EPILOG)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML here")
    p.add_argument("--out-dir", "--out_dir", dest="out_dir",
                   help="ledger root for scenario runs (default: a temporary folder)")
    p.add_argument("--json", action="store_true", help="print one JSON result object")
    _policy_flag(p)
    _verbose(p)

    p = sub.add_parser("ledger", help="read the ledger")
    lsub = p.add_subparsers(dest="ledger_command", metavar="SUBCOMMAND", parser_class=_Parser)
    ls = lsub.add_parser("show", help="the day's events, readable")
    ls.add_argument("target", nargs="?", metavar="LEDGER|DATE")
    ls.add_argument("--out-dir", "--out_dir", dest="out_dir", default="data/exec")
    ls.add_argument("--json", action="store_true")
    _verbose(ls)
    lq = lsub.add_parser("query", help="SQL over every day of the ledger (DuckDB; extra sql)",
                         description="Run SQL with DuckDB over all days in --out-dir as the "
                         "view `ledger` (the ledger's columns plus `date`), e.g. "
                         "\"SELECT date, symbol, sum(last_qty) FROM ledger WHERE event IN "
                         "('PARTIAL', 'FILL') GROUP BY ALL ORDER BY ALL\"")
    lq.add_argument("sql", metavar="SQL")
    lq.add_argument("--out-dir", "--out_dir", dest="out_dir", default="data/exec")
    lq.add_argument("--json", action="store_true", help="{version, columns, rows}")
    _verbose(lq)

    p = sub.add_parser("tca", help="transaction-cost summary per order and per currency",
                       epilog=EPILOG)
    p.add_argument("target", nargs="?", metavar="LEDGER|DATE")
    p.add_argument("--out-dir", "--out_dir", dest="out_dir", default="data/exec")
    p.add_argument("--from", dest="from_day", metavar="YYYY-MM-DD",
                   help="the day folders of --out-dir from this day (inclusive)")
    p.add_argument("--to", dest="to_day", metavar="YYYY-MM-DD",
                   help="... up to this day (inclusive)")
    p.add_argument("--symbol", help="only this symbol's orders")
    p.add_argument("--tag", help="only this tag's orders (or a glob: 'probe*')")
    p.add_argument("--side", type=str.upper, choices=("BUY", "SELL"), help="only BUY or SELL")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="DIR", help="also write one PNG per order here "
                   "(matplotlib; extra plot)")
    p.add_argument("--bars", metavar="FILE", help="bars for --plot (default: the bars_path "
                   "the ledger recorded, else data/live/DAY/bars1s_SYMBOL.parquet)")
    _verbose(p)

    p = sub.add_parser("recover", help="settle orders left without an end by a crash",
                       description="Find the orders with an INTENT but no final event "
                       "(their run died, or left them UNSETTLED or UNKNOWN), ask the gateway what "
                       "became of them, record it, and cancel those still working past their "
                       "deadline.", epilog=EPILOG)
    p.add_argument("--out-dir", "--out_dir", dest="out_dir", default="data/exec")
    p.add_argument("--date", help="YYYY-MM-DD (default: today, any day with journals left "
                   "and any day with an unsettled order)")
    p.add_argument("--cancel-all", action="store_true",
                   help="cancel every orphan still working, deadline passed or not")
    _verbose(p)

    _classic(sub)

    sub.add_parser("gateway", help="fake TWS gateway for offline rehearsal (loopback); "
                   "see `runner gateway --help`")
    return parser


def number(text: str) -> float:
    """A finite number (argparse type): 1e400, inf and nan are usage errors, exit 2."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _classic(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("handshake", help="is the gateway there?  -> IBKR handshake OK")
    _run_flags(p)
    _verbose(p)

    p = sub.add_parser("sanity-cancel", help="place a far-from-market limit order, cancel it")
    p.add_argument("--symbol", default="SPY")
    p.add_argument("--side", choices=("BUY", "SELL"), default="BUY")
    p.add_argument("--qty", type=number, default=1)
    p.add_argument("--limit", type=number, default=0.01)
    _classic_common(p)

    p = sub.add_parser("one-shot", help="one order with a time-to-live")
    p.add_argument("--symbol", default="SPY")
    p.add_argument("--side", choices=("BUY", "SELL"), default="BUY")
    p.add_argument("--qty", type=number, default=1)
    p.add_argument("--limit", type=number, help="limit price (market order when absent)")
    p.add_argument("--tif", choices=("IOC", "DAY", "GTC"), default="DAY")
    p.add_argument("--bars_path", "--bars-path", dest="bars_path")
    p.add_argument("--arrival", choices=("bars", "broker"),
                   help="where the arrival price comes from: bars (the bars file, the "
                   "default with --bars_path) or broker (IB's snapshot at the INTENT, "
                   "post-trade VWAP from IB's 1-second bars)")
    p.add_argument("--ttl_sec", "--ttl-sec", dest="ttl_sec", type=number, default=3)
    _classic_common(p)


def _classic_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tag")
    p.add_argument("--out_dir", "--out-dir", dest="out_dir", default="data/exec")
    _run_flags(p)
    _verbose(p)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe() -> int:
    """The reader went away (`runner plan ... | head`): stop quietly, as SIGPIPE would
    (exit 141), with stdout pointed at /dev/null so the final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


def _main(argv: list[str]) -> int:
    if argv[:1] == ["gateway"]:  # its own parser: `runner gateway --help` shows its flags
        from runner.gateway import main as gateway_main

        return gateway_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from runner.redact import print_traceback, redacted_output

    with redacted_output(enabled=not args.show_account):  # account ids: DU****567
        try:
            return _dispatch(args)
        except SpecError as e:
            print(str(e), file=sys.stderr)
            return e.exit_code
        except RunnerError as e:
            print(f"runner: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            print("runner: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            raise  # not a bug: main stops quietly
        except Exception as e:  # the boundary: anything else is a bug, shown briefly
            if args.verbose:  # printed here, not re-raised: Python would print it after
                print_traceback(e)  # the redacting stream is gone, ids in the clear
                return 1
            print(f"runner: unexpected error: {type(e).__name__}: {e} "
                  "(run with -v for the traceback)", file=sys.stderr)
            return 1


def _dispatch(args: argparse.Namespace) -> int:
    from runner import commands

    env = dict(os.environ)
    if args.command == "validate":
        return commands.validate(args.paths, allow_outside=args.allow_outside,
                                 as_json=args.json, policy=args.policy)
    if args.command == "plan":
        return commands.plan(args.spec, as_json=args.json, at=args.at, environ=env,
                             allow_outside=args.allow_outside, policy=args.policy,
                             broker=args.broker, verbose=args.verbose)
    if args.command == "ledger":
        from runner import report

        if args.ledger_command == "query":
            from runner.query import ledger_query

            return ledger_query(args.sql, args.out_dir, args.json)
        if args.ledger_command != "show":
            raise _usage("ledger needs a subcommand: show or query")
        return report.ledger_show(args.target, args.out_dir, args.json)
    if args.command == "tca":
        from runner import report
        from runner.tca import Selection

        days = report.day_range(args.from_day, args.to_day)
        select = Selection(args.tag, args.symbol, args.side)
        if args.plot:
            from runner.plot import check_folder

            check_folder(args.plot)  # refused before the report is printed
        code = report.tca_report(args.target, args.out_dir, args.json, days=days, select=select)
        if code or not args.plot:
            return code
        from runner.plot import tca_plot

        return tca_plot(args.target, args.out_dir, args.plot, args.bars, days=days, select=select)
    if args.command == "recover":
        from runner.plan import connection_from_env
        from runner.recover import recover

        return recover(args.out_dir, args.date, args.cancel_all, connection_from_env(env),
                       args.verbose)
    if args.command == "test":
        from runner.scenarios import test

        return test(args.paths, junit=args.junit, out_dir=args.out_dir, as_json=args.json,
                    environ=env, policy=args.policy)
    from runner.run import run_command

    return run_command(args, env)


def _usage(message: str) -> RunnerError:
    from runner.errors import UsageError

    return UsageError(message)
