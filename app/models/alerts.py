"""Alerts raised by the checks."""

from sqlalchemy import ForeignKey, Index, Integer, JSON, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import SeverityType, UTCDateTime, utcnow

ALERT_TYPES = (
    "BACKUP_FAILURE",
    "SIZE_DEVIATION",
    "DURATION_THRESHOLD",
    "STORAGE_CAPACITY",
    "INTEGRITY_FAILURE",
    "RESTORE_FAILURE",
    "MISSED_BACKUP",
    # A storage backend could not be read (credentials, timeout, missing bucket).
    "STORAGE_ERROR",
    # A storage backend will be full within the forecast window.
    "STORAGE_FORECAST",
    # A run reported its start and has not finished within the job's maximum run time.
    "RUNNING_TOO_LONG",
)
ALERT_STATUSES = ("ACTIVE", "ACKNOWLEDGED", "RESOLVED")
OPEN_STATUSES = ("ACTIVE", "ACKNOWLEDGED")


class Alert(db.Model):
    __tablename__ = "alerts"
    __table_args__ = (
        # At most one open alert per dedup key. The partial index makes the
        # deduplication hold even when two workers raise at the same moment.
        Index(
            "uq_alerts_open_dedup_key",
            "dedup_key",
            unique=True,
            sqlite_where=text("status != 'RESOLVED'"),
            postgresql_where=text("status != 'RESOLVED'"),
        ),
        # Active alerts by severity and time (the list and the summary).
        Index("ix_alerts_status_severity_last_seen", "status", "severity", "last_seen_at"),
        Index("ix_alerts_job_status", "job_id", "status"),
        Index("ix_alerts_resolved_at", "resolved_at"),
        # Resolved in the last 24 hours (the dashboard), and past retention (the cleanup).
        Index("ix_alerts_status_resolved", "status", "resolved_at"),
        Index("ix_alerts_status_next_reminder", "status", "next_reminder_at"),
        # The console's alert list sorts by these, with id as the tie-breaker.
        Index("ix_alerts_created_id", "created_at", "id"),
        Index("ix_alerts_last_seen_id", "last_seen_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_type: Mapped[str] = mapped_column(String(32))
    severity = mapped_column(SeverityType, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    # Alert type plus subject, for example "BACKUP_FAILURE:job:7".
    dedup_key: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    details = mapped_column(JSON, nullable=False, default=dict)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("backup_jobs.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("backup_runs.id", ondelete="SET NULL"))
    storage_backend: Mapped[str | None] = mapped_column(String(100))
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    last_seen_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    acknowledged_at = mapped_column(UTCDateTime)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    resolved_at = mapped_column(UTCDateTime)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # When the next reminder is due while the alert stays ACTIVE; None means none.
    next_reminder_at = mapped_column(UTCDateTime)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)

    job = relationship("BackupJob")
    run = relationship("BackupRun")
    acknowledged_by = relationship("User", foreign_keys=[acknowledged_by_id])
    resolved_by = relationship("User", foreign_keys=[resolved_by_id])

    @property
    def is_open(self):
        return self.status in OPEN_STATUSES

    def to_dict(self):
        return {
            "id": self.id,
            "type": self.alert_type,
            "severity": self.severity.name,
            "status": self.status,
            "message": self.message,
            "details": self.details,
            "job": {"id": self.job_id, "name": self.job.name} if self.job_id else None,
            "run_id": self.run_id,
            "storage_backend": self.storage_backend,
            "occurrences": self.occurrences,
            "created_at": self.created_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "acknowledged_at": self.acknowledged_at.isoformat() if self.acknowledged_at else None,
            "acknowledged_by": self.acknowledged_by.email if self.acknowledged_by_id else None,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "resolved_by": self.resolved_by.email if self.resolved_by_id else None,
        }

    def __str__(self):
        return f"{self.alert_type} #{self.id}"


class Silence(db.Model):
    """A maintenance window: alerts of a job or a storage backend are recorded but not sent.

    Exactly one of job_id and storage_backend is set.
    """

    __tablename__ = "silences"
    __table_args__ = (Index("ix_silences_ends_at", "ends_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("backup_jobs.id", ondelete="CASCADE"))
    storage_backend: Mapped[str | None] = mapped_column(String(100))
    starts_at = mapped_column(UTCDateTime, nullable=False)
    ends_at = mapped_column(UTCDateTime, nullable=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    job = relationship("BackupJob")
    created_by = relationship("User")

    def covers(self, alert, now):
        if not self.starts_at <= now < self.ends_at:
            return False
        if self.job_id is not None:
            return alert.job_id == self.job_id
        return alert.storage_backend is not None and alert.storage_backend == self.storage_backend

    def __str__(self):
        subject = self.job.name if self.job_id else f"storage {self.storage_backend}"
        return f"silence of {subject}"


class PeriodicRun(db.Model):
    """One run of a daily task for one local date; the unique key makes it run once."""

    __tablename__ = "periodic_runs"
    __table_args__ = (UniqueConstraint("task", "period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(64))
    # The local date the run belongs to, as YYYY-MM-DD in the configured timezone.
    period: Mapped[str] = mapped_column(String(32))
    started_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    finished_at = mapped_column(UTCDateTime)
    result = mapped_column(JSON, nullable=False, default=dict)
