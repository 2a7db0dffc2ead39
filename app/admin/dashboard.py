"""Data for the console's home page: alert counts, jobs and their health,
storage use and failed deliveries.

Every list here has a maximum length, and the number of queries does not
depend on the number of jobs, runs or alerts. The one exception is the
storage forecast, which costs one query per backend shown (at most
BACKENDS_SHOWN).
"""

from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app, request
from flask_admin.contrib.sqla.filters import FilterEqual, FilterNotEqual
from flask_login import current_user
from sqlalchemy import func
from sqlalchemy.orm import defer, joinedload

from app.admin.formatting import filtered_list_url, human_duration, human_size, relative_time, time_stamp
from app.extensions import db
from app.models import Alert, AlertEvent, BackupJob, BackupRun, Delivery, Severity, StorageBackend, UsageReading, utcnow
from app.models.alerts import OPEN_STATUSES
from app.monitoring.alerts import get_active_alerts, get_alert_summary
from app.monitoring.capacity import forecast_full, newest_reading_id

ACTIVE_ALERTS_SHOWN = 20
JOBS_PER_PAGE = 50
BACKENDS_SHOWN = 20
FAILED_DELIVERIES_SHOWN = 5
FAILED_DELIVERIES_HOURS = 24


@dataclass
class JobRow:
    job: BackupJob
    run: BackupRun | None
    health: str
    # (alert_type, severity) of the job's open alerts, worst first.
    open_alerts: list = field(default_factory=list)


@dataclass
class BackendRow:
    backend: StorageBackend
    reading: UsageReading | None
    capacity: int | None
    percent: float | None
    # "ok", "warning" or "critical" by the backend's thresholds, in percent.
    level: str
    warning_percent: float
    critical_percent: float
    forecast: object
    open_alerts: list = field(default_factory=list)


def job_health(job, run, open_alerts):
    """Return the job's health from its pause flag, open alerts and latest run.

    The states are paused, missed, failing, warning, never reported and ok,
    checked in that order. A missed schedule outranks a failure because it
    means nothing is running at all. An open alert of ERROR or worse, or a
    failed latest run, makes a job "failing", and a milder open alert makes
    it "warning".
    """
    if job.paused:
        return "paused"
    if any(alert_type == "MISSED_BACKUP" for alert_type, _ in open_alerts):
        return "missed"
    if (run is not None and run.status == "failure") or any(s >= Severity.ERROR for _, s in open_alerts):
        return "failing"
    if open_alerts:
        return "warning"
    if run is None:
        return "never reported"
    return "ok"


def latest_run_id_of_job():
    """Return a scalar subquery: the id of the job's latest run by finish time.

    It is correlated to BackupJob, so the database finds each job's latest
    run with one seek in ix_backup_runs_job_finished instead of grouping
    every run of every job.
    """
    return (
        db.select(BackupRun.id)
        .where(BackupRun.job_id == BackupJob.id)
        .order_by(BackupRun.finished_at.desc(), BackupRun.id.desc())
        .limit(1)
        .correlate(BackupJob)
        .scalar_subquery()
    )


