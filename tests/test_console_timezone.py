"""Times in the console follow the user's time zone preference."""

from datetime import datetime, timezone

from app.extensions import db
from app.models import Alert, BackupJob, Severity, User

NOON_UTC = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def add_alert(app):
    with app.app_context():
        job, _ = BackupJob.create("nightly-db")
        db.session.add(job)
        db.session.flush()
        db.session.add(Alert(alert_type="BACKUP_FAILURE", severity=Severity.CRITICAL, status="ACTIVE",
                             dedup_key=f"BACKUP_FAILURE:job:{job.id}", message="Backup failed", details={},
                             job_id=job.id, created_at=NOON_UTC, last_seen_at=NOON_UTC))
        db.session.commit()
        return db.session.execute(db.select(Alert.id)).scalar_one()


def set_timezone(app, name):
    with app.app_context():
        user = db.session.execute(db.select(User).where(User.email == "admin@example.com")).scalar_one()
        user.timezone = name
        db.session.commit()


def test_times_default_to_utc(app, admin_client):
    alert_id = add_alert(app)
    assert "2026-06-01 12:00 UTC" in admin_client.get("/admin/backups/alerts/").get_data(as_text=True)
    assert "2026-06-01 12:00 UTC" in admin_client.get(f"/admin/backups/alerts/details/?id={alert_id}").get_data(as_text=True)


def test_times_in_user_zone(app, admin_client):
    alert_id = add_alert(app)
    set_timezone(app, "Europe/Berlin")
    for url in ("/admin/backups/alerts/", f"/admin/backups/alerts/details/?id={alert_id}", "/admin/backups/jobs/"):
        page = admin_client.get(url).get_data(as_text=True)
        assert "12:00 UTC" not in page
    assert "2026-06-01 14:00 CEST" in admin_client.get("/admin/backups/alerts/").get_data(as_text=True)
