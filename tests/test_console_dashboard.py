"""The console's home page: alert counts, jobs and their health, storage use,
failed deliveries, and the number of SQL statements it costs."""

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import event

from app.extensions import db
from app.models import (
    Alert,
    AlertEvent,
    BackupJob,
    BackupRun,
    Delivery,
    Severity,
    StorageBackend,
    UsageReading,
    utcnow,
)
from app.monitoring.alerts import create_backup_alert_with_notifications
from app.notifications.dispatcher import commit_and_dispatch
from tests.conftest import login

HOSTILE = "<img src=x onerror=alert(1)>"


def add_job(name, **fields):
    job, _ = BackupJob.create(name, **fields)
    db.session.add(job)
    db.session.flush()
    return job


def add_run(job, status="success", hours_ago=3, size_bytes=5 * 1024 ** 3, duration_seconds=849, **fields):
    finished = utcnow() - timedelta(hours=hours_ago)
    run = BackupRun(job_id=job.id, status=status, finished_at=finished, size_bytes=size_bytes,
                    duration_seconds=duration_seconds, **fields)
    db.session.add(run)
    db.session.flush()
    job.last_run_at = finished
    return run


def raise_alert(job, alert_type, severity):
    alert, _ = create_backup_alert_with_notifications(alert_type, severity, f"{alert_type} of {job.name}", {}, job=job)
    return alert


def job_health(page):
    """Return {job name: health} from the dashboard's job table, in page order."""
    rows = re.findall(r'<tr class="job-row" data-health="([^"]+)">\s*<td><a href="[^"]+">([^<]+)</a>', page)
    return {html.unescape(name): health for health, name in rows}


@pytest.fixture
def jobs_in_every_state(app, admin_client):
    with app.app_context():
        add_run(add_job("ok-job"))
        warning = add_job("warning-job")
        add_run(warning)
        raise_alert(warning, "SIZE_DEVIATION", Severity.WARNING)
        failing = add_job("failing-job")
        add_run(failing, hours_ago=30)
        add_run(failing, status="failure", hours_ago=2, size_bytes=None, error="pg_dump: connection refused")
        raise_alert(failing, "BACKUP_FAILURE", Severity.CRITICAL)
        # A failed latest run counts even before its check raised an alert.
        add_run(add_job("unchecked-failure-job"), status="failure", hours_ago=1)
        missed = add_job("missed-job", schedule_interval_seconds=3600)
        add_run(missed, hours_ago=50)
        raise_alert(missed, "MISSED_BACKUP", Severity.ERROR)
        add_run(add_job("paused-job", paused=True), hours_ago=100)
        add_job("never-job")
        # An old failure followed by a success: the success is the latest run.
        recovered = add_job("recovered-job")
        add_run(recovered, status="failure", hours_ago=48)
        add_run(recovered, hours_ago=1)
        commit_and_dispatch()


def test_dashboard_job_health(admin_client, jobs_in_every_state):
    health = job_health(admin_client.get("/admin/").get_data(as_text=True))
    assert health == {
        "failing-job": "failing",
        "missed-job": "missed",
        "warning-job": "warning",
        "never-job": "never reported",
        "ok-job": "ok",
        "recovered-job": "ok",
        "unchecked-failure-job": "failing",
        "paused-job": "paused",
    }


def test_dashboard_jobs_worst_first(admin_client, jobs_in_every_state):
    names = list(job_health(admin_client.get("/admin/").get_data(as_text=True)))
    # By worst open alert, then running before paused, then by name.
    assert names[:3] == ["failing-job", "missed-job", "warning-job"]
    assert names[-1] == "paused-job"


def test_dashboard_last_run_columns(admin_client, jobs_in_every_state):
    page = admin_client.get("/admin/").get_data(as_text=True)
    row = re.search(r'data-health="ok">.*?</tr>', page, re.S).group(0)
    assert ">ok-job</a>" in row
    assert ">success</a>" in row
    assert "3 h ago" in row
    assert "5.0 GiB" in row
    assert "14 min 9 s" in row
    never = re.search(r'data-health="never reported">.*?</tr>', page, re.S).group(0)
    assert "no run reported yet" in never
    failing = re.search(r'data-health="failing">\s*<td><a[^>]*>failing-job.*?</tr>', page, re.S).group(0)
    assert ">failure</a>" in failing
    assert "1 open alert" in failing


