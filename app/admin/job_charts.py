"""The size and duration charts of a job's page, with its baseline and alert bands."""

from dataclasses import dataclass
from types import SimpleNamespace

from flask import current_app

from app.admin.charts import Band, Chart, Marker, Series, human
from app.extensions import db
from app.models import BackupRun, utcnow
from app.monitoring.checks import recent_baseline

# Successful backup runs drawn; failures between the oldest of them and now are marked.
CHART_RUNS = 200


@dataclass
class JobCharts:
    size: object
    duration: object
    # How many successful runs and failures the charts cover.
    successes: int
    failures: int


def job_charts(job, now=None):
    """Return the size and duration charts of `job` as SVG markup.

    Reads the latest CHART_RUNS successful backups with one query on the
    (job, kind, status, finished) index, the failures in the same period
    with a second one, and the baselines with the check's own function.
    """
    now = now or utcnow()
    successes = db.session.execute(
        db.select(BackupRun.finished_at, BackupRun.size_bytes, BackupRun.duration_seconds)
        .where(BackupRun.job_id == job.id, BackupRun.kind == "backup", BackupRun.status == "success")
        .order_by(BackupRun.finished_at.desc(), BackupRun.id.desc())
        .limit(CHART_RUNS)
    ).all()
    successes.reverse()
    failures = _failures_since(job, successes[0].finished_at if successes else None)
    markers = [
        Marker(run.finished_at, f"run {run.id} failed at {run.finished_at:%Y-%m-%d %H:%M} UTC"
               + (f" with exit code {run.exit_code}" if run.exit_code is not None else ""))
        for run in failures
    ]
    config = current_app.config

    size_chart = Chart(
        title=f"Backup size of {job.name}", unit="B", y_label="size",
        series=[Series("size", [(r.finished_at, r.size_bytes) for r in successes if r.size_bytes is not None], "size")],
        markers=markers, marker_legend="failed run", empty_text="No successful backup runs yet",
    )
    size_baseline = _current_baseline(job, BackupRun.size_bytes, now)
    if size_baseline is not None:
        mean = size_baseline.mean
        warning, critical = config["SIZE_WARNING_DEVIATION"], config["SIZE_CRITICAL_DEVIATION"]
        size_chart.lines = [(mean, f"baseline {human(mean, 'B')} (mean of {size_baseline.samples})", "baseline")]
        size_chart.bands = _deviation_bands(mean, warning, critical, both_sides=True)

    duration_chart = Chart(
        title=f"Backup duration of {job.name}", unit="s", y_label="duration",
        series=[Series("duration", [(r.finished_at, r.duration_seconds) for r in successes if r.duration_seconds is not None], "duration")],
        markers=markers, marker_legend="failed run", empty_text="No successful backup runs yet",
    )
    duration_baseline = _current_baseline(job, BackupRun.duration_seconds, now)
    # The duration check is skipped while the mean is 0, so no bands are drawn then either.
    if duration_baseline is not None and duration_baseline.mean > 0:
        mean = duration_baseline.mean
        warning, critical = config["DURATION_WARNING_INCREASE"], config["DURATION_CRITICAL_INCREASE"]
        duration_chart.lines = [(mean, f"baseline {human(mean, 's')} (mean of {duration_baseline.samples})", "baseline")]
        duration_chart.bands = _deviation_bands(mean, warning, critical, both_sides=False)

    return JobCharts(size_chart.render(), duration_chart.render(), len(successes), len(failures))


def _failures_since(job, since):
    query = db.select(BackupRun.id, BackupRun.finished_at, BackupRun.exit_code).where(
        BackupRun.job_id == job.id, BackupRun.kind == "backup", BackupRun.status == "failure"
    )
    if since is not None:
        query = query.where(BackupRun.finished_at >= since)
    rows = db.session.execute(
        query.order_by(BackupRun.finished_at.desc(), BackupRun.id.desc()).limit(CHART_RUNS)
    ).all()
    rows.reverse()
    return rows


def _current_baseline(job, column, now):
    """Return the baseline the check would compare the job's next run with, or None.

    recent_baseline() reads the window before a given run. A run that
    finishes now and is not stored yet takes the next run's place.
    """
    next_run = SimpleNamespace(job=job, job_id=job.id, finished_at=now, id=None)
    return recent_baseline(next_run, column)


def _deviation_bands(mean, warning, critical, both_sides):
    """Return the warning and critical ranges around `mean` as the checks grade them.

    A value more than `warning` (a fraction of the mean) away from it is a
    warning and more than `critical` away is critical. The duration check
    looks only above the mean, and the size check looks both ways.
    """
    direction = "from" if both_sides else "above"
    warning_label = f"warning: {warning:.0%} to {critical:.0%} {direction} the mean"
    critical_label = f"critical: over {critical:.0%} {direction} the mean"
    bands = [
        Band(mean * (1 + warning), mean * (1 + critical), warning_label, "warning"),
        Band(mean * (1 + critical), None, critical_label, "critical"),
    ]
    if both_sides:
        bands += [
            Band(max(mean * (1 - critical), 0), max(mean * (1 - warning), 0), warning_label, "warning"),
            Band(0, max(mean * (1 - critical), 0), critical_label, "critical"),
        ]
    return bands
