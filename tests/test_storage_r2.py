"""The R2 backend against moto's S3-compatible server on 127.0.0.1.

moto accepts any credentials until its IAM checks are switched on, which the
credential tests do through moto's /moto-api/reset-auth endpoint. Buckets of
1,000 objects and more are filled through moto's in-process backend API,
because put_object over HTTP ran at about 100 objects per second on a
2-core machine. Every listing still goes over HTTP.
"""

import base64
import hashlib
import socket
import time

import boto3
import pytest
import requests
from botocore.stub import Stubber
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

from app.storage import StorageError, backends_from_settings, build_backend
from app.storage.b2 import BackblazeB2Storage
from app.storage.r2 import CloudflareR2Storage, build_s3_client

SECRET = "test-secret-key-do-not-print"
QUOTA_BYTES = 10 * 1024**3
# Object counts of the shared buckets. The HTTP-filled ones come first.
HTTP_FILLED_COUNTS = (0, 1, 20)
BACKEND_FILLED_COUNTS = (1000, 1001, 2500)
ODD_KEYS = ("a b.txt", "ü/ß.dump", "plus+sign", "percent%20", "tab\tkey", "dir/")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def object_size(number):
    return number % 10


def admin_client(url):
    """A client for setting up buckets; moto needs a real region name to create one."""
    return boto3.session.Session().client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="admin", aws_secret_access_key="admin",
    )


def r2(url, bucket, page_size=1000, **overrides):
    fields = dict(account_id="test-account", access_key_id="test-key-id", secret_access_key=SECRET,
                  quota_bytes=QUOTA_BYTES, endpoint_url=url, page_size=page_size)
    fields.update(overrides)
    return CloudflareR2Storage("offsite", bucket, **fields)


def record_calls(backend, operation):
    """Return a list that receives the parameters of every `operation` call the backend's client makes."""
    calls = []
    backend.client.meta.events.register(
        f"provide-client-params.s3.{operation}", lambda params, **kwargs: calls.append(dict(params))
    )
    return calls


@pytest.fixture(scope="session")
def s3_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def buckets(s3_url):
    """Return {object count: (bucket name, total bytes)} for buckets filled once per session."""
    client = admin_client(s3_url)
    moto_s3 = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    filled = {}
    for count in HTTP_FILLED_COUNTS + BACKEND_FILLED_COUNTS:
        name = f"objects-{count}"
        client.create_bucket(Bucket=name)
        for number in range(count):
            key = f"daily/{number:06d}.dump"
            body = b"x" * object_size(number)
            if count in HTTP_FILLED_COUNTS:
                client.put_object(Bucket=name, Key=key, Body=body)
            else:
                moto_s3.put_object(name, key, body)
        filled[count] = (name, sum(object_size(number) for number in range(count)))
    return filled


@pytest.mark.parametrize("count,page_size,requests_expected", [
    (0, 1000, 1),
    (1, 1000, 1),
    (1000, 1000, 1),
    (1001, 1000, 2),
    (2500, 1000, 3),
    (0, 7, 1),
    (1, 7, 1),
    (20, 7, 3),
    (1000, 7, 143),
    (1001, 7, 143),
    (0, 1, 1),
    (1, 1, 1),
    (20, 1, 20),
])
def test_usage_counts_every_page(s3_url, buckets, count, page_size, requests_expected):
    bucket, total_bytes = buckets[count]
    backend = r2(s3_url, bucket, page_size=page_size)
    calls = record_calls(backend, "ListObjectsV2")
    usage = backend.get_storage_usage()
    assert usage.object_count == count
    assert usage.used_bytes == total_bytes
    assert usage.capacity_bytes == QUOTA_BYTES
    assert usage.backup_bytes is None
    assert usage.measured_at.utcoffset().total_seconds() == 0
    assert len(calls) == requests_expected
    assert all(call["MaxKeys"] == page_size for call in calls)
    assert "ContinuationToken" not in calls[0]
    assert all(call.get("ContinuationToken") for call in calls[1:])


