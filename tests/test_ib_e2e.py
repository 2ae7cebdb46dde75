"""End to end over the wire: `runner run` and the classic commands, the unmodified
ib_async client, the project's fake TWS gateway on 127.0.0.1 at a free port.

Runs happen in-process through `runner.cli.main` (or in a subprocess where a signal
or SIGKILL is part of the test); the gateway runs on its own loop in a thread.
"""

from __future__ import annotations

import calendar
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runner.gateway import Ack, Fill, Reject
from runner.ledger import read_ledger
from runner.plan import trading_day

PLACE, CANCEL = 3, 4  # TWS API message ids: placeOrder, cancelOrder
NS = 1_000_000_000


def rows(tmp_path: Path, tag: str | None = None) -> list[dict[str, Any]]:
    table = read_ledger(tmp_path / "data" / "exec")
    return [r for r in table.to_pylist() if tag is None or r["tag"] == tag]


def events(tmp_path: Path, tag: str) -> list[str]:
    return [r["event"] for r in rows(tmp_path, tag)]


def at_now() -> tuple[str, int]:
    """An --at value for now (whole seconds) and the tag suffix it gives."""
    now = time.time_ns() // NS
    return str(now), now


def sent(gw: Any, msg_id: int) -> list[tuple[str, ...]]:
    """The frames with this message id that the gateway received."""
    return [fields for _, fields in gw.received if fields[0] == str(msg_id)]


def test_handshake(gateway, cli):
    code, out, err = cli(gateway.port, "handshake")
    assert (code, out, err) == (0, "IBKR handshake OK\n", "")
    code, out, _ = cli(gateway.port, "handshake", "-v")
    assert code == 0 and "server version 178; accounts DU****567; gateway time 20" in out


def test_sanity_cancel_records_intent_ack_cancel(gateway, cli, tmp_path):
    before = time.time_ns() // 1_000_000
    code, out, err = cli(gateway.port, "sanity-cancel", "--symbol", "SPY", "--qty", "1",
                         "--limit", "0.01")
    found = re.fullmatch(r"\[sanity-cancel\] tag=(sanity_SPY_(\d+)) ACK\+Cancel recorded\n", out)
    assert (code, err) == (0, "") and found, out
    tag = found.group(1)
    assert before <= int(found.group(2)) <= time.time_ns() // 1_000_000  # epoch milliseconds
    assert events(tmp_path, tag) == ["INTENT", "ACK", "CANCEL"]
    placed = gateway.place_orders()
    assert len(placed) == 1 and placed[0].order_ref == tag and float(placed[0].lmt_price) == 0.01
    assert len(sent(gateway, CANCEL)) == 1
    intent = rows(tmp_path, tag)[0]
    assert intent["account"] == "DU1234567" and intent["broker"] == "ib"
    assert intent["client_id"] == 7 and rows(tmp_path, tag)[1]["perm_id"]
    # the sanity-cancel has the GTD backstop too: INTENT + 10 s ack wait + 10 s margin
    assert placed[0].tif == "GTD"
    gtd_ns = calendar.timegm(time.strptime(placed[0].good_till_date, "%Y%m%d-%H:%M:%S")) * NS
    assert gtd_ns == intent["good_till"].value
    assert 0 <= gtd_ns - (intent["ts"].value + 20 * NS) < NS


def test_at_is_refused_where_a_broker_would_be_reached(gateway, cli, tmp_path):
    at, _ = at_now()
    code, out, err = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "10.00",
                         "--tag", "at-1", "--at", at)
    assert code == 2 and out == ""
    assert err.startswith(f"runner: --at {at}: a run that reaches a broker runs on the "
                          "broker's clock; nothing was sent")
    assert gateway.received == [] and not (tmp_path / "data").exists()


