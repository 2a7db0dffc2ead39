"""Duplicati's backup reports, as its --send-http-url option posts them.

Duplicati posts one of two forms:

- JSON (`--send-http-result-output-format=Json`): an object with "Data" (the
  operation's result), "Extra" (OperationName, backup-name and other names)
  and "LogLines" (the log lines at the report's log level).
- Form-encoded (the default): `message=<text report>`, followed by whatever
  `--send-http-extra-parameters` adds. The text report starts with
  "Duplicati <operation> report for <backup name>" and has one
  "Name: value" line per result field. Nested results such as
  BackendStatistics are an unindented "Name:" line followed by indented
  lines, and the log lines follow a "Log data:" line.

Field names follow Duplicati 2.x (ReportHelper, JsonFormatSerializer and
DuplicatiFormatSerializer in Duplicati.Library.Modules.Builtin).
"""

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qsl

from app.intake.fields import aware_utc, clip_error, integer_field, summary_and_log, unix_timestamp
from app.intake.report import MAX_DURATION_SECONDS, Report, ReportError
from app.intake.text import clean_text, parse_json_text

# Duplicati's operation names (its OperationMode) that map to a run kind.
# Other operations (Compact, Repair, Delete, List, Vacuum, ...) are not stored.
OPERATION_KINDS = {"backup": "backup", "restore": "restore", "test": "verify", "verify": "verify"}
# ParsedResult values from best to worst. Unknown (the first value of
# Duplicati's ParsedResultType) counts as a failure, because the outcome is not known.
RESULT_ORDER = ("Success", "Warning", "Unknown", "Error", "Fatal")
FAILED_RESULTS = {"Unknown", "Error", "Fatal"}
# The text report prints a time in the sending machine's culture and local
# time zone, then the Unix time in parentheses: "11/30/2026 3:14:09 AM (1796004849)".
UNIX_TIME_SUFFIX = re.compile(r"\((-?[0-9]{1,12})\)\s*$")
# An unset .NET DateTime (DateTime.MinValue), which a failed operation can leave in its result.
UNSET_TIME_PREFIX = "0001-01-01"
UNSET_UNIX_TIME_BELOW = -62_000_000_000
# TimeSpan's invariant format: [-][d.]hh:mm:ss[.fffffff].
TIMESPAN = re.compile(r"(-)?(?:([0-9]+)\.)?([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,7}))?")
# BeginTime and EndTime of the text form are whole seconds, so the
# difference between them can be off by up to 2 s from Duration.
DURATION_TOLERANCE_SECONDS = 2.0
TEXT_HEADER = re.compile(r"Duplicati\s+(\S+)\s+report\s+for\s*(.*)", re.IGNORECASE)
TEXT_FIELD = re.compile(r"( *)([A-Za-z][\w-]*): ?(.*)")
LOG_LEVEL = re.compile(r"\[(Warning|Error)-")
# The result fields copied into the run's log, in this order.
SUMMARY_FIELDS = (
    "ExaminedFiles", "SizeOfExaminedFiles", "AddedFiles", "SizeOfAddedFiles", "ModifiedFiles",
    "SizeOfModifiedFiles", "DeletedFiles", "OpenedFiles", "SizeOfOpenedFiles", "FilesWithError",
    "RestoredFiles", "SizeOfRestoredFiles", "WarningsActualLength", "ErrorsActualLength",
    "PartialBackup", "Interrupted", "Dryrun", "Version",
)
BACKEND_SUMMARY_FIELDS = (
    "KnownFileCount", "KnownFileSize", "BytesUploaded", "FilesUploaded", "BackupListCount",
    "TotalQuotaSpace", "FreeQuotaSpace", "AssignedQuotaSpace",
)


@dataclass
class QuotaReading:
    """The backend's quota as Duplicati measured it, in bytes."""

    total_bytes: int
    free_bytes: int
    # Duplicati's files on the backend: how many and their total size.
    file_count: int | None
    file_bytes: int | None


@dataclass
class DuplicatiReport:
    """A parsed report. `report` is None for an operation that is not stored."""

    operation: str
    report: Report | None = None
    quota: QuotaReading | None = None


