"""SMS through Twilio's Messages API, CRITICAL alerts only."""


def fit_sms(text):
    """Return `text` cut to one SMS segment, with an ellipsis where it was cut."""
    raise NotImplementedError


def send_sms(to, body):
    """Send one SMS from TWILIO_FROM_NUMBER; return Twilio's message SID.

    Raises DeliveryError (permanent for an invalid number or a rejected
    message, retryable for 429, 5xx and network errors).
    """
    raise NotImplementedError