def test_one_shot_no_fill_is_cancelled_at_the_ttl(gateway, cli, tmp_path):
    start = time.monotonic()
    code, out, _ = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "10.00",
                       "--ttl_sec", "0.5", "--tag", "ttl-1")
    elapsed = time.monotonic() - start
    assert code == 0
    assert out == "[one-shot] tag=ttl-1 state=CANCEL fill_qty=0 avg_px=— arrival=—\n"
    r = rows(tmp_path, "ttl-1")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "CANCEL"]
    assert (r[2]["ts"].value - r[0]["ts"].value) / NS >= 0.5 and elapsed < 3
    placed = gateway.place_orders()[0]
    assert placed.tif == "GTD"
    gtd_ns = calendar.timegm(time.strptime(placed.good_till_date, "%Y%m%d-%H:%M:%S")) * NS
    # by hand: INTENT + TTL 0.5 s + margin 10 s, rounded up to IB's whole second
    assert 0 <= gtd_ns - (r[0]["ts"].value + int(10.5 * NS)) < NS


def test_partial_fill_then_ttl_cancel(gateway, cli, tmp_path):
    gateway.script("part-1", [Ack(), Fill(3, 100.25, commission=1.05)])
    code, out, _ = cli(gateway.port, "one-shot", "--qty", "10", "--limit", "100.25",
                       "--ttl_sec", "0.5", "--tag", "part-1")
    assert code == 0
    assert out == "[one-shot] tag=part-1 state=CANCEL fill_qty=3 avg_px=100.25 arrival=—\n"
    r = rows(tmp_path, "part-1")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "PARTIAL", "CANCEL"]
    partial = r[2]
    assert (partial["last_qty"], partial["last_px"], partial["fill_qty"]) == (3, 100.25, 3)
    assert partial["commission"] == pytest.approx(1.05)
    assert r[3]["fill_qty"] == 3 and r[3]["perm_id"] == partial["perm_id"] != 0


