"""Reading and checking JSON request bodies of the API."""

from flask import request

from app.intake.text import clean_text, decode_body, parse_json_text
from app.monitoring.missed import validate_schedule

# Write requests carry a few short fields; anything near this is a mistake.
MAX_BODY_BYTES = 64 * 1024
# PostgreSQL INTEGER, the type of the job's numeric columns.
MAX_INT32 = 2**31 - 1
# Maximum grace period and maximum run time a job may set: a year and a day,
# the same as the longest interval schedule.
MAX_JOB_SECONDS = 366 * 24 * 3600
MAX_BASELINE_RUNS = 1000
JOB_NAME_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 2000
CRON_MAX_CHARS = 100
TIMEZONE_MAX_CHARS = 64

JOB_FIELDS = (
    "name",
    "description",
    "paused",
    "schedule_cron",
    "schedule_timezone",
    "schedule_interval_seconds",
    "grace_seconds",
    "max_run_seconds",
    "baseline_window",
    "baseline_min_samples",
)


class ApiError(Exception):
    """A rejected request: the HTTP status, and the field and message of the JSON error body."""

    def __init__(self, status, field, message, headers=None):
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message
        self.headers = headers or {}


def read_json_body(allowed_fields, required=True):
    """Return the request's JSON object, or {} for an empty body when not `required`.

    Raises ApiError naming the first unknown field, or "body" when the body
    is too large, not JSON or not an object.
    """
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "body", f"request body is larger than {MAX_BODY_BYTES} bytes")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "body", f"request body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if required:
            raise ApiError(400, "body", "expected a JSON object; the body is empty")
        return {}
    try:
        data = parse_json_text(decode_body(raw, request.mimetype_params.get("charset")))
    except ValueError as exc:
        raise ApiError(400, "body", str(exc)) from None
    if not isinstance(data, dict):
        raise ApiError(400, "body", f"expected a JSON object, got {_json_type(data)}")
    unknown = sorted(set(data) - set(allowed_fields))
    if unknown:
        allowed = ", ".join(allowed_fields) if allowed_fields else "none"
        raise ApiError(400, unknown[0], f"unknown field; allowed fields are: {allowed}")
    return data


def parse_job_fields(data):
    """Check a new job's fields from a JSON object; return the keyword arguments for BackupJob.create.

    Null stands for "not set", which means the setting's default.
    """
    fields = {
        "description": _text(data, "description", DESCRIPTION_MAX_CHARS),
        "paused": _boolean(data, "paused", default=False),
        "schedule_cron": _text(data, "schedule_cron", CRON_MAX_CHARS),
        "schedule_timezone": _text(data, "schedule_timezone", TIMEZONE_MAX_CHARS) or "UTC",
        "schedule_interval_seconds": _integer(data, "schedule_interval_seconds", 1, MAX_INT32),
        "grace_seconds": _integer(data, "grace_seconds", 0, MAX_JOB_SECONDS),
        "max_run_seconds": _integer(data, "max_run_seconds", 1, MAX_JOB_SECONDS),
        "baseline_window": _integer(data, "baseline_window", 1, MAX_BASELINE_RUNS),
        "baseline_min_samples": _integer(data, "baseline_min_samples", 1, MAX_BASELINE_RUNS),
    }
    if isinstance(data.get("name"), str) and not data["name"].strip():
        raise ApiError(400, "name", "must not be empty: give the job a unique name")
    name = _text(data, "name", JOB_NAME_MAX_CHARS)
    if name is None:
        raise ApiError(400, "name", "is required: a unique name for the job")

    window, minimum = fields["baseline_window"], fields["baseline_min_samples"]
    if window is not None and minimum is not None and minimum > window:
        raise ApiError(400, "baseline_min_samples", f"must be at most baseline_window ({window}), got {minimum}")

    try:
        validate_schedule(fields["schedule_cron"], fields["schedule_timezone"], fields["schedule_interval_seconds"])
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise ApiError(400, field if field in JOB_FIELDS else "schedule_cron", message or str(exc)) from None
    return name, fields


def _text(data, field, max_chars):
    """Return a stripped, non-empty string field, or None when it is absent or null."""
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, field, f"must be a string, got {_json_type(value)}")
    value = clean_text(value).strip()
    if not value:
        raise ApiError(400, field, "must not be empty; send null or leave it out instead")
    if len(value) > max_chars:
        raise ApiError(400, field, f"must be at most {max_chars} characters, got {len(value)}")
    return value


def _integer(data, field, minimum, maximum):
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, field, f"must be an integer, got {_json_type(value)}")
    if not minimum <= value <= maximum:
        raise ApiError(400, field, f"must be between {minimum} and {maximum}, got {value}")
    return value


def _boolean(data, field, default):
    value = data.get(field)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, field, f"must be true or false, got {_json_type(value)}")
    return value


def _json_type(value):
    """Return the JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
