"""Login and logout for the console and the read API.

A login session is permanent, so it ends PERMANENT_SESSION_LIFETIME after
the last request (Flask signs the cookie again on each request). It also ends
when the user is deactivated or their password changes, because the session
stores User.get_id(), which includes a version derived from the password hash.
"""

import hmac
import logging
from functools import cache
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms.validators import DataRequired, Length

from app.extensions import db, login_manager
from app.models import User

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)
login_manager.login_view = "auth.login"
login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(session_user_id):
    """Return the active user of a session's "<id>:<version>" key, or None to log the session out."""
    user_id, _, version = session_user_id.partition(":")
    if not user_id.isascii() or not user_id.isdigit() or not version:
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.is_active:
        return None
    if not hmac.compare_digest(user.session_version, version):
        return None
    return user


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.execute(
            db.select(User).where(User.email == form.email.data.strip().lower())
        ).scalar_one_or_none()
        if user is None:
            # Hash the password anyway, so the response time does not tell which emails exist.
            check_password_hash(_unused_password_hash(), form.password.data)
        elif user.check_password(form.password.data) and user.is_active:
            session.permanent = True
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        # The email field is not logged: people sometimes type a password there.
        subject = f"user {user.id}" if user is not None else "an unknown email"
        log.info("Login failed for %s from %s", subject, request.remote_addr)
        flash("Invalid email or password.", "error")
        return render_template("login.html", form=form), 401
    status = 400 if form.errors else 200
    return render_template("login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    return redirect(url_for("auth.login"))


@bp.get("/")
def home():
    return redirect(url_for("admin.index") if current_user.is_authenticated else url_for("auth.login"))


@cache
def _unused_password_hash():
    return generate_password_hash("no user has this password")


def _safe_next(target):
    """Return `target` if it is a path on this site, else the console's home."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("admin.index")
