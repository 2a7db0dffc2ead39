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

    # Runs stored but not checked after this many seconds are enqueued again.
    SWEEP_AFTER_SECONDS = _int("BACKWATCH_SWEEP_AFTER_SECONDS", 60)
    # A Redis that does not respond quickly must not hold up a hook request.
    REDIS_SOCKET_TIMEOUT = _float("BACKWATCH_REDIS_SOCKET_TIMEOUT", 2.0)

    API_MAX_PER_PAGE = 200
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    PERMANENT_SESSION_LIFETIME = _int("BACKWATCH_SESSION_SECONDS", 12 * 3600)
