"""Signed webhook POSTs in the Backwatch JSON or the Slack-compatible format.

docs/WEBHOOKS.md describes both formats, the signature and the retries for
the people who write receivers.
"""

import copy
import hashlib
import hmac
import json
import time

from flask import current_app, has_app_context

from app import http_client
from app.config import Config
from app.notifications.errors import DeliveryError

FORMATS = ("backwatch", "slack")
SIGNATURE_HEADER = "X-Backwatch-Signature"
EVENT_HEADER = "X-Backwatch-Event"
DELIVERY_HEADER = "X-Backwatch-Delivery"
TIMEOUT_SETTING = "WEBHOOK_TIMEOUT_SECONDS"
# 408 and 429 are the client errors that a later attempt can get past.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})
# How much of a response body goes into an error message.
MAX_EXCERPT_CHARS = 200

EVENT_TITLES = {
    "raised": "Alert raised",
    "escalated": "Alert escalated",
    "reminder": "Alert still open",
    "resolved": "Alert resolved",
    "digest": "Daily digest",
}
# Slack's limits for the texts used here (Block Kit reference): 3000
# characters for a section text, 2000 for a section field. The top-level text
# is kept shorter because it only shows in notifications.
SLACK_SECTION_LIMIT = 3000
SLACK_FIELD_LIMIT = 2000
SLACK_TEXT_LIMIT = 1000


# Payloads


def build_payload(context, fmt):
    """Return the JSON-serialisable body for `context` in format `fmt`.

    `context` is what build_context returns. Raises a permanent
    DeliveryError for a format other than "backwatch" or "slack".
    """
    if fmt == "backwatch":
        # The documented format is the context itself, version field included.
        return copy.deepcopy(context)
    if fmt == "slack":
        return build_slack_payload(context)
    raise DeliveryError(f"unknown webhook format {fmt!r}; expected one of {', '.join(FORMATS)}", permanent=True)


