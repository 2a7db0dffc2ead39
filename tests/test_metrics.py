"""GET /metrics: access control, each metric against rows the test creates,
a Redis outage, label escaping and the exposition formats."""

import os
import statistics
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from rq.executions import Execution

from app.extensions import db
from app.metrics import runs_by_job_query
from app.models import (
    Alert,
    AlertEvent,
    BackupJob,
    BackupRun,
    Delivery,
    Severity,
    StorageBackend,
    UsageReading,
)

TOKEN = "metrics-test-token-4f9a1c"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def metrics_settings(app, monkeypatch):
    """Return a function that sets the two access settings for one test."""

    def configure(token=None, networks=""):
        monkeypatch.setitem(app.config, "METRICS_TOKEN", token)
        monkeypatch.setitem(app.config, "METRICS_ALLOWED_NETWORKS", networks)

    configure()
    return configure


@pytest.fixture
def scrape(client, metrics_settings):
    """Return a function that reads /metrics with the token and returns {(name, labels): value}."""
    metrics_settings(token=TOKEN)

    def read():
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return samples(response.get_data(as_text=True))

    return read


def samples(text):
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def labels(**pairs):
    return tuple(sorted(pairs.items()))


def add_job(name):
    job, _ = BackupJob.create(name)
    db.session.add(job)
    db.session.flush()
    return job


def add_run(job, kind="backup", status="success", finished_at=NOW):
    db.session.add(BackupRun(job_id=job.id, kind=kind, status=status, finished_at=finished_at))


# Access control

def test_disabled_without_settings(client, metrics_settings):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403
    message = response.get_data(as_text=True)
    assert "BACKWATCH_METRICS_TOKEN" in message
    assert "BACKWATCH_METRICS_ALLOWED_NETWORKS" in message
    assert "backwatch_" not in message


def test_token_right_accepted(client, metrics_settings):
    metrics_settings(token=TOKEN)
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "backwatch_queue_up" in response.get_data(as_text=True)


def test_token_scheme_case_insensitive(client, metrics_settings):
    metrics_settings(token=TOKEN)
    assert client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("header", [
    None,
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    "Bearer ",
    f"Basic {TOKEN}",
    TOKEN,
])
def test_token_wrong_rejected(client, metrics_settings, header):
    metrics_settings(token=TOKEN)
    headers = {"Authorization": header} if header is not None else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "BACKWATCH_METRICS_TOKEN" in response.get_data(as_text=True)
    assert TOKEN not in response.get_data(as_text=True)


def test_allowlist_address_inside(client, metrics_settings):
    metrics_settings(networks="192.0.2.0/24, 10.20.0.0/16")
    client.environ_base["REMOTE_ADDR"] = "10.20.30.40"
    assert client.get("/metrics").status_code == 200


def test_allowlist_address_outside(client, metrics_settings):
    metrics_settings(networks="10.20.0.0/16")
    client.environ_base["REMOTE_ADDR"] = "10.21.0.1"
    response = client.get("/metrics")
    assert response.status_code == 403
    assert "10.21.0.1" in response.get_data(as_text=True)
    assert "BACKWATCH_METRICS_ALLOWED_NETWORKS" in response.get_data(as_text=True)


def test_allowlist_ignores_forwarded_for(client, metrics_settings):
    metrics_settings(networks="10.20.0.0/16")
    client.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    response = client.get("/metrics", headers={"X-Forwarded-For": "10.20.30.40"})
    assert response.status_code == 403


def test_allowlist_ipv6_and_mapped_ipv4(client, metrics_settings):
    metrics_settings(networks="::1/128,127.0.0.0/8")
    client.environ_base["REMOTE_ADDR"] = "::1"
    assert client.get("/metrics").status_code == 200
    # An IPv4 client of a dual-stack listener.
    client.environ_base["REMOTE_ADDR"] = "::ffff:127.0.0.1"
    assert client.get("/metrics").status_code == 200
    client.environ_base["REMOTE_ADDR"] = "::2"
    assert client.get("/metrics").status_code == 403


