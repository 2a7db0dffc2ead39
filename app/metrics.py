"""GET /metrics: Prometheus metrics read from the database and Redis at scrape time.

gunicorn runs several web workers and the RQ worker is another process, so
counters kept in process memory would each see only part of the activity.
The collectors below query the shared database and Redis on every scrape
instead, and every web worker returns the same numbers.
"""

import hmac
import ipaddress
import logging

from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy import func

from app.extensions import db
from app.http_client import InvalidSetting, parse_networks
from app.models import Alert, BackupJob, BackupRun, Delivery, Severity, StorageBackend, UsageReading
from app.models.alerts import OPEN_STATUSES
from app.models.jobs import RUN_KINDS, RUN_STATUSES
from app.models.notifications import DELIVERY_CHANNELS, DELIVERY_STATUSES
from app.monitoring.capacity import newest_reading_id
from app.queue import QUEUE_ERRORS, get_queue

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

TOKEN_ENVIRONMENT = "BACKWATCH_METRICS_TOKEN"
NETWORKS_ENVIRONMENT = "BACKWATCH_METRICS_ALLOWED_NETWORKS"


@bp.get("/metrics")
def metrics():
    """Return the metrics in the exposition format that the Accept header selects."""
    rejection = _check_access()
    if rejection is not None:
        return rejection
    # Prometheus requests OpenMetrics in its Accept header, and curl gets the classic text format.
    encoder, content_type = choose_encoder(request.headers.get("Accept"))
    return Response(encoder(REGISTRY), content_type=content_type)


# Access control

def _check_access():
    """Return a rejection response, or None when the request may read the metrics.

    A request passes with the right bearer token or from an allowed network.
    When neither setting is set, every request is rejected.
    """
    token = current_app.config.get("METRICS_TOKEN") or ""
    networks_setting = current_app.config.get("METRICS_ALLOWED_NETWORKS") or ""
    if not token and not networks_setting.strip():
        return _reject(
            403,
            f"Metrics are disabled. Set {TOKEN_ENVIRONMENT} (a bearer token that Prometheus sends) "
            f"or {NETWORKS_ENVIRONMENT} (comma-separated CIDRs of the scrapers) to enable GET /metrics.",
        )

    if token and _bearer_token_matches(token):
        return None

    if networks_setting.strip():
        try:
            networks = parse_networks(networks_setting, NETWORKS_ENVIRONMENT)
        except InvalidSetting as exc:
            log.error("GET /metrics: %s", exc)
            return _reject(503, f"Metrics are unavailable until the setting is fixed: {exc}")
        if address_allowed(request.remote_addr, networks):
            return None

    if token:
        message = f"Missing or invalid bearer token: send 'Authorization: Bearer <{TOKEN_ENVIRONMENT}>'"
        if networks_setting.strip():
            message += f", or scrape from an address in {NETWORKS_ENVIRONMENT}"
        return _reject(401, message + ".", {"WWW-Authenticate": 'Bearer realm="metrics"'})
    return _reject(
        403, f"Address {request.remote_addr} is not in {NETWORKS_ENVIRONMENT}; scrape from an allowed address."
    )


