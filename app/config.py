"""Settings read from the environment, with defaults for a local install."""

import os


def _int(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _float(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


class Config:
    """Settings for one process; every value can be overridden by the environment."""

    SECRET_KEY = os.environ.get("SECRET_KEY")
    # None means a SQLite file under the instance folder (see create_app).
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL")
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    REDIS_URL = os.environ.get("REDIS_URL")
    RQ_QUEUE = os.environ.get("BACKWATCH_QUEUE", "backwatch")

    # Public base URL used for links in notifications and printed snippets.
    BASE_URL = os.environ.get("BACKWATCH_BASE_URL", "http://127.0.0.1:5000")

    # Intake limits. The body limit covers the whole request; the log limit
    # is what is kept of the `log` field (its tail).
    HOOK_MAX_BODY_BYTES = _int("BACKWATCH_HOOK_MAX_BODY_BYTES", 1024 * 1024)
    LOG_TAIL_MAX_BYTES = _int("BACKWATCH_LOG_TAIL_MAX_BYTES", 64 * 1024)
    ERROR_MAX_CHARS = _int("BACKWATCH_ERROR_MAX_CHARS", 4000)

    # Check thresholds, as fractions of the baseline mean. Jobs may override
    # the window and minimum sample count.
    SIZE_WARNING_DEVIATION = _float("BACKWATCH_SIZE_WARNING_DEVIATION", 0.20)
    SIZE_CRITICAL_DEVIATION = _float("BACKWATCH_SIZE_CRITICAL_DEVIATION", 0.50)
    DURATION_WARNING_INCREASE = _float("BACKWATCH_DURATION_WARNING_INCREASE", 0.50)
    DURATION_CRITICAL_INCREASE = _float("BACKWATCH_DURATION_CRITICAL_INCREASE", 1.00)
    BASELINE_WINDOW = _int("BACKWATCH_BASELINE_WINDOW", 10)
    BASELINE_MIN_SAMPLES = _int("BACKWATCH_BASELINE_MIN_SAMPLES", 3)

    # Missed backups: the grace period after an expected run, and how long a
    # started run may go without finishing. Jobs may override both.
    MISSED_GRACE_SECONDS = _int("BACKWATCH_MISSED_GRACE_SECONDS", 3600)
    MAX_RUN_SECONDS = _int("BACKWATCH_MAX_RUN_SECONDS", 24 * 3600)

    # Alert lifecycle: reminders for ACTIVE alerts (0 turns them off), and
    # how long resolved alerts are kept.
    ALERT_REMINDER_HOURS = _float("BACKWATCH_ALERT_REMINDER_HOURS", 24.0)
    ALERT_RETENTION_DAYS = _int("BACKWATCH_ALERT_RETENTION_DAYS", 30)

    # Daily tasks run at these local times (HH:MM) in TIMEZONE, an IANA name.
    TIMEZONE = os.environ.get("BACKWATCH_TIMEZONE", "UTC")
    CLEANUP_AT = os.environ.get("BACKWATCH_CLEANUP_AT", "05:00")
    DIGEST_AT = os.environ.get("BACKWATCH_DIGEST_AT", "08:00")

    # Runs stored but not checked after this many seconds are enqueued again.
    SWEEP_AFTER_SECONDS = _int("BACKWATCH_SWEEP_AFTER_SECONDS", 60)
    # A Redis that does not respond quickly must not hold up a hook request.
    REDIS_SOCKET_TIMEOUT = _float("BACKWATCH_REDIS_SOCKET_TIMEOUT", 2.0)

    # Email (Flask-Mail settings) and delivery retries.
    MAIL_SERVER = os.environ.get("MAIL_SERVER", "localhost")
    MAIL_PORT = _int("MAIL_PORT", 25)
    MAIL_USE_TLS = os.environ.get("MAIL_USE_TLS", "").lower() in ("1", "true", "yes")
    MAIL_USE_SSL = os.environ.get("MAIL_USE_SSL", "").lower() in ("1", "true", "yes")
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME")
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD")
    MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "Backwatch <backwatch@localhost>")
    MAIL_TIMEOUT_SECONDS = _float("MAIL_TIMEOUT_SECONDS", 30.0)
    # The name sent in EHLO; None means the machine's fully qualified name.
    MAIL_LOCAL_HOSTNAME = os.environ.get("MAIL_LOCAL_HOSTNAME")
    # How many pending emails of one event share one SMTP connection.
    MAIL_BATCH_SIZE = _int("BACKWATCH_MAIL_BATCH_SIZE", 100)
    BACKUP_ALERT_WEBHOOK_URL = os.environ.get("BACKUP_ALERT_WEBHOOK_URL")
    BACKUP_ALERT_WEBHOOK_SECRET = os.environ.get("BACKUP_ALERT_WEBHOOK_SECRET")
    BACKUP_ALERT_WEBHOOK_FORMAT = os.environ.get("BACKUP_ALERT_WEBHOOK_FORMAT", "backwatch")
    # Attempts per delivery, and the backoff between them: base * 2**(attempt-1), capped.
    # A delivery claimed longer ago than this belongs to a worker that died
    # (a batch of emails renews its claims every 15 s while it sends), and
    # goes back to pending. Keep it above the longest single send.
    DELIVERY_CLAIM_TIMEOUT_SECONDS = _int("BACKWATCH_DELIVERY_CLAIM_TIMEOUT_SECONDS", 60)
    DELIVERY_MAX_ATTEMPTS = _int("BACKWATCH_DELIVERY_MAX_ATTEMPTS", 8)
    DELIVERY_BACKOFF_BASE_SECONDS = _float("BACKWATCH_DELIVERY_BACKOFF_BASE_SECONDS", 30.0)
    DELIVERY_BACKOFF_MAX_SECONDS = _float("BACKWATCH_DELIVERY_BACKOFF_MAX_SECONDS", 3600.0)

    # Outbound HTTP (webhooks). Hosts that resolve to private, loopback,
    # link-local or other non-public addresses are rejected unless the address
    # is inside one of these comma-separated CIDRs, for example
    # "10.20.0.0/16,fd12:3456::/48". A cloud metadata address needs an entry
    # for that single address. The timeout, in seconds, bounds the connection
    # and each wait for response data.
    WEBHOOK_ALLOWED_NETWORKS = os.environ.get("BACKWATCH_WEBHOOK_ALLOWED_NETWORKS", "")
    WEBHOOK_TIMEOUT_SECONDS = _float("BACKWATCH_WEBHOOK_TIMEOUT_SECONDS", 10.0)

    # GET /metrics (Prometheus) is closed until one of these is set, and either
    # one is enough to pass: a bearer token that the scraper sends, or
    # comma-separated CIDRs matched against the client address. That address is
    # request.remote_addr, so behind a reverse proxy it is the proxy's address.
    METRICS_TOKEN = os.environ.get("BACKWATCH_METRICS_TOKEN") or None
    METRICS_ALLOWED_NETWORKS = os.environ.get("BACKWATCH_METRICS_ALLOWED_NETWORKS", "")

    # SMS through Twilio. The auth token is a secret and is never logged.
    TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID")
    TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN")
    # The sender, in E.164 form such as "+15017122661".
    TWILIO_FROM_NUMBER = os.environ.get("TWILIO_FROM_NUMBER")
    # Replaces https://api.twilio.com when set, for example with a local test server.
    TWILIO_API_BASE_URL = os.environ.get("TWILIO_API_BASE_URL") or None
    # Seconds, applied as the connect timeout and again as the response (read) timeout.
    TWILIO_TIMEOUT_SECONDS = _float("BACKWATCH_TWILIO_TIMEOUT_SECONDS", 10.0)

    # Storage credentials (secrets, never logged or stored in the database).
    # Cloudflare R2: the bucket is at https://<R2_ACCOUNT_ID>.r2.cloudflarestorage.com
    # unless R2_ENDPOINT_URL replaces it, for example with a local test server.
    R2_ACCOUNT_ID = os.environ.get("R2_ACCOUNT_ID")
    R2_ACCESS_KEY_ID = os.environ.get("R2_ACCESS_KEY_ID")
    R2_SECRET_ACCESS_KEY = os.environ.get("R2_SECRET_ACCESS_KEY")
    R2_ENDPOINT_URL = os.environ.get("R2_ENDPOINT_URL") or None
    # Backblaze B2: the application key ID and the application key. The native
    # API finds the account's region itself, so B2_REGION is not used by the
    # B2 backend; it is kept for S3-compatible tools (s3.<region>.backblazeb2.com).
    B2_ACCESS_KEY_ID = os.environ.get("B2_ACCESS_KEY_ID")
    B2_SECRET_ACCESS_KEY = os.environ.get("B2_SECRET_ACCESS_KEY")
    B2_REGION = os.environ.get("B2_REGION")
    # Buckets defined by the environment (app.storage.backends_from_settings),
    # and their quotas in bytes.
    R2_BUCKET_NAME = os.environ.get("R2_BUCKET_NAME")
    R2_QUOTA_BYTES = _int("R2_QUOTA_BYTES", None)
    B2_BUCKET_NAME = os.environ.get("B2_BUCKET_NAME")
    B2_QUOTA_BYTES = _int("B2_QUOTA_BYTES", None)

    # Storage capacity: percent thresholds (per backend overridable) and the forecast.
    STORAGE_WARNING_PERCENT = _float("BACKWATCH_STORAGE_WARNING_PERCENT", 80.0)
    STORAGE_CRITICAL_PERCENT = _float("BACKWATCH_STORAGE_CRITICAL_PERCENT", 90.0)
    STORAGE_FORECAST_HISTORY_DAYS = _int("BACKWATCH_STORAGE_FORECAST_HISTORY_DAYS", 14)
    STORAGE_FORECAST_WARNING_DAYS = _int("BACKWATCH_STORAGE_FORECAST_WARNING_DAYS", 14)

    API_MAX_PER_PAGE = 200
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    # A login session ends this many seconds after its last request. The
    # cookie is Secure when BASE_URL is https:// (see create_app).
    PERMANENT_SESSION_LIFETIME = _int("BACKWATCH_SESSION_SECONDS", 12 * 3600)
    # CSRF tokens stay valid as long as the session, so a console page left
    # open for hours can still post.
    WTF_CSRF_TIME_LIMIT = None
