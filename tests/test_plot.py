"""`runner tca --plot DIR`: real matplotlib (Agg) pictures of orders run on the sample bars."""

from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from runner.bars import load_bars
from runner.cli import main
from runner.ledger import read_ledger
from runner.plot import (
    COLORS,
    HEIGHT_PX,
    WIDTH_PX,
    figure,
    file_names,
    find_bars,
    mark_labels,
    traces,
)

try:
    import matplotlib.image
except ImportError:  # CI installs it through the test extra: missing is a failure, not a skip
    pytest.fail("matplotlib is not installed: pip install -e '.[test]' (or '.[plot]')",
                pytrace=False)

ROOT = Path(__file__).resolve().parents[1]
BARS = "data/live/2026-01-05/bars1s_SPY.parquet"
# BUY 2,000 at 473.10 on the sample bars: bars 1-3 give 10% of their volume each
# (4,727 -> 472, 4,507 -> 450, 5,125 -> 512; specs/scenarios/partial-then-ttl-cancel.yaml),
# every fill reported when its bar has ended: bars 1 and 3 open below the limit and fill
# at their open, bar 2 trades through the limit and fills at it, at 1, 2 and 3 s after the
# INTENT; then the TTL cancels at 3 s, before bar 4 (which would give 327) has ended.
# (seconds after the INTENT, quantity, price)
FILLS = [(1.0, 472.0, 472.92), (2.0, 450.0, 473.10), (3.0, 512.0, 473.07)]
LIMIT, ARRIVAL = 473.10, 472.92
# The sample bars start at 14:30:00 UTC (09:30 in New York); the dry run's clock starts
# when the first bar has ended, so the INTENT is at 14:30:01 UTC.
INTENT_S = 1_767_623_401
NS = 1_000_000_000


@pytest.fixture
def ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with the sample bars and one dry-run order in its ledger."""
    (tmp_path / BARS).parent.mkdir(parents=True)
    shutil.copy(ROOT / BARS, tmp_path / BARS)
    monkeypatch.chdir(tmp_path)
    code = main(["one-shot", "--symbol", "SPY", "--qty", "2000", "--limit", "473.10",
                 "--ttl_sec", "3", "--bars_path", BARS, "--tag", "probe", "--dry-run",
                 "--out_dir", "exec"])
    assert code == 0
    return tmp_path


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR), read without any image library."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)


def pixels_near(image: np.ndarray, color: np.ndarray, tolerance: float = 12.0) -> int:
    return int((np.abs(image - color).max(axis=-1) <= tolerance).sum())


def test_plot_writes_one_png_per_order_not_blank(ran, capsys) -> None:
    assert main(["tca", "--out-dir", "exec", "--plot", "plots"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "wrote plots/probe.png\n"
    assert "probe" in captured.out  # the TCA report is still printed
    png = ran / "plots" / "probe.png"

    assert png_size(png) == (WIDTH_PX, HEIGHT_PX) == (1200, 600)
    image = matplotlib.image.imread(png)[..., :3] * 255.0
    assert image.shape == (600, 1200, 3)
    assert len(np.unique(image.reshape(-1, 3).round(), axis=0)) > 50
    # Each element is drawn: the limit line, the arrival line, both bar colours, the fill
    # dots (alpha 0.8 over white) and the volume bars.
    fill_on_white = 0.8 * rgb(COLORS["fill"]) + 0.2 * 255.0
    for color in ("limit", "arrival", "up", "down", "volume"):
        assert pixels_near(image, rgb(COLORS[color])) > 100, color
    assert pixels_near(image, fill_on_white) > 300


def test_the_figure_holds_the_orders_fills_limit_and_arrival(ran) -> None:
    table = read_ledger(ran / "exec")
    [trace] = traces(table)
    assert (trace.tag, trace.state, trace.fill_qty, trace.limit) == ("probe", "CANCEL", 1434, LIMIT)

    fig = figure(trace, None)  # no bars: prices and marks only
    price = fig.axes[0]
    [dots] = [c for c in price.collections if c.get_label().startswith("fills")]
    # x is clock time: seconds since the epoch, UTC
    assert dots.get_offsets().tolist() == [[INTENT_S + x, px] for x, _, px in FILLS]
    assert dots.get_sizes().tolist() == pytest.approx([400 * q / 512 for _, q, _ in FILLS])
    levels = {line.get_label(): line.get_ydata()[0] for line in price.get_lines()}
    assert levels[f"limit {LIMIT:g}"] == LIMIT and levels[f"arrival {ARRIVAL:g}"] == ARRIVAL
    assert [t.get_text() for t in price.texts] == ["INTENT+ACK", "CANCEL"]


def test_marks_at_one_instant_share_a_label(ran) -> None:
    [trace] = traces(read_ledger(ran / "exec"))
    intent = trace.intent_ns
    assert mark_labels(trace) == [(intent, "INTENT+ACK"), (intent + 3_000_000_000, "CANCEL")]


def test_a_tag_placed_by_two_runs_gets_a_file_each(ran, capsys) -> None:
    code = main(["one-shot", "--symbol", "SPY", "--qty", "10", "--limit", "10", "--ttl_sec", "1",
                 "--bars_path", BARS, "--tag", "probe", "--dry-run", "--out_dir", "exec"])
    assert code == 0
    items = traces(read_ledger(ran / "exec"))
    assert file_names(items) == [f"probe-{t.run_id}.png" for t in items] and len(items) == 2


def test_the_x_axis_is_utc_clock_time(ran) -> None:
    [trace] = traces(read_ledger(ran / "exec"))
    assert trace.intent_ns == INTENT_S * NS
    volume = figure(trace, None).axes[1]
    assert volume.get_xlabel() == "time, UTC (2026-01-05)"
    tick = volume.xaxis.get_major_formatter()
    assert [tick(INTENT_S), tick(INTENT_S + 0.5), tick(INTENT_S + 59.25)] == [
        "14:30:01", "14:30:01.5", "14:31:00.25"]


@pytest.fixture
def ran_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dry-run order on bars at a path no convention points to: only the ledger's
    bars_path (as the INTENT recorded it, relative) leads back to them."""
    (tmp_path / "feeds").mkdir()
    shutil.copy(ROOT / BARS, tmp_path / "feeds" / "spy.parquet")
    monkeypatch.chdir(tmp_path)
    assert main(["one-shot", "--symbol", "SPY", "--qty", "2000", "--limit", "473.10",
                 "--ttl_sec", "3", "--bars_path", "feeds/spy.parquet", "--tag", "probe",
                 "--dry-run", "--out_dir", "exec"]) == 0
    return tmp_path


