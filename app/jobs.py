"""RQ entry points: thin functions that open an app context and call the domain.

The worker imports this module by name. Outside an app context (the `rq
worker` process) each function builds the application once per process.
"""

import logging
from contextlib import contextmanager
from datetime import timedelta

from flask import has_app_context

log = logging.getLogger(__name__)
_app = None
# The hourly storage check is tried this many times, 5 minutes apart.
STORAGE_CHECK_MAX_ATTEMPTS = 3


def use_app(app):
    """Make `app` the process's app; the worker calls this before forking."""
    global _app
    _app = app


@contextmanager
def app_context():
    """Enter the current app context, or the process's own app when there is none."""
    global _app
    if has_app_context():
        yield
        return
    if _app is None:
        from app import create_app

        _app = create_app()
    with _app.app_context():
        yield


def process_run(run_id):
    """Check one stored run, raise or resolve its alerts, and enqueue their deliveries."""
    from app.monitoring.checks import process_run as check_run

    with app_context():
        return check_run(run_id)


def verify_run_artifact(run_id):
    """Ask the run's storage backend for the object it reported and check size and checksum."""
    from app.extensions import db
    from app.models import BackupRun, utcnow
    from app.monitoring.artifacts import evaluate_artifact, find_backend
    from app.monitoring.capacity import backend_client
    from app.notifications.dispatcher import commit_and_dispatch
    from app.storage import StorageError

    with app_context():
        run = db.session.get(BackupRun, run_id)
        if run is None or run.object_key is None:
            return None
        backend = find_backend(run)
        info, error = None, None
        if backend is None:
            error = "no storage backend with this name is configured"
        else:
            try:
                info = backend_client(backend).get_object(run.object_key)
            except StorageError as exc:
                error = str(exc)
        problems = evaluate_artifact(run, info, utcnow(), error=error)
        run.artifact_checked_at = utcnow()
        commit_and_dispatch()
        return problems


def monitor_storage_capacity(attempt=1):
    """Measure every storage backend; on an unexpected failure, try again in 5 minutes.

    The failure is re-raised so that it reaches RQ's failed job registry.
    """
    from app.monitoring.capacity import check_storage_capacity
    from app.queue import get_queue

    with app_context():
        try:
            return check_storage_capacity()
        except Exception:
            if attempt < STORAGE_CHECK_MAX_ATTEMPTS:
                get_queue().enqueue_in(timedelta(minutes=5), monitor_storage_capacity, attempt + 1)
                log.warning("Storage check failed (attempt %s), retrying in 5 minutes", attempt)
            raise


def send_delivery(delivery_id):
    """Send one delivery and put any failed-but-retryable ones back on the queue."""
    from app.notifications.send import deliver
    from app.queue import enqueue_delivery

    with app_context():
        retries = deliver(delivery_id)
        for retry_id, delay in retries.items():
            enqueue_delivery(retry_id, delay_seconds=delay)
        return retries


def check_missed_backups():
    """Raise alerts for scheduled jobs that did not report and runs that did not finish."""
    from app.monitoring.missed import check_missed_backups as check

    with app_context():
        return check()


def send_alert_reminders():
    """Send reminders of ACTIVE alerts that are not acknowledged."""
    from app.monitoring.lifecycle import send_reminders
    from app.notifications.dispatcher import commit_and_dispatch

    with app_context():
        sent = send_reminders()
        commit_and_dispatch()
        return sent


def cleanup_resolved_alerts():
    """Once a day at CLEANUP_AT: delete resolved alerts past their retention."""
    from app.monitoring.lifecycle import cleanup_resolved_alerts as cleanup
    from app.periodic import run_daily

    with app_context():
        return run_daily("cleanup_resolved_alerts", "CLEANUP_AT", cleanup)


def send_alert_digest():
    """Once a day at DIGEST_AT: the digest of open alerts, to platform admins."""
    from app.monitoring.lifecycle import send_alert_digest as send
    from app.notifications.dispatcher import commit_and_dispatch
    from app.periodic import run_daily

    def send_and_dispatch(now):
        payload = send(now)
        commit_and_dispatch()
        return {"total": payload["total"]}

    with app_context():
        return run_daily("send_alert_digest", "DIGEST_AT", send_and_dispatch)


def sweep_unchecked_runs():
    """Enqueue runs and artifacts never checked and deliveries left pending (Redis was down, a worker died)."""
    from app.monitoring.sweeper import enqueue_stalled_deliveries, enqueue_unchecked_artifacts, enqueue_unchecked_runs

    with app_context():
        return enqueue_unchecked_runs(), enqueue_unchecked_artifacts(), enqueue_stalled_deliveries()
