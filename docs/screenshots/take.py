"""Save the README's screenshots of the console from a demo database.

    .venv/bin/python docs/screenshots/take.py

The script creates a SQLite database in a temporary folder and fills it
with four weeks of five jobs' runs and two storage backends' readings. Each
run goes through the worker's own checks (process_run at the time the run
was received), so the alerts, their states and the charts are what
Backwatch itself makes of that history. It then serves the console on
127.0.0.1 with werkzeug, logs in with headless Chromium (/usr/bin/chromium,
through Playwright) and saves dashboard.png, job.png and alerts.png at
1400x900 next to this file. The temporary folder is removed at the end.
"""

import argparse
import logging
import os
import secrets
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from flask_migrate import upgrade  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import Alert, BackupJob, BackupRun, StorageBackend, User, utcnow  # noqa: E402
from app.monitoring.capacity import record_usage  # noqa: E402
from app.monitoring.checks import process_run  # noqa: E402
from app.monitoring.lifecycle import acknowledge_alert  # noqa: E402
from app.monitoring.missed import check_missed_backups, expected_runs_between  # noqa: E402
from app.notifications.dispatcher import commit_and_dispatch  # noqa: E402

OUTPUT_DIR = os.path.dirname(os.path.abspath(__file__))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 900}
DAYS = 28
GIB = 2**30
TIB = 2**40
ADMIN_EMAIL = "admin@example.com"
OPERATOR_EMAIL = "ops@example.com"

log = logging.getLogger("screenshots")


@dataclass
class Usage:
    """A storage reading in the shape record_usage() reads."""

    used_bytes: int
    capacity_bytes: int | None
    object_count: int | None
    measured_at: object


def parse_args():
    parser = argparse.ArgumentParser(description="Save screenshots of the console from a demo database.")
    parser.add_argument("--output-dir", default=OUTPUT_DIR, help="folder for the PNG files (default: %(default)s)")
    parser.add_argument("--chromium", default=CHROMIUM, help="Chromium binary (default: %(default)s)")
    return parser.parse_args()


def jitter(index, spread):
    """Return a repeatable factor within 1 ± spread, so every run of the script draws the same charts."""
    return 1 + spread * (((index * 7919) % 201) - 100) / 100


def add_jobs(created_at):
    """Create the demo jobs, as if made at `created_at`; return them by name."""
    specs = {
        "nightly-db": dict(description="pg_dump of the production database, through backwatch-wrap",
                           schedule_cron="30 1 * * *", schedule_timezone="Europe/Berlin", grace_seconds=3600),
        "files": dict(description="restic backup of /srv to the NAS", schedule_interval_seconds=6 * 3600,
                      grace_seconds=900),
        "offsite": dict(description="Duplicati copy of the NAS to Backblaze B2", schedule_cron="0 4 * * *",
                        schedule_timezone="UTC", grace_seconds=3600),
        "mail-server": dict(description="borgmatic on mail1", schedule_cron="15 2 * * *",
                            schedule_timezone="Europe/Berlin", grace_seconds=3600),
        "laptop-docs": dict(description="tar of the shared documents folder", schedule_interval_seconds=86400,
                            paused=True),
    }
    jobs = {}
    for name, fields in specs.items():
        job, _ = BackupJob.create(name, created_at=created_at, schedule_since=created_at, **fields)
        db.session.add(job)
        jobs[name] = job
    db.session.commit()
    return jobs


