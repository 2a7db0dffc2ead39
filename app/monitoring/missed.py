"""Missed backups and runs that take too long.

A job with a schedule expects its next report at the first scheduled time
after its latest report (or after its schedule started), and raises
MISSED_BACKUP when nothing arrived by that time plus the grace period.
Cron schedules are read in the job's own timezone with cronsim. On the
nights the clocks change it fires a daily time once. An hour that happens
twice fires on its first pass, and a skipped hour fires when the clocks
have moved on.
"""

import logging
from datetime import timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from flask import current_app

from app.extensions import db
from app.models import Alert, BackupJob, RunStart, Severity, utcnow
from app.models.alerts import OPEN_STATUSES
from app.monitoring.alerts import create_backup_alert_with_notifications, dedup_key, resolve_alerts
from app.notifications.dispatcher import commit_and_dispatch
from app.units import human_seconds

log = logging.getLogger(__name__)
# One interval schedule may be as short as a minute and as long as a year.
INTERVAL_RANGE = (60, 366 * 24 * 3600)
# Run starts examined per pass of the long-run check.
STARTS_BATCH = 1000


def validate_schedule(cron, tz_name, interval_seconds):
    """Check a schedule; raise ValueError("field: problem") when it is not usable.

    Either a cron expression with an IANA timezone, or an interval in
    seconds, or neither (the job is not checked for missed runs).
    """
    if cron and interval_seconds:
        raise ValueError("schedule_cron: give a cron expression or an interval, not both")
    try:
        zone = ZoneInfo(tz_name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"schedule_timezone: {tz_name!r} is not an IANA timezone name such as Europe/Berlin") from None
    if cron:
        try:
            next(CronSim(cron, utcnow().astimezone(zone)))
        except (CronSimError, StopIteration) as exc:
            raise ValueError(f"schedule_cron: {cron!r} is not a cron expression ({exc or 'it never fires'})") from None
    if interval_seconds is not None and interval_seconds != 0:
        low, high = INTERVAL_RANGE
        if not low <= interval_seconds <= high:
            raise ValueError(f"schedule_interval_seconds: must be between {low} and {high} seconds")


def grace(job):
    seconds = job.grace_seconds if job.grace_seconds is not None else current_app.config["MISSED_GRACE_SECONDS"]
    return timedelta(seconds=seconds)


def max_run(job):
    seconds = job.max_run_seconds if job.max_run_seconds is not None else current_app.config["MAX_RUN_SECONDS"]
    return timedelta(seconds=seconds)


def next_expected(job, now=None):
    """Return (expected_at, deadline) for the job's next report, or None without a schedule."""
    if not job.schedule_cron and not job.schedule_interval_seconds:
        return None
    clock = max(t for t in (job.last_run_at, job.schedule_since, job.created_at) if t is not None)
    if job.schedule_cron:
        zone = ZoneInfo(job.schedule_timezone or "UTC")
        expected = next(CronSim(job.schedule_cron, clock.astimezone(zone))).astimezone(timezone.utc)
    else:
        expected = clock + timedelta(seconds=job.schedule_interval_seconds)
    return expected, expected + grace(job)


def expected_runs_between(job, start, end):
    """Return the scheduled times in [start, end) as UTC datetimes (cron schedules only)."""
    zone = ZoneInfo(job.schedule_timezone or "UTC")
    times = []
    for fire in CronSim(job.schedule_cron, (start - timedelta(microseconds=1)).astimezone(zone)):
        fire = fire.astimezone(timezone.utc)
        if fire >= end:
            break
        times.append(fire)
    return times


def check_missed_backups(now=None):
    """Raise MISSED_BACKUP and RUNNING_TOO_LONG alerts that are due, commit and dispatch.

    Returns (missed, running_too_long): the number of alerts raised.
    """
    now = now or utcnow()
    missed = _check_schedules(now)
    too_long = _check_long_runs(now)
    commit_and_dispatch()
    return missed, too_long


