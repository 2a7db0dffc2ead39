"""The benchmarks under bench/: their helpers, and a tiny run of each script.

The script runs check only that the benchmarks still work against the
current app and schema. No assertion depends on a measured time.
"""

import os
import subprocess
import sys

import pytest

from bench import harness
from bench.check_history import HISTORY_END, history_rows
from bench.hook_intake import rotated

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
