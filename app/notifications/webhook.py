"""Signed webhook POSTs in the Backwatch JSON or the Slack-compatible format."""


def build_payload(context, fmt):
    """Return the JSON-serialisable body for `context` in format `fmt`."""
    raise NotImplementedError


def send_webhook(url, secret, body):
    """POST `body` (a dict) to `url`, signed with `secret`; return the HTTP status.

    Raises DeliveryError: permanent for 4xx other than 408/429 and for URLs
    the address guard rejects; retryable with retry_after for 429/503 and
    for other 5xx, timeouts and connection errors.
    """
    raise NotImplementedError
