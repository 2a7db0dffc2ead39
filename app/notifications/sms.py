"""SMS through Twilio's Messages API, CRITICAL alerts only."""

import datetime
import email.utils
import json
import logging
import math
import time
import unicodedata

import requests
from flask import current_app
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from app.notifications.errors import DeliveryError

log = logging.getLogger(__name__)

# One segment contains up to 160 GSM-7 septets or 70 UCS-2 (UTF-16) code
# units. GSM-7 texts are cut at 140 septets, which leaves 20 septets unused.
GSM7_MAX_SEPTETS = 140
UCS2_MAX_UNITS = 70
GSM7_ELLIPSIS = "..."
UCS2_ELLIPSIS = "…"

# Characters of the GSM 03.38 (3GPP TS 23.038) default alphabet, one septet
# each. Position 0x09 is the capital Ç, so the small ç is not in the alphabet. The
# escape code 0x1B is left out because it only introduces extension characters.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Characters of the default extension table. Each is sent as 0x1B plus one septet.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

ZERO_WIDTH_JOINER = "\u200d"

REQUIRED_SETTINGS = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER")

# Twilio error codes that mean this recipient cannot receive the message, so
# retrying cannot help (https://www.twilio.com/docs/errors/<code>).
RECIPIENT_ERRORS = {
    21211: "the 'To' number is not a valid phone number",
    21610: "the recipient has unsubscribed by replying STOP",
    21614: "the 'To' number is not a mobile number",
}

# 4xx statuses that are retried, like every 5xx status.
RETRYABLE_4XX_STATUSES = (408, 429)


def fit_sms(text):
    """Cut `text` to fit one SMS segment and mark the cut with an ellipsis.

    A text made only of GSM-7 characters may have up to 140 septets. Each
    character of the default alphabet counts one septet and each extension
    character (€ [ ] { } \\ ^ ~ | and form feed) counts two. Any other
    character makes the whole message UCS-2, and then the limit is 70 UTF-16
    code units: an emoji or another character outside the BMP counts two.
    A text within its limit is returned unchanged.

    A longer text is cut in one of two ways, and the one that keeps more
    characters wins (GSM-7 on a tie):
    - its GSM-7 start, up to the first non-GSM-7 character and at most 137
      septets, followed by "..." (the result is GSM-7, at most 140 septets);
    - its start of at most 69 code units, followed by "…" (the result is
      UCS-2 because "…" is not GSM-7, at most 70 code units).
    Whitespace before the ellipsis is dropped. The cut never splits a
    character outside the BMP (a surrogate pair once encoded) and never
    leaves a combining mark, variation selector, skin tone modifier or
    zero width joiner without the character it belongs to.
    """
    septets = _gsm7_septets(text)
    if septets is not None and septets <= GSM7_MAX_SEPTETS:
        return text
    if septets is None and _utf16_units(text) <= UCS2_MAX_UNITS:
        return text

    gsm7_end = _gsm7_prefix_end(text, GSM7_MAX_SEPTETS - _gsm7_septets(GSM7_ELLIPSIS))
    ucs2_end = _ucs2_prefix_end(text, UCS2_MAX_UNITS - _utf16_units(UCS2_ELLIPSIS))
    if gsm7_end >= ucs2_end:
        return text[:gsm7_end].rstrip() + GSM7_ELLIPSIS
    return text[:ucs2_end].rstrip() + UCS2_ELLIPSIS


def _gsm7_septets(text):
    """Return the septet count of `text` in GSM-7, or None if it contains another character."""
    septets = 0
    for character in text:
        if character in GSM7_BASIC:
            septets += 1
        elif character in GSM7_EXTENSION:
            septets += 2
        else:
            return None
    return septets


def _utf16_units(text):
    return sum(2 if ord(character) > 0xFFFF else 1 for character in text)


def _gsm7_prefix_end(text, max_septets):
    """Return the end of the longest GSM-7 start of `text` within `max_septets`."""
    septets = 0
    end = 0
    for character in text:
        if character in GSM7_BASIC:
            septets += 1
        elif character in GSM7_EXTENSION:
            septets += 2
        else:
            break
        if septets > max_septets:
            break
        end += 1
    return _back_off_to_boundary(text, end)


def _ucs2_prefix_end(text, max_units):
    """Return the end of the longest start of `text` within `max_units` UTF-16 code units."""
    units = 0
    end = 0
    for character in text:
        units += 2 if ord(character) > 0xFFFF else 1
        if units > max_units:
            break
        end += 1
    return _back_off_to_boundary(text, end)


def _back_off_to_boundary(text, end):
    """Move `end` left until text[:end] does not stop inside a character sequence.

    NOTE: a flag (a pair of regional indicators) can still be cut in half,
    because telling the pairs apart needs the full grapheme cluster rules.
    """
    while 0 < end < len(text):
        previous, following = text[end - 1], text[end]
        if previous == ZERO_WIDTH_JOINER or "\ud800" <= previous <= "\udbff" or _extends_previous(following):
            end -= 1
        else:
            break
    return end


