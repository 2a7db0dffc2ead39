"""A Backblaze B2 bucket, read through B2's native API with b2sdk (v2 interface)."""

import re
from contextlib import contextmanager

from b2sdk.v2 import B2Api, InMemoryAccountInfo
from b2sdk.v2.exception import (
    AccessDenied,
    B2ConnectionError,
    B2Error,
    B2RequestTimeout,
    ConnectionReset,
    NonExistentBucket,
    RestrictedBucket,
    Unauthorized,
)

from app.storage.base import ObjectInfo, StorageBackend, StorageError, StorageUsage, utc_now

# b2sdk's name for B2's production realm (api.backblazeb2.com).
REALM = "production"
# B2 returns at most 10,000 file versions per b2_list_file_versions call.
MAX_PAGE_SIZE = 10_000
SHA1_HEX = re.compile(r"^[0-9a-fA-F]{40}$")
SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class BackblazeB2Storage(StorageBackend):
    """A B2 bucket, measured over every stored file version.

    Versions rule, the same for used_bytes and for object_count: every
    version whose action is "upload" counts. That covers the latest version
    of each name and every older or hidden version alike, because B2 stores
    and bills them all until a lifecycle rule or a delete removes them.
    Hide markers (action "hide") have no content and are not counted.
    Unfinished large files (action "start") are not counted either. The
    listing reports them with no size, although B2 bills the parts already
    uploaded.

    capacity_bytes is the configured quota (None when there is none).

    NOTE: b2sdk's own HTTP timeouts and retries apply (in b2sdk 2.13.2: 46 s
    to connect, 128 s to read, 5 attempts per listing call), and b2sdk
    documents them as internal, so they are not set here.
    """

    kind = "b2"

    def __init__(self, name, bucket, key_id, application_key, quota_bytes, api=None, page_size=1000):
        super().__init__(name)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"invalid page_size {page_size!r}: expected 1 to {MAX_PAGE_SIZE} file versions per request")
        self.bucket = bucket
        self.quota_bytes = quota_bytes
        self.page_size = page_size
        self._key_id = key_id
        self._application_key = application_key
        self._api = api or B2Api(InMemoryAccountInfo())
        self._authorized = False

    def describe(self):
        return f"{self.name!r} (b2 bucket {self.bucket!r})"

    def get_storage_usage(self):
        """List every file version of the bucket, one page at a time, in constant memory."""
        used_bytes = 0
        object_count = 0
        with self._translate_errors("listing the bucket"):
            bucket = self._get_bucket()
            versions = bucket.ls(recursive=True, latest_only=False, fetch_count=self.page_size)
            for file_version, _folder in versions:
                if file_version.action != "upload":
                    continue
                used_bytes += file_version.size or 0
                object_count += 1
        return StorageUsage(
            used_bytes=used_bytes,
            capacity_bytes=self.quota_bytes,
            object_count=object_count,
            measured_at=utc_now(),
        )

    def get_object(self, key):
        """Return size and checksums of the latest version of `key`, or None when none is visible.

        None also covers a name whose latest version is a hide marker or an
        unfinished large file. sha1 is B2's contentSha1, or the file info
        "large_file_sha1" for large files, whose contentSha1 is "none". B2
        keeps no SHA-256, so sha256 comes from the file info "sha256" (hex),
        which is where an uploader's own b2 file info or S3 x-amz-meta-sha256
        metadata lands. A value that is not a hex digest is ignored.
        """
        with self._translate_errors("reading object metadata"):
            bucket = self._get_bucket()
            # B2 lists the versions of one name newest first.
            latest = next(iter(bucket.list_file_versions(key, fetch_count=1)), None)
        if latest is None or latest.action != "upload":
            return None
        sha1 = latest.get_content_sha1()
        file_info = {name.lower(): value for name, value in (latest.file_info or {}).items()}
        sha256 = file_info.get("sha256", "").strip()
        return ObjectInfo(
            key=key,
            size=latest.size or 0,
            sha1=sha1.lower() if sha1 and SHA1_HEX.match(sha1) else None,
            sha256=sha256.lower() if SHA256_HEX.match(sha256) else None,
        )

    def _get_bucket(self):
        if not self._authorized:
            self._api.authorize_account(REALM, self._key_id, self._application_key)
            self._authorized = True
        return self._api.get_bucket_by_name(self.bucket)

    @contextmanager
    def _translate_errors(self, action):
        """Turn b2sdk errors raised inside the block into StorageError.

        b2sdk's exception text is the server's message and code. The tests
        check that a wrong application key does not appear in it.
        """
        try:
            yield
        except B2Error as exc:
            raise self._translate(action, exc) from exc

    def _translate(self, action, exc):
        if isinstance(exc, NonExistentBucket):
            return self.error(f"{action} failed: the bucket does not exist; create it or correct the bucket name",
                              StorageError.REASON_NOT_FOUND)
        if isinstance(exc, (Unauthorized, AccessDenied, RestrictedBucket)):
            return self.error(
                f"{action} failed: access denied ({exc}); check B2_ACCESS_KEY_ID and B2_SECRET_ACCESS_KEY "
                "and the key's capabilities and bucket restriction",
                StorageError.REASON_CREDENTIALS,
            )
        if isinstance(exc, B2RequestTimeout):
            return self.error(f"{action} timed out: {exc}", StorageError.REASON_TIMEOUT)
        if isinstance(exc, (B2ConnectionError, ConnectionReset)):
            return self.error(f"{action} failed: could not connect to B2: {exc}", StorageError.REASON_CONNECTION)
        return self.error(f"{action} failed: {type(exc).__name__}: {exc}")
