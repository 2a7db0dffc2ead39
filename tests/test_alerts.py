"""Raising, deduplicating, resolving and summarising alerts."""

from datetime import timedelta

import pytest

from app.extensions import db
from app.models import Alert, BackupJob, Notification, NotificationPreference, Severity, User, utcnow
from app.monitoring.alerts import (
    create_backup_alert_with_notifications,
    get_active_alerts,
    get_alert_summary,
    resolve_alerts,
)


@pytest.fixture
def job(ctx):
    job, _ = BackupJob.create("files")
    db.session.add(job)
    db.session.commit()
    return job


def add_user(email, **preferences):
    user = User(email=email)
    user.set_password("pw")
    for channel, (enabled, severity) in preferences.items():
        user.preferences.append(NotificationPreference(channel=channel, enabled=enabled, min_severity=severity))
    db.session.add(user)
    db.session.commit()
    return user


def raise_alert(job, alert_type="BACKUP_FAILURE", severity=Severity.CRITICAL, **kwargs):
    result = create_backup_alert_with_notifications(alert_type, severity, "Backup failed", {"x": 1}, job=job, **kwargs)
    db.session.commit()
    return result


def notifications_for(user):
    return db.session.execute(db.select(Notification).where(Notification.user_id == user.id)).scalars().all()


def test_raise_creates_alert(job):
    alert, event = raise_alert(job)
    assert event == "raised"
    assert alert.status == "ACTIVE"
    assert alert.dedup_key == f"BACKUP_FAILURE:job:{job.id}"
    assert alert.occurrences == 1


def test_raise_twice_updates_open_alert(job):
    first, _ = raise_alert(job)
    later = utcnow() + timedelta(minutes=5)
    second, event = raise_alert(job, now=later)
    assert event is None
    assert second.id == first.id
    assert second.occurrences == 2
    assert second.last_seen_at == later
    assert db.session.scalar(db.select(db.func.count()).select_from(Alert)) == 1


def test_raise_worse_escalates(job):
    raise_alert(job, "SIZE_DEVIATION", Severity.WARNING)
    alert, event = raise_alert(job, "SIZE_DEVIATION", Severity.CRITICAL)
    assert event == "escalated"
    assert alert.severity == Severity.CRITICAL


def test_raise_milder_keeps_severity(job):
    raise_alert(job, "SIZE_DEVIATION", Severity.CRITICAL)
    alert, event = raise_alert(job, "SIZE_DEVIATION", Severity.WARNING)
    assert event is None
    assert alert.severity == Severity.CRITICAL


def test_types_and_jobs_dedup_separately(job):
    other, _ = BackupJob.create("other")
    db.session.add(other)
    db.session.commit()
    raise_alert(job)
    raise_alert(job, "SIZE_DEVIATION", Severity.WARNING)
    raise_alert(other)
    assert db.session.scalar(db.select(db.func.count()).select_from(Alert)) == 3


def test_resolved_then_raised_opens_new(job):
    first, _ = raise_alert(job)
    resolve_alerts("BACKUP_FAILURE", job=job)
    db.session.commit()
    second, event = raise_alert(job)
    assert event == "raised"
    assert second.id != first.id


def test_resolve_without_open_alert(job):
    assert resolve_alerts("BACKUP_FAILURE", job=job) is None


def test_unknown_type_rejected(job):
    with pytest.raises(ValueError):
        create_backup_alert_with_notifications("DISK_ON_FIRE", Severity.CRITICAL, "m", {}, job=job)


def test_open_dedup_key_unique_in_database(job):
    raise_alert(job)
    duplicate = Alert(
        alert_type="BACKUP_FAILURE", severity=Severity.CRITICAL, status="ACTIVE",
        dedup_key=f"BACKUP_FAILURE:job:{job.id}", message="m", details={},
    )
    db.session.add(duplicate)
    with pytest.raises(Exception) as excinfo:
        db.session.commit()
    db.session.rollback()
    assert "unique" in str(excinfo.value).lower()


