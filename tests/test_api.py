"""The read API: /api/v1/alerts and /api/v1/alerts/summary."""

import pytest

from app.extensions import db
from app.models import BackupJob, Severity
from app.monitoring.alerts import create_backup_alert_with_notifications
from tests.conftest import login


@pytest.fixture
def alerts(app):
    with app.app_context():
        jobs = []
        for name in ("db", "files"):
            job, _ = BackupJob.create(name)
            db.session.add(job)
            jobs.append(job)
        db.session.commit()
        create_backup_alert_with_notifications("BACKUP_FAILURE", Severity.CRITICAL, "db failed", {}, job=jobs[0])
        create_backup_alert_with_notifications("SIZE_DEVIATION", Severity.WARNING, "db shrank", {}, job=jobs[0])
        create_backup_alert_with_notifications("SIZE_DEVIATION", Severity.WARNING, "files grew", {}, job=jobs[1])
        db.session.commit()
        return {job.name: job.id for job in jobs}


def test_alerts_require_login(client):
    response = client.get("/api/v1/alerts")
    assert response.status_code == 401
    assert response.json["error"]["field"] == "session"


def test_summary_requires_login(client):
    assert client.get("/api/v1/alerts/summary").status_code == 401


def test_wrong_password_rejected(client, make_user):
    make_user("op@example.com", "right")
    assert login(client, "op@example.com", "wrong").status_code == 401
    assert client.get("/api/v1/alerts").status_code == 401


def test_login_without_csrf_rejected(client, make_user):
    make_user("op@example.com", "right")
    response = client.post("/login", data={"email": "op@example.com", "password": "right"})
    assert response.status_code == 400
    assert client.get("/api/v1/alerts").status_code == 401


def test_list_alerts_worst_first(admin_client, alerts):
    body = admin_client.get("/api/v1/alerts").json
    assert body["total"] == 3
    assert [a["severity"] for a in body["alerts"]] == ["CRITICAL", "WARNING", "WARNING"]
    assert body["alerts"][0]["job"] == {"id": alerts["db"], "name": "db"}


def test_list_alerts_filters(admin_client, alerts):
    assert admin_client.get("/api/v1/alerts?severity=warning").json["total"] == 2
    assert admin_client.get("/api/v1/alerts?status=RESOLVED").json["total"] == 0
    assert admin_client.get(f"/api/v1/alerts?job={alerts['files']}").json["total"] == 1
    assert admin_client.get("/api/v1/alerts?job=db&severity=CRITICAL").json["total"] == 1


def test_list_alerts_pagination(admin_client, alerts):
    first = admin_client.get("/api/v1/alerts?per_page=2&page=1").json
    second = admin_client.get("/api/v1/alerts?per_page=2&page=2").json
    assert len(first["alerts"]) == 2
    assert len(second["alerts"]) == 1
    assert first["total"] == second["total"] == 3
    ids = [a["id"] for a in first["alerts"] + second["alerts"]]
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    "query, field",
    [
        ("severity=urgent", "severity"),
        ("status=open", "status"),
        ("job=nope", "job"),
        ("page=0", "page"),
        ("per_page=-1", "per_page"),
        ("page=abc", "page"),
    ],
)
def test_list_alerts_bad_filter(admin_client, alerts, query, field):
    response = admin_client.get(f"/api/v1/alerts?{query}")
    assert response.status_code == 400
    assert response.json["error"]["field"] == field


def test_summary(admin_client, alerts):
    body = admin_client.get("/api/v1/alerts/summary").json
    assert body["active"] == 3
    assert body["by_severity"]["CRITICAL"] == 1
    assert body["by_type"] == {"BACKUP_FAILURE": 1, "SIZE_DEVIATION": 2}


def test_unknown_api_path_json_404(admin_client):
    response = admin_client.get("/api/v1/nothing")
    assert response.status_code == 404
    assert "error" in response.json


def test_logout_requires_post_with_csrf(admin_client):
    assert admin_client.post("/logout").status_code == 400
    assert admin_client.get("/api/v1/alerts").status_code == 200
