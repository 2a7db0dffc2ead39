"""The console's jobs, runs and silences: forms, the one-time token page, the
job page with its charts, the runs list and who may change what."""

import html
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event

from app.extensions import db
from app.models import Alert, BackupJob, BackupRun, Severity, Silence, StorageBackend, utcnow
from app.models.jobs import hash_token
from tests.conftest import login

ADMIN = ("admin@example.com", "admin password 1")
VIEWER = ("viewer@example.com", "viewer password 1")
BASE_URL = "http://backwatch.test"
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)


def csrf_token(client, url="/admin/backups/jobs/"):
    page = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def field_errors(page, field_id):
    """Return the error messages shown under the form field `field_id`, unescaped."""
    for group in page.split('<div class="form-group')[1:]:
        if f'id="{field_id}"' not in group:
            continue
        match = re.search(r'<div class="invalid-feedback">\s*<ul[^>]*>(.*?)</ul>', group, re.S)
        if match is None:
            return []
        return [html.unescape(item.strip()) for item in re.findall(r"<li>(.*?)</li>", match.group(1), re.S)]
    raise AssertionError(f"no form field {field_id} on the page")


def shown_token(page):
    return re.search(r'<code id="hook-token">([^<]+)</code>', page).group(1)


def job_count(app):
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(BackupJob))


def get_job(app, name):
    with app.app_context():
        job = db.session.execute(db.select(BackupJob).where(BackupJob.name == name)).scalar_one_or_none()
        if job is not None:
            db.session.expunge(job)
        return job


@pytest.fixture
def viewer_client(app, make_user):
    make_user(*VIEWER)
    client = app.test_client()
    assert login(client, *VIEWER).status_code == 302
    return client


def create_job(client, **fields):
    data = {"csrf_token": csrf_token(client, "/admin/backups/jobs/new/"), **fields}
    return client.post("/admin/backups/jobs/new/", data=data)


def add_runs(app, job_id, count, *, start=T0, every=timedelta(days=1), failures=(), **fields):
    """Store `count` backup runs, one per `every`. The runs at the indexes in `failures` fail."""
    with app.app_context():
        runs = []
        for index in range(count):
            failed = index in failures
            runs.append(BackupRun(
                job_id=job_id, kind="backup", status="failure" if failed else "success",
                finished_at=start + index * every, received_at=start + index * every,
                duration_seconds=None if failed else 600 + index % 7,
                size_bytes=None if failed else 5_000_000 + 1000 * (index % 5),
                exit_code=2 if failed else 0, **fields,
            ))
        db.session.add_all(runs)
        db.session.commit()


# Creating jobs


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"schedule_cron": "30 2 * * *", "schedule_timezone": "Europe/Berlin"},
         {"schedule_cron": "30 2 * * *", "schedule_timezone": "Europe/Berlin", "schedule_interval_seconds": None}),
        ({"schedule_interval_seconds": "86400", "schedule_timezone": ""},
         {"schedule_cron": None, "schedule_timezone": "UTC", "schedule_interval_seconds": 86400}),
        ({}, {"schedule_cron": None, "schedule_timezone": "UTC", "schedule_interval_seconds": None}),
    ],
    ids=["cron", "interval", "no-schedule"],
)
def test_create_job_schedule_forms(app, admin_client, fields, expected):
    response = create_job(
        admin_client, name="nightly-db", description="pg_dump of the main database",
        grace_seconds="900", max_run_seconds="7200", baseline_window="20", baseline_min_samples="5", **fields,
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    token = shown_token(page)
    job = get_job(app, "nightly-db")
    assert job is not None
    for name, value in expected.items():
        assert getattr(job, name) == value, name
    assert job.description == "pg_dump of the main database"
    assert job.grace_seconds == 900
    assert job.max_run_seconds == 7200
    assert job.baseline_window == 20
    assert job.baseline_min_samples == 5
    assert job.schedule_since is not None
    assert job.token_hash == hash_token(token)


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({"schedule_cron": "61 2 * * *"}, "schedule_cron", "is not a cron expression"),
        ({"schedule_cron": "every night"}, "schedule_cron", "is not a cron expression"),
        ({"schedule_cron": "30 2 * * *", "schedule_timezone": "Mars/Olympus_Mons"}, "schedule_timezone",
         "is not an IANA timezone name"),
        ({"schedule_cron": "30 2 * * *", "schedule_interval_seconds": "3600"}, "schedule_cron", "not both"),
        ({"schedule_interval_seconds": "30"}, "schedule_interval_seconds", "must be between 60 and"),
        ({"schedule_interval_seconds": "-3600"}, "schedule_interval_seconds", "must be between 60 and"),
        ({"schedule_interval_seconds": "daily"}, "schedule_interval_seconds", "Not a valid integer value"),
        ({"grace_seconds": "-5"}, "grace_seconds", "must be 0 or more seconds"),
        ({"max_run_seconds": "0"}, "max_run_seconds", "must be 1 or more seconds"),
        ({"baseline_window": "3", "baseline_min_samples": "5"}, "baseline_min_samples",
         "must not be more than the baseline window"),
        ({"name": "   "}, "name", "This field is required"),
    ],
    ids=["cron-minute", "cron-words", "timezone", "cron-and-interval", "interval-short", "interval-negative",
         "interval-text", "grace-negative", "max-run-zero", "min-samples-over-window", "blank-name"],
)
def test_create_job_rejects_bad_input(app, admin_client, fields, field, message):
    data = {"name": "nightly-db", **fields}
    response = create_job(admin_client, **data)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    errors = field_errors(page, field)
    assert any(message in error for error in errors), (field, errors)
    assert 'id="hook-token"' not in page
    assert job_count(app) == 0


