"""Raising, resolving and reading alerts."""

import logging
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Alert, Severity, Silence, utcnow
from app.models.alerts import ALERT_TYPES, OPEN_STATUSES
from app.monitoring.lifecycle import close_alert, schedule_reminder
from app.notifications.dispatcher import record_event

log = logging.getLogger(__name__)


def dedup_key(alert_type, job=None, storage_backend=None):
    """Return the key that identifies one condition: type plus subject."""
    if job is not None:
        return f"{alert_type}:job:{job.id}"
    if storage_backend is not None:
        return f"{alert_type}:storage:{storage_backend}"
    return f"{alert_type}:global"


def create_backup_alert_with_notifications(
    alert_type, severity, message, details, job=None, run=None, storage_backend=None, now=None
):
    """Raise an alert, or update the open one for the same condition.

    Returns (alert, event) where event is "raised", "escalated" or None when
    an open alert only recorded another occurrence. Raised and escalated
    events fan out into deliveries by each user's preferences. The caller
    commits, with commit_and_dispatch() so the deliveries are enqueued.
    """
    if alert_type not in ALERT_TYPES:
        raise ValueError(f"unknown alert type {alert_type!r}")
    severity = Severity(severity)
    now = now or utcnow()
    key = dedup_key(alert_type, job, storage_backend)

    alert = _open_alert(key)
    if alert is None:
        alert = _insert_alert(key, alert_type, severity, message, details, job, run, storage_backend, now)
        if alert is not None:
            _notify(alert, "raised", now)
            log.info("Alert %s: raised %s %s (%s)", alert.id, severity.name, alert_type, key)
            return alert, "raised"
        # Another worker opened it first; record this as an occurrence.
        alert = _open_alert(key)

    event = _record_occurrence(alert, severity, message, details, run, now)
    if event:
        # A worse condition needs attention again, even if the milder one was acknowledged.
        alert.status = "ACTIVE"
        _notify(alert, event, now)
        log.info("Alert %s: escalated to %s", alert.id, severity.name)
    return alert, event


def _notify(alert, event, now):
    alert_event = record_event(alert, event, now=now)
    silence = db.session.get(Silence, alert_event.payload["silenced_by"]) if "silenced_by" in alert_event.payload else None
    schedule_reminder(alert, now, silence)


def resolve_alerts(alert_type, job=None, storage_backend=None, now=None, reason="condition cleared"):
    """Resolve the open alert for this condition, if any; return it or None."""
    alert = _open_alert(dedup_key(alert_type, job, storage_backend))
    if alert is None:
        return None
    return close_alert(alert.id, now=now, reason=reason)


def get_active_alerts(severity=None):
    """Return a query of ACTIVE alerts, worst first, newest first within a severity."""
    query = db.select(Alert).where(Alert.status == "ACTIVE")
    if isinstance(severity, str):
        severity = Severity.parse(severity)
    if severity is not None:
        query = query.where(Alert.severity == severity)
    return query.order_by(Alert.severity.desc(), Alert.last_seen_at.desc(), Alert.id.desc())


def get_alert_summary(now=None):
    """Return counts of active alerts by severity and type, and related totals."""
    now = now or utcnow()
    by_severity = {s.name: 0 for s in sorted(Severity, reverse=True)}
    rows = db.session.execute(
        db.select(Alert.severity, func.count()).where(Alert.status == "ACTIVE").group_by(Alert.severity)
    )
    for severity, count in rows:
        by_severity[severity.name] = count
    by_type = dict(
        db.session.execute(
            db.select(Alert.alert_type, func.count()).where(Alert.status == "ACTIVE").group_by(Alert.alert_type)
        ).all()
    )
    acknowledged = db.session.scalar(db.select(func.count()).where(Alert.status == "ACKNOWLEDGED"))
    resolved = db.session.scalar(
        db.select(func.count()).where(Alert.status == "RESOLVED", Alert.resolved_at >= now - timedelta(hours=24))
    )
    return {
        "active": sum(by_severity.values()),
        "by_severity": by_severity,
        "by_type": by_type,
        "acknowledged": acknowledged,
        "resolved_last_24h": resolved,
    }


def _open_alert(key):
    return db.session.execute(
        db.select(Alert).where(Alert.dedup_key == key, Alert.status.in_(OPEN_STATUSES))
    ).scalar_one_or_none()


def _insert_alert(key, alert_type, severity, message, details, job, run, storage_backend, now):
    """Insert a new open alert; return None if a concurrent insert won the key."""
    alert = Alert(
        alert_type=alert_type,
        severity=severity,
        status="ACTIVE",
        dedup_key=key,
        message=message,
        details=details or {},
        job_id=job.id if job is not None else None,
        run_id=run.id if run is not None else None,
        storage_backend=storage_backend,
        occurrences=1,
        created_at=now,
        last_seen_at=now,
    )
    # A savepoint, so losing the race on the unique index keeps the caller's
    # transaction (and the claimed run) intact.
    try:
        with db.session.begin_nested():
            db.session.add(alert)
    except IntegrityError:
        return None
    return alert


def _record_occurrence(alert, severity, message, details, run, now):
    """Update an open alert for a repeated condition; return "escalated" or None."""
    alert.occurrences += 1
    alert.last_seen_at = now
    if run is not None:
        alert.run_id = run.id
    if severity < alert.severity:
        # The alert keeps its worst severity, so it keeps the message and
        # details that explain it; the milder occurrence is only counted.
        return None
    alert.message = message
    alert.details = details or {}
    if severity > alert.severity:
        alert.severity = severity
        return "escalated"
    return None
