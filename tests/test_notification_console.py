"""Console pages for notifications: preferences, inbox, ledger, templates, webhooks."""

import re

import pytest

from app.extensions import db
from app.models import BackupJob, Delivery, Notification, NotificationTemplate, Severity, User, WebhookEndpoint
from app.monitoring.alerts import create_backup_alert_with_notifications
from app.notifications.dispatcher import commit_and_dispatch
from tests.conftest import login
from tests.test_http_client import Receiver


def csrf_token(client, path):
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page).group(1)


def preference_form(token, **overrides):
    form = {
        "csrf_token": token,
        "email": "admin@example.com",
        "phone_number": "",
        "timezone": "UTC",
        "in_app-enabled": "y",
        "in_app-min_severity": "WARNING",
        "email_channel-enabled": "y",
        "email_channel-min_severity": "WARNING",
        "sms-enabled": "y",
        "sms-min_severity": "CRITICAL",
    }
    form.update(overrides)
    return form


def user_id(app, email):
    with app.app_context():
        return db.session.scalar(db.select(User.id).where(User.email == email))


def raise_alert(app, name="db"):
    with app.app_context():
        job, _ = BackupJob.create(name)
        db.session.add(job)
        db.session.commit()
        alert, _ = create_backup_alert_with_notifications("BACKUP_FAILURE", Severity.CRITICAL, "Backup failed", {}, job=job)
        commit_and_dispatch()
        return alert.id


def test_preferences_save_own(app, admin_client):
    token = csrf_token(admin_client, "/admin/preferences/")
    response = admin_client.post("/admin/preferences/", data=preference_form(
        token, phone_number="+41 44 668 18 00", timezone="Europe/Berlin",
        **{"email_channel-min_severity": "CRITICAL", "in_app-enabled": ""},
    ))
    assert response.status_code == 302
    with app.app_context():
        user = db.session.get(User, user_id(app, "admin@example.com"))
        assert user.phone_number == "+41446681800"
        assert user.timezone == "Europe/Berlin"
        assert user.preference_for("email") == (True, Severity.CRITICAL)
        assert user.preference_for("in_app") == (False, Severity.WARNING)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("phone_number", "0446681800", "E.164"),
        ("phone_number", "+1 555 0100", "not a valid phone number"),
        ("timezone", "Mars/Olympus", "unknown time zone"),
        ("email", "not-an-email", "Invalid email"),
    ],
)
def test_preferences_reject_invalid(app, admin_client, field, value, message):
    token = csrf_token(admin_client, "/admin/preferences/")
    response = admin_client.post("/admin/preferences/", data=preference_form(token, **{field: value}))
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_preferences_without_csrf_rejected(admin_client):
    response = admin_client.post("/admin/preferences/", data=preference_form(""))
    assert response.status_code == 400


def test_preferences_other_user_forbidden(app, client, make_user):
    make_user("a@example.com", "pw")
    other = make_user("b@example.com", "pw")
    login(client, "a@example.com", "pw")
    assert client.get(f"/admin/preferences/{other}").status_code == 403


def test_admin_edits_other_user(app, admin_client, make_user):
    other = make_user("b@example.com", "pw")
    path = f"/admin/preferences/{other}"
    token = csrf_token(admin_client, path)
    response = admin_client.post(path, data=preference_form(token, email="b@example.com", phone_number="+14155550123"))
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(User, other).phone_number == "+14155550123"


def test_inbox_unread_count_and_mark_read(app, admin_client):
    raise_alert(app, "one")
    raise_alert(app, "two")
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert re.search(r'id="unread-count">2<', page)
    with app.app_context():
        note_id = db.session.scalars(db.select(Notification.id).order_by(Notification.id)).first()
    token = csrf_token(admin_client, "/admin/notifications/")
    admin_client.post(f"/admin/notifications/read/{note_id}", data={"csrf_token": token})
    assert re.search(r'id="unread-count">1<', admin_client.get("/admin/").get_data(as_text=True))
    admin_client.post("/admin/notifications/read-all", data={"csrf_token": token})
    assert re.search(r'id="unread-count">0<', admin_client.get("/admin/").get_data(as_text=True))


def test_inbox_cannot_mark_others(app, client, make_user):
    make_user("a@example.com", "pw")
    make_user("b@example.com", "pw")
    raise_alert(app)
    with app.app_context():
        other_note = db.session.scalar(
            db.select(Notification.id).join(User).where(User.email == "b@example.com")
        )
    login(client, "a@example.com", "pw")
    token = csrf_token(client, "/admin/notifications/")
    client.post(f"/admin/notifications/read/{other_note}", data={"csrf_token": token})
    with app.app_context():
        assert db.session.get(Notification, other_note).read_at is None


