"""Healthchecks.io-compatible pings: /ping/<token>[/start|/fail|/log|/<exit status>]."""

import io
from datetime import datetime, timedelta, timezone

import pytest

from app.extensions import db
from app.models import BackupRun, RunStart

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


class Clock:
    """A settable stand-in for the ping module's utcnow, so durations are exact."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(T0)
    monkeypatch.setattr("app.intake.ping.utcnow", clock)
    return clock


def runs(app):
    """Return the stored runs, oldest first, detached from the session."""
    with app.app_context():
        stored = db.session.execute(db.select(BackupRun).order_by(BackupRun.id)).scalars().all()
        for run in stored:
            db.session.expunge(run)
        return stored


def starts(app):
    """Return the client run ids of the pending starts."""
    with app.app_context():
        return db.session.execute(db.select(RunStart.client_run_id).order_by(RunStart.id)).scalars().all()


@pytest.mark.parametrize("method", ["HEAD", "GET", "POST"])
@pytest.mark.parametrize(
    "suffix, expected_run, expected_starts",
    [
        ("", ("success", None), 0),
        ("/0", ("success", 0), 0),
        ("/fail", ("failure", None), 0),
        ("/1", ("failure", 1), 0),
        ("/255", ("failure", 255), 0),
        ("/007", ("failure", 7), 0),
        ("/start", None, 1),
        ("/log", None, 0),
    ],
)
def test_ping_every_verb_and_path(app, client, make_job, method, suffix, expected_run, expected_starts):
    _, token = make_job()
    response = client.open(f"/ping/{token}{suffix}", method=method)

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == ("" if method == "HEAD" else "OK")
    stored = runs(app)
    if expected_run is None:
        assert stored == []
    else:
        assert [(run.status, run.exit_code) for run in stored] == [expected_run]
        assert stored[0].kind == "backup"
        assert stored[0].log_tail is None
    assert len(starts(app)) == expected_starts


def test_ping_head_has_no_body(client, make_job):
    _, token = make_job()
    response = client.head(f"/ping/{token}/fail")
    assert response.status_code == 200
    assert response.data == b""


def test_ping_start_then_success_duration(app, client, make_job, clock):
    _, token = make_job()
    assert client.get(f"/ping/{token}/start").status_code == 200
    clock.advance(754.5)
    assert client.get(f"/ping/{token}").status_code == 200

    [run] = runs(app)
    assert run.status == "success"
    assert run.started_at == T0
    assert run.finished_at == T0 + timedelta(seconds=754.5)
    assert run.duration_seconds == 754.5
    assert starts(app) == []


def test_ping_finish_without_start(app, client, make_job, clock):
    _, token = make_job()
    client.get(f"/ping/{token}/0")
    [run] = runs(app)
    assert run.started_at is None
    assert run.duration_seconds is None
    assert run.finished_at == T0


def test_ping_rid_pairs_overlapping_runs(app, client, make_job, clock):
    _, token = make_job()
    client.get(f"/ping/{token}/start?rid=run-a")
    clock.advance(60)
    client.post(f"/ping/{token}/start?rid=run-b")
    clock.advance(30)
    # The later run finishes first, and fails.
    assert client.post(f"/ping/{token}/2?rid=run-b", data=b"b failed\n").status_code == 200
    clock.advance(90)
    assert client.head(f"/ping/{token}?rid=run-a").status_code == 200

    first, second = runs(app)
    assert (first.client_run_id, first.status, first.exit_code) == ("run-b", "failure", 2)
    assert first.started_at == T0 + timedelta(seconds=60)
    assert first.duration_seconds == 30
    assert first.log_tail == "b failed\n"
    assert (second.client_run_id, second.status) == ("run-a", "success")
    assert second.started_at == T0
    assert second.duration_seconds == 180
    assert starts(app) == []


def test_ping_without_rid_ignores_rid_starts(app, client, make_job, clock):
    _, token = make_job()
    client.get(f"/ping/{token}/start?rid=other")
    clock.advance(10)
    client.get(f"/ping/{token}/start")
    clock.advance(5)
    client.get(f"/ping/{token}")

    [run] = runs(app)
    assert run.client_run_id is None
    assert run.duration_seconds == 5
    assert starts(app) == ["other"]


def test_ping_uuid_rid_accepted(app, client, make_job):
    _, token = make_job()
    rid = "4c9b1a43-6e6f-4c1e-9d5a-3a0f0f2d8f11"
    client.get(f"/ping/{token}/start?rid={rid}")
    assert starts(app) == [rid]
    client.get(f"/ping/{token}/fail?rid={rid}")
    assert [run.client_run_id for run in runs(app)] == [rid]


def test_ping_repeated_rid_stored_once(app, client, make_job):
    _, token = make_job()
    first = client.get(f"/ping/{token}?rid=same")
    second = client.get(f"/ping/{token}/fail?rid=same")
    assert first.status_code == second.status_code == 200
    assert [run.status for run in runs(app)] == ["success"]


@pytest.mark.parametrize(
    "rid, fragment",
    [
        ("", "rid must be 1 to 200 characters, got 0"),
        ("x" * 201, "rid must be 1 to 200 characters, got 201"),
        ("a%0Ab", "rid must contain only printable characters"),
        ("a%01b", "rid must contain only printable characters"),
    ],
)
def test_ping_rejects_bad_rid(app, client, make_job, rid, fragment):
    _, token = make_job()
    for suffix in ("", "/start"):
        response = client.get(f"/ping/{token}{suffix}?rid={rid}")
        assert response.status_code == 400
        assert response.mimetype == "text/plain"
        assert fragment in response.get_data(as_text=True)
    assert runs(app) == []
    assert starts(app) == []


@pytest.mark.parametrize(
    "suffix, fragment",
    [
        ("256", "exit status must be between 0 and 255, got 256"),
        ("-1", "exit status must be between 0 and 255, got -1"),
        ("0256", "exit status must be between 0 and 255, got 0256"),
        ("99999999999999999999", "exit status must be between 0 and 255, got 99999999999999999999"),
        ("finish", "unknown ping 'finish'; use start, fail, log or an exit status from 0 to 255"),
        ("٣", "unknown ping"),
    ],
)
def test_ping_rejects_bad_exit_status(app, client, make_job, suffix, fragment):
    _, token = make_job()
    response = client.get(f"/ping/{token}/{suffix}")
    assert response.status_code == 400
    assert fragment in response.get_data(as_text=True)
    assert runs(app) == []


@pytest.mark.parametrize("suffix", ["", "/start", "/fail", "/log", "/3"])
def test_ping_unknown_token_404(app, client, make_job, suffix):
    make_job()
    response = client.post(f"/ping/not-a-real-token{suffix}", data=b"log")
    assert response.status_code == 404
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "not found"
    assert runs(app) == []
    assert starts(app) == []


def test_ping_utf8_body_becomes_log(app, client, make_job):
    _, token = make_job()
    body = "Archive: nightly-2026-12-01\nDéduplication terminée ✓\n".encode("utf-8")
    response = client.post(f"/ping/{token}", data=body, content_type="text/plain")
    assert response.status_code == 200
    assert runs(app)[0].log_tail == "Archive: nightly-2026-12-01\nDéduplication terminée ✓\n"


def test_ping_latin1_body_stored_readably(app, client, make_job):
    _, token = make_job()
    body = "Accès refusé à /srv/données\n".encode("latin-1")
    response = client.post(f"/ping/{token}/fail", data=body)
    assert response.status_code == 200
    assert runs(app)[0].log_tail == "Accès refusé à /srv/données\n"


def test_ping_declared_charset_used(app, client, make_job):
    _, token = make_job()
    body = "Größe: 5 GB\n".encode("latin-1")
    client.post(f"/ping/{token}", data=body, content_type="text/plain; charset=iso-8859-1")
    assert runs(app)[0].log_tail == "Größe: 5 GB\n"


def test_ping_form_encoded_body_kept_raw(app, client, make_job):
    # `curl --data-raw` sends this content type, but the body is a log, not a form.
    _, token = make_job()
    body = b"a=b&exit=1 done\n"
    response = client.post(f"/ping/{token}/1", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert runs(app)[0].log_tail == "a=b&exit=1 done\n"


def test_ping_nul_in_body_replaced(app, client, make_job):
    _, token = make_job()
    client.post(f"/ping/{token}/fail", data=b"a\x00b\n")
    assert runs(app)[0].log_tail == "a\ufffdb\n"


def test_ping_empty_body_no_log(app, client, make_job):
    _, token = make_job()
    client.post(f"/ping/{token}", data=b"")
    assert runs(app)[0].log_tail is None


def test_ping_keeps_log_tail_with_marker(app, client, make_job):
    _, token = make_job()
    limit = app.config["LOG_TAIL_MAX_BYTES"]
    log = "line of noise\n" * (limit // 7) + "Error: Repository /backup/repo does not exist.\n"
    response = client.post(f"/ping/{token}/2", data=log.encode())
    assert response.status_code == 200

    [run] = runs(app)
    assert run.log_tail.endswith("Error: Repository /backup/repo does not exist.\n")
    assert run.log_truncated_bytes == len(log.encode()) - limit
    assert run.log_tail.startswith(f"[... {run.log_truncated_bytes} bytes cut")


def test_ping_body_over_limit_413(app, client, make_job):
    _, token = make_job()
    limit = app.config["HOOK_MAX_BODY_BYTES"]
    for suffix in ("", "/start", "/fail", "/log"):
        response = client.post(f"/ping/{token}{suffix}", data=b"x" * (limit + 1))
        assert response.status_code == 413
        assert f"request body is larger than {limit} bytes" in response.get_data(as_text=True)
    assert runs(app) == []
    assert starts(app) == []


def test_ping_body_at_limit_accepted(app, client, make_job):
    _, token = make_job()
    limit = app.config["HOOK_MAX_BODY_BYTES"]
    response = client.post(f"/ping/{token}", data=b"x" * limit)
    assert response.status_code == 200
    assert runs(app)[0].log_truncated_bytes == limit - app.config["LOG_TAIL_MAX_BYTES"]


def test_ping_body_over_limit_without_length(app, client, make_job):
    _, token = make_job()
    limit = app.config["HOOK_MAX_BODY_BYTES"]
    # A stream with no Content-Length, as a chunked upload arrives.
    response = client.post(f"/ping/{token}/fail", input_stream=io.BytesIO(b"x" * (limit + 1)))
    assert response.status_code == 413
    assert runs(app) == []


def test_ping_log_keeps_start_pending(app, client, make_job, clock):
    _, token = make_job()
    client.get(f"/ping/{token}/start?rid=r1")
    clock.advance(20)
    response = client.post(f"/ping/{token}/log?rid=r1", data=b"halfway\n")
    assert response.status_code == 200
    assert runs(app) == []
    assert starts(app) == ["r1"]

    clock.advance(20)
    client.get(f"/ping/{token}?rid=r1")
    assert runs(app)[0].duration_seconds == 40
    assert runs(app)[0].log_tail == "halfway\n"


def test_ping_logs_join_in_order(app, client, make_job):
    _, token = make_job()
    client.post(f"/ping/{token}/start", data=b"starting\n")
    client.post(f"/ping/{token}/log", data=b"halfway\n")
    client.post(f"/ping/{token}/0", data=b"done\n")
    assert runs(app)[0].log_tail == "starting\nhalfway\ndone\n"


def test_ping_joined_log_keeps_its_tail(app, client, make_job, monkeypatch):
    monkeypatch.setitem(app.config, "LOG_TAIL_MAX_BYTES", 10)
    _, token = make_job()
    client.post(f"/ping/{token}/start", data=b"0123456789")
    client.post(f"/ping/{token}/0", data=b"abcdef")
    [run] = runs(app)
    assert run.log_tail.endswith("6789abcdef")
    assert run.log_tail.startswith("[... 6 bytes cut")


def test_ping_log_without_start_answers_ok(app, client, make_job):
    _, token = make_job()
    response = client.post(f"/ping/{token}/log", data=b"orphan\n")
    assert response.status_code == 200
    assert runs(app) == []
    assert starts(app) == []


def test_ping_enqueues_check(client, make_job, queue):
    _, token = make_job()
    client.get(f"/ping/{token}/start")
    assert queue.job_ids == []
    client.get(f"/ping/{token}/fail")
    assert queue.job_ids == [f"process-run-{runs(client.application)[0].id}"]


def test_ping_accepts_with_redis_down(database_url, make_job):
    from app import create_app

    closed_port_app = create_app({
        "TESTING": True,
        "SECRET_KEY": "x",
        "SQLALCHEMY_DATABASE_URI": database_url,
        # Nothing listens on port 1 of loopback, so every connection is refused.
        "REDIS_URL": "redis://127.0.0.1:1/0",
    })
    _, token = make_job()
    response = closed_port_app.test_client().get(f"/ping/{token}/fail")
    assert response.status_code == 200
    [run] = runs(closed_port_app)
    assert run.status == "failure"
    assert run.checked_at is None


def test_ping_failure_raises_alert(app, admin_client, make_job, run_worker):
    _, token = make_job("borg-home")
    admin_client.get(f"/ping/{token}/start")
    admin_client.post(f"/ping/{token}/3", data=b"borg: Repository does not exist\n")
    assert run_worker() == []

    alerts = admin_client.get("/api/v1/alerts").json["alerts"]
    assert [(a["type"], a["severity"]) for a in alerts] == [("BACKUP_FAILURE", "CRITICAL")]
    assert alerts[0]["message"] == "Backup of borg-home failed: exit code 3"

    admin_client.get(f"/ping/{token}")
    assert run_worker() == []
    assert admin_client.get("/api/v1/alerts/summary").json["active"] == 0


def test_ping_fail_alert_reason(admin_client, make_job, run_worker):
    _, token = make_job("cron-tar")
    admin_client.post(f"/ping/{token}/fail")
    run_worker()
    alerts = admin_client.get("/api/v1/alerts").json["alerts"]
    assert [a["message"] for a in alerts] == ["Backup of cron-tar failed: reported failure"]


def test_ping_put_not_allowed(app, client, make_job):
    _, token = make_job()
    assert client.put(f"/ping/{token}").status_code == 405
    assert runs(app) == []


def test_ping_sends_body_limit_header(app, client, make_job):
    _, token = make_job()
    response = client.post(f"/ping/{token}/start")
    assert response.headers["Ping-Body-Limit"] == str(app.config["LOG_TAIL_MAX_BYTES"])


def test_ping_runitor_requests(app, client, make_job, clock):
    # The requests runitor sends: a start, then the exit status with the
    # end of the output as a text/plain body.
    _, token = make_job()
    start = client.post(f"/ping/{token}/start", data=b"", content_type="text/plain")
    assert start.headers["Ping-Body-Limit"] == "65536"
    clock.advance(42)
    output = b"tar: /srv/data: Cannot open: Permission denied\n\n[runitor] exit status 2"
    finish = client.post(f"/ping/{token}/2", data=output, content_type="text/plain")
    assert finish.status_code == 200

    [run] = runs(app)
    assert (run.status, run.exit_code, run.duration_seconds) == ("failure", 2, 42)
    assert run.log_tail == output.decode()


def test_second_start_replaces_first(app, client, make_job, clock):
    _, token = make_job()
    client.post(f"/ping/{token}/start", data=b"first\n")
    clock.advance(600)
    client.post(f"/ping/{token}/start", data=b"second\n")
    assert starts(app) == [None]
    clock.advance(30)
    client.get(f"/ping/{token}/0")
    [run] = runs(app)
    assert run.duration_seconds == 30
    assert run.log_tail == "second\n"
