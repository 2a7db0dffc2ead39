"""The artifact check: the object a run names must be on its backend as reported."""

import hashlib

import pytest

from app.extensions import db
from app.models import Alert, StorageBackend


@pytest.fixture
def backend_folder(app, tmp_path):
    folder = tmp_path / "store"
    (folder / "db").mkdir(parents=True)
    with app.app_context():
        db.session.add(StorageBackend(name="nas", kind="local", path=str(folder)))
        db.session.commit()
    return folder


def report(client, token, **fields):
    body = {"status": "success", "storage_backend": "nas", **fields}
    response = client.post(f"/hooks/{token}", json=body)
    assert response.status_code == 202
    return response.json["run_id"]


def integrity_alerts(app):
    with app.app_context():
        return [
            (alert.status, alert.details.get("problems"))
            for alert in db.session.execute(db.select(Alert).where(Alert.alert_type == "INTEGRITY_FAILURE")).scalars()
        ]


def test_matching_object_no_alert(app, client, make_job, run_worker, backend_folder):
    data = b"backup bytes" * 100
    (backend_folder / "db" / "a.dump").write_bytes(data)
    _, token = make_job()
    report(client, token, object_key="db/a.dump", size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    assert run_worker() == []
    assert integrity_alerts(app) == []


def test_missing_object_alert(app, client, make_job, run_worker, backend_folder):
    _, token = make_job()
    report(client, token, object_key="db/missing.dump", size_bytes=10)
    assert run_worker() == []
    [(status, problems)] = integrity_alerts(app)
    assert status == "ACTIVE"
    assert problems == ["object db/missing.dump not found on nas"]


def test_size_and_checksum_mismatch(app, client, make_job, run_worker, backend_folder):
    (backend_folder / "db" / "b.dump").write_bytes(b"short")
    _, token = make_job()
    report(client, token, object_key="db/b.dump", size_bytes=999, sha256="0" * 64)
    run_worker()
    [(_, problems)] = integrity_alerts(app)
    assert "is 5 bytes, the run reported 999" in problems[0]
    assert "SHA-256" in problems[1]


def test_unknown_backend_alert(app, client, make_job, run_worker):
    _, token = make_job()
    report(client, token, object_key="x", storage_backend="nowhere")
    run_worker()
    [(_, problems)] = integrity_alerts(app)
    assert "no storage backend with this name" in problems[0]


def test_good_run_resolves_artifact_alert(app, client, make_job, run_worker, backend_folder):
    _, token = make_job()
    report(client, token, object_key="db/c.dump", size_bytes=3)
    run_worker()
    (backend_folder / "db" / "c.dump").write_bytes(b"abc")
    report(client, token, object_key="db/c.dump", size_bytes=3)
    run_worker()
    assert [status for status, _ in integrity_alerts(app)] == ["RESOLVED"]


def test_failed_run_not_verified(app, client, make_job, run_worker, backend_folder, queue):
    _, token = make_job()
    client.post(f"/hooks/{token}", json={"status": "failure", "storage_backend": "nas", "object_key": "db/x"})
    run_worker()
    assert integrity_alerts(app) == []


def test_sweeper_enqueues_artifact_check_left_undone(app, client, make_job, run_worker, backend_folder, queue):
    from datetime import timedelta

    from app.models import BackupRun, utcnow
    from app.monitoring.sweeper import enqueue_unchecked_artifacts

    _, token = make_job()
    run_id = report(client, token, object_key="db/missing.tar")
    # The run is checked, but its artifact check is lost (Redis failed, or its worker died).
    with app.app_context():
        from app.monitoring.checks import process_run

        process_run(run_id)
    queue.empty()
    with app.app_context():
        assert db.session.get(BackupRun, run_id).artifact_checked_at is None
        assert enqueue_unchecked_artifacts(now=utcnow()) == 0
        assert enqueue_unchecked_artifacts(now=utcnow() + timedelta(minutes=2)) == 1
    assert run_worker() == []
    with app.app_context():
        assert db.session.get(BackupRun, run_id).artifact_checked_at is not None
        assert enqueue_unchecked_artifacts(now=utcnow() + timedelta(minutes=3)) == 0
        # After a day the sweeper stops trying.
        db.session.get(BackupRun, run_id).artifact_checked_at = None
        db.session.commit()
        assert enqueue_unchecked_artifacts(now=utcnow() + timedelta(days=2)) == 0
    assert [problems for _, problems in integrity_alerts(app)] == [["object db/missing.tar not found on nas"]]
