"""`runner ledger query SQL`: SQL over every day of the ledger with DuckDB (extra `sql`).

The day folders `OUT_DIR/YYYY-MM-DD/ledger*.parquet` are one dataset. A query sees it as
the view `ledger`: every column of LEDGER_SCHEMA plus `date`, the day folder's trading date
(DATE). Times come back in UTC whatever the machine's zone. Rows a live run has only
journaled so far appear once it ends (`runner ledger show` reads journals too).

The view `executions` is the broker's executions in force, one row per execution: its rows
(PARTIAL/FILL, then any CORRECTION that replaced it — same exec id up to the last period)
folded into the shares and price that stand. SUM(shares) per tag is the true filled
quantity, however many corrections came.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from runner.errors import UsageError
from runner.jsondoc import document
from runner.output import json_text

VIEW = "ledger"
EXECUTIONS = "executions"
# Only folders named like a date: a stray folder in out_dir is not a day of the ledger.
DAY_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
_D = "—"  # NULL in the text table, as in `runner tca`


@dataclass(frozen=True, slots=True)
class Result:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def view_sql(out_dir: Path, missing: Sequence[str] = ()) -> str:
    """The `ledger` view over all days; `date` comes from the folder name. `missing`:
    columns of LEDGER_SCHEMA no file has (days written before they existed): NULL, every
    column in the schema's order."""
    # ledger.parquet and, on big days, its part files (ledger.part-<run>.parquet)
    pattern = _sql_string(str(out_dir / DAY_GLOB / "ledger*.parquet"))
    date = r"CAST(regexp_extract(filename, '(\d{4}-\d{2}-\d{2})[/\\][^/\\]*$', 1) AS DATE)"
    columns = "* EXCLUDE (filename)"
    if missing:
        from runner.ledger.schema import COLUMNS

        columns = ", ".join(f"CAST(NULL AS {_sql_type(name)}) AS {name}" if name in missing
                            else f'"{name}"' for name in COLUMNS)
    return (
        f"CREATE OR REPLACE VIEW {VIEW} AS SELECT {columns}, {date} AS date "
        f"FROM read_parquet({pattern}, filename = true, union_by_name = true)"
    )


def _sql_type(column: str) -> str:
    from runner.ledger.schema import LEDGER_SCHEMA

    kind = LEDGER_SCHEMA.field(column).type
    if str(kind).startswith("timestamp"):
        return "TIMESTAMPTZ"
    return {"string": "VARCHAR", "double": "DOUBLE"}.get(str(kind), "BIGINT")


def _missing(con: Any) -> list[str]:
    from runner.ledger.schema import COLUMNS

    present = {row[0] for row in con.execute(f"DESCRIBE {VIEW}").fetchall()}
    return [name for name in COLUMNS if name not in present]


def executions_sql() -> str:
    """The executions in force: an execution's rows fold into the shares (original plus each
    correction's change) and the price of its latest revision."""
    base = r"regexp_replace(exec_id, '\.[^.]*$', '')"
    priced = "last_px IS NOT NULL"
    return (
        f"CREATE VIEW {EXECUTIONS} AS SELECT date, tag, any_value(run_id) AS run_id, "
        f"{base} AS execution, arg_max(exec_id, ts) FILTER (WHERE {priced}) AS exec_id, "
        "any_value(symbol) AS symbol, any_value(side) AS side, "
        "sum(coalesce(last_qty, 0)) AS shares, "
        f"arg_max(last_px, ts) FILTER (WHERE {priced}) AS price, "
        "min(ts) AS first_ts, max(ts) AS ts, "
        "count(*) FILTER (WHERE event = 'CORRECTION' AND corrects <> exec_id) AS corrections "
        f"FROM {VIEW} WHERE event IN ('PARTIAL', 'FILL', 'CORRECTION') AND exec_id IS NOT NULL "
        f"GROUP BY date, tag, {base}"
    )


def _has_days(out_dir: Path) -> bool:
    return any(out_dir.glob(f"{DAY_GLOB}/ledger*.parquet"))


def run_query(sql: str, out_dir: Path) -> Result:
    """Run one SQL statement against the `ledger` view of `out_dir`."""
    try:
        import duckdb
    except ImportError:
        raise UsageError("`runner ledger query` needs DuckDB",
                         "pip install 'duckdb>=1.1' (the sql extra)") from None
    if not _has_days(out_dir):
        raise UsageError(f"no ledger days (YYYY-MM-DD/ledger.parquet) under {out_dir}",
                         "give the ledger root with --out-dir")
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")  # ts is UTC in the ledger; print it so
        con.execute(view_sql(out_dir))
        missing = _missing(con)
        if missing:  # every column of the schema, also over days older than some
            con.execute(view_sql(out_dir, missing))
        con.execute(executions_sql())
        cursor = con.execute(sql)
        if cursor is None:  # "", "  ", "-- a comment": DuckDB ran nothing
            raise UsageError("SQL: no statement in the query", _EXAMPLE)
        if cursor.description is None:  # a statement without a result (SET, CREATE ...)
            return Result((), [])
        columns = tuple(d[0] for d in cursor.description)
        return Result(columns, cursor.fetchall())
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"SQL: {first}", _EXAMPLE) from None
    finally:
        con.close()


_EXAMPLE = f"query the view `{VIEW}`, e.g. SELECT date, symbol, count(*) FROM {VIEW} GROUP BY ALL"


def ledger_query(sql: str, out_dir: str, as_json: bool, out: TextIO | None = None) -> int:
    """`runner ledger query`: print the result as a table, or as JSON."""
    out = out or sys.stdout
    result = run_query(sql, Path(out_dir))
    if as_json:
        rows = [[_json_value(v) for v in row] for row in result.rows]
        doc = document("ledger query", True, columns=list(result.columns), rows=rows)
        out.write(json_text(doc) + "\n")  # schemas/output/ledger-query.schema.json
    else:
        out.writelines(line + "\n" for line in table_lines(result.columns, result.rows))
    return 0


def _text(value: Any) -> str:
    if value is None:
        return _D
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)  # floats: the shortest text that reads back the same


def table_lines(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Columns padded to their widest value; numbers right-aligned."""
    if not columns:
        return []
    cells = [[_text(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(_is_number(r[i]) for r in rows if r[i] is not None)
               for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w)
                 for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return [line(list(columns))] + [line(r) for r in cells]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return _text(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # UUID, intervals and other DuckDB types: their text
