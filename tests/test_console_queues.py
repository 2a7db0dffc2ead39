"""The Queues page: counts, a failed job with requeue and delete, workers,
periodic jobs, and a page that still renders when Redis is down."""

import re
import socket
from datetime import timedelta

import pytest
from rq import Queue, Worker
from rq.job import Job

from app.schedule import register_periodic_jobs
from tests.conftest import BurstWorker, login

PAGE = "/admin/system/queues/"
HOSTILE = "<img src=x onerror=alert(1)>"


def fail_loudly(target):
    """A job that always fails, with markup in its message."""
    raise ValueError(f"disk full while writing {target}")


def csrf_token(client):
    page = client.get(PAGE).get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


@pytest.fixture
def failed_job(app, queue):
    """The id of a job that really failed in a worker."""
    job = queue.enqueue(fail_loudly, HOSTILE, job_id="fail-loudly-1")
    worker_queue = Queue(queue.name, connection=queue.connection)
    BurstWorker([worker_queue], connection=queue.connection).work(burst=True)
    assert worker_queue.failed_job_registry.get_job_ids() == [job.id]
    return job.id


def count_of(page, name):
    return int(re.search(rf'<td data-count="{name}">(?:<a[^>]*>)?(\d+)', page).group(1))


def test_queues_page_requires_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_queue_counts(admin_client, queue):
    queue.enqueue("app.jobs.process_run", 1)
    queue.enqueue("app.jobs.process_run", 2)
    queue.enqueue_in(timedelta(hours=1), "app.jobs.process_run", 3)
    page = admin_client.get(PAGE).get_data(as_text=True)
    assert count_of(page, "queued") == 2
    assert count_of(page, "scheduled") == 1
    assert count_of(page, "started") == 0
    assert count_of(page, "deferred") == 0
    assert count_of(page, "failed") == 0
    assert "No failed jobs." in page


def test_failed_job_shown_to_admin(admin_client, failed_job):
    page = admin_client.get(PAGE).get_data(as_text=True)
    assert count_of(page, "failed") == 1
    table = page[page.index("failed-jobs"):]
    assert f"<code>{failed_job}</code>" in table
    assert f"{fail_loudly.__module__}.fail_loudly" in table
    assert "ValueError: disk full while writing &lt;img src=x onerror=alert(1)&gt;" in table
    assert "&#39;&lt;img src=x onerror=alert(1)&gt;&#39;" in table
    assert HOSTILE not in page
    assert ">Requeue</button>" in table
    assert ">Delete</button>" in table


def test_failed_job_details_hidden_from_others(client, make_user, failed_job):
    make_user("viewer@example.com", "viewer password")
    login(client, "viewer@example.com", "viewer password")
    page = client.get(PAGE).get_data(as_text=True)
    assert f"<code>{failed_job}</code>" in page
    assert "disk full" not in page
    assert ">Requeue</button>" not in page
    assert "Arguments and errors are shown to platform admins only." in page


def test_requeue_failed_job(admin_client, queue, failed_job):
    response = admin_client.post(PAGE + "failed/requeue", data={"job_id": failed_job, "csrf_token": csrf_token(admin_client)})
    assert response.status_code == 302
    assert queue.failed_job_registry.get_job_ids() == []
    assert queue.get_job_ids() == [failed_job]
    page = admin_client.get(PAGE).get_data(as_text=True)
    assert f"Job {failed_job} requeued." in page
    assert count_of(page, "queued") == 1


def test_delete_failed_job(admin_client, queue, failed_job):
    response = admin_client.post(PAGE + "failed/delete", data={"job_id": failed_job, "csrf_token": csrf_token(admin_client)},
                                 follow_redirects=True)
    assert f"Job {failed_job} deleted." in response.get_data(as_text=True)
    assert queue.failed_job_registry.get_job_ids() == []
    assert not Job.exists(failed_job, connection=queue.connection)


