"""Console views for notifications: in-app inbox, preferences, delivery ledger,
templates and webhook endpoints."""

import secrets
import zoneinfo

from flask import abort, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_admin.actions import action
from flask_admin.contrib.sqla import tools as sqla_tools
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import update
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional, ValidationError

from app.admin.views import AdminOnlyMixin, LoginRequiredMixin, SecureModelView, column_severity, is_platform_admin
from app.crypto import encrypt_secret
from app.extensions import db
from app.http_client import RequestFailed, check_url
from app.models import Delivery, Notification, Severity, User, utcnow
from app.models.users import PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS
from app.notifications.templates import render
from app.preferences import edit_preferences, normalise_phone_number
from app.queue import enqueue_delivery


class InboxView(LoginRequiredMixin, BaseView):
    """The current user's in-app notifications."""

    @expose("/")
    def index(self):
        notes = db.session.execute(
            db.select(Notification)
            .where(Notification.user_id == current_user.id)
            .order_by(Notification.created_at.desc(), Notification.id.desc())
            .limit(200)
        ).scalars().all()
        return self.render("admin/inbox.html", notes=notes)

    @expose("/read/<int:note_id>", methods=["POST"])
    def mark_read(self, note_id):
        db.session.execute(
            update(Notification)
            .where(Notification.id == note_id, Notification.user_id == current_user.id, Notification.read_at.is_(None))
            .values(read_at=utcnow())
        )
        db.session.commit()
        return redirect(request.form.get("next") or url_for(".index"))

    @expose("/read-all", methods=["POST"])
    def mark_all_read(self):
        db.session.execute(
            update(Notification)
            .where(Notification.user_id == current_user.id, Notification.read_at.is_(None))
            .values(read_at=utcnow())
        )
        db.session.commit()
        return redirect(url_for(".index"))


def unread_count(user):
    return db.session.scalar(
        db.select(db.func.count()).where(Notification.user_id == user.id, Notification.read_at.is_(None))
    )


class PreferencesView(LoginRequiredMixin, BaseView):
    @expose("/", methods=["GET", "POST"])
    def index(self):
        return edit_preferences(self)

    @expose("/<int:user_id>", methods=["GET", "POST"])
    def for_user(self, user_id):
        return edit_preferences(self, user_id)


def _delivery_alert(view, context, model, name):
    alert_id = model.alert_event.alert_id if model.alert_event else None
    if alert_id is None:
        return model.alert_event.event if model.alert_event else ""
    return Markup('<a href="{}">{} #{}</a>').format(url_for("alerts.details_view", id=alert_id), model.alert_event.event, alert_id)


def _delivery_address(view, context, model, name):
    # Webhook URLs can hold credentials (a Slack URL does), and users' addresses are their own.
    if is_platform_admin() or (model.user_id is not None and model.user_id == current_user.id):
        return model.address or ""
    return Markup('<span class="text-muted">hidden</span>')


class DeliveryView(SecureModelView):
    """The delivery ledger: every user may read it, only platform admins see others' addresses and retry."""

    can_create = False
    can_delete = False
    can_view_details = True
    column_default_sort = [("id", True)]
    column_list = ("id", "created_at", "alert_event", "channel", "recipient_key", "address", "status",
                   "attempts", "last_status_code", "last_error", "provider_message_id", "sent_at")
    column_filters = ("status", "channel", "recipient_key", "created_at", "last_status_code")
    column_searchable_list = ("address", "last_error")
    # Sorting by a hidden address would leak its order.
    column_sortable_list = ("id", "created_at", "channel", "recipient_key", "status", "attempts",
                            "last_status_code", "sent_at")
    column_formatters = {"alert_event": _delivery_alert, "address": _delivery_address}
    column_formatters_detail = column_formatters
    column_labels = {"alert_event": "Event"}

    def _apply_search(self, query, count_query, joins, count_joins, search):
        if is_platform_admin():
            return super()._apply_search(query, count_query, joins, count_joins, search)
        # A search in addresses would reveal the hidden ones a character at a time.
        for term in search.split(" "):
            if term:
                condition = Delivery.last_error.ilike(sqla_tools.parse_like_term(term))
                query = query.filter(condition)
                if count_query is not None:
                    count_query = count_query.filter(condition)
        return query, count_query, joins, count_joins

    @property
    def can_edit(self):
        return False

    @action("retry", "Retry", "Retry the selected failed deliveries now?")
    def action_retry(self, ids):
        count = retry_failed_deliveries([int(i) for i in ids])
        flash(f"{count} failed deliveries queued for another attempt.", "success")