@dataclass
class _Content:
    """The fields of either form, before validation."""

    data: dict
    backend: dict
    extra: dict = field(default_factory=dict)
    log_lines: list = field(default_factory=list)
    # The operation and backup name from the text form's first line.
    header_operation: str | None = None
    backup_name: str | None = None
    # The message of the exception that stopped the operation, if the report carries one.
    failure: str | None = None


def parse_duplicati_report(text, mimetype, *, received_at, log_max_bytes, error_max_chars):
    """Parse a Duplicati report body; return a DuplicatiReport or raise ReportError."""
    content = _read_json(text) if _is_json(text, mimetype) else _read_form(text)
    operation = _operation(content)
    kind = OPERATION_KINDS.get(operation.lower())
    if kind is None:
        return DuplicatiReport(operation=operation)

    result = _parsed_result(content)
    begin = _duplicati_time(content.data, "BeginTime")
    started_at, finished_at, duration = _times(begin, content.data, received_at)
    status = "failure" if result in FAILED_RESULTS else "success"
    size_bytes = _size(content.data, kind) if status == "success" else None
    quota = _quota(content.backend)
    warnings, errors = _messages(content)
    error = _error_text(result, content, warnings, errors)
    log_tail, cut_bytes = summary_and_log(
        _summary_lines(operation, result, content), "\n".join(content.log_lines), log_max_bytes
    )
    # Duplicati retries a report whose request failed (--send-http-retries,
    # default 3), so the same run may arrive twice. The key is the operation
    # and its start second, the same in the JSON and the text form, so the
    # run is stored once. Duplicati runs one operation of a backup at a time,
    # but two backups that report to one job could share a start second.
    client_run_id = None
    if begin is not None:
        client_run_id = f"duplicati-{operation.lower()}-{int(begin.timestamp())}"

    report = Report(
        kind=kind,
        status=status,
        started_at=started_at,
        finished_at=finished_at,
        duration_seconds=duration,
        size_bytes=size_bytes,
        exit_code=None,
        error=clip_error(error, error_max_chars) if error else None,
        log_tail=log_tail,
        log_truncated_bytes=cut_bytes,
        storage_backend=None,
        client_run_id=client_run_id,
    )
    return DuplicatiReport(operation=operation, report=report, quota=quota)


def _is_json(text, mimetype):
    if mimetype == "application/json":
        return True
    if mimetype == "application/x-www-form-urlencoded":
        return False
    return text.lstrip().startswith("{")


def _read_json(text):
    body = parse_json_text(text)
    if not isinstance(body, dict):
        raise ReportError(
            "body", "expected a JSON object with Data and Extra, as Duplicati sends with --send-http-result-output-format=Json"
        )
    data = body.get("Data")
    if not isinstance(data, dict):
        raise ReportError("Data", "missing or not an object; send the report that Duplicati posts")
    extra = _string_map(body.get("Extra"), "Extra")
    log_lines = body.get("LogLines") or []
    if not isinstance(log_lines, list) or not all(isinstance(line, str) for line in log_lines):
        raise ReportError("LogLines", "must be a list of strings")
    backend = data.get("BackendStatistics") or {}
    if not isinstance(backend, dict):
        raise ReportError("BackendStatistics", "must be an object")

    content = _Content(data=data, backend=backend, extra=extra, log_lines=[clean_text(line) for line in log_lines])
    content.backup_name = extra.get("backup-name")
    # A report of an operation that threw carries the exception: as Data
    # itself (ClassName, Message) in older versions, or beside Data.
    # NOTE: both shapes follow Duplicati's serializers as read, not a captured report.
    exception = body.get("Exception")
    if "ParsedResult" not in data and isinstance(data.get("Message"), str) and "ClassName" in data:
        content.failure = data["Message"]
    elif isinstance(exception, str) and exception.strip():
        content.failure = exception
    elif isinstance(exception, dict) and isinstance(exception.get("Message"), str):
        content.failure = exception["Message"]
    return content


def _string_map(value, name):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ReportError(name, "must be an object")
    return {key: item for key, item in value.items() if isinstance(item, str)}