@pytest.mark.parametrize("action", ["requeue", "delete"])
@pytest.mark.parametrize("job_id", ["no-such-job", ""])
def test_unknown_job_is_reported(admin_client, queue, failed_job, action, job_id):
    response = admin_client.post(PAGE + f"failed/{action}", data={"job_id": job_id, "csrf_token": csrf_token(admin_client)},
                                 follow_redirects=True)
    assert response.status_code == 200
    assert f"Job {job_id} is not in the failed job list." in response.get_data(as_text=True)
    assert queue.failed_job_registry.get_job_ids() == [failed_job]


def test_requeue_and_delete_need_csrf(admin_client, queue, failed_job):
    for action in ("requeue", "delete"):
        response = admin_client.post(PAGE + f"failed/{action}", data={"job_id": failed_job})
        assert response.status_code == 400
    assert queue.failed_job_registry.get_job_ids() == [failed_job]


def test_requeue_and_delete_admin_only(client, make_user, queue, failed_job):
    make_user("viewer@example.com", "viewer password")
    login(client, "viewer@example.com", "viewer password")
    for action in ("requeue", "delete"):
        response = client.post(PAGE + f"failed/{action}", data={"job_id": failed_job, "csrf_token": csrf_token(client)})
        assert response.status_code == 403
    assert queue.failed_job_registry.get_job_ids() == [failed_job]


def test_workers_listed(admin_client, queue):
    # Redis rejects client names with spaces, so the markup here has none.
    worker = Worker([queue], connection=queue.connection, name="console-test-<b>bold</b>")
    worker.register_birth()
    try:
        page = admin_client.get(PAGE).get_data(as_text=True)
    finally:
        worker.register_death()
    table = page[page.index('class="table table-sm workers"'):]
    assert "console-test-&lt;b&gt;bold&lt;/b&gt;" in table
    assert "<b>bold</b>" not in page


def test_no_workers_warning(admin_client):
    assert "No worker is listening on this queue" in admin_client.get(PAGE).get_data(as_text=True)


def test_periodic_jobs_listed(app, admin_client):
    with app.app_context():
        register_periodic_jobs()
    page = admin_client.get(PAGE).get_data(as_text=True)
    table = page[page.index("periodic-jobs"):]
    assert "backwatch-sweep-unchecked-runs" in table
    assert "app.jobs.monitor_storage_capacity" in table
    assert "cron 0 * * * * (UTC)" in table
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC \(in (under a minute|\d+ min)\)", table)
    assert "late:" not in table


@pytest.fixture
def redis_down(app, monkeypatch):
    """Point the app at a loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setitem(app.config, "REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.delitem(app.extensions, "backwatch_redis", raising=False)
    yield
    app.extensions.pop("backwatch_redis", None)


def test_page_renders_when_redis_is_down(admin_client, redis_down):
    response = admin_client.get(PAGE)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Redis cannot be reached" in page
    assert "queue-counts" not in page


def test_requeue_when_redis_is_down(admin_client, redis_down):
    response = admin_client.post(PAGE + "failed/requeue", data={"job_id": "x", "csrf_token": csrf_token(admin_client)},
                                 follow_redirects=True)
    assert response.status_code == 200
    assert "Job x was not requeued: Redis failed" in response.get_data(as_text=True)


def test_failed_job_with_expired_data(admin_client, queue, failed_job):
    queue.connection.delete(Job.key_for(failed_job))
    page = admin_client.get(PAGE).get_data(as_text=True)
    assert "(job data expired)" in page
    response = admin_client.post(PAGE + "failed/requeue", data={"job_id": failed_job, "csrf_token": csrf_token(admin_client)},
                                 follow_redirects=True)
    assert "its data has expired. Delete it instead." in response.get_data(as_text=True)
    response = admin_client.post(PAGE + "failed/delete", data={"job_id": failed_job, "csrf_token": csrf_token(admin_client)},
                                 follow_redirects=True)
    assert f"Job {failed_job} deleted." in response.get_data(as_text=True)
    assert queue.failed_job_registry.get_job_ids() == []