def retry_failed_deliveries(ids):
    """Put failed deliveries back to pending and on the queue; return how many."""
    rows = db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.status == "failed")
        .values(status="pending", next_attempt_at=None, updated_at=utcnow())
        .returning(Delivery.id)
    ).scalars().all()
    db.session.commit()
    for delivery_id in rows:
        enqueue_delivery(delivery_id)
    return len(rows)


class TemplateView(AdminOnlyMixin, SecureModelView):
    can_create = False
    can_delete = False
    can_view_details = True
    column_list = ("name", "channel", "subject", "edited", "updated_at")
    form_columns = ("subject", "html_body", "text_body")
    details_template = "admin/template_details.html"

    def on_model_change(self, form, model, is_created):
        model.edited = True

    def render(self, template, **kwargs):
        if template == self.details_template and kwargs.get("model") is not None:
            kwargs["preview"] = render(kwargs["model"].name, sample_context(kwargs["model"].name))
        return super().render(template, **kwargs)


def sample_context(template_name):
    """Return a context like a real event's, for template previews."""
    now = utcnow().isoformat()
    alert = {
        "id": 0, "type": "BACKUP_FAILURE", "severity": "CRITICAL", "status": "ACTIVE",
        "message": "Backup of nightly-db failed: pg_dump: connection refused", "details": {"exit_code": 1},
        "job": {"id": 0, "name": "nightly-db"}, "run_id": 0, "storage_backend": None, "occurrences": 1,
        "created_at": now, "last_seen_at": now, "acknowledged_at": None, "acknowledged_by": None, "resolved_at": None, "resolved_by": None,
    }
    digest = {"total": 1, "by_type": {"BACKUP_FAILURE": 1},
              "jobs": [{"job": "nightly-db", "alerts": [{"severity": "CRITICAL", "message": alert["message"], "url": "#"}]}]}
    return {
        "version": 1, "event": "digest" if template_name == "backup_alert_digest" else "raised", "event_id": 0,
        "occurred_at": now, "alert": alert, "job": {"id": 0, "name": "nightly-db", "last_run_at": now, "url": "#"},
        "links": {"console": "#", "alert": "#"}, "digest": digest,
    }


def _validate_webhook_url(form, field):
    try:
        check_url(field.data)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    except RequestFailed as exc:
        raise ValidationError(f"cannot check the address now: {exc}") from None


