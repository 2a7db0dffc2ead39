"""The Duplicati and restic hooks: POST /hooks/<token>/duplicati and /hooks/<token>/restic.

The fixtures are a report in Duplicati's JSON shape, the same report in its
text shape (the form-encoded default), and a summary line in restic's shape.
"""

import copy
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from app.extensions import db
from app.models import Alert, BackupRun, Severity, StorageBackend, UsageReading

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DUPLICATI_JSON = json.loads((FIXTURES / "duplicati-backup-report.json").read_text())
DUPLICATI_TEXT = (FIXTURES / "duplicati-backup-report.txt").read_text()
RESTIC_SUMMARY = (FIXTURES / "restic-backup-summary.json").read_text().strip()
SNAPSHOT_ID = json.loads(RESTIC_SUMMARY)["snapshot_id"]

EXAMINED_BYTES = 52613349376
TOTAL_QUOTA = 2000398934016
FREE_QUOTA = 311385399296
WARNING_LINE = (
    "2026-11-30 02:05:11 +00 - [Warning-Duplicati.Library.Main.Operation.Backup.FileBlockProcessor.FileEntry"
    "-PathProcessingFailed]: Failed to process path: /home/ann/locked.pst"
)
ERROR_LINE = (
    "2026-11-30 02:14:09 +00 - [Error-Duplicati.Library.Main.Operation.BackupHandler-FatalError]: "
    "Fatal error: The remote server returned an error: (507) Insufficient Storage."
)


# --- helpers -----------------------------------------------------------------


def duplicati_json(data=None, extra=None, log_lines=None):
    """Return the JSON fixture with `data` merged into Data (a None value removes the field)."""
    body = copy.deepcopy(DUPLICATI_JSON)
    for name, value in (data or {}).items():
        if value is None:
            body["Data"].pop(name, None)
        else:
            body["Data"][name] = value
    body["Extra"].update(extra or {})
    if log_lines is not None:
        body["LogLines"] = log_lines
    return body


def duplicati_text(replace=None, log_lines=None, prefix=""):
    """Return the text fixture with whole lines replaced: {"ParsedResult: Success": "ParsedResult: Error"}."""
    text = DUPLICATI_TEXT
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new, 1)
    if prefix:
        header, rest = text.split("\n", 1)
        text = f"{header}\n{prefix}{rest}"
    if log_lines:
        text = text.rstrip("\n") + "\n" + "\n".join(log_lines) + "\n"
    return text


def post_json(client, token, body, query=""):
    return client.post(f"/hooks/{token}/duplicati{query}", data=json.dumps(body), content_type="application/json")


def post_form(client, token, message, query="", extra="OperationName=Backup&message-parse-mode=Markdown"):
    """Post `message` as Duplicati does: percent-encoded (spaces as %20), then its extra parameters."""
    body = "message=" + quote(message, safe="")
    if extra:
        body += "&" + extra
    return client.post(
        f"/hooks/{token}/duplicati{query}", data=body, content_type="application/x-www-form-urlencoded"
    )


def post_restic(client, token, text, query=""):
    return client.post(f"/hooks/{token}/restic{query}", data=text, content_type="application/x-ndjson")


def run_count(app):
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(BackupRun))


def stored_run(app, run_id):
    with app.app_context():
        run = db.session.get(BackupRun, run_id)
        db.session.expunge(run)
        return run


def readings(app):
    with app.app_context():
        rows = db.session.execute(db.select(UsageReading).order_by(UsageReading.id)).scalars().all()
        for row in rows:
            db.session.expunge(row)
        return rows


def open_alerts(app, alert_type):
    with app.app_context():
        rows = db.session.execute(
            db.select(Alert).where(Alert.alert_type == alert_type, Alert.status != "RESOLVED")
        ).scalars().all()
        for row in rows:
            db.session.expunge(row)
        return rows


@pytest.fixture
def offsite(app, tmp_path):
    """A disabled local backend named "offsite": the hourly check skips it, reports still fill it."""
    with app.app_context():
        backend = StorageBackend(name="offsite", kind="local", path=str(tmp_path), enabled=False)
        db.session.add(backend)
        db.session.commit()
        return backend.id


def utc(text):
    return datetime.fromisoformat(text).astimezone(timezone.utc)


