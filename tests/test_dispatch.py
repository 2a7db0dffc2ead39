"""Fan-out of alert events into deliveries, across channels and recipients."""

from datetime import timedelta

import pytest

from app.crypto import encrypt_secret
from app.extensions import db
from app.models import BackupJob, Delivery, NotificationPreference, Severity, User, WebhookEndpoint, utcnow
from app.monitoring.alerts import create_backup_alert_with_notifications, resolve_alerts
from app.notifications.dispatcher import commit_and_dispatch
from app.notifications.send import deliver
from tests.test_http_client import Receiver


def add_user(address, phone=None, **preferences):
    user = User(email=address, phone_number=phone)
    user.set_password("pw")
    for channel, (enabled, severity) in preferences.items():
        user.preferences.append(NotificationPreference(channel=channel, enabled=enabled, min_severity=severity))
    db.session.add(user)
    db.session.commit()
    return user


def make_job(name="db"):
    job, _ = BackupJob.create(name)
    db.session.add(job)
    db.session.commit()
    return job


def raise_alert(job, severity=Severity.CRITICAL, alert_type="BACKUP_FAILURE"):
    alert, _ = create_backup_alert_with_notifications(alert_type, severity, "Backup failed", {}, job=job)
    commit_and_dispatch()
    return alert


def deliveries(channel=None):
    query = db.select(Delivery).order_by(Delivery.id)
    if channel:
        query = query.where(Delivery.channel == channel)
    return db.session.execute(query).scalars().all()


@pytest.fixture
def webhook_receiver(app, monkeypatch):
    server = Receiver().start()
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    yield server
    server.stop()


def add_endpoint(url, secret="s" * 32, fmt="backwatch", min_severity=Severity.WARNING):
    endpoint = WebhookEndpoint(name=f"hook-{url[-6:]}", url=url, format=fmt,
                               secret_encrypted=encrypt_secret(secret), min_severity=min_severity)
    db.session.add(endpoint)
    db.session.commit()
    return endpoint


def test_defaults_in_app_email_and_sms(ctx):
    add_user("a@example.com", phone="+41446681800")
    raise_alert(make_job())
    assert sorted(d.channel for d in deliveries()) == ["email", "in_app", "sms"]
    assert {d.channel: d.status for d in deliveries()} == {"in_app": "sent", "email": "pending", "sms": "pending"}


def test_warning_sends_no_sms(ctx):
    add_user("a@example.com", phone="+41446681800", sms=(True, Severity.INFO))
    raise_alert(make_job(), severity=Severity.WARNING, alert_type="SIZE_DEVIATION")
    assert deliveries("sms") == []


def test_sms_without_phone_skipped(ctx):
    add_user("a@example.com")
    raise_alert(make_job())
    [sms] = deliveries("sms")
    assert sms.status == "skipped"
    assert "no phone number" in sms.last_error


def test_channel_off_and_threshold(ctx):
    add_user("quiet@example.com", email=(False, Severity.INFO), in_app=(True, Severity.CRITICAL))
    raise_alert(make_job(), severity=Severity.WARNING, alert_type="SIZE_DEVIATION")
    assert deliveries() == []


def test_resolved_event_fans_out(ctx):
    add_user("a@example.com")
    job = make_job()
    raise_alert(job)
    resolve_alerts("BACKUP_FAILURE", job=job)
    commit_and_dispatch()
    events = [d.alert_event.event for d in deliveries("email")]
    assert events == ["raised", "resolved"]


def test_repeat_occurrence_no_new_deliveries(ctx):
    add_user("a@example.com")
    job = make_job()
    raise_alert(job)
    count = len(deliveries())
    raise_alert(job)
    assert len(deliveries()) == count


def test_webhook_endpoints_and_setting(ctx, app, webhook_receiver, monkeypatch):
    monkeypatch.setitem(app.config, "BACKUP_ALERT_WEBHOOK_URL", webhook_receiver.url("/setting"))
    monkeypatch.setitem(app.config, "BACKUP_ALERT_WEBHOOK_SECRET", "t" * 32)
    add_endpoint(webhook_receiver.url("/endpoint"))
    add_endpoint(webhook_receiver.url("/critical-only"), min_severity=Severity.CRITICAL)
    raise_alert(make_job(), severity=Severity.WARNING, alert_type="SIZE_DEVIATION")
    hooks = deliveries("webhook")
    assert sorted(d.recipient_key.split(":")[0] for d in hooks) == ["setting", "webhook"]
    for delivery in hooks:
        deliver(delivery.id)
    paths = sorted(request["path"] for request in webhook_receiver.requests)
    assert paths == ["/endpoint", "/setting"]
    assert all("X-Backwatch-Signature" in request["headers"] for request in webhook_receiver.requests)


