"""Field checks and log assembly shared by the Duplicati and restic hooks."""

import re
from datetime import datetime, timezone

from app.intake.report import MAX_BIGINT, YEAR_RANGE, ReportError
from app.intake.text import clean_text, tail, truncation_marker

INTEGER_TEXT = re.compile(r"-?[0-9]{1,19}")


def integer_field(data, field, *, label=None, minimum=0):
    """Return data[field] as an int, or None when it is absent or null.

    JSON numbers and decimal text (as a text report carries them) are both
    accepted. `label` names the field in the error when it differs from the key.
    """
    label = label or field
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not INTEGER_TEXT.fullmatch(text):
            raise ReportError(label, f"must be an integer, got {value[:40]!r}")
        value = int(text)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReportError(label, f"must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ReportError(label, f"must be at least {minimum}, got {value}")
    if value > MAX_BIGINT:
        raise ReportError(label, f"must be at most {MAX_BIGINT}, got {value}")
    return value


def aware_utc(parsed, field, raw):
    """Return the aware datetime `parsed` in UTC, or raise ReportError naming `field`."""
    if parsed.tzinfo is None:
        raise ReportError(field, f"has no UTC offset: {raw[:60]!r}")
    try:
        parsed = parsed.astimezone(timezone.utc)
    except OverflowError:
        parsed = None
    if parsed is None or not YEAR_RANGE[0] <= parsed.year <= YEAR_RANGE[1]:
        raise ReportError(field, f"must be between the years {YEAR_RANGE[0]} and {YEAR_RANGE[1]}, got {raw[:60]!r}")
    return parsed


def iso_timestamp(value, field):
    """Parse an ISO 8601 / RFC 3339 timestamp with an offset into aware UTC."""
    if not isinstance(value, str):
        raise ReportError(field, f"must be an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ReportError(field, f"is not an ISO 8601 timestamp: {value[:60]!r}") from None
    return aware_utc(parsed, field, value)


def unix_timestamp(seconds, field, raw):
    """Return Unix time `seconds` as aware UTC, or raise ReportError naming `field`."""
    try:
        parsed = datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise ReportError(field, f"is out of range: {raw[:60]!r}") from None
    return aware_utc(parsed, field, raw)


def clip_error(text, max_chars):
    """Return `text` cut to its last `max_chars` characters, as the JSON hook keeps `error`."""
    text = clean_text(text)
    if len(text) > max_chars:
        return "[...] " + text[-max_chars:]
    return text


def summary_and_log(summary_lines, log_text, max_bytes):
    """Return (log_tail, cut_bytes): the summary lines, then as much of the log's end as fits.

    The summary comes first and is never cut, because it carries the figures
    that the run has no columns for. The log gets the rest of `max_bytes`.
    """
    summary = clean_text("\n".join(summary_lines)) + "\n"
    if not log_text:
        return summary, 0
    budget = max(max_bytes - len(summary.encode("utf-8")), 0)
    log_end, cut_bytes = tail(clean_text(log_text), budget)
    if cut_bytes:
        log_end = truncation_marker(cut_bytes) + log_end
    return summary + log_end, cut_bytes
