"""Console views for backup jobs and their runs.

Every logged-in user may read jobs and runs. Only platform admins may
create, edit, delete, rotate a token, pause or silence (SecureModelView
enforces it): other users are sent back from Flask-Admin's forms without a
change, and get 403 from the job page's actions.
"""

import logging
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSimError
from flask import abort, current_app, flash, has_app_context, make_response, redirect, request, url_for
from flask_admin import expose
from flask_admin.contrib.sqla.filters import (
    DateTimeBetweenFilter,
    DateTimeGreaterFilter,
    DateTimeSmallerFilter,
    FilterEqual,
    IntEqualFilter,
)
from flask_admin.form import FormOpts
from flask_admin.helpers import get_redirect_target
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import delete, inspect
from sqlalchemy.exc import IntegrityError
from wtforms import IntegerField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from app.admin.formatting import human_duration, human_size, relative_time, time_stamp
from app.admin.job_charts import job_charts
from app.admin.job_snippets import hook_snippets, hook_urls
from app.admin.silence_views import QUICK_SILENCE, active_and_upcoming_silences, create_silence, end_button
from app.admin.views import SecureModelView, column_severity, is_platform_admin
from app.extensions import db
from app.models import Alert, BackupJob, BackupRun, utcnow
from app.models.alerts import OPEN_STATUSES
from app.models.jobs import RUN_KINDS, RUN_STATUSES
from app.monitoring.missed import grace, max_run, next_expected, pause_job_checks, validate_schedule
from app.notifications.dispatcher import commit_and_dispatch

log = logging.getLogger(__name__)

RUNS_PER_PAGE = 25
OPEN_ALERTS_SHOWN = 50
# Upper limit of the baseline window and minimum samples a job may set.
BASELINE_MAX = 1000
TIMEZONES = sorted(available_timezones())
SCHEDULE_FIELDS = ("schedule_cron", "schedule_timezone", "schedule_interval_seconds")


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _strip_or_none(value):
    value = _strip(value)
    return value or None


class JobForm(FlaskForm):
    name = StringField("Name", filters=[_strip], validators=[DataRequired(), Length(max=200)])
    description = TextAreaField("Description", filters=[_strip_or_none], validators=[Optional(), Length(max=5000)])
    schedule_cron = StringField(
        "Cron expression", filters=[_strip_or_none], validators=[Optional(), Length(max=100)],
        description="When runs are expected, such as 30 2 * * * for 02:30 every day. "
                    "Leave empty for an interval or for no schedule.",
    )
    schedule_timezone = StringField(
        "Time zone", default="UTC", filters=[_strip_or_none], validators=[Optional(), Length(max=64)],
        render_kw={"list": "iana-timezones", "autocomplete": "off"},
        description="IANA name the cron expression is read in, such as Europe/Berlin.",
    )
    schedule_interval_seconds = IntegerField(
        "Interval (seconds)", validators=[Optional()],
        description="Seconds between runs, 60 to 31622400 (86400 is a day), instead of a cron expression. "
                    "Leave both empty and missed runs are not checked.",
    )
    grace_seconds = IntegerField(
        "Grace (seconds)", validators=[Optional(), NumberRange(min=0, message="must be 0 or more seconds")],
        description="How late a run may report before it counts as missed. Empty: the setting.",
    )
    max_run_seconds = IntegerField(
        "Maximum run time (seconds)", validators=[Optional(), NumberRange(min=1, message="must be 1 or more seconds")],
        description="How long a started run may go without finishing. Empty: the setting.",
    )
    baseline_window = IntegerField(
        "Baseline window (runs)", validators=[Optional(), NumberRange(min=1, max=BASELINE_MAX)],
        description="How many recent successful runs the size and duration checks average. Empty: the setting.",
    )
    baseline_min_samples = IntegerField(
        "Baseline minimum samples", validators=[Optional(), NumberRange(min=1, max=BASELINE_MAX)],
        description="How many successful runs must exist before those checks apply. Empty: the setting.",
    )

    def validate(self, extra_validators=None):
        valid = super().validate(extra_validators)
        valid = self._validate_schedule() and valid
        window, minimum = self.baseline_window.data, self.baseline_min_samples.data
        if window is not None and minimum is not None and minimum > window:
            self.baseline_min_samples.errors.append(
                f"must not be more than the baseline window ({window}), or the checks never apply"
            )
            valid = False
        return valid

    def _validate_schedule(self):
        """Put validate_schedule()'s message on the field it names, and return whether the schedule is valid."""
        cron = self.schedule_cron.data
        # A field that failed to parse is None here, and its own error is already set.
        interval = self.schedule_interval_seconds.data
        try:
            validate_schedule(cron, self.schedule_timezone.data or "UTC", interval)
            return True
        except ValueError as exc:
            field_name = self._add_schedule_error(exc)
        if field_name == "schedule_timezone" and cron:
            # The time zone is checked first, so check the cron expression in UTC as well.
            try:
                validate_schedule(cron, "UTC", interval)
            except ValueError as exc:
                self._add_schedule_error(exc)
        return False

    def _add_schedule_error(self, exc):
        field_name, _, message = str(exc).partition(": ")
        field = self._fields.get(field_name, self.schedule_cron)
        field.errors.append(message or str(exc))
        return field.name