def test_the_bars_are_found_again_from_the_ledgers_bars_path(ran_elsewhere, capsys) -> None:
    [trace] = traces(read_ledger(ran_elsewhere / "exec"))
    assert trace.bars_path == "feeds/spy.parquet"
    found = find_bars(trace, None, io.StringIO())
    assert found is not None and found.path == "feeds/spy.parquet"

    price = figure(trace, found).axes[0]
    [closes] = [c for c in price.collections if c.get_label() == "1 s bars (close)"]
    # bars from 10 s before the INTENT (the file starts at 14:30:00) to 10 s after the
    # CANCEL at 14:30:04: 15 bars, each drawn mid-bar
    sample = load_bars(ROOT / BARS)
    assert closes.get_offsets().tolist() == [
        [t / NS + 0.5, c] for t, c in zip(sample.ts[:15].tolist(), sample.close[:15].tolist(),
                                          strict=True)]  # fmt: skip
    assert sample.ts[0] == (INTENT_S - 1) * NS

    assert main(["tca", "--out-dir", "exec", "--plot", "plots"]) == 0
    assert capsys.readouterr().err == "wrote plots/probe.png\n"


def test_bars_gone_from_the_recorded_path_say_where_and_how(ran_elsewhere, capsys) -> None:
    (ran_elsewhere / "feeds" / "spy.parquet").rename(ran_elsewhere / "spy.parquet")
    assert main(["tca", "--out-dir", "exec", "--plot", "plots"]) == 0
    assert capsys.readouterr().err == (
        "runner: probe: bars not found at feeds/spy.parquet (the ledger's bars_path, tried "
        "against the current directory); --bars FILE overrides\nwrote plots/probe.png\n")
    [trace] = traces(read_ledger(ran_elsewhere / "exec"))
    assert find_bars(trace, "spy.parquet", io.StringIO()) is not None  # --bars overrides


def test_plot_keeps_the_reports_filters(ran, capsys) -> None:
    assert main(["tca", "--out-dir", "exec", "--side", "SELL", "--plot", "plots"]) == 0
    assert capsys.readouterr().err == "" and list((ran / "plots").iterdir()) == []


def test_no_ledger_exit_2(tmp_path, capsys) -> None:
    assert main(["tca", "--out-dir", str(tmp_path), "--plot", str(tmp_path / "p")]) == 2
    assert not (tmp_path / "p").exists()


def test_the_readme_picture_is_there() -> None:
    png = ROOT / "docs" / "tca-example.png"
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX)
    assert "docs/tca-example.png" in (ROOT / "README.md").read_text()
