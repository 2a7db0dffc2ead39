"""The output of `restic backup --json`, posted as it was printed.

restic prints JSON lines: "status" lines while it runs, "error" lines for
items it could not read, "verbose_status" lines with --verbose, and one
"summary" line at the end of a backup that finished. Newer versions print
an "exit_error" line on stderr before exiting on a fatal error. Older ones
(0.14 among them) print their errors on stderr as plain text, so lines
that are not JSON are kept in the log. Field names follow restic's
"Scripting" documentation (doc/075_scripting.rst).
"""

import json
import math
import re
from datetime import timedelta

from app.intake.fields import clip_error, integer_field, iso_timestamp, summary_and_log
from app.intake.report import EXIT_CODE_RANGE, MAX_DURATION_SECONDS, Report, ReportError
from app.intake.text import clean_text

# Exit code 3: the snapshot was made, but some source data could not be read.
EXIT_PARTIAL = 3
# restic 0.14 prints the short id (8 hex digits), later versions the full 64.
SNAPSHOT_ID = re.compile(r"[0-9a-f]{8,64}")
SUMMARY_COUNTS = (
    "files_new", "files_changed", "files_unmodified", "dirs_new", "dirs_changed", "dirs_unmodified",
    "data_blobs", "tree_blobs", "data_added", "data_added_packed", "total_files_processed",
    "total_bytes_processed",
)
# At most this many error lines are copied into the run's log.
MAX_ERROR_LINES = 50


def parse_restic_output(text, exit_code, *, received_at, log_max_bytes, error_max_chars):
    """Build a Report from restic's JSON lines and the exit code passed with them (None if not passed).

    Raises ReportError for a summary line with invalid figures.
    """
    summary, errors, exit_error, other_lines = _split_lines(text)
    if exit_code is None and exit_error is not None:
        exit_code = _exit_error_code(exit_error)

    if summary is None or exit_error is not None:
        status = "failure"
    elif exit_code is None:
        status = "failure" if errors else "success"
    else:
        status = "success" if exit_code in (0, EXIT_PARTIAL) else "failure"

    figures = _summary_figures(summary) if summary is not None else {}
    started_at, finished_at, duration = _times(summary, figures, received_at)
    error = _error_text(status, summary, errors, exit_error, exit_code, other_lines)
    log_tail, cut_bytes = summary_and_log(
        _summary_lines(figures, summary, errors, exit_code),
        "\n".join(other_lines),
        log_max_bytes,
    )
    return Report(
        kind="backup",
        status=status,
        started_at=started_at,
        finished_at=finished_at,
        duration_seconds=duration,
        size_bytes=figures.get("total_bytes_processed") if status == "success" else None,
        exit_code=exit_code,
        error=clip_error(error, error_max_chars) if error else None,
        log_tail=log_tail,
        log_truncated_bytes=cut_bytes,
        storage_backend=None,
        # restic's snapshot id is unique, so a report posted again is stored once.
        client_run_id=figures.get("snapshot_id"),
    )


def parse_exit_code(value):
    """Return the `exit_code` query parameter as an int, or None when it is absent."""
    if value is None:
        return None
    text = value.strip()
    if not re.fullmatch(r"-?[0-9]{1,10}", text):
        raise ReportError("exit_code", f"must be an integer, got {value[:40]!r}")
    code = int(text)
    low, high = EXIT_CODE_RANGE
    if not low <= code <= high:
        raise ReportError("exit_code", f"must be between {low} and {high}, got {code}")
    return code


def _split_lines(text):
    """Return (last summary, error lines, exit_error line, other lines) of restic's output."""
    summary, errors, exit_error, other = None, [], None, []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        message = None
        if stripped.startswith("{"):
            try:
                message = json.loads(stripped)
            except (ValueError, RecursionError):
                message = None
        if not isinstance(message, dict):
            other.append(clean_text(stripped))
            continue
        message_type = message.get("message_type")
        if message_type == "summary":
            summary = message
        elif message_type == "error":
            errors.append(message)
        elif message_type == "exit_error":
            exit_error = message
        elif message_type not in ("status", "verbose_status"):
            other.append(clean_text(stripped))
    return summary, errors, exit_error, other


def _exit_error_code(exit_error):
    code = exit_error.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        return None
    low, high = EXIT_CODE_RANGE
    return code if low <= code <= high else None


