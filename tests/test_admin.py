"""The console: login required, report text escaped, CSRF on forms."""

import re

import pytest

from app.extensions import db
from app.models import BackupJob, BackupRun, Severity, utcnow
from app.monitoring.alerts import create_backup_alert_with_notifications

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def hostile_job(app):
    with app.app_context():
        job, _ = BackupJob.create(HOSTILE)
        db.session.add(job)
        db.session.commit()
        run = BackupRun(
            job_id=job.id, status="failure", finished_at=utcnow(), error=f"error {HOSTILE}",
            log_tail=f"<script>alert(2)</script>\n{HOSTILE}",
        )
        db.session.add(run)
        db.session.commit()
        alert, _ = create_backup_alert_with_notifications(
            "BACKUP_FAILURE", Severity.CRITICAL, f"Backup of {HOSTILE} failed", {"error": HOSTILE}, job=job, run=run
        )
        db.session.commit()
        return {"job": job.id, "run": run.id, "alert": alert.id}


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/backups/alerts/", "/admin/backups/jobs/", "/admin/backups/runs/"]
)
def test_console_requires_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_root_redirects_to_login(client):
    assert "/login" in client.get("/").headers["Location"]


def test_login_redirects_to_next(client, make_user):
    from tests.conftest import login

    make_user("op@example.com", "pw")
    page = client.get("/login?next=/admin/backups/runs/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login?next=/admin/backups/runs/", data={"email": "op@example.com", "password": "pw", "csrf_token": token}
    )
    assert response.headers["Location"] == "/admin/backups/runs/"
    assert login(client, "op@example.com", "pw").status_code == 302


def test_login_ignores_offsite_next(client, make_user):
    make_user("op@example.com", "pw")
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login?next=//evil.example/", data={"email": "op@example.com", "password": "pw", "csrf_token": token}
    )
    assert response.headers["Location"] == "/admin/"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/backups/alerts/",
        "/admin/backups/alerts/details/?id={alert}",
        "/admin/backups/jobs/",
        "/admin/backups/jobs/details/?id={job}",
        "/admin/backups/runs/",
        "/admin/backups/runs/details/?id={run}",
    ],
)
def test_pages_escape_report_text(admin_client, hostile_job, path):
    response = admin_client.get(path.format(**hostile_job))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert HOSTILE not in page
    assert "<script>alert(2)" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_alert_list_filters(admin_client, hostile_job):
    page = admin_client.get("/admin/backups/alerts/?search=failed").get_data(as_text=True)
    assert "BACKUP_FAILURE" in page


def test_edit_job_requires_csrf(admin_client, hostile_job):
    url = f"/admin/backups/jobs/edit/?id={hostile_job['job']}"
    response = admin_client.post(url, data={"name": "renamed"})
    assert response.status_code in (200, 400)
    with admin_client.application.app_context():
        assert db.session.get(BackupJob, hostile_job["job"]).name == HOSTILE


def test_edit_job_with_csrf(admin_client, hostile_job):
    url = f"/admin/backups/jobs/edit/?id={hostile_job['job']}"
    page = admin_client.get(url).get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = admin_client.post(url, data={"name": "renamed", "baseline_window": "5", "csrf_token": token})
    assert response.status_code == 302
    with admin_client.application.app_context():
        job = db.session.get(BackupJob, hostile_job["job"])
        assert job.name == "renamed"
        assert job.baseline_window == 5


def test_non_admin_cannot_edit(client, make_user, hostile_job):
    from tests.conftest import login

    make_user("viewer@example.com", "pw")
    login(client, "viewer@example.com", "pw")
    assert client.get("/admin/backups/jobs/").status_code == 200
    response = client.get(f"/admin/backups/jobs/edit/?id={hostile_job['job']}")
    assert response.status_code == 302


def test_health_without_login(client):
    assert client.get("/healthz").json == {"status": "ok"}


def test_storage_page_chart_escapes_name(app, admin_client, tmp_path):
    from datetime import timedelta

    from app.models import StorageBackend, UsageReading

    with app.app_context():
        backend = StorageBackend(name=HOSTILE, kind="local", path=str(tmp_path), capacity_bytes=1000)
        db.session.add(backend)
        db.session.commit()
        for day in range(5):
            db.session.add(UsageReading(
                backend_id=backend.id, measured_at=utcnow() - timedelta(days=5 - day), used_bytes=500 + 50 * day,
                capacity_bytes=1000,
            ))
        db.session.commit()
        backend_id = backend.id
    listing = admin_client.get("/admin/storage/").get_data(as_text=True)
    assert HOSTILE not in listing
    assert "full in" in listing
    page = admin_client.get(f"/admin/storage/details/?id={backend_id}").get_data(as_text=True)
    assert HOSTILE not in page
    assert '<svg class="chart"' in page
    assert 'class="capacity"' in page
    assert "warning 80%" in page
    assert 'class="forecast"' in page
