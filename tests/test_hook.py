"""The completion hook: POST /hooks/<token>."""

import io
import json

import pytest

from app.extensions import db
from app.models import BackupRun


def post(client, token, body, **kwargs):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    kwargs.setdefault("content_type", "application/json")
    return client.post(f"/hooks/{token}", data=body, **kwargs)


def run_count(app):
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(BackupRun))


def stored_run(app, run_id):
    with app.app_context():
        run = db.session.get(BackupRun, run_id)
        db.session.expunge(run)
        return run


def test_hook_stores_full_report(app, client, make_job):
    _, token = make_job()
    response = post(client, token, {
        "kind": "backup",
        "status": "success",
        "started_at": "2026-12-01T02:00:00+01:00",
        "finished_at": "2026-12-01T02:10:30+01:00",
        "size_bytes": 5_000_000_000,
        "exit_code": 0,
        "storage_backend": "nas-1",
        "run_id": "2026-12-01-nightly",
        "log": "done\n",
    })
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.status == "success"
    assert run.duration_seconds == 630
    assert run.size_bytes == 5_000_000_000
    assert run.started_at.isoformat() == "2026-12-01T01:00:00+00:00"
    assert run.storage_backend == "nas-1"
    assert run.checked_at is None


def test_hook_minimal_report_defaults(app, client, make_job):
    _, token = make_job()
    response = post(client, token, {"status": "failure", "duration_seconds": 12.5})
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.kind == "backup"
    assert run.duration_seconds == 12.5
    assert (run.finished_at - run.started_at).total_seconds() == 12.5


def test_hook_status_from_exit_code(app, client, make_job):
    _, token = make_job()
    response = post(client, token, {"exit_code": 2})
    assert stored_run(app, response.json["run_id"]).status == "failure"


def test_hook_unknown_token_404(app, client, make_job):
    make_job()
    response = post(client, "not-a-real-token", {"status": "success"})
    assert response.status_code == 404
    assert response.json["error"]["field"] == "token"
    assert run_count(app) == 0


@pytest.mark.parametrize(
    "body, field, fragment",
    [
        ("{not json", "body", "invalid JSON"),
        ("[1, 2]", "body", "JSON object"),
        ("[" * 100_000 + "]" * 100_000, "body", "nested too deeply"),
        ('{"size_bytes": ' + "9" * 5000 + "}", "body", "digits"),
        ({"status": "done"}, "status", "one of"),
        ({"kind": "archive"}, "kind", "one of"),
        ({"size_bytes": "big"}, "size_bytes", "integer"),
        ({"size_bytes": True}, "size_bytes", "integer"),
        ({"size_bytes": -1}, "size_bytes", "at least 0"),
        ({"size_bytes": 2**70}, "size_bytes", "at most"),
        ({"duration_seconds": -5}, "duration_seconds", "zero or positive"),
        ({"duration_seconds": "60"}, "duration_seconds", "number"),
        ({"exit_code": 1.5}, "exit_code", "integer"),
        ({"started_at": "yesterday"}, "started_at", "ISO 8601"),
        ({"started_at": "2026-12-01T02:00:00"}, "started_at", "UTC offset"),
        ({"finished_at": 1733000000}, "finished_at", "ISO 8601"),
        ({"finished_at": "0001-01-01T00:00:00+14:00"}, "finished_at", "years"),
        (
            {"started_at": "2026-12-01T03:00:00Z", "finished_at": "2026-12-01T02:00:00Z"},
            "finished_at",
            "before started_at",
        ),
        (
            {"started_at": "2026-12-01T02:00:00Z", "finished_at": "2026-12-01T02:01:00Z", "duration_seconds": 3600},
            "duration_seconds",
            "agree",
        ),
        ({"status": "success", "colour": "blue"}, "colour", "unknown field"),
        ({"log": ["a", "b"]}, "log", "string"),
        ({"run_id": ""}, "run_id", "empty"),
        ({"storage_backend": "x" * 101}, "storage_backend", "at most 100"),
    ],
)
def test_hook_rejects_bad_input(app, client, make_job, body, field, fragment):
    _, token = make_job()
    response = post(client, token, body)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field
    assert fragment in response.json["error"]["message"]
    assert run_count(app) == 0


def test_hook_body_over_limit_413(app, client, make_job):
    _, token = make_job()
    limit = app.config["HOOK_MAX_BODY_BYTES"]
    response = post(client, token, {"status": "success", "log": "x" * limit})
    assert response.status_code == 413
    assert response.json["error"]["field"] == "body"
    assert run_count(app) == 0


def test_hook_body_over_limit_without_length(app, client, make_job):
    _, token = make_job()
    limit = app.config["HOOK_MAX_BODY_BYTES"]
    body = json.dumps({"status": "success", "log": "x" * limit}).encode()
    # A stream with no Content-Length, as a chunked upload arrives.
    response = client.post(f"/hooks/{token}", input_stream=io.BytesIO(body), content_type="application/json")
    assert response.status_code == 413
    assert run_count(app) == 0


