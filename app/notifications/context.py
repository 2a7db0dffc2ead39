"""The data every channel renders for an alert event."""

from flask import current_app

# Raised when the shape of the webhook JSON changes incompatibly.
PAYLOAD_VERSION = 1


def console_url(path=""):
    return current_app.config["BASE_URL"].rstrip("/") + path


def alert_url(alert_id):
    return console_url(f"/admin/backups/alerts/details/?id={alert_id}")


def build_context(event):
    """Return the event as plain data: the alert, its job and links into the console."""
    alert = event.alert
    context = {
        "version": PAYLOAD_VERSION,
        "event": event.event,
        "event_id": event.id,
        "occurred_at": event.created_at.isoformat(),
        "alert": alert.to_dict() if alert is not None else None,
        "job": None,
        "links": {"console": console_url("/admin/")},
        "digest": event.payload if event.event == "digest" else None,
    }
    if alert is not None:
        context["links"]["alert"] = alert_url(alert.id)
        if alert.job is not None:
            context["job"] = {
                "id": alert.job.id,
                "name": alert.job.name,
                "last_run_at": alert.job.last_run_at.isoformat() if alert.job.last_run_at else None,
                "url": console_url(f"/admin/backups/jobs/details/?id={alert.job.id}"),
            }
    return context
