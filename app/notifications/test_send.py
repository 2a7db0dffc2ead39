"""The console's test send for a webhook endpoint."""

from app.crypto import decrypt_secret
from app.models import utcnow
from app.notifications import webhook
from app.notifications.context import PAYLOAD_VERSION, console_url
from app.notifications.errors import DeliveryError


def send_test_webhook(endpoint):
    """POST a sample event to `endpoint`; return (ok, message for the operator)."""
    now = utcnow().isoformat()
    context = {
        "version": PAYLOAD_VERSION,
        "event": "test",
        "event_id": None,
        "occurred_at": now,
        "alert": {
            "id": None, "type": "BACKUP_FAILURE", "severity": "INFO", "status": "ACTIVE",
            "message": "Test message from Backwatch: this endpoint is set up correctly",
            "details": {}, "job": None, "run_id": None, "storage_backend": None, "occurrences": 1,
            "created_at": now, "last_seen_at": now, "acknowledged_at": None, "acknowledged_by": None, "resolved_at": None, "resolved_by": None,
        },
        "job": None,
        "links": {"console": console_url("/admin/")},
        "digest": None,
    }
    try:
        secret = decrypt_secret(endpoint.secret_encrypted)
        status = webhook.send_webhook(endpoint.url, secret, webhook.build_payload(context, endpoint.format), event="test")
    except (DeliveryError, ValueError) as exc:
        return False, f"Test send to {endpoint.name} failed: {getattr(exc, 'message', exc)}"
    return True, f"Test send to {endpoint.name} succeeded (HTTP {status})."
