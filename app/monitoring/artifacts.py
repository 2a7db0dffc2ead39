"""The artifact check: is the object a run reported really on its backend?"""

import logging

from app.extensions import db
from app.models import BackupRun, Severity, StorageBackend
from app.monitoring.alerts import create_backup_alert_with_notifications, resolve_alerts

log = logging.getLogger(__name__)


def find_backend(run):
    return db.session.execute(
        db.select(StorageBackend).where(StorageBackend.name == run.storage_backend)
    ).scalar_one_or_none()


def evaluate_artifact(run, info, now, error=None):
    """Raise INTEGRITY_FAILURE when the object is missing or differs; resolve it when it matches.

    `info` is the backend's ObjectInfo (None when the object does not exist);
    `error` is set when the backend could not be asked at all. Returns the
    list of problems found.
    """
    problems = artifact_problems(run, info, error)
    if not problems:
        resolve_alerts("INTEGRITY_FAILURE", job=run.job, now=now, reason=f"run {run.id} artifact verified")
        return []
    create_backup_alert_with_notifications(
        "INTEGRITY_FAILURE",
        Severity.WARNING,
        f"Backup artifact of {run.job.name} failed verification: {problems[0]}",
        {"run_id": run.id, "backend": run.storage_backend, "object_key": run.object_key, "problems": problems},
        job=run.job,
        run=run,
        now=now,
    )
    return problems


def artifact_problems(run, info, error):
    if error is not None:
        return [f"storage backend {run.storage_backend} could not be read: {error}"]
    if info is None:
        return [f"object {run.object_key} not found on {run.storage_backend}"]
    problems = []
    if run.size_bytes is not None and info.size != run.size_bytes:
        problems.append(f"object {run.object_key} is {info.size} bytes, the run reported {run.size_bytes}")
    if run.sha256 and info.sha256 and info.sha256.lower() != run.sha256:
        problems.append(f"object {run.object_key} has SHA-256 {info.sha256.lower()}, the run reported {run.sha256}")
    return problems


def runs_needing_artifact_check():
    """Return a query of successful runs that name an object (for tests and re-checks)."""
    return db.select(BackupRun).where(BackupRun.object_key.is_not(None), BackupRun.status == "success")