def _check_schedules(now):
    jobs = db.session.execute(
        db.select(BackupJob).where(
            BackupJob.paused.is_(False),
            (BackupJob.schedule_cron.is_not(None)) | (BackupJob.schedule_interval_seconds.is_not(None)),
        )
    ).scalars().all()
    already_open = _open_keys("MISSED_BACKUP")
    raised = 0
    for job in jobs:
        if dedup_key("MISSED_BACKUP", job=job) in already_open:
            continue
        try:
            expected = next_expected(job, now)
        except (CronSimError, ZoneInfoNotFoundError, ValueError, StopIteration) as exc:
            log.warning("Job %s: schedule cannot be read: %s", job.id, exc)
            continue
        if expected is None or now < expected[1]:
            continue
        expected_at, deadline = expected
        last = _readable(job.last_run_at) if job.last_run_at else "never"
        create_backup_alert_with_notifications(
            "MISSED_BACKUP",
            Severity.ERROR,
            f"{job.name} did not report: a run was expected at {_readable(expected_at)} (last report: {last})",
            {
                "expected_at": expected_at.isoformat(),
                "deadline": deadline.isoformat(),
                "last_report_at": job.last_run_at.isoformat() if job.last_run_at else None,
                "schedule": job.schedule_cron or f"every {job.schedule_interval_seconds} s",
                "timezone": job.schedule_timezone if job.schedule_cron else None,
            },
            job=job,
            now=now,
        )
        raised += 1
    return raised


def _check_long_runs(now):
    """Raise RUNNING_TOO_LONG for starts older than their job's maximum run time; resolve cleared ones.

    Each start raises the alert once. A start that will never finish (the
    machine rebooted) does not raise it again after a person resolves it.
    """
    starts = db.session.execute(
        db.select(RunStart).join(BackupJob).where(BackupJob.paused.is_(False))
        .order_by(RunStart.started_at).limit(STARTS_BATCH)
    ).scalars().all()
    overdue, unreported = {}, {}
    for start in starts:
        if now - start.started_at > max_run(start.job):
            overdue.setdefault(start.job_id, start)
            if start.overdue_reported_at is None:
                unreported.setdefault(start.job_id, start)
                start.overdue_reported_at = now
    raised = 0
    already_open = _open_keys("RUNNING_TOO_LONG")
    for start in unreported.values():
        job = start.job
        if dedup_key("RUNNING_TOO_LONG", job=job) in already_open:
            continue
        running = human_seconds((now - start.started_at).total_seconds())
        create_backup_alert_with_notifications(
            "RUNNING_TOO_LONG",
            Severity.ERROR,
            f"{job.name} started at {_readable(start.started_at)} and has not finished after {running}",
            {
                "started_at": start.started_at.isoformat(),
                "run_id": start.client_run_id,
                "max_run_seconds": int(max_run(job).total_seconds()),
            },
            job=job,
            now=now,
        )
        raised += 1
    for key in already_open:
        job_id = int(key.rsplit(":", 1)[1])
        if job_id not in overdue:
            job = db.session.get(BackupJob, job_id)
            if job is not None:
                resolve_alerts("RUNNING_TOO_LONG", job=job, now=now, reason="no run is overdue any more")
    return raised


def resolve_on_report(job, run, now):
    """Resolve the job's missed and overdue alerts that a finished report clears (it resets the clock)."""
    resolve_alerts("MISSED_BACKUP", job=job, now=now, reason=f"run {run.id} reported")
    oldest = db.session.execute(
        db.select(RunStart.started_at).where(RunStart.job_id == job.id).order_by(RunStart.started_at).limit(1)
    ).scalar_one_or_none()
    if oldest is None or now - oldest <= max_run(job):
        resolve_alerts("RUNNING_TOO_LONG", job=job, now=now, reason=f"run {run.id} finished")


def pause_job_checks(job, user=None, now=None):
    """Resolve the schedule alerts of a job being paused: a paused job is not expected to report.

    The caller sets job.paused and commits with commit_and_dispatch().
    """
    now = now or utcnow()
    by_user = f" by {user.email}" if user is not None else ""
    for alert_type in ("MISSED_BACKUP", "RUNNING_TOO_LONG"):
        resolve_alerts(alert_type, job=job, now=now, reason=f"job paused{by_user}")


def _readable(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _open_keys(alert_type):
    return set(
        db.session.execute(
            db.select(Alert.dedup_key).where(Alert.alert_type == alert_type, Alert.status.in_(OPEN_STATUSES))
        ).scalars()
    )
