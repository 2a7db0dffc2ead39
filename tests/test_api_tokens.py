"""API tokens (CLI, console page, bearer auth) and the JSON API's write and job endpoints."""

import hashlib
import re
from datetime import timedelta

import pytest

from app.extensions import db
from app.models import Alert, AlertEvent, ApiToken, BackupJob, BackupRun, Severity, User, utcnow
from app.monitoring.alerts import create_backup_alert_with_notifications
from tests.conftest import login

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin password 1"
OPERATOR_EMAIL = "operator@example.com"
OPERATOR_PASSWORD = "operator password 1"


def create_token_cli(app, email, name="script", *extra):
    result = app.test_cli_runner().invoke(args=["api-tokens", "create", "--email", email, "--name", name, *extra])
    assert result.exit_code == 0, result.output
    return re.search(r"Token \(shown only now, store it safely\): (\S+)", result.output).group(1), result.output


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin_token(app, make_user):
    make_user(ADMIN_EMAIL, ADMIN_PASSWORD, admin=True)
    token, _ = create_token_cli(app, ADMIN_EMAIL, "admin script")
    return token


@pytest.fixture
def operator_token(app, make_user):
    make_user(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    token, _ = create_token_cli(app, OPERATOR_EMAIL, "operator script")
    return token


@pytest.fixture
def alerts(app, make_job):
    """Three ACTIVE alerts: CRITICAL BACKUP_FAILURE and WARNING SIZE_DEVIATION of db, WARNING SIZE_DEVIATION of files."""
    db_id, _ = make_job("db")
    files_id, _ = make_job("files")
    with app.app_context():
        db_job, files_job = db.session.get(BackupJob, db_id), db.session.get(BackupJob, files_id)
        failure, _ = create_backup_alert_with_notifications("BACKUP_FAILURE", Severity.CRITICAL, "db failed", {}, job=db_job)
        shrank, _ = create_backup_alert_with_notifications("SIZE_DEVIATION", Severity.WARNING, "db shrank", {}, job=db_job)
        grew, _ = create_backup_alert_with_notifications("SIZE_DEVIATION", Severity.WARNING, "files grew", {}, job=files_job)
        db.session.commit()
        return {"db": db_id, "files": files_id, "failure": failure.id, "shrank": shrank.id, "grew": grew.id}


def count(app, model, *where):
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(model).where(*where))


def page_csrf_token(client, path="/admin/api-tokens/"):
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


# Tokens: create, use, revoke, expire


