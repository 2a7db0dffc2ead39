"""Storage backends and their usage readings."""

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import UTCDateTime, utcnow

BACKEND_KINDS = ("local", "r2", "b2")


class StorageBackend(db.Model):
    """A place backups land. Its credentials come from the environment and are not stored here."""

    __tablename__ = "storage_backends"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    # A folder for local backends, a bucket name for r2 and b2.
    path: Mapped[str | None] = mapped_column(String(1024))
    bucket: Mapped[str | None] = mapped_column(String(255))
    # Quota for cloud buckets (required), optional limit for local folders.
    capacity_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # Percent thresholds; None means the setting.
    warning_percent: Mapped[float | None] = mapped_column(Float)
    critical_percent: Mapped[float | None] = mapped_column(Float)
    forecast_warning_days: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    readings = relationship("UsageReading", back_populates="backend", lazy="dynamic", passive_deletes=True)

    def __str__(self):
        return self.name


class UsageReading(db.Model):
    """One measurement of a backend's use."""

    __tablename__ = "usage_readings"
    __table_args__ = (Index("ix_usage_readings_backend_measured", "backend_id", "measured_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backend_id: Mapped[int] = mapped_column(ForeignKey("storage_backends.id", ondelete="CASCADE"))
    measured_at = mapped_column(UTCDateTime, nullable=False)
    used_bytes: Mapped[int] = mapped_column(BigInteger)
    capacity_bytes: Mapped[int | None] = mapped_column(BigInteger)
    object_count: Mapped[int | None] = mapped_column(BigInteger)
    # Size of the backup folder itself, for local backends.
    backup_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # "check" for the hourly measurement, or the report that carried it.
    source: Mapped[str] = mapped_column(String(32), default="check")

    backend = relationship("StorageBackend", back_populates="readings")
