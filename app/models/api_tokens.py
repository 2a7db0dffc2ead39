"""Personal API tokens: how scripts call the JSON API as a user."""

import hmac
import secrets
from datetime import timedelta

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.jobs import TOKEN_BYTES, hash_token
from app.models.types import UTCDateTime, utcnow

# Marks a string as a Backwatch API token, so that secret scanners and
# people can tell it from a hook token.
TOKEN_PREFIX = "bwk_"
NAME_MAX_CHARS = 100
# last_used_at is written at most this often per token, so a busy script
# does not turn every read into a write.
LAST_USED_RESOLUTION_SECONDS = 60


class ApiToken(db.Model):
    """A user's bearer token for /api/v1; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_CHARS))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    last_used_at = mapped_column(UTCDateTime)
    # None means the token does not expire.
    expires_at = mapped_column(UTCDateTime)
    revoked_at = mapped_column(UTCDateTime)

    user = relationship("User")

    @classmethod
    def create(cls, user, name, expires_at=None):
        """Return a new token row for `user` and the token itself, which is not stored."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        row = cls(user=user, name=name, token_hash=hash_token(token), expires_at=expires_at, created_at=utcnow())
        return row, token

    @classmethod
    def find(cls, token):
        """Return the token row whose token is `token`, or None; revoked and expired rows included."""
        digest = hash_token(token)
        row = db.session.execute(db.select(cls).where(cls.token_hash == digest)).scalar_one_or_none()
        # The index lookup already matched; the constant-time comparison keeps
        # the final decision free of timing differences all the same.
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return row

    def status(self, now=None):
        """Return "active", "revoked" or "expired"."""
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def revoke(self, now=None):
        """Revoke the token from now on; return False if it was already revoked."""
        if self.revoked_at is not None:
            return False
        self.revoked_at = now or utcnow()
        return True

    def touch(self, now=None):
        """Record a use of the token, at most once per LAST_USED_RESOLUTION_SECONDS; the caller commits."""
        now = now or utcnow()
        if self.last_used_at is None or now - self.last_used_at >= timedelta(seconds=LAST_USED_RESOLUTION_SECONDS):
            self.last_used_at = now
            return True
        return False

    def __str__(self):
        return self.name