def test_allowlist_single_address(client, metrics_settings):
    metrics_settings(networks="203.0.113.9")
    client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert client.get("/metrics").status_code == 200
    client.environ_base["REMOTE_ADDR"] = "203.0.113.10"
    assert client.get("/metrics").status_code == 403


def test_allowlist_invalid_entry_named(client, metrics_settings):
    metrics_settings(networks="10.0.0.0/8, not-a-network")
    response = client.get("/metrics")
    assert response.status_code == 503
    assert "'not-a-network'" in response.get_data(as_text=True)
    assert "BACKWATCH_METRICS_ALLOWED_NETWORKS" in response.get_data(as_text=True)


def test_token_or_allowlist_either_passes(client, metrics_settings):
    metrics_settings(token=TOKEN, networks="10.20.0.0/16")
    client.environ_base["REMOTE_ADDR"] = "10.20.0.5"
    assert client.get("/metrics").status_code == 200

    client.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 401
    assert "BACKWATCH_METRICS_ALLOWED_NETWORKS" in response.get_data(as_text=True)


# Metric values

def test_runs_counted_by_job_kind_status(app, scrape):
    with app.app_context():
        nightly = add_job("nightly")
        idle = add_job("idle")
        for _ in range(3):
            add_run(nightly)
        add_run(nightly, status="failure")
        add_run(nightly, kind="verify")
        db.session.commit()
        idle_name = idle.name

    values = scrape()
    assert values[("backwatch_runs_total", labels(backup_job="nightly", kind="backup", status="success"))] == 3
    assert values[("backwatch_runs_total", labels(backup_job="nightly", kind="backup", status="failure"))] == 1
    assert values[("backwatch_runs_total", labels(backup_job="nightly", kind="verify", status="success"))] == 1
    assert values[("backwatch_runs_total", labels(backup_job="nightly", kind="restore", status="success"))] == 0
    # A job without runs still has its series, at 0.
    assert values[("backwatch_runs_total", labels(backup_job=idle_name, kind="backup", status="failure"))] == 0
    run_series = [key for key in values if key[0] == "backwatch_runs_total"]
    assert len(run_series) == 2 * 3 * 2


def test_last_success_is_newest_successful_backup(app, scrape):
    with app.app_context():
        nightly = add_job("nightly")
        never = add_job("never-succeeded")
        add_run(nightly, finished_at=NOW - timedelta(days=2))
        add_run(nightly, finished_at=NOW - timedelta(days=1))
        # Neither a later failure nor a later successful verify run is a successful backup.
        add_run(nightly, status="failure", finished_at=NOW)
        add_run(nightly, kind="verify", finished_at=NOW + timedelta(hours=1))
        add_run(never, status="failure", finished_at=NOW)
        db.session.commit()

    values = scrape()
    expected = (NOW - timedelta(days=1)).timestamp()
    assert values[("backwatch_job_last_success_timestamp_seconds", labels(backup_job="nightly"))] == expected
    assert ("backwatch_job_last_success_timestamp_seconds", labels(backup_job="never-succeeded")) not in values


def test_open_alerts_by_severity_status(app, scrape):
    with app.app_context():
        rows = [
            ("CRITICAL", "ACTIVE"), ("CRITICAL", "ACTIVE"), ("WARNING", "ACKNOWLEDGED"),
            ("CRITICAL", "RESOLVED"), ("WARNING", "RESOLVED"),
        ]
        for number, (severity, status) in enumerate(rows):
            db.session.add(Alert(
                alert_type="BACKUP_FAILURE", severity=Severity[severity], status=status,
                dedup_key=f"BACKUP_FAILURE:test:{number}", message="failed",
            ))
        db.session.commit()

    values = scrape()
    assert values[("backwatch_alerts_open", labels(severity="CRITICAL", status="ACTIVE"))] == 2
    assert values[("backwatch_alerts_open", labels(severity="WARNING", status="ACKNOWLEDGED"))] == 1
    assert values[("backwatch_alerts_open", labels(severity="WARNING", status="ACTIVE"))] == 0
    assert values[("backwatch_alerts_open", labels(severity="INFO", status="ACTIVE"))] == 0
    assert not any(dict(key[1]).get("status") == "RESOLVED" for key in values)