class WebhookEndpointView(AdminOnlyMixin, SecureModelView):
    can_view_details = True
    column_list = ("id", "name", "url", "format", "enabled", "min_severity", "created_at")
    column_formatters = {"min_severity": column_severity}
    form_columns = ("name", "url", "format", "enabled", "min_severity", "secret")
    form_extra_fields = {
        "secret": PasswordField("Signing secret", validators=[Optional(), Length(min=16, max=200)],
                                description="Leave empty to keep the current one; a new endpoint gets a random one."),
        "format": SelectField("Format", choices=[("backwatch", "Backwatch JSON"), ("slack", "Slack-compatible")]),
        "min_severity": SelectField("From severity", choices=[(s.name, s.name) for s in Severity], default="WARNING"),
        "url": StringField("URL", validators=[DataRequired(), Length(max=2048), _validate_webhook_url]),
    }
    details_template = "admin/webhook_details.html"

    def on_form_prefill(self, form, id):
        model = self.get_one(id)
        form.min_severity.data = model.min_severity.name

    def on_model_change(self, form, model, is_created):
        model.min_severity = Severity.parse(form.min_severity.data)
        secret = form.secret.data
        if is_created and not secret:
            secret = secrets.token_urlsafe(32)
            flash(Markup("Signing secret (shown only now): <code>{}</code>").format(secret), "warning")
        if secret:
            model.secret_encrypted = encrypt_secret(secret)

    @expose("/test/<int:endpoint_id>", methods=["POST"])
    def test_send(self, endpoint_id):
        from app.notifications.test_send import send_test_webhook

        endpoint = self.get_one(str(endpoint_id))
        if endpoint is None:
            abort(404)
        ok, message = send_test_webhook(endpoint)
        flash(message, "success" if ok else "error")
        return redirect(url_for(".details_view", id=endpoint_id))


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class UserView(AdminOnlyMixin, SecureModelView):
    """Users, for platform admins: create, make admin, deactivate.

    Users are deactivated, not deleted, so alerts keep who acknowledged
    them. The last active platform admin cannot lose that role.
    """

    can_delete = False
    column_list = ("id", "email", "is_platform_admin", "is_active_user", "phone_number", "timezone", "created_at")
    column_labels = {"is_active_user": "Active", "is_platform_admin": "Platform admin"}
    column_descriptions = {
        "is_active_user": "A deactivated user cannot log in, and their open sessions end at once.",
    }
    form_columns = ("email", "is_platform_admin", "is_active_user", "phone_number", "timezone", "password")
    form_overrides = {"email": EmailField}
    form_args = {"email": {"validators": [DataRequired(), Email(), Length(max=254)], "filters": [_strip]}}
    form_extra_fields = {
        "password": PasswordField(
            "New password", validators=[Optional(), Length(min=PASSWORD_MIN_CHARS, max=PASSWORD_MAX_CHARS)],
            description="Leave empty to keep the current one. Setting one ends the user's open sessions.",
        ),
    }
    column_formatters = {
        "email": lambda v, c, m, n: Markup('<a href="{}">{}</a>').format(url_for("preferences.for_user", user_id=m.id), m.email),
    }

    def on_model_change(self, form, model, is_created):
        if form.password.data:
            model.set_password(form.password.data)
        elif is_created:
            raise ValidationError("password: a new user needs a password")
        model.email = model.email.strip().lower()
        with db.session.no_autoflush:
            existing_id = db.session.scalar(db.select(User.id).where(User.email == model.email, User.id != model.id))
        if existing_id is not None:
            raise ValidationError(f"email: another user already has the address {model.email}")
        if model.phone_number:
            try:
                model.phone_number = normalise_phone_number(model.phone_number.strip())
            except ValueError as exc:
                raise ValidationError(f"phone number {exc}") from None
        model.timezone = (model.timezone or "").strip() or "UTC"
        if model.timezone not in zoneinfo.available_timezones() and model.timezone != "UTC":
            raise ValidationError(f"timezone: unknown time zone {model.timezone!r}; use an IANA name such as Europe/Berlin")
        if not is_created:
            _keep_an_active_admin(model)


def _keep_an_active_admin(user):
    """Raise ValidationError when saving `user` would leave no active platform admin.

    Two admins who demote each other at the same time must not both succeed.
    On PostgreSQL, the FOR UPDATE below makes the second request wait until
    the first commits. On SQLite, which ignores FOR UPDATE, the flush takes
    the database's write lock, which has the same effect. The count then
    includes this request's own change.
    """
    if user.is_platform_admin and user.is_active_user:
        return
    active_admin = (User.is_platform_admin.is_(True), User.is_active_user.is_(True))
    with db.session.no_autoflush:
        db.session.scalars(db.select(User.id).where(*active_admin).order_by(User.id).with_for_update()).all()
    db.session.flush()
    remaining = db.session.scalar(db.select(db.func.count()).select_from(User).where(*active_admin))
    if remaining == 0:
        raise ValidationError(
            f"{user.email} is the last active platform admin; make another user a platform admin first"
        )
