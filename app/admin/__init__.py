"""The Flask-Admin console: every view requires a logged-in user."""

from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from app.admin.views import AlertView, ConsoleIndexView, JobView, RunView
from app.extensions import db
from app.models import Alert, BackupJob, BackupRun


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
    return admin
