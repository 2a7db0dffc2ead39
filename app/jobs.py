"""RQ entry points: thin functions that open an app context and call the domain.

The worker imports this module by name. Outside an app context (the `rq
worker` process) each function builds the application once per process.
"""

import logging
from contextlib import contextmanager

from flask import has_app_context

log = logging.getLogger(__name__)
_app = None


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


def send_delivery(delivery_id):
    """Send one delivery and put any failed-but-retryable ones back on the queue."""
    from app.notifications.send import deliver
    from app.queue import enqueue_delivery

    with app_context():
        retries = deliver(delivery_id)
        for retry_id, delay in retries.items():
            enqueue_delivery(retry_id, delay_seconds=delay)
        return retries


def sweep_unchecked_runs():
    """Enqueue runs never checked and deliveries left pending (Redis was down, a worker died)."""
    from app.monitoring.sweeper import enqueue_stalled_deliveries, enqueue_unchecked_runs

    with app_context():
        return enqueue_unchecked_runs(), enqueue_stalled_deliveries()
