"""SMS channel: fitting a text into one segment, and sending it with the real
twilio client to a loopback server that imitates Twilio's Messages API."""

import base64
import json
import logging
import re
import socket
import threading
import time
import uuid
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from app.notifications.errors import DeliveryError
from app.notifications.sms import fit_sms, send_sms

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "auth-token-7c1e9b2d4f"
FROM_NUMBER = "+15005550006"
TO_NUMBER = "+15558675310"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def closed_port():
    """Return a loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def twilio_error(code, message, status):
    """Return Twilio's JSON error body for error `code`."""
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


def twilio_date(moment):
    return moment.strftime("%a, %d %b %Y %H:%M:%S +0000")


class TwilioHandler(BaseHTTPRequestHandler):
    """Handle POST /2010-04-01/Accounts/{AccountSid}/Messages.json with the responses Twilio sends."""

    def do_POST(self):
        fake = self.server.fake
        length = int(self.headers.get("Content-Length", 0))
        form = {key: values[0] for key, values in parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()}
        fake.requests.append({
            "path": self.path,
            "authorization": self.headers.get("Authorization"),
            "content_type": self.headers.get("Content-Type"),
            "form": form,
        })
        if fake.delay_seconds:
            fake.release.wait(fake.delay_seconds)

        match = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)/Messages\.json", self.path)
        if match is None:
            self.reply(404, twilio_error(20404, f"The requested resource {self.path} was not found", 404))
        elif self.headers.get("Authorization") != fake.expected_authorization:
            self.reply(401, twilio_error(20003, "Authenticate", 401), {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        elif fake.replies:
            self.reply(*fake.replies.pop(0))
        else:
            self.reply(201, fake.message_resource(match.group(1), form))

    def reply(self, status, body, headers=None):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        content_type = "text/html" if isinstance(body, str) else "application/json"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


class FakeTwilio:
    """A Twilio Messages API on 127.0.0.1 that records every request.

    Each entry of `replies` is (status, body, headers), the response to one
    authenticated request. When it is empty, the server accepts the message.
    """

    def __init__(self):
        self.requests = []
        self.replies = []
        self.sent_sids = []
        self.delay_seconds = 0
        self.release = threading.Event()
        credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        self.expected_authorization = f"Basic {credentials}"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), TwilioHandler)
        self.httpd.fake = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def message_resource(self, account_sid, form):
        """Return the 201 body Twilio sends for a queued message."""
        sid = "SM" + uuid.uuid4().hex
        self.sent_sids.append(sid)
        now = twilio_date(datetime.now(timezone.utc))
        return {
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body"),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json"},
            "to": form.get("To"),
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
        }

    def start(self):
        self.thread.start()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def loopback_only(app, monkeypatch):
    """Send every request of this module to a closed loopback port unless a test starts a server."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(app.config, "TWILIO_API_BASE_URL", f"http://127.0.0.1:{closed_port()}")


@pytest.fixture
def twilio_settings(app, monkeypatch):
    monkeypatch.setitem(app.config, "TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setitem(app.config, "TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setitem(app.config, "TWILIO_FROM_NUMBER", FROM_NUMBER)
    monkeypatch.setitem(app.config, "TWILIO_TIMEOUT_SECONDS", 5.0)


@pytest.fixture
def twilio(app, monkeypatch, twilio_settings):
    fake = FakeTwilio()
    fake.start()
    monkeypatch.setitem(app.config, "TWILIO_API_BASE_URL", fake.url)
    yield fake
    fake.stop()


def send_expecting_error(body="CRITICAL nightly-db: backup failed"):
    with pytest.raises(DeliveryError) as caught:
        send_sms(TO_NUMBER, body)
    return caught.value


# send_sms


def test_send_sms_returns_sid(ctx, twilio):
    sid = send_sms(TO_NUMBER, "CRITICAL nightly-db: backup failed")

    assert sid == twilio.sent_sids[0]
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)


def test_send_sms_posts_form_with_auth(ctx, twilio):
    send_sms(TO_NUMBER, "CRITICAL nightly-db: backup failed")

    assert len(twilio.requests) == 1
    request = twilio.requests[0]
    assert request["path"] == MESSAGES_PATH
    assert request["authorization"] == twilio.expected_authorization
    assert request["content_type"] == "application/x-www-form-urlencoded"
    assert request["form"] == {"To": TO_NUMBER, "From": FROM_NUMBER, "Body": "CRITICAL nightly-db: backup failed"}


def test_send_sms_keeps_unicode_body(ctx, twilio):
    send_sms(TO_NUMBER, "Sauvegarde échouée 😱")

    assert twilio.requests[0]["form"]["Body"] == "Sauvegarde échouée 😱"


def test_send_sms_accepts_base_url_with_slash(app, ctx, twilio, monkeypatch):
    monkeypatch.setitem(app.config, "TWILIO_API_BASE_URL", twilio.url + "/")

    send_sms(TO_NUMBER, "CRITICAL nightly-db: backup failed")

    assert twilio.requests[0]["path"] == MESSAGES_PATH


def test_send_sms_ignores_edge_with_base_url(ctx, twilio, monkeypatch):
    # The client would otherwise rewrite the host to 127.sydney.0.1.
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")

    sid = send_sms(TO_NUMBER, "CRITICAL nightly-db: backup failed")

    assert sid == twilio.sent_sids[0]


@pytest.mark.parametrize("code, message", [
    (21211, f"The 'To' number {TO_NUMBER} is not a valid phone number."),
    (21614, f"'To' number {TO_NUMBER} is not a valid mobile number"),
    (21610, "Attempt to send to unsubscribed recipient"),
])
def test_send_sms_rejected_recipient_is_permanent(ctx, twilio, code, message):
    twilio.replies.append((400, twilio_error(code, message, 400), {}))

    error = send_expecting_error()

    assert error.permanent is True
    assert error.status_code == 400
    assert error.retry_after is None
    assert str(code) in error.message
    assert message in error.message
    assert TO_NUMBER in error.message


def test_send_sms_other_4xx_is_permanent(ctx, twilio):
    twilio.replies.append((400, twilio_error(21606, "The From phone number is not a valid, SMS-capable inbound phone number", 400), {}))

    error = send_expecting_error()

    assert error.permanent is True
    assert error.status_code == 400
    assert "21606" in error.message
    assert "not a valid, SMS-capable" in error.message


def test_send_sms_rate_limit_is_retryable(ctx, twilio):
    twilio.replies.append((429, twilio_error(20429, "Too Many Requests", 429), {"Retry-After": "30"}))

    error = send_expecting_error()

    assert error.permanent is False
    assert error.status_code == 429
    assert error.retry_after == 30
    assert "20429" in error.message


def test_send_sms_retry_after_http_date(ctx, twilio):
    later = datetime.now(timezone.utc) + timedelta(seconds=120)
    twilio.replies.append((503, twilio_error(20503, "Service Unavailable", 503), {"Retry-After": format_datetime(later, usegmt=True)}))

    error = send_expecting_error()

    assert error.permanent is False
    assert error.status_code == 503
    assert 100 <= error.retry_after <= 121


@pytest.mark.parametrize("status", [500, 502, 503])
def test_send_sms_5xx_is_retryable(ctx, twilio, status):
    twilio.replies.append((status, twilio_error(20500, "Internal Server Error", status), {}))

    error = send_expecting_error()

    assert error.permanent is False
    assert error.status_code == status
    assert error.retry_after is None


def test_send_sms_5xx_html_body_is_retryable(ctx, twilio):
    twilio.replies.append((502, "<html><body>Bad Gateway</body></html>", {}))

    error = send_expecting_error()

    assert error.permanent is False
    assert error.status_code == 502
    assert "HTTP 502" in error.message


def test_send_sms_bad_credentials_is_permanent(app, ctx, twilio, monkeypatch):
    monkeypatch.setitem(app.config, "TWILIO_AUTH_TOKEN", "wrong-token-3a8f")

    error = send_expecting_error()

    assert error.permanent is True
    assert error.status_code == 401
    assert "20003" in error.message
    assert "Authenticate" in error.message
    assert "TWILIO_AUTH_TOKEN" in error.message
    assert "wrong-token-3a8f" not in error.message
    assert twilio.requests[0]["authorization"] != twilio.expected_authorization


def test_send_sms_connection_refused_is_retryable(ctx, twilio_settings):
    # loopback_only points the client at a closed port.
    error = send_expecting_error()

    assert error.permanent is False
    assert error.retry_after is None
    assert error.status_code is None
    assert "Connection to Twilio failed" in error.message


def test_send_sms_timeout_is_retryable(app, ctx, twilio, monkeypatch):
    monkeypatch.setitem(app.config, "TWILIO_TIMEOUT_SECONDS", 0.5)
    twilio.delay_seconds = 5

    started = time.monotonic()
    error = send_expecting_error()

    assert time.monotonic() - started < 4
    assert error.permanent is False
    assert "timed out after 0.5 s" in error.message


def test_send_sms_unreadable_success_is_permanent(ctx, twilio):
    twilio.replies.append((201, "queued", {}))

    error = send_expecting_error()

    assert error.permanent is True
    assert error.status_code == 201
    assert "may have been sent" in error.message


@pytest.mark.parametrize("missing", [
    ["TWILIO_ACCOUNT_SID"],
    ["TWILIO_AUTH_TOKEN"],
    ["TWILIO_FROM_NUMBER"],
    ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"],
])
def test_send_sms_missing_settings_are_permanent(app, ctx, twilio, monkeypatch, missing):
    for name in missing:
        monkeypatch.setitem(app.config, name, None)

    error = send_expecting_error()

    assert error.permanent is True
    for name in missing:
        assert name in error.message
    assert twilio.requests == []


def test_send_sms_empty_setting_is_missing(app, ctx, twilio, monkeypatch):
    monkeypatch.setitem(app.config, "TWILIO_FROM_NUMBER", "")

    error = send_expecting_error()

    assert error.permanent is True
    assert "TWILIO_FROM_NUMBER" in error.message
    assert twilio.requests == []


def test_send_sms_never_reveals_auth_token(ctx, twilio, caplog, monkeypatch):
    # Alembic's fileConfig in migrations/env.py disables the loggers that exist
    # when the app fixture runs the migrations, so switch these back on.
    for name in ("app.notifications.sms", "twilio.http_client", "urllib3.connectionpool"):
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    caplog.set_level(logging.DEBUG)
    credentials = twilio.expected_authorization.removeprefix("Basic ")
    twilio.replies.extend([
        (400, twilio_error(21211, f"The 'To' number {TO_NUMBER} is not a valid phone number.", 400), {}),
        (429, twilio_error(20429, "Too Many Requests", 429), {"Retry-After": "5"}),
        (500, twilio_error(20500, "Internal Server Error", 500), {}),
        (201, "queued", {}),
    ])

    messages = [send_expecting_error().message for _ in range(4)]
    send_sms(TO_NUMBER, "CRITICAL nightly-db: backup failed")

    assert len(twilio.requests) == 5
    for message in messages:
        assert AUTH_TOKEN not in message
        assert credentials not in message
    assert caplog.records
    assert AUTH_TOKEN not in caplog.text
    assert credentials not in caplog.text


# fit_sms


def utf16_units(text):
    """Count UTF-16 code units. Encoding raises UnicodeEncodeError on a lone surrogate."""
    return len(text.encode("utf-16-le")) // 2


def gsm7_septets(text):
    """Count septets of a GSM-7 text: extension characters take two."""
    return sum(2 if character in "€[]{}\\^~|\f" else 1 for character in text)


def test_fit_sms_keeps_short_text():
    assert fit_sms("CRITICAL nightly-db: backup failed") == "CRITICAL nightly-db: backup failed"


def test_fit_sms_keeps_empty_text():
    assert fit_sms("") == ""


def test_fit_sms_keeps_140_gsm7_characters():
    text = "x" * 140

    assert fit_sms(text) == text


def test_fit_sms_cuts_141_gsm7_characters():
    text = "x" * 141

    result = fit_sms(text)

    assert result == "x" * 137 + "..."
    assert gsm7_septets(result) == 140


def test_fit_sms_drops_space_before_ellipsis():
    text = "x" * 136 + " " + "y" * 10

    assert fit_sms(text) == "x" * 136 + "..."


def test_fit_sms_counts_e_acute_as_gsm7():
    assert fit_sms("é" * 140) == "é" * 140
    assert fit_sms("é" * 141) == "é" * 137 + "..."


def test_fit_sms_counts_capital_c_cedilla_as_gsm7():
    assert fit_sms("Ç" * 140) == "Ç" * 140


def test_fit_sms_treats_small_c_cedilla_as_ucs2():
    assert fit_sms("ç" * 70) == "ç" * 70
    assert fit_sms("ç" * 71) == "ç" * 69 + "…"


def test_fit_sms_counts_extension_characters_twice():
    within = "x" * 120 + "{}" * 5
    over = "x" * 120 + "{}" * 6

    assert gsm7_septets(within) == 140
    assert fit_sms(within) == within
    result = fit_sms(over)
    assert result == "x" * 120 + "{}" * 4 + "..."
    assert gsm7_septets(result) == 139


def test_fit_sms_euro_text_keeps_longer_cut():
    # 70 euro signs are 140 septets. For 71, the UCS-2 cut keeps 69 of them
    # and the GSM-7 cut only 68.
    assert fit_sms("€" * 70) == "€" * 70
    assert fit_sms("€" * 71) == "€" * 69 + "…"


def test_fit_sms_keeps_short_emoji_text():
    assert fit_sms("Sauvegarde échouée 😱") == "Sauvegarde échouée 😱"


def test_fit_sms_cuts_emoji_text_at_70_units():
    text = "😱 Sauvegarde échouée sur nightly-db : aucune archive depuis trois jours, vérifiez le disque de destination."

    result = fit_sms(text)

    assert utf16_units(text) > 70
    assert result.endswith("…")
    assert utf16_units(result) <= 70
    assert text.startswith(result[:-1])


def test_fit_sms_counts_emoji_as_two_units():
    fits = "ç" + "a" * 66 + "😱" + "b" * 10
    does_not_fit = "ç" + "a" * 67 + "😱" + "b" * 10

    assert fit_sms(fits) == "ç" + "a" * 66 + "😱" + "…"
    assert utf16_units(fit_sms(fits)) == 70
    assert fit_sms(does_not_fit) == "ç" + "a" * 67 + "…"
    assert utf16_units(fit_sms(does_not_fit)) == 69


def test_fit_sms_never_splits_emoji():
    for prefix_length in range(60, 72):
        text = "ç" + "a" * prefix_length + "😱" * 20

        result = fit_sms(text)

        assert utf16_units(result) <= 70
        assert result.endswith("…")
        assert text.startswith(result[:-1])


def test_fit_sms_keeps_emoji_sequence_whole():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    text = "ç" + "a" * 62 + family + "b" * 20

    assert fit_sms(text) == "ç" + "a" * 62 + "…"


def test_fit_sms_keeps_combining_mark_with_letter():
    text = "ç" + "a" * 67 + "e\u0301" + "b" * 20

    assert fit_sms(text) == "ç" + "a" * 67 + "…"


def test_fit_sms_prefers_longer_gsm7_start():
    text = "a" * 100 + "ç" + "b" * 50

    assert fit_sms(text) == "a" * 100 + "..."
