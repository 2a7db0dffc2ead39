"""The database models, one module per aggregate."""

from app.models.alerts import Alert, PeriodicRun, Silence  # noqa: F401
from app.models.api_tokens import ApiToken  # noqa: F401
from app.models.jobs import BackupJob, BackupRun, RunStart  # noqa: F401
from app.models.notifications import (  # noqa: F401
    AlertEvent,
    Delivery,
    Notification,
    NotificationTemplate,
    WebhookEndpoint,
)
from app.models.storage import StorageBackend, UsageReading  # noqa: F401
from app.models.types import Severity, utcnow  # noqa: F401
from app.models.users import NotificationPreference, User  # noqa: F401
