"""Fan-out of alert events into deliveries, and the sending of one delivery.

Fan-out runs inside the caller's transaction and does no network I/O: it
writes the AlertEvent, one Delivery per channel and recipient, and the
in-app notifications. After the commit, `commit_and_dispatch` puts the
pending deliveries on the queue: one RQ job per delivery, except that the
emails of one event go in batches, one job per batch.
"""

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, update
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import AlertEvent, Delivery, Notification, Severity, User, WebhookEndpoint, utcnow

log = logging.getLogger(__name__)
_SESSION_KEY = "backwatch_new_deliveries"


def record_event(alert, event, payload=None, now=None):
    """Write an event of `alert` and its deliveries; the caller commits.

    `alert` is None for a digest, whose content is `payload`. Inside a
    silence of the alert's job or backend the event is written with no
    deliveries.
    """
    from app.monitoring.silences import active_silence

    now = now or utcnow()
    payload = dict(payload or {})
    silence = active_silence(alert, now) if alert is not None else None
    if silence is not None:
        # Recorded for the alert's history, sent to no one.
        payload["silenced_by"] = silence.id
    alert_event = AlertEvent(alert=alert, event=event, payload=payload, created_at=now)
    db.session.add(alert_event)
    db.session.flush()
    if silence is not None:
        log.info("Alert %s: %s not sent, silenced until %s", alert.id, event, silence.ends_at.isoformat())
        return alert_event
    severity = alert.severity if alert is not None else Severity.CRITICAL

    for user in _recipients(event):
        _fan_out_to_user(alert_event, user, severity, now)
    if event != "digest":
        _fan_out_to_webhooks(alert_event, severity, now)
    return alert_event


def _recipients(event):
    query = db.select(User).where(User.is_active_user.is_(True)).options(selectinload(User.preferences))
    if event == "digest":
        query = query.where(User.is_platform_admin.is_(True))
    return db.session.execute(query.order_by(User.id)).scalars().all()


def _fan_out_to_user(alert_event, user, severity, now):
    digest = alert_event.event == "digest"
    for channel in ("in_app", "email", "sms"):
        if digest and channel == "sms":
            continue
        enabled, min_severity = user.preference_for(channel)
        if not enabled or (not digest and severity < min_severity):
            continue
        # SMS is for CRITICAL alerts only, whatever the preference is.
        if channel == "sms" and severity < Severity.CRITICAL:
            continue
        delivery = Delivery(
            alert_event=alert_event, channel=channel, recipient_key=f"user:{user.id}", user_id=user.id, created_at=now
        )
        db.session.add(delivery)
        if channel == "in_app":
            _deliver_in_app(delivery, alert_event, user, now)
        elif channel == "email":
            delivery.address = user.email
            _mark_new(delivery)
        elif not user.phone_number:
            delivery.status = "skipped"
            delivery.last_error = "user has no phone number; add one on the preferences page"
        else:
            delivery.address = user.phone_number
            _mark_new(delivery)


def _fan_out_to_webhooks(alert_event, severity, now):
    endpoints = db.session.execute(
        db.select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True)).order_by(WebhookEndpoint.id)
    ).scalars()
    for endpoint in endpoints:
        if severity < endpoint.min_severity:
            continue
        delivery = Delivery(
            alert_event=alert_event, channel="webhook", recipient_key=f"webhook:{endpoint.id}",
            webhook_endpoint_id=endpoint.id, address=endpoint.url, created_at=now,
        )
        db.session.add(delivery)
        _mark_new(delivery)
    url = current_app.config.get("BACKUP_ALERT_WEBHOOK_URL")
    if url:
        delivery = Delivery(
            alert_event=alert_event, channel="webhook", recipient_key="setting:BACKUP_ALERT_WEBHOOK_URL",
            address=url, created_at=now,
        )
        db.session.add(delivery)
        _mark_new(delivery)