def _summary_figures(summary):
    """Validate the summary line's counts, duration, times and snapshot id."""
    figures = {}
    for name in SUMMARY_COUNTS:
        value = integer_field(summary, name)
        if value is not None:
            figures[name] = value

    duration = summary.get("total_duration")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
            raise ReportError("total_duration", f"must be a number of seconds, got {str(duration)[:40]!r}")
        if not 0 <= duration <= MAX_DURATION_SECONDS:
            raise ReportError("total_duration", f"must be between 0 and {MAX_DURATION_SECONDS} s, got {duration}")
        figures["total_duration"] = float(duration)

    for name in ("backup_start", "backup_end"):
        if summary.get(name) is not None:
            figures[name] = iso_timestamp(summary[name], name)

    snapshot_id = summary.get("snapshot_id")
    if snapshot_id is not None:
        if not isinstance(snapshot_id, str) or not SNAPSHOT_ID.fullmatch(snapshot_id):
            raise ReportError(
                "snapshot_id", f"must be 8 to 64 lowercase hexadecimal digits, got {str(snapshot_id)[:70]!r}"
            )
        figures["snapshot_id"] = snapshot_id
    return figures


def _times(summary, figures, received_at):
    """Return (started_at, finished_at, duration_seconds).

    Only newer restic versions print backup_start and backup_end. Without
    them the run ends when the report arrived and starts total_duration earlier.
    """
    if summary is None:
        return None, received_at, None
    start, end = figures.get("backup_start"), figures.get("backup_end")
    duration = figures.get("total_duration")
    if start is not None and end is not None:
        if end < start:
            raise ReportError("backup_end", "is before backup_start")
        return start, end, duration if duration is not None else (end - start).total_seconds()
    if end is None:
        end = received_at
    if start is None and duration is not None:
        start = end - timedelta(seconds=duration)
    return start, end, duration


def _error_message(error_line):
    """Return the text of one "error" line: error.message, or what restic was doing and the item."""
    detail = error_line.get("error")
    if isinstance(detail, dict):
        # Without a message, the text is what restic was doing and the item.
        detail = detail.get("message")
    parts = [part for part in (error_line.get("during"), error_line.get("item")) if isinstance(part, str) and part]
    text = detail if isinstance(detail, str) and detail else "error"
    return f"{text} ({', '.join(parts)})" if parts else text


def _error_text(status, summary, errors, exit_error, exit_code, other_lines):
    """Return why the run failed, or the warning of a run that succeeded with errors."""
    first_error = None
    if errors:
        first_error = _error_message(errors[0])
    elif other_lines:
        # restic 0.14 prints its errors on stderr as plain text, the fatal one last.
        first_error = other_lines[-1]
    count = len(errors)
    plural = "s" if count != 1 else ""
    if status == "success":
        if exit_code == EXIT_PARTIAL:
            text = "restic could not read some source data (exit code 3); the snapshot was made without it"
            return f"{text}; {count} error line{plural}, the first: {first_error}" if count else text
        if count:
            return f"restic printed {count} error line{plural} but exited 0, the first: {first_error}"
        return None
    if exit_error is not None and isinstance(exit_error.get("message"), str):
        return exit_error["message"]
    if summary is None:
        reason = "restic printed no summary line, so the backup did not finish"
        if exit_code is not None:
            reason = f"restic exited with code {exit_code} and printed no summary line"
        return f"{reason}: {first_error}" if first_error else reason
    if count:
        return f"restic reported {count} error line{plural}, the first: {first_error}"
    return f"restic exited with code {exit_code}"


def _summary_lines(figures, summary, errors, exit_code):
    if summary is None:
        lines = ["restic backup: no summary line"]
    else:
        lines = [f"restic backup: snapshot {figures.get('snapshot_id', '(none)')}"]
        for name in SUMMARY_COUNTS:
            if name in figures:
                note = " (the run's size)" if name == "total_bytes_processed" else ""
                lines.append(f"{name}: {figures[name]}{note}")
        if "total_duration" in figures:
            lines.append(f"total_duration: {figures['total_duration']:g} s")
        if summary.get("dry_run") is True:
            lines.append("dry_run: true (no snapshot was written)")
    if exit_code is not None:
        lines.append(f"exit code: {exit_code}")
    for error_line in errors[:MAX_ERROR_LINES]:
        lines.append(f"error: {_error_message(error_line)}")
    if len(errors) > MAX_ERROR_LINES:
        lines.append(f"... and {len(errors) - MAX_ERROR_LINES} more error lines")
    return lines
