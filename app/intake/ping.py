"""Healthchecks.io-compatible ping endpoints.

Tools written for healthchecks.io (borgmatic's healthchecks hook, runitor,
`curl` lines in crontabs) report to `/ping/<token>` with the job's hook
token in place of the check's UUID. Each endpoint takes HEAD, GET or POST:

- `/ping/<token>` and `/ping/<token>/0` store a successful run;
- `/ping/<token>/fail` and `/ping/<token>/<1-255>` store a failed run;
- `/ping/<token>/start` records the start that the next finish is paired with;
- `/ping/<token>/log` adds its body to the log of the run going on.

`?rid=<id>` is the client's run id. It pairs a start with its finish when
runs of one job overlap. A POST body becomes the run's log. Responses are
plain text, as healthchecks.io sends them: "OK", or what went wrong.
"""

import logging
import re

from flask import current_app, request

from app.intake.report import START_STATUS, Report
from app.intake.routes import _read_body, bp
from app.intake.store import append_start_log, record_start, store_run
from app.intake.text import clean_text, decode_body, tail, truncation_marker
from app.models import BackupJob, utcnow
from app.queue import enqueue_run_check

log = logging.getLogger(__name__)

PING_METHODS = ["HEAD", "GET", "POST"]
EXIT_STATUS = re.compile(r"-?[0-9]+")
EXIT_STATUS_RANGE = (0, 255)
# The length limit of BackupRun.client_run_id and RunStart.client_run_id.
RID_MAX_CHARS = 200
TEXT_PLAIN = "text/plain; charset=utf-8"
# The status _parse_action returns for /log, besides the run statuses and START_STATUS.
LOG_PING = "log"


class PingError(ValueError):
    """A rejected ping URL or body, with the HTTP status to return."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@bp.route("/ping/<token>", methods=PING_METHODS)
@bp.route("/ping/<token>/<action>", methods=PING_METHODS)
def ping(token, action=None):
    """Store a start or a finished run of the job whose hook token is `token`."""
    received_at = utcnow()
    job = BackupJob.find_by_token(token)
    if job is None:
        return _text_response(404, "not found")
    try:
        status, exit_code = _parse_action(action)
        rid = _parse_rid(request.args.get("rid"))
        log_text = _read_log() if request.method == "POST" else None
    except PingError as exc:
        return _text_response(exc.status, exc.message)

    if status == LOG_PING:
        # The finish takes this text with the start. Without a start the text
        # belongs to no run, and the response is OK, as healthchecks.io sends.
        if log_text and not append_start_log(job, rid, log_text):
            log.info("Job %s: log ping with no run going on, %d characters not kept", job.id, len(log_text))
        return _ok_response()
    if status == START_STATUS:
        record_start(job, _start_report(received_at, rid, log_text), received_at)
        return _ok_response()

    report = _finish_report(status, exit_code, log_text, received_at, rid)
    run_id, created = store_run(job, report, received_at)
    if created:
        enqueue_run_check(run_id)
    return _ok_response()


def _parse_action(action):
    """Return (status, exit code) for the part of the URL after the token."""
    if action is None:
        return "success", None
    if action == "start":
        return START_STATUS, None
    if action == "fail":
        return "failure", None
    if action == "log":
        return LOG_PING, None
    if not EXIT_STATUS.fullmatch(action):
        raise PingError(
            400, f"unknown ping {action[:40]!r}; use start, fail, log or an exit status from 0 to 255"
        )
    low, high = EXIT_STATUS_RANGE
    # Longer digit strings are out of range anyway, and int() of one over
    # 4300 digits raises ValueError.
    if len(action) > 10 or not low <= int(action) <= high:
        raise PingError(400, f"exit status must be between {low} and {high}, got {action[:40]}")
    exit_code = int(action)
    return ("success" if exit_code == 0 else "failure"), exit_code


def _parse_rid(rid):
    """Return the client run id from `?rid=`, or None when there is none."""
    if rid is None:
        return None
    if not 1 <= len(rid) <= RID_MAX_CHARS:
        raise PingError(400, f"rid must be 1 to {RID_MAX_CHARS} characters, got {len(rid)}")
    if not rid.isprintable():
        raise PingError(400, "rid must contain only printable characters")
    return rid


def _read_log():
    """Return the POST body as text, or None if it is empty; raise PingError if it is too large."""
    raw = _read_body()
    if raw is None:
        limit = current_app.config["HOOK_MAX_BODY_BYTES"]
        raise PingError(413, f"request body is larger than {limit} bytes; shorten the log")
    if not raw:
        return None
    return clean_text(decode_body(raw, request.mimetype_params.get("charset")))


def _start_report(received_at, rid, log_text):
    return Report(
        kind="backup", status=START_STATUS, started_at=received_at, finished_at=None,
        duration_seconds=None, size_bytes=None, exit_code=None, error=None, log_tail=log_text,
        log_truncated_bytes=0, storage_backend=None, client_run_id=rid,
    )


def _finish_report(status, exit_code, log_text, received_at, rid):
    """Build the Report of a finish ping. store_run takes the start time from the paired start."""
    log_tail, cut_bytes = None, 0
    if log_text is not None:
        log_tail, cut_bytes = tail(log_text, current_app.config["LOG_TAIL_MAX_BYTES"])
        if cut_bytes:
            log_tail = truncation_marker(cut_bytes) + log_tail
    return Report(
        kind="backup", status=status, started_at=None, finished_at=received_at,
        duration_seconds=None, size_bytes=None, exit_code=exit_code, error=None, log_tail=log_tail,
        log_truncated_bytes=cut_bytes, storage_backend=None, client_run_id=rid,
    )


def _text_response(status, body):
    return body, status, {"Content-Type": TEXT_PLAIN}


def _ok_response():
    """Return 200 "OK" with the number of log bytes this server keeps.

    healthchecks.io sends Ping-Body-Limit, and runitor cuts the output it
    sends with the next ping to that many bytes.
    """
    limit = min(current_app.config["LOG_TAIL_MAX_BYTES"], current_app.config["HOOK_MAX_BODY_BYTES"])
    return "OK", 200, {"Content-Type": TEXT_PLAIN, "Ping-Body-Limit": str(limit)}
