"""A Cloudflare R2 bucket, read through R2's S3-compatible API with boto3."""

import base64
import binascii
import collections
import re

import boto3
import botocore.session
from botocore.config import Config as BotocoreConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from app.storage.base import ObjectInfo, StorageBackend, StorageError, StorageUsage, utc_now

CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 10.0
# Total attempts per request, the first included (botocore "standard" retry mode).
MAX_ATTEMPTS = 3
MAX_PAGE_SIZE = 1000
CREDENTIAL_ERROR_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Unauthorized", "403"}
SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def r2_endpoint_url(account_id):
    return f"https://{account_id}.r2.cloudflarestorage.com"


def build_s3_client(endpoint_url, access_key_id, secret_access_key,
                    connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS,
                    max_attempts=MAX_ATTEMPTS):
    """Return a boto3 S3 client for `endpoint_url` with bounded timeouts (seconds) and retries.

    The client leaves timestamps such as LastModified as the server's text.
    Parsing them with dateutil, botocore's default, took about two thirds of
    the client's time per listed page in bench/storage_listing.py, and
    nothing here reads them.
    """
    session = botocore.session.Session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_keep_timestamp_text)
    config = BotocoreConfig(
        region_name="auto",
        signature_version="s3v4",
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        # R2 accepts path-style requests, and they need no per-bucket DNS name.
        s3={"addressing_style": "path"},
    )
    return boto3.session.Session(botocore_session=session).client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )


