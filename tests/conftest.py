from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from leaks import UNMASKED  # an IB account id in the clear, escaped forms included

# ---------------------------------------------------------------------------
# Fake IB gateway fixtures (runner/gateway; owner: the gateway engineer).
# Each gateway runs on its own event loop in a background thread, listening on
# 127.0.0.1 at a free port (`.port`), so the code under test may run its own
# loop in the test's thread or in a subprocess. Script orders with
# `gw.script(ref, [Ack(), Fill(...)], on_cancel=...)`; see runner/gateway/steps.py.
# ---------------------------------------------------------------------------


@pytest.fixture
def make_gateway() -> Iterator[Callable[..., Any]]:
    """Factory: `make_gateway(accounts=("U7654321",), read_only=True, bars=...)`."""
    from runner.gateway import GatewayThread

    started: list[GatewayThread] = []

    def make(*args: Any, **kwargs: Any) -> GatewayThread:
        gateway = GatewayThread(*args, **kwargs).start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in reversed(started):
        gateway.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., Any]) -> Any:
    """A started fake gateway with the defaults (paper account DU1234567, no bars)."""
    return make_gateway()


# ----------------------------------------------------- end of gateway fixtures


# ---------------------------------------------------------------------------
# Running the CLI in-process against a gateway (shared by the ib, gates and what-if tests).
# ---------------------------------------------------------------------------



@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `runner ...` in tmp_path against a gateway port; returns (code, out, err).
    Every call also checks that no account id was printed unmasked."""
    from runner.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IB_CONNECT_TIMEOUT", "3")

    def run(port: int, *args: str) -> tuple[int, str, str]:
        monkeypatch.setenv("IB_GATEWAY_PORT", str(port))
        code = main(list(args))
        out, err = capsys.readouterr()
        assert not UNMASKED.search(out + err), out + err
        return code, out, err

    return run


# ---------------------------------------------------------------------------
# Slow tests: a second or more each (pytest --cov --durations=0, 2 busy cores), marked `slow` so
# `pytest -m "not slow"` is the quick loop. Listed here by file and function (every
# parameter set), so the test files stay as their owners write them. A name that is not
# a test function of its file (renamed, removed) stops the run: the list cannot rot.
# ---------------------------------------------------------------------------

SLOW: dict[str, tuple[str, ...]] = {
    "test_bars_shapes.py": (
        "test_dry_runs_on_every_shape_import_no_pandas",
        "test_the_plot_reads_the_orders_rows_of_a_long_file",
    ),
    "test_dryrun.py": (
        "test_a_dry_run_imports_no_pandas_nor_ib_async",
        "test_a_dry_run_on_a_fresh_day_imports_no_pyarrow_compute",
    ),
    "test_faults.py": (
        "test_disk_full_after_the_intent_cancels_and_prints_the_events",
        "test_disk_full_before_the_intent_sends_nothing",
        "test_hostile_spec_validates_or_exits_2_in_one_line",
    ),
    "test_gateway_bar_order_types.py": (
        "test_a_stop_one_shot_fills_against_the_bars_gateway_as_in_its_dry_run",
    ),
    "test_gateway_misbehave.py": (
        "test_gtd_expires_at_its_date_unless_a_10349_made_it_day",
    ),
    "test_grid.py": (
        "test_an_unanswered_market_rule_falls_back_to_min_tick_and_says_so",  # ib_async's 1 s
    ),
    "test_ib_e2e.py": (
        "test_read_only_api_refused_before_any_order",
        "test_signal_cancels_the_live_order_first",
    ),
    "test_ib_misbehave.py": (
        "test_a_commission_late_early_or_not_sent_live_is_in_the_ledger",
        "test_a_commission_that_never_comes_is_said",
        "test_a_failing_resync_after_a_reconnect_surfaces_as_one_line",
        "test_a_placed_order_the_gateway_lost_before_its_ack_is_never_called_cancelled",
        "test_a_refused_cancel_leaves_the_order_unsettled",
        "test_a_restart_that_keeps_the_order_is_followed_to_its_cancel",
        "test_a_restart_that_loses_the_order_is_unknown_never_an_end",
        "test_a_slow_sync_does_not_shift_the_gtd",
        "test_a_tag_placed_twice_does_not_hide_the_unsettled_first",
        "test_allow_unsettled_overrides",
        "test_an_unanswered_cancel_says_the_time_it_waited",
        "test_leaving_early_with_a_refused_cancel_still_blocks_later_runs",
        "test_order_ids_rolled_back_by_a_restart_get_103_and_nothing_works",
        "test_recover_cancels_with_the_client_id_that_placed_the_order",
        "test_recover_completes_a_commission_the_run_ended_without",
        "test_recover_records_the_end_ib_reports_after_its_cancel",
        "test_ten_concurrent_runs_under_max_day_orders_3_place_exactly_three",
        "test_the_gtd_backstop_kills_the_order_at_ib_when_cancels_go_unanswered",
        "test_unsettled_blocks_the_next_run_until_recover_settles_it",
    ),
    "test_ledger.py": (
        "test_any_rows_round_trip_through_journal_and_commit",
        "test_eight_concurrent_processes_lose_no_row",
    ),
    "test_live_bars.py": (
        "test_a_capture_that_stops_is_waited_for_bounded_then_used_as_it_is",
        "test_a_growing_capture_prices_the_intent_and_the_whole_order",
        "test_arrival_broker_prices_the_order_with_the_gateways_bars",
    ),
    "test_lsp.py": (
        "test_a_typo_gets_a_diagnostic_on_its_line",
        "test_shipped_specs_have_no_diagnostics",
    ),
    "test_plot.py": (
        "test_plot_writes_one_png_per_order_not_blank",
    ),
    "test_precommit.py": (
        "test_validate_hook_fails_on_a_bad_spec_and_passes_when_fixed",
    ),
    "test_progress.py": (
        "test_a_live_line_on_a_terminal_then_only_the_status_line",
        "test_nothing_extra_when_stdout_is_not_a_terminal",
    ),
    "test_recovery.py": (
        "test_cut_and_back_before_the_ttl",
        "test_cut_for_good_exits_3_and_recover_settles",
        "test_cut_past_the_ttl_cancels_at_once_on_return",
        "test_kill_after_intent_before_send",
        "test_kill_after_partial_then_more_fills_and_overdue",
        "test_kill_during_cancel_gateway_cancels_meanwhile",
        "test_kill_during_ttl_wait_left_alone_until_deadline",
        "test_next_run_recovers_before_placing",
    ),
    "test_redact.py": (
        "test_property_dry_run_status_line_and_json_leak_no_id",
        "test_property_ledger_show_leaks_no_id",
        "test_property_raw_and_escaped_ids_never_survive_redact",
    ),
}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    modules = {}
    for item in items:
        if isinstance(item, pytest.Function):
            modules[item.path.name] = item.module
            if item.originalname in SLOW.get(item.path.name, ()):
                item.add_marker(pytest.mark.slow)
    stale = [f"{file}::{name}" for file, module in modules.items()
             for name in SLOW.get(file, ()) if not callable(getattr(module, name, None))]
    if stale:
        raise pytest.UsageError(f"tests/conftest.py SLOW names no such test: {', '.join(stale)}; "
                                "fix or remove the entry")