def normalise_schedule(job):
    """Store "no interval" as None and a missing time zone as UTC."""
    if not job.schedule_interval_seconds:
        job.schedule_interval_seconds = None
    job.schedule_timezone = job.schedule_timezone or "UTC"


def name_taken(name, exclude_id=None):
    query = db.select(BackupJob.id).where(BackupJob.name == name)
    if exclude_id is not None:
        query = query.where(BackupJob.id != exclude_id)
    return db.session.execute(query.limit(1)).first() is not None


def describe_schedule(job):
    if job.schedule_cron:
        return f"cron {job.schedule_cron} in {job.schedule_timezone or 'UTC'}"
    if job.schedule_interval_seconds:
        return f"every {human_duration(job.schedule_interval_seconds)}"
    return "none: missed runs are not checked"


def local_stamp(moment, zone_name):
    """Return `moment` in the IANA time zone `zone_name`, as "2026-12-01 03:30 Europe/Berlin"."""
    return f"{moment.astimezone(ZoneInfo(zone_name)):%Y-%m-%d %H:%M} {zone_name}"


def _seconds_or_setting(value, effective):
    text = human_duration(effective.total_seconds())
    return text if value is not None else f"{text} (the setting)"


def _count_or_setting(value, setting):
    return f"{current_app.config[setting]} runs (the setting)" if value is None else f"{value} runs"


def _job_link(view, context, model, name):
    job = model.job if isinstance(model, BackupRun) else model
    if job is None:
        return ""
    return Markup('<a href="{}">{}</a>').format(url_for("jobs.details_view", id=job.id), job.name)


def _run_link(view, context, model, name):
    return Markup('<a href="{}">{}</a>').format(url_for("runs.details_view", id=model.id), model.id)


def _schedule(view, context, model, name):
    text = describe_schedule(model)
    if model.paused:
        return Markup('{} <span class="badge badge-secondary">paused</span>').format(text)
    return text


def _grace(view, context, model, name):
    return _seconds_or_setting(model.grace_seconds, grace(model))


def _max_run(view, context, model, name):
    return _seconds_or_setting(model.max_run_seconds, max_run(model))


def _stamp(view, context, model, name):
    return time_stamp(getattr(model, name))


def _size(view, context, model, name):
    value = model.size_bytes
    return "" if value is None else f"{human_size(value)} ({value:,} B)"


def _duration(view, context, model, name):
    return human_duration(model.duration_seconds)


def _preformatted(view, context, model, name):
    value = getattr(model, name)
    return Markup('<pre class="log-tail">{}</pre>').format(value) if value else ""


def _status(view, context, model, name):
    return Markup('<span class="run-status run-{0}">{0}</span>').format(model.status)


