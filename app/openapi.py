"""The OpenAPI 3.1 description of the JSON API, the hooks, the pings and the probes.

It is written by hand. Its limits are imported from the code that enforces
them (the report parser, the API's validation), so the two change together.
tests/test_openapi_fuzz.py validates the document, checks that it covers
every route, and fuzzes the hooks against it.
"""

import copy
import functools

from app.api_validation import (
    CRON_MAX_CHARS,
    DESCRIPTION_MAX_CHARS,
    JOB_NAME_MAX_CHARS,
    MAX_BASELINE_RUNS,
    MAX_BODY_BYTES,
    MAX_INT32,
    MAX_JOB_SECONDS,
    TIMEZONE_MAX_CHARS,
)
from app.intake.duplicati import RESULT_ORDER as DUPLICATI_RESULTS
from app.intake.report import EXIT_CODE_RANGE, MAX_BIGINT, MAX_DURATION_SECONDS, START_FIELDS, YEAR_RANGE
from app.models.alerts import ALERT_STATUSES, ALERT_TYPES
from app.models.api_tokens import TOKEN_PREFIX
from app.models.jobs import RUN_KINDS, RUN_STATUSES
from app.models.types import Severity
from app.monitoring.missed import INTERVAL_RANGE

API_VERSION = "1"
SEVERITIES = [s.name for s in sorted(Severity)]


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema):
    """Return `schema` widened to accept null as well."""
    return {"oneOf": [schema, {"type": "null"}]}


def json_content(schema):
    return {"application/json": {"schema": schema}}


def json_response(description, schema, headers=None):
    response = {"description": description, "content": json_content(schema)}
    if headers:
        response["headers"] = headers
    return response


def error(description, headers=None):
    return json_response(description, ref("Error"), headers)


def text_response(description, example=None):
    schema = {"type": "string"}
    if example is not None:
        schema["examples"] = [example]
    return {"description": description, "content": {"text/plain": {"schema": schema}}}


DATABASE_UNAVAILABLE = error("The database did not respond; nothing was stored. Retry after the Retry-After seconds.")


# Schemas


def _schemas():
    return {
        "Error": {
            "type": "object",
            "description": "Why a request was rejected. `field` names the field, parameter or header at fault, or is null.",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {
                        "field": {"type": ["string", "null"]},
                        "message": {"type": "string"},
                    },
                },
            },
        },
        "Report": _report_schema(),
        "RunStored": {
            "type": "object",
            "description": "A finished run was stored, or had been stored already under the same run_id.",
            "required": ["run_id", "duplicate"],
            "properties": {
                "run_id": {"type": "integer", "description": "Backwatch's id of the stored run."},
                "duplicate": {
                    "type": "boolean",
                    "description": "True when the job had already sent this run_id; nothing new was stored.",
                },
            },
            "additionalProperties": False,
        },
        "ReportAccepted": {
            "oneOf": [
                ref("RunStored"),
                {
                    "type": "object",
                    "title": "Start recorded",
                    "description": "A start report was recorded; the next finish of the job (with the same run_id) takes its start time.",
                    "required": ["start_id"],
                    "properties": {"start_id": {"type": "integer"}},
                    "additionalProperties": False,
                },
            ],
        },
        **_duplicati_schemas(),
        "Alert": _alert_schema(),
        "AlertList": _page_schema("alerts", "Alert"),
        "AlertSummary": {
            "type": "object",
            "required": ["active", "by_severity", "by_type", "acknowledged", "resolved_last_24h"],
            "properties": {
                "active": {"type": "integer", "description": "ACTIVE alerts."},
                "by_severity": {
                    "type": "object",
                    "description": "ACTIVE alerts per severity; every severity is present.",
                    "properties": {name: {"type": "integer"} for name in SEVERITIES},
                    "required": SEVERITIES,
                },
                "by_type": {
                    "type": "object",
                    "description": "ACTIVE alerts per alert type; types without one are left out.",
                    "additionalProperties": {"type": "integer"},
                },
                "acknowledged": {"type": "integer", "description": "ACKNOWLEDGED alerts."},
                "resolved_last_24h": {"type": "integer"},
            },
        },
        "Job": _job_schema(),
        "JobList": _page_schema("jobs", "Job"),
        "NewJob": _new_job_schema(),
        "CreatedJob": {
            "type": "object",
            "required": ["job", "hook_token", "hook_url"],
            "properties": {
                "job": ref("Job"),
                "hook_token": {
                    "type": "string",
                    "description": "The job's hook token. Only its hash is kept, so this is the only time it is shown.",
                },
                "hook_url": {"type": "string", "format": "uri", "description": "Where the job reports: POST /hooks/{token}."},
            },
        },
        "Run": _run_schema(),
        "RunList": _page_schema("runs", "Run"),
    }


