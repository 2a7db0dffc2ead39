"""Webhook channel: payload formats, the signature checked with the receiver
code in docs/WEBHOOKS.md, and the DeliveryError for each kind of response.

Requests go to a real HTTP server on 127.0.0.1, which the tests allow with
WEBHOOK_ALLOWED_NETWORKS = 127.0.0.0/8.
"""

import hashlib
import hmac
import json
import re
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest

from app.extensions import db
from app.models import Alert, AlertEvent, BackupJob, Severity
from app.notifications.context import build_context
from app.notifications.errors import DeliveryError
from app.notifications.webhook import build_payload, escape_mrkdwn, send_webhook, sign
from tests.test_http_client import MAX_HANDLER_DELAY_SECONDS, Receiver, closed_port

SECRET = "whsec-3f1c9a7e52b04d8e"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "WEBHOOKS.md"
ALERT_FIELDS = {
    "id", "type", "severity", "status", "message", "details", "job", "run_id", "storage_backend",
    "occurrences", "created_at", "last_seen_at", "acknowledged_at", "acknowledged_by", "resolved_at", "resolved_by",
}


def documented_verifier():
    """Return verify_signature from the Python example in docs/WEBHOOKS.md, run as written."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    [code] = [block for block in blocks if "def verify_signature" in block]
    namespace = {}
    exec(code, namespace)
    return namespace["verify_signature"]


@pytest.fixture
def receiver(app, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    server = Receiver().start()
    yield server
    server.stop()


def make_event(job_name="nightly-db", message="Backup failed", event="raised", storage_backend=None):
    """Store a job, a CRITICAL alert of it and an `event` of the alert, and return the event."""
    now = datetime(2026, 3, 14, 2, 15, 7, tzinfo=timezone.utc)
    job, _ = BackupJob.create(job_name)
    job.last_run_at = now - timedelta(minutes=3)
    db.session.add(job)
    db.session.flush()
    alert = Alert(
        alert_type="BACKUP_FAILURE", severity=Severity.CRITICAL, status="ACTIVE",
        dedup_key=f"BACKUP_FAILURE:job:{job.id}", message=message, details={"exit_code": 1},
        job=job, storage_backend=storage_backend, occurrences=2, created_at=now, last_seen_at=now,
    )
    db.session.add(alert)
    db.session.flush()
    alert_event = AlertEvent(alert=alert, event=event, payload={}, created_at=now)
    db.session.add(alert_event)
    db.session.commit()
    return alert_event


# Payloads


def test_backwatch_payload_is_context(ctx):
    context = build_context(make_event())
    payload = build_payload(context, "backwatch")

    assert payload == context
    assert payload is not context
    assert json.loads(json.dumps(payload)) == payload
    assert payload["version"] == 1
    assert payload["event"] == "raised"
    assert set(payload["alert"]) == ALERT_FIELDS
    assert payload["alert"]["severity"] == "CRITICAL"
    assert payload["job"]["name"] == "nightly-db"
    assert payload["links"]["alert"].startswith("http://backwatch.test/")


def test_documented_example_matches_payload(ctx):
    """The example in docs/WEBHOOKS.md has every field the payload has."""
    example = json.loads(re.search(r"```json\n(\{\n  \"version\".*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL).group(1))
    payload = build_payload(build_context(make_event()), "backwatch")

    assert set(example) == set(payload)
    assert set(example["alert"]) == set(payload["alert"])
    assert set(example["job"]) == set(payload["job"])
    assert set(example["links"]) == set(payload["links"])


def test_slack_payload_shape(ctx):
    payload = build_payload(build_context(make_event(storage_backend="s3-eu")), "slack")

    assert payload["text"] == "[CRITICAL] Alert raised: Backup failed"
    section, fields, footer = payload["blocks"]
    assert section["text"]["type"] == "mrkdwn"
    assert "*CRITICAL*" in section["text"]["text"]
    assert "Backup failed" in section["text"]["text"]
    field_texts = [field["text"] for field in fields["fields"]]
    assert field_texts[0].startswith("*Job*\n<http://backwatch.test/admin/backups/jobs/details/?id=")
    assert "*Status*\nACTIVE" in field_texts
    assert "*Occurrences*\n2" in field_texts
    assert "*Storage*\ns3-eu" in field_texts
    assert "|Open the alert in Backwatch>" in footer["elements"][0]["text"]


def test_slack_payload_escapes_user_text(ctx):
    message = "Disk <full> & <!channel> <https://evil.example|click here>"
    payload = build_payload(build_context(make_event(job_name="db <prod> & co", message=message)), "slack")
    rendered = json.dumps(payload)
    escaped = "Disk &lt;full&gt; &amp; &lt;!channel&gt; &lt;https://evil.example|click here&gt;"

    assert escaped in payload["text"]
    assert escaped in payload["blocks"][0]["text"]["text"]
    assert "|db &lt;prod&gt; &amp; co>" in payload["blocks"][1]["fields"][0]["text"]
    assert "<!channel>" not in rendered
    assert "<https://evil.example" not in rendered
    assert "<full>" not in rendered


def test_slack_payload_cuts_long_message(ctx):
    payload = build_payload(build_context(make_event(message="&" * 5000)), "slack")
    text = payload["blocks"][0]["text"]["text"]

    assert len(text) <= 3000
    assert text.endswith("&amp;…")
    assert len(payload["text"]) <= 1000


def test_slack_field_cuts_long_job_name(ctx):
    context = build_context(make_event())
    context["job"]["name"] = "<&>" * 1000
    fields = build_payload(context, "slack")["blocks"][1]["fields"]
    job_field = fields[0]["text"]

    assert job_field.startswith("*Job*\n&lt;&amp;&gt;")
    assert job_field.endswith("…")
    assert len(job_field) <= 2000
    assert "&amp;amp;" not in job_field
    assert "<http" not in job_field


def test_slack_digest_payload():
    context = {
        "version": 1, "event": "digest", "event_id": 9, "occurred_at": "2026-03-14T06:00:00+00:00",
        "alert": None, "job": None, "links": {"console": "http://backwatch.test/admin/"},
        "digest": {"total": 3, "by_type": {"BACKUP_FAILURE": 2, "MISSED_BACKUP": 1}},
    }
    payload = build_payload(context, "slack")

    assert payload["text"] == "Daily digest: 3 open alerts"
    assert "• BACKUP_FAILURE: 2\n• MISSED_BACKUP: 1" in payload["blocks"][0]["text"]["text"]
    assert payload["blocks"][1]["elements"][0]["text"] == "<http://backwatch.test/admin/|Open Backwatch>"


def test_escape_mrkdwn():
    assert escape_mrkdwn("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert escape_mrkdwn("&amp;") == "&amp;amp;"


def test_unknown_format_permanent():
    with pytest.raises(DeliveryError) as error:
        build_payload({"event": "raised"}, "teams")
    assert error.value.permanent is True
    assert "'teams'" in str(error.value)


# Signature


def test_sign_matches_hmac():
    body = b'{"event":"raised"}'
    expected = hmac.new(SECRET.encode(), b"1773454507." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1773454507, body) == expected


def test_send_success_signed(ctx, receiver):
    body = build_payload(build_context(make_event()), "backwatch")
    before = int(time.time())
    status = send_webhook(receiver.url("/hook"), SECRET, body, delivery_id=42)

    assert status == 200
    [request] = receiver.requests
    assert request["path"] == "/hook"
    assert json.loads(request["body"]) == body
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Backwatch-Event"] == "raised"
    assert request["headers"]["X-Backwatch-Delivery"] == "42"

    header = request["headers"]["X-Backwatch-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    timestamp = int(header.split(",")[0][2:])
    assert before <= timestamp <= int(time.time())


def test_signature_verifies_as_documented(ctx, receiver):
    verify_signature = documented_verifier()
    send_webhook(receiver.url(), SECRET, {"event": "raised", "note": "ünïcode & <tags>"})
    [request] = receiver.requests
    header = request["headers"]["X-Backwatch-Signature"]
    timestamp = int(header.split(",")[0][2:])

    assert verify_signature(SECRET, header, request["body"]) is True
    assert verify_signature("other-secret", header, request["body"]) is False
    assert verify_signature(SECRET, header, request["body"] + b" ") is False
    assert verify_signature(SECRET, header, request["body"], now=timestamp + 301) is False
    assert verify_signature(SECRET, "v1=abc", request["body"]) is False


def test_send_without_secret_permanent(ctx, receiver):
    with pytest.raises(DeliveryError) as error:
        send_webhook(receiver.url(), "", {"event": "raised"})
    assert error.value.permanent is True
    assert receiver.requests == []


def test_send_event_and_delivery_optional(ctx, receiver):
    send_webhook(receiver.url(), SECRET, {"text": "slack body"})
    send_webhook(receiver.url(), SECRET, {"text": "slack body"}, delivery_id=7, event="resolved")
    first, second = receiver.requests

    assert "X-Backwatch-Event" not in first["headers"]
    assert "X-Backwatch-Delivery" not in first["headers"]
    assert second["headers"]["X-Backwatch-Event"] == "resolved"
    assert second["headers"]["X-Backwatch-Delivery"] == "7"


# Status codes


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_send_2xx_returns_status(ctx, receiver, status):
    receiver.respond_with(status)
    assert send_webhook(receiver.url(), SECRET, {"event": "raised"}) == status


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_send_4xx_permanent(ctx, receiver, status):
    receiver.respond_with(status, body=b"no such hook")
    with pytest.raises(DeliveryError) as error:
        send_webhook(receiver.url(), SECRET, {"event": "raised"})

    assert error.value.permanent is True
    assert error.value.status_code == status
    assert error.value.retry_after is None
    assert f"HTTP {status}: no such hook" in error.value.message


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_send_retryable_status(ctx, receiver, status):
    receiver.respond_with(status, body=b"busy")
    with pytest.raises(DeliveryError) as error:
        send_webhook(receiver.url(), SECRET, {"event": "raised"})

    assert error.value.permanent is False
    assert error.value.status_code == status
    assert error.value.retry_after is None


@pytest.mark.parametrize("status", [429, 503])
def test_send_retry_after_seconds(ctx, receiver, status):
    receiver.respond_with(status, {"Retry-After": "120"})
    with pytest.raises(DeliveryError) as error:
        send_webhook(receiver.url(), SECRET, {"event": "raised"})

    assert error.value.permanent is False
    assert error.value.retry_after == 120


@pytest.mark.parametrize("status", [429, 503])
def test_send_retry_after_http_date(ctx, receiver, status):
    when = datetime.now(timezone.utc) + timedelta(seconds=90)
    receiver.respond_with(status, {"Retry-After": format_datetime(when, usegmt=True)})
    with pytest.raises(DeliveryError) as error:
        send_webhook(receiver.url(), SECRET, {"event": "raised"})

    assert error.value.permanent is False
    assert 85 <= error.value.retry_after <= 90


@pytest.mark.parametrize("value, expected", [("86400", 3600), ("later", None), ("", None)])
def test_send_retry_after_capped_or_invalid(ctx, receiver, value, expected):
    receiver.respond_with(429, {"Retry-After": value})
    with pytest.raises(DeliveryError) as error:
        send_webhook(receiver.url(), SECRET, {"event": "raised"})
    assert error.value.retry_after == expected


def test_send_retry_after_ignored_on_500(ctx, receiver):
    receiver.respond_with(500, {"Retry-After": "120"})
    with pytest.raises(DeliveryError) as error:
        send_webhook(receiver.url(), SECRET, {"event": "raised"})
    assert error.value.retry_after is None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_send_redirect_not_followed(ctx, receiver, status):
    receiver.respond_with(status, {"Location": receiver.url("/moved")})
    with pytest.raises(DeliveryError) as error:
        send_webhook(receiver.url("/hook"), SECRET, {"event": "raised"})

    assert error.value.permanent is True
    assert error.value.status_code == status
    assert f"to {receiver.url('/moved')}" in error.value.message
    assert "Redirects are not followed" in error.value.message
    assert [request["path"] for request in receiver.requests] == ["/hook"]


def test_send_timeout_retryable(ctx, app, receiver, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_TIMEOUT_SECONDS", 0.5)
    receiver.delay = MAX_HANDLER_DELAY_SECONDS
    started = time.monotonic()
    with pytest.raises(DeliveryError) as error:
        send_webhook(receiver.url(), SECRET, {"event": "raised"})

    assert time.monotonic() - started < 3
    assert error.value.permanent is False
    assert error.value.status_code is None
    assert "did not respond within 0.5 s" in error.value.message


def test_send_connection_refused_retryable(ctx, app, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    with pytest.raises(DeliveryError) as error:
        send_webhook(f"http://127.0.0.1:{closed_port()}/", SECRET, {"event": "raised"})
    assert error.value.permanent is False
    assert "could not connect" in error.value.message


# The address guard


def test_send_rejects_loopback_by_default(ctx, app, receiver, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "")
    for url in (receiver.url(), receiver.url(host="localhost")):
        with pytest.raises(DeliveryError) as error:
            send_webhook(url, SECRET, {"event": "raised"})

        assert error.value.permanent is True
        assert error.value.status_code is None
        assert "resolves to 127.0.0.1, a loopback address" in error.value.message
        assert "WEBHOOK_ALLOWED_NETWORKS" in error.value.message
    assert receiver.requests == []


def test_send_invalid_url_permanent(ctx):
    with pytest.raises(DeliveryError) as error:
        send_webhook("ftp://hooks.example.com/x", SECRET, {"event": "raised"})
    assert error.value.permanent is True
    assert "scheme 'ftp' is not supported" in error.value.message


def test_send_invalid_setting_retryable(ctx, app, receiver, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,loopback")
    with pytest.raises(DeliveryError) as error:
        send_webhook(receiver.url(), SECRET, {"event": "raised"})

    assert error.value.permanent is False
    assert "WEBHOOK_ALLOWED_NETWORKS" in error.value.message
    assert receiver.requests == []
