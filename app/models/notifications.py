"""In-app notifications."""

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.types import Severity, SeverityType, UTCDateTime, utcnow


class Notification(db.Model):
    """An in-app message for one user about one alert event."""

    __tablename__ = "notifications"
    __table_args__ = (
        # A user's unread messages, newest first.
        Index("ix_notifications_user_read_created", "user_id", "read_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id", ondelete="SET NULL"))
    # raised, escalated, reminder, resolved or digest
    event: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str] = mapped_column(String(500))
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    read_at = mapped_column(UTCDateTime)

    user = relationship("User")
    alert = relationship("Alert")
    delivery = relationship("Delivery")


# "acknowledged" is recorded for the alert's history and sends nothing.
EVENT_TYPES = ("raised", "escalated", "reminder", "acknowledged", "resolved", "digest")
DELIVERY_CHANNELS = ("in_app", "email", "sms", "webhook")
DELIVERY_STATUSES = ("pending", "sending", "sent", "failed", "skipped")


class AlertEvent(db.Model):
    """Something that happened to an alert and is worth telling people about.

    A digest event has no alert; its content is in `payload`.
    """

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(16))
    payload = mapped_column(JSON, nullable=False, default=dict)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    alert = relationship("Alert")
    deliveries = relationship("Delivery", back_populates="alert_event", passive_deletes=True)


class Delivery(db.Model):
    """One event sent, or to be sent, on one channel to one recipient."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # One delivery per event, channel and recipient, even if two workers fan out.
        UniqueConstraint("alert_event_id", "channel", "recipient_key"),
        Index("ix_deliveries_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_deliveries_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_event_id: Mapped[int] = mapped_column(ForeignKey("alert_events.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    # "user:7" or "webhook:3" or "setting:BACKUP_ALERT_WEBHOOK_URL"
    recipient_key: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    webhook_endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # Email address, phone number or URL at the time of fan-out.
    address: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)
    # When a pending delivery may next be tried; NULL means now.
    next_attempt_at = mapped_column(UTCDateTime)
    # Set when a worker claims the delivery; a stale claim means the worker died.
    claimed_at = mapped_column(UTCDateTime)
    sent_at = mapped_column(UTCDateTime)

    alert_event = relationship("AlertEvent", back_populates="deliveries")
    user = relationship("User")
    webhook_endpoint = relationship("WebhookEndpoint")

    def __str__(self):
        return f"delivery {self.id} ({self.channel} to {self.recipient_key})"


class NotificationTemplate(db.Model):
    """A message template that admins edit; rendered in a sandbox."""

    __tablename__ = "notification_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text)
    # True once an admin saved a change; the create command then leaves it alone.
    edited: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)

    def __str__(self):
        return self.name


class WebhookEndpoint(db.Model):
    """A URL that receives every alert event, signed with its own secret."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    # "backwatch" (documented JSON) or "slack" (incoming-webhook shape)
    format: Mapped[str] = mapped_column(String(16), default="backwatch")
    # The signing secret, encrypted with a key derived from SECRET_KEY.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    min_severity = mapped_column(SeverityType, nullable=False, default=Severity.WARNING)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    def __str__(self):
        return self.name
