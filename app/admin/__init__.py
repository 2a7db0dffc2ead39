"""The Flask-Admin console: every view requires a logged-in user."""

from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from flask_login import current_user

from app.admin.account_views import PasswordView
from app.admin.alert_views import AlertView
from app.admin.job_views import JobView, RunView
from app.admin.formatting import time_stamp
from app.admin.notification_views import (
    DeliveryView,
    InboxView,
    PreferencesView,
    TemplateView,
    UserView,
    WebhookEndpointView,
    unread_count,
)
from app.admin.queue_views import QueueView
from app.admin.silence_views import SilenceView
from app.admin.storage_views import StorageBackendView
from app.admin.token_views import ApiTokenView
from app.admin.views import ConsoleIndexView
from app.extensions import db
from app.models import (
    Alert,
    BackupJob,
    BackupRun,
    Delivery,
    NotificationTemplate,
    Silence,
    StorageBackend,
    User,
    WebhookEndpoint,
)


def init_admin(app):
    admin = Admin(
        app,
        name="Backwatch",
        index_view=ConsoleIndexView(url="/admin"),
        theme=Bootstrap4Theme(base_template="admin/backwatch_base.html", fluid=True),
    )
    admin.add_view(AlertView(Alert, db, name="Alerts", endpoint="alerts", url="/admin/backups/alerts"))
    admin.add_view(JobView(BackupJob, db, name="Jobs", endpoint="jobs", url="/admin/backups/jobs"))
    admin.add_view(RunView(BackupRun, db, name="Runs", endpoint="runs", url="/admin/backups/runs"))
    admin.add_view(SilenceView(Silence, db, name="Silences", endpoint="silences", url="/admin/backups/silences"))
    admin.add_view(StorageBackendView(StorageBackend, db, name="Storage", endpoint="storage", url="/admin/storage"))
    admin.add_view(InboxView(name="Inbox", endpoint="inbox", url="/admin/notifications"))
    admin.add_view(PreferencesView(name="My preferences", endpoint="preferences", url="/admin/preferences"))
    admin.add_view(ApiTokenView(name="API tokens", endpoint="api_tokens", url="/admin/api-tokens"))
    notifications = "Notifications"
    admin.add_view(DeliveryView(Delivery, db, name="Deliveries", endpoint="deliveries", url="/admin/notifications/deliveries", category=notifications))
    admin.add_view(TemplateView(NotificationTemplate, db, name="Templates", endpoint="templates", url="/admin/notifications/templates", category=notifications))
    admin.add_view(WebhookEndpointView(WebhookEndpoint, db, name="Webhooks", endpoint="webhooks", url="/admin/notifications/webhooks", category=notifications))
    admin.add_view(UserView(User, db, name="Users", endpoint="users", url="/admin/users"))
    admin.add_view(QueueView(name="Queues", endpoint="queues", url="/admin/system/queues", category="System"))
    admin.add_view(PasswordView(name="Change password", endpoint="password", url="/admin/password"))

    @app.context_processor
    def inject_console_helpers():
        helpers = {"time_stamp": time_stamp}
        if current_user.is_authenticated:
            helpers["unread_notifications"] = unread_count(current_user)
        return helpers

    return admin
