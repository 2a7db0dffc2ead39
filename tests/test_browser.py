"""The console in a real browser: headless Chromium, driven by Playwright,
against a real Backwatch server on 127.0.0.1.

The server is werkzeug's on a thread, serving the session's app (test
database, private Redis). The module is skipped when /usr/bin/chromium or
the playwright package is missing; Playwright is never asked to download a
browser of its own.
"""

import json
import os
import re
import threading
import urllib.request

import pytest
from werkzeug.serving import make_server

from app.extensions import db
from app.models import Alert, BackupJob, BackupRun, NotificationPreference, Severity
from app.monitoring.alerts import create_backup_alert_with_notifications
from app.notifications.dispatcher import commit_and_dispatch

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing; install the Debian package chromium to run the browser tests",
                allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing; install requirements-dev.txt"
)
expect = sync_api.expect

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
# Milliseconds Playwright waits for a page or an element before the test fails.
TIMEOUT_MS = 10_000
# Seconds for a request of the test's own to the server.
REQUEST_TIMEOUT_SECONDS = 10

ADMIN = ("admin@example.com", "admin password 1")
OPERATOR = ("operator@example.com", "operator password 1")


@pytest.fixture(scope="module")
def server(app):
    """Serve the app on 127.0.0.1 on a free port; yield its base URL."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="backwatch-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    playwright = sync_api.sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser, server):
    """A page in a fresh browser context (no cookies), closed after the test even when it fails."""
    context = browser.new_context(base_url=server, viewport={"width": 1400, "height": 900})
    try:
        context.set_default_timeout(TIMEOUT_MS)
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def base_url_is_server(app, server, monkeypatch):
    """Point BASE_URL at the live server, so the token page's URLs reach it."""
    monkeypatch.setitem(app.config, "BASE_URL", server)
    return server


