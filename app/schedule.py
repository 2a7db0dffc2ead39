"""The periodic jobs, registered idempotently with rq-scheduler.

Each job has a fixed id, so registering again (a restarted or a second
scheduler process) replaces it instead of adding another. rq-scheduler
holds a lock in Redis while it moves due jobs to the queue and reschedules
them, so two scheduler processes never both enqueue the same occurrence.
The daily jobs are checked every minute and run once per local date (see
app/periodic.py), which keeps them at their local time across daylight
saving changes.
"""

from rq_scheduler import Scheduler

from flask import current_app

from app.queue import get_redis

EVERY_MINUTE = "* * * * *"
# (job id, cron string in UTC, function, what an operator reads in the log)
PERIODIC_JOBS = (
    ("backwatch-sweep-unchecked-runs", EVERY_MINUTE, "app.jobs.sweep_unchecked_runs", "every minute"),
    ("backwatch-check-missed-backups", EVERY_MINUTE, "app.jobs.check_missed_backups", "every minute"),
    ("backwatch-send-alert-reminders", EVERY_MINUTE, "app.jobs.send_alert_reminders", "every minute"),
    ("backwatch-monitor-storage-capacity", "0 * * * *", "app.jobs.monitor_storage_capacity", "hourly"),
    ("backwatch-cleanup-resolved-alerts", EVERY_MINUTE, "app.jobs.cleanup_resolved_alerts", "daily at {CLEANUP_AT}"),
    ("backwatch-send-alert-digest", EVERY_MINUTE, "app.jobs.send_alert_digest", "daily at {DIGEST_AT}"),
)


def get_scheduler():
    return Scheduler(queue_name=current_app.config["RQ_QUEUE"], connection=get_redis())


def register_periodic_jobs():
    """Register every periodic job; return one line per job for the log."""
    scheduler = get_scheduler()
    config = current_app.config
    lines = []
    for job_id, cron, func, when in PERIODIC_JOBS:
        if job_id in scheduler:
            scheduler.cancel(job_id)
        scheduler.cron(cron, func=func, id=job_id, queue_name=config["RQ_QUEUE"], use_local_timezone=False)
        when = when.format(**config)
        if "daily" in when:
            when += f" {config['TIMEZONE']} (checked every minute)"
        lines.append(f"Scheduled {func} {when} as {job_id}")
    return lines
