"""Benchmark how long the console takes to render its busiest pages, with a
large database against a nearly empty one.

For each database kind the benchmark creates two fresh migrated databases:

- large: --jobs jobs (default 1,000), --runs runs spread evenly over them
  (default 1,000,000, so 1,000 per job) and --alerts alerts (default
  100,000) in every status, inserted with Core executemany in batches;
- empty: 5 jobs, 25 runs and 6 alerts from the same generators.

It logs in as a platform admin through the login form with the Flask test
client. It then times GET requests of the alert list (/admin/backups/alerts/),
the dashboard (/admin/) and the page of the job with the most runs, each
from the request to the full response body. Requests alternate between the two
databases and the order flips every request. It prints the median and p95
per page and database, the ratio of the medians (large / empty) and the
SQL statements each page sends.

    .venv/bin/python bench/console_render.py --database both
"""

import argparse
import json
import logging
import os
import re
import sys
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import event  # noqa: E402

from bench import harness  # noqa: E402

log = logging.getLogger("bench")

ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "benchmark admin password"
# The nearly empty database: a handful of each.
EMPTY_SIZES = {"jobs": 5, "runs": 25, "alerts": 6}
# Alert types that belong to a job; the storage types go to the storage backends.
JOB_ALERT_TYPES = (
    "BACKUP_FAILURE", "SIZE_DEVIATION", "DURATION_THRESHOLD", "INTEGRITY_FAILURE",
    "RESTORE_FAILURE", "MISSED_BACKUP", "RUNNING_TOO_LONG",
)
STORAGE_ALERT_TYPES = ("STORAGE_CAPACITY", "STORAGE_ERROR", "STORAGE_FORECAST")
STORAGE_BACKENDS = 5
# Open alerts are from the last 30 days. Resolved ones are too, because the
# daily cleanup deletes them after ALERT_RETENTION_DAYS (30 by default).
ALERT_AGE_DAYS = 30
# Slowest SQL statements listed per page of the large database.
STATEMENTS_LISTED = 3
# Shares of the alerts that are ACTIVE and ACKNOWLEDGED; the rest are RESOLVED.
ACTIVE_SHARE = 0.03
ACKNOWLEDGED_SHARE = 0.02
# One in this many resolved alerts is about a storage backend rather than a job.
STORAGE_ALERT_EVERY = 50
# Severity values (10 INFO, 20 WARNING, 30 ERROR, 40 CRITICAL) the alerts cycle through.
SEVERITIES = (20, 20, 30, 40, 20, 10, 40, 30)
SIZE_BYTES = 50_000_000_000
DURATION_SECONDS = 3600.0
PAGES = ("alert list", "dashboard", "job page")