class JobView(SecureModelView):
    """Jobs: SecureModelView lets platform admins alone create, edit, delete and post to the job actions."""

    can_view_details = True
    form = JobForm
    create_template = "admin/job_create.html"
    edit_template = "admin/job_edit.html"
    details_template = "admin/job_details.html"
    column_default_sort = "name"
    column_list = ("name", "schedule", "last_run_at", "created_at")
    column_sortable_list = ("name", "last_run_at", "created_at")
    column_searchable_list = ("name",)
    column_filters = ("paused",)
    column_details_list = (
        "id", "name", "description", "schedule", "grace_seconds", "max_run_seconds",
        "baseline_window", "baseline_min_samples", "last_run_at", "schedule_since", "created_at",
    )
    column_labels = {
        "id": "ID", "last_run_at": "Last report", "schedule_since": "Schedule clock since", "grace_seconds": "Grace",
        "max_run_seconds": "Maximum run time", "baseline_window": "Baseline window",
        "baseline_min_samples": "Baseline minimum samples", "created_at": "Created",
    }
    column_formatters = {
        "name": _job_link, "schedule": _schedule, "last_run_at": _stamp, "created_at": _stamp,
    }
    column_formatters_detail = {
        "schedule": _schedule, "grace_seconds": _grace, "max_run_seconds": _max_run,
        "last_run_at": _stamp, "schedule_since": _stamp, "created_at": _stamp,
        "baseline_window": lambda v, c, m, n: _count_or_setting(m.baseline_window, "BASELINE_WINDOW"),
        "baseline_min_samples": lambda v, c, m, n: _count_or_setting(m.baseline_min_samples, "BASELINE_MIN_SAMPLES"),
    }

    # Creating: the token is shown once, in the response to the form.

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self):
        return_url = get_redirect_target() or self.get_url(".index_view")
        if not self.can_create:
            # As Flask-Admin's own create view does for users who may not create.
            return redirect(return_url)
        form = self.create_form()
        if request.method == "POST" and self.validate_form(form):
            job, token = BackupJob.create(form.name.data)
            form.populate_obj(job)
            normalise_schedule(job)
            db.session.add(job)
            try:
                db.session.commit()
            except IntegrityError:
                # Another request created the same name since the check.
                db.session.rollback()
                form.name.errors.append("a job with this name already exists")
            else:
                log.info("Job %s: created by user %s", job.id, current_user.id)
                return self._token_page(job, token, created=True)
        return self.render(
            self.create_template, form=form, form_opts=FormOpts(widget_args=self.form_widget_args),
            return_url=return_url, timezones=TIMEZONES,
        )

    def validate_form(self, form):
        valid = super().validate_form(form)
        if isinstance(form, JobForm) and form.name.data:
            editing = request.args.get("id", type=int) if request.endpoint == "jobs.edit_view" else None
            if name_taken(form.name.data, exclude_id=editing):
                form.name.errors.append("a job with this name already exists")
                valid = False
        return valid

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if request.method == "GET" and obj is not None and not obj.schedule_timezone:
            form.schedule_timezone.data = "UTC"
        return form

    def render(self, template, **kwargs):
        if template == self.edit_template:
            kwargs.setdefault("timezones", TIMEZONES)
        if template == self.details_template and kwargs.get("model") is not None:
            kwargs.update(job_page_context(kwargs["model"]))
        return super().render(template, **kwargs)

    def on_model_change(self, form, model, is_created):
        normalise_schedule(model)
        if is_created:
            return
        state = inspect(model)
        if any(state.attrs[name].history.has_changes() for name in SCHEDULE_FIELDS):
            model.schedule_since = utcnow()

    def get_save_return_url(self, model, is_created=False):
        return self.get_url(".details_view", id=model.id)

    def delete_model(self, model):
        """Delete the job with one statement, and let the database delete its runs, alerts and silences.

        Deleting through the ORM would load every run of the job first.
        """
        job_id = model.id
        db.session.expunge(model)
        db.session.execute(delete(BackupJob).where(BackupJob.id == job_id))
        db.session.commit()
        log.info("Job %s: deleted by user %s", job_id, current_user.id)
        return True

    # Actions on the job page, each a POST with the form's CSRF token.

    @expose("/<int:job_id>/rotate-token", methods=("POST",))
    def rotate_token_view(self, job_id):
        job = self._job_or_404(job_id)
        token = job.rotate_token()
        db.session.commit()
        log.info("Job %s: hook token rotated by user %s", job.id, current_user.id)
        return self._token_page(job, token, created=False)

    @expose("/<int:job_id>/pause", methods=("POST",))
    def pause_view(self, job_id):
        job = self._job_or_404(job_id)
        job.paused = True
        pause_job_checks(job, current_user)
        commit_and_dispatch()
        flash(f"Paused {job.name}: missed and overdue runs are not checked until it is unpaused.", "success")
        return redirect(self.get_url(".details_view", id=job.id))

    @expose("/<int:job_id>/unpause", methods=("POST",))
    def unpause_view(self, job_id):
        job = self._job_or_404(job_id)
        job.paused = False
        # The schedule starts again from now, so the paused time does not count as missed runs.
        job.schedule_since = utcnow()
        db.session.commit()
        flash(f"Unpaused {job.name}: its schedule is checked again from now.", "success")
        return redirect(self.get_url(".details_view", id=job.id))

    @expose("/<int:job_id>/silence", methods=("POST",))
    def silence_view(self, job_id):
        job = self._job_or_404(job_id)
        now = utcnow()
        reason = _strip(request.form.get("reason", "")) or "Silenced for 2 hours from the job page"
        silence = create_silence(
            job=job, starts_at=now, ends_at=now + QUICK_SILENCE, reason=reason[:1000], user=current_user,
        )
        db.session.commit()
        flash(f"Silenced {job.name} until {time_stamp(silence.ends_at)}: its alerts are recorded but not sent.", "success")
        return redirect(self.get_url(".details_view", id=job.id))

    def _job_or_404(self, job_id):
        job = db.session.get(BackupJob, job_id) if job_id <= 2**31 - 1 else None
        if job is None:
            abort(404)
        return job

    def _token_page(self, job, token, created):
        hook_url, ping_url = hook_urls(token)
        body = self.render(
            "admin/job_token.html", job=job, token=token, hook_url=hook_url, ping_url=ping_url,
            snippets=hook_snippets(job, token), created=created,
        )
        response = make_response(body)
        # The token is on this page only, so it must stay out of caches and the back button.
        response.headers["Cache-Control"] = "no-store"
        return response


