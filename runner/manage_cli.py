"""The command line of `runner orders`, `runner cancel TAG` and `runner positions`: their
parsers and their dispatch, registered by runner.cli (kept apart so that cli.py stays
small). The commands themselves are runner.manage and runner.cancel."""

from __future__ import annotations

import argparse
from collections.abc import Callable

CONNECTION = "connection from IB_GATEWAY_HOST/PORT, IB_CLIENT_ID"
EPILOG = "exit codes: 0 ok, 2 usage, 3 gateway unreachable or refused, 1 other"
CANCEL_EPILOG = (
    "exit codes: 0 cancelled (and recorded), 2 refused before anything was sent (a tag "
    "runner did not place without --any, several orders without --all, none working, one "
    "a live run works), 3 gateway unreachable, or the cancel refused or not confirmed (the "
    "order is still working), 4 the order filled (or went inactive) before the cancel took, "
    "1 other")


Flag = Callable[..., None]  # cli's helper that adds a flag every command shares


def add_parsers(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
                json_flag: Flag, out_dir_flag: Flag, verbose_flags: Flag) -> None:
    """The three parsers; the `*_flag(s)` add cli's shared flags to one of them."""

    p = sub.add_parser("orders", help="what is working at the gateway now (every client's)",
                       description="List every client's working orders at the gateway "
                       f"({CONNECTION}), one line each; those whose orderRef is a tag "
                       "runner placed (an INTENT under --out-dir) are marked `runner`. "
                       "Nothing is sent that changes an order.", epilog=EPILOG)
    out_dir_flag(p, "ledger root whose tags are runner's")
    json_flag(p)
    verbose_flags(p)

    p = sub.add_parser("cancel", help="cancel the working order with this tag, and record it",
                       description="Cancel the one working order whose orderRef is TAG, "
                       "from a session with the client id that placed it, and record what "
                       "became of an order runner placed in its ledger (the CANCEL row of "
                       "the run that placed it). The connection comes from IB_GATEWAY_HOST/"
                       "PORT and IB_CLIENT_ID; IB_CANCEL_TIMEOUT (10 s) "
                       "bounds the wait for the gateway's answer.", epilog=CANCEL_EPILOG)
    p.add_argument("tag", metavar="TAG", help="the order's orderRef (runner's tag)")
    out_dir_flag(p, "ledger root the tag's INTENT is looked for in")
    p.add_argument("--any", dest="any_tag", action="store_true",
                   help="also an order runner did not place, recorded nowhere (default: "
                   "refused, nothing sent)")
    p.add_argument("--all", dest="all_matching", action="store_true",
                   help="cancel every working order with this orderRef (default: refused, "
                   "listing them)")
    json_flag(p)
    verbose_flags(p)

    p = sub.add_parser("positions", help="every account's positions at the gateway",
                       description=f"List every account's positions ({CONNECTION}), one "
                       "line per account and contract: the position, its average cost (per "
                       "unit, as IB reports it: x the multiplier) and the multiplier where "
                       "it is not 1. Nothing is sent that changes an order.", epilog=EPILOG)
    json_flag(p)
    verbose_flags(p)


def dispatch(args: argparse.Namespace, env: dict[str, str]) -> int:
    """Run the command; an error of `cancel` names its TAG (for --json)."""
    from runner.errors import RunnerError

    try:
        return _run(args, env)
    except RunnerError as e:
        raise e.about(tag=getattr(args, "tag", None)) from None


def _run(args: argparse.Namespace, env: dict[str, str]) -> int:
    from runner.plan import connection_from_env

    connection = connection_from_env(env)
    if args.command == "orders":
        from runner.manage import orders

        return orders(args.out_dir, connection, args.json, args.verbose)
    if args.command == "positions":
        from runner.manage import positions

        return positions(connection, args.json, args.verbose)
    from runner.cancel import cancel

    return cancel(args.tag, args.out_dir, connection, args.any_tag, args.all_matching,
                  args.json, args.verbose)