def test_dashboard_job_alert_link(admin_client, jobs_in_every_state):
    page = admin_client.get("/admin/").get_data(as_text=True)
    row = re.search(r'data-health="failing">\s*<td><a[^>]*>failing-job.*?</tr>', page, re.S).group(0)
    link = html.unescape(re.search(r'<a class="small" href="([^"]+)"', row).group(1))
    listing = admin_client.get(link).get_data(as_text=True)
    assert "BACKUP_FAILURE of failing-job" in listing
    assert "SIZE_DEVIATION of warning-job" not in listing


def test_dashboard_severity_counts_link_to_list(app, admin_client, jobs_in_every_state):
    page = admin_client.get("/admin/").get_data(as_text=True)
    counts = dict(re.findall(r'<span class="severity-(\w+)">\w+</span> (\d+)</a>', page))
    assert counts == {"CRITICAL": "1", "ERROR": "1", "WARNING": "1", "INFO": "0"}
    link = html.unescape(re.search(r'<a class="severity-count" href="([^"]+)"><span class="severity-ERROR">', page).group(1))
    listing = admin_client.get(link).get_data(as_text=True)
    assert "MISSED_BACKUP of missed-job" in listing
    assert "BACKUP_FAILURE of failing-job" not in listing


def test_dashboard_escapes_job_names(app, admin_client):
    with app.app_context():
        job = add_job(HOSTILE)
        add_run(job, status="failure")
        raise_alert(job, "BACKUP_FAILURE", Severity.CRITICAL)
        commit_and_dispatch()
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_dashboard_pages_jobs(app, admin_client):
    with app.app_context():
        for number in range(55):
            add_job(f"job-{number:02d}")
        db.session.commit()
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert len(job_health(page)) == 50
    assert "Jobs 1–50 of 55" in page
    assert "jobs_page=1" in page
    second = admin_client.get("/admin/?jobs_page=1").get_data(as_text=True)
    assert list(job_health(second)) == [f"job-{number:02d}" for number in range(50, 55)]
    assert "Jobs 51–55 of 55" in second
    assert 'href="/admin/backups/jobs/"' in second


def test_dashboard_page_past_end(app, admin_client):
    with app.app_context():
        for number in range(55):
            add_job(f"job-{number:02d}")
        db.session.commit()
    for page_number in ("2", "1000000000000000000000"):
        response = admin_client.get(f"/admin/?jobs_page={page_number}")
        assert response.status_code == 200
        assert "Jobs 51–55 of 55" in response.get_data(as_text=True)


def add_backend(name, capacity, used_series, **fields):
    backend = StorageBackend(name=name, kind="local", path=f"/srv/{name}", capacity_bytes=capacity, **fields)
    db.session.add(backend)
    db.session.flush()
    now = utcnow()
    for index, used in enumerate(used_series):
        db.session.add(UsageReading(
            backend_id=backend.id, measured_at=now - timedelta(days=len(used_series) - index), used_bytes=used,
            capacity_bytes=capacity,
        ))
    return backend


def test_dashboard_storage(app, admin_client):
    with app.app_context():
        add_backend("growing", 1000 * 1024 ** 3, [g * 1024 ** 3 for g in (500, 550, 600, 650, 700)])
        add_backend("almost-full", 100 * 1024 ** 3, [95 * 1024 ** 3] * 4)
        add_backend("new", 1000, [])
        add_backend("disabled", 1000, [900], enabled=False)
        db.session.commit()
    page = admin_client.get("/admin/").get_data(as_text=True)
    storage = page[page.index("dashboard-storage"):]
    growing = re.search(r">growing</a>.*?</tr>", storage, re.S).group(0)
    assert "700.0 GiB of 1000.0 GiB (70.0%)" in growing
    assert 'data-level="ok"' in growing
    assert 'value="70.0"' in growing
    assert "full in 5.0 days" in growing
    almost = re.search(r">almost-full</a>.*?</tr>", storage, re.S).group(0)
    assert 'data-level="critical"' in almost
    assert "not filling up" in almost
    assert "not measured yet" in re.search(r">new</a>.*?</tr>", storage, re.S).group(0)
    assert ">disabled</a>" not in storage


