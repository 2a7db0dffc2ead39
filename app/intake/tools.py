"""Hooks that take the reports backup tools send on their own, so their scripts need no rewrite.

- `POST /hooks/<token>/duplicati`: what Duplicati's --send-http-url posts,
  in its JSON or its form-encoded form. `?storage_backend=NAME` names the
  backend the backup went to. When the report carries the backend's quota,
  a usage reading is stored for that backend and its capacity alerts apply.
- `POST /hooks/<token>/restic`: the output of `restic backup --json`, the
  whole stream or only its summary line, with `?exit_code=` for restic's
  exit code.

Both respond like `POST /hooks/<token>`: 202 with the run id, or a 4xx with
`{"error": {"field", "message"}}` and nothing stored.
"""

import dataclasses
import logging

from flask import current_app, jsonify, request

from app.extensions import db
from app.intake.duplicati import parse_duplicati_report
from app.intake.report import ReportError
from app.intake.restic import parse_exit_code, parse_restic_output
from app.intake.routes import _read_body, bp, error_response
from app.intake.store import store_run
from app.intake.text import decode_body
from app.models import BackupJob, StorageBackend, utcnow
from app.monitoring.capacity import record_usage
from app.notifications.dispatcher import commit_and_dispatch
from app.queue import enqueue_run_check
from app.storage import StorageUsage

log = logging.getLogger(__name__)

# The length limit of StorageBackend.name and BackupRun.storage_backend.
BACKEND_NAME_MAX_CHARS = 100


class HookError(Exception):
    """A request that a hook rejects; `status` is the HTTP status of the response."""

    def __init__(self, status, field, message):
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message


@bp.post("/hooks/<token>/duplicati")
def duplicati_hook(token):
    """Store the run of a Duplicati report, and its backend's quota as a usage reading."""
    try:
        job = _job(token)
        backend = _storage_backend(request.args.get("storage_backend"))
        text = _body_text()
        received_at = utcnow()
        parsed = parse_duplicati_report(
            text,
            request.mimetype,
            received_at=received_at,
            log_max_bytes=current_app.config["LOG_TAIL_MAX_BYTES"],
            error_max_chars=current_app.config["ERROR_MAX_CHARS"],
        )
    except HookError as exc:
        return _rejected("Duplicati", exc.status, exc.field, exc.message)
    except ReportError as exc:
        return _rejected("Duplicati", 400, exc.field, exc.message)
    except ValueError as exc:
        return _rejected("Duplicati", 400, "body", str(exc))

    if parsed.report is None:
        # With --send-http-any-operation Duplicati reports every operation,
        # List and Compact included. Rejecting them would fill Duplicati's
        # log with failed reports and retries, so they are acknowledged and dropped.
        log.info("Job %s: Duplicati %s report not stored (only Backup, Restore and Test are)", job.id, parsed.operation)
        return jsonify({
            "stored": False,
            "operation": parsed.operation,
            "message": f"{parsed.operation} reports are not stored; only Backup, Restore and Test (verify) are",
        }), 202

    report = parsed.report
    if backend is not None:
        report = dataclasses.replace(report, storage_backend=backend.name)
    run_id, created = store_run(job, report, received_at)
    if created:
        enqueue_run_check(run_id)
    answer = {"run_id": run_id, "duplicate": not created}
    # A report sent again carries the reading already stored, so only a new run adds one.
    if created and backend is not None and parsed.quota is not None:
        answer["storage_percent_used"] = _record_quota(backend.id, parsed.quota, report.finished_at, received_at)
    return jsonify(answer), 202


@bp.post("/hooks/<token>/restic")
def restic_hook(token):
    """Store the run that the output of `restic backup --json` describes."""
    try:
        job = _job(token)
        exit_code = parse_exit_code(request.args.get("exit_code"))
        text = _body_text()
        received_at = utcnow()
        report = parse_restic_output(
            text,
            exit_code,
            received_at=received_at,
            log_max_bytes=current_app.config["LOG_TAIL_MAX_BYTES"],
            error_max_chars=current_app.config["ERROR_MAX_CHARS"],
        )
    except HookError as exc:
        return _rejected("restic", exc.status, exc.field, exc.message)
    except ReportError as exc:
        return _rejected("restic", 400, exc.field, exc.message)

    run_id, created = store_run(job, report, received_at)
    if created:
        enqueue_run_check(run_id)
    return jsonify({"run_id": run_id, "duplicate": not created}), 202


def _rejected(tool, status, field, message):
    """Log a rejected report (without the URL, which contains the token) and return the error response."""
    log.info("%s report rejected with %s: %s: %s", tool, status, field, message)
    return error_response(status, field, message)


def _job(token):
    job = BackupJob.find_by_token(token)
    if job is None:
        raise HookError(404, "token", "no job has this token; check the URL the job reports to")
    return job


def _body_text():
    """Return the request body as text, within the hooks' size limit."""
    raw = _read_body()
    if raw is None:
        limit = current_app.config["HOOK_MAX_BODY_BYTES"]
        raise HookError(413, "body", f"request body is larger than {limit} bytes; send fewer log lines")
    return decode_body(raw, request.mimetype_params.get("charset"))


def _storage_backend(name):
    """Return the StorageBackend that `?storage_backend=` names, or None when it is absent.

    The backend must exist. Creating one here is not possible: every
    backend has a kind the hourly capacity check can read (local, r2, b2),
    and one it cannot read would stop that check for all backends.
    """
    if name is None:
        return None
    name = name.strip()
    if not name or len(name) > BACKEND_NAME_MAX_CHARS:
        raise HookError(400, "storage_backend", f"must be 1 to {BACKEND_NAME_MAX_CHARS} characters")
    if not name.isprintable():
        # PostgreSQL text cannot hold NUL, and no backend name has control characters.
        raise HookError(400, "storage_backend", "must contain only printable characters")
    backend = db.session.execute(
        db.select(StorageBackend).where(StorageBackend.name == name)
    ).scalar_one_or_none()
    if backend is None:
        raise HookError(
            400, "storage_backend",
            f"no storage backend is named {name!r}; create it in the console (Storage) or fix the name in the URL",
        )
    return backend


def _record_quota(backend_id, quota, measured_at, now):
    """Store the quota as a usage reading of the backend and apply its capacity rules; return percent used."""
    backend = db.session.get(StorageBackend, backend_id)
    usage = StorageUsage(
        used_bytes=quota.total_bytes - quota.free_bytes,
        capacity_bytes=quota.total_bytes,
        object_count=quota.file_count,
        measured_at=measured_at,
        backup_bytes=quota.file_bytes,
    )
    percent = record_usage(backend, usage, now, source="duplicati")
    commit_and_dispatch()
    log.info("Storage %s: reading from a Duplicati report stored (%s of %s bytes used)",
             backend.name, usage.used_bytes, usage.capacity_bytes)
    return None if percent is None else round(percent, 2)
