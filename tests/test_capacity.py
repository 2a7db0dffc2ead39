"""Storage capacity: readings, threshold alerts, unreadable backends, the forecast."""

from datetime import timedelta

import pytest

from app.extensions import db
from app.models import Alert, Severity, StorageBackend, UsageReading, utcnow
from app.monitoring.capacity import check_storage_capacity, forecast_full

MB = 1_000_000


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "backups"
    path.mkdir()
    return path


def fill(folder, megabytes, name="data.bin"):
    (folder / name).write_bytes(b"\0" * int(megabytes * MB))


def add_backend(name, folder, limit=10 * MB, **fields):
    backend = StorageBackend(name=name, kind="local", path=str(folder), capacity_bytes=limit, **fields)
    db.session.add(backend)
    db.session.commit()
    return backend


def open_alerts(alert_type):
    return db.session.execute(
        db.select(Alert).where(Alert.alert_type == alert_type, Alert.status != "RESOLVED")
    ).scalars().all()


def test_reading_stored(ctx, folder):
    fill(folder, 2)
    backend = add_backend("nas", folder)
    results = check_storage_capacity()
    assert results == {"nas": pytest.approx(20.0)}
    [reading] = db.session.execute(db.select(UsageReading)).scalars().all()
    assert reading.backend_id == backend.id
    assert reading.used_bytes == 2 * MB
    assert reading.capacity_bytes == 10 * MB
    assert reading.object_count == 1


def test_warning_then_critical_then_resolved(ctx, folder):
    add_backend("nas", folder)
    fill(folder, 8.5)
    check_storage_capacity()
    [alert] = open_alerts("STORAGE_CAPACITY")
    assert alert.severity == Severity.WARNING
    assert alert.storage_backend == "nas"

    fill(folder, 9.5)
    check_storage_capacity()
    [alert] = open_alerts("STORAGE_CAPACITY")
    assert alert.severity == Severity.CRITICAL
    assert alert.occurrences == 2

    fill(folder, 5)
    check_storage_capacity()
    assert open_alerts("STORAGE_CAPACITY") == []


def test_threshold_per_backend(ctx, folder):
    add_backend("nas", folder, warning_percent=50, critical_percent=60)
    fill(folder, 5.5)
    check_storage_capacity()
    [alert] = open_alerts("STORAGE_CAPACITY")
    assert alert.severity == Severity.WARNING
    assert alert.details["warning_percent"] == 50


def test_unreadable_backend_alerts_others_checked(ctx, folder, tmp_path):
    add_backend("gone", tmp_path / "does-not-exist")
    add_backend("nas", folder)
    fill(folder, 9.5)
    results = check_storage_capacity()
    assert isinstance(results["gone"], str)
    [error] = open_alerts("STORAGE_ERROR")
    assert "gone" in error.message
    assert error.severity == Severity.ERROR
    [capacity] = open_alerts("STORAGE_CAPACITY")
    assert capacity.storage_backend == "nas"


def test_unreadable_alert_resolves(ctx, tmp_path):
    path = tmp_path / "later"
    add_backend("late", path)
    check_storage_capacity()
    assert len(open_alerts("STORAGE_ERROR")) == 1
    path.mkdir()
    check_storage_capacity()
    assert open_alerts("STORAGE_ERROR") == []


def test_disabled_backend_skipped(ctx, tmp_path):
    add_backend("off", tmp_path / "nowhere", enabled=False)
    assert check_storage_capacity() == {}


def add_readings(backend, per_day, days, start_used, now):
    for day in range(days + 1):
        db.session.add(UsageReading(
            backend_id=backend.id, measured_at=now - timedelta(days=days - day),
            used_bytes=int(start_used + per_day * day), capacity_bytes=backend.capacity_bytes,
        ))
    db.session.commit()


def test_forecast_linear_growth(ctx, folder):
    backend = add_backend("nas", folder, limit=1000 * MB)
    now = utcnow()
    add_readings(backend, per_day=10 * MB, days=14, start_used=100 * MB, now=now)
    forecast = forecast_full(backend, backend.capacity_bytes, now)
    assert forecast.bytes_per_day == pytest.approx(10 * MB, rel=1e-6)
    # 240 MB used now, 760 MB left at 10 MB a day.
    assert forecast.days_left == pytest.approx(76, rel=1e-3)


def test_forecast_flat_or_sparse(ctx, folder):
    backend = add_backend("nas", folder, limit=1000 * MB)
    now = utcnow()
    assert forecast_full(backend, backend.capacity_bytes, now) is None
    add_readings(backend, per_day=0, days=5, start_used=100 * MB, now=now)
    assert forecast_full(backend, backend.capacity_bytes, now).days_left is None


def test_forecast_alert_within_window(ctx, folder):
    backend = add_backend("nas", folder, limit=100 * MB)
    now = utcnow()
    # 1 MB now, growing 9 MB a day: full in about 11 days.
    add_readings(backend, per_day=9 * MB, days=3, start_used=-26 * MB, now=now - timedelta(hours=1))
    fill(folder, 1)
    check_storage_capacity(now=now)
    [alert] = open_alerts("STORAGE_FORECAST")
    assert alert.severity == Severity.WARNING
    assert 5 < alert.details["days_left"] < 14


def test_forecast_outside_window_no_alert(ctx, folder):
    backend = add_backend("nas", folder, limit=1000 * MB, forecast_warning_days=7)
    now = utcnow()
    add_readings(backend, per_day=1 * MB, days=10, start_used=0, now=now - timedelta(hours=1))
    fill(folder, 1)
    check_storage_capacity(now=now)
    assert open_alerts("STORAGE_FORECAST") == []


def test_backends_from_settings_created_once(ctx, app, monkeypatch):
    monkeypatch.setitem(app.config, "R2_BUCKET_NAME", "offsite")
    monkeypatch.setitem(app.config, "R2_QUOTA_BYTES", 10**12)
    monkeypatch.setitem(app.config, "R2_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setitem(app.config, "R2_ACCESS_KEY_ID", "key")
    monkeypatch.setitem(app.config, "R2_SECRET_ACCESS_KEY", "secret")
    check_storage_capacity()
    check_storage_capacity()
    [backend] = db.session.execute(db.select(StorageBackend)).scalars().all()
    assert (backend.name, backend.kind, backend.bucket, backend.capacity_bytes) == ("r2", "r2", "offsite", 10**12)
    # Port 1 on loopback refuses the connection: the backend is unreadable.
    [error] = open_alerts("STORAGE_ERROR")
    assert "r2" in error.message
    assert "secret" not in error.message


def test_monitor_job_retries_in_five_minutes(app, queue, monkeypatch):
    from app import jobs

    def broken(*args, **kwargs):
        raise RuntimeError("database unreachable")

    monkeypatch.setattr("app.monitoring.capacity.check_storage_capacity", broken)
    with app.app_context():
        with pytest.raises(RuntimeError):
            jobs.monitor_storage_capacity()
    [job_id] = queue.scheduled_job_registry.get_job_ids()
    job = queue.fetch_job(job_id)
    assert job.func_name == "app.jobs.monitor_storage_capacity"
    assert job.args == (2,)
    scheduled_for = queue.scheduled_job_registry.get_scheduled_time(job)
    assert timedelta(minutes=4) < scheduled_for - utcnow() <= timedelta(minutes=5)
