"""Console view for silences: maintenance windows in which a job's or a storage
backend's alerts are recorded but not sent."""

import logging
from datetime import timedelta, timezone

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.contrib.sqla.filters import BaseSQLAFilter, FilterEqual
from flask_admin.helpers import get_redirect_target
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from sqlalchemy import update
from sqlalchemy.orm import joinedload
from wtforms import BooleanField, DateTimeLocalField, SelectField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length

from app.admin.formatting import time_stamp
from app.admin.views import SecureModelView, is_platform_admin
from app.extensions import db
from app.models import Alert, BackupJob, Silence, StorageBackend, utcnow

log = logging.getLogger(__name__)

# A longer silence needs the confirmation box ticked, so a typo in a year cannot mute a job for good.
MAX_SILENCE = timedelta(days=30)
QUICK_SILENCE = timedelta(hours=2)
REASON_MAX_CHARS = 1000
SILENCES_SHOWN = 20
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]


def create_silence(*, starts_at, ends_at, reason, user, job=None, storage_backend=None):
    """Add a silence of `job` or of the backend named `storage_backend`. The caller commits."""
    silence = Silence(
        job_id=job.id if job is not None else None,
        storage_backend=storage_backend if job is None else None,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        created_by_id=user.id if user is not None else None,
    )
    db.session.add(silence)
    db.session.flush()
    log.info("Silence %s: created for %s until %s", silence.id, _subject_text(silence), ends_at.isoformat())
    return silence


def end_silence(silence, now):
    """End `silence` at `now`. The caller commits.

    An alert raised during the silence has its next reminder at the
    silence's end. Those reminders move to now, so the alerts are sent on the
    reminder pass that follows instead of at the original end.
    """
    old_end = silence.ends_at
    silence.starts_at = min(silence.starts_at, now)
    silence.ends_at = now
    if silence.job_id is not None:
        subject = Alert.job_id == silence.job_id
    else:
        subject = Alert.storage_backend == silence.storage_backend
    db.session.execute(
        update(Alert)
        .where(subject, Alert.status == "ACTIVE", Alert.next_reminder_at == old_end)
        .values(next_reminder_at=now)
        .execution_options(synchronize_session=False)
    )
    log.info("Silence %s: ended early by user %s", silence.id, current_user.id)


def active_and_upcoming_silences(*, job, now):
    """Return the job's silences that have not ended, the earliest start first."""
    return db.session.execute(
        db.select(Silence).options(joinedload(Silence.created_by))
        .where(Silence.job_id == job.id, Silence.ends_at > now)
        .order_by(Silence.starts_at).limit(SILENCES_SHOWN)
    ).scalars().all()


def silence_state(silence, now):
    if silence.ends_at <= now:
        return "ended"
    if silence.starts_at > now:
        return "upcoming"
    return "active"


def _subject_text(silence):
    if silence.job_id is not None:
        return f"job {silence.job.name}" if silence.job is not None else f"job {silence.job_id}"
    return f"storage backend {silence.storage_backend}"


def _optional_int(value):
    if value in (None, "", "None"):
        return None
    return int(value)


def _utc(moment):
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


class SilenceForm(FlaskForm):
    job_id = SelectField("Job", coerce=_optional_int, validate_choice=False,
                         description="Silence one job, or leave empty and choose a storage backend.")
    storage_backend = SelectField("Storage backend", validate_choice=False)
    starts_at = DateTimeLocalField("Starts (UTC)", format=DATETIME_FORMATS,
                                   validators=[InputRequired(message="a start time is required")])
    ends_at = DateTimeLocalField("Ends (UTC)", format=DATETIME_FORMATS,
                                 validators=[InputRequired(message="an end time is required")])
    reason = TextAreaField("Reason", filters=[lambda v: v.strip() if isinstance(v, str) else v],
                           validators=[DataRequired(message="a reason is required, so others know why alerts are muted"),
                                       Length(max=REASON_MAX_CHARS)])
    confirm_long = BooleanField(f"Allow a silence longer than {MAX_SILENCE.days} days")

    def fill_choices(self):
        jobs = db.session.execute(db.select(BackupJob.id, BackupJob.name).order_by(BackupJob.name)).all()
        self.job_id.choices = [("", "(none)")] + [(job_id, name) for job_id, name in jobs]
        backends = db.session.execute(db.select(StorageBackend.name).order_by(StorageBackend.name)).scalars().all()
        self.storage_backend.choices = [("", "(none)")] + [(name, name) for name in backends]

    def validate(self, extra_validators=None):
        valid = super().validate(extra_validators)
        valid = self._validate_subject() and valid
        valid = self._validate_window(utcnow()) and valid
        return valid

    def _validate_subject(self):
        job_id, backend = self.job_id.data, self.storage_backend.data or None
        if job_id is None and backend is None:
            self.job_id.errors.append("choose a job or a storage backend")
            return False
        if job_id is not None and backend is not None:
            self.job_id.errors.append("choose a job or a storage backend, not both")
            return False
        if job_id is not None and (job_id > 2**31 - 1 or db.session.get(BackupJob, job_id) is None):
            self.job_id.errors.append(f"job {job_id} does not exist; it may have been deleted")
            return False
        if backend is not None and db.session.execute(
            db.select(StorageBackend.id).where(StorageBackend.name == backend)
        ).first() is None:
            self.storage_backend.errors.append(f"no storage backend is named {backend!r}")
            return False
        return True

    def _validate_window(self, now):
        starts, ends = _utc(self.starts_at.data), _utc(self.ends_at.data)
        if starts is None or ends is None:
            return True
        if ends <= starts:
            self.ends_at.errors.append("must be after the start")
            return False
        if ends <= now:
            self.ends_at.errors.append("is in the past; a silence must end in the future")
            return False
        if ends - starts > MAX_SILENCE and not self.confirm_long.data:
            self.ends_at.errors.append(
                f"makes the silence longer than {MAX_SILENCE.days} days; "
                "tick the box below to confirm, or choose an earlier end"
            )
            return False
        return True