def test_ledger_readable_retry_admin_only(app, client, make_user):
    make_user("viewer@example.com", "pw")
    login(client, "viewer@example.com", "pw")
    page = client.get("/admin/notifications/deliveries/")
    assert page.status_code == 200
    assert "modelActions.execute('retry')" not in page.get_data(as_text=True)


def test_ledger_lists_and_retries_failed(app, admin_client, queue):
    raise_alert(app)
    with app.app_context():
        email = db.session.execute(db.select(Delivery).where(Delivery.channel == "email")).scalar_one()
        email.status = "failed"
        email.last_error = "SMTP server rejected the message: 554"
        db.session.commit()
        email_id = email.id
    queue.empty()
    page = admin_client.get("/admin/notifications/deliveries/?flt1_0=failed").get_data(as_text=True)
    assert "SMTP server rejected the message: 554" in page
    token = csrf_token(admin_client, "/admin/notifications/deliveries/")
    response = admin_client.post("/admin/notifications/deliveries/action/", data={
        "csrf_token": token, "action": "retry", "rowid": [str(email_id)],
    })
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(Delivery, email_id).status == "pending"
    assert queue.job_ids == [f"delivery-{email_id}"]


def test_template_edit_marks_edited_and_previews(app, admin_client):
    result = app.test_cli_runner().invoke(args=["create-backup-alert-templates"])
    assert "backup_alert: created" in result.output
    with app.app_context():
        template_id = db.session.scalar(
            db.select(NotificationTemplate.id).where(NotificationTemplate.name == "backup_alert")
        )
    path = f"/admin/notifications/templates/edit/?id={template_id}"
    token = csrf_token(admin_client, path)
    response = admin_client.post(path, data={
        "csrf_token": token, "subject": "Custom {{ alert.severity }}", "html_body": "<p>{{ alert.message }}</p>",
        "text_body": "Custom text: {{ alert.message }}",
    })
    assert response.status_code == 302
    again = app.test_cli_runner().invoke(args=["create-backup-alert-templates"])
    assert "backup_alert: kept (edited by an admin)" in again.output
    page = admin_client.get(f"/admin/notifications/templates/details/?id={template_id}").get_data(as_text=True)
    assert "Custom text: Backup of nightly-db failed" in page
    assert "Custom CRITICAL" in page


def test_webhook_save_rejects_loopback(app, admin_client):
    token = csrf_token(admin_client, "/admin/notifications/webhooks/new/")
    response = admin_client.post("/admin/notifications/webhooks/new/", data={
        "csrf_token": token, "name": "local", "url": "http://127.0.0.1:9/hook", "format": "backwatch",
        "enabled": "y", "min_severity": "WARNING",
    })
    page = response.get_data(as_text=True)
    assert "loopback" in page
    assert "WEBHOOK_ALLOWED_NETWORKS" in page
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(WebhookEndpoint)) == 0


def test_webhook_create_and_test_send(app, admin_client, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    receiver = Receiver().start()
    try:
        token = csrf_token(admin_client, "/admin/notifications/webhooks/new/")
        response = admin_client.post("/admin/notifications/webhooks/new/", data={
            "csrf_token": token, "name": "ops", "url": receiver.url("/hook"), "format": "slack",
            "enabled": "y", "min_severity": "CRITICAL", "secret": "a-long-shared-secret-value",
        })
        assert response.status_code == 302
        with app.app_context():
            endpoint = db.session.execute(db.select(WebhookEndpoint)).scalar_one()
            assert "a-long-shared-secret-value" not in endpoint.secret_encrypted
            assert endpoint.min_severity == Severity.CRITICAL
            endpoint_id = endpoint.id
        token = csrf_token(admin_client, f"/admin/notifications/webhooks/details/?id={endpoint_id}")
        response = admin_client.post(f"/admin/notifications/webhooks/test/{endpoint_id}", data={"csrf_token": token})
        assert response.status_code == 302
        page = admin_client.get(f"/admin/notifications/webhooks/details/?id={endpoint_id}").get_data(as_text=True)
        assert "succeeded (HTTP 200)" in page
        [request] = receiver.requests
        assert request["headers"]["X-Backwatch-Event"] == "test"
    finally:
        receiver.stop()
