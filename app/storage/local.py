"""A backup folder on a local or mounted filesystem."""

import hashlib
import os
import shutil
import stat

from app.storage.base import ObjectInfo, StorageBackend, StorageError, StorageUsage, utc_now

READ_CHUNK_BYTES = 1024 * 1024


class LocalStorage(StorageBackend):
    """A folder measured with shutil.disk_usage and a walk of its files.

    Rule for used and capacity bytes:

    - Without limit_bytes, capacity_bytes is the filesystem's total size and
      used_bytes is the filesystem's used size, so other data on the same
      filesystem counts as used.
    - With limit_bytes, capacity_bytes is the smaller of limit_bytes and the
      filesystem's total size, and used_bytes is the size of the backup
      folder (the same number as backup_bytes). Other data on the filesystem
      is then not counted, even when the filesystem total wins.

    object_count and backup_bytes always describe the folder: regular files
    anywhere under it and the sum of their sizes (st_size, the apparent
    size). The walk does not follow symbolic links and counts neither the
    links nor what they point to.
    """

    kind = "local"

    def __init__(self, name, path, limit_bytes=None):
        super().__init__(name)
        if limit_bytes is not None and limit_bytes <= 0:
            raise ValueError(f"invalid limit_bytes {limit_bytes!r} for local backend {name!r}: expected a positive number of bytes or None")
        self.path = os.fspath(path)
        self.limit_bytes = limit_bytes

    def describe(self):
        return f"{self.name!r} (local folder {self.path!r})"

    def get_storage_usage(self):
        self._check_folder()
        try:
            disk = shutil.disk_usage(self.path)
        except OSError as exc:
            raise self.error(f"reading the filesystem size failed: {exc.strerror or exc}") from exc
        object_count, backup_bytes = self._walk_folder()

        if self.limit_bytes is None:
            capacity_bytes = disk.total
            used_bytes = disk.used
        else:
            capacity_bytes = min(self.limit_bytes, disk.total)
            used_bytes = backup_bytes
        return StorageUsage(
            used_bytes=used_bytes,
            capacity_bytes=capacity_bytes,
            object_count=object_count,
            measured_at=utc_now(),
            backup_bytes=backup_bytes,
        )

    def get_object(self, key):
        """Return the size and SHA-256 of the file `key`, a path relative to the folder.

        Returns None when no regular file has that path. A key that is
        absolute or leads outside the folder, through ".." or a symbolic
        link, raises StorageError with reason "invalid_key".
        """
        self._check_folder()
        file_path = self._resolve_key(key)
        try:
            handle = open(file_path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as exc:
            raise self.error(f"opening {key!r} failed: {exc.strerror or exc}") from exc

        with handle:
            try:
                status = os.fstat(handle.fileno())
                if not stat.S_ISREG(status.st_mode):
                    return None
                digest = hashlib.sha256()
                for chunk in iter(lambda: handle.read(READ_CHUNK_BYTES), b""):
                    digest.update(chunk)
            except OSError as exc:
                raise self.error(f"reading {key!r} failed: {exc.strerror or exc}") from exc
        return ObjectInfo(key=key, size=status.st_size, sha256=digest.hexdigest())

    def _check_folder(self):
        if not os.path.exists(self.path):
            raise self.error("the folder does not exist; create it or correct the path", StorageError.REASON_NOT_FOUND)
        if not os.path.isdir(self.path):
            raise self.error("the path is not a folder; correct the path", StorageError.REASON_NOT_FOUND)

    def _resolve_key(self, key):
        if not key or os.path.isabs(key):
            raise self.error(f"invalid object key {key!r}: expected a path relative to the folder", StorageError.REASON_INVALID_KEY)
        root = os.path.realpath(self.path)
        # realpath resolves ".." and symbolic links, so the check below
        # compares the folder with the file the key really names.
        file_path = os.path.realpath(os.path.join(root, key))
        if file_path == root or os.path.commonpath([root, file_path]) != root:
            raise self.error(f"invalid object key {key!r}: it leads outside the folder", StorageError.REASON_INVALID_KEY)
        return file_path

    def _walk_folder(self):
        """Return (regular files, their total size) under the folder, without following links."""
        object_count = 0
        total_bytes = 0
        pending = [self.path]
        while pending:
            folder = pending.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        count, size = self._measure_entry(entry, pending)
                        object_count += count
                        total_bytes += size
            except FileNotFoundError:
                # Removed during the walk, for example by backup rotation.
                continue
            except OSError as exc:
                raise self.error(f"listing {folder!r} failed: {exc.strerror or exc}") from exc
        return object_count, total_bytes

    def _measure_entry(self, entry, pending):
        """Return (1, size) for a regular file and (0, 0) otherwise; queue subfolders on `pending`."""
        try:
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                return 1, entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self.error(f"reading {entry.path!r} failed: {exc.strerror or exc}") from exc
        return 0, 0
