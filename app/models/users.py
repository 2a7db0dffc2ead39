"""Users and their notification preferences."""

import hashlib
import hmac

from flask import current_app
from flask_login import UserMixin
from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.models.types import Severity, SeverityType, UTCDateTime, utcnow

CHANNELS = ("in_app", "email", "sms")
# Console passwords: at least this many characters, at most PASSWORD_MAX_CHARS.
PASSWORD_MIN_CHARS = 12
PASSWORD_MAX_CHARS = 1024

# Channel settings of a user who has not changed them.
DEFAULT_PREFERENCES = {
    "in_app": (True, Severity.WARNING),
    "email": (True, Severity.WARNING),
    "sms": (True, Severity.CRITICAL),
}


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active_user: Mapped[bool] = mapped_column(Boolean, default=True)
    phone_number: Mapped[str | None] = mapped_column(String(20))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    preferences = relationship(
        "NotificationPreference", back_populates="user", cascade="all, delete-orphan"
    )

    @property
    def is_active(self):
        return self.is_active_user

    def set_password(self, password):
        self.password_hash = generate_password_hash(password)

    def check_password(self, password):
        return check_password_hash(self.password_hash, password)

    @property
    def session_version(self):
        """A short HMAC of the password hash, stored in each login session.

        It changes with the password, so a password change ends every other
        session of the user without a column to update.
        """
        key = current_app.config["SECRET_KEY"].encode()
        message = b"session-version:" + self.password_hash.encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()[:16]

    def get_id(self):
        """Return the login session's user key: "<id>:<session_version>" (see app.auth.load_user)."""
        return f"{self.id}:{self.session_version}"

    def preference_for(self, channel):
        """Return (enabled, min_severity) for `channel`, with defaults filled in."""
        for pref in self.preferences:
            if pref.channel == channel:
                return pref.enabled, pref.min_severity
        return DEFAULT_PREFERENCES[channel]

    def __str__(self):
        return self.email


class NotificationPreference(db.Model):
    """Whether a channel reaches a user, and from which severity up."""

    __tablename__ = "notification_preferences"
    __table_args__ = (UniqueConstraint("user_id", "channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    min_severity = mapped_column(SeverityType, nullable=False, default=Severity.WARNING)

    user = relationship("User", back_populates="preferences")