def log_in(page, email, password):
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def post_json(url, body):
    """POST `body` as JSON to `url` (on loopback); return (status, decoded JSON response)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
        return response.status, json.loads(response.read())


def test_login_rejects_wrong_password(page, make_user):
    make_user(*ADMIN, admin=True)
    log_in(page, ADMIN[0], "not the password")
    expect(page.locator(".flash.error")).to_have_text("Invalid email or password.")
    assert page.url.endswith("/login")

    log_in(page, *ADMIN)
    page.wait_for_url("**/admin/")
    expect(page.locator("h2").first).to_have_text("Active alerts")


def test_dashboard_counts_and_health(page, client, make_user, make_job, run_worker):
    make_user(*ADMIN, admin=True)
    _, nightly_token = make_job("nightly-db")
    _, files_token = make_job("files")
    failure = {"status": "failure", "exit_code": 1, "error": "pg_dump: connection to server refused"}
    assert client.post(f"/hooks/{nightly_token}", json=failure).status_code == 202
    assert client.post(f"/hooks/{files_token}", json={"status": "success", "size_bytes": 3 * 2**30}).status_code == 202
    # The worker's check raises the BACKUP_FAILURE alert, and no job may fail.
    assert run_worker() == []

    log_in(page, *ADMIN)
    page.wait_for_url("**/admin/")
    counts = dict(re.findall(r"(CRITICAL|ERROR|WARNING|INFO) (\d+)", page.locator("p.severity-counts").inner_text()))
    assert counts == {"CRITICAL": "1", "ERROR": "0", "WARNING": "0", "INFO": "0"}
    alert_row = page.locator("table").first.locator("tbody tr")
    assert alert_row.count() == 1
    assert "BACKUP_FAILURE" in alert_row.inner_text()
    assert "Backup of nightly-db failed: pg_dump: connection to server refused" in alert_row.inner_text()

    nightly = page.locator("tr.job-row", has=page.get_by_role("link", name="nightly-db", exact=True))
    assert nightly.locator(".health").inner_text() == "failing"
    assert nightly.get_by_role("link", name="failure").is_visible()
    assert "1 open alert" in nightly.inner_text()
    files = page.locator("tr.job-row", has=page.get_by_role("link", name="files", exact=True))
    assert files.locator(".health").inner_text() == "ok"
    assert files.get_by_role("link", name="success").is_visible()
    assert "3.0 GiB" in files.inner_text()


def test_acknowledge_from_alert_list(app, page, make_user, make_job):
    make_user(*OPERATOR)
    job_id, _ = make_job("nightly-db")
    with app.app_context():
        job = db.session.get(BackupJob, job_id)
        alert, _ = create_backup_alert_with_notifications(
            "SIZE_DEVIATION", Severity.CRITICAL, "Backup of nightly-db is 63% smaller than usual", {}, job=job,
        )
        alert_id = alert.id
        commit_and_dispatch()

    log_in(page, *OPERATOR)
    page.wait_for_url("**/admin/")
    page.goto("/admin/backups/alerts/")
    row = page.locator("tr", has=page.locator(f'input.action-checkbox[value="{alert_id}"]'))
    assert row.locator("td.col-status").inner_text().strip() == "ACTIVE"
    row.get_by_title(f"Acknowledge alert #{alert_id}").click()

    expect(page.locator(".alert-success")).to_contain_text(f"Alert #{alert_id} acknowledged.")
    expect(row.locator("td.col-status")).to_have_text("ACKNOWLEDGED")
    # An acknowledged alert can still be resolved, but not acknowledged again.
    assert row.get_by_title(f"Acknowledge alert #{alert_id}").count() == 0
    assert row.get_by_title(f"Resolve alert #{alert_id}").count() == 1

    row.get_by_role("link", name="Backup of nightly-db is 63% smaller than usual").click()
    expect(page.locator(".alert-status")).to_have_text("ACKNOWLEDGED")
    acknowledged = page.locator("dl.alert-facts dt", has_text="Acknowledged").locator("xpath=following-sibling::dd[1]")
    expect(acknowledged).to_contain_text(f"by {OPERATOR[0]}")
    with app.app_context():
        alert = db.session.get(Alert, alert_id)
        assert alert.status == "ACKNOWLEDGED"
        assert alert.acknowledged_by.email == OPERATOR[0]


def test_preference_saved_after_reload(app, page, make_user):
    user_id = make_user(*OPERATOR)
    log_in(page, *OPERATOR)
    page.wait_for_url("**/admin/")
    page.goto("/admin/preferences/")
    email_severity = page.locator('select[name="email_channel-min_severity"]')
    assert email_severity.input_value() == "WARNING"
    email_severity.select_option("CRITICAL")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Preferences saved.")).to_be_visible()

    page.reload()
    expect(page.locator('select[name="email_channel-min_severity"]')).to_have_value("CRITICAL")
    expect(page.locator('select[name="in_app-min_severity"]')).to_have_value("WARNING")
    with app.app_context():
        preference = db.session.execute(
            db.select(NotificationPreference).where(
                NotificationPreference.user_id == user_id, NotificationPreference.channel == "email"
            )
        ).scalar_one()
        assert preference.min_severity == Severity.CRITICAL
        assert preference.enabled


def test_create_job_token_works(app, page, make_user, base_url_is_server):
    make_user(*ADMIN, admin=True)
    log_in(page, *ADMIN)
    page.wait_for_url("**/admin/")
    page.goto("/admin/backups/jobs/new/")
    page.get_by_label("Name").fill("nightly-db")
    page.get_by_label("Cron expression").fill("30 1 * * *")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator("h2")).to_have_text("Created job nightly-db")
    token = page.locator("#hook-token").inner_text()
    hook_url = page.locator("#hook-url").inner_text()
    ping_url = page.locator("#ping-url").inner_text()
    assert hook_url == f"{base_url_is_server}/hooks/{token}"
    assert ping_url == f"{base_url_is_server}/ping/{token}"
    snippets = {
        section.locator("h3").inner_text(): section.locator("pre").inner_text()
        for section in page.locator("section.snippet").all()
    }
    assert hook_url in snippets["curl with a JSON report"]
    assert f"URL={ping_url}" in snippets["curl pings"]
    assert f"30 1 * * * curl -fsS -m 10 --retry 3 -o /dev/null {ping_url}/start;" in snippets["curl pings"]
    assert snippets["borgmatic"] == f"healthchecks:\n    ping_url: {ping_url}"

    # The token from the page works against the same server.
    status, stored = post_json(hook_url, {"status": "success", "duration_seconds": 842, "size_bytes": 5368709120})
    assert status == 202
    assert stored["duplicate"] is False
    with urllib.request.urlopen(f"{ping_url}/0", timeout=REQUEST_TIMEOUT_SECONDS) as ping:
        assert ping.status == 200
    with app.app_context():
        job = db.session.execute(db.select(BackupJob).where(BackupJob.name == "nightly-db")).scalar_one()
        assert (job.schedule_cron, job.schedule_timezone) == ("30 1 * * *", "Europe/Berlin")
        runs = db.session.execute(db.select(BackupRun).where(BackupRun.job_id == job.id)).scalars().all()
        assert [run.id for run in runs if run.size_bytes == 5368709120] == [stored["run_id"]]
        assert len(runs) == 2

    page.get_by_role("link", name="Go to the job's page").click()
    expect(page.locator("#next-expected")).to_contain_text("Next report expected at")
    expect(page.locator("#runs ~ table tbody tr")).to_have_count(2)
