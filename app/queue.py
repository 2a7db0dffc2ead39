"""The RQ queue: connection and enqueueing, tolerant of a Redis outage."""

import logging
from datetime import timedelta

import redis
from flask import current_app
from rq import Queue

log = logging.getLogger(__name__)


def get_redis():
    """Return a Redis connection for the configured REDIS_URL (cached per app)."""
    conn = current_app.extensions.get("backwatch_redis")
    if conn is None:
        url = current_app.config["REDIS_URL"]
        if not url:
            raise RuntimeError("REDIS_URL is not set; start Redis or use `make run`, which starts one")
        timeout = current_app.config["REDIS_SOCKET_TIMEOUT"]
        conn = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        current_app.extensions["backwatch_redis"] = conn
    return conn


def get_queue():
    return Queue(current_app.config["RQ_QUEUE"], connection=get_redis())


# What a failed connection to Redis raises: the caller's row is already
# committed, so these are logged and the sweeper enqueues the work later.
QUEUE_ERRORS = (redis.RedisError, OSError, RuntimeError)


def _enqueue(subject, func, argument, job_id, delay_seconds=None):
    """Enqueue `func(argument)`, now or after `delay_seconds`; return False if Redis failed."""
    try:
        queue = get_queue()
        if delay_seconds:
            queue.enqueue_in(timedelta(seconds=delay_seconds), func, argument, job_id=job_id)
        else:
            queue.enqueue(func, argument, job_id=job_id)
    except QUEUE_ERRORS as exc:
        log.warning("%s: not enqueued: %s", subject, exc)
        return False
    return True


def enqueue_run_check(run_id):
    """Put the check of run `run_id` on the queue; return False if Redis failed.

    The run is already committed, so a failure here loses nothing: the
    sweeper enqueues unchecked runs later.
    """
    return _enqueue(f"Run {run_id} check", "app.jobs.process_run", run_id, f"process-run-{run_id}")


def enqueue_artifact_check(run_id):
    """Put the artifact check of run `run_id` on the queue; return False if Redis failed.

    A check that is not enqueued, or whose worker died, is enqueued again by the sweeper.
    """
    return _enqueue(f"Run {run_id} artifact check", "app.jobs.verify_run_artifact", run_id, f"verify-artifact-{run_id}")


def enqueue_delivery(delivery_id, delay_seconds=None):
    """Put delivery `delivery_id` on the queue, now or after `delay_seconds`.

    Returns False if Redis failed. The delivery then stays pending in the
    database, and the sweeper enqueues it later.
    """
    return _enqueue(
        f"Delivery {delivery_id}", "app.jobs.send_delivery", delivery_id, f"delivery-{delivery_id}", delay_seconds
    )


def enqueue_deliveries(delivery_ids):
    """Enqueue a job for each delivery in one Redis round trip; return how many.

    On a Redis failure 0 is returned. The deliveries stay pending in the
    database, and the sweeper enqueues those older than SWEEP_AFTER_SECONDS.
    """
    if not delivery_ids:
        return 0
    try:
        queue = get_queue()
        jobs = [
            Queue.prepare_data("app.jobs.send_delivery", args=(delivery_id,), job_id=f"delivery-{delivery_id}")
            for delivery_id in delivery_ids
        ]
        queue.enqueue_many(jobs)
    except QUEUE_ERRORS as exc:
        log.warning("Deliveries %s to %s: not enqueued: %s", delivery_ids[0], delivery_ids[-1], exc)
        return 0
    return len(delivery_ids)
