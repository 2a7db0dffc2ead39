"""Email through Flask-Mail: HTML and plain-text parts, one SMTP connection per batch."""

import logging
import smtplib
import socket
from email.utils import make_msgid, parseaddr

from flask import current_app
from flask_mail import BadHeaderError, Connection, Message

from app.extensions import mail
from app.notifications.errors import DeliveryError

log = logging.getLogger(__name__)


class TimeoutConnection(Connection):
    """A Flask-Mail connection whose SMTP socket has a timeout.

    Flask-Mail 0.10 opens smtplib.SMTP without one, so a silent server would
    hold a worker forever.
    """

    def configure_host(self):
        timeout = current_app.config["MAIL_TIMEOUT_SECONDS"]
        smtp_class = smtplib.SMTP_SSL if self.mail.use_ssl else smtplib.SMTP
        # Without local_hostname smtplib calls socket.getfqdn(), which can
        # wait on a DNS server that does not answer.
        local_hostname = current_app.config["MAIL_LOCAL_HOSTNAME"]
        host = smtp_class(self.mail.server, self.mail.port, local_hostname=local_hostname, timeout=timeout)
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


def build_message(to, rendered):
    """Return a Flask-Mail message with a plain-text part and, if rendered, an HTML part."""
    sender = current_app.config["MAIL_DEFAULT_SENDER"]
    # NOTE: Message() itself still calls socket.getfqdn() once, through
    # make_msgid(); where reverse DNS does not answer, that call is slow.
    message = Message(
        subject=rendered.subject or "Backwatch",
        recipients=[to],
        body=rendered.text,
        html=rendered.html,
        sender=sender,
        charset="utf-8",
    )
    # The Message-ID takes the sender's domain. Flask-Mail's default calls
    # socket.getfqdn(), which can wait a minute on an unreachable DNS server.
    address = sender[1] if isinstance(sender, tuple) else parseaddr(sender)[1]
    message.msgId = make_msgid(domain=address.rpartition("@")[2] or "backwatch.invalid")
    return message


def send_batch(messages, on_progress=None):
    """Send `messages` (a list of (key, Message)) over one SMTP connection.

    Returns {key: Message-ID or DeliveryError}. A refused recipient fails only
    its own message; a lost connection fails the rest as retryable.
    `on_progress(remaining keys)` is called after each message.
    """
    results = {}
    # Read the settings now, not at start-up, and send even under TESTING:
    # the tests talk to a real SMTP server.
    state = mail.init_mail(current_app.config, current_app.debug, testing=False)
    try:
        connection = TimeoutConnection(state).__enter__()
    except (smtplib.SMTPException, OSError) as exc:
        error = _classify(exc)
        return {key: error for key, _ in messages}

    try:
        for index, (key, message) in enumerate(messages):
            try:
                connection.send(message)
                results[key] = message.msgId
                if on_progress is not None:
                    on_progress([rest_key for rest_key, _ in messages[index + 1:]])
            except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused, BadHeaderError) as exc:
                # The server refused this message only. smtplib already sent
                # RSET, so the connection is ready for the next one.
                results[key] = _classify(exc)
            except OSError as exc:
                # Lost connection or timeout (SMTPServerDisconnected is an
                # OSError too): the rest of the batch is retried later.
                error = _classify(exc)
                for rest_key, _ in messages[index:]:
                    results[rest_key] = error
                break
    finally:
        _quit(connection)
    return results


def _classify(exc):
    """Turn an SMTP or socket error into a DeliveryError; 5xx replies are permanent."""
    if isinstance(exc, BadHeaderError):
        return DeliveryError("message rejected: a header contains a line break", permanent=True)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()))
        return _reply_error("recipient refused", code, reply)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryError(
            f"SMTP login failed ({exc.smtp_code}); check MAIL_USERNAME and MAIL_PASSWORD",
            permanent=True, status_code=exc.smtp_code,
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_error("SMTP server rejected the message", exc.smtp_code, exc.smtp_error)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return DeliveryError("SMTP server timed out", permanent=False)
    server = f"{current_app.config['MAIL_SERVER']}:{current_app.config['MAIL_PORT']}"
    return DeliveryError(f"SMTP connection to {server} failed: {exc}", permanent=False)


def _reply_error(what, code, reply):
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return DeliveryError(f"{what}: {code} {text}", permanent=500 <= code < 600, status_code=code)


def _quit(connection):
    try:
        connection.__exit__(None, None, None)
    except (smtplib.SMTPException, OSError):
        log.debug("SMTP QUIT failed; the connection is closed anyway")