def _extends_previous(character):
    """Return True for a character that modifies the one before it."""
    if unicodedata.category(character).startswith("M"):
        # Combining marks, including the variation selectors U+FE00..U+FE0F.
        return True
    if character == ZERO_WIDTH_JOINER:
        return True
    # Emoji skin tone modifiers, and the tag characters of subdivision flags.
    return "\U0001f3fb" <= character <= "\U0001f3ff" or "\U000e0020" <= character <= "\U000e007f"


def send_sms(to, body):
    """Send one SMS from TWILIO_FROM_NUMBER and return Twilio's message SID.

    Uses TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, with TWILIO_TIMEOUT_SECONDS
    as the connect timeout and again as the read timeout. TWILIO_API_BASE_URL,
    when set, replaces https://api.twilio.com.

    Raises DeliveryError. It is permanent for missing settings, for a
    recipient Twilio rejects (errors 21211, 21610, 21614), for other 4xx
    responses and for a 2xx response without a message SID. It is retryable,
    with retry_after from a Retry-After header if there is one, for 408,
    429, 5xx, timeouts and connection errors.

    NOTE: a read timeout is retried although Twilio may already have queued
    the message, so the recipient can get the SMS twice.
    """
    config = current_app.config
    missing = [name for name in REQUIRED_SETTINGS if not config.get(name)]
    if missing:
        raise DeliveryError(
            f"SMS settings missing: {', '.join(missing)}. Set them in the environment.",
            permanent=True,
        )

    timeout = config["TWILIO_TIMEOUT_SECONDS"]
    response_info = {}
    http_client = TwilioHttpClient(
        timeout=timeout,
        request_hooks={"response": [_response_recorder(response_info)]},
    )
    client = Client(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"], http_client=http_client)
    base_url = config.get("TWILIO_API_BASE_URL")
    if base_url:
        client.api.base_url = base_url.rstrip("/")
        # The client reads TWILIO_EDGE and TWILIO_REGION from the environment
        # and would rewrite the host of the base URL with them.
        client.edge = None
        client.region = None

    try:
        message = client.messages.create(to=to, from_=config["TWILIO_FROM_NUMBER"], body=body)
    except (TwilioRestException, TwilioServiceException) as error:
        raise _error_from_response(error, to, response_info.get("retry_after")) from error
    except requests.Timeout as error:
        raise DeliveryError(f"Request to Twilio timed out after {timeout} s: {error}", permanent=False) from error
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
        raise DeliveryError(f"Connection to Twilio failed: {error}", permanent=False) from error
    except requests.RequestException as error:
        # Invalid URLs and similar mistakes in TWILIO_API_BASE_URL end here.
        raise DeliveryError(f"Request to Twilio failed: {error}", permanent=True) from error
    except json.JSONDecodeError as error:
        raise _unreadable_success(response_info.get("status")) from error
    finally:
        http_client.session.close()

    if not message.sid:
        raise _unreadable_success(response_info.get("status"))
    log.info("Sent SMS %s to %s", message.sid, to)
    return message.sid


def _response_recorder(response_info):
    """Return a requests response hook that stores the status and Retry-After in `response_info`."""

    def record(response, *args, **kwargs):
        response_info["status"] = response.status_code
        response_info["retry_after"] = response.headers.get("Retry-After")

    return record


def _error_from_response(error, to, retry_after_header):
    """Return the DeliveryError for an error response from Twilio."""
    status = error.status
    if isinstance(error, TwilioServiceException):
        text = error.detail or error.title
    else:
        # twilio 9.13 (Version.exception) prefixes Twilio's own message with this phrase.
        text = error.msg.removeprefix("Unable to create record: ")
    # Without a JSON error body, the client uses the HTTP status as the code.
    code = error.code if error.code and error.code != status else None
    summary = f"HTTP {status}, Twilio error {code}" if code else f"HTTP {status}"

    if code in RECIPIENT_ERRORS:
        return DeliveryError(
            f"Twilio rejected the SMS to {to} because {RECIPIENT_ERRORS[code]} ({summary}): {text}",
            permanent=True,
            status_code=status,
        )
    if status in RETRYABLE_4XX_STATUSES or status >= 500:
        return DeliveryError(
            f"Twilio returned a temporary error for the SMS to {to} ({summary}): {text}",
            permanent=False,
            retry_after=_parse_retry_after(retry_after_header),
            status_code=status,
        )
    message = f"Twilio rejected the SMS to {to} ({summary}): {text}"
    if status in (401, 403):
        message = message.rstrip(".") + ". Check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN."
    return DeliveryError(message, permanent=True, status_code=status)


def _unreadable_success(status):
    # Permanent, because Twilio may have queued the message and a retry would send it twice.
    return DeliveryError(
        f"Twilio returned HTTP {status} without a readable message SID. "
        "The SMS may have been sent, so it is not retried.",
        permanent=True,
        status_code=status,
    )


def _parse_retry_after(value):
    """Return the delay of a Retry-After header in whole seconds, or None if absent or invalid.

    The header is either a number of seconds or an HTTP date.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        # parsedate_to_datetime returns a naive datetime for the zone "-0000", which means UTC.
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return max(0, math.ceil(moment.timestamp() - time.time()))
