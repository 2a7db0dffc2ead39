"""The benchmarks under bench/: their helpers, and a tiny run of each script.

The script runs check only that the benchmarks still work against the
current app and schema. No assertion depends on a measured time.
"""

import os
import subprocess
import sys
from datetime import datetime

import pytest

from bench import harness
from bench.check_history import HISTORY_END, history_rows
from bench.console_render import alert_rows, run_rows, runs_per_job
from bench.hook_intake import rotated
from bench.notify_fanout import check_result

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Bounds the subprocesses so a hung server cannot hang the suite.
SCRIPT_TIMEOUT_SECONDS = 300


def run_script(name, *arguments):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", name), *arguments],
        capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_SECONDS, cwd=ROOT,
    )


def test_percentile_interpolates():
    assert harness.percentile([4, 1, 3, 2], 0.5) == 2.5
    assert harness.percentile([1, 2, 3, 4, 5], 0.95) == pytest.approx(4.8)
    assert harness.median([7]) == 7


def test_rotated_starts_at_shift():
    assert rotated(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert rotated(["a", "b"], 3) == ["b", "a"]


def test_history_rows_mix_and_order():
    rows = list(history_rows(job_id=1, count=40))
    assert len(rows) == 40
    assert [row["finished_at"] for row in rows] == sorted(row["finished_at"] for row in rows)
    assert rows[-1]["finished_at"] == HISTORY_END
    assert sum(row["kind"] == "verify" for row in rows) == 4
    assert sum(row["status"] == "failure" for row in rows) == 2
    assert all(row["checked_at"] is not None for row in rows)


def test_check_history_script_runs():
    result = run_script(
        "check_history.py", "--database", "sqlite", "--history", "3,60",
        "--checks", "4", "--rounds", "2", "--warmup-checks", "1",
    )
    assert result.returncode == 0, result.stderr
    assert "| sqlite | 60 |" in result.stdout
    # SQLite's plan for the baseline query reads the job's successful backups through this index.
    assert "USING INDEX ix_backup_runs_job_kind_status_finished" in result.stdout


def test_hook_intake_script_runs():
    result = run_script(
        "hook_intake.py", "--database", "sqlite", "--duration", "1", "--rounds", "1",
        "--warmup-seconds", "0", "--concurrency", "2", "--load-generator", "python",
    )
    assert result.returncode == 0, result.stderr
    assert "| sqlite |" in result.stdout
    assert "Status and socket errors across all measurements: 0" in result.stdout


def test_fanout_check_reports_missing_email():
    addresses = ["a@example.com", "b@example.com"]
    result = {
        "database": "sqlite", "round": 1, "variant": "backwatch",
        "recipients": ["a@example.com"], "expected_addresses": addresses,
        "jobs_enqueued": 2, "jobs_finished": 2, "jobs_failed": 0, "jobs_left_in_queue": 0,
        "deliveries": {"email": {"sent": 1, "failed": 1}},
    }
    problems = check_result(result)
    assert len(problems) == 2
    assert "received 1 messages for 1 addresses" in problems[0]
    assert "email deliveries by status" in problems[1]


def test_notify_fanout_script_runs():
    # A batch size below the user count makes the worker open several SMTP sessions.
    env = dict(os.environ, BACKWATCH_MAIL_BATCH_SIZE="5")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "notify_fanout.py"), "--database", "sqlite",
         "--users", "12", "--rounds", "1"],
        capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_SECONDS, cwd=ROOT, env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "FAILED CHECK" not in result.stdout
    assert "messages received per variant and round: [12]" in result.stdout
    assert "'email': {'sent': 12}" in result.stdout
    assert "'sms': {'skipped': 12}" in result.stdout
    backwatch_row, baseline_row = [line for line in result.stdout.splitlines() if line.startswith("| sqlite |")]
    assert backwatch_row.endswith("| 3 |")
    assert baseline_row.endswith("| 1 |")
    # One job per batch of 5: 12 emails make 3 jobs, one per SMTP session.
    assert "RQ jobs, medians: 3 enqueued, 3 finished, 0 failed" in result.stdout


def test_notify_fanout_with_app_worker():
    result = run_script(
        "notify_fanout.py", "--database", "sqlite", "--users", "6", "--rounds", "1", "--worker", "app",
    )
    assert result.returncode == 0, result.stderr
    assert "FAILED CHECK" not in result.stdout
    assert "messages received per variant and round: [6]" in result.stdout
    # Six emails fit one batch, so one job sends them all.
    assert "1 enqueued, 1 finished, 0 failed" in result.stdout


def test_console_runs_spread_over_jobs():
    assert runs_per_job(10, 4) == [3, 3, 2, 2]
    end = datetime(2026, 1, 1, 12, 0)
    rows = list(run_rows([7, 8], [3, 2], end))
    assert [row["job_id"] for row in rows] == [7, 7, 8, 7, 8]
    assert max(row["finished_at"] for row in rows) == end
    assert all(row["size_bytes"] is None for row in rows if row["status"] == "failure")


def test_console_alert_rows_keep_open_keys_unique():
    rows = list(alert_rows(1000, job_ids=[1, 2, 3], user_id=9, history_end=datetime(2026, 1, 1)))
    by_status = {status: [row for row in rows if row["status"] == status] for status in ("ACTIVE", "ACKNOWLEDGED", "RESOLVED")}
    # 3 jobs x 7 job alert types cap the open alerts at 21.
    assert len(by_status["ACTIVE"]) == 21
    assert len(by_status["ACKNOWLEDGED"]) == 0
    assert len(by_status["RESOLVED"]) == 979
    open_keys = [row["dedup_key"] for row in by_status["ACTIVE"] + by_status["ACKNOWLEDGED"]]
    assert len(open_keys) == len(set(open_keys))
    assert any(row["storage_backend"] for row in by_status["RESOLVED"])
    assert all(row["resolved_at"] is not None for row in by_status["RESOLVED"])


def test_console_few_alerts_cover_every_status():
    rows = list(alert_rows(6, job_ids=[1, 2, 3, 4, 5], user_id=9, history_end=datetime(2026, 1, 1)))
    assert [row["status"] for row in rows] == ["ACTIVE", "ACKNOWLEDGED"] + ["RESOLVED"] * 4
    assert rows[1]["acknowledged_by_id"] == 9


def test_console_render_script_runs():
    result = run_script(
        "console_render.py", "--database", "sqlite", "--jobs", "12", "--runs", "600", "--alerts", "200",
        "--rounds", "1", "--requests", "2", "--warmup", "0",
    )
    assert result.returncode == 0, result.stderr
    for page in ("alert list", "dashboard", "job page"):
        assert f"| sqlite | {page} |" in result.stdout
    assert "sqlite large: 12 jobs, 600 runs (50 on the measured job), 200 alerts" in result.stdout
