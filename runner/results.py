"""What `runner run` and the classic commands print: the status line (a handshake's
lines), the notes on stderr, and with `--json` one document per file
(schemas/output/run.schema.json).

The document has a result per spec document of the file, in file order: the order's
outcome, a handshake's facts, or REFUSED / ERROR / NOT_RUN for a document that did not
run to its end (a file is all or nothing before the first order, and stops at the first
document that fails). A failure also carries the error, and the spec and tag it is about.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError
from runner.jsondoc import PRICE, QTY, document, figure, figures
from runner.output import number_text, price_text
from runner.plan import Plan, iso, price_decimals

if TYPE_CHECKING:
    from runner.broker import SessionInfo
    from runner.engine import Outcome
    from runner.spec import Spec


def where(spec: Spec) -> str:
    """The spec's file, with #N for its later documents (`<command line>`: classic)."""
    return spec.source if spec.index == 0 else f"{spec.source}#{spec.index + 1}"


def planned_tag(plan: Plan) -> str | None:
    return plan.order.tag if plan.order else None


def entry(spec: Spec, state: str, tag: str | None = None) -> dict[str, Any]:
    """A document of the file that did not run to its result: REFUSED (a gate or a check
    said no, exit 2: nothing was sent), ERROR (it broke off), NOT_RUN (another document
    stopped the file)."""
    return {"spec": where(spec), "kind": spec.kind,
            "tag": tag or (spec.order.tag if spec.order else None), "state": state}


def refused(e: RunnerError, spec: Spec, specs: list[Spec]) -> RunnerError:
    """`e`, which stopped `spec` before anything was sent, with the file's results."""
    tag = e.tag or (spec.order.tag if spec.order else None)
    results = [entry(s, "NOT_RUN") for s in specs]
    results[spec.index] = entry(spec, "REFUSED" if e.exit_code == 2 else "ERROR", tag)
    return _in_flag_terms(e, spec).about(spec=where(spec), tag=tag, results=results)


def broke_off(e: RunnerError, done: list[dict[str, Any]], plans: list[tuple[Spec, Plan]],
              k: int) -> RunnerError:
    """`e`, which ended document k's run, with the results so far and the rest NOT_RUN."""
    spec, plan = plans[k]
    tag = planned_tag(plan)
    results = done + ([] if len(done) > k else [entry(spec, "ERROR", tag)])
    results += [entry(s, "NOT_RUN", planned_tag(p)) for s, p in plans[k + 1:]]
    return _in_flag_terms(e, spec).about(spec=where(spec), tag=tag, results=results)


def _in_flag_terms(e: RunnerError, spec: Spec) -> RunnerError:
    """`e` naming the classic flags (`--expiry`, not `contract.expiry`) when the spec came
    from them (a gate's reasons already do)."""
    from runner.flags import for_source

    e.message, e.hint = for_source(spec.source, e.message), for_source(spec.source, e.hint)
    return e


def run_document(command: str, spec: Spec, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The document of a file that ran to its end."""
    return document(command, True, spec=spec.source, results=results)


def handshake_object(plan: Plan, session: SessionInfo | None) -> dict[str, Any]:
    """A handshake's result: the gateway's facts (none on a dry run: nothing contacted)."""
    at = session.server_time_ns if session else None
    return {"spec": plan.spec, "kind": plan.kind, "tag": None, "state": "OK",
            "broker": "ib" if session else "sim",
            "server_version": session.server_version if session else None,
            "accounts": list(session.accounts) if session else [],
            "server_time": iso(at) if at else None}


def result_object(plan: Plan, o: Outcome, ledger_path: Path) -> dict[str, Any]:
    """One order's result: figures rounded to runner.jsondoc.DECIMALS."""
    return figures({
        "spec": plan.spec, "kind": plan.kind, "tag": o.tag, "state": o.state,
        "fill_qty": o.fill_qty, "avg_px": o.avg_px, "arrival_px": o.arrival_px,
        "commission": o.commission, "message": o.message, "events": o.events,
        "tca": figures(o.snapshot) if o.snapshot else None, "ledger": str(ledger_path)})


def status_line(plan: Plan, o: Outcome) -> str:
    """The classic one-line result; quantities and prices as recorded (runner.output)."""
    if plan.kind == "sanity-cancel" and o.events[:3] == ["INTENT", "ACK", "CANCEL"]:
        return f"[sanity-cancel] tag={o.tag} ACK+Cancel recorded"
    line = (f"[{plan.kind}] tag={o.tag} state={o.state} "
            f"fill_qty={number_text(figure(o.fill_qty, QTY))} "
            f"avg_px={_price(plan, figure(o.avg_px, PRICE))} "
            f"arrival={_price(plan, figure(o.arrival_px, PRICE))}")
    return line + (f" message={o.message!r}" if o.message and o.state != "FILL" else "")


def _price(plan: Plan, px: float | None) -> str:
    """A price with its instrument's decimals at least, as the plan showed the limit."""
    o = plan.order
    return price_text(px, price_decimals(o.sec_type, o.currency, px) if o else 2)


def report(plan: Plan, o: Outcome | None, ledger_path: Path | None,
           session: SessionInfo | None, as_json: bool, verbose: int = 0) -> dict[str, Any]:
    """A document's result for --json; without --json its lines are printed too: an
    order's status line, a handshake's "IBKR handshake OK" (session None: a dry run)."""
    if o is None:
        result = handshake_object(plan, session)
        lines = handshake_lines(session, verbose)
    else:
        assert ledger_path is not None
        result = result_object(plan, o, ledger_path)
        lines = [status_line(plan, o)]
    if not as_json:
        print("\n".join(lines))
    return result


def handshake_lines(session: SessionInfo | None, verbose: int) -> list[str]:
    if session is None:
        return ["IBKR handshake OK (dry-run: simulator, nothing contacted)"]
    lines = ["IBKR handshake OK"]
    if verbose:
        at = iso(session.server_time_ns) if session.server_time_ns else "?"
        lines.append(f"  server version {session.server_version}; accounts "
                     f"{', '.join(session.accounts)}; gateway time {at}")
    return lines


def say(line: str) -> None:
    """A note for the person at the terminal, on stderr (stdout is the result's)."""
    print(f"runner: {line}", file=sys.stderr, flush=True)


def file_refused(spec: Spec, documents: int) -> str:
    return (f"{spec.source}: document #{spec.index + 1} of {documents} refused; none of "
            "them was run (a file is all or nothing)")


def file_broke_off(specs: Sequence[Spec], failed: int) -> str | None:
    """A file of several documents broke off at document `failed`: which ran (None: one)."""
    if len(specs) < 2:
        return None
    ran = [f"#{k + 1}" for k in range(failed)]
    left = [f"#{k + 1}" for k in range(failed + 1, len(specs))]
    return (f"{specs[0].source}: documents run: {', '.join(ran) or 'none'}; "
            f"#{failed + 1} did not succeed; not run: {', '.join(left) or 'none'}")


def recovered(tag: str, summary: str) -> str:
    return f"recovered {tag} from an earlier run: {summary}"


def unjournaled(row: dict[str, Any]) -> str:
    return "unjournaled event: " + json.dumps(row, sort_keys=True)