def test_hook_keeps_log_tail_with_marker(app, client, make_job):
    _, token = make_job()
    limit = app.config["LOG_TAIL_MAX_BYTES"]
    log = "line of noise\n" * (limit // 7) + "FATAL: disk full on /backup\n"
    response = post(client, token, {"status": "failure", "log": log})
    run = stored_run(app, response.json["run_id"])
    assert run.log_tail.endswith("FATAL: disk full on /backup\n")
    assert run.log_truncated_bytes == len(log.encode()) - limit
    assert f"[... {run.log_truncated_bytes} bytes cut" in run.log_tail


def test_hook_log_tail_cut_on_character_boundary(app, client, make_job):
    _, token = make_job()
    limit = app.config["LOG_TAIL_MAX_BYTES"]
    log = "é" * limit
    response = post(client, token, {"status": "failure", "log": log})
    run = stored_run(app, response.json["run_id"])
    kept = run.log_tail.split("...]\n", 1)[1]
    assert set(kept) == {"é"}
    assert len(kept.encode()) <= limit


def test_hook_latin1_body_stored_readably(app, client, make_job):
    _, token = make_job()
    body = '{"status": "failure", "error": "Accès refusé à C:\\\\Données"}'.encode("latin-1")
    response = post(client, token, body)
    assert response.status_code == 202
    assert stored_run(app, response.json["run_id"]).error == "Accès refusé à C:\\Données"


def test_hook_utf16_body_with_bom(app, client, make_job):
    _, token = make_job()
    body = '{"status": "failure", "error": "Zugriff verweigert: Ü"}'.encode("utf-16")
    response = post(client, token, body)
    assert response.status_code == 202
    assert stored_run(app, response.json["run_id"]).error == "Zugriff verweigert: Ü"


def test_hook_utf16_body_without_bom(app, client, make_job):
    _, token = make_job()
    body = '{"status": "failure", "error": "échec"}'.encode("utf-16-le")
    response = post(client, token, body)
    assert response.status_code == 202
    assert stored_run(app, response.json["run_id"]).error == "échec"


def test_hook_nul_and_lone_surrogate(app, client, make_job):
    _, token = make_job()
    response = post(client, token, '{"status": "failure", "error": "a\\u0000b\\ud800c"}')
    assert response.status_code == 202
    assert stored_run(app, response.json["run_id"]).error == "a\ufffdb\ufffdc"


def test_hook_run_id_idempotent(app, client, make_job):
    _, token = make_job()
    first = post(client, token, {"status": "success", "run_id": "abc"})
    second = post(client, token, {"status": "failure", "run_id": "abc"})
    assert first.status_code == second.status_code == 202
    assert second.json["run_id"] == first.json["run_id"]
    assert second.json["duplicate"] is True
    assert run_count(app) == 1


def test_hook_run_id_scoped_to_job(app, client, make_job):
    _, token_a = make_job("a")
    _, token_b = make_job("b")
    first = post(client, token_a, {"status": "success", "run_id": "same"})
    second = post(client, token_b, {"status": "success", "run_id": "same"})
    assert first.json["run_id"] != second.json["run_id"]


def test_hook_enqueues_check(app, client, make_job, queue):
    _, token = make_job()
    response = post(client, token, {"status": "success"})
    assert queue.job_ids == [f"process-run-{response.json['run_id']}"]


def test_hook_accepts_with_redis_down(database_url, make_job):
    from app import create_app

    closed_port_app = create_app({
        "TESTING": True,
        "SECRET_KEY": "x",
        "SQLALCHEMY_DATABASE_URI": database_url,
        # Nothing listens on port 1 of loopback, so every connection is refused.
        "REDIS_URL": "redis://127.0.0.1:1/0",
    })
    _, token = make_job()
    response = post(closed_port_app.test_client(), token, {"status": "success"})
    assert response.status_code == 202
    assert stored_run(closed_port_app, response.json["run_id"]).checked_at is None


def test_hook_get_not_allowed(client, make_job):
    _, token = make_job()
    response = client.get(f"/hooks/{token}")
    assert response.status_code == 405
    assert "error" in response.json


def test_hook_database_down_503(redis_url):
    from app import create_app

    # Nothing listens on port 1 of loopback, so the connection is refused.
    down_app = create_app({
        "TESTING": True,
        "SECRET_KEY": "x",
        "SQLALCHEMY_DATABASE_URI": "postgresql://postgres@127.0.0.1:1/backwatch",
        "REDIS_URL": redis_url,
    })
    response = post(down_app.test_client(), "some-token", {"status": "success"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "retry" in response.json["error"]["message"]


def test_hook_stores_artifact_fields(app, client, make_job):
    _, token = make_job()
    digest = "ab" * 32
    response = post(client, token, {
        "status": "success", "storage_backend": "r2", "object_key": "db/2026-12-01.dump", "sha256": digest.upper(),
    })
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.object_key == "db/2026-12-01.dump"
    assert run.sha256 == digest


@pytest.mark.parametrize(
    "body, field",
    [
        ({"object_key": "x"}, "object_key"),
        ({"storage_backend": "r2", "object_key": "x", "sha256": "abc"}, "sha256"),
        ({"storage_backend": "r2", "sha256": "ab" * 32}, "sha256"),
    ],
)
def test_hook_rejects_bad_artifact(app, client, make_job, body, field):
    _, token = make_job()
    response = post(client, token, body)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field
    assert run_count(app) == 0