def run_plan(jobs, now):
    """Return the runs to report as (job, finished_at, fields), in no particular order.

    Each job reports at its scheduled times up to an hour before `now`, so
    the last report is not in the future. offsite stops two days early,
    which the missed-backup check then reports.
    """
    start = now - timedelta(days=DAYS)
    end = now - timedelta(hours=1)
    plan = []

    fires = expected_runs_between(jobs["nightly-db"], start, end)
    for index, fire in enumerate(fires):
        duration = round(840 * jitter(index, 0.05))
        fields = dict(size_bytes=int((5.1 * GIB + index * 15 * 2**20) * jitter(index + 3, 0.01)),
                      duration_seconds=duration, exit_code=0)
        if index == len(fires) - 10:
            fields = dict(status="failure", exit_code=1, duration_seconds=12.0,
                          error='pg_dump: error: connection to server at "db1" port 5432 failed: '
                                "FATAL: the database system is starting up",
                          log_tail="pg_dump: error: connection to server at \"db1\" port 5432 failed: "
                                   "FATAL: the database system is starting up\n")
        elif index == len(fires) - 1:
            # An emptied table: the dump is a third of its usual size.
            fields["size_bytes"] = int(1.9 * GIB)
        plan.append((jobs["nightly-db"], fire + timedelta(seconds=duration), fields))

    interval = timedelta(hours=6)
    finished = end - interval * (DAYS * 4 - 1)
    index = 0
    while finished <= end:
        duration = round(380 * jitter(index, 0.08))
        fields = dict(size_bytes=int((47 * GIB + index * 40 * 2**20) * jitter(index, 0.002)),
                      duration_seconds=duration, exit_code=0, storage_backend="nas")
        if index == 61:
            fields = dict(status="failure", exit_code=1, duration_seconds=3.0,
                          error="Fatal: unable to open repository at sftp:backup@nas:/restic: ssh: connection refused")
        elif finished + interval > end:
            # The latest run took 70 % longer than usual: a WARNING.
            fields["duration_seconds"] = duration = round(380 * 1.7)
        plan.append((jobs["files"], finished, fields))
        finished += interval
        index += 1

    offsite_fires = expected_runs_between(jobs["offsite"], start, end - timedelta(days=2))
    for index, fire in enumerate(offsite_fires):
        duration = round(2900 * jitter(index, 0.1))
        fields = dict(size_bytes=int((310 * GIB + index * 2 * GIB) * jitter(index, 0.003)),
                      duration_seconds=duration, exit_code=0, storage_backend="offsite-b2")
        plan.append((jobs["offsite"], fire + timedelta(seconds=duration), fields))

    for index, fire in enumerate(expected_runs_between(jobs["mail-server"], start, end)):
        # borgmatic pings carry the duration (from /start) but no size.
        duration = round(610 * jitter(index, 0.1))
        plan.append((jobs["mail-server"], fire + timedelta(seconds=duration),
                     dict(duration_seconds=duration, exit_code=0)))

    # laptop-docs reported for two weeks, failed once, and was then paused.
    for index in range(14):
        finished = start + timedelta(days=index, hours=18)
        fields = dict(size_bytes=int(2.4 * GIB * jitter(index, 0.01)), duration_seconds=round(95 * jitter(index, 0.1)),
                      exit_code=0)
        if index == 12:
            fields = dict(status="failure", exit_code=2, duration_seconds=4.0,
                          error="tar: /srv/shared/Documents: Cannot open: Permission denied")
        plan.append((jobs["laptop-docs"], finished, fields))
    return plan


def report_run(job, finished_at, fields):
    """Store one run as the hook would, then check it as the worker would, at the time it arrived."""
    received = finished_at + timedelta(seconds=2)
    fields = dict(fields)
    fields.setdefault("status", "success")
    duration = fields.get("duration_seconds")
    run = BackupRun(
        job_id=job.id, kind="backup", finished_at=finished_at, received_at=received,
        started_at=finished_at - timedelta(seconds=duration) if duration is not None else None, **fields,
    )
    db.session.add(run)
    job.last_run_at = received
    db.session.commit()
    process_run(run.id, now=received + timedelta(seconds=3))


def add_backends():
    nas = StorageBackend(name="nas", kind="local", path="/srv/backup", capacity_bytes=8 * TIB)
    offsite = StorageBackend(name="offsite-b2", kind="b2", bucket="acme-offsite", capacity_bytes=2 * TIB)
    db.session.add_all([nas, offsite])
    db.session.commit()
    return nas, offsite


