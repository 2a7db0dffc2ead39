"""Console views for storage backends: current use, a chart over time, the forecast."""

from datetime import timedelta

from flask import current_app, flash
from flask_login import current_user
from flask_admin.actions import action
from markupsafe import Markup
from wtforms import SelectField
from wtforms.validators import ValidationError

from app.admin.charts import Chart, Series, human
from app.admin.views import SecureModelView
from app.extensions import db
from app.models import UsageReading, utcnow
from app.models.storage import BACKEND_KINDS
from app.monitoring.capacity import forecast_full

CHART_DAYS = 30


def latest_reading(backend):
    return db.session.execute(
        db.select(UsageReading).where(UsageReading.backend_id == backend.id)
        .order_by(UsageReading.measured_at.desc()).limit(1)
    ).scalar_one_or_none()


def _use(view, context, model, name):
    reading = latest_reading(model)
    if reading is None:
        return Markup('<span class="text-muted">not measured yet</span>')
    capacity = model.capacity_bytes or reading.capacity_bytes
    if not capacity:
        return human(reading.used_bytes, "B")
    percent = 100.0 * reading.used_bytes / capacity
    return Markup("{} of {} ({:.1f}%)").format(human(reading.used_bytes, "B"), human(capacity, "B"), percent)


def _forecast(view, context, model, name):
    capacity = model.capacity_bytes
    if not capacity:
        return ""
    forecast = forecast_full(model, capacity, utcnow())
    if forecast is None:
        return Markup('<span class="text-muted">too few readings</span>')
    if forecast.days_left is None:
        return "not filling up"
    return f"full in {forecast.days_left:.1f} days ({forecast.full_at:%Y-%m-%d})"


def usage_chart(backend, now=None):
    """Return the SVG chart of used bytes over CHART_DAYS, with capacity, thresholds and forecast."""
    now = now or utcnow()
    readings = db.session.execute(
        db.select(UsageReading.measured_at, UsageReading.used_bytes)
        .where(UsageReading.backend_id == backend.id, UsageReading.measured_at >= now - timedelta(days=CHART_DAYS))
        .order_by(UsageReading.measured_at)
    ).all()
    chart = Chart(title=f"Use of {backend.name}", unit="B", series=[Series("used", list(readings), "used")])
    capacity = backend.capacity_bytes or (latest_reading(backend).capacity_bytes if readings else None)
    if capacity:
        config = current_app.config
        warning = backend.warning_percent or config["STORAGE_WARNING_PERCENT"]
        critical = backend.critical_percent or config["STORAGE_CRITICAL_PERCENT"]
        chart.lines = [
            (capacity, "capacity", "capacity"),
            (capacity * critical / 100, f"critical {critical:g}%", "critical"),
            (capacity * warning / 100, f"warning {warning:g}%", "warning"),
        ]
        forecast = forecast_full(backend, capacity, now)
        if readings and forecast is not None and forecast.days_left is not None:
            horizon = min(forecast.days_left, CHART_DAYS)
            last_at, last_used = readings[-1]
            end_used = last_used + forecast.bytes_per_day * horizon
            chart.series.append(Series("forecast", [(last_at, last_used), (now + timedelta(days=horizon), end_used)], "forecast", dashed=True))
    return chart.render()


class StorageBackendView(SecureModelView):
    can_view_details = True
    column_list = ("name", "kind", "path", "bucket", "use", "forecast", "enabled")
    column_formatters = {"use": _use, "forecast": _forecast}
    column_details_list = ("name", "kind", "path", "bucket", "capacity_bytes", "warning_percent",
                           "critical_percent", "forecast_warning_days", "enabled", "use", "forecast")
    column_formatters_detail = {"use": _use, "forecast": _forecast}
    form_columns = ("name", "kind", "path", "bucket", "capacity_bytes", "warning_percent", "critical_percent",
                    "forecast_warning_days", "enabled")
    form_extra_fields = {"kind": SelectField("Kind", choices=[(kind, kind) for kind in BACKEND_KINDS])}
    column_descriptions = {
        "capacity_bytes": "Quota in bytes; required for r2 and b2, an optional limit for local folders.",
        "path": "Folder of a local backend.",
        "bucket": "Bucket of an r2 or b2 backend. Credentials come from the environment only.",
    }
    details_template = "admin/storage_details.html"

    # Everyone logged in may look; only platform admins may change.
    @property
    def can_create(self):
        return current_user.is_authenticated and current_user.is_platform_admin

    @property
    def can_delete(self):
        return self.can_create

    def on_model_change(self, form, model, is_created):
        if model.kind == "local" and not model.path:
            raise ValidationError("a local backend needs a path")
        if model.kind in ("r2", "b2") and not (model.bucket and model.capacity_bytes):
            raise ValidationError("a cloud backend needs a bucket and a quota (capacity in bytes)")
        for name in ("warning_percent", "critical_percent"):
            value = getattr(model, name)
            if value is not None and not 0 < value <= 100:
                raise ValidationError(f"{name} must be between 0 and 100")

    def render(self, template, **kwargs):
        if template == self.details_template and kwargs.get("model") is not None:
            kwargs["chart"] = usage_chart(kwargs["model"])
        return super().render(template, **kwargs)

    @action("measure", "Measure now", "Measure the selected backends now?")
    def action_measure(self, ids):
        from app.queue import get_queue

        get_queue().enqueue("app.jobs.monitor_storage_capacity")
        flash("A storage check was queued; readings appear when the worker has run it.", "success")
