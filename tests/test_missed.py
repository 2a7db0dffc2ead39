"""Missed backups and runs that take too long, on a controlled clock."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from app.extensions import db
from app.models import Alert, AlertEvent, BackupJob, BackupRun, RunStart
from app.monitoring.checks import process_run
from app.monitoring.missed import check_missed_backups, expected_runs_between, next_expected, validate_schedule

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc


def berlin(*args):
    return datetime(*args, tzinfo=BERLIN).astimezone(UTC)


def make_scheduled_job(since, **fields):
    fields.setdefault("grace_seconds", 3600)
    job, _ = BackupJob.create("nightly-db", schedule_since=since, created_at=since, **fields)
    db.session.add(job)
    db.session.commit()
    return job


def report_run(job, at, status="success"):
    """Store and check a finished run received at `at`."""
    run = BackupRun(job_id=job.id, kind="backup", status=status, finished_at=at, received_at=at, size_bytes=100)
    db.session.add(run)
    if job.last_run_at is None or job.last_run_at < at:
        job.last_run_at = at
    db.session.commit()
    process_run(run.id, now=at)
    return run


def missed_alerts():
    return db.session.execute(db.select(Alert).where(Alert.alert_type == "MISSED_BACKUP")).scalars().all()


def tick(start, end, step=timedelta(minutes=5)):
    """Run the missed-backup check every `step` from start to end, like the scheduler."""
    now = start
    while now <= end:
        check_missed_backups(now)
        now += step


# Schedules


@pytest.mark.parametrize("cron, tz, interval, field", [
    ("61 * * * *", "UTC", None, "schedule_cron"),
    ("not cron", "UTC", None, "schedule_cron"),
    ("0 3 * * *", "Mars/Olympus", None, "schedule_timezone"),
    ("0 3 * * *", "UTC", 3600, "schedule_cron"),
    (None, "UTC", 5, "schedule_interval_seconds"),
])
def test_invalid_schedules_name_the_field(ctx, cron, tz, interval, field):
    with pytest.raises(ValueError) as error:
        validate_schedule(cron, tz, interval)
    assert str(error.value).startswith(f"{field}: ")


def test_valid_schedules_pass(ctx):
    validate_schedule("30 1 * * *", "Europe/Berlin", None)
    validate_schedule(None, "UTC", 3600)
    validate_schedule(None, "UTC", None)


def test_next_expected_follows_latest_report(ctx):
    job = make_scheduled_job(berlin(2026, 6, 1, 12, 0), schedule_cron="30 1 * * *", schedule_timezone="Europe/Berlin")
    assert next_expected(job)[0] == berlin(2026, 6, 2, 1, 30)
    assert next_expected(job)[1] == berlin(2026, 6, 2, 2, 30)
    job.last_run_at = berlin(2026, 6, 2, 1, 40)
    assert next_expected(job)[0] == berlin(2026, 6, 3, 1, 30)


def test_interval_schedule(ctx):
    since = datetime(2026, 6, 1, tzinfo=UTC)
    job = make_scheduled_job(since, schedule_interval_seconds=6 * 3600, grace_seconds=600)
    assert next_expected(job) == (since + timedelta(hours=6), since + timedelta(hours=6, minutes=10))


def test_job_without_schedule_is_not_checked(ctx):
    job = make_scheduled_job(datetime(2026, 1, 1, tzinfo=UTC))
    assert next_expected(job) is None
    assert check_missed_backups(datetime(2027, 1, 1, tzinfo=UTC)) == (0, 0)


# Missed backups


def test_missed_run_alert_and_resolution(ctx):
    job = make_scheduled_job(datetime(2026, 6, 1, 12, tzinfo=UTC), schedule_cron="0 2 * * *")
    tick(datetime(2026, 6, 2, 2, tzinfo=UTC), datetime(2026, 6, 2, 2, 55, tzinfo=UTC))
    assert missed_alerts() == []
    tick(datetime(2026, 6, 2, 3, tzinfo=UTC), datetime(2026, 6, 4, 12, tzinfo=UTC), step=timedelta(minutes=30))
    [alert] = missed_alerts()
    assert alert.status == "ACTIVE"
    assert alert.occurrences == 1
    assert alert.details["expected_at"] == "2026-06-02T02:00:00+00:00"
    raised = db.session.execute(db.select(AlertEvent).where(AlertEvent.event == "raised")).scalars().all()
    assert len(raised) == 1

    # A failed run is a report too: it resets the clock and clears the missed alert.
    report_run(job, datetime(2026, 6, 4, 13, tzinfo=UTC), status="failure")
    db.session.refresh(alert)
    assert alert.status == "RESOLVED"
    assert alert.details["resolution"].endswith("reported")
    tick(datetime(2026, 6, 4, 13, 5, tzinfo=UTC), datetime(2026, 6, 5, 2, 55, tzinfo=UTC))
    assert len(missed_alerts()) == 1


def test_paused_job_is_not_missed(ctx):
    job = make_scheduled_job(datetime(2026, 6, 1, tzinfo=UTC), schedule_interval_seconds=3600, paused=True)
    assert check_missed_backups(datetime(2026, 6, 3, tzinfo=UTC)) == (0, 0)
    assert job.paused


def test_report_on_time_every_night_raises_nothing(ctx):
    job = make_scheduled_job(berlin(2026, 10, 20, 12, 0), schedule_cron="30 1 * * *", schedule_timezone="Europe/Berlin")
    for day in range(21, 31):
        report_run(job, berlin(2026, 10, day, 1, 45))
        tick(berlin(2026, 10, day, 1, 50), berlin(2026, 10, day, 23, 50), step=timedelta(minutes=20))
    assert missed_alerts() == []


# Nights the clocks change (Europe/Berlin: back on 2026-10-25 at 03:00, forward on 2026-03-29 at 02:00)


@pytest.mark.parametrize("cron", ["30 1 * * *", "30 2 * * *"])
def test_night_clocks_go_back_expects_one_run(ctx, cron):
    job = make_scheduled_job(berlin(2026, 10, 24, 12, 0), schedule_cron=cron, schedule_timezone="Europe/Berlin")
    night = expected_runs_between(job, berlin(2026, 10, 24, 12, 0), berlin(2026, 10, 25, 12, 0))
    assert len(night) == 1


@pytest.mark.parametrize("cron", ["30 1 * * *", "30 2 * * *"])
def test_night_clocks_go_forward_expects_one_run(ctx, cron):
    job = make_scheduled_job(berlin(2026, 3, 28, 12, 0), schedule_cron=cron, schedule_timezone="Europe/Berlin")
    night = expected_runs_between(job, berlin(2026, 3, 28, 12, 0), berlin(2026, 3, 29, 12, 0))
    assert len(night) == 1


@pytest.mark.parametrize("cron", ["30 1 * * *", "30 2 * * *"])
def test_clocks_back_one_report_suffices(ctx, cron):
    job = make_scheduled_job(berlin(2026, 10, 24, 12, 0), schedule_cron=cron, schedule_timezone="Europe/Berlin")
    hour = int(cron.split()[1])
    # The run reports 20 minutes after its time, on the first pass of that hour.
    report_run(job, datetime(2026, 10, 25, hour, 50, tzinfo=BERLIN, fold=0).astimezone(UTC))
    tick(berlin(2026, 10, 25, 0, 0), berlin(2026, 10, 25, 23, 55))
    assert missed_alerts() == []


@pytest.mark.parametrize("cron", ["30 1 * * *", "30 2 * * *"])
def test_clocks_back_missed_alert_once(ctx, cron):
    make_scheduled_job(berlin(2026, 10, 24, 12, 0), schedule_cron=cron, schedule_timezone="Europe/Berlin")
    tick(berlin(2026, 10, 24, 12, 0), berlin(2026, 10, 25, 12, 0))
    [alert] = missed_alerts()
    assert alert.occurrences == 1


@pytest.mark.parametrize("cron", ["30 1 * * *", "30 2 * * *"])
def test_night_clocks_go_forward_one_report_suffices(ctx, cron):
    job = make_scheduled_job(berlin(2026, 3, 28, 12, 0), schedule_cron=cron, schedule_timezone="Europe/Berlin")
    # 02:30 does not exist that night: the run starts at 03:00 and reports at 03:10.
    report_run(job, berlin(2026, 3, 29, 3, 10))
    tick(berlin(2026, 3, 28, 12, 0), berlin(2026, 3, 29, 23, 55))
    assert missed_alerts() == []


# Runs that take too long


def test_unfinished_start_runs_too_long(ctx):
    job = make_scheduled_job(datetime(2026, 6, 1, tzinfo=UTC), max_run_seconds=2 * 3600)
    started = datetime(2026, 6, 1, 1, 0, tzinfo=UTC)
    db.session.add(RunStart(job_id=job.id, client_run_id="r1", started_at=started, received_at=started))
    db.session.commit()
    assert check_missed_backups(started + timedelta(hours=1)) == (0, 0)
    assert check_missed_backups(started + timedelta(hours=2, minutes=1)) == (0, 1)
    assert check_missed_backups(started + timedelta(hours=3)) == (0, 0)
    [alert] = db.session.execute(db.select(Alert).where(Alert.alert_type == "RUNNING_TOO_LONG")).scalars().all()
    assert alert.details["run_id"] == "r1"

    from app.intake.report import parse_report
    from app.intake.store import store_run

    finished = started + timedelta(hours=3, minutes=10)
    data = {"status": "success", "run_id": "r1", "finished_at": finished.isoformat()}
    report = parse_report(data, received_at=finished, log_max_bytes=1000, error_max_chars=1000)
    run_id, created = store_run(db.session.get(BackupJob, job.id), report, finished)
    assert created
    process_run(run_id, now=finished)
    run = db.session.get(BackupRun, run_id)
    assert run.started_at == started
    assert run.duration_seconds == 3 * 3600 + 600
    db.session.refresh(alert)
    assert alert.status == "RESOLVED"
    assert db.session.scalar(db.select(db.func.count()).select_from(RunStart)) == 0


def test_overdue_start_alerts_once(ctx):
    from app.monitoring.lifecycle import resolve_alert

    job = make_scheduled_job(datetime(2026, 6, 1, tzinfo=UTC), max_run_seconds=3600)
    started = datetime(2026, 6, 1, 1, 0, tzinfo=UTC)
    db.session.add(RunStart(job_id=job.id, started_at=started, received_at=started))
    db.session.commit()
    assert check_missed_backups(started + timedelta(hours=2)) == (0, 1)
    [alert] = db.session.execute(db.select(Alert)).scalars().all()
    # The machine rebooted mid-run, and a person resolves the alert: the abandoned start does not raise it again.
    resolve_alert(alert.id, None, now=started + timedelta(hours=3))
    db.session.commit()
    assert check_missed_backups(started + timedelta(hours=4)) == (0, 0)
    assert db.session.scalar(db.select(db.func.count()).select_from(Alert)) == 1