def test_storage_from_newest_reading(app, scrape):
    with app.app_context():
        disk = StorageBackend(name="local-disk", kind="local", path="/srv/backups")
        bucket = StorageBackend(name="r2-offsite", kind="r2", bucket="offsite", capacity_bytes=10**12)
        unmeasured = StorageBackend(name="b2-new", kind="b2", bucket="new", capacity_bytes=10**12)
        retired = StorageBackend(name="old-disk", kind="local", path="/mnt/old", enabled=False)
        db.session.add_all([disk, bucket, unmeasured, retired])
        db.session.flush()
        db.session.add_all([
            UsageReading(backend_id=disk.id, measured_at=NOW - timedelta(hours=1), used_bytes=100, capacity_bytes=None),
            UsageReading(backend_id=disk.id, measured_at=NOW, used_bytes=250, capacity_bytes=None),
            UsageReading(backend_id=bucket.id, measured_at=NOW, used_bytes=7 * 10**11, capacity_bytes=10**12),
            UsageReading(backend_id=bucket.id, measured_at=NOW - timedelta(days=1), used_bytes=1, capacity_bytes=1),
            UsageReading(backend_id=retired.id, measured_at=NOW, used_bytes=5, capacity_bytes=10),
        ])
        db.session.commit()

    values = scrape()
    assert values[("backwatch_storage_used_bytes", labels(backend="local-disk"))] == 250
    assert ("backwatch_storage_capacity_bytes", labels(backend="local-disk")) not in values
    assert values[("backwatch_storage_used_bytes", labels(backend="r2-offsite"))] == 7 * 10**11
    assert values[("backwatch_storage_capacity_bytes", labels(backend="r2-offsite"))] == 10**12
    assert ("backwatch_storage_used_bytes", labels(backend="b2-new")) not in values
    assert ("backwatch_storage_used_bytes", labels(backend="old-disk")) not in values


def test_storage_same_time_readings_take_newest_id(app, scrape):
    with app.app_context():
        disk = StorageBackend(name="local-disk", kind="local", path="/srv/backups")
        db.session.add(disk)
        db.session.flush()
        db.session.add(UsageReading(backend_id=disk.id, measured_at=NOW, used_bytes=1))
        db.session.flush()
        db.session.add(UsageReading(backend_id=disk.id, measured_at=NOW, used_bytes=2))
        db.session.commit()

    values = scrape()
    assert values[("backwatch_storage_used_bytes", labels(backend="local-disk"))] == 2
    assert len([key for key in values if key[0] == "backwatch_storage_used_bytes"]) == 1


def test_deliveries_by_channel_status(app, scrape):
    with app.app_context():
        event = AlertEvent(event="digest", payload={})
        db.session.add(event)
        db.session.flush()
        rows = [("email", "sent"), ("email", "sent"), ("email", "failed"), ("sms", "pending"), ("webhook", "skipped")]
        for number, (channel, status) in enumerate(rows):
            db.session.add(Delivery(
                alert_event_id=event.id, channel=channel, recipient_key=f"user:{number}", status=status,
            ))
        db.session.commit()

    values = scrape()
    assert values[("backwatch_deliveries", labels(channel="email", status="sent"))] == 2
    assert values[("backwatch_deliveries", labels(channel="email", status="failed"))] == 1
    assert values[("backwatch_deliveries", labels(channel="sms", status="pending"))] == 1
    assert values[("backwatch_deliveries", labels(channel="webhook", status="skipped"))] == 1
    assert values[("backwatch_deliveries", labels(channel="in_app", status="sent"))] == 0


