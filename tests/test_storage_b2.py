"""The B2 backend against b2sdk's RawSimulator, an in-memory B2 server that b2sdk ships for tests.

No request leaves the process: the simulator replaces b2sdk's HTTP layer.
"""

import hashlib

import pytest
from b2sdk.v2 import B2Api, B2HttpApiConfig, InMemoryAccountInfo, RawSimulator

from app.storage import StorageError, build_backend
from app.storage.b2 import BackblazeB2Storage

QUOTA_BYTES = 10 * 1024**3


class SimulatedAccount:
    """A B2 account on a RawSimulator, with a master key, and a client API authorized with it."""

    def __init__(self):
        self.admin = B2Api(InMemoryAccountInfo(), api_config=B2HttpApiConfig(_raw_api_class=RawSimulator))
        self.simulator = self.admin.session.raw_api
        self.key_id, self.application_key = self.simulator.create_account()
        self.admin.authorize_account("production", self.key_id, self.application_key)

    def backend_api(self):
        """Return a fresh, unauthorized B2Api on the same simulator, as the backend would build."""
        api = B2Api(InMemoryAccountInfo(), api_config=B2HttpApiConfig(_raw_api_class=RawSimulator))
        api.session.raw_api = self.simulator
        return api

    def backend(self, bucket, key_id=None, application_key=None, page_size=1000):
        return BackblazeB2Storage(
            "offsite-b2", bucket,
            key_id=key_id or self.key_id,
            application_key=application_key or self.application_key,
            quota_bytes=QUOTA_BYTES,
            api=self.backend_api(),
            page_size=page_size,
        )


@pytest.fixture
def account():
    return SimulatedAccount()


def test_empty_bucket(account):
    account.admin.create_bucket("backups", "allPrivate")
    usage = account.backend("backups").get_storage_usage()
    assert usage.object_count == 0
    assert usage.used_bytes == 0
    assert usage.capacity_bytes == QUOTA_BYTES
    assert usage.backup_bytes is None
    assert usage.measured_at.utcoffset().total_seconds() == 0


def test_one_file(account):
    bucket = account.admin.create_bucket("backups", "allPrivate")
    bucket.upload_bytes(b"x" * 321, "db/2026-01-01.dump")
    usage = account.backend("backups").get_storage_usage()
    assert usage.object_count == 1
    assert usage.used_bytes == 321


@pytest.mark.parametrize("page_size", [1, 7, 1000])
def test_many_files_across_pages(account, page_size):
    bucket = account.admin.create_bucket("backups", "allPrivate")
    for number in range(60):
        bucket.upload_bytes(b"x" * number, f"daily/{number:03d}.dump")
    usage = account.backend("backups", page_size=page_size).get_storage_usage()
    assert usage.object_count == 60
    assert usage.used_bytes == sum(range(60))


def test_counts_older_and_hidden_versions(account):
    bucket = account.admin.create_bucket("backups", "allPrivate")
    bucket.upload_bytes(b"a" * 100, "db.dump")
    bucket.upload_bytes(b"a" * 150, "db.dump")
    bucket.upload_bytes(b"b" * 40, "files.tar")
    bucket.hide_file("files.tar")
    bucket.upload_bytes(b"c" * 7, "notes.txt")

    usage = account.backend("backups", page_size=2).get_storage_usage()
    # Stored versions: db.dump twice, files.tar once (hidden, still stored),
    # notes.txt once. The hide marker itself is not counted.
    assert usage.object_count == 4
    assert usage.used_bytes == 100 + 150 + 40 + 7


def test_unfinished_large_file_not_counted(account):
    bucket = account.admin.create_bucket("backups", "allPrivate")
    bucket.upload_bytes(b"x" * 10, "small.bin")
    account.admin.services.large_file.start_large_file(bucket.id_, "big.bin")
    usage = account.backend("backups").get_storage_usage()
    assert usage.object_count == 1
    assert usage.used_bytes == 10


def test_missing_bucket(account):
    account.admin.create_bucket("backups", "allPrivate")
    with pytest.raises(StorageError) as caught:
        account.backend("no-such-bucket").get_storage_usage()
    assert caught.value.reason == StorageError.REASON_NOT_FOUND
    assert "'no-such-bucket'" in str(caught.value)
    assert "'offsite-b2'" in str(caught.value)


def test_wrong_application_key(account):
    account.admin.create_bucket("backups", "allPrivate")
    with pytest.raises(StorageError) as caught:
        account.backend("backups", application_key="wrong-secret-key").get_storage_usage()
    assert caught.value.reason == StorageError.REASON_CREDENTIALS
    assert "wrong-secret-key" not in str(caught.value)
    assert account.application_key not in str(caught.value)


def test_unknown_key_id(account):
    account.admin.create_bucket("backups", "allPrivate")
    with pytest.raises(StorageError) as caught:
        account.backend("backups", key_id="no-such-key-id").get_object("db.dump")
    assert caught.value.reason == StorageError.REASON_CREDENTIALS