def escape_mrkdwn(text):
    """Escape &, < and > as Slack requires, so that user text cannot form links or mentions."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fit(text, limit):
    """Escape `text` and cut it to `limit` characters, with an ellipsis where it was cut."""
    escaped = escape_mrkdwn(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    # Do not leave half an entity such as "&am" at the end.
    ampersand = cut.rfind("&")
    if ampersand != -1 and ";" not in cut[ampersand:]:
        cut = cut[:ampersand]
    return cut + "…"


def _slack_link(url, label):
    # Inside <url|label> a "|" would end the URL early.
    return f"<{escape_mrkdwn(url).replace('|', '%7C')}|{escape_mrkdwn(label)}>"


def build_slack_payload(context):
    """Return a Slack incoming-webhook body: a notification text and Block Kit blocks."""
    alert = context.get("alert")
    title = EVENT_TITLES.get(context["event"], f"Alert {context['event']}")
    if alert is None:
        return _slack_digest_payload(context, title)

    severity = alert["severity"]
    headline = f"*{escape_mrkdwn(severity)}* {escape_mrkdwn(title)}: {escape_mrkdwn(alert['type'])}"
    message = _fit(alert["message"], SLACK_SECTION_LIMIT - len(headline) - 1)
    fields = []
    job = context.get("job")
    if job is not None:
        fields.append(_slack_field("Job", job["name"], url=job["url"]))
    fields.append(_slack_field("Status", alert["status"]))
    fields.append(_slack_field("Occurrences", alert["occurrences"]))
    if alert.get("storage_backend"):
        fields.append(_slack_field("Storage", alert["storage_backend"]))

    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{headline}\n{message}"}},
        {"type": "section", "fields": fields},
    ]
    link = context.get("links", {}).get("alert")
    if link:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_link(link, "Open the alert in Backwatch")}]})
    return {"text": _fit(f"[{severity}] {title}: {alert['message']}", SLACK_TEXT_LIMIT), "blocks": blocks}


def _slack_field(name, value, url=None):
    """Return a mrkdwn field with the escaped `value`, linked to `url` unless the link is too long."""
    room = SLACK_FIELD_LIMIT - len(f"*{name}*\n")
    if url is not None:
        link = _slack_link(url, value)
        if len(link) <= room:
            return {"type": "mrkdwn", "text": f"*{name}*\n{link}"}
    return {"type": "mrkdwn", "text": f"*{name}*\n{_fit(value, room)}"}


def _slack_digest_payload(context, title):
    digest = context.get("digest") or {}
    total = digest.get("total", 0)
    lines = [f"• {escape_mrkdwn(name)}: {count}" for name, count in sorted(digest.get("by_type", {}).items())]
    text = f"*{escape_mrkdwn(title)}*: {total} open alerts"
    for line in lines:
        if len(text) + len(line) + 1 > SLACK_SECTION_LIMIT - 2:
            text += "\n…"
            break
        text += "\n" + line
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    console = context.get("links", {}).get("console")
    if console:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_link(console, "Open Backwatch")}]})
    return {"text": _fit(f"{title}: {total} open alerts", SLACK_TEXT_LIMIT), "blocks": blocks}


# Signing and sending


def sign(secret, timestamp, body):
    """Return the hex HMAC-SHA256 of f"{timestamp}." + `body` (bytes) under `secret`."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def signature_header(secret, timestamp, body):
    """Return the X-Backwatch-Signature value: "t=<unix seconds>,v1=<hex>"."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def send_webhook(url, secret, body, delivery_id=None, event=None):
    """POST `body` (a dict) to `url`, signed with `secret`; return the HTTP status.

    Sends X-Backwatch-Event (`event`, or body["event"]) and
    X-Backwatch-Delivery (`delivery_id`) when known. Raises DeliveryError:
    permanent, with status_code, for a redirect and for 4xx other than 408
    and 429, permanent for an invalid URL, a missing secret and addresses the
    guard rejects. Retryable for 408, 429, 5xx, timeouts and connection
    errors, with retry_after from Retry-After for 429 and 503.
    """
    if not secret:
        raise DeliveryError("webhook signing secret is empty; set a secret for this endpoint", permanent=True)
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    headers = {SIGNATURE_HEADER: signature_header(secret, int(time.time()), data)}
    event = event or (body.get("event") if isinstance(body, dict) else None)
    if event:
        headers[EVENT_HEADER] = str(event)
    if delivery_id is not None:
        headers[DELIVERY_HEADER] = str(delivery_id)

    try:
        response = http_client.post_json(url, data, headers, timeout=_timeout())
    except http_client.InvalidSetting as exc:
        # A configuration error, not the receiver's fault: retry once it is fixed.
        raise DeliveryError(str(exc), permanent=False) from exc
    except (http_client.InvalidURL, http_client.AddressNotAllowed) as exc:
        raise DeliveryError(f"webhook URL rejected: {exc}", permanent=True) from exc
    except http_client.RequestFailed as exc:
        raise DeliveryError(f"webhook request failed: {exc}", permanent=False) from exc
    return _check_status(response, http_client.parse_url(url).host)


def _timeout():
    if has_app_context():
        return float(current_app.config.get(TIMEOUT_SETTING, Config.WEBHOOK_TIMEOUT_SECONDS))
    return Config.WEBHOOK_TIMEOUT_SECONDS


def _check_status(response, host):
    """Return the status of a 2xx response; raise DeliveryError for any other."""
    status = response.status
    if 200 <= status < 300:
        return status
    excerpt = _excerpt(response.body)
    if 300 <= status < 400:
        location = response.headers.get("Location")
        where = f"to {location[:500]}" if location else "without a Location header"
        raise DeliveryError(
            f"{host} returned HTTP {status}, a redirect {where}. "
            "Redirects are not followed, so update the webhook URL to the final address.",
            permanent=True,
            status_code=status,
        )
    if 400 <= status < 500 and status not in RETRYABLE_CLIENT_STATUSES:
        raise DeliveryError(
            f"{host} rejected the webhook with HTTP {status}{excerpt}. It is not retried; check the URL and the receiver.",
            permanent=True,
            status_code=status,
        )
    retry_after = None
    if status in RETRY_AFTER_STATUSES:
        retry_after = http_client.parse_retry_after(response.headers.get("Retry-After"))
    raise DeliveryError(
        f"{host} returned HTTP {status}{excerpt}", permanent=False, retry_after=retry_after, status_code=status
    )


def _excerpt(text):
    text = " ".join(text.split())
    if not text:
        return ""
    if len(text) > MAX_EXCERPT_CHARS:
        text = text[: MAX_EXCERPT_CHARS - 1] + "…"
    return f": {text}"
