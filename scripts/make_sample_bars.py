"""Write the sample day of 1 s SPY bars that the specs, tests and benchmarks use.

Deterministic: the same seed gives the same file, byte for byte in content.
The regular session of Monday 2026-01-05, 09:30-16:00 America/New_York
(14:30-21:00 UTC): 23,400 bars, each `ts` the bar's start.

Prices: a random walk from 473.00 with ~1.5 bp of volatility per second, drawn
at 10 sub-steps per second so that high/low are the true extremes of the path
inside the bar; everything is rounded to the 0.01 tick (rounding is monotone,
so low <= open, close <= high survives it). Volume: a U-shaped intraday curve
times a heavy-tailed (lognormal) draw, whole shares. `vwap` is the mean of the
bar's sub-second path, clipped into [low, high].

    python scripts/make_sample_bars.py [--out PATH] [--seed N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SESSION_START_NS = 1_767_623_400 * 1_000_000_000  # 2026-01-05T14:30:00Z = 09:30 New York
N_BARS = 6 * 3600 + 30 * 60  # 09:30-16:00 = 23,400 seconds
START_PX = 473.00
VOL_PER_SEC = 1.5e-4  # log-return std per second (1.5 bp)
SUBSTEPS = 10
TICK = 0.01
DEFAULT_OUT = Path("data/live/2026-01-05/bars1s_SPY.parquet")


def price_path(rng: np.random.Generator) -> np.ndarray:
    """Sub-second prices, shape (N_BARS, SUBSTEPS + 1); row i spans bar i, end = next start."""
    steps = rng.standard_normal(N_BARS * SUBSTEPS) * (VOL_PER_SEC / np.sqrt(SUBSTEPS))
    log_px = np.log(START_PX) + np.concatenate(([0.0], np.cumsum(steps)))
    px = np.exp(log_px)
    idx = np.arange(N_BARS)[:, None] * SUBSTEPS + np.arange(SUBSTEPS + 1)[None, :]
    return px[idx]


def volumes(rng: np.random.Generator) -> np.ndarray:
    """Shares per second: U-shaped over the day (busy open and close), lognormal noise."""
    x = np.linspace(-1.0, 1.0, N_BARS)
    curve = 1_800.0 + 4_000.0 * x**2 + 3_000.0 * np.exp(-((x + 1.0) / 0.03) ** 2)
    noise = rng.lognormal(mean=-0.32, sigma=0.8, size=N_BARS)  # mean ~1, fat right tail
    return np.clip(np.rint(curve * noise), 100, 60_000)


def make_table(seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    path = price_path(rng)

    def cents(values: np.ndarray) -> np.ndarray:
        return np.round(np.round(values / TICK) * TICK, 2)

    low, high = cents(path.min(axis=1)), cents(path.max(axis=1))
    vwap = np.clip(np.round(path.mean(axis=1), 4), low, high)
    ts = SESSION_START_NS + np.arange(N_BARS, dtype=np.int64) * 1_000_000_000
    return pa.table({
        "ts": pa.array(ts, type=pa.timestamp("ns", tz="UTC")),
        "open": cents(path[:, 0]),
        "high": high,
        "low": low,
        "close": cents(path[:, -1]),
        "volume": volumes(rng).astype(np.int64),
        "vwap": vwap,
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=20260105)
    args = parser.parse_args(argv)
    table = make_table(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.out, compression="zstd", compression_level=9)
    col = {name: table.column(name).to_numpy() for name in ("open", "high", "low", "close")}
    volume = table.column("volume").to_numpy()
    print(
        f"wrote {args.out}: {table.num_rows} bars 14:30:00-20:59:59 UTC, "
        f"open {col['open'][0]:.2f} high {col['high'].max():.2f} "
        f"low {col['low'].min():.2f} close {col['close'][-1]:.2f}, "
        f"volume {int(volume.sum()):,} ({args.out.stat().st_size:,} bytes)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