def test_key_without_list_capability(account):
    account.admin.create_bucket("backups", "allPrivate")
    key = account.admin.create_key(["readFiles", "listBuckets"], "no-list")
    backend = account.backend("backups", key_id=key.id_, application_key=key.application_key)
    with pytest.raises(StorageError) as caught:
        backend.get_storage_usage()
    assert caught.value.reason == StorageError.REASON_CREDENTIALS
    assert key.application_key not in str(caught.value)


def test_key_restricted_to_other_bucket(account):
    account.admin.create_bucket("backups", "allPrivate")
    other = account.admin.create_bucket("other", "allPrivate")
    key = account.admin.create_key(["listFiles", "listBuckets", "readFiles"], "other-only", bucket_id=other.id_)
    backend = account.backend("backups", key_id=key.id_, application_key=key.application_key)
    with pytest.raises(StorageError) as caught:
        backend.get_storage_usage()
    assert caught.value.reason == StorageError.REASON_CREDENTIALS


def test_get_object_sha1_and_sha256(account):
    bucket = account.admin.create_bucket("backups", "allPrivate")
    body = b"nightly database dump\n" * 50
    sha256 = hashlib.sha256(body).hexdigest()
    bucket.upload_bytes(body, "db/2026-01-01.dump", file_info={"sha256": sha256.upper()})
    info = account.backend("backups").get_object("db/2026-01-01.dump")
    assert info.key == "db/2026-01-01.dump"
    assert info.size == len(body)
    assert info.sha1 == hashlib.sha1(body).hexdigest()
    assert info.sha256 == sha256


def test_get_object_without_sha256(account):
    bucket = account.admin.create_bucket("backups", "allPrivate")
    bucket.upload_bytes(b"plain", "plain.bin")
    bucket.upload_bytes(b"bad", "bad.bin", file_info={"sha256": "not-a-digest"})
    backend = account.backend("backups")
    assert backend.get_object("plain.bin").sha256 is None
    assert backend.get_object("bad.bin").sha256 is None
    assert backend.get_object("plain.bin").sha1 == hashlib.sha1(b"plain").hexdigest()


def test_get_object_large_file_sha1(account):
    bucket = account.admin.create_bucket("backups", "allPrivate")
    # Above the simulator's 200-byte part size, so b2sdk uploads it as a large
    # file, whose contentSha1 is "none".
    body = bytes(range(256)) * 10
    bucket.upload_bytes(body, "big.tar", large_file_sha1=hashlib.sha1(body).hexdigest())
    info = account.backend("backups").get_object("big.tar")
    assert info.size == len(body)
    assert info.sha1 == hashlib.sha1(body).hexdigest()


def test_get_object_returns_latest_version(account):
    bucket = account.admin.create_bucket("backups", "allPrivate")
    bucket.upload_bytes(b"old version", "db.dump")
    bucket.upload_bytes(b"new", "db.dump")
    info = account.backend("backups").get_object("db.dump")
    assert info.size == 3
    assert info.sha1 == hashlib.sha1(b"new").hexdigest()


def test_get_object_hidden_is_none(account):
    bucket = account.admin.create_bucket("backups", "allPrivate")
    bucket.upload_bytes(b"gone", "db.dump")
    bucket.hide_file("db.dump")
    assert account.backend("backups").get_object("db.dump") is None


def test_get_object_missing_is_none(account):
    bucket = account.admin.create_bucket("backups", "allPrivate")
    # A longer name with the key as its prefix must not match.
    bucket.upload_bytes(b"x", "db.dump.old")
    backend = account.backend("backups")
    assert backend.get_object("db.dump") is None
    assert backend.get_object("zzz") is None


def test_get_object_missing_bucket(account):
    with pytest.raises(StorageError) as caught:
        account.backend("no-such-bucket").get_object("db.dump")
    assert caught.value.reason == StorageError.REASON_NOT_FOUND


def test_factory_reads_app_config(app, monkeypatch):
    monkeypatch.setitem(app.config, "B2_ACCESS_KEY_ID", "b2-key-id")
    monkeypatch.setitem(app.config, "B2_SECRET_ACCESS_KEY", "b2-secret")
    with app.app_context():
        backend = build_backend("b2", "offsite-b2", {
            "path": None, "bucket": "backups", "limit_bytes": None, "quota_bytes": QUOTA_BYTES,
        })
    assert isinstance(backend, BackblazeB2Storage)
    assert backend.kind == "b2"
    assert backend.bucket == "backups"
    assert backend.quota_bytes == QUOTA_BYTES
    assert "b2-secret" not in repr(backend)


def test_factory_missing_credentials():
    config = {"B2_ACCESS_KEY_ID": "b2-key-id", "B2_SECRET_ACCESS_KEY": ""}
    with pytest.raises(StorageError) as caught:
        build_backend("b2", "offsite-b2", {"bucket": "backups"}, config)
    assert caught.value.reason == StorageError.REASON_CONFIGURATION
    assert "B2_SECRET_ACCESS_KEY" in str(caught.value)
