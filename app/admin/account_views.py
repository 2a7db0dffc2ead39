"""The logged-in user's own account: changing the password."""

import logging

from flask import flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_login import current_user, login_user
from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from app.admin.views import LoginRequiredMixin
from app.extensions import db
from app.models.users import PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS

log = logging.getLogger(__name__)


class PasswordChangeForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=PASSWORD_MAX_CHARS)]
    )
    new_password = PasswordField(
        "New password",
        validators=[DataRequired(), Length(min=PASSWORD_MIN_CHARS, max=PASSWORD_MAX_CHARS)],
        description=f"At least {PASSWORD_MIN_CHARS} characters.",
    )
    confirm_password = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("new_password", message="the two new passwords differ")],
    )

    def validate_current_password(self, field):
        if not current_user.check_password(field.data):
            log.info("Password change for user %s: wrong current password from %s", current_user.id, request.remote_addr)
            raise ValidationError("the current password is wrong")

    def validate_new_password(self, field):
        if field.data and current_user.check_password(field.data):
            raise ValidationError("the new password must differ from the current one")


class PasswordView(LoginRequiredMixin, BaseView):
    """Change the current user's password; their other sessions end."""

    def is_visible(self):
        # Reached from the link next to the user's email in the navigation bar.
        return False

    @expose("/", methods=["GET", "POST"])
    def index(self):
        form = PasswordChangeForm()
        if form.validate_on_submit():
            user = current_user._get_current_object()
            user.set_password(form.new_password.data)
            db.session.commit()
            # Sessions store a version derived from the password hash (User.get_id),
            # so the user's other sessions no longer match. Logging in again
            # gives this session the new version.
            login_user(user)
            log.info("Password change for user %s: done; other sessions ended", user.id)
            flash("Password changed. Your other sessions are logged out.", "success")
            return redirect(url_for(".index"))
        status = 400 if form.errors else 200
        return self.render("admin/password.html", form=form), status
