"""Validation of the native JSON completion report."""

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from app.intake.text import clean_text, tail, truncation_marker
from app.models.jobs import RUN_KINDS, RUN_STATUSES

MAX_BIGINT = 2**63 - 1
# Exit codes: negative for signals on some platforms, up to 2**32-1 on Windows.
EXIT_CODE_RANGE = (-(2**31), 2**32 - 1)
# Ten years; anything longer is a unit mistake (milliseconds sent as seconds).
MAX_DURATION_SECONDS = 10 * 365 * 24 * 3600
# Timestamps outside these years are typing or clock mistakes.
YEAR_RANGE = (1970, 2200)
# A reported duration may differ from finished_at - started_at by rounding.
DURATION_TOLERANCE_SECONDS = 1.0

FIELDS = {
    "kind", "status", "started_at", "finished_at", "duration_seconds", "size_bytes",
    "exit_code", "error", "log", "storage_backend", "run_id", "object_key", "sha256",
}
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# A start report marks the beginning of a run; its finish comes in a later report.
START_STATUS = "started"
START_FIELDS = {"kind", "status", "started_at", "run_id"}


class ReportError(ValueError):
    """A report field is missing, malformed or inconsistent."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class Report:
    kind: str
    status: str
    started_at: datetime | None
    # None only for a start report.
    finished_at: datetime | None
    duration_seconds: float | None
    size_bytes: int | None
    exit_code: int | None
    error: str | None
    log_tail: str | None
    log_truncated_bytes: int
    storage_backend: str | None
    client_run_id: str | None
    object_key: str | None = None
    sha256: str | None = None


def parse_report(data, *, received_at, log_max_bytes, error_max_chars):
    """Validate a decoded JSON report and return a Report, or raise ReportError."""
    if not isinstance(data, dict):
        raise ReportError("body", "expected a JSON object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ReportError(unknown[0], f"unknown field; allowed fields are {', '.join(sorted(FIELDS))}")

    kind = _choice(data, "kind", RUN_KINDS, default="backup")
    status = _choice(data, "status", RUN_STATUSES + (START_STATUS,), default=None)
    if status == START_STATUS:
        return _parse_start(data, kind, received_at)
    started_at = _timestamp(data, "started_at")
    finished_at = _timestamp(data, "finished_at")
    duration = _number(data, "duration_seconds", maximum=MAX_DURATION_SECONDS)
    started_at, finished_at, duration = _resolve_times(started_at, finished_at, duration, received_at)

    size_bytes = _integer(data, "size_bytes", 0, MAX_BIGINT)
    exit_code = _integer(data, "exit_code", *EXIT_CODE_RANGE)
    if status is None:
        status = "success" if exit_code in (None, 0) else "failure"

    error = _text(data, "error")
    if error is not None and len(error) > error_max_chars:
        error = "[...] " + error[-error_max_chars:]
    log_tail, cut_bytes = None, 0
    log = _text(data, "log")
    if log is not None:
        log_tail, cut_bytes = tail(log, log_max_bytes)
        if cut_bytes:
            log_tail = truncation_marker(cut_bytes) + log_tail

    storage_backend = _name(data, "storage_backend", 100)
    object_key = _name(data, "object_key", 1024)
    if object_key is not None and storage_backend is None:
        raise ReportError("object_key", "needs storage_backend, the backend the object is on")

    return Report(
        kind=kind,
        status=status,
        started_at=started_at,
        finished_at=finished_at,
        duration_seconds=duration,
        size_bytes=size_bytes,
        exit_code=exit_code,
        error=error,
        log_tail=log_tail,
        log_truncated_bytes=cut_bytes,
        storage_backend=storage_backend,
        client_run_id=_name(data, "run_id", 200),
        object_key=object_key,
        sha256=_sha256(data),
    )


def _parse_start(data, kind, received_at):
    extra = sorted(set(data) - START_FIELDS)
    if extra:
        raise ReportError(extra[0], f"not allowed in a start report; allowed fields are {', '.join(sorted(START_FIELDS))}")
    started_at = _timestamp(data, "started_at") or received_at
    if started_at > received_at + timedelta(minutes=5):
        raise ReportError("started_at", "is in the future; check the clock of the reporting machine")
    return Report(
        kind=kind, status=START_STATUS, started_at=started_at, finished_at=None, duration_seconds=None,
        size_bytes=None, exit_code=None, error=None, log_tail=None, log_truncated_bytes=0,
        storage_backend=None, client_run_id=_name(data, "run_id", 200),
    )


def _resolve_times(started_at, finished_at, duration, received_at):
    """Fill in whichever of start, finish and duration is missing."""
    if started_at and finished_at:
        if finished_at < started_at:
            raise ReportError("finished_at", "is before started_at")
        measured = (finished_at - started_at).total_seconds()
        if duration is not None and abs(duration - measured) > DURATION_TOLERANCE_SECONDS:
            raise ReportError(
                "duration_seconds",
                f"is {duration:g} but finished_at - started_at is {measured:g}; send one or make them agree",
            )
        return started_at, finished_at, measured
    if finished_at is None:
        finished_at = received_at
        if started_at and started_at > finished_at:
            raise ReportError("started_at", "is in the future and no finished_at was sent")
    if started_at is None and duration is not None:
        started_at = finished_at - timedelta(seconds=duration)
    if started_at is not None and duration is None:
        duration = (finished_at - started_at).total_seconds()
    return started_at, finished_at, duration


def _choice(data, field, choices, default):
    value = data.get(field)
    if value is None:
        return default
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise ReportError(field, f"must be one of {', '.join(choices)}, got {value!r}")
    return value.strip().lower()


def _timestamp(data, field):
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ReportError(field, "must be an ISO 8601 string with a UTC offset")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(field, f"is not an ISO 8601 timestamp: {value[:60]!r}") from None
    if parsed.tzinfo is None:
        raise ReportError(field, f"has no UTC offset: {value[:60]!r}; add Z or +HH:MM")
    try:
        parsed = parsed.astimezone(timezone.utc)
    except OverflowError:
        parsed = None
    if parsed is None or not YEAR_RANGE[0] <= parsed.year <= YEAR_RANGE[1]:
        raise ReportError(field, f"must be between the years {YEAR_RANGE[0]} and {YEAR_RANGE[1]}")
    return parsed


def _number(data, field, maximum):
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportError(field, f"must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ReportError(field, f"must be zero or positive, got {value}")
    if value > maximum:
        raise ReportError(field, f"must be at most {maximum}, got {value}")
    return float(value)


def _integer(data, field, minimum, maximum):
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReportError(field, f"must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ReportError(field, f"must be at least {minimum}, got {value}")
    if value > maximum:
        raise ReportError(field, f"must be at most {maximum}, got {value}")
    return value


def _text(data, field):
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ReportError(field, f"must be a string, got {type(value).__name__}")
    return clean_text(value)


def _name(data, field, max_length):
    value = _text(data, field)
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise ReportError(field, "must not be empty")
    if len(value) > max_length:
        raise ReportError(field, f"must be at most {max_length} characters, got {len(value)}")
    return value


def _sha256(data):
    value = _text(data, "sha256")
    if value is None:
        return None
    value = value.strip().lower()
    if not SHA256_HEX.fullmatch(value):
        raise ReportError("sha256", "must be 64 hexadecimal characters")
    if data.get("object_key") is None:
        raise ReportError("sha256", "needs object_key, the object it is the checksum of")
    return value