def make_failed_delivery(error="SMTP 550 mailbox unavailable"):
    job = add_job("mailer-job")
    alert = raise_alert(job, "BACKUP_FAILURE", Severity.CRITICAL)
    commit_and_dispatch()
    delivery = db.session.execute(
        db.select(Delivery).join(AlertEvent).where(AlertEvent.alert_id == alert.id, Delivery.channel == "email")
    ).scalars().first()
    delivery.status, delivery.attempts, delivery.last_error = "failed", 8, error
    db.session.commit()
    return alert.id


def test_dashboard_failed_deliveries(app, admin_client):
    with app.app_context():
        alert_id = make_failed_delivery(f"SMTP 550 {HOSTILE}")
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert "1 delivery failed in the last 24 hours" in page
    link = html.unescape(re.search(r'<a href="([^"]+)" class="text-danger">1 delivery failed', page).group(1))
    assert link.startswith("/admin/notifications/deliveries/?flt0_")
    ledger = admin_client.get(link).get_data(as_text=True)
    assert "SMTP 550 &lt;img" in ledger
    table = page[page.index("dashboard-deliveries"):]
    assert f'href="/admin/backups/alerts/details/?id={alert_id}"' in table
    assert "SMTP 550 &lt;img src=x onerror=alert(1)&gt;" in table
    assert HOSTILE not in page


def test_dashboard_hides_deliveries_from_others(app, client, make_user):
    make_user("viewer@example.com", "viewer password")
    with app.app_context():
        make_failed_delivery()
    login(client, "viewer@example.com", "viewer password")
    page = client.get("/admin/").get_data(as_text=True)
    assert "Failed deliveries" not in page
    assert "SMTP 550" not in page
    assert "mailer-job" in page


def test_dashboard_without_data(admin_client):
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert "No active alerts." in page
    assert "No jobs yet" in page
    assert "No storage backends enabled." in page
    assert "No delivery failed in the last 24 hours." in page


def count_statements(app, client, path):
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.get(path)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200
    return len(statements)


def fill(app, jobs, alerts_per_job, offset=0):
    """Add jobs with three runs each and alerts of every severity and status."""
    severities = list(Severity)
    statuses = ("ACTIVE", "ACKNOWLEDGED", "RESOLVED")
    with app.app_context():
        now = utcnow()
        for j in range(jobs):
            job = add_job(f"job-{offset + j:03d}")
            for hours in (30, 20, 2):
                add_run(job, status="failure" if (j + hours) % 4 == 0 else "success", hours_ago=hours)
            for a in range(alerts_per_job):
                status = statuses[a % 3]
                db.session.add(Alert(
                    alert_type="SIZE_DEVIATION", severity=severities[a % 4], status=status,
                    message=f"alert {a} of {job.name}", dedup_key=f"SIZE_DEVIATION:job:{job.id}:{a}", details={},
                    job_id=job.id, created_at=now, last_seen_at=now, resolved_at=now if status == "RESOLVED" else None,
                ))
        db.session.commit()


def test_dashboard_statements_do_not_grow(app, admin_client):
    with app.app_context():
        add_backend("growing", 1000, [500, 600, 700])
        add_backend("flat", 1000, [300, 300, 300])
        make_failed_delivery()
    fill(app, jobs=5, alerts_per_job=10)
    count_statements(app, admin_client, "/admin/")
    small = count_statements(app, admin_client, "/admin/")
    fill(app, jobs=45, alerts_per_job=10, offset=5)
    large = count_statements(app, admin_client, "/admin/")
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Alert)) == 501
        assert db.session.scalar(db.select(db.func.count()).select_from(BackupJob)) == 51
    assert small == large
