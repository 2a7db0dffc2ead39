"""Backup jobs and the runs they report."""

import hashlib
import hmac
import secrets

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow

RUN_KINDS = ("backup", "restore", "verify")
RUN_STATUSES = ("success", "failure")

# 32 random bytes: 256 bits, well above the 128 bits a guessable-token
# attack would have to beat.
TOKEN_BYTES = 32


def hash_token(token):
    """Return the hex SHA-256 of a hook token.

    A fast hash is enough because the token itself carries 256 random bits;
    there is nothing to brute-force that a slow hash would protect.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class BackupJob(db.Model):
    __tablename__ = "backup_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # Baseline for the size and duration checks; None means the setting.
    baseline_window: Mapped[int | None] = mapped_column(Integer)
    baseline_min_samples: Mapped[int | None] = mapped_column(Integer)
    # Expected schedule: a cron expression read in schedule_timezone, or an
    # interval in seconds. Neither means the job is not checked for missed runs.
    schedule_cron: Mapped[str | None] = mapped_column(String(100))
    schedule_interval_seconds: Mapped[int | None] = mapped_column(Integer)
    schedule_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # How late a run may report before it counts as missed; None means the setting.
    grace_seconds: Mapped[int | None] = mapped_column(Integer)
    # How long a started run may go without finishing; None means the setting.
    max_run_seconds: Mapped[int | None] = mapped_column(Integer)
    # When the schedule clock last started: job creation, a schedule change or unpausing.
    schedule_since = mapped_column(UTCDateTime)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    # When the latest finished report (success or failure) was received.
    last_run_at = mapped_column(UTCDateTime)

    runs = relationship("BackupRun", back_populates="job", lazy="dynamic")

    @classmethod
    def create(cls, name, **fields):
        """Return a new job and its hook token; only the token's hash is kept."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        fields.setdefault("schedule_since", utcnow())
        job = cls(name=name, token_hash=hash_token(token), **fields)
        return job, token

    @classmethod
    def find_by_token(cls, token):
        """Return the job whose hook token is `token`, or None."""
        digest = hash_token(token)
        job = db.session.execute(
            db.select(cls).where(cls.token_hash == digest)
        ).scalar_one_or_none()
        # The index lookup already matched; the constant-time comparison keeps
        # the final decision free of timing differences all the same.
        if job is None or not hmac.compare_digest(job.token_hash, digest):
            return None
        return job

    def rotate_token(self):
        """Replace the hook token and return the new one."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self.token_hash = hash_token(token)
        return token

    def __str__(self):
        return self.name


class BackupRun(db.Model):
    """One report from a job: a backup, restore or verify run."""

    __tablename__ = "backup_runs"
    __table_args__ = (
        # A client's idempotency key is unique per job.
        UniqueConstraint("job_id", "client_run_id"),
        # A job's latest runs, and the check's baseline of recent successful runs.
        Index("ix_backup_runs_job_finished", "job_id", "finished_at"),
        # id is the tie-breaker in the baseline's ORDER BY; with it in the
        # index PostgreSQL reads the window directly instead of filtering
        # the job's newest runs by kind and status.
        Index("ix_backup_runs_job_kind_status_finished", "job_id", "kind", "status", "finished_at", "id"),
        # The sweeper looks for runs that were stored but never checked.
        Index("ix_backup_runs_unchecked", "checked_at", "received_at"),
        # The console's run list, latest finished first.
        Index("ix_backup_runs_finished_id", "finished_at", "id"),
        # The sweeper looks for the last day's runs whose artifact was never looked up.
        Index("ix_backup_runs_artifact_unchecked", "artifact_checked_at", "checked_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("backup_jobs.id", ondelete="CASCADE"))
    client_run_id: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="backup")
    status: Mapped[str] = mapped_column(String(16))
    started_at = mapped_column(UTCDateTime)
    finished_at = mapped_column(UTCDateTime, nullable=False)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    exit_code: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    log_tail: Mapped[str | None] = mapped_column(Text)
    # Bytes of the log cut from its start before it was stored.
    log_truncated_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    storage_backend: Mapped[str | None] = mapped_column(String(100))
    # The object the run produced on storage_backend, and its SHA-256 (hex), if reported.
    object_key: Mapped[str | None] = mapped_column(String(1024))
    sha256: Mapped[str | None] = mapped_column(String(64))
    received_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    # Set when the worker claims the run; NULL means not yet checked.
    checked_at = mapped_column(UTCDateTime)
    # Set when the object named by object_key was looked up on its backend.
    artifact_checked_at = mapped_column(UTCDateTime)

    job = relationship("BackupJob", back_populates="runs")

    def __str__(self):
        return f"run {self.id} of {self.job.name if self.job else self.job_id}"


class RunStart(db.Model):
    """A start report still waiting for its finish.

    The finish deletes it and takes its start time. One left here past the
    job's maximum run time raises RUNNING_TOO_LONG.
    """

    __tablename__ = "run_starts"
    __table_args__ = (
        UniqueConstraint("job_id", "client_run_id"),
        Index("ix_run_starts_started", "started_at"),
        Index("ix_run_starts_job_started", "job_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("backup_jobs.id", ondelete="CASCADE"))
    # The client's run id (`run_id` in JSON, `rid` in pings), pairing the start with its finish.
    client_run_id: Mapped[str | None] = mapped_column(String(200))
    started_at = mapped_column(UTCDateTime, nullable=False)
    received_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    # Output sent while the run goes on (a start or log ping's body); the finish takes it.
    log_tail: Mapped[str | None] = mapped_column(Text)
    # When this start first counted as overdue, so that it raises RUNNING_TOO_LONG once.
    overdue_reported_at = mapped_column(UTCDateTime)

    job = relationship("BackupJob")