# --- Duplicati: JSON form ----------------------------------------------------


def test_duplicati_json_success(app, client, make_job):
    _, token = make_job()
    response = post_json(client, token, DUPLICATI_JSON)
    assert response.status_code == 202
    assert response.json["duplicate"] is False
    assert "storage_percent_used" not in response.json
    run = stored_run(app, response.json["run_id"])
    assert run.kind == "backup"
    assert run.status == "success"
    assert run.started_at == utc("2026-11-30T02:00:01.017300+00:00")
    assert run.finished_at == utc("2026-11-30T02:14:09.441200+00:00")
    assert run.duration_seconds == pytest.approx(848.4239)
    assert run.size_bytes == EXAMINED_BYTES
    assert run.error is None
    assert run.exit_code is None
    assert run.client_run_id == "duplicati-backup-1796004001"
    assert "SizeOfAddedFiles: 2097152" in run.log_tail
    assert "SizeOfExaminedFiles: 52613349376 (the run's size)" in run.log_tail
    assert "BackendStatistics.KnownFileSize: 56724045824" in run.log_tail
    assert "for Home folders" in run.log_tail
    assert "The operation Backup has completed" in run.log_tail
    assert run.checked_at is None


def test_duplicati_json_warning(app, client, make_job):
    _, token = make_job()
    body = duplicati_json(
        {"ParsedResult": "Warning", "WarningsActualLength": 2},
        log_lines=DUPLICATI_JSON["LogLines"][:1] + [WARNING_LINE, WARNING_LINE],
    )
    response = post_json(client, token, body)
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.status == "success"
    assert run.size_bytes == EXAMINED_BYTES
    assert run.error.startswith("Duplicati reported 2 warnings (the run counts as successful): ")
    assert "locked.pst" in run.error
    assert "ParsedResult Warning" in run.log_tail
    assert WARNING_LINE in run.log_tail


@pytest.mark.parametrize("result", ["Error", "Fatal"])
def test_duplicati_json_failure(app, client, make_job, run_worker, result):
    _, token = make_job()
    body = duplicati_json({"ParsedResult": result, "ErrorsActualLength": 1}, log_lines=[ERROR_LINE])
    response = post_json(client, token, body)
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.status == "failure"
    assert run.size_bytes is None
    assert run.error.startswith(f"Duplicati reported {result}: ")
    assert "(507) Insufficient Storage" in run.error

    assert run_worker() == []
    [alert] = open_alerts(app, "BACKUP_FAILURE")
    assert alert.severity == Severity.CRITICAL
    assert "Insufficient Storage" in alert.message


def test_duplicati_json_exception_unset_end(app, client, make_job):
    """A run stopped by an exception may leave EndTime unset; it ends when the report arrives."""
    _, token = make_job()
    body = duplicati_json({"EndTime": "0001-01-01T00:00:00", "Duration": None, "ParsedResult": "Error"})
    body["Exception"] = {"ClassName": "System.IO.IOException", "Message": "Disk full"}
    before = datetime.now(timezone.utc)
    response = post_json(client, token, body)
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.status == "failure"
    assert run.error == "Duplicati reported Fatal: Disk full"
    assert run.finished_at >= before - timedelta(seconds=1)
    assert run.started_at == utc("2026-11-30T02:00:01.017300+00:00")


@pytest.mark.parametrize("operation, kind", [("Restore", "restore"), ("Test", "verify")])
def test_duplicati_operation_kind(app, client, make_job, operation, kind):
    _, token = make_job()
    body = duplicati_json({"MainOperation": operation, "SizeOfRestoredFiles": 4096}, extra={"OperationName": operation})
    response = post_json(client, token, body)
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.kind == kind
    assert run.size_bytes == (4096 if kind == "restore" else None)


@pytest.mark.parametrize("operation", ["Compact", "Repair", "List"])
def test_duplicati_other_operation_not_stored(app, client, make_job, offsite, operation):
    _, token = make_job()
    body = duplicati_json({"MainOperation": operation}, extra={"OperationName": operation})
    response = post_json(client, token, body, "?storage_backend=offsite")
    assert response.status_code == 202
    assert response.json["stored"] is False
    assert response.json["operation"] == operation
    assert run_count(app) == 0
    assert readings(app) == []