def reading_plan(backends, now):
    """Return daily readings as (backend, measured_at, usage): the NAS at about 40 %, B2 filling to over 80 %."""
    nas, offsite = backends
    plan = []
    for day in range(DAYS):
        measured = now - timedelta(days=DAYS - 1 - day, hours=1)
        plan.append((nas, measured, Usage(int((3.2 * TIB + day * 9 * GIB) * jitter(day, 0.002)), None,
                                          41_000 + day * 350, measured)))
        plan.append((offsite, measured, Usage(int(1.52 * TIB + day * 4.1 * GIB), None, 9_800 + day * 40, measured)))
    return plan


def build_demo(app, now):
    """Fill the database: jobs, runs and readings in time order, then the missed-backup check and two users."""
    with app.app_context():
        jobs = add_jobs(now - timedelta(days=DAYS, hours=2))
        backends = add_backends()
        events = [(at, "run", (job, at, fields)) for job, at, fields in run_plan(jobs, now)]
        events += [(at, "reading", (backend, usage)) for backend, at, usage in reading_plan(backends, now)]
        events.sort(key=lambda event: event[0])
        for at, kind, arguments in events:
            if kind == "run":
                report_run(*arguments)
            else:
                backend, usage = arguments
                record_usage(backend, usage, at)
                commit_and_dispatch()
        check_missed_backups(now)

        # Users come last, so the history above creates no deliveries and
        # the demo needs no Redis or mail server.
        admin = User(email=ADMIN_EMAIL, is_platform_admin=True)
        operator = User(email=OPERATOR_EMAIL)
        password = secrets.token_urlsafe(16)
        for user in (admin, operator):
            user.set_password(password)
        db.session.add_all([admin, operator])
        db.session.commit()

        duration_alert = db.session.execute(
            db.select(Alert).where(Alert.alert_type == "DURATION_THRESHOLD", Alert.status == "ACTIVE")
        ).scalar_one()
        acknowledge_alert(duration_alert.id, operator, now=now - timedelta(minutes=40))
        db.session.commit()
        counts = db.session.execute(db.select(Alert.status, db.func.count()).group_by(Alert.status)).all()
        log.info("Demo database: %d runs, alerts by status %s",
                 db.session.scalar(db.select(db.func.count()).select_from(BackupRun)), dict(counts))
        return password, jobs["nightly-db"].id


def serve(app):
    """Start the app on a free port of 127.0.0.1 on a thread; return (server, thread, base URL)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="screenshot-server", daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{server.server_port}"


def take_screenshots(base_url, password, job_id, args):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
            page = context.new_page()
            page.goto("/login")
            page.get_by_label("Email").fill(ADMIN_EMAIL)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/admin/")
            shots = {
                "dashboard.png": "/admin/",
                "job.png": f"/admin/backups/jobs/details/?id={job_id}",
                "alerts.png": "/admin/backups/alerts/",
            }
            for filename, path in shots.items():
                page.goto(path)
                if filename == "job.png":
                    # The settings table fills the first screen, so the picture starts at the
                    # job's open alerts, with both charts below them.
                    page.locator("h3", has_text="Open alerts").evaluate("heading => heading.scrollIntoView()")
                path = os.path.join(args.output_dir, filename)
                page.screenshot(path=path)
                log.info("Saved %s", path)
            context.close()
        finally:
            browser.close()


def main():
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    # One line per request of the browser would bury the script's own output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    args = parse_args()
    if not os.path.exists(args.chromium):
        sys.exit(f"{args.chromium} not found: install Chromium (Debian package chromium) or pass --chromium PATH")
    folder = tempfile.mkdtemp(prefix="backwatch-screenshots-")
    try:
        app = create_app({
            "SECRET_KEY": secrets.token_hex(32),
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{os.path.join(folder, 'demo.db')}",
            "REDIS_URL": None,
        })
        with app.app_context():
            upgrade()
        # Alembic's logging set-up (migrations/alembic.ini) disables loggers made before it, this one too.
        log.disabled = False
        now = utcnow().replace(second=0, microsecond=0)
        password, job_id = build_demo(app, now)
        server, thread, base_url = serve(app)
        app.config["BASE_URL"] = base_url
        try:
            take_screenshots(base_url, password, job_id, args)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
