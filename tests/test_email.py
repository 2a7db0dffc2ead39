"""Email delivery against a real SMTP server on loopback."""

from datetime import timedelta

import pytest

from app.extensions import db
from app.models import BackupJob, Delivery, Notification, NotificationTemplate, Severity, User, utcnow
from app.monitoring.alerts import create_backup_alert_with_notifications
from app.notifications.dispatcher import commit_and_dispatch
from app.notifications.send import deliver
from app.notifications.templates import create_builtin_templates


def add_users(count, prefix="user"):
    for number in range(count):
        user = User(email=f"{prefix}{number}@example.com")
        user.set_password("pw")
        db.session.add(user)
    db.session.commit()


def raise_critical(job_name="nightly-db", message="Backup failed"):
    job, _ = BackupJob.create(job_name)
    db.session.add(job)
    db.session.commit()
    alert, _ = create_backup_alert_with_notifications(
        "BACKUP_FAILURE", Severity.CRITICAL, message, {"exit_code": 2}, job=job
    )
    commit_and_dispatch()
    return alert


def email_deliveries():
    return db.session.execute(
        db.select(Delivery).where(Delivery.channel == "email").order_by(Delivery.id)
    ).scalars().all()


def test_batch_shares_one_connection(ctx, smtp_server, run_worker):
    add_users(5)
    raise_critical()
    assert run_worker() == []
    assert len(smtp_server.messages) == 5
    assert smtp_server.handler.sessions == 1
    deliveries = email_deliveries()
    assert {d.status for d in deliveries} == {"sent"}
    assert all(d.provider_message_id.startswith("<") for d in deliveries)
    assert all(d.attempts == 1 for d in deliveries)


def test_in_app_written_with_email(ctx, smtp_server, run_worker):
    add_users(2)
    alert = raise_critical()
    notes = db.session.execute(db.select(Notification)).scalars().all()
    assert len(notes) == 2
    assert all(n.alert_id == alert.id and n.delivery is not None for n in notes)


