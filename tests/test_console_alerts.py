"""The alert list and an alert's page: filters, search, sorting, acknowledge
and resolve (bulk and single), the page's run, history and deliveries, and
the number of SQL statements the list costs."""

import re
from datetime import timedelta
from itertools import count

import pytest
from sqlalchemy import event

from app.extensions import db
from app.models import Alert, AlertEvent, BackupJob, BackupRun, Delivery, Severity, Silence, User, utcnow
from app.monitoring.alerts import create_backup_alert_with_notifications
from app.notifications.dispatcher import commit_and_dispatch
from tests.conftest import login

LIST = "/admin/backups/alerts/"
HOSTILE = "<img src=x onerror=alert(1)>"
_serial = count(1)


def csrf_token(client, path=LIST):
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def listed_ids(client, query=""):
    page = client.get(LIST + query).get_data(as_text=True)
    return [int(i) for i in re.findall(r'name="rowid" class="action-checkbox" value="(\d+)"', page)]


def add_job(name):
    job, _ = BackupJob.create(name)
    db.session.add(job)
    db.session.flush()
    return job


def add_alert(job=None, severity=Severity.WARNING, alert_type="SIZE_DEVIATION", status="ACTIVE", message=None,
              created_at=None, last_seen_at=None, storage_backend=None, dedup_key=None, **fields):
    """Insert an alert row directly; tests that need events use create_backup_alert_with_notifications."""
    now = utcnow()
    serial = next(_serial)
    alert = Alert(
        alert_type=alert_type, severity=severity, status=status, message=message or f"alert {serial}",
        dedup_key=dedup_key or f"{alert_type}:test:{serial}", details={}, job_id=job.id if job else None,
        storage_backend=storage_backend, created_at=created_at or now, last_seen_at=last_seen_at or now,
        resolved_at=now if status == "RESOLVED" else None, **fields,
    )
    db.session.add(alert)
    db.session.flush()
    return alert.id


def user_id(email):
    return db.session.scalar(db.select(User.id).where(User.email == email))


@pytest.fixture
def varied_alerts(app, admin_client):
    """Alerts that differ in every filtered column; returns their ids by name."""
    now = utcnow()
    with app.app_context():
        nightly = add_job("nightly-db")
        photos = add_job("photos")
        ids = {
            "critical": add_alert(nightly, Severity.CRITICAL, "BACKUP_FAILURE", message="pg_dump: connection refused",
                                  created_at=now - timedelta(days=3), last_seen_at=now - timedelta(hours=1)),
            "warning": add_alert(nightly, Severity.WARNING, "SIZE_DEVIATION", message="size fell by 40%",
                                 created_at=now - timedelta(days=2), last_seen_at=now - timedelta(hours=5)),
            "acknowledged": add_alert(photos, Severity.ERROR, "MISSED_BACKUP", status="ACKNOWLEDGED",
                                      message="photos did not report", created_at=now - timedelta(days=1),
                                      last_seen_at=now - timedelta(hours=3)),
            "resolved": add_alert(photos, Severity.CRITICAL, "BACKUP_FAILURE", status="RESOLVED",
                                  message="tar: disk full", created_at=now - timedelta(days=10),
                                  last_seen_at=now - timedelta(days=9)),
            "storage": add_alert(None, Severity.INFO, "STORAGE_CAPACITY", storage_backend="r2-main",
                                 message="r2-main is 81% full", dedup_key="STORAGE_CAPACITY:storage:r2-main",
                                 created_at=now - timedelta(hours=2), last_seen_at=now - timedelta(minutes=5)),
        }
        db.session.commit()
    return ids