def job_page_context(job, now=None):
    """Return what the job page shows besides the settings: schedule, alerts, silences, charts, runs."""
    now = now or utcnow()
    try:
        expected = next_expected(job, now)
        schedule_error = None
    except (CronSimError, ZoneInfoNotFoundError, ValueError, StopIteration) as exc:
        expected, schedule_error = None, str(exc)
    open_alerts = db.session.execute(
        db.select(Alert).where(Alert.job_id == job.id, Alert.status.in_(OPEN_STATUSES))
        .order_by(Alert.severity.desc(), Alert.last_seen_at.desc()).limit(OPEN_ALERTS_SHOWN)
    ).scalars().all()
    silences = active_and_upcoming_silences(job=job, now=now)
    active = [s for s in silences if s.starts_at <= now]
    page = max(request.args.get("runs_page", 1, type=int), 1)
    runs = db.session.execute(
        db.select(BackupRun).where(BackupRun.job_id == job.id)
        .order_by(BackupRun.finished_at.desc(), BackupRun.id.desc())
        .offset((page - 1) * RUNS_PER_PAGE).limit(RUNS_PER_PAGE + 1)
    ).scalars().all()
    return {
        "now": now,
        "expected": expected,
        "schedule_error": schedule_error,
        "open_alerts": open_alerts,
        "silences": silences,
        "silenced_until": max((s.ends_at for s in active), default=None),
        "charts": job_charts(job, now),
        "runs": runs[:RUNS_PER_PAGE],
        "runs_page": page,
        "runs_has_next": len(runs) > RUNS_PER_PAGE,
        "can_manage": is_platform_admin(),
        "quick_silence": human_duration(QUICK_SILENCE.total_seconds()),
        "time_stamp": time_stamp,
        "relative_time": relative_time,
        "local_stamp": local_stamp,
        "end_button": end_button,
        "human_size": human_size,
        "human_duration": human_duration,
        "severity_badge": lambda alert: column_severity(None, None, alert, "severity"),
    }


def _job_options():
    # Flask-Admin also reads the options once when the view is built, outside any request.
    if not has_app_context():
        return []
    return [(job_id, name) for job_id, name in db.session.execute(
        db.select(BackupJob.id, BackupJob.name).order_by(BackupJob.name)
    )]


class RunView(SecureModelView):
    """All runs, the latest finished first.

    With a million runs, the list must not count them or sort them in full.
    So it pages without a total, and it sorts only by orders that an index
    covers: finish time with id as the tie-breaker, or id alone.
    """

    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    simple_list_pager = True
    page_size = 50
    column_default_sort = [("finished_at", True), ("id", True)]
    # Only indexed orders: sorting the whole table by another column reads every row.
    column_sortable_list = ("id", "finished_at")
    column_list = ("id", "job", "kind", "status", "finished_at", "duration_seconds", "size_bytes", "exit_code")
    column_details_list = (
        "id", "job", "client_run_id", "kind", "status", "started_at", "finished_at", "duration_seconds",
        "size_bytes", "exit_code", "storage_backend", "object_key", "sha256", "error", "log_tail",
        "log_truncated_bytes", "received_at", "checked_at",
    )
    column_labels = {
        "id": "Run", "finished_at": "Finished", "duration_seconds": "Duration", "size_bytes": "Size",
        "client_run_id": "Client run id", "log_truncated_bytes": "Log bytes cut", "checked_at": "Checked",
        "received_at": "Received", "started_at": "Started",
    }
    column_filters = (
        IntEqualFilter(BackupRun.job_id, "Job", options=_job_options),
        FilterEqual(BackupRun.kind, "Kind", options=[(kind, kind) for kind in RUN_KINDS]),
        FilterEqual(BackupRun.status, "Status", options=[(status, status) for status in RUN_STATUSES]),
        DateTimeGreaterFilter(BackupRun.finished_at, "Finished after"),
        DateTimeSmallerFilter(BackupRun.finished_at, "Finished before"),
        DateTimeBetweenFilter(BackupRun.finished_at, "Finished between"),
    )
    column_formatters = {
        "id": _run_link, "job": _job_link, "status": _status, "finished_at": _stamp,
        "duration_seconds": _duration, "size_bytes": _size,
    }
    column_formatters_detail = {
        "job": _job_link, "status": _status, "size_bytes": _size, "duration_seconds": _duration,
        "started_at": _stamp, "finished_at": _stamp, "received_at": _stamp, "checked_at": _stamp,
        "log_tail": _preformatted, "error": _preformatted,
    }

    @expose("/")
    def index_view(self):
        # Flask-Admin caches filter options, but jobs come and go, so the list is read for each page.
        self._refresh_filters_cache()
        return super().index_view()