class CloudflareR2Storage(StorageBackend):
    """An R2 bucket: used_bytes and object_count are the sum of its objects' sizes and their count.

    capacity_bytes is the configured quota (None when there is none): R2 has
    no bucket size limit of its own to read.
    """

    kind = "r2"

    def __init__(self, name, bucket, account_id, access_key_id, secret_access_key, quota_bytes,
                 endpoint_url=None, page_size=1000, client=None):
        super().__init__(name)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"invalid page_size {page_size!r}: expected 1 to {MAX_PAGE_SIZE} keys per ListObjectsV2 request")
        self.bucket = bucket
        self.quota_bytes = quota_bytes
        self.page_size = page_size
        self.endpoint_url = endpoint_url or r2_endpoint_url(account_id)
        self.client = client or build_s3_client(self.endpoint_url, access_key_id, secret_access_key)

    def describe(self):
        return f"{self.name!r} (r2 bucket {self.bucket!r})"

    def get_storage_usage(self):
        """List the whole bucket with ListObjectsV2, one page at a time, in constant memory.

        Only IsTruncated decides whether more pages follow, because a page may
        hold fewer than MaxKeys keys while more remain. A truncated page
        without NextContinuationToken, or a token that comes back, raises
        StorageError instead of listing forever.
        """
        used_bytes = 0
        object_count = 0
        token = None
        cycle_check = TokenCycleCheck()
        pages = 0
        while True:
            request = {"Bucket": self.bucket, "MaxKeys": self.page_size}
            if token is not None:
                request["ContinuationToken"] = token
            page = self._call("listing the bucket", self.client.list_objects_v2, **request)
            pages += 1
            for item in page.get("Contents", ()):
                used_bytes += item["Size"]
                object_count += 1
            if not page.get("IsTruncated"):
                break

            next_token = page.get("NextContinuationToken")
            if not next_token:
                raise self.error(
                    f"listing the bucket failed: page {pages} is truncated but has no NextContinuationToken",
                    StorageError.REASON_INVALID_RESPONSE,
                )
            if cycle_check.seen(next_token):
                raise self.error(
                    f"listing the bucket failed: page {pages} returned a continuation token that was already used",
                    StorageError.REASON_INVALID_RESPONSE,
                )
            token = next_token

        return StorageUsage(
            used_bytes=used_bytes,
            capacity_bytes=self.quota_bytes,
            object_count=object_count,
            measured_at=utc_now(),
        )

    def get_object(self, key):
        """Return the object's size and checksums from HeadObject, or None when it does not exist.

        The SHA-256 comes from the object's full-object ChecksumSHA256 (the
        request sets ChecksumMode=ENABLED) or else from the user metadata
        x-amz-meta-sha256 as hex. The SHA-1 comes from a full-object
        ChecksumSHA1, when the uploader requested one. A multipart upload's
        composite checksum is a checksum of part checksums, so it is ignored.
        """
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _error_code(exc) not in ("404", "NoSuchKey"):
                raise self._translate("reading object metadata", exc) from exc
            self._check_bucket_exists()
            return None
        except BotoCoreError as exc:
            raise self._translate("reading object metadata", exc) from exc
        return ObjectInfo(
            key=key,
            size=head["ContentLength"],
            sha256=_sha256_of(head),
            sha1=_full_object_digest(head, "ChecksumSHA1", 20),
        )

    def _check_bucket_exists(self):
        """Raise StorageError unless the bucket exists, because HeadObject also returns a bare 404 for a missing bucket."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchBucket"):
                raise self.error("reading object metadata failed: the bucket does not exist; create it or correct the bucket name",
                                 StorageError.REASON_NOT_FOUND) from exc
            raise self._translate("checking the bucket", exc) from exc
        except BotoCoreError as exc:
            raise self._translate("checking the bucket", exc) from exc

    def _call(self, action, method, **request):
        try:
            return method(**request)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(action, exc) from exc

    def _translate(self, action, exc):
        """Return a StorageError for a botocore error.

        The secret key never leaves the client (requests carry only a
        signature), so no server message can contain it.
        """
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return self.error(f"{action} failed: the bucket does not exist; create it or correct the bucket name",
                                  StorageError.REASON_NOT_FOUND)
            if code in CREDENTIAL_ERROR_CODES:
                return self.error(
                    f"{action} failed: access denied ({code}); check R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY "
                    "and the token's permissions on this bucket",
                    StorageError.REASON_CREDENTIALS,
                )
            message = exc.response.get("Error", {}).get("Message") or "no message"
            return self.error(f"{action} failed: HTTP {status} {code}: {message}")
        if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
            return self.error(f"{action} timed out: {exc}", StorageError.REASON_TIMEOUT)
        if isinstance(exc, (EndpointConnectionError, ConnectionClosedError)):
            return self.error(f"{action} failed: {exc}", StorageError.REASON_CONNECTION)
        if isinstance(exc, NoCredentialsError):
            return self.error(f"{action} failed: no credentials; set R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY",
                              StorageError.REASON_CONFIGURATION)
        return self.error(f"{action} failed: {exc}")


class TokenCycleCheck:
    """A detector of continuation tokens that come back, in bounded memory.

    seen() compares each token with the last RECENT_TOKENS tokens, so a
    cycle of up to that many pages is found when its first token repeats.
    Longer cycles are found by Brent's method: each token is also compared
    with one checkpoint token, moved forward at powers of two. That finds any
    cycle within (pages before the cycle) + 3 x (cycle length) further pages.
    """

    RECENT_TOKENS = 64

    def __init__(self):
        self.recent = collections.deque(maxlen=self.RECENT_TOKENS)
        self.checkpoint = None
        self.power = 1
        self.steps = 0

    def seen(self, token):
        """Return True when `token` was seen before; otherwise record it and return False."""
        if token == self.checkpoint or token in self.recent:
            return True
        self.recent.append(token)
        self.steps += 1
        if self.steps == self.power:
            self.checkpoint = token
            self.power *= 2
            self.steps = 0
        return False


def _keep_timestamp_text(value):
    return value


def _error_code(exc):
    return str(exc.response.get("Error", {}).get("Code", ""))


def _full_object_digest(head, field, digest_size):
    """Return the hex digest in the HeadObject `field` (base64), or None when absent or not a full-object checksum."""
    checksum = head.get(field)
    if not checksum:
        return None
    # A multipart upload's composite checksum covers the part checksums,
    # not the object, and ends in "-<number of parts>".
    if head.get("ChecksumType") == "COMPOSITE" or "-" in checksum:
        return None
    try:
        digest = base64.b64decode(checksum, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == digest_size else None


def _sha256_of(head):
    digest = _full_object_digest(head, "ChecksumSHA256", 32)
    if digest:
        return digest
    metadata = {name.lower(): value for name, value in (head.get("Metadata") or {}).items()}
    value = metadata.get("sha256", "").strip()
    if SHA256_HEX.match(value):
        return value.lower()
    return None
