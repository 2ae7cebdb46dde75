"""Command line: parse, dispatch, and the one error boundary.

Exit codes (DESIGN §2): 0 ok; 2 invalid spec or usage, or a pre-trade gate refused
(nothing sent, no ledger row); 3 gateway unreachable or
refused; 4 order rejected or an `expect:` failed; 1 anything unexpected;
130/143 interrupted by Ctrl-C/SIGTERM after the live order was cancelled.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
from collections.abc import Sequence

from runner import __version__
from runner.errors import RunnerError, SpecError
from runner.flags import Parser, UsageExit, account_flag, choice, number, order_type_flags, symbol
from runner.instrumentflags import contract_flags
from runner.ordertypes import TYPES
from runner.paths import default_out_dir, typed_path
from runner.terminal import fit_streams

EPILOG = ("exit codes: 0 ok, 2 invalid spec/usage or refused by a gate (nothing sent), "
          "3 gateway, 4 rejected/expect failed, 1 other")
TEST_EPILOG = ("exit codes: 0 every case passed (skips allowed), 4 any failed, else 2 any "
               "errored (1 if an error was unexpected), 2 nothing to test or bad usage")
SIDES, TIFS, SCHEMAS = ("BUY", "SELL"), ("IOC", "DAY", "GTC", "GTD", "OPG", "FOK"), \
    ("spec", "policy")
CLASSIC = ("handshake", "sanity-cancel", "one-shot")


def _verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="more detail; tracebacks on unexpected errors")
    p.add_argument("--show-account", action="store_true", default=argparse.SUPPRESS,
                   help="print account ids in full (they are masked, DU****567, by default)")


def _json(p: argparse.ArgumentParser, what: str = "print one JSON result object") -> None:
    p.add_argument("--json", action="store_true", help=what)


def _policy_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", metavar="FILE", type=typed_path, help="one more pre-trade "
                   "policy to apply, on top of every runner-policy.yaml from the spec's folder "
                   "up to / (default: none)")


def _outside(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-outside", action="store_true",
                   help="allow a spec's bars_path/out_dir outside its project root "
                   "(the folder with .git above the spec)")


def _at(p: argparse.ArgumentParser) -> None:
    p.add_argument("--at", metavar="TIME", help="start time of a dry run (ISO 8601 with "
                   "offset, or epoch s); fixes generated tags (default: the spec's at:, else "
                   "the end of the first bar with bars, else now)")


def _dry_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", "--dry_run", action="store_true",
                   help="run against the built-in simulator; nothing reaches IB")


def _order_flags(p: argparse.ArgumentParser) -> None:
    """What `run` and the order-placing classic commands share."""
    _dry_run(p)
    _at(p)
    p.add_argument("--allow-duplicate", action="store_true",
                   help="place even if the tag is already in today's ledger")
    p.add_argument("--allow-unsettled", action="store_true",
                   help="place even while an earlier order in the ledger root is UNSETTLED "
                   "or UNKNOWN (may still work at IB)")
    _json(p)
    _policy_flag(p)
    _verbose(p)


def _targets(p: argparse.ArgumentParser) -> None:
    """`ledger show` and `tca`: which ledger."""
    p.add_argument("target", nargs="?", metavar="LEDGER|DATE", help="a ledger file or "
                   "day folder, or a day YYYY-MM-DD under --out-dir (default: the newest day)")
    _out_dir(p, "ledger root the days are read from")


PROJECT_DATA_EXEC = object()  # --out-dir not typed: data/exec of the project root (below)
_PROJECT_DEFAULT = (" (default: data/exec in the project root: the nearest folder with .git "
                    "at or above the working directory, else the working directory)")


def _out_dir(p: argparse.ArgumentParser, what: str, default: str | None = "data/exec") -> None:
    p.add_argument("--out-dir", "--out_dir", dest="out_dir", type=typed_path, metavar="DIR",
                   default=PROJECT_DATA_EXEC if default else None,
                   help=what + (_PROJECT_DEFAULT if default else ""))


@functools.cache  # building it costs ~10 ms; one process may call main() many times
def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="runner", description="Declarative order runner for Interactive "
                     "Brokers: validate, plan and run YAML specs.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"runner {__version__}",
                        help="print runner's version and exit")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more detail; tracebacks on unexpected errors")
    parser.add_argument("--show-account", action="store_true",
                        help="print account ids in full (they are masked, DU****567, by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser,
                                help="what to do (each has its own --help)")

    p = sub.add_parser("validate", help="check specs (schema + semantics); no side effects",
                       description="Check spec files and folders (*.yaml, *.yml, recursively). "
                       "Exit 0 if all are valid, 2 otherwise.", epilog=EPILOG)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="spec files, and folders searched for *.yaml and *.yml")
    _outside(p)
    _json(p)
    _policy_flag(p)
    _verbose(p)

    p = sub.add_parser("plan", help="compile a spec and print the plan; nothing is sent",
                       description="Compile SPEC into its plan: every value resolved "
                       "(connection from IB_GATEWAY_HOST/PORT, IB_CLIENT_ID; tag; TTL).",
                       epilog=EPILOG)
    p.add_argument("spec", metavar="SPEC", help="the spec file (one or more YAML documents)")
    _json(p, "machine-readable plan (stable)")
    p.add_argument("--at", metavar="TIME",
                   help="plan start (ISO 8601 with offset, or epoch s); fixes generated tags "
                   "(default: the spec's at:, else now; not with --broker)")
    _outside(p)
    p.add_argument("--broker", action="store_true",
                   help="connect and add IB's what-if preview (margin, commission, warnings) "
                   "and the gates that need the broker; no order is created")
    _policy_flag(p)
    _verbose(p)

    p = sub.add_parser("run", help="execute a spec (IB, or the simulator with --dry-run)",
                       description="Compile SPEC and execute its plan. Paper by default.",
                       epilog=EPILOG)
    p.add_argument("spec", metavar="SPEC", help="the spec file; its documents run in order, "
                   "all or nothing")
    _out_dir(p, "ledger root (overrides the spec's out_dir)", None)
    p.add_argument("--live", action="store_true",
                   help="second key for live trading (the spec must say mode: live too)")
    _outside(p)
    _order_flags(p)

    p = sub.add_parser("test", help="run specs' expect: blocks on the simulator",
                       description="Run every spec document with an expect: block on the "
                       "simulator and report like a test suite: passed, failed (an expect: "
                       "not met), errored (invalid spec or bars, refused by a gate, "
                       "unexpected error) and skipped (no expect: block).", epilog=TEST_EPILOG)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="spec files, and folders searched for *.yaml and *.yml")
    p.add_argument("--junit", metavar="FILE", type=typed_path,
                   help="also write JUnit XML here (default: none)")
    _out_dir(p, "ledger root for scenario runs (default: a temporary folder)", None)
    _json(p)
    _policy_flag(p)
    _verbose(p)

    p = sub.add_parser("ledger", help="read the ledger", description="Read the ledger: "
                       "`show` one day's events, `query` SQL over every day.", epilog=EPILOG)
    lsub = p.add_subparsers(dest="ledger_command", metavar="SUBCOMMAND", parser_class=Parser,
                            help="show or query")
    ls = lsub.add_parser("show", help="the day's events, readable", epilog=EPILOG)
    _targets(ls)
    _json(ls, "print the events as one JSON document")
    _verbose(ls)
    lq = lsub.add_parser("query", help="SQL over every day of the ledger (DuckDB; extra sql)",
                         description="Run SQL with DuckDB over all days in --out-dir as the "
                         "view `ledger` (the ledger's columns plus `date`), e.g. "
                         "\"SELECT date, symbol, sum(last_qty) FROM ledger WHERE event IN "
                         "('PARTIAL', 'FILL') GROUP BY ALL ORDER BY ALL\"", epilog=EPILOG)
    lq.add_argument("sql", metavar="SQL", help="the query; the table is the view `ledger`")
    _out_dir(lq, "ledger root whose days make the view")
    _json(lq, "{version, columns, rows}")
    _verbose(lq)

    p = sub.add_parser("tca", help="transaction-cost summary per order and per currency",
                       epilog=EPILOG)
    _targets(p)
    p.add_argument("--from", dest="from_day", metavar="YYYY-MM-DD",
                   help="the day folders of --out-dir from this day (inclusive) "
                   "(default: the first)")
    p.add_argument("--to", dest="to_day", metavar="YYYY-MM-DD",
                   help="... up to this day (inclusive) (default: the last)")
    p.add_argument("--symbol", type=symbol,
                   help="only this symbol's orders (any case) (default: all)")
    p.add_argument("--tag", help="only this tag's orders (or a glob: 'probe*') "
                   "(default: all)")
    p.add_argument("--side", type=choice(SIDES), metavar="BUY|SELL",
                   help="only BUY or SELL orders (any case) (default: both)")
    _json(p, "print the report as one JSON document")
    p.add_argument("--plot", metavar="DIR", type=typed_path, help="also write one PNG per "
                   "order here (matplotlib; extra plot) (default: no pictures)")
    p.add_argument("--bars", metavar="FILE", type=typed_path, help="bars for --plot (default: "
                   "the bars_path "
                   "the ledger recorded, else data/live/DAY/bars1s_SYMBOL.parquet)")
    _verbose(p)

    p = sub.add_parser("recover", help="settle orders left without an end by a crash",
                       description="Find the orders with an INTENT but no final event "
                       "(their run died, or left them UNSETTLED or UNKNOWN), ask the gateway what "
                       "became of them, record it, and cancel those still working past their "
                       "deadline.", epilog=EPILOG)
    _out_dir(p, "ledger root to look in")
    p.add_argument("--date", metavar="YYYY-MM-DD", help="only this day (default: today, any "
                   "day with journals left and any day with an unsettled order)")
    p.add_argument("--cancel-all", action="store_true",
                   help="cancel every orphan still working, deadline passed or not")
    _verbose(p)

    _classic(sub)
    from runner.manage_cli import add_parsers

    add_parsers(sub, _json, _out_dir, _verbose)  # orders, cancel TAG, positions

    p = sub.add_parser("schema", help="print a JSON Schema: the spec's, or the policy's",
                       description="Print the JSON Schema (draft 2020-12) runner checks "
                       "files against, for an editor's modeline: `runner schema > "
                       "spec.schema.json`.", epilog=EPILOG)
    p.add_argument("name", nargs="?", default="spec", type=choice(SCHEMAS, str.lower),
                   metavar="NAME", help="spec or policy (default: %(default)s)")

    sub.add_parser("gateway", help="fake TWS gateway for offline rehearsal (loopback); "
                   "see `runner gateway --help`")
    return parser


# Flags of `run` a classic command does not take, as `flags.run_request` reads them.
_NOT_CLASSIC = {"live": False, "allow_outside": False}
_NOT_HANDSHAKE = {**_NOT_CLASSIC, "at": None, "allow_duplicate": False,
                  "allow_unsettled": False, "policy": None}


def _classic(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("handshake", help="is the gateway there?  -> IBKR handshake OK",
                       description="Connect to the gateway (IB_GATEWAY_HOST/PORT, "
                       "IB_CLIENT_ID), print `IBKR handshake OK` and disconnect. Paper only.",
                       epilog=EPILOG)
    p.add_argument("--dry-run", "--dry_run", action="store_true",
                   help="answer from the simulator; nothing is contacted")
    _json(p)
    _verbose(p)
    p.set_defaults(**_NOT_HANDSHAKE)

    p = sub.add_parser("sanity-cancel", help="place a far-from-market limit order, cancel it",
                       description="Place a limit order far from the market, wait for IB's "
                       "ACK, cancel it. Paper only.", epilog=EPILOG)
    _classic_order(p, "limit price, far enough from the market that it cannot fill "
                   "(default: %(default)s)", 0.01)
    _classic_common(p)

    p = sub.add_parser("one-shot", help="one order with a time-to-live",
                       description="Place one order, cancel what is left of it after --ttl_sec."
                       " Paper only.", epilog=EPILOG)
    _classic_order(p, "limit price (a market order when absent)", None)
    p.add_argument("--tif", type=choice(TIFS), default="DAY", metavar="|".join(TIFS),
                   help="time in force, any case (default: %(default)s)")
    order_type_flags(p, TYPES)
    p.add_argument("--arrival", type=choice(("bars", "broker"), str.lower), metavar="bars|broker",
                   help="where the arrival price comes from: bars (the bars file, the "
                   "default with --bars_path) or broker (IB's snapshot at the INTENT, "
                   "post-trade VWAP from IB's 1-second bars)")
    p.add_argument("--ttl_sec", "--ttl-sec", dest="ttl_sec", type=number, default=3,
                   metavar="SEC", help="cancel what is left after this many seconds "
                   "(default: %(default)s)")
    _classic_common(p)


def _classic_order(p: argparse.ArgumentParser, limit_help: str, limit: float | None) -> None:
    p.add_argument("--symbol", type=symbol, default="SPY", help="the symbol (an option's: "
                   "its underlying's), any case (default: %(default)s)")
    contract_flags(p)
    p.add_argument("--side", type=choice(SIDES), default="BUY", metavar="BUY|SELL",
                   help="any case (default: %(default)s)")
    p.add_argument("--qty", type=number, default=None,  # None: 1, or the --cash-qty alone
                   help="shares, or contracts (default: 1; none with --cash-qty)")
    p.add_argument("--limit", type=number, default=limit, metavar="PRICE", help=limit_help)


def _classic_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outside-rth", "--outside_rth", dest="outside_rth", action="store_true",
                   help="may work outside regular trading hours (IB's outsideRth)")
    p.add_argument("--bars_path", "--bars-path", dest="bars_path", metavar="FILE",
                   type=typed_path, help="1-second bars (Parquet): the arrival price and the "
                   "gates' reference; the simulator's prices with --dry-run (default: none)")
    p.add_argument("--tag", help="IB's orderRef (default: generated from symbol and time)")
    account_flag(p)
    p.add_argument("--out_dir", "--out-dir", dest="out_dir", type=typed_path, metavar="DIR",
                   default=PROJECT_DATA_EXEC, help="ledger root" + _PROJECT_DEFAULT)
    _order_flags(p)
    p.set_defaults(**_NOT_CLASSIC)


def main(argv: Sequence[str] | None = None) -> int:
    fit_streams()  # any terminal encoding: "—" prints as "-" where it cannot be encoded
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
    try:
        args = _parse(parser, argv)
    except UsageExit as e:
        return _usage_failed(e, argv)
    if getattr(args, "out_dir", None) is PROJECT_DATA_EXEC:
        args.out_dir = default_out_dir()
    if args.command is None:
        parser.print_help()
        return 2
    from runner.redact import print_traceback, redacted_output

    with redacted_output(enabled=not args.show_account):  # account ids: DU****567
        try:
            return _dispatch(args)
        except SpecError as e:
            print(str(e), file=sys.stderr)
            return _failed(args, e, e.exit_code, e.message)
        except RunnerError as e:
            print(f"runner: {e}", file=sys.stderr)
            return _failed(args, e, e.exit_code, e.message, e.hint)
        except KeyboardInterrupt as e:
            print("runner: interrupted", file=sys.stderr)
            return _failed(args, e, 130, "interrupted")
        except BrokenPipeError:
            raise  # not a bug: main stops quietly
        except Exception as e:  # the boundary: anything else is a bug, shown briefly
            message, hint = f"unexpected error: {type(e).__name__}: {e}", \
                "run with -v for the traceback"
            if args.verbose:  # printed here, not re-raised: Python would print it after
                print_traceback(e)  # the redacting stream is gone, ids in the clear
            else:
                print(f"runner: {message} ({hint})", file=sys.stderr)
            return _failed(args, e, 1, message, hint)


def _failed(args: argparse.Namespace, e: BaseException, code: int, message: str,
            hint: str | None = None) -> int:
    """With --json, the failure's one document on stdout (the text went to stderr)."""
    if getattr(args, "json", False):
        from runner.jsondoc import failure
        from runner.output import emit

        emit(failure(_command(args), e, code, message, hint, spec=_spec_arg(args)))
    return code