def test_usage_odd_key_names(s3_url):
    client = admin_client(s3_url)
    client.create_bucket(Bucket="odd-names")
    for key in ODD_KEYS:
        client.put_object(Bucket="odd-names", Key=key, Body=b"12345")
    usage = r2(s3_url, "odd-names", page_size=2).get_storage_usage()
    assert usage.object_count == len(ODD_KEYS)
    assert usage.used_bytes == 5 * len(ODD_KEYS)


def test_usage_without_quota(s3_url, buckets):
    bucket, _ = buckets[1]
    assert r2(s3_url, bucket, quota_bytes=None).get_storage_usage().capacity_bytes is None


def test_usage_missing_bucket(s3_url):
    with pytest.raises(StorageError) as caught:
        r2(s3_url, "no-such-bucket").get_storage_usage()
    assert caught.value.reason == StorageError.REASON_NOT_FOUND
    assert "'offsite'" in str(caught.value)
    assert "'no-such-bucket'" in str(caught.value)
    assert "does not exist" in str(caught.value)


@pytest.fixture
def moto_iam_checks(s3_url):
    """Switch on moto's credential and permission checks for one test."""
    response = requests.post(f"{s3_url}/moto-api/reset-auth", data=b"0", timeout=10)
    assert response.status_code == 200
    yield
    requests.post(f"{s3_url}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()


@pytest.fixture
def iam_access_key(s3_url):
    """Create an IAM user without any policy on moto; return its access key."""
    iam = boto3.session.Session().client(
        "iam", endpoint_url=s3_url, region_name="us-east-1",
        aws_access_key_id="admin", aws_secret_access_key="admin",
    )
    user_name = f"backwatch-{time.monotonic_ns()}"
    iam.create_user(UserName=user_name)
    return iam.create_access_key(UserName=user_name)["AccessKey"]


def test_unknown_access_key(s3_url, buckets, moto_iam_checks):
    bucket, _ = buckets[1]
    with pytest.raises(StorageError) as caught:
        r2(s3_url, bucket, access_key_id="unknown-key-id").get_storage_usage()
    assert caught.value.reason == StorageError.REASON_CREDENTIALS
    assert "InvalidAccessKeyId" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_wrong_secret(s3_url, buckets, iam_access_key, moto_iam_checks):
    bucket, _ = buckets[1]
    backend = r2(s3_url, bucket, access_key_id=iam_access_key["AccessKeyId"])
    with pytest.raises(StorageError) as caught:
        backend.get_storage_usage()
    assert caught.value.reason == StorageError.REASON_CREDENTIALS
    assert "SignatureDoesNotMatch" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_key_without_permission(s3_url, buckets, iam_access_key, moto_iam_checks):
    bucket, _ = buckets[1]
    secret = iam_access_key["SecretAccessKey"]
    backend = r2(s3_url, bucket, access_key_id=iam_access_key["AccessKeyId"], secret_access_key=secret)
    with pytest.raises(StorageError) as caught:
        backend.get_storage_usage()
    assert caught.value.reason == StorageError.REASON_CREDENTIALS
    assert "AccessDenied" in str(caught.value)
    assert secret not in str(caught.value)


def test_head_with_bad_credentials(s3_url, buckets, moto_iam_checks):
    bucket, _ = buckets[1]
    with pytest.raises(StorageError) as caught:
        r2(s3_url, bucket, access_key_id="unknown-key-id").get_object("daily/000000.dump")
    assert caught.value.reason == StorageError.REASON_CREDENTIALS


def test_connection_refused(s3_url):
    closed_url = f"http://127.0.0.1:{_free_port()}"
    backend = r2(closed_url, "backups")
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        backend.get_storage_usage()
    assert caught.value.reason == StorageError.REASON_CONNECTION
    assert "127.0.0.1" in str(caught.value)
    # Three attempts with botocore's jittered backoff, not an endless retry.
    assert time.monotonic() - started < 30


def test_read_timeout():
    # A listening socket that never accepts: the kernel completes the TCP
    # handshake, and the request then waits for a response that never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = build_s3_client(url, "test-key-id", SECRET, connect_timeout=1, read_timeout=0.5, max_attempts=1)
        backend = r2(url, "backups", client=client)
        with pytest.raises(StorageError) as caught:
            backend.get_storage_usage()
    assert caught.value.reason == StorageError.REASON_TIMEOUT
    assert "timed out" in str(caught.value)


def test_client_defaults():
    backend = CloudflareR2Storage("offsite", "backups", "0123abcd", "test-key-id", SECRET, QUOTA_BYTES)
    config = backend.client.meta.config
    assert backend.client.meta.endpoint_url == "https://0123abcd.r2.cloudflarestorage.com"
    assert backend.client.meta.region_name == "auto"
    assert config.connect_timeout == 10
    assert config.read_timeout == 10
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_client_keeps_timestamp_text(s3_url, buckets):
    bucket, _ = buckets[1]
    client = build_s3_client(s3_url, "test-key-id", SECRET)
    [item] = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert isinstance(item["LastModified"], str)
    assert item["Size"] == 0


def test_invalid_page_size_rejected(s3_url):
    with pytest.raises(ValueError):
        r2(s3_url, "backups", page_size=0)
    with pytest.raises(ValueError):
        r2(s3_url, "backups", page_size=1001)


# botocore's Stubber on a real client: moto always fills a page up to
# MaxKeys and always sends a token with a truncated page, so these server
# replies cannot be produced by a local server.

def stubbed_backend(page_size=1000):
    client = build_s3_client("http://127.0.0.1:1", "test-key-id", SECRET)
    backend = r2("http://127.0.0.1:1", "backups", page_size=page_size, client=client)
    return backend, Stubber(client)


def listing_page(sizes, truncated, token=None):
    page = {
        "Contents": [{"Key": f"k{size}-{index}", "Size": size} for index, size in enumerate(sizes)],
        "IsTruncated": truncated,
        "KeyCount": len(sizes),
    }
    if token is not None:
        page["NextContinuationToken"] = token
    return page


def test_short_pages_continue():
    backend, stubber = stubbed_backend(page_size=1000)
    stubber.add_response("list_objects_v2", listing_page([10, 20], True, "t1"),
                         {"Bucket": "backups", "MaxKeys": 1000})
    stubber.add_response("list_objects_v2", listing_page([], True, "t2"),
                         {"Bucket": "backups", "MaxKeys": 1000, "ContinuationToken": "t1"})
    stubber.add_response("list_objects_v2", listing_page([5], False),
                         {"Bucket": "backups", "MaxKeys": 1000, "ContinuationToken": "t2"})
    with stubber:
        usage = backend.get_storage_usage()
    stubber.assert_no_pending_responses()
    assert usage.object_count == 3
    assert usage.used_bytes == 35


def test_truncated_page_without_token():
    backend, stubber = stubbed_backend()
    stubber.add_response("list_objects_v2", listing_page([1, 2], True))
    with stubber, pytest.raises(StorageError) as caught:
        backend.get_storage_usage()
    assert caught.value.reason == StorageError.REASON_INVALID_RESPONSE
    assert "NextContinuationToken" in str(caught.value)


def test_repeated_token_stops():
    backend, stubber = stubbed_backend()
    stubber.add_response("list_objects_v2", listing_page([1], True, "t1"))
    stubber.add_response("list_objects_v2", listing_page([1], True, "t1"))
    with stubber, pytest.raises(StorageError) as caught:
        backend.get_storage_usage()
    stubber.assert_no_pending_responses()
    assert caught.value.reason == StorageError.REASON_INVALID_RESPONSE
    assert "already used" in str(caught.value)


def token_sequence_stops_after(tokens):
    """Serve truncated pages with `tokens` in order; return the pages requested before the StorageError."""
    backend, stubber = stubbed_backend()
    calls = record_calls(backend, "ListObjectsV2")
    for token in tokens:
        stubber.add_response("list_objects_v2", listing_page([1], True, token))
    with stubber, pytest.raises(StorageError) as caught:
        backend.get_storage_usage()
    assert caught.value.reason == StorageError.REASON_INVALID_RESPONSE
    return len(calls)


def test_short_token_cycle_stops():
    prefix = [f"start-{index}" for index in range(500)]
    cycle = ["t1", "t2", "t3"]
    pages = token_sequence_stops_after(prefix + cycle * 10)
    # The recent-token check finds it when "t1" first comes back.
    assert pages == 500 + 3 + 1


def test_long_token_cycle_stops():
    prefix = [f"start-{index}" for index in range(10)]
    cycle = [f"t{index}" for index in range(100)]
    pages = token_sequence_stops_after(prefix + cycle * 5)
    # Longer than the recent-token window, so Brent's check finds it.
    assert pages <= 10 + 3 * 100 + 1


def test_composite_checksum_ignored():
    backend, stubber = stubbed_backend()
    stubber.add_response("head_object", {
        "ContentLength": 10,
        "ChecksumSHA256": base64.b64encode(b"p" * 32).decode() + "-3",
        "ChecksumType": "COMPOSITE",
        "Metadata": {},
    }, {"Bucket": "backups", "Key": "big.tar", "ChecksumMode": "ENABLED"})
    with stubber:
        info = backend.get_object("big.tar")
    assert info.size == 10
    assert info.sha256 is None


def test_composite_checksum_falls_back_to_metadata():
    backend, stubber = stubbed_backend()
    digest = hashlib.sha256(b"big").hexdigest()
    stubber.add_response("head_object", {
        "ContentLength": 3,
        "ChecksumSHA256": base64.b64encode(b"p" * 32).decode() + "-2",
        "Metadata": {"sha256": digest},
    })
    with stubber:
        info = backend.get_object("big.tar")
    assert info.sha256 == digest


def test_get_object_checksum_sha1(s3_url):
    client = admin_client(s3_url)
    client.create_bucket(Bucket="checksums-sha1")
    body = b"weekly files archive\n" * 10
    client.put_object(Bucket="checksums-sha1", Key="files.tar", Body=body, ChecksumAlgorithm="SHA1")
    info = r2(s3_url, "checksums-sha1").get_object("files.tar")
    assert info.sha1 == hashlib.sha1(body).hexdigest()
    assert info.sha256 is None


def test_get_object_checksum_sha256(s3_url):
    client = admin_client(s3_url)
    client.create_bucket(Bucket="checksums")
    body = b"nightly database dump\n" * 100
    client.put_object(Bucket="checksums", Key="db/2026-01-01.dump", Body=body, ChecksumAlgorithm="SHA256")
    info = r2(s3_url, "checksums").get_object("db/2026-01-01.dump")
    assert info.key == "db/2026-01-01.dump"
    assert info.size == len(body)
    assert info.sha256 == hashlib.sha256(body).hexdigest()
    assert info.sha1 is None


def test_get_object_metadata_sha256(s3_url):
    client = admin_client(s3_url)
    client.create_bucket(Bucket="metadata-sha")
    body = b"files archive"
    digest = hashlib.sha256(body).hexdigest()
    client.put_object(Bucket="metadata-sha", Key="files.tar", Body=body, Metadata={"sha256": digest.upper()})
    client.put_object(Bucket="metadata-sha", Key="plain.tar", Body=body)
    client.put_object(Bucket="metadata-sha", Key="bad.tar", Body=body, Metadata={"sha256": "not-a-digest"})
    backend = r2(s3_url, "metadata-sha")
    assert backend.get_object("files.tar").sha256 == digest
    assert backend.get_object("plain.tar").sha256 is None
    assert backend.get_object("bad.tar").sha256 is None
    assert backend.get_object("plain.tar").size == len(body)


def test_get_object_missing_is_none(s3_url, buckets):
    bucket, _ = buckets[20]
    assert r2(s3_url, bucket).get_object("daily/missing.dump") is None


def test_get_object_missing_bucket(s3_url):
    with pytest.raises(StorageError) as caught:
        r2(s3_url, "no-such-bucket").get_object("db.dump")
    assert caught.value.reason == StorageError.REASON_NOT_FOUND


def test_get_object_connection_refused():
    client = build_s3_client(f"http://127.0.0.1:{_free_port()}", "test-key-id", SECRET, max_attempts=1)
    with pytest.raises(StorageError) as caught:
        r2("http://127.0.0.1:1", "backups", client=client).get_object("db.dump")
    assert caught.value.reason == StorageError.REASON_CONNECTION


def r2_config(s3_url, **overrides):
    config = {
        "R2_ACCOUNT_ID": "test-account",
        "R2_ACCESS_KEY_ID": "test-key-id",
        "R2_SECRET_ACCESS_KEY": SECRET,
        "R2_ENDPOINT_URL": s3_url,
    }
    config.update(overrides)
    return config


def test_factory_reads_app_config(app, s3_url, buckets, monkeypatch):
    bucket, total_bytes = buckets[1001]
    for name, value in r2_config(s3_url).items():
        monkeypatch.setitem(app.config, name, value)
    with app.app_context():
        backend = build_backend("r2", "offsite", {
            "path": None, "bucket": bucket, "limit_bytes": 5, "quota_bytes": QUOTA_BYTES,
        })
    assert isinstance(backend, CloudflareR2Storage)
    usage = backend.get_storage_usage()
    assert usage.object_count == 1001
    assert usage.used_bytes == total_bytes
    assert usage.capacity_bytes == QUOTA_BYTES


def test_factory_missing_credentials(s3_url):
    config = r2_config(s3_url, R2_SECRET_ACCESS_KEY=None, R2_ENDPOINT_URL=None, R2_ACCOUNT_ID="")
    with pytest.raises(StorageError) as caught:
        build_backend("r2", "offsite", {"bucket": "backups"}, config)
    assert caught.value.reason == StorageError.REASON_CONFIGURATION
    assert "R2_ACCOUNT_ID" in str(caught.value)
    assert "R2_SECRET_ACCESS_KEY" in str(caught.value)
    assert "R2_ACCESS_KEY_ID" not in str(caught.value)


def test_factory_requires_bucket(s3_url):
    with pytest.raises(StorageError) as caught:
        build_backend("r2", "offsite", {"bucket": None, "quota_bytes": 5}, r2_config(s3_url))
    assert caught.value.reason == StorageError.REASON_CONFIGURATION


def test_backends_from_settings(s3_url, buckets):
    bucket, _ = buckets[20]
    config = r2_config(
        s3_url,
        R2_BUCKET_NAME=bucket, R2_QUOTA_BYTES=1000,
        B2_BUCKET_NAME="offsite-b2", B2_QUOTA_BYTES=2000,
        B2_ACCESS_KEY_ID="b2-key-id", B2_SECRET_ACCESS_KEY=SECRET,
    )
    r2_backend, b2_backend = backends_from_settings(config)
    assert isinstance(r2_backend, CloudflareR2Storage)
    assert (r2_backend.name, r2_backend.bucket, r2_backend.quota_bytes) == ("r2", bucket, 1000)
    assert isinstance(b2_backend, BackblazeB2Storage)
    assert (b2_backend.name, b2_backend.bucket, b2_backend.quota_bytes) == ("b2", "offsite-b2", 2000)
    assert r2_backend.get_storage_usage().object_count == 20


def test_backends_from_settings_none_set(s3_url):
    assert backends_from_settings(r2_config(s3_url)) == []
