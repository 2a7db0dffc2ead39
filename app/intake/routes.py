"""HTTP endpoints that backup jobs report to."""

from flask import Blueprint, current_app, jsonify, request

from app.extensions import csrf
from app.intake.report import START_STATUS, ReportError, parse_report
from app.intake.store import record_start, store_run
from app.intake.text import decode_body, parse_json_text
from app.models import BackupJob, utcnow
from app.queue import enqueue_run_check

bp = Blueprint("intake", __name__)
# Hooks authenticate by token, not by session, so there is no CSRF to guard.
csrf.exempt(bp)


def error_response(status, field, message):
    return jsonify({"error": {"field": field, "message": message}}), status


@bp.post("/hooks/<token>")
def completion_hook(token):
    """Store one run report and return 202 with the run id (or the start id of a start report)."""
    job = BackupJob.find_by_token(token)
    if job is None:
        return error_response(404, "token", "no job has this token; check the URL the job reports to")

    raw = _read_body()
    if raw is None:
        limit = current_app.config["HOOK_MAX_BODY_BYTES"]
        return error_response(413, "body", f"request body is larger than {limit} bytes; shorten the log")
    try:
        data = parse_json_text(decode_body(raw, request.mimetype_params.get("charset")))
        received_at = utcnow()
        report = parse_report(
            data,
            received_at=received_at,
            log_max_bytes=current_app.config["LOG_TAIL_MAX_BYTES"],
            error_max_chars=current_app.config["ERROR_MAX_CHARS"],
        )
    except ReportError as exc:
        return error_response(400, exc.field, exc.message)
    except ValueError as exc:
        return error_response(400, "body", str(exc))

    if report.status == START_STATUS:
        return jsonify({"start_id": record_start(job, report, received_at)}), 202
    run_id, created = store_run(job, report, received_at)
    if created:
        enqueue_run_check(run_id)
    return jsonify({"run_id": run_id, "duplicate": not created}), 202


def _read_body():
    """Return the raw body, or None when it is over the configured limit."""
    limit = current_app.config["HOOK_MAX_BODY_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        return None
    # Read one byte past the limit so a body without Content-Length is caught too.
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        return None
    return raw