class SilenceStateFilter(BaseSQLAFilter):
    """Active, upcoming or ended silences, by their times against now."""

    def apply(self, query, value, alias=None):
        now = utcnow()
        if value == "active":
            return query.filter(Silence.starts_at <= now, Silence.ends_at > now)
        if value == "upcoming":
            return query.filter(Silence.starts_at > now)
        return query.filter(Silence.ends_at <= now)

    def operation(self):
        return "is"


def _subject(view, context, model, name):
    if model.job_id is not None:
        return Markup('<a href="{}">{}</a>').format(url_for("jobs.details_view", id=model.job_id), model.job.name)
    return Markup("storage backend {}").format(model.storage_backend)


def _state(view, context, model, name):
    state = silence_state(model, utcnow())
    badge = {"active": "warning", "upcoming": "info", "ended": "secondary"}[state]
    return Markup('<span class="badge badge-{}">{}</span>').format(badge, state)


def _stamp(view, context, model, name):
    return time_stamp(getattr(model, name))


def end_button(silence):
    """Return the "End now" form of a silence that has not ended, for platform admins only."""
    if not is_platform_admin() or silence.ends_at <= utcnow():
        return ""
    return Markup(
        '<form method="post" action="{}" class="d-inline">'
        '<input type="hidden" name="csrf_token" value="{}">'
        '<button class="btn btn-sm btn-outline-danger" type="submit">End now</button></form>'
    ).format(url_for("silences.end_view", silence_id=silence.id, next=request.full_path.rstrip("?")), generate_csrf())


class SilenceView(SecureModelView):
    """Silences, which everyone logged in may list. SecureModelView lets only platform admins create and end them."""

    form = SilenceForm
    can_view_details = True
    column_default_sort = ("ends_at", True)
    column_list = ("id", "subject", "state", "starts_at", "ends_at", "reason", "created_by", "end")
    column_details_list = ("id", "subject", "state", "starts_at", "ends_at", "reason", "created_by", "created_at", "end")
    column_sortable_list = ("starts_at", "ends_at")
    column_labels = {"id": "ID", "end": "", "starts_at": "Starts", "ends_at": "Ends", "created_by": "Created by"}
    column_filters = (
        SilenceStateFilter(Silence.ends_at, "State", options=[("active", "active"), ("upcoming", "upcoming"), ("ended", "ended")]),
        FilterEqual(Silence.storage_backend, "Storage backend"),
        "job.name",
    )
    column_formatters = {
        "subject": _subject, "state": _state, "starts_at": _stamp, "ends_at": _stamp, "created_at": _stamp,
        "end": lambda v, c, m, n: end_button(m),
    }
    column_formatters_detail = column_formatters

    # A silence is changed by ending it early and creating another. Ended
    # silences stay listed until the daily cleanup removes old ones.
    can_edit = False
    can_delete = False

    def get_query(self):
        return super().get_query().options(joinedload(Silence.job), joinedload(Silence.created_by))

    def create_form(self, obj=None):
        form = super().create_form(obj)
        form.fill_choices()
        if request.method == "GET":
            now = utcnow().replace(second=0, microsecond=0, tzinfo=None)
            form.starts_at.data = now
            form.ends_at.data = now + QUICK_SILENCE
            form.job_id.data = request.args.get("job_id", type=int)
            form.storage_backend.data = request.args.get("storage_backend", "")
        return form

    def create_model(self, form):
        job_id = form.job_id.data
        silence = create_silence(
            job=db.session.get(BackupJob, job_id) if job_id is not None else None,
            storage_backend=form.storage_backend.data or None,
            starts_at=_utc(form.starts_at.data),
            ends_at=_utc(form.ends_at.data),
            reason=form.reason.data,
            user=current_user,
        )
        db.session.commit()
        return silence

    @expose("/<int:silence_id>/end", methods=("POST",))
    def end_view(self, silence_id):
        silence = db.session.get(Silence, silence_id) if silence_id <= 2**31 - 1 else None
        if silence is None:
            abort(404)
        now = utcnow()
        if silence.ends_at <= now:
            flash("This silence has already ended.", "info")
        else:
            end_silence(silence, now)
            db.session.commit()
            flash(f"Ended the silence of {_subject_text(silence)}: its alerts are sent again.", "success")
        # get_redirect_target() accepts only addresses on this site.
        return redirect(get_redirect_target("next") or self.get_url(".index_view"))
