"""Benchmark the worker's check of one run against the size of the job's history.

For each history size (default 10 and 1,000,000 runs) the benchmark creates a
fresh migrated database with one job, bulk-inserts that many past runs with
Core executemany in batches, and adds fresh unchecked runs. It then times
app.monitoring.checks.process_run on the fresh runs, alternating between the
history sizes run by run. It prints the median and p95 per check and the
ratio of the medians. It also prints the query plan of the baseline query
(recent_baseline), run with the statement and parameters the app sent.

    .venv/bin/python bench/check_history.py --database sqlite
"""

import argparse
import json
import logging
import os
import sys
import time
from datetime import datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import event  # noqa: E402

from bench import harness  # noqa: E402

log = logging.getLogger("bench")
# Finish time of the newest history run, with fresh runs one minute apart
# after it. A fixed date keeps the data identical between benchmark runs.
HISTORY_END = datetime(2026, 1, 1, 0, 0)
RUN_INTERVAL = timedelta(minutes=1)
SIZE_BYTES = 50_000_000_000
DURATION_SECONDS = 3600.0
# The baseline query is the only one that orders runs by finished_at descending.
BASELINE_MARKER = "ORDER BY backup_runs.finished_at DESC"


def parse_args():
    parser = argparse.ArgumentParser(description="Time process_run with small and large run histories.")
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="sqlite",
                        help="database to measure on (default: sqlite)")
    parser.add_argument("--history", default="10,1000000",
                        help="comma-separated history sizes in runs; the first is the reference of the ratios "
                             "(default: 10,1000000)")

    parser.add_argument("--checks", type=int, default=200,
                        help="timed process_run calls per history size (default: 200)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds the checks are split into, to show the spread of the ratio (default: 4)")
    parser.add_argument("--warmup-checks", type=int, default=5,
                        help="untimed process_run calls per history size before timing (default: 5)")

    parser.add_argument("--batch-size", type=int, default=10_000,
                        help="rows per executemany call when inserting history (default: 10000)")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", harness.DEFAULT_POSTGRES_URL),
                        help="PostgreSQL URL of a user that may create databases; fresh databases are created "
                             "and dropped (default: $BENCH_POSTGRES_URL or %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args()

    try:
        args.history = [int(size) for size in args.history.split(",")]
    except ValueError:
        parser.error(f"invalid --history {args.history!r}: expected comma-separated integers such as 10,1000000")
    if len(args.history) < 2 or min(args.history) < 1:
        parser.error(f"invalid --history {args.history}: expected at least two sizes of 1 run or more")
    for name in ("checks", "rounds", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.checks % args.rounds:
        parser.error(f"--checks ({args.checks}) must be a multiple of --rounds ({args.rounds})")
    if args.warmup_checks < 0:
        parser.error(f"--warmup-checks must be 0 or more, got {args.warmup_checks}")
    harness.check_postgres_url(parser, args.postgres_url)
    return args


def history_rows(job_id, count):
    """Yield `count` past runs, oldest first: 1 in 10 a verify run, 1 in 20 a failure.

    Datetimes are naive UTC, which is what UTCDateTime stores.
    """
    first = HISTORY_END - RUN_INTERVAL * (count - 1)
    for index in range(count):
        finished = first + RUN_INTERVAL * index
        # Sizes and durations vary by up to 2 % around their means.
        jitter = ((index * 7919) % 2001 - 1000) / 50_000
        yield {
            "job_id": job_id,
            "kind": "verify" if index % 10 == 9 else "backup",
            "status": "failure" if index % 20 == 13 else "success",
            "started_at": finished - timedelta(seconds=DURATION_SECONDS),
            "finished_at": finished,
            "duration_seconds": DURATION_SECONDS * (1 + jitter),
            "size_bytes": int(SIZE_BYTES * (1 + jitter)),
            "exit_code": 0,
            "log_truncated_bytes": 0,
            "received_at": finished,
            "checked_at": finished + timedelta(seconds=1),
        }


def fresh_rows(job_id, count):
    """Yield `count` successful, unchecked backups after the history, within the normal range."""
    for index in range(count):
        finished = HISTORY_END + RUN_INTERVAL * (index + 1)
        yield {
            "job_id": job_id,
            "kind": "backup",
            "status": "success",
            "started_at": finished - timedelta(seconds=DURATION_SECONDS),
            "finished_at": finished,
            "duration_seconds": DURATION_SECONDS,
            "size_bytes": SIZE_BYTES,
            "exit_code": 0,
            "log_truncated_bytes": 0,
            "received_at": finished,
            "checked_at": None,
        }


def unchecked_run_ids(app, job_id):
    from app.extensions import db
    from app.models import BackupRun

    with app.app_context():
        return db.session.execute(
            db.select(BackupRun.id)
            .where(BackupRun.job_id == job_id, BackupRun.checked_at.is_(None))
            .order_by(BackupRun.finished_at)
        ).scalars().all()


class HistoryDatabase:
    """A fresh database holding one job with `size` runs of history and fresh unchecked runs."""

    def __init__(self, database, size, fresh_count, args):
        self.size = size
        self.scratch = None
        if database == "sqlite":
            self.scratch = harness.ScratchSQLite(f"history-{size}")
        else:
            self.scratch = harness.ScratchPostgres(args.postgres_url, f"history_{size}")
        self.app = harness.migrated_app(self.scratch.url)
        self.job_id, _ = harness.create_job(self.app, f"bench-history-{size}")
        from app.models import BackupRun

        started = time.perf_counter()
        inserted = harness.insert_rows(self.app, BackupRun.__table__, history_rows(self.job_id, size), args.batch_size)
        self.insert_seconds = time.perf_counter() - started
        log.info("Inserted %d history runs in %.1f s (%.0f rows/s)", inserted, self.insert_seconds,
                 inserted / self.insert_seconds)
        harness.insert_rows(self.app, BackupRun.__table__, fresh_rows(self.job_id, fresh_count), args.batch_size)
        if database == "postgres":
            # Autovacuum would analyze the table eventually, so analyze it now
            # and the plan does not depend on when autovacuum last ran.
            self._execute("ANALYZE backup_runs")
        self.fresh_ids = unchecked_run_ids(self.app, self.job_id)
        self.baseline_statements = []
        self._listen_for_baseline_query()

    def _execute(self, text):
        from app.extensions import db

        with self.app.app_context(), db.engine.begin() as conn:
            conn.exec_driver_sql(text)

    def _listen_for_baseline_query(self):
        from app.extensions import db

        with self.app.app_context():
            engine = db.engine

        @event.listens_for(engine, "before_cursor_execute")
        def capture(conn, cursor, statement, parameters, context, executemany):
            if BASELINE_MARKER in statement and len(self.baseline_statements) < 2:
                self.baseline_statements.append((statement, parameters))

    def check(self, run_id):
        """Time process_run for `run_id` in its own app context, as the RQ worker runs it, and return seconds."""
        from app.monitoring.checks import process_run

        with self.app.app_context():
            started = time.perf_counter()
            claimed = process_run(run_id)
            elapsed = time.perf_counter() - started
        if not claimed:
            raise RuntimeError(f"process_run({run_id}) did not claim the run; the timing would be of a no-op")
        return elapsed

    def explain(self, database):
        """Return the plan of the first captured baseline query, run with the same parameters."""
        from app.extensions import db

        if not self.baseline_statements:
            return "(the baseline query was not run, so there is no plan)"
        statement, parameters = self.baseline_statements[0]
        prefix = "EXPLAIN QUERY PLAN " if database == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
        with self.app.app_context(), db.engine.connect() as conn:
            rows = conn.exec_driver_sql(prefix + statement, parameters).all()
        if database == "sqlite":
            return "\n".join(f"{row[-1]}" for row in rows)
        return "\n".join(row[0] for row in rows)

    def open_alert_count(self):
        from app.extensions import db
        from app.models import Alert

        with self.app.app_context():
            return db.session.scalar(
                db.select(db.func.count()).select_from(Alert).where(Alert.status != "RESOLVED")
            )

    def close(self):
        harness.dispose_engines(self.app)
        self.scratch.drop()


def measure(databases_by_size, args):
    """Time the checks, alternating history sizes run by run and flipping the order every run."""
    sizes = list(databases_by_size)
    timings = {size: [] for size in sizes}
    per_round = {size: [] for size in sizes}
    queues = {size: list(databases_by_size[size].fresh_ids) for size in sizes}
    for _ in range(args.warmup_checks):
        for size in sizes:
            databases_by_size[size].check(queues[size].pop(0))
    checks_per_round = args.checks // args.rounds
    for round_index in range(args.rounds):
        round_timings = {size: [] for size in sizes}
        for index in range(checks_per_round):
            order = sizes if index % 2 == 0 else list(reversed(sizes))
            for size in order:
                round_timings[size].append(databases_by_size[size].check(queues[size].pop(0)))
        for size in sizes:
            timings[size].extend(round_timings[size])
            per_round[size].append(harness.median(round_timings[size]))
        log.info("Round %d/%d: median ms %s", round_index + 1, args.rounds,
                 ", ".join(f"{size} runs {per_round[size][-1] * 1000:.2f}" for size in sizes))
    return timings, per_round


def summarize(database, timings, per_round, sizes):
    reference = sizes[0]
    rows = []
    for size in sizes:
        round_ratios = [m / r for m, r in zip(per_round[size], per_round[reference])]
        rows.append({
            "database": database,
            "history": size,
            "checks": len(timings[size]),
            "median_ms": harness.median(timings[size]) * 1000,
            "p95_ms": harness.percentile(timings[size], 0.95) * 1000,
            "ratio": harness.median(timings[size]) / harness.median(timings[reference]),
            "ratio_min": min(round_ratios),
            "ratio_max": max(round_ratios),
        })
    return rows


def run_database(database, args):
    """Set up one database per history size, measure, print the plans and return the result rows."""
    fresh_count = args.warmup_checks + args.checks
    databases_by_size = {}
    try:
        for size in args.history:
            log.info("Preparing %s with %d runs of history", database, size)
            databases_by_size[size] = HistoryDatabase(database, size, fresh_count, args)
        timings, per_round = measure(databases_by_size, args)
        rows = summarize(database, timings, per_round, args.history)
        for row in rows:
            db = databases_by_size[row["history"]]
            row["insert_seconds"] = db.insert_seconds
            row["open_alerts_after"] = db.open_alert_count()
        print()
        for size, db in databases_by_size.items():
            print(f"Plan of the baseline query on {database} with {size} runs of history:")
            for line in db.explain(database).splitlines():
                print("  " + line)
        return rows
    finally:
        for db in databases_by_size.values():
            db.close()


def print_report(args, rows, versions):
    print()
    print("Machine:")
    for line in harness.machine_description():
        print("  " + line)
    for name, version in versions.items():
        print(f"  {name}: {version}")
    print()
    print(f"Method: {args.checks} timed process_run calls per history size in {args.rounds} rounds, sizes "
          f"alternating run by run, after {args.warmup_checks} untimed calls each; history inserted "
          f"{args.batch_size} rows per executemany")
    print()
    print("| database | history runs | insert time | checks | median ms | p95 ms "
          f"| median / median at {args.history[0]} runs (min-max over rounds) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        print(f"| {row['database']} | {row['history']:,} | {row['insert_seconds']:.1f} s | {row['checks']} | "
              f"{row['median_ms']:.2f} | {row['p95_ms']:.2f} | "
              f"{row['ratio']:.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) |")
    alerts = {(row["database"], row["history"]): row["open_alerts_after"] for row in rows}
    print(f"Open alerts after the checks (expected 0, the fresh runs are within range): {alerts}")


def main():
    harness.configure_logging()
    args = parse_args()
    databases, versions = harness.reachable_databases(args.database, args.postgres_url)
    rows = []
    for database in databases:
        rows.extend(run_database(database, args))
    if rows:
        print_report(args, rows, versions)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "arguments": vars(args)}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