def test_notifications_follow_preferences(job):
    default = add_user("default@example.com")
    critical_only = add_user("critical@example.com", in_app=(True, Severity.CRITICAL))
    muted = add_user("muted@example.com", in_app=(False, Severity.INFO))
    raise_alert(job, "SIZE_DEVIATION", Severity.WARNING)
    assert len(notifications_for(default)) == 1
    assert notifications_for(critical_only) == []
    assert notifications_for(muted) == []


def test_notification_links_to_alert(job):
    user = add_user("default@example.com")
    alert, _ = raise_alert(job)
    [note] = notifications_for(user)
    assert note.alert_id == alert.id
    assert note.event == "raised"
    assert note.link.endswith(f"/admin/backups/alerts/details/?id={alert.id}")


def test_repeat_does_not_notify_again(job):
    user = add_user("default@example.com")
    raise_alert(job)
    raise_alert(job)
    assert len(notifications_for(user)) == 1


def test_escalation_and_resolution_notify(job):
    user = add_user("default@example.com")
    raise_alert(job, "SIZE_DEVIATION", Severity.WARNING)
    raise_alert(job, "SIZE_DEVIATION", Severity.CRITICAL)
    resolve_alerts("SIZE_DEVIATION", job=job)
    db.session.commit()
    assert [n.event for n in notifications_for(user)] == ["raised", "escalated", "resolved"]


def test_inactive_user_not_notified(job):
    user = add_user("gone@example.com")
    user.is_active_user = False
    db.session.commit()
    raise_alert(job)
    assert notifications_for(user) == []


def test_active_alerts_order_and_filter(job):
    raise_alert(job, "SIZE_DEVIATION", Severity.WARNING)
    raise_alert(job, "BACKUP_FAILURE", Severity.CRITICAL)
    raise_alert(job, "INTEGRITY_FAILURE", Severity.WARNING)
    alerts = db.session.execute(get_active_alerts()).scalars().all()
    assert [a.severity for a in alerts] == [Severity.CRITICAL, Severity.WARNING, Severity.WARNING]
    warnings = db.session.execute(get_active_alerts("warning")).scalars().all()
    assert {a.alert_type for a in warnings} == {"SIZE_DEVIATION", "INTEGRITY_FAILURE"}


def test_summary_counts(job):
    raise_alert(job, "BACKUP_FAILURE", Severity.CRITICAL)
    raise_alert(job, "SIZE_DEVIATION", Severity.WARNING)
    acked, _ = raise_alert(job, "DURATION_THRESHOLD", Severity.WARNING)
    acked.status = "ACKNOWLEDGED"
    raise_alert(job, "INTEGRITY_FAILURE", Severity.WARNING)
    resolve_alerts("INTEGRITY_FAILURE", job=job)
    old, _ = raise_alert(job, "RESTORE_FAILURE", Severity.CRITICAL)
    resolve_alerts("RESTORE_FAILURE", job=job, now=utcnow() - timedelta(days=2))
    db.session.commit()

    summary = get_alert_summary()
    assert summary["active"] == 2
    assert summary["by_severity"] == {"CRITICAL": 1, "ERROR": 0, "WARNING": 1, "INFO": 0}
    assert summary["by_type"] == {"BACKUP_FAILURE": 1, "SIZE_DEVIATION": 1}
    assert summary["acknowledged"] == 1
    assert summary["resolved_last_24h"] == 1


def test_milder_repeat_keeps_message(job):
    raise_alert(job, "SIZE_DEVIATION", Severity.CRITICAL)
    create_backup_alert_with_notifications("SIZE_DEVIATION", Severity.WARNING, "24% larger", {"x": 2}, job=job)
    db.session.commit()
    [alert] = db.session.execute(db.select(Alert)).scalars().all()
    assert alert.message == "Backup failed"
    assert alert.occurrences == 2