def _command(args: argparse.Namespace) -> str:
    """The command's name in its JSON document: "run", "tca", "ledger show", ..."""
    if args.command == "ledger":
        return f"ledger {args.ledger_command}"
    return str(args.command)


def _spec_arg(args: argparse.Namespace) -> str | None:
    """The spec the command line names: SPEC, or validate's one PATH."""
    paths = getattr(args, "paths", None) or []
    return getattr(args, "spec", None) or (paths[0] if len(paths) == 1 else None)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """The arguments, or UsageExit; an unknown flag is the chosen command's usage error."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        chosen = _chosen(parser, args)
        if "--live" in extra and args.command in CLASSIC:
            chosen.error("--live: the classic commands are paper-only",
                         "write a spec with mode: live and use `runner run SPEC --live`")
        chosen.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Parser:
    """The (sub)command parser `args` came from."""
    for action in parser._actions:
        name = getattr(args, action.dest, None)
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return _chosen(action.choices[name], args)
    assert isinstance(parser, Parser)
    return parser


def _usage_failed(e: UsageExit, argv: list[str]) -> int:
    """The usage error as one line on stderr and, with --json, as the failure document."""
    from runner.jsondoc import VERSIONS, failed
    from runner.output import emit
    from runner.redact import redacted_output

    with redacted_output(enabled="--show-account" not in argv):
        print(f"runner: {e.message} ({e.hint})", file=sys.stderr)
        if "--json" in argv:
            command = " ".join(e.prog.split()[1:]) or None  # "one-shot", "ledger show"
            if command in VERSIONS:  # the command's own document version
                emit(failed(command, 2, e.message, e.hint))
            else:
                emit({"version": 1, "command": command, "ok": False, "spec": None,
                      "tag": None, "error": {"exit_code": e.code, "message": e.message,
                                             "hint": e.hint}})
    return 2


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
        if not args.plot:
            return report.tca_report(args.target, args.out_dir, args.json, days=days,
                                     select=select)
        # --json: the document is printed once the plots are made, so that an error
        # in between leaves its failure document as the only one
        out = io.StringIO() if args.json else sys.stdout
        code = report.tca_report(args.target, args.out_dir, args.json, out=out, days=days,
                                 select=select)
        if not code:
            from runner.plot import tca_plot

            code = tca_plot(args.target, args.out_dir, args.plot, args.bars, days=days,
                            select=select)
        if isinstance(out, io.StringIO):
            sys.stdout.write(out.getvalue())
        return code
    if args.command == "recover":
        from runner.plan import connection_from_env
        from runner.recover import recover

        return recover(args.out_dir, args.date, args.cancel_all, connection_from_env(env),
                       args.verbose)
    if args.command == "test":
        from runner.scenarios import test

        return test(args.paths, junit=args.junit, out_dir=args.out_dir, as_json=args.json,
                    environ=env, policy=args.policy)
    if args.command in ("orders", "cancel", "positions"):
        from runner.manage_cli import dispatch

        return dispatch(args, env)
    if args.command == "schema":
        from runner.schema import show

        return show(args.name)
    from runner.flags import run_request
    from runner.run import run_command

    source, opts = run_request(args, env)
    return run_command(args.command, source, opts, env)


def _usage(message: str) -> RunnerError:
    from runner.errors import UsageError

    return UsageError(message)