def job_rows(page=0, per_page=JOBS_PER_PAGE):
    """Return (rows, total, page) for one page of jobs, those with the worst open alert first.

    A page past the end is replaced by the last page.

    Four queries whatever the number of jobs, runs and alerts: the count,
    the page of jobs, the latest run of each job on the page, and the open
    alerts of those jobs.
    """
    total = db.session.scalar(db.select(func.count()).select_from(BackupJob))
    page = max(min(page, (total - 1) // per_page), 0)
    # One pass over the open alerts (ix_alerts_status_severity_last_seen). A
    # correlated MAX per job would be cheaper on paper, but SQLite without
    # statistics runs it on the status index and reads every open alert once per job.
    worst_open = (
        db.select(Alert.job_id, func.max(Alert.severity).label("severity"))
        .where(Alert.status.in_(OPEN_STATUSES), Alert.job_id.is_not(None))
        .group_by(Alert.job_id)
        .subquery()
    )
    jobs = db.session.execute(
        db.select(BackupJob)
        .outerjoin(worst_open, worst_open.c.job_id == BackupJob.id)
        .order_by(func.coalesce(worst_open.c.severity, 0).desc(), BackupJob.paused, BackupJob.name)
        .limit(per_page)
        .offset(page * per_page)
    ).scalars().all()
    if not jobs:
        return [], total, page
    job_ids = [job.id for job in jobs]
    latest_ids = db.select(latest_run_id_of_job()).select_from(BackupJob).where(BackupJob.id.in_(job_ids))
    runs = db.session.execute(
        db.select(BackupRun).where(BackupRun.id.in_(latest_ids))
        # The log tail can be 64 KiB per run and the dashboard does not show it.
        .options(defer(BackupRun.log_tail))
    ).scalars().all()
    run_by_job = {run.job_id: run for run in runs}
    open_by_job = {}
    for job_id, alert_type, severity in db.session.execute(
        db.select(Alert.job_id, Alert.alert_type, Alert.severity)
        .where(Alert.job_id.in_(job_ids), Alert.status.in_(OPEN_STATUSES))
        .order_by(Alert.severity.desc(), Alert.alert_type)
    ):
        open_by_job.setdefault(job_id, []).append((alert_type, severity))
    rows = []
    for job in jobs:
        run = run_by_job.get(job.id)
        alerts = open_by_job.get(job.id, [])
        rows.append(JobRow(job=job, run=run, health=job_health(job, run, alerts), open_alerts=alerts))
    return rows, total, page


def backend_rows(now=None, limit=BACKENDS_SHOWN):
    """Return (rows, total) for the enabled storage backends: use, level and forecast.

    The forecast reads each backend's recent readings, one query per
    backend, so the list is capped at `limit`.
    """
    now = now or utcnow()
    config = current_app.config
    total = db.session.scalar(
        db.select(func.count()).select_from(StorageBackend).where(StorageBackend.enabled.is_(True))
    )
    latest_reading_id = newest_reading_id()
    pairs = db.session.execute(
        db.select(StorageBackend, UsageReading)
        .outerjoin(UsageReading, UsageReading.id == latest_reading_id)
        .where(StorageBackend.enabled.is_(True))
        .order_by(StorageBackend.name)
        .limit(limit)
    ).all()
    open_by_backend = {}
    if pairs:
        for name, alert_type, severity, message in db.session.execute(
            db.select(Alert.storage_backend, Alert.alert_type, Alert.severity, Alert.message)
            .where(Alert.storage_backend.in_([b.name for b, _ in pairs]), Alert.status.in_(OPEN_STATUSES))
            .order_by(Alert.severity.desc())
        ):
            open_by_backend.setdefault(name, []).append((alert_type, severity, message))
    rows = []
    for backend, reading in pairs:
        capacity = backend.capacity_bytes or (reading.capacity_bytes if reading is not None else None)
        warning = backend.warning_percent or config["STORAGE_WARNING_PERCENT"]
        critical = backend.critical_percent or config["STORAGE_CRITICAL_PERCENT"]
        percent = None
        level = "ok"
        forecast = None
        if reading is not None and capacity:
            percent = 100.0 * reading.used_bytes / capacity
            if percent > critical:
                level = "critical"
            elif percent > warning:
                level = "warning"
            forecast = forecast_full(backend, capacity, now)
        rows.append(BackendRow(
            backend=backend, reading=reading, capacity=capacity, percent=percent, level=level,
            warning_percent=warning, critical_percent=critical, forecast=forecast, open_alerts=open_by_backend.get(backend.name, []),
        ))
    return rows, total


def failed_deliveries(now=None, limit=FAILED_DELIVERIES_SHOWN):
    """Return (count, latest) of deliveries that failed in the last FAILED_DELIVERIES_HOURS.

    A failed delivery stays as it is until someone retries it, so its
    updated_at is when it failed.
    """
    now = now or utcnow()
    where = (Delivery.status == "failed", Delivery.updated_at >= now - timedelta(hours=FAILED_DELIVERIES_HOURS))
    count = db.session.scalar(db.select(func.count()).select_from(Delivery).where(*where))
    latest = []
    if count:
        latest = db.session.execute(
            db.select(Delivery).where(*where)
            .options(joinedload(Delivery.alert_event).joinedload(AlertEvent.alert))
            .order_by(Delivery.updated_at.desc(), Delivery.id.desc())
            .limit(limit)
        ).scalars().all()
    return count, latest


def active_alerts(limit=ACTIVE_ALERTS_SHOWN):
    """Return the worst and newest ACTIVE alerts, with their jobs loaded in the same query."""
    return db.session.execute(get_active_alerts().options(joinedload(Alert.job)).limit(limit)).scalars().all()


def dashboard_context(user, jobs_page=0, now=None):
    """Return the template values of the home page for `user`.

    Failed deliveries carry recipients' addresses, so only platform admins get them.
    """
    now = now or utcnow()
    jobs, jobs_total, jobs_page = job_rows(jobs_page)
    backends, backends_total = backend_rows(now)
    context = {
        "now": now,
        "summary": get_alert_summary(now),
        "alerts": active_alerts(),
        "jobs": jobs,
        "jobs_total": jobs_total,
        "jobs_page": jobs_page,
        "jobs_per_page": JOBS_PER_PAGE,
        "backends": backends,
        "backends_total": backends_total,
        "failed_hours": FAILED_DELIVERIES_HOURS,
    }
    if user.is_platform_admin:
        context["failed_count"], context["failed_latest"] = failed_deliveries(now)
    return context


def render_dashboard(view):
    """Render the home page for the current user, with links into the filtered lists."""
    jobs_page = max(request.args.get("jobs_page", 0, type=int), 0)
    context = dashboard_context(current_user, jobs_page)
    active = (Alert.status, FilterEqual, "ACTIVE")
    context.update(
        severity_links={
            s.name: filtered_list_url("alerts", active, (Alert.severity, FilterEqual, str(s.value))) for s in Severity
        },
        active_link=filtered_list_url("alerts", active),
        acknowledged_link=filtered_list_url("alerts", (Alert.status, FilterEqual, "ACKNOWLEDGED")),
        job_alert_link=lambda name: filtered_list_url(
            "alerts", (Alert.status, FilterNotEqual, "RESOLVED"), (BackupJob.name, FilterEqual, name)
        ),
        time_stamp=time_stamp,
        relative_time=relative_time,
        human_size=human_size,
        human_duration=human_duration,
    )
    if "failed_count" in context:
        context["failed_link"] = filtered_list_url("deliveries", (Delivery.status, FilterEqual, "failed"))
    return view.render("admin/console_index.html", **context)
