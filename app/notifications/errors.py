"""The error every channel raises when a message was not sent."""


class DeliveryError(Exception):
    """A message was not sent.

    `permanent` is True when retrying cannot help (invalid address, rejected
    by the provider, 4xx other than 408 and 429). `retry_after` is the delay
    in seconds the provider asked for, if any.
    """

    def __init__(self, message, *, permanent, retry_after=None, status_code=None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.status_code = status_code