def test_duplicati_repost_stored_once(app, client, make_job, offsite):
    _, token = make_job()
    first = post_json(client, token, DUPLICATI_JSON, "?storage_backend=offsite")
    again = post_json(client, token, DUPLICATI_JSON, "?storage_backend=offsite")
    # The text form of the same run has the same start second, so it is the same run.
    text = post_form(client, token, DUPLICATI_TEXT, "?storage_backend=offsite")
    assert again.json == {"run_id": first.json["run_id"], "duplicate": True}
    assert text.json == {"run_id": first.json["run_id"], "duplicate": True}
    assert run_count(app) == 1
    assert len(readings(app)) == 1


@pytest.mark.parametrize(
    "data, field, fragment",
    [
        ({"EndTime": "30.11.2026 03:14:09"}, "EndTime", "neither ISO 8601"),
        ({"BeginTime": "2026-11-30T02:00:01"}, "BeginTime", "neither ISO 8601"),
        ({"EndTime": "2026-11-30T01:00:00Z"}, "EndTime", "before BeginTime"),
        ({"BeginTime": "1900-01-01T00:00:00Z"}, "BeginTime", "between the years"),
        ({"Duration": "00:01:00"}, "Duration", "EndTime - BeginTime"),
        ({"Duration": "fourteen minutes"}, "Duration", "time span"),
        ({"ParsedResult": "Okay"}, "ParsedResult", "must be one of"),
        ({"ParsedResult": None}, "ParsedResult", "missing"),
        ({"SizeOfExaminedFiles": "lots"}, "SizeOfExaminedFiles", "integer"),
        ({"SizeOfExaminedFiles": -5}, "SizeOfExaminedFiles", "at least 0"),
    ],
)
def test_duplicati_json_invalid_400(app, client, make_job, data, field, fragment):
    _, token = make_job()
    response = post_json(client, token, duplicati_json(data))
    assert response.status_code == 400
    assert response.json["error"]["field"] == field
    assert fragment in response.json["error"]["message"]
    assert run_count(app) == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ("{not json", "body"),
        ("[1, 2]", "body"),
        ('{"Extra": {}}', "Data"),
        ('{"Data": {"ParsedResult": "Success"}}', "MainOperation"),
        ('{"Data": {"MainOperation": "Backup", "ParsedResult": "Success"}, "LogLines": "one line"}', "LogLines"),
    ],
)
def test_duplicati_json_malformed_400(app, client, make_job, body, field):
    _, token = make_job()
    response = client.post(f"/hooks/{token}/duplicati", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"]["field"] == field
    assert run_count(app) == 0


def test_duplicati_unknown_token_404(app, client, make_job):
    make_job()
    response = post_json(client, "not-a-real-token", DUPLICATI_JSON)
    assert response.status_code == 404
    assert response.json["error"]["field"] == "token"
    assert run_count(app) == 0


def test_duplicati_body_over_limit_413(app, client, make_job):
    _, token = make_job()
    limit = app.config["HOOK_MAX_BODY_BYTES"]
    body = duplicati_json(log_lines=["x" * 1000] * (limit // 1000 + 1))
    response = post_json(client, token, body)
    assert response.status_code == 413
    assert response.json["error"]["field"] == "body"

    # A chunked upload has no Content-Length; the limit applies all the same.
    message = "message=" + quote(duplicati_text(log_lines=["y" * 1000] * (limit // 1000 + 1)), safe="")
    response = client.post(
        f"/hooks/{token}/duplicati", input_stream=io.BytesIO(message.encode()),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 413
    assert run_count(app) == 0


def test_duplicati_long_log_keeps_summary(app, client, make_job):
    _, token = make_job()
    limit = app.config["LOG_TAIL_MAX_BYTES"]
    lines = [f"2026-11-30 02:01:00 +00 - [Information-Duplicati.Test-Line]: line {index}" for index in range(limit // 40)]
    response = post_json(client, token, duplicati_json(log_lines=lines + [ERROR_LINE]))
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.log_tail.startswith("Duplicati Backup report for Home folders: ParsedResult Success\n")
    assert "SizeOfAddedFiles: 2097152" in run.log_tail
    assert "bytes cut from the start of the log" in run.log_tail
    assert run.log_tail.rstrip().endswith("Insufficient Storage.")
    assert run.log_truncated_bytes > 0
    assert len(run.log_tail.encode()) < limit + 200


# --- Duplicati: form-encoded text form ---------------------------------------


def test_duplicati_form_success(app, client, make_job):
    _, token = make_job()
    response = post_form(client, token, DUPLICATI_TEXT)
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.kind == "backup"
    assert run.status == "success"
    # The text form's times are whole seconds from the Unix time in parentheses.
    assert run.started_at == utc("2026-11-30T02:00:01+00:00")
    assert run.finished_at == utc("2026-11-30T02:14:09+00:00")
    assert run.duration_seconds == pytest.approx(848.4239)
    assert run.size_bytes == EXAMINED_BYTES
    assert run.error is None
    assert "SizeOfAddedFiles: 2097152" in run.log_tail
    assert "BackendStatistics.TotalQuotaSpace: 2000398934016" in run.log_tail
    assert "The operation Backup has started" in run.log_tail


def test_duplicati_form_warning(app, client, make_job):
    _, token = make_job()
    text = duplicati_text(
        {"ParsedResult: Success": "ParsedResult: Warning", "WarningsActualLength: 0": "WarningsActualLength: 1"},
        log_lines=[WARNING_LINE],
    )
    response = post_form(client, token, text)
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.status == "success"
    assert run.error.startswith("Duplicati reported 1 warning (the run counts as successful): ")
    assert "locked.pst" in run.error


def test_duplicati_form_error(app, client, make_job):
    _, token = make_job()
    text = duplicati_text({"ParsedResult: Success": "ParsedResult: Error"}, log_lines=[ERROR_LINE])
    response = post_form(client, token, text)
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.status == "failure"
    assert run.size_bytes is None
    assert "(507) Insufficient Storage" in run.error


def test_duplicati_form_fatal_exception(app, client, make_job):
    """An operation stopped by an exception: "Failed:" and "Details:" lines come first."""
    _, token = make_job()
    text = duplicati_text(
        prefix="Failed: The backend quota has been exceeded\n"
               "Details: Duplicati.Library.Interface.QuotaExceededException: The backend quota has been exceeded\n"
               "   at Duplicati.Library.Main.Operation.BackupHandler.RunAsync(String[] sources)\n",
    )
    response = post_form(client, token, text)
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.status == "failure"
    assert run.error == "Duplicati reported Fatal: The backend quota has been exceeded"


def test_duplicati_form_parsed_result_parameter(app, client, make_job):
    """ParsedResult=%PARSEDRESULT% as an extra parameter counts when it is worse."""
    _, token = make_job()
    response = post_form(client, token, DUPLICATI_TEXT, extra="OperationName=Backup&ParsedResult=Fatal")
    assert response.status_code == 202
    assert stored_run(app, response.json["run_id"]).status == "failure"


@pytest.mark.parametrize(
    "replace, field, fragment",
    [
        ({"EndTime: 11/30/2026 3:14:09 AM (1796004849)": "EndTime: 11/30/2026 3:14:09 AM"}, "EndTime", "Unix time"),
        ({"BeginTime: 11/30/2026 3:00:01 AM (1796004001)": "BeginTime: gestern"}, "BeginTime", "Unix time"),
        ({"BeginTime: 11/30/2026 3:00:01 AM (1796004001)": "BeginTime: x (99999999999)"}, "BeginTime", "between the years"),
        ({"SizeOfExaminedFiles: 52613349376": "SizeOfExaminedFiles: 52,613,349,376"}, "SizeOfExaminedFiles", "integer"),
        ({"    FreeQuotaSpace: 311385399296": "    FreeQuotaSpace: 3000398934016"}, "BackendStatistics.FreeQuotaSpace", "more than"),
    ],
)
def test_duplicati_form_invalid_400(app, client, make_job, replace, field, fragment):
    _, token = make_job()
    response = post_form(client, token, duplicati_text(replace))
    assert response.status_code == 400
    assert response.json["error"]["field"] == field
    assert fragment in response.json["error"]["message"]
    assert run_count(app) == 0


def test_duplicati_form_without_message_400(app, client, make_job):
    _, token = make_job()
    response = client.post(
        f"/hooks/{token}/duplicati", data=urlencode({"text": DUPLICATI_TEXT}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert response.json["error"]["field"] == "message"
    assert run_count(app) == 0


def test_duplicati_form_other_operation_not_stored(app, client, make_job):
    _, token = make_job()
    text = duplicati_text({
        "Duplicati Backup report for Home folders": "Duplicati Compact report for Home folders",
        "MainOperation: Backup": "MainOperation: Compact",
    })
    response = post_form(client, token, text, extra="OperationName=Compact")
    assert response.status_code == 202
    assert response.json["stored"] is False
    assert run_count(app) == 0


# --- Duplicati: quota and storage readings -----------------------------------


def test_duplicati_quota_reading_and_warning(app, client, make_job, offsite):
    _, token = make_job()
    response = post_json(client, token, DUPLICATI_JSON, "?storage_backend=offsite")
    assert response.status_code == 202
    used = TOTAL_QUOTA - FREE_QUOTA
    assert response.json["storage_percent_used"] == pytest.approx(100 * used / TOTAL_QUOTA, abs=0.01)
    run = stored_run(app, response.json["run_id"])
    assert run.storage_backend == "offsite"

    [reading] = readings(app)
    assert reading.backend_id == offsite
    assert reading.used_bytes == used
    assert reading.capacity_bytes == TOTAL_QUOTA
    assert reading.object_count == 2196
    assert reading.backup_bytes == 56724045824
    assert reading.source == "duplicati"
    assert reading.measured_at == run.finished_at

    # 84.4% is above the default warning threshold (80%) and below critical (90%).
    [alert] = open_alerts(app, "STORAGE_CAPACITY")
    assert alert.severity == Severity.WARNING
    assert alert.storage_backend == "offsite"


def test_duplicati_quota_critical_from_form(app, client, make_job, offsite):
    _, token = make_job()
    text = duplicati_text({"    FreeQuotaSpace: 311385399296": "    FreeQuotaSpace: 100000000000"})
    response = post_form(client, token, text, "?storage_backend=offsite")
    assert response.status_code == 202
    [reading] = readings(app)
    assert reading.used_bytes == TOTAL_QUOTA - 100000000000
    [alert] = open_alerts(app, "STORAGE_CAPACITY")
    assert alert.severity == Severity.CRITICAL
    assert "offsite" in alert.message


def test_duplicati_quota_below_threshold_no_alert(app, client, make_job, offsite):
    _, token = make_job()
    body = duplicati_json()
    body["Data"]["BackendStatistics"]["FreeQuotaSpace"] = 1500000000000
    response = post_json(client, token, body, "?storage_backend=offsite")
    assert response.status_code == 202
    assert len(readings(app)) == 1
    assert open_alerts(app, "STORAGE_CAPACITY") == []


@pytest.mark.parametrize("total, free", [(-1, -1), (0, 0), (TOTAL_QUOTA, -1)])
def test_duplicati_no_quota_no_reading(app, client, make_job, offsite, total, free):
    _, token = make_job()
    body = duplicati_json()
    body["Data"]["BackendStatistics"].update({"TotalQuotaSpace": total, "FreeQuotaSpace": free})
    response = post_json(client, token, body, "?storage_backend=offsite")
    assert response.status_code == 202
    assert "storage_percent_used" not in response.json
    assert stored_run(app, response.json["run_id"]).storage_backend == "offsite"
    assert readings(app) == []


def test_duplicati_quota_without_backend_no_reading(app, client, make_job, offsite):
    _, token = make_job()
    response = post_json(client, token, DUPLICATI_JSON)
    assert response.status_code == 202
    assert readings(app) == []


@pytest.mark.parametrize("query", ["?storage_backend=nowhere", "?storage_backend=", "?storage_backend=" + "b" * 101])
def test_duplicati_unknown_backend_400(app, client, make_job, offsite, query):
    _, token = make_job()
    response = post_json(client, token, DUPLICATI_JSON, query)
    assert response.status_code == 400
    assert response.json["error"]["field"] == "storage_backend"
    assert run_count(app) == 0
    assert readings(app) == []


def test_duplicati_backend_capacity_setting_wins(app, client, make_job, offsite):
    """A capacity set on the backend in the console takes precedence, as in the hourly check."""
    _, token = make_job()
    with app.app_context():
        db.session.get(StorageBackend, offsite).capacity_bytes = 1_800_000_000_000
        db.session.commit()
    response = post_json(client, token, DUPLICATI_JSON, "?storage_backend=offsite")
    assert response.status_code == 202
    [reading] = readings(app)
    assert reading.capacity_bytes == 1_800_000_000_000
    [alert] = open_alerts(app, "STORAGE_CAPACITY")
    assert alert.severity == Severity.CRITICAL


# --- restic ------------------------------------------------------------------


def status_line(percent):
    return json.dumps({"message_type": "status", "percent_done": percent, "total_files": 20327, "files_done": 100})


def summary_line(**fields):
    summary = json.loads(RESTIC_SUMMARY)
    for name, value in fields.items():
        if value is None:
            summary.pop(name, None)
        else:
            summary[name] = value
    return json.dumps(summary)


def error_line(path):
    return json.dumps({
        "message_type": "error", "error": {"message": f"open {path}: permission denied"},
        "during": "archival", "item": path,
    })


def test_restic_summary_only(app, client, make_job):
    _, token = make_job()
    before = datetime.now(timezone.utc)
    response = post_restic(client, token, RESTIC_SUMMARY + "\n", "?exit_code=0")
    assert response.status_code == 202
    assert response.json["duplicate"] is False
    run = stored_run(app, response.json["run_id"])
    assert run.kind == "backup"
    assert run.status == "success"
    assert run.size_bytes == 8589934592
    assert run.duration_seconds == pytest.approx(41.82)
    assert run.client_run_id == SNAPSHOT_ID
    assert run.exit_code == 0
    assert run.error is None
    # Without backup_start and backup_end the run ends when the report arrives.
    assert run.finished_at >= before - timedelta(seconds=1)
    assert (run.finished_at - run.started_at).total_seconds() == pytest.approx(41.82)
    assert "data_added: 31457280" in run.log_tail
    assert "data_added_packed: 12582912" in run.log_tail
    assert "files_new: 12" in run.log_tail
    assert "total_bytes_processed: 8589934592 (the run's size)" in run.log_tail


def test_restic_stream_with_times(app, client, make_job):
    _, token = make_job()
    stream = "\n".join([
        status_line(0), status_line(0.5), status_line(1),
        summary_line(backup_start="2026-12-01T02:00:00.123456789+01:00", backup_end="2026-12-01T02:00:41.94+01:00"),
    ]) + "\n"
    response = post_restic(client, token, stream)
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.status == "success"
    assert run.exit_code is None
    assert run.started_at == utc("2026-12-01T01:00:00.123456+00:00")
    assert run.finished_at == utc("2026-12-01T01:00:41.940000+00:00")
    assert run.duration_seconds == pytest.approx(41.82)
    assert "percent_done" not in run.log_tail


def test_restic_repost_stored_once(app, client, make_job):
    _, token = make_job()
    first = post_restic(client, token, RESTIC_SUMMARY)
    again = post_restic(client, token, status_line(1) + "\n" + RESTIC_SUMMARY)
    assert again.json == {"run_id": first.json["run_id"], "duplicate": True}
    assert run_count(app) == 1


def test_restic_error_lines_without_exit_code_fail(app, client, make_job, run_worker):
    _, token = make_job()
    stream = "\n".join([status_line(0.2), error_line("/srv/a.db"), error_line("/srv/b.db"), RESTIC_SUMMARY])
    response = post_restic(client, token, stream)
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.status == "failure"
    assert run.size_bytes is None
    assert run.error.startswith("restic reported 2 error lines, the first: open /srv/a.db: permission denied")
    assert "error: open /srv/b.db: permission denied (archival, /srv/b.db)" in run.log_tail

    assert run_worker() == []
    [alert] = open_alerts(app, "BACKUP_FAILURE")
    assert "permission denied" in alert.message


def test_restic_exit_code_3_is_warning(app, client, make_job):
    _, token = make_job()
    stream = "\n".join([error_line("/srv/locked"), RESTIC_SUMMARY])
    response = post_restic(client, token, stream, "?exit_code=3")
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.status == "success"
    assert run.exit_code == 3
    assert run.size_bytes == 8589934592
    assert run.error.startswith("restic could not read some source data (exit code 3)")
    assert "/srv/locked" in run.error


@pytest.mark.parametrize("query, exit_code", [("", None), ("?exit_code=1", 1), ("?exit_code=130", 130)])
def test_restic_missing_summary_fails(app, client, make_job, query, exit_code):
    _, token = make_job()
    response = post_restic(client, token, status_line(0.1) + "\n" + status_line(0.4) + "\n", query)
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.status == "failure"
    assert run.exit_code == exit_code
    assert run.size_bytes is None
    assert run.client_run_id is None
    assert "no summary line" in run.error


def test_restic_empty_body_fails(app, client, make_job):
    _, token = make_job()
    response = post_restic(client, token, "", "?exit_code=1")
    assert response.status_code == 202
    run = stored_run(app, response.json["run_id"])
    assert run.status == "failure"
    assert run.error == "restic exited with code 1 and printed no summary line"


def test_restic_nonzero_exit_with_summary_fails(app, client, make_job):
    _, token = make_job()
    response = post_restic(client, token, RESTIC_SUMMARY, "?exit_code=1")
    run = stored_run(app, response.json["run_id"])
    assert run.status == "failure"
    assert run.error == "restic exited with code 1"


def test_restic_exit_error_line(app, client, make_job):
    _, token = make_job()
    stream = "\n".join([
        status_line(0),
        json.dumps({"message_type": "exit_error", "code": 12, "message": "Fatal: wrong password or no key found"}),
    ])
    response = post_restic(client, token, stream)
    run = stored_run(app, response.json["run_id"])
    assert run.status == "failure"
    assert run.exit_code == 12
    assert run.error == "Fatal: wrong password or no key found"


def test_restic_plain_text_errors_kept(app, client, make_job):
    """restic before 0.17 prints its errors on stderr as plain text."""
    _, token = make_job()
    stream = "nonexist does not exist, skipping\nFatal: all target directories/files do not exist\n"
    response = post_restic(client, token, stream, "?exit_code=1")
    run = stored_run(app, response.json["run_id"])
    assert run.status == "failure"
    assert run.error.endswith("Fatal: all target directories/files do not exist")
    assert "nonexist does not exist, skipping" in run.log_tail


@pytest.mark.parametrize(
    "text, query, field",
    [
        (RESTIC_SUMMARY, "?exit_code=zero", "exit_code"),
        (RESTIC_SUMMARY, "?exit_code=99999999999", "exit_code"),
        (summary_line(snapshot_id="not-a-snapshot"), "", "snapshot_id"),
        (summary_line(total_bytes_processed=-1), "", "total_bytes_processed"),
        (summary_line(data_added="many"), "", "data_added"),
        (summary_line(total_duration="forty"), "", "total_duration"),
        (summary_line(backup_start="yesterday", backup_end="2026-12-01T02:00:41+01:00"), "", "backup_start"),
        (summary_line(backup_start="2026-12-01T03:00:00+01:00", backup_end="2026-12-01T02:00:41+01:00"), "", "backup_end"),
    ],
)
def test_restic_invalid_400(app, client, make_job, text, query, field):
    _, token = make_job()
    response = post_restic(client, token, text, query)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field
    assert run_count(app) == 0


def test_restic_unknown_token_404(app, client, make_job):
    make_job()
    response = post_restic(client, "not-a-real-token", RESTIC_SUMMARY)
    assert response.status_code == 404
    assert response.json["error"]["field"] == "token"
    assert run_count(app) == 0


def test_restic_body_over_limit_413(app, client, make_job):
    _, token = make_job()
    limit = app.config["HOOK_MAX_BODY_BYTES"]
    lines = [status_line(index / 100000) for index in range(limit // 60 + 1)]
    response = post_restic(client, token, "\n".join(lines + [RESTIC_SUMMARY]))
    assert response.status_code == 413
    assert response.json["error"]["field"] == "body"
    assert run_count(app) == 0


def test_duplicati_backend_name_with_control_character(app, client, make_job, offsite):
    _, token = make_job()
    response = post_json(client, token, DUPLICATI_JSON, "?storage_backend=off%00site")
    assert response.status_code == 400
    assert response.json["error"]["field"] == "storage_backend"
    assert readings(app) == []