def test_create_job_reports_timezone_and_cron(app, admin_client):
    page = create_job(
        admin_client, name="nightly-db", schedule_cron="61 2 * * *", schedule_timezone="Mars/Olympus_Mons",
    ).get_data(as_text=True)
    assert any("is not an IANA timezone name" in e for e in field_errors(page, "schedule_timezone"))
    assert any("is not a cron expression" in e for e in field_errors(page, "schedule_cron"))
    assert job_count(app) == 0


def test_create_form_has_no_save_and_continue(admin_client):
    page = admin_client.get("/admin/backups/jobs/new/").get_data(as_text=True)
    assert 'name="_add_another"' not in page
    assert 'name="_continue_editing"' not in page


def test_create_job_rejects_taken_name(app, admin_client, make_job):
    make_job("nightly-db")
    page = create_job(admin_client, name="nightly-db").get_data(as_text=True)
    assert field_errors(page, "name") == ["a job with this name already exists"]
    assert job_count(app) == 1


def test_create_job_escapes_cron_in_error(app, admin_client):
    page = create_job(admin_client, name="x", schedule_cron="<b>1 2 3</b>").get_data(as_text=True)
    assert "<b>1 2 3</b>" not in page
    assert field_errors(page, "schedule_cron")
    assert job_count(app) == 0


def test_create_form_offers_timezones(admin_client):
    page = admin_client.get("/admin/backups/jobs/new/").get_data(as_text=True)
    assert 'list="iana-timezones"' in page
    assert '<option value="Europe/Berlin">' in page


# The token page


def test_token_shown_once(app, admin_client):
    response = create_job(admin_client, name="nightly-db")
    assert response.headers["Cache-Control"] == "no-store"
    token = shown_token(response.get_data(as_text=True))
    job = get_job(app, "nightly-db")
    later_pages = [
        "/admin/backups/jobs/",
        f"/admin/backups/jobs/details/?id={job.id}",
        f"/admin/backups/jobs/edit/?id={job.id}",
        "/admin/",
    ]
    for path in later_pages:
        response = admin_client.get(path)
        assert response.status_code == 200, path
        assert token not in response.get_data(as_text=True), path


def test_snippets_contain_the_urls(app, admin_client, client):
    page = create_job(admin_client, name="nightly-db", schedule_cron="15 3 * * *").get_data(as_text=True)
    token = shown_token(page)
    text = html.unescape(page)
    hook_url = f"{BASE_URL}/hooks/{token}"
    ping_url = f"{BASE_URL}/ping/{token}"
    assert f'<code id="hook-url">{hook_url}</code>' in page
    assert f'<code id="ping-url">{ping_url}</code>' in page
    # curl: a JSON report, and pings with /start and the exit status
    assert "-H 'Content-Type: application/json'" in text
    assert f"  {hook_url}\n" in text
    assert f"URL={ping_url}\n" in text
    assert 'curl -fsS -m 10 --retry 3 -o /dev/null "$URL/start"' in text
    assert 'curl -fsS -m 10 --retry 3 -o /dev/null "$URL/$?"' in text
    assert f"15 3 * * * curl -fsS -m 10 --retry 3 -o /dev/null {ping_url}/start;" in text
    # the wrapper, with the URL in the environment
    assert f"BACKWATCH_URL={hook_url}\n" in text
    assert "15 3 * * * /usr/local/bin/backwatch-wrap --quiet --output" in text
    # borgmatic
    assert f"healthchecks:\n    ping_url: {ping_url}</pre>" in text

    # The URLs in the snippets reach the real endpoints.
    path = hook_url.removeprefix(BASE_URL)
    assert client.post(path, json={"status": "success", "duration_seconds": 842, "size_bytes": 5368709120}).status_code == 202
    assert client.post(path, json={"status": "started"}).status_code == 202
    ping_path = ping_url.removeprefix(BASE_URL)
    assert client.get(f"{ping_path}/start").status_code == 200
    assert client.get(f"{ping_path}/0").status_code == 200


