"""The worker's checks: failure, size, duration, verify and restore rules."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event

from app.extensions import db
from app.models import Alert, BackupJob, BackupRun, Severity
from app.monitoring.checks import process_run

GB = 1_000_000_000
START = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def job(ctx):
    job, _ = BackupJob.create("nightly-db")
    db.session.add(job)
    db.session.commit()
    return job


def add_run(job, day, status="success", kind="backup", size=None, duration=None, checked=True):
    finished = START + timedelta(days=day)
    run = BackupRun(
        job_id=job.id, kind=kind, status=status, size_bytes=size, duration_seconds=duration,
        finished_at=finished, started_at=finished - timedelta(seconds=duration or 0), received_at=finished,
        checked_at=finished if checked else None,
    )
    db.session.add(run)
    db.session.commit()
    return run


def history(job, sizes=None, durations=None):
    count = len(sizes or durations)
    for day in range(count):
        add_run(job, day, size=sizes[day] if sizes else None, duration=durations[day] if durations else None)
    return count


def check(job, day, **fields):
    run = add_run(job, day, checked=False, **fields)
    assert process_run(run.id) is True
    return run


def open_alerts(alert_type=None):
    query = db.select(Alert).where(Alert.status != "RESOLVED")
    if alert_type:
        query = query.where(Alert.alert_type == alert_type)
    return db.session.execute(query).scalars().all()


def test_failed_backup_critical(job):
    check(job, 0, status="failure")
    [alert] = open_alerts()
    assert alert.alert_type == "BACKUP_FAILURE"
    assert alert.severity == Severity.CRITICAL


def test_success_resolves_failure(job):
    check(job, 0, status="failure")
    check(job, 1, status="success")
    assert open_alerts() == []
    [alert] = db.session.execute(db.select(Alert)).scalars().all()
    assert alert.status == "RESOLVED"
    assert alert.resolved_at is not None


def test_repeated_failure_one_alert(job):
    check(job, 0, status="failure")
    check(job, 1, status="failure")
    [alert] = open_alerts()
    assert alert.occurrences == 2


def test_zero_bytes_after_normal_critical(job):
    day = history(job, sizes=[5 * GB + i * 10_000_000 for i in range(10)])
    check(job, day, size=0)
    [alert] = open_alerts("SIZE_DEVIATION")
    assert alert.severity == Severity.CRITICAL
    assert alert.details["baseline_samples"] == 10


def test_zero_byte_history_no_division(job):
    day = history(job, sizes=[0] * 5)
    check(job, day, size=0)
    assert open_alerts() == []


def test_growth_from_zero_history_critical(job):
    day = history(job, sizes=[0] * 5)
    check(job, day, size=1024)
    [alert] = open_alerts("SIZE_DEVIATION")
    assert alert.severity == Severity.CRITICAL
    assert alert.details["relative_change"] is None


def test_steady_size_no_alert(job):
    day = history(job, sizes=[100 * GB] * 10)
    check(job, day, size=100 * GB)
    assert open_alerts() == []


@pytest.mark.parametrize(
    "size, expected",
    [
        (120 * GB, None),
        (121 * GB, Severity.WARNING),
        (79 * GB, Severity.WARNING),
        (150 * GB, Severity.WARNING),
        (151 * GB, Severity.CRITICAL),
        (49 * GB, Severity.CRITICAL),
    ],
)
def test_size_deviation_grades(job, size, expected):
    day = history(job, sizes=[100 * GB] * 10)
    check(job, day, size=size)
    alerts = open_alerts("SIZE_DEVIATION")
    assert [a.severity for a in alerts] == ([expected] if expected else [])


def test_size_needs_min_samples(job):
    day = history(job, sizes=[100 * GB] * 2)
    check(job, day, size=1)
    assert open_alerts() == []


def test_size_window_per_job(job):
    job.baseline_window = 3
    job.baseline_min_samples = 2
    db.session.commit()
    # Old runs of 1 GB fall outside a window of the 3 latest (10 GB each).
    day = history(job, sizes=[1 * GB] * 7 + [10 * GB] * 3)
    check(job, day, size=10 * GB)
    assert open_alerts() == []


def test_size_ignores_failed_runs(job):
    day = history(job, sizes=[100 * GB] * 5)
    add_run(job, day, status="failure", size=0)
    check(job, day + 1, size=100 * GB)
    assert open_alerts("SIZE_DEVIATION") == []


def test_size_alert_resolves_when_back_in_range(job):
    day = history(job, sizes=[100 * GB] * 10)
    check(job, day, size=10 * GB)
    check(job, day + 1, size=100 * GB)
    assert open_alerts("SIZE_DEVIATION") == []


@pytest.mark.parametrize(
    "duration, expected",
    [(1500, None), (1501, Severity.WARNING), (2000, Severity.WARNING), (2001, Severity.CRITICAL), (100, None)],
)
def test_duration_grades(job, duration, expected):
    day = history(job, durations=[1000] * 10)
    check(job, day, duration=duration)
    alerts = open_alerts("DURATION_THRESHOLD")
    assert [a.severity for a in alerts] == ([expected] if expected else [])


def test_duration_zero_history(job):
    day = history(job, durations=[0] * 5)
    check(job, day, duration=30)
    assert open_alerts() == []


def test_failed_verify_integrity_warning(job):
    check(job, 0, kind="verify", status="failure")
    [alert] = open_alerts()
    assert alert.alert_type == "INTEGRITY_FAILURE"
    assert alert.severity == Severity.WARNING


def test_failed_restore_critical(job):
    check(job, 0, kind="restore", status="failure")
    [alert] = open_alerts()
    assert alert.alert_type == "RESTORE_FAILURE"
    assert alert.severity == Severity.CRITICAL


def test_verify_run_not_in_size_baseline(job):
    day = history(job, sizes=[100 * GB] * 5)
    for offset in range(5):
        add_run(job, day + offset, kind="verify", size=1)
    check(job, day + 5, size=100 * GB)
    assert open_alerts() == []


def test_process_twice_noop(job):
    run = add_run(job, 0, status="failure", checked=False)
    assert process_run(run.id) is True
    assert process_run(run.id) is False
    [alert] = open_alerts()
    assert alert.occurrences == 1


def test_process_missing_run(ctx):
    assert process_run(987654) is False


def test_baseline_query_reads_window_only(app, job):
    day = history(job, sizes=[GB] * 20)
    run = add_run(job, day, size=GB, checked=False)
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        process_run(run.id)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    baseline = [s for s in statements if "size_bytes" in s and "ORDER BY" in s]
    assert baseline, statements
    assert all("LIMIT" in s for s in baseline)