def test_queue_jobs_by_state(app, scrape, queue, run_worker):
    # A job that fails in a real worker lands in the failed registry.
    queue.enqueue("builtins.int", "not a number")
    failed_ids = run_worker()
    assert len(failed_ids) == 1

    queue.enqueue("app.jobs.process_run", 1)
    queue.enqueue("app.jobs.process_run", 2)
    queue.enqueue_in(timedelta(hours=1), "app.jobs.process_run", 3)
    queue.enqueue_in(timedelta(hours=2), "app.jobs.process_run", 4)
    queue.enqueue_in(timedelta(hours=3), "app.jobs.process_run", 5)
    # Take a job off the queue and register an execution for it, as a worker
    # does when it starts one: a test cannot hold a real worker mid-job.
    started = queue.enqueue("app.jobs.process_run", 6)
    queue.remove(started)
    with queue.connection.pipeline() as pipeline:
        Execution.create(started, ttl=600, pipeline=pipeline)
        pipeline.execute()

    values = scrape()
    name = queue.name
    assert values[("backwatch_queue_up", ())] == 1
    assert values[("backwatch_queue_jobs", labels(queue=name, state="queued"))] == 2
    assert values[("backwatch_queue_jobs", labels(queue=name, state="scheduled"))] == 3
    assert values[("backwatch_queue_jobs", labels(queue=name, state="started"))] == 1
    assert values[("backwatch_queue_jobs", labels(queue=name, state="failed"))] == 1


def test_redis_down_keeps_scrape(app, scrape, monkeypatch):
    with app.app_context():
        add_run(add_job("nightly"))
        db.session.commit()
    # Nothing listens on port 1 of loopback, so every Redis command fails at once.
    closed = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1, socket_timeout=1)
    monkeypatch.setitem(app.extensions, "backwatch_redis", closed)

    values = scrape()
    assert values[("backwatch_queue_up", ())] == 0
    assert not any(key[0] == "backwatch_queue_jobs" for key in values)
    assert values[("backwatch_runs_total", labels(backup_job="nightly", kind="backup", status="success"))] == 1


def test_redis_url_unset_keeps_scrape(app, scrape, monkeypatch):
    monkeypatch.delitem(app.extensions, "backwatch_redis", raising=False)
    monkeypatch.setitem(app.config, "REDIS_URL", None)
    values = scrape()
    assert values[("backwatch_queue_up", ())] == 0


# Exposition

TRICKY_NAMES = [
    'quote"inside',
    "back\\slash",
    "new\nline",
    'all"three\\at\nonce',
    "trailing backslash\\",
    "braces} and, commas=",
    "sauvegarde-été",
]


def test_tricky_job_names_round_trip(app, client, metrics_settings):
    metrics_settings(token=TOKEN)
    with app.app_context():
        for name in TRICKY_NAMES:
            add_run(add_job(name))
        db.session.commit()

    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    text = response.get_data(as_text=True)
    families = {family.name: family for family in text_string_to_metric_families(text)}
    runs = families["backwatch_runs"]
    successes = {
        sample.labels["backup_job"]: sample.value
        for sample in runs.samples
        if sample.labels["kind"] == "backup" and sample.labels["status"] == "success"
    }
    assert successes == {name: 1 for name in TRICKY_NAMES}
    last_success = {sample.labels["backup_job"] for sample in families["backwatch_job_last_success_timestamp_seconds"].samples}
    assert last_success == set(TRICKY_NAMES)
    # Every sample is one line, so no raw newline from a name reached the output.
    assert all(line.startswith(("#", "backwatch_")) for line in text.splitlines())