def _read_form(text):
    try:
        pairs = parse_qsl(text.strip(), keep_blank_values=True, strict_parsing=False, max_num_fields=100)
    except ValueError:
        raise ReportError("body", "has more than 100 form fields") from None
    form = {}
    for name, value in pairs:
        form.setdefault(name, value)
    message = form.get("message")
    if message is None:
        raise ReportError(
            "message",
            "missing; send Duplicati's form report (the default --send-http-message-parameter-name is message) "
            "or the JSON one with --send-http-result-output-format=Json",
        )
    content = _read_text_report(clean_text(message))
    # --send-http-extra-parameters can add OperationName=%OPERATIONNAME%,
    # ParsedResult=%PARSEDRESULT% and the like beside the message.
    content.extra = {name: clean_text(value) for name, value in form.items() if name != "message"}
    return content


def _read_text_report(message):
    """Split Duplicati's text report into result fields, BackendStatistics and log lines."""
    content = _Content(data={}, backend={})
    lines = message.splitlines()
    first_line = next((line.strip() for line in lines if line.strip()), "")
    header = TEXT_HEADER.fullmatch(first_line)
    if header:
        content.header_operation = header.group(1)
        content.backup_name = header.group(2).strip() or None

    section = None
    in_list = False
    for index, line in enumerate(lines):
        if line.strip() == "Log data:":
            content.log_lines.extend(entry for entry in lines[index + 1:] if entry.strip())
            break
        if in_list:
            # A list such as "Warnings: [" runs until its closing bracket.
            if line.strip() == "]":
                in_list = False
            elif section is None and line.strip():
                content.log_lines.append(line.strip().rstrip(","))
            continue
        match = TEXT_FIELD.fullmatch(line.rstrip())
        if match is None:
            continue
        indent, name, value = match.groups()
        if value == "[":
            in_list = True
            continue
        if not indent:
            # An unindented "Name:" with no value opens a nested result.
            section = name if value == "" else None
            if value != "":
                content.data.setdefault(name, value)
        elif section == "BackendStatistics":
            content.backend.setdefault(name, value)
    # DuplicatiFormatSerializer puts "Failed: <message>" first when an exception stopped the operation.
    if "Failed" in content.data:
        content.failure = content.data["Failed"]
    return content


def _operation(content):
    operation = (
        content.data.get("MainOperation")
        or content.extra.get("OperationName")
        or content.header_operation
    )
    if not isinstance(operation, str) or not operation.strip():
        raise ReportError("MainOperation", "missing; the report does not say which operation ran")
    return operation.strip()


def _parsed_result(content):
    """Return the worst ParsedResult the report carries.

    For an operation that threw, Duplicati sets Fatal only in the value it
    passes to the template (%PARSEDRESULT%), so every source counts.
    """
    found = []
    for source in (content.data.get("ParsedResult"), content.extra.get("ParsedResult")):
        if source is None or source == "":
            continue
        if not isinstance(source, str) or source.strip().capitalize() not in RESULT_ORDER:
            raise ReportError("ParsedResult", f"must be one of {', '.join(RESULT_ORDER)}, got {str(source)[:40]!r}")
        found.append(source.strip().capitalize())
    if content.failure is not None:
        found.append("Fatal")
    if not found:
        raise ReportError("ParsedResult", "missing; the report does not say whether the operation succeeded")
    return max(found, key=RESULT_ORDER.index)


def _times(begin, data, received_at):
    """Return (started_at, finished_at, duration_seconds) from BeginTime, EndTime and Duration."""
    end = _duplicati_time(data, "EndTime")
    duration = _duration(data)
    if end is None:
        end = received_at
        if begin is not None and begin > end:
            raise ReportError("BeginTime", "is in the future and the report has no EndTime")
    if begin is None:
        if duration is not None:
            begin = end - timedelta(seconds=duration)
        return begin, end, duration
    if end < begin:
        raise ReportError("EndTime", "is before BeginTime")
    measured = (end - begin).total_seconds()
    if duration is None:
        return begin, end, measured
    if abs(duration - measured) > DURATION_TOLERANCE_SECONDS:
        raise ReportError("Duration", f"is {duration:g} s but EndTime - BeginTime is {measured:g} s")
    return begin, end, duration


