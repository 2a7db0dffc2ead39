"""Console views. Flask-Admin escapes every value it renders; the formatters
below build markup only with markupsafe, so report text stays text."""

from flask import redirect, request, url_for
from flask_admin import AdminIndexView, expose
from flask_admin.contrib.sqla import ModelView, filters
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_admin.model import filters as model_filters
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup

from app.extensions import db
from app.models import Alert, Severity
from app.monitoring.alerts import get_active_alerts, get_alert_summary


class LoginRequiredMixin:
    """Send anonymous visitors to the login page; only admins may change data."""

    def is_accessible(self):
        return current_user.is_authenticated

    def inaccessible_callback(self, name, **kwargs):
        # full_path ends in "?" when there is no query string.
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


class ConsoleIndexView(LoginRequiredMixin, AdminIndexView):
    @expose("/")
    def index(self):
        if not self.is_accessible():
            return self.inaccessible_callback("index")
        summary = get_alert_summary()
        alerts = db.session.execute(get_active_alerts().limit(20)).scalars().all()
        return self.render("admin/console_index.html", summary=summary, alerts=alerts)


class ColumnTypeFilterConverter(filters.FilterConverter):
    """Filters for the project's own column types, by the types they wrap."""

    @model_filters.convert("UTCDateTime")
    def conv_utc_datetime(self, column, name, **kwargs):
        return self.conv_datetime(column, name, **kwargs)


class SecureModelView(LoginRequiredMixin, ModelView):
    # Flask-WTF forms, so the app-wide CSRF protection covers every form and action.
    form_base_class = FlaskForm
    filter_converter = ColumnTypeFilterConverter()
    page_size = 50
    can_set_page_size = True

    @property
    def can_edit(self):
        return current_user.is_authenticated and current_user.is_platform_admin


def column_severity(view, context, model, name):
    severity = getattr(model, name)
    return Markup('<span class="severity-{0}">{0}</span>').format(severity.name) if severity else ""


def _job_link(view, context, model, name):
    job = model.job
    if job is None:
        return ""
    return Markup('<a href="{}">{}</a>').format(url_for("jobs.details_view", id=job.id), job.name)


def _run_link(view, context, model, name):
    if model.run_id is None:
        return ""
    return Markup('<a href="{}">run {}</a>').format(url_for("runs.details_view", id=model.run_id), model.run_id)


def _preformatted(view, context, model, name):
    value = getattr(model, name)
    return Markup('<pre class="log-tail">{}</pre>').format(value) if value else ""


def _bytes(view, context, model, name):
    value = getattr(model, name)
    return "" if value is None else f"{value:,} B"


class AlertView(SecureModelView):
    can_create = False
    can_delete = False
    can_view_details = True
    column_default_sort = [("last_seen_at", True)]
    column_list = ("id", "severity", "alert_type", "status", "job", "message", "occurrences", "last_seen_at")
    column_details_list = (
        "id", "severity", "alert_type", "status", "job", "run", "storage_backend", "message", "details",
        "occurrences", "created_at", "last_seen_at", "acknowledged_at", "resolved_at",
    )
    column_filters = (
        FilterEqual(Alert.severity, "Severity", options=[(str(s.value), s.name) for s in Severity]),
        "alert_type",
        "status",
        "job.name",
        "created_at",
        "last_seen_at",
    )
    column_searchable_list = ("message",)
    column_sortable_list = ("id", "severity", "alert_type", "status", "occurrences", "last_seen_at")
    column_formatters = {"severity": column_severity, "job": _job_link, "run": _run_link}

    @property
    def can_edit(self):
        return False


class JobView(SecureModelView):
    can_create = False
    can_delete = False
    can_view_details = True
    column_list = ("id", "name", "paused", "last_run_at", "created_at")
    column_details_list = ("id", "name", "description", "paused", "baseline_window", "baseline_min_samples", "last_run_at", "created_at")
    column_searchable_list = ("name",)
    form_columns = ("name", "description", "paused", "baseline_window", "baseline_min_samples")
    column_descriptions = {
        "baseline_window": "How many recent successful runs the size and duration checks average (empty: the setting).",
        "baseline_min_samples": "How many successful runs must exist before those checks apply (empty: the setting).",
    }


class RunView(SecureModelView):
    can_create = False
    can_delete = False
    can_view_details = True
    column_default_sort = [("finished_at", True)]
    column_list = ("id", "job", "kind", "status", "finished_at", "duration_seconds", "size_bytes", "exit_code", "checked_at")
    column_details_list = (
        "id", "job", "client_run_id", "kind", "status", "started_at", "finished_at", "duration_seconds",
        "size_bytes", "exit_code", "storage_backend", "error", "log_tail", "log_truncated_bytes",
        "object_key", "sha256", "received_at", "checked_at",
    )
    column_filters = ("kind", "status", "job.name", "finished_at")
    column_formatters = {"job": _job_link, "size_bytes": _bytes}
    column_formatters_detail = {"job": _job_link, "size_bytes": _bytes, "log_tail": _preformatted, "error": _preformatted}

    @property
    def can_edit(self):
        return False

