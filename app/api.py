"""The JSON API: alerts, jobs and runs, for the console's session or a personal API token.

A request with `Authorization: Bearer <token>` acts as the token's user and
needs no CSRF token, because a browser never adds a bearer token by itself. A
request without it uses the console's login session, and its writes must
carry the session's CSRF token in the X-CSRFToken header.
"""

import logging

from flask import Blueprint, current_app, g, jsonify, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError

from app.api_validation import JOB_FIELDS, MAX_INT32, ApiError, parse_job_fields, read_json_body
from app.extensions import csrf, db
from app.models import Alert, ApiToken, BackupJob, BackupRun, Severity, utcnow
from app.models.alerts import ALERT_STATUSES, ALERT_TYPES
from app.monitoring.alerts import get_alert_summary
from app.monitoring.lifecycle import acknowledge_alert, resolve_alert
from app.notifications.dispatcher import commit_and_dispatch

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Authentication is checked in authenticate() below, which also applies the
# CSRF check to session requests; bearer-token requests need none.
csrf.exempt(bp)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Endpoints that need no authentication.
PUBLIC_ENDPOINTS = ("api.openapi_document",)
REALM = 'Bearer realm="backwatch"'


@bp.before_request
def authenticate():
    """Set g.api_user from the bearer token or the login session, or reject the request."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    header = request.headers.get("Authorization")
    if header is not None:
        g.api_user = _bearer_user(header)
        return None
    if not current_user.is_authenticated:
        raise ApiError(
            401, "session", "login required; sign in at /login or send Authorization: Bearer <API token>",
            {"WWW-Authenticate": REALM},
        )
    if request.method not in SAFE_METHODS and current_app.config.get("WTF_CSRF_ENABLED", True):
        try:
            csrf.protect()
        except CSRFError as exc:
            log.info("API request %s %s by %s rejected: %s", request.method, request.path, current_user.email, exc.description)
            raise ApiError(
                400, "X-CSRFToken",
                f"{exc.description.rstrip('.')}. Send the CSRF token of a console page (the csrf_token "
                "field of its forms) in the X-CSRFToken header, or use an API token",
            ) from None
    g.api_user = current_user._get_current_object()
    return None


def _bearer_user(header):
    """Return the active user of a valid bearer token, or raise a 401 ApiError."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _invalid_token("expected 'Authorization: Bearer <API token>'")
    row = ApiToken.find(token)
    now = utcnow()
    if row is None:
        raise _invalid_token("unknown API token; create one with `flask api-tokens create` or in the console")
    status = row.status(now)
    if status == "revoked":
        raise _invalid_token(f"API token {row.id} was revoked; create a new one")
    if status == "expired":
        raise _invalid_token(f"API token {row.id} expired at {row.expires_at.isoformat()}; create a new one")
    user = row.user
    if not user.is_active:
        raise _invalid_token(f"the user of API token {row.id} is deactivated")
    if row.touch(now):
        db.session.commit()
    return user


def _invalid_token(message):
    log.info("API request %s %s from %s rejected: %s", request.method, request.path, request.remote_addr, message)
    # RFC 6750 section 3: the challenge names the error; the description is a quoted string.
    challenge = f'{REALM}, error="invalid_token", error_description="{message.replace(chr(34), chr(39))}"'
    return ApiError(401, "Authorization", message, {"WWW-Authenticate": challenge})


@bp.errorhandler(ApiError)
def api_error(exc):
    return jsonify({"error": {"field": exc.field, "message": exc.message}}), exc.status, exc.headers


# Alerts