def test_cli_create_prints_token_once(app, client, make_user):
    make_user(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    token, output = create_token_cli(app, OPERATOR_EMAIL, "backup report")
    assert token.startswith("bwk_")
    # secrets.token_urlsafe(32): 43 base64url characters after the prefix.
    assert len(token) == len("bwk_") + 43
    assert f"Authorization: Bearer {token}" in output
    with app.app_context():
        row = db.session.execute(db.select(ApiToken)).scalar_one()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in (row.name, row.token_hash)
        assert row.name == "backup report"
        assert row.user.email == OPERATOR_EMAIL
        assert row.expires_at is None
        assert row.last_used_at is None


def test_cli_create_unknown_user(app):
    result = app.test_cli_runner().invoke(args=["api-tokens", "create", "--email", "nobody@example.com", "--name", "x"])
    assert result.exit_code != 0
    assert "no user with email" in result.output
    assert count(app, ApiToken) == 0


def test_cli_create_empty_name(app, make_user):
    make_user(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    result = app.test_cli_runner().invoke(args=["api-tokens", "create", "--email", OPERATOR_EMAIL, "--name", "  "])
    assert result.exit_code != 0
    assert "--name" in result.output
    assert count(app, ApiToken) == 0


def test_tokens_are_distinct(app, make_user):
    make_user(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    tokens = {create_token_cli(app, OPERATOR_EMAIL, f"t{i}")[0] for i in range(3)}
    assert len(tokens) == 3


def test_bearer_token_reads_alerts(app, client, operator_token, alerts):
    response = client.get("/api/v1/alerts", headers=bearer(operator_token))
    assert response.status_code == 200
    assert response.json["total"] == 3
    with app.app_context():
        row = db.session.execute(db.select(ApiToken)).scalar_one()
        assert row.last_used_at is not None


def test_last_used_written_once_a_minute(app, client, operator_token):
    client.get("/api/v1/jobs", headers=bearer(operator_token))
    with app.app_context():
        first = db.session.execute(db.select(ApiToken)).scalar_one().last_used_at
    client.get("/api/v1/jobs", headers=bearer(operator_token))
    with app.app_context():
        row = db.session.execute(db.select(ApiToken)).scalar_one()
        assert row.last_used_at == first
        row.last_used_at = first - timedelta(minutes=2)
        db.session.commit()
    client.get("/api/v1/jobs", headers=bearer(operator_token))
    with app.app_context():
        assert db.session.execute(db.select(ApiToken)).scalar_one().last_used_at > first


def test_cli_revoke_rejects_token(app, client, operator_token):
    assert client.get("/api/v1/jobs", headers=bearer(operator_token)).status_code == 200
    with app.app_context():
        token_id = db.session.execute(db.select(ApiToken.id)).scalar_one()
    result = app.test_cli_runner().invoke(args=["api-tokens", "revoke", str(token_id)])
    assert result.exit_code == 0, result.output
    assert f"Revoked API token {token_id}" in result.output

    response = client.get("/api/v1/jobs", headers=bearer(operator_token))
    assert response.status_code == 401
    assert response.json["error"]["field"] == "Authorization"
    assert "revoked" in response.json["error"]["message"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]

    again = app.test_cli_runner().invoke(args=["api-tokens", "revoke", str(token_id)])
    assert again.exit_code == 0
    assert "already revoked" in again.output


def test_cli_revoke_unknown_id(app):
    for token_id in ("99", str(2**40)):
        result = app.test_cli_runner().invoke(args=["api-tokens", "revoke", token_id])
        assert result.exit_code != 0
        assert f"no API token with id {token_id}" in result.output


def test_cli_list_shows_status(app, operator_token):
    with app.app_context():
        token_id = db.session.execute(db.select(ApiToken.id)).scalar_one()
    app.test_cli_runner().invoke(args=["api-tokens", "revoke", str(token_id)])
    result = app.test_cli_runner().invoke(args=["api-tokens", "list", "--email", OPERATOR_EMAIL])
    assert result.exit_code == 0
    assert f"{token_id}\t{OPERATOR_EMAIL}\toperator script\trevoked" in result.output
    assert operator_token not in result.output


def test_expiring_token(app, client, make_user):
    make_user(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    token, output = create_token_cli(app, OPERATOR_EMAIL, "short-lived", "--expires-in-days", "7")
    assert "Expires at " in output
    assert client.get("/api/v1/jobs", headers=bearer(token)).status_code == 200
    with app.app_context():
        row = db.session.execute(db.select(ApiToken)).scalar_one()
        assert timedelta(days=6, hours=23) < row.expires_at - utcnow() <= timedelta(days=7)
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    response = client.get("/api/v1/jobs", headers=bearer(token))
    assert response.status_code == 401
    assert "expired" in response.json["error"]["message"]


def test_deactivated_user_token_rejected(app, client, operator_token):
    with app.app_context():
        user = db.session.execute(db.select(User).where(User.email == OPERATOR_EMAIL)).scalar_one()
        user.is_active_user = False
        db.session.commit()
    response = client.get("/api/v1/jobs", headers=bearer(operator_token))
    assert response.status_code == 401
    assert "deactivated" in response.json["error"]["message"]


def test_deleting_user_deletes_tokens(app, operator_token):
    with app.app_context():
        db.session.execute(db.delete(User).where(User.email == OPERATOR_EMAIL))
        db.session.commit()
    assert count(app, ApiToken) == 0


@pytest.mark.parametrize(
    "header",
    [
        "Bearer bwk_not-a-real-token",
        "Bearer ",
        "Basic b3BlcmF0b3I6c2VjcmV0",
        "bwk_without_scheme",
        "Bearer " + "x" * 5000,
    ],
)
def test_bad_authorization_header(client, operator_token, header):
    response = client.get("/api/v1/alerts", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json["error"]["field"] == "Authorization"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="backwatch", error="invalid_token"')


def test_no_credentials_challenge(client):
    response = client.post("/api/v1/jobs", json={"name": "x"})
    assert response.status_code == 401
    assert response.json["error"]["field"] == "session"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="backwatch"'


def test_bearer_scheme_case_insensitive(client, operator_token):
    assert client.get("/api/v1/jobs", headers={"Authorization": f"bearer {operator_token}"}).status_code == 200


def test_token_gives_no_console_access(client, operator_token):
    response = client.get("/admin/", headers=bearer(operator_token))
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


# Console page


def test_console_creates_token_shown_once(app, client, make_user):
    make_user(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    login(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    csrf_token = page_csrf_token(client)
    response = client.post("/admin/api-tokens/", data={"name": "<b>laptop</b>", "expires_in_days": "30", "csrf_token": csrf_token})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    token = re.search(r"<code>(bwk_[A-Za-z0-9_-]+)</code>", page).group(1)
    assert "&lt;b&gt;laptop&lt;/b&gt;" in page
    assert "<b>laptop</b>" not in page

    assert client.get("/api/v1/jobs", headers=bearer(token)).status_code == 200
    later = client.get("/admin/api-tokens/").get_data(as_text=True)
    assert token not in later
    assert "&lt;b&gt;laptop&lt;/b&gt;" in later
    with app.app_context():
        row = db.session.execute(db.select(ApiToken)).scalar_one()
        assert row.expires_at is not None


def test_console_create_requires_csrf(app, client, make_user):
    make_user(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    login(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    response = client.post("/admin/api-tokens/", data={"name": "laptop"})
    assert response.status_code == 400
    assert count(app, ApiToken) == 0


def test_console_create_rejects_bad_expiry(app, client, make_user):
    make_user(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    login(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    data = {"name": "laptop", "expires_in_days": "0", "csrf_token": page_csrf_token(client)}
    response = client.post("/admin/api-tokens/", data=data)
    assert response.status_code == 400
    assert count(app, ApiToken) == 0


def test_console_revokes_own_token(app, client, make_user):
    make_user(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    token, _ = create_token_cli(app, OPERATOR_EMAIL, "laptop")
    with app.app_context():
        token_id = db.session.execute(db.select(ApiToken.id)).scalar_one()
    login(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    csrf_token = page_csrf_token(client)

    assert client.post(f"/admin/api-tokens/{token_id}/revoke").status_code == 400
    response = client.post(f"/admin/api-tokens/{token_id}/revoke", data={"csrf_token": csrf_token})
    assert response.status_code == 302
    assert client.get("/api/v1/jobs", headers=bearer(token)).status_code == 401
    assert "revoked" in client.get("/admin/api-tokens/").get_data(as_text=True)


def test_console_lists_only_own_tokens(app, client, make_user):
    make_user(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    make_user(ADMIN_EMAIL, ADMIN_PASSWORD, admin=True)
    create_token_cli(app, ADMIN_EMAIL, "admin-only-token")
    with app.app_context():
        admin_token_id = db.session.execute(db.select(ApiToken.id)).scalar_one()
    login(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    assert "admin-only-token" not in client.get("/admin/api-tokens/").get_data(as_text=True)
    response = client.post(f"/admin/api-tokens/{admin_token_id}/revoke", data={"csrf_token": page_csrf_token(client)})
    assert response.status_code == 404
    with app.app_context():
        assert db.session.get(ApiToken, admin_token_id).revoked_at is None


def test_console_page_requires_login(client):
    response = client.get("/admin/api-tokens/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


# Alerts


def test_list_alerts_by_type_and_job_id(client, operator_token, alerts):
    headers = bearer(operator_token)
    assert client.get("/api/v1/alerts?type=size_deviation", headers=headers).json["total"] == 2
    assert client.get(f"/api/v1/alerts?job_id={alerts['db']}", headers=headers).json["total"] == 2
    body = client.get(f"/api/v1/alerts?job_id={alerts['db']}&type=BACKUP_FAILURE&status=active", headers=headers).json
    assert [a["id"] for a in body["alerts"]] == [alerts["failure"]]


@pytest.mark.parametrize(
    "query, field",
    [
        ("type=DISK_ON_FIRE", "type"),
        ("job_id=abc", "job_id"),
        ("job_id=0", "job_id"),
        (f"job_id={2**31}", "job_id"),
        ("job=99999999999999999999999", "job"),
        ("job=%C2%B2", "job"),
        ("page=%C2%B2", "page"),
        ("per_page=10000000000", "per_page"),
    ],
)
def test_list_alerts_bad_filters(client, operator_token, alerts, query, field):
    response = client.get(f"/api/v1/alerts?{query}", headers=bearer(operator_token))
    assert response.status_code == 400
    assert response.json["error"]["field"] == field


def test_get_alert(client, operator_token, alerts):
    response = client.get(f"/api/v1/alerts/{alerts['failure']}", headers=bearer(operator_token))
    assert response.status_code == 200
    assert response.json["type"] == "BACKUP_FAILURE"
    for missing in (999999, 2**63):
        response = client.get(f"/api/v1/alerts/{missing}", headers=bearer(operator_token))
        assert response.status_code == 404
        assert response.json["error"]["field"] == "alert_id"


def test_acknowledge_then_again_conflicts(app, client, operator_token, alerts):
    url = f"/api/v1/alerts/{alerts['failure']}/acknowledge"
    response = client.post(url, headers=bearer(operator_token))
    assert response.status_code == 200
    assert response.json["status"] == "ACKNOWLEDGED"
    assert response.json["acknowledged_by"] == OPERATOR_EMAIL

    again = client.post(url, headers=bearer(operator_token))
    assert again.status_code == 409
    assert again.json["error"]["field"] == "status"
    assert "is ACKNOWLEDGED" in again.json["error"]["message"]
    events = count(app, AlertEvent, AlertEvent.alert_id == alerts["failure"], AlertEvent.event == "acknowledged")
    assert events == 1


def test_acknowledge_accepts_empty_json_object(client, operator_token, alerts):
    response = client.post(f"/api/v1/alerts/{alerts['grew']}/acknowledge", json={}, headers=bearer(operator_token))
    assert response.status_code == 200


def test_acknowledge_rejects_body_fields(app, client, operator_token, alerts):
    url = f"/api/v1/alerts/{alerts['failure']}/acknowledge"
    response = client.post(url, json={"comment": "on it"}, headers=bearer(operator_token))
    assert response.status_code == 400
    assert response.json["error"]["field"] == "comment"
    invalid = client.post(url, data="{nope", content_type="application/json", headers=bearer(operator_token))
    assert invalid.status_code == 400
    assert invalid.json["error"]["field"] == "body"
    with app.app_context():
        assert db.session.get(Alert, alerts["failure"]).status == "ACTIVE"


def test_acknowledge_unknown_alert(client, operator_token):
    response = client.post("/api/v1/alerts/424242/acknowledge", headers=bearer(operator_token))
    assert response.status_code == 404
    assert response.json["error"]["field"] == "alert_id"


def test_resolve_records_one_resolved_event(app, client, operator_token, alerts):
    url = f"/api/v1/alerts/{alerts['failure']}/resolve"
    response = client.post(url, headers=bearer(operator_token))
    assert response.status_code == 200
    assert response.json["status"] == "RESOLVED"
    assert response.json["resolved_by"] == OPERATOR_EMAIL

    again = client.post(url, headers=bearer(operator_token))
    assert again.status_code == 409
    assert "is RESOLVED" in again.json["error"]["message"]
    events = count(app, AlertEvent, AlertEvent.alert_id == alerts["failure"], AlertEvent.event == "resolved")
    assert events == 1
    assert client.post(f"/api/v1/alerts/{alerts['failure']}/acknowledge", headers=bearer(operator_token)).status_code == 409


def test_resolve_acknowledged_alert(app, client, operator_token, alerts):
    headers = bearer(operator_token)
    assert client.post(f"/api/v1/alerts/{alerts['shrank']}/acknowledge", headers=headers).status_code == 200
    response = client.post(f"/api/v1/alerts/{alerts['shrank']}/resolve", headers=headers)
    assert response.status_code == 200
    assert response.json["status"] == "RESOLVED"


def test_resolve_enqueues_deliveries(app, client, queue, operator_token, alerts):
    queue.empty()
    client.post(f"/api/v1/alerts/{alerts['failure']}/resolve", headers=bearer(operator_token))
    # The operator gets the CRITICAL alert's resolution by email (in-app needs no job).
    assert queue.count >= 1


def test_session_write_needs_csrf_header(app, client, make_user, alerts):
    make_user(OPERATOR_EMAIL, OPERATOR_PASSWORD)
    login(client, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    url = f"/api/v1/alerts/{alerts['failure']}/acknowledge"
    response = client.post(url)
    assert response.status_code == 400
    assert response.json["error"]["field"] == "X-CSRFToken"
    wrong = client.post(url, headers={"X-CSRFToken": "not-the-token"})
    assert wrong.status_code == 400
    with app.app_context():
        assert db.session.get(Alert, alerts["failure"]).status == "ACTIVE"

    response = client.post(url, headers={"X-CSRFToken": page_csrf_token(client)})
    assert response.status_code == 200
    assert response.json["acknowledged_by"] == OPERATOR_EMAIL


def test_session_reads_still_work(admin_client, alerts):
    assert admin_client.get("/api/v1/alerts").json["total"] == 3
    assert admin_client.get("/api/v1/alerts/summary").json["active"] == 3


# Jobs and runs


def test_list_and_get_jobs(client, operator_token, make_job):
    first_id, _ = make_job("zeta", schedule_cron="0 3 * * *", schedule_timezone="Europe/Berlin")
    second_id, _ = make_job("alpha")
    body = client.get("/api/v1/jobs", headers=bearer(operator_token)).json
    assert body["total"] == 2
    assert [job["name"] for job in body["jobs"]] == ["alpha", "zeta"]
    job = client.get(f"/api/v1/jobs/{first_id}", headers=bearer(operator_token)).json
    assert job["schedule_cron"] == "0 3 * * *"
    assert job["schedule_timezone"] == "Europe/Berlin"
    assert job["last_run_at"] is None
    assert "token_hash" not in job
    page = client.get("/api/v1/jobs?per_page=1&page=2", headers=bearer(operator_token)).json
    assert [job["id"] for job in page["jobs"]] == [first_id]


def test_get_unknown_job(client, operator_token):
    for missing in ("31337", str(2**40)):
        response = client.get(f"/api/v1/jobs/{missing}", headers=bearer(operator_token))
        assert response.status_code == 404
        assert response.json["error"]["field"] == "job_id"
    assert client.get("/api/v1/jobs/31337/runs", headers=bearer(operator_token)).status_code == 404


def test_runs_newest_first_paginated(client, operator_token, make_job):
    job_id, hook_token = make_job("db")
    for day in (1, 3, 2):
        report = {"status": "success", "finished_at": f"2026-11-0{day}T02:00:00Z", "size_bytes": day, "run_id": f"r{day}"}
        assert client.post(f"/hooks/{hook_token}", json=report).status_code == 202
    body = client.get(f"/api/v1/jobs/{job_id}/runs?per_page=2", headers=bearer(operator_token)).json
    assert body["total"] == 3
    assert [run["size_bytes"] for run in body["runs"]] == [3, 2]
    assert body["runs"][0]["client_run_id"] == "r3"
    assert body["runs"][0]["finished_at"] == "2026-11-03T02:00:00+00:00"
    rest = client.get(f"/api/v1/jobs/{job_id}/runs?per_page=2&page=2", headers=bearer(operator_token)).json
    assert [run["size_bytes"] for run in rest["runs"]] == [1]


def test_admin_creates_job(app, client, admin_token):
    body = {
        "name": "  nightly-db ",
        "description": "pg_dump of the main database",
        "schedule_cron": "30 2 * * *",
        "schedule_timezone": "Europe/Berlin",
        "grace_seconds": 1800,
        "max_run_seconds": 7200,
        "baseline_window": 20,
        "baseline_min_samples": 5,
    }
    response = client.post("/api/v1/jobs", json=body, headers=bearer(admin_token))
    assert response.status_code == 201, response.json
    created = response.json
    job = created["job"]
    assert job["name"] == "nightly-db"
    assert job["schedule_timezone"] == "Europe/Berlin"
    assert job["baseline_min_samples"] == 5
    assert job["paused"] is False
    assert created["hook_url"] == f"http://backwatch.test/hooks/{created['hook_token']}"
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    with app.app_context():
        stored = db.session.get(BackupJob, job["id"])
        assert stored.token_hash == hashlib.sha256(created["hook_token"].encode()).hexdigest()
        assert stored.schedule_since is not None

    report = client.post(f"/hooks/{created['hook_token']}", json={"status": "success"})
    assert report.status_code == 202
    fetched = client.get(f"/api/v1/jobs/{job['id']}", headers=bearer(admin_token)).json
    assert fetched["last_run_at"] is not None
    assert {key: value for key, value in fetched.items() if key != "last_run_at"} == {
        key: value for key, value in job.items() if key != "last_run_at"
    }


def test_admin_creates_interval_job(client, admin_token):
    response = client.post("/api/v1/jobs", json={"name": "hourly", "schedule_interval_seconds": 3600}, headers=bearer(admin_token))
    assert response.status_code == 201
    assert response.json["job"]["schedule_interval_seconds"] == 3600
    assert response.json["job"]["schedule_cron"] is None


def test_non_admin_cannot_create_job(app, client, operator_token):
    response = client.post("/api/v1/jobs", json={"name": "sneaky"}, headers=bearer(operator_token))
    assert response.status_code == 403
    assert "platform admins" in response.json["error"]["message"]
    assert count(app, BackupJob) == 0


def test_duplicate_job_name_conflicts(app, client, admin_token, make_job):
    make_job("nightly-db")
    response = client.post("/api/v1/jobs", json={"name": "nightly-db"}, headers=bearer(admin_token))
    assert response.status_code == 409
    assert response.json["error"]["field"] == "name"
    assert count(app, BackupJob) == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "name"),
        ({"name": None}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 7}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "j", "token": "mine"}, "token"),
        ({"name": "j", "schedule_cron": "every night"}, "schedule_cron"),
        ({"name": "j", "schedule_cron": "61 * * * *"}, "schedule_cron"),
        ({"name": "j", "schedule_cron": "0 3 * * *", "schedule_timezone": "Mars/Olympus"}, "schedule_timezone"),
        ({"name": "j", "schedule_cron": "0 3 * * *", "schedule_interval_seconds": 3600}, "schedule_cron"),
        ({"name": "j", "schedule_interval_seconds": 10}, "schedule_interval_seconds"),
        ({"name": "j", "schedule_interval_seconds": 2**40}, "schedule_interval_seconds"),
        ({"name": "j", "schedule_interval_seconds": "3600"}, "schedule_interval_seconds"),
        ({"name": "j", "grace_seconds": -1}, "grace_seconds"),
        ({"name": "j", "grace_seconds": 1.5}, "grace_seconds"),
        ({"name": "j", "max_run_seconds": 0}, "max_run_seconds"),
        ({"name": "j", "max_run_seconds": True}, "max_run_seconds"),
        ({"name": "j", "baseline_window": 1001}, "baseline_window"),
        ({"name": "j", "baseline_window": 5, "baseline_min_samples": 6}, "baseline_min_samples"),
        ({"name": "j", "paused": "yes"}, "paused"),
        ({"name": "j", "description": ["a"]}, "description"),
    ],
)
def test_create_job_rejects_field(app, client, admin_token, body, field):
    response = client.post("/api/v1/jobs", json=body, headers=bearer(admin_token))
    assert response.status_code == 400, response.json
    assert response.json["error"]["field"] == field
    assert count(app, BackupJob) == 0


@pytest.mark.parametrize(
    "data",
    ["", "[1, 2]", '"nightly"', "{broken", '{"name": "j", "grace_seconds": 1' + "0" * 5000 + "}", "[" * 100000],
)
def test_create_job_rejects_body(app, client, admin_token, data):
    response = client.post("/api/v1/jobs", data=data, content_type="application/json", headers=bearer(admin_token))
    assert response.status_code in (400, 413)
    assert response.json["error"]["field"] == "body"
    assert count(app, BackupJob) == 0


def test_create_job_body_too_large(app, client, admin_token):
    body = {"name": "j", "description": "x" * (70 * 1024)}
    response = client.post("/api/v1/jobs", json=body, headers=bearer(admin_token))
    assert response.status_code == 413
    assert count(app, BackupJob) == 0


def test_create_job_strips_nul(app, client, admin_token):
    response = client.post("/api/v1/jobs", json={"name": "a\u0000b"}, headers=bearer(admin_token))
    assert response.status_code == 201
    assert response.json["job"]["name"] == "a\ufffdb"


def test_session_admin_creates_job_with_csrf(app, admin_client):
    assert admin_client.post("/api/v1/jobs", json={"name": "from-console"}).status_code == 400
    csrf_token = page_csrf_token(admin_client)
    response = admin_client.post("/api/v1/jobs", json={"name": "from-console"}, headers={"X-CSRFToken": csrf_token})
    assert response.status_code == 201
    assert count(app, BackupJob) == 1


def test_wrong_method_is_json_405(client, operator_token):
    response = client.delete("/api/v1/jobs", headers=bearer(operator_token))
    assert response.status_code == 405
    assert "error" in response.json


def test_hook_reports_unaffected_by_tokens(app, client, make_job, operator_token):
    # An API token is not a hook token, and the other way round.
    job_id, hook_token = make_job("db")
    assert client.post(f"/hooks/{operator_token}", json={"status": "success"}).status_code == 404
    assert client.get("/api/v1/jobs", headers=bearer(hook_token)).status_code == 401
    assert count(app, BackupRun) == 0