def test_rotate_token_invalidates_old(app, admin_client, client, make_job):
    job_id, old_token = make_job("nightly-db")
    assert client.post(f"/hooks/{old_token}", json={"status": "success"}).status_code == 202
    token = csrf_token(admin_client, f"/admin/backups/jobs/details/?id={job_id}")
    response = admin_client.post(f"/admin/backups/jobs/{job_id}/rotate-token", data={"csrf_token": token})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    new_token = shown_token(page)
    assert new_token != old_token
    assert "The previous token no longer works" in page
    assert f"{BASE_URL}/ping/{new_token}" in page

    old_hook = client.post(f"/hooks/{old_token}", json={"status": "success"})
    assert old_hook.status_code == 404
    assert old_hook.json["error"]["field"] == "token"
    assert client.get(f"/ping/{old_token}").status_code == 404
    assert client.post(f"/hooks/{new_token}", json={"status": "success"}).status_code == 202
    details = admin_client.get(f"/admin/backups/jobs/details/?id={job_id}").get_data(as_text=True)
    assert new_token not in details


def test_rotate_token_requires_csrf(app, admin_client, client, make_job):
    job_id, old_token = make_job("nightly-db")
    response = admin_client.post(f"/admin/backups/jobs/{job_id}/rotate-token")
    assert response.status_code == 400
    assert client.post(f"/hooks/{old_token}", json={"status": "success"}).status_code == 202


def test_rotate_token_of_missing_job(admin_client):
    token = csrf_token(admin_client)
    assert admin_client.post("/admin/backups/jobs/999/rotate-token", data={"csrf_token": token}).status_code == 404


# Editing, pausing, deleting


