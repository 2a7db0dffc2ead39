"""Types shared by the storage backends: usage, object metadata and the error they raise."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class StorageUsage:
    """One measurement of a backend's use, in bytes.

    capacity_bytes is None when no capacity is known (a bucket without a
    configured quota). backup_bytes is the size of the backup folder for
    local backends and None for buckets, where used_bytes already is the
    size of the bucket's objects. measured_at is an aware UTC datetime
    taken when the measurement completed.
    """

    used_bytes: int
    capacity_bytes: int | None
    object_count: int
    measured_at: datetime
    backup_bytes: int | None = None


@dataclass(frozen=True)
class ObjectInfo:
    """Size and checksums of one stored object; a checksum is None when the backend has none recorded."""

    key: str
    size: int
    # Lowercase hex digests.
    sha256: str | None = None
    sha1: str | None = None


class StorageError(Exception):
    """A backend could not be read: bad credentials, a timeout, a missing bucket or path, and so on.

    The message names the backend and what failed, and never contains a
    secret. `reason` is one of the REASON_* values below, so callers can
    tell a configuration problem from a passing network failure.
    """

    REASON_CONFIGURATION = "configuration"
    REASON_CREDENTIALS = "credentials"
    REASON_NOT_FOUND = "not_found"
    REASON_INVALID_KEY = "invalid_key"
    REASON_TIMEOUT = "timeout"
    REASON_CONNECTION = "connection"
    REASON_INVALID_RESPONSE = "invalid_response"
    REASON_FAILED = "failed"

    def __init__(self, backend, message, reason=REASON_FAILED):
        self.backend = backend
        self.reason = reason
        super().__init__(f"storage backend {backend}: {message}")


class StorageBackend(ABC):
    """A place where backups are stored, measured by get_storage_usage and queried by get_object."""

    kind = ""

    def __init__(self, name):
        self.name = name

    @abstractmethod
    def describe(self):
        """Return a short label such as "'offsite' (r2 bucket 'backups')" for messages."""

    @abstractmethod
    def get_storage_usage(self) -> StorageUsage:
        """Measure the backend now; raise StorageError when it cannot be read."""

    @abstractmethod
    def get_object(self, key) -> ObjectInfo | None:
        """Return the object's size and checksums, or None when no object has that key.

        Raises StorageError for every other failure.
        """

    def error(self, message, reason=StorageError.REASON_FAILED):
        """Build a StorageError about this backend."""
        return StorageError(self.describe(), message, reason)

    def __repr__(self):
        return f"<{type(self).__name__} {self.describe()}>"


def utc_now():
    return datetime.now(timezone.utc)