def _report_schema():
    low_year, high_year = YEAR_RANGE
    timestamp = {
        "type": "string",
        "format": "date-time",
        "description": f"ISO 8601 with a UTC offset (Z or +HH:MM), between the years {low_year} and {high_year}.",
        "examples": ["2026-12-01T02:14:09+01:00"],
    }
    return {
        "type": "object",
        "description": (
            "A run report. A field sent as null counts as not sent. Either a finished run (status success "
            "or failure, or no status), or a start report (status \"started\", which allows only "
            f"{', '.join(sorted(START_FIELDS))}). started_at, finished_at and duration_seconds must agree "
            "when all three are sent; finished_at may not be before started_at."
        ),
        "properties": {
            "kind": {"type": "string", "enum": list(RUN_KINDS), "default": "backup",
                     "description": "What the run did."},
            "status": {
                "type": "string",
                "enum": [*RUN_STATUSES, "started"],
                "description": "Default: success when exit_code is 0 or absent, else failure. \"started\" makes this a start report.",
            },
            "started_at": {**timestamp, "description": timestamp["description"] + " A start report without it starts now; it may not be more than 5 minutes in the future."},
            "finished_at": {**timestamp, "description": timestamp["description"] + " Default: the time of receipt."},
            "duration_seconds": {
                "type": "number", "minimum": 0, "maximum": MAX_DURATION_SECONDS,
                "description": "Alternative to started_at.",
            },
            "size_bytes": {"type": "integer", "minimum": 0, "maximum": MAX_BIGINT,
                           "description": "Size of what the backup produced."},
            "exit_code": {"type": "integer", "minimum": EXIT_CODE_RANGE[0], "maximum": EXIT_CODE_RANGE[1]},
            "error": {"type": "string", "description": "One-line reason for a failure; long ones keep their end."},
            "log": {"type": "string", "description": "The run's output. The last 64 KiB (BACKWATCH_LOG_TAIL_MAX_BYTES) are kept."},
            "storage_backend": {"type": "string", "minLength": 1, "maxLength": 100,
                                "description": "Name of the storage the backup went to."},
            "run_id": {
                "type": "string", "minLength": 1, "maxLength": 200,
                "description": "Idempotency key: a second report with the same run_id for the same job is not stored again.",
            },
            "object_key": {"type": "string", "minLength": 1, "maxLength": 1024,
                           "description": "The object the run produced on storage_backend; the worker checks it."},
            "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                       "description": "SHA-256 of object_key, compared where the backend stores one."},
        },
        "additionalProperties": False,
        "dependentRequired": {"object_key": ["storage_backend"], "sha256": ["object_key"]},
        "if": {"required": ["status"], "properties": {"status": {"const": "started"}}},
        "then": {"propertyNames": {"enum": sorted(START_FIELDS)}},
        "examples": [
            {"status": "success", "started_at": "2026-12-01T02:00:00+01:00",
             "finished_at": "2026-12-01T02:14:09+01:00", "size_bytes": 5368709120},
            {"status": "started", "run_id": "7f9c1e"},
        ],
    }


