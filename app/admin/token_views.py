"""Console page where each user creates and revokes their own API tokens."""

from datetime import timedelta

from flask import abort, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import IntegerField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from app.admin.views import LoginRequiredMixin
from app.extensions import db
from app.intake.text import clean_text
from app.models import ApiToken, utcnow
from app.models.api_tokens import NAME_MAX_CHARS

MAX_EXPIRY_DAYS = 3650


class NewTokenForm(FlaskForm):
    name = StringField(
        "Name", validators=[DataRequired(), Length(max=NAME_MAX_CHARS)],
        description="What the token is for, for example the script that uses it.",
    )
    expires_in_days = IntegerField(
        "Expires in (days)", validators=[Optional(), NumberRange(min=1, max=MAX_EXPIRY_DAYS)],
        description="Leave empty for a token that works until it is revoked.",
    )


class ApiTokenView(LoginRequiredMixin, BaseView):
    """The current user's API tokens. A new token is shown once, in the response to the form."""

    @expose("/", methods=["GET", "POST"])
    def index(self):
        form = NewTokenForm()
        new_token = None
        status = 200
        if request.method == "POST":
            if form.validate_on_submit():
                days = form.expires_in_days.data
                expires_at = utcnow() + timedelta(days=days) if days else None
                name = clean_text(form.name.data).strip()
                row, new_token = ApiToken.create(current_user, name, expires_at=expires_at)
                db.session.add(row)
                db.session.commit()
                form = NewTokenForm(formdata=None)
            else:
                status = 400
        return self.render(
            "admin/api_tokens.html", form=form, tokens=self._tokens(),
            new_token=new_token, now=utcnow(),
        ), status

    @expose("/<int:token_id>/revoke", methods=["POST"])
    def revoke(self, token_id):
        # The app-wide CSRF protection has checked the form's csrf_token by now.
        row = db.session.get(ApiToken, token_id) if token_id <= 2**31 - 1 else None
        # Another user's token is reported as missing, so ids reveal nothing.
        if row is None or row.user_id != current_user.id:
            abort(404)
        if row.revoke():
            db.session.commit()
            flash(f"API token {row.name!r} revoked.", "success")
        return redirect(url_for(".index"))

    def _tokens(self):
        return db.session.execute(
            db.select(ApiToken).where(ApiToken.user_id == current_user.id).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        ).scalars().all()
