"""The periodic jobs, registered idempotently with rq-scheduler."""

from rq_scheduler import Scheduler

from flask import current_app

from app.queue import get_redis

# Fixed ids: registering again replaces a job instead of adding a second one.
PERIODIC_JOBS = (
    ("backwatch-sweep-unchecked-runs", "* * * * *", "app.jobs.sweep_unchecked_runs"),
    ("backwatch-monitor-storage-capacity", "0 * * * *", "app.jobs.monitor_storage_capacity"),
)


def register_periodic_jobs():
    """Register every periodic job; return one line per job for the log."""
    scheduler = Scheduler(queue_name=current_app.config["RQ_QUEUE"], connection=get_redis())
    lines = []
    for job_id, cron, func in PERIODIC_JOBS:
        if job_id in scheduler:
            scheduler.cancel(job_id)
        scheduler.cron(cron, func=func, id=job_id, queue_name=current_app.config["RQ_QUEUE"], use_local_timezone=False)
        lines.append(f"Scheduled {func} at '{cron}' (UTC) as {job_id}")
    return lines