def _duplicati_schemas():
    duplicati_time = {
        "type": "string",
        "description": "ISO 8601 with an offset, or (in the text form) a local time followed by the Unix time in parentheses.",
        "examples": ["2026-11-30T03:14:09Z"],
    }
    size = {"type": "integer", "minimum": 0, "maximum": MAX_BIGINT}
    return {
        "DuplicatiJsonReport": {
            "type": "object",
            "description": "Sent with --send-http-result-output-format=Json.",
            "required": ["Data"],
            "properties": {
                "Data": {
                    "type": "object",
                    "description": (
                        "The operation's result. Fields not listed here (counts of files, Version and more) are "
                        "copied into the run's log."
                    ),
                    "required": ["MainOperation", "ParsedResult"],
                    "properties": {
                        "MainOperation": {
                            "type": "string",
                            "description": "Backup, Restore and Test are stored; other operations are accepted and not stored.",
                            "examples": ["Backup"],
                        },
                        "ParsedResult": {"type": "string", "enum": list(DUPLICATI_RESULTS),
                                         "description": "Unknown, Error and Fatal make a failed run."},
                        "BeginTime": duplicati_time,
                        "EndTime": duplicati_time,
                        "Duration": {"type": "string", "pattern": r"^([0-9]+\.)?[0-9]{1,2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?$",
                                     "description": ".NET TimeSpan: [d.]hh:mm:ss[.fffffff].",
                                     "examples": ["00:14:08.4239000"]},
                        "SizeOfExaminedFiles": size,
                        "SizeOfRestoredFiles": size,
                        "BackendStatistics": {
                            "type": "object",
                            "description": "TotalQuotaSpace and FreeQuotaSpace (-1 or 0: unknown) become a usage reading.",
                            "properties": {
                                "TotalQuotaSpace": {"type": "integer", "minimum": -1, "maximum": MAX_BIGINT},
                                "FreeQuotaSpace": {"type": "integer", "minimum": -1, "maximum": MAX_BIGINT},
                                "KnownFileCount": size,
                                "KnownFileSize": size,
                            },
                        },
                    },
                },
                "Extra": {"type": "object", "additionalProperties": {"type": "string"},
                          "description": "OperationName, backup-name and other names."},
                "LogLines": {"type": "array", "items": {"type": "string"}},
                "Exception": {"description": "The exception that stopped the operation, as a message or an object."},
            },
        },
        "DuplicatiFormReport": {
            "type": "object",
            "description": (
                "Duplicati's default form. `message` is the text report that starts with \"Duplicati <operation> "
                "report for <backup name>\"; fields added by --send-http-extra-parameters (OperationName, "
                "ParsedResult) are read too."
            ),
            "required": ["message"],
            "properties": {"message": {"type": "string"}},
            "additionalProperties": {"type": "string"},
        },
        "DuplicatiAccepted": {
            "oneOf": [
                {
                    "type": "object",
                    "title": "Run stored",
                    "required": ["run_id", "duplicate"],
                    "properties": {
                        "run_id": {"type": "integer"},
                        "duplicate": {"type": "boolean"},
                        "storage_percent_used": {
                            "type": ["number", "null"],
                            "description": "Use of storage_backend after the quota reading; present only when one was stored.",
                        },
                    },
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "title": "Not stored",
                    "description": "A report of an operation other than Backup, Restore and Test.",
                    "required": ["stored", "operation", "message"],
                    "properties": {
                        "stored": {"const": False},
                        "operation": {"type": "string"},
                        "message": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
            ],
        },
    }


def _alert_schema():
    timestamp = {"type": "string", "format": "date-time"}
    return {
        "type": "object",
        "required": ["id", "type", "severity", "status", "message", "details", "job", "run_id", "occurrences",
                     "created_at", "last_seen_at"],
        "properties": {
            "id": {"type": "integer"},
            "type": {"type": "string", "enum": list(ALERT_TYPES)},
            "severity": {"type": "string", "enum": SEVERITIES},
            "status": {"type": "string", "enum": list(ALERT_STATUSES)},
            "message": {"type": "string"},
            "details": {"type": "object", "description": "Figures behind the alert; the keys depend on its type."},
            "job": nullable({
                "type": "object",
                "required": ["id", "name"],
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
            }),
            "run_id": {"type": ["integer", "null"], "description": "The run that raised or last updated the alert."},
            "storage_backend": {"type": ["string", "null"]},
            "occurrences": {"type": "integer"},
            "created_at": timestamp,
            "last_seen_at": timestamp,
            "acknowledged_at": nullable(timestamp),
            "acknowledged_by": {"type": ["string", "null"], "description": "Email of the user who acknowledged it."},
            "resolved_at": nullable(timestamp),
            "resolved_by": {"type": ["string", "null"], "description": "Email of the user who resolved it; null when the condition cleared."},
        },
    }


def _job_properties():
    """The settable fields of a job, as the API accepts and returns them."""
    low, high = INTERVAL_RANGE
    return {
        "name": {"type": "string", "minLength": 1, "maxLength": JOB_NAME_MAX_CHARS},
        "description": {"type": ["string", "null"], "maxLength": DESCRIPTION_MAX_CHARS},
        "paused": {"type": "boolean", "description": "A paused job is not checked for missed runs."},
        "schedule_cron": {
            "type": ["string", "null"], "maxLength": CRON_MAX_CHARS,
            "description": "When runs are expected, as a cron expression read in schedule_timezone. Not together with schedule_interval_seconds.",
            "examples": ["30 2 * * *"],
        },
        "schedule_timezone": {"type": "string", "maxLength": TIMEZONE_MAX_CHARS, "default": "UTC",
                              "description": "IANA timezone name, for example Europe/Berlin."},
        "schedule_interval_seconds": {
            "type": ["integer", "null"], "minimum": low, "maximum": high,
            "description": "Expect a run every this many seconds instead of a cron schedule.",
        },
        "grace_seconds": {
            "type": ["integer", "null"], "minimum": 0, "maximum": MAX_JOB_SECONDS,
            "description": "How late a run may report before it counts as missed; null means BACKWATCH_MISSED_GRACE_SECONDS.",
        },
        "max_run_seconds": {
            "type": ["integer", "null"], "minimum": 1, "maximum": MAX_JOB_SECONDS,
            "description": "How long a started run may go without finishing; null means BACKWATCH_MAX_RUN_SECONDS.",
        },
        "baseline_window": {
            "type": ["integer", "null"], "minimum": 1, "maximum": MAX_BASELINE_RUNS,
            "description": "Successful runs the size and duration checks average; null means BACKWATCH_BASELINE_WINDOW.",
        },
        "baseline_min_samples": {
            "type": ["integer", "null"], "minimum": 1, "maximum": MAX_BASELINE_RUNS,
            "description": "Successful runs needed before those checks apply, at most baseline_window; null means BACKWATCH_BASELINE_MIN_SAMPLES.",
        },
    }


def _job_schema():
    timestamp = {"type": "string", "format": "date-time"}
    properties = {"id": {"type": "integer"}, **_job_properties()}
    properties["created_at"] = timestamp
    properties["last_run_at"] = {**nullable(timestamp), "description": "When the latest finished report was received."}
    return {"type": "object", "required": list(properties), "properties": properties}


def _new_job_schema():
    properties = _job_properties()
    properties["name"] = {**properties["name"], "description": "Unique; leading and trailing spaces are removed."}
    return {
        "type": "object",
        "required": ["name"],
        "properties": properties,
        "additionalProperties": False,
        "description": "Fields left out or sent as null take their defaults. The body is at most "
                       f"{MAX_BODY_BYTES} bytes.",
        "examples": [{"name": "nightly-db", "schedule_cron": "30 2 * * *", "schedule_timezone": "Europe/Berlin",
                      "grace_seconds": 1800}],
    }


def _run_schema():
    timestamp = {"type": "string", "format": "date-time"}
    return {
        "type": "object",
        "required": ["id", "job_id", "kind", "status", "finished_at", "received_at"],
        "properties": {
            "id": {"type": "integer"},
            "job_id": {"type": "integer"},
            "client_run_id": {"type": ["string", "null"], "description": "The run_id the report carried."},
            "kind": {"type": "string", "enum": list(RUN_KINDS)},
            "status": {"type": "string", "enum": list(RUN_STATUSES)},
            "started_at": nullable(timestamp),
            "finished_at": timestamp,
            "duration_seconds": {"type": ["number", "null"]},
            "size_bytes": {"type": ["integer", "null"]},
            "exit_code": {"type": ["integer", "null"]},
            "error": {"type": ["string", "null"]},
            "log_tail": {"type": ["string", "null"], "description": "The end of the reported log, with a marker when its start was cut."},
            "log_truncated_bytes": {"type": "integer"},
            "storage_backend": {"type": ["string", "null"]},
            "object_key": {"type": ["string", "null"]},
            "sha256": {"type": ["string", "null"]},
            "received_at": timestamp,
            "checked_at": {**nullable(timestamp), "description": "When the worker checked the run; null until then."},
        },
    }


def _page_schema(key, item):
    return {
        "type": "object",
        "required": [key, "page", "per_page", "total"],
        "properties": {
            key: {"type": "array", "items": ref(item)},
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1},
            "total": {"type": "integer", "minimum": 0, "description": "Matching items on all pages."},
        },
    }


# Operations


TOKEN_PARAMETER = {
    "name": "token",
    "in": "path",
    "required": True,
    "description": "The job's hook token, printed once when the job was created.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
}

RID_PARAMETER = {
    "name": "rid",
    "in": "query",
    "required": False,
    "description": "The client's run id: pairs a start with its finish when runs of one job overlap.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}

PAGE_PARAMETERS = [
    {"name": "page", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 10**9, "default": 1}},
    {"name": "per_page", "in": "query", "required": False,
     "description": "Items per page; values above the maximum (200) are lowered to it.",
     "schema": {"type": "integer", "minimum": 1, "maximum": 10**9, "default": 50}},
]

API_SECURITY = [{"apiToken": []}, {"session": []}]
UNAUTHORIZED = error(
    "No credentials, or an unknown, revoked or expired API token.",
    {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer challenge (RFC 6750)."}},
)
SESSION_WRITE_NOTE = "A session request must carry the CSRF token in the X-CSRFToken header; a bearer-token request needs none."


def _hook_operations():
    return {
        "/hooks/{token}": {
            "post": {
                "tags": ["hooks"],
                "summary": "Report a run, or the start of one",
                "operationId": "reportRun",
                "parameters": [TOKEN_PARAMETER],
                "requestBody": {
                    "required": True,
                    "description": "UTF-8 JSON; a body in UTF-16 (with or without a byte-order mark) or Latin-1 is read too.",
                    "content": json_content(ref("Report")),
                },
                "responses": {
                    "202": json_response("Stored.", ref("ReportAccepted")),
                    "400": error("Invalid report; `field` names the field. Nothing was stored."),
                    "404": error("No job has this token."),
                    "413": error("The body is larger than BACKWATCH_HOOK_MAX_BODY_BYTES (1 MiB by default)."),
                    "503": DATABASE_UNAVAILABLE,
                },
            },
        },
        "/hooks/{token}/duplicati": {
            "post": {
                "tags": ["hooks"],
                "summary": "Report a Duplicati run as Duplicati's --send-http-url posts it",
                "description": (
                    "Backup, Restore and Test operations are stored as backup, restore and verify runs; reports "
                    "of other operations are accepted and not stored. With storage_backend, a quota that the "
                    "report carries is stored as a usage reading of that backend."
                ),
                "operationId": "reportDuplicati",
                "parameters": [
                    TOKEN_PARAMETER,
                    {
                        "name": "storage_backend", "in": "query", "required": False,
                        "description": "Name of an existing storage backend (console: Storage) the backup went to.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 100},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": ref("DuplicatiJsonReport")},
                        "application/x-www-form-urlencoded": {"schema": ref("DuplicatiFormReport")},
                    },
                },
                "responses": {
                    "202": json_response("Stored, or accepted and not stored.", ref("DuplicatiAccepted")),
                    "400": error("Invalid report or storage_backend; `field` names the field. Nothing was stored."),
                    "404": error("No job has this token."),
                    "413": error("The body is larger than BACKWATCH_HOOK_MAX_BODY_BYTES (1 MiB by default)."),
                    "503": DATABASE_UNAVAILABLE,
                },
            },
        },
        "/hooks/{token}/restic": {
            "post": {
                "tags": ["hooks"],
                "summary": "Report a restic backup with the output of `restic backup --json`",
                "description": (
                    "The body is restic's JSON lines, the whole output or only the summary line. Lines that are "
                    "not JSON (errors of restic before 0.17) are kept in the log. Without a summary line, or "
                    "with an exit_error line, the run is a failure."
                ),
                "operationId": "reportRestic",
                "parameters": [
                    TOKEN_PARAMETER,
                    {
                        "name": "exit_code", "in": "query", "required": False,
                        "description": "restic's exit code; 0 and 3 (snapshot made, some files unreadable) count as success.",
                        "schema": {"type": "integer", "minimum": EXIT_CODE_RANGE[0], "maximum": EXIT_CODE_RANGE[1]},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "text/plain": {
                            "schema": {"type": "string"},
                            "examples": {
                                "summary": {
                                    "value": '{"message_type":"summary","files_new":2,"total_bytes_processed":1048576,'
                                             '"total_duration":12.5,"snapshot_id":"5c9a0d3e"}\n',
                                },
                            },
                        },
                    },
                },
                "responses": {
                    "202": json_response("Stored.", ref("RunStored")),
                    "400": error("Invalid exit_code or summary figures; nothing was stored."),
                    "404": error("No job has this token."),
                    "413": error("The body is larger than BACKWATCH_HOOK_MAX_BODY_BYTES (1 MiB by default)."),
                    "503": DATABASE_UNAVAILABLE,
                },
            },
        },
    }


def _ping_operation(summary, operation_id, description, extra_parameters=()):
    """Return the HEAD, GET and POST operations of one ping URL."""
    responses = {
        "200": text_response("Accepted.", "OK"),
        "400": text_response("An invalid exit status or rid; nothing was stored."),
        "404": text_response("No job has this token.", "not found"),
        "413": text_response("The body is larger than BACKWATCH_HOOK_MAX_BODY_BYTES (1 MiB by default)."),
        "503": DATABASE_UNAVAILABLE,
    }
    parameters = [TOKEN_PARAMETER, *extra_parameters, RID_PARAMETER]
    operations = {}
    for method in ("head", "get", "post"):
        operation = {
            "tags": ["pings"],
            "summary": summary,
            "description": description,
            "operationId": f"{operation_id}{method.capitalize()}",
            "parameters": copy.deepcopy(parameters),
            "responses": copy.deepcopy(responses),
        }
        if method == "post":
            operation["requestBody"] = {
                "required": False,
                "description": "The run's log; the last 64 KiB are kept.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        operations[method] = operation
    return operations


def _ping_operations():
    status_parameter = {
        "name": "status",
        "in": "path",
        "required": True,
        "description": "The command's exit status: 0 stores a successful run, 1 to 255 a failed one.",
        "schema": {"type": "integer", "minimum": 0, "maximum": 255},
    }
    compatibility = " Compatible with healthchecks.io pings; the job's hook token takes the place of the check's UUID."
    return {
        "/ping/{token}": _ping_operation(
            "Report a successful run", "pingSuccess", "Stores a successful backup run." + compatibility),
        "/ping/{token}/start": _ping_operation(
            "Report the start of a run", "pingStart",
            "Records a start; the next finish (with the same rid) takes its start time." + compatibility),
        "/ping/{token}/fail": _ping_operation(
            "Report a failed run", "pingFail", "Stores a failed backup run." + compatibility),
        "/ping/{token}/log": _ping_operation(
            "Send a log line", "pingLog", "The body joins the log of the run going on (the start with the same rid), which its finish takes." + compatibility),
        "/ping/{token}/{status}": _ping_operation(
            "Report a run by exit status", "pingExitStatus",
            "Stores a successful run for 0, a failed run for 1 to 255." + compatibility, [status_parameter]),
    }


def _api_operations():
    alert_id = {"name": "alert_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    empty_body = {
        "required": False,
        "description": "Empty, or an empty JSON object.",
        "content": json_content({"type": "object", "additionalProperties": False}),
    }
    common = {"401": UNAUTHORIZED}
    return {
        "/api/v1/alerts": {
            "get": {
                "tags": ["alerts"],
                "summary": "List alerts, worst and newest first",
                "operationId": "listAlerts",
                "security": API_SECURITY,
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(ALERT_STATUSES)},
                     "description": "Any case."},
                    {"name": "severity", "in": "query", "schema": {"type": "string", "enum": SEVERITIES},
                     "description": "Any case."},
                    {"name": "type", "in": "query", "schema": {"type": "string", "enum": list(ALERT_TYPES)},
                     "description": "Alert type, any case."},
                    {"name": "job_id", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT32}},
                    {"name": "job", "in": "query", "schema": {"type": "string"},
                     "description": "A job id or an exact job name."},
                    *PAGE_PARAMETERS,
                ],
                "responses": {
                    "200": json_response("A page of alerts.", ref("AlertList")),
                    "400": error("An invalid filter or page; `field` names the parameter."),
                    **common,
                },
            },
        },
        "/api/v1/alerts/summary": {
            "get": {
                "tags": ["alerts"],
                "summary": "Count open alerts",
                "operationId": "alertSummary",
                "security": API_SECURITY,
                "responses": {"200": json_response("Counts.", ref("AlertSummary")), **common},
            },
        },
        "/api/v1/alerts/{alert_id}": {
            "get": {
                "tags": ["alerts"],
                "summary": "Get one alert",
                "operationId": "getAlert",
                "security": API_SECURITY,
                "parameters": [alert_id],
                "responses": {
                    "200": json_response("The alert.", ref("Alert")),
                    "404": error("No alert has this id."),
                    **common,
                },
            },
        },
        "/api/v1/alerts/{alert_id}/acknowledge": {
            "post": {
                "tags": ["alerts"],
                "summary": "Acknowledge an ACTIVE alert",
                "description": "Stops the alert's reminders; no notification is sent. " + SESSION_WRITE_NOTE,
                "operationId": "acknowledgeAlert",
                "security": API_SECURITY,
                "parameters": [alert_id],
                "requestBody": empty_body,
                "responses": {
                    "200": json_response("The acknowledged alert.", ref("Alert")),
                    "400": error("A body with fields, or a session request without a valid CSRF token."),
                    "404": error("No alert has this id."),
                    "409": error("The alert is not ACTIVE; the message names its status."),
                    **common,
                },
            },
        },
        "/api/v1/alerts/{alert_id}/resolve": {
            "post": {
                "tags": ["alerts"],
                "summary": "Resolve an open alert",
                "description": "Sends the \"resolved\" notification like any other event. " + SESSION_WRITE_NOTE,
                "operationId": "resolveAlert",
                "security": API_SECURITY,
                "parameters": [alert_id],
                "requestBody": empty_body,
                "responses": {
                    "200": json_response("The resolved alert.", ref("Alert")),
                    "400": error("A body with fields, or a session request without a valid CSRF token."),
                    "404": error("No alert has this id."),
                    "409": error("The alert is already RESOLVED."),
                    **common,
                },
            },
        },
        "/api/v1/jobs": {
            "get": {
                "tags": ["jobs"],
                "summary": "List jobs by name",
                "operationId": "listJobs",
                "security": API_SECURITY,
                "parameters": PAGE_PARAMETERS,
                "responses": {
                    "200": json_response("A page of jobs.", ref("JobList")),
                    "400": error("An invalid page parameter."),
                    **common,
                },
            },
            "post": {
                "tags": ["jobs"],
                "summary": "Create a job (platform admins only)",
                "description": "The answer holds the job's hook token and hook URL, shown only this once. " + SESSION_WRITE_NOTE,
                "operationId": "createJob",
                "security": API_SECURITY,
                "requestBody": {"required": True, "content": json_content(ref("NewJob"))},
                "responses": {
                    "201": json_response(
                        "Created.", ref("CreatedJob"),
                        {"Location": {"schema": {"type": "string"}, "description": "The job's URL in this API."}},
                    ),
                    "400": error("An invalid field (named in `field`), an unknown field, or a body that is not a JSON object."),
                    "403": error("The user is not a platform admin."),
                    "409": error("A job with this name exists."),
                    "413": error(f"The body is larger than {MAX_BODY_BYTES} bytes."),
                    **common,
                },
            },
        },
        "/api/v1/jobs/{job_id}": {
            "get": {
                "tags": ["jobs"],
                "summary": "Get one job",
                "operationId": "getJob",
                "security": API_SECURITY,
                "parameters": [job_id],
                "responses": {
                    "200": json_response("The job.", ref("Job")),
                    "404": error("No job has this id."),
                    **common,
                },
            },
        },
        "/api/v1/jobs/{job_id}/runs": {
            "get": {
                "tags": ["jobs"],
                "summary": "List a job's runs, newest first",
                "operationId": "listRuns",
                "security": API_SECURITY,
                "parameters": [job_id, *PAGE_PARAMETERS],
                "responses": {
                    "200": json_response("A page of runs.", ref("RunList")),
                    "400": error("An invalid page parameter."),
                    "404": error("No job has this id."),
                    **common,
                },
            },
        },
        "/api/v1/openapi.json": {
            "get": {
                "tags": ["meta"],
                "summary": "This document",
                "operationId": "openapiDocument",
                "security": [],
                "responses": {"200": json_response("The OpenAPI 3.1 description.", {"type": "object"})},
            },
        },
    }