def test_tricky_job_names_openmetrics(app, client, metrics_settings):
    metrics_settings(token=TOKEN)
    with app.app_context():
        for name in TRICKY_NAMES:
            add_run(add_job(name))
        db.session.commit()

    response = client.get("/metrics", headers={
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/openmetrics-text; version=1.0.0",
    })
    families = {family.name: family for family in parse_openmetrics(response.get_data(as_text=True))}
    jobs = {sample.labels["backup_job"] for sample in families["backwatch_runs"].samples}
    assert jobs == set(TRICKY_NAMES)


def test_content_type_classic_text(client, metrics_settings):
    metrics_settings(token=TOKEN)
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.get_data(as_text=True)
    assert "# TYPE backwatch_runs_total counter" in text
    assert "# TYPE backwatch_alerts_open gauge" in text


def test_content_type_openmetrics(client, metrics_settings):
    metrics_settings(token=TOKEN)
    response = client.get("/metrics", headers={
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    })
    assert response.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = response.get_data(as_text=True)
    assert text.endswith("# EOF\n")
    assert "# TYPE backwatch_runs counter" in text


def test_rejection_is_plain_text(client, metrics_settings):
    response = client.get("/metrics")
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


# Query plans and scale

def test_runs_count_reads_covering_index(app):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("the plan text checked here is SQLite's")
        sql = str(runs_by_job_query().compile(db.engine))
        plan = " ".join(row[-1] for row in db.session.execute(db.text("EXPLAIN QUERY PLAN " + sql)))
    assert "USING COVERING INDEX ix_backup_runs_job_kind_status_finished" in plan


BENCH_RUNS = int(os.environ.get("BACKWATCH_METRICS_BENCH_RUNS") or 0)


@pytest.mark.skipif(not BENCH_RUNS, reason="set BACKWATCH_METRICS_BENCH_RUNS to a run count to time the scrape")
def test_scrape_time_large_table(app, client, metrics_settings):
    """Time GET /metrics over BACKWATCH_METRICS_BENCH_RUNS runs spread over 200 jobs.

    Prints the figures (run with -s). No assertion depends on the time.
    """
    metrics_settings(token=TOKEN)
    job_count = 200
    with app.app_context():
        job_ids = [add_job(f"bench-job-{number:03d}").id for number in range(job_count)]
        db.session.commit()
        started = time.perf_counter()
        batch = []
        for number in range(BENCH_RUNS):
            batch.append({
                "job_id": job_ids[number % job_count],
                "kind": "verify" if number % 10 == 0 else "backup",
                "status": "failure" if number % 25 == 0 else "success",
                "finished_at": (NOW - timedelta(minutes=number)).replace(tzinfo=None),
                "received_at": NOW.replace(tzinfo=None),
                "log_truncated_bytes": 0,
            })
            if len(batch) == 10000:
                db.session.execute(BackupRun.__table__.insert(), batch)
                batch = []
        if batch:
            db.session.execute(BackupRun.__table__.insert(), batch)
        db.session.commit()
        insert_seconds = time.perf_counter() - started
        dialect = db.engine.dialect.name
        if dialect == "postgresql":
            db.session.execute(db.text("ANALYZE backup_runs"))
            db.session.commit()

    timings = []
    for _ in range(5):
        started = time.perf_counter()
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
    values = samples(response.get_data(as_text=True))
    total = sum(value for key, value in values.items() if key[0] == "backwatch_runs_total")
    assert total == BENCH_RUNS
    with app.app_context():
        query_started = time.perf_counter()
        db.session.execute(runs_by_job_query()).all()
        count_seconds = time.perf_counter() - query_started
    print(
        f"\n{dialect}: "
        f"{BENCH_RUNS} runs in {job_count} jobs inserted in {insert_seconds:.1f} s; "
        f"GET /metrics median {statistics.median(timings) * 1000:.0f} ms "
        f"(min {min(timings) * 1000:.0f}, max {max(timings) * 1000:.0f}) over {len(timings)} scrapes; "
        f"runs-by-job query alone {count_seconds * 1000:.0f} ms"
    )
