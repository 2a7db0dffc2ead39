"""The alert lifecycle: acknowledgement, resolution, reminders, silences,
retention and the daily digest, on a controlled clock."""

import threading
from datetime import datetime, timedelta, timezone

import pytest

from app.extensions import db
from app.models import Alert, AlertEvent, Delivery, Notification, PeriodicRun, Severity, Silence
from app.monitoring.alerts import create_backup_alert_with_notifications, resolve_alerts
from app.monitoring.lifecycle import (
    acknowledge_alert,
    build_digest,
    cleanup_resolved_alerts,
    resolve_alert,
    send_reminders,
)
from app.notifications.dispatcher import commit_and_dispatch
from app.periodic import run_daily
from tests.test_dispatch import add_user, make_job

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)


def raise_at(job, now, severity=Severity.CRITICAL, alert_type="BACKUP_FAILURE", message="Backup failed"):
    alert, event = create_backup_alert_with_notifications(alert_type, severity, message, {}, job=job, now=now)
    commit_and_dispatch()
    return alert, event


def events(alert_id, kind=None):
    query = db.select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
    if kind:
        query = query.where(AlertEvent.event == kind)
    return db.session.execute(query).scalars().all()


def deliveries_of(event):
    return db.session.execute(db.select(Delivery).where(Delivery.alert_event_id == event.id)).scalars().all()


@pytest.fixture
def operator(ctx):
    return add_user("ops@example.com")


# A persisting condition


def test_persisting_condition_raised_once(operator):
    job = make_job()
    alert, event = raise_at(job, T0)
    assert event == "raised"
    for minutes in range(1, 6):
        again, event = raise_at(job, T0 + timedelta(minutes=minutes))
        assert again.id == alert.id
        assert event is None
    assert db.session.scalar(db.select(db.func.count()).select_from(Alert)) == 1
    assert len(events(alert.id, "raised")) == 1
    assert alert.occurrences == 6


# Acknowledge and resolve


def test_acknowledge_records_who_and_when_and_sends_nothing(operator):
    alert, _ = raise_at(make_job(), T0)
    sent_before = db.session.scalar(db.select(db.func.count()).select_from(Delivery))
    acknowledged = acknowledge_alert(alert.id, operator, now=T0 + timedelta(minutes=3))
    commit_and_dispatch()
    assert acknowledged.status == "ACKNOWLEDGED"
    assert acknowledged.acknowledged_by_id == operator.id
    assert acknowledged.acknowledged_at == T0 + timedelta(minutes=3)
    assert acknowledged.next_reminder_at is None
    assert [e.event for e in events(alert.id)] == ["raised", "acknowledged"]
    assert db.session.scalar(db.select(db.func.count()).select_from(Delivery)) == sent_before
    # Only an ACTIVE alert can be acknowledged.
    assert acknowledge_alert(alert.id, operator) is None


def test_resolve_by_person_sends_one_resolved_message(operator):
    alert, _ = raise_at(make_job(), T0)
    resolved = resolve_alert(alert.id, operator, now=T0 + timedelta(hours=1))
    commit_and_dispatch()
    assert resolved.status == "RESOLVED"
    assert resolved.resolved_by_id == operator.id
    assert resolve_alert(alert.id, operator) is None
    assert resolve_alerts("BACKUP_FAILURE", job=alert.job) is None
    [event] = events(alert.id, "resolved")
    assert {d.channel for d in deliveries_of(event)} == {"in_app", "email", "sms"}


def test_automatic_resolution_sends_one_resolved_message(operator):
    job = make_job()
    alert, _ = raise_at(job, T0)
    assert resolve_alerts("BACKUP_FAILURE", job=job, now=T0 + timedelta(hours=1)).resolved_by_id is None
    commit_and_dispatch()
    assert resolve_alerts("BACKUP_FAILURE", job=job) is None
    assert len(events(alert.id, "resolved")) == 1


