"""The local folder backend, on real temporary folders."""

import hashlib
import os
import shutil
from datetime import timezone

import pytest

from app.storage import StorageError, build_backend
from app.storage.local import LocalStorage

# Other processes write to the shared disk while a test runs, so the
# filesystem's used bytes are compared within this margin.
DISK_USED_TOLERANCE_BYTES = 256 * 1024 * 1024


@pytest.fixture
def backup_folder(tmp_path):
    """A backup folder with 4 regular files (1,234 bytes in all) and links that must not count."""
    folder = tmp_path / "backups"
    (folder / "daily" / "2026-01-01").mkdir(parents=True)
    (folder / "weekly").mkdir()
    (folder / "empty").mkdir()
    (folder / "daily" / "2026-01-01" / "db.dump").write_bytes(b"d" * 1000)
    (folder / "daily" / "2026-01-01" / "files.tar").write_bytes(b"f" * 200)
    (folder / "weekly" / "db.dump").write_bytes(b"w" * 34)
    (folder / "weekly" / "empty.log").write_bytes(b"")

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"s" * 5000)
    (folder / "link-to-file").symlink_to(outside / "secret.txt")
    (folder / "link-to-folder").symlink_to(outside, target_is_directory=True)
    return folder


def test_usage_without_limit_is_filesystem(backup_folder):
    disk = shutil.disk_usage(backup_folder)
    usage = LocalStorage("local", backup_folder).get_storage_usage()
    assert usage.capacity_bytes == disk.total
    assert abs(usage.used_bytes - disk.used) < DISK_USED_TOLERANCE_BYTES
    assert usage.object_count == 4
    assert usage.backup_bytes == 1234


def test_usage_measured_at_is_aware_utc(backup_folder):
    usage = LocalStorage("local", backup_folder).get_storage_usage()
    assert usage.measured_at.tzinfo is not None
    assert usage.measured_at.utcoffset() == timezone.utc.utcoffset(None)


def test_limit_smaller_than_disk(backup_folder):
    usage = LocalStorage("local", backup_folder, limit_bytes=10_000).get_storage_usage()
    assert usage.capacity_bytes == 10_000
    assert usage.used_bytes == 1234
    assert usage.backup_bytes == 1234
    assert usage.object_count == 4


def test_limit_larger_than_disk(backup_folder):
    disk = shutil.disk_usage(backup_folder)
    usage = LocalStorage("local", backup_folder, limit_bytes=disk.total * 10).get_storage_usage()
    assert usage.capacity_bytes == disk.total
    # The rule does not depend on which capacity wins: with a limit, used is the folder.
    assert usage.used_bytes == 1234


def test_links_not_followed(backup_folder, tmp_path):
    (tmp_path / "outside" / "more.bin").write_bytes(b"m" * 100)
    usage = LocalStorage("local", backup_folder, limit_bytes=10_000).get_storage_usage()
    assert usage.object_count == 4
    assert usage.backup_bytes == 1234


def test_empty_folder(tmp_path):
    usage = LocalStorage("local", tmp_path, limit_bytes=1).get_storage_usage()
    assert usage.object_count == 0
    assert usage.backup_bytes == 0
    assert usage.used_bytes == 0
    assert usage.capacity_bytes == 1


def test_missing_folder_raises(tmp_path):
    backend = LocalStorage("nas", tmp_path / "missing")
    with pytest.raises(StorageError) as caught:
        backend.get_storage_usage()
    assert caught.value.reason == StorageError.REASON_NOT_FOUND
    assert "'nas'" in str(caught.value)
    assert "does not exist" in str(caught.value)


def test_path_to_file_raises(tmp_path):
    file_path = tmp_path / "file"
    file_path.write_bytes(b"x")
    with pytest.raises(StorageError) as caught:
        LocalStorage("nas", file_path).get_storage_usage()
    assert caught.value.reason == StorageError.REASON_NOT_FOUND
    assert "not a folder" in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_unreadable_subfolder_raises(backup_folder):
    locked = backup_folder / "weekly"
    locked.chmod(0)
    try:
        with pytest.raises(StorageError) as caught:
            LocalStorage("nas", backup_folder).get_storage_usage()
    finally:
        locked.chmod(0o755)
    assert "weekly" in str(caught.value)


def test_invalid_limit_rejected(tmp_path):
    with pytest.raises(ValueError):
        LocalStorage("nas", tmp_path, limit_bytes=0)


def test_get_object_size_and_sha256(tmp_path):
    # Larger than one read chunk, so the digest covers several reads.
    body = os.urandom(2 * 1024 * 1024 + 123)
    (tmp_path / "daily").mkdir()
    (tmp_path / "daily" / "db.dump").write_bytes(body)
    info = LocalStorage("local", tmp_path).get_object("daily/db.dump")
    assert info.key == "daily/db.dump"
    assert info.size == len(body)
    assert info.sha256 == hashlib.sha256(body).hexdigest()
    assert info.sha1 is None


def test_get_object_empty_file(backup_folder):
    info = LocalStorage("local", backup_folder).get_object("weekly/empty.log")
    assert info.size == 0
    assert info.sha256 == hashlib.sha256(b"").hexdigest()


def test_get_object_dotdot_inside_folder(backup_folder):
    info = LocalStorage("local", backup_folder).get_object("daily/../weekly/db.dump")
    assert info.size == 34


def test_get_object_missing_is_none(backup_folder):
    backend = LocalStorage("local", backup_folder)
    assert backend.get_object("daily/missing.dump") is None
    assert backend.get_object("no-such-folder/db.dump") is None
    assert backend.get_object("weekly/db.dump/child") is None


def test_get_object_folder_is_none(backup_folder):
    assert LocalStorage("local", backup_folder).get_object("daily") is None


@pytest.mark.parametrize("key", [
    "../outside/secret.txt",
    "daily/../../outside/secret.txt",
    "..",
    ".",
    "",
    "/etc/passwd",
    "link-to-file",
    "link-to-folder/secret.txt",
])
def test_get_object_escape_rejected(backup_folder, key):
    with pytest.raises(StorageError) as caught:
        LocalStorage("local", backup_folder).get_object(key)
    assert caught.value.reason == StorageError.REASON_INVALID_KEY


def test_get_object_missing_folder_raises(tmp_path):
    with pytest.raises(StorageError) as caught:
        LocalStorage("nas", tmp_path / "missing").get_object("db.dump")
    assert caught.value.reason == StorageError.REASON_NOT_FOUND


def test_factory_builds_local(backup_folder):
    # The same dict shape for every kind: local reads path and limit_bytes only.
    backend = build_backend("local", "nas", {
        "path": str(backup_folder), "bucket": None, "limit_bytes": 5000, "quota_bytes": 5000,
    })
    assert isinstance(backend, LocalStorage)
    assert backend.name == "nas"
    assert backend.kind == "local"
    assert backend.get_storage_usage().capacity_bytes == 5000


def test_factory_requires_path():
    with pytest.raises(StorageError) as caught:
        build_backend("local", "nas", {"path": None, "limit_bytes": None})
    assert caught.value.reason == StorageError.REASON_CONFIGURATION


def test_factory_rejects_unknown_setting(tmp_path):
    with pytest.raises(ValueError, match="limit"):
        build_backend("local", "nas", {"path": str(tmp_path), "limit": 5})


def test_factory_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="s3"):
        build_backend("s3", "nas", {"path": str(tmp_path)})