@pytest.mark.parametrize(
    "query, expected",
    [
        ("?flt0_severity_equals=40", {"critical", "resolved"}),
        ("?flt0_severity_equals=40&flt1_status_equals=ACTIVE", {"critical"}),
        ("?flt0_type_equals=MISSED_BACKUP", {"acknowledged"}),
        ("?flt0_status_equals=ACKNOWLEDGED", {"acknowledged"}),
        ("?flt0_status_not_equal=RESOLVED", {"critical", "warning", "acknowledged", "storage"}),
        ("?flt0_job_equals=photos", {"acknowledged", "resolved"}),
        ("?flt0_job_contains=night", {"critical", "warning"}),
        ("?flt0_backend_equals=r2-main", {"storage"}),
        ("?flt0_backend_contains=r2", {"storage"}),
    ],
)
def test_alert_filters(admin_client, varied_alerts, query, expected):
    assert set(listed_ids(admin_client, query)) == {varied_alerts[name] for name in expected}


def test_alert_time_range_filters(admin_client, varied_alerts):
    now = utcnow()
    stamp = "%Y-%m-%d %H:%M:%S"
    created = f"{(now - timedelta(days=2, hours=12)):{stamp}} to {(now - timedelta(hours=12)):{stamp}}"
    assert set(listed_ids(admin_client, f"?flt0_created_between={created}")) == {
        varied_alerts["warning"], varied_alerts["acknowledged"]}
    seen = f"{(now - timedelta(hours=4)):{stamp}}"
    assert set(listed_ids(admin_client, f"?flt0_last_seen_greater_than={seen}")) == {
        varied_alerts["critical"], varied_alerts["acknowledged"], varied_alerts["storage"]}


def test_alert_search_message_and_key(admin_client, varied_alerts):
    assert listed_ids(admin_client, "?search=disk+full") == [varied_alerts["resolved"]]
    assert listed_ids(admin_client, "?search=storage:r2-main") == [varied_alerts["storage"]]


@pytest.mark.parametrize(
    "query, expected",
    [
        # Default: last seen, newest first.
        ("", ["storage", "critical", "acknowledged", "warning", "resolved"]),
        ("?sort=1&desc=1", ["critical", "resolved", "acknowledged", "warning", "storage"]),
        ("?sort=3", ["critical", "warning", "storage", "acknowledged", "resolved"]),
        ("?sort=7", ["resolved", "critical", "warning", "acknowledged", "storage"]),
        ("?sort=8&desc=1", ["storage", "critical", "acknowledged", "warning", "resolved"]),
    ],
)
def test_alert_sorting(admin_client, varied_alerts, query, expected):
    # Columns: 1 severity, 3 status, 7 created, 8 last seen.
    assert listed_ids(admin_client, query) == [varied_alerts[name] for name in expected]


@pytest.mark.parametrize("query", ["?flt0_severity_equals=LOUD", "?flt0_status_equals=OPEN", "?flt0_type_equals=<b>"])
def test_alert_filter_invalid_value(admin_client, varied_alerts, query):
    response = admin_client.get(LIST + query)
    assert response.status_code == 200
    assert "Invalid Filter Value" in response.get_data(as_text=True)
    assert len(listed_ids(admin_client, query)) == len(varied_alerts)


def test_alert_list_huge_page(admin_client, varied_alerts):
    response = admin_client.get(LIST + "?page=1000000000000000000000")
    assert response.status_code == 200


def test_alert_list_links_and_escapes(app, admin_client):
    with app.app_context():
        job = add_job(HOSTILE)
        add_alert(job, message=f"size of {HOSTILE}")
        db.session.commit()
    page = admin_client.get(LIST).get_data(as_text=True)
    assert HOSTILE not in page
    assert "size of &lt;img src=x onerror=alert(1)&gt;" in page
    assert ">Ack</button>" in page
    assert ">Resolve</button>" in page


def bulk(client, action, ids, token=None):
    data = {"action": action, "rowid": [str(i) for i in ids], "url": LIST}
    if token is not None:
        data["csrf_token"] = token
    return client.post(LIST + "action/", data=data, follow_redirects=True)