def _bearer_token_matches(expected):
    """Compare the request's bearer token with `expected` in constant time."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8"), expected.encode("utf-8"))


def address_allowed(remote_addr, networks):
    """Return True when `remote_addr` lies in one of `networks`.

    An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d, so
    its IPv4 form is checked too. X-Forwarded-For is ignored because the app
    does not run behind ProxyFix, and any client could send that header.
    """
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        # None or a Unix socket peer: no address to match.
        return False
    candidates = [address]
    if address.version == 6 and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(candidate in network for candidate in candidates for network in networks)


def _reject(status, message, headers=None):
    """Return a plain-text error response: Prometheus shows only its status, curl also the message."""
    if status < 500:
        log.info("GET /metrics from %s: rejected with %s", request.remote_addr, status)
    return Response(message + "\n", status=status, content_type="text/plain; charset=utf-8", headers=headers)


# Collectors

class DatabaseCollector(Collector):
    """Runs, last successes, open alerts, storage use and deliveries, one SQL query each."""

    def collect(self):
        jobs = db.session.execute(
            db.select(BackupJob.id, BackupJob.name, _last_success_subquery().label("last_success"))
        ).all()
        yield _runs_family({job.id: job.name for job in jobs})
        yield _last_success_family(jobs)
        yield _open_alerts_family()
        yield from _storage_families()
        yield _deliveries_family()


def _last_success_subquery():
    """Return the finish time of the job's newest successful backup, as a correlated subquery.

    Per job, this is one seek to the end of the job's (backup, success) range
    in ix_backup_runs_job_kind_status_finished, so its cost grows with the
    number of jobs and not with the number of runs.
    """
    return (
        db.select(func.max(BackupRun.finished_at))
        .where(BackupRun.job_id == BackupJob.id, BackupRun.kind == "backup", BackupRun.status == "success")
        .correlate(BackupJob)
        .scalar_subquery()
    )


def _runs_family(job_names):
    family = CounterMetricFamily(
        "backwatch_runs",
        "Runs reported, by job, kind and status. Runs are deleted only together with their job.",
        labels=["backup_job", "kind", "status"],
    )
    counts = db.session.execute(runs_by_job_query()).all()
    # Every known label combination starts at 0, so that the first failure
    # of a job shows up in increase() instead of appearing as a new series.
    values = {(job_id, kind, status): 0 for job_id in job_names for kind in RUN_KINDS for status in RUN_STATUSES}
    for job_id, kind, status, count in counts:
        values[(job_id, kind, status)] = count
    for (job_id, kind, status), count in values.items():
        # A job created between the two queries is left out until the next scrape.
        if job_id in job_names:
            family.add_metric([job_names[job_id], kind, status], count)
    return family


def runs_by_job_query():
    """Return the query that counts runs per job, kind and status.

    ix_backup_runs_job_kind_status_finished starts with these three columns,
    so SQLite counts from that covering index alone. PostgreSQL 15 chose a
    parallel sequential scan instead. Either way the cost grows with the
    number of runs: about 0.1 s per 1,000,000 runs (docs/METRICS.md).
    """
    return (
        db.select(BackupRun.job_id, BackupRun.kind, BackupRun.status, func.count())
        .group_by(BackupRun.job_id, BackupRun.kind, BackupRun.status)
    )


def _last_success_family(jobs):
    family = GaugeMetricFamily(
        "backwatch_job_last_success_timestamp_seconds",
        "Unix time at which the job's newest successful backup run finished. "
        "Jobs without one are left out.",
        labels=["backup_job"],
    )
    for job in jobs:
        if job.last_success is not None:
            family.add_metric([job.name], job.last_success.timestamp())
    return family


def _open_alerts_family():
    family = GaugeMetricFamily(
        "backwatch_alerts_open",
        "Alerts that are not resolved, by severity and status (ACTIVE or ACKNOWLEDGED).",
        labels=["severity", "status"],
    )
    counts = db.session.execute(
        db.select(Alert.severity, Alert.status, func.count())
        .where(Alert.status.in_(OPEN_STATUSES))
        .group_by(Alert.severity, Alert.status)
    ).all()
    values = {(severity, status): 0 for severity in Severity for status in OPEN_STATUSES}
    for severity, status, count in counts:
        values[(severity, status)] = count
    for (severity, status), count in values.items():
        family.add_metric([severity.name, status], count)
    return family


def _storage_families():
    used = GaugeMetricFamily(
        "backwatch_storage_used_bytes",
        "Bytes used on each enabled storage backend, from its newest usage reading.",
        labels=["backend"],
    )
    capacity = GaugeMetricFamily(
        "backwatch_storage_capacity_bytes",
        "Capacity (quota or limit) of each enabled storage backend in bytes, from its newest usage reading. "
        "Backends without a known capacity are left out.",
        labels=["backend"],
    )
    rows = db.session.execute(
        db.select(StorageBackend.name, UsageReading.used_bytes, UsageReading.capacity_bytes)
        .join(UsageReading, UsageReading.id == newest_reading_id())
        .where(StorageBackend.enabled.is_(True))
    ).all()
    for name, used_bytes, capacity_bytes in rows:
        used.add_metric([name], used_bytes)
        if capacity_bytes is not None:
            capacity.add_metric([name], capacity_bytes)
    return used, capacity


def _deliveries_family():
    family = GaugeMetricFamily(
        "backwatch_deliveries",
        "Deliveries in the ledger, by channel and status. Cleanup deletes those of old resolved alerts.",
        labels=["channel", "status"],
    )
    # NOTE: no index covers (channel, status), so this reads the whole
    # deliveries table, which the alert retention cleanup keeps bounded.
    counts = db.session.execute(
        db.select(Delivery.channel, Delivery.status, func.count()).group_by(Delivery.channel, Delivery.status)
    ).all()
    values = {(channel, status): 0 for channel in DELIVERY_CHANNELS for status in DELIVERY_STATUSES}
    for channel, status, count in counts:
        values[(channel, status)] = count
    for (channel, status), count in values.items():
        family.add_metric([channel, status], count)
    return family


class QueueCollector(Collector):
    """Jobs in the RQ queue and its registries, read from Redis in one round trip.

    A Redis outage must not fail the scrape: backwatch_queue_up is then 0
    and backwatch_queue_jobs is left out.
    """

    def __init__(self):
        # The outcome of this process's previous attempt, so that an outage is
        # logged once when it starts rather than on every scrape.
        self._redis_was_up = True

    def collect(self):
        up = GaugeMetricFamily("backwatch_queue_up", "1 when Redis answered during this scrape, otherwise 0.")
        jobs = GaugeMetricFamily(
            "backwatch_queue_jobs",
            "Jobs in the RQ queue (queued) and in its scheduled, started and failed registries.",
            labels=["queue", "state"],
        )
        try:
            counts = _read_queue_counts()
        except QUEUE_ERRORS as exc:
            if self._redis_was_up:
                log.warning("GET /metrics: Redis unavailable, queue metrics left out: %s", exc)
            self._redis_was_up = False
            up.add_metric([], 0)
            yield up
            return

        if not self._redis_was_up:
            log.info("GET /metrics: Redis available again")
        self._redis_was_up = True
        up.add_metric([], 1)
        yield up
        for state, count in counts.items():
            jobs.add_metric([current_app.config["RQ_QUEUE"], state], count)
        yield jobs


def _read_queue_counts():
    """Return the number of jobs per state, without rq's registry cleanup.

    rq's `count` properties first clean the registries up, which moves
    abandoned jobs to the failed registry. A scrape reads only. Expired
    entries are therefore counted until a worker's maintenance removes them.
    """
    queue = get_queue()
    registries = {
        "scheduled": queue.scheduled_job_registry,
        "started": queue.started_job_registry,
        "failed": queue.failed_job_registry,
    }
    with queue.connection.pipeline(transaction=False) as pipeline:
        pipeline.llen(queue.key)
        for registry in registries.values():
            pipeline.zcard(registry.key)
        results = pipeline.execute()
    return dict(zip(["queued", *registries], results))


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DatabaseCollector())
REGISTRY.register(QueueCollector())
