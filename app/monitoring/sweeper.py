"""Recovery of runs that were stored while the queue was unavailable."""

import logging
from datetime import timedelta

from flask import current_app

from app.extensions import db
from app.models import BackupRun, utcnow
from app.queue import enqueue_artifact_check, enqueue_run_check

log = logging.getLogger(__name__)
# Enough to drain a long Redis outage in a few sweeps without one huge query.
SWEEP_BATCH = 1000
# Artifact checks are tried again for this long; a run whose check keeps
# crashing is then left alone instead of being enqueued every minute.
ARTIFACT_RETRY_WINDOW = timedelta(days=1)


def enqueue_unchecked_runs(now=None):
    """Enqueue checks for runs still unchecked after SWEEP_AFTER_SECONDS; return how many."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=current_app.config["SWEEP_AFTER_SECONDS"])
    run_ids = db.session.execute(
        db.select(BackupRun.id)
        .where(BackupRun.checked_at.is_(None), BackupRun.received_at <= cutoff)
        .order_by(BackupRun.received_at)
        .limit(SWEEP_BATCH)
    ).scalars().all()
    return _enqueue_each(run_ids, enqueue_run_check, "unchecked runs")


def enqueue_unchecked_artifacts(now=None):
    """Enqueue artifact checks of checked runs whose object was never looked up; return how many."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=current_app.config["SWEEP_AFTER_SECONDS"])
    run_ids = db.session.execute(
        db.select(BackupRun.id)
        .where(
            BackupRun.object_key.is_not(None),
            BackupRun.status == "success",
            BackupRun.artifact_checked_at.is_(None),
            BackupRun.checked_at <= cutoff,
            BackupRun.checked_at > now - ARTIFACT_RETRY_WINDOW,
        )
        .order_by(BackupRun.checked_at)
        .limit(SWEEP_BATCH)
    ).scalars().all()
    return _enqueue_each(run_ids, enqueue_artifact_check, "artifact checks")


def enqueue_stalled_deliveries(now=None):
    """Re-enqueue due pending deliveries, and release claims of workers that died.

    A delivery stuck in "sending" past DELIVERY_CLAIM_TIMEOUT_SECONDS was
    claimed by a worker that did not finish; it goes back to pending. Its
    message may have gone out before the worker died, so it can arrive twice.
    """
    from sqlalchemy import or_, update

    from app.models import Delivery
    from app.queue import enqueue_delivery

    now = now or utcnow()
    stale = now - timedelta(seconds=current_app.config["DELIVERY_CLAIM_TIMEOUT_SECONDS"])
    released = db.session.execute(
        db.select(Delivery.id)
        .where(Delivery.status == "sending", Delivery.claimed_at <= stale)
        .order_by(Delivery.id)
        .limit(SWEEP_BATCH)
    ).scalars().all()
    if released:
        db.session.execute(
            update(Delivery)
            .where(Delivery.id.in_(released), Delivery.status == "sending", Delivery.claimed_at <= stale)
            .values(status="pending", claimed_at=None, next_attempt_at=None, updated_at=now)
        )
        log.warning("Sweeper: released %s deliveries claimed by a worker that stopped", len(released))
    db.session.commit()
    cutoff = now - timedelta(seconds=current_app.config["SWEEP_AFTER_SECONDS"])
    waiting = db.session.execute(
        db.select(Delivery.id)
        .where(
            Delivery.status == "pending",
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
            Delivery.updated_at <= cutoff,
        )
        .order_by(Delivery.id)
        .limit(SWEEP_BATCH)
    ).scalars().all()
    return _enqueue_each(sorted(set(released) | set(waiting)), enqueue_delivery, "pending deliveries")


def _enqueue_each(ids, enqueue, what):
    """Enqueue each id until Redis fails; log and return how many were enqueued.

    The ones left are still in the database, so the next sweep finds them.
    """
    enqueued = 0
    for item_id in ids:
        if not enqueue(item_id):
            break
        enqueued += 1
    if ids:
        log.info("Sweeper: enqueued %s of %s %s", enqueued, len(ids), what)
    return enqueued