def _duplicati_time(data, field_name):
    """Parse a time of either form; None when absent or left unset by a failed operation.

    JSON carries ISO 8601 with Z or an offset. The text form carries a local
    time in the sender's culture format, which is ambiguous, followed by the
    Unix time in parentheses, which is not.
    """
    value = data.get(field_name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ReportError(field_name, f"must be a timestamp string, got {type(value).__name__}")
    text = value.strip()
    unix = UNIX_TIME_SUFFIX.search(text)
    if unix:
        seconds = int(unix.group(1))
        if seconds < UNSET_UNIX_TIME_BELOW:
            return None
        return unix_timestamp(seconds, field_name, text)
    if text.startswith(UNSET_TIME_PREFIX):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ReportError(
            field_name,
            f"is neither ISO 8601 with an offset nor a time followed by its Unix time in parentheses: {text[:60]!r}",
        )
    return aware_utc(parsed, field_name, text)


def _duration(data):
    value = data.get("Duration")
    if value is None or value == "":
        return None
    match = TIMESPAN.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ReportError("Duration", f"must be a time span like 00:14:08.4239000, got {str(value)[:40]!r}")
    negative, days, hours, minutes, seconds, fraction = match.groups()
    if negative:
        raise ReportError("Duration", f"must not be negative, got {value.strip()[:40]!r}")
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    total += int(fraction or "0") / 10 ** len(fraction or "0")
    if total > MAX_DURATION_SECONDS:
        raise ReportError("Duration", f"must be at most {MAX_DURATION_SECONDS} s, got {value.strip()[:40]!r}")
    return float(total)


def _size(data, kind):
    """Return the run's size: the source data a backup examined, or what a restore wrote.

    SizeOfExaminedFiles is the size of everything the backup covers, so a
    source that shrinks (files deleted, a volume not mounted) shows up in
    the size check. The bytes added are kept in the run's log.
    """
    if kind == "backup":
        return integer_field(data, "SizeOfExaminedFiles")
    if kind == "restore":
        return integer_field(data, "SizeOfRestoredFiles")
    return None


def _quota(backend):
    """Return the quota reading, or None when the backend reports no quota (-1 or 0)."""
    total = integer_field(backend, "TotalQuotaSpace", label="BackendStatistics.TotalQuotaSpace", minimum=-1)
    free = integer_field(backend, "FreeQuotaSpace", label="BackendStatistics.FreeQuotaSpace", minimum=-1)
    if not total or not free or total <= 0 or free <= 0:
        return None
    if free > total:
        raise ReportError(
            "BackendStatistics.FreeQuotaSpace", f"is {free} bytes, more than TotalQuotaSpace ({total} bytes)"
        )
    return QuotaReading(
        total_bytes=total,
        free_bytes=free,
        file_count=integer_field(backend, "KnownFileCount", label="BackendStatistics.KnownFileCount"),
        file_bytes=integer_field(backend, "KnownFileSize", label="BackendStatistics.KnownFileSize"),
    )


def _messages(content):
    """Return the warning and error lines of the log."""
    warnings, errors = [], []
    for line in content.log_lines:
        level = LOG_LEVEL.search(line)
        if level is None:
            continue
        (warnings if level.group(1) == "Warning" else errors).append(line.strip())
    return warnings, errors


def _error_text(result, content, warnings, errors):
    """Return the run's error: why it failed, or the warnings of a run that succeeded with them."""
    if result == "Success":
        return None
    if result == "Warning":
        count = integer_field(content.data, "WarningsActualLength") or len(warnings)
        text = f"Duplicati reported {count} warning{'s' if count != 1 else ''} (the run counts as successful)"
        return f"{text}: {warnings[0]}" if warnings else text
    reason = content.failure or (errors[0] if errors else None)
    text = f"Duplicati reported {result}"
    return f"{text}: {reason.strip()}" if reason else text


def _summary_lines(operation, result, content):
    backup = f" for {content.backup_name}" if content.backup_name else ""
    lines = [f"Duplicati {operation} report{backup}: ParsedResult {result}"]
    for name in SUMMARY_FIELDS:
        value = content.data.get(name)
        if value is not None and value != "":
            suffix = " (the run's size)" if name == "SizeOfExaminedFiles" else ""
            lines.append(f"{name}: {value}{suffix}")
    for name in BACKEND_SUMMARY_FIELDS:
        value = content.backend.get(name)
        if value is not None and value != "":
            lines.append(f"BackendStatistics.{name}: {value}")
    if content.failure:
        lines.append(f"Failed: {content.failure.strip()}")
    if content.log_lines:
        lines.append("Log lines:")
    return lines