@bp.get("/alerts")
def list_alerts():
    """List alerts, worst and newest first; filters: severity, status, type, job, job_id; paginated."""
    query = db.select(Alert)
    severity = request.args.get("severity")
    if severity:
        try:
            query = query.where(Alert.severity == Severity.parse(severity))
        except ValueError as exc:
            raise ApiError(400, "severity", str(exc)) from None
    status = request.args.get("status")
    if status:
        query = query.where(Alert.status == _choice("status", status, ALERT_STATUSES))
    alert_type = request.args.get("type")
    if alert_type:
        query = query.where(Alert.alert_type == _choice("type", alert_type, ALERT_TYPES))
    job = request.args.get("job")
    if job:
        query = query.where(Alert.job_id == _job_id(job))
    job_id = request.args.get("job_id")
    if job_id:
        query = query.where(Alert.job_id == _id_argument("job_id", job_id))

    page, per_page = _pagination()
    total = db.session.scalar(db.select(func.count()).select_from(query.subquery()))
    alerts = db.session.execute(
        query.order_by(Alert.severity.desc(), Alert.last_seen_at.desc(), Alert.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).scalars().all()
    return jsonify({
        "alerts": [alert.to_dict() for alert in alerts],
        "page": page,
        "per_page": per_page,
        "total": total,
    })


@bp.get("/alerts/summary")
def alert_summary():
    return jsonify(get_alert_summary())


@bp.get("/alerts/<int:alert_id>")
def get_alert(alert_id):
    return jsonify(_get_or_404(Alert, alert_id, "alert_id").to_dict())


@bp.post("/alerts/<int:alert_id>/acknowledge")
def acknowledge(alert_id):
    """Acknowledge an ACTIVE alert: its reminders stop; nothing is sent."""
    read_json_body((), required=False)
    alert = _get_or_404(Alert, alert_id, "alert_id")
    changed = acknowledge_alert(alert.id, g.api_user)
    if changed is None:
        db.session.rollback()
        status = _current_status(alert_id)
        raise ApiError(409, "status", f"alert {alert_id} is {status}; only an ACTIVE alert can be acknowledged")
    commit_and_dispatch()
    return jsonify(db.session.get(Alert, alert_id).to_dict())


@bp.post("/alerts/<int:alert_id>/resolve")
def resolve(alert_id):
    """Resolve an open alert by hand; its "resolved" event is sent like any other."""
    read_json_body((), required=False)
    alert = _get_or_404(Alert, alert_id, "alert_id")
    changed = resolve_alert(alert.id, g.api_user)
    if changed is None:
        db.session.rollback()
        status = _current_status(alert_id)
        raise ApiError(409, "status", f"alert {alert_id} is {status}; only an ACTIVE or ACKNOWLEDGED alert can be resolved")
    commit_and_dispatch()
    return jsonify(db.session.get(Alert, alert_id).to_dict())


def _current_status(alert_id):
    return db.session.scalar(db.select(Alert.status).where(Alert.id == alert_id)) or "deleted"


# Jobs and runs


@bp.get("/jobs")
def list_jobs():
    """List jobs by name, paginated."""
    query = db.select(BackupJob)
    page, per_page = _pagination()
    total = db.session.scalar(db.select(func.count()).select_from(query.subquery()))
    jobs = db.session.execute(
        query.order_by(BackupJob.name, BackupJob.id).limit(per_page).offset((page - 1) * per_page)
    ).scalars().all()
    return jsonify({"jobs": [job_to_dict(job) for job in jobs], "page": page, "per_page": per_page, "total": total})


@bp.get("/jobs/<int:job_id>")
def get_job(job_id):
    return jsonify(job_to_dict(_get_or_404(BackupJob, job_id, "job_id")))


@bp.get("/jobs/<int:job_id>/runs")
def list_runs(job_id):
    """List a job's runs, newest first, paginated."""
    job = _get_or_404(BackupJob, job_id, "job_id")
    query = db.select(BackupRun).where(BackupRun.job_id == job.id)
    page, per_page = _pagination()
    total = db.session.scalar(db.select(func.count()).select_from(query.subquery()))
    runs = db.session.execute(
        query.order_by(BackupRun.finished_at.desc(), BackupRun.id.desc()).limit(per_page).offset((page - 1) * per_page)
    ).scalars().all()
    return jsonify({"runs": [run_to_dict(run) for run in runs], "page": page, "per_page": per_page, "total": total})


@bp.post("/jobs")
def create_job():
    """Create a job (platform admins only); the response contains its hook token, shown only this once."""
    if not g.api_user.is_platform_admin:
        raise ApiError(403, None, "only platform admins may create jobs")
    data = read_json_body(JOB_FIELDS)
    name, fields = parse_job_fields(data)
    if db.session.scalar(db.select(BackupJob.id).where(BackupJob.name == name)) is not None:
        raise ApiError(409, "name", f"a job named {name!r} already exists")
    job, token = BackupJob.create(name, **fields)
    db.session.add(job)
    try:
        db.session.commit()
    except IntegrityError:
        # Another request created a job of the same name in the meantime.
        db.session.rollback()
        raise ApiError(409, "name", f"a job named {name!r} already exists") from None
    log.info("Job %s: created through the API by %s", job.id, g.api_user.email)
    body = {
        "job": job_to_dict(job),
        "hook_token": token,
        "hook_url": f"{current_app.config['BASE_URL'].rstrip('/')}/hooks/{token}",
    }
    return jsonify(body), 201, {"Location": url_for("api.get_job", job_id=job.id)}


def job_to_dict(job):
    return {
        "id": job.id,
        "name": job.name,
        "description": job.description,
        "paused": job.paused,
        "schedule_cron": job.schedule_cron,
        "schedule_timezone": job.schedule_timezone,
        "schedule_interval_seconds": job.schedule_interval_seconds,
        "grace_seconds": job.grace_seconds,
        "max_run_seconds": job.max_run_seconds,
        "baseline_window": job.baseline_window,
        "baseline_min_samples": job.baseline_min_samples,
        "created_at": job.created_at.isoformat(),
        "last_run_at": _isoformat(job.last_run_at),
    }


def run_to_dict(run):
    return {
        "id": run.id,
        "job_id": run.job_id,
        # The client's idempotency key, sent as `run_id` in the report.
        "client_run_id": run.client_run_id,
        "kind": run.kind,
        "status": run.status,
        "started_at": _isoformat(run.started_at),
        "finished_at": run.finished_at.isoformat(),
        "duration_seconds": run.duration_seconds,
        "size_bytes": run.size_bytes,
        "exit_code": run.exit_code,
        "error": run.error,
        "log_tail": run.log_tail,
        "log_truncated_bytes": run.log_truncated_bytes,
        "storage_backend": run.storage_backend,
        "object_key": run.object_key,
        "sha256": run.sha256,
        "received_at": run.received_at.isoformat(),
        "checked_at": _isoformat(run.checked_at),
    }


# The description of the API


@bp.get("/openapi.json")
def openapi_document():
    """Return the OpenAPI 3.1 description of the JSON API and the hooks; no login needed."""
    from app.openapi import build_openapi

    return jsonify(build_openapi())


# Helpers


def _isoformat(value):
    return value.isoformat() if value is not None else None


def _get_or_404(model, object_id, field):
    # Ids above the INTEGER range match no row, and SQLite cannot bind those above 2**63 - 1.
    row = db.session.get(model, object_id) if object_id <= MAX_INT32 else None
    if row is None:
        noun = {"alert_id": "alert", "job_id": "job"}[field]
        raise ApiError(404, field, f"no {noun} with id {object_id}")
    return row


def _choice(name, value, choices):
    if value.upper() not in choices:
        raise ApiError(400, name, f"unknown {name} {value!r}; expected one of {', '.join(choices)}")
    return value.upper()


def _job_id(value):
    """Accept a job id or an exact job name."""
    if value.isascii() and value.isdigit():
        return _id_argument("job", value)
    job_id = db.session.scalar(db.select(BackupJob.id).where(BackupJob.name == value))
    if job_id is None:
        raise ApiError(400, "job", f"no job with id or name {value!r}")
    return job_id


def _id_argument(name, raw):
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_INT32:
        raise ApiError(400, name, f"must be an id between 1 and {MAX_INT32}, got {raw!r}")
    return int(raw)


def _pagination():
    page = _positive_int("page", 1)
    per_page = min(_positive_int("per_page", 50), current_app.config["API_MAX_PER_PAGE"])
    return page, per_page


def _positive_int(name, default):
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 10**9:
        raise ApiError(400, name, f"must be a positive integer, got {raw!r}")
    return int(raw)