def _probe_operations():
    return {
        "/healthz": {
            "get": {
                "tags": ["probes"],
                "summary": "Health check for load balancers",
                "operationId": "health",
                "security": [],
                "responses": {
                    "200": json_response(
                        "The database responds.",
                        {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
                    ),
                    "503": DATABASE_UNAVAILABLE,
                },
            },
        },
        "/metrics": {
            "get": {
                "tags": ["probes"],
                "summary": "Prometheus metrics",
                "description": (
                    "Closed until BACKWATCH_METRICS_TOKEN or BACKWATCH_METRICS_ALLOWED_NETWORKS is set. "
                    "A request passes with that bearer token, or from an address in those networks."
                ),
                "operationId": "metrics",
                "security": [{"metricsToken": []}, {}],
                "responses": {
                    "200": {
                        "description": "The metrics, as OpenMetrics when the Accept header asks for it, else the Prometheus text format.",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    },
                    "401": text_response("A token is configured and the request's bearer token is missing or wrong."),
                    "403": text_response("Metrics are disabled, or the address is not in the allowed networks."),
                    "500": text_response("BACKWATCH_METRICS_ALLOWED_NETWORKS contains an invalid network."),
                },
            },
        },
    }


@functools.cache
def build_openapi():
    """Return the OpenAPI document as a dict; callers must not change it."""
    paths = {**_hook_operations(), **_ping_operations(), **_api_operations(), **_probe_operations()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Backwatch",
            "version": API_VERSION,
            "description": (
                "Backup jobs report runs to the hooks and pings, authenticated by the job's hook token in the URL. "
                "People and scripts read and change alerts and jobs under /api/v1 with a personal API token "
                f"(`Authorization: Bearer {TOKEN_PREFIX}...`) or the console's login session. "
                "Errors of JSON endpoints are {\"error\": {\"field\": ..., \"message\": ...}}."
            ),
        },
        "tags": [
            {"name": "hooks", "description": "Run reports: Backwatch's JSON format, and the reports Duplicati and restic produce."},
            {"name": "pings", "description": "healthchecks.io-style pings: HEAD, GET or POST, plain-text answers."},
            {"name": "alerts"},
            {"name": "jobs"},
            {"name": "probes", "description": "Health and metrics for load balancers and Prometheus."},
            {"name": "meta"},
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        f"A personal API token ({TOKEN_PREFIX}...), from `flask api-tokens create` or the console's "
                        "API tokens page. It acts as its user."
                    ),
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "session",
                    "description": "The console's login session (POST /login). " + SESSION_WRITE_NOTE,
                },
                "metricsToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The value of BACKWATCH_METRICS_TOKEN.",
                },
            },
        },
    }
