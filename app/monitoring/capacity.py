"""Storage capacity: readings, threshold alerts and the fill-up forecast.

`check_storage_capacity` is the one function here that does network I/O,
through each backend's get_storage_usage. The functions below it decide
from the database alone.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app

from app.extensions import db
from app.models import Severity, StorageBackend, UsageReading, utcnow
from app.units import human_bytes
from app.monitoring.alerts import create_backup_alert_with_notifications, resolve_alerts
from app.notifications.dispatcher import commit_and_dispatch

log = logging.getLogger(__name__)


@dataclass
class Forecast:
    """When a backend will be full, by a straight line through recent readings."""

    bytes_per_day: float
    full_at: object  # aware datetime, or None when use is flat or falling
    days_left: float | None
    readings: int


def check_storage_capacity(now=None, build=None):
    """Read every enabled backend, store a reading, and raise or resolve its alerts.

    A backend that cannot be read gets a STORAGE_ERROR alert and the others
    are still checked. Returns {backend name: percent used, or the error}.
    """
    from app.storage import StorageError

    build = build or backend_client
    now = now or utcnow()
    sync_backends_from_settings()
    results = {}
    backends = db.session.execute(
        db.select(StorageBackend).where(StorageBackend.enabled.is_(True)).order_by(StorageBackend.id)
    ).scalars().all()
    for backend in backends:
        try:
            usage = build(backend).get_storage_usage()
        except StorageError as exc:
            record_unreadable(backend, str(exc), now)
            results[backend.name] = str(exc)
        else:
            results[backend.name] = record_usage(backend, usage, now)
        commit_and_dispatch()
    return results


def sync_backends_from_settings():
    """Create the backends that R2_BUCKET_NAME and B2_BUCKET_NAME define, once.

    Rows that exist are left alone, so quotas and thresholds changed in the
    console are kept.
    """
    config = current_app.config
    for kind in ("r2", "b2"):
        prefix = kind.upper()
        bucket = config.get(f"{prefix}_BUCKET_NAME")
        if not bucket:
            continue
        exists = db.session.scalar(db.select(StorageBackend.id).where(StorageBackend.name == kind))
        if exists is None:
            db.session.add(StorageBackend(
                name=kind, kind=kind, bucket=bucket, capacity_bytes=config.get(f"{prefix}_QUOTA_BYTES"), enabled=True,
            ))
            log.info("Storage %s: created from the %s_BUCKET_NAME setting", kind, prefix)
    db.session.commit()


def newest_reading_id():
    """Return a scalar subquery: the id of the newest reading of the StorageBackend row it is correlated with.

    It reads ix_usage_readings_backend_measured; the id breaks a tie between
    two readings taken at the same time.
    """
    return (
        db.select(UsageReading.id)
        .where(UsageReading.backend_id == StorageBackend.id)
        .order_by(UsageReading.measured_at.desc(), UsageReading.id.desc())
        .limit(1)
        .correlate(StorageBackend)
        .scalar_subquery()
    )


def backend_client(backend):
    """Return the app.storage object that reads `backend`, with credentials from the settings."""
    from app.storage import build_backend

    return build_backend(backend.kind, backend.name, {
        "path": backend.path,
        "bucket": backend.bucket,
        "limit_bytes": backend.capacity_bytes,
        "quota_bytes": backend.capacity_bytes,
    })


def record_usage(backend, usage, now, source="check"):
    """Store a reading and apply the capacity and forecast rules; return percent used or None."""
    capacity = backend.capacity_bytes or usage.capacity_bytes
    db.session.add(UsageReading(
        backend_id=backend.id, measured_at=usage.measured_at or now, used_bytes=usage.used_bytes,
        capacity_bytes=capacity, object_count=usage.object_count,
        backup_bytes=getattr(usage, "backup_bytes", None), source=source,
    ))
    db.session.flush()
    resolve_alerts("STORAGE_ERROR", storage_backend=backend.name, now=now, reason="backend readable again")
    if not capacity:
        log.warning("Storage %s: no capacity known; set a quota to check it", backend.name)
        return None

    percent = 100.0 * usage.used_bytes / capacity
    _apply_thresholds(backend, percent, usage.used_bytes, capacity, now)
    _apply_forecast(backend, capacity, now)
    return percent


def record_unreadable(backend, error, now):
    log.warning("Storage %s: cannot be read: %s", backend.name, error)
    create_backup_alert_with_notifications(
        "STORAGE_ERROR",
        Severity.ERROR,
        f"Storage backend {backend.name} cannot be read: {error}",
        {"backend": backend.name, "kind": backend.kind, "error": error},
        storage_backend=backend.name,
        now=now,
    )


def _apply_thresholds(backend, percent, used, capacity, now):
    config = current_app.config
    warning = backend.warning_percent or config["STORAGE_WARNING_PERCENT"]
    critical = backend.critical_percent or config["STORAGE_CRITICAL_PERCENT"]
    if percent > critical:
        severity = Severity.CRITICAL
    elif percent > warning:
        severity = Severity.WARNING
    else:
        resolve_alerts("STORAGE_CAPACITY", storage_backend=backend.name, now=now, reason=f"use fell to {percent:.1f}%")
        return
    create_backup_alert_with_notifications(
        "STORAGE_CAPACITY",
        severity,
        f"Storage backend {backend.name} is {percent:.1f}% full ({human_bytes(used)} of {human_bytes(capacity)})",
        {"backend": backend.name, "used_bytes": used, "capacity_bytes": capacity, "percent": round(percent, 2),
         "warning_percent": warning, "critical_percent": critical},
        storage_backend=backend.name,
        now=now,
    )


def _apply_forecast(backend, capacity, now):
    days = backend.forecast_warning_days or current_app.config["STORAGE_FORECAST_WARNING_DAYS"]
    forecast = forecast_full(backend, capacity, now)
    if forecast is None or forecast.days_left is None or forecast.days_left > days:
        resolve_alerts("STORAGE_FORECAST", storage_backend=backend.name, now=now, reason="no longer filling up within the window")
        return
    create_backup_alert_with_notifications(
        "STORAGE_FORECAST",
        Severity.WARNING,
        f"Storage backend {backend.name} will be full in about {forecast.days_left:.1f} days "
        f"(growing {forecast.bytes_per_day:.0f} bytes a day)",
        {"backend": backend.name, "days_left": round(forecast.days_left, 2), "full_at": forecast.full_at.isoformat(),
         "bytes_per_day": round(forecast.bytes_per_day), "readings": forecast.readings},
        storage_backend=backend.name,
        now=now,
    )


def forecast_full(backend, capacity, now):
    """Fit used bytes over the last STORAGE_FORECAST_HISTORY_DAYS by least squares.

    Returns None with fewer than three readings or readings spanning less
    than an hour, because a line through those predicts nothing.
    """
    since = now - timedelta(days=current_app.config["STORAGE_FORECAST_HISTORY_DAYS"])
    rows = db.session.execute(
        db.select(UsageReading.measured_at, UsageReading.used_bytes)
        .where(UsageReading.backend_id == backend.id, UsageReading.measured_at >= since)
        .order_by(UsageReading.measured_at)
    ).all()
    if len(rows) < 3 or (rows[-1][0] - rows[0][0]) < timedelta(hours=1):
        return None
    origin = rows[0][0]
    xs = [(at - origin).total_seconds() / 86400 for at, _ in rows]
    ys = [float(used) for _, used in rows]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread
    if slope <= 0:
        return Forecast(bytes_per_day=slope, full_at=None, days_left=None, readings=len(rows))
    # Days from now until the fitted line reaches the capacity.
    intercept = mean_y - slope * mean_x
    now_x = (now - origin).total_seconds() / 86400
    days_left = max((capacity - intercept) / slope - now_x, 0.0)
    return Forecast(bytes_per_day=slope, full_at=now + timedelta(days=days_left), days_left=days_left, readings=len(rows))