def test_concurrent_resolution_sends_once(app, operator, database_url):
    """Two sessions resolve the same alert at once: one wins, one message."""
    alert, _ = raise_at(make_job(), T0)
    alert_id, user_id = alert.id, operator.id
    results, barrier = [], threading.Barrier(2)

    def resolve():
        with app.app_context():
            from app.models import User

            user = db.session.get(User, user_id)
            barrier.wait()
            results.append(resolve_alert(alert_id, user) is not None)
            commit_and_dispatch()
            db.session.remove()

    threads = [threading.Thread(target=resolve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False, True]
    db.session.expire_all()
    assert len(events(alert_id, "resolved")) == 1


def test_escalation_reactivates_an_acknowledged_alert(operator):
    job = make_job()
    alert, _ = raise_at(job, T0, severity=Severity.WARNING)
    acknowledge_alert(alert.id, operator, now=T0)
    commit_and_dispatch()
    again, event = raise_at(job, T0 + timedelta(minutes=5), severity=Severity.CRITICAL)
    assert event == "escalated"
    assert again.status == "ACTIVE"
    assert again.next_reminder_at == T0 + timedelta(minutes=5, hours=24)


# Reminders


def test_reminders_every_interval_until_acknowledged(app, operator, monkeypatch):
    monkeypatch.setitem(app.config, "ALERT_REMINDER_HOURS", 24)
    alert, _ = raise_at(make_job(), T0)
    assert alert.next_reminder_at == T0 + timedelta(hours=24)
    sent = []
    for hour in range(0, 73):
        sent.append(send_reminders(T0 + timedelta(hours=hour, minutes=1)))
        commit_and_dispatch()
    assert sum(sent) == 3
    assert [i for i, count in enumerate(sent) if count] == [24, 48, 72]
    acknowledge_alert(alert.id, operator, now=T0 + timedelta(hours=73))
    commit_and_dispatch()
    assert send_reminders(T0 + timedelta(days=10)) == 0
    reminders = events(alert.id, "reminder")
    assert len(reminders) == 3
    assert all(deliveries_of(event) for event in reminders)
    db.session.refresh(alert)
    assert alert.reminders_sent == 3


def test_reminders_off(app, operator, monkeypatch):
    monkeypatch.setitem(app.config, "ALERT_REMINDER_HOURS", 0)
    alert, _ = raise_at(make_job(), T0)
    assert alert.next_reminder_at is None
    assert send_reminders(T0 + timedelta(days=5)) == 0


def test_reminder_is_sent_once_by_two_workers(app, operator):
    alert, _ = raise_at(make_job(), T0)
    due = T0 + timedelta(hours=25)
    assert send_reminders(due) == 1
    commit_and_dispatch()
    assert send_reminders(due) == 0


# Silences


def test_silenced_job_records_alerts_but_sends_nothing(operator):
    job = make_job()
    db.session.add(Silence(job_id=job.id, starts_at=T0 - timedelta(hours=1), ends_at=T0 + timedelta(hours=2),
                           reason="disk replacement"))
    db.session.commit()
    alert, event = raise_at(job, T0)
    assert event == "raised"
    assert alert.status == "ACTIVE"
    [raised] = events(alert.id, "raised")
    assert raised.payload["silenced_by"]
    assert deliveries_of(raised) == []
    assert db.session.scalar(db.select(db.func.count()).select_from(Notification)) == 0
    # The first reminder comes when the silence ends, if the alert is still active.
    assert alert.next_reminder_at == T0 + timedelta(hours=2)
    assert send_reminders(T0 + timedelta(hours=1)) == 0
    assert send_reminders(T0 + timedelta(hours=2, minutes=1)) == 1
    commit_and_dispatch()
    [reminder] = events(alert.id, "reminder")
    assert deliveries_of(reminder)


def test_unrelated_silences_do_not_mute(operator):
    job, other = make_job("db"), make_job("files")
    db.session.add(Silence(job_id=other.id, starts_at=T0 - timedelta(hours=1), ends_at=T0 + timedelta(hours=1)))
    db.session.add(Silence(job_id=job.id, starts_at=T0 - timedelta(hours=3), ends_at=T0 - timedelta(hours=1)))
    db.session.commit()
    alert, _ = raise_at(job, T0)
    [raised] = events(alert.id, "raised")
    assert "silenced_by" not in raised.payload
    assert deliveries_of(raised)


def test_silenced_backend(operator):
    db.session.add(Silence(storage_backend="offsite", starts_at=T0, ends_at=T0 + timedelta(hours=4)))
    db.session.commit()
    alert, _ = create_backup_alert_with_notifications(
        "STORAGE_CAPACITY", Severity.CRITICAL, "offsite is 95% full", {}, storage_backend="offsite",
        now=T0 + timedelta(minutes=1),
    )
    commit_and_dispatch()
    [raised] = events(alert.id, "raised")
    assert deliveries_of(raised) == []


# Retention


def test_cleanup_deletes_old_resolved_alerts_with_their_deliveries(app, operator, monkeypatch):
    monkeypatch.setitem(app.config, "ALERT_RETENTION_DAYS", 30)
    old, recent, open_alert = make_job("old"), make_job("recent"), make_job("open")
    for job, resolved_days_ago in ((old, 31), (recent, 29)):
        raise_at(job, T0 - timedelta(days=40))
        resolve_alerts("BACKUP_FAILURE", job=job, now=T0 - timedelta(days=resolved_days_ago))
        commit_and_dispatch()
    raise_at(open_alert, T0 - timedelta(days=90))
    db.session.add(Silence(job_id=old.id, starts_at=T0 - timedelta(days=60), ends_at=T0 - timedelta(days=59)))
    db.session.commit()
    assert cleanup_resolved_alerts(T0) == 1
    remaining = db.session.execute(db.select(Alert)).scalars().all()
    assert sorted(a.job.name for a in remaining) == ["open", "recent"]
    job_ids = {a.id for a in remaining}
    assert {e.alert_id for e in db.session.execute(db.select(AlertEvent)).scalars()} == job_ids
    assert {n.alert_id for n in db.session.execute(db.select(Notification)).scalars()} == job_ids
    assert all(d.alert_event.alert_id in job_ids for d in db.session.execute(db.select(Delivery)).scalars())
    assert db.session.scalar(db.select(db.func.count()).select_from(Silence)) == 0
    monkeypatch.setitem(app.config, "ALERT_RETENTION_DAYS", 7)
    assert cleanup_resolved_alerts(T0) == 1


# Digest


def test_digest_groups_active_alerts_by_job(ctx):
    db_job, files = make_job("db"), make_job("files")
    raise_at(db_job, T0, Severity.CRITICAL)
    raise_at(db_job, T0, Severity.WARNING, alert_type="SIZE_DEVIATION", message="<b>smaller</b>")
    raise_at(files, T0, Severity.ERROR, alert_type="MISSED_BACKUP")
    raise_at(files, T0, Severity.INFO, alert_type="DURATION_THRESHOLD")
    digest = build_digest(T0)
    assert digest["total"] == 3
    assert digest["by_severity"] == {"CRITICAL": 1, "ERROR": 1, "WARNING": 1}
    assert digest["by_type"] == {"BACKUP_FAILURE": 1, "SIZE_DEVIATION": 1, "MISSED_BACKUP": 1}
    assert [group["job"] for group in digest["jobs"]] == ["db", "files"]
    assert [a["type"] for a in digest["jobs"][0]["alerts"]] == ["BACKUP_FAILURE", "SIZE_DEVIATION"]
    assert digest["jobs"][0]["alerts"][0]["url"].startswith("http://backwatch.test/admin/")


def test_digest_reaches_platform_admins(app, ctx, smtp_server, run_worker):
    admin = add_user("admin@example.com")
    admin.is_platform_admin = True
    add_user("ops@example.com")
    db.session.commit()
    raise_at(make_job("db"), T0)
    from app.jobs import send_alert_digest

    from app.periodic import local_now

    app.config["DIGEST_AT"] = local_now().strftime("%H:%M")
    try:
        assert send_alert_digest()["total"] == 1
        assert send_alert_digest() is None
    finally:
        app.config["DIGEST_AT"] = "08:00"
    assert run_worker() == []
    [digest] = db.session.execute(db.select(AlertEvent).where(AlertEvent.event == "digest")).scalars().all()
    assert {(d.channel, d.user_id, d.status) for d in deliveries_of(digest)} == {
        ("in_app", admin.id, "sent"), ("email", admin.id, "sent"),
    }
    [(_, recipients, message)] = [m for m in smtp_server.messages if "digest" in m[2]["Subject"].lower()]
    assert recipients == ["admin@example.com"]
    assert "CRITICAL: 1" in message.get_body(("plain",)).get_content()


# Daily tasks at a local time


def test_daily_task_once_across_clock_change(app, ctx, monkeypatch):
    monkeypatch.setitem(app.config, "TIMEZONE", "Europe/Berlin")
    monkeypatch.setitem(app.config, "DIGEST_AT", "08:00")
    runs = []
    # Every 10 minutes over the week around the night the clocks go back.
    now = datetime(2026, 10, 21, 0, 0, tzinfo=timezone.utc)
    while now < datetime(2026, 10, 29, 0, 0, tzinfo=timezone.utc):
        if run_daily("digest", "DIGEST_AT", lambda at: at.isoformat(), now=now) is not None:
            runs.append(now)
        db.session.commit()
        now += timedelta(minutes=10)
    local_times = [r.astimezone(app_zone(app)).strftime("%m-%d %H:%M") for r in runs]
    assert local_times == [f"10-{day} 08:00" for day in range(21, 29)]
    assert db.session.scalar(db.select(db.func.count()).select_from(PeriodicRun)) == 8


def test_daily_task_at_a_time_the_clocks_skip(app, ctx, monkeypatch):
    monkeypatch.setitem(app.config, "TIMEZONE", "Europe/Berlin")
    monkeypatch.setitem(app.config, "CLEANUP_AT", "02:30")
    runs = []
    now = datetime(2026, 3, 27, 0, 0, tzinfo=timezone.utc)
    while now < datetime(2026, 3, 31, 0, 0, tzinfo=timezone.utc):
        if run_daily("cleanup", "CLEANUP_AT", lambda at: at.isoformat(), now=now) is not None:
            runs.append(now.astimezone(app_zone(app)).strftime("%m-%d %H:%M"))
        db.session.commit()
        now += timedelta(minutes=10)
    assert runs == ["03-27 02:30", "03-28 02:30", "03-29 03:00", "03-30 02:30"]


def test_daily_task_late_start_waits_for_next_day(app, ctx, monkeypatch):
    """A service first started in the evening sends its first digest the next morning."""
    monkeypatch.setitem(app.config, "DIGEST_AT", "08:00")
    runs = []
    now = datetime(2026, 6, 1, 19, 0, tzinfo=timezone.utc)
    while now < datetime(2026, 6, 2, 23, 0, tzinfo=timezone.utc):
        if run_daily("digest", "DIGEST_AT", lambda at: at.isoformat(), now=now) is not None:
            runs.append(now.strftime("%m-%d %H:%M"))
        db.session.commit()
        now += timedelta(minutes=10)
    assert runs == ["06-02 08:00"]


def test_daily_task_catches_up_after_short_outage(app, ctx, monkeypatch):
    monkeypatch.setitem(app.config, "CLEANUP_AT", "05:00")
    assert run_daily("cleanup", "CLEANUP_AT", lambda at: "ran", now=datetime(2026, 6, 1, 7, 30, tzinfo=timezone.utc)) == "ran"
    db.session.commit()
    assert run_daily("cleanup", "CLEANUP_AT", lambda at: "ran", now=datetime(2026, 6, 2, 9, 30, tzinfo=timezone.utc)) is None


def app_zone(app):
    from zoneinfo import ZoneInfo

    return ZoneInfo(app.config["TIMEZONE"])
