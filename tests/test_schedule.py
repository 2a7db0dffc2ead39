"""Registration of the periodic jobs with rq-scheduler, against a real Redis."""

import threading
import time

from rq import Queue

from app.schedule import PERIODIC_JOBS, get_scheduler, register_periodic_jobs


def scheduled_ids(scheduler):
    return sorted(job.id for job in scheduler.get_jobs())


def test_every_periodic_job_is_registered(ctx):
    lines = register_periodic_jobs()
    functions = {func for _, _, func, _ in PERIODIC_JOBS}
    assert functions == {
        "app.jobs.sweep_unchecked_runs", "app.jobs.check_missed_backups", "app.jobs.send_alert_reminders",
        "app.jobs.monitor_storage_capacity", "app.jobs.cleanup_resolved_alerts", "app.jobs.send_alert_digest",
    }
    assert scheduled_ids(get_scheduler()) == sorted(job_id for job_id, *_ in PERIODIC_JOBS)
    assert any("daily at 05:00 UTC" in line for line in lines)
    assert any("daily at 08:00 UTC" in line for line in lines)


def test_registering_again_never_duplicates_a_job(ctx):
    for _ in range(3):
        register_periodic_jobs()
    ids = scheduled_ids(get_scheduler())
    assert len(ids) == len(PERIODIC_JOBS) == len(set(ids))


def test_registration_reads_the_configured_times(app, ctx, monkeypatch):
    monkeypatch.setitem(app.config, "TIMEZONE", "Europe/Berlin")
    monkeypatch.setitem(app.config, "DIGEST_AT", "07:30")
    lines = register_periodic_jobs()
    assert any("app.jobs.send_alert_digest daily at 07:30 Europe/Berlin" in line for line in lines)


def test_two_schedulers_enqueue_a_due_job_once(app, ctx):
    register_periodic_jobs()
    first, second = get_scheduler(), get_scheduler()
    # Make every periodic job due now.
    connection = first.connection
    for job_id, *_ in PERIODIC_JOBS:
        connection.zadd(first.scheduled_jobs_key, {job_id: time.time() - 1})
    barrier = threading.Barrier(2)

    def one_pass(scheduler):
        # What rq-scheduler's run loop does on each pass.
        barrier.wait()
        if scheduler.acquire_lock():
            scheduler.enqueue_jobs()
            scheduler.remove_lock()

    threads = [threading.Thread(target=one_pass, args=(scheduler,)) for scheduler in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    queue = Queue(app.config["RQ_QUEUE"], connection=connection)
    assert sorted(queue.job_ids) == sorted(job_id for job_id, *_ in PERIODIC_JOBS)
    # Each job is scheduled again for its next time, still once.
    assert len(scheduled_ids(first)) == len(PERIODIC_JOBS)


def test_scheduler_lock_excludes_second(ctx):
    first, second = get_scheduler(), get_scheduler()
    assert first.acquire_lock()
    assert not second.acquire_lock()
    first.remove_lock()
    assert second.acquire_lock()
    second.remove_lock()