def test_utf8_subject_body_and_sender(ctx, app, smtp_server, run_worker, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_DEFAULT_SENDER", ("Équipe Sauvegarde", "backups@example.com"))
    add_users(1)
    raise_critical("Données clients", "Sauvegarde échouée 😱")
    run_worker()
    [(mail_from, rcpt_tos, message)] = smtp_server.messages
    assert mail_from == "backups@example.com"
    assert rcpt_tos == ["user0@example.com"]
    assert "Sauvegarde échouée 😱" in message["Subject"]
    assert message["From"].addresses[0].display_name == "Équipe Sauvegarde"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Sauvegarde échouée 😱" in part
        assert "Données clients" in part
    assert "http://backwatch.test/admin/backups/alerts/details/?id=" in text


def test_html_part_escapes_report_text(ctx, smtp_server, run_worker):
    add_users(1)
    raise_critical("<b>evil</b>", "<script>alert(1)</script>")
    run_worker()
    [(_, _, message)] = smtp_server.messages
    html = message.get_body(("html",)).get_content()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;evil&lt;/b&gt;" in html


def test_refused_recipient_fails_alone(ctx, smtp_server, run_worker):
    add_users(3)
    smtp_server.handler.refuse.add("user1@example.com")
    raise_critical()
    run_worker()
    statuses = {d.address: d.status for d in email_deliveries()}
    assert statuses == {
        "user0@example.com": "sent",
        "user1@example.com": "failed",
        "user2@example.com": "sent",
    }
    failed = next(d for d in email_deliveries() if d.status == "failed")
    assert failed.last_status_code == 550
    assert "mailbox unavailable" in failed.last_error


def test_server_down_retried_later(ctx, app, run_worker):
    from tests.smtp import SMTPServer

    add_users(2)
    raise_critical()
    run_worker()
    deliveries = email_deliveries()
    assert {d.status for d in deliveries} == {"pending"}
    assert all(d.attempts == 1 and d.next_attempt_at is not None for d in deliveries)
    assert "SMTP connection to 127.0.0.1:1 failed" in deliveries[0].last_error

    server = SMTPServer().start()
    try:
        app.config["MAIL_PORT"] = server.port
        later = utcnow() + timedelta(minutes=5)
        retries = deliver(deliveries[0].id, now=later)
        assert retries == {}
        assert len(server.messages) == 2
        assert server.handler.sessions == 1
    finally:
        app.config["MAIL_PORT"] = 1
        server.stop()
    db.session.expire_all()
    assert {d.status for d in email_deliveries()} == {"sent"}
    assert [d.attempts for d in email_deliveries()] == [2, 2]


def test_not_due_delivery_not_sent(ctx, app, run_worker, monkeypatch):
    monkeypatch.setitem(app.config, "DELIVERY_BACKOFF_BASE_SECONDS", 60.0)
    add_users(1)
    raise_critical()
    run_worker()
    [delivery] = email_deliveries()
    assert deliver(delivery.id) == {}
    db.session.expire_all()
    assert delivery.attempts == 1


def test_gives_up_after_max_attempts(ctx, app, monkeypatch):
    monkeypatch.setitem(app.config, "DELIVERY_MAX_ATTEMPTS", 2)
    add_users(1)
    raise_critical()
    [delivery] = email_deliveries()
    deliver(delivery.id)
    deliver(delivery.id, now=utcnow() + timedelta(hours=1))
    db.session.expire_all()
    assert delivery.status == "failed"
    assert delivery.attempts == 2


def test_sent_delivery_never_resent(ctx, smtp_server):
    add_users(1)
    raise_critical()
    [delivery] = email_deliveries()
    deliver(delivery.id)
    deliver(delivery.id)
    assert len(smtp_server.messages) == 1


def test_broken_template_falls_back(ctx, smtp_server, run_worker):
    create_builtin_templates()
    template = db.session.execute(
        db.select(NotificationTemplate).where(NotificationTemplate.name == "backup_alert")
    ).scalar_one()
    template.text_body = "{{ alert.message | nosuchfilter }}"
    template.edited = True
    db.session.commit()
    add_users(1)
    raise_critical(message="Disk full")
    run_worker()
    [(_, _, message)] = smtp_server.messages
    assert "Disk full" in message.get_body(("plain",)).get_content()
    [delivery] = email_deliveries()
    assert delivery.status == "sent"
    assert "failed to render" in delivery.last_error


def test_sandbox_blocks_unsafe_template(ctx, smtp_server, run_worker):
    create_builtin_templates()
    template = db.session.execute(
        db.select(NotificationTemplate).where(NotificationTemplate.name == "backup_alert")
    ).scalar_one()
    template.text_body = "{{ alert.__class__.__mro__ }}"
    template.edited = True
    db.session.commit()
    add_users(1)
    raise_critical()
    run_worker()
    [delivery] = email_deliveries()
    assert "failed to render" in delivery.last_error


@pytest.mark.parametrize("edited, expected", [(True, "custom"), (False, None)])
def test_create_templates_keeps_edited(ctx, edited, expected):
    create_builtin_templates()
    template = db.session.execute(
        db.select(NotificationTemplate).where(NotificationTemplate.name == "backup_alert")
    ).scalar_one()
    template.subject = "custom"
    template.edited = edited
    db.session.commit()
    actions = dict(create_builtin_templates())
    db.session.refresh(template)
    if expected:
        assert template.subject == "custom"
        assert actions["backup_alert"] == "kept (edited by an admin)"
    else:
        assert template.subject != "custom"
    count = db.session.scalar(db.select(db.func.count()).select_from(NotificationTemplate))
    assert count == 3


def test_retry_runs_a_second_early(ctx):
    add_users(1)
    raise_critical()
    [delivery] = email_deliveries()
    deliver(delivery.id)
    db.session.expire_all()
    # RQ may start the delayed job up to a second before next_attempt_at.
    early = delivery.next_attempt_at - timedelta(seconds=1)
    deliver(delivery.id, now=early)
    db.session.expire_all()
    assert delivery.attempts == 2
