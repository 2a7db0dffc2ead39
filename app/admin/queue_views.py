"""The Queues page: RQ queue lengths, failed jobs, workers and the periodic jobs.

Every logged-in user sees the counts, the workers and the schedule. A failed
job's arguments and exception can carry addresses and webhook URLs, so only
platform admins see those, and only they may requeue or delete a job. When
Redis cannot be reached, the page still renders and shows the error.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta, timezone

from flask import flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_login import current_user
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.worker import Worker
from rq_scheduler import Scheduler

from app.admin.formatting import relative_time, time_stamp
from app.admin.views import AdminWritesMixin
from app.models import utcnow
from app.queue import QUEUE_ERRORS, get_queue

log = logging.getLogger(__name__)

FAILED_SHOWN = 50
WORKERS_SHOWN = 50
PERIODIC_SHOWN = 100
# Lines kept from the end of a failed job's traceback, and characters of its arguments.
EXCEPTION_LINES = 15
ARGUMENTS_MAX_CHARS = 300
# rqscheduler checks every 60 s by default, so a periodic job this late means it is not running.
PERIODIC_LATE = timedelta(minutes=3)


@dataclass
class FailedJob:
    id: str
    function: str
    arguments: str
    enqueued_at: object
    ended_at: object
    exception: str


@dataclass
class WorkerRow:
    name: str
    state: str
    current_job: str
    last_heartbeat: object
    successful: int
    failed: int


@dataclass
class PeriodicJob:
    id: str
    function: str
    schedule: str
    next_run_at: object
    late: bool


def _aware(moment):
    """Return `moment` in UTC; rq-scheduler returns naive UTC times."""
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _shorten(text, limit):
    return text if len(text) <= limit else text[: limit - 1] + "…"


def queue_counts(queue):
    """Return the number of jobs in each state, read without cleaning the registries up."""
    return {
        "queued": queue.count,
        "scheduled": queue.scheduled_job_registry.get_job_count(cleanup=False),
        "started": queue.started_job_registry.get_job_count(cleanup=False),
        "deferred": queue.deferred_job_registry.get_job_count(cleanup=False),
        "failed": queue.failed_job_registry.get_job_count(cleanup=False),
    }


def describe_arguments(job):
    try:
        parts = [repr(argument) for argument in job.args]
        parts += [f"{key}={value!r}" for key, value in job.kwargs.items()]
    except DeserializationError:
        return "(cannot be read)"
    return _shorten(", ".join(parts), ARGUMENTS_MAX_CHARS)


def failed_jobs(queue, limit=FAILED_SHOWN):
    """Return the most recently failed jobs, newest first, with the end of each traceback."""
    registry = queue.failed_job_registry
    job_ids = registry.get_job_ids(0, limit - 1, desc=True, cleanup=False)
    rows = []
    for job_id, job in zip(job_ids, Job.fetch_many(job_ids, connection=queue.connection)):
        if job is None:
            # The job's data expired before its registry entry did.
            rows.append(FailedJob(job_id, "(job data expired)", "", None, None, ""))
            continue
        result = job.latest_result()
        exception = (result.exc_string or "") if result is not None else ""
        rows.append(FailedJob(
            id=job.id,
            function=job.func_name or "",
            arguments=describe_arguments(job),
            enqueued_at=_aware(job.enqueued_at),
            ended_at=_aware(job.ended_at),
            exception="\n".join(exception.strip().splitlines()[-EXCEPTION_LINES:]),
        ))
    return rows


def workers(queue, limit=WORKERS_SHOWN):
    """Return the workers that listen on `queue`, with what each one is running."""
    rows = []
    for worker in sorted(Worker.all(queue=queue), key=lambda w: w.name)[:limit]:
        try:
            job = worker.get_current_job()
        except NoSuchJobError:
            job = None
        current = f"{job.id} ({job.func_name})" if job is not None else ""
        rows.append(WorkerRow(
            name=worker.name, state=worker.get_state(), current_job=current,
            last_heartbeat=_aware(worker.last_heartbeat),
            successful=worker.successful_job_count, failed=worker.failed_job_count,
        ))
    return rows


def periodic_jobs(queue, now, limit=PERIODIC_SHOWN):
    """Return the jobs that rq-scheduler repeats (app/schedule.py), soonest first."""
    scheduler = Scheduler(queue_name=queue.name, connection=queue.connection)
    rows = []
    for job, next_run_at in scheduler.get_jobs(with_times=True, offset=0, length=limit):
        next_run_at = _aware(next_run_at)
        meta = job.meta or {}
        if meta.get("cron_string"):
            schedule = f"cron {meta['cron_string']} (UTC)"
        elif meta.get("interval"):
            schedule = f"every {meta['interval']} s"
        else:
            schedule = "once"
        rows.append(PeriodicJob(
            id=job.id, function=job.func_name or "", schedule=schedule, next_run_at=next_run_at,
            late=next_run_at is not None and now - next_run_at > PERIODIC_LATE,
        ))
    return rows


def queue_state(now):
    """Read everything the page shows from Redis; raises one of QUEUE_ERRORS when Redis fails."""
    queue = get_queue()
    return {
        "queue_name": queue.name,
        "counts": queue_counts(queue),
        "failed": failed_jobs(queue),
        "workers": workers(queue),
        "periodic": periodic_jobs(queue, now),
    }


class QueueView(AdminWritesMixin, BaseView):
    """The RQ queue as people need it: what is waiting, what failed, who is working."""

    @expose("/")
    def index(self):
        now = utcnow()
        context = {"now": now, "time_stamp": time_stamp, "relative_time": relative_time,
                   "is_admin": current_user.is_platform_admin, "failed_shown": FAILED_SHOWN}
        try:
            context.update(queue_state(now))
        except QUEUE_ERRORS as exc:
            log.warning("Queues page: Redis cannot be read: %s", exc)
            context["redis_error"] = str(exc)
        return self.render("admin/queues.html", **context)

    @expose("/failed/requeue", methods=["POST"])
    def requeue_failed(self):
        """Put a failed job back on its queue; platform admins only (AdminWritesMixin)."""
        job_id = request.form.get("job_id", "")
        try:
            registry = get_queue().failed_job_registry
            if job_id not in registry:
                flash(f"Job {job_id} is not in the failed job list.", "error")
                return redirect(url_for(".index"))
            registry.requeue(job_id)
        except NoSuchJobError:
            flash(f"Job {job_id} cannot be requeued: its data has expired. Delete it instead.", "error")
        except InvalidJobOperation:
            flash(f"Job {job_id} is not in the failed job list.", "error")
        except QUEUE_ERRORS as exc:
            flash(f"Job {job_id} was not requeued: Redis failed: {exc}", "error")
        else:
            log.info("Queues page: job %s requeued by %s", job_id, current_user.email)
            flash(f"Job {job_id} requeued.", "success")
        return redirect(url_for(".index"))

    @expose("/failed/delete", methods=["POST"])
    def delete_failed(self):
        """Delete a failed job and its results; platform admins only (AdminWritesMixin)."""
        job_id = request.form.get("job_id", "")
        try:
            queue = get_queue()
            registry = queue.failed_job_registry
            if job_id not in registry:
                flash(f"Job {job_id} is not in the failed job list.", "error")
                return redirect(url_for(".index"))
            try:
                Job.fetch(job_id, connection=queue.connection).delete()
            except NoSuchJobError:
                registry.remove(job_id)
        except QUEUE_ERRORS as exc:
            flash(f"Job {job_id} was not deleted: Redis failed: {exc}", "error")
        else:
            log.info("Queues page: failed job %s deleted by %s", job_id, current_user.email)
            flash(f"Job {job_id} deleted.", "success")
        return redirect(url_for(".index"))