def test_edit_schedule_restarts_clock(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db", schedule_cron="30 2 * * *", schedule_since=T0)
    url = f"/admin/backups/jobs/edit/?id={job_id}"
    form = {"csrf_token": csrf_token(admin_client, url), "name": "nightly-db", "schedule_cron": "30 2 * * *",
            "schedule_timezone": "UTC", "description": "only the text changes"}
    assert admin_client.post(url, data=form).status_code == 302
    job = get_job(app, "nightly-db")
    assert job.description == "only the text changes"
    assert job.schedule_since == T0

    before = utcnow()
    response = admin_client.post(url, data={**form, "schedule_cron": "0 4 * * *", "grace_seconds": "600"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/backups/jobs/details/?id={job_id}"
    job = get_job(app, "nightly-db")
    assert job.schedule_cron == "0 4 * * *"
    assert job.grace_seconds == 600
    assert job.schedule_since >= before


def test_edit_rejects_bad_schedule(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db", schedule_cron="30 2 * * *")
    url = f"/admin/backups/jobs/edit/?id={job_id}"
    form = {"csrf_token": csrf_token(admin_client, url), "name": "renamed", "schedule_cron": "30 2 * *",
            "schedule_timezone": "UTC"}
    response = admin_client.post(url, data=form)
    assert response.status_code == 200
    assert any("is not a cron expression" in e for e in field_errors(response.get_data(as_text=True), "schedule_cron"))
    job = get_job(app, "nightly-db")
    assert job.schedule_cron == "30 2 * * *"


def test_edit_rejects_name_of_other_job(app, admin_client, make_job):
    make_job("first")
    job_id, _ = make_job("second")
    url = f"/admin/backups/jobs/edit/?id={job_id}"
    response = admin_client.post(url, data={"csrf_token": csrf_token(admin_client, url), "name": "first"})
    assert field_errors(response.get_data(as_text=True), "name") == ["a job with this name already exists"]
    assert get_job(app, "second") is not None


def test_pause_and_unpause(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db", schedule_interval_seconds=3600, schedule_since=T0)
    token = csrf_token(admin_client, f"/admin/backups/jobs/details/?id={job_id}")
    response = admin_client.post(f"/admin/backups/jobs/{job_id}/pause", data={"csrf_token": token})
    assert response.status_code == 302
    job = get_job(app, "nightly-db")
    assert job.paused is True
    assert job.schedule_since == T0
    page = admin_client.get(f"/admin/backups/jobs/details/?id={job_id}").get_data(as_text=True)
    assert "Paused: missed and overdue runs are not checked" in page
    assert "/unpause" in page

    before = utcnow()
    response = admin_client.post(f"/admin/backups/jobs/{job_id}/unpause", data={"csrf_token": token})
    assert response.status_code == 302
    job = get_job(app, "nightly-db")
    assert job.paused is False
    assert job.schedule_since >= before


def test_pause_resolves_missed_alert(app, admin_client, make_job):
    from app.models import Alert
    from app.monitoring.missed import check_missed_backups

    job_id, _ = make_job("nightly-db", schedule_interval_seconds=3600, schedule_since=T0)
    with app.app_context():
        check_missed_backups(utcnow() + timedelta(hours=3))
        assert db.session.execute(db.select(Alert.status)).scalars().all() == ["ACTIVE"]
    token = csrf_token(admin_client, f"/admin/backups/jobs/details/?id={job_id}")
    admin_client.post(f"/admin/backups/jobs/{job_id}/pause", data={"csrf_token": token})
    with app.app_context():
        alert = db.session.execute(db.select(Alert)).scalar_one()
        assert alert.status == "RESOLVED"
        assert alert.details["resolution"] == "job paused by admin@example.com"


def test_delete_job_with_runs(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db")
    add_runs(app, job_id, 30)
    token = csrf_token(admin_client, f"/admin/backups/jobs/details/?id={job_id}")
    response = admin_client.post("/admin/backups/jobs/delete/", data={"csrf_token": token, "id": job_id})
    assert response.status_code == 302
    assert job_count(app) == 0
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(BackupRun)) == 0


# Users who are not platform admins


def test_user_cannot_change_jobs(app, viewer_client, make_job, client):
    job_id, hook_token = make_job("nightly-db")
    details = f"/admin/backups/jobs/details/?id={job_id}"
    token = csrf_token(viewer_client, details)

    # Flask-Admin's own forms send the user back without a change.
    assert viewer_client.get("/admin/backups/jobs/new/").status_code == 302
    assert viewer_client.post("/admin/backups/jobs/new/", data={"csrf_token": token, "name": "x"}).status_code == 302
    assert viewer_client.get(f"/admin/backups/jobs/edit/?id={job_id}").status_code == 302
    response = viewer_client.post(f"/admin/backups/jobs/edit/?id={job_id}", data={"csrf_token": token, "name": "renamed"})
    assert response.status_code == 302
    # The job page's own actions return 403.
    for action in ("rotate-token", "pause", "unpause", "silence"):
        response = viewer_client.post(f"/admin/backups/jobs/{job_id}/{action}", data={"csrf_token": token})
        assert response.status_code == 403, action

    assert job_count(app) == 1
    job = get_job(app, "nightly-db")
    assert job.name == "nightly-db"
    assert job.paused is False
    assert client.post(f"/hooks/{hook_token}", json={"status": "success"}).status_code == 202
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Silence)) == 0


def test_user_sees_no_change_buttons(app, viewer_client, make_job):
    job_id, _ = make_job("nightly-db")
    listing = viewer_client.get("/admin/backups/jobs/").get_data(as_text=True)
    assert "/admin/backups/jobs/new/" not in listing
    assert "/admin/backups/jobs/edit/" not in listing
    page = viewer_client.get(f"/admin/backups/jobs/details/?id={job_id}").get_data(as_text=True)
    assert "nightly-db" in page
    for marker in (f"/admin/backups/jobs/{job_id}/", "/admin/backups/jobs/edit/", "/admin/backups/jobs/delete/",
                   "/admin/backups/silences/new/", "Silence for 2 h", "Rotate"):
        assert marker not in page, marker
    silences = viewer_client.get("/admin/backups/silences/").get_data(as_text=True)
    assert "/admin/backups/silences/new/" not in silences


def test_admin_sees_change_buttons(admin_client, make_job):
    job_id, _ = make_job("nightly-db")
    page = admin_client.get(f"/admin/backups/jobs/details/?id={job_id}").get_data(as_text=True)
    for marker in (f"/admin/backups/jobs/{job_id}/rotate-token", f"/admin/backups/jobs/{job_id}/pause",
                   f"/admin/backups/jobs/{job_id}/silence", "Silence for 2 h", "/admin/backups/jobs/delete/"):
        assert marker in page, marker


def test_user_cannot_silence(app, viewer_client, make_job):
    job_id, _ = make_job("nightly-db")
    token = csrf_token(viewer_client, "/admin/backups/silences/")
    now = utcnow()
    assert viewer_client.get("/admin/backups/silences/new/").status_code == 302
    response = viewer_client.post("/admin/backups/silences/new/", data={
        "csrf_token": token, "job_id": job_id, "reason": "maintenance",
        "starts_at": f"{now:%Y-%m-%dT%H:%M}", "ends_at": f"{now + timedelta(hours=1):%Y-%m-%dT%H:%M}",
    })
    assert response.status_code == 302
    with app.app_context():
        silence = Silence(job_id=job_id, starts_at=now, ends_at=now + timedelta(hours=1), reason="by an admin")
        db.session.add(silence)
        db.session.commit()
        silence_id = silence.id
    assert viewer_client.post(f"/admin/backups/silences/{silence_id}/end", data={"csrf_token": token}).status_code == 403
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Silence)) == 1
        assert db.session.get(Silence, silence_id).ends_at > utcnow()


# The job page


def chart_svgs(page):
    return re.findall(r'<svg class="chart".*?</svg>', page, re.S)


def test_job_page_charts_without_runs(admin_client, make_job):
    job_id, _ = make_job("nightly-db")
    page = admin_client.get(f"/admin/backups/jobs/details/?id={job_id}").get_data(as_text=True)
    size, duration = chart_svgs(page)
    assert "<title>Backup size of nightly-db</title>" in size
    assert "<title>Backup duration of nightly-db</title>" in duration
    for svg in (size, duration):
        assert "No successful backup runs yet" in svg
        assert 'class="axis-label"' in svg
        assert "band" not in svg
    assert "No runs." in page


def test_job_page_charts_with_one_run(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db")
    add_runs(app, job_id, 1)
    page = admin_client.get(f"/admin/backups/jobs/details/?id={job_id}").get_data(as_text=True)
    size, duration = chart_svgs(page)
    for svg in (size, duration):
        assert "<polyline" in svg
        assert "<circle" in svg
        # One run is below the minimum sample count, so there is no baseline yet.
        assert 'class="band' not in svg
    assert "5,000,000" not in page
    assert "4.8 MiB" in page


def test_job_page_bands_follow_the_check(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db", baseline_window=2, baseline_min_samples=2)
    add_runs(app, job_id, 2)
    with app.app_context():
        db.session.execute(db.update(BackupRun).values(size_bytes=1000, duration_seconds=100.0))
        db.session.commit()
    page = admin_client.get(f"/admin/backups/jobs/details/?id={job_id}").get_data(as_text=True)
    size, duration = chart_svgs(page)
    # The mean is 1000 bytes and 100 s. The default thresholds are 20% and 50% for size,
    # and 50% and 100% above the mean for duration.
    assert "warning: 20% to 50% from the mean" in size
    assert "critical: over 50% from the mean" in size
    assert "warning: 50% to 100% above the mean" in duration
    assert "critical: over 100% above the mean" in duration
    assert size.count('<rect class="band warning"') == 2
    assert size.count('<rect class="band critical"') == 2
    assert duration.count('<rect class="band warning"') == 1
    assert duration.count('<rect class="band critical"') == 1
    assert "baseline 1000 B (mean of 2)" in size
    assert "baseline 100 s (mean of 2)" in duration


def test_job_page_charts_with_300_runs(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db")
    failures = {50, 250, 299}
    add_runs(app, job_id, 300, failures=failures)
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = admin_client.get(f"/admin/backups/jobs/details/?id={job_id}")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    size, duration = chart_svgs(page)
    for svg in (size, duration):
        points = re.search(r'<polyline class="(?:size|duration)" fill="none" points="([^"]+)"', svg).group(1)
        assert len(points.split()) == 200
        assert svg.count('<rect class="band warning"') >= 1
        assert svg.count('<rect class="band critical"') >= 1
        assert '<line class="baseline"' in svg
        # Failures since the oldest of the latest 200 successful runs are marked, and the one at index 50 is older.
        assert svg.count('<line class="marker failure"') == 2
        assert "with exit code 2" in svg
    assert "and 2 failed ones" in page
    # The chart reads its successful runs with one query on the (job, kind, status, finished) index,
    # and the page never counts the job's runs.
    chart_reads = [
        (statement, parameters) for statement, parameters in statements
        if statement.startswith("SELECT backup_runs.finished_at, backup_runs.size_bytes, backup_runs.duration_seconds")
    ]
    assert len(chart_reads) == 1
    assert not [s for s, _ in statements if "count(" in s.lower() and "backup_runs" in s]
    if engine.dialect.name == "sqlite":
        statement, parameters = chart_reads[0]
        with engine.connect() as connection:
            plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        details = " ".join(row[-1] for row in plan)
        assert "ix_backup_runs_job_kind_status_finished" in details, details
        assert "TEMP B-TREE" not in details, details


def test_job_page_lists_runs_newest_first(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db")
    add_runs(app, job_id, 30)
    page = admin_client.get(f"/admin/backups/jobs/details/?id={job_id}").get_data(as_text=True)
    runs = re.findall(r'<td><a href="/admin/backups/runs/details/\?id=(\d+)">', page)
    assert len(runs) == 25
    assert runs == sorted(runs, key=int, reverse=True)
    assert "runs_page=2" in page
    assert "2026-11-30 02:00 UTC" in page
    second = admin_client.get(f"/admin/backups/jobs/details/?id={job_id}&runs_page=2").get_data(as_text=True)
    older = re.findall(r'<td><a href="/admin/backups/runs/details/\?id=(\d+)">', second)
    assert len(older) == 5
    assert max(map(int, older)) < min(map(int, runs))
    assert "runs_page=3" not in second
    assert "runs_page=1" in second


def test_job_page_shows_schedule_alerts_and_silence(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db", schedule_cron="30 2 * * *", schedule_timezone="Europe/Berlin")
    with app.app_context():
        db.session.add(Alert(
            alert_type="BACKUP_FAILURE", severity=Severity.CRITICAL, dedup_key=f"BACKUP_FAILURE:job:{job_id}",
            message="Backup of nightly-db failed: <disk full>", job_id=job_id,
        ))
        db.session.commit()
    details = f"/admin/backups/jobs/details/?id={job_id}"
    page = admin_client.get(details).get_data(as_text=True)
    assert re.search(r"Next report expected at \d{4}-\d\d-\d\d \d\d:\d\d UTC \(\d{4}-\d\d-\d\d 02:30 Europe/Berlin\)", page)
    assert "it counts as missed after" in page
    assert "Backup of nightly-db failed: &lt;disk full&gt;" in page
    assert 'id="silenced-badge"' not in page

    token = csrf_token(admin_client, details)
    response = admin_client.post(f"/admin/backups/jobs/{job_id}/silence", data={"csrf_token": token, "reason": "<moving racks>"})
    assert response.status_code == 302
    with app.app_context():
        silence = db.session.execute(db.select(Silence)).scalar_one()
        assert silence.job_id == job_id
        assert silence.ends_at - silence.starts_at == timedelta(hours=2)
        assert silence.reason == "<moving racks>"
        ends_at = silence.ends_at
    page = admin_client.get(details).get_data(as_text=True)
    assert f'id="silenced-badge">silenced until {ends_at:%Y-%m-%d %H:%M} UTC</span>' in page
    assert "&lt;moving racks&gt;" in page
    assert "<moving racks>" not in page


# Runs


def test_runs_list_filters(app, admin_client, make_job):
    first, _ = make_job("first")
    second, _ = make_job("second")
    add_runs(app, first, 6, failures={1})
    add_runs(app, second, 3, start=T0 + timedelta(hours=1))
    with app.app_context():
        db.session.add(BackupRun(job_id=second, kind="verify", status="success", finished_at=T0 + timedelta(days=10)))
        db.session.commit()

    def listed(query=""):
        page = admin_client.get(f"/admin/backups/runs/{query}").get_data(as_text=True)
        return [int(i) for i in re.findall(r'<a href="/admin/backups/runs/details/\?id=(\d+)">\d+</a>', page)]

    everything = listed()
    assert len(everything) == 10
    # Latest finished first: the verify run finished last.
    with app.app_context():
        finished = {run.id: run.finished_at for run in db.session.execute(db.select(BackupRun)).scalars()}
    assert [finished[i] for i in everything] == sorted(finished.values(), reverse=True)

    # Flask-Admin names a filter's URL argument flt<position>_<argument of the filter>.
    view = next(v for v in app.extensions["admin"][0]._views if getattr(v, "endpoint", None) == "runs")
    arguments = {flt.name: view.get_filter_arg(index, flt) for index, flt in enumerate(view._filters)}

    assert len(listed(f"?flt0_{arguments['Job']}={second}")) == 4
    assert listed(f"?flt0_{arguments['Kind']}=verify") == [max(everything)]
    assert len(listed(f"?flt0_{arguments['Status']}=failure")) == 1
    after = (T0 + timedelta(days=3, minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert len(listed(f"?flt0_{arguments['Finished after']}={after}")) == 3
    between = f"{(T0 - timedelta(minutes=1)):%Y-%m-%d %H:%M:%S} to {(T0 + timedelta(hours=2)):%Y-%m-%d %H:%M:%S}"
    assert len(listed(f"?flt0_{arguments['Finished between']}={between}")) == 2
    combined = f"?flt0_{arguments['Job']}={first}&flt1_{arguments['Status']}=success"
    assert len(listed(combined)) == 5


def test_runs_list_sorts_by_index(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db")
    add_runs(app, job_id, 60)
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        page = admin_client.get("/admin/backups/runs/").get_data(as_text=True)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    runs = [(s, p) for s, p in statements if "FROM backup_runs" in s]
    assert runs
    assert not [s for s, _ in runs if "count(" in s.lower()]
    listing = [(s, p) for s, p in runs if "ORDER BY" in s]
    assert len(listing) == 1
    statement, parameters = listing[0]
    assert "ORDER BY backup_runs.finished_at DESC, backup_runs.id DESC" in statement
    # A full page, and a link to the next one without a total.
    assert len(re.findall(r'<a href="/admin/backups/runs/details/\?id=\d+">\d+</a>', page)) == 50
    assert "page=1" in page

    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        assert not any("TEMP B-TREE" in row[-1] for row in plan), plan


def test_run_page_shows_all_fields_escaped(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db")
    with app.app_context():
        run = BackupRun(
            job_id=job_id, kind="backup", status="failure", finished_at=T0, started_at=T0 - timedelta(minutes=5),
            duration_seconds=300, exit_code=3, error="<b>disk full</b>", log_tail="line 1\n<script>alert(1)</script>\n",
            storage_backend="local-disk", object_key="db/2026-11-01.dump", client_run_id="abc-123",
        )
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    page = admin_client.get(f"/admin/backups/runs/details/?id={run_id}").get_data(as_text=True)
    assert '<pre class="log-tail">line 1\n&lt;script&gt;alert(1)&lt;/script&gt;\n</pre>' in page
    assert "<script>alert(1)" not in page
    assert "&lt;b&gt;disk full&lt;/b&gt;" in page
    for value in ("abc-123", "local-disk", "db/2026-11-01.dump", "5 min", "2026-11-01 02:00 UTC"):
        assert value in page, value
    assert f'href="/admin/backups/jobs/details/?id={job_id}">nightly-db</a>' in page


# Silences


def silence_form(client, **fields):
    now = utcnow()
    data = {
        "csrf_token": csrf_token(client, "/admin/backups/silences/new/"),
        "starts_at": f"{now:%Y-%m-%dT%H:%M}",
        "ends_at": f"{now + timedelta(hours=3):%Y-%m-%dT%H:%M}",
        "reason": "database upgrade",
        **fields,
    }
    return client.post("/admin/backups/silences/new/", data=data)


def silence_count(app):
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(Silence))


def test_create_silence_for_job_and_backend(app, admin_client, make_job, tmp_path):
    job_id, _ = make_job("nightly-db")
    with app.app_context():
        db.session.add(StorageBackend(name="local-disk", kind="local", path=str(tmp_path)))
        db.session.commit()
    form = admin_client.get(f"/admin/backups/silences/new/?job_id={job_id}").get_data(as_text=True)
    assert re.search(rf'<option selected value="{job_id}">nightly-db</option>', form)

    response = silence_form(admin_client, job_id=job_id, url=f"/admin/backups/jobs/details/?id={job_id}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/backups/jobs/details/?id={job_id}"
    assert silence_form(admin_client, storage_backend="local-disk").status_code == 302
    with app.app_context():
        silences = db.session.execute(db.select(Silence).order_by(Silence.id)).scalars().all()
        assert [(s.job_id, s.storage_backend) for s in silences] == [(job_id, None), (None, "local-disk")]
        assert all(s.created_by.email == ADMIN[0] for s in silences)
        assert all(s.ends_at - s.starts_at == timedelta(hours=3) for s in silences)
    listing = admin_client.get("/admin/backups/silences/").get_data(as_text=True)
    assert "storage backend local-disk" in listing
    assert f'href="/admin/backups/jobs/details/?id={job_id}">nightly-db</a>' in listing


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({}, "job_id", "choose a job or a storage backend"),
        ({"job_id": "JOB", "storage_backend": "local-disk"}, "job_id", "not both"),
        ({"job_id": "999"}, "job_id", "job 999 does not exist"),
        ({"storage_backend": "nowhere"}, "storage_backend", "no storage backend is named 'nowhere'"),
        ({"job_id": "JOB", "ends_at": "START-1h"}, "ends_at", "must be after the start"),
        ({"job_id": "JOB", "starts_at": "NOW-3h", "ends_at": "NOW-1h"}, "ends_at", "is in the past"),
        ({"job_id": "JOB", "ends_at": "START+31d"}, "ends_at", "longer than 30 days"),
        ({"job_id": "JOB", "ends_at": ""}, "ends_at", "an end time is required"),
        ({"job_id": "JOB", "reason": "  "}, "reason", "a reason is required"),
    ],
    ids=["no-subject", "both-subjects", "missing-job", "missing-backend", "end-before-start", "in-the-past",
         "over-30-days", "no-end", "no-reason"],
)
def test_create_silence_rejects_bad_input(app, admin_client, make_job, tmp_path, fields, field, message):
    job_id, _ = make_job("nightly-db")
    with app.app_context():
        db.session.add(StorageBackend(name="local-disk", kind="local", path=str(tmp_path)))
        db.session.commit()
    now = utcnow().replace(second=0, microsecond=0)
    moments = {"START-1h": now - timedelta(hours=1), "NOW-3h": now - timedelta(hours=3),
               "NOW-1h": now - timedelta(hours=1), "START+31d": now + timedelta(days=31)}
    data = {}
    for name, value in fields.items():
        if value == "JOB":
            value = str(job_id)
        elif value in moments:
            value = f"{moments[value]:%Y-%m-%dT%H:%M}"
        data[name] = value
    response = silence_form(admin_client, **data)
    assert response.status_code == 200
    errors = field_errors(response.get_data(as_text=True), field)
    assert any(message in error for error in errors), (field, errors)
    assert silence_count(app) == 0


def test_long_silence_needs_confirmation(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db")
    ends_at = f"{utcnow() + timedelta(days=45):%Y-%m-%dT%H:%M}"
    assert silence_form(admin_client, job_id=job_id, ends_at=ends_at).status_code == 200
    assert silence_count(app) == 0
    assert silence_form(admin_client, job_id=job_id, ends_at=ends_at, confirm_long="y").status_code == 302
    assert silence_count(app) == 1


def test_end_silence_early(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db")
    now = utcnow()
    with app.app_context():
        silence = Silence(job_id=job_id, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=5), reason="upgrade")
        upcoming = Silence(job_id=job_id, starts_at=now + timedelta(days=1), ends_at=now + timedelta(days=2), reason="later")
        # Raised during the silence: its reminder waits for the silence's end.
        alert = Alert(
            alert_type="BACKUP_FAILURE", severity=Severity.CRITICAL, dedup_key=f"BACKUP_FAILURE:job:{job_id}",
            message="failed", job_id=job_id, next_reminder_at=now + timedelta(hours=5),
        )
        db.session.add_all([silence, upcoming, alert])
        db.session.commit()
        silence_id, upcoming_id, alert_id = silence.id, upcoming.id, alert.id

    details = f"/admin/backups/jobs/details/?id={job_id}"
    page = admin_client.get(details).get_data(as_text=True)
    assert 'id="silenced-badge"' in page
    assert f"/admin/backups/silences/{silence_id}/end" in page

    token = csrf_token(admin_client, details)
    response = admin_client.post(f"/admin/backups/silences/{silence_id}/end?next={details}", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == details
    response = admin_client.post(f"/admin/backups/silences/{upcoming_id}/end", data={"csrf_token": token})
    assert response.headers["Location"] == "/admin/backups/silences/"
    with app.app_context():
        ended = db.session.get(Silence, silence_id)
        assert ended.ends_at <= utcnow()
        assert ended.starts_at == now - timedelta(hours=1)
        cancelled = db.session.get(Silence, upcoming_id)
        assert cancelled.starts_at == cancelled.ends_at
        assert cancelled.ends_at <= utcnow()
        assert db.session.get(Alert, alert_id).next_reminder_at <= utcnow()
    page = admin_client.get(details).get_data(as_text=True)
    assert 'id="silenced-badge"' not in page


def test_end_silence_ignores_offsite_next(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db")
    now = utcnow()
    with app.app_context():
        silence = Silence(job_id=job_id, starts_at=now, ends_at=now + timedelta(hours=1), reason="x")
        db.session.add(silence)
        db.session.commit()
        silence_id = silence.id
    token = csrf_token(admin_client, "/admin/backups/silences/")
    response = admin_client.post(f"/admin/backups/silences/{silence_id}/end?next=//evil.example/", data={"csrf_token": token})
    assert response.headers["Location"] == "/admin/backups/silences/"


def test_silence_list_states(app, admin_client, make_job):
    job_id, _ = make_job("nightly-db")
    now = utcnow()
    with app.app_context():
        db.session.add_all([
            Silence(job_id=job_id, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=1), reason="active one"),
            Silence(job_id=job_id, starts_at=now + timedelta(days=1), ends_at=now + timedelta(days=2), reason="upcoming one"),
            Silence(job_id=job_id, starts_at=now - timedelta(days=2), ends_at=now - timedelta(days=1), reason="ended one"),
        ])
        db.session.commit()
    view = next(v for v in app.extensions["admin"][0]._views if getattr(v, "endpoint", None) == "silences")
    state = next(f"flt0_{view.get_filter_arg(i, flt)}" for i, flt in enumerate(view._filters) if flt.name == "State")
    everything = admin_client.get("/admin/backups/silences/").get_data(as_text=True)
    assert everything.index("upcoming one") < everything.index("active one") < everything.index("ended one")
    for value in ("active", "upcoming", "ended"):
        page = admin_client.get(f"/admin/backups/silences/?{state}={value}").get_data(as_text=True)
        shown = [reason for reason in ("active one", "upcoming one", "ended one") if reason in page]
        assert shown == [f"{value} one"], value
    # Only silences that have not ended have an "End now" button.
    assert everything.count(">End now</button>") == 2