def _deliver_in_app(delivery, alert_event, user, now):
    """Write the in-app notification at once: it is a row, so nothing can fail later."""
    from app.notifications.context import alert_url, console_url

    alert = alert_event.alert
    if alert is None:
        total = alert_event.payload.get("total", 0)
        title, body, link = f"Daily digest: {total} open alerts", summarise_digest(alert_event.payload), console_url("/admin/")
    else:
        prefix = {"raised": "", "escalated": "Escalated: ", "reminder": "Reminder: ", "resolved": "Resolved: "}
        title = f"{prefix.get(alert_event.event, '')}[{alert.severity.name}] {alert.message}"
        body, link = alert.message, alert_url(alert.id)
    db.session.add(Notification(
        user_id=user.id, alert=alert, delivery=delivery, event=alert_event.event,
        title=title[:300], body=body, link=link, created_at=now,
    ))
    delivery.status = "sent"
    delivery.attempts = 1
    delivery.sent_at = now


def summarise_digest(payload):
    by_type = ", ".join(f"{name}: {count}" for name, count in sorted(payload.get("by_type", {}).items()))
    return by_type or "No open alerts."


def _mark_new(delivery):
    db.session.info.setdefault(_SESSION_KEY, []).append(delivery)


def commit_and_dispatch():
    """Commit the session, then enqueue the deliveries the transaction created.

    Emails of one event go out in batches that share an SMTP connection, so
    only the first email of each batch gets a job: that job claims the rest.
    """
    db.session.flush()
    # Read ids and fields before the commit: afterwards each read would
    # reload its row.
    new = [(d.id, d.alert_event_id, d.channel) for d in db.session.info.pop(_SESSION_KEY, []) if d.status == "pending"]
    db.session.commit()
    return enqueue_jobs_for(new)


def enqueue_jobs_for(deliveries):
    """Enqueue one job per non-email delivery and per batch of an event's emails.

    `deliveries` are (id, event id, channel) tuples. Returns the number of
    jobs put on the queue.
    """
    from app.queue import enqueue_deliveries

    batch_size = max(current_app.config["MAIL_BATCH_SIZE"], 1)
    job_ids, emails_seen = [], {}
    for delivery_id, event_id, channel in sorted(deliveries):
        if channel == "email":
            position = emails_seen.get(event_id, 0)
            emails_seen[event_id] = position + 1
            if position % batch_size:
                continue
        job_ids.append(delivery_id)
    return enqueue_deliveries(job_ids)


def retry_delay(delivery, error):
    """Return seconds until the next attempt: Retry-After if given, else capped exponential backoff."""
    config = current_app.config
    if error.retry_after is not None:
        return min(max(error.retry_after, 1), config["DELIVERY_BACKOFF_MAX_SECONDS"])
    delay = config["DELIVERY_BACKOFF_BASE_SECONDS"] * 2 ** max(delivery.attempts - 1, 0)
    return min(delay, config["DELIVERY_BACKOFF_MAX_SECONDS"])


# RQ 3.0 stores a delayed job's time in whole seconds, rounded down, so a
# retry can start up to a second before its next_attempt_at.
DUE_TOLERANCE = timedelta(seconds=2)


def due_condition(now):
    """SQL condition: the delivery may be tried at `now`."""
    return or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now + DUE_TOLERANCE)


def claim(delivery_id, now):
    """Mark a due pending delivery as sending; return True if this caller got it."""
    claimed = db.session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.status == "pending",
            due_condition(now),
        )
        .values(status="sending", claimed_at=now, attempts=Delivery.attempts + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return claimed == 1


def record_success(delivery, provider_id, now, note=None):
    delivery.status = "sent"
    delivery.sent_at = now
    delivery.provider_message_id = provider_id
    delivery.last_error = note
    delivery.claimed_at = None
    log.info("Delivery %s: sent by %s to %s", delivery.id, delivery.channel, delivery.recipient_key)


def record_failure(delivery, error, now):
    """Record a failed attempt; schedule another unless it is permanent or the last.

    Returns the delay in seconds before the next attempt, or None.
    """
    delivery.last_error = error.message[:2000]
    delivery.last_status_code = error.status_code
    delivery.claimed_at = None
    if error.permanent or delivery.attempts >= current_app.config["DELIVERY_MAX_ATTEMPTS"]:
        delivery.status = "failed"
        log.warning("Delivery %s: failed after %s attempts: %s", delivery.id, delivery.attempts, error.message)
        return None
    delay = retry_delay(delivery, error)
    delivery.status = "pending"
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    log.info("Delivery %s: attempt %s failed, retry in %.0f s: %s", delivery.id, delivery.attempts, delay, error.message)
    return delay