def _bars_around_now(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-second bars from 60 s ago to the one after the current second (a capture may
    run at most one bar ahead of now), closes 100.00, 100.01, ...; volume 1000 + i."""
    first = (time.time_ns() // NS - 60) * NS
    ts = first + np.arange(62, dtype=np.int64) * NS
    close = np.round(100 + np.arange(62) * 0.01, 2)
    volume = 1000.0 + np.arange(62)
    table = pa.table({
        "ts": pa.array(ts, pa.timestamp("ns", tz="UTC")), "open": close, "high": close + 0.05,
        "low": close - 0.05, "close": close, "volume": volume,
    })
    pq.write_table(table, path)
    return ts, close, volume


def test_full_fill_with_commission_and_tca_snapshot(gateway, cli, tmp_path):
    ts, close, volume = _bars_around_now(tmp_path / "bars.parquet")
    gateway.script("fill-1", [Ack(), Fill(6, 100.70, commission=1.0),
                              Fill(4, 100.80, commission=0.5)])
    code, out, _ = cli(gateway.port, "one-shot", "--qty", "10", "--limit", "101.00",
                       "--ttl_sec", "5", "--tag", "fill-1", "--bars_path", "bars.parquet")
    assert code == 0, out
    r = rows(tmp_path, "fill-1")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "PARTIAL", "FILL", "PNL_SNAPSHOT"]
    intent_ns, end_ns = r[0]["ts"].value, r[3]["ts"].value
    # by hand: arrival = close of the last bar that ended at or before the INTENT
    arrival = close[ts + NS <= intent_ns][-1]
    avg = (6 * 100.70 + 4 * 100.80) / 10
    in_life = (ts + NS > intent_ns) & (ts < max(end_ns, intent_ns + 1))
    vwap = float((close[in_life] * volume[in_life]).sum() / volume[in_life].sum())
    snap = r[4]
    assert snap["arrival_px"] == pytest.approx(arrival, abs=1e-12)
    assert snap["avg_px"] == pytest.approx(avg, abs=1e-9)
    assert snap["commission"] == pytest.approx(1.5)
    assert snap["shortfall_bps"] == pytest.approx((avg - arrival) / arrival * 1e4, abs=1e-9)
    assert snap["vwap_px"] == pytest.approx(vwap, abs=1e-9)
    assert snap["vwap_slippage_bps"] == pytest.approx((avg - vwap) / vwap * 1e4, abs=1e-9)
    assert snap["fill_ratio"] == 1.0
    assert out == (f"[one-shot] tag=fill-1 state=FILL fill_qty=10 avg_px=100.74 "
                   f"arrival={arrival:.2f}\n")


def test_reject_exits_4_with_the_reason(gateway, cli, tmp_path):
    gateway.script("rej-1", [Reject("insufficient margin")])
    code, out, err = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "10.00",
                         "--tag", "rej-1")
    assert code == 4
    assert "state=REJ" in out
    assert err == ("runner: order rej-1 rejected: 201 Order rejected - "
                   "reason:insufficient margin\n")
    r = rows(tmp_path, "rej-1")
    assert [x["event"] for x in r] == ["INTENT", "REJ"]
    assert r[1]["message"] == "201 Order rejected - reason:insufficient margin"


def test_cancel_racing_a_fill_is_recorded_as_fill(gateway, cli, tmp_path):
    gateway.script("race-1", [Ack(), Fill(1, 99.50, delay=60)], on_cancel="reject_filled")
    code, out, _ = cli(gateway.port, "one-shot", "--qty", "1", "--limit", "99.50",
                       "--ttl_sec", "0.3", "--tag", "race-1")
    assert code == 0
    assert out == "[one-shot] tag=race-1 state=FILL fill_qty=1 avg_px=99.50 arrival=—\n"
    assert events(tmp_path, "race-1") == ["INTENT", "ACK", "FILL"]


def test_read_only_api_refused_before_any_order(make_gateway, cli, tmp_path):
    gw = make_gateway(read_only=True)
    code, out, err = cli(gw.port, "sanity-cancel")
    assert code == 3 and out == ""
    assert err.startswith(f"runner: 127.0.0.1:{gw.port} answered 321: the API is in "
                          "Read-Only mode; nothing was sent")
    assert "disable Read-Only API" in err
    assert sent(gw, PLACE) == [] and not (tmp_path / "data").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_port(cli, tmp_path):
    port = _free_port()
    code, out, err = cli(port, "handshake")
    assert code == 3 and out == ""
    assert err.startswith(f"runner: cannot connect to 127.0.0.1:{port}: connection refused "
                          "(is TWS/IB Gateway running with the API enabled on that port?")


def test_client_id_in_use_fails_fast(make_gateway, cli):
    gw = make_gateway(client_id_in_use={7})
    start = time.monotonic()
    code, _, err = cli(gw.port, "handshake")
    assert code == 3 and time.monotonic() - start < 2
    assert err == (f"runner: client id 7 is already in use at 127.0.0.1:{gw.port} (set "
                   "IB_CLIENT_ID to another number, or close the other client)\n")


def test_live_account_refused_on_a_paper_run(make_gateway, cli, tmp_path):
    # issue 15: the paper-account rule lives only in the gates (it was also the engine's,
    # exit 3 "paper run, but the gateway is logged into a live account"): exit 2 now
    gw = make_gateway(accounts=("U7654321",))
    code, _, err = cli(gw.port, "sanity-cancel")
    assert code == 2
    assert err == ("runner: <command line>: refused by the built-in policy; nothing was sent:\n"
                   "  - account U****321 is a live account but the spec says mode: paper\n"
                   )  # account ids are masked in output
    assert sent(gw, PLACE) == [] and not (tmp_path / "data").exists()


def test_unknown_contract(gateway, cli):
    code, _, err = cli(gateway.port, "sanity-cancel", "--symbol", "ZZZZQ")
    assert code == 3
    assert err.startswith("runner: unknown contract ZZZZQ STK SMART USD (IB error 200")
    assert sent(gateway, PLACE) == []


def test_duplicate_tag_refused(gateway, cli, tmp_path):
    assert cli(gateway.port, "sanity-cancel", "--tag", "dup-1")[0] == 0
    code, _, err = cli(gateway.port, "sanity-cancel", "--tag", "dup-1")
    day = trading_day(time.time_ns())
    assert code == 2 and err == (
        f"runner: tag dup-1 is already in data/exec/{day}/ledger.parquet; not placing it again "
        "(use another tag, or pass --allow-duplicate)\n")
    assert len(sent(gateway, PLACE)) == 1
    assert cli(gateway.port, "sanity-cancel", "--tag", "dup-1", "--allow-duplicate")[0] == 0
    assert len(sent(gateway, PLACE)) == 2


def _live_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "live.yaml"
    spec.write_text("version: 1\nkind: sanity-cancel\nmode: live\n"
                    "order: {symbol: SPY, side: BUY, qty: 1, limit: 0.01, tag: live-1}\n")
    return spec


def test_live_needs_both_keys(make_gateway, cli, tmp_path):
    gw = make_gateway(accounts=("U7654321",))
    _live_spec(tmp_path)
    code, _, err = cli(gw.port, "run", "live.yaml")
    assert code == 2 and "mode: live but --live was not given; nothing was sent" in err
    assert gw.received == []  # refused before connecting
    code, out, _ = cli(gw.port, "run", "live.yaml", "--live")
    assert (code, out) == (0, "[sanity-cancel] tag=live-1 ACK+Cancel recorded\n")


def test_limits_enforced_before_connecting(gateway, cli, tmp_path):
    (tmp_path / "big.yaml").write_text(
        "version: 1\nkind: one-shot\norder: {symbol: SPY, side: BUY, qty: 500, limit: 400.00}\n"
        "limits: {max_notional: 10000}\n")
    code, _, err = cli(gateway.port, "run", "big.yaml")
    assert code == 2 and "exceeds limits.max_notional 10,000" in err
    assert gateway.received == []


def _subprocess_run(port: int, cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, IB_GATEWAY_PORT=str(port), IB_CONNECT_TIMEOUT="3")
    return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_cancels_the_live_order_first(gateway, tmp_path, signum, code):
    proc = _subprocess_run(gateway.port, tmp_path, "one-shot", "--qty", "1", "--limit",
                           "10.00", "--ttl_sec", "60", "--tag", "sig-1")
    gateway.wait_for(PLACE, timeout=10)  # the order is out: handlers are installed
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == code, err
    assert err.endswith("; order sig-1 ended CANCEL and was recorded\n")
    assert len(sent(gateway, CANCEL)) == 1
    assert events(tmp_path, "sig-1")[-1] == "CANCEL"


def test_sigkill_after_intent_leaves_a_journal_the_next_run_merges(gateway, cli, tmp_path):
    proc = _subprocess_run(gateway.port, tmp_path, "one-shot", "--qty", "1", "--limit",
                           "10.00", "--ttl_sec", "60", "--tag", "kill-1")
    gateway.wait_for(PLACE, timeout=10)  # the INTENT was journaled before this was sent
    proc.kill()
    proc.communicate(timeout=10)
    day_dir = tmp_path / "data" / "exec" / trading_day(time.time_ns())
    assert not (day_dir / "ledger.parquet").exists()  # only the journal holds the events
    assert cli(gateway.port, "sanity-cancel", "--tag", "after-kill")[0] == 0
    merged = pq.read_table(day_dir / "ledger.parquet").to_pylist()
    killed = [r["event"] for r in merged if r["tag"] == "kill-1"]
    assert killed[0] == "INTENT" and killed.count("INTENT") == 1
    assert [r["event"] for r in merged if r["tag"] == "after-kill"] == ["INTENT", "ACK", "CANCEL"]

