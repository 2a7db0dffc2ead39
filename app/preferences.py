"""Each user's contact details and notification preferences, edited in the console."""

import zoneinfo

import phonenumbers
from flask import abort, flash, redirect, request
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, FormField, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional, ValidationError

from app.extensions import db
from app.models import NotificationPreference, Severity, User

SEVERITY_CHOICES = [(s.name, s.name) for s in Severity]
CHANNEL_LABELS = {"in_app": "In-app", "email": "Email", "sms": "SMS (CRITICAL alerts only)"}


def normalise_phone_number(value):
    """Return `value` in E.164 form, or raise ValueError saying what is wrong."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("must be in international E.164 form, for example +41446681800") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{value} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class ChannelForm(FlaskForm):
    class Meta:
        csrf = False  # the enclosing form carries the token

    enabled = BooleanField("On")
    min_severity = SelectField("From severity", choices=SEVERITY_CHOICES)


class PreferencesForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired(), Email(), Length(max=254)])
    phone_number = StringField("Phone number (E.164)", validators=[Optional(), Length(max=20)])
    timezone = StringField("Time zone (IANA name)", validators=[DataRequired(), Length(max=64)])
    in_app = FormField(ChannelForm, label=CHANNEL_LABELS["in_app"])
    email_channel = FormField(ChannelForm, label=CHANNEL_LABELS["email"])
    sms = FormField(ChannelForm, label=CHANNEL_LABELS["sms"])

    def validate_phone_number(self, field):
        if field.data:
            try:
                field.data = normalise_phone_number(field.data.strip())
            except ValueError as exc:
                raise ValidationError(str(exc)) from None

    def validate_timezone(self, field):
        if field.data not in zoneinfo.available_timezones() and field.data != "UTC":
            raise ValidationError(f"unknown time zone {field.data!r}; use an IANA name such as Europe/Berlin")


# Form field name for each channel; "email" is taken by the address.
CHANNEL_FIELDS = {"in_app": "in_app", "email": "email_channel", "sms": "sms"}


def edit_preferences(view, user_id=None):
    """Edit the current user's preferences; platform admins may edit anyone's."""
    user = current_user if user_id is None else db.session.get(User, user_id)
    if user is None:
        abort(404)
    if user.id != current_user.id and not current_user.is_platform_admin:
        abort(403)

    form = PreferencesForm()
    if request.method == "GET":
        _fill_form(form, user)
    elif form.validate_on_submit():
        if _save(form, user):
            flash("Preferences saved.", "success")
            return redirect(request.path)
    status = 400 if form.errors else 200
    return view.render("admin/preferences.html", form=form, user=user, channels=CHANNEL_FIELDS), status


def _fill_form(form, user):
    form.email.data = user.email
    form.phone_number.data = user.phone_number
    form.timezone.data = user.timezone
    for channel, field_name in CHANNEL_FIELDS.items():
        enabled, min_severity = user.preference_for(channel)
        subform = getattr(form, field_name).form
        subform.enabled.data = enabled
        subform.min_severity.data = min_severity.name


def _save(form, user):
    """Apply the form to `user`; return False (with a form error) if the email is taken."""
    email = form.email.data.strip().lower()
    taken = db.session.scalar(db.select(User.id).where(User.email == email, User.id != user.id))
    if taken:
        form.email.errors.append("another user has this email address")
        return False
    user.email = email
    user.phone_number = form.phone_number.data or None
    user.timezone = form.timezone.data
    existing = {pref.channel: pref for pref in user.preferences}
    for channel, field_name in CHANNEL_FIELDS.items():
        subform = getattr(form, field_name).form
        pref = existing.get(channel) or NotificationPreference(user=user, channel=channel)
        pref.enabled = bool(subform.enabled.data)
        pref.min_severity = Severity.parse(subform.min_severity.data)
        db.session.add(pref)
    db.session.commit()
    return True