def test_email_sent_once_webhook_retried(ctx, smtp_server, webhook_receiver, run_worker):
    add_user("a@example.com")
    add_endpoint(webhook_receiver.url("/hook"))
    webhook_receiver.respond_with(500)
    raise_alert(make_job())
    assert run_worker() == []

    [email] = deliveries("email")
    [hook] = deliveries("webhook")
    assert email.status == "sent"
    assert hook.status == "pending"
    assert hook.last_status_code == 500
    assert len(smtp_server.messages) == 1

    webhook_receiver.respond_with(200)
    later = utcnow() + timedelta(minutes=10)
    for delivery in deliveries():
        deliver(delivery.id, now=later)
    db.session.expire_all()
    assert hook.status == "sent"
    assert hook.attempts == 2
    assert email.attempts == 1
    assert len(smtp_server.messages) == 1
    assert len(webhook_receiver.requests) == 2


def test_webhook_4xx_not_retried(ctx, webhook_receiver):
    add_user("a@example.com", email=(False, Severity.INFO))
    add_endpoint(webhook_receiver.url("/gone"))
    webhook_receiver.respond_with(410)
    raise_alert(make_job())
    [hook] = deliveries("webhook")
    assert deliver(hook.id) == {}
    db.session.expire_all()
    assert hook.status == "failed"
    assert hook.last_status_code == 410


def test_webhook_retry_after_honoured(ctx, webhook_receiver):
    add_endpoint(webhook_receiver.url("/busy"))
    webhook_receiver.respond_with(429, {"Retry-After": "120"})
    raise_alert(make_job())
    [hook] = deliveries("webhook")
    assert deliver(hook.id) == {hook.id: 120}
    db.session.expire_all()
    assert hook.status == "pending"


def test_one_failing_recipient_others_sent(ctx, smtp_server, run_worker):
    add_user("ok@example.com")
    add_user("refused@example.com")
    smtp_server.handler.refuse.add("refused@example.com")
    raise_alert(make_job())
    run_worker()
    statuses = {d.address: d.status for d in deliveries("email")}
    assert statuses == {"ok@example.com": "sent", "refused@example.com": "failed"}


def test_sms_delivery_to_twilio_shape(ctx, app, monkeypatch, run_worker):
    from tests.test_sms import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio

    fake = FakeTwilio()
    fake.start()
    try:
        monkeypatch.setitem(app.config, "TWILIO_API_BASE_URL", fake.url)
        monkeypatch.setitem(app.config, "TWILIO_ACCOUNT_SID", ACCOUNT_SID)
        monkeypatch.setitem(app.config, "TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        monkeypatch.setitem(app.config, "TWILIO_FROM_NUMBER", FROM_NUMBER)
        add_user("a@example.com", phone="+41446681800", email=(False, Severity.INFO))
        raise_alert(make_job("Données clients"))
        assert run_worker() == []
    finally:
        fake.stop()
    [sms] = deliveries("sms")
    assert sms.status == "sent"
    assert sms.provider_message_id.startswith("SM")


def test_digest_goes_to_platform_admins(ctx, smtp_server, run_worker):
    from app.notifications.dispatcher import record_event

    admin = add_user("admin@example.com", phone="+41446681800")
    admin.is_platform_admin = True
    add_user("viewer@example.com")
    db.session.commit()
    payload = {"total": 1, "by_type": {"BACKUP_FAILURE": 1},
               "jobs": [{"job": "db", "alerts": [{"severity": "CRITICAL", "message": "Backup failed", "url": "#"}]}]}
    record_event(None, "digest", payload)
    commit_and_dispatch()
    assert run_worker() == []
    assert {(d.channel, d.recipient_key) for d in deliveries()} == {("in_app", f"user:{admin.id}"), ("email", f"user:{admin.id}")}
    [(_, rcpt_tos, message)] = smtp_server.messages
    assert rcpt_tos == ["admin@example.com"]
    assert "1 open alerts" in message["Subject"]


def test_reminder_event_fans_out(ctx):
    from app.notifications.dispatcher import record_event

    add_user("a@example.com")
    alert = raise_alert(make_job())
    record_event(alert, "reminder")
    commit_and_dispatch()
    assert [d.alert_event.event for d in deliveries("email")] == ["raised", "reminder"]
