"""Sending one delivery: claim it, render, call its channel, record the outcome."""

import logging
import time

from flask import current_app
from sqlalchemy import update

from app.crypto import decrypt_secret
from app.extensions import db
from app.models import Delivery, utcnow
from app.notifications import sms, webhook
from app.notifications.context import build_context
from app.notifications.dispatcher import claim, due_condition, record_failure, record_success
from app.notifications.email import build_message, send_batch
from app.notifications.errors import DeliveryError
from app.notifications.templates import render

log = logging.getLogger(__name__)
# A batch of emails renews the claim of its unsent emails this often, so a
# claim that is older than DELIVERY_CLAIM_TIMEOUT_SECONDS belongs to a worker that died.
CLAIM_RENEW_SECONDS = 15


def deliver(delivery_id, now=None):
    """Send delivery `delivery_id` if it is still pending and due.

    Returns {delivery id: retry delay in seconds} for the deliveries that
    must be tried again, so the caller can put them back on the queue.
    An email delivery takes up to MAIL_BATCH_SIZE - 1 later pending emails
    of the same event with it, so they share one SMTP connection.
    """
    now = now or utcnow()
    if not claim(delivery_id, now):
        db.session.rollback()
        log.info("Delivery %s: not pending or not due, skipped", delivery_id)
        return {}
    delivery = db.session.get(Delivery, delivery_id)
    if delivery.channel == "email":
        batch = [delivery] + _claim_email_batch(delivery, now)
    else:
        batch = [delivery]
    # The claim is committed before sending, so a second worker never sends the same message.
    db.session.commit()

    retries = {}
    if delivery.channel == "email":
        outcomes = _send_emails(batch)
    else:
        outcomes = {delivery.id: _send_one(delivery)}
    for item in batch:
        outcome, note = outcomes[item.id]
        if isinstance(outcome, DeliveryError):
            delay = record_failure(item, outcome, now)
            if delay is not None:
                retries[item.id] = delay
        else:
            record_success(item, outcome, now, note)
    db.session.commit()
    return retries


def _claim_email_batch(delivery, now):
    limit = current_app.config["MAIL_BATCH_SIZE"] - 1
    if limit <= 0:
        return []
    candidate_ids = db.session.execute(
        db.select(Delivery.id)
        .where(
            Delivery.alert_event_id == delivery.alert_event_id,
            Delivery.channel == "email",
            Delivery.status == "pending",
            # Later ids only: the batches of one event then never overlap,
            # because each batch's job starts at its first email.
            Delivery.id > delivery.id,
        )
        .order_by(Delivery.id)
        .limit(limit)
    ).scalars().all()
    if not candidate_ids:
        return []
    claimed_ids = db.session.execute(
        update(Delivery)
        .where(
            Delivery.id.in_(candidate_ids),
            Delivery.status == "pending",
            due_condition(now),
        )
        .values(status="sending", claimed_at=now, attempts=Delivery.attempts + 1, updated_at=now)
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    ).scalars().all()
    if not claimed_ids:
        return []
    return db.session.execute(
        db.select(Delivery).where(Delivery.id.in_(claimed_ids)).order_by(Delivery.id)
    ).scalars().all()


def _send_emails(batch):
    """Render once for the event and send every email of the batch on one connection."""
    event = batch[0].alert_event
    rendered = render("backup_alert_digest" if event.event == "digest" else "backup_alert", build_context(event))
    messages = [(item.id, build_message(item.address, rendered)) for item in batch]
    results = send_batch(messages, on_progress=_claim_renewer())
    return {key: (value, rendered.error) for key, value in results.items()}


def _claim_renewer():
    """Return a callback that renews the claims of a batch's unsent emails every CLAIM_RENEW_SECONDS."""
    renewed = time.monotonic()

    def renew(remaining_ids):
        nonlocal renewed
        if not remaining_ids or time.monotonic() - renewed < CLAIM_RENEW_SECONDS:
            return
        # Its own connection and transaction: the session's objects stay as they are.
        with db.engine.begin() as connection:
            connection.execute(
                update(Delivery)
                .where(Delivery.id.in_(remaining_ids), Delivery.status == "sending")
                .values(claimed_at=utcnow())
            )
        renewed = time.monotonic()

    return renew


def _send_one(delivery):
    """Send an SMS or webhook delivery; return (provider id or DeliveryError, note)."""
    context = build_context(delivery.alert_event)
    try:
        if delivery.channel == "sms":
            rendered = render("backup_alert_critical", context)
            return sms.send_sms(delivery.address, sms.fit_sms(rendered.text)), rendered.error
        if delivery.channel == "webhook":
            url, secret, fmt = _webhook_target(delivery)
            body = webhook.build_payload(context, fmt)
            status = webhook.send_webhook(url, secret, body, delivery_id=delivery.id, event=context["event"])
            return f"HTTP {status}", None
    except DeliveryError as exc:
        return exc, None
    return DeliveryError(f"unknown channel {delivery.channel!r}", permanent=True), None


def _webhook_target(delivery):
    """Return (url, secret, format) for a webhook delivery."""
    endpoint = delivery.webhook_endpoint
    if endpoint is not None:
        try:
            secret = decrypt_secret(endpoint.secret_encrypted)
        except ValueError as exc:
            raise DeliveryError(f"webhook {endpoint.name!r}: {exc}", permanent=True) from None
        return endpoint.url, secret, endpoint.format
    config = current_app.config
    if not config.get("BACKUP_ALERT_WEBHOOK_SECRET"):
        raise DeliveryError("BACKUP_ALERT_WEBHOOK_SECRET is not set; webhooks are always signed", permanent=True)
    return delivery.address, config["BACKUP_ALERT_WEBHOOK_SECRET"], config["BACKUP_ALERT_WEBHOOK_FORMAT"]