def test_bulk_acknowledge(app, admin_client, varied_alerts):
    ids = [varied_alerts[name] for name in ("critical", "warning", "acknowledged", "resolved")]
    response = bulk(admin_client, "acknowledge", ids, csrf_token(admin_client))
    page = response.get_data(as_text=True)
    assert "Acknowledged 2 alerts. Skipped 2 that were not ACTIVE." in page
    with app.app_context():
        admin_id = user_id("admin@example.com")
        for name in ("critical", "warning"):
            alert = db.session.get(Alert, varied_alerts[name])
            assert alert.status == "ACKNOWLEDGED"
            assert alert.acknowledged_by_id == admin_id
            assert alert.acknowledged_at is not None
        assert db.session.get(Alert, varied_alerts["resolved"]).status == "RESOLVED"
        events = db.session.execute(
            db.select(AlertEvent.alert_id).where(AlertEvent.event == "acknowledged")
        ).scalars().all()
        assert sorted(events) == sorted([varied_alerts["critical"], varied_alerts["warning"]])


def test_bulk_resolve_sends_one_event(app, admin_client, varied_alerts):
    ids = [varied_alerts[name] for name in ("critical", "acknowledged", "resolved")]
    page = bulk(admin_client, "resolve", ids, csrf_token(admin_client)).get_data(as_text=True)
    assert "Resolved 2 alerts. Skipped 1 that was already RESOLVED." in page
    # A second bulk resolve and a single resolve of the same alerts change nothing.
    page = bulk(admin_client, "resolve", ids, csrf_token(admin_client)).get_data(as_text=True)
    assert "Resolved 0 alerts. Skipped 3 that were already RESOLVED." in page
    admin_client.post(LIST + "resolve/", data={"id": varied_alerts["critical"], "csrf_token": csrf_token(admin_client)})
    with app.app_context():
        admin_id = user_id("admin@example.com")
        for name in ("critical", "acknowledged"):
            alert = db.session.get(Alert, varied_alerts[name])
            assert alert.status == "RESOLVED"
            assert alert.resolved_by_id == admin_id
            resolved_events = db.session.scalar(
                db.select(db.func.count()).where(AlertEvent.alert_id == alert.id, AlertEvent.event == "resolved")
            )
            assert resolved_events == 1


def test_bulk_reports_unknown_ids(admin_client, varied_alerts):
    page = bulk(admin_client, "acknowledge", [varied_alerts["warning"], 987654], csrf_token(admin_client)).get_data(as_text=True)
    assert "Acknowledged 1 alert. 1 not found." in page


def test_bulk_requires_csrf(app, admin_client, varied_alerts):
    response = bulk(admin_client, "resolve", [varied_alerts["critical"]])
    assert response.status_code == 400
    with app.app_context():
        assert db.session.get(Alert, varied_alerts["critical"]).status == "ACTIVE"


def test_single_acknowledge_and_resolve(app, admin_client, varied_alerts):
    alert_id = varied_alerts["warning"]
    back = f"/admin/backups/alerts/details/?id={alert_id}"
    response = admin_client.post(LIST + "acknowledge/", data={"id": alert_id, "url": back, "csrf_token": csrf_token(admin_client)})
    assert response.status_code == 302
    assert response.headers["Location"] == back
    page = admin_client.get(back).get_data(as_text=True)
    assert f"Alert #{alert_id} acknowledged." in page
    assert "by admin@example.com" in page

    response = admin_client.post(LIST + "acknowledge/", data={"id": alert_id, "csrf_token": csrf_token(admin_client)},
                                 follow_redirects=True)
    assert f"Alert #{alert_id} was not acknowledged: it is ACKNOWLEDGED" in response.get_data(as_text=True)

    response = admin_client.post(LIST + "resolve/", data={"id": alert_id, "csrf_token": csrf_token(admin_client)},
                                 follow_redirects=True)
    assert f"Alert #{alert_id} resolved." in response.get_data(as_text=True)
    with app.app_context():
        alert = db.session.get(Alert, alert_id)
        assert alert.status == "RESOLVED"
        assert alert.resolved_by_id == user_id("admin@example.com")
        assert alert.details["resolution"] == "resolved by admin@example.com"


