"""An alert after it is raised: acknowledgement, resolution, reminders,
silences, retention and the daily digest.

Every state change is a conditional UPDATE on the alert's status, so two
people (or a person and a worker) acting at once change it once and send
one message. Callers commit with commit_and_dispatch().
"""

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, update

from app.extensions import db
from app.models import Alert, AlertEvent, Delivery, Notification, Severity, Silence, utcnow
from app.models.alerts import OPEN_STATUSES
from app.monitoring.silences import active_silence
from app.notifications.dispatcher import record_event

log = logging.getLogger(__name__)
# Alerts handled per query by the reminder and cleanup passes.
BATCH = 500
# The digest lists at most this many alerts; the counts cover all of them.
DIGEST_MAX_ALERTS = 200


def reminder_interval():
    """Return the reminder interval as a timedelta, or None when reminders are off."""
    hours = current_app.config["ALERT_REMINDER_HOURS"]
    return timedelta(hours=hours) if hours and hours > 0 else None


def schedule_reminder(alert, now, silence=None):
    """Set when the next reminder of an ACTIVE alert is due.

    An alert raised inside a silence is reminded of when the silence ends,
    so a problem that outlasts the maintenance window is still heard of.
    """
    interval = reminder_interval()
    if silence is not None:
        alert.next_reminder_at = silence.ends_at
    elif interval is not None:
        alert.next_reminder_at = now + interval
    else:
        alert.next_reminder_at = None


