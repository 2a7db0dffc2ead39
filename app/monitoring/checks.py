"""The checks applied to each stored run."""

import logging
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import update

from app.extensions import db
from app.models import BackupRun, Severity, utcnow
from app.monitoring.alerts import create_backup_alert_with_notifications, resolve_alerts
from app.monitoring.missed import resolve_on_report
from app.notifications.dispatcher import commit_and_dispatch
from app.queue import enqueue_artifact_check
from app.units import human_bytes, human_seconds

log = logging.getLogger(__name__)

# Alert type and severity raised by a failed run of each kind.
FAILURE_ALERTS = {
    "backup": ("BACKUP_FAILURE", Severity.CRITICAL),
    "verify": ("INTEGRITY_FAILURE", Severity.WARNING),
    "restore": ("RESTORE_FAILURE", Severity.CRITICAL),
}


@dataclass
class Baseline:
    mean: float
    samples: int


def process_run(run_id, now=None):
    """Claim run `run_id`, apply the checks for its kind and commit.

    The claim is a conditional update on checked_at, in the same transaction
    as the alerts it raises: a second call, or a concurrent worker, finds no
    row to claim and returns False without doing anything.
    """
    now = now or utcnow()
    claimed = db.session.execute(
        update(BackupRun)
        .where(BackupRun.id == run_id, BackupRun.checked_at.is_(None))
        .values(checked_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        log.info("Run %s: already checked or missing, skipped", run_id)
        return False

    run = db.session.get(BackupRun, run_id)
    resolve_on_report(run.job, run, now)
    check_failure(run, now)
    if run.kind == "backup" and run.status == "success":
        check_size(run, now)
        check_duration(run, now)
    needs_artifact_check = run.status == "success" and run.object_key is not None
    commit_and_dispatch()
    if needs_artifact_check:
        # Asking the backend is network I/O, so it is a job of its own.
        enqueue_artifact_check(run_id)
    log.info("Run %s: checked", run_id)
    return True


def check_failure(run, now):
    """Raise the failure alert for a failed run; resolve it after a success."""
    alert_type, severity = FAILURE_ALERTS[run.kind]
    job = run.job
    if run.status == "success":
        resolve_alerts(alert_type, job=job, now=now, reason=f"run {run.id} succeeded")
        return
    reason = run.error or (f"exit code {run.exit_code}" if run.exit_code is not None else "reported failure")
    create_backup_alert_with_notifications(
        alert_type,
        severity,
        f"{run.kind.capitalize()} of {job.name} failed: {_first_line(reason)}",
        {"run_id": run.id, "exit_code": run.exit_code, "error": run.error, "kind": run.kind},
        job=job,
        run=run,
        now=now,
    )


def check_size(run, now):
    """Compare the run's size with the mean of the job's recent successful runs."""
    if run.size_bytes is None:
        return
    baseline = recent_baseline(run, BackupRun.size_bytes)
    if baseline is None:
        return
    config = current_app.config
    deviation = _relative_change(run.size_bytes, baseline.mean)
    severity = _grade(abs(deviation), config["SIZE_WARNING_DEVIATION"], config["SIZE_CRITICAL_DEVIATION"])
    if severity is None:
        resolve_alerts("SIZE_DEVIATION", job=run.job, now=now, reason=f"run {run.id} within range")
        return
    direction = "smaller" if deviation < 0 else "larger"
    percent = "∞" if deviation == float("inf") else f"{abs(deviation) * 100:.0f}"
    create_backup_alert_with_notifications(
        "SIZE_DEVIATION",
        severity,
        f"Backup of {run.job.name} is {percent}% {direction} than usual "
        f"({human_bytes(run.size_bytes)} against a mean of {human_bytes(baseline.mean)})",
        _details(run, "size_bytes", run.size_bytes, baseline, deviation),
        job=run.job,
        run=run,
        now=now,
    )


def check_duration(run, now):
    """Raise an alert when the run took much longer than the recent mean."""
    if run.duration_seconds is None:
        return
    baseline = recent_baseline(run, BackupRun.duration_seconds)
    if baseline is None or baseline.mean <= 0:
        return
    config = current_app.config
    increase = _relative_change(run.duration_seconds, baseline.mean)
    severity = _grade(increase, config["DURATION_WARNING_INCREASE"], config["DURATION_CRITICAL_INCREASE"])
    if severity is None:
        resolve_alerts("DURATION_THRESHOLD", job=run.job, now=now, reason=f"run {run.id} within range")
        return
    create_backup_alert_with_notifications(
        "DURATION_THRESHOLD",
        severity,
        f"Backup of {run.job.name} took {human_seconds(run.duration_seconds)}, "
        f"{increase * 100:.0f}% above the mean of {human_seconds(baseline.mean)}",
        _details(run, "duration_seconds", run.duration_seconds, baseline, increase),
        job=run.job,
        run=run,
        now=now,
    )


def recent_baseline(run, column):
    """Return the mean of `column` over the job's recent successful backups before `run`.

    Reads at most the window's rows through the (job, kind, status, finished)
    index, so the cost does not grow with the job's history. Returns None
    when fewer than the minimum sample count exist.
    """
    config = current_app.config
    job = run.job
    window = job.baseline_window or config["BASELINE_WINDOW"]
    minimum = job.baseline_min_samples or config["BASELINE_MIN_SAMPLES"]
    values = db.session.execute(
        db.select(column)
        .where(
            BackupRun.job_id == run.job_id,
            BackupRun.kind == "backup",
            BackupRun.status == "success",
            BackupRun.finished_at <= run.finished_at,
            BackupRun.id != run.id,
            column.is_not(None),
        )
        .order_by(BackupRun.finished_at.desc(), BackupRun.id.desc())
        .limit(window)
    ).scalars().all()
    if len(values) < minimum:
        return None
    return Baseline(mean=sum(values) / len(values), samples=len(values))


def _relative_change(value, mean):
    """Return (value - mean) / mean; infinite when the mean is 0 and value is not."""
    if mean == 0:
        return 0.0 if value == 0 else float("inf")
    return (value - mean) / mean


def _grade(change, warning, critical):
    if change > critical:
        return Severity.CRITICAL
    if change > warning:
        return Severity.WARNING
    return None


def _details(run, field, value, baseline, change):
    return {
        "run_id": run.id,
        "field": field,
        "value": value,
        "baseline_mean": baseline.mean,
        "baseline_samples": baseline.samples,
        "relative_change": None if change == float("inf") else round(change, 4),
    }


def _first_line(text):
    line = text.strip().splitlines()[0] if text.strip() else text
    return line[:200]