def test_single_ignores_offsite_return_url(admin_client, varied_alerts):
    response = admin_client.post(LIST + "acknowledge/", data={
        "id": varied_alerts["warning"], "url": "https://evil.example/", "csrf_token": csrf_token(admin_client)})
    assert response.headers["Location"] == LIST


def test_single_requires_csrf(app, admin_client, varied_alerts):
    for action in ("acknowledge", "resolve"):
        response = admin_client.post(LIST + f"{action}/", data={"id": varied_alerts["critical"]})
        assert response.status_code == 400
    with app.app_context():
        assert db.session.get(Alert, varied_alerts["critical"]).status == "ACTIVE"


def test_single_unknown_alert(admin_client):
    response = admin_client.post(LIST + "resolve/", data={"id": "424242", "csrf_token": csrf_token(admin_client)},
                                 follow_redirects=True)
    assert "Alert #424242 not found." in response.get_data(as_text=True)


@pytest.mark.parametrize("value", ["", "abc", "-3", "99999999999999999999999"])
def test_single_invalid_id(admin_client, value):
    response = admin_client.post(LIST + "resolve/", data={"id": value, "csrf_token": csrf_token(admin_client)},
                                 follow_redirects=True)
    assert response.status_code == 200
    assert "The form has no valid alert id." in response.get_data(as_text=True)


def test_detail_page_invalid_id(admin_client):
    response = admin_client.get(LIST + "details/?id=99999999999999999999999")
    assert response.status_code == 302
    assert response.headers["Location"] == LIST


def test_non_admin_may_acknowledge_and_resolve(app, client, make_user, varied_alerts):
    make_user("viewer@example.com", "viewer password")
    login(client, "viewer@example.com", "viewer password")
    page = bulk(client, "acknowledge", [varied_alerts["critical"]], csrf_token(client)).get_data(as_text=True)
    assert "Acknowledged 1 alert." in page
    response = client.post(LIST + "resolve/", data={"id": varied_alerts["warning"], "csrf_token": csrf_token(client)})
    assert response.status_code == 302
    with app.app_context():
        viewer = user_id("viewer@example.com")
        assert db.session.get(Alert, varied_alerts["critical"]).acknowledged_by_id == viewer
        assert db.session.get(Alert, varied_alerts["warning"]).resolved_by_id == viewer


@pytest.fixture
def raised_alert(app, admin_client):
    """A BACKUP_FAILURE raised from a failed run, with one failed email delivery."""
    with app.app_context():
        job = add_job("nightly-db")
        run = BackupRun(
            job_id=job.id, status="failure", finished_at=utcnow() - timedelta(minutes=30), duration_seconds=849,
            size_bytes=5 * 1024 ** 3, exit_code=1, error=f"pg_dump failed {HOSTILE}",
            log_tail=f"pg_dump: error: connection refused\n<script>alert(2)</script>\n{HOSTILE}",
        )
        db.session.add(run)
        db.session.flush()
        alert, _ = create_backup_alert_with_notifications(
            "BACKUP_FAILURE", Severity.CRITICAL, f"Backup of nightly-db failed {HOSTILE}",
            {"exit_code": 1, "error": HOSTILE, "size_bytes": 5 * 1024 ** 3}, job=job, run=run,
        )
        commit_and_dispatch()
        email = db.session.execute(
            db.select(Delivery).join(AlertEvent).where(AlertEvent.alert_id == alert.id, Delivery.channel == "email")
        ).scalar_one()
        email.status, email.attempts, email.last_error = "failed", 3, f"SMTP 550 mailbox unavailable {HOSTILE}"
        db.session.commit()
        return {"alert": alert.id, "run": run.id, "job": job.id}


