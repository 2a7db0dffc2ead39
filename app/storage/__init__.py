"""Storage backends: a local folder, a Cloudflare R2 bucket and a Backblaze B2 bucket.

Each backend has `name`, `kind`, get_storage_usage() -> StorageUsage and
get_object(key) -> ObjectInfo | None, and raises StorageError when it cannot
be read. build_backend builds one from its stored settings, with
credentials taken from the app settings (the environment), never from the
stored settings.
"""

from app.storage.base import ObjectInfo, StorageBackend, StorageError, StorageUsage

__all__ = [
    "BACKEND_SETTINGS",
    "ObjectInfo",
    "StorageBackend",
    "StorageError",
    "StorageUsage",
    "backends_from_settings",
    "build_backend",
]

# Keys that build_backend accepts in `settings`. Each kind reads only its own
# and ignores the others, so a caller may pass the same dict for every kind.
BACKEND_SETTINGS = ("path", "limit_bytes", "bucket", "quota_bytes")


def build_backend(kind, name, settings, config=None):
    """Return the backend of `kind` ("local", "r2" or "b2") named `name`.

    `settings` contains "path" and optionally "limit_bytes" for local, and
    "bucket" and optionally "quota_bytes" for r2 and b2. Credentials come
    from `config`, by default the current Flask app's settings: R2_ACCOUNT_ID,
    R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY and R2_ENDPOINT_URL for r2,
    B2_ACCESS_KEY_ID and B2_SECRET_ACCESS_KEY for b2. Nothing is contacted
    here. Raises ValueError for an unknown kind or setting, and StorageError
    (reason "configuration") when a required setting or credential is missing.
    """
    unknown = sorted(set(settings) - set(BACKEND_SETTINGS))
    if unknown:
        raise ValueError(f"unknown storage settings {unknown} for backend {name!r}: expected some of {list(BACKEND_SETTINGS)}")
    if kind == "local":
        return _build_local(name, settings)
    if kind in ("r2", "b2"):
        if config is None:
            from flask import current_app

            config = current_app.config
        if kind == "r2":
            return _build_r2(name, settings, config)
        return _build_b2(name, settings, config)
    raise ValueError(f"unknown storage backend kind {kind!r} for backend {name!r}: expected local, r2 or b2")


def backends_from_settings(config):
    """Return the backends defined by the environment: "r2" when R2_BUCKET_NAME is set, "b2" when B2_BUCKET_NAME is set.

    Their quotas are R2_QUOTA_BYTES and B2_QUOTA_BYTES (None when unset).
    Missing credentials raise StorageError, as in build_backend.
    """
    backends = []
    if config.get("R2_BUCKET_NAME"):
        backends.append(build_backend("r2", "r2", {
            "bucket": config["R2_BUCKET_NAME"],
            "quota_bytes": config.get("R2_QUOTA_BYTES"),
        }, config))
    if config.get("B2_BUCKET_NAME"):
        backends.append(build_backend("b2", "b2", {
            "bucket": config["B2_BUCKET_NAME"],
            "quota_bytes": config.get("B2_QUOTA_BYTES"),
        }, config))
    return backends


def _build_local(name, settings):
    from app.storage.local import LocalStorage

    path = settings.get("path")
    if not path:
        raise StorageError(f"{name!r} (local)", "no folder path is configured", StorageError.REASON_CONFIGURATION)
    return LocalStorage(name, path, limit_bytes=settings.get("limit_bytes"))


def _build_r2(name, settings, config):
    from app.storage.r2 import CloudflareR2Storage

    bucket = _required_bucket(name, "r2", settings)
    endpoint_url = config.get("R2_ENDPOINT_URL") or None
    required = ["R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"]
    if endpoint_url is None:
        required.insert(0, "R2_ACCOUNT_ID")
    _require_settings(name, "r2", bucket, config, required)
    return CloudflareR2Storage(
        name,
        bucket,
        account_id=config.get("R2_ACCOUNT_ID"),
        access_key_id=config["R2_ACCESS_KEY_ID"],
        secret_access_key=config["R2_SECRET_ACCESS_KEY"],
        quota_bytes=settings.get("quota_bytes"),
        endpoint_url=endpoint_url,
    )


def _build_b2(name, settings, config):
    from app.storage.b2 import BackblazeB2Storage

    bucket = _required_bucket(name, "b2", settings)
    _require_settings(name, "b2", bucket, config, ["B2_ACCESS_KEY_ID", "B2_SECRET_ACCESS_KEY"])
    return BackblazeB2Storage(
        name,
        bucket,
        key_id=config["B2_ACCESS_KEY_ID"],
        application_key=config["B2_SECRET_ACCESS_KEY"],
        quota_bytes=settings.get("quota_bytes"),
    )


def _required_bucket(name, kind, settings):
    bucket = settings.get("bucket")
    if not bucket:
        raise StorageError(f"{name!r} ({kind})", "no bucket name is configured", StorageError.REASON_CONFIGURATION)
    return bucket


def _require_settings(name, kind, bucket, config, names):
    missing = [setting for setting in names if not config.get(setting)]
    if missing:
        raise StorageError(
            f"{name!r} ({kind} bucket {bucket!r})",
            f"missing credentials: set {', '.join(missing)} in the environment",
            StorageError.REASON_CONFIGURATION,
        )