def acknowledge_alert(alert_id, user, now=None):
    """Mark an ACTIVE alert as acknowledged by `user`; return it, or None if it was not ACTIVE.

    Acknowledging stops reminders and sends nothing; the event is kept for the alert's history.
    """
    now = now or utcnow()
    changed = db.session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.status == "ACTIVE")
        .values(
            status="ACKNOWLEDGED",
            acknowledged_at=now,
            acknowledged_by_id=user.id if user is not None else None,
            next_reminder_at=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        return None
    alert = db.session.get(Alert, alert_id, populate_existing=True)
    db.session.add(AlertEvent(
        alert=alert, event="acknowledged", payload={"by": user.email if user is not None else None}, created_at=now
    ))
    log.info("Alert %s: acknowledged by %s", alert_id, user.email if user is not None else "the system")
    return alert


def close_alert(alert_id, now=None, user=None, reason=None):
    """Resolve an open alert and record one "resolved" event; return it, or None if it was not open.

    `user` is the person who resolved it; None means the condition cleared.
    """
    now = now or utcnow()
    changed = db.session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.status.in_(OPEN_STATUSES))
        .values(
            status="RESOLVED",
            resolved_at=now,
            resolved_by_id=user.id if user is not None else None,
            next_reminder_at=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        return None
    alert = db.session.get(Alert, alert_id, populate_existing=True)
    reason = reason or (f"resolved by {user.email}" if user is not None else "condition cleared")
    alert.details = {**(alert.details or {}), "resolution": reason}
    record_event(alert, "resolved", now=now)
    log.info("Alert %s: resolved (%s)", alert_id, reason)
    return alert


def resolve_alert(alert_id, user, now=None):
    """Resolve an open alert on behalf of `user`; return it, or None if it was not open."""
    return close_alert(alert_id, now=now, user=user)


def send_reminders(now=None):
    """Send a reminder for each ACTIVE alert whose reminder is due; return how many were sent.

    The conditional update on next_reminder_at claims each reminder, so two
    workers running this at once send it once.
    """
    now = now or utcnow()
    interval = reminder_interval()
    sent = 0
    due = db.session.execute(
        db.select(Alert.id, Alert.next_reminder_at)
        .where(Alert.status == "ACTIVE", Alert.next_reminder_at <= now)
        .order_by(Alert.next_reminder_at)
        .limit(BATCH)
    ).all()
    for alert_id, due_at in due:
        alert = db.session.get(Alert, alert_id)
        silence = active_silence(alert, now)
        if silence is not None:
            following = silence.ends_at
        elif interval is not None:
            following = now + interval
        else:
            following = None
        claimed = db.session.execute(
            update(Alert)
            .where(Alert.id == alert_id, Alert.status == "ACTIVE", Alert.next_reminder_at == due_at)
            .values(
                next_reminder_at=following,
                reminders_sent=Alert.reminders_sent + (0 if silence is not None else 1),
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed == 1 and silence is None:
            db.session.refresh(alert)
            record_event(alert, "reminder", now=now)
            sent += 1
    if sent:
        log.info("Reminders: sent for %s alerts", sent)
    return sent


def cleanup_resolved_alerts(now=None):
    """Delete alerts resolved more than ALERT_RETENTION_DAYS ago, with their events,
    deliveries and notifications, and silences that ended as long ago.

    Returns the number of alerts deleted. Each batch is its own transaction.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=current_app.config["ALERT_RETENTION_DAYS"])
    deleted = 0
    while True:
        ids = db.session.execute(
            db.select(Alert.id).where(Alert.status == "RESOLVED", Alert.resolved_at < cutoff).limit(BATCH)
        ).scalars().all()
        if not ids:
            break
        events = db.select(AlertEvent.id).where(AlertEvent.alert_id.in_(ids))
        db.session.execute(delete(Notification).where(Notification.alert_id.in_(ids)))
        db.session.execute(delete(Delivery).where(Delivery.alert_event_id.in_(events)))
        db.session.execute(delete(AlertEvent).where(AlertEvent.alert_id.in_(ids)))
        db.session.execute(delete(Alert).where(Alert.id.in_(ids)))
        db.session.commit()
        deleted += len(ids)
    db.session.execute(delete(Silence).where(Silence.ends_at < cutoff))
    db.session.commit()
    log.info("Cleanup: deleted %s alerts resolved before %s", deleted, cutoff.isoformat())
    return deleted


def build_digest(now=None):
    """Return the digest payload: ACTIVE WARNING, ERROR and CRITICAL alerts by job, with counts."""
    from app.notifications.context import alert_url

    now = now or utcnow()
    where = (Alert.status == "ACTIVE", Alert.severity >= Severity.WARNING)
    by_severity = {s.name: 0 for s in sorted(Severity, reverse=True) if s >= Severity.WARNING}
    for severity, count in db.session.execute(
        db.select(Alert.severity, func.count()).where(*where).group_by(Alert.severity)
    ):
        by_severity[severity.name] = count
    by_type = dict(
        db.session.execute(db.select(Alert.alert_type, func.count()).where(*where).group_by(Alert.alert_type)).all()
    )
    alerts = db.session.execute(
        db.select(Alert).where(*where).order_by(Alert.severity.desc(), Alert.created_at).limit(DIGEST_MAX_ALERTS)
    ).scalars().all()
    groups = {}
    for alert in alerts:
        if alert.job_id is not None:
            subject = alert.job.name
        elif alert.storage_backend is not None:
            subject = f"storage {alert.storage_backend}"
        else:
            subject = "other"
        groups.setdefault(subject, []).append({
            "id": alert.id,
            "url": alert_url(alert.id),
            "type": alert.alert_type,
            "severity": alert.severity.name,
            "message": alert.message,
            "since": alert.created_at.isoformat(),
        })
    total = sum(by_severity.values())
    return {
        "generated_at": now.isoformat(),
        "total": total,
        "by_severity": by_severity,
        "by_type": by_type,
        "jobs": [{"job": subject, "alerts": items} for subject, items in sorted(groups.items())],
        "omitted": max(total - len(alerts), 0),
    }


def send_alert_digest(now=None):
    """Record the digest event; it reaches platform admins in-app and by email. Returns the payload."""
    now = now or utcnow()
    payload = build_digest(now)
    record_event(None, "digest", payload=payload, now=now)
    log.info("Digest: %s open alerts", payload["total"])
    return payload