def details(client, alert_id):
    response = client.get(f"{LIST}details/?id={alert_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_detail_page_shows_run(admin_client, raised_alert):
    page = details(admin_client, raised_alert["alert"])
    assert f'href="/admin/backups/runs/details/?id={raised_alert["run"]}"' in page
    assert "5.0 GiB (5,368,709,120 bytes)" in page
    assert "14 min 9 s" in page
    assert "exit code 1" in page
    assert '<pre class="log-tail run-log">pg_dump: error: connection refused' in page
    assert '<pre class="log-tail run-error">pg_dump failed &lt;img' in page


def test_detail_page_lists_details_as_text(admin_client, raised_alert):
    page = details(admin_client, raised_alert["alert"])
    assert '<dt class="col-sm-3">exit code</dt><dd class="col-sm-9">1</dd>' in page
    assert '<dt class="col-sm-3">error</dt><dd class="col-sm-9">&lt;img src=x onerror=alert(1)&gt;</dd>' in page
    assert '{"exit_code"' not in page


def test_detail_page_escapes_everything(admin_client, raised_alert):
    page = details(admin_client, raised_alert["alert"])
    assert HOSTILE not in page
    assert "<script>alert(2)" not in page


def test_detail_page_history_and_deliveries(app, admin_client, raised_alert):
    alert_id = raised_alert["alert"]
    admin_client.post(LIST + "acknowledge/", data={"id": alert_id, "csrf_token": csrf_token(admin_client)})
    admin_client.post(LIST + "resolve/", data={"id": alert_id, "csrf_token": csrf_token(admin_client)})
    page = details(admin_client, alert_id)
    history = page[page.index("alert-history"):]
    assert history.index('class="event-raised"') < history.index('class="event-acknowledged"') < history.index('class="event-resolved"')
    assert "by admin@example.com" in history
    assert "SMTP 550 mailbox unavailable &lt;img" in history
    assert '<span class="text-danger">failed</span></td>\n                <td>3</td>' in history
    assert "<td>in_app</td>" in history
    assert "<td>email</td>" in history


def test_detail_page_shows_silenced_event(app, admin_client):
    with app.app_context():
        job = add_job("nightly-db")
        now = utcnow()
        silence = Silence(job_id=job.id, starts_at=now - timedelta(minutes=5), ends_at=now + timedelta(hours=1),
                          reason=f"disk swap {HOSTILE}")
        db.session.add(silence)
        db.session.flush()
        alert, _ = create_backup_alert_with_notifications("BACKUP_FAILURE", Severity.CRITICAL, "failed", {}, job=job)
        commit_and_dispatch()
        alert_id, silence_id = alert.id, silence.id
    page = details(admin_client, alert_id)
    assert "silenced, not sent" in page
    assert f"silence #{silence_id} until" in page
    assert "disk swap &lt;img" in page


def test_detail_page_hides_addresses_from_others(app, client, make_user, raised_alert):
    make_user("viewer@example.com", "viewer password")
    login(client, "viewer@example.com", "viewer password")
    page = details(client, raised_alert["alert"])
    assert "another user" in page
    assert "SMTP 550" not in page
    assert "admin@example.com" not in page


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
    with app.app_context():
        for j in range(jobs):
            job = add_job(f"job-{offset + j:03d}")
            for _ in range(alerts_per_job):
                add_alert(job, status="ACTIVE" if next(_serial) % 3 else "RESOLVED")
        db.session.commit()


def test_alert_list_statements_do_not_grow(app, admin_client):
    fill(app, jobs=5, alerts_per_job=10)
    count_statements(app, admin_client, LIST)
    small = count_statements(app, admin_client, LIST + "?page_size=100")
    fill(app, jobs=45, alerts_per_job=10, offset=5)
    large = count_statements(app, admin_client, LIST + "?page_size=100")
    assert small == large


def test_alert_page_statements_do_not_grow(app, admin_client, raised_alert):
    from app.notifications.dispatcher import record_event

    alert_id = raised_alert["alert"]
    path = f"{LIST}details/?id={alert_id}"
    count_statements(app, admin_client, path)
    small = count_statements(app, admin_client, path)
    with app.app_context():
        alert = db.session.get(Alert, alert_id)
        for _ in range(20):
            record_event(alert, "reminder")
        commit_and_dispatch()
    large = count_statements(app, admin_client, path)
    assert details(admin_client, alert_id).count('class="event-reminder"') == 20
    assert small == large
