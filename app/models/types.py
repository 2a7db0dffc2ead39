"""Column types shared by the models."""

import enum
from datetime import datetime, timezone

from sqlalchemy import DateTime, SmallInteger
from sqlalchemy.types import TypeDecorator


def utcnow():
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp stored as naive UTC and returned as aware UTC.

    SQLite has no time zones, so every value is converted to UTC before it is
    written. A naive value (a console filter, for example) is taken as UTC.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class Severity(enum.IntEnum):
    """Alert severity; the numbers order the levels and are what is stored."""

    INFO = 10
    WARNING = 20
    ERROR = 30
    CRITICAL = 40

    @classmethod
    def parse(cls, name):
        """Return the severity called `name` (any case), or raise ValueError."""
        try:
            return cls[str(name).strip().upper()]
        except KeyError:
            choices = ", ".join(s.name for s in cls)
            raise ValueError(f"unknown severity {name!r}; expected one of {choices}") from None


class SeverityType(TypeDecorator):
    """Stores a Severity as its number, so that SQL can compare and sort it."""

    impl = SmallInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            return int(Severity(int(value)) if value.isdigit() else Severity.parse(value))
        return int(Severity(value))

    def process_result_value(self, value, dialect):
        return None if value is None else Severity(value)
