"""The read API for logged-in users: alerts and their summary."""

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user
from sqlalchemy import func

from app.extensions import db
from app.models import Alert, BackupJob, Severity
from app.models.alerts import ALERT_STATUSES
from app.monitoring.alerts import get_alert_summary

bp = Blueprint("api", __name__, url_prefix="/api/v1")


class QueryError(ValueError):
    def __init__(self, field, message):
        super().__init__(message)
        self.field = field
        self.message = message


@bp.before_request
def require_login():
    if not current_user.is_authenticated:
        return jsonify({"error": {"field": "session", "message": "login required; sign in at /login"}}), 401


@bp.errorhandler(QueryError)
def query_error(exc):
    return jsonify({"error": {"field": exc.field, "message": exc.message}}), 400


@bp.get("/alerts")
def list_alerts():
    """List alerts, worst and newest first; filters: severity, status, job; paginated."""
    query = db.select(Alert)
    severity = request.args.get("severity")
    if severity:
        try:
            query = query.where(Alert.severity == Severity.parse(severity))
        except ValueError as exc:
            raise QueryError("severity", str(exc)) from None
    status = request.args.get("status")
    if status:
        if status.upper() not in ALERT_STATUSES:
            raise QueryError("status", f"unknown status {status!r}; expected one of {', '.join(ALERT_STATUSES)}")
        query = query.where(Alert.status == status.upper())
    job = request.args.get("job")
    if job:
        query = query.where(Alert.job_id == _job_id(job))

    page = _positive_int("page", 1)
    per_page = min(_positive_int("per_page", 50), current_app.config["API_MAX_PER_PAGE"])
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


def _job_id(value):
    """Accept a job id or an exact job name."""
    if value.isdigit():
        return int(value)
    job_id = db.session.scalar(db.select(BackupJob.id).where(BackupJob.name == value))
    if job_id is None:
        raise QueryError("job", f"no job with id or name {value!r}")
    return job_id


def _positive_int(name, default):
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1 or int(raw) > 10**9:
        raise QueryError(name, f"must be a positive integer, got {raw!r}")
    return int(raw)
