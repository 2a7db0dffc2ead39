"""A report travels hook -> Redis queue -> real RQ worker -> alert -> API."""

from datetime import datetime, timedelta, timezone

from rq import Queue

from app.extensions import db
from app.models import BackupRun
from app.monitoring.sweeper import enqueue_unchecked_runs

GB = 1_000_000_000


def report(client, token, day, size, status="success"):
    finished = datetime(2026, 11, 1, 3, 0, tzinfo=timezone.utc) + timedelta(days=day)
    response = client.post(f"/hooks/{token}", json={
        "status": status,
        "started_at": (finished - timedelta(minutes=20)).isoformat(),
        "finished_at": finished.isoformat(),
        "size_bytes": size,
    })
    assert response.status_code == 202
    return response.json["run_id"]


def test_shrinking_backup_raises_critical(app, admin_client, make_job, run_worker):
    _, token = make_job("nightly-db")
    for day in range(10):
        report(admin_client, token, day, 5 * GB + day * 1_000_000)
    report(admin_client, token, 10, 0)
    assert run_worker() == []

    alerts = admin_client.get("/api/v1/alerts").json["alerts"]
    assert [(a["type"], a["severity"]) for a in alerts] == [("SIZE_DEVIATION", "CRITICAL")]
    with app.app_context():
        unchecked = db.session.scalar(db.select(db.func.count()).where(BackupRun.checked_at.is_(None)))
        assert unchecked == 0


def test_failure_then_success_resolves(admin_client, make_job, run_worker):
    _, token = make_job("files")
    report(admin_client, token, 0, 1, status="failure")
    run_worker()
    assert admin_client.get("/api/v1/alerts/summary").json["by_severity"]["CRITICAL"] == 1
    report(admin_client, token, 1, 1)
    run_worker()
    summary = admin_client.get("/api/v1/alerts/summary").json
    assert summary["active"] == 0
    assert summary["resolved_last_24h"] == 1


def test_same_run_enqueued_twice_checked_once(app, admin_client, make_job, run_worker, queue):
    _, token = make_job("files")
    run_id = report(admin_client, token, 0, 1, status="failure")
    Queue(queue.name, connection=queue.connection).enqueue("app.jobs.process_run", run_id)
    assert run_worker() == []
    alerts = admin_client.get("/api/v1/alerts").json["alerts"]
    assert [a["occurrences"] for a in alerts] == [1]


def test_sweeper_enqueues_unchecked_runs(app, admin_client, make_job, run_worker, queue):
    _, token = make_job("files")
    run_id = report(admin_client, token, 0, 1, status="failure")
    queue.empty()
    with app.app_context():
        later = datetime.now(timezone.utc) + timedelta(minutes=5)
        assert enqueue_unchecked_runs(now=later) == 1
        assert enqueue_unchecked_runs() == 0
    run_worker()
    with app.app_context():
        assert db.session.get(BackupRun, run_id).checked_at is not None
    assert admin_client.get("/api/v1/alerts/summary").json["active"] == 1