def parse_args():
    parser = argparse.ArgumentParser(description="Time console pages with a large and a nearly empty database.")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "postgres", "both"), default="sqlite",
                        help="database to measure on; postgres is the same as postgresql (default: sqlite)")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the large database (default: 1000)")
    parser.add_argument("--runs", type=int, default=1_000_000,
                        help="runs in the large database, spread evenly over the jobs (default: 1000000)")
    parser.add_argument("--alerts", type=int, default=100_000,
                        help="alerts in the large database, 3%% ACTIVE, 2%% ACKNOWLEDGED, the rest RESOLVED "
                             "(default: 100000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of timed requests (default: 5)")
    parser.add_argument("--requests", type=int, default=10,
                        help="timed requests per page, database and round (default: 10)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed requests per page and database before timing (default: 3)")
    parser.add_argument("--batch-size", type=int, default=10_000,
                        help="rows per executemany call when inserting (default: 10000)")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", harness.DEFAULT_POSTGRES_URL),
                        help="PostgreSQL URL of a user that may create databases; fresh databases are created "
                             "and dropped (default: $BENCH_POSTGRES_URL or %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args()

    for name in ("jobs", "runs", "alerts", "rounds", "requests", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be 0 or more, got {args.warmup}")
    if args.database == "postgres":
        args.database = "postgresql"
    harness.check_postgres_url(parser, args.postgres_url)
    return args


def runs_per_job(runs, jobs):
    """Return the run count of each job: runs // jobs, plus one for the first runs % jobs jobs."""
    base, extra = divmod(runs, jobs)
    return [base + (1 if index < extra else 0) for index in range(jobs)]


def job_rows(count, history_end):
    """Yield `count` jobs with a daily cron schedule, created before their first run."""
    from app.models.jobs import hash_token

    for index in range(count):
        created = history_end - timedelta(days=3000)
        yield {
            "name": f"bench-job-{index:04d}",
            "description": None,
            "token_hash": hash_token(f"bench-token-{index}"),
            "paused": False,
            "schedule_cron": "30 2 * * *",
            "schedule_interval_seconds": None,
            "schedule_timezone": "UTC",
            "created_at": created,
            "schedule_since": created,
            "last_run_at": history_end,
        }


def run_rows(job_ids, counts, history_end):
    """Yield every job's runs, one a day, oldest first and interleaved across jobs as they arrive.

    1 in 10 is a verify run and 1 in 20 a failure with an error and a short
    log tail. Datetimes are naive UTC, which is what UTCDateTime stores.
    """
    days = max(counts)
    for day in range(days):
        for job_index, (job_id, count) in enumerate(zip(job_ids, counts)):
            step = day - (days - count)
            if step < 0:
                continue
            # Jobs finish at different minutes of the night, all before history_end.
            finished = history_end - timedelta(days=days - 1 - day, minutes=(job_index * 7) % 600)
            jitter = (((job_index + 1) * 7919 + step * 104729) % 2001 - 1000) / 50_000
            failed = step % 20 == 13
            yield {
                "job_id": job_id,
                "client_run_id": None,
                "kind": "verify" if step % 10 == 9 else "backup",
                "status": "failure" if failed else "success",
                "started_at": finished - timedelta(seconds=DURATION_SECONDS),
                "finished_at": finished,
                "duration_seconds": DURATION_SECONDS * (1 + jitter),
                "size_bytes": None if failed else int(SIZE_BYTES * (1 + jitter)),
                "exit_code": 1 if failed else 0,
                "error": "pg_dump: error: connection to server failed" if failed else None,
                "log_tail": ("pg_dump: connecting to database\npg_dump: error: connection to server failed\n"
                             if failed else None),
                "log_truncated_bytes": 0,
                "storage_backend": None,
                "object_key": None,
                "sha256": None,
                "received_at": finished + timedelta(seconds=1),
                "checked_at": finished + timedelta(seconds=2),
                "artifact_checked_at": None,
            }


def alert_rows(count, job_ids, user_id, history_end):
    """Yield `count` alerts: ACTIVE, then ACKNOWLEDGED, then RESOLVED ones.

    Open alerts (ACTIVE and ACKNOWLEDGED) take distinct (job, type) pairs,
    because the app keeps at most one open alert per deduplication key.
    Their number is therefore capped at jobs x 7 job alert types. Resolved
    alerts repeat keys, as conditions that came and went do, and one in
    STORAGE_ALERT_EVERY is about a storage backend.
    """
    active, acknowledged = round(count * ACTIVE_SHARE), round(count * ACKNOWLEDGED_SHARE)
    if count >= 3:
        # Even a handful of alerts has one in each status.
        active, acknowledged = max(active, 1), max(acknowledged, 1)
    open_cap = len(job_ids) * len(JOB_ALERT_TYPES)
    active = min(active, open_cap)
    acknowledged = min(acknowledged, open_cap - active)
    for index in range(count):
        if index < active:
            status = "ACTIVE"
        elif index < active + acknowledged:
            status = "ACKNOWLEDGED"
        else:
            status = "RESOLVED"
        job_id = job_ids[index % len(job_ids)]
        alert_type = JOB_ALERT_TYPES[(index // len(job_ids)) % len(JOB_ALERT_TYPES)]
        storage_backend = None
        if status == "RESOLVED" and index % STORAGE_ALERT_EVERY == 0:
            job_id = None
            alert_type = STORAGE_ALERT_TYPES[index % len(STORAGE_ALERT_TYPES)]
            storage_backend = f"bench-storage-{index % STORAGE_BACKENDS}"
        subject = f"job:{job_id}" if job_id is not None else f"storage:{storage_backend}"
        # Resolved alerts end before history_end, open ones may still be seen up to it.
        created = history_end - timedelta(minutes=(index * 7919) % (ALERT_AGE_DAYS * 1440) + 15 * 60)
        last_seen = created + timedelta(hours=index % 12)
        yield {
            "alert_type": alert_type,
            "severity": SEVERITIES[index % len(SEVERITIES)],
            "status": status,
            "dedup_key": f"{alert_type}:{subject}",
            "message": f"{alert_type.replace('_', ' ').capitalize()} on {subject} (benchmark alert {index})",
            "details": {"benchmark_index": index, "field": "size_bytes", "relative_change": -0.42},
            "job_id": job_id,
            "run_id": None,
            "storage_backend": storage_backend,
            "occurrences": 1 + index % 5,
            "created_at": created,
            "last_seen_at": last_seen,
            "acknowledged_at": last_seen + timedelta(minutes=20) if status != "ACTIVE" else None,
            "acknowledged_by_id": user_id if status != "ACTIVE" else None,
            "resolved_at": last_seen + timedelta(hours=2) if status == "RESOLVED" else None,
            "resolved_by_id": user_id if status == "RESOLVED" and index % 3 == 0 else None,
            "next_reminder_at": history_end + timedelta(hours=24) if status == "ACTIVE" else None,
            "reminders_sent": 0,
        }


class ConsoleDatabase:
    """A fresh migrated database with the given numbers of jobs, runs and alerts, and a logged-in client."""

    def __init__(self, database, label, sizes, args):
        self.label = label
        self.database = database
        self.sizes = sizes
        self.statements = 0
        # A list while profile() records (seconds, statement, parameters) of each statement, else None.
        self.recording = None
        if database == "sqlite":
            self.scratch = harness.ScratchSQLite(f"console-{label}")
        else:
            self.scratch = harness.ScratchPostgres(args.postgres_url, f"console_{label}")
        try:
            self.app = harness.migrated_app(self.scratch.url)
            self.build_seconds = self._fill(database, args.batch_size)
            self._listen_to_statements()
            self.client = self.app.test_client()
            self._log_in()
        except BaseException:
            self.scratch.drop()
            raise

    def _fill(self, database, batch_size):
        from app.extensions import db
        from app.models import Alert, BackupJob, BackupRun, User, utcnow

        # The history ends an hour before now, so the pages' relative times look as in production.
        history_end = utcnow().replace(minute=0, second=0, microsecond=0, tzinfo=None) - timedelta(hours=1)
        started = time.perf_counter()
        with self.app.app_context():
            admin = User(email=ADMIN_EMAIL, is_platform_admin=True)
            admin.set_password(ADMIN_PASSWORD)
            db.session.add(admin)
            db.session.commit()
            admin_id = admin.id
        harness.insert_rows(self.app, BackupJob.__table__, job_rows(self.sizes["jobs"], history_end), batch_size)
        with self.app.app_context():
            job_ids = db.session.execute(db.select(BackupJob.id).order_by(BackupJob.id)).scalars().all()
        counts = runs_per_job(self.sizes["runs"], len(job_ids))
        # runs_per_job gives the first job the most runs.
        self.busiest_job_id, self.busiest_job_runs = job_ids[0], counts[0]

        runs_started = time.perf_counter()
        runs = harness.insert_rows(self.app, BackupRun.__table__, run_rows(job_ids, counts, history_end), batch_size)
        self.runs_seconds = time.perf_counter() - runs_started
        alerts_started = time.perf_counter()
        alerts = harness.insert_rows(self.app, Alert.__table__, alert_rows(self.sizes["alerts"], job_ids, admin_id, history_end),
                             batch_size)
        self.alerts_seconds = time.perf_counter() - alerts_started
        if database == "postgresql":
            # Autovacuum would analyze the tables eventually, so analyze them
            # now and the plans do not depend on when autovacuum last ran.
            with self.app.app_context(), db.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        elapsed = time.perf_counter() - started
        log.info("%s: %d jobs, %d runs (%.1f s), %d alerts (%.1f s), %.1f s in all", self.label, len(job_ids), runs,
                 self.runs_seconds, alerts, self.alerts_seconds, elapsed)
        self.alerts_total = alerts
        self.jobs_total = len(job_ids)
        return elapsed

    def _listen_to_statements(self):
        """Count every statement, and time each one while profile() records."""
        from app.extensions import db

        with self.app.app_context():
            engine = db.engine

        @event.listens_for(engine, "before_cursor_execute")
        def before(conn, cursor, statement, parameters, context, executemany):
            self.statements += 1
            if self.recording is not None:
                conn.info["bench_started"] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def after(conn, cursor, statement, parameters, context, executemany):
            if self.recording is not None:
                self.recording.append((time.perf_counter() - conn.info.pop("bench_started"), statement, parameters))

    def _log_in(self):
        """Log in through the real form, CSRF token included, as the browser does."""
        page = self.client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        response = self.client.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                                                    "csrf_token": token})
        if response.status_code != 302:
            raise RuntimeError(f"login to the {self.label} database failed with status {response.status_code}")

    def paths(self):
        return {
            "alert list": "/admin/backups/alerts/",
            "dashboard": "/admin/",
            "job page": f"/admin/backups/jobs/details/?id={self.busiest_job_id}",
        }

    def expected_text(self, page):
        """Return text that the page shows only when it rendered the data it should have."""
        if page == "alert list":
            return f"List ({self.alerts_total})"
        if page == "dashboard":
            return f"of {self.jobs_total}, worst open alert first."
        return "bench-job-0000"

    def get(self, page):
        """Request `page`, check the response and return (seconds, SQL statements)."""
        path = self.paths()[page]
        statements_before = self.statements
        started = time.perf_counter()
        response = self.client.get(path)
        body = response.get_data(as_text=True)
        elapsed = time.perf_counter() - started
        statements = self.statements - statements_before
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} on the {self.label} database returned status {response.status_code}")
        if self.expected_text(page) not in body:
            raise RuntimeError(f"GET {path} on the {self.label} database lacks {self.expected_text(page)!r}")
        return elapsed, statements

    def profile(self, page, requests=5):
        """Return the statements of the median of `requests` requests of `page`, slowest first.

        Each is (seconds in cursor.execute, statement, parameters). SQLite's
        execute runs a statement up to its first row, so for statements that
        return many rows the time leaves out the rest of the fetch.
        """
        recorded = []
        for _ in range(requests):
            self.recording = []
            try:
                seconds, _ = self.get(page)
            finally:
                statements, self.recording = self.recording, None
            recorded.append((seconds, statements))
        recorded.sort(key=lambda item: item[0])
        return sorted(recorded[len(recorded) // 2][1], key=lambda item: item[0], reverse=True)

    def explain(self, statement, parameters):
        """Return the plan of `statement` run with `parameters`, as the database reports it."""
        from app.extensions import db

        prefix = "EXPLAIN QUERY PLAN " if self.database == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
        with self.app.app_context(), db.engine.connect() as conn:
            rows = conn.exec_driver_sql(prefix + statement, parameters).all()
        if self.database == "sqlite":
            return "\n".join(str(row[-1]) for row in rows)
        return "\n".join(row[0] for row in rows)

    def close(self):
        harness.dispose_engines(self.app)
        self.scratch.drop()


def measure(databases, args):
    """Time each page, alternating the databases request by request and flipping the order every request.

    Returns timings[page][label], per-round medians per_round[page][label]
    and the statements each page sent, statements[page][label].
    """
    labels = list(databases)
    timings = {page: {label: [] for label in labels} for page in PAGES}
    per_round = {page: {label: [] for label in labels} for page in PAGES}
    statements = {page: {label: set() for label in labels} for page in PAGES}
    for page in PAGES:
        for _ in range(args.warmup):
            for label in labels:
                databases[label].get(page)
    for round_index in range(args.rounds):
        round_timings = {page: {label: [] for label in labels} for page in PAGES}
        for page in PAGES:
            for index in range(args.requests):
                order = labels if (index + round_index) % 2 == 0 else list(reversed(labels))
                for label in order:
                    seconds, sent = databases[label].get(page)
                    round_timings[page][label].append(seconds)
                    statements[page][label].add(sent)
        for page in PAGES:
            for label in labels:
                timings[page][label].extend(round_timings[page][label])
                per_round[page][label].append(harness.median(round_timings[page][label]))
        log.info("Round %d/%d: median ms %s", round_index + 1, args.rounds, "; ".join(
            f"{page} " + ", ".join(f"{label} {per_round[page][label][-1] * 1000:.1f}" for label in labels)
            for page in PAGES
        ))
    return timings, per_round, statements


def summarize(database, databases, timings, per_round, statements):
    rows = []
    for page in PAGES:
        large, empty = timings[page]["large"], timings[page]["empty"]
        round_ratios = [m / r for m, r in zip(per_round[page]["large"], per_round[page]["empty"])]
        rows.append({
            "database": database,
            "page": page,
            "requests": len(large),
            "empty_median_ms": harness.median(empty) * 1000,
            "empty_p95_ms": harness.percentile(empty, 0.95) * 1000,
            "large_median_ms": harness.median(large) * 1000,
            "large_p95_ms": harness.percentile(large, 0.95) * 1000,
            "ratio": harness.median(large) / harness.median(empty),
            "ratio_min": min(round_ratios),
            "ratio_max": max(round_ratios),
            "statements_empty": sorted(statements[page]["empty"]),
            "statements_large": sorted(statements[page]["large"]),
        })
    builds = {
        label: {
            "jobs": db.jobs_total, "runs": db.sizes["runs"], "alerts": db.alerts_total,
            "busiest_job_runs": db.busiest_job_runs, "build_seconds": db.build_seconds,
            "runs_seconds": db.runs_seconds, "alerts_seconds": db.alerts_seconds,
        }
        for label, db in databases.items()
    }
    return rows, builds


def run_database(database, args):
    """Build the large and the empty database, measure them and return (rows, builds)."""
    large_sizes = {"jobs": args.jobs, "runs": args.runs, "alerts": args.alerts}
    databases = {}
    try:
        log.info("Building the large %s database", database)
        databases["large"] = ConsoleDatabase(database, "large", large_sizes, args)
        log.info("Building the empty %s database", database)
        databases["empty"] = ConsoleDatabase(database, "empty", EMPTY_SIZES, args)
        timings, per_round, statements = measure(databases, args)
        rows, builds = summarize(database, databases, timings, per_round, statements)
        print_slowest_statements(database, databases["large"])
        return rows, builds
    finally:
        for db in databases.values():
            db.close()


def print_slowest_statements(database, large):
    """Print each page's slowest statements on the large database, and the plan of the slowest."""
    print()
    print(f"Slowest SQL statements per page on the large {database} database (time in cursor.execute, "
          f"median of 5 requests):")
    for page in PAGES:
        statements = large.profile(page)
        total = sum(seconds for seconds, _, _ in statements)
        print(f"  {page}: {len(statements)} statements, {total * 1000:.2f} ms in all")
        for seconds, statement, _ in statements[:STATEMENTS_LISTED]:
            print(f"    {seconds * 1000:7.2f} ms  {' '.join(statement.split())[:150]}")
        if statements:
            _, statement, parameters = statements[0]
            print("    Plan of the slowest:")
            for line in large.explain(statement, parameters).splitlines():
                print("      " + line)


def print_report(args, rows, builds, versions):
    print()
    print("Machine:")
    for line in harness.machine_description():
        print("  " + line)
    for name, version in versions.items():
        print(f"  {name}: {version}")
    print()
    print(f"Method: Flask test client, logged in as a platform admin; {args.rounds} rounds of {args.requests} timed "
          f"GET requests per page and database after {args.warmup} untimed ones, databases alternating request by "
          f"request; rows inserted {args.batch_size} per executemany")
    print()
    print("Data:")
    for database, by_label in builds.items():
        for label, build in by_label.items():
            print(f"  {database} {label}: {build['jobs']:,} jobs, {build['runs']:,} runs "
                  f"({build['busiest_job_runs']:,} on the measured job), {build['alerts']:,} alerts; "
                  f"built in {build['build_seconds']:.1f} s (runs {build['runs_seconds']:.1f} s, "
                  f"alerts {build['alerts_seconds']:.1f} s)")
    print()
    print("| database | page | empty median ms | empty p95 ms | large median ms | large p95 ms "
          "| large / empty, median (min-max over rounds) | SQL statements empty / large |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- | --- |")
    for row in rows:
        statements = f"{_format_counts(row['statements_empty'])} / {_format_counts(row['statements_large'])}"
        print(f"| {row['database']} | {row['page']} | {row['empty_median_ms']:.1f} | {row['empty_p95_ms']:.1f} | "
              f"{row['large_median_ms']:.1f} | {row['large_p95_ms']:.1f} | "
              f"{row['ratio']:.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) | {statements} |")


def _format_counts(counts):
    return ", ".join(str(count) for count in counts)


def main():
    harness.configure_logging()
    args = parse_args()
    databases, versions = harness.reachable_databases(args.database, args.postgres_url, "postgresql")
    rows, builds = [], {}
    for database in databases:
        database_rows, builds[database] = run_database(database, args)
        rows.extend(database_rows)
    if rows:
        print_report(args, rows, builds, versions)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "builds": builds, "arguments": vars(args)}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
